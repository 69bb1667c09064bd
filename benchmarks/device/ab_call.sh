#!/usr/bin/env bash
# One short device call without llama.cpp: build strata, run its CUDA tests, then time the
# default against other settings on random-weight Llama files (fresh process per setting):
#   run(command="bash benchmarks/device/ab_call.sh '1b:F16 8b:F16' STRATA_CUDA_ATTN=mma",
#       carry=[".whl", ".carry/gguf-0.19.0-py3-none-any.whl"])
# SHAPE:TYPE with TYPE F16 (written with torch on the GPU) or Q8_0 / Q4_0 / Q4_K_M
# (cuda_bench.py --write-random). .whl and the gguf wheel: see side_by_side_call.sh and
# model_tests_chain.sh. Prints pp512 / tg128 medians; the raw lines go to $OUT/ab.jsonl.
# DEPTH=n: also tg128 after n tokens of context (decode attention over a long cache).
# TEST_K: the tests' -k expression (default "not smollm2"); TEST_TIMEOUT: their limit (150 s).
# BENCH_ARGS: more cuda_bench.py arguments (e.g. --tg-only: no pp512). KEEP=1: the files stay
# in /tmp (SHAPE-TYPE.gguf) for a later command of the same call (ncu_decode.py).
# BASE_SRC=file.tar.gz: another strata source (`git archive -o .carry/base.tar.gz REV`, carried)
# built beside this one into /tmp/site-base: the setting PYTHONPATH=/tmp/site-base:/tmp/site
# times it in the same call (a change of code, not of settings, against its base).
set -u
FILES=${1:?SHAPE:TYPE list}; shift
export PATH=$PATH:/usr/local/cuda/bin PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/bsite .whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/gguf-*.whl
if [ -n "${BASE_SRC:-}" ]; then
    rm -rf /tmp/base-src /tmp/site-base && mkdir -p /tmp/base-src && tar xzf "$BASE_SRC" -C /tmp/base-src
    ( PYTHONPATH=/tmp/bsite CMAKE_BUILD_PARALLEL_LEVEL=6 python3 -m pip install -q --no-build-isolation --no-deps \
        --target /tmp/site-base /tmp/base-src > $OUT/base-build.log 2>&1; echo "base build rc=$?" ) &
fi
PYTHONPATH=/tmp/bsite CMAKE_BUILD_PARALLEL_LEVEL=10 python3 -m pip install -q --no-build-isolation --no-deps \
    --upgrade --target /tmp/site . > $OUT/strata-build.log 2>&1 || { tail -40 $OUT/strata-build.log; exit 1; }
wait
export PYTHONPATH=/tmp/site
timeout ${TEST_TIMEOUT:-150} python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_cuda.py \
    tests/test_gemma3_random.py -k "${TEST_K:-not smollm2}" > $OUT/tests.log 2>&1
echo "tests rc=$?"; grep -E "passed|failed" $OUT/tests.log | tail -1; grep -E "^FAILED|^ERROR" $OUT/tests.log | head -20
ENVS=(--env "")
for e in "$@"; do ENVS+=(--env "$e"); done
for spec in $FILES; do
    shape=${spec%%:*}; type=${spec#*:}; f=/tmp/$shape-$type.gguf
    if [ "$type" = F16 ]; then
        python3 benchmarks/make_random_llama.py $f --shape $shape --torch-cuda > /dev/null 2>&1
    else
        python3 benchmarks/cuda_bench.py $f --write-random $shape:$type > /dev/null 2>&1
    fi
    python3 benchmarks/cuda_bench.py $f --repeats 3 --depth ${DEPTH:-0} ${BENCH_ARGS:-} "${ENVS[@]}" | tee -a $OUT/ab.jsonl | python3 -c "
import json, statistics, sys
for line in sys.stdin:
    r = json.loads(line)
    d = {k: round(v, 1) for k, v in r.items() if k.startswith('tg128_d') and not k.endswith('_all')}
    print('$spec', r.get('env') or 'default', 'pp512', r.get('pp512') and round(r['pp512']),
          'tg128', r.get('tg128') and round(r['tg128'], 1), d or '', r.get('error', '')[-300:])"
    [ "${KEEP:-0}" = 1 ] || rm -f $f
done
