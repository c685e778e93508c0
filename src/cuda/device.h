// What the GPU is, for `tandem info --devices`, placement budgets and `--gpu-mem`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tandem::cuda {

struct DeviceInfo {
    int index = 0;
    std::string name;
    int sm_major = 0, sm_minor = 0;
    int n_sm = 0;
    uint64_t total_bytes = 0;
    uint64_t free_bytes = 0;
};

// Every visible CUDA device; empty when there is no driver or no device (never throws).
std::vector<DeviceInfo> list_devices();

}  // namespace tandem::cuda
