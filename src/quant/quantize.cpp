// Quantization from f32: activations (Q8_0, Q8_K), test models and a future quantize verb.
//
// Round-to-nearest with a per-block scale search: each sub-block's scale (and min, for the
// offset formats) comes from its range, the sub-block scales are themselves quantized to the
// format's 4/6/8 bits, and the elements are then rounded against the *quantized* scales so
// that the rounding sees the values the dequantizer will use. No importance weighting.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/check.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/unpack.h"
#include "quant/vec_dot.h"

namespace tandem::quant {
namespace {

int nearest_int(float x) { return static_cast<int>(std::lrintf(x)); }

// The element of largest magnitude, with its sign: scaling by it (instead of by |max|) lets a
// format with an asymmetric range (-8..7, -32..31) use its extra negative level.
float signed_absmax(const float* x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; ++i) {
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            max = x[i];
        }
    }
    return max;
}

void quant_block(const float* x, BlockQ8_0& b) {  // x: [32]
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = f32_to_fp16(d);
    for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(std::clamp(nearest_int(x[j] * id), -127, 127));
}

void quant_block(const float* x, BlockQ4_0& b) {
    const float max = signed_absmax(x, 32);
    const float d = max / -8.0f;
    b.d = f32_to_fp16(d);
    const float dq = fp16_to_f32(b.d);
    const float id = dq != 0.0f ? 1.0f / dq : 0.0f;
    for (int j = 0; j < 16; ++j) {
        const int lo = std::clamp(nearest_int(x[j] * id) + 8, 0, 15);
        const int hi = std::clamp(nearest_int(x[j + 16] * id) + 8, 0, 15);
        b.qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
}

// Q8_K, the activations of the K and IQ formats' dot products: q = round(x * 127 / amax),
// amax the largest |x| of the block, then the 16-value sums. The reference; quant_block_q8k
// below is the same arithmetic eight lanes at a time.
void quant_block_ref(const float* x, BlockQ8K& b) {  // x: [256]
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    // A block below ~4e-37 (127 / amax overflows) quantizes to zeros like an all-zero one.
    const float id = 127.0f / amax;
    if (amax == 0.0f || std::isinf(id)) {
        std::memset(&b, 0, sizeof(b));
        return;
    }
    // A NaN (x NaN, or x infinite: then amax is, and id 0) takes -127, as VCVTPS2DQ's
    // "integer indefinite" clamps in quant_block_q8k (lrintf's is 0 in the low 32 bits).
    for (int j = 0; j < kQK; ++j) {
        const float y = x[j] * id;
        b.qs[j] = static_cast<int8_t>(std::isnan(y) ? -127 : std::clamp(nearest_int(y), -127, 127));
    }
    for (int s = 0; s < 16; ++s) {
        int sum = 0;
        for (int j = 0; j < 16; ++j) sum += b.qs[16 * s + j];
        b.bsums[s] = static_cast<int16_t>(sum);
    }
    b.d = 1.0f / id;
}

// quant_block_ref on AVX2 (every CPU tandem runs on), bit for bit: the same float product per
// value, rounded by VCVTPS2DQ in the default mode (nearest even, as lrintf), the maximum taken
// so that a NaN is skipped as std::max skips it, a NaN product clamped to -127 as there. NOTES: a prefill quantizes every token's row
// for every int8 product (n_tok x n_in values), which the scalar loop's lrintf calls made a
// large part of a product with few rows: 69% of `bench_cpu gemm/Q6_K/128x512/tok512` (MLA's
// W_uv per head) on Zen 4.
void quant_block_q8k(const float* x, BlockQ8K& b) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 vmax = _mm256_setzero_ps();
    for (int j = 0; j < kQK; j += 8) vmax = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask), vmax);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, vmax);
    float amax = 0.0f;
    for (float v : lanes) amax = std::max(amax, v);
    const float id = 127.0f / amax;
    if (amax == 0.0f || std::isinf(id)) {
        std::memset(&b, 0, sizeof(b));
        return;
    }
    const __m256 vid = _mm256_set1_ps(id);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // undoes the packs' lane interleave
    for (int j = 0; j < kQK; j += 32) {
        __m256i i[4];
        for (int k = 0; k < 4; ++k) i[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), vid));
        const __m256i q = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(b.qs + j),
                            _mm256_max_epi8(_mm256_permutevar8x32_epi32(q, order), _mm256_set1_epi8(-127)));
    }
    // Sums of 16: the bytes biased to unsigned (q + 128) summed by VPSADBW, less 16 x 128.
    for (int s = 0; s < 16; s += 2) {
        const __m256i u = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 16 * s)), _mm256_set1_epi8(-128));
        const __m256i sad = _mm256_sad_epu8(u, _mm256_setzero_si256());  // qwords: bytes 0-7, 8-15, 16-23, 24-31
        alignas(32) int64_t q8[4];
        _mm256_store_si256(reinterpret_cast<__m256i*>(q8), sad);
        b.bsums[s] = static_cast<int16_t>(q8[0] + q8[1] - 16 * 128);
        b.bsums[s + 1] = static_cast<int16_t>(q8[2] + q8[3] - 16 * 128);
    }
    b.d = 1.0f / id;
}

