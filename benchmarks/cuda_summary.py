"""Side-by-side table from benchmarks/device/side_by_side_call.sh output.

    python benchmarks/cuda_summary.py DIR [COPY_RATE_GB_S]

Reads DIR/llama-bench*.jsonl (llama-bench -o jsonl) and DIR/strata*.jsonl (cuda_bench.py) and
prints one markdown row per file and strata setting: pp512 and tg128 of each, medians of the
samples on both sides (llama-bench's avg_ts would let one cold sample of three weigh in),
strata / llama.cpp, and strata's decode bandwidth (weight bytes per token x tok/s) as GB/s
and as a share of the card's copy rate (default 2989 GB/s: the H100's device-to-device copy,
../shared/ANCHORS.md). A depth run's lines (cuda_bench.py --tg-only --depth N: no pp512) are
marked "depth run" in the setting column: their tg128 is a second, separate sample from
empty. Where both sides measured decode after a context (llama-bench -d N, cuda_bench.py
--depth N), a second table gives tg128 at that depth.
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
    copy_rate = float(sys.argv[2]) if len(sys.argv) > 2 else 2989.0
    llama: dict[tuple[str, str], float] = {}
    for r in rows(os.path.join(d, "llama-bench*.jsonl")):
        test = "pp512" if r["n_prompt"] == 512 else "tg128"
        if test == "tg128" and r.get("n_depth", 0) > 0:
            test = f"tg128_d{r['n_depth']}"
        llama[(os.path.basename(r["model_filename"]), test)] = statistics.median(r["samples_ts"])
    print("| file | setting | pp512 strata | llama.cpp | ratio | tg128 strata | llama.cpp | ratio | strata GB/s "
          "| of copy rate |")
    print("|---|---|---|---|---|---|---|---|---|---|")
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
        setting = r.get("env", "") or "default"
        if r.get("pp512") is None and any(k.startswith("tg128_d") for k in r):
            setting += ", depth run"
        bw = f"{gbs:.0f} | {100 * gbs / copy_rate:.0f}%" if gbs else "- | -"
        print(f"| {name} | {setting} | " + " | ".join(cells) + f" | {bw} |")
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
