"""strata on one GPU: pp512 and tg128 per model file, llama-bench style, as JSON lines.

    python benchmarks/cuda_bench.py MODEL.gguf [...] [--backend cuda] [--repeats 3] [--profile]

pp512: 512 prompt tokens evaluated from an empty cache in one call (n_batch 512).
tg128: 128 tokens generated one at a time (greedy; graph step + sampling per call) from an
empty cache, as llama-bench's tg128 does. Median of the repeats, tokens/s; weight bytes per
generated token (the file's tensors minus the token-embedding table) for bandwidth.
--profile adds the device time per op of one pp512 step and of one decode step (ms).
--tg-only skips pp512. --env NAME=VALUE[,NAME=VALUE] (repeatable) runs each model once per
setting, each in a fresh process, e.g. --env STRATA_CUDA_MATVEC=v1 --env "" for the old and
the new decode matvec in one call (each line of output names its setting; a value may hold
commas: --env STRATA_CUDA_FUSE=norm,add). Fresh processes
because, measured on the H100, a model loaded after another in the same process decoded
5-12% slower than the first one (cause not found; cuda_notes.md round 3).

    python benchmarks/cuda_bench.py OUT.gguf --write-random 8b:Q4_K_M

writes a random-weight Llama file of a make_random_llama.py shape in a quantized layout as
llama-quantize makes it (Q8_0: every matrix Q8_0; Q4_0: Q4_0 with a Q6_K output; Q4_K_M: Q4_K,
with Q6_K for the output and for attn_v / ffn_down of the layers llama.cpp's use_more_bits
picks), without llama.cpp: random quant bytes under fp16 scales that keep weights near
+-0.02, 1-2 s per GB. Only for timing: the values mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def weight_bytes_per_token(path: str) -> int:
    from strata.gguf import GGUFFile

    with GGUFFile(path) as f:
        total = sum(t.nbytes for t in f.tensors.values())
        if "output.weight" in f.tensors:
            total -= f.tensors["token_embd.weight"].nbytes
        return total


# ---- random quantized files (timing only) ----------------------------------------------------
# fp16 scale fields per block and the scale magnitude that keeps weights near +-0.02.
SCALES = {"Q8_0": ((0,), 2e-4), "Q4_0": ((0,), 3e-3), "Q4_K": ((0, 2), 2e-5),
          "Q6_K": ((208,), 5e-6)}


def use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's choice of the Q4_K_M layers whose attn_v / ffn_down get Q6_K."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def write_random(path: str, spec: str) -> None:
    """Write a random-weight Llama file of shape:ftype (e.g. 1b:Q4_0); see the module doc."""
    import gguf
    from gguf.constants import GGML_QUANT_SIZES

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_random_llama import N_VOCAB, SHAPES, write_llama_metadata

    shape, ftype = spec.split(":")
    s = SHAPES[shape]
    E, L, H, HKV, F = s["n_embd"], s["n_layer"], s["n_head"], s["n_head_kv"], s["n_ff"]
    hd = E // H
    base = {"Q8_0": "Q8_0", "Q4_0": "Q4_0", "Q4_K_M": "Q4_K"}[ftype]
    out_type = "Q8_0" if ftype == "Q8_0" else "Q6_K"

    def mat(name: str, rows: int, cols: int, layer: int = -1) -> tuple:
        t = base
        if ftype == "Q4_K_M" and layer >= 0 and name.split(".")[-2] in ("attn_v", "ffn_down"):
            t = "Q6_K" if use_more_bits(layer, L) else base
        return (name, rows, cols, t)

    tensors = [mat("token_embd.weight", N_VOCAB, E)]
    norms = []
    for i in range(L):
        p = f"blk.{i}"
        norms += [f"{p}.attn_norm.weight", f"{p}.ffn_norm.weight"]
        tensors += [mat(f"{p}.attn_norm.weight", 1, E), mat(f"{p}.attn_q.weight", E, E),
                    mat(f"{p}.attn_k.weight", HKV * hd, E, i),
                    mat(f"{p}.attn_v.weight", HKV * hd, E, i),
                    mat(f"{p}.attn_output.weight", E, E, i), mat(f"{p}.ffn_norm.weight", 1, E),
                    mat(f"{p}.ffn_gate.weight", F, E, i), mat(f"{p}.ffn_up.weight", F, E, i),
                    mat(f"{p}.ffn_down.weight", E, F, i)]
    tensors += [mat("output_norm.weight", 1, E), ("output.weight", N_VOCAB, E, out_type)]
    norms.append("output_norm.weight")

    w = gguf.GGUFWriter(path, "llama")
    write_llama_metadata(w, f"random llama {shape} {ftype}", shape, ftype)
    rng = np.random.default_rng(0)
    # random bytes, reused from moving offsets (fast: no new random numbers per tensor)
    pool = rng.integers(0, 256, size=(64 << 20) + 4096, dtype=np.uint8)
    spool = rng.uniform(0.5, 1.5, 1 << 20) * rng.choice([-1.0, 1.0], 1 << 20)
    shapes = []
    for name, rows, cols, t in tensors:
        if name in norms:
            shapes.append((name, (cols,), np.float32, cols * 4, None))
            continue
        qt = gguf.GGMLQuantizationType[t]
        blk, size = GGML_QUANT_SIZES[qt]
        shapes.append((name, (rows, cols // blk * size), np.uint8, rows * cols // blk * size, qt))
    for name, shp, dt, nbytes, qt in shapes:
        w.add_tensor_info(name, shp, np.dtype(dt), nbytes, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    off = 0
    for (name, shp, dt, nbytes, qt), (_, _, _, t) in zip(shapes, tensors):
        if qt is None:
            w.write_tensor_data((1.0 + 0.02 * rng.standard_normal(shp)).astype(np.float32))
            continue
        blk, size = GGML_QUANT_SIZES[qt]
        data = np.empty(nbytes, np.uint8)
        done = 0
        while done < nbytes:  # the pool, from a moving offset
            n = min(nbytes - done, 64 << 20)
            data[done:done + n] = pool[off:off + n]
            off = (off + 4093) % 4096
            done += n
        blocks = data.reshape(-1, size)
        fields, mag = SCALES[t]
        for f in fields:
            k = blocks.shape[0]
            sc = (np.resize(spool, k) * mag).astype(np.float16)
            blocks[:, f:f + 2] = sc.view(np.uint8).reshape(k, 2)
        w.write_tensor_data(data.reshape(shp))
    w.close()


def parse_setting(setting: str) -> dict:
    """NAME=VALUE[,NAME=VALUE]: a piece without '=' continues the previous value, so a value
    may hold commas (STRATA_CUDA_FUSE=norm,add)."""
    env: dict = {}
    last = None
    for piece in setting.split(","):
        if "=" in piece:
            last, value = piece.split("=", 1)
            env[last] = value
        elif piece and last is not None:
            env[last] += "," + piece
        elif piece:
            raise SystemExit(f"--env {setting!r}: {piece!r} is not NAME=VALUE")
    return env


def op_profile(m, run) -> dict:
    m.set_profiling(True)
    run()
    rows = m.profile()
    m.set_profiling(False)
    return {op: round(sec * 1e3, 3) for op, _, sec in rows}


def tg128(e, settings, none, context=None) -> float:
    """Tokens per second of 128 decode steps, step_sample at `settings`, from an empty cache or
    after evaluating `context` (llama-bench's tg128 @ d, its -d option), in steps of 512."""
    e.truncate(0)
    for i in range(0, 0 if context is None else len(context), 512):
        e.eval(context[i : i + 512])
    tok = 1
    t0 = time.perf_counter()
    for _ in range(128):
        tok = e.step_sample(tok, settings, none)
    return 128 / (time.perf_counter() - t0)


def bench(path: str, backend: str, repeats: int, profile: bool = False,
          tg_only: bool = False, sampled: bool = False, depth: int = 0) -> dict:
    import strata

    m = strata.load(path, n_ctx=max(1024, depth + 256), backend=backend)
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
        if not tg_only:
            e.truncate(0)
            t0 = time.perf_counter()
            e.eval(prompt)
            pp.append(512 / (time.perf_counter() - t0))
        tg.append(tg128(e, greedy, none))
    wb = weight_bytes_per_token(path)
    tgm = statistics.median(tg)
    r = {"model": path, "backend": m.description, "pp512": statistics.median(pp) if pp else None,
         "pp512_all": pp, "tg128": tgm, "tg128_all": tg, "weight_bytes_per_token": wb,
         "tg_bandwidth_gb_s": wb * tgm / 1e9}
    if depth:  # tg128 after `depth` tokens of context: decode attention over a long cache
        context = rng.integers(3, m.n_vocab, size=depth, dtype=np.int32)
        td = [tg128(e, greedy, none, context) for _ in range(repeats)]
        r[f"tg128_d{depth}"], r[f"tg128_d{depth}_all"] = statistics.median(td), td
    if sampled:  # tg128 again at the CLI's default sampling (temperature 0.8, top-k 40, ...)
        settings = strata.sampling.SamplingSettings().native()
        e.seed(0)
        ts = [tg128(e, settings, none) for _ in range(repeats)]
        r["tg128_sampled"], r["tg128_sampled_all"] = statistics.median(ts), ts
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
    ap.add_argument("--tg-only", action="store_true", help="skip pp512")
    ap.add_argument("--sampled", action="store_true",
                    help="also tg128 at the default sampling settings (tg128_sampled)")
    ap.add_argument("--depth", type=int, default=0,
                    help="also tg128 after this many tokens of context (tg128_dN; n_ctx grows to fit)")
    ap.add_argument("--env", action="append", default=None,
                    help="NAME=VALUE[,NAME=VALUE]: run every model once per --env ('' = as is)")
    ap.add_argument("--write-random", metavar="SHAPE:FTYPE",
                    help="write a random quantized file to the one path given "
                    "(1b|8b|0.3b : Q8_0|Q4_0|Q4_K_M)")
    a = ap.parse_args()
    if a.write_random:  # needs gguf, not strata (which may still be building)
        write_random(a.models[0], a.write_random)
        return
    if a.env:  # one fresh process per model and setting
        flags = ["--backend", a.backend, "--repeats", str(a.repeats)]
        flags += ["--profile"] * a.profile + ["--tg-only"] * a.tg_only + ["--sampled"] * a.sampled
        flags += ["--depth", str(a.depth)]
        for path in a.models:
            for setting in a.env:
                env = dict(os.environ)
                env.update(parse_setting(setting))
                cmd = [sys.executable, os.path.abspath(__file__), path, *flags]
                p = subprocess.run(cmd, env=env, capture_output=True, text=True)
                lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
                for ln in lines or [json.dumps({"model": path, "error": p.stderr[-2000:]})]:
                    r = json.loads(ln)
                    r["env"] = setting
                    print(json.dumps(r), flush=True)
        return
    import strata

    for path in a.models:
        try:
            r = bench(path, a.backend, a.repeats, a.profile, a.tg_only, a.sampled, a.depth)
        except strata.StrataError as err:
            r = {"model": path, "error": str(err)}
        r["env"] = ""
        r["time"] = time.time()
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
