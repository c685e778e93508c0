// Multi-threaded matrix-vector and small-batch products over quantized weight matrices.
//
// As in GGUF kernels, each token's activation row is quantized once (quant::quantize_row into
// quant::vec_dot_type(w_type)) and every weight row is dotted against it in integer arithmetic
// (quant::vec_dot_fn). Rows of the output are split evenly over the pool's threads; within a
// thread the token loop is innermost, so each weight row is read from memory once per call and
// reused from L1 for every token of the batch.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/thread_pool.h"
#include "gguf/types.h"

namespace tandem::cpu {

// Quantized activation rows, grown on first use and reused (allocated once, not per token).
struct MatmulScratch {
    std::vector<uint8_t> xq;  // [n_tok] rows of vec_dot_type(w_type), n_in values each
};

// y[t, o] = sum_i w[o, i] * x[t, i].
//   w: [n_out, n_in] as n_out rows of row_bytes bytes (blocks of w_type), row o at w + o * row_bytes
//   x: [n_tok, n_in] f32, y: [n_tok, n_out] f32 (overwritten)
// n_in must be a multiple of w_type's block size. Results do not depend on n_tok or on the
// number of threads: token t's row of y is bit-identical to a call with x + t * n_in alone.
void matmul(ThreadPool& pool, GgmlType w_type, const void* w, uint64_t row_bytes, int64_t n_in, int64_t n_out,
            const float* x, int64_t n_tok, float* y, MatmulScratch& scratch);

// Bytes of one row of n values of a quantized type (n a multiple of its block size).
uint64_t quant_row_bytes(GgmlType type, int64_t n);

}  // namespace tandem::cpu
