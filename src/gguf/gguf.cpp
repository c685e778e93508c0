#include "gguf/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <set>

#include "core/check.h"

namespace tandem::gguf {

std::string_view value_type_name(ValueType t) {
    switch (t) {
        case ValueType::UINT8: return "uint8";
        case ValueType::INT8: return "int8";
        case ValueType::UINT16: return "uint16";
        case ValueType::INT16: return "int16";
        case ValueType::UINT32: return "uint32";
        case ValueType::INT32: return "int32";
        case ValueType::FLOAT32: return "float32";
        case ValueType::BOOL: return "bool";
        case ValueType::STRING: return "string";
        case ValueType::ARRAY: return "array";
        case ValueType::UINT64: return "uint64";
        case ValueType::INT64: return "int64";
        case ValueType::FLOAT64: return "float64";
    }
    return "unknown";
}

bool value_type_is_valid(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::FLOAT64); }

namespace {

bool is_unsigned(ValueType t) {
    return t == ValueType::UINT8 || t == ValueType::UINT16 || t == ValueType::UINT32 ||
           t == ValueType::UINT64;
}
bool is_signed(ValueType t) {
    return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 ||
           t == ValueType::INT64;
}
bool is_float(ValueType t) { return t == ValueType::FLOAT32 || t == ValueType::FLOAT64; }

// Bytes an element of this type takes at the least; bounds array counts before allocating.
uint64_t min_encoded_size(ValueType t) {
    switch (t) {
        case ValueType::UINT8:
        case ValueType::INT8:
        case ValueType::BOOL: return 1;
        case ValueType::UINT16:
        case ValueType::INT16: return 2;
        case ValueType::UINT32:
        case ValueType::INT32:
        case ValueType::FLOAT32: return 4;
        case ValueType::UINT64:
        case ValueType::INT64:
        case ValueType::FLOAT64:
        case ValueType::STRING: return 8;  // a string is at least its u64 length
        case ValueType::ARRAY: return 12;  // elem_type u32 + count u64
    }
    return 1;
}

std::string describe(const Value& v) {
    if (v.type == ValueType::ARRAY)
        return fmt::format("array of {}", value_type_name(v.elem_type));
    return std::string(value_type_name(v.type));
}

// Reads little-endian values from [begin, end), failing with the byte offset on any overrun.
class Cursor {
public:
    Cursor(std::span<const uint8_t> bytes, const std::string& name) : bytes_(bytes), name_(name) {}

    uint64_t offset() const { return pos_; }
    uint64_t remaining() const { return bytes_.size() - pos_; }

    template <typename... Args>
    [[noreturn]] void error_at(uint64_t offset, fmt::format_string<Args...> f, Args&&... args) const {
        fail("{}: at byte offset {}: {}", name_, offset, fmt::format(f, std::forward<Args>(args)...));
    }

