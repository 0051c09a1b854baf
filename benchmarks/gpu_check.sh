#!/usr/bin/env bash
# Everything a GPU machine must check, in one run of at most 9 minutes:
#
#   once, where fastgan has trained:  mkdir -p data && cp ~/.cache/fastgan/mnist.npz ~/.cache/fastgan/classifier-mnist.pt data/
#   on the GPU machine:               OUT=gpu-check bash benchmarks/gpu_check.sh   (data/ beside it; no network needed)
#
# The summary opens with the card, its driver, and the torch, Triton and CUDA versions that ran.
# Steps, each under `timeout -k` and its own budget, none stopping the next: the GPU tests
# (the kernel, trainer and capture tests; tests/test_kernels_compile.py and the device-independent
# rest are left to CI), the per-launch breakdown of one iteration at batch 128 and 8192 with the default
# configs, the tuner (writes $OUT/configs.json, then installed as this card's table in
# kernels/configs/ for the steps after it: commit it from $OUT), the compile report of every launch
# at batch 128 and 8192 with this card's Triton and table (registers, spills: the kernels that
# the timings after it ran), the kernel benchmarks, the
# iteration benchmarks one cell (backend x batch) per process
# and per JSON file (a time-out loses one cell, not all), their report and chart, and the
# seed's full 1,000,000-iteration schedule, time-boxed: stopped with SIGINT (Ctrl-C: it writes
# a checkpoint) at its budget, with its it/s and the projected time of the whole schedule.
# Results are written as they come, to $OUT (at most 8 files come back): summary.txt, log.txt,
# bench.tgz (the per-cell JSONs and breakdown.json), configs.json, kernels.json, its.png,
# last_grid.png, full_losses.png.
#
#   bash benchmarks/gpu_check.sh --smoke   every step on the CPU with tiny sizes and budgets, on
#                                          synthetic data; .ci/run runs it so this script cannot rot
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
export FASTGAN_NATIVE=0  # the CPU twins from Python: their C++ build (kernels/native.py, ~25 s) is CI's to check, not this time-boxed run's
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
OUT=${OUT:-/tmp/fastgan-gpu-check}
WORK=$(mktemp -d)
mkdir -p "$OUT" "$WORK/bench" "$WORK/breakdown"
summary="$OUT/summary.txt"
log="$OUT/log.txt"
: > "$summary"
: > "$log"
say() { echo "$*" | tee -a "$summary"; }
FAILED=0  # steps that failed or timed out: the exit status, so CI's smoke run catches a rotten step

# The card, driver and versions first: the numbers below are theirs.
python3 -c "
import torch, triton
print('torch', torch.__version__, '| triton', triton.__version__, '| cuda', torch.version.cuda,
      '| cuda available', torch.cuda.is_available())" 2>&1 | tee -a "$summary"
if [ $SMOKE = 0 ]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | tee -a "$summary"
fi
if [ $SMOKE = 1 ]; then
    TOTAL=390; TESTS_BUDGET=60; BREAKDOWN_BUDGET=60; TUNE_BUDGET=120; REPORT_BUDGET=30; KERNELS_BUDGET=60; CELL_BUDGET=60
    CELLS_BUDGET=90; FULL_BUDGET=15
    REPORT_FLAGS=(--arch 90 --batch 8 --backend graph --precision ieee)
    TUNE_FLAGS=(--smoke --budget 40)  # stops timing new candidates after 40 s; the table holds what was timed
    BREAKDOWN_FLAGS=(--batch 8 --iters 1)
    DEVICE=cpu
    TESTS=(tests/test_kernels_adam.py)
    CELLS=("eager-128" "graph-8" "graph-8-2")
    DATA="$WORK/data"
    FULL_FLAGS=(--eval-every 2000000)  # no measurement within the box: no classifier to train on the CPU
    python3 -c "
import numpy as np, sys
from pathlib import Path
from fastgan.atomic import save_npz as save_cache
rng = np.random.default_rng(0)
save_cache(Path(sys.argv[1]) / 'mnist.npz', {
    'train_images': rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8),
    'train_labels': rng.integers(0, 10, 60000, dtype=np.uint8),
    'test_images': rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8),
    'test_labels': rng.integers(0, 10, 10000, dtype=np.uint8)})" "$DATA" >> "$log" 2>&1
    say "smoke mode: CPU, tiny sizes, synthetic data"
