#include "cpu/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
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

ThreadPool::ThreadPool(int n_threads, bool pin)
    : n_threads_(n_threads > 0 ? n_threads : online_cpus()),
      shares_(new Share[static_cast<size_t>(n_threads_)]),
      done_(new Done[static_cast<size_t>(n_threads_)]) {
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
        // Spin, then sleep, until a new generation is published. NOTES: the clock is read once
        // per 64 pauses, not every one: a spinning thread shares its core with an SMT sibling
        // that may still be working (the benchmark machine's 16 vCPUs are 8 cores), and a
        // pause leaves that sibling the core's issue slots where a clock read takes them.
        const auto spin_until = std::chrono::steady_clock::now() + kSpin;
        uint64_t gen;
        for (uint32_t spins = 1; (gen = generation_.load(std::memory_order_acquire)) == seen; ++spins) {
            if (spins % 64 == 0 && std::chrono::steady_clock::now() > spin_until) {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
            } else {
                cpu_relax();
            }
        }
        seen = gen;
        if (stop_.load()) return;
        run_share(idx);
        done_[idx].generation.store(gen, std::memory_order_release);
    }
}

void ThreadPool::run_on_all(const std::function<void(int)>& fn) {
    if (n_threads_ == 1) {
        fn(0);
        return;
    }
    job_ = &fn;
    error_ = nullptr;
    uint64_t gen;
    {
        // Publishing under the mutex pairs with the sleepers' predicate check: no lost wake-ups.
        std::lock_guard lock(mutex_);
        gen = generation_.fetch_add(1, std::memory_order_acq_rel) + 1;
    }
    wake_.notify_all();
    run_share(0);
    for (int i = 1; i < n_threads_; ++i)
        while (done_[i].generation.load(std::memory_order_acquire) != gen) cpu_relax();
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
    // NOTES: kChunksPerShare chunks per share: enough for a thread that finishes early to even
    // out a core running at 2/3 of the others' speed, few enough that each thread still
    // streams long runs of consecutive weight rows (what the hardware prefetchers follow).
    constexpr int64_t kChunksPerShare = 8;
    const int64_t n_chunks = std::min(n, n_parts * kChunksPerShare);
    for (int64_t p = 0; p < n_parts; ++p) {
        shares_[p].next.store(n_chunks * p / n_parts, std::memory_order_relaxed);
        shares_[p].end = n_chunks * (p + 1) / n_parts;
    }
    run_on_all([&](int idx) {
        const auto drain = [&](Share& s) {
            // A plain load first: stealers mostly find a share empty, and a failed fetch_add
            // would still take the line exclusively.
            while (s.next.load(std::memory_order_relaxed) < s.end) {
                const int64_t c = s.next.fetch_add(1, std::memory_order_relaxed);
                if (c >= s.end) break;
                fn(n * c / n_chunks, n * (c + 1) / n_chunks, idx);
            }
        };
        for (int64_t v = 0; v < n_parts; ++v) drain(shares_[(idx + v) % n_parts]);
    });
}

}  // namespace tandem::cpu
