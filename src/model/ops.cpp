#include "model/ops.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "cpu/matmul.h"
#include "quant/quant.h"
#include "quant/vec_dot.h"

namespace tandem::model {

Mat mat_of(const gguf::TensorInfo& t, int64_t idx) {
    TANDEM_CHECK(t.ne.size() >= 2 || idx == 0, "tensor '{}' is 1-D", t.name);
    const int64_t n_out = t.ne.size() >= 2 ? t.ne[1] : 1;
    const int64_t n_mat = t.ne.size() >= 3 ? t.ne[2] : 1;
    TANDEM_CHECK(idx >= 0 && idx < n_mat, "tensor '{}': matrix {} of {}", t.name, idx, n_mat);
    const uint64_t row_bytes = t.row_bytes();
    return {t.type, t.ne[0], n_out, t.data + static_cast<uint64_t>(idx * n_out) * row_bytes, row_bytes};
}

namespace {

// Quantizes the n_tok rows of x into the activation type that pairs with w, returning the
// bytes of one quantized row.
uint64_t quantize_rows(const Mat& w, const float* x, int64_t n_tok, QuantScratch& scratch, GgmlType* act_type) {
    *act_type = quant::vec_dot_type(w.type);
    const auto& at = ggml_traits(*act_type);
    const uint64_t row_bytes = static_cast<uint64_t>(w.n_in) / at.block_size * at.type_size;
    const uint64_t need = row_bytes * static_cast<uint64_t>(n_tok);
    if (scratch.bytes.size() < need) scratch.bytes.resize(need);
    for (int64_t t = 0; t < n_tok; ++t)
        quant::quantize_row(*act_type, x + t * w.n_in, scratch.bytes.data() + t * row_bytes, w.n_in);
    return row_bytes;
}

void dot_rows(const Mat& w, quant::VecDotFn dot, const uint8_t* xq, uint64_t xq_row_bytes, int64_t n_tok,
              float* y, int64_t y_stride, int64_t o_begin, int64_t o_end) {
    // Token-inner loop: each weight row is read from memory once and reused for every token
    // of the batch while it is in cache.
    for (int64_t o = o_begin; o < o_end; ++o) {
        const uint8_t* wr = w.row(o);
        for (int64_t t = 0; t < n_tok; ++t) y[t * y_stride + o] = dot(wr, xq + t * xq_row_bytes, w.n_in);
    }
}

}  // namespace

// y = x w^T with float32 activations: each weight row dequantized once, dotted with every token.
void matmul_f32_rows(const Mat& w, const float* x, int64_t n_tok, float* y, int64_t y_stride, std::vector<float>& row,
                     int64_t o_begin, int64_t o_end) {
    row.resize(static_cast<size_t>(w.n_in));
    for (int64_t o = o_begin; o < o_end; ++o) {
        quant::dequantize_row(w.type, w.row(o), row.data(), w.n_in);
        for (int64_t t = 0; t < n_tok; ++t) {
            const float* xt = x + t * w.n_in;
            float s = 0;
            for (int64_t i = 0; i < w.n_in; ++i) s += row[static_cast<size_t>(i)] * xt[i];
            y[t * y_stride + o] = s;
        }
    }
}

void matmul_serial(const Mat& w, const float* x, int64_t n_tok, float* y, int64_t y_stride, QuantScratch& scratch) {
    if (scratch.f32_activations) {
        matmul_f32_rows(w, x, n_tok, y, y_stride, scratch.row, 0, w.n_out);
        return;
    }
    if (cpu::bf16_gemm_applies(w.type, w.n_in, n_tok))
        return cpu::gemm_serial(w.type, w.data, w.row_stride, w.n_in, w.n_out, x, n_tok, y, y_stride, scratch.cpu.gemm);
    GgmlType act;
    const uint64_t xq_row = quantize_rows(w, x, n_tok, scratch, &act);
    dot_rows(w, quant::vec_dot_fn(w.type), scratch.bytes.data(), xq_row, n_tok, y, y_stride, 0, w.n_out);
}

void matmul(cpu::ThreadPool& pool, const Mat& w, const float* x, int64_t n_tok, float* y, int64_t y_stride,
            QuantScratch& scratch) {
    TANDEM_CHECK(y_stride == w.n_out, "matmul writes dense rows: y_stride {} != n_out {}", y_stride, w.n_out);
    if (scratch.f32_activations) {
        pool.parallel_for(w.n_out, [&](int64_t o0, int64_t o1, int) {
            thread_local std::vector<float> row;
            matmul_f32_rows(w, x, n_tok, y, y_stride, row, o0, o1);
        });
        return;
    }
    cpu::matmul(pool, w.type, w.data, w.row_stride, w.n_in, w.n_out, x, n_tok, y, scratch.cpu);
}

namespace {
// ys[i] = x ws[i]^T: one job of the threads where every product takes the per-token path
// (cpu::matmul_many), else one matmul each (and always so with float32 activations).
void matmul_same_x(cpu::ThreadPool& pool, std::span<const Mat* const> ws, std::span<float* const> ys, const float* x,
                   int64_t n_tok, QuantScratch& scratch) {
    for (const Mat* w : ws)
        TANDEM_CHECK(w->n_in == ws[0]->n_in, "products of the same activations: inputs of {} and {} values", ws[0]->n_in, w->n_in);
    if (scratch.f32_activations) {
        for (size_t i = 0; i < ws.size(); ++i) matmul(pool, *ws[i], x, n_tok, ys[i], ws[i]->n_out, scratch);
        return;
    }
    cpu::MatmulOut outs[3];
    TANDEM_CHECK(ws.size() <= std::size(outs));
    for (size_t i = 0; i < ws.size(); ++i) outs[i] = {ws[i]->type, ws[i]->data, ws[i]->row_stride, ws[i]->n_out, ys[i]};
    cpu::matmul_many(pool, std::span(outs, ws.size()), ws[0]->n_in, x, n_tok, scratch.cpu);
}
}  // namespace

void matmul_pair(cpu::ThreadPool& pool, const Mat& a, float* ya, const Mat& b, float* yb, const float* x, int64_t n_tok,
                 QuantScratch& scratch) {
    const Mat* ws[] = {&a, &b};
    float* const ys[] = {ya, yb};
    matmul_same_x(pool, ws, ys, x, n_tok, scratch);
}

void matmul_three(cpu::ThreadPool& pool, const Mat& a, float* ya, const Mat& b, float* yb, const Mat& c, float* yc, const float* x,
                  int64_t n_tok, QuantScratch& scratch) {
    const Mat* ws[] = {&a, &b, &c};
    float* const ys[] = {ya, yb, yc};
    matmul_same_x(pool, ws, ys, x, n_tok, scratch);
}

void rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(n) + eps));
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * weight[i];
}

