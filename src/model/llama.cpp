// Llama and Qwen2 dense transformers (GGUF architectures `llama`, `qwen2`), which cover the
// DeepSeek-R1 distills: pre-norm blocks of grouped-query attention with RoPE and a SwiGLU
// FFN. Differences are Config fields: Qwen2 has q/k/v biases (present as tensors) and rotates
// halves (NEOX), Llama's converted q/k weights are permuted for adjacent-pair rotation.
#include <cmath>

#include "core/check.h"
#include "model/model.h"
#include "model/ops.h"
#include "model/summary.h"
#include "model/weights.h"

namespace tandem::model {
namespace {

struct Config {
    int64_t n_layer = 0, n_embd = 0, n_vocab = 0, n_ctx_train = 0;
    int64_t n_head = 0, n_head_kv = 0, head_dim = 0, n_ff = 0;
    float rms_eps = 1e-6f;
    bool rope_neox = false;
    RopeParams rope;
    float rope_linear_factor = 1.0f;  // rope.scaling.type == "linear"

    int64_t n_q() const { return n_head * head_dim; }
    int64_t n_kv() const { return n_head_kv * head_dim; }
    int64_t cache_width() const { return 2 * n_kv(); }  // K then V
};

Config read_config(const gguf::File& file) {
    const gguf::Metadata& md = file.metadata();
    const std::string arch = file.architecture();
    const std::string a = arch + ".";
    Config c;
    c.n_layer = md.get_int(a + "block_count");
    c.n_embd = md.get_int(a + "embedding_length");
    c.n_ctx_train = md.int_or(a + "context_length", 4096);
    c.n_head = md.get_int(a + "attention.head_count");
    c.n_head_kv = md.int_or(a + "attention.head_count_kv", c.n_head);
    c.n_ff = md.get_int(a + "feed_forward_length");
    if (c.n_head <= 0 || c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0)
        fail("{} model: head_count {} must be a positive multiple of head_count_kv {}", arch, c.n_head, c.n_head_kv);
    c.head_dim = md.int_or(a + "attention.key_length", c.n_embd / c.n_head);
    c.rms_eps = static_cast<float>(md.float_or(a + "attention.layer_norm_rms_epsilon", 1e-6));
    c.rope_neox = arch == "qwen2";
    c.rope.dim = md.int_or(a + "rope.dimension_count", c.head_dim);
    c.rope.freq_base = static_cast<float>(md.float_or(a + "rope.freq_base", 10000.0));
    const std::string scaling = md.string_or_none(a + "rope.scaling.type").value_or("none");
    if (scaling == "linear") c.rope_linear_factor = static_cast<float>(md.get_float(a + "rope.scaling.factor"));
    else if (scaling == "yarn") {
        c.rope.yarn_factor = static_cast<float>(md.get_float(a + "rope.scaling.factor"));
        c.rope.yarn_orig_ctx = md.get_int(a + "rope.scaling.original_context_length");
    } else if (scaling != "none") {
        fail("{} model: rope.scaling.type '{}' is not supported", arch, scaling);
    }
    if (c.n_layer <= 0 || c.n_layer > 1024) fail("{} model: block_count must be 1 to 1024", arch);
    if (c.rope.dim <= 0 || c.rope.dim > c.head_dim || c.rope.dim % 2) fail("{} model: bad rope.dimension_count {}", arch, c.rope.dim);
    const gguf::TensorInfo& embd = file.tensor("token_embd.weight");
    c.n_vocab = embd.ne.size() == 2 ? embd.ne[1] : 0;
    if (c.n_vocab <= 0) fail("{} model: token_embd.weight must be 2-D", arch);
    return c;
}

struct Layer {
    std::vector<float> attn_norm;             // [n_embd]
    Mat wq, wk, wv, wo;                       // [n_q, n_embd], [n_kv, n_embd] x2, [n_embd, n_q]
    std::vector<float> bq, bk, bv;            // biases (Qwen2), empty when absent
    std::vector<float> ffn_norm;              // [n_embd]
    Mat gate, up, down;                       // [n_ff, n_embd] x2, [n_embd, n_ff]
};

class Llama final : public Model {
public:
    Llama(const gguf::File& file, cpu::ThreadPool& pool, const LoadOptions& opt)
        : pool_(pool), c_(read_config(file)) {
        Binder b(file);
        const Config& c = c_;
        arch_ = file.architecture();
        token_embd_ = b.mat("token_embd.weight", c.n_embd, c.n_vocab);
        output_norm_ = b.vec("output_norm.weight", c.n_embd);
        output_ = b.has("output.weight") ? b.mat("output.weight", c.n_embd, c.n_vocab) : token_embd_;  // tied
        layers_.resize(static_cast<size_t>(c.n_layer));
        for (int64_t il = 0; il < c.n_layer; ++il) {
            Layer& l = layers_[static_cast<size_t>(il)];
            const std::string p = fmt::format("blk.{}.", il);
            l.attn_norm = b.vec(p + "attn_norm.weight", c.n_embd);
            l.wq = b.mat(p + "attn_q.weight", c.n_embd, c.n_q());
            l.wk = b.mat(p + "attn_k.weight", c.n_embd, c.n_kv());
            l.wv = b.mat(p + "attn_v.weight", c.n_embd, c.n_kv());
            l.bq = b.vec_opt(p + "attn_q.bias", c.n_q());
            l.bk = b.vec_opt(p + "attn_k.bias", c.n_kv());
            l.bv = b.vec_opt(p + "attn_v.bias", c.n_kv());
            l.wo = b.mat(p + "attn_output.weight", c.n_q(), c.n_embd);
            l.ffn_norm = b.vec(p + "ffn_norm.weight", c.n_embd);
            l.gate = b.mat(p + "ffn_gate.weight", c.n_embd, c.n_ff);
            l.up = b.mat(p + "ffn_up.weight", c.n_embd, c.n_ff);
            l.down = b.mat(p + "ffn_down.weight", c.n_ff, c.n_embd);
        }
        inv_freq_ = rope_inv_freq(c.rope);
        // Llama 3.1-style per-dimension frequency factors, when the file carries them.
        if (b.has("rope_freqs.weight")) {
            const std::vector<float> factors = b.vec("rope_freqs.weight", c.rope.dim / 2);
            for (size_t i = 0; i < inv_freq_.size(); ++i) inv_freq_[i] /= factors[i];
        }
        for (float& f : inv_freq_) f /= c.rope_linear_factor;
        scratch_.resize(static_cast<size_t>(pool.n_threads()));
        for (auto& sc : scratch_) sc.f32_activations = opt.f32_activations;
        bytes_per_token_ = summarize(file).active_bytes_per_token;
    }

