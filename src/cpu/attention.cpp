#include "cpu/attention.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/check.h"
#include "cpu/bf16_block.h"
#include "cpu/gemm.h"
#include "cpu/matmul.h"
#include "cpu/tiles.h"
#include "quant/blocks.h"
#include "quant/quant.h"

// Layouts (all bf16, uint16 elements; width_pad = width rounded up to 32, rank_pad = rank
// rounded up to 32). A sequence's cache is a run of blocks of kMlaBlock = 32 positions (one
// tile product step), each mla_block_elems = 32 (width_pad + rank_pad) values: K then V.
//   K of a block, the B operand of S = Q K^T: [2 groups][width_pad / 2][16][2], i.e. row r of
//     group g holds values 2r, 2r + 1 of the block's positions 16g .. 16g + 15 (64 bytes;
//     cpu/gemm.h's pack_acts with positions for tokens). The 32 values from k of group g are
//     one tile at K + g * width_pad * 16 + k * 16, rows 64 bytes apart.
//   V of a block, the B operand of O = P V: [rank_pad / 16 column groups][16 pairs][16][2],
//     i.e. row j of column group c holds columns 16c .. 16c + 15 of the block's positions 2j
//     and 2j + 1 (value pairs along the context). The block's 32 positions of column group c
//     are one tile of 1 KiB at V + c * 512.
//   Blocks, not one K and one V per sequence, so that a cache can keep its positions in this
//   layout as they come (model::KvCache) and a decode step packs nothing.
//   Q of a work item (A operand of S): [32 rows, width_pad] row-major; P (A operand of O):
//     [32 rows, kMlaCtxBlock] row-major; S and the output accumulator O: float32, row-major
//     [32, kMlaCtxBlock] and [32, rank_pad].
// Padding is zero everywhere: K and Q columns past width, V columns past rank, positions past
// n_ctx (a cache's blocks may hold stale rows there instead, finite: the softmax masks their
// scores and P is zero past each row's causal limit, so they add exactly nothing).

