// Multi-threaded matrix-vector and small-batch products over quantized weight matrices.
//
// As in GGUF kernels, each token's activation row is quantized once (quant::quantize_row into
// quant::vec_dot_type(w_type)) and every weight row is dotted against it in integer arithmetic
// (quant::vec_dot_fn). Rows of the output are split evenly over the pool's threads; within a
// thread the token loop is innermost, so each weight row is read from memory once per call and
// reused from L1 for every token of the batch (several tokens per weight row: quant::DotRows).
// From gemm_min_tokens(type) tokens on, the product is computed in int8 for a format with an
// int8 product on this CPU (cpu/gemm_i8.h), else in bf16 on CPUs with AMX or AVX512-BF16
// (cpu/gemm.h): weights unpacked once per call rather than once per token.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/aligned.h"
#include "cpu/gemm.h"
#include "cpu/thread_pool.h"
#include "gguf/types.h"

namespace tandem::cpu {

// The data of a scratch buffer holding at least n elements: buffers grow, never shrink, so a
// steady state allocates nothing.
template <typename T, typename A>
T* grow(std::vector<T, A>& v, uint64_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
}

// Tokens per work item of a many-token product on the per-token path: up to this many, each
// weight row is dotted with every token's activations in turn (a decode step); beyond it, work
// items of (kTokBlock tokens, ~512 KiB of rows) keep both in L2.
inline constexpr int64_t kTokBlock = 16;

// Quantized activation rows, grown on first use and reused (allocated once, not per token).
struct MatmulScratch {
    aligned_vector<uint8_t> xq;  // [n_tok] rows of vec_dot_type(w_type), n_in values each (cache-line aligned: Q8_K_U2)
    GemmScratch gemm;         // the tile path's
};

// y[t, o] = sum_i w[o, i] * x[t, i].
//   w: [n_out, n_in] as n_out rows of row_bytes bytes (blocks of w_type), row o at w + o * row_bytes
//   x: [n_tok, n_in] f32, y: [n_tok, n_out] f32 (overwritten)
// n_in must be a multiple of w_type's block size. Results do not depend on the number of
// threads. On the per-token path (fewer than gemm_min_tokens(w_type) tokens, or no unit for the
// format: gemm_applies) token t's row of y is bit-identical to a call with x + t * n_in alone;
// the int8 and bf16 paths agree with it within float and bf16 rounding (gemm_i8.h, gemm.h).
void matmul(ThreadPool& pool, GgmlType w_type, const void* w, uint64_t row_bytes, int64_t n_in, int64_t n_out,
            const float* x, int64_t n_tok, float* y, MatmulScratch& scratch);

// Several products of the same activations: outs[i].y = x outs[i].w^T, each exactly as
// matmul computes it. Where every one takes the per-token path with the same activation
// type (a decode step), x is quantized once and all their rows run in one parallel_for:
// one synchronisation of the threads instead of one per product, and the small matrices
// stream next to the large ones.
struct MatmulOut {
    GgmlType type;
    const void* w;
    uint64_t row_bytes;
    int64_t n_out;
    float* y;  // [n_tok, n_out]
};
void matmul_many(ThreadPool& pool, std::span<const MatmulOut> outs, int64_t n_in, const float* x, int64_t n_tok,
                 MatmulScratch& scratch);

// Bytes of one row of n values of a quantized type (n a multiple of its block size).
uint64_t quant_row_bytes(GgmlType type, int64_t n);

}  // namespace tandem::cpu
