#!/usr/bin/env bash
# WSD versus Cosine(T) (docs/MODEL.md section 5) on the demo corpus: Cosine(T) for T in
# {0.5S, S, 1.5S} and WSD with 10% and 2.5% exponential decays, all ending at S = 1,000 updates,
# two seeds each. Runs go to runs/science/wsd-vs-cosine/; rerunning skips finished runs and
# resumes interrupted ones. Then: `minicpm runs runs/science/wsd-vs-cosine`.
#
#   scripts/science/wsd_vs_cosine.sh            # 2 runs at a time, 1 thread each
#   JOBS=1 THREADS=2 scripts/science/wsd_vs_cosine.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
minicpm="${MINICPM:-target/release/minicpm}"
config=configs/science/wsd-vs-cosine.toml
out=runs/science/wsd-vs-cosine
jobs="${JOBS:-2}"
export RAYON_NUM_THREADS="${THREADS:-1}"
[ -x "$minicpm" ] || cargo build --release -p minicpm-cli
[ -d data/demo/shards ] || { echo 'no data/demo/shards: run "minicpm demo" first'; exit 1; }
mkdir -p "$out"

# name | schedule overrides
schedules=(
  "cosine-0.5S|schedule.kind=cosine schedule.period=500"
  "cosine-S|schedule.kind=cosine schedule.period=1000"
  "cosine-1.5S|schedule.kind=cosine schedule.period=1500"
  "wsd-10pct|schedule.kind=wsd schedule.decay_fraction=0.1"
  "wsd-2.5pct|schedule.kind=wsd schedule.decay_fraction=0.025"
)

one_run() {
  local name="$1" sets="$2" seed="$3" dir="$out/$1-seed$3"
  if [ -f "$dir/run.toml" ]; then
    "$minicpm" train --quiet --resume "$dir"
  else
    local args=(--set "seed=$seed")
    for s in $sets; do args+=(--set "$s"); done
    "$minicpm" train --quiet --config "$config" "${args[@]}" --out "$dir"
  fi > "$dir.log" 2>&1 && echo "done: $dir" || { echo "failed: $dir (see $dir.log)"; return 1; }
}

pids=()
for seed in 1 2; do
  for entry in "${schedules[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    one_run "${entry%%|*}" "${entry#*|}" "$seed" &
    pids+=($!)
  done
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
