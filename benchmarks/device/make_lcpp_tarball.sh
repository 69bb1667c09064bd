#!/usr/bin/env bash
# llama.cpp for the lent GPU machine (which cannot fetch anything): the llama-cpp-python
# 0.3.36 sdist's vendored llama.cpp, trimmed to what llama-bench and llama-quantize build from
# (~22 MB, 2.3 MB as .tar.xz), written to .device/lcpp.tar.xz (git-ignored; carry it), with
# the gguf wheel beside it; and strata's build requirements as wheels in .whl (the device
# image of 2026-12-06 could not import scikit_build_core.build; side_by_side_call.sh puts
# them on PYTHONPATH for the build).
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
pip download -q llama-cpp-python==0.3.36 --no-deps --no-binary=llama-cpp-python --no-build-isolation -d "$tmp"
tar xzf "$tmp"/llama_cpp_python-0.3.36.tar.gz -C "$tmp"
S=$tmp/llama_cpp_python-0.3.36/vendor/llama.cpp
mkdir -p "$tmp/lcpp/tools"
cp -r "$S"/CMakeLists.txt "$S"/cmake "$S"/ggml "$S"/src "$S"/include "$S"/common "$S"/vendor "$tmp/lcpp/"
cp -r "$S"/tools/llama-bench "$S"/tools/quantize "$tmp/lcpp/tools/"
cat > "$tmp/lcpp/tools/CMakeLists.txt" <<'CM'
# trimmed for the strata device benchmark: llama-bench and llama-quantize only
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(llama-bench)
add_subdirectory(quantize)
CM
(cd "$tmp/lcpp/ggml/src" && rm -rf ggml-vulkan ggml-sycl ggml-metal ggml-opencl ggml-webgpu ggml-cann \
  ggml-hexagon ggml-musa ggml-zdnn ggml-zendnn ggml-openvino ggml-virtgpu ggml-et)
mkdir -p .device
tar cJf .device/lcpp.tar.xz -C "$tmp" lcpp
pip download -q gguf==0.19.0 --no-deps -d .device
mkdir -p .whl
pip download -q --no-deps --only-binary=:all: -d .whl scikit-build-core pathspec packaging nanobind
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo /.device/ >> .git/info/exclude
rm -rf "$tmp"
ls -la .device
