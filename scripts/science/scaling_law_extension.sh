#!/usr/bin/env bash
# Extends scaling_law.sh's study so that its iso-FLOP profiles bracket more budgets: beyond
# 1e12 FLOPs only the two largest sizes reached C/6N. Adds a branch at 128 tokens per
# parameter for width 48 (a stable run of its own; constant-LR runs of one seed and data order
# repeat the base trunk exactly up to its end) and a fifth size, width 128 (377k non-embedding
# parameters), with branches at 2, 4 and 8. Then fits all three studies as one. Run
# scaling_law.sh first. About 16 process-minutes (9 wall) on this project's 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
minicpm="${MINICPM:-target/release/minicpm}"
base=runs/science/scaling-64
ext=runs/science/scaling-64-ext
[ -x "$minicpm" ] || cargo build --release
[ -f "$base/plan.json" ] || { echo "no $base: run scripts/science/scaling_law.sh first"; exit 1; }
plan() {
  local dir="$1"; shift
  [ -f "$dir/plan.json" ] || "$minicpm" scaling-law plan --head-dim 16 --layers 2 \
    --set model.dim_model_base=64 --out "$dir" "$@"
}
plan "$ext/d48-long" --widths 48 --data-multiples 128
plan "$ext/d128" --widths 128 --data-multiples 2,4,8
# The two extensions side by side, one core each.
"$minicpm" scaling-law run "$ext/d48-long" --threads 1 &
long=$!
"$minicpm" scaling-law run "$ext/d128" --threads 1
wait "$long"
"$minicpm" scaling-law fit "$base" "$ext/d48-long" "$ext/d128" --out "$ext/fit.json" \
  --plot "$ext/scaling-law"
