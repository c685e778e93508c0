#include "core/npy.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

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
    // The shape is the tuple after 'shape': "(3, 4)", "(3,)" or "()".
    const size_t key = header.find("'shape': (");
    const size_t close = key == std::string::npos ? key : header.find(')', key);
    if (close == std::string::npos) fail("{}: no shape in header", path);
    shape->clear();
    uint64_t n = 1;
    int64_t dim = -1;
    for (size_t i = key + 10; i <= close; ++i) {
        const char ch = header[i];
        if (ch >= '0' && ch <= '9') {
            dim = (dim < 0 ? 0 : dim * 10) + (ch - '0');
        } else if (dim >= 0) {
            shape->push_back(dim);
            n *= static_cast<uint64_t>(dim);
            dim = -1;
        }
    }
    std::vector<float> data(n);
    f.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(n * sizeof(float)));
    if (!f) fail("{}: truncated data", path);
    return data;
}

}  // namespace tandem