// Offset formats (Q2_K, Q4_K, Q5_K): x ~ scale * q - min with q in [0, n_levels - 1].
// Per sub-block of `sub` elements: the scale spans [min(x, 0), max(x)] (the format stores a
// non-negative min, so a sub-block that is all positive starts at 0), then the best of a few
// slightly narrower spans by squared error, since the extremes are often outliers.
struct ScaleMin {
    float scale;
    float min;  // subtracted: x ~ scale * q - min
};

ScaleMin fit_scale_min(const float* x, int sub, int n_levels) {
    float lo = 0.0f, hi = 0.0f;
    for (int j = 0; j < sub; ++j) {
        lo = std::min(lo, x[j]);
        hi = std::max(hi, x[j]);
    }
    if (hi == lo) return {0.0f, -lo};
    ScaleMin best{(hi - lo) / static_cast<float>(n_levels - 1), -lo};
    float best_err = INFINITY;
    for (int step = 0; step <= 6; ++step) {
        const float scale = (hi - lo) / (static_cast<float>(n_levels - 1) + 0.25f * static_cast<float>(step) - 0.75f);
        if (scale <= 0.0f) continue;
        float err = 0.0f;
        for (int j = 0; j < sub; ++j) {
            const int q = std::clamp(nearest_int((x[j] - lo) / scale), 0, n_levels - 1);
            const float diff = scale * static_cast<float>(q) + lo - x[j];
            err += diff * diff;
        }
        if (err < best_err) {
            best_err = err;
            best = {scale, -lo};
        }
    }
    return best;
}

// Quantizes non-negative sub-block scales to `bits` unsigned with one f16 super-scale;
// returns the stored f16 bits.
uint16_t quantize_scales(const float* v, int n, int bits, uint8_t* out) {
    const int top = (1 << bits) - 1;
    float vmax = 0.0f;
    for (int i = 0; i < n; ++i) vmax = std::max(vmax, v[i]);
    const uint16_t d16 = f32_to_fp16(vmax / static_cast<float>(top));
    const float d = fp16_to_f32(d16);
    const float id = d > 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(std::clamp(nearest_int(v[i] * id), 0, top));
    return d16;
}

// Rounds the elements of one offset sub-block against its stored (quantized) scale and min.
void round_offset(const float* x, int sub, float dl, float ml, int n_levels, uint8_t* q) {
    const float id = dl != 0.0f ? 1.0f / dl : 0.0f;
    for (int j = 0; j < sub; ++j) q[j] = static_cast<uint8_t>(std::clamp(nearest_int((x[j] + ml) * id), 0, n_levels - 1));
}

