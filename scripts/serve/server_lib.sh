# Sourced by the scripts that run `minicpm serve` on loopback for a client to talk to.
#
#   source scripts/serve/server_lib.sh
#   trap stop_server EXIT
#   start_server MODEL LOGFILE [extra serve flags...]   # sets SERVER_PID, PORT, BASE_URL, MODEL_ID
#
# The binary is $MINICPM, else target/release/minicpm of this checkout ($CARGO_TARGET_DIR
# honoured); it is not built here. SERVE_TIMEOUT (default 180) bounds the wait for /health in
# seconds. MINICPM_API_KEY, when set, reaches the server through the environment and is sent
# with this file's own requests. Only the server this file started is ever stopped.

SERVER_PID=""
PORT=""
BASE_URL=""
MODEL_ID=""

minicpm_bin() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    local bin="${MINICPM:-${CARGO_TARGET_DIR:-$root/target}/release/minicpm}"
    if [ ! -x "$bin" ]; then
        echo "error: $bin: no minicpm binary (build it with cargo build --release, or set MINICPM)" >&2
        return 2
    fi
    echo "$bin"
}

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# GET $1 and print the body; non-zero exit when the request fails or the status is not 2xx.
# Sends MINICPM_API_KEY as the bearer token when it is set (the server then requires it).
http_get() {
    python3 - "$1" <<'PY'
import os, sys, urllib.request
req = urllib.request.Request(sys.argv[1])
if os.environ.get("MINICPM_API_KEY"):
    req.add_header("Authorization", "Bearer " + os.environ["MINICPM_API_KEY"])
with urllib.request.urlopen(req, timeout=5) as r:
    sys.stdout.write(r.read().decode())
PY
}

start_server() {
    local model="$1" log="$2"
    shift 2
    local bin
    bin="$(minicpm_bin)" || return 2
    PORT="$(free_port)"
    BASE_URL="http://127.0.0.1:$PORT"
    "$bin" serve --model "$model" --host 127.0.0.1 --port "$PORT" "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    local deadline=$((SECONDS + ${SERVE_TIMEOUT:-180}))
    until http_get "$BASE_URL/health" >/dev/null 2>&1; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "error: minicpm serve exited before it answered /health; its log ($log):" >&2
            tail -n 20 "$log" >&2
            SERVER_PID=""
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "error: minicpm serve did not answer $BASE_URL/health within ${SERVE_TIMEOUT:-180}s; its log ($log):" >&2
            tail -n 20 "$log" >&2
            return 1
        fi
        sleep 0.5
    done
    # The id the server gives the model: the one name clients must send as "model".
    MODEL_ID="$(http_get "$BASE_URL/v1/models" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])')"
    echo "minicpm serve (pid $SERVER_PID) on $BASE_URL serves $MODEL_ID" >&2
}

stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
