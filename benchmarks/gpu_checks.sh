#!/usr/bin/env bash
# The GPU checks of the project, as one script with a time budget: a smoke run, then
# `drpo-rl bench --preset paper` (both scenarios, every algorithm, 5 seeds), then the
# throughput benchmarks at GPU scale (stacked runs included), each only while the budget
# lasts.
#
#   benchmarks/gpu_checks.sh RESULTS_DIR [BUDGET_SECONDS] [DEVICE] [WORKERS]
#
# The paper benchmark writes RESULTS_DIR/paper-<device>; a second call with the same
# folder resumes it (finished runs are skipped, logs are regenerated from their seeds).
# Output: each step's console output, RESULTS_DIR/paper-<device>.tar.gz (the benchmark
# folder without its logs) and paper-<device>-records.tar.gz (without the weights either).
# DEVICE=cpu runs the same steps at small sizes, to test the script.
set -uo pipefail
out=${1:?usage: gpu_checks.sh RESULTS_DIR [BUDGET_SECONDS] [DEVICE] [WORKERS]}
budget=${2:-540}
device=${3:-cuda}
workers=${4:-14}
python=${PYTHON:-python}
export PYTHONUNBUFFERED=1
mkdir -p "$out"
bench_dir="$out/paper-$device"

if [ "$device" = cpu ]; then # sizes that test the script in a minute
  paper=(--preset tiny --scenarios medium,extreme --seeds 2)
  users=(--num-users 20000)
  rows=20000
  scale=(--users 4096 --items 100 10000)
else
  paper=(--preset paper)
  users=(--num-users 1000000)
  rows=10000000
  # Catalogue scale on the GPU: 8M users at 100 items (target >= 1B user-steps/s), 1M
  # users decoding exactly over 1M items.
  scale=(--users 1048576 8388608 --items 100 1000000)
fi

step() { echo; echo "=== [+${SECONDS}s] $*"; }
# within R CMD...: run CMD for the budget left after keeping R seconds in reserve, or skip it.
within() {
  local t=$((budget - SECONDS - $1))
  shift
  if [ "$t" -lt 10 ]; then echo "skipped: out of time"; return 124; fi
  timeout --kill-after=10 "$t" "$@"
}
cli() { "$python" -m drpo_rl.cli "$@"; }

step environment
nvidia-smi -L 2>/dev/null
"$python" -c "
import sys, torch, torchrl, tensordict, gymnasium
print(sys.version.split()[0], 'torch', torch.__version__, 'torchrl', torchrl.__version__,
      'tensordict', tensordict.__version__, 'gymnasium', gymnasium.__version__)
print('cuda available:', torch.cuda.is_available(), torch.cuda.device_count())
" || exit 1

step smoke: tiny benchmark on "$device"
cli bench --preset tiny --device "$device" --out "$out/tiny" --no-plots --no-progress || exit 1

# The main job (runs of one algorithm stacked, the default), with 105 s kept for the
# throughput benchmarks and the archive.
step "paper benchmark on $device ($workers workers)"
within 105 "$python" -m drpo_rl.cli bench "${paper[@]}" --device "$device" --workers "$workers" \
  --out "$bench_dir" --no-progress
echo "bench exit code: $? (124: stopped by the budget; re-run to resume)"
echo "finished runs: $(find "$bench_dir/runs" -name 'seed-*.json' 2>/dev/null | wc -l)"
# Two archives: everything but the logs, and the records alone (small, if weights are many).
tar -czf "$bench_dir.tar.gz" -C "$out" --exclude=logs "paper-$device"
tar -czf "$bench_dir-records.tar.gz" -C "$out" --exclude=logs --exclude='*.pt' "paper-$device"
ls -l "$bench_dir"*.tar.gz

step stacked runs: runs x steps per second of stacks of 1, 8, 64 against one run
within 90 "$python" benchmarks/stacked_runs.py --device "$device" --algorithms drpo awr \
  --stacks 1 8 64 --steps 20
step evaluation throughput
within 60 "$python" benchmarks/eval_throughput.py --device "$device" "${users[@]}"
step environment throughput
within 40 "$python" benchmarks/env_throughput.py --device "$device" "${users[@]}" \
  --skip-gym --seconds 2
step catalogue scale
within 30 "$python" benchmarks/catalogue_scale.py --device "$device" "${scale[@]}" --seconds 2
step DRPO update step
within 20 "$python" benchmarks/drpo_update_step.py --device "$device" --seconds 1
step logging throughput
within 5 "$python" benchmarks/log_throughput.py --device "$device" \
  --generate-rows "$rows"
step DRPO update step, compiled
within 5 "$python" benchmarks/drpo_update_step.py --device "$device" --seconds 1 --compile
step done
