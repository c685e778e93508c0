// Scalar reference dequantizers, one per block format.
//
// These define what every other kernel must reproduce. Each one evaluates exactly the f32
// expression of the gguf package's numpy dequantizer, operation by operation, so the two are
// bit-identical (tests/quant/test_exact.cpp with vectors from tools/quant_vectors.py).
//
// NOTES: `d * q + m` must round twice, as numpy does. With FMA in the x86 baseline GCC may
// fuse it into one rounding (-ffp-contract=fast is its default outside ISO C), so contraction
// is switched off for this file rather than left to the build mode.
#pragma GCC optimize("fp-contract=off")

#include <cstring>

#include "core/check.h"
#include "quant/blocks.h"
#include "quant/grids.h"
#include "quant/quant.h"
#include "quant/unpack.h"

namespace tandem::quant {
namespace {

void dequant_block(const BlockQ4_0& b, float* y) {  // y: [32]
    const float d = fp16_to_f32(b.d);
    for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>((b.qs[j] & 0x0F) - 8);
        y[j + 16] = d * static_cast<float>((b.qs[j] >> 4) - 8);
    }
}

void dequant_block(const BlockQ4_1& b, float* y) {
    const float d = fp16_to_f32(b.d);
    const float m = fp16_to_f32(b.m);
    for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>(b.qs[j] & 0x0F) + m;
        y[j + 16] = d * static_cast<float>(b.qs[j] >> 4) + m;
    }
}

void dequant_block(const BlockQ5_0& b, float* y) {
    const float d = fp16_to_f32(b.d);
    const uint32_t qh = load_u32(b.qh);
    for (int j = 0; j < 16; ++j) {
        const int lo = (b.qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
        const int hi = (b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
        y[j] = d * static_cast<float>(lo - 16);
        y[j + 16] = d * static_cast<float>(hi - 16);
    }
}

void dequant_block(const BlockQ5_1& b, float* y) {
    const float d = fp16_to_f32(b.d);
    const float m = fp16_to_f32(b.m);
    const uint32_t qh = load_u32(b.qh);
    for (int j = 0; j < 16; ++j) {
        const uint32_t lo = (b.qs[j] & 0x0Fu) | (((qh >> j) & 1u) << 4);
        const uint32_t hi = (b.qs[j] >> 4u) | (((qh >> (j + 16)) & 1u) << 4);
        y[j] = d * static_cast<float>(lo) + m;
        y[j + 16] = d * static_cast<float>(hi) + m;
    }
}

void dequant_block(const BlockQ8_0& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
}

void dequant_block(const BlockQ8_1& b, float* y) {
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(b.qs[j]) * b.d;
}

void dequant_block(const BlockIq4Nl& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>(kIq4nlValues[b.qs[j] & 0x0F]);
        y[j + 16] = d * static_cast<float>(kIq4nlValues[b.qs[j] >> 4]);
    }
}

void dequant_block(const BlockMxfp4& b, float* y) {
    const float d = e8m0_to_f32_half(b.e);
    for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>(kMxfp4Values[b.qs[j] & 0x0F]);
        y[j + 16] = d * static_cast<float>(kMxfp4Values[b.qs[j] >> 4]);
    }
}

// Q2_K and Q2_K_U16 (the same float operations, so the same values).
template <typename Block>
void dequant_q2k(const Block& b, float* y) {  // y: [256]
    const float d = fp16_to_f32(b.d);
    const float dmin = fp16_to_f32(b.dmin);
    for (int e = 0; e < kQK; ++e) {
        const float dl = d * static_cast<float>(q2k_scale(b, e));
        const float ml = dmin * static_cast<float>(q2k_min(b, e));
        y[e] = dl * static_cast<float>(q2k_q(b, e)) - ml;
    }
}
void dequant_block(const BlockQ2K& b, float* y) { dequant_q2k(b, y); }
void dequant_block(const BlockQ2KU16& b, float* y) { dequant_q2k(b, y); }

