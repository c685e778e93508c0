// Cache-line-aligned vectors for buffers the AMX tile unit reads and writes.
//
// A tile load whose 64-byte rows straddle two cache lines runs 2-7x slower than an aligned one
// (Sapphire Rapids, bench_cpu tile_load: ~27 ns against 13.7 ns per 1 KiB tile, 3.7 ns in the
// host's faster phases; docs/performance.md), and std::vector's
// storage is only 16-byte aligned (large blocks come from mmap at page + 16 bytes). Buffers
// that feed tile loads or take tile stores are aligned_vector, and every tile's offset inside
// them is a multiple of 64 bytes.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace tandem {

inline constexpr std::size_t kCacheLine = 64;

template <typename T>
struct CacheLineAllocator {
    using value_type = T;
    CacheLineAllocator() = default;
    template <typename U>
    constexpr CacheLineAllocator(const CacheLineAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{kCacheLine})); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{kCacheLine}); }
    template <typename U>
    bool operator==(const CacheLineAllocator<U>&) const noexcept { return true; }
};

template <typename T>
using aligned_vector = std::vector<T, CacheLineAllocator<T>>;

}  // namespace tandem
