#include "model/weights.h"

#include "core/check.h"
#include "quant/quant.h"

namespace tandem::model {

namespace {
std::string shape_text(const std::vector<int64_t>& ne) {
    std::string s = "[";
    for (size_t i = 0; i < ne.size(); ++i) s += fmt::format("{}{}", i ? ", " : "", ne[i]);
    return s + "]";
}
}  // namespace

const gguf::TensorInfo& Binder::tensor(const std::string& name, const std::vector<int64_t>& ne) const {
    const gguf::TensorInfo* t = file_.find(name);
    if (!t) fail("model file lacks tensor '{}' (expected shape {})", name, shape_text(ne));
    if (t->ne != ne) fail("tensor '{}': expected shape {}, found {}", name, shape_text(ne), shape_text(t->ne));
    return *t;
}

Mat Binder::mat(const std::string& name, int64_t n_in, int64_t n_out) const {
    return mat_of(tensor(name, {n_in, n_out}));
}

std::vector<float> Binder::vec(const std::string& name, int64_t n) const {
    const gguf::TensorInfo& t = tensor(name, {n});
    if (!quant::can_dequantize(t.type)) fail("tensor '{}': type {} is not supported", name, ggml_type_name(t.type));
    std::vector<float> out(static_cast<size_t>(n));
    quant::dequantize_row(t.type, t.data, out.data(), n);
    return out;
}

Mat Binder::mat_opt(const std::string& name, int64_t n_in, int64_t n_out) const {
    return has(name) ? mat(name, n_in, n_out) : Mat{};
}

std::vector<float> Binder::vec_opt(const std::string& name, int64_t n) const {
    return has(name) ? vec(name, n) : std::vector<float>{};
}

void dequantize_mat_row(const Mat& w, int64_t row, float* out) {
    quant::dequantize_row(w.type, w.row(row), out, w.n_in);
}

}  // namespace tandem::model