namespace tandem::cpu {

namespace {

constexpr int64_t kHalf = 16;      // rows of a tile: query rows per half of a work item
constexpr int64_t kItemRows = 32;  // query rows per work item (two halves)
constexpr int64_t kStep = 32;      // positions per tile product step (16 value pairs)

constexpr int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }
static_assert(kStep == kMlaBlock);

// Position i (0 .. 31) of a block in the layouts above: its K pair r at k_at(i) + 32 r, its V
// column c at v_at(i) + v_column(c).
constexpr int64_t k_at(int64_t i, int64_t width_pad) { return (i / kHalf) * kHalf * width_pad + 2 * (i % kHalf); }
constexpr int64_t v_at(int64_t i, int64_t width_pad) { return kStep * width_pad + (i / 2) * 32 + i % 2; }
constexpr int64_t v_column(int64_t c) { return (c / kHalf) * 512 + 2 * (c % kHalf); }

// S[rows, 32 n_steps] = Q K^T for n_steps steps of 32 positions (one cache block each).
//   q: [32, width_pad] bf16 (only the first 16 rows unless kTwo), k: the K of the first step's
//   block (the next at k + block_elems), s: [32, kMlaCtxBlock] f32.
// NOTES: tiles 0-3 are C (row half 0/1 x position group 0/1 of the step), 4-5 the two row
// halves of Q's 32-value step, 6-7 K's two position groups: 4 loads for 4 products, and each
// K tile, the operand that comes from L2, feeds two products.
template <bool kTwo>
__attribute__((target("amx-tile,amx-bf16"))) void tile_scores(const uint16_t* q, int64_t width_pad, const uint16_t* k,
                                                                int64_t block_elems, int64_t n_steps, float* s) {
    const int64_t q_stride = width_pad * 2;                // bytes between Q rows
    const int64_t s_stride = kMlaCtxBlock * 4;             // bytes between S rows
    const int64_t group = width_pad * kHalf;               // uint16 per packed group of 16 positions
    const uint16_t* q_hi = q + kHalf * width_pad;
    for (int64_t js = 0; js < n_steps; ++js) {
        const uint16_t* k0 = k + js * block_elems;
        const uint16_t* k1 = k0 + group;
        tile::zero<0>();
        tile::zero<1>();
        if constexpr (kTwo) {
            tile::zero<2>();
            tile::zero<3>();
        }
        for (int64_t kk = 0; kk < width_pad; kk += 32) {
            tile::load<4>(q + kk, q_stride);
            tile::load<6>(k0 + kk * 16, 64);
            tile::load<7>(k1 + kk * 16, 64);
            tile::dpbf16ps<0, 4, 6>();
            tile::dpbf16ps<1, 4, 7>();
            if constexpr (kTwo) {
                tile::load<5>(q_hi + kk, q_stride);
                tile::dpbf16ps<2, 5, 6>();
                tile::dpbf16ps<3, 5, 7>();
            }
        }
        float* sj = s + js * kStep;
        tile::store<0>(sj, s_stride);
        tile::store<1>(sj + kHalf, s_stride);
        if constexpr (kTwo) {
            tile::store<2>(sj + kHalf * kMlaCtxBlock, s_stride);
            tile::store<3>(sj + kHalf * kMlaCtxBlock + kHalf, s_stride);
        }
    }
}

// O[rows, rank_pad] = P[rows, 32 n_steps] V[32 n_steps, rank_pad] (overwritten).
//   p: [32, kMlaCtxBlock] bf16, v: the V of the first step's block (column group c at v + c *
//   512, the next block's at v + block_elems), o: [32, rank_pad] f32.
// NOTES: tiles 0-3 are C (row half x two column groups of 16), zeroed once per 32 columns and
// kept for the block's n_steps steps; 4-5 P's row halves, 6-7 V's two column groups. P (16
// KiB) stays in L1 while all column groups pass over it.
template <bool kTwo>
__attribute__((target("amx-tile,amx-bf16"))) void tile_values(const uint16_t* p, const uint16_t* v, int64_t block_elems,
                                                                int64_t n_steps, int64_t rank_pad, float* o) {
    const int64_t p_stride = kMlaCtxBlock * 2;  // bytes between P rows
    const int64_t o_stride = rank_pad * 4;      // bytes between O rows
    const uint16_t* p_hi = p + kHalf * kMlaCtxBlock;
    for (int64_t c = 0; c < rank_pad; c += 32) {
        float* oc = o + c;
        float* oc_hi = oc + kHalf * rank_pad;
        tile::zero<0>();
        tile::zero<1>();
        if constexpr (kTwo) {
            tile::zero<2>();
            tile::zero<3>();
        }
        const uint16_t* v0 = v + (c / kHalf) * 512;  // 16 pairs of 16 columns x 2 per block
        const uint16_t* v1 = v0 + 512;
        for (int64_t ks = 0; ks < n_steps; ++ks) {
            tile::load<4>(p + ks * kStep, p_stride);
            tile::load<6>(v0 + ks * block_elems, 64);
            tile::load<7>(v1 + ks * block_elems, 64);
            tile::dpbf16ps<0, 4, 6>();
            tile::dpbf16ps<1, 4, 7>();
            if constexpr (kTwo) {
                tile::load<5>(p_hi + ks * kStep, p_stride);
                tile::dpbf16ps<2, 5, 6>();
                tile::dpbf16ps<3, 5, 7>();
            }
        }
        tile::store<0>(oc, o_stride);
        tile::store<1>(oc + kHalf, o_stride);
        if constexpr (kTwo) {
            tile::store<2>(oc_hi, o_stride);
            tile::store<3>(oc_hi + kHalf, o_stride);
        }
    }
}

// The same two products on the vector units (cpu/bf16_block.h), for CPUs with AVX512-BF16 but
// no tile unit, on the same layouts, 8 rows of A (Q or P) by two column groups of 16 at a time.

// As tile_scores for n_rows (16 or 32) rows: S[rows, 32 n_steps] = Q K^T, each step's two
// position groups of 16 as the two column groups.
void vector_scores(const uint16_t* q, int64_t width_pad, const uint16_t* k, int64_t block_elems, int64_t n_steps,
                   int64_t n_rows, float* s) {
    const int64_t group = width_pad * kHalf;  // uint16 per packed group of 16 positions
    for (int64_t js = 0; js < n_steps; ++js) {
        const uint16_t* b[2] = {k + js * block_elems, k + js * block_elems + group};
        for (int64_t r0 = 0; r0 < n_rows; r0 += 8)
            bf16_rows_by_pairs<8, 2>(q + r0 * width_pad, width_pad, b, width_pad / 2,
                                     s + r0 * kMlaCtxBlock + js * kStep, kMlaCtxBlock, kHalf, false);
    }
}

// As tile_values for n_rows (16 or 32) rows: O[rows, rank_pad] = P[rows, 32 n_steps] V, 32
// value columns (two column groups) at a time, each step's 16 value pairs from its block.
void vector_values(const uint16_t* p, const uint16_t* v, int64_t block_elems, int64_t n_steps, int64_t rank_pad,
                   int64_t n_rows, float* o) {
    for (int64_t c = 0; c < rank_pad; c += 32) {
        const uint16_t* b[2] = {v + (c / kHalf) * 512, v + (c / kHalf + 1) * 512};
        for (int64_t r0 = 0; r0 < n_rows; r0 += 8)
            bf16_rows_by_pairs<8, 2>(p + r0 * kMlaCtxBlock, kMlaCtxBlock, b, n_steps * kHalf, o + r0 * rank_pad + c,
                                     rank_pad, kHalf, false, kHalf, block_elems);
    }
}

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which its -Wmaybe-uninitialized
// reports as a use of an uninitialised value (a known false positive; see quant/dequant_bf16.cpp).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define TANDEM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

// e^x for x <= 0 (x below -100 gives ~0): x log2(e) = n + f with n an integer and |f| <= 1/2,
// 2^f from its degree-6 Taylor polynomial (relative error < 2e-7, far below the bf16 rounding
// that follows), times 2^n by scalef.
TANDEM_AVX512 inline __m512 exp_ps(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 t = _mm512_mul_ps(_mm512_max_ps(x, _mm512_set1_ps(-100.0f)), log2e);
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 y = _mm512_set1_ps(1.5403530393381608e-4f);  // (ln 2)^k / k!, k = 6 .. 0
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.3333558146428443e-3f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(9.6181291076284772e-3f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(5.5504108664821580e-2f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(2.4022650695910071e-1f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(6.9314718055994531e-1f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
}

// Lanes j0 .. j0 + 15 that are below n.
inline __mmask16 lanes_below(int64_t n, int64_t j0) {
    const int64_t left = n - j0;
    if (left <= 0) return 0;
    return left >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
}

// The softmax of one block for each of n_rows rows, from a fresh state (the blocks are folded
// afterwards, see fold): with m the row's maximum of scale * s over its valid positions,
//   p_j = bf16(exp(scale * s_j - m)) for the row's valid positions of the block, 0 past them,
//   max = m, sum = sum_j p_j (of the rounded numerators, the values that multiply V).
//   s: [32, kMlaCtxBlock] f32, p: [32, kMlaCtxBlock] bf16 (first cw columns written),
//   valid: [n_rows] positions of the block below each row's causal limit (0 .. cw).
// A row with no valid position in the block gets max -inf and sum 0.
TANDEM_AVX512 void softmax_block(const float* s, int64_t n_rows, const int64_t* valid, int64_t cw, float scale,
                                 float* row_max, float* row_sum, uint16_t* p) {
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* sr = s + r * kMlaCtxBlock;
        uint16_t* pr = p + r * kMlaCtxBlock;
        const int64_t n = valid[r];
        row_max[r] = -std::numeric_limits<float>::infinity();
        row_sum[r] = 0.0f;
        if (n == 0) {
            std::memset(pr, 0, static_cast<size_t>(cw) * 2);
            continue;
        }
        __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
        for (int64_t j = 0; j < n; j += 16)
            mx = _mm512_mask_max_ps(mx, lanes_below(n, j), mx, _mm512_mul_ps(_mm512_loadu_ps(sr + j), vscale));
        const float m = _mm512_reduce_max_ps(mx);
        const __m512 vm = _mm512_set1_ps(m);
        __m512 sum = _mm512_setzero_ps();
        for (int64_t j = 0; j < cw; j += 16) {
            const __m512 x = _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(sr + j), vscale), vm);
            const __m512 e = _mm512_maskz_mov_ps(lanes_below(n, j), exp_ps(x));
            const __m256i bf = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(e));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(pr + j), bf);
            sum = _mm512_add_ps(sum, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf), 16)));
        }
        row_max[r] = m;
        row_sum[r] = _mm512_reduce_add_ps(sum);
    }
}