// Q3_K and Q3_K_U16 (the same float operations, so the same values).
template <typename Block>
void dequant_q3k(const Block& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int e = 0; e < kQK; ++e) {
        const float dl = d * static_cast<float>(q3k_scale(b.scales, e / 16));
        y[e] = dl * static_cast<float>(q3k_u(b, e) - 4);
    }
}
void dequant_block(const BlockQ3K& b, float* y) { dequant_q3k(b, y); }
void dequant_block(const BlockQ3KU16& b, float* y) { dequant_q3k(b, y); }

void dequant_block(const BlockQ4K& b, float* y) {
    const float d = fp16_to_f32(b.d);
    const float dmin = fp16_to_f32(b.dmin);
    for (int j = 0; j < 8; ++j) {
        const auto [sc, m] = k4_scale_min(b.scales, j);
        const float dl = d * static_cast<float>(sc);
        const float ml = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l) {
            const int q = (b.qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0F;
            y[j * 32 + l] = dl * static_cast<float>(q) - ml;
        }
    }
}

void dequant_block(const BlockQ5K& b, float* y) {
    const float d = fp16_to_f32(b.d);
    const float dmin = fp16_to_f32(b.dmin);
    for (int j = 0; j < 8; ++j) {
        const auto [sc, m] = k4_scale_min(b.scales, j);
        const float dl = d * static_cast<float>(sc);
        const float ml = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l) {
            const int q = ((b.qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0F) | (((b.qh[l] >> j) & 1) << 4);
            y[j * 32 + l] = dl * static_cast<float>(q) - ml;
        }
    }
}

void dequant_block(const BlockQ6K& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int e = 0; e < kQK; ++e) {
        const int half = e / 128, n = (e / 64) % 2, m = e % 64;
        const int lo = (b.ql[half * 64 + m] >> (4 * n)) & 0x0F;
        const int hi = (b.qh[half * 32 + m % 32] >> (2 * (2 * n + m / 32))) & 3;
        const float dl = d * static_cast<float>(b.scales[e / 16]);
        y[e] = dl * static_cast<float>((lo | (hi << 4)) - 32);
    }
}

void dequant_block(const BlockQ8K& b, float* y) {
    for (int j = 0; j < kQK; ++j) y[j] = b.d * static_cast<float>(b.qs[j]);
}

void dequant_block(const BlockTq1_0& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int e = 0; e < kQK; ++e) {
        y[e] = d * static_cast<float>(tq1_trit(b, e) - 1);
    }
}

void dequant_block(const BlockTq2_0& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int e = 0; e < kQK; ++e) {
        const int half = e / 128, s = (e / 32) % 4, l = e % 32;
        const int q = (b.qs[half * 32 + l] >> (2 * s)) & 3;
        y[e] = d * static_cast<float>(q - 1);
    }
}

// The byte value j of a packed grid entry, as the float the format multiplies by.
template <typename Word>
float grid_value(Word entry, int j) {
    return static_cast<float>(static_cast<uint8_t>(entry >> (8 * j)));
}

float sign_of(uint8_t sign_bits, int j) { return (sign_bits >> j) & 1 ? -1.0f : 1.0f; }

void dequant_block(const BlockIq2Xxs& b, float* y) {
    const float d = fp16_to_f32(b.d);
    const auto* qs = reinterpret_cast<const uint8_t*>(b.qs);
    for (int ib = 0; ib < 8; ++ib) {
        // Bytes 8*ib .. 8*ib+3: grid indices; 8*ib+4 .. +7: signs and scale.
        const uint32_t aux0 = load_u32(qs + 8 * ib);
        const uint32_t aux1 = load_u32(qs + 8 * ib + 4);
        const float db = d * (0.5f + static_cast<float>(aux1 >> 28)) * 0.25f;
        for (int l = 0; l < 4; ++l) {
            const uint64_t grid = kIq2xxsGrid[(aux0 >> (8 * l)) & 0xFF];
            const uint8_t signs = kKsigns[(aux1 >> (7 * l)) & 0x7F];
            for (int j = 0; j < 8; ++j) y[ib * 32 + l * 8 + j] = db * grid_value(grid, j) * sign_of(signs, j);
        }
    }
}

