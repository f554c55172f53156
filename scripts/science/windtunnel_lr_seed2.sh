#!/usr/bin/env bash
# A second seed for the LR-transfer sweep (scripts/science/windtunnel_lr.sh) around each
# parametrisation's optimum: the same proxies and budget with seed 2 (initialisation and data
# order), LRs 2^-8..2^-6 under muP and 2^-9..2^-7 under SP. Rerunning resumes.
set -euo pipefail
cd "$(dirname "$0")/../.."
minicpm="${MINICPM:-target/release/minicpm}"
[ -x "$minicpm" ] || cargo build --release
[ -d data/demo/shards ] || { echo 'no data/demo/shards: run "minicpm demo" first'; exit 1; }
for run in "mup 2^-8..2^-6" "sp 2^-9..2^-7"; do
  set -- $run
  "$minicpm" windtunnel lr --param "$1" --widths 64,128,256 --head-dim 32 --layers 4 \
    --set model.dim_model_base=64 --set seed=2 --lrs "$2" --tokens 409600 \
    --workers "${JOBS:-2}" --threads 1 --out runs/science/windtunnel-lr-seed2
done
