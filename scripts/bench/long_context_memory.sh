#!/usr/bin/env bash
# Peak memory of a training step against the sequence length: `minicpm bench train` on one
# sequence per update (micro_batch 1, batch_tokens = the length) at each length, printing the
# process's peak RSS, the step's tokens/s, and the memory added per 1K tokens since the previous
# length. Linear-memory attention (crates/model/src/kernels/attention_cpu.rs) makes the added
# memory per 1K tokens constant; attention that keeps its probabilities makes it grow with the
# length.
#
#   scripts/bench/long_context_memory.sh [d256|d512|CONFIG.toml] [LENGTHS]
#
# LENGTHS defaults to "1024 2048 4096 8192". Environment: MINICPM (the binary; default: a release
# build made here), STEPS (timed updates, default 2), THREADS (default 2).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
shape="${1:-d256}"
lengths="${2:-1024 2048 4096 8192}"
steps="${STEPS:-2}"
case "$shape" in
    *.toml) config="$shape" ;;
    *) config="$root/configs/bench-$shape.toml" ;;
esac
[ -f "$config" ] || { echo "error: $config: no such config" >&2; exit 2; }
if [ -z "${MINICPM:-}" ]; then
    (cd "$root" && cargo build --release -q -p minicpm-cli)
    MINICPM="${CARGO_TARGET_DIR:-$root/target}/release/minicpm"
fi
export RAYON_NUM_THREADS="${THREADS:-2}"

longest=0
for n in $lengths; do [ "$n" -gt "$longest" ] && longest="$n"; done

printf '%8s %14s %10s %18s\n' tokens "peak RSS MiB" "tok/s" "MiB per 1K tokens"
previous_len=""
previous_mib=""
for n in $lengths; do
    log="$(mktemp)"
    json="$("$MINICPM" bench train --config "$config" --steps "$steps" --warmup 1 --json \
        --set train.micro_batch=1 --set train.seq_len="$n" --set train.batch_tokens="$n" \
        --set model.max_position_embeddings="$longest" 2>"$log" | tail -n1)" \
        || { cat "$log" >&2; rm -f "$log"; exit 1; }
    rm -f "$log"
    read -r mib tps < <(python3 -c '
import json, sys
d = json.loads(sys.argv[1])
print("%.0f %.0f" % (d["peak_rss_bytes"] / 2**20, d["tokens_per_s"]))' "$json")
    slope="-"
    if [ -n "$previous_len" ]; then
        slope="$(python3 -c "print(f'{($mib - $previous_mib) * 1024 / ($n - $previous_len):.1f}')")"
    fi
    printf '%8s %14s %10s %18s\n' "$n" "$mib" "$tps" "$slope"
    previous_len="$n"
    previous_mib="$mib"
done
