// Row-wise ops on the device, each mirroring its CPU kernel (csrc/backends/cpu/kernels/):
// embedding (embedding.cpp), rms_norm and layer_norm with sums in double (norm.cpp), add,
// mul, glu, scale and activations with the same formulas (elementwise.cpp), and the column
// copies behind last_row and slice; plus the step's positions (n_past + row).
#include "activation.cuh"
#include "common.cuh"
#include "quantize_q8.cuh"
#include "quant.cuh"

namespace strata::cuda {

namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n, int threads = kThreads) {
    return (unsigned)std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, threads), 1 << 20));
}

template <DType T>
__global__ void embedding_kernel(const uint8_t* __restrict__ table, int64_t row_bytes, int64_t table_rows, int W,
                                 const int32_t* __restrict__ ids, float* __restrict__ out) {
    pdl_begin();
    const int t = blockIdx.x;
    const int32_t id = ids[t];
    float* o = out + (int64_t)t * W;
    const bool valid = id >= 0 && id < table_rows;  // the engine checked; never read outside
    const uint8_t* row = table + (int64_t)(valid ? id : 0) * row_bytes;
    for (int e = threadIdx.x * 8; e < W; e += blockDim.x * 8) {
        float v[8];
        load_w8<T>(row, e, W, v);
#pragma unroll
        for (int k = 0; k < 8; ++k)
            if (e + k < W) o[e + k] = valid ? v[k] : 0.0f;
    }
}

__global__ void positions_kernel(int32_t* pos, int rows, const StepParams* sp) {
    pdl_begin();
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < rows) pos[t] = sp->n_past + t;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ double block_sum(double v) {
    __shared__ double part[32];
    __shared__ double total;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        double s = lane < nw ? part[lane] : 0.0;
        s = warp_sum_d(s);
        if (lane == 0) total = s;
    }
    __syncthreads();
    const double r = total;
    __syncthreads();  // part/total may be reused by a second call
    return r;
}