void dequant_block(const BlockIq2XxsU3& b, float* y) {
    // The same float operations as BlockIq2Xxs's, so the values are identical.
    const float d = fp16_to_f32(b.d);
    for (int g = 0; g < 8; ++g) {
        const float db = d * (0.5f + static_cast<float>(group_nibble(b, g))) * 0.25f;
        for (int e = 32 * g; e < 32 * g + 32; ++e) {
            const float m = static_cast<float>(kIq2xxsMagnitudes[iq2xxsu3_code(b, e)]);
            y[e] = db * m * (iq2xxsu3_minus(b, e) ? -1.0f : 1.0f);
        }
    }
}

void dequant_block(const BlockIq3XxsU4& b, float* y) {
    // The same float operations as BlockIq3Xxs's, so the values are identical.
    const float d = fp16_to_f32(b.d);
    for (int g = 0; g < 8; ++g) {
        const float db = d * (0.5f + static_cast<float>(group_nibble(b, g))) * 0.5f;
        for (int e = 32 * g; e < 32 * g + 32; ++e) {
            const int nibble = iq3xxsu4_nibble(b, e);
            y[e] = db * static_cast<float>(kIq3xxsMagnitudes[nibble & 7]) * (nibble & 8 ? -1.0f : 1.0f);
        }
    }
}

void dequant_block(const BlockIq2Xs& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int g = 0; g < 32; ++g) {
        const int ls = (b.scales[g / 4] >> (4 * ((g / 2) % 2))) & 0x0F;
        const float db = d * (0.5f + static_cast<float>(ls)) * 0.25f;
        const uint64_t grid = kIq2xsGrid[b.qs[g] & 511];
        const uint8_t signs = kKsigns[b.qs[g] >> 9];
        for (int j = 0; j < 8; ++j) y[g * 8 + j] = db * grid_value(grid, j) * sign_of(signs, j);
    }
}

void dequant_block(const BlockIq2S& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int g = 0; g < 32; ++g) {
        const int ls = (b.scales[g / 4] >> (4 * ((g / 2) % 2))) & 0x0F;
        const float db = d * (0.5f + static_cast<float>(ls)) * 0.25f;
        const uint64_t grid = kIq2sGrid[b.qs[g] | (((b.qh[g / 4] >> (2 * (g % 4))) & 3) << 8)];
        for (int j = 0; j < 8; ++j) y[g * 8 + j] = db * grid_value(grid, j) * sign_of(b.signs[g], j);
    }
}

void dequant_block(const BlockIq3Xxs& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int ib = 0; ib < 8; ++ib) {
        const uint32_t aux = load_u32(b.qs + 64 + 4 * ib);  // after the 64 grid indices
        const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.5f;
        for (int l = 0; l < 4; ++l) {
            const uint8_t signs = kKsigns[(aux >> (7 * l)) & 0x7F];
            const uint32_t grid1 = kIq3xxsGrid[b.qs[8 * ib + 2 * l]];
            const uint32_t grid2 = kIq3xxsGrid[b.qs[8 * ib + 2 * l + 1]];
            float* out = y + ib * 32 + l * 8;
            for (int j = 0; j < 4; ++j) {
                out[j] = db * grid_value(grid1, j) * sign_of(signs, j);
                out[j + 4] = db * grid_value(grid2, j) * sign_of(signs, j + 4);
            }
        }
    }
}

