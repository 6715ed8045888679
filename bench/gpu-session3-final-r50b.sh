#!/usr/bin/env bash
# Session 3, last ResNet-50 bs256 call: tsrt fp16 --opt-level 3 (cold tuning, with the double-buffering persistent
# candidate for K <= 256) against torch.compile max-autotune in the same call; sample 0 checked against PyTorch.
#   source .gpu/enter && bash bench/gpu-session3-final-r50b.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
T="timeout -k 5"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
python3 bench/export.py $M resnet50 > /dev/null 2>&1 || echo "export failed" >> "$L"
$T 90 node bench/bench.mjs $M/resnet50/model.onnx 256 --fp16 --opt-level 3 --timing-cache $TC --json "$OUT/tsrt_r50.json" 2>&1 | cut -c1-600 >> "$L"
$T 30 node scripts/gpu-profile.mjs $M/resnet50/model.onnx --batch 256 --timing-cache $TC --json "$OUT/prof_r50_256.json" --top 6 >> "$L" 2>&1
$T 275 python3 .gpu/models.py peers --model resnet50 --batch 256 --dtype fp16 --modes compile --json "$OUT/peers_r50_compile.json" 2>&1 | grep '^{"model' >> "$L"
cp $TC "$OUT/timing-cache.json"
cat "$L"