__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
                                int W, float eps) {
    pdl_begin();
    const float* xr = x + (int64_t)blockIdx.x * W;
    float* yr = y + (int64_t)blockIdx.x * W;
    double ss = 0.0;
    for (int i = threadIdx.x; i < W; i += blockDim.x) ss += (double)xr[i] * xr[i];
    ss = block_sum(ss);
    const float scale = (float)(1.0 / sqrt(ss / (double)W + (double)eps));
    if (w)
        for (int i = threadIdx.x; i < W; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
    else
        for (int i = threadIdx.x; i < W; i += blockDim.x) yr[i] = xr[i] * scale;
}

// Decode: one row. `xr` (or x + b, written to `sum` first) is read, and its sum of squares
// taken, exactly as rms_norm_kernel does with the same block size (thread t adds elements t,
// t + blockDim, ... in that order, then block_sum). With quant, warp w of step k holds
// elements k * blockDim + 32 w + lane: one whole 32-element chunk, quantized in registers
// (quantize_chunk32). Rows of up to kNormRegs * blockDim elements are loaded into registers
// all at once (the weights too), so the loads of a thread are in flight together rather than
// one after another (the same values, the same order of the sums); wider rows take the plain
// loops, in one block.
// Spread (gridDim.x > 1, register rows only): block k takes the sum of squares of the whole
// row as above, then writes, normalizes and quantizes only step k's elements, so a warp
// quantizes one chunk instead of one per step, and the steps run on as many SMs: one block
// did all of it in ~8 us on the H100 (ncu, 8B), twice a layer. Its blocks read all of x and b
// while others write, so y and sum must not share memory with x or b (the planner keeps a
// slot one node past its last read: core/plan.cpp). One block: every read of x and b happens
// before block_sum's barriers, every write of y after them.
// With w_early (w is a weight: never written during a step) the register path loads its
// weights before pdl_begin, while the kernel before it still runs, so the wait on DRAM for
// them (the weights are long evicted by the matvecs' stream) is off the step's critical path:
// the exception to the PDL contract argued in common.cuh.
constexpr int kNormRegs = 16;

__global__ void add_rms_norm_q8_kernel(const float* x, const float* b, float* sum,
                                       const float* __restrict__ w, float* y, int W, float eps, ActQ8 q8,
                                       bool w_early) {
    const int tid = threadIdx.x, nt = blockDim.x;
    const bool regs = W <= kNormRegs * nt;
    // Whether this block writes step k: spread, block k writes step k; one block, every step.
    auto writes = [&](int k) { return gridDim.x == 1 || k == (int)blockIdx.x; };
    float wv[kNormRegs];
    auto load_weights = [&] {
#pragma unroll
        for (int k = 0; k < kNormRegs; ++k) {
            const int i = tid + k * nt;
            wv[k] = i < W && w && writes(k) ? w[i] : 0.0f;
        }
    };
    if (regs && w_early) load_weights();
    pdl_begin();
    double ss = 0.0;
    if (regs) {
        if (!w_early) load_weights();
        float v[kNormRegs];
#pragma unroll
        for (int k = 0; k < kNormRegs; ++k) {
            const int i = tid + k * nt;
            v[k] = i < W ? (b ? x[i] + b[i] : x[i]) : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < kNormRegs; ++k) {
            const int i = tid + k * nt;
            if (i < W) {
                if (b && writes(k)) sum[i] = v[k];
                ss += (double)v[k] * v[k];
            }
        }
        ss = block_sum(ss);
        const float scale = (float)(1.0 / sqrt(ss / (double)W + (double)eps));
#pragma unroll
        for (int k = 0; k < kNormRegs; ++k) {
            const int i = tid + k * nt;
            if (i < W && writes(k)) {
                const float o = w ? v[k] * scale * wv[k] : v[k] * scale;
                y[i] = o;
                if (q8.q) quantize_chunk32(o, i >> 5, q8);  // whole warps: W % 32 == 0
            }
        }
        return;
    }
    if (b) {
        for (int i = tid; i < W; i += nt) {
            const float v = x[i] + b[i];
            sum[i] = v;
            ss += (double)v * v;
        }
    } else {
        for (int i = tid; i < W; i += nt) ss += (double)x[i] * x[i];
    }
    ss = block_sum(ss);
    const float scale = (float)(1.0 / sqrt(ss / (double)W + (double)eps));
    const float* xr = b ? sum : x;  // each thread reads back only what it wrote itself
    for (int i = tid; i < W; i += nt) {
        const float v = w ? xr[i] * scale * w[i] : xr[i] * scale;
        y[i] = v;
        if (q8.q) quantize_chunk32(v, i >> 5, q8);  // whole warps: W % 32 == 0
    }
}

__global__ void layer_norm_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                  const float* __restrict__ b, float* __restrict__ y, int W, float eps) {
    pdl_begin();
    const float* xr = x + (int64_t)blockIdx.x * W;
    float* yr = y + (int64_t)blockIdx.x * W;
    double sum = 0.0;
    for (int i = threadIdx.x; i < W; i += blockDim.x) sum += xr[i];
    const double mean = block_sum(sum) / (double)W;
    double var = 0.0;
    for (int i = threadIdx.x; i < W; i += blockDim.x) var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
    var = block_sum(var);
    const float scale = (float)(1.0 / sqrt(var / (double)W + (double)eps));
    for (int i = threadIdx.x; i < W; i += blockDim.x) {
        float v = (float)(xr[i] - mean) * scale;
        if (w) v *= w[i];
        if (b) v += b[i];
        yr[i] = v;
    }
}

__global__ void binary_kernel(Binary op, Activation act, const float* __restrict__ a, const float* __restrict__ b,
                              int broadcast, float* __restrict__ y, int64_t n, int64_t W) {
    pdl_begin();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float bv = broadcast ? b[i % W] : b[i];
        const float av = a[i];
        y[i] = op == Binary::Add ? av + bv : op == Binary::Mul ? av * bv : act_apply(act, av) * bv;
    }
}

// One warp per 32-element chunk: the glu of binary_kernel, then quantize_chunk32.
__global__ void glu_q8_kernel(Activation act, const float* __restrict__ g, const float* __restrict__ u,
                              float* __restrict__ y, int64_t n_chunks, ActQ8 q8) {
    pdl_begin();
    const int lane = threadIdx.x & 31;
    const int64_t step = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t c = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); c < n_chunks; c += step) {
        const int64_t i = c * 32 + lane;
        const float v = act_apply(act, g[i]) * u[i];
        y[i] = v;
        quantize_chunk32(v, c, q8);
    }
}