void dequant_block(const BlockIq3S& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int g = 0; g < 64; ++g) {
        const int ib = g / 8;  // sub-block of 32
        const int sc = (b.scales[ib / 2] >> (4 * (ib % 2))) & 0x0F;
        const float db = d * static_cast<float>(1 + 2 * sc);
        const uint32_t grid = kIq3sGrid[b.qs[g] | (((b.qh[g / 8] >> (g % 8)) & 1) << 8)];
        for (int j = 0; j < 4; ++j) {
            const int e = g * 4 + j;
            y[e] = db * grid_value(grid, j) * sign_of(b.signs[e / 8], e % 8);
        }
    }
}

// IQ1 grids hold int8 values -1/0/+1.
float grid_value_i8(uint64_t entry, int j) {
    return static_cast<float>(static_cast<int8_t>(static_cast<uint8_t>(entry >> (8 * j))));
}

void dequant_block(const BlockIq1S& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int ib = 0; ib < 8; ++ib) {
        const uint16_t qh = b.qh[ib];
        const float dl = d * static_cast<float>(2 * ((qh >> 12) & 7) + 1);
        const float delta = (qh & 0x8000) ? -kIq1Delta : kIq1Delta;
        for (int l = 0; l < 4; ++l) {
            const uint64_t grid = kIq1sGrid[b.qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8)];
            for (int j = 0; j < 8; ++j) y[ib * 32 + l * 8 + j] = dl * (grid_value_i8(grid, j) + delta);
        }
    }
}

void dequant_block(const BlockIq1SU2& b, float* y) {
    // The same float operations as BlockIq1S's, so the values are identical.
    const float d = fp16_to_f32(b.d);
    for (int g = 0; g < 8; ++g) {
        const int nibble = group_nibble(b, g);
        const float dl = d * static_cast<float>(2 * (nibble & 7) + 1);
        const float delta = (nibble & 8) ? -kIq1Delta : kIq1Delta;
        for (int k = 0; k < 32; ++k) y[32 * g + k] = dl * (static_cast<float>(iq1su2_u(b, 32 * g + k) - 1) + delta);
    }
}

void dequant_block(const BlockIq1M& b, float* y) {
    const float d = fp16_to_f32(iq1m_scale_bits(b));
    for (int g = 0; g < 32; ++g) {
        const int sc = iq1m_sub_scale(b, g / 2);
        const float dl = d * static_cast<float>(2 * sc + 1);
        const int nib = (b.qh[g / 2] >> (4 * (g % 2))) & 0x0F;
        const float delta = (nib & 0x08) ? -kIq1Delta : kIq1Delta;
        const uint64_t grid = kIq1sGrid[b.qs[g] | ((nib & 7) << 8)];
        for (int j = 0; j < 8; ++j) y[g * 8 + j] = dl * (grid_value_i8(grid, j) + delta);
    }
}

void dequant_block(const BlockIq1MU2& b, float* y) {
    // The same float operations as BlockIq1M's, so the values are identical.
    const float d = fp16_to_f32(iq1m_scale_bits(b));
    for (int s = 0; s < 16; ++s) {
        const float dl = d * static_cast<float>(2 * iq1m_sub_scale(b, s) + 1);
        for (int e = 16 * s; e < 16 * s + 16; ++e) {
            const float delta = iq1mu2_minus(b, e) ? -kIq1Delta : kIq1Delta;
            y[e] = dl * (static_cast<float>(iq1mu2_u(b, e) - 1) + delta);
        }
    }
}

void dequant_block(const BlockIq4Xs& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int ib = 0; ib < 8; ++ib) {
        const float dl = d * static_cast<float>(iq4xs_scale(b, ib));
        for (int j = 0; j < 16; ++j) {
            const uint8_t q = b.qs[16 * ib + j];
            y[32 * ib + j] = dl * static_cast<float>(kIq4nlValues[q & 0x0F]);
            y[32 * ib + 16 + j] = dl * static_cast<float>(kIq4nlValues[q >> 4]);
        }
    }
}

template <typename Block, int kBlockSize>
void dequant_blocks(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const Block*>(src);
    for (int64_t i = 0; i < n / kBlockSize; ++i) dequant_block(blocks[i], dst + i * kBlockSize);
}

