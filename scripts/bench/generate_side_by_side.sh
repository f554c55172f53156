#!/usr/bin/env bash
# Inference speed side by side with llama.cpp on the same GGUF files: for each type, a file of
# CONFIG's shapes with random weights (`minicpm bench random-model`), timed by llama.cpp's
# llama-bench and by `minicpm bench generate` back to back on the same threads: prefill tokens/s
# over 512 tokens (pp512), decode tokens/s over 128 (tg128), and the ratios.
#
#   scripts/bench/generate_side_by_side.sh [CONFIG] [TYPES]
#
# CONFIG defaults to configs/minicpm-1b.toml (MiniCPM-1.2B), TYPES to "f16 q8_0 q4_0".
# Environment: THREADS (default 2), REPS (default 3), MINICPM (the binary; default a release
# build made here), MINICPM_BENCH_CACHE (default ~/.cache/minicpm-bench: llama.cpp's build and
# the model files). llama.cpp is built by build_llama_cpp.sh from the source llama-cpp-python
# ships on PyPI.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
config="${1:-$root/configs/minicpm-1b.toml}"
types="${2:-f16 q8_0 q4_0}"
threads="${THREADS:-2}"
reps="${REPS:-3}"
cache="${MINICPM_BENCH_CACHE:-$HOME/.cache/minicpm-bench}"
export MINICPM_BENCH_CACHE="$cache"
[ -f "$config" ] || { echo "error: $config: no such config" >&2; exit 2; }
if [ -z "${MINICPM:-}" ]; then
    (cd "$root" && cargo build --release -q)
    MINICPM="${CARGO_TARGET_DIR:-$root/target}/release/minicpm"
fi
build="$("$root/scripts/bench/build_llama_cpp.sh" | tail -n1)"
llama_bench="$build/bin/llama-bench"
models="$cache/models"
mkdir -p "$models"
name="$(basename "$config" .toml)"

echo "== $(date -u +%FT%TZ), $(nproc) CPUs, $threads threads, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
printf "%-6s %12s %12s %7s %12s %12s %7s\n" type "pp512 ours" "llama.cpp" ratio "tg128 ours" "llama.cpp" ratio
for ty in $types; do
    file="$models/$name-$ty.gguf"
    [ -f "$file" ] || "$MINICPM" bench random-model --config "$config" --type "$ty" --out "$file" >&2
    llama_json="$("$llama_bench" -m "$file" -t "$threads" -p 512 -n 128 -r "$reps" -o json 2>/dev/null)"
    ours_json="$("$MINICPM" bench generate --model "$file" --threads "$threads" --repetitions "$reps" \
        --batch 0 --json 2>/dev/null)"
    python3 - "$ty" "$llama_json" "$ours_json" <<'PY'
import json, sys
ty, llama, ours = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
pp = next(r["avg_ts"] for r in llama if r["n_prompt"] > 0 and r["n_gen"] == 0)
tg = next(r["avg_ts"] for r in llama if r["n_gen"] > 0 and r["n_prompt"] == 0)
opp, otg = ours["prefill_tokens_per_s"]["mean"], ours["decode_tokens_per_s"]["mean"]
print(f"{ty:<6} {opp:12.1f} {pp:12.1f} {opp/pp:6.2f}x {otg:12.1f} {tg:12.1f} {otg/tg:6.2f}x")
PY
done
