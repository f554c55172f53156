#!/usr/bin/env bash
# LR transfer across widths under muP and under standard parametrisation (docs/MODEL.md section 8):
# proxies of width 64, 128 and 256 (heads of 32, 4 layers, so only the width changes; muP's base
# width 64, where muP's width factors are 1), seven learning rates from 2^-10 to
# 2^-4, 409,600 training tokens each, on the demo corpus. Rerunning resumes.
#
#   scripts/science/windtunnel_lr.sh            # 2 points at a time, 1 thread each
set -euo pipefail
cd "$(dirname "$0")/../.."
minicpm="${MINICPM:-target/release/minicpm}"
[ -x "$minicpm" ] || cargo build --release
[ -d data/demo/shards ] || { echo 'no data/demo/shards: run "minicpm demo" first'; exit 1; }
for param in mup sp; do
  "$minicpm" windtunnel lr --param "$param" --widths 64,128,256 --head-dim 32 --layers 4 \
    --set model.dim_model_base=64 --lrs '2^-10..2^-4' --tokens 409600 \
    --workers "${JOBS:-2}" --threads 1 --out runs/science/windtunnel-lr
done
