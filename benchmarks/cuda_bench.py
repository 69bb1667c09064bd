"""strata on one GPU: pp512 and tg128 per model file, llama-bench style, as JSON lines.

    python benchmarks/cuda_bench.py MODEL.gguf [...] [--backend cuda] [--repeats 3] [--profile]

pp512: 512 prompt tokens evaluated from an empty cache in one call (n_batch 512).
tg128: 128 tokens generated one at a time (greedy; graph step + sampling per call) from an
empty cache, as llama-bench's tg128 does. Median of the repeats, tokens/s; weight bytes per
generated token (the file's tensors minus the token-embedding table) for bandwidth.
--profile adds the device time per op of one pp512 step and of one decode step (ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import strata
from strata.gguf import GGUFFile


def weight_bytes_per_token(path: str) -> int:
    with GGUFFile(path) as f:
        total = sum(t.nbytes for t in f.tensors.values())
        if "output.weight" in f.tensors:
            total -= f.tensors["token_embd.weight"].nbytes
        return total


def op_profile(m, run) -> dict:
    m.set_profiling(True)
    run()
    rows = m.profile()
    m.set_profiling(False)
    return {op: round(sec * 1e3, 3) for op, _, sec in rows}


def bench(path: str, backend: str, repeats: int, profile: bool = False) -> dict:
    m = strata.load(path, n_ctx=1024, backend=backend)
    e = m._engine
    rng = np.random.default_rng(0)
    prompt = rng.integers(3, m.n_vocab, size=512, dtype=np.int32)
    greedy = strata.sampling.SamplingSettings(temperature=0).native()
    none = np.zeros(0, np.int32)
    e.truncate(0)
    e.eval(prompt[:64])  # warm-up: first launches, graph capture
    tok = e.sample(greedy, none)
    for _ in range(8):
        tok = e.step_sample(tok, greedy, none)
    pp, tg = [], []
    for _ in range(repeats):
        e.truncate(0)
        t0 = time.perf_counter()
        e.eval(prompt)
        pp.append(512 / (time.perf_counter() - t0))
        e.truncate(0)
        tok = 1
        t0 = time.perf_counter()
        for _ in range(128):
            tok = e.step_sample(tok, greedy, none)
        tg.append(128 / (time.perf_counter() - t0))
    wb = weight_bytes_per_token(path)
    tgm = statistics.median(tg)
    r = {"model": path, "backend": m.description, "pp512": statistics.median(pp),
         "pp512_all": pp, "tg128": tgm, "tg128_all": tg, "weight_bytes_per_token": wb,
         "tg_bandwidth_gb_s": wb * tgm / 1e9}
    if profile:
        e.truncate(0)
        r["pp512_ms_per_op"] = op_profile(m, lambda: e.eval(prompt))
        r["decode_ms_per_op"] = op_profile(m, lambda: e.step_sample(1, greedy, none))
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="device time per op of one step")
    a = ap.parse_args()
    for path in a.models:
        try:
            r = bench(path, a.backend, a.repeats, a.profile)
        except strata.StrataError as err:
            r = {"model": path, "error": str(err)}
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
