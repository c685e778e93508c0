// Measured memory read bandwidth: the ceiling every CPU kernel and decode step is judged
// against ("GB/s achieved of GB/s measured").
#pragma once

#include <cstdint>

#include "cpu/thread_pool.h"

namespace tandem::cpu {

// Sums n bytes (a multiple of 128) as 64-bit lanes: one streaming read pass.
uint64_t read_sum(const uint8_t* p, uint64_t n);

// Bytes per second that all the pool's threads read from a buffer of `bytes` (much larger than
// the last-level cache): best of `passes` timed passes after a warm-up pass. The buffer is
// first touched by the same threads, so its pages spread the way the kernels' accesses do.
double measure_read_bandwidth(ThreadPool& pool, uint64_t bytes = 1ull << 30, int passes = 10);

}  // namespace tandem::cpu
