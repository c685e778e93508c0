// CPU ops of the forward pass: matrix products over quantized weights and the element-wise
// steps between them. Activations are float32, row-major [n_tokens, n].
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "cpu/matmul.h"
#include "cpu/thread_pool.h"
#include "gguf/gguf.h"

namespace tandem::model {

// A weight matrix [n_out, n_in] (GGUF ne = [n_in, n_out]) of any ggml type, used in place
// from the memory map: row o starts at data + o * row_stride bytes.
struct Mat {
    GgmlType type = GgmlType::F32;
    int64_t n_in = 0;        // elements per row (ne[0])
    int64_t n_out = 0;       // rows
    const uint8_t* data = nullptr;
    uint64_t row_stride = 0;  // bytes from one row to the next

    const uint8_t* row(int64_t o) const { return data + static_cast<uint64_t>(o) * row_stride; }
    // Rows [first, first + n) as a matrix of their own.
    Mat rows(int64_t first, int64_t n) const { return {type, n_in, n, row(first), row_stride}; }
    bool empty() const { return data == nullptr; }
    // The bytes of its rows' values (without any padding between rows).
    uint64_t bytes() const { return empty() ? 0 : cpu::quant_row_bytes(type, n_in) * static_cast<uint64_t>(n_out); }
};

// The matrix of a 2-D tensor, or matrix `idx` of a 3-D one (experts: ne = [n_in, n_out, n_mat]).
Mat mat_of(const gguf::TensorInfo& t, int64_t idx = 0);

// Scratch for activations quantized to a weight type's vec_dot partner; grows, never shrinks.
// Per-thread state of the matrix products. By default activations are quantized to the 8-bit
// blocks GGUF kernels use (Q8_K/Q8_0), which costs ~1e-2 relative error on the logits of small
// models; with f32_activations every weight row is dequantized and dotted with the float32
// activations instead (slower), which is the arithmetic of a float reference run on the
// dequantized weights, so correctness checks can separate weight handling from 8-bit rounding.
struct QuantScratch {
    bool f32_activations = false;
    aligned_vector<uint8_t> bytes;  // matmul_serial's quantized activations (cache-line aligned: Q8_K_U2)
    std::vector<float> row;      // a dequantized weight row (f32_activations)
    cpu::MatmulScratch cpu;      // the pool matmul's
};

// y[t, o] = sum_i w[o, i] * x[t, i] for t < n_tok. x: [n_tok, w.n_in], y: [n_tok, w.n_out]
// (y_stride must be w.n_out). Rows of w are split over the pool's threads (cpu::matmul).
void matmul(cpu::ThreadPool& pool, const Mat& w, const float* x, int64_t n_tok, float* y, int64_t y_stride,
            QuantScratch& scratch);

// ya = x a^T and yb = x b^T, two products of the same activations (a.n_in == b.n_in): exactly
// what two matmul calls give, in one job of the threads where both take the per-token path
// (cpu::matmul_many).
void matmul_pair(cpu::ThreadPool& pool, const Mat& a, float* ya, const Mat& b, float* yb, const float* x, int64_t n_tok,
                 QuantScratch& scratch);
// The same for three (grouped-query attention's q, k and v projections).
void matmul_three(cpu::ThreadPool& pool, const Mat& a, float* ya, const Mat& b, float* yb, const Mat& c, float* yc, const float* x,
                  int64_t n_tok, QuantScratch& scratch);

// The same on the calling thread only (inside work already spread over threads).
void matmul_serial(const Mat& w, const float* x, int64_t n_tok, float* y, int64_t y_stride, QuantScratch& scratch);

// y = x / sqrt(mean(x^2) + eps) * weight, over rows of n.
void rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps);
// rms_norm of n_rows rows of n (each n values after the last), and x += y over n_rows such rows:
// the per-token steps of a forward pass, on the threads (a prompt's serial loops over its tokens
// would not shrink with the thread count; one row runs on the calling thread).
void rms_norm_rows(cpu::ThreadPool& pool, const float* x, const float* weight, float* y, int64_t n_rows, int64_t n, float eps);
void add_rows(cpu::ThreadPool& pool, float* x, const float* y, int64_t n_rows, int64_t n);

