#!/usr/bin/env bash
# Carry [".device"] (benchmarks/device/make_lcpp_tarball.sh writes it); run from the repo root.
# device call 1: llama.cpp build (background), strata build, CUDA tests, 1B side by side
set -u
export PATH=$PATH:/usr/local/cuda/bin
R=$(pwd)
rm -f /tmp/lcpp.done /tmp/models1b.done
( rm -rf /tmp/lcpp && tar xJf .device/lcpp.tar.xz -C /tmp && cd /tmp/lcpp && \
  cmake -S . -B build -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_CURL=OFF \
   -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
   -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF > $OUT/lcpp-build.log 2>&1 && \
  ninja -C build -j11 llama-bench llama-quantize >> $OUT/lcpp-build.log 2>&1; echo "lcpp rc=$?" >> $OUT/lcpp-build.log; touch /tmp/lcpp.done ) &
t0=$(date +%s)
pip install -q --no-deps --target /tmp/site .device/gguf-0.19.0-py3-none-any.whl > /dev/null 2>&1
CMAKE_BUILD_PARALLEL_LEVEL=5 pip install -q --no-build-isolation --no-deps --target /tmp/site . > $OUT/strata-build.log 2>&1
echo "strata build rc=$? $(( $(date +%s) - t0 )) s"
export PYTHONPATH=/tmp/site
python3 -c "import strata, os; print(strata.available_backends(), os.environ.get('STRATA_CUBLAS'))"
mkdir -p /tmp/models
( python3 benchmarks/make_random_llama.py /tmp/models/1b-f16.gguf --shape 1b --torch-cuda > $OUT/models.log 2>&1; touch /tmp/models1b.done ) &
timeout 250 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda.py -k "not smollm2" -s > $OUT/test_cuda.log 2>&1
echo "tests rc=$? $(( $(date +%s) - t0 )) s"; tail -3 $OUT/test_cuda.log; grep -m2 "cublas:" $OUT/test_cuda.log
while [ ! -f /tmp/lcpp.done ] || [ ! -f /tmp/models1b.done ]; do sleep 2; done
echo "lcpp+models $(( $(date +%s) - t0 )) s"; tail -2 $OUT/lcpp-build.log
bash benchmarks/device_llama_vs_strata.sh $OUT/r 1b > $OUT/r1.log 2>&1
echo "bench 1b $(( $(date +%s) - t0 )) s"
python3 benchmarks/cuda_bench.py /tmp/models/1b-f16.gguf /tmp/models/1b-Q4_K_M.gguf --env STRATA_CUDA_GEMM=cublas --repeats 3 > $OUT/r/strata-1b-cublas.jsonl 2>&1
python3 benchmarks/cuda_bench.py /tmp/models/1b-Q4_0.gguf /tmp/models/1b-Q8_0.gguf --tg-only --env STRATA_CUDA_PDL=1 --env STRATA_CUDA_DEVICE_ARGMAX=1 --env STRATA_CUDA_PDL=1,STRATA_CUDA_DEVICE_ARGMAX=1 --repeats 3 > $OUT/r/strata-1b-ab.jsonl 2>&1
echo "opt-in A/B $(( $(date +%s) - t0 )) s"
python3 benchmarks/cuda_summary.py $OUT/r
