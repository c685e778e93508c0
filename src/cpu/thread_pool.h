// A persistent pool of worker threads, pinned one per core, for the CPU kernels.
//
// parallel_for(n, fn) splits [0, n) into one contiguous range per thread and runs them all,
// the calling thread included, returning when every range is done. Workers spin on a
// generation counter for a short while after each job (a decode step issues hundreds of jobs
// a few microseconds apart), then sleep on a condition variable so an idle server costs no CPU.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
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

    // fn(begin, end, thread_idx) over contiguous ranges covering [0, n). Exceptions thrown by
    // fn are rethrown here (the first one) after every thread has finished.
    using RangeFn = std::function<void(int64_t begin, int64_t end, int thread_idx)>;
    void parallel_for(int64_t n, const RangeFn& fn);

    // fn(thread_idx) once on every thread.
    void run_on_all(const std::function<void(int thread_idx)>& fn);

private:
    void worker(int idx);
    void run_share(int idx);

    int n_threads_;
    std::vector<std::thread> workers_;
    // The job being run: published by bumping generation_.
    const std::function<void(int)>* job_ = nullptr;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> pending_{0};
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
    std::mutex error_mutex_;
    std::exception_ptr error_;
};

// Number of CPUs this process may run on.
int online_cpus();

}  // namespace tandem::cpu
