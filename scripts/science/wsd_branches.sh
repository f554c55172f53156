#!/usr/bin/env bash
# Decay branches trace the optimal envelope (docs/MODEL.md section 6): one stable run (constant LR
# after warmup) with exponential-decay branches at 225, 450 and 900 updates (each decaying for 10%
# of its total: 25, 50 and 100 updates), against separate WSD(10%) runs to the same totals of 250
# and 500 updates. The last branch ends at 1,000 updates, where scripts/science/wsd_vs_cosine.sh
# has the separate run `wsd-10pct-seed1`: same seed, data order and rates, so the branch must
# reproduce it bit for bit.
#
#   scripts/science/wsd_branches.sh    # then: minicpm runs runs/science/wsd-branches
set -euo pipefail
cd "$(dirname "$0")/../.."
minicpm="${MINICPM:-target/release/minicpm}"
config=configs/science/wsd-vs-cosine.toml
out=runs/science/wsd-branches
jobs="${JOBS:-2}"
export RAYON_NUM_THREADS="${THREADS:-1}"
[ -x "$minicpm" ] || cargo build --release -p minicpm-cli
[ -d data/demo/shards ] || { echo 'no data/demo/shards: run "minicpm demo" first'; exit 1; }
mkdir -p "$out"

train() { # dir, overrides...
  local dir="$1"; shift
  if [ -f "$dir/run.toml" ]; then
    "$minicpm" train --quiet --resume "$dir"
  else
    "$minicpm" train --quiet --config "$config" --set seed=1 "$@" --out "$dir"
  fi > "$dir.log" 2>&1 && echo "done: $dir" || { echo "failed: $dir (see $dir.log)"; return 1; }
}

pids=()
train "$out/stable" --set schedule.kind=constant --set train.steps=900 \
  --set 'branches.at_tokens=[230400, 460800, 921600]' \
  --set branches.decay_fraction=0.1 --set branches.decay=exp &
pids+=($!)
for steps in 250 500; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  train "$out/wsd-$steps" --set schedule.kind=wsd --set schedule.decay_fraction=0.1 \
    --set train.steps=$steps &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
