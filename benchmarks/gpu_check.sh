#!/usr/bin/env bash
# Everything a lent GPU must check, in one device call (the device tool's 15 minutes):
#   device run, carry ["data"], command: bash benchmarks/gpu_check.sh
# Before the call, here: put the MNIST cache (and the classifier cache, if any) in ./data:
#   mkdir -p data && cp ~/.cache/fastgan/mnist.npz ~/.cache/fastgan/classifier-mnist.pt data/
# Results land in $OUT (7 files, within the tool's 8): summary.txt, log.txt, bench.json, its.png,
# full_measurements.jsonl, last_grid.png, full_losses.png.
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/fastgan-gpu-check}
mkdir -p "$OUT"
summary="$OUT/summary.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$summary"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$summary"

echo "== tests" | tee -a "$summary"
timeout 240 python3 -m pytest -q -x tests > "$OUT/tests.txt" 2>&1
echo "tests rc=$?: $(tail -n 1 "$OUT/tests.txt")" | tee -a "$summary"
cat "$OUT/tests.txt" >> "$OUT/log.txt" && rm "$OUT/tests.txt"

echo "== benchmarks" | tee -a "$summary"
timeout 240 python3 -m pytest -q benchmarks --benchmark-json="$OUT/bench.json" >> "$OUT/log.txt" 2>&1
echo "benchmarks rc=$?" | tee -a "$summary"
python3 -m benchmarks.report "$OUT/bench.json" --chart "$OUT/its.png" >> "$summary" 2>&1

echo "== the seed's full schedule (1,000,000 iterations)" | tee -a "$summary"
start=$(date +%s.%N)
timeout 150 python3 train.py --out /tmp/full --data-dir data >> "$OUT/log.txt" 2>&1
rc=$?
end=$(date +%s.%N)
echo "full run rc=$rc wall $(python3 -c "print(round($end - $start, 1))") s" | tee -a "$summary"
tail -n 3 /tmp/full/metrics.jsonl >> "$summary" 2>/dev/null
grep '"fd"' /tmp/full/metrics.jsonl > "$OUT/full_measurements.jsonl" 2>/dev/null
last=$(ls /tmp/full/samples 2>/dev/null | tail -n 1)
[ -n "$last" ] && cp "/tmp/full/samples/$last" "$OUT/last_grid.png"
cp /tmp/full/losses.png "$OUT/full_losses.png" 2>/dev/null
cat "$summary"
