#!/usr/bin/env bash
# Starts `minicpm serve --model MODEL` on a free loopback port and runs openai_client.py (the
# official openai client: models, completions, chat, streaming, logprobs, errors) against it in
# the venv of setup_venv.sh. The server is stopped on every exit.
#
#   scripts/serve/openai_client.sh MODEL [extra minicpm serve flags...]
#
# MODEL: an HF model directory or a GGUF file. With a directory holding tokenizer.json, the
# token-id prompts are that tokenizer's ids for the text prompt (BOS = config.json's
# bos_token_id), so a text prompt and the same prompt as ids can be compared.
# Environment: MINICPM (the binary; default target/release/minicpm of this checkout, not built
# here), MINICPM_API_KEY (the server requires it when set; the client sends it and also checks
# that a wrong key is refused), SERVE_TIMEOUT (seconds to wait for /health, default 180),
# KEEP_LOG (a path to copy the server's log to), MINICPM_BENCH_CACHE (where the venv is).
# Exit status: the client's (1 when any check failed), or that of the step that failed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ $# -lt 1 ]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
fi
model="$(realpath "$1")"
shift
[ -e "$model" ] || { echo "error: $model: no such model" >&2; exit 2; }

source "$root/scripts/serve/server_lib.sh"
venv="$("$root/scripts/serve/setup_venv.sh" | tail -n1)"

tmp="$(mktemp -d)"
cleanup() {
    stop_server
    if [ -n "${KEEP_LOG:-}" ] && [ -f "$tmp/serve.log" ]; then cp "$tmp/serve.log" "$KEEP_LOG"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

client_args=()
if [ -d "$model" ] && [ -f "$model/tokenizer.json" ]; then
    client_args+=(--tokenizer "$model/tokenizer.json")
    bos="$(python3 -c 'import json, sys; b = json.load(open(sys.argv[1])).get("bos_token_id"); print(b[0] if isinstance(b, list) else ("" if b is None else b))' "$model/config.json" 2>/dev/null || true)"
    if [ -n "$bos" ]; then client_args+=(--bos-id "$bos"); fi
fi

start_server "$model" "$tmp/serve.log" "$@"
status=0
"$venv/bin/python" "$root/scripts/serve/openai_client.py" --base-url "$BASE_URL/v1" --model "$MODEL_ID" \
    "${client_args[@]}" || status=$?
if [ "$status" -ne 0 ]; then
    echo "the end of the server's log:" >&2
    tail -n 20 "$tmp/serve.log" >&2
fi
exit "$status"
