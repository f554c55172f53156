#!/usr/bin/env bash
# Serving side by side with llama.cpp's server on the same GGUF file, on loopback: each server in
# turn with SLOTS parallel slots, loaded by `minicpm bench serve` (streamed completions of random
# prompt ids, greedy) at 1 client, SLOTS clients and CLIENTS clients, with the server's resident
# memory sampled through the last run. Prints one line per server and load, and the ratios.
#
#   scripts/bench/serve_side_by_side.sh GGUF [SLOTS] [CLIENTS]
#
# llama-server runs in each configuration of LLAMA_CONFIGS (';'-separated extra flags; default its
# threads polling as shipped, without polling, and one thread: on 2 cores shared with the load
# generator its spinning threads can lose a core), and ratios are against the fastest of them.
# SLOTS defaults to 16, CLIENTS to 100. Environment: THREADS (2), PROMPT (32 tokens), TOKENS (64
# generated per request), REQUESTS (300, for the CLIENTS run), ROUNDS (requests per client in
# the SLOTS run; 8: about 10 s, where 2 rounds lasted 2.5 s and the ratio moved with the
# machine's noise by 30% from one invocation to the next), VOCAB (ids drawn below it; 1000),
# TIME_LIMIT (seconds per load run; 300),
# MINICPM (the binary; default target/release/minicpm), MINICPM_BENCH_CACHE (where
# build_llama_cpp.sh builds llama-server; ~/.cache/minicpm-bench), OUT (JSON results; a temp dir).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
gguf="${1:?usage: serve_side_by_side.sh GGUF [SLOTS] [CLIENTS]}"
slots="${2:-16}"
clients="${3:-100}"
threads="${THREADS:-2}"
prompt="${PROMPT:-32}"
tokens="${TOKENS:-64}"
requests="${REQUESTS:-300}"
rounds="${ROUNDS:-8}"
vocab="${VOCAB:-1000}"
minicpm="${MINICPM:-${CARGO_TARGET_DIR:-$root/target}/release/minicpm}"
out="${OUT:-$(mktemp -d)}"
mkdir -p "$out"
[ -f "$gguf" ] || { echo "error: $gguf: no such file" >&2; exit 2; }
[ -x "$minicpm" ] || { echo "error: $minicpm: build with cargo build --release or set MINICPM" >&2; exit 2; }
build="$("$root/scripts/bench/build_llama_cpp.sh" | tail -n1)"
llama_server="$build/bin/llama-server"
# Each slot holds the prompt and the reply, rounded up as llama.cpp rounds a slot's context.
ctx=$(( ((prompt + tokens + 255) / 256) * 256 ))

server_pid=""
stop() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; server_pid=""; }
trap stop EXIT

wait_health() {
    local url="$1" deadline=$((SECONDS + 300))
    until curl -sf "$url/health" >/dev/null 2>&1; do
        kill -0 "$server_pid" 2>/dev/null || { echo "error: the server exited; see $out" >&2; exit 1; }
        [ $SECONDS -lt $deadline ] || { echo "error: no /health after 300 s" >&2; exit 1; }
        sleep 0.5
    done
}

load() { # NAME LABEL CLIENTS REQUESTS URL
    "$minicpm" bench serve --url "$5" --clients "$3" --requests "$4" --prompt-tokens "$prompt" \
        --max-tokens "$tokens" --vocab "$vocab" --server-pid "$server_pid" --json "$out/$1-$2.json" \
        --time-limit "${TIME_LIMIT:-300}" \
        | sed "s/^/$1 $2: /"
}

run_server() { # NAME [EXTRA FLAGS...]
    local name="$1" port url
    shift
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    url="http://127.0.0.1:$port"
    case "$name" in
        minicpm) "$minicpm" serve --model "$gguf" --port "$port" --slots "$slots" --context "$ctx" \
                     --threads "$threads" >"$out/$name.log" 2>&1 & ;;
        llama.cpp*) "$llama_server" -m "$gguf" --port "$port" -np "$slots" -c $((slots * ctx)) \
                     -t "$threads" -tb "$threads" "$@" >"$out/$name.log" 2>&1 & ;;
    esac
    server_pid=$!
    wait_health "$url"
    load "$name" warmup "$slots" "$slots" "$url" >/dev/null
    load "$name" 1-client 1 4 "$url"
    load "$name" "$slots-clients" "$slots" $((slots * rounds)) "$url"
    load "$name" "$clients-clients" "$clients" "$requests" "$url"
    stop
}

echo "== $(date -u +%FT%TZ), $(nproc) CPUs, $threads threads, $slots slots x $ctx tokens, prompt $prompt, $tokens generated; $(basename "$gguf"); load: $(cut -d' ' -f1-3 /proc/loadavg)"
run_server minicpm
IFS=';' read -r -a llama_configs <<<"${LLAMA_CONFIGS:-;--poll 0;-t 1 -tb 1}"
names=()
for i in "${!llama_configs[@]}"; do
    names+=("llama.cpp-$i")
    echo "llama.cpp-$i: extra flags '${llama_configs[$i]}'"
    # shellcheck disable=SC2086
    run_server "llama.cpp-$i" ${llama_configs[$i]}
done
python3 - "$out" "$slots" "$clients" "${names[@]}" <<'PY'
import json, sys
out, slots, clients, *peers = sys.argv[1:]
r = lambda name, label: json.load(open(f"{out}/{name}-{label}.json"))["tokens_per_s"]
single = r("minicpm", "1-client")
print(f"minicpm: {slots} clients / 1 client = {r('minicpm', f'{slots}-clients') / single:.2f}x aggregate decode")
for label in ["1-client", f"{slots}-clients", f"{clients}-clients"]:
    best = max(peers, key=lambda p: r(p, label))
    print(f"{label}: minicpm {r('minicpm', label):.1f} tokens/s, fastest llama.cpp ({best}) "
          f"{r(best, label):.1f}: {r('minicpm', label) / r(best, label):.2f}x")
PY
echo "results: $out"