void rms_norm_rows(cpu::ThreadPool& pool, const float* x, const float* weight, float* y, int64_t n_rows, int64_t n, float eps) {
    pool.parallel_for(n_rows, [&](int64_t r0, int64_t r1, int) {
        for (int64_t r = r0; r < r1; ++r) rms_norm(x + r * n, weight, y + r * n, n, eps);
    });
}

void add_rows(cpu::ThreadPool& pool, float* x, const float* y, int64_t n_rows, int64_t n) {
    pool.parallel_for(n_rows, [&](int64_t r0, int64_t r1, int) {
        for (int64_t i = r0 * n; i < r1 * n; ++i) x[i] += y[i];
    });
}

void rope(float* x, int64_t dim, const float* cs, bool neox) {
    const int64_t half = dim / 2;
    for (int64_t i = 0; i < half; ++i) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        float* a = neox ? x + i : x + 2 * i;
        float* b = neox ? x + i + half : x + 2 * i + 1;
        const float x0 = *a, x1 = *b;
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
    }
}

void rope_angles(std::span<const int32_t> pos, std::span<const float> inv_freq, std::vector<float>& cs) {
    const size_t half = inv_freq.size();
    cs.resize(pos.size() * half * 2);
    for (size_t t = 0; t < pos.size(); ++t)
        for (size_t i = 0; i < half; ++i) {
            const double theta = static_cast<double>(pos[t]) * inv_freq[i];  // in double, as the angles grow with the position
            cs[(t * half + i) * 2] = static_cast<float>(std::cos(theta));
            cs[(t * half + i) * 2 + 1] = static_cast<float>(std::sin(theta));
        }
}

