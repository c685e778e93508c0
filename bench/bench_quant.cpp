// Single-thread dot-product throughput per format and instruction set, at R1 expert shapes.
//
// One iteration is a matrix-vector product over a weight matrix [rows, 7168] (the gate/up
// projection of one expert is [2048, 7168]), one vec_dot per row against a quantized
// activation. Two matrix sizes per format and ISA:
//   .../dram: ~512 MiB, larger than the last-level cache (300 MiB on the benchmark Xeon), so
//             bytes/s is weight bytes streamed from memory, comparable to the read bandwidth;
//   .../l2:   ~1 MiB, resident in L2 (2 MiB per core), the kernel's pure compute rate.
// "weights/s" counts elements. Filter with --benchmark_filter, e.g. 'IQ1_S/avx512vnni'.
//
// bf16/FORMAT: dequantize_row_bf16 of L2-resident rows (the unpacking the tile-unit matrix
// products of prefill pay once per weight, cpu/gemm.h), in weights/s.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/aligned.h"
#include "quant/quant.h"
#include "quant/vec_dot.h"

namespace {

using tandem::GgmlType;
using namespace tandem::quant;

constexpr int64_t kCols = 7168;  // n_embd of DeepSeek-R1

void bm_vec_dot(benchmark::State& state, GgmlType type, Isa isa, int64_t matrix_bytes) {
    if (static_cast<int>(isa) > static_cast<int>(detect_isa())) {
        state.SkipWithError("CPU lacks this ISA");
        return;
    }
    const tandem::GgmlTypeTraits& t = tandem::ggml_traits(type);
    const size_t row_bytes = kCols / t.block_size * t.type_size;
    const int64_t rows = std::max<int64_t>(8, matrix_bytes / static_cast<int64_t>(row_bytes));
    std::vector<uint8_t> w(row_bytes * rows);
    fill_random(type, w, 1, 0.05f);
    const tandem::GgmlTypeTraits& at = tandem::ggml_traits(vec_dot_type(type));
    std::vector<float> x(kCols, 0.25f);
    for (int64_t i = 0; i < kCols; ++i) x[i] = static_cast<float>((i * 37) % 101) / 50.0f - 1.0f;
    tandem::aligned_vector<uint8_t> xq(kCols / at.block_size * at.type_size);  // aligned, as the model's activation buffers
    quantize_row(vec_dot_type(type), x.data(), xq.data(), kCols);
    std::vector<float> y(rows);
    const VecDotFn fn = vec_dot_fn(type, isa);
    for (auto _ : state) {
        for (int64_t r = 0; r < rows; ++r) y[r] = fn(w.data() + r * row_bytes, xq.data(), kCols);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * rows * static_cast<int64_t>(row_bytes));
    state.counters["weights/s"] =
        benchmark::Counter(static_cast<double>(state.iterations()) * rows * kCols, benchmark::Counter::kIsRate);
    state.SetLabel(has_simd_kernel(type, isa) || isa == Isa::Scalar ? "" : "scalar fallback");
}

void bm_bf16(benchmark::State& state, GgmlType type) {
    const tandem::GgmlTypeTraits& t = tandem::ggml_traits(type);
    const size_t row_bytes = kCols / t.block_size * t.type_size;
    const int64_t rows = std::max<int64_t>(8, (int64_t{1} << 20) / static_cast<int64_t>(row_bytes));
    std::vector<uint8_t> w(row_bytes * rows);
    fill_random(type, w, 1, 0.05f);
    std::vector<uint16_t> y(kCols);
    for (auto _ : state) {
        for (int64_t r = 0; r < rows; ++r) {
            dequantize_row_bf16(type, w.data() + r * row_bytes, y.data(), kCols);
            benchmark::DoNotOptimize(y.data());
        }
        benchmark::ClobberMemory();
    }
    state.counters["weights/s"] =
        benchmark::Counter(static_cast<double>(state.iterations()) * rows * kCols, benchmark::Counter::kIsRate);
    state.SetLabel(has_fast_bf16_dequant(type) ? "" : "scalar + conversion");
}

void register_all() {
    // R1's priority formats first, then every other format with a SIMD kernel.
    const GgmlType types[] = {GgmlType::IQ1_S,  GgmlType::IQ1_S_U2, GgmlType::IQ2_XXS, GgmlType::Q2_K,  GgmlType::Q4_K,
                              GgmlType::Q8_0,   GgmlType::Q6_K,     GgmlType::Q3_K,    GgmlType::Q5_K,  GgmlType::IQ1_M, GgmlType::IQ1_M_U2, GgmlType::IQ2_XXS_U3, GgmlType::IQ3_XXS_U4, GgmlType::Q2_K_U16, GgmlType::Q3_K_U16,
                              GgmlType::IQ3_XXS, GgmlType::IQ2_XS,  GgmlType::IQ2_S,   GgmlType::IQ3_S, GgmlType::IQ4_XS,
                              GgmlType::IQ4_NL, GgmlType::Q4_0,     GgmlType::Q4_1,    GgmlType::Q5_0,  GgmlType::Q5_1,
                              GgmlType::F16,    GgmlType::BF16};
    const std::pair<const char*, int64_t> sizes[] = {{"dram", int64_t{512} << 20}, {"l2", int64_t{1} << 20}};
    for (GgmlType type : types)
        for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni})
            for (const auto& [size_name, bytes] : sizes) {
                const std::string name = "vec_dot/" + std::string(tandem::ggml_type_name(type)) + "/" +
                                         std::string(isa_name(isa)) + "/" + size_name;
                benchmark::RegisterBenchmark(name.c_str(), bm_vec_dot, type, isa, bytes)
                    ->Unit(benchmark::kMicrosecond)
                    ->MinTime(0.3);
            }
    for (GgmlType type : types)
        benchmark::RegisterBenchmark(("bf16/" + std::string(tandem::ggml_type_name(type))).c_str(), bm_bf16, type)
            ->Unit(benchmark::kMicrosecond)
            ->MinTime(0.3);
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