    template <typename T>
    T read(std::string_view what) {
        static_assert(std::endian::native == std::endian::little, "GGUF reading assumes little-endian");
        if (remaining() < sizeof(T))
            error_at(pos_, "file truncated while reading {} ({} bytes needed, {} left)", what,
                     sizeof(T), remaining());
        T v;
        std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    std::string read_string(std::string_view what) {
        const uint64_t at = pos_;
        const uint64_t len = read<uint64_t>(what);
        if (len > remaining())
            error_at(at, "{} has length {} but only {} bytes are left in the file", what, len,
                     remaining());
        std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
        pos_ += len;
        return s;
    }

    Value read_value(ValueType type, std::string_view key, int depth) {
        switch (type) {
            case ValueType::UINT8: return Value::u8(read<uint8_t>(key));
            case ValueType::INT8: return Value::i8(read<int8_t>(key));
            case ValueType::UINT16: return Value::u16(read<uint16_t>(key));
            case ValueType::INT16: return Value::i16(read<int16_t>(key));
            case ValueType::UINT32: return Value::u32(read<uint32_t>(key));
            case ValueType::INT32: return Value::i32(read<int32_t>(key));
            case ValueType::UINT64: return Value::u64(read<uint64_t>(key));
            case ValueType::INT64: return Value::i64(read<int64_t>(key));
            case ValueType::FLOAT32: return Value::f32(read<float>(key));
            case ValueType::FLOAT64: return Value::f64(read<double>(key));
            case ValueType::BOOL: {
                const uint64_t at = pos_;
                const uint8_t b = read<uint8_t>(key);
                if (b > 1) error_at(at, "key '{}': bool value {} is neither 0 nor 1", key, b);
                return Value::boolean(b != 0);
            }
            case ValueType::STRING: return Value::string(read_string(key));
            case ValueType::ARRAY: return read_array(key, depth);
        }
        error_at(pos_, "key '{}': unknown value type {}", key, static_cast<uint32_t>(type));
    }

private:
    Value read_array(std::string_view key, int depth) {
        const uint64_t at = pos_;
        if (depth >= kMaxArrayNesting)
            error_at(at, "key '{}': arrays nested deeper than {} levels", key, kMaxArrayNesting);
        const uint32_t elem_raw = read<uint32_t>(key);
        if (!value_type_is_valid(elem_raw))
            error_at(at, "key '{}': unknown array element type {}", key, elem_raw);
        const auto elem = static_cast<ValueType>(elem_raw);
        const uint64_t count_at = pos_;
        const uint64_t count = read<uint64_t>(key);
        // Each element takes at least min_encoded_size bytes: a count beyond what the rest of
        // the file can hold is rejected before any allocation (and cannot overflow: the
        // division bounds it).
        if (count > remaining() / min_encoded_size(elem))
            error_at(count_at, "key '{}': array count {} of {} cannot fit in the {} bytes left", key,
                     count, value_type_name(elem), remaining());
        std::vector<Value> items;
        items.reserve(count);
        for (uint64_t i = 0; i < count; ++i) items.push_back(read_value(elem, key, depth + 1));
        return Value::array(elem, std::move(items));
    }

    std::span<const uint8_t> bytes_;
    const std::string& name_;
    uint64_t pos_ = 0;
};

bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }
bool checked_add(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

}  // namespace

Value Value::strings(const std::vector<std::string>& items) {
    std::vector<Value> v;
    v.reserve(items.size());
    for (const auto& s : items) v.push_back(Value::string(s));
    return array(ValueType::STRING, std::move(v));
}
Value Value::i32s(std::span<const int32_t> items) {
    std::vector<Value> v;
    v.reserve(items.size());
    for (int32_t x : items) v.push_back(Value::i32(x));
    return array(ValueType::INT32, std::move(v));
}
Value Value::f32s(std::span<const float> items) {
    std::vector<Value> v;
    v.reserve(items.size());
    for (float x : items) v.push_back(Value::f32(x));
    return array(ValueType::FLOAT32, std::move(v));
}

// ---- Metadata ----

void Metadata::set(std::string key, Value v) {
    if (auto it = index_.find(key); it != index_.end()) {
        entries_[it->second].second = std::move(v);
        return;
    }
    index_.emplace(key, entries_.size());
    entries_.emplace_back(std::move(key), std::move(v));
}

const Value* Metadata::find(std::string_view key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &entries_[it->second].second;
}

namespace {

const Value& require(const Metadata& md, std::string_view key) {
    const Value* v = md.find(key);
    if (!v) fail("metadata key '{}' is missing", key);
    return *v;
}

[[noreturn]] void type_mismatch(std::string_view key, std::string_view expected, const Value& found) {
    fail("metadata key '{}': expected {}, found {}", key, expected, describe(found));
}

int64_t as_int(std::string_view key, const Value& v) {
    if (is_signed(v.type)) return std::get<int64_t>(v.data);
    if (is_unsigned(v.type)) {
        const uint64_t u = std::get<uint64_t>(v.data);
        if (u > static_cast<uint64_t>(INT64_MAX)) fail("metadata key '{}': value {} is too large", key, u);
        return static_cast<int64_t>(u);
    }
    type_mismatch(key, "an integer", v);
}

double as_float(std::string_view key, const Value& v) {
    if (!is_float(v.type)) type_mismatch(key, "a float", v);
    return std::get<double>(v.data);
}

const std::vector<Value>& as_array(std::string_view key, const Value& v, std::string_view expected) {
    if (v.type != ValueType::ARRAY) type_mismatch(key, expected, v);
    return std::get<std::vector<Value>>(v.data);
}

}  // namespace

std::string Metadata::get_string(std::string_view key) const {
    const Value& v = require(*this, key);
    if (v.type != ValueType::STRING) type_mismatch(key, "a string", v);
    return std::get<std::string>(v.data);
}

int64_t Metadata::get_int(std::string_view key) const { return as_int(key, require(*this, key)); }

uint32_t Metadata::get_u32(std::string_view key) const {
    const int64_t v = get_int(key);
    if (v < 0 || v > UINT32_MAX) fail("metadata key '{}': value {} is outside 0..{}", key, v, UINT32_MAX);
    return static_cast<uint32_t>(v);
}

double Metadata::get_float(std::string_view key) const { return as_float(key, require(*this, key)); }

bool Metadata::get_bool(std::string_view key) const {
    const Value& v = require(*this, key);
    if (v.type != ValueType::BOOL) type_mismatch(key, "a bool", v);
    return std::get<bool>(v.data);
}

std::vector<std::string> Metadata::get_strings(std::string_view key) const {
    const Value& v = require(*this, key);
    const auto& items = as_array(key, v, "an array of strings");
    if (v.elem_type != ValueType::STRING) type_mismatch(key, "an array of strings", v);
    std::vector<std::string> out;
    out.reserve(items.size());
    for (const auto& it : items) out.push_back(std::get<std::string>(it.data));
    return out;
}

std::vector<int64_t> Metadata::get_ints(std::string_view key) const {
    const Value& v = require(*this, key);
    const auto& items = as_array(key, v, "an array of integers");
    if (!is_signed(v.elem_type) && !is_unsigned(v.elem_type))
        type_mismatch(key, "an array of integers", v);
    std::vector<int64_t> out;
    out.reserve(items.size());
    for (const auto& it : items) out.push_back(as_int(key, it));
    return out;
}

std::vector<float> Metadata::get_floats(std::string_view key) const {
    const Value& v = require(*this, key);
    const auto& items = as_array(key, v, "an array of floats");
    if (!is_float(v.elem_type)) type_mismatch(key, "an array of floats", v);
    std::vector<float> out;
    out.reserve(items.size());
    for (const auto& it : items) out.push_back(static_cast<float>(std::get<double>(it.data)));
    return out;
}

std::optional<std::string> Metadata::string_or_none(std::string_view key) const {
    if (!has(key)) return std::nullopt;
    return get_string(key);
}
int64_t Metadata::int_or(std::string_view key, int64_t dflt) const {
    return has(key) ? get_int(key) : dflt;
}
double Metadata::float_or(std::string_view key, double dflt) const {
    return has(key) ? get_float(key) : dflt;
}
bool Metadata::bool_or(std::string_view key, bool dflt) const {
    return has(key) ? get_bool(key) : dflt;
}

// ---- MappedFile ----

MappedFile::MappedFile(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        fail("{}: cannot stat: {}", path, std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        fail("{}: not a regular file", path);
    }
    size_ = static_cast<uint64_t>(st.st_size);
    if (size_ > 0) {
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            fail("{}: cannot memory-map {} bytes: {}", path, size_, std::strerror(err));
        }
        data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);
}

