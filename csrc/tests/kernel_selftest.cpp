// Standalone self-test of the CPU kernel tables (no Python): for every weight type and every
// kernel table this binary has and this CPU runs, on deterministic random blocks,
//
//   dequantize_row   equals the reference table's bit for bit;
//   matvec           agrees with the reference table's within a tight relative tolerance
//                    (the 8-bit activations are identical bytes in every table, so only the
//                    fp32 summation order differs), and with a float64 dot of the
//                    reference-dequantized weights and the unquantized input within the
//                    8-bit activation bound;
//   matmul (5 rows)  the prefill op (4-row micro-kernel + 1 row) agrees with the reference
//                    table's matvec of each row, as matvec does.
//
// The reference is the `ref` table where the build links one (compiled with
// STRATA_SCALAR_REFERENCE: the scalar code alone, used on arm64 where the baseline `scalar`
// build has NEON paths), else `scalar`. Built by the CMake option STRATA_BUILD_SELFTEST and by
// scripts/test_neon_qemu.sh (arm64 under qemu-user, and natively).
//
// Usage: kernel_selftest [--expect isa,isa,...] [--seed N]
//   --expect  fail unless the tables this CPU runs are exactly these (checks the run-time
//             selection, e.g. no `neon` table on a CPU without dotprod).
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "../backends/cpu/cpu_backend.h"
#include "../core/dtype.h"
#include "../quants/blocks.h"

namespace strata::cpu {
#if defined(STRATA_SELFTEST_REF)
namespace ref {
const KernelTable* kernel_table();
}
#endif
}  // namespace strata::cpu

