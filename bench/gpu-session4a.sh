#!/usr/bin/env bash
# Session 4, first look: per-kernel profiles of ResNet-50 bs256 in fp16 (level 3, which now also times the best
# persistent <=128x128 tile for K<=256) and in int8 (where its 8.2 ms go), and the fp16 engine at level 4.
#   source .gpu/enter && bash bench/gpu-session4a.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
T="timeout -k 5"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
python3 bench/export.py $M resnet50 > /dev/null 2>&1 || echo "export failed" >> "$L"
s=$SECONDS
$T 150 node scripts/gpu-profile.mjs $M/resnet50/model.onnx --batch 256 --timing-cache $TC --json "$OUT/prof_fp16.json" --top 12 >> "$L" 2>&1
echo "fp16 level 3 cold build+profile $((SECONDS - s)) s" >> "$L"
s=$SECONDS
$T 150 node scripts/gpu-profile.mjs $M/resnet50/model.onnx --batch 256 --int8 --timing-cache $TC --json "$OUT/prof_int8.json" --top 25 >> "$L" 2>&1
echo "int8 level 3 build+profile $((SECONDS - s)) s" >> "$L"
s=$SECONDS
$T 200 node scripts/gpu-profile.mjs $M/resnet50/model.onnx --batch 256 --opt-level 4 --timing-cache /tmp/tc4.json --json "$OUT/prof_fp16_l4.json" --top 12 >> "$L" 2>&1
echo "fp16 level 4 cold build+profile $((SECONDS - s)) s" >> "$L"
cat "$L"
