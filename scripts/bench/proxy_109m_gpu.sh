#!/usr/bin/env bash
# Tokens/s and MFU of the 109M wind-tunnel proxy (configs/proxy-109m.toml) on one NVIDIA GPU:
# minicpm built with `--features cuda`, then PyTorch eager on the same card, back to back.
#
#   scripts/bench/proxy_109m_gpu.sh [STEPS] [WARMUP]
#
# Shape: 8 sequences of 1,024 tokens per update (no accumulation), f32 on both sides. MFU is
# quoted against each stack's own f32 matmul at the MLP's shape, measured in the same process,
# and the model FLOPs formula is the one `minicpm bench train` prints.
# Environment: PYTHON (default: the reference venv; needs a CUDA build of torch), MINICPM (default:
# a release build with the cuda feature made here).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
steps="${1:-20}"
warmup="${2:-3}"
config="$root/configs/proxy-109m.toml"
shape=(--set train.steps=100 --set train.micro_batch=8 --set train.seq_len=1024 --set train.batch_tokens=8192)
python="${PYTHON:-$root/scripts/reference/.venv/bin/python}"
if [ -z "${MINICPM:-}" ]; then
    (cd "$root" && cargo build --release -q -p minicpm-cli --features cuda)
    MINICPM="${CARGO_TARGET_DIR:-$root/target}/release/minicpm"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true

# The PyTorch script reads [train] from the TOML file, so give it the same shape in a copy.
torch_config="$(mktemp --suffix=.toml)"
trap 'rm -f "$torch_config"' EXIT
cat "$config" > "$torch_config"
printf '\n[train]\nsteps = 100\nmicro_batch = 8\nseq_len = 1024\nbatch_tokens = 8192\n' >> "$torch_config"

echo "== minicpm bench train --device cuda --config $config ${shape[*]}" >&2
ours="$("$MINICPM" bench train --device cuda --config "$config" "${shape[@]}" \
    --steps "$steps" --warmup "$warmup" --json)"
echo "== pytorch: train_torch.py --device cuda" >&2
theirs="$("$python" "$root/scripts/bench/train_torch.py" --device cuda --config "$torch_config" \
    --steps "$steps" --warmup "$warmup" --json)"

"$python" - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name, r in (("minicpm", ours), ("pytorch", theirs)):
    print(f"{name}  {r['tokens_per_s']:10.0f} tok/s  {r['achieved_flops'] / 1e12:6.2f} TFLOP/s  "
          f"MFU {100 * r['mfu']:.1f}% of {r['gemm_peak_flops'] / 1e12:.1f} TFLOP/s f32 GEMM")
print(f"ratio    {ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x tokens/s (minicpm / pytorch)")
PY