std::vector<float> rope_inv_freq(const RopeParams& p) {
    const int64_t half = p.dim / 2;
    std::vector<float> inv(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i)
        inv[static_cast<size_t>(i)] =
            static_cast<float>(1.0 / std::pow(static_cast<double>(p.freq_base), 2.0 * static_cast<double>(i) / static_cast<double>(p.dim)));
    if (p.yarn_factor <= 1.0f) return inv;
    // The dimensions that rotate fewer than beta_slow times over the original context are
    // interpolated (frequency / factor), those rotating more than beta_fast times are kept,
    // and a linear ramp blends the ones between.
    auto correction_dim = [&](float n_rot) {
        return static_cast<double>(p.dim) * std::log(static_cast<double>(p.yarn_orig_ctx) / (n_rot * 2.0 * M_PI)) /
               (2.0 * std::log(static_cast<double>(p.freq_base)));
    };
    const double low = std::max(0.0, std::floor(correction_dim(p.yarn_beta_fast)));
    const double high = std::min(static_cast<double>(p.dim - 1), std::ceil(correction_dim(p.yarn_beta_slow)));
    for (int64_t i = 0; i < half; ++i) {
        const double ramp = std::clamp((static_cast<double>(i) - low) / std::max(0.001, high - low), 0.0, 1.0);
        const double extrapolation = 1.0 - ramp;  // weight of the original frequency
        const double f = inv[static_cast<size_t>(i)];
        inv[static_cast<size_t>(i)] = static_cast<float>(f / p.yarn_factor * (1.0 - extrapolation) + f * extrapolation);
    }
    return inv;
}

void swiglu_ffn(cpu::ThreadPool& pool, const Mat& gate, const Mat& up, const Mat& down, const float* x, int64_t n_tok,
                float* out, std::vector<float>& g, std::vector<float>& u, QuantScratch& scratch) {
    const int64_t n_ff = gate.n_out;
    g.resize(static_cast<size_t>(n_tok * n_ff));
    u.resize(g.size());
    matmul_pair(pool, gate, g.data(), up, u.data(), x, n_tok, scratch);
    // On the threads: a prompt's n_tok x n_ff std::exp calls were ~2.5% of a Qwen2.5 prefill.
    pool.parallel_for(n_tok, [&](int64_t t0, int64_t t1, int) {
        for (int64_t i = t0 * n_ff; i < t1 * n_ff; ++i) g[static_cast<size_t>(i)] = silu(g[static_cast<size_t>(i)]) * u[static_cast<size_t>(i)];
    });
    matmul(pool, down, g.data(), n_tok, out, down.n_out, scratch);
}

void output_logits(cpu::ThreadPool& pool, std::span<const uint8_t> want, const float* x, float* h, int64_t n_embd,
                   const std::vector<float>& norm_w, float eps, const Mat& out_w, float* logits, QuantScratch& scratch) {
    int64_t n_out = 0;
    for (size_t t = 0; t < want.size(); ++t)
        if (want[t]) rms_norm(x + static_cast<int64_t>(t) * n_embd, norm_w.data(), h + n_embd * n_out++, n_embd, eps);
    if (n_out) matmul(pool, out_w, h, n_out, logits, out_w.n_out, scratch);
}

void softmax(float* x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - mx);
        sum += x[i];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

namespace {

float hsum8(__m256 v) {
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    return _mm_cvtss_f32(s4);
}

// e^x for x <= 0, 8 lanes (AVX2): n = round(x log2 e), r = x - n ln 2 (ln 2 in two parts, so r
// is nearly exact), e^r from its degree-7 Taylor polynomial (|r| <= 0.347: relative error
// < 1e-8), times 2^n through the exponent bits. x below -87 (e^x under float's normal range)
// and NaN give 0.
inline __m256 exp_nonpositive(__m256 x) {
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);  // ln 2's leading 16 bits: n * hi is exact
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    for (float c : {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f}) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(bits)), _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_GE_OQ));
}

