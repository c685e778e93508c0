#include "gguf/writer.h"

#include <cstdio>
#include <cstring>
#include <memory>

#include "core/check.h"

namespace tandem::gguf {
namespace {

void put_bytes(std::vector<uint8_t>& out, const void* p, size_t n) {
    // resize + memcpy rather than insert(): GCC 12 at -O3 reports a bogus stringop-overflow
    // for vector<uint8_t>::insert of a small fixed-size range.
    const size_t at = out.size();
    out.resize(at + n);
    if (n) std::memcpy(out.data() + at, p, n);
}

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
    put_bytes(out, &v, sizeof(T));
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
    put<uint64_t>(out, s.size());
    put_bytes(out, s.data(), s.size());
}

struct FileCloser {
    void operator()(FILE* f) const { std::fclose(f); }
};

}  // namespace

void encode_value(const Value& v, std::vector<uint8_t>& out) {
    switch (v.type) {
        case ValueType::UINT8: put<uint8_t>(out, static_cast<uint8_t>(std::get<uint64_t>(v.data))); break;
        case ValueType::INT8: put<int8_t>(out, static_cast<int8_t>(std::get<int64_t>(v.data))); break;
        case ValueType::UINT16: put<uint16_t>(out, static_cast<uint16_t>(std::get<uint64_t>(v.data))); break;
        case ValueType::INT16: put<int16_t>(out, static_cast<int16_t>(std::get<int64_t>(v.data))); break;
        case ValueType::UINT32: put<uint32_t>(out, static_cast<uint32_t>(std::get<uint64_t>(v.data))); break;
        case ValueType::INT32: put<int32_t>(out, static_cast<int32_t>(std::get<int64_t>(v.data))); break;
        case ValueType::UINT64: put<uint64_t>(out, std::get<uint64_t>(v.data)); break;
        case ValueType::INT64: put<int64_t>(out, std::get<int64_t>(v.data)); break;
        case ValueType::FLOAT32: put<float>(out, static_cast<float>(std::get<double>(v.data))); break;
        case ValueType::FLOAT64: put<double>(out, std::get<double>(v.data)); break;
        case ValueType::BOOL: put<uint8_t>(out, std::get<bool>(v.data) ? 1 : 0); break;
        case ValueType::STRING: put_string(out, std::get<std::string>(v.data)); break;
        case ValueType::ARRAY: {
            const auto& items = std::get<std::vector<Value>>(v.data);
            put<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
            put<uint64_t>(out, items.size());
            for (const auto& it : items) {
                TANDEM_CHECK(it.type == v.elem_type, "array element of type {} in an array of {}",
                             value_type_name(it.type), value_type_name(v.elem_type));
                encode_value(it, out);
            }
            break;
        }
    }
}

Writer::Writer(uint32_t alignment) : alignment_(alignment) {
    TANDEM_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0, "alignment {}", alignment);
    if (alignment != kDefaultAlignment) metadata_.set("general.alignment", Value::u32(alignment));
}

void Writer::add_tensor(std::string name, GgmlType type, std::vector<int64_t> ne, Fill fill) {
    const auto& t = ggml_traits(type);
    TANDEM_CHECK(ggml_type_traits(static_cast<uint32_t>(type)).has_value(), "tensor '{}': {} is an in-memory layout, not a file type",
                 name, t.name);
    TANDEM_CHECK(!ne.empty() && ne.size() <= kMaxDims, "tensor '{}' has {} dimensions", name, ne.size());
    uint64_t n = 1;
    for (int64_t d : ne) {
        TANDEM_CHECK(d > 0, "tensor '{}' has a dimension of {}", name, d);
        n *= static_cast<uint64_t>(d);
    }
    TANDEM_CHECK(ne[0] % t.block_size == 0, "tensor '{}': ne[0]={} is not a multiple of the {} block size {}",
                 name, ne[0], t.name, t.block_size);
    for (const auto& p : tensors_) TANDEM_CHECK(p.name != name, "duplicate tensor '{}'", name);
    tensors_.push_back({std::move(name), type, std::move(ne), n / t.block_size * t.type_size, std::move(fill)});
}

