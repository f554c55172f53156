#!/usr/bin/env bash
# Trains the same model for the same steps with `minicpm bench train` and with PyTorch eager,
# back to back on the same threads, and prints both tokens/s, the ratio and both peak memories.
#
#   scripts/bench/train_side_by_side.sh d256|d512|CONFIG.toml [STEPS] [WARMUP]
#
# Environment: MINICPM (the binary; default: a release build made here), PYTHON (default: the
# reference venv, scripts/reference/setup.sh), THREADS (default 2).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
shape="${1:?usage: train_side_by_side.sh d256|d512|CONFIG.toml [STEPS] [WARMUP]}"
steps="${2:-10}"
warmup="${3:-2}"
threads="${THREADS:-2}"
case "$shape" in
    *.toml) config="$shape" ;;
    *) config="$root/configs/bench-$shape.toml" ;;
esac
[ -f "$config" ] || { echo "error: $config: no such config" >&2; exit 2; }
python="${PYTHON:-$root/scripts/reference/.venv/bin/python}"
[ -x "$python" ] || { echo "error: $python: no Python; run scripts/reference/setup.sh or set PYTHON" >&2; exit 2; }
if [ -z "${MINICPM:-}" ]; then
    (cd "$root" && cargo build --release -q -p minicpm-cli)
    MINICPM="${CARGO_TARGET_DIR:-$root/target}/release/minicpm"
fi

export RAYON_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"
echo "== $(date -u +%FT%TZ), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "== minicpm bench train --config $config --steps $steps --warmup $warmup" >&2
ours="$("$MINICPM" bench train --config "$config" --steps "$steps" --warmup "$warmup" --json)"
echo "== pytorch: train_torch.py --config $config --steps $steps --warmup $warmup --threads $threads" >&2
theirs="$("$python" "$root/scripts/bench/train_torch.py" --config "$config" --steps "$steps" --warmup "$warmup" --threads "$threads" --json)"
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

"$python" - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
mib = lambda b: b / 2**20
print(f"minicpm  {ours['tokens_per_s']:8.0f} tok/s  peak RSS {mib(ours['peak_rss_bytes']):6.0f} MiB  "
      f"MFU {100 * ours['mfu']:.1f}% of {ours['gemm_peak_flops'] / 1e9:.0f} GFLOP/s GEMM")
print(f"pytorch  {theirs['tokens_per_s']:8.0f} tok/s  peak RSS {mib(theirs['peak_rss_bytes']):6.0f} MiB  "
      f"MFU {100 * theirs['mfu']:.1f}% of {theirs['gemm_peak_flops'] / 1e9:.0f} GFLOP/s GEMM")
print(f"ratio    {ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x tokens/s, "
      f"{ours['peak_rss_bytes'] / theirs['peak_rss_bytes']:.2f}x peak memory (minicpm / pytorch)")
PY
