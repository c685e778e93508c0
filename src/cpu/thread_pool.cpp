#include "cpu/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <chrono>

#include "core/check.h"

namespace tandem::cpu {

namespace {

// How long a worker spins for the next job before it sleeps: long enough to cover the gap
// between two kernels of one decode step, short enough not to burn a core when idle.
constexpr auto kSpin = std::chrono::microseconds(2000);

inline void cpu_relax() { __builtin_ia32_pause(); }

}  // namespace

int online_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(int n_threads, bool pin) : n_threads_(n_threads > 0 ? n_threads : online_cpus()) {
    std::vector<int> cpus;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (pin && sched_getaffinity(0, sizeof(set), &set) == 0)
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set)) cpus.push_back(c);
    // Pinning only makes sense with no more threads than cores.
    pin = pin && static_cast<int>(cpus.size()) >= n_threads_;
    for (int i = 1; i < n_threads_; ++i) {
        workers_.emplace_back([this, i] { worker(i); });
        if (pin) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpus[static_cast<size_t>(i)], &one);
            pthread_setaffinity_np(workers_.back().native_handle(), sizeof(one), &one);
        }
    }
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard lock(mutex_);
        stop_.store(true);
        generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run_share(int idx) {
    try {
        (*job_)(idx);
    } catch (...) {
        std::lock_guard lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
    }
}

void ThreadPool::worker(int idx) {
    uint64_t seen = 0;
    for (;;) {
        // Spin, then sleep, until a new generation is published.
        const auto spin_until = std::chrono::steady_clock::now() + kSpin;
        uint64_t gen;
        while ((gen = generation_.load(std::memory_order_acquire)) == seen) {
            if (std::chrono::steady_clock::now() > spin_until) {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
            } else {
                cpu_relax();
            }
        }
        seen = gen;
        if (stop_.load()) return;
        run_share(idx);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
}

void ThreadPool::run_on_all(const std::function<void(int)>& fn) {
    if (n_threads_ == 1) {
        fn(0);
        return;
    }
    job_ = &fn;
    error_ = nullptr;
    pending_.store(n_threads_ - 1, std::memory_order_release);
    {
        // Publishing under the mutex pairs with the sleepers' predicate check: no lost wake-ups.
        std::lock_guard lock(mutex_);
        generation_.fetch_add(1, std::memory_order_acq_rel);
    }
    wake_.notify_all();
    run_share(0);
    while (pending_.load(std::memory_order_acquire) != 0) cpu_relax();
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
}

void ThreadPool::parallel_for(int64_t n, const RangeFn& fn) {
    if (n <= 0) return;
    const int64_t n_parts = std::min<int64_t>(n, n_threads_);
    if (n_parts == 1) {
        fn(0, n, 0);
        return;
    }
    run_on_all([&](int idx) {
        if (idx >= n_parts) return;
        const int64_t begin = n * idx / n_parts, end = n * (idx + 1) / n_parts;
        fn(begin, end, idx);
    });
}

}  // namespace tandem::cpu
