#!/usr/bin/env bash
# strata's AVX2 kernels against llama.cpp built for AVX2 only, side by side on this machine
# (for CPUs without AVX-512; on this one both would otherwise take their AVX-512 paths):
#   bash benchmarks/bench_cpu_avx2.sh OUT_DIR FILE.gguf...
#   NATIVE=1 bash benchmarks/bench_cpu_avx2.sh OUT_DIR FILE.gguf...
# llama.cpp: llama-cpp-python 0.3.36's vendored source (.device/lcpp.tar.xz, made by
# benchmarks/device/make_lcpp_tarball.sh) built with GGML_NATIVE=OFF, AVX2 / FMA / F16C on,
# AVX-512 and AVX-VNNI off, then `llama-bench -t 2 -p 512 -n 128 -r 3 -o jsonl`. strata:
# `cuda_bench.py FILES --backend cpu --env STRATA_CPU_ISA=avx2` (2 threads, pp512 in one step,
# tg128 greedy). One after the other, never at once; medians of 3 on both sides
# (cuda_summary.py prints the table).
# DEPTH=n: also tg128 after n tokens of context on both sides (llama-bench -p 0 -n 128 -d n,
# cuda_bench.py --depth n).
# NATIVE=1: both on this CPU's best kernels instead (llama.cpp GGML_NATIVE=ON without AMX,
# whose path crashes in these sandboxes (.ci/run); strata's automatic choice).
set -euo pipefail
OUT=${1:?out dir}; shift
mkdir -p "$OUT"
B=${LCPP_AVX2:-/tmp/lcpp-avx2}
if [ "${NATIVE:-0}" = 1 ]; then
    BUILD=$B/lcpp/build-native TAG=native STRATA_ENV=()
    if [ ! -x "$BUILD/bin/llama-bench" ]; then
        [ -d "$B/lcpp" ] || { mkdir -p "$B" && tar xJf .device/lcpp.tar.xz -C "$B"; }
        NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
        cmake -S "$B/lcpp" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF \
            -DCMAKE_C_FLAGS="$NO_AMX" -DCMAKE_CXX_FLAGS="$NO_AMX" -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
            -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF \
            > "$OUT/lcpp-build.log"
        cmake --build "$BUILD" -j2 --target llama-bench >> "$OUT/lcpp-build.log"
    fi
else
    BUILD=$B/lcpp/build TAG=avx2 STRATA_ENV=(--env STRATA_CPU_ISA=avx2)
    if [ ! -x "$BUILD/bin/llama-bench" ]; then
        rm -rf "$B" && mkdir -p "$B" && tar xJf .device/lcpp.tar.xz -C "$B"
        cmake -S "$B/lcpp" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
            -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_CUDA=OFF \
            -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
            -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF > "$OUT/lcpp-build.log"
        cmake --build "$BUILD" -j2 --target llama-bench >> "$OUT/lcpp-build.log"
    fi
fi
for f in "$@"; do
    "$BUILD/bin/llama-bench" -m "$f" -t 2 -p 512 -n 128 -r 3 -o jsonl >> "$OUT/llama-bench-$TAG.jsonl" 2>> "$OUT/llama-bench.err"
    if [ "${DEPTH:-0}" -gt 0 ]; then
        "$BUILD/bin/llama-bench" -m "$f" -t 2 -p 0 -n 128 -d "$DEPTH" -r 3 -o jsonl >> "$OUT/llama-bench-$TAG.jsonl" 2>> "$OUT/llama-bench.err"
    fi
done
python3 benchmarks/cuda_bench.py "$@" --backend cpu --repeats 3 --depth "${DEPTH:-0}" "${STRATA_ENV[@]}" > "$OUT/strata-$TAG.jsonl"
python3 benchmarks/cuda_summary.py "$OUT"
