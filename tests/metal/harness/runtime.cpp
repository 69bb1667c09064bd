// Runs an MSL kernel compiled as C++ (through include/metal_stdlib) on the CPU.
//
// Every GPU thread of a threadgroup is a ucontext fiber. Threadgroups run one after another
// in an order shuffled by the seed; within a threadgroup the scheduler resumes the live
// fibers round by round, in a freshly shuffled order each round. A fiber runs until it
// reaches a collective (simd_* or a barrier), publishes its part and yields; it leaves the
// collective only when every live lane of its simdgroup (thread of its threadgroup) has
// arrived. So lanes advance in lockstep at collective points, and code between them runs
// in an order the seed chooses; simdgroups are held back at random in most rounds, so they
// drift apart as on a GPU. Threadgroup memory (the "strata_tg" section) is refilled
// with garbage before each threadgroup: a read of threadgroup memory no thread wrote, or a
// missing barrier, shows up as a wrong answer under some seed.
//
// Failures (lanes at different collectives, a thread leaving while others wait at a
// barrier, deadlock, an unbound buffer) stop the launch and are reported as text.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "include/strata_msl_runtime.h"

extern "C" {
extern char __start_strata_tg[] __attribute__((weak));
extern char __stop_strata_tg[] __attribute__((weak));
}

namespace {

constexpr size_t kStack = 256 * 1024;
constexpr int kMaxLanes = 64;
constexpr size_t kMaxValue = 64;  // bytes a lane publishes at a collective

struct Slot {
    uint64_t seq = 0;
    int op = 0, site = 0;
    size_t size = 0;
    unsigned char val[kMaxValue];
};

struct Fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    bool done = false;
    uint32_t b[STRATA_BI_COUNT][3];
    uint64_t coll_seq = 0;  // simd collectives reached
    uint64_t bar_seq = 0;   // threadgroup barriers reached
};

struct Launch {
    void (*fn)() = nullptr;
    void** buffers = nullptr;
    int n_buffers = 0;
    int simd_width = 32;
    uint32_t tg_count[3], tg_size[3];
    int n_threads = 0;
    std::vector<Fiber> fibers;
    std::vector<Slot> slots;  // [simdgroup][parity][lane]
    std::vector<uint64_t> once_seq;  // per simdgroup: the last collective strata_simd_once ran
    Fiber* cur = nullptr;
    ucontext_t sched;
    std::string error;
    uint64_t progress = 0;
};

Launch* L = nullptr;

void yield_to_scheduler() { swapcontext(&L->cur->ctx, &L->sched); }

[[noreturn]] void fail_here(const std::string& msg) {
    if (L->error.empty()) {
        const uint32_t* g = L->cur->b[STRATA_BI_THREAD_POSITION_IN_GRID];
        L->error = msg + " (thread at grid position " + std::to_string(g[0]) + "," + std::to_string(g[1]) +
                   "," + std::to_string(g[2]) + ")";
    }
    L->cur->done = true;
    setcontext(&L->sched);
    abort();
}

void fiber_entry() {
    L->fn();
    L->cur->done = true;
    ++L->progress;
    setcontext(&L->sched);
}

int fiber_index(const Fiber* f) { return (int)(f - L->fibers.data()); }

}  // namespace