void Writer::add_tensor(std::string name, GgmlType type, std::vector<int64_t> ne,
                        std::span<const uint8_t> data) {
    add_tensor(std::move(name), type, std::move(ne), [data](std::span<uint8_t> out) {
        TANDEM_CHECK(out.size() == data.size(), "tensor data is {} bytes, expected {}", data.size(), out.size());
        std::memcpy(out.data(), data.data(), out.size());
    });
    TANDEM_CHECK(tensors_.back().n_bytes == data.size(), "tensor '{}': {} bytes given, {} expected",
                 tensors_.back().name, data.size(), tensors_.back().n_bytes);
}

uint64_t Writer::tensor_bytes() const {
    uint64_t n = 0;
    for (const auto& t : tensors_) n += t.n_bytes;
    return n;
}

void Writer::write_file(const std::string& path, const Metadata& md,
                        std::span<const PendingTensor* const> tensors, uint64_t* done, uint64_t total,
                        const Progress& progress) const {
    auto align = [this](uint64_t x) { return (x + alignment_ - 1) / alignment_ * alignment_; };

    std::vector<uint8_t> header;
    put<uint32_t>(header, kMagic);
    put<uint32_t>(header, 3);
    put<uint64_t>(header, tensors.size());
    put<uint64_t>(header, md.size());
    for (const auto& [key, value] : md.entries()) {
        put_string(header, key);
        put<uint32_t>(header, static_cast<uint32_t>(value.type));
        encode_value(value, header);
    }
    uint64_t offset = 0;
    for (const PendingTensor* t : tensors) {
        put_string(header, t->name);
        put<uint32_t>(header, static_cast<uint32_t>(t->ne.size()));
        for (int64_t d : t->ne) put<uint64_t>(header, static_cast<uint64_t>(d));
        put<uint32_t>(header, static_cast<uint32_t>(t->type));
        put<uint64_t>(header, offset);
        offset = align(offset + t->n_bytes);
    }
    header.resize(align(header.size()), 0);

    std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "wb"));
    if (!f) fail("{}: cannot open for writing: {}", path, std::strerror(errno));
    auto write_all = [&](const void* p, size_t n) {
        if (n && std::fwrite(p, 1, n, f.get()) != n) fail("{}: write failed: {}", path, std::strerror(errno));
    };
    write_all(header.data(), header.size());

    std::vector<uint8_t> buf;
    static constexpr uint8_t kZeros[64] = {};
    for (const PendingTensor* t : tensors) {
        buf.resize(t->n_bytes);
        t->fill(buf);
        write_all(buf.data(), buf.size());
        write_all(kZeros, align(t->n_bytes) - t->n_bytes);
        *done += t->n_bytes;
        if (progress) progress(*done, total);
    }
    if (std::fflush(f.get()) != 0) fail("{}: write failed: {}", path, std::strerror(errno));
}

void Writer::write(const std::string& path, const Progress& progress) const {
    std::vector<const PendingTensor*> all;
    for (const auto& t : tensors_) all.push_back(&t);
    uint64_t done = 0;
    write_file(path, metadata_, all, &done, tensor_bytes(), progress);
}

std::vector<std::string> Writer::write_split(const std::string& prefix, int n_shards,
                                             const Progress& progress) const {
    TANDEM_CHECK(n_shards >= 1 && n_shards <= 99999, "n_shards {}", n_shards);
    const uint64_t total = tensor_bytes();
    std::vector<std::vector<const PendingTensor*>> parts(n_shards);
    uint64_t acc = 0;
    for (const auto& t : tensors_) {
        // Shard of the tensor's first byte, so each shard holds about total / n bytes.
        const int shard = std::min<int>(n_shards - 1, static_cast<int>(acc * n_shards / std::max<uint64_t>(total, 1)));
        parts[shard].push_back(&t);
        acc += t.n_bytes;
    }
    std::vector<std::string> paths;
    uint64_t done = 0;
    for (int i = 0; i < n_shards; ++i) {
        Metadata md;
        if (i == 0) md = metadata_;
        else if (const Value* a = metadata_.find("general.alignment")) md.set("general.alignment", *a);
        md.set("split.no", Value::u16(static_cast<uint16_t>(i)));
        md.set("split.count", Value::u16(static_cast<uint16_t>(n_shards)));
        md.set("split.tensors.count", Value::i32(static_cast<int32_t>(tensors_.size())));
        paths.push_back(split_path(prefix, i + 1, n_shards));
        write_file(paths.back(), md, parts[i], &done, total, progress);
    }
    return paths;
}

}  // namespace tandem::gguf
