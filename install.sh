#!/usr/bin/env bash
# Install dragoman into ./.venv with an embedded engine that runs on any x86-64 CPU with AVX2
# (AMX machines included) and on arm64.
#
#   ./install.sh            the service
#   ./install.sh --test     the service, plus what the tests and benchmarks need
#
# llama-cpp-python is published on PyPI as source only and compiles llama.cpp on install. Left
# to itself it builds for the CPU it is built on (GGML_NATIVE): on a CPU that advertises AMX
# that build carries AMX tile instructions that fault at the first token, and a wheel built
# on one machine does not run on an older one. So it is built here once with an explicit,
# portable instruction set, kept in a wheel directory named after that instruction set, and
# checked (no AMX tile and no AVX-512 instructions) before it is installed. pip's own wheel
# cache is bypassed for that build: it would hand back an earlier native build of the same
# version whatever CMAKE_ARGS says.
set -euo pipefail
cd "$(dirname "$0")"

target="."
# The tests run against the working tree itself (an editable install).
if [ "${1:-}" = "--test" ]; then target="-e .[test,bench]"; fi

python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv

version="$(sed -n 's/^llama_cpp_python==//p' constraints.txt)"
case "$(uname -m)" in
  x86_64 | amd64)
    # Haswell-level x86-64 (AVX2, FMA, F16C, BMI2): every x86-64 server CPU since 2013.
    cmake_args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
    ;;
  aarch64 | arm64)
    # Baseline ARMv8 with NEON: every arm64 server and Raspberry Pi 4/5.
    cmake_args="-DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8-a"
    ;;
  *)
    cmake_args="-DGGML_NATIVE=OFF"
    ;;
esac
cmake_args="$cmake_args -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"

flags_id="$(printf '%s' "$version $cmake_args" | sha256sum | cut -c1-12)"
wheels="${DRAGOMAN_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dragoman/wheels}/llama-cpp-python-$version-$(uname -m)-$flags_id"
wheel="$(ls "$wheels"/llama_cpp_python-"$version"-*.whl 2>/dev/null | head -n1 || true)"
if [ -z "$wheel" ]; then
  echo "install.sh: building llama-cpp-python $version for a portable $(uname -m) CPU (a few minutes, once)" >&2
  mkdir -p "$wheels"
  CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
    .venv/bin/pip wheel --quiet --no-cache-dir --no-deps --no-binary llama-cpp-python \
    -w "$wheels" "llama-cpp-python==$version"
  wheel="$(ls "$wheels"/llama_cpp_python-"$version"-*.whl | head -n1)"
fi

.venv/bin/pip install --quiet --force-reinstall --no-deps "$wheel"
# shellcheck disable=SC2086  # $target is one or two words on purpose
.venv/bin/pip install --quiet -c constraints.txt $target
# The installed engine library must not carry instructions that some CPUs fault on.
.venv/bin/python -m dragoman.engine.native_check
# The embedded model with the vocabulary of the languages it translates, built from the shipped
# model file (nothing downloaded) into the user's cache, and checked against it.
.venv/bin/python -m dragoman.engine.vocabulary --check

# `dragoman` is in .venv/bin: activating the environment puts it on the PATH of a terminal.
cat >&2 <<'EOF'
install.sh: dragoman is installed in .venv/. To type `dragoman` in a terminal, first run there:
    . .venv/bin/activate        (fish: . .venv/bin/activate.fish; or call .venv/bin/dragoman)
EOF
