#!/usr/bin/env bash
# An end-to-end WSD scaling-law study at CPU scale (docs/MODEL.md section 9): proxies of width 32,
# 48, 64 and 96 (heads of 16, 2 layers; 24k to 212k non-embedding parameters), one stable run
# each with exponential decay branches (10% of each branch) ending at 2, 4, 8, 16, 32 and 64
# tokens per non-embedding parameter, on the demo corpus; then the L(N, D) fit in bits per byte.
# Rerunning resumes. About 45 process-minutes on this project's 2-core machine (90 when it shares
# the cores with other jobs).
set -euo pipefail
cd "$(dirname "$0")/../.."
minicpm="${MINICPM:-target/release/minicpm}"
study=runs/science/scaling-64
[ -x "$minicpm" ] || cargo build --release
[ -d data/demo/shards ] || { echo 'no data/demo/shards: run "minicpm demo" first'; exit 1; }
[ -f "$study/plan.json" ] || "$minicpm" scaling-law plan --widths 32,48,64,96 --head-dim 16 \
  --layers 2 --set model.dim_model_base=64 --data-multiples 2,4,8,16,32,64 --out "$study"
"$minicpm" scaling-law run "$study" --workers "${JOBS:-2}" --threads "${THREADS:-1}"
"$minicpm" scaling-law fit "$study" --out "$study/fit.json"