// The softmax of an attention row in place: the maximum, e^(x - max) by exp_nonpositive, their sum
// in double (8 lanes, then the rest), then the normalization. NOTES: softmax()'s scalar std::exp
// was ~10% of a Qwen2.5 prefill.
void softmax_row(float* x, int64_t n) {
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(_mm256_loadu_ps(x + i), vmax);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, vmax);
    float mx = -INFINITY;
    for (float v : lanes) mx = std::max(mx, v);
    for (int64_t t = i; t < n; ++t) mx = std::max(mx, x[t]);
    const __m256 vm = _mm256_set1_ps(mx);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    alignas(32) double d[4];
    _mm256_store_pd(d, _mm256_add_pd(s0, s1));
    double sum = (d[0] + d[1]) + (d[2] + d[3]);
    if (i < n) {  // the last n % 8 values through the same function
        alignas(32) float tail[8];
        for (int64_t t = 0; t < 8; ++t) tail[t] = i + t < n ? x[i + t] - mx : -INFINITY;
        _mm256_store_ps(tail, exp_nonpositive(_mm256_load_ps(tail)));
        for (int64_t t = 0; i + t < n; ++t) sum += (x[i + t] = tail[t]);
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(inv)));
    for (; i < n; ++i) x[i] *= inv;
}

// s[h][j] = q_h . k_j for kH rows and positions j0, j0 + 1 (kJ of them): one 8-wide
// accumulator per (row, position) over the width in order, then its lanes summed.
template <int kH, int kJ>
void scores_step(const float* q, int64_t width, const float* kv, int64_t row_stride, int64_t j0, float* s, int64_t s_stride) {
    __m256 acc[kH][kJ];
    for (int h = 0; h < kH; ++h)
        for (int j = 0; j < kJ; ++j) acc[h][j] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= width; i += 8) {
        __m256 k[kJ];
        for (int j = 0; j < kJ; ++j) k[j] = _mm256_loadu_ps(kv + (j0 + j) * row_stride + i);
        for (int h = 0; h < kH; ++h) {
            const __m256 qh = _mm256_loadu_ps(q + h * width + i);
            for (int j = 0; j < kJ; ++j) acc[h][j] = _mm256_fmadd_ps(qh, k[j], acc[h][j]);
        }
    }
    for (int h = 0; h < kH; ++h)
        for (int j = 0; j < kJ; ++j) {
            float v = hsum8(acc[h][j]);
            for (int64_t t = i; t < width; ++t) v = std::fma(q[h * width + t], kv[(j0 + j) * row_stride + t], v);
            s[h * s_stride + j0 + j] = v;
        }
}

// o[h][c0 .. c0 + 8) (+)= sum_j p[h][j] v_j[c0 ..] over j in [j0, j1) (p zero past each row's
// limit), for kH rows: the column's 8 values of a position feed kH multiply-adds.
template <int kH>
void values_step(const float* p, int64_t p_stride, const float* v, int64_t row_stride, int64_t j0, int64_t j1, int64_t c0,
                 float* o, int64_t rank) {
    __m256 acc[kH];
    for (int h = 0; h < kH; ++h) acc[h] = j0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(o + h * rank + c0);
    for (int64_t j = j0; j < j1; ++j) {
        const __m256 vj = _mm256_loadu_ps(v + j * row_stride + c0);
        for (int h = 0; h < kH; ++h) acc[h] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + h * p_stride + j), vj, acc[h]);
    }
    for (int h = 0; h < kH; ++h) _mm256_storeu_ps(o + h * rank + c0, acc[h]);
}

}  // namespace

