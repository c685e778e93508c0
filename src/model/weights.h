// Binding GGUF tensors to a model's weights, checking every shape ("expected vs found").
#pragma once

#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/ops.h"

namespace tandem::model {

class Binder {
public:
    explicit Binder(const gguf::File& file) : file_(file) {}

    bool has(const std::string& name) const { return file_.find(name) != nullptr; }

    // The tensor, which must exist and have exactly these GGUF dimensions.
    const gguf::TensorInfo& tensor(const std::string& name, const std::vector<int64_t>& ne) const;
    // A 2-D weight [n_in, n_out] as a matrix.
    Mat mat(const std::string& name, int64_t n_in, int64_t n_out) const;
    // A 1-D vector of n values (norm weights, biases), dequantized to float32.
    std::vector<float> vec(const std::string& name, int64_t n) const;
    // Optional variants: empty when the tensor is absent (shape still checked when present).
    Mat mat_opt(const std::string& name, int64_t n_in, int64_t n_out) const;
    std::vector<float> vec_opt(const std::string& name, int64_t n) const;

private:
    const gguf::File& file_;
};

// Dequantizes one row of a matrix into `out` (w.n_in values).
void dequantize_mat_row(const Mat& w, int64_t row, float* out);

}  // namespace tandem::model
