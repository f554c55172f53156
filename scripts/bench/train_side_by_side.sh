#!/usr/bin/env bash
# Trains the same model for the same steps with `minicpm bench train` and with PyTorch eager in
# two forms (transformers' Granite model, and MiniCPM in plain modules with
# scaled_dot_product_attention), back to back on the same threads, and prints the three tokens/s
# and peak memories, with our ratios against the faster PyTorch.
#
#   scripts/bench/train_side_by_side.sh d256|d512|CONFIG.toml [STEPS] [WARMUP]
#
# Environment: MINICPM (the binary; default: a release build made here), PYTHON (default: the
# reference venv, scripts/reference/setup.sh), THREADS (default 2), ROUNDS (default 1): the three
# columns run in turn ROUNDS times, each round's ratio is against that round's faster PyTorch,
# and the last line gives the median and range of the ratios. This machine's speed drifts by
# tens of percent within minutes, so one round's ratio says little; alternating rounds sample
# the drift alike for every column. MINICPM_ARGS and TORCH_ARGS add arguments to our command and
# to both PyTorch runs, e.g. MINICPM_ARGS="--set train.micro_batch=4 --set train.lanes=2" (the
# same update, two micro-batches side by side) or TORCH_ARGS="--procs 2";
# MINICPM_ARGS="--set train.matmul=bf16" TORCH_ARGS="--bf16" compares the two bf16 options.
#
# On an AMD CPU, PyTorch runs with mkl_any_cpu.c preloaded, so that its MKL uses the kernels it
# would use on an Intel CPU with the same instruction sets (more than twice as fast on an AMD
# CPU with AVX-512); TORCH_MKL_ANY_CPU=0 runs PyTorch as installed.
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
torch_preload=""
if grep -q -m1 AuthenticAMD /proc/cpuinfo && [ "${TORCH_MKL_ANY_CPU:-1}" != 0 ]; then
    shim_dir="$(mktemp -d)"
    trap 'rm -rf "$shim_dir"' EXIT
    cc -shared -fPIC -O2 -o "$shim_dir/libmkl_any_cpu.so" "$root/scripts/bench/mkl_any_cpu.c"
    torch_preload="$shim_dir/libmkl_any_cpu.so"
    echo "== AMD CPU: PyTorch runs with MKL's vendor check answered yes (mkl_any_cpu.c)" >&2
fi
rounds="${ROUNDS:-1}"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "error: ROUNDS=$rounds: expected a positive whole number" >&2; exit 2; }
torch_step() {
    echo "== pytorch: train_torch.py --model $1 --config $config --steps $steps --warmup $warmup --threads $threads ${TORCH_ARGS:-}" >&2
    # shellcheck disable=SC2086 # the extra arguments split on spaces
    LD_PRELOAD="$torch_preload" "$python" "$root/scripts/bench/train_torch.py" --model "$1" --config "$config" \
        --steps "$steps" --warmup "$warmup" --threads "$threads" --json ${TORCH_ARGS:-}
}
results=()
for round in $(seq "$rounds"); do
    echo "== round $round of $rounds, $(date -u +%FT%TZ), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    echo "== minicpm bench train --config $config --steps $steps --warmup $warmup ${MINICPM_ARGS:-}" >&2
    # shellcheck disable=SC2086 # the extra arguments split on spaces
    results+=("$("$MINICPM" bench train --config "$config" --steps "$steps" --warmup "$warmup" --json ${MINICPM_ARGS:-})")
    results+=("$(torch_step granite)")
    results+=("$(torch_step plain)")
done
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

"$python" - "${results[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
mib = lambda b: b / 2**20
ratios = []
for i in range(0, len(runs), 3):
    ours, granite, plain = runs[i:i + 3]
    if len(runs) > 3:
        print(f"-- round {i // 3 + 1}")
    for name, r in (("minicpm", ours), ("pytorch granite", granite), ("pytorch plain", plain)):
        print(f"{name:<16} {r['tokens_per_s']:8.0f} tok/s  peak RSS {mib(r['peak_rss_bytes']):6.0f} MiB  "
              f"MFU {100 * r['mfu']:.1f}% of {r['gemm_peak_flops'] / 1e9:.0f} GFLOP/s GEMM")
    print(f"{'':<16} FMA peak {ours['fma_peak_flops'] / 1e9:.0f} GFLOP/s ({ours['fma_isa']}): "
          f"minicpm MFU {100 * ours['mfu_fma']:.1f}%, pytorch plain {100 * plain['achieved_flops'] / ours['fma_peak_flops']:.1f}%")
    fastest = max((granite, plain), key=lambda r: r["tokens_per_s"])
    name = "plain" if fastest is plain else "granite"
    ratio = ours['tokens_per_s'] / fastest['tokens_per_s']
    ratios.append(ratio)
    print(f"ratio against the fastest pytorch ({name}): {ratio:.2f}x tokens/s, "
          f"{ours['peak_rss_bytes'] / fastest['peak_rss_bytes']:.2f}x peak memory")
if len(ratios) > 1:
    print(f"over {len(ratios)} rounds: median {statistics.median(ratios):.2f}x, "
          f"range {min(ratios):.2f}-{max(ratios):.2f}x")
PY
