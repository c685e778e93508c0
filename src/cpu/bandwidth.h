// Measured memory read bandwidth: the ceiling every CPU kernel and decode step is judged
// against ("GB/s achieved of GB/s measured").
#pragma once

#include <cstdint>

#include "cpu/thread_pool.h"

namespace tandem::cpu {

// Bytes per second that all the pool's threads read from a buffer of `bytes` (much larger than
// the last-level cache): best of `passes` timed passes after a warm-up pass. The buffer is
// first touched by the same threads, so its pages spread the way the kernels' accesses do.
double measure_read_bandwidth(ThreadPool& pool, uint64_t bytes = 1ull << 30, int passes = 10);

}  // namespace tandem::cpu
