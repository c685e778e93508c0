#include "core/huge_buffer.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "core/check.h"
#include "core/units.h"

namespace tandem {

namespace {
constexpr std::size_t kHugePage = std::size_t{2} << 20;
}

HugeBuffer::HugeBuffer(std::size_t bytes) : size_(bytes), mapped_((bytes + kHugePage - 1) / kHugePage * kHugePage) {
    if (mapped_ == 0) return;
    void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) fail("cannot allocate {} of memory: {}", format_bytes(mapped_), std::strerror(errno));
    // Advice only: without transparent huge pages the buffer works in 4 KiB pages.
    ::madvise(p, mapped_, MADV_HUGEPAGE);
    data_ = static_cast<uint8_t*>(p);
}

HugeBuffer::~HugeBuffer() {
    if (data_) ::munmap(data_, mapped_);
}

HugeBuffer::HugeBuffer(HugeBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)), mapped_(std::exchange(other.mapped_, 0)) {}

HugeBuffer& HugeBuffer::operator=(HugeBuffer&& other) noexcept {
    if (this != &other) {
        if (data_) ::munmap(data_, mapped_);
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
        mapped_ = std::exchange(other.mapped_, 0);
    }
    return *this;
}

}  // namespace tandem
