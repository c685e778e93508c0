// Scalar reference dot products for every format.
//
// Each block is first written in one integer form,
//     w[e] = da * (sc[g] * q[e] + ca[g]) + db * cb[g],   g = e / 16,
// with integer q, sc, ca, cb (to_int below; one function per format, read off the format's
// dequantizer). The dot with an activation block (x = ad * qa, bsum[g] = sum of qa over
// group g) is then exact integer arithmetic followed by one float combination per block:
//     ad * (da * sum_g (sc[g] * sum_e q*qa + ca[g] * bsum[g]) + db * sum_g cb[g] * bsum[g]).
// The SIMD kernels compute the same integers, so they differ from this only in the order
// of the float additions across blocks.
#include <cstring>

#include "quant/blocks.h"
#include "quant/grids.h"
#include "quant/unpack.h"
#include "quant/vec_dot_impl.h"

namespace tandem::quant {
namespace {

struct IntBlock {
    int32_t q[kQK];      // [n] integer weight values (first 32 used by 32-wide formats)
    int32_t sc[16];      // [n/16] multiplier of q
    int32_t ca[16];      // [n/16] offset, scaled by da
    int32_t cb[16];      // [n/16] offset, scaled by db
    float da = 0.0f;
    float db = 0.0f;
};

void clear_groups(IntBlock& ib, int n_groups) {
    for (int g = 0; g < n_groups; ++g) {
        ib.sc[g] = 1;
        ib.ca[g] = 0;
        ib.cb[g] = 0;
    }
    ib.db = 0.0f;
}

// ---- 32-wide formats (two groups of 16) ----

void to_int(const BlockQ4_0& b, IntBlock& ib) {
    clear_groups(ib, 2);
    ib.da = fp16_to_f32(b.d);
    for (int j = 0; j < 16; ++j) {
        ib.q[j] = b.qs[j] & 0x0F;
        ib.q[j + 16] = b.qs[j] >> 4;
    }
    ib.ca[0] = ib.ca[1] = -8;
}

void to_int(const BlockQ4_1& b, IntBlock& ib) {
    clear_groups(ib, 2);
    ib.da = fp16_to_f32(b.d);
    for (int j = 0; j < 16; ++j) {
        ib.q[j] = b.qs[j] & 0x0F;
        ib.q[j + 16] = b.qs[j] >> 4;
    }
    ib.db = fp16_to_f32(b.m);
    ib.cb[0] = ib.cb[1] = 1;
}

void q5_values(const uint8_t* qs, const uint8_t* qh_bytes, int32_t* q) {
    const uint32_t qh = load_u32(qh_bytes);
    for (int j = 0; j < 16; ++j) {
        q[j] = static_cast<int32_t>((qs[j] & 0x0Fu) | (((qh >> j) & 1u) << 4));
        q[j + 16] = static_cast<int32_t>((qs[j] >> 4u) | (((qh >> (j + 16)) & 1u) << 4));
    }
}

void to_int(const BlockQ5_0& b, IntBlock& ib) {
    clear_groups(ib, 2);
    ib.da = fp16_to_f32(b.d);
    q5_values(b.qs, b.qh, ib.q);
    ib.ca[0] = ib.ca[1] = -16;
}

void to_int(const BlockQ5_1& b, IntBlock& ib) {
    clear_groups(ib, 2);
    ib.da = fp16_to_f32(b.d);
    q5_values(b.qs, b.qh, ib.q);
    ib.db = fp16_to_f32(b.m);
    ib.cb[0] = ib.cb[1] = 1;
}

void to_int(const BlockQ8_0& b, IntBlock& ib) {
    clear_groups(ib, 2);
    ib.da = fp16_to_f32(b.d);
    for (int j = 0; j < 32; ++j) ib.q[j] = b.qs[j];
}

void to_int(const BlockQ8_1& b, IntBlock& ib) {
    clear_groups(ib, 2);
    ib.da = b.d;
    for (int j = 0; j < 32; ++j) ib.q[j] = b.qs[j];
}

void to_int(const BlockIq4Nl& b, IntBlock& ib) {
    clear_groups(ib, 2);
    ib.da = fp16_to_f32(b.d);
    for (int j = 0; j < 16; ++j) {
        ib.q[j] = kIq4nlValues[b.qs[j] & 0x0F];
        ib.q[j + 16] = kIq4nlValues[b.qs[j] >> 4];
    }
}

void to_int(const BlockMxfp4& b, IntBlock& ib) {
    clear_groups(ib, 2);
    ib.da = e8m0_to_f32_half(b.e);
    for (int j = 0; j < 16; ++j) {
        ib.q[j] = kMxfp4Values[b.qs[j] & 0x0F];
        ib.q[j + 16] = kMxfp4Values[b.qs[j] >> 4];
    }
}

// ---- K-quants ----

template <typename Block>  // Q2_K, Q2_K_U16
void q2k_to_int(const Block& b, IntBlock& ib) {
    ib.da = fp16_to_f32(b.d);
    ib.db = fp16_to_f32(b.dmin);
    for (int g = 0; g < 16; ++g) {
        ib.sc[g] = q2k_scale(b, 16 * g);
        ib.ca[g] = 0;
        ib.cb[g] = -q2k_min(b, 16 * g);
    }
    for (int e = 0; e < kQK; ++e) ib.q[e] = q2k_q(b, e);
}
void to_int(const BlockQ2K& b, IntBlock& ib) { q2k_to_int(b, ib); }
void to_int(const BlockQ2KU16& b, IntBlock& ib) { q2k_to_int(b, ib); }

template <typename Block>  // Q3_K, Q3_K_U16
void q3k_to_int(const Block& b, IntBlock& ib) {
    ib.da = fp16_to_f32(b.d);
    ib.db = 0.0f;
    for (int g = 0; g < 16; ++g) {
        ib.sc[g] = q3k_scale(b.scales, g);
        ib.ca[g] = -4 * ib.sc[g];  // q below is stored + 4
        ib.cb[g] = 0;
    }
    for (int e = 0; e < kQK; ++e) ib.q[e] = q3k_u(b, e);
}
void to_int(const BlockQ3K& b, IntBlock& ib) { q3k_to_int(b, ib); }
void to_int(const BlockQ3KU16& b, IntBlock& ib) { q3k_to_int(b, ib); }

template <typename Block>
void k4_groups(const Block& b, IntBlock& ib) {
    ib.da = fp16_to_f32(b.d);
    ib.db = fp16_to_f32(b.dmin);
    for (int g = 0; g < 16; ++g) {
        const auto [sc, m] = k4_scale_min(b.scales, g / 2);
        ib.sc[g] = sc;
        ib.ca[g] = 0;
        ib.cb[g] = -m;
    }
}

void to_int(const BlockQ4K& b, IntBlock& ib) {
    k4_groups(b, ib);
    for (int e = 0; e < kQK; ++e) ib.q[e] = (b.qs[(e / 64) * 32 + e % 32] >> (4 * ((e / 32) % 2))) & 0x0F;
}

void to_int(const BlockQ5K& b, IntBlock& ib) {
    k4_groups(b, ib);
    for (int e = 0; e < kQK; ++e)
        ib.q[e] = ((b.qs[(e / 64) * 32 + e % 32] >> (4 * ((e / 32) % 2))) & 0x0F) | (((b.qh[e % 32] >> (e / 32)) & 1) << 4);
}

void to_int(const BlockQ6K& b, IntBlock& ib) {
    ib.da = fp16_to_f32(b.d);
    ib.db = 0.0f;
    for (int g = 0; g < 16; ++g) {
        ib.sc[g] = b.scales[g];
        ib.ca[g] = -32 * ib.sc[g];  // q below is stored + 32
        ib.cb[g] = 0;
    }
    for (int e = 0; e < kQK; ++e) {
        const int half = e / 128, n = (e / 64) % 2, m = e % 64;
        const int lo = (b.ql[half * 64 + m] >> (4 * n)) & 0x0F;
        const int hi = (b.qh[half * 32 + m % 32] >> (2 * (2 * n + m / 32))) & 3;
        ib.q[e] = lo | (hi << 4);
    }
}

void to_int(const BlockQ8K& b, IntBlock& ib) {
    clear_groups(ib, 16);
    ib.da = b.d;
    for (int e = 0; e < kQK; ++e) ib.q[e] = b.qs[e];
}

void to_int(const BlockTq1_0& b, IntBlock& ib) {
    clear_groups(ib, 16);
    ib.da = fp16_to_f32(b.d);
    for (int g = 0; g < 16; ++g) ib.ca[g] = -1;
    for (int e = 0; e < kQK; ++e) ib.q[e] = tq1_trit(b, e);
}

void to_int(const BlockTq2_0& b, IntBlock& ib) {
    clear_groups(ib, 16);
    ib.da = fp16_to_f32(b.d);
    for (int g = 0; g < 16; ++g) ib.ca[g] = -1;
    for (int e = 0; e < kQK; ++e) ib.q[e] = (b.qs[(e / 128) * 32 + e % 32] >> (2 * ((e / 32) % 4))) & 3;
}

// ---- IQ formats: q = grid value * sign ----

int signed_grid(uint64_t entry, int j, uint8_t sign_bits) {
    const int v = static_cast<uint8_t>(entry >> (8 * j));
    return (sign_bits >> j) & 1 ? -v : v;
}

void to_int(const BlockIq2Xxs& b, IntBlock& ib) {
    // x = d * (0.5 + ls) * 0.25 * v = (d / 8) * (2 ls + 1) * v
    ib.da = fp16_to_f32(b.d) * 0.125f;
    ib.db = 0.0f;
    const auto* qs = reinterpret_cast<const uint8_t*>(b.qs);
    for (int i = 0; i < 8; ++i) {
        const uint32_t aux0 = load_u32(qs + 8 * i), aux1 = load_u32(qs + 8 * i + 4);
        ib.sc[2 * i] = ib.sc[2 * i + 1] = 2 * static_cast<int32_t>(aux1 >> 28) + 1;
        ib.ca[2 * i] = ib.ca[2 * i + 1] = ib.cb[2 * i] = ib.cb[2 * i + 1] = 0;
        for (int l = 0; l < 4; ++l) {
            const uint64_t grid = kIq2xxsGrid[(aux0 >> (8 * l)) & 0xFF];
            const uint8_t signs = kKsigns[(aux1 >> (7 * l)) & 0x7F];
            for (int j = 0; j < 8; ++j) ib.q[32 * i + 8 * l + j] = signed_grid(grid, j, signs);
        }
    }
}

// IQ2_XXS_U3 and IQ3_XXS_U4: the factor d * unit and the scales 2 ls + 1 (per 32 weights, so
// both 16-weight halves alike), no offsets.
template <typename Block>
void nibble_int_scales(const Block& b, float unit, IntBlock& ib) {
    ib.da = fp16_to_f32(b.d) * unit;
    ib.db = 0.0f;
    for (int g = 0; g < 16; ++g) {
        ib.sc[g] = 2 * group_nibble(b, g / 2) + 1;
        ib.ca[g] = ib.cb[g] = 0;
    }
}

void to_int(const BlockIq2XxsU3& b, IntBlock& ib) {
    nibble_int_scales(b, 0.125f, ib);  // as BlockIq2Xxs: (d / 8) * (2 ls + 1) * signed magnitude
    for (int e = 0; e < 256; ++e) ib.q[e] = (iq2xxsu3_minus(b, e) ? -1 : 1) * kIq2xxsMagnitudes[iq2xxsu3_code(b, e)];
}

void to_int(const BlockIq3XxsU4& b, IntBlock& ib) {
    nibble_int_scales(b, 0.25f, ib);  // as BlockIq3Xxs: (d / 4) * (2 ls + 1) * signed magnitude
    for (int e = 0; e < 256; ++e) {
        const int nibble = iq3xxsu4_nibble(b, e);
        ib.q[e] = (nibble & 8 ? -1 : 1) * kIq3xxsMagnitudes[nibble & 7];
    }
}

void iq2_scales(const uint8_t* scales, IntBlock& ib) {
    for (int g = 0; g < 16; ++g) {
        ib.sc[g] = 2 * ((scales[g / 2] >> (4 * (g % 2))) & 0x0F) + 1;
        ib.ca[g] = ib.cb[g] = 0;
    }
    ib.db = 0.0f;
}

void to_int(const BlockIq2Xs& b, IntBlock& ib) {
    ib.da = fp16_to_f32(b.d) * 0.125f;
    iq2_scales(b.scales, ib);
    for (int g = 0; g < 32; ++g) {
        const uint64_t grid = kIq2xsGrid[b.qs[g] & 511];
        const uint8_t signs = kKsigns[b.qs[g] >> 9];
        for (int j = 0; j < 8; ++j) ib.q[8 * g + j] = signed_grid(grid, j, signs);
    }
}

void to_int(const BlockIq2S& b, IntBlock& ib) {
    ib.da = fp16_to_f32(b.d) * 0.125f;
    iq2_scales(b.scales, ib);
    for (int g = 0; g < 32; ++g) {
        const uint64_t grid = kIq2sGrid[b.qs[g] | (((b.qh[g / 4] >> (2 * (g % 4))) & 3) << 8)];
        for (int j = 0; j < 8; ++j) ib.q[8 * g + j] = signed_grid(grid, j, b.signs[g]);
    }
}

void to_int(const BlockIq3Xxs& b, IntBlock& ib) {
    // x = d * (0.5 + ls) * 0.5 * v = (d / 4) * (2 ls + 1) * v
    ib.da = fp16_to_f32(b.d) * 0.25f;
    ib.db = 0.0f;
    for (int i = 0; i < 8; ++i) {
        const uint32_t aux = load_u32(b.qs + 64 + 4 * i);
        ib.sc[2 * i] = ib.sc[2 * i + 1] = 2 * static_cast<int32_t>(aux >> 28) + 1;
        ib.ca[2 * i] = ib.ca[2 * i + 1] = ib.cb[2 * i] = ib.cb[2 * i + 1] = 0;
        for (int l = 0; l < 4; ++l) {
            const uint8_t signs = kKsigns[(aux >> (7 * l)) & 0x7F];
            const uint64_t grid = kIq3xxsGrid[b.qs[8 * i + 2 * l]] | (uint64_t{kIq3xxsGrid[b.qs[8 * i + 2 * l + 1]]} << 32);
            for (int j = 0; j < 8; ++j) ib.q[32 * i + 8 * l + j] = signed_grid(grid, j, signs);
        }
    }
}

void to_int(const BlockIq3S& b, IntBlock& ib) {
    ib.da = fp16_to_f32(b.d);
    ib.db = 0.0f;
    for (int g = 0; g < 16; ++g) {
        ib.sc[g] = 1 + 2 * ((b.scales[g / 4] >> (4 * ((g / 2) % 2))) & 0x0F);
        ib.ca[g] = ib.cb[g] = 0;
    }
    for (int k = 0; k < 32; ++k) {  // pairs of grid entries: 8 values, one sign byte
        const uint64_t grid = kIq3sGrid[b.qs[2 * k] | (((b.qh[k / 4] >> ((2 * k) % 8)) & 1) << 8)] |
                              (uint64_t{kIq3sGrid[b.qs[2 * k + 1] | (((b.qh[k / 4] >> ((2 * k + 1) % 8)) & 1) << 8)]} << 32);
        for (int j = 0; j < 8; ++j) ib.q[8 * k + j] = signed_grid(grid, j, b.signs[k]);
    }
}

void to_int(const BlockIq1S& b, IntBlock& ib) {
    // x = d (2s+1) (g +- 1/8) = (d/8) * (8 (2s+1) * g +- (2s+1)): the delta is a per-32 offset.
    ib.da = fp16_to_f32(b.d) * 0.125f;
    ib.db = 0.0f;
    for (int i = 0; i < 8; ++i) {
        const uint16_t qh = b.qh[i];
        const int32_t s = 2 * ((qh >> 12) & 7) + 1;
        ib.sc[2 * i] = ib.sc[2 * i + 1] = 8 * s;
        ib.ca[2 * i] = ib.ca[2 * i + 1] = (qh & 0x8000) ? -s : s;
        ib.cb[2 * i] = ib.cb[2 * i + 1] = 0;
        for (int l = 0; l < 4; ++l) {
            const uint64_t grid = kIq1sGrid[b.qs[4 * i + l] | (((qh >> (3 * l)) & 7) << 8)];
            for (int j = 0; j < 8; ++j) ib.q[32 * i + 8 * l + j] = static_cast<int8_t>(grid >> (8 * j));
        }
    }
}

void to_int(const BlockIq1SU2& b, IntBlock& ib) {
    // As BlockIq1S: q = u - 1 is the grid value.
    ib.da = fp16_to_f32(b.d) * 0.125f;
    ib.db = 0.0f;
    for (int g = 0; g < 8; ++g) {
        const int nibble = group_nibble(b, g);
        const int32_t s = 2 * (nibble & 7) + 1;
        ib.sc[2 * g] = ib.sc[2 * g + 1] = 8 * s;
        ib.ca[2 * g] = ib.ca[2 * g + 1] = (nibble & 8) ? -s : s;
        ib.cb[2 * g] = ib.cb[2 * g + 1] = 0;
        for (int k = 0; k < 32; ++k) ib.q[32 * g + k] = iq1su2_u(b, 32 * g + k) - 1;
    }
}

// IQ1_M and IQ1_M_U2: the factor d / 8 and the scales 2 sc + 1 per 16, no offsets (the delta
// sign changes every 8 values, finer than a group: it is folded into q = 8 g +- 1).
template <typename Block>
void iq1m_int_scales(const Block& b, IntBlock& ib) {
    ib.da = fp16_to_f32(iq1m_scale_bits(b)) * 0.125f;
    ib.db = 0.0f;
    for (int g = 0; g < 16; ++g) {
        ib.sc[g] = 2 * iq1m_sub_scale(b, g) + 1;
        ib.ca[g] = ib.cb[g] = 0;
    }
}

void to_int(const BlockIq1M& b, IntBlock& ib) {
    iq1m_int_scales(b, ib);
    for (int k = 0; k < 32; ++k) {
        const int nib = (b.qh[k / 2] >> (4 * (k % 2))) & 0x0F;
        const int delta = (nib & 0x08) ? -1 : 1;
        const uint64_t grid = kIq1sGrid[b.qs[k] | ((nib & 7) << 8)];
        for (int j = 0; j < 8; ++j) ib.q[8 * k + j] = 8 * static_cast<int8_t>(grid >> (8 * j)) + delta;
    }
}

void to_int(const BlockIq1MU2& b, IntBlock& ib) {
    iq1m_int_scales(b, ib);  // q = 8 (u - 1) +- 1, as BlockIq1M's
    for (int e = 0; e < 256; ++e) ib.q[e] = 8 * (iq1mu2_u(b, e) - 1) + (iq1mu2_minus(b, e) ? -1 : 1);
}

void to_int(const BlockIq4Xs& b, IntBlock& ib) {
    ib.da = fp16_to_f32(b.d);
    ib.db = 0.0f;
    for (int g = 0; g < 16; ++g) {
        ib.sc[g] = iq4xs_scale(b, g / 2);
        ib.ca[g] = ib.cb[g] = 0;
    }
    for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 16; ++j) {
            ib.q[32 * i + j] = kIq4nlValues[b.qs[16 * i + j] & 0x0F];
            ib.q[32 * i + 16 + j] = kIq4nlValues[b.qs[16 * i + j] >> 4];
        }
}

// One block's contribution, given the activation's values, group sums and scale.
float block_dot(const IntBlock& ib, int n, const int8_t* qa, const int32_t* bsum, float ad) {
    int64_t sum_a = 0, sum_b = 0;
    for (int g = 0; g < n / 16; ++g) {
        int64_t s = 0;
        for (int j = 0; j < 16; ++j) s += int64_t{ib.q[16 * g + j]} * qa[16 * g + j];
        sum_a += ib.sc[g] * s + int64_t{ib.ca[g]} * bsum[g];
        sum_b += int64_t{ib.cb[g]} * bsum[g];
    }
    return ad * (ib.da * static_cast<float>(sum_a) + ib.db * static_cast<float>(sum_b));
}

// A Q8_K block's values in natural order: as they are, or (Q8_K_U2) taken back from IQ1_S_U2's
// order into `buf`.
const int8_t* natural_values(const BlockQ8K& a, int8_t*) { return a.qs; }
const int8_t* natural_values(const BlockQ8KU2& a, int8_t* buf) {
    for (int e = 0; e < kQK; ++e) buf[e] = a.qs[u2_position(e)];
    return buf;
}
const int8_t* natural_values(const BlockQ8KU16& a, int8_t* buf) {
    for (int e = 0; e < kQK; ++e) buf[e] = a.qs[u16_position(e)];
    return buf;
}

template <typename Block, typename Act = BlockQ8K>
float dot_k(const void* w, const void* a, int64_t n) {  // 256-wide weights . Q8_K (or its ordered forms) activations
    const auto* wb = static_cast<const Block*>(w);
    const auto* ab = static_cast<const Act*>(a);
    IntBlock ib;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / kQK; ++i) {
        to_int(wb[i], ib);
        const Act& q = ab[i];
        int8_t buf[kQK];
        int32_t bsum[16];
        for (int g = 0; g < 16; ++g) bsum[g] = q.bsums[g];
        sum += block_dot(ib, kQK, natural_values(ab[i], buf), bsum, q.d);
    }
    return sum;
}

