// A persistent pool of worker threads, pinned one per core, for the CPU kernels.
//
// parallel_for(n, fn) gives each thread one contiguous share of [0, n), cut into a few chunks
// that it runs in order; a thread done with its share takes the remaining chunks of the
// others (work stealing). Cores do not run at one speed (a busy neighbour, the all-core clock,
// another tenant of the host): with fixed shares every job waited for the slowest core, which
// cost the 16-thread MoE decode step on the benchmark Xeon about half its speed. Workers spin on a
// generation counter for a short while after each job (a decode step issues hundreds of jobs
// a few microseconds apart), then sleep on a condition variable so an idle server costs no CPU.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tandem::cpu {

class ThreadPool {
public:
    // n_threads counts the calling thread; 0 means one per online CPU.
    explicit ThreadPool(int n_threads = 0, bool pin = true);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int n_threads() const { return n_threads_; }

    // fn(begin, end, thread_idx) over disjoint contiguous ranges covering [0, n), several per
    // thread; which thread runs a range varies from call to call. Exceptions thrown by fn are
    // rethrown here (the first one) after every thread has finished.
    using RangeFn = std::function<void(int64_t begin, int64_t end, int thread_idx)>;
    void parallel_for(int64_t n, const RangeFn& fn);

    // fn(thread_idx) once on every thread.
    void run_on_all(const std::function<void(int thread_idx)>& fn);

private:
    // One thread's share of a parallel_for: chunks [next, end), taken by fetch_add.
    struct alignas(64) Share {
        std::atomic<int64_t> next{0};
        int64_t end = 0;
    };
    // The last job a worker finished, on a line of its own.
    struct alignas(64) Done {
        std::atomic<uint64_t> generation{0};
    };

    void worker(int idx);
    void run_share(int idx);

    int n_threads_;
    std::unique_ptr<Share[]> shares_;  // [n_threads_]
    std::unique_ptr<Done[]> done_;     // [n_threads_], entry 0 unused
    std::vector<std::thread> workers_;
    // The job being run, published by bumping generation_. NOTES: these three share a cache line
    // that only the caller writes, once per job, and that idle workers spin on; everything a
    // worker writes lives elsewhere (done_, its share). With the finish counter on this line
    // (as it was) every worker's decrement invalidated the line under 15 spinning readers, and
    // one empty parallel_for took ~18 us on 16 threads of the benchmark machine.
    alignas(64) std::atomic<uint64_t> generation_{0};
    const std::function<void(int)>* job_ = nullptr;
    std::atomic<bool> stop_{false};
    alignas(64) std::mutex mutex_;
    std::condition_variable wake_;
    std::mutex error_mutex_;
    std::exception_ptr error_;
};

// Number of CPUs this process may run on.
int online_cpus();

}  // namespace tandem::cpu
