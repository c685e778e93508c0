// Normal random activations for the cpu tests, reproducible from a seed.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace tandem::cpu {

inline std::vector<float> random_floats(int64_t n, uint64_t seed, float scale) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& f : v) f = dist(rng);
    return v;
}

}  // namespace tandem::cpu
