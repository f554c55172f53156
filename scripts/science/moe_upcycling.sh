#!/usr/bin/env bash
# Sparse upcycling at CPU scale (docs/SCIENCE.md, "Sparse upcycling"): per seed, the demo model
# (configs/science/moe-upcycling.toml) trains with WSD for 1,000 updates and is checkpointed at
# update 500, in the stable phase. That checkpoint continues (a) dense: the trunk's own updates
# 500-1,000, and (b) upcycled into 8 experts, top-2 (`minicpm upcycle`), on the same tokens with
# the same schedule; (c) as (b) with the experts' AdamW moments started at zero. Runs go to runs/science/moe-upcycling/; rerunning skips finished runs and
# resumes interrupted ones. Then the plots in docs/figures/moe-upcycling-*.
#
#   scripts/science/moe_upcycling.sh      # 2 runs at a time, 1 thread each
set -euo pipefail
cd "$(dirname "$0")/../.."
minicpm="${MINICPM:-target/release/minicpm}"
config=configs/science/moe-upcycling.toml
out=runs/science/moe-upcycling
jobs="${JOBS:-2}"
export RAYON_NUM_THREADS="${THREADS:-1}"
[ -x "$minicpm" ] || cargo build --release -p minicpm-cli
[ -d data/demo/shards ] || { echo 'no data/demo/shards: run "minicpm demo" first'; exit 1; }
mkdir -p "$out"

dense() { # seed
  local dir="$out/dense-seed$1"
  if [ -f "$dir/run.toml" ]; then
    "$minicpm" train --quiet --resume "$dir"
  else
    "$minicpm" train --quiet --config "$config" --set seed="$1" --out "$dir"
  fi > "$dir.log" 2>&1 && echo "done: $dir" || { echo "failed: $dir (see $dir.log)"; return 1; }
}

upcycled() { # seed, name, flags...
  local seed="$1" dir="$out/$2"; shift 2
  if [ -f "$dir/run.toml" ]; then
    "$minicpm" train --quiet --resume "$dir"
  else
    "$minicpm" upcycle --quiet --from "$out/dense-seed$seed/checkpoints/step-0000500" \
      --experts 8 --top-k 2 "$@" --out "$dir"
  fi > "$dir.log" 2>&1 && echo "done: $dir" || { echo "failed: $dir (see $dir.log)"; return 1; }
}

status=0
pids=()
for seed in 1 2; do dense "$seed" & pids+=($!); while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done; done
for p in "${pids[@]}"; do wait "$p" || status=1; done
pids=()
for seed in 1 2; do
  for variant in "moe-8x-top2-seed$seed" "moe-8x-top2-fresh-seed$seed --fresh-moments"; do
    # shellcheck disable=SC2086
    upcycled "$seed" $variant & pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  done
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
[ "$status" = 0 ] || exit 1

figs=docs/figures
runs=("$out/dense-seed1" "$out/moe-8x-top2-seed1" "$out/moe-8x-top2-fresh-seed1"
      "$out/dense-seed2" "$out/moe-8x-top2-seed2" "$out/moe-8x-top2-fresh-seed2")
"$minicpm" plot loss --eval "${runs[@]}" --out "$figs/moe-upcycling-tokens"
"$minicpm" plot loss --eval --x flops "${runs[@]}" --out "$figs/moe-upcycling-flops"
"$minicpm" plot experts "$out/moe-8x-top2-seed1" --out "$figs/moe-upcycling-experts"
"$minicpm" runs "$out"
