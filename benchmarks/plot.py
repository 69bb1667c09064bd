"""Draw docs/benchmarks.png from the benchmark JSON: strata / llama.cpp speed ratio per
model and test (CPU, benchmarks/bench_cpu.py) and per file (CUDA, benchmarks/cuda_bench.py
beside llama-bench).

    python benchmarks/plot.py [--cpu benchmarks/results/cpu-types-t2.json]
                              [--cuda benchmarks/results/cuda-h100-2026-11-22] [--out docs/benchmarks.png]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def cpu_ratios(path: str) -> list[tuple[str, str, float]]:
    d = json.load(open(path))
    rows = []
    for m in d["models"]:
        name = os.path.basename(m["file"]["path"] if isinstance(m["file"], dict) and "path" in m["file"]
                                else str(m["file"])).replace(".gguf", "")
        for test, r in m["tests"].items():
            if r.get("ratio"):
                rows.append((name, test, float(r["ratio"])))
    return rows


def cuda_ratios(folder: str) -> list[tuple[str, str, float]]:
    rows = []
    for shape in ("1b", "8b"):
        llama, strata = {}, {}
        for line in open(os.path.join(folder, f"llama-bench-{shape}.jsonl")):
            if line.strip():
                r = json.loads(line)
                # the median of the samples, as strata's side (avg_ts lets one cold sample weigh in)
                llama.setdefault(r["model_filename"], {})["pp512" if r["n_prompt"] == 512 else "tg128"] = (
                    statistics.median(r["samples_ts"]))
        for line in open(os.path.join(folder, f"strata-{shape}.jsonl")):
            if line.strip():
                r = json.loads(line)
                strata[r["model"]] = r
        for f, s in strata.items():
            name = os.path.basename(f).replace(".gguf", "")
            for t in ("pp512", "tg128"):
                rows.append((name, t, s[t] / llama[f][t]))
    return rows


def panel(ax, rows, title):
    labels = [f"{n} {t}" for n, t, _ in rows]
    vals = [v for _, _, v in rows]
    colors = ["tab:green" if v >= 1 else "tab:red" for v in vals]
    ax.barh(range(len(rows)), vals, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("strata / llama.cpp (tokens/s; > 1 = strata faster)")
    ax.set_title(title, fontsize=9)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu", default="benchmarks/results/cpu-types-t2.json")
    ap.add_argument("--cuda", default="benchmarks/results/cuda-h100-2026-11-22")
    ap.add_argument("--out", default="docs/benchmarks.png")
    a = ap.parse_args()
    cpu, cuda = cpu_ratios(a.cpu), cuda_ratios(a.cuda)
    fig, axes = plt.subplots(1, 2, figsize=(12, max(4, 0.22 * max(len(cpu), len(cuda)))))
    panel(axes[0], cpu, "CPU, 2 threads, AMD EPYC (noisy shared machine)")
    panel(axes[1], cuda, "CUDA, H100, random-weight Llama 1B / 8B")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(a.out)


if __name__ == "__main__":
    main()