    int64_t n_vocab() const override { return c_.n_vocab; }
    int64_t n_ctx_train() const override { return c_.n_ctx_train; }
    uint64_t bytes_per_token() const override { return bytes_per_token_; }
    std::unique_ptr<KvCache> make_cache(int64_t max_ctx) const override {
        return std::make_unique<KvCache>(c_.n_layer, c_.cache_width(), max_ctx);
    }
    std::string describe() const override {
        return fmt::format("{}: {} layers, n_embd {}, {} heads ({} KV heads of {}), FFN {}", arch_, c_.n_layer, c_.n_embd,
                           c_.n_head, c_.n_head_kv, c_.head_dim, c_.n_ff);
    }

    void forward(const Batch& batch, KvCache& cache, float* logits) override {
        validate_batch(batch, cache, c_.n_vocab);
        const Config& c = c_;
        const int64_t n_tok = batch.size();
        if (n_tok == 0) return;
        x_.resize(static_cast<size_t>(n_tok * c.n_embd));
        h_.resize(x_.size());
        y_.resize(x_.size());
        pool_.parallel_for(n_tok, [&](int64_t t0, int64_t t1, int) {
            for (int64_t t = t0; t < t1; ++t) dequantize_mat_row(token_embd_, batch.tokens[static_cast<size_t>(t)], x(t));
        });

        for (int64_t il = 0; il < c.n_layer; ++il) {
            const Layer& l = layers_[static_cast<size_t>(il)];
            // attention rmsnorm, attention, residual
            rms_norm_rows(pool_, x_.data(), l.attn_norm.data(), h_.data(), n_tok, c.n_embd, c.rms_eps);
            attention(l, il, batch, cache);
            add_rows(pool_, x_.data(), y_.data(), n_tok, c.n_embd);
            // ffn rmsnorm, SwiGLU, residual
            rms_norm_rows(pool_, x_.data(), l.ffn_norm.data(), h_.data(), n_tok, c.n_embd, c.rms_eps);
            swiglu_ffn(pool_, l.gate, l.up, l.down, h_.data(), n_tok, y_.data(), g_, u_, scratch_[0]);
            add_rows(pool_, x_.data(), y_.data(), n_tok, c.n_embd);
        }
        cache.commit(batch);

        // output norm and head, for the tokens that want logits
        output_logits(pool_, batch.want_logits, x_.data(), h_.data(), c.n_embd, output_norm_, c.rms_eps, output_, logits,
                      scratch_[0]);
    }

private:
    float* x(int64_t t) { return x_.data() + t * c_.n_embd; }
    float* h(int64_t t) { return h_.data() + t * c_.n_embd; }

