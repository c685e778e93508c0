// GGUF v2/v3 files: memory-mapped, validated before use, split over shards.
//
// Layout of one file (little-endian; GGUF spec, ggml/docs/gguf.md):
//   magic "GGUF" (4 bytes) | version u32 | n_tensors u64 | n_kv u64
//   n_kv   x { key: string, value_type: u32, value }
//   n_tensors x { name: string, n_dims: u32, ne: u64[n_dims], type: u32, offset: u64 }
//   padding to `general.alignment` (default 32)
//   tensor data; each tensor at data_start + offset, offset a multiple of the alignment
// where string = { len: u64, bytes[len] } (not NUL-terminated) and an array value is
// { elem_type: u32, count: u64, elements }.
//
// A model file is untrusted input: every count, length, size and offset is checked against the
// bytes left in the file, with overflow checks, before anything is allocated or read. A bad file
// throws tandem::Error naming the file, the byte offset and the problem.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "gguf/types.h"

namespace tandem::gguf {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr uint32_t kMaxDims = 4;
inline constexpr int kMaxArrayNesting = 8;

enum class ValueType : uint32_t {
    UINT8 = 0,
    INT8 = 1,
    UINT16 = 2,
    INT16 = 3,
    UINT32 = 4,
    INT32 = 5,
    FLOAT32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    UINT64 = 10,
    INT64 = 11,
    FLOAT64 = 12,
};
std::string_view value_type_name(ValueType t);
bool value_type_is_valid(uint32_t t);

// One metadata value. Integers of every width are held widened (unsigned in `uint64_t`, signed
// in `int64_t`), floats in `double`; `type` remembers what the file stored so that writing it
// back is exact.
struct Value {
    ValueType type = ValueType::UINT8;
    ValueType elem_type = ValueType::UINT8;  // arrays only
    std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<Value>> data;

    static Value u8(uint8_t v) { return {ValueType::UINT8, {}, uint64_t{v}}; }
    static Value i8(int8_t v) { return {ValueType::INT8, {}, int64_t{v}}; }
    static Value u16(uint16_t v) { return {ValueType::UINT16, {}, uint64_t{v}}; }
    static Value i16(int16_t v) { return {ValueType::INT16, {}, int64_t{v}}; }
    static Value u32(uint32_t v) { return {ValueType::UINT32, {}, uint64_t{v}}; }
    static Value i32(int32_t v) { return {ValueType::INT32, {}, int64_t{v}}; }
    static Value u64(uint64_t v) { return {ValueType::UINT64, {}, v}; }
    static Value i64(int64_t v) { return {ValueType::INT64, {}, v}; }
    static Value f32(float v) { return {ValueType::FLOAT32, {}, double{v}}; }
    static Value f64(double v) { return {ValueType::FLOAT64, {}, v}; }
    static Value boolean(bool v) { return {ValueType::BOOL, {}, v}; }
    static Value string(std::string v) { return {ValueType::STRING, {}, std::move(v)}; }
    static Value array(ValueType elem, std::vector<Value> items) {
        return {ValueType::ARRAY, elem, std::move(items)};
    }
    static Value strings(const std::vector<std::string>& items);
    static Value i32s(std::span<const int32_t> items);
    static Value f32s(std::span<const float> items);

    bool operator==(const Value&) const = default;
};

// Metadata of a model: ordered as in the file (order matters for a faithful rewrite).
class Metadata {
public:
    void set(std::string key, Value v);  // replaces an existing key, keeps its position
    const Value* find(std::string_view key) const;
    bool has(std::string_view key) const { return find(key) != nullptr; }
    const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }
    size_t size() const { return entries_.size(); }

    // Typed getters. A missing key or a value of the wrong type throws an Error naming the key,
    // the type expected and the type found. Integer getters accept any integer width and check
    // that the value fits.
    std::string get_string(std::string_view key) const;
    int64_t get_int(std::string_view key) const;
    uint32_t get_u32(std::string_view key) const;
    double get_float(std::string_view key) const;  // FLOAT32 or FLOAT64
    bool get_bool(std::string_view key) const;
    std::vector<std::string> get_strings(std::string_view key) const;
    std::vector<int64_t> get_ints(std::string_view key) const;
    std::vector<float> get_floats(std::string_view key) const;

    std::optional<std::string> string_or_none(std::string_view key) const;
    int64_t int_or(std::string_view key, int64_t dflt) const;
    double float_or(std::string_view key, double dflt) const;
    bool bool_or(std::string_view key, bool dflt) const;

private:
    std::vector<std::pair<std::string, Value>> entries_;
    std::map<std::string, size_t, std::less<>> index_;
};

// A read-only memory map of one file.
class MappedFile {
public:
    explicit MappedFile(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
};

struct TensorInfo {
    std::string name;
    GgmlType type = GgmlType::F32;
    std::vector<int64_t> ne;   // GGUF order: ne[0] is the contiguous (fastest) dimension
    uint64_t offset = 0;       // relative to the shard's data section, as stored
    uint64_t n_elements = 0;
    uint64_t n_bytes = 0;
    int shard = 0;             // index into File::shards()
    const uint8_t* data = nullptr;  // inside the shard's memory map

    int64_t rows() const;       // product of ne[1..]
    uint64_t row_bytes() const; // bytes of one row of ne[0] elements
};

// One parsed shard: header, metadata and tensor table.
struct Shard {
    std::unique_ptr<MappedFile> file;
    uint32_t version = 0;
    uint32_t alignment = kDefaultAlignment;
    uint64_t data_offset = 0;  // byte offset of the data section in the file
    Metadata metadata;
    std::vector<TensorInfo> tensors;
};

// Parses one GGUF image held in memory (the fuzz target and the shard loader both use it).
// `name` is used in error messages. Tensor `data` pointers point into `bytes`.
Shard parse(std::span<const uint8_t> bytes, const std::string& name);

// A model: one file, or every shard of a split model. Metadata comes from the first shard.
class File {
public:
    // Opens `path`; when it names one shard of a split model (`NAME-00002-of-00005.gguf`), all
    // shards are opened and checked: split.count and split.no agree with the names, every
    // shard exists, split.tensors.count matches, and every tensor name appears exactly once.
    static File open(const std::string& path);

    const Metadata& metadata() const { return shards_.front().metadata; }
    const std::vector<Shard>& shards() const { return shards_; }
    std::span<const TensorInfo> tensors() const { return tensors_; }
    const TensorInfo* find(std::string_view name) const;
    const TensorInfo& tensor(std::string_view name) const;  // throws when missing
    uint32_t version() const { return shards_.front().version; }
    uint64_t total_file_bytes() const;
    // Drops this process's mapping of the whole pages inside tensor t's bytes, once the caller
    // holds its own copy of them (repacked weights): the kernel may reclaim them, and a read
    // would fault them in again from the file.
    void release_pages(const TensorInfo& t) const;
    std::string architecture() const;  // general.architecture

private:
    std::vector<Shard> shards_;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, size_t, std::less<>> by_name_;
};

// Names of the shards of a split model, from any one shard's path; {path} when the name does
// not follow the `-NNNNN-of-NNNNN.gguf` pattern.
std::vector<std::string> split_paths(const std::string& path);
std::string split_path(const std::string& prefix, int shard_no, int n_shards);  // shard_no from 1

}  // namespace tandem::gguf
