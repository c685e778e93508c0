// NumPy .npy files (format version 1.0), float32 little-endian, C order.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace tandem {

void write_npy(const std::string& path, std::span<const int64_t> shape, std::span<const float> data);

// Reads a float32 .npy written by numpy (C order); for tests and tools.
std::vector<float> read_npy(const std::string& path, std::vector<int64_t>* shape);

}  // namespace tandem
