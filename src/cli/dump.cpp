// tandem dump FILE TENSOR -o OUT.npy: one tensor, dequantized to float32, as a NumPy array.
#include <cstdio>

#include "cli/verbs.h"
#include "core/check.h"
#include "core/npy.h"
#include "core/units.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

namespace tandem::cli {

namespace {

struct DumpArgs {
    std::string path, tensor, out;
};

int run_dump(const DumpArgs& args) {
    const gguf::File file = gguf::File::open(args.path);
    const gguf::TensorInfo& t = file.tensor(args.tensor);
    if (!quant::can_dequantize(t.type))
        fail("tensor '{}' has type {}, which tandem cannot dequantize", t.name, ggml_type_name(t.type));
    std::vector<float> values(t.n_elements);
    const uint64_t row = static_cast<uint64_t>(t.ne[0]);
    const uint64_t row_bytes = t.row_bytes();
    for (uint64_t r = 0; r < t.n_elements / row; ++r)
        quant::dequantize_row(t.type, t.data + r * row_bytes, values.data() + r * row, static_cast<int64_t>(row));
    // NumPy order is the GGUF dimensions reversed: ne[0] is the last (contiguous) axis.
    std::vector<int64_t> shape(t.ne.rbegin(), t.ne.rend());
    write_npy(args.out, shape, values);
    std::string dims;
    for (int64_t d : shape) dims += fmt::format("{}{}", dims.empty() ? "" : ", ", d);
    std::printf("%s: %s [%s] -> %s (%s of float32)\n", t.name.c_str(), std::string(ggml_type_name(t.type)).c_str(),
                dims.c_str(), args.out.c_str(), format_bytes(values.size() * sizeof(float)).c_str());
    return 0;
}

}  // namespace

Verb add_dump(CLI::App& app) {
    auto args = std::make_shared<DumpArgs>();
    CLI::App* cmd = app.add_subcommand("dump", "Write one tensor, dequantized to float32, to a NumPy .npy file");
    cmd->add_option("model", args->path, "GGUF file (any shard of a split model)")->required();
    cmd->add_option("tensor", args->tensor, "Tensor name, e.g. blk.0.attn_q_a.weight")->required();
    cmd->add_option("-o,--output", args->out, "Output .npy path")->required();
    return {cmd, [args] { return run_dump(*args); }};
}

}  // namespace tandem::cli
