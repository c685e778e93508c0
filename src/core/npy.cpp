#include "core/npy.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <regex>

#include "core/check.h"

namespace tandem {

void write_npy(const std::string& path, std::span<const int64_t> shape, std::span<const float> data) {
    uint64_t n = 1;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    TANDEM_CHECK(n == data.size(), "npy shape holds {} values, data has {}", n, data.size());
    std::string dims;
    for (int64_t d : shape) dims += fmt::format("{}, ", d);
    if (shape.size() > 1) dims.resize(dims.size() - 1);  // "(3, 4)" but "(3,)"
    std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims);
    // Magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    const size_t total = 10 + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header += '\n';
    std::ofstream f(path, std::ios::binary);
    if (!f) fail("{}: cannot open for writing", path);
    const uint16_t hlen = static_cast<uint16_t>(header.size());
    f.write("\x93NUMPY\x01\x00", 8);
    f.write(reinterpret_cast<const char*>(&hlen), 2);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size_bytes()));
    if (!f) fail("{}: write failed", path);
}

std::vector<float> read_npy(const std::string& path, std::vector<int64_t>* shape) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail("{}: cannot open", path);
    char magic[8];
    uint16_t hlen = 0;
    f.read(magic, 8);
    f.read(reinterpret_cast<char*>(&hlen), 2);
    if (!f || std::memcmp(magic, "\x93NUMPY\x01", 7) != 0) fail("{}: not a version 1 .npy file", path);
    std::string header(hlen, '\0');
    f.read(header.data(), hlen);
    if (header.find("'descr': '<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
        fail("{}: expected a C-order float32 array, header is {}", path, header);
    std::smatch m;
    if (!std::regex_search(header, m, std::regex(R"('shape': \(([^)]*)\))"))) fail("{}: no shape in header", path);
    shape->clear();
    std::string dims = m[1].str();
    uint64_t n = 1;
    const std::regex number(R"(\d+)");
    for (std::sregex_iterator it(dims.begin(), dims.end(), number), end; it != end; ++it) {
        shape->push_back(std::stoll(it->str()));
        n *= static_cast<uint64_t>(shape->back());
    }
    std::vector<float> data(n);
    f.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(n * sizeof(float)));
    if (!f) fail("{}: truncated data", path);
    return data;
}

}  // namespace tandem
