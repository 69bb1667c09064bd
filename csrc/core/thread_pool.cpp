#include "thread_pool.h"

#include <fstream>
#include <set>
#include <string>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#elif defined(__aarch64__)
static inline void cpu_relax() { asm volatile("yield"); }
#else
static inline void cpu_relax() {}
#endif

namespace strata {

namespace {
constexpr int kSpinsBeforeSleep = 200000;  // ~ tens of microseconds of polling
constexpr int kSpinsBeforeYield = 2000;
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_.store(true);
        generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run(Task task, void* ctx) {
    if (n_threads_ == 1) {
        task(ctx, 0, 1);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        task_ = task;
        ctx_ = ctx;
        finished_.store(0, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    task(ctx, 0, n_threads_);
    int spins = 0;
    while (finished_.load(std::memory_order_acquire) != n_threads_ - 1) {
        cpu_relax();
        if (++spins > kSpinsBeforeYield) std::this_thread::yield();
    }
}

void ThreadPool::worker(int ith) {
    uint64_t seen = 0;
    for (;;) {
        int spins = 0;
        while (generation_.load(std::memory_order_acquire) == seen && spins < kSpinsBeforeSleep) {
            cpu_relax();
            ++spins;
        }
        if (generation_.load(std::memory_order_acquire) == seen) {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return generation_.load() != seen; });
        }
        seen = generation_.load(std::memory_order_acquire);
        if (stop_.load()) return;
        task_(ctx_, ith, n_threads_);
        finished_.fetch_add(1, std::memory_order_acq_rel);
    }
}

void ThreadPool::barrier() {
    if (n_threads_ == 1) return;
    const uint64_t phase = barrier_phase_.load(std::memory_order_acquire);
    if (barrier_count_.fetch_add(1, std::memory_order_acq_rel) == n_threads_ - 1) {
        barrier_count_.store(0, std::memory_order_relaxed);
        barrier_phase_.fetch_add(1, std::memory_order_release);
        return;
    }
    int spins = 0;
    while (barrier_phase_.load(std::memory_order_acquire) == phase) {
        cpu_relax();
        if (++spins > kSpinsBeforeYield) std::this_thread::yield();
    }
}

int ThreadPool::default_threads() {
    // Count distinct (package, core) pairs: hyper-threads share a core's SIMD units.
    std::set<std::pair<std::string, std::string>> cores;
    std::ifstream info("/proc/cpuinfo");
    std::string line, phys, core;
    while (std::getline(info, line)) {
        if (line.rfind("physical id", 0) == 0) phys = line.substr(line.find(':') + 1);
        else if (line.rfind("core id", 0) == 0) {
            core = line.substr(line.find(':') + 1);
            cores.insert({phys, core});
        }
    }
    unsigned hw = std::thread::hardware_concurrency();
    if (!cores.empty() && cores.size() <= hw) return (int)cores.size();
    return hw ? (int)hw : 1;
}

}  // namespace strata
