// Buffers for gigabytes of weights that tandem writes itself (repacked experts): anonymous
// memory in 2 MiB pages where the kernel's transparent huge pages allow it (the `madvise`
// mode most distributions default to), so streaming them takes one TLB entry per 2 MiB
// instead of per 4 KiB. The bytes are left to the first writer (pages are zero-filled on
// first touch, by the thread that touches them).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tandem {

class HugeBuffer {
public:
    HugeBuffer() = default;
    // Throws tandem::Error when the memory cannot be had.
    explicit HugeBuffer(std::size_t bytes);
    ~HugeBuffer();
    HugeBuffer(HugeBuffer&& other) noexcept;
    HugeBuffer& operator=(HugeBuffer&& other) noexcept;
    HugeBuffer(const HugeBuffer&) = delete;
    HugeBuffer& operator=(const HugeBuffer&) = delete;

    uint8_t* data() const { return data_; }
    std::size_t size() const { return size_; }

private:
    uint8_t* data_ = nullptr;
    std::size_t size_ = 0;     // as asked
    std::size_t mapped_ = 0;   // rounded up to whole huge pages
};

}  // namespace tandem