// Q4_K and Q5_K share the 8 x 32 scale/min layout; q gets the 4- or 5-bit values.
void quant_k4_common(const float* x, int n_levels, uint16_t& d_out, uint16_t& dmin_out, uint8_t* scales, uint8_t* q) {
    float sc[8], mn[8];
    for (int j = 0; j < 8; ++j) {
        const ScaleMin f = fit_scale_min(x + 32 * j, 32, n_levels);
        sc[j] = f.scale;
        mn[j] = f.min;
    }
    uint8_t isc[8], imn[8];
    d_out = quantize_scales(sc, 8, 6, isc);
    dmin_out = quantize_scales(mn, 8, 6, imn);
    // Byte layout of scales[12]: see BlockQ4K.
    for (int j = 0; j < 4; ++j) {
        scales[j] = static_cast<uint8_t>(isc[j] | ((isc[j + 4] >> 4) << 6));
        scales[j + 4] = static_cast<uint8_t>(imn[j] | ((imn[j + 4] >> 4) << 6));
        scales[j + 8] = static_cast<uint8_t>((isc[j + 4] & 0x0F) | ((imn[j + 4] & 0x0F) << 4));
    }
    const float d = fp16_to_f32(d_out), dmin = fp16_to_f32(dmin_out);
    for (int j = 0; j < 8; ++j) {
        const auto [s, m] = k4_scale_min(scales, j);
        round_offset(x + 32 * j, 32, d * static_cast<float>(s), dmin * static_cast<float>(m), n_levels, q + 32 * j);
    }
}

void quant_block(const float* x, BlockQ4K& b) {
    uint8_t q[kQK];
    quant_k4_common(x, 16, b.d, b.dmin, b.scales, q);
    for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) b.qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
}

void quant_block(const float* x, BlockQ5K& b) {
    uint8_t q[kQK];
    quant_k4_common(x, 32, b.d, b.dmin, b.scales, q);
    std::memset(b.qh, 0, sizeof(b.qh));
    for (int c = 0; c < 4; ++c) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t lo = q[64 * c + l], hi = q[64 * c + 32 + l];
            b.qs[32 * c + l] = static_cast<uint8_t>((lo & 0x0F) | ((hi & 0x0F) << 4));
            b.qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
        }
    }
}

void quant_block(const float* x, BlockQ2K& b) {
    float sc[16], mn[16];
    for (int s = 0; s < 16; ++s) {
        const ScaleMin f = fit_scale_min(x + 16 * s, 16, 4);
        sc[s] = f.scale;
        mn[s] = f.min;
    }
    uint8_t isc[16], imn[16];
    b.d = quantize_scales(sc, 16, 4, isc);
    b.dmin = quantize_scales(mn, 16, 4, imn);
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    uint8_t q[kQK];
    for (int s = 0; s < 16; ++s) {
        b.scales[s] = static_cast<uint8_t>(isc[s] | (imn[s] << 4));
        round_offset(x + 16 * s, 16, d * static_cast<float>(isc[s]), dmin * static_cast<float>(imn[s]), 4, q + 16 * s);
    }
    // qs byte (half*32 + l), bits 2s: element half*128 + s*32 + l.
    for (int half = 0; half < 2; ++half)
        for (int l = 0; l < 32; ++l) {
            uint8_t v = 0;
            for (int s = 0; s < 4; ++s) v |= static_cast<uint8_t>(q[half * 128 + s * 32 + l] << (2 * s));
            b.qs[half * 32 + l] = v;
        }
}

// Symmetric formats with signed sub-block scales (Q3_K, Q6_K): x ~ d * sc * q, q in
// [q_lo, q_hi] with q_lo = -q_hi - 1. Returns the per-sub-block real scales (signed).
void fit_symmetric(const float* x, int n_sub, int sub, int q_lo, float* scale) {
    for (int s = 0; s < n_sub; ++s) scale[s] = signed_absmax(x + sub * s, sub) / static_cast<float>(q_lo);
}