MappedFile::~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

// ---- tensors ----

int64_t TensorInfo::rows() const {
    int64_t r = 1;
    for (size_t i = 1; i < ne.size(); ++i) r *= ne[i];
    return r;
}

uint64_t TensorInfo::row_bytes() const {
    const auto& t = ggml_traits(type);
    return static_cast<uint64_t>(ne[0]) / t.block_size * t.type_size;
}

// ---- parsing ----

Shard parse(std::span<const uint8_t> bytes, const std::string& name) {
    Cursor c(bytes, name);
    Shard s;

    const uint32_t magic = c.read<uint32_t>("magic");
    if (magic != kMagic)
        c.error_at(0, "not a GGUF file (magic {:02x} {:02x} {:02x} {:02x}, expected 'GGUF')",
                   magic & 0xff, (magic >> 8) & 0xff, (magic >> 16) & 0xff, magic >> 24);
    s.version = c.read<uint32_t>("version");
    if (s.version == 1) c.error_at(4, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (s.version != 2 && s.version != 3) {
        if (__builtin_bswap32(s.version) == 2 || __builtin_bswap32(s.version) == 3)
            c.error_at(4, "big-endian GGUF files are not supported");
        c.error_at(4, "unsupported GGUF version {} (only versions 2 and 3)", s.version);
    }

    const uint64_t n_tensors = c.read<uint64_t>("tensor count");
    const uint64_t n_kv = c.read<uint64_t>("metadata count");
    // Each key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes, and each tensor
    // info at least 8 + 4 + 8 + 4 + 8 bytes: counts beyond what the file can hold are rejected
    // before anything is reserved.
    if (n_kv > c.remaining() / 13)
        c.error_at(16, "metadata count {} cannot fit in the {} bytes left", n_kv, c.remaining());

    for (uint64_t i = 0; i < n_kv; ++i) {
        const uint64_t at = c.offset();
        std::string key = c.read_string("metadata key");
        if (s.metadata.has(key)) c.error_at(at, "duplicate metadata key '{}'", key);
        const uint64_t type_at = c.offset();
        const uint32_t type = c.read<uint32_t>("value type");
        if (!value_type_is_valid(type))
            c.error_at(type_at, "key '{}': unknown value type {}", key, type);
        Value v = c.read_value(static_cast<ValueType>(type), key, 0);
        if (key == "general.alignment") {
            if (v.type != ValueType::UINT32)
                c.error_at(type_at, "general.alignment must be uint32, found {}", describe(v));
            const uint64_t a = std::get<uint64_t>(v.data);
            if (a == 0 || !std::has_single_bit(a))
                c.error_at(type_at, "general.alignment {} is not a power of two", a);
            s.alignment = static_cast<uint32_t>(a);
        }
        s.metadata.set(std::move(key), std::move(v));
    }

    if (n_tensors > c.remaining() / 32)
        c.error_at(8, "tensor count {} cannot fit in the {} bytes left", n_tensors, c.remaining());
    std::set<std::string> names;
    s.tensors.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
        const uint64_t at = c.offset();
        TensorInfo t;
        t.name = c.read_string("tensor name");
        const uint64_t dims_at = c.offset();
        const uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
        if (n_dims < 1 || n_dims > kMaxDims)
            c.error_at(dims_at, "tensor '{}' has {} dimensions (expected 1 to {})", t.name, n_dims, kMaxDims);
        uint64_t n_elements = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t ne = c.read<uint64_t>("tensor dimension");
            if (ne == 0) c.error_at(dims_at, "tensor '{}' has dimension {} of size 0", t.name, d);
            if (!checked_mul(n_elements, ne, &n_elements) || n_elements > static_cast<uint64_t>(INT64_MAX))
                c.error_at(dims_at, "tensor '{}': element count overflows (dimension {} is {})",
                           t.name, d, ne);
            t.ne.push_back(static_cast<int64_t>(ne));
        }
        const uint64_t type_at = c.offset();
        const uint32_t type_id = c.read<uint32_t>("tensor type");
        const auto traits = ggml_type_traits(type_id);
        if (!traits) c.error_at(type_at, "tensor '{}' has unknown type id {}", t.name, type_id);
        t.type = traits->type;
        if (t.ne[0] % traits->block_size != 0)
            c.error_at(dims_at, "tensor '{}': first dimension {} is not a multiple of the {} block size {}",
                       t.name, t.ne[0], traits->name, traits->block_size);
        t.n_elements = n_elements;
        if (!checked_mul(n_elements / traits->block_size, traits->type_size, &t.n_bytes))
            c.error_at(dims_at, "tensor '{}': byte size overflows", t.name);
        t.offset = c.read<uint64_t>("tensor offset");
        if (!names.insert(t.name).second) c.error_at(at, "duplicate tensor name '{}'", t.name);
        s.tensors.push_back(std::move(t));
    }

    uint64_t data_offset = c.offset();
    const uint64_t pad = (s.alignment - data_offset % s.alignment) % s.alignment;
    data_offset += pad;
    s.data_offset = data_offset;
    for (auto& t : s.tensors) {
        uint64_t begin = 0, end = 0;
        if (t.offset % s.alignment != 0)
            fail("{}: tensor '{}': data offset {} is not a multiple of the alignment {}", name, t.name,
                 t.offset, s.alignment);
        if (!checked_add(data_offset, t.offset, &begin) || !checked_add(begin, t.n_bytes, &end) ||
            end > bytes.size())
            fail("{}: tensor '{}': its {} bytes at data offset {} (file offset {}) lie past the end "
                 "of the file ({} bytes)",
                 name, t.name, t.n_bytes, t.offset, data_offset + t.offset, bytes.size());
        t.data = bytes.data() + begin;
    }
    return s;
}

