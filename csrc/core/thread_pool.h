// A persistent pool of worker threads for running one step of a graph.
//
// The caller is thread 0; n_threads - 1 workers wait between steps. During a step every
// thread walks the same node list and meets the others at `barrier()` between nodes, so a
// step costs one wake-up, not one per node. Workers spin briefly before sleeping so that
// back-to-back decode steps do not pay a futex round trip.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace strata {

class ThreadPool {
public:
    using Task = void (*)(void* ctx, int ith, int nth);

    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }
    // Runs task(ctx, ith, n) on every thread and returns when all have finished.
    void run(Task task, void* ctx);
    // Blocks until every thread of the running task has reached it.
    void barrier();

    static int default_threads();  // physical cores, as llama.cpp picks by default

private:
    void worker(int ith);

    int n_threads_;
    std::vector<std::thread> workers_;
    Task task_ = nullptr;
    void* ctx_ = nullptr;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> finished_{0};
    std::atomic<int> barrier_count_{0};
    std::atomic<uint64_t> barrier_phase_{0};
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
};

}  // namespace strata
