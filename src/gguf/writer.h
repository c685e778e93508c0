// Writes GGUF v3 files: metadata of every value type, tensors of every ggml type, alignment.
//
// Tensor data is produced on demand by a fill callback, one tensor at a time, so a writer can
// stream a 100 GB synthetic model through a buffer the size of its largest tensor.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "gguf/gguf.h"

namespace tandem::gguf {

class Writer {
public:
    using Fill = std::function<void(std::span<uint8_t> out)>;  // writes exactly out.size() bytes

    explicit Writer(uint32_t alignment = kDefaultAlignment);

    Metadata& metadata() { return metadata_; }
    void set(std::string key, Value v) { metadata_.set(std::move(key), std::move(v)); }

    // ne in GGUF order (ne[0] contiguous). Checks the shape against the type's block size.
    void add_tensor(std::string name, GgmlType type, std::vector<int64_t> ne, Fill fill);
    void add_tensor(std::string name, GgmlType type, std::vector<int64_t> ne,
                    std::span<const uint8_t> data);  // copies nothing until write()

    uint64_t tensor_bytes() const;  // sum of all tensors' data
    size_t n_tensors() const { return tensors_.size(); }

    // Progress callback: bytes of tensor data written so far, of tensor_bytes().
    using Progress = std::function<void(uint64_t done, uint64_t total)>;

    void write(const std::string& path, const Progress& progress = {}) const;

    // Writes `n_shards` files named split_path(prefix, i, n) with the split.* keys, tensors
    // spread in order so each shard holds about the same number of bytes. Metadata goes in full
    // into the first shard; the others carry only the split keys.
    std::vector<std::string> write_split(const std::string& prefix, int n_shards,
                                         const Progress& progress = {}) const;

private:
    struct PendingTensor {
        std::string name;
        GgmlType type;
        std::vector<int64_t> ne;
        uint64_t n_bytes;
        Fill fill;
    };
    void write_file(const std::string& path, const Metadata& md,
                    std::span<const PendingTensor* const> tensors, uint64_t* done, uint64_t total,
                    const Progress& progress) const;

    uint32_t alignment_;
    Metadata metadata_;
    std::vector<PendingTensor> tensors_;
};

// Serialises one metadata value (type tag not included), appended to `out`.
void encode_value(const Value& v, std::vector<uint8_t>& out);

}  // namespace tandem::gguf