// z[r] <- dword r of every z[t]: a 16 x 16 transpose of 32-bit elements (z[t] = row t).
// Unpacking dwords then qwords within 128-bit lanes leaves, in u[4i + m] lane L, column 4L + m
// of rows 4i .. 4i + 3; two rounds of lane shuffles gather the four lanes of each column.
TANDEM_AVX512 inline void transpose16(__m512i* z) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(z[i], z[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(z[i], z[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int m = 0; m < 4; ++m) {
        // 0x88 takes lanes 0 and 2 of each source, 0xDD lanes 1 and 3.
        const __m512i v0 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x88);
        const __m512i v1 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xDD);
        const __m512i w0 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0x88);
        const __m512i w1 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0xDD);
        z[m] = _mm512_shuffle_i32x4(v0, w0, 0x88);
        z[8 + m] = _mm512_shuffle_i32x4(v0, w0, 0xDD);
        z[4 + m] = _mm512_shuffle_i32x4(v1, w1, 0x88);
        z[12 + m] = _mm512_shuffle_i32x4(v1, w1, 0xDD);
    }
}

// Packs the 32 positions of one block (n_valid of them cached, the rest zero) into its K and V
// layouts (see the top of this file), 16 positions x 32 values at a time: each row's 32 values
// become 16 bf16 pairs (one zmm), V interleaves the rows of positions 2j and 2j + 1 column by
// column, K is the 16 x 16 transpose of the pairs.
//   rows: [n_valid, width] f32 cache rows of those positions, block: mla_block_elems values.
TANDEM_AVX512 void pack_block(const float* rows, int64_t n_valid, int64_t width, int64_t rank, int64_t width_pad,
                              uint16_t* block) {
    uint16_t* v = block + kStep * width_pad;
    __m512i idx_lo, idx_hi;  // words (a_i, b_i) for columns i = 0 .. 15, and 16 .. 31
    {
        alignas(64) uint16_t lo[32], hi[32];
        for (int i = 0; i < 16; ++i) {
            lo[2 * i] = static_cast<uint16_t>(i), lo[2 * i + 1] = static_cast<uint16_t>(32 + i);
            hi[2 * i] = static_cast<uint16_t>(16 + i), hi[2 * i + 1] = static_cast<uint16_t>(48 + i);
        }
        idx_lo = _mm512_load_si512(lo);
        idx_hi = _mm512_load_si512(hi);
    }
    __m512i z[16];
    for (int64_t g = 0; g < 2; ++g) {
        const int64_t n_rows = std::clamp(n_valid - g * kHalf, int64_t{0}, kHalf);
        uint16_t* kg = block + g * kHalf * width_pad;  // group g, [width_pad / 2][16][2]
        for (int64_t kk = 0; kk < width_pad; kk += 32) {
            const __mmask16 in_lo = lanes_below(width, kk), in_hi = lanes_below(width, kk + 16);
            for (int64_t t = 0; t < kHalf; ++t) {
                if (t >= n_rows) {
                    z[t] = _mm512_setzero_si512();
                    continue;
                }
                const float* r = rows + (g * kHalf + t) * width + kk;
                const __m512 lo = _mm512_maskz_loadu_ps(in_lo, r), hi = _mm512_maskz_loadu_ps(in_hi, r + 16);
                z[t] = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
            }
            if (kk < rank) {
                // Column groups kk / 16 and kk / 16 + 1 (both exist: rank_pad is a multiple of 32).
                const __mmask16 v_lo = lanes_below(rank, kk), v_hi = lanes_below(rank, kk + 16);
                uint16_t* v0 = v + (kk / kHalf) * 512 + g * (kHalf / 2) * 32;  // pairs 8g .. of column group kk / 16
                uint16_t* v1 = v0 + 512;
                for (int64_t j = 0; j < kHalf / 2; ++j) {
                    const __m512i a = z[2 * j], c = z[2 * j + 1];
                    const __m512i col_lo = _mm512_permutex2var_epi16(a, idx_lo, c);
                    const __m512i col_hi = _mm512_permutex2var_epi16(a, idx_hi, c);
                    _mm512_storeu_si512(v0 + j * 32, _mm512_maskz_mov_epi32(v_lo, col_lo));
                    _mm512_storeu_si512(v1 + j * 32, _mm512_maskz_mov_epi32(v_hi, col_hi));
                }
            }
            transpose16(z);
            for (int64_t r = 0; r < kHalf; ++r) _mm512_storeu_si512(kg + (kk / 2 + r) * 32, z[r]);
        }
    }
}

