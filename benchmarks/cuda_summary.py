"""Side-by-side table from benchmarks/device_llama_vs_strata.sh output.

    python benchmarks/cuda_summary.py DIR

Reads DIR/llama-bench*.jsonl (llama-bench -o jsonl) and DIR/strata*.jsonl (cuda_bench.py) and
prints one markdown row per file and strata setting: pp512 and tg128 of each, medians of the
samples on both sides (llama-bench's avg_ts would let one cold sample of three weigh in),
and strata / llama.cpp. Where both sides measured decode after a context (llama-bench -d N,
cuda_bench.py --depth N), a second table gives tg128 at that depth.
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import sys


def rows(pattern: str) -> list[dict]:
    out = []
    for path in sorted(glob.glob(pattern)):
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                out.append(json.loads(line))
    return out


def main() -> None:
    d = sys.argv[1]
    llama: dict[tuple[str, str], float] = {}
    for r in rows(os.path.join(d, "llama-bench*.jsonl")):
        test = "pp512" if r["n_prompt"] == 512 else "tg128"
        if test == "tg128" and r.get("n_depth", 0) > 0:
            test = f"tg128_d{r['n_depth']}"
        llama[(os.path.basename(r["model_filename"]), test)] = statistics.median(r["samples_ts"])
    print("| file | setting | pp512 strata | llama.cpp | ratio | tg128 strata | llama.cpp | ratio | strata GB/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows(os.path.join(d, "strata*.jsonl")):
        name = os.path.basename(r["model"])
        if "error" in r:
            print(f"| {name} | {r.get('env', '')} | error: {r['error'][-200:]} |")
            continue
        cells = []
        for test in ("pp512", "tg128"):
            s, l = r.get(test), llama.get((name, test))
            ratio = f"{s / l:.2f}" if s and l else "-"
            cells += [f"{s:.0f}" if s else "-", f"{l:.0f}" if l else "-", ratio]
        gbs = r.get("tg_bandwidth_gb_s")
        print(f"| {name} | {r.get('env', '') or 'default'} | " + " | ".join(cells) + f" | {gbs:.0f} |")
    depth_rows = []
    for r in rows(os.path.join(d, "strata*.jsonl")):
        name = os.path.basename(r["model"])
        for test in sorted(k for k in r if k.startswith("tg128_d") and not k.endswith("_all")):
            s, l = r[test], llama.get((name, test))
            ratio = f"{s / l:.2f}" if s and l else "-"
            depth_rows.append(f"| {name} | {r.get('env', '') or 'default'} | {test[7:]} | {s:.1f} | "
                              f"{f'{l:.1f}' if l else '-'} | {ratio} |")
    if depth_rows:
        print("\n| file | setting | context | tg128 strata | llama.cpp | ratio |")
        print("|---|---|---|---|---|---|")
        print("\n".join(depth_rows))


if __name__ == "__main__":
    main()
