#!/usr/bin/env bash
# The coordinate check on text (docs/MODEL.md section 8): as coord_check.sh, but widths 64 to 1,024
# and 25 updates on the demo corpus's stable mixture (probed on its first held-out batch), under
# muP and SP, and the same 25 updates of muP on random tokens for comparison. Writes
# runs/science/coord-check-text-25/ and runs/science/coord-check-random-25/. About 20 minutes
# on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
minicpm="${MINICPM:-target/release/minicpm}"
[ -x "$minicpm" ] || cargo build --release
[ -d data/demo/shards ] || { echo 'no data/demo/shards: run "minicpm demo" first'; exit 1; }
check() {
  "$minicpm" windtunnel coord-check --widths 64,128,256,512,1024 --head-dim 32 --layers 4 \
    --set model.dim_model_base=64 --steps 25 "$@"
}
for param in mup sp; do
  check --text --param "$param" --out runs/science/coord-check-text-25
done
check --param mup --out runs/science/coord-check-random-25
