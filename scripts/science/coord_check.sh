#!/usr/bin/env bash
# The coordinate check (docs/MODEL.md section 8) under muP and under standard parametrisation:
# widths 64 to 512 (heads of 32, 4 layers; muP's base width 64), 5 updates at LR 0.01 on
# random tokens. Writes runs/science/coord-check/coord-check-{mup,sp}.{json,png,svg}.
set -euo pipefail
cd "$(dirname "$0")/../.."
minicpm="${MINICPM:-target/release/minicpm}"
[ -x "$minicpm" ] || cargo build --release
for param in mup sp; do
  "$minicpm" windtunnel coord-check --param "$param" --widths 64,128,256,512 --head-dim 32 \
    --layers 4 --set model.dim_model_base=64 --steps 5 --out runs/science/coord-check
done