// Position i (0 .. 31) of a block from its f32 row (k_at, v_at), rounded as pack_block rounds
// (both VCVTNE2PS2BF16), zero past width and rank.
TANDEM_AVX512 void pack_position(const float* row, int64_t i, int64_t width, int64_t rank, int64_t width_pad,
                                 uint16_t* block) {
    uint16_t* k = block + k_at(i, width_pad);
    uint16_t* v = block + v_at(i, width_pad);
    alignas(64) uint16_t bf[32];
    for (int64_t kk = 0; kk < width_pad; kk += 32) {
        const __m512 lo = _mm512_maskz_loadu_ps(lanes_below(width, kk), row + kk);
        const __m512 hi = _mm512_maskz_loadu_ps(lanes_below(width, kk + 16), row + kk + 16);
        _mm512_store_si512(bf, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
        for (int64_t m = 0; m < 16; ++m) std::memcpy(k + (kk / 2 + m) * 32, bf + 2 * m, 4);
        if (kk < round_up(rank, 32))
            for (int64_t m = 0; m < 32; ++m) v[v_column(kk + m)] = kk + m < rank ? bf[m] : 0;
    }
}

// o rows = acc rows / sum over the first `rank` columns.
TANDEM_AVX512 void normalize_row(const float* acc, float sum, int64_t rank, float* o) {
    const float inv = 1.0f / sum;
    const __m512 vi = _mm512_set1_ps(inv);
    int64_t c = 0;
    for (; c + 16 <= rank; c += 16) _mm512_storeu_ps(o + c, _mm512_mul_ps(_mm512_loadu_ps(acc + c), vi));
    for (; c < rank; ++c) o[c] = acc[c] * inv;
}

// y = y * a + x * b over n values (n a multiple of 16).
TANDEM_AVX512 void scale_add(float* y, float a, const float* x, float b, int64_t n) {
    const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    for (int64_t c = 0; c < n; c += 16)
        _mm512_storeu_ps(y + c, _mm512_fmadd_ps(_mm512_loadu_ps(x + c), vb, _mm512_mul_ps(_mm512_loadu_ps(y + c), va)));
}

#undef TANDEM_AVX512
#pragma GCC diagnostic pop

struct Shape {
    int64_t width_pad, rank_pad, block_elems;
};

using Partial = MlaScratch::Partial;

// A Partial laid out in `at` ([32, rank_pad] o, [32] max, [32] sum).
int64_t partial_floats(int64_t rank_pad) { return kItemRows * (rank_pad + 2); }
Partial partial_at(float* at, int64_t rank_pad) {
    return {at, at + kItemRows * rank_pad, at + kItemRows * rank_pad + kItemRows};
}

// Block `blk` (positions [256 blk, 256 blk + 256)) of item `it`, from a fresh softmax state,
// into out. The item's rows are packed to bf16 into th.q once per item (th.q_item).
void attend_block(const MlaParams& prm, const Shape& sh, int64_t item, const MlaScratch::Item& it, const int32_t* order,
                  const uint16_t* blocks, int64_t blk, MlaScratch::Thread& th, const Partial& out) {
    const bool two = it.n_rows > kHalf, amx = amx_available();
    const int64_t n_rows = two ? kItemRows : kHalf;  // rows computed, padding included
    const int64_t width_pad = sh.width_pad, rank_pad = sh.rank_pad;
    uint16_t* q = grow(th.q, static_cast<uint64_t>(kItemRows * width_pad));
    float* s = grow(th.s, static_cast<uint64_t>(kItemRows * kMlaCtxBlock));
    uint16_t* p = grow(th.p, static_cast<uint64_t>(kItemRows * kMlaCtxBlock));
    if (th.q_item != item) {
        for (int64_t r = 0; r < n_rows; ++r) {
            uint16_t* qr = q + r * width_pad;
            const int64_t filled = r < it.n_rows ? prm.width : 0;
            if (filled)
                quant::dequantize_row_bf16(GgmlType::F32, prm.q + order[it.first + r] * prm.width, qr, prm.width);
            std::memset(qr + filled, 0, static_cast<size_t>(width_pad - filled) * 2);
        }
        th.q_item = item;
    }
    const int64_t c0 = blk * kMlaCtxBlock;
    const int64_t cw = std::min(kMlaCtxBlock, round_up(it.n_ctx - c0, kStep));
    int64_t valid[kItemRows];
    for (int64_t r = 0; r < n_rows; ++r) {
        // Padding rows have no valid position and are never written out.
        const int64_t limit = r < it.n_rows ? prm.row_n_ctx[order[it.first + r]] : 0;
        valid[r] = std::clamp(limit - c0, int64_t{0}, cw);
    }
    const int64_t be = sh.block_elems;
    const uint16_t* kc = blocks + (c0 / kStep) * be;  // the K of the first step's block
    if (!amx) vector_scores(q, width_pad, kc, be, cw / kStep, n_rows, s);
    else if (two) tile_scores<true>(q, width_pad, kc, be, cw / kStep, s);
    else tile_scores<false>(q, width_pad, kc, be, cw / kStep, s);
    softmax_block(s, n_rows, valid, cw, prm.scale, out.max, out.sum, p);
    const uint16_t* vc = kc + kStep * width_pad;  // its V
    if (!amx) vector_values(p, vc, be, cw / kStep, rank_pad, n_rows, out.o);
    else if (two) tile_values<true>(p, vc, be, cw / kStep, rank_pad, out.o);
    else tile_values<false>(p, vc, be, cw / kStep, rank_pad, out.o);
}

void reset_state(const Partial& st, int64_t rank_pad) {
    std::fill(st.o, st.o + kItemRows * rank_pad, 0.0f);
    std::fill(st.max, st.max + kItemRows, -std::numeric_limits<float>::infinity());
    std::fill(st.sum, st.sum + kItemRows, 0.0f);
}

// state <- state then block, for the first n_rows rows: with m the larger maximum, the sums
// and outputs are rescaled by e^(max - m) and added. A row with no valid position in the
// block (sum 0: a valid row's numerators include e^0) is left exactly as it was.
void fold(const Partial& st, const Partial& blk, int64_t n_rows, int64_t rank_pad) {
    for (int64_t r = 0; r < n_rows; ++r) {
        if (blk.sum[r] == 0.0f) continue;
        const float m = std::max(st.max[r], blk.max[r]);
        const float a = std::exp(st.max[r] - m), b = std::exp(blk.max[r] - m);  // a = 0 on the first block
        st.sum[r] = st.sum[r] * a + blk.sum[r] * b;
        st.max[r] = m;
        scale_add(st.o + r * rank_pad, a, blk.o + r * rank_pad, b, rank_pad);
    }
}

int64_t n_blocks(const MlaScratch::Item& it) { return (it.n_ctx + kMlaCtxBlock - 1) / kMlaCtxBlock; }

// The rows of an item from its folded state into prm.o.
void write_item(const MlaParams& prm, const MlaScratch::Item& it, const int32_t* order, const Partial& st,
                int64_t rank_pad) {
    for (int64_t r = 0; r < it.n_rows; ++r)
        normalize_row(st.o + r * rank_pad, st.sum[r], prm.rank, prm.o + order[it.first + r] * prm.rank);
}

}  // namespace

