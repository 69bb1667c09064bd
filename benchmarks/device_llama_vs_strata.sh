#!/usr/bin/env bash
# On the lent GPU machine: random-weight Llama files (F16 -> Q8_0, Q4_0, Q4_K_M) of the given
# shapes, then llama-bench (-ngl 99 -p 512 -n 128) and strata (benchmarks/cuda_bench.py) on
# each, side by side. Expects llama.cpp built in $LCPP/build (see benchmarks/cuda_notes.md)
# and strata importable. Usage: benchmarks/device_llama_vs_strata.sh OUTDIR 1b [8b]
set -uo pipefail
OUT=${1:?outdir}; shift
LCPP=${LCPP:-/tmp/lcpp}
M=/tmp/models; mkdir -p "$M" "$OUT"
for shape in "$@"; do
  f16=$M/$shape-f16.gguf
  [ -f "$f16" ] || python3 benchmarks/make_random_llama.py "$f16" --shape "$shape" --torch-cuda
  files="$f16"
  for q in Q8_0 Q4_0 Q4_K_M; do
    out=$M/$shape-$q.gguf
    [ -f "$out" ] || "$LCPP/build/bin/llama-quantize" "$f16" "$out" "$q" 16 > "$OUT/quantize-$shape-$q.log" 2>&1
    files="$files $out"
  done
  for f in $files; do
    "$LCPP/build/bin/llama-bench" -m "$f" -ngl 99 -p 512 -n 128 -r 3 -o jsonl 2>>"$OUT/llama-bench.err" | tee -a "$OUT/llama-bench.jsonl"
    python3 benchmarks/cuda_bench.py "$f" --repeats 3 | tee -a "$OUT/strata.jsonl"
  done
done