// Rotary position embedding of one head vector of `dim` values, by the cosines and sines of
// its position's angles, cs = [dim/2][2] (rope_angles): adjacent pairs (x[2i], x[2i+1]) when
// !neox (llama.cpp's NORM mode, DeepSeek and permuted Llama weights), halves (x[i],
// x[i + dim/2]) when neox (Qwen2).
void rope(float* x, int64_t dim, const float* cs, bool neox);
// cs[t] for t < pos.size(): [pos.size()][inv_freq.size()][2], the cosine and sine of each
// position's angle at each frequency, computed once per batch for all its heads (an MLA layer
// rotates 128 query heads per token).
void rope_angles(std::span<const int32_t> pos, std::span<const float> inv_freq, std::vector<float>& cs);

struct RopeParams {
    int64_t dim = 0;            // rotated dimensions per head
    float freq_base = 10000.0f;
    float yarn_factor = 0.0f;   // 0 or 1: no YaRN
    int64_t yarn_orig_ctx = 0;
    float yarn_beta_fast = 32.0f;
    float yarn_beta_slow = 1.0f;
};
// Per-pair inverse frequencies, with YaRN's blend of interpolated and extrapolated frequencies
// (Peng et al. 2023, "YaRN", eq. 16-18) when yarn_factor > 1.
std::vector<float> rope_inv_freq(const RopeParams& p);

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

// The SwiGLU feed-forward block (dense FFNs, shared and routed experts):
// out[t] = down (silu(gate x_t) * up x_t). x: [n_tok, gate.n_in], out: [n_tok, down.n_out];
// g and u are scratch, grown to [n_tok, gate.n_out].
void swiglu_ffn(cpu::ThreadPool& pool, const Mat& gate, const Mat& up, const Mat& down, const float* x, int64_t n_tok,
                float* out, std::vector<float>& g, std::vector<float>& u, QuantScratch& scratch);

// The output head for the tokens of a step that want logits: rms_norm(x_t) * norm_w, then
// logits = out_w . that, in batch order. x: [n_tok, n_embd]; h: scratch of the same size.
void output_logits(cpu::ThreadPool& pool, std::span<const uint8_t> want, const float* x, float* h, int64_t n_embd,
                   const std::vector<float>& norm_w, float eps, const Mat& out_w, float* logits, QuantScratch& scratch);

// In-place softmax over n values.
void softmax(float* x, int64_t n);

// Float32 attention of up to kAttnRows query rows that read the same cache rows (a run: the
// heads of one token, or one head's consecutive tokens; a KV head's query heads), the core
// where attention is not bf16 (f32 models, CPUs without AVX512-BF16, the llama family): row h
// attends to positions [0, lim[h]) of the keys k_j ([width] at k + j * row_stride) and values
// v_j ([rank] at v + j * row_stride), o[h] = softmax(scale q_h . k_j) . v_j. MLA passes the
// latent rows as both (the values their leading `rank`).
// Four rows by two positions per step of the scores and all rows by one 8-value column of the
// values per step of the sums, so each load feeds several multiply-adds (the AVX2 core was
// bound by its loads: two per multiply-add, and a store per add into o). A row's arithmetic
// does not depend on the run's other rows: each score is one 8-wide accumulator over the width
// in order, each output one sum over the positions in order.
//   q: [n_rows, width], lim: [n_rows], p: scratch, o: [n_rows, rank].
inline constexpr int64_t kAttnRows = 8;
void attend_float_run(const float* q, int64_t n_rows, const int32_t* lim, const float* k, const float* v, int64_t row_stride,
                      int64_t width, int64_t rank, float scale, std::vector<float>& p, float* o);

}  // namespace tandem::model