    void attention(const Layer& l, int64_t il, const Batch& batch, KvCache& cache) {
        const Config& c = c_;
        const int64_t n_tok = batch.size(), n_q = c.n_q(), n_kv = c.n_kv(), hd = c.head_dim, width = c.cache_width();
        q_.resize(static_cast<size_t>(n_tok * n_q));
        k_.resize(static_cast<size_t>(n_tok * n_kv));
        v_.resize(k_.size());
        matmul_three(pool_, l.wq, q_.data(), l.wk, k_.data(), l.wv, v_.data(), h_.data(), n_tok, scratch_[0]);
        // Each token's angles once for all its heads.
        rope_angles(batch.pos, inv_freq_, rope_cs_);
        const int64_t half = static_cast<int64_t>(inv_freq_.size());
        // Room for every token's cache row first (a sequence's rows may move while they grow),
        // then biases, rope and the rows, on the threads.
        for (int64_t t = 0; t < n_tok; ++t) cache.reserve_row(batch.seq[static_cast<size_t>(t)], il, batch.pos[static_cast<size_t>(t)]);
        pool_.parallel_for(n_tok, [&](int64_t t0, int64_t t1, int) {
            std::vector<float> row(static_cast<size_t>(width));
            for (int64_t t = t0; t < t1; ++t) {
                float* q = q_.data() + t * n_q;
                float* k = k_.data() + t * n_kv;
                float* v = v_.data() + t * n_kv;
                if (!l.bq.empty()) for (int64_t i = 0; i < n_q; ++i) q[i] += l.bq[static_cast<size_t>(i)];
                if (!l.bk.empty()) for (int64_t i = 0; i < n_kv; ++i) k[i] += l.bk[static_cast<size_t>(i)];
                if (!l.bv.empty()) for (int64_t i = 0; i < n_kv; ++i) v[i] += l.bv[static_cast<size_t>(i)];
                const float* cs = rope_cs_.data() + t * 2 * half;
                for (int64_t hh = 0; hh < c.n_head; ++hh) rope(q + hh * hd, c.rope.dim, cs, c.rope_neox);
                for (int64_t hh = 0; hh < c.n_head_kv; ++hh) rope(k + hh * hd, c.rope.dim, cs, c.rope_neox);
                std::copy(k, k + n_kv, row.data());
                std::copy(v, v + n_kv, row.data() + n_kv);
                cache.write_row(batch.seq[static_cast<size_t>(t)], il, batch.pos[static_cast<size_t>(t)], row.data());
            }
        });
        attn_.resize(static_cast<size_t>(n_tok * n_q));
        const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
        const int64_t group = c.n_head / c.n_head_kv;
        // Per token, each KV head's query heads as runs of up to kAttnRows rows that read the same
        // keys and values (attend_float_run).
        const int64_t runs_per_kv = (group + kAttnRows - 1) / kAttnRows;
        pool_.parallel_for(n_tok * c.n_head_kv * runs_per_kv, [&](int64_t i0, int64_t i1, int) {
            std::vector<float> p;
            int32_t lim[kAttnRows];
            for (int64_t i = i0; i < i1; ++i) {
                const int64_t t = i / (c.n_head_kv * runs_per_kv), kvh = i / runs_per_kv % c.n_head_kv;
                const int64_t h0 = kvh * group + i % runs_per_kv * kAttnRows;
                const int64_t nh = std::min(kAttnRows, (kvh + 1) * group - h0);
                std::fill_n(lim, nh, batch.pos[static_cast<size_t>(t)] + 1);
                const float* rows = cache.rows(batch.seq[static_cast<size_t>(t)], il);
                attend_float_run(q_.data() + t * n_q + h0 * hd, nh, lim, rows + kvh * hd, rows + n_kv + kvh * hd, width, hd, hd,
                                 scale, p, attn_.data() + t * n_q + h0 * hd);
            }
        });
        matmul(pool_, l.wo, attn_.data(), n_tok, y_.data(), c.n_embd, scratch_[0]);
    }

    cpu::ThreadPool& pool_;
    Config c_;
    std::string arch_;
    Mat token_embd_, output_;
    std::vector<float> output_norm_;
    std::vector<Layer> layers_;
    std::vector<float> inv_freq_;
    uint64_t bytes_per_token_ = 0;
    std::vector<float> x_, h_, y_, q_, k_, v_, attn_, g_, u_;
    std::vector<float> rope_cs_;  // the batch's rope angles, [n_tok][rope dim / 2][2]
    std::vector<QuantScratch> scratch_;
};

}  // namespace

std::unique_ptr<Model> load_llama(const gguf::File& file, cpu::ThreadPool& pool, const LoadOptions& opt) {
    return std::make_unique<Llama>(file, pool, opt);
}

}  // namespace tandem::model
