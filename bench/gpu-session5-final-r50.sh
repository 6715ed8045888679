#!/usr/bin/env bash
# Session 5 final bench, ResNet-50 on one GPU in one device call: torch.compile max-autotune bs256 and eager bs1/256
# (fp16), then tsrt at --opt-level 3 from a cold timing cache: fp16 and int8 (precision by timing, random-weight
# calibration scales) at bs256 in one process, and an fp16 rebuild from the timing cache. Every tsrt engine's
# sample 0 is checked against PyTorch's fp32 output (vs_pytorch).
#   (dist/ built here and carried with .gpu/)  source .gpu/enter && bash bench/gpu-session5-final-r50.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
T="timeout -k 5"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
(python3 bench/export.py $M resnet50 > /dev/null 2>&1 || echo "export failed" >> "$L") &
$T 280 python3 .gpu/models.py peers --model resnet50 --batch 256 --dtype fp16 --modes compile --json "$OUT/peers_r50_compile.json" 2>&1 | grep '^{"model' >> "$L"
$T 60 python3 .gpu/models.py peers --model resnet50 --batch 1,256 --dtype fp16 --modes eager --json "$OUT/peers_r50_eager.json" 2>&1 | grep '^{' >> "$L"
wait
$T 170 node bench/bench.mjs $M/resnet50/model.onnx 256 --fp16 --int8 --opt-level 3 --timing-cache $TC --json "$OUT/tsrt_r50.json" 2>&1 | cut -c1-700 >> "$L"
echo "-- rebuild from the timing cache" >> "$L"
$T 30 node bench/bench.mjs $M/resnet50/model.onnx 256 --fp16 --opt-level 3 --timing-cache $TC --json "$OUT/tsrt_r50_cached.json" 2>&1 | cut -c1-400 >> "$L"
cp $TC "$OUT/timing-cache.json"
cat "$L"