__global__ void scale_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n, float s) {
    pdl_begin();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = x[i] * s;
}

__global__ void activation_kernel(Activation act, const float* __restrict__ x, float* __restrict__ y, int64_t n) {
    pdl_begin();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = act_apply(act, x[i]);
}

__global__ void copy_cols_kernel(const float* __restrict__ x, int64_t x_width, int64_t col0, float* __restrict__ y,
                                 int64_t w, int64_t n) {
    pdl_begin();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / w, c = i - t * w;
        y[i] = x[t * x_width + col0 + c];
    }
}

}  // namespace

void launch_embedding(DType type, const uint8_t* table, int64_t row_bytes, int64_t table_rows, int64_t width,
                      const int32_t* ids, int64_t rows, float* out, Launch s) {
    const int threads = (int)std::min<int64_t>(256, std::max<int64_t>(32, ceil_div(width, 8 * 32) * 32));
    dispatch_type(type, [&]<DType T>() {
        launch_kernel(embedding_kernel<T>, (unsigned)rows, threads, 0, s, table, row_bytes, table_rows, (int)width, ids,
                      out);
    });
}

void launch_positions(int32_t* pos, int64_t rows, const StepParams* sp, Launch s) {
    launch_kernel(positions_kernel, (unsigned)ceil_div(rows, 128), 128, 0, s, pos, (int)rows, sp);
}

void launch_rms_norm(const float* x, const float* w, float* y, int64_t groups, int64_t W, float eps, Launch s) {
    const int threads = W >= 1024 ? 512 : W >= 256 ? 256 : W > 64 ? 128 : 32;
    launch_kernel(rms_norm_kernel, (unsigned)groups, threads, 0, s, x, w, y, (int)W, eps);
}

void launch_add_rms_norm_q8(const float* x, const float* b, float* sum, const float* w, float* y, int64_t W,
                            float eps, ActQ8 q8, bool spread, bool w_early, Launch s) {
    const int threads = W >= 1024 ? 512 : W >= 256 ? 256 : W > 64 ? 128 : 32;  // as launch_rms_norm
    const unsigned blocks = spread && W <= kNormRegs * threads ? (unsigned)ceil_div(W, threads) : 1;
    launch_kernel(add_rms_norm_q8_kernel, blocks, threads, 0, s, x, b, sum, w, y, (int)W, eps, q8, w_early);
}

void launch_glu_q8(Activation act, const float* gate, const float* up, float* y, int64_t n, ActQ8 q8,
                   Launch s) {
    const int64_t n_chunks = n / 32;
    const int64_t blocks = std::min<int64_t>(ceil_div(n_chunks, 4), 65535);
    launch_kernel(glu_q8_kernel, (unsigned)blocks, 128, 0, s, act, gate, up, y, n_chunks, q8);
}

void launch_layer_norm(const float* x, const float* w, const float* b, float* y, int64_t rows, int64_t W, float eps,
                       Launch s) {
    const int threads = W >= 1024 ? 512 : W >= 256 ? 256 : W > 64 ? 128 : 32;
    launch_kernel(layer_norm_kernel, (unsigned)rows, threads, 0, s, x, w, b, y, (int)W, eps);
}

void launch_binary(Binary op, Activation act, const float* a, const float* b, bool broadcast, float* y, int64_t rows,
                   int64_t W, Launch s) {
    const int64_t n = rows * W;
    launch_kernel(binary_kernel, grid_for(n), kThreads, 0, s, op, act, a, b, broadcast ? 1 : 0, y, n, W);
}

void launch_scale(const float* x, float* y, int64_t n, float scale, Launch s) {
    launch_kernel(scale_kernel, grid_for(n), kThreads, 0, s, x, y, n, scale);
}

void launch_activation(Activation act, const float* x, float* y, int64_t n, Launch s) {
    launch_kernel(activation_kernel, grid_for(n), kThreads, 0, s, act, x, y, n);
}

void launch_copy_cols(const float* x, int64_t x_width, int64_t col0, float* y, int64_t w, int64_t rows,
                      Launch s) {
    const int64_t n = rows * w;
    launch_kernel(copy_cols_kernel, grid_for(n), kThreads, 0, s, x, x_width, col0, y, w, n);
}

}  // namespace strata::cuda