namespace {

using namespace strata;
using namespace strata::quants;
using cpu::KernelTable;

// Table vs reference: |a - b| <= kTightRel * sum_i |w_i x_i|. The products and the
// activation bytes are the same in every table; what differs is the fp32 order of the
// per-block sums (and FMA contraction), about 1e-7 of that sum per block summed.
constexpr double kTightRel = 2e-5;
// Against float64: the activation bound plus this much of sum_i |w_i x_i| for fp32 rounding.
constexpr double kFp32Rel = 2e-5;

struct Rng {  // splitmix64
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    uint32_t below(uint32_t n) { return (uint32_t)(next() % n); }
    float uniform(float lo, float hi) { return lo + (hi - lo) * (float)((next() >> 40) * 0x1p-24); }
};

// A bounded fp16 scale: magnitude 2^-18 .. 2^-3 (1 in 16 subnormal, 1 in 64 zero), either sign.
uint16_t rand_scale(Rng& r) {
    const uint16_t sign = (uint16_t)(r.below(2) << 15);
    const uint32_t k = r.below(64);
    if (k == 0) return sign;
    const uint16_t mant = (uint16_t)r.below(1024);
    if (k < 5) return (uint16_t)(sign | (mant ? mant : 1));           // subnormal
    return (uint16_t)(sign | ((1 + r.below(12)) << 10) | mant);      // exponent 2^-14 .. 2^-3
}

struct TypeCase {
    DType type;
    // Offsets of the fp16 scale fields inside one block (-1: none).
    int scale_off[2];
};

const TypeCase kTypes[] = {
    {DType::F32, {-1, -1}},
    {DType::F16, {-1, -1}},
    {DType::BF16, {-1, -1}},
    {DType::Q4_0, {offsetof(block_q4_0, d), -1}},
    {DType::Q4_1, {offsetof(block_q4_1, d), offsetof(block_q4_1, m)}},
    {DType::Q5_0, {offsetof(block_q5_0, d), -1}},
    {DType::Q5_1, {offsetof(block_q5_1, d), offsetof(block_q5_1, m)}},
    {DType::Q8_0, {offsetof(block_q8_0, d), -1}},
    {DType::IQ4_NL, {offsetof(block_iq4_nl, d), -1}},
    {DType::Q2_K, {offsetof(block_q2_K, d), offsetof(block_q2_K, dmin)}},
    {DType::Q3_K, {offsetof(block_q3_K, d), -1}},
    {DType::Q4_K, {offsetof(block_q4_K, d), offsetof(block_q4_K, dmin)}},
    {DType::Q5_K, {offsetof(block_q5_K, d), offsetof(block_q5_K, dmin)}},
    {DType::Q6_K, {offsetof(block_q6_K, d), -1}},
    {DType::IQ4_XS, {offsetof(block_iq4_xs, d), -1}},
};

// Elements per activation block of the type's integer dot (0: fp32 activations).
int act_block(DType t) {
    switch (t) {
        case DType::F32: case DType::F16: case DType::BF16: return 0;
        case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
        case DType::IQ4_XS:
            return QK_K;
        default: return 32;
    }
}

std::vector<uint8_t> random_weights(const TypeCase& tc, int64_t width, int64_t rows, Rng& r) {
    const DTypeTraits* tr = dtype_traits((uint32_t)tc.type);
    const int64_t n = width * rows;
    std::vector<uint8_t> w((size_t)(n / tr->block_size * tr->type_size));
    if (tc.type == DType::F32) {
        for (int64_t i = 0; i < n; ++i) {
            const float v = r.uniform(-2.0f, 2.0f);
            memcpy(w.data() + 4 * i, &v, 4);
        }
        return w;
    }
    if (tc.type == DType::F16 || tc.type == DType::BF16) {
        for (int64_t i = 0; i < n; ++i) {
            const float v = r.uniform(-2.0f, 2.0f);
            uint32_t bits;
            memcpy(&bits, &v, 4);
            const uint16_t h = tc.type == DType::F16 ? fp32_to_fp16(v) : (uint16_t)(bits >> 16);
            memcpy(w.data() + 2 * i, &h, 2);
        }
        return w;
    }
    for (auto& b : w) b = (uint8_t)r.next();
    for (size_t off = 0; off < w.size(); off += (size_t)tr->type_size)
        for (int f : tc.scale_off)
            if (f >= 0) {
                const uint16_t s = rand_scale(r);
                memcpy(w.data() + off + f, &s, 2);
            }
    return w;
}

// Inputs: uniform in [-1, 1] times a per-32 magnitude of 2^-4 .. 2^4; one block all zero.
std::vector<float> random_input(int64_t width, Rng& r) {
    std::vector<float> x((size_t)width);
    for (int64_t b = 0; b < width; b += 32) {
        const float mag = std::ldexp(1.0f, (int)r.below(9) - 4);
        const bool zero = b == 32;
        for (int64_t i = b; i < std::min<int64_t>(b + 32, width); ++i) x[i] = zero ? 0.0f : mag * r.uniform(-1.0f, 1.0f);
    }
    return x;
}

struct Result {
    int64_t dequant_mismatch = 0;  // elements not bit-identical to the reference
    double tight = 0.0;            // max |y - y_ref| / sum|w x|, matvec
    double tight_mm = 0.0;         // the same for matmul's rows
    double vs_f64 = 0.0;           // max |y - exact| / bound
    bool nan = false;
};

// One (type, table) case at one shape, folded into `res`.
void check_case(const TypeCase& tc, const KernelTable* table, const KernelTable* reft, int64_t width, int64_t rows,
                Rng& rng, Result& res) {
    const DType t = tc.type;
    const std::vector<uint8_t> w = random_weights(tc, width, rows, rng);
    const int64_t n = width * rows;

    std::vector<float> deq((size_t)n), deq_ref((size_t)n);
    table->dequantize_row(t, w.data(), deq.data(), n);
    reft->dequantize_row(t, w.data(), deq_ref.data(), n);
    for (int64_t i = 0; i < n; ++i)
        if (memcmp(&deq[i], &deq_ref[i], 4) != 0) ++res.dequant_mismatch;

    constexpr int64_t T = 5;  // matmul rows: one 4-row micro-kernel group and one single row
    std::vector<float> X((size_t)(T * width));
    for (int64_t tt = 0; tt < T; ++tt) {
        const std::vector<float> x = random_input(width, rng);
        std::copy(x.begin(), x.end(), X.begin() + tt * width);
    }
    std::vector<uint8_t> scratch((size_t)(4 * width + 64));
    std::vector<float> y((size_t)rows), y_ref((size_t)rows);

    // The prefill op on all T rows.
    std::vector<float> Y((size_t)(T * rows), NAN);
    std::vector<uint8_t> act_q((size_t)(T * (4 * width + 64)));
    {
        uint8_t* data[3] = {(uint8_t*)X.data(), (uint8_t*)w.data(), (uint8_t*)Y.data()};
        const DType type[3] = {DType::F32, t, DType::F32};
        const int64_t wid[3] = {width, width, rows}, wrows[3] = {0, rows, 0};
        const uint8_t single[3] = {0, 0, 0};
        int32_t aq_value = -1, aq_format = -1;
        Node node;
        node.op = Op::MatMul;
        node.in = {0, 1, -1};
        node.out = 2;
        cpu::Exec ex{};
        ex.nodes = &node;
        ex.n_nodes = 1;
        ex.data = data;
        ex.type = type;
        ex.width = wid;
        ex.weight_rows = wrows;
        ex.single_row = single;
        ex.n_rows = T;
        ex.act_q = act_q.data();
        ex.act_q_value = &aq_value;
        ex.act_q_format = &aq_format;
        ex.barrier = [](void*) {};
        table->op[(int)Op::MatMul](ex, node, 0, 1);
    }

    const int ab = act_block(t);
    for (int64_t tt = 0; tt < T; ++tt) {
        const float* x = X.data() + tt * width;
        table->matvec(t, w.data(), width, 0, rows, x, y.data(), scratch.data());
        reft->matvec(t, w.data(), width, 0, rows, x, y_ref.data(), scratch.data());
        for (int64_t r = 0; r < rows; ++r) {
            const float* wr = deq_ref.data() + r * width;
            double exact = 0.0, mag = 0.0, bound = 0.0;
            for (int64_t i = 0; i < width; ++i) {
                exact += (double)wr[i] * x[i];
                mag += std::fabs((double)wr[i] * x[i]);
            }
            if (ab > 0)  // |x_i - d q_i| <= d / 2 with d = amax / 127 per activation block
                for (int64_t b = 0; b < width; b += ab) {
                    double amax = 0.0, wsum = 0.0;
                    for (int64_t i = b; i < b + ab; ++i) {
                        amax = std::max(amax, std::fabs((double)x[i]));
                        wsum += std::fabs((double)wr[i]);
                    }
                    bound += amax / 254.0 * wsum;
                }
            bound += kFp32Rel * mag + 1e-30;
            const double scale = mag + 1e-30;
            const float ym = Y[tt * rows + r];
            if (std::isnan(y[r]) || std::isnan(ym) || std::isnan(y_ref[r])) res.nan = true;
            res.tight = std::max(res.tight, std::fabs((double)y[r] - y_ref[r]) / scale);
            res.tight_mm = std::max(res.tight_mm, std::fabs((double)ym - y_ref[r]) / scale);
            res.vs_f64 = std::max(res.vs_f64, std::fabs((double)y[r] - exact) / bound);
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string expect;
    uint64_t seed = 20240611;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--expect" && i + 1 < argc) expect = argv[++i];
        else if (a == "--seed" && i + 1 < argc) seed = strtoull(argv[++i], nullptr, 10);
        else {
            fprintf(stderr, "usage: %s [--expect isa,isa,...] [--seed N]\n", argv[0]);
            return 2;
        }
    }

    const std::vector<const KernelTable*> tables = cpu::available_kernel_tables();
    const KernelTable* reft = nullptr;
#if defined(STRATA_SELFTEST_REF)
    reft = cpu::ref::kernel_table();
#endif
    std::string have;
    for (const KernelTable* t : tables) {
        have += std::string(have.empty() ? "" : ",") + t->isa;
        if (!reft && std::string(t->isa) == "scalar") reft = t;
    }
    printf("kernel tables this CPU runs (best first): %s; reference: %s\n", have.c_str(), reft ? reft->isa : "none");
    int failures = 0;
    if (!reft) {
        printf("FAIL: no scalar reference table\n");
        return 1;
    }
    if (!expect.empty()) {
        std::set<std::string> want, got;
        for (size_t p = 0; p <= expect.size();) {
            const size_t q = std::min(expect.find(',', p), expect.size());
            want.insert(expect.substr(p, q - p));
            p = q + 1;
        }
        for (const KernelTable* t : tables) got.insert(t->isa);
        if (want != got) {
            printf("FAIL: expected tables {%s}, have {%s}\n", expect.c_str(), have.c_str());
            ++failures;
        }
    }

    std::vector<const KernelTable*> under_test = tables;
    if (std::find(tables.begin(), tables.end(), reft) == tables.end()) under_test.push_back(reft);  // ref vs f64 too

    printf("\n%-7s %-8s %10s %12s %12s %12s\n", "type", "isa", "dequant", "matvec", "matmul", "matvec");
    printf("%-7s %-8s %10s %12s %12s %12s\n", "", "", "mismatch", "vs ref", "vs ref", "vs f64");
    for (const TypeCase& tc : kTypes) {
        const int64_t bs = dtype_traits((uint32_t)tc.type)->block_size;
        // Shapes: one block (or 40 floats), and ~1200 elements; odd row counts.
        const int64_t small = bs == 1 ? 40 : bs, large = bs == 1 ? 1207 : (bs == 32 ? 32 * 37 : QK_K * 5);
        for (const KernelTable* table : under_test) {
            Result res;
            Rng rng{seed ^ ((uint64_t)tc.type << 32)};  // the same data for every table
            for (int trial = 0; trial < 3; ++trial) {
                check_case(tc, table, reft, small, 3, rng, res);
                check_case(tc, table, reft, large, 13, rng, res);
            }
            const bool ok = res.dequant_mismatch == 0 && !res.nan && res.tight <= kTightRel &&
                            res.tight_mm <= kTightRel && res.vs_f64 <= 1.0;
            if (!ok) ++failures;
            printf("%-7s %-8s %10" PRId64 " %12.2e %12.2e %12.2e  %s%s\n", dtype_name(tc.type).c_str(), table->isa,
                   res.dequant_mismatch, res.tight, res.tight_mm, res.vs_f64, ok ? "ok" : "FAIL", res.nan ? " (NaN)" : "");
        }
    }
    printf("\nvs ref: |y - y_ref| / sum|w x|, at most %.0e; vs f64: |y - exact| / (8-bit activation bound\n"
           "+ %.0e sum|w x|), at most 1. matmul: 5 input rows (4-row prefill kernel + 1).\n",
           kTightRel, kFp32Rel);
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