bool mla_attention_available() { return gemm_unit() != GemmUnit::none; }

int64_t mla_block_elems(int64_t width, int64_t rank) { return kStep * (round_up(width, 32) + round_up(rank, 32)); }

void mla_pack_position(const float* row, int64_t i, int64_t width, int64_t rank, uint16_t* block) {
    TANDEM_CHECK(mla_attention_available() && i >= 0 && i < kMlaBlock && rank > 0 && rank <= width);
    pack_position(row, i, width, rank, round_up(width, 32), block);
}

void mla_unpack_position(const uint16_t* block, int64_t i, int64_t width, float* row) {
    TANDEM_CHECK(i >= 0 && i < kMlaBlock && width > 0);
    const uint16_t* k = block + k_at(i, round_up(width, 32));
    for (int64_t c = 0; c < width; ++c) row[c] = quant::bf16_to_f32(k[(c / 2) * 32 + c % 2]);
}

void mla_clear_positions(uint16_t* block, int64_t from, int64_t width, int64_t rank) {
    TANDEM_CHECK(from >= 0 && from <= kMlaBlock && rank > 0 && rank <= width);
    const int64_t width_pad = round_up(width, 32), rank_pad = round_up(rank, 32);
    for (int64_t i = from; i < kMlaBlock; ++i) {
        uint16_t* k = block + k_at(i, width_pad);
        uint16_t* v = block + v_at(i, width_pad);
        for (int64_t r = 0; r < width_pad / 2; ++r) k[r * 32] = k[r * 32 + 1] = 0;
        for (int64_t c = 0; c < rank_pad; ++c) v[v_column(c)] = 0;
    }
}

