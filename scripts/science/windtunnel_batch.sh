#!/usr/bin/env bash
# The batch-size experiment of docs/MODEL.md section 8 at CPU scale: proxies of width 64 and 128
# (heads of 32, 4 layers, muP base width 64) trained for 1,048,576 tokens at each of six batch
# sizes (128 to 4,096 tokens per update), cosine schedule at LR 2^-7 (the muP optimum of the LR
# sweep), evaluated every 32,768 tokens; then the tokens each batch needs to reach each target
# loss, the parabola minima and bs_opt = a / L^b. Rerunning resumes; the targets can be changed
# without retraining.
set -euo pipefail
cd "$(dirname "$0")/../.."
minicpm="${MINICPM:-target/release/minicpm}"
[ -x "$minicpm" ] || cargo build --release
[ -d data/demo/shards ] || { echo 'no data/demo/shards: run "minicpm demo" first'; exit 1; }
"$minicpm" windtunnel batch --widths 64,128 --head-dim 32 --layers 4 \
  --set model.dim_model_base=64 --batches 128,256,512,1024,2048,4096 --tokens 1048576 \
  --eval-tokens 32768 --lr 0.0078125 --target-losses "${TARGETS:-5.2,5.0,4.8,4.6}" \
  --workers "${JOBS:-2}" --threads 1 --out runs/science/windtunnel-batch
