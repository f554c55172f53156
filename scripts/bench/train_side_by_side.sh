#!/usr/bin/env bash
# Trains the same model for the same steps with `minicpm bench train` and with PyTorch eager in
# two forms (transformers' Granite model, and MiniCPM in plain modules with
# scaled_dot_product_attention), back to back on the same threads, and prints each column's
# tokens/s and peak memory, with our ratios against the fastest PyTorch column.
#
#   scripts/bench/train_side_by_side.sh d256|d512|CONFIG.toml [STEPS] [WARMUP]
#
# Environment: MINICPM (the binary; default: a release build made here), PYTHON (default: the
# reference venv, scripts/reference/setup.sh), THREADS (default 2), ROUNDS (default 1): the
# columns run in turn ROUNDS times, each round's ratios are against that round's fastest PyTorch
# column, and the last lines give the median and range of the ratios. This machine's speed
# drifts by tens of percent within minutes, so one round's ratio says little; alternating rounds
# sample the drift alike for every column. MINICPM_ARGS and TORCH_ARGS add arguments to our
# command and to both PyTorch runs, e.g. MINICPM_ARGS="--set train.micro_batch=4 --set
# train.lanes=2" (the same update, two micro-batches side by side) or TORCH_ARGS="--procs 2".
# Either may list several configurations separated by '|', each a column of its own (an empty
# one first is the default): MINICPM_ARGS="|--set train.matmul=bf16" TORCH_ARGS="|--bf16" runs
# both sides in f32 and in bf16, and quotes each of ours against the fastest of all four PyTorch
# columns.
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
# Each side's configurations: the arguments split at '|' (at least one, possibly empty).
IFS='|' read -r -a ours_args <<< "${MINICPM_ARGS:-}"
IFS='|' read -r -a torch_args <<< "${TORCH_ARGS:-}"
[ "${#ours_args[@]}" -gt 0 ] || ours_args=("")
[ "${#torch_args[@]}" -gt 0 ] || torch_args=("")
torch_step() {
    echo "== pytorch: train_torch.py --model $1 --config $config --steps $steps --warmup $warmup --threads $threads $2" >&2
    # shellcheck disable=SC2086 # the extra arguments split on spaces
    LD_PRELOAD="$torch_preload" "$python" "$root/scripts/bench/train_torch.py" --model "$1" --config "$config" \
        --steps "$steps" --warmup "$warmup" --threads "$threads" --json $2
}
results=()
for round in $(seq "$rounds"); do
    echo "== round $round of $rounds, $(date -u +%FT%TZ), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    for args in "${ours_args[@]}"; do
        echo "== minicpm bench train --config $config --steps $steps --warmup $warmup $args" >&2
        # shellcheck disable=SC2086 # the extra arguments split on spaces
        results+=("$("$MINICPM" bench train --config "$config" --steps "$steps" --warmup "$warmup" --json $args)")
    done
    for args in "${torch_args[@]}"; do
        results+=("$(torch_step granite "$args")")
        results+=("$(torch_step plain "$args")")
    done
done
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# The summary reads each side's configurations (a count, then the arguments), then the results.
"$python" - "${#ours_args[@]}" "${ours_args[@]}" "${#torch_args[@]}" "${torch_args[@]}" "${results[@]}" <<'PY'
import json, statistics, sys
argv = sys.argv[1:]
n_ours = int(argv[0])
ours_args, argv = argv[1:1 + n_ours], argv[1 + n_ours:]
n_torch = int(argv[0])
torch_args, runs = argv[1:1 + n_torch], [json.loads(a) for a in argv[1 + n_torch:]]
mib = lambda b: b / 2**20
label = lambda args: f" [{args.strip()}]" if args.strip() else ""
ours_names = [f"minicpm{label(a)}" for a in ours_args]
torch_names = [f"pytorch {model}{label(a)}" for a in torch_args for model in ("granite", "plain")]
per_round = len(ours_names) + len(torch_names)
ratios = [[] for _ in ours_names]
for i in range(0, len(runs), per_round):
    ours, torch = runs[i:i + len(ours_names)], runs[i + len(ours_names):i + per_round]
    if len(runs) > per_round:
        print(f"-- round {i // per_round + 1}")
    width = max(map(len, ours_names + torch_names))
    for name, r in zip(ours_names + torch_names, ours + torch):
        print(f"{name:<{width}} {r['tokens_per_s']:8.0f} tok/s  peak RSS {mib(r['peak_rss_bytes']):6.0f} MiB  "
              f"MFU {100 * r['mfu']:.1f}% of {r['gemm_peak_flops'] / 1e9:.0f} GFLOP/s GEMM")
    fastest = max(range(len(torch)), key=lambda j: torch[j]["tokens_per_s"])
    # The first configuration's plain PyTorch, for MFU against our measured FMA peak.
    plain = torch[1]
    for name, r, rs in zip(ours_names, ours, ratios):
        print(f"{name}: FMA peak {r['fma_peak_flops'] / 1e9:.0f} GFLOP/s ({r['fma_isa']}), "
              f"MFU {100 * r['mfu_fma']:.1f}%; {torch_names[1]} "
              f"{100 * plain['achieved_flops'] / r['fma_peak_flops']:.1f}%")
        ratio = r['tokens_per_s'] / torch[fastest]['tokens_per_s']
        rs.append(ratio)
        print(f"{name} against the fastest ({torch_names[fastest]}): {ratio:.2f}x tokens/s, "
              f"{r['peak_rss_bytes'] / torch[fastest]['peak_rss_bytes']:.2f}x peak memory")
for name, rs in zip(ours_names, ratios):
    if len(rs) > 1:
        print(f"{name} over {len(rs)} rounds: median {statistics.median(rs):.2f}x, "
              f"range {min(rs):.2f}-{max(rs):.2f}x")
PY