void attend_float_run(const float* q, int64_t n_rows, const int32_t* lim, const float* k, const float* v, int64_t row_stride,
                      int64_t width, int64_t rank, float scale, std::vector<float>& p, float* o) {
    TANDEM_CHECK(n_rows >= 1 && n_rows <= kAttnRows);
    const int64_t n_max = *std::max_element(lim, lim + n_rows);
    p.resize(static_cast<size_t>(n_rows * n_max));
    // Scores of every row at every position up to the run's longest limit (a row's positions
    // past its own limit are computed and then dropped: at most the run's spread of limits).
    for (int64_t h0 = 0; h0 < n_rows; h0 += 4) {
        const int64_t nh = std::min<int64_t>(4, n_rows - h0);
        const float* qh = q + h0 * width;
        float* s = p.data() + h0 * n_max;
        int64_t j = 0;
        for (; j + 2 <= n_max; j += 2) {
            switch (nh) {
                case 4: scores_step<4, 2>(qh, width, k, row_stride, j, s, n_max); break;
                case 3: scores_step<3, 2>(qh, width, k, row_stride, j, s, n_max); break;
                case 2: scores_step<2, 2>(qh, width, k, row_stride, j, s, n_max); break;
                default: scores_step<1, 2>(qh, width, k, row_stride, j, s, n_max); break;
            }
        }
        if (j < n_max) {
            switch (nh) {
                case 4: scores_step<4, 1>(qh, width, k, row_stride, j, s, n_max); break;
                case 3: scores_step<3, 1>(qh, width, k, row_stride, j, s, n_max); break;
                case 2: scores_step<2, 1>(qh, width, k, row_stride, j, s, n_max); break;
                default: scores_step<1, 1>(qh, width, k, row_stride, j, s, n_max); break;
            }
        }
    }
    for (int64_t h = 0; h < n_rows; ++h) {
        float* ph = p.data() + h * n_max;
        for (int64_t j = 0; j < lim[h]; ++j) ph[j] *= scale;
        softmax_row(ph, lim[h]);
        std::fill(ph + lim[h], ph + n_max, 0.0f);
    }
    // Values, in column steps of 8 over blocks of 64 positions (whose rows, up to 147 KiB at R1's
    // width, stay in L2 while the columns pass over them), each output summed over the positions
    // in order; rank past a multiple of 8, if any, as plain sums.
    constexpr int64_t kPosBlock = 64;
    const int64_t rank8 = rank / 8 * 8;
    for (int64_t j0 = 0; j0 < n_max; j0 += kPosBlock) {
        const int64_t j1 = std::min(n_max, j0 + kPosBlock);
        for (int64_t c0 = 0; c0 < rank8; c0 += 8) {
            switch (n_rows) {
                case 8: values_step<8>(p.data(), n_max, v, row_stride, j0, j1, c0, o, rank); break;
                case 7: values_step<7>(p.data(), n_max, v, row_stride, j0, j1, c0, o, rank); break;
                case 6: values_step<6>(p.data(), n_max, v, row_stride, j0, j1, c0, o, rank); break;
                case 5: values_step<5>(p.data(), n_max, v, row_stride, j0, j1, c0, o, rank); break;
                case 4: values_step<4>(p.data(), n_max, v, row_stride, j0, j1, c0, o, rank); break;
                case 3: values_step<3>(p.data(), n_max, v, row_stride, j0, j1, c0, o, rank); break;
                case 2: values_step<2>(p.data(), n_max, v, row_stride, j0, j1, c0, o, rank); break;
                default: values_step<1>(p.data(), n_max, v, row_stride, j0, j1, c0, o, rank); break;
            }
        }
    }
    for (int64_t c0 = rank8; c0 < rank; ++c0)
        for (int64_t h = 0; h < n_rows; ++h) {
            float sum = 0.0f;
            // std::fma: a fixed rounding per term, so the positions past this row's limit (p = 0)
            // leave its sum exactly as it is alone (a plain `+=` was contracted or not depending
            // on the loop's shape, a 1-ulp difference).
            for (int64_t j = 0; j < n_max; ++j) sum = std::fma(p[static_cast<size_t>(h * n_max + j)], v[j * row_stride + c0], sum);
            o[h * rank + c0] = sum;
        }
}

}  // namespace tandem::model
