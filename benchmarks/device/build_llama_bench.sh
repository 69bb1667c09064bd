#!/usr/bin/env bash
# llama-bench with CUDA for sm_90 from .device/lcpp.tar.xz (make_lcpp_tarball.sh) into
# /tmp/lcpp/build/bin, ~340 s on 16 cores; a machine that has it already (an earlier call of
# the session) keeps it. Log: $1. side_by_side_call.sh runs it in the background; another call
# can run it the same way (NICE=19: below the timings it shares the machine with) so that a
# later side_by_side_call.sh on the warm machine finds llama-bench built.
set -u
LOG=${1:?log file}
if [ -x /tmp/lcpp/build/bin/llama-bench ]; then echo "llama-bench reused" > "$LOG"; exit 0; fi
rm -rf /tmp/lcpp && tar xJf .device/lcpp.tar.xz -C /tmp && cd /tmp/lcpp &&
  nice -n "${NICE:-0}" cmake -S . -B build -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_CURL=OFF \
   -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
   -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF > "$LOG" 2>&1 &&
  nice -n "${NICE:-0}" ninja -C build -j10 llama-bench >> "$LOG" 2>&1
rc=$?; echo "lcpp rc=$rc" >> "$LOG"; exit $rc