else
    TOTAL=540; TESTS_BUDGET=110; BREAKDOWN_BUDGET=40; TUNE_BUDGET=150; REPORT_BUDGET=40; KERNELS_BUDGET=30
    CELL_BUDGET=40; CELLS_BUDGET=95; FULL_BUDGET=45
    arch=$(python3 -c "import torch; c = torch.cuda.get_device_capability(); print(10 * c[0] + c[1])" 2>> "$log")
    REPORT_FLAGS=(--arch "${arch:-90}" --batch 128 8192 --backend graph --precision ieee tf32x3 tf32)
    TUNE_FLAGS=(--budget 120)
    BREAKDOWN_FLAGS=(--batch 128 8192)
    DEVICE=cuda
    # The tests that run differently on a GPU (compiled kernels, capture); the rest of the suite
    # (CLI, run folder, sweeps, data) is device-independent and passes in CI. Each new kernel
    # specialization compiles here (~1 s each): the whole suite would not fit the budget.
    TESTS=(tests/test_graph.py tests/test_kernels_linear_act.py tests/test_kernels_d_grad.py tests/test_kernels_d_input_grad.py
           tests/test_kernels_adam.py tests/test_kernels_sigmoid_bce.py tests/test_kernels_configs.py tests/test_kernels_ops.py
           tests/test_sites.py)
    # Most telling first: a time-out drops the cells at the end (torch.compile's are the slowest).
    # backend-batch: one GAN; backend-batch-runs: that many GANs in one trainer (a sweep).
    CELLS=(graph-128 eager_cudagraph-128 eager-128 graph-1024 graph-8192 graph-128-8 graph-128-64 eager_cudagraph-1024
           eager_cudagraph-8192 fused-128 eager-1024 eager-8192 fused-128-8 eager-128-8 fused-1024 fused-8192
           compile-128 compile-1024 compile-8192)
    DATA=data
    FULL_FLAGS=()
fi

# budget SECONDS: the step's limit, cut to what is left of TOTAL (keeping 20 s for the end).
budget() { local left=$((TOTAL - 20 - SECONDS)); [ "$1" -lt "$left" ] && echo "$1" || echo $((left > 0 ? left : 0)); }
step() {  # step NAME LIMIT COMMAND...: run under timeout, log, one summary line
    local name=$1 limit=$2; shift 2
    if [ "$limit" -le 5 ]; then say "$name: skipped (out of time)"; FAILED=$((FAILED + 1)); return 0; fi
    local t0=$SECONDS
    echo "== $name (limit ${limit}s): $*" >> "$log"
    timeout -k 10 "$limit" "$@" >> "$log" 2>&1
    local rc=$?
    local how="rc=$rc"
    [ $rc = 124 ] || [ $rc = 137 ] && how="TIMED OUT at ${limit}s"
    [ $rc = 0 ] || FAILED=$((FAILED + 1))
    say "$name: $how, $((SECONDS - t0)) s"
    return 0
}

say "== tests"
step tests "$(budget $TESTS_BUDGET)" python3 -m pytest -q -p no:cacheprovider "${TESTS[@]}"
grep -E "passed|failed|error" "$log" | tail -n 1 | tee -a "$summary"

say "== where one iteration's time goes (default configs)"
step breakdown "$(budget $BREAKDOWN_BUDGET)" python3 -m benchmarks.breakdown "${BREAKDOWN_FLAGS[@]}" \
    --json "$WORK/breakdown/breakdown.json"
[ -s "$WORK/breakdown/breakdown.json" ] && python3 -c "
import json, sys
from benchmarks.breakdown import markdown
print(markdown(json.load(open(sys.argv[1]))))" "$WORK/breakdown/breakdown.json" >> "$summary" 2>> "$log"
tar czf "$OUT/bench.tgz" -C "$WORK" bench breakdown

say "== tuner (its table is used by the steps after it)"
step tune "$(budget $TUNE_BUDGET)" python3 -m benchmarks.tune "${TUNE_FLAGS[@]}" --out "$OUT/configs.json"
grep -E "^wrote|budget spent" "$log" | tail -n 2 | tee -a "$summary"
if [ $SMOKE = 0 ] && [ -s "$OUT/configs.json" ]; then
    python3 -c "
import shutil, sys, torch
from fastgan.kernels import configs
shutil.copy(sys.argv[1], configs.device_file(torch.cuda.get_device_name()))" "$OUT/configs.json" >> "$log" 2>&1 \
        && say "installed as this card's table" || { say "could not install the tuned table"; FAILED=$((FAILED + 1)); }
