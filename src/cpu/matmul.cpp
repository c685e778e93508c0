#include "cpu/matmul.h"

#include <algorithm>

#include "core/check.h"
#include "cpu/gemm_i8.h"
#include "quant/quant.h"
#include "quant/vec_dot.h"

namespace tandem::cpu {

uint64_t quant_row_bytes(GgmlType type, int64_t n) {
    const GgmlTypeTraits& t = ggml_traits(type);
    if (n < 0 || n % t.block_size != 0)
        fail("row of {} values is not a whole number of {} blocks ({} values each)", n, ggml_type_name(type),
             t.block_size);
    return static_cast<uint64_t>(n / t.block_size) * t.type_size;
}

namespace {

constexpr uint64_t kRowBlockBytes = uint64_t{512} << 10;  // weight bytes per work item

void check_rows(GgmlType type, uint64_t row_bytes, int64_t n_in) {
    const uint64_t w_row = quant_row_bytes(type, n_in);
    if (row_bytes < w_row) fail("matmul: rows of {} bytes, but {} {} values need {}", row_bytes, n_in, ggml_type_name(type), w_row);
}

// x's n_tok rows quantized to act_type in scratch.xq ([n_tok] rows of xq_row bytes).
uint8_t* quantize_acts(ThreadPool& pool, GgmlType act_type, const float* x, int64_t n_in, int64_t n_tok, uint64_t xq_row,
                       MatmulScratch& scratch) {
    uint8_t* xq = grow(scratch.xq, xq_row * static_cast<uint64_t>(n_tok));
    pool.parallel_for(n_tok, [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t) quant::quantize_row(act_type, x + t * n_in, xq + t * xq_row, n_in);
    });
    return xq;
}

// The per-token path of up to kTokBlock tokens for products whose weights all pair with one
// activation type: x quantized once, then the rows of the products one after another, each
// dotted with every token. NOTES: a contiguous range of rows per thread keeps each thread on
// one sequential stream of weight memory, which is what the hardware prefetchers follow best.
void dot_rows_per_token(ThreadPool& pool, std::span<const MatmulOut> outs, int64_t n_in, const float* x, int64_t n_tok,
                        MatmulScratch& scratch) {
    const GgmlType act_type = quant::vec_dot_type(outs.front().type);
    const uint64_t xq_row = quant_row_bytes(act_type, n_in);
    const uint8_t* xq = quantize_acts(pool, act_type, x, n_in, n_tok, xq_row, scratch);
    int64_t total = 0;
    for (const MatmulOut& m : outs) total += m.n_out;
    pool.parallel_for(total, [&](int64_t o0, int64_t o1, int) {
        int64_t first = 0;
        for (const MatmulOut& m : outs) {
            const int64_t lo = std::max(o0, first) - first, hi = std::min(o1, first + m.n_out) - first;
            first += m.n_out;
            if (lo >= hi) continue;
            const quant::DotRows dot(m.type);
            const auto* wb = static_cast<const uint8_t*>(m.w);
            const void* acts[kTokBlock];
            float vals[kTokBlock];
            for (int64_t t = 0; t < n_tok; ++t) acts[t] = xq + t * xq_row;
            for (int64_t o = lo; o < hi; ++o) {
                dot(wb + static_cast<uint64_t>(o) * m.row_bytes, acts, static_cast<int>(n_tok), n_in, vals);
                for (int64_t t = 0; t < n_tok; ++t) m.y[t * m.n_out + o] = vals[t];
            }
        }
    });
}

}  // namespace