template <typename Block>
float dot_32(const void* w, const void* a, int64_t n) {  // 32-wide weights . Q8_0 activations
    const auto* wb = static_cast<const Block*>(w);
    const auto* ab = static_cast<const BlockQ8_0*>(a);
    IntBlock ib;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / kQ32; ++i) {
        to_int(wb[i], ib);
        int32_t bsum[2] = {0, 0};
        for (int j = 0; j < 32; ++j) bsum[j / 16] += ab[i].qs[j];
        sum += block_dot(ib, kQ32, ab[i].qs, bsum, fp16_to_f32(ab[i].d));
    }
    return sum;
}

template <float (*kToF32)(uint16_t)>
float dot_half(const void* w, const void* a, int64_t n) {
    const auto* wh = static_cast<const uint16_t*>(w);
    const auto* x = static_cast<const float*>(a);
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i) sum += kToF32(wh[i]) * x[i];
    return sum;
}

float dot_f32(const void* w, const void* a, int64_t n) {
    const auto* wf = static_cast<const float*>(w);
    const auto* x = static_cast<const float*>(a);
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i) sum += wf[i] * x[i];
    return sum;
}

}  // namespace

VecDotFn scalar_kernel(GgmlType type) {
    using T = GgmlType;
    switch (type) {
        case T::F32: return dot_f32;
        case T::F16: return dot_half<fp16_to_f32>;
        case T::BF16: return dot_half<bf16_to_f32>;
        case T::Q4_0: return dot_32<BlockQ4_0>;
        case T::Q4_1: return dot_32<BlockQ4_1>;
        case T::Q5_0: return dot_32<BlockQ5_0>;
        case T::Q5_1: return dot_32<BlockQ5_1>;
        case T::Q8_0: return dot_32<BlockQ8_0>;
        case T::Q8_1: return dot_32<BlockQ8_1>;
        case T::IQ4_NL: return dot_32<BlockIq4Nl>;
        case T::MXFP4: return dot_32<BlockMxfp4>;
        case T::Q2_K: return dot_k<BlockQ2K>;
        case T::Q2_K_U16: return dot_k<BlockQ2KU16, BlockQ8KU16>;
        case T::Q3_K: return dot_k<BlockQ3K>;
        case T::Q3_K_U16: return dot_k<BlockQ3KU16, BlockQ8KU16>;
        case T::Q4_K: return dot_k<BlockQ4K>;
        case T::Q5_K: return dot_k<BlockQ5K>;
        case T::Q6_K: return dot_k<BlockQ6K>;
        case T::Q8_K: return dot_k<BlockQ8K>;
        case T::TQ1_0: return dot_k<BlockTq1_0>;
        case T::TQ2_0: return dot_k<BlockTq2_0>;
        case T::IQ2_XXS: return dot_k<BlockIq2Xxs>;
        case T::IQ2_XS: return dot_k<BlockIq2Xs>;
        case T::IQ2_S: return dot_k<BlockIq2S>;
        case T::IQ3_XXS: return dot_k<BlockIq3Xxs>;
        case T::IQ3_S: return dot_k<BlockIq3S>;
        case T::IQ1_S: return dot_k<BlockIq1S>;
        case T::IQ1_S_U2: return dot_k<BlockIq1SU2, BlockQ8KU2>;
        case T::IQ1_M: return dot_k<BlockIq1M>;
        case T::IQ1_M_U2: return dot_k<BlockIq1MU2, BlockQ8KU16>;
        case T::IQ2_XXS_U3: return dot_k<BlockIq2XxsU3, BlockQ8KU2>;
        case T::IQ3_XXS_U4: return dot_k<BlockIq3XxsU4>;
        case T::IQ4_XS: return dot_k<BlockIq4Xs>;
        default: return nullptr;
    }
}

}  // namespace tandem::quant
