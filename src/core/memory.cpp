#include "core/memory.h"

#include <algorithm>
#include <fstream>
#include <string>

namespace tandem {
namespace {

// The number in `path` into *out; false when there is none ("max" and missing files: no limit).
bool read_number(const char* path, uint64_t* out) {
    std::ifstream in(path);
    std::string word;
    if (!(in >> word) || word.empty() || word.find_first_not_of("0123456789") != std::string::npos) return false;
    *out = std::stoull(word);
    return true;
}

uint64_t meminfo_available() {
    std::ifstream in("/proc/meminfo");
    std::string key, unit;
    uint64_t kib = 0;
    while (in >> key >> kib) {
        std::getline(in, unit);
        if (key == "MemAvailable:") return kib * 1024;
    }
    return 0;
}

}  // namespace

uint64_t memory_available() {
    uint64_t avail = meminfo_available();
    uint64_t limit = 0, used = 0;
    if ((read_number("/sys/fs/cgroup/memory.max", &limit) && read_number("/sys/fs/cgroup/memory.current", &used)) ||
        (read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes", &limit) &&
         read_number("/sys/fs/cgroup/memory/memory.usage_in_bytes", &used)))
        avail = std::min(avail, limit > used ? limit - used : 0);
    return avail;
}

}  // namespace tandem
