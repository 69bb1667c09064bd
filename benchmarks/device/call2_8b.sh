#!/usr/bin/env bash
# Right after call1 on the same warm machine (it reuses /tmp/site, /tmp/lcpp, /tmp/models).
# device call 2 (same warm machine): 8B side by side, cuBLAS as A/B on two files
set -u
export PATH=$PATH:/usr/local/cuda/bin PYTHONPATH=/tmp/site
t0=$(date +%s)
bash benchmarks/device_llama_vs_strata.sh $OUT/r 8b > $OUT/r8.log 2>&1
echo "bench 8b $(( $(date +%s) - t0 )) s"
python3 benchmarks/cuda_bench.py /tmp/models/8b-f16.gguf /tmp/models/8b-Q4_K_M.gguf --env STRATA_CUDA_GEMM=cublas --repeats 3 > $OUT/r/strata-8b-cublas.jsonl 2>&1
echo "cublas A/B $(( $(date +%s) - t0 )) s"
python3 benchmarks/cuda_summary.py $OUT/r