void mla_attention(ThreadPool& pool, const MlaParams& prm, MlaScratch& sc) {
    TANDEM_CHECK(mla_attention_available());
    TANDEM_CHECK(prm.width > 0 && prm.rank > 0 && prm.rank <= prm.width, "width {} rank {}", prm.width, prm.rank);
    const Shape sh{round_up(prm.width, 32), round_up(prm.rank, 32), mla_block_elems(prm.width, prm.rank)};
    const int64_t n_seqs = static_cast<int64_t>(prm.seqs.size());

    // Where the blocks of each sequence given as rows go, and its packing units (blocks): none
    // for a sequence given as blocks.
    sc.packed_at.assign(static_cast<size_t>(n_seqs + 1), 0);
    sc.block_at.assign(static_cast<size_t>(n_seqs + 1), 0);
    for (int64_t i = 0; i < n_seqs; ++i) {
        const MlaSeq& sq = prm.seqs[static_cast<size_t>(i)];
        TANDEM_CHECK(sq.n_ctx >= 0 && (sq.rows || sq.blocks || sq.n_ctx == 0) && !(sq.rows && sq.blocks),
                     "sequence {}: n_ctx {}, rows and blocks both or neither", i, sq.n_ctx);
        const int64_t n_blocks = sq.blocks ? 0 : round_up(sq.n_ctx, kStep) / kStep;
        sc.packed_at[static_cast<size_t>(i + 1)] = sc.packed_at[static_cast<size_t>(i)] + static_cast<uint64_t>(n_blocks * sh.block_elems);
        sc.block_at[static_cast<size_t>(i + 1)] = sc.block_at[static_cast<size_t>(i)] + n_blocks;
    }
    uint16_t* packed = grow(sc.packed, sc.packed_at.back());

    // Rows grouped by sequence (a counting sort, keeping their order within a sequence).
    std::vector<int64_t>& first = sc.seq_first;
    first.assign(static_cast<size_t>(n_seqs + 1), 0);
    for (int64_t r = 0; r < prm.n_rows; ++r) {
        const int32_t si = prm.row_seq[r];
        TANDEM_CHECK(si >= 0 && si < n_seqs, "row {}: sequence {} of {}", r, si, n_seqs);
        const int64_t lim = prm.row_n_ctx[r], cached = prm.seqs[static_cast<size_t>(si)].n_ctx;
        TANDEM_CHECK(lim >= 1 && lim <= cached, "row {}: causal limit {} with {} positions cached", r, lim, cached);
        ++first[static_cast<size_t>(si + 1)];
    }
    for (int64_t i = 0; i < n_seqs; ++i) first[static_cast<size_t>(i + 1)] += first[static_cast<size_t>(i)];
    sc.seq_fill.assign(first.begin(), first.end() - 1);
    sc.row_order.resize(static_cast<size_t>(prm.n_rows));
    for (int64_t r = 0; r < prm.n_rows; ++r)
        sc.row_order[static_cast<size_t>(sc.seq_fill[static_cast<size_t>(prm.row_seq[r])]++)] = static_cast<int32_t>(r);

    // Work items of 32 rows of one sequence, or of 16 when 32-row items would leave threads
    // idle (decode of few sequences). NOTES: a row's arithmetic is the same either way (tile
    // rows are independent), so this choice never changes a result. Items run longest first
    // (most positions), taken from a shared counter, so causal prefill stays balanced.
    auto seq_rows = [&](int64_t i) { return first[static_cast<size_t>(i + 1)] - first[static_cast<size_t>(i)]; };
    int64_t n_items32 = 0;
    for (int64_t i = 0; i < n_seqs; ++i) n_items32 += (seq_rows(i) + kItemRows - 1) / kItemRows;
    const int64_t item_rows = n_items32 >= pool.n_threads() ? kItemRows : kHalf;
    sc.items.clear();
    for (int64_t i = 0; i < n_seqs; ++i) {
        for (int64_t f = first[static_cast<size_t>(i)]; f < first[static_cast<size_t>(i + 1)]; f += item_rows) {
            const int64_t n = std::min(item_rows, first[static_cast<size_t>(i + 1)] - f);
            int32_t n_ctx = 0;
            for (int64_t r = f; r < f + n; ++r)
                n_ctx = std::max(n_ctx, prm.row_n_ctx[sc.row_order[static_cast<size_t>(r)]]);
            sc.items.push_back({static_cast<int32_t>(i), static_cast<int32_t>(f), static_cast<int32_t>(n), n_ctx});
        }
    }
    std::stable_sort(sc.items.begin(), sc.items.end(), [](const auto& a, const auto& b) { return a.n_ctx > b.n_ctx; });
    if (sc.threads.size() < static_cast<size_t>(pool.n_threads()))
        sc.threads.resize(static_cast<size_t>(pool.n_threads()));

    // Phase 1: the cache rows of every sequence given as rows to bf16, packed into blocks of 32
    // positions, one per unit.
    auto seq_blocks = [&](int64_t i) -> const uint16_t* {
        const MlaSeq& sq = prm.seqs[static_cast<size_t>(i)];
        return sq.blocks ? sq.blocks : packed + sc.packed_at[static_cast<size_t>(i)];
    };
    pool.parallel_for(sc.block_at.back(), [&](int64_t u0, int64_t u1, int) {
        for (int64_t u = u0; u < u1; ++u) {
            const int64_t i = std::upper_bound(sc.block_at.begin(), sc.block_at.end(), u) - sc.block_at.begin() - 1;
            const MlaSeq& sq = prm.seqs[static_cast<size_t>(i)];
            const int64_t b = u - sc.block_at[static_cast<size_t>(i)];
            const int64_t n_valid = std::min(kStep, sq.n_ctx - b * kStep);
            pack_block(sq.rows + b * kStep * prm.width, n_valid, prm.width, prm.rank, sh.width_pad,
                       packed + sc.packed_at[static_cast<size_t>(i)] + b * sh.block_elems);
        }
    });

    // Phase 2: the items, each block from a fresh softmax state, folded in order.
    const int64_t n_items = static_cast<int64_t>(sc.items.size());
    const int64_t rank_pad = sh.rank_pad, part_n = partial_floats(rank_pad);
    const int32_t* order = sc.row_order.data();
    int64_t max_blocks = 0;
    for (const MlaScratch::Item& it : sc.items) max_blocks = std::max(max_blocks, n_blocks(it));
    auto attend = [&](int64_t item, int64_t blk, MlaScratch::Thread& th, const Partial& out, bool& configured) {
        if (!configured && amx_available()) amx_configure_tiles(), configured = true;
        const MlaScratch::Item& it = sc.items[static_cast<size_t>(item)];
        attend_block(prm, sh, item, it, order, seq_blocks(it.seq), blk, th, out);
    };
    for (MlaScratch::Thread& th : sc.threads) th.q_item = -1;
    if (n_items >= pool.n_threads() || max_blocks <= 1) {
        // Enough items for every thread: each runs its items' blocks one after the other.
        std::atomic<int64_t> next{0};
        pool.run_on_all([&](int tid) {
            MlaScratch::Thread& th = sc.threads[static_cast<size_t>(tid)];
            const Partial part = partial_at(grow(th.part, static_cast<uint64_t>(part_n)), rank_pad);
            const Partial st = partial_at(grow(th.state, static_cast<uint64_t>(part_n)), rank_pad);
            bool configured = false;
            for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n_items;) {
                const MlaScratch::Item& it = sc.items[static_cast<size_t>(i)];
                reset_state(st, rank_pad);
                for (int64_t b = 0; b < n_blocks(it); ++b) {
                    attend(i, b, th, part, configured);
                    fold(st, part, it.n_rows, rank_pad);
                }
                write_item(prm, it, order, st, rank_pad);
            }
            if (configured) tile::release();
        });
        return;
    }
    // Fewer items than threads (a decode step of few sequences): waves of (item, block) units on
    // all threads, each wave's blocks then folded in order into their item's state. A wave holds
    // at most sc.wave_bytes of Partials.
    const int64_t wave_blocks = std::clamp<int64_t>(sc.wave_bytes / (4 * part_n * n_items), 1, max_blocks);
    float* wave = grow(sc.wave, static_cast<uint64_t>(n_items * wave_blocks * part_n));
    float* states = grow(sc.states, static_cast<uint64_t>(n_items * part_n));
    for (int64_t i = 0; i < n_items; ++i) reset_state(partial_at(states + i * part_n, rank_pad), rank_pad);
    for (int64_t b0 = 0; b0 < max_blocks; b0 += wave_blocks) {
        const int64_t nb = std::min(wave_blocks, max_blocks - b0);
        // A unit is one block of several items: the items of a sequence read the same K and V,
        // so the block's (~0.5 MiB for R1) stay in L2 from the unit's first item to its last
        // instead of coming from memory once per item. As many items per unit as still leaves a
        // unit per thread. NOTES: that can leave a short last round (17 units on 16 threads);
        // sizing units for the shortest span instead (one item per unit there) lost the L2
        // reuse and measured slower (GPU benchmark machine, 13-layer R1, 4096 positions, 16
        // threads: attention in decode 0.53-0.62 s against 0.92 s, docs/performance.md).
        const int64_t per_unit = std::clamp<int64_t>(n_items * nb / pool.n_threads(), 1, n_items);
        const int64_t n_chunks = (n_items + per_unit - 1) / per_unit;
        std::atomic<int64_t> next{0};
        pool.run_on_all([&](int tid) {
            MlaScratch::Thread& th = sc.threads[static_cast<size_t>(tid)];
            bool configured = false;
            for (int64_t u; (u = next.fetch_add(1, std::memory_order_relaxed)) < n_chunks * nb;) {
                const int64_t b = b0 + u / n_chunks, i0 = (u % n_chunks) * per_unit;
                for (int64_t i = i0; i < std::min(n_items, i0 + per_unit); ++i) {
                    if (b >= n_blocks(sc.items[static_cast<size_t>(i)])) continue;
                    attend(i, b, th, partial_at(wave + (i * wave_blocks + b - b0) * part_n, rank_pad), configured);
                }
            }
            if (configured) tile::release();
        });
        const bool last = b0 + nb >= max_blocks;
        pool.parallel_for(n_items, [&](int64_t i0, int64_t i1, int) {
            for (int64_t i = i0; i < i1; ++i) {
                const MlaScratch::Item& it = sc.items[static_cast<size_t>(i)];
                const Partial st = partial_at(states + i * part_n, rank_pad);
                for (int64_t b = b0; b < std::min(b0 + nb, n_blocks(it)); ++b)
                    fold(st, partial_at(wave + (i * wave_blocks + b - b0) * part_n, rank_pad), it.n_rows, rank_pad);
                if (last) write_item(prm, it, order, st, rank_pad);
            }
        });
    }
}

}  // namespace tandem::cpu
