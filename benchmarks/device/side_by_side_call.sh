#!/usr/bin/env bash
# One device call: strata and llama.cpp side by side on random-weight Llama files of one shape.
#   run(command="bash benchmarks/device/side_by_side_call.sh 1b", carry=[".device", ".whl"])
# SHAPE is 1b or 8b; TESTS=0 skips tests/test_cuda.py; REUSE_BUILD=1 keeps the strata an earlier
# run built on the same machine; QUICK=1 times strata's defaults only (not also the session-4
# paths) and skips the sampled top-k A/B; DEPTH=n also times tg128 after n positions on both
# sides (llama-bench -p 0 -d n, cuda_bench.py --tg-only --depth n). .device: benchmarks/device/make_lcpp_tarball.sh.
# .whl: the scikit-build-core, pathspec, packaging and nanobind wheels (pip download --no-deps
# -d .whl ...): the device image of 2026-12-06 could not import scikit_build_core.build.
# llama.cpp builds in the background (~340 s on 16 cores) while strata builds, the tests run and
# the quantized files are written (benchmarks/cuda_bench.py --write-random: the layout of
# llama-quantize's, Q4_K_M's Q6_K tensors included); then llama-bench and strata take the GPU
# one after the other. Results come back as one tarball (the files $OUT returns are few).
# Session 5's run (benchmarks/results/cuda-h100-2026-12-06-s5) was this with SHAPE=1b, the
# files quantized by llama-quantize, and the then opt-in defaults named as a strata setting.
set -u
SHAPE=${1:?1b or 8b}; TESTS=${TESTS:-1}; QUICK=${QUICK:-0}
export PATH=$PATH:/usr/local/cuda/bin PYTHONUNBUFFERED=1
t0=$(date +%s); el() { echo "$1 $(( $(date +%s) - t0 )) s"; }
M=/tmp/models; R=$OUT/r; mkdir -p $M $R
rm -f /tmp/lcpp.built /tmp/files.done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/bsite .whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .device/gguf-0.19.0-py3-none-any.whl
# A warm machine that already built llama-bench (an earlier call of this session) reuses it.
( bash benchmarks/device/build_llama_bench.sh $R/lcpp-build.log; touch /tmp/lcpp.built ) &
( export PYTHONPATH=/tmp/site
  python3 benchmarks/make_random_llama.py $M/$SHAPE-f16.gguf --shape $SHAPE --torch-cuda > $R/models.log 2>&1
  for q in Q8_0 Q4_0 Q4_K_M; do python3 benchmarks/cuda_bench.py $M/$SHAPE-$q.gguf --write-random $SHAPE:$q >> $R/models.log 2>&1 & done
  wait; touch /tmp/files.done ) &
# REUSE_BUILD=1: a warm machine's strata from an earlier run of this script in the same call.
if [ "${REUSE_BUILD:-0}" = 1 ] && PYTHONPATH=/tmp/site python3 -c "import strata" 2>/dev/null; then
  el "strata build reused"
else
  PYTHONPATH=/tmp/bsite CMAKE_BUILD_PARALLEL_LEVEL=6 python3 -m pip install -q --no-build-isolation --no-deps --upgrade --target /tmp/site . > $R/strata-build.log 2>&1
  el "strata build rc=$?"; tail -3 $R/strata-build.log
fi
export PYTHONPATH=/tmp/site
python3 -c "import strata, os; print(strata.available_backends(), os.environ.get('STRATA_CUBLAS'))"
if [ "$TESTS" = 1 ]; then
  timeout 170 python3 -m pytest -q --maxfail=12 -p no:cacheprovider tests/test_cuda.py tests/test_gemma3_random.py tests/test_architectures.py -k "not smollm2" -s > $R/test_cuda.log 2>&1
  el "tests rc=$?"; grep -E "passed|failed" $R/test_cuda.log | tail -2; grep -E "^FAILED|^E " $R/test_cuda.log | head -24
fi
while [ ! -f /tmp/lcpp.built ] || [ ! -f /tmp/files.done ]; do sleep 1; done
el "llama.cpp built, files written"; tail -1 $R/lcpp-build.log
F="$M/$SHAPE-f16.gguf $M/$SHAPE-Q8_0.gguf $M/$SHAPE-Q4_0.gguf $M/$SHAPE-Q4_K_M.gguf"
for f in $F; do /tmp/lcpp/build/bin/llama-bench -m $f -ngl 99 -p 512 -n 128 -r 3 -o jsonl 2>>$R/llama-bench.err >> $R/llama-bench-$SHAPE.jsonl; done
el "llama-bench"
cp $R/llama-bench-$SHAPE.jsonl $OUT/  # also outside the tarball: back even if the call is cut short
OLD_PATHS=(--env STRATA_CUDA_GEMM=mma,STRATA_CUDA_PDL=0,STRATA_CUDA_DEVICE_ARGMAX=0)
[ "$QUICK" = 1 ] && OLD_PATHS=()
python3 benchmarks/cuda_bench.py $F --repeats 3 --env "" "${OLD_PATHS[@]}" > $R/strata-$SHAPE.jsonl 2>&1
el "strata"; cp $R/strata-$SHAPE.jsonl $OUT/
if [ "$QUICK" != 1 ]; then
python3 benchmarks/cuda_bench.py $M/$SHAPE-Q4_0.gguf --tg-only --sampled --repeats 3 --env "" --env STRATA_CUDA_DEVICE_TOPK=1 > $R/topk-ab-$SHAPE.jsonl 2>&1
python3 -c "
import json, sys
for l in open(sys.argv[1]):
    if l.startswith('{'):
        r = json.loads(l); print('top-k A/B', r.get('env') or 'default', r.get('tg128'), r.get('tg128_sampled'), r.get('error', '')[-300:])
" $R/topk-ab-$SHAPE.jsonl
el "top-k A/B"
fi
if [ -n "${DEPTH:-}" ]; then
  for f in $F; do /tmp/lcpp/build/bin/llama-bench -m $f -ngl 99 -p 0 -n 128 -d $DEPTH -r 3 -o jsonl 2>>$R/llama-bench.err >> $R/llama-bench-$SHAPE-d$DEPTH.jsonl; done
  cp $R/llama-bench-$SHAPE-d$DEPTH.jsonl $OUT/; el "llama-bench depth $DEPTH"
  python3 benchmarks/cuda_bench.py $F --tg-only --repeats 3 --depth $DEPTH --env "" > $R/strata-$SHAPE-d$DEPTH.jsonl 2>&1
  cp $R/strata-$SHAPE-d$DEPTH.jsonl $OUT/; el "strata depth $DEPTH"
fi
python3 benchmarks/cuda_summary.py $R
tar czf $OUT/r-$SHAPE.tar.gz -C $OUT r && rm -rf $R
