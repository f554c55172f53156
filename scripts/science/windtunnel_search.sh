#!/usr/bin/env bash
# The wind tunnel's hyper-parameter search (docs/MODEL.md section 8) on the demo corpus: random
# search, log-uniform, over scale_emb, scale_depth, init_std and the peak LR on the smallest
# proxy of the LR sweep (width 64, heads of 32, 4 layers, muP base width 64), 409,600 training
# tokens per trial (as in the LR sweep), the paper's 12 / 1.4 / 0.1 / 0.01 as trial 0 plus 15
# draws. Rerunning resumes.
set -euo pipefail
cd "$(dirname "$0")/../.."
minicpm="${MINICPM:-target/release/minicpm}"
[ -x "$minicpm" ] || cargo build --release
[ -d data/demo/shards ] || { echo 'no data/demo/shards: run "minicpm demo" first'; exit 1; }
"$minicpm" windtunnel search --widths 64 --head-dim 32 --layers 4 --set model.dim_model_base=64 \
  --trials "${TRIALS:-15}" --tokens 409600 --workers "${JOBS:-1}" --threads 1 \
  --out runs/science/windtunnel-search
