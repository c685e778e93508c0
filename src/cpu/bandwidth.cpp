#include "cpu/bandwidth.h"

#include <immintrin.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

namespace tandem::cpu {

// Four independent accumulators keep enough loads in flight to saturate memory, not the adder.
uint64_t read_sum(const uint8_t* p, uint64_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (uint64_t i = 0; i < n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
    }
    const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    alignas(32) uint64_t l[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(l), s);
    return l[0] + l[1] + l[2] + l[3];
}

double measure_read_bandwidth(ThreadPool& pool, uint64_t bytes, int passes) {
    bytes = bytes / 4096 * 4096;
    struct Free {
        void operator()(uint8_t* p) const { std::free(p); }
    };
    std::unique_ptr<uint8_t, Free> buf(static_cast<uint8_t*>(std::aligned_alloc(4096, bytes)));
    uint8_t* base = buf.get();
    pool.parallel_for(static_cast<int64_t>(bytes >> 12), [&](int64_t p0, int64_t p1, int) {
        std::memset(base + (p0 << 12), 1, static_cast<size_t>((p1 - p0) << 12));
    });
    std::vector<uint64_t> sums(static_cast<size_t>(pool.n_threads()) * 8);  // a cache line each
    auto pass = [&] {
        pool.parallel_for(static_cast<int64_t>(bytes / 128), [&](int64_t l0, int64_t l1, int idx) {
            sums[static_cast<size_t>(idx) * 8] += read_sum(base + l0 * 128, static_cast<uint64_t>(l1 - l0) * 128);
        });
    };
    pass();
    double best = 0;
    for (int i = 0; i < passes; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        pass();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::max(best, static_cast<double>(bytes) / s);
    }
    volatile uint64_t sink = sums[0];
    (void)sink;
    return best;
}

}  // namespace tandem::cpu
