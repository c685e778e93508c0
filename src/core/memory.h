// How much memory this process can still take without pushing anything else out.
#pragma once

#include <cstdint>

namespace tandem {

// Bytes this process could add in anonymous memory: the system's MemAvailable (free memory plus
// reclaimable caches, /proc/meminfo), lowered to what its cgroup's limit leaves (cgroup v2
// memory.max - memory.current, or v1 memory.limit_in_bytes - usage). 0 when unknown.
uint64_t memory_available();

}  // namespace tandem
