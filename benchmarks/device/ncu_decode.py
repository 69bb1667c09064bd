"""Device time of each kernel of one decode step, by Nsight Compute (no graph overlap, no PDL:
each kernel alone), to find where a token's time goes. On the device machine:

    ncu --profile-from-start off --clock-control none --csv --page raw \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size,launch__registers_per_thread \
        --log-file OUT.csv python3 benchmarks/device/ncu_decode.py run MODEL.gguf --depth 2048
    python3 benchmarks/device/ncu_decode.py summary OUT.csv

`run` evaluates `depth` random tokens, takes a few decode steps (the graph is captured), then
profiles one step between cuProfilerStart and cuProfilerStop. `summary` prints, per kernel
name, the launches, the summed time and DRAM bytes read, and the rate those bytes came at.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import re
import sys
from collections import defaultdict


def run(path: str, depth: int) -> None:
    import numpy as np
    import strata

    m = strata.load(path, n_ctx=max(1024, depth + 256), backend="cuda")
    e = m._engine
    greedy = strata.sampling.SamplingSettings(temperature=0).native()
    none = np.zeros(0, np.int32)
    rng = np.random.default_rng(0)
    context = rng.integers(3, m.n_vocab, size=max(depth, 1), dtype=np.int32)
    e.truncate(0)
    for i in range(0, len(context), 512):
        e.eval(context[i : i + 512])
    tok = e.sample(greedy, none)
    for _ in range(4):
        tok = e.step_sample(tok, greedy, none)
    cuda = ctypes.CDLL("libcuda.so.1")
    cuda.cuProfilerStart()
    tok = e.step_sample(tok, greedy, none)
    cuda.cuProfilerStop()
    print("profiled one decode step of", path, "after", depth + 5, "positions")


def short(name: str) -> str:
    name = re.sub(r"^void |\(anonymous namespace\)::|strata::cuda::", "", name)
    if name.endswith(")"):  # the argument list: from its matching "(" on
        depth = 0
        for i in range(len(name) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(name[i], 0)
            if depth == 0:
                name = name[:i]
                break
    base = re.sub(r"<.*$", "", name).split("::")[-1]
    args = re.search(r"<(.*)>", name)
    tmpl = re.sub(r"\s", "", args.group(1)) if args else ""
    return f"{base}<{tmpl[:40]}>" if tmpl else base


def summary(path: str) -> None:
    lines = [ln for ln in open(path) if ln.startswith('"')]
    rows = list(csv.reader(lines))
    head, units, data = rows[0], rows[1], rows[2:]
    col = {h: i for i, h in enumerate(head)}
    t_scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}[units[col["gpu__time_duration.sum"]]]
    b_scale = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}[units[col["dram__bytes_read.sum"]]]
    agg: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0, 0])
    total = 0.0
    for r in data:
        k = short(r[col["Kernel Name"]])
        t = float(r[col["gpu__time_duration.sum"]].replace(",", "")) * t_scale
        b = float(r[col["dram__bytes_read.sum"]].replace(",", "")) * b_scale
        a = agg[k]
        a[0] += 1
        a[1] += t
        a[2] += b
        a[3] = r[col["launch__grid_size"]]
        a[4] = r[col["launch__registers_per_thread"]]
        total += t
    print(f"{len(data)} kernels, {total:.1f} us in all (each alone)")
    print("| kernel | launches | us | us each | MB read | GB/s | grid | regs |")
    print("|---|---|---|---|---|---|---|---|")
    for k, (n, t, b, g, regs) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        print(f"| {k} | {n} | {t:.1f} | {t / n:.2f} | {b / 1e6:.1f} | {b / t / 1e3 if t else 0:.0f} | {g} | {regs} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("model")
    r.add_argument("--depth", type=int, default=0)
    s = sub.add_parser("summary")
    s.add_argument("csv")
    a = ap.parse_args()
    if a.cmd == "run":
        run(a.model, a.depth)
    else:
        summary(a.csv)


if __name__ == "__main__":
    sys.exit(main())
