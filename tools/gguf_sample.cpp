// Writes a GGUF file holding every metadata value type and one tensor of every ggml type, with
// deterministic contents, so that tests/python/test_gguf_python.py can check that the `gguf`
// Python package's GGUFReader reads back exactly what tandem's writer wrote.
//
//   gguf_sample OUT.gguf [ALIGNMENT]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/check.h"
#include "gguf/writer.h"

using namespace tandem;
using namespace tandem::gguf;

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: gguf_sample OUT.gguf [ALIGNMENT]\n");
        return 2;
    }
    try {
        const uint32_t alignment = argc > 2 ? static_cast<uint32_t>(std::atoi(argv[2])) : kDefaultAlignment;
        Writer w(alignment);
        w.set("general.architecture", Value::string("sample"));
        w.set("sample.u8", Value::u8(200));
        w.set("sample.i8", Value::i8(-100));
        w.set("sample.u16", Value::u16(60000));
        w.set("sample.i16", Value::i16(-30000));
        w.set("sample.u32", Value::u32(4000000000u));
        w.set("sample.i32", Value::i32(-2000000000));
        w.set("sample.u64", Value::u64(18446744073709551615ull));
        w.set("sample.i64", Value::i64(-9223372036854775807ll - 1));
        w.set("sample.f32", Value::f32(3.25f));
        w.set("sample.f64", Value::f64(-1e300));
        w.set("sample.bool", Value::boolean(true));
        w.set("sample.str", Value::string("utf-8 \xe4\xbd\xa0\xe5\xa5\xbd"));
        w.set("sample.strs", Value::strings({"a", "", "ccc"}));
        const int32_t ints[] = {1, -2, 3};
        w.set("sample.i32s", Value::i32s(ints));
        const float floats[] = {0.5f, -1.5f};
        w.set("sample.f32s", Value::f32s(floats));
        w.set("sample.nested", Value::array(ValueType::ARRAY,
                                            {Value::array(ValueType::UINT8, {Value::u8(1), Value::u8(2)}),
                                             Value::array(ValueType::STRING, {Value::string("x")})}));
        int i = 0;
        for (const auto& t : ggml_all_types()) {
            // Shape [3 rows, 2 blocks]; byte j of tensor i is (i * 131 + j * 7) mod 256.
            const int k = i++;
            w.add_tensor(fmt::format("tensor.{}", t.name), t.type, {2 * static_cast<int64_t>(t.block_size), 3},
                         [k](std::span<uint8_t> out) {
                             for (size_t j = 0; j < out.size(); ++j) out[j] = static_cast<uint8_t>(k * 131 + j * 7);
                         });
        }
        w.write(argv[1]);
    } catch (const Error& e) {
        std::fprintf(stderr, "gguf_sample: %s\n", e.what());
        return 1;
    }
    return 0;
}