fi

say "== compile report: every launch with this Triton$([ -s "$OUT/configs.json" ] && echo " and the tuned table")"
[ -s "$OUT/configs.json" ] && REPORT_FLAGS+=(--table "$OUT/configs.json")
step kernel_report "$(budget $REPORT_BUDGET)" python3 -m benchmarks.kernel_report "${REPORT_FLAGS[@]}" \
    --out "$WORK/kernel_report.md"
cat "$WORK/kernel_report.md" >> "$summary" 2>/dev/null

say "== kernel benchmarks"
step kernels "$(budget $KERNELS_BUDGET)" python3 -m pytest -q -p no:cacheprovider benchmarks/test_kernels.py \
    --benchmark-json="$OUT/kernels.json"

say "== iteration benchmarks, one cell per process"
cells_end=$((SECONDS + CELLS_BUDGET))
for cell in "${CELLS[@]}"; do
    left=$((cells_end - SECONDS))
    limit=$(budget $((CELL_BUDGET < left ? CELL_BUDGET : left)))
    test=test_iteration
    [[ $cell == *-*-* ]] && test=test_iteration_runs
    step "cell $cell" "$limit" python3 -m pytest -q -p no:cacheprovider "benchmarks/test_iteration.py::$test[$cell]" \
        --benchmark-json="$WORK/bench/$cell.json"
    tar czf "$OUT/bench.tgz" -C "$WORK" bench breakdown
done
jsons=$(find "$WORK/bench" -name '*.json' -size +0 | sort)
if [ -n "$jsons" ]; then
    # shellcheck disable=SC2086
    timeout -k 5 60 python3 -m benchmarks.report $jsons --chart "$OUT/its.png" 2>> "$log" | tee -a "$summary"
    [ "${PIPESTATUS[0]}" = 0 ] || { say "report failed: see log.txt"; FAILED=$((FAILED + 1)); }
else
    say "no benchmark cell produced results"; FAILED=$((FAILED + 1))
fi

say "== the seed's full schedule (1,000,000 iterations), time-boxed at $(budget $FULL_BUDGET) s"
run_dir="$WORK/full"
limit=$(budget $FULL_BUDGET)
t0=$SECONDS
# SIGINT is Ctrl-C: the run writes a checkpoint and stops; -k kills it if it does not within 15 s.
timeout -s INT -k 15 "$limit" python3 train.py --out "$run_dir" --data-dir "$DATA" --device "$DEVICE" "${FULL_FLAGS[@]}" >> "$log" 2>&1
rc=$?
wall=$((SECONDS - t0))
[ $rc = 0 ] || [ $rc = 124 ] || FAILED=$((FAILED + 1))  # 124: stopped by the time box, as planned
python3 - "$run_dir/metrics.jsonl" "$rc" "$wall" <<'EOF' | tee -a "$summary"
import json, sys
path, rc, wall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    rows = [json.loads(x) for x in open(path) if x.strip()]
except OSError:
    rows = []
losses = [r for r in rows if "its_per_s" in r]
if not losses:
    print(f"full run: rc={rc}, {wall} s, no iteration logged")
    sys.exit()
last = losses[-1]
steady = sorted(r["its_per_s"] for r in losses[len(losses) // 5:])  # past the start-up intervals
its = steady[len(steady) // 2]
done = last["iter"] >= 1_000_000
print(f"full run: rc={rc}, wall {wall} s, reached iteration {last['iter']:,}, median {its:,.0f} it/s past start-up"
      + ("" if done else f"; projected full schedule {1_000_000 / its:,.0f} s ({1_000_000 / its / 60:.1f} min)"))
print(f"last losses: d {last['d_loss']:.4f} g {last['g_loss']:.4f}")
for r in rows:
    if "fd" in r:
        print(f"measurement at {r['iter']:,}: FD {r['fd']:.1f}, score {r['score']:.2f}, class KL {r['class_kl']:.3f}")
EOF
last=$(ls "$run_dir/samples" 2>/dev/null | tail -n 1)
[ -n "$last" ] && cp "$run_dir/samples/$last" "$OUT/last_grid.png"
cp "$run_dir/losses.png" "$OUT/full_losses.png" 2>/dev/null
say "total $SECONDS s, $FAILED step(s) failed"
rm -rf "$WORK"
[ "$FAILED" = 0 ]
