// GGUF reader and writer: round trips, split models, and a corpus of deliberately broken files,
// each of which must give its specific error (never a crash; CI runs this under ASan+UBSan).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/check.h"
#include "core/units.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"

namespace fs = std::filesystem;
using namespace tandem;
using namespace tandem::gguf;

namespace {

fs::path temp_dir(const std::string& name) {
    fs::path p = fs::temp_directory_path() / fmt::format("tandem_test_{}_{}", name, ::getpid());
    fs::create_directories(p);
    return p;
}

void write_bytes(const fs::path& p, const std::vector<uint8_t>& b) {
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

// Hand-assembles GGUF images byte by byte, so that tests can write what the Writer never would.
struct Raw {
    std::vector<uint8_t> b;
    template <typename T>
    Raw& put(T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        b.insert(b.end(), p, p + sizeof(T));
        return *this;
    }
    Raw& u32(uint32_t v) { return put(v); }
    Raw& u64(uint64_t v) { return put(v); }
    Raw& str(const std::string& s) {
        u64(s.size());
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
    Raw& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
        return u32(kMagic).u32(version).u64(n_tensors).u64(n_kv);
    }
    Raw& kv_u32(const std::string& key, uint32_t v) { return str(key).u32(4).u32(v); }
    Raw& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
        str(name).u32(static_cast<uint32_t>(ne.size()));
        for (uint64_t d : ne) u64(d);
        return u32(type).u64(offset);
    }
    Raw& pad(size_t align = 32) {
        while (b.size() % align) b.push_back(0);
        return *this;
    }
    Raw& data(size_t n, uint8_t fill = 0x11) {
        b.insert(b.end(), n, fill);
        return *this;
    }
};

// A small valid image: one kv, two F32 tensors of 8 floats.
Raw valid_image() {
    Raw r;
    r.header(2, 1).kv_u32("general.alignment", 32);
    r.tensor("a", {8}, 0, 0).tensor("b", {8}, 0, 32);
    r.pad().data(64);
    return r;
}

std::string parse_error(const std::vector<uint8_t>& bytes) {
    try {
        parse(bytes, "test.gguf");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

#define EXPECT_PARSE_ERROR(bytes, substr)                                          \
    do {                                                                           \
        const std::string msg_ = parse_error(bytes);                               \
        EXPECT_NE(msg_, "") << "expected an error containing: " << (substr);       \
        EXPECT_NE(msg_.find(substr), std::string::npos) << "message: " << msg_;   \
        EXPECT_NE(msg_.find("test.gguf"), std::string::npos) << "message: " << msg_; \
    } while (0)

}  // namespace

// The ", "-separated lists of format names in messages: whole items only, each once.
TEST(Units, AddToListKeepsItemsUnique) {
    std::string list;
    tandem::add_to_list(list, "IQ2_XXS");
    tandem::add_to_list(list, "IQ1_M");
    tandem::add_to_list(list, "IQ2_XXS");
    EXPECT_EQ(list, "IQ2_XXS, IQ1_M");
    tandem::add_to_list(list, "IQ2_XS");  // a prefix of an item is an item of its own
    tandem::add_to_list(list, "M");
    EXPECT_EQ(list, "IQ2_XXS, IQ1_M, IQ2_XS, M");
}

TEST(GgufParse, ValidImageParses) {
    Shard s = parse(valid_image().b, "test.gguf");
    ASSERT_EQ(s.tensors.size(), 2u);
    EXPECT_EQ(s.tensors[1].name, "b");
    EXPECT_EQ(s.tensors[1].n_bytes, 32u);
    EXPECT_EQ(s.metadata.get_u32("general.alignment"), 32u);
}

TEST(GgufCorrupt, BadMagic) {
    auto b = valid_image().b;
    b[0] = 'X';
    EXPECT_PARSE_ERROR(b, "not a GGUF file");
}

TEST(GgufCorrupt, UnsupportedVersion) {
    Raw r;
    r.header(0, 0, 7);
    EXPECT_PARSE_ERROR(r.b, "unsupported GGUF version 7");
    Raw r1;
    r1.header(0, 0, 1);
    EXPECT_PARSE_ERROR(r1.b, "version 1 is not supported");
    Raw big;
    big.header(0, 0, 0x03000000);
    EXPECT_PARSE_ERROR(big.b, "big-endian");
}

TEST(GgufCorrupt, TruncationAtEveryByte) {
    // Every proper prefix of a valid file must be rejected with an error, never read past.
    const auto full = valid_image().b;
    for (size_t n = 0; n < full.size(); ++n) {
        std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<ptrdiff_t>(n));
        const std::string msg = parse_error(cut);
        EXPECT_NE(msg, "") << "prefix of " << n << " bytes parsed";
    }
    // At the section boundaries the message says what was being read.
    auto cut_at = [&](size_t n) { return std::vector<uint8_t>(full.begin(), full.begin() + static_cast<ptrdiff_t>(n)); };
    EXPECT_PARSE_ERROR(cut_at(2), "truncated while reading magic");
    EXPECT_PARSE_ERROR(cut_at(4), "truncated while reading version");
    EXPECT_PARSE_ERROR(cut_at(8), "truncated while reading tensor count");
    EXPECT_PARSE_ERROR(cut_at(16), "truncated while reading metadata count");
    EXPECT_PARSE_ERROR(cut_at(24), "metadata count 1 cannot fit");
    EXPECT_PARSE_ERROR(cut_at(24 + 8 + 17 + 4 + 2), "truncated while reading general.alignment");
    const size_t tensors_at = 24 + 8 + 17 + 4 + 4;  // each tensor info here is 33 bytes
    EXPECT_PARSE_ERROR(cut_at(tensors_at + 4), "tensor count 2 cannot fit in the 4 bytes left");
    EXPECT_PARSE_ERROR(cut_at(tensors_at + 64), "truncated while reading tensor offset");
    EXPECT_PARSE_ERROR(cut_at(full.size() - 1), "past the end of the file");
}

TEST(GgufCorrupt, HugeCounts) {
    Raw kv;
    kv.header(0, uint64_t{1} << 63);
    EXPECT_PARSE_ERROR(kv.b, "metadata count 9223372036854775808 cannot fit");
    Raw t;
    t.header(uint64_t{1} << 63, 0);
    EXPECT_PARSE_ERROR(t.b, "tensor count 9223372036854775808 cannot fit");
}

TEST(GgufCorrupt, StringLengthPastEnd) {
    Raw r;
    r.header(0, 1).u64(1000).data(10);
    EXPECT_PARSE_ERROR(r.b, "metadata key has length 1000 but only 10 bytes are left");
    Raw v;
    v.header(0, 1).str("k").u32(8).u64(uint64_t{1} << 62).data(4);
    EXPECT_PARSE_ERROR(v.b, "has length 4611686018427387904");
}

TEST(GgufCorrupt, ArrayCountOverflow) {
    // 2^61 u64 elements would need 2^64 bytes: the multiplication would overflow; the check
    // must divide instead.
    Raw r;
    r.header(0, 1).str("k").u32(9).u32(10).u64(uint64_t{1} << 61).data(16);
    EXPECT_PARSE_ERROR(r.b, "array count 2305843009213693952 of uint64 cannot fit");
    Raw s;
    s.header(0, 1).str("k").u32(9).u32(8).u64(UINT64_MAX).data(16);
    EXPECT_PARSE_ERROR(s.b, "of string cannot fit");
}

TEST(GgufCorrupt, NestedArraysTooDeep) {
    Raw r;
    r.header(0, 1).str("k").u32(9);
    for (int i = 0; i < 20; ++i) r.u32(9).u64(1);
    r.u32(4).u64(1).u32(7);
    EXPECT_PARSE_ERROR(r.b, "nested deeper");
}

TEST(GgufCorrupt, UnknownValueType) {
    Raw r;
    r.header(0, 1).str("k").u32(13).u32(0);
    EXPECT_PARSE_ERROR(r.b, "key 'k': unknown value type 13");
    Raw a;
    a.header(0, 1).str("k").u32(9).u32(99).u64(0);
    EXPECT_PARSE_ERROR(a.b, "unknown array element type 99");
}

TEST(GgufCorrupt, BadAlignment) {
    for (uint32_t a : {0u, 3u, 48u}) {
        Raw r;
        r.header(0, 1).kv_u32("general.alignment", a);
        EXPECT_PARSE_ERROR(r.b, fmt::format("general.alignment {} is not a power of two", a));
    }
    Raw w;
    w.header(0, 1).str("general.alignment").u32(10).u64(32);
    EXPECT_PARSE_ERROR(w.b, "general.alignment must be uint32, found uint64");
    Raw s;
    s.header(0, 1).str("general.alignment").u32(8).str("32");
    EXPECT_PARSE_ERROR(s.b, "general.alignment must be uint32, found string");
}

TEST(GgufCorrupt, DuplicateKey) {
    Raw r;
    r.header(0, 2).kv_u32("x.y", 1).kv_u32("x.y", 2);
    EXPECT_PARSE_ERROR(r.b, "duplicate metadata key 'x.y'");
}

TEST(GgufCorrupt, BadBool) {
    Raw r;
    r.header(0, 1).str("flag").u32(7).put<uint8_t>(2);
    EXPECT_PARSE_ERROR(r.b, "bool value 2");
}

TEST(GgufCorrupt, DuplicateTensorName) {
    Raw r;
    r.header(2, 0).tensor("w", {8}, 0, 0).tensor("w", {8}, 0, 32).pad().data(64);
    EXPECT_PARSE_ERROR(r.b, "duplicate tensor name 'w'");
}

TEST(GgufCorrupt, TooManyDimensions) {
    Raw r;
    r.header(1, 0).tensor("w", {1, 1, 1, 1, 1}, 0, 0).pad().data(32);
    EXPECT_PARSE_ERROR(r.b, "tensor 'w' has 5 dimensions (expected 1 to 4)");
    Raw z;
    z.header(1, 0).tensor("w", {}, 0, 0).pad().data(32);
    EXPECT_PARSE_ERROR(z.b, "tensor 'w' has 0 dimensions");
}

TEST(GgufCorrupt, ZeroDimension) {
    Raw r;
    r.header(1, 0).tensor("w", {8, 0}, 0, 0).pad().data(32);
    EXPECT_PARSE_ERROR(r.b, "tensor 'w' has dimension 1 of size 0");
}

TEST(GgufCorrupt, DimensionProductOverflows) {
    Raw r;
    r.header(1, 0).tensor("w", {uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0).pad().data(32);
    EXPECT_PARSE_ERROR(r.b, "tensor 'w': element count overflows");
    // Elements fit in int64 but the byte size (4 bytes each) does not fit in the file.
    Raw s;
    s.header(1, 0).tensor("w", {uint64_t{1} << 31, uint64_t{1} << 30}, 0, 0).pad().data(32);
    EXPECT_PARSE_ERROR(s.b, "lie past the end of the file");
    // F64: 2^62 elements x 8 bytes overflows u64.
    Raw q;
    q.header(1, 0).tensor("w", {uint64_t{1} << 62}, 28, 0).pad().data(32);
    EXPECT_PARSE_ERROR(q.b, "tensor 'w': byte size overflows");
}

TEST(GgufCorrupt, BlockSizeMismatch) {
    Raw r;
    r.header(1, 0).tensor("w", {100}, 12, 0).pad().data(1024);  // Q4_K needs multiples of 256
    EXPECT_PARSE_ERROR(r.b, "first dimension 100 is not a multiple of the Q4_K block size 256");
}

TEST(GgufCorrupt, OffsetPastEnd) {
    Raw r;
    r.header(1, 0).tensor("w", {8}, 0, 64).pad().data(64);
    EXPECT_PARSE_ERROR(r.b, "tensor 'w': its 32 bytes at data offset 64");
    Raw o;  // offset + size wraps around 2^64
    o.header(1, 0).tensor("w", {8}, 0, UINT64_MAX - 31).pad().data(64);
    EXPECT_PARSE_ERROR(o.b, "past the end of the file");
}

TEST(GgufCorrupt, MisalignedOffset) {
    Raw r;
    r.header(1, 0).tensor("w", {8}, 0, 4).pad().data(64);
    EXPECT_PARSE_ERROR(r.b, "data offset 4 is not a multiple of the alignment 32");
}

TEST(GgufCorrupt, UnknownTensorType) {
    for (uint32_t type : {4u, 31u, 1000u}) {
        Raw r;
        r.header(1, 0).tensor("w", {8}, type, 0).pad().data(64);
        EXPECT_PARSE_ERROR(r.b, fmt::format("tensor 'w' has unknown type id {}", type));
    }
}

// ---- metadata getters ----

TEST(GgufMetadata, TypedGettersNameTheKey) {
    Metadata md;
    md.set("a.count", Value::u32(7));
    md.set("a.name", Value::string("x"));
    md.set("a.neg", Value::i32(-1));
    md.set("a.big", Value::u64(UINT64_MAX));
    md.set("a.eps", Value::f32(1e-6f));
    EXPECT_EQ(md.get_int("a.count"), 7);
    EXPECT_EQ(md.get_u32("a.count"), 7u);
    EXPECT_EQ(md.get_string("a.name"), "x");
    EXPECT_FLOAT_EQ(static_cast<float>(md.get_float("a.eps")), 1e-6f);
    auto msg = [&](auto fn) {
        try {
            fn();
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_EQ(msg([&] { md.get_int("a.name"); }), "metadata key 'a.name': expected an integer, found string");
    EXPECT_EQ(msg([&] { md.get_string("a.count"); }), "metadata key 'a.count': expected a string, found uint32");
    EXPECT_EQ(msg([&] { md.get_float("a.count"); }), "metadata key 'a.count': expected a float, found uint32");
    EXPECT_EQ(msg([&] { md.get_u32("a.neg"); }), "metadata key 'a.neg': value -1 is outside 0..4294967295");
    EXPECT_EQ(msg([&] { md.get_int("a.big"); }), "metadata key 'a.big': value 18446744073709551615 is too large");
    EXPECT_EQ(msg([&] { md.get_int("nope"); }), "metadata key 'nope' is missing");
    EXPECT_EQ(msg([&] { md.get_strings("a.name"); }), "metadata key 'a.name': expected an array of strings, found string");
    EXPECT_EQ(md.int_or("nope", 5), 5);
}

// ---- writer round trips ----

namespace {

Metadata every_value_type() {
    Metadata md;
    md.set("general.architecture", Value::string("test"));
    md.set("t.u8", Value::u8(200));
    md.set("t.i8", Value::i8(-100));
    md.set("t.u16", Value::u16(60000));
    md.set("t.i16", Value::i16(-30000));
    md.set("t.u32", Value::u32(4000000000u));
    md.set("t.i32", Value::i32(-2000000000));
    md.set("t.u64", Value::u64(UINT64_MAX));
    md.set("t.i64", Value::i64(INT64_MIN));
    md.set("t.f32", Value::f32(3.25f));
    md.set("t.f64", Value::f64(-1e300));
    md.set("t.bool", Value::boolean(true));
    md.set("t.str", Value::string(std::string("utf-8 \xe4\xbd\xa0\xe5\xa5\xbd and \0 nul", 22)));
    md.set("t.empty", Value::string(""));
    md.set("t.strs", Value::strings({"a", "", "ccc"}));
    std::vector<int32_t> ints = {1, -2, 3};
    md.set("t.i32s", Value::i32s(ints));
    md.set("t.nested", Value::array(ValueType::ARRAY,
                                    {Value::array(ValueType::UINT8, {Value::u8(1), Value::u8(2)}),
                                     Value::array(ValueType::STRING, {Value::string("x")}),
                                     Value::array(ValueType::BOOL, {})}));
    md.set("t.empty_arr", Value::array(ValueType::FLOAT64, {}));
    return md;
}

}  // namespace

TEST(GgufWriter, RoundTripEveryValueTypeAndTensorType) {
    const fs::path dir = temp_dir("roundtrip");
    for (uint32_t alignment : {32u, 64u, 1u}) {
        Writer w(alignment);
        const Metadata md = every_value_type();
        for (const auto& [k, v] : md.entries()) w.set(k, v);
        std::mt19937_64 rng(alignment);
        std::map<std::string, std::vector<uint8_t>> expect;
        for (const auto& t : ggml_all_types()) {
            const std::vector<int64_t> ne = {static_cast<int64_t>(t.block_size) * 2, 3};
            std::vector<uint8_t> bytes(t.type_size * 2 * 3);
            for (auto& x : bytes) x = static_cast<uint8_t>(rng());
            const std::string name = fmt::format("tensor.{}", t.name);
            expect[name] = bytes;
            w.add_tensor(name, t.type, ne, std::span<const uint8_t>(expect[name]));
        }
        const fs::path path = dir / fmt::format("rt{}.gguf", alignment);
        w.write(path.string());

        File f = File::open(path.string());
        EXPECT_EQ(f.version(), 3u);
        EXPECT_EQ(f.shards().front().alignment, alignment);
        // Every key, in order, with its type and value.
        const auto& got = f.metadata().entries();
        const auto& want = w.metadata().entries();
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); ++i) {
            EXPECT_EQ(got[i].first, want[i].first);
            EXPECT_TRUE(got[i].second == want[i].second) << got[i].first;
        }
        ASSERT_EQ(f.tensors().size(), ggml_all_types().size());
        for (const auto& t : ggml_all_types()) {
            const auto& info = f.tensor(fmt::format("tensor.{}", t.name));
            EXPECT_EQ(info.type, t.type);
            EXPECT_EQ(info.ne, (std::vector<int64_t>{static_cast<int64_t>(t.block_size) * 2, 3}));
            EXPECT_EQ(info.data - f.shards()[0].file->data() - f.shards()[0].data_offset, info.offset);
            EXPECT_EQ(info.offset % alignment, 0u);
            const auto& bytes = expect[info.name];
            ASSERT_EQ(info.n_bytes, bytes.size());
            EXPECT_EQ(std::memcmp(info.data, bytes.data(), bytes.size()), 0) << info.name;
            EXPECT_EQ(info.rows(), 3);
            EXPECT_EQ(info.row_bytes(), 2u * t.type_size);
        }
    }
    fs::remove_all(dir);
}

namespace {

Writer split_writer() {
    Writer w;
    w.set("general.architecture", Value::string("test"));
    for (int i = 0; i < 7; ++i)
        w.add_tensor(fmt::format("t{}", i), GgmlType::F32, {64, i + 1}, [i](std::span<uint8_t> out) {
            for (size_t j = 0; j < out.size(); ++j) out[j] = static_cast<uint8_t>(i * 31 + j);
        });
    return w;
}

std::string open_error(const fs::path& p) {
    try {
        File::open(p.string());
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(GgufSplit, AnyShardLoadsAll) {
    const fs::path dir = temp_dir("split");
    const auto paths = split_writer().write_split((dir / "model").string(), 3);
    ASSERT_EQ(paths.size(), 3u);
    EXPECT_EQ(fs::path(paths[1]).filename(), "model-00002-of-00003.gguf");
    for (const auto& p : paths) {
        File f = File::open(p);
        EXPECT_EQ(f.shards().size(), 3u);
        ASSERT_EQ(f.tensors().size(), 7u);
        EXPECT_EQ(f.architecture(), "test");
        for (int i = 0; i < 7; ++i) {
            const auto& t = f.tensor(fmt::format("t{}", i));
            EXPECT_EQ(t.ne[1], i + 1);
            EXPECT_EQ(t.data[5], static_cast<uint8_t>(i * 31 + 5));
        }
        // Tensors really are spread over the shards.
        std::set<int> shards_used;
        for (const auto& t : f.tensors()) shards_used.insert(t.shard);
        EXPECT_EQ(shards_used.size(), 3u);
    }
    fs::remove_all(dir);
}

TEST(GgufSplit, MissingShard) {
    const fs::path dir = temp_dir("split_missing");
    const auto paths = split_writer().write_split((dir / "model").string(), 3);
    fs::remove(paths[2]);
    const std::string msg = open_error(paths[0]);
    EXPECT_NE(msg.find("model-00003-of-00003.gguf: shard 3 of 3 of this split model is missing"), std::string::npos) << msg;
    fs::remove_all(dir);
}

TEST(GgufSplit, CountMismatch) {
    const fs::path dir = temp_dir("split_count");
    const auto paths = split_writer().write_split((dir / "model").string(), 3);
    // Renamed as if there were 4 shards: the files' split.count (3) disagrees with the names.
    for (int i = 0; i < 3; ++i) fs::rename(paths[i], dir / fmt::format("model-{:05d}-of-00004.gguf", i + 1));
    fs::copy_file(dir / "model-00003-of-00004.gguf", dir / "model-00004-of-00004.gguf");
    std::string msg = open_error(dir / "model-00001-of-00004.gguf");
    EXPECT_NE(msg.find("split.count is 3 but 4 shards were expected"), std::string::npos) << msg;
    // A lone shard renamed to look like a whole model.
    fs::copy_file(dir / "model-00002-of-00004.gguf", dir / "single.gguf");
    msg = open_error(dir / "single.gguf");
    EXPECT_NE(msg.find("split.count is 3 but 1 shard was expected"), std::string::npos) << msg;
    fs::remove_all(dir);
}

TEST(GgufSplit, ShardOrderAndTensorCount) {
    const fs::path dir = temp_dir("split_order");
    const auto paths = split_writer().write_split((dir / "model").string(), 2);
    // Swapped shards: split.no disagrees with the position.
    fs::rename(paths[0], dir / "tmp");
    fs::rename(paths[1], paths[0]);
    fs::rename(dir / "tmp", paths[1]);
    std::string msg = open_error(paths[0]);
    EXPECT_NE(msg.find("split.no is 1 but this is shard index 0"), std::string::npos) << msg;
    fs::remove_all(dir);

    // The same tensor in two shards.
    const fs::path dir2 = temp_dir("split_dup");
    Writer a, b;
    auto fill = [](std::span<uint8_t> out) { std::fill(out.begin(), out.end(), 0); };
    for (Writer* w : {&a, &b}) w->add_tensor("same", GgmlType::F32, {8}, fill);
    a.set("split.no", Value::u16(0));
    b.set("split.no", Value::u16(1));
    for (Writer* w : {&a, &b}) {
        w->set("split.count", Value::u16(2));
        w->set("split.tensors.count", Value::i32(2));
    }
    a.write((dir2 / "m-00001-of-00002.gguf").string());
    b.write((dir2 / "m-00002-of-00002.gguf").string());
    msg = open_error(dir2 / "m-00001-of-00002.gguf");
    EXPECT_NE(msg.find("tensor 'same' also appears in"), std::string::npos) << msg;
    fs::remove_all(dir2);
}

TEST(GgufOpen, NotAFileAndEmptyFile) {
    const fs::path dir = temp_dir("open");
    EXPECT_NE(open_error(dir / "absent.gguf").find("cannot open"), std::string::npos);
    EXPECT_NE(open_error(dir).find("not a regular file"), std::string::npos);
    write_bytes(dir / "empty.gguf", {});
    EXPECT_NE(open_error(dir / "empty.gguf").find("truncated while reading magic"), std::string::npos);
    fs::remove_all(dir);
}

// Writes the corrupt corpus to $TANDEM_BINARY_DIR/gguf_corpus as seeds for the fuzzer.
TEST(GgufCorpus, WriteFuzzSeeds) {
    const char* bin = std::getenv("TANDEM_BINARY_DIR");
    const fs::path dir = fs::path(bin ? bin : TANDEM_BINARY_DIR) / "gguf_corpus";
    fs::create_directories(dir);
    write_bytes(dir / "valid.gguf", valid_image().b);
    Raw arr;
    arr.header(1, 2).kv_u32("general.alignment", 32).str("k").u32(9).u32(8).u64(2).str("ab").str("c");
    arr.tensor("w", {32, 2}, 8, 0).pad().data(68);
    write_bytes(dir / "array_q8.gguf", arr.b);
    const fs::path rt = temp_dir("seed") / "rt.gguf";
    Writer w;
    const Metadata md = every_value_type();
    for (const auto& [k, v] : md.entries()) w.set(k, v);
    w.write(rt.string());
    write_bytes(dir / "every_type.gguf", read_bytes(rt));
    fs::remove_all(rt.parent_path());
    EXPECT_TRUE(fs::exists(dir / "every_type.gguf"));
}