void quant_block(const float* x, BlockQ3K& b) {
    float scale[16];
    fit_symmetric(x, 16, 16, -4, scale);
    const float smax = signed_absmax(scale, 16);
    const float d = smax / -32.0f;
    b.d = f32_to_fp16(d);
    const float dq = fp16_to_f32(b.d);
    const float id = dq != 0.0f ? 1.0f / dq : 0.0f;
    int isc[16];
    for (int s = 0; s < 16; ++s) isc[s] = std::clamp(nearest_int(scale[s] * id), -32, 31);
    std::memset(b.scales, 0, sizeof(b.scales));
    for (int i = 0; i < 16; ++i) {
        const int u = isc[i] + 32;
        b.scales[i % 8] |= static_cast<uint8_t>((u & 0x0F) << (4 * (i / 8)));
        b.scales[8 + i % 4] |= static_cast<uint8_t>((u >> 4) << (2 * (i / 4)));
    }
    std::memset(b.hmask, 0, sizeof(b.hmask));
    std::memset(b.qs, 0, sizeof(b.qs));
    for (int e = 0; e < kQK; ++e) {
        const float dl = dq * static_cast<float>(q3k_scale(b.scales, e / 16));
        const int q = dl != 0.0f ? std::clamp(nearest_int(x[e] / dl), -4, 3) : 0;
        const int u = q + 4;  // low 2 bits in qs, bit 2 in hmask (set means no -4 offset)
        const int half = e / 128, s = (e / 32) % 4, l = e % 32;
        b.qs[half * 32 + l] |= static_cast<uint8_t>((u & 3) << (2 * s));
        b.hmask[l] |= static_cast<uint8_t>((u >> 2) << (e / 32));
    }
}

void quant_block(const float* x, BlockQ6K& b) {
    float scale[16];
    fit_symmetric(x, 16, 16, -32, scale);
    const float smax = signed_absmax(scale, 16);
    const float d = smax / -128.0f;
    b.d = f32_to_fp16(d);
    const float dq = fp16_to_f32(b.d);
    const float id = dq != 0.0f ? 1.0f / dq : 0.0f;
    for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<int8_t>(std::clamp(nearest_int(scale[s] * id), -128, 127));
    std::memset(b.ql, 0, sizeof(b.ql));
    std::memset(b.qh, 0, sizeof(b.qh));
    for (int e = 0; e < kQK; ++e) {
        const float dl = dq * static_cast<float>(b.scales[e / 16]);
        const int q = dl != 0.0f ? std::clamp(nearest_int(x[e] / dl), -32, 31) : 0;
        const int u = q + 32;
        const int half = e / 128, n = (e / 64) % 2, m = e % 64;
        b.ql[half * 64 + m] |= static_cast<uint8_t>((u & 0x0F) << (4 * n));
        b.qh[half * 32 + m % 32] |= static_cast<uint8_t>((u >> 4) << (2 * (2 * n + m / 32)));
    }
}

template <typename Block, int kBlockSize, void (*kQuant)(const float*, Block&) = quant_block>
void quant_blocks(const float* src, void* dst, int64_t n) {
    auto* blocks = static_cast<Block*>(dst);
    for (int64_t i = 0; i < n / kBlockSize; ++i) kQuant(src + i * kBlockSize, blocks[i]);
}
constexpr auto quant_q8k = quant_blocks<BlockQ8K, kQK, quant_block_q8k>;
constexpr auto quant_q8k_ref = quant_blocks<BlockQ8K, kQK, quant_block_ref>;