// ---- split models ----

std::string split_path(const std::string& prefix, int shard_no, int n_shards) {
    return fmt::format("{}-{:05d}-of-{:05d}.gguf", prefix, shard_no, n_shards);
}

std::vector<std::string> split_paths(const std::string& path) {
    // PREFIX-NNNNN-of-MMMMM.gguf: the suffix is exactly 24 characters.
    constexpr std::string_view kSuffixShape = "-00000-of-00000.gguf";
    if (path.size() <= kSuffixShape.size()) return {path};
    const std::string_view tail = std::string_view(path).substr(path.size() - kSuffixShape.size());
    for (size_t i = 0; i < tail.size(); ++i) {
        const bool digit_slot = kSuffixShape[i] == '0';
        const bool is_digit = tail[i] >= '0' && tail[i] <= '9';
        if (digit_slot ? !is_digit : tail[i] != kSuffixShape[i]) return {path};
    }
    const int no = std::stoi(std::string(tail.substr(1, 5)));
    const int n = std::stoi(std::string(tail.substr(10, 5)));
    if (n < 1 || no < 1 || no > n) fail("{}: split file name says shard {} of {}", path, no, n);
    const std::string prefix = path.substr(0, path.size() - kSuffixShape.size());
    std::vector<std::string> out;
    for (int i = 1; i <= n; ++i) out.push_back(split_path(prefix, i, n));
    return out;
}

