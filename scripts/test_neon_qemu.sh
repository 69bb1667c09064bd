#!/usr/bin/env bash
# The CPU kernel self-test (csrc/tests/kernel_selftest.cpp) on arm64 and natively.
#
# arm64: built with Debian's cross compiler (g++-aarch64-linux-gnu) and run under qemu-user
# twice: on a CPU with the 8-bit dot product (-cpu max: tables neon + scalar) and on one
# without (-cpu cortex-a53: scalar only, the fallback neon must not be selected on). Both
# are compared with a third build of the same kernels, the scalar code alone (ref).
# Native: every table this machine runs (x86-64: scalar, avx2, avx512 as the CPU allows).
# The ISA builds and their flags are read from CMakeLists.txt (strata_cpu_isa lines).
# Installs the Debian packages (apt-get) if missing. Exits non-zero on any failure.
#
# Usage: scripts/test_neon_qemu.sh        (JOBS=n for parallel compiles; build/selftest/)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${STRATA_SELFTEST_DIR:-$ROOT/build/selftest}
JOBS=${JOBS:-$(nproc)}
SYSROOT=/usr/aarch64-linux-gnu
start=$SECONDS

# ---- packages ------------------------------------------------------------------------
QEMU=$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)
if ! command -v aarch64-linux-gnu-g++ >/dev/null || [ -z "$QEMU" ]; then
  SUDO=()
  [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  echo "== installing g++-aarch64-linux-gnu and qemu-user (apt-get)"
  "${SUDO[@]}" apt-get update -qq
  apt_install() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; }
  apt_install g++-aarch64-linux-gnu
  [ -n "$QEMU" ] || apt_install qemu-user || apt_install qemu-user-static
  QEMU=$(command -v qemu-aarch64 || command -v qemu-aarch64-static)
fi
echo "== tools ready after $((SECONDS - start)) s"

# ---- build ---------------------------------------------------------------------------
# "name flags..." for each strata_cpu_isa(...) line of CMakeLists.txt's x86 or arm block.
cmake_isas() {
  awk -v want="$1" '
    /^if\(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64/ { blk = "x86"; next }
    /^elseif\(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64/ { blk = "arm"; next }
    /^(else|endif)\(\)/ { blk = "" }
    blk == want && /strata_cpu_isa\(/ {
      sub(/#.*/, ""); sub(/^[ \t]*strata_cpu_isa\(/, ""); sub(/\)[ \t]*$/, ""); print
    }' CMakeLists.txt
}

# build_selftest CXX DIR "name flags..."...: the kernels once per ISA, the test, linked.
build_selftest() {
  local cxx=$1 dir=$2
  shift 2
  local common="-std=gnu++20 -O3 -DNDEBUG -Wall -Wextra -Wno-unused-parameter"
  local cmds=() objs=() defs="" spec name flags src obj
  mkdir -p "$dir"
  for spec in "$@"; do
    name=${spec%% *}
    flags=${spec#"$name"}
    mkdir -p "$dir/$name"
    defs+=" -DSTRATA_HAVE_ISA_$name"
    [ "$name" = ref ] && defs+=" -DSTRATA_SELFTEST_REF"
    for src in csrc/backends/cpu/kernels/*.cpp; do
      obj="$dir/$name/$(basename "$src" .cpp).o"
      objs+=("$obj")
      cmds+=("$cxx $common $flags -DSTRATA_ISA=$name '-DSTRATA_ISA_NAME=\"$name\"' -c $src -o $obj")
    done
  done
  for src in csrc/tests/kernel_selftest.cpp csrc/core/dtype.cpp csrc/backends/cpu/isa.cpp; do
    obj="$dir/$(basename "$src" .cpp).o"
    objs+=("$obj")
    cmds+=("$cxx $common $defs -c $src -o $obj")
  done
  printf '%s\n' "${cmds[@]}" | xargs -d '\n' -P "$JOBS" -I{} sh -c '{}'
  "$cxx" -o "$dir/kernel_selftest" "${objs[@]}"
}

status=0
run() {  # run LABEL CMD...: the self-test's table, and a failure noted, not fatal
  echo
  echo "== $1"
  shift
  "$@" || { status=1; echo "!! FAILED: $*"; }
}

mapfile -t ARM_ISAS < <(cmake_isas arm)
t0=$SECONDS
build_selftest aarch64-linux-gnu-g++ "$OUT/aarch64" "ref -DSTRATA_SCALAR_REFERENCE" "${ARM_ISAS[@]}"
echo "== aarch64 build ($(printf '%s; ' "${ARM_ISAS[@]}")+ ref): $((SECONDS - t0)) s"
t0=$SECONDS
run "qemu-aarch64 -cpu max (dotprod, fp16)" "$QEMU" -L "$SYSROOT" -cpu max "$OUT/aarch64/kernel_selftest" --expect neon,scalar
run "qemu-aarch64 -cpu cortex-a53 (no dotprod)" "$QEMU" -L "$SYSROOT" -cpu cortex-a53 "$OUT/aarch64/kernel_selftest" --expect scalar
echo "== qemu runs: $((SECONDS - t0)) s"

case "$(uname -m)" in
  x86_64 | amd64) mapfile -t HOST_ISAS < <(cmake_isas x86) ;;
  aarch64 | arm64)
    mapfile -t HOST_ISAS < <(cmake_isas arm)
    HOST_ISAS+=("ref -DSTRATA_SCALAR_REFERENCE")
    ;;
  *) HOST_ISAS=("scalar") ;;
esac
t0=$SECONDS
build_selftest "${CXX:-g++}" "$OUT/native" "${HOST_ISAS[@]}"
echo "== native build: $((SECONDS - t0)) s"
run "native ($(uname -m))" "$OUT/native/kernel_selftest"

echo
echo "== $([ $status -eq 0 ] && echo PASS || echo FAIL) in $((SECONDS - start)) s"
exit $status
