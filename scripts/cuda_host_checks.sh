#!/usr/bin/env bash
# The CUDA kernels' host checks (no GPU needed; docs/cuda.md "What is verified where"): the
# device code of quant.cuh, matvec_wide.cuh and attention_mma.cuh compiled as host C++ under
# the sanitizers and checked against float64. Needs g++ and the CUDA headers (cuda_fp16.h).
set -euo pipefail
cd "$(dirname "$0")/.."
inc=""
for d in "${CUDA_HOME:-/usr/local/cuda}/include" "$(dirname "$(command -v nvcc || echo /x/x)")/../include"; do
  if [ -f "$d/cuda_fp16.h" ]; then inc=$d; break; fi
done
if [ -z "$inc" ]; then
  echo "cuda_host_checks: SKIPPED, no CUDA headers (cuda_fp16.h) found" >&2
  exit 0
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
san="-fsanitize=address,alignment,undefined -fno-sanitize-recover=all"
g++ -std=c++20 -O1 $san -I"$inc" csrc/backends/cuda/tools/quant_host_check.cpp csrc/core/dtype.cpp -o "$out/quant"
"$out/quant" | tail -1
g++ -std=c++20 -O1 $san -I"$inc" csrc/backends/cuda/tools/wide_host_check.cpp csrc/core/dtype.cpp -o "$out/wide"
"$out/wide" | tail -1
g++ -std=c++20 -O1 -pthread $san -I"$inc" -Icsrc csrc/backends/cuda/tools/attention_mma_host_check.cpp -o "$out/attn"
"$out/attn" | tail -1