void matmul(ThreadPool& pool, GgmlType w_type, const void* w, uint64_t row_bytes, int64_t n_in, int64_t n_out,
            const float* x, int64_t n_tok, float* y, MatmulScratch& scratch) {
    if (n_tok <= 0 || n_out <= 0) return;
    check_rows(w_type, row_bytes, n_in);
    if (gemm_applies(w_type, n_in, n_tok)) {
        if (i8_gemm_takes(w_type, n_in))
            return gemm_i8(pool, w_type, w, row_bytes, n_in, n_out, x, n_tok, y, scratch.gemm);
        return gemm(pool, w_type, w, row_bytes, n_in, n_out, x, n_tok, y, scratch.gemm);
    }
    if (n_tok <= kTokBlock) {
        const MatmulOut out{w_type, w, row_bytes, n_out, y};
        return dot_rows_per_token(pool, {&out, 1}, n_in, x, n_tok, scratch);
    }
    const GgmlType act_type = quant::vec_dot_type(w_type);
    const uint64_t xq_row = quant_row_bytes(act_type, n_in);
    const uint8_t* xq = quantize_acts(pool, act_type, x, n_in, n_tok, xq_row, scratch);
    const auto* wb = static_cast<const uint8_t*>(w);
    if (const quant::VecDotBlockFn block = quant::vec_dot_block_fn(w_type)) {
        // Float weights: items of 16 rows and 16 tokens, each a block product (both taken a
        // slice at a time, in L1).
        constexpr int64_t kRows = quant::kVecDotBlockRows, kActs = quant::kVecDotBlockActs;
        const int64_t n_tb = (n_tok + kActs - 1) / kActs, n_rb = (n_out + kRows - 1) / kRows;
        pool.parallel_for(n_tb * n_rb, [&](int64_t i0, int64_t i1, int) {
            for (int64_t i = i0; i < i1; ++i) {
                const int64_t t0 = (i % n_tb) * kActs, o0 = (i / n_tb) * kRows;
                const void* acts[kActs];
                const int n_act = static_cast<int>(std::min(kActs, n_tok - t0));
                for (int j = 0; j < n_act; ++j) acts[j] = xq + (t0 + j) * xq_row;
                block(wb + static_cast<uint64_t>(o0) * row_bytes, row_bytes, static_cast<int>(std::min(kRows, n_out - o0)), acts,
                      n_act, n_in, y + t0 * n_out + o0, n_out);
            }
        });
        return;
    }
    const quant::DotRows dot(w_type);
    // Many tokens: items of (kTokBlock tokens, rows worth kRowBlockBytes), so that both the
    // tokens' activations and the rows stay in L2 while every pair of them is dotted. Split by
    // rows alone, each thread would stream every token's activations from L3 once per row (a
    // 512-token batch of the F32 router: 3.7 GB per layer). Each y value is what one dot
    // call gives (DotRows is bit-identical to it), so the results do not depend on the blocking.
    const int64_t row_block = std::clamp<int64_t>(static_cast<int64_t>(kRowBlockBytes / row_bytes), 1, n_out);
    const int64_t n_tb = (n_tok + kTokBlock - 1) / kTokBlock, n_rb = (n_out + row_block - 1) / row_block;
    pool.parallel_for(n_tb * n_rb, [&](int64_t i0, int64_t i1, int) {
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t t0 = (i % n_tb) * kTokBlock, t1 = std::min(n_tok, t0 + kTokBlock);
            const int64_t o0 = (i / n_tb) * row_block, o1 = std::min(n_out, o0 + row_block);
            const void* acts[kTokBlock];
            float vals[kTokBlock];
            const int n_act = static_cast<int>(t1 - t0);
            for (int64_t t = t0; t < t1; ++t) acts[t - t0] = xq + t * xq_row;
            for (int64_t o = o0; o < o1; ++o) {
                dot(wb + static_cast<uint64_t>(o) * row_bytes, acts, n_act, n_in, vals);
                for (int64_t t = t0; t < t1; ++t) y[t * n_out + o] = vals[t - t0];
            }
        }
    });
}

void matmul_many(ThreadPool& pool, std::span<const MatmulOut> outs, int64_t n_in, const float* x, int64_t n_tok,
                 MatmulScratch& scratch) {
    if (outs.empty() || n_tok <= 0) return;
    const GgmlType act_type = quant::vec_dot_type(outs.front().type);
    bool together = n_tok <= kTokBlock;
    for (const MatmulOut& m : outs)
        together = together && !gemm_applies(m.type, n_in, n_tok) && quant::vec_dot_type(m.type) == act_type;
    if (!together) {
        for (const MatmulOut& m : outs) matmul(pool, m.type, m.w, m.row_bytes, n_in, m.n_out, x, n_tok, m.y, scratch);
        return;
    }
    for (const MatmulOut& m : outs) check_rows(m.type, m.row_bytes, n_in);
    dot_rows_per_token(pool, outs, n_in, x, n_tok, scratch);
}

}  // namespace tandem::cpu
