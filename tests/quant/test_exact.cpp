// Exactness of the scalar dequantizers against the gguf package's (tools/quant_vectors.py).
// tandem's in-memory layouts (quant/repack.h) are checked on the same vectors: the file
// format's blocks, repacked, must dequantize to the gguf package's values too.
//
// The vectors are written by CI before the C++ tests run. Locally, a missing directory skips
// these tests; with TANDEM_REQUIRE_VECTORS=1 (set by CI) it fails them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "quant/quant.h"
#include "quant/repack.h"

namespace tandem::quant {
namespace {

namespace fs = std::filesystem;

fs::path vectors_dir() {
    if (const char* dir = std::getenv("TANDEM_VECTORS_DIR")) return dir;
    if (const char* bin = std::getenv("TANDEM_BINARY_DIR")) return fs::path(bin) / "quant_vectors";
    return fs::path(TANDEM_BINARY_DIR) / "quant_vectors";
}

bool vectors_required() {
    const char* v = std::getenv("TANDEM_REQUIRE_VECTORS");
    return v && std::string(v) == "1";
}

std::vector<uint8_t> read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class Exact : public ::testing::TestWithParam<GgmlType> {};

// The file format whose vectors check `type`: itself, or what a repacked layout comes from.
GgmlType file_type(GgmlType type) {
    for (const auto& t : ggml_all_types())
        if (repacked_type(t.type) == type) return t.type;
    return type;
}

TEST_P(Exact, BitIdenticalToGguf) {
    const GgmlTypeTraits& t = ggml_traits(file_type(GetParam()));
    const fs::path blocks_path = vectors_dir() / (std::string(t.name) + ".blocks");
    const fs::path expected_path = vectors_dir() / (std::string(t.name) + ".f32");
    if (!fs::exists(blocks_path) || !fs::exists(expected_path)) {
        if (vectors_required())
            FAIL() << "missing " << blocks_path << " or " << expected_path << " (run tools/quant_vectors.py)";
        GTEST_SKIP() << "no vectors at " << vectors_dir() << "; run tools/quant_vectors.py --out " << vectors_dir();
    }
    const std::vector<uint8_t> blocks = read_file(blocks_path);
    const std::vector<uint8_t> expected_bytes = read_file(expected_path);
    ASSERT_GT(blocks.size(), 0u);
    ASSERT_EQ(blocks.size() % t.type_size, 0u);
    const int64_t n_blocks = static_cast<int64_t>(blocks.size() / t.type_size);
    const int64_t n = n_blocks * t.block_size;
    ASSERT_EQ(expected_bytes.size(), static_cast<size_t>(n) * 4);
    ASSERT_GE(n_blocks, 1000) << "expected several thousand blocks per type";

    std::vector<float> got(n);
    if (GetParam() == t.type) {
        dequantize_row(t.type, blocks.data(), got.data(), n);
    } else {
        std::vector<uint8_t> repacked(static_cast<size_t>(n_blocks) * ggml_traits(GetParam()).type_size);
        repack_blocks(t.type, blocks.data(), repacked.data(), n_blocks);
        dequantize_row(GetParam(), repacked.data(), got.data(), n);
    }

    int64_t n_mismatch = 0;
    for (int64_t i = 0; i < n; ++i) {
        uint32_t want, have;
        std::memcpy(&want, expected_bytes.data() + 4 * i, 4);
        std::memcpy(&have, &got[i], 4);
        ASSERT_FALSE(std::isnan(got[i])) << t.name << " element " << i;
        if (want != have && n_mismatch++ < 8) {
            float w;
            std::memcpy(&w, &want, 4);
            ADD_FAILURE() << t.name << " block " << i / t.block_size << " element " << i % t.block_size
                          << ": expected " << w << " (0x" << std::hex << want << "), got " << got[i] << " (0x" << have
                          << std::dec << ")";
        }
    }
    EXPECT_EQ(n_mismatch, 0) << t.name << ": " << n_mismatch << " of " << n << " values differ";
}

// Every type the gguf package can dequantize (Q8_1 and Q8_K have no reference there).
INSTANTIATE_TEST_SUITE_P(
    AllTypes, Exact,
    ::testing::Values(GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
                      GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K,
                      GgmlType::Q6_K, GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ2_S, GgmlType::IQ3_XXS,
                      GgmlType::IQ3_S, GgmlType::IQ1_S, GgmlType::IQ1_M, GgmlType::IQ4_NL, GgmlType::IQ4_XS,
                      GgmlType::TQ1_0, GgmlType::TQ2_0, GgmlType::MXFP4, GgmlType::IQ1_S_U2, GgmlType::IQ1_M_U2, GgmlType::IQ2_XXS_U3, GgmlType::IQ3_XXS_U4,
                      GgmlType::Q2_K_U16, GgmlType::Q3_K_U16),
    [](const auto& p) { return std::string(ggml_type_name(p.param)); });

}  // namespace
}  // namespace tandem::quant