// Q8_K_U2 and Q8_K_U16 (quant/blocks.h): the Q8_K block, its values moved into the weights'
// order (u2_position keeps runs of 8, u16_position runs of 4: moved 4 at a time), and the
// kernels' starting term kCorr x the 16-value sums.
template <typename Block, int (*kPosition)(int), int kCorr, void (*kQuant)(const float*, BlockQ8K&)>
void quant_block_q8k_ordered(const float* x, Block& b) {
    BlockQ8K q;
    kQuant(x, q);
    b.d = q.d;
    std::memcpy(b.bsums, q.bsums, sizeof q.bsums);
    for (int e = 0; e < kQK; e += 4) std::memcpy(b.qs + kPosition(e), q.qs + e, 4);
    for (int i = 0; i < 16; ++i) b.corr[i] = kCorr * q.bsums[i];
    std::memset(b.pad, 0, sizeof b.pad);
}
// Q8_K_U2's row: the blocks, then each block's plus terms (16 x the sum of each 4-byte lane's 16
// values over the four chunks: what a weight byte 16 in that lane adds).
template <void (*kQuant)(const float*, BlockQ8K&)>
void quant_q8k_u2(const float* src, void* dst, int64_t n) {
    quant_blocks<BlockQ8KU2, kQK, quant_block_q8k_ordered<BlockQ8KU2, u2_position, -72, kQuant>>(src, dst, n);
    const auto* blocks = static_cast<const BlockQ8KU2*>(dst);
    const int64_t nb = n / kQK;
    for (int64_t k = 0; k < nb; ++k) {
        auto* plus = const_cast<int32_t*>(q8ku2_plus(blocks, nb, k));
        for (int i = 0; i < 16; ++i) {
            int32_t sum = 0;
            for (int c = 0; c < 4; ++c)
                for (int r = 0; r < 4; ++r) sum += blocks[k].qs[64 * c + 4 * i + r];
            plus[i] = 16 * sum;
        }
    }
}
template <void (*kQuant)(const float*, BlockQ8K&)>
constexpr auto quant_q8k_u16 = quant_blocks<BlockQ8KU16, kQK, quant_block_q8k_ordered<BlockQ8KU16, u16_position, -9, kQuant>>;

void quant_f32(const float* src, void* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }
void quant_f16(const float* src, void* dst, int64_t n) {
    auto* h = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) h[i] = f32_to_fp16(src[i]);
}
void quant_bf16(const float* src, void* dst, int64_t n) {
    auto* h = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) h[i] = f32_to_bf16(src[i]);
}

using QuantFn = void (*)(const float*, void*, int64_t);

QuantFn quant_fn(GgmlType type) {
    using T = GgmlType;
    switch (type) {
        case T::F32: return quant_f32;
        case T::F16: return quant_f16;
        case T::BF16: return quant_bf16;
        case T::Q8_0: return quant_blocks<BlockQ8_0, kQ32>;
        case T::Q4_0: return quant_blocks<BlockQ4_0, kQ32>;
        // The scalar reference where the scalar kernels are asked for (TANDEM_ISA=scalar).
        case T::Q8_K: return active_isa() == Isa::Scalar ? quant_q8k_ref : quant_q8k;
        case T::Q8_K_U2: return active_isa() == Isa::Scalar ? quant_q8k_u2<quant_block_ref> : quant_q8k_u2<quant_block_q8k>;
        case T::Q8_K_U16: return active_isa() == Isa::Scalar ? quant_q8k_u16<quant_block_ref> : quant_q8k_u16<quant_block_q8k>;
        case T::Q2_K: return quant_blocks<BlockQ2K, kQK>;
        case T::Q3_K: return quant_blocks<BlockQ3K, kQK>;
        case T::Q4_K: return quant_blocks<BlockQ4K, kQK>;
        case T::Q5_K: return quant_blocks<BlockQ5K, kQK>;
        case T::Q6_K: return quant_blocks<BlockQ6K, kQK>;
        default: return nullptr;
    }
}

}  // namespace

bool can_quantize(GgmlType type) { return quant_fn(type) != nullptr; }

void quantize_row_q8k_reference(const float* src, void* dst, int64_t n) {
    if (n < 0 || n % kQK != 0) fail("quantize: {} values is not a whole number of Q8_K blocks of {}", n, kQK);
    quant_q8k_ref(src, dst, n);
}

void quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
    const QuantFn fn = quant_fn(type);
    if (!fn) fail("quantize: no quantizer for type {}", ggml_type_name(type));
    const int64_t block = ggml_traits(type).block_size;
    if (n < 0 || n % block != 0) fail("quantize: {} values is not a whole number of {} blocks of {}", n, ggml_type_name(type), block);
    fn(src, dst, n);
}

}  // namespace tandem::quant
