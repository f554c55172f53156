#!/usr/bin/env bash
# Builds llama.cpp on this machine (CPU only) from the source that the llama-cpp-python package
# vendors on PyPI, plus scripts/bench/llama_greedy.c against its libllama, for the side-by-side
# checks in gguf_parity.sh, and llama-server (when the version has one) for the serving load test.
# Prints the llama.cpp version it built.
#
#   scripts/bench/build_llama_cpp.sh
#
# Environment: MINICPM_BENCH_CACHE (default ~/.cache/minicpm-bench): where the source, a venv
# holding cmake/ninja when the machine has none, and the build go. JOBS (default 2).
# Idempotent: a finished build is reused; only llama_greedy is rebuilt when its source is newer,
# and a build made before llama-server was among the targets is reconfigured to add it.
# On success the last line of output is the build directory (its bin/ has the programs).
#
# llama-server with N parallel slots, as this version reads its flags: -np N; -c is the total KV
# context, split evenly across the slots (each gets c/N, rounded to a multiple of 256) unless -kvu
# (one pool shared by all, each slot up to c tokens); without -np it takes 4 slots sharing one
# pool; --kv-unified-per-slot L without -c sizes the context to N*L. Continuous batching is on by
# default (-cb / -nocb). -t (decode) and -tb (prompt) threads serve all slots together, one
# batched decode at a time; both default to every CPU. Prompts are cached per slot unless a
# request sends "cache_prompt": false.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${MINICPM_BENCH_CACHE:-$HOME/.cache/minicpm-bench}"
jobs="${JOBS:-2}"
mkdir -p "$cache"

# cmake: the machine's, or one from PyPI in a venv of our own.
if command -v cmake >/dev/null 2>&1; then
    cmake=cmake
else
    if [ ! -x "$cache/venv/bin/cmake" ]; then
        python3 -m venv "$cache/venv"
        "$cache/venv/bin/pip" install -q cmake ninja
    fi
    cmake="$cache/venv/bin/cmake"
    export PATH="$cache/venv/bin:$PATH"
fi

# The source: llama-cpp-python's sdist, which vendors a pinned llama.cpp.
src_dir="$(ls -d "$cache"/src/llama_cpp_python-*/vendor/llama.cpp 2>/dev/null | head -n1 || true)"
if [ -z "$src_dir" ]; then
    mkdir -p "$cache/sdist" "$cache/src"
    pip download -q --no-deps --no-binary llama-cpp-python -d "$cache/sdist" llama-cpp-python
    tarball="$(ls "$cache"/sdist/llama_cpp_python-*.tar.gz | head -n1)"
    tar -xzf "$tarball" -C "$cache/src"
    src_dir="$(ls -d "$cache"/src/llama_cpp_python-*/vendor/llama.cpp | head -n1)"
fi
build="$cache/build"

has_server=0
[ -f "$src_dir/tools/server/CMakeLists.txt" ] && has_server=1
if [ ! -f "$build/.built" ] || { [ "$has_server" = 1 ] && [ ! -x "$build/bin/llama-server" ]; }; then
    # The server's web UI is left out: its assets come from npm or a download, neither wanted here
    # (an empty asset table is embedded instead; the HTTP API is unaffected).
    "$cmake" -S "$src_dir" -B "$build" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_SERVER=$([ "$has_server" = 1 ] && echo ON || echo OFF) \
        -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        $(command -v ninja >/dev/null 2>&1 && echo -G Ninja)
    # The programs this version has (llama-cli needs the server's code in newer versions).
    known="$("$cmake" --build "$build" --target help)"
    targets=(llama)
    for t in llama-bench llama-simple llama-completion llama-tokenize llama-cli llama-server; do
        if grep -qE "(^|[[:space:]])$t(:|$| )" <<<"$known"; then targets+=("$t"); fi
    done
    "$cmake" --build "$build" --config Release -j "$jobs" --target "${targets[@]}"
    touch "$build/.built"
fi

# llama_greedy against the library just built.
greedy="$build/bin/llama_greedy"
if [ ! -x "$greedy" ] || [ "$here/llama_greedy.c" -nt "$greedy" ]; then
    lib_dir="$(dirname "$(find "$build" -name 'libllama.so*' | head -n1)")"
    ggml_lib_dir="$(dirname "$(find "$build" -name 'libggml.so*' | head -n1)")"
    cc -O2 -std=c11 -o "$greedy" "$here/llama_greedy.c" \
        -I"$src_dir/include" -I"$src_dir/ggml/include" \
        -L"$lib_dir" -L"$ggml_lib_dir" -Wl,-rpath,"$lib_dir" -Wl,-rpath,"$ggml_lib_dir" \
        -lllama -lggml -lggml-base -lm
fi

pkg_dir="$(dirname "$(dirname "$src_dir")")"
pkg="$(basename "$pkg_dir")"
# The sdist has no git history: its changelog names the llama.cpp commit it vendors.
commit="$(grep -m1 -oE 'llama\.cpp@[0-9a-f]+' "$pkg_dir/CHANGELOG.md" 2>/dev/null || true)"
lib_version="$(grep -m3 -oE 'set\(LLAMA_VERSION_(MAJOR|MINOR|PATCH) [0-9]+' "$src_dir/CMakeLists.txt" | grep -oE '[0-9]+$' | paste -sd. -)"
echo "built ${commit:-llama.cpp, commit unknown} (vendored by $pkg; libllama $lib_version)" >&2
echo "$build"