File File::open(const std::string& path) {
    File f;
    const std::vector<std::string> paths = split_paths(path);
    const int n_shards = static_cast<int>(paths.size());
    for (int i = 0; i < n_shards; ++i) {
        if (n_shards > 1 && ::access(paths[i].c_str(), F_OK) != 0)
            fail("{}: shard {} of {} of this split model is missing", paths[i], i + 1, n_shards);
        auto mapped = std::make_unique<MappedFile>(paths[i]);
        Shard s = parse({mapped->data(), mapped->size()}, paths[i]);
        s.file = std::move(mapped);
        const int64_t count = s.metadata.int_or("split.count", 1);
        const int64_t no = s.metadata.int_or("split.no", 0);
        if (count != n_shards)
            fail("{}: split.count is {} but {} shard{} expected from the file name", paths[i], count,
                 n_shards, n_shards == 1 ? " was" : "s were");
        if (no != i) fail("{}: split.no is {} but this is shard index {} (0-based)", paths[i], no, i);
        f.shards_.push_back(std::move(s));
    }
    const Metadata& md = f.shards_.front().metadata;
    for (int i = 0; i < n_shards; ++i) {
        for (auto t : f.shards_[i].tensors) {
            t.shard = i;
            if (f.by_name_.contains(t.name))
                fail("{}: tensor '{}' also appears in {}", paths[i], t.name,
                     paths[f.tensors_[f.by_name_.find(t.name)->second].shard]);
            f.by_name_.emplace(t.name, f.tensors_.size());
            f.tensors_.push_back(std::move(t));
        }
    }
    if (n_shards > 1 || md.has("split.tensors.count")) {
        const int64_t expected = md.get_int("split.tensors.count");
        if (expected != static_cast<int64_t>(f.tensors_.size()))
            fail("{}: split.tensors.count is {} but the {} shard{} hold {} tensors", paths[0], expected,
                 n_shards, n_shards == 1 ? "" : "s", f.tensors_.size());
    }
    return f;
}

const TensorInfo* File::find(std::string_view name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& File::tensor(std::string_view name) const {
    const TensorInfo* t = find(name);
    if (!t) fail("{}: tensor '{}' not found", shards_.front().file->path(), name);
    return *t;
}

uint64_t File::total_file_bytes() const {
    uint64_t n = 0;
    for (const auto& s : shards_) n += s.file->size();
    return n;
}

void File::release_pages(const TensorInfo& t) const {
    const MappedFile& f = *shards_.at(static_cast<size_t>(t.shard)).file;
    TANDEM_CHECK(t.data >= f.data() && t.data + t.n_bytes <= f.data() + f.size(), "tensor '{}' is not in its shard's mapping", t.name);
    const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGE_SIZE));
    const uintptr_t a = (reinterpret_cast<uintptr_t>(t.data) + page - 1) / page * page;
    const uintptr_t b = (reinterpret_cast<uintptr_t>(t.data) + t.n_bytes) / page * page;
    if (b > a) ::madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);
}

std::string File::architecture() const { return metadata().get_string("general.architecture"); }

}  // namespace tandem::gguf
