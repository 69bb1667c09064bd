#!/usr/bin/env bash
# ab_call.sh and a side by side with llama.cpp on the same files, in one call (for a session
# whose device time is short): llama-bench builds in the background (nice 19) while ab_call.sh
# builds strata, runs its tests and times its settings (files kept); then llama-bench and
# strata's default (and each SIDE_ENV setting) time pp512 / tg128 on those files.
# Written in session 12 for a call the device time did not allow: not yet run on the device.
#   run(command="SIDE_ENV=STRATA_CUDA_MV_EARLY=1 bash benchmarks/device/ab_side_call.sh '1b:F16 8b:F16' SETTING...",
#       carry=[".whl", ".carry/gguf-0.19.0-py3-none-any.whl", ".device"])
# Environment as ab_call.sh's (BASE_SRC, TEST_K, TEST_TIMEOUT, BENCH_ARGS); SIDE_FILES: the side
# by side on these of the files only. Results in $OUT: ab.jsonl, llama-bench.jsonl,
# strata.jsonl, and the table of benchmarks/cuda_summary.py on stdout.
set -u
FILES=${1:?SHAPE:TYPE list}
(NICE=19 bash benchmarks/device/build_llama_bench.sh $OUT/lcpp-build.log) & BG=$!
KEEP=1 bash benchmarks/device/ab_call.sh "$@"
wait $BG; tail -1 $OUT/lcpp-build.log
export PYTHONPATH=/tmp/site
F=""; for spec in ${SIDE_FILES:-$FILES}; do F="$F /tmp/${spec%%:*}-${spec#*:}.gguf"; done
for f in $F; do /tmp/lcpp/build/bin/llama-bench -m $f -ngl 99 -p 512 -n 128 -r 3 -o jsonl 2>>$OUT/llama-bench.err >> $OUT/llama-bench.jsonl; done
ENVS=(--env ""); [ -n "${SIDE_ENV:-}" ] && ENVS+=(--env "$SIDE_ENV")
python3 benchmarks/cuda_bench.py $F --repeats 3 "${ENVS[@]}" > $OUT/strata.jsonl 2>&1
python3 benchmarks/cuda_summary.py $OUT