void dequant_f32(const void* src, float* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }

void dequant_f16(const void* src, float* dst, int64_t n) {
    const auto* h = static_cast<const uint16_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_f32(h[i]);
}

void dequant_bf16(const void* src, float* dst, int64_t n) {
    const auto* h = static_cast<const uint16_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(h[i]);
}

using DequantFn = void (*)(const void*, float*, int64_t);

DequantFn dequant_fn(GgmlType type) {
    using T = GgmlType;
    switch (type) {
        case T::F32: return dequant_f32;
        case T::F16: return dequant_f16;
        case T::BF16: return dequant_bf16;
        case T::Q4_0: return dequant_blocks<BlockQ4_0, kQ32>;
        case T::Q4_1: return dequant_blocks<BlockQ4_1, kQ32>;
        case T::Q5_0: return dequant_blocks<BlockQ5_0, kQ32>;
        case T::Q5_1: return dequant_blocks<BlockQ5_1, kQ32>;
        case T::Q8_0: return dequant_blocks<BlockQ8_0, kQ32>;
        case T::Q8_1: return dequant_blocks<BlockQ8_1, kQ32>;
        case T::IQ4_NL: return dequant_blocks<BlockIq4Nl, kQ32>;
        case T::MXFP4: return dequant_blocks<BlockMxfp4, kQ32>;
        case T::Q2_K: return dequant_blocks<BlockQ2K, kQK>;
        case T::Q2_K_U16: return dequant_blocks<BlockQ2KU16, kQK>;
        case T::Q3_K: return dequant_blocks<BlockQ3K, kQK>;
        case T::Q3_K_U16: return dequant_blocks<BlockQ3KU16, kQK>;
        case T::Q4_K: return dequant_blocks<BlockQ4K, kQK>;
        case T::Q5_K: return dequant_blocks<BlockQ5K, kQK>;
        case T::Q6_K: return dequant_blocks<BlockQ6K, kQK>;
        case T::Q8_K: return dequant_blocks<BlockQ8K, kQK>;
        case T::TQ1_0: return dequant_blocks<BlockTq1_0, kQK>;
        case T::TQ2_0: return dequant_blocks<BlockTq2_0, kQK>;
        case T::IQ2_XXS: return dequant_blocks<BlockIq2Xxs, kQK>;
        case T::IQ2_XS: return dequant_blocks<BlockIq2Xs, kQK>;
        case T::IQ2_S: return dequant_blocks<BlockIq2S, kQK>;
        case T::IQ3_XXS: return dequant_blocks<BlockIq3Xxs, kQK>;
        case T::IQ3_S: return dequant_blocks<BlockIq3S, kQK>;
        case T::IQ1_S: return dequant_blocks<BlockIq1S, kQK>;
        case T::IQ1_S_U2: return dequant_blocks<BlockIq1SU2, kQK>;
        case T::IQ1_M: return dequant_blocks<BlockIq1M, kQK>;
        case T::IQ1_M_U2: return dequant_blocks<BlockIq1MU2, kQK>;
        case T::IQ2_XXS_U3: return dequant_blocks<BlockIq2XxsU3, kQK>;
        case T::IQ3_XXS_U4: return dequant_blocks<BlockIq3XxsU4, kQK>;
        case T::IQ4_XS: return dequant_blocks<BlockIq4Xs, kQK>;
        default: return nullptr;
    }
}

}  // namespace

bool can_dequantize(GgmlType type) { return dequant_fn(type) != nullptr; }

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
    const DequantFn fn = dequant_fn(type);
    if (!fn) fail("dequantize: no dequantizer for type {}", ggml_type_name(type));
    const int64_t block = ggml_traits(type).block_size;
    if (n < 0 || n % block != 0) fail("dequantize: {} values is not a whole number of {} blocks of {}", n, ggml_type_name(type), block);
    fn(src, dst, n);
}

}  // namespace tandem::quant
