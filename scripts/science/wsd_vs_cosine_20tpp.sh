#!/usr/bin/env bash
# WSD versus Cosine(S) at 21.7 tokens per non-embedding parameter (docs/SCIENCE.md): on the
# wind tunnel's 64-wide proxy (configs/science/wsd-vs-cosine-20tpp.toml), S = 4,000 updates,
# two seeds. Per seed: Cosine(S), and one stable trunk (constant LR after warmup) to 0.9S whose
# checkpoints at 0.8S and 0.9S are decayed to S with exponential and 1-sqrt shapes (20% and 10%
# decays). Every schedule ends at 0.1 of the peak LR. Runs go to
# runs/science/wsd-vs-cosine-20tpp/; rerunning skips finished runs and resumes interrupted ones.
# Then: `minicpm runs runs/science/wsd-vs-cosine-20tpp`.
#
#   scripts/science/wsd_vs_cosine_20tpp.sh      # 2 runs at a time, 1 thread each
set -euo pipefail
cd "$(dirname "$0")/../.."
minicpm="${MINICPM:-target/release/minicpm}"
config=configs/science/wsd-vs-cosine-20tpp.toml
out=runs/science/wsd-vs-cosine-20tpp
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
    "$minicpm" train --quiet --config "$config" "$@" --out "$dir"
  fi > "$dir.log" 2>&1 && echo "done: $dir" || { echo "failed: $dir (see $dir.log)"; return 1; }
}

decay() { # trunk, step, fraction, shape
  local trunk="$1" step="$2" fraction="$3" shape="$4"
  local name="wsd-${fraction#0.}0pct-$shape" floor=()
  [ "$shape" = exp ] || floor=(--floor 0.1) # exp reaches 0.1 of the peak by its half-life
  local branch="$trunk/branches/$name"
  if [ -f "$branch/run.toml" ]; then
    "$minicpm" train --quiet --resume "$branch"
  else
    "$minicpm" decay --quiet --from "$trunk/checkpoints/step-$(printf %07d "$step")" \
      --fraction "$fraction" --fn "$shape" "${floor[@]}" --name "$name"
  fi > "$branch.log" 2>&1 && echo "done: $branch" || { echo "failed: $branch (see $branch.log)"; return 1; }
}

throttle() { while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done; }

status=0
pids=()
for seed in 1 2; do
  throttle
  train "$out/cosine-S-seed$seed" --set seed=$seed --set schedule.kind=cosine \
    --set schedule.period=4000 & pids+=($!)
  throttle
  train "$out/stable-seed$seed" --set seed=$seed --set schedule.kind=constant \
    --set train.steps=3600 & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || status=1; done

pids=()
for seed in 1 2; do
  mkdir -p "$out/stable-seed$seed/branches"
  for shape in exp 1-sqrt; do
    throttle; decay "$out/stable-seed$seed" 3200 0.2 "$shape" & pids+=($!)
    throttle; decay "$out/stable-seed$seed" 3600 0.1 "$shape" & pids+=($!)
  done
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