extern "C" {

const uint32_t* strata_builtin(int which) { return L->cur->b[which]; }

void* strata_buffer(int i) {
    // An unbound index gives a null pointer (Metal's validation layer reports it; here a
    // kernel that dereferences it crashes the test, which is as loud).
    if (i < 0 || i >= L->n_buffers) return nullptr;
    return L->buffers[i];
}

void strata_harness_fail(const char* msg) { fail_here(msg); }

void strata_simd_collective(const void* value, size_t size, int op, int site, void* all, uint64_t* mask) {
    Fiber* f = L->cur;
    if (size > kMaxValue) fail_here("a simd collective's value is wider than the harness's slots");
    const int me = fiber_index(f), w = L->simd_width;
    const int sg = me / w, lane = me % w, first = sg * w, last = std::min(first + w, L->n_threads);
    const uint64_t k = ++f->coll_seq;
    Slot& s = L->slots[((size_t)sg * 2 + (k & 1)) * kMaxLanes + lane];
    s.seq = k;
    s.op = op;
    s.site = site;
    s.size = size;
    memcpy(s.val, value, size);
    ++L->progress;
    for (;;) {  // wait until every live lane of the simdgroup reached collective k
        bool waiting = false;
        for (int j = first; j < last; ++j)
            if (!L->fibers[j].done && L->fibers[j].coll_seq < k) waiting = true;
        if (!waiting) break;
        yield_to_scheduler();
    }
    *mask = 0;
    for (int j = first; j < last; ++j) {
        const Slot& o = L->slots[((size_t)sg * 2 + (k & 1)) * kMaxLanes + (j - first)];
        if (o.seq != k) continue;  // lane left the kernel before this collective
        if (o.op != op || o.site != site || o.size != size)
            fail_here("lanes of one simdgroup reached different simd collectives (lines " + std::to_string(site) +
                      " and " + std::to_string(o.site) + "): divergent collectives are not modelled");
        memcpy((char*)all + (size_t)(j - first) * size, o.val, size);
        *mask |= 1ull << (j - first);
    }
    ++L->progress;
}

void strata_simd_once(const void* value, size_t size, int op, int site, strata_simd_once_fn fn) {
    unsigned char all[kMaxLanes * kMaxValue];
    uint64_t mask;
    strata_simd_collective(value, size, op, site, all, &mask);
    // Fibers run one at a time, and the lane that arrives last never yields before it gets
    // here: it is the first to leave, and runs fn before any lane of the simdgroup moves on.
    const Fiber* f = L->cur;
    const size_t sg = (size_t)fiber_index(f) / (size_t)L->simd_width;
    if (L->once_seq[sg] < f->coll_seq) {
        L->once_seq[sg] = f->coll_seq;
        fn(all, mask, L->simd_width);
    }
}

void strata_simdgroup_barrier(int site) {
    char dummy = 0, all[kMaxLanes];
    uint64_t mask;
    strata_simd_collective(&dummy, 1, 100, site, all, &mask);
}

void strata_threadgroup_barrier(int site) {
    (void)site;
    Fiber* f = L->cur;
    const uint64_t k = ++f->bar_seq;
    ++L->progress;
    for (;;) {
        bool waiting = false;
        for (Fiber& o : L->fibers) {
            if (o.done && o.bar_seq < k)
                fail_here("a thread of the threadgroup returned without reaching threadgroup_barrier (line " +
                          std::to_string(site) + ")");
            if (!o.done && o.bar_seq < k) waiting = true;
        }
        if (!waiting) break;
        yield_to_scheduler();
    }
    ++L->progress;
}

// Launch fn over tg_count threadgroups of tg_size threads (dispatchThreadgroups).
// Returns 0, or -1 with a message in err.
int strata_launch(void (*fn)(), const uint32_t* tg_count, const uint32_t* tg_size, void** buffers,
                  int n_buffers, int simd_width, uint64_t seed, char* err, int err_len) {
    Launch launch;
    L = &launch;
    launch.fn = fn;
    launch.buffers = buffers;
    launch.n_buffers = n_buffers;
    launch.simd_width = simd_width;
    memcpy(launch.tg_count, tg_count, sizeof launch.tg_count);
    memcpy(launch.tg_size, tg_size, sizeof launch.tg_size);
    const int n = (int)(tg_size[0] * tg_size[1] * tg_size[2]);
    auto finish = [&](int rc) {
        if (rc && err && err_len > 0) snprintf(err, (size_t)err_len, "%s", launch.error.c_str());
        L = nullptr;
        return rc;
    };
    if (simd_width < 1 || simd_width > kMaxLanes || n < 1 || n > 1024) {
        launch.error = "bad launch: simd width 1..64 and 1..1024 threads per threadgroup";
        return finish(-1);
    }
    launch.n_threads = n;
    launch.fibers.resize(n);
    for (Fiber& f : launch.fibers) f.stack.resize(kStack);
    const int n_sg = (n + simd_width - 1) / simd_width;
    launch.slots.resize((size_t)n_sg * 2 * kMaxLanes);
    launch.once_seq.resize((size_t)n_sg);

    std::mt19937_64 rng(seed);
    const uint64_t n_tg = (uint64_t)tg_count[0] * tg_count[1] * tg_count[2];
    std::vector<uint64_t> tg_order(n_tg);
    for (uint64_t i = 0; i < n_tg; ++i) tg_order[i] = i;
    std::shuffle(tg_order.begin(), tg_order.end(), rng);
    std::vector<int> order(n);
    std::vector<char> held(n_sg);

    for (uint64_t tgi : tg_order) {
        const uint32_t tg[3] = {(uint32_t)(tgi % tg_count[0]), (uint32_t)(tgi / tg_count[0] % tg_count[1]),
                                (uint32_t)(tgi / tg_count[0] / tg_count[1])};
        if (__start_strata_tg && __stop_strata_tg)  // garbage in threadgroup memory
            for (char* p = __start_strata_tg; p < __stop_strata_tg; ++p) *p = (char)rng();
        for (Slot& s : launch.slots) s = Slot{};
        for (uint64_t& s : launch.once_seq) s = 0;
        for (int i = 0; i < n; ++i) {
            Fiber& f = launch.fibers[i];
            f.done = false;
            f.coll_seq = f.bar_seq = 0;
            const uint32_t lid[3] = {i % tg_size[0], i / tg_size[0] % tg_size[1], i / tg_size[0] / tg_size[1]};
            memset(f.b, 0, sizeof f.b);
            for (int d = 0; d < 3; ++d) {
                f.b[STRATA_BI_THREAD_POSITION_IN_GRID][d] = tg[d] * tg_size[d] + lid[d];
                f.b[STRATA_BI_THREADGROUP_POSITION_IN_GRID][d] = tg[d];
                f.b[STRATA_BI_THREAD_POSITION_IN_THREADGROUP][d] = lid[d];
                f.b[STRATA_BI_THREADS_PER_THREADGROUP][d] = tg_size[d];
                f.b[STRATA_BI_THREADGROUPS_PER_GRID][d] = tg_count[d];
                f.b[STRATA_BI_THREADS_PER_GRID][d] = tg_count[d] * tg_size[d];
            }
            f.b[STRATA_BI_THREAD_INDEX_IN_THREADGROUP][0] = (uint32_t)i;
            f.b[STRATA_BI_THREAD_INDEX_IN_SIMDGROUP][0] = (uint32_t)(i % simd_width);
            f.b[STRATA_BI_SIMDGROUP_INDEX_IN_THREADGROUP][0] = (uint32_t)(i / simd_width);
            f.b[STRATA_BI_THREADS_PER_SIMDGROUP][0] = (uint32_t)simd_width;
            f.b[STRATA_BI_SIMDGROUPS_PER_THREADGROUP][0] = (uint32_t)n_sg;
            getcontext(&f.ctx);
            f.ctx.uc_stack.ss_sp = f.stack.data();
            f.ctx.uc_stack.ss_size = f.stack.size();
            f.ctx.uc_link = nullptr;
            makecontext(&f.ctx, fiber_entry, 0);
            order[i] = i;
        }
        for (uint64_t round = 0;; ++round) {
            std::shuffle(order.begin(), order.end(), rng);
            // Drift: in three rounds of four each simdgroup is held back with probability
            // 1/2 (never all of them), so simdgroups of one threadgroup drift many
            // collectives apart, as they do on a GPU. A missing barrier between simdgroups
            // then shows as a wrong answer. Every fourth round runs everyone, which keeps
            // the launch finite and is where a deadlock is recognised.
            const bool drift = n_sg > 1 && round % 4 != 3;
            for (int g = 0; g < n_sg; ++g) held[g] = drift && (rng() & 1);
            if (drift && std::find(held.begin(), held.end(), 0) == held.end()) held[rng() % n_sg] = 0;
            const uint64_t before = launch.progress;
            bool any = false;
            for (int i : order) {
                Fiber& f = launch.fibers[i];
                if (f.done) continue;
                any = true;
                if (held[i / simd_width]) continue;
                launch.cur = &f;
                swapcontext(&launch.sched, &f.ctx);
                if (!launch.error.empty()) return finish(-1);
            }
            if (!any) break;
            if (!drift && launch.progress == before) {
                launch.error = "deadlock: every live thread waits at a collective or barrier the others never reach";
                return finish(-1);
            }
        }
    }
    return finish(0);
}

#if !defined(__FLT16_MAX__)
// clang's __fp16 on targets without native half calls these (round to nearest even).
static uint16_t f2h(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u, absx = x & 0x7FFFFFFFu;
    if (absx > 0x7F800000u) return (uint16_t)(sign | 0x7E00u);
    if (absx >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);
    if (absx < 0x38800000u) {
        if (absx < 0x33000000u) return (uint16_t)sign;
        const uint32_t e = absx >> 23, m = (absx & 0x7FFFFFu) | 0x800000u, shift = 126 - e;
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return (uint16_t)(sign | r);
    }
    uint32_t r = absx - 0x38000000u;
    const uint32_t rem = r & 0x1FFFu;
    r >>= 13;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return (uint16_t)(sign | r);
}
static float h2f(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu, bits;
    if (exp == 0) {
        if (mant == 0) bits = sign;
        else {
            exp = 127 - 15 + 1;
            while ((mant & 0x400u) == 0) { mant <<= 1; --exp; }
            bits = sign | (exp << 23) | ((mant & 0x3FFu) << 13);
        }
    } else if (exp == 0x1F) bits = sign | 0x7F800000u | (mant << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
uint16_t __gnu_f2h_ieee(float f) { return f2h(f); }
float __gnu_h2f_ieee(uint16_t h) { return h2f(h); }
uint16_t __truncsfhf2(float f) { return f2h(f); }
float __extendhfsf2(uint16_t h) { return h2f(h); }
#endif

}  // extern "C"
