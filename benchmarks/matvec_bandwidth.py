"""Decode matvec speed per weight type: GB/s of weights streamed by strata's CPU matmul
(one token, a 4096 x 4096 weight, through the real engine and thread pool) beside NumPy's
float32 matvec over the same weights dequantized (OpenBLAS sgemv), 1 and 2 threads.

    python benchmarks/matvec_bandwidth.py [--rows 4096] [--cols 4096] [--repeats 50]

Weights are random bytes (random quants and scales; content does not change the speed of
the integer paths) except the float types (random normal). GB/s = weight bytes / time.
NumPy reads 4 bytes per weight, so its GB/s is over its own float32 matrix.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGML_QUANT_SIZES

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from ops.harness import OpHarness  # noqa: E402

from strata import _core  # noqa: E402

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K",
         "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]


def weight_bytes(name: str, rows: int, cols: int, rng) -> bytes:
    block, size = GGML_QUANT_SIZES[Q[name]]
    n = rows * cols // block * size
    if name == "F32":
        return rng.standard_normal(rows * cols, dtype=np.float32).tobytes()
    if name in ("F16", "BF16"):
        x = rng.standard_normal(rows * cols, dtype=np.float32)
        return (x.astype(np.float16) if name == "F16" else (x.view(np.uint32) >> 16).astype(np.uint16)).tobytes()
    raw = rng.integers(0, 256, size=n, dtype=np.uint8)
    # Keep fp16 scales finite and small: set every block's leading 2 bytes to ~1/64.
    blocks = raw.reshape(-1, size)
    blocks[:, 0:2] = np.frombuffer(np.float16(1 / 64).tobytes(), np.uint8)
    return blocks.tobytes()


def time_strata(name: str, raw: bytes, rows: int, cols: int, threads: int, repeats: int) -> float:
    h = OpHarness()
    x = h.rows(np.random.default_rng(1).standard_normal((1, cols), dtype=np.float32))
    out = h.op(_core.Op.matmul, [x, h.weight("w", raw, int(Q[name]), cols, rows)])
    h.graph.set_output(out)
    mapping = np.frombuffer(bytes(h._buf) + b"\0" * 64, dtype=np.uint8)
    eng = _core.Engine(h.graph, mapping, n_ctx=8, n_batch=1, n_threads=threads)
    tok = np.zeros(1, np.int32)
    times = []
    for _ in range(repeats):
        eng.truncate(0)
        t0 = time.perf_counter()
        eng.eval(tok)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_numpy(rows: int, cols: int, threads: int, repeats: int) -> float:
    from threadpoolctl import threadpool_limits

    w = np.random.default_rng(2).standard_normal((rows, cols), dtype=np.float32)
    x = np.random.default_rng(3).standard_normal(cols, dtype=np.float32)
    with threadpool_limits(threads):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            w @ x
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=50)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    np_t = {t: time_numpy(a.rows, a.cols, t, a.repeats) for t in (1, 2)}
    f32_bytes = a.rows * a.cols * 4
    print(f"{a.rows} x {a.cols} weight, one token; CPU kernels: {_core.cpu_isas()[0]}")
    print(f"NumPy float32 sgemv: 1 thread {f32_bytes / np_t[1] / 1e9:.1f} GB/s, "
          f"2 threads {f32_bytes / np_t[2] / 1e9:.1f} GB/s")
    print(f"| type | MB | strata 1 thr GB/s | strata 2 thr GB/s | time vs NumPy f32 sgemv (2 thr): speed-up |")
    print("|---|---|---|---|---|")
    for name in TYPES:
        raw = weight_bytes(name, a.rows, a.cols, rng)
        t1 = time_strata(name, raw, a.rows, a.cols, 1, a.repeats)
        t2 = time_strata(name, raw, a.rows, a.cols, 2, a.repeats)
        print(f"| {name} | {len(raw) / 1e6:.1f} | {len(raw) / t1 / 1e9:.1f} | {len(raw) / t2 / 1e9:.1f} "
              f"| {np_t[2] / t2:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
