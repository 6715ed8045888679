#!/usr/bin/env bash
# Session 3: ResNet-50 with the persistent-kernel fix (stem A/B, bs256 profile), then correctness: the GPU suite,
# QLinear int8, bf16 kernels/families, strided concat placement.
#   source .gpu/enter && bash bench/gpu-session3g.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
T="timeout -k 5"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
python3 bench/export.py $M resnet50 bert-base > /dev/null 2>&1 || echo "export failed" >> "$L"
$T 130 node scripts/gpu-stem-s2d.mjs $M/resnet50/model.onnx --batch 256 --opt-level 3 > "$OUT/stem.txt" 2>&1; echo "stem rc $?" >> "$L"; tail -14 "$OUT/stem.txt" >> "$L"
$T 100 node scripts/gpu-profile.mjs $M/resnet50/model.onnx --batch 256 --timing-cache $TC --json "$OUT/prof_r50_256.json" --top 12 >> "$L" 2>&1
$T 40 node scripts/gpu-qlinear.mjs > "$OUT/qlinear.txt" 2>&1; echo "qlinear rc $?" >> "$L"; grep -E "^FAIL|passed|failed" "$OUT/qlinear.txt" | tail -3 >> "$L"
$T 60 node scripts/gpu-bf16.mjs --part=kernels,families --budget-s=50 > "$OUT/bf16.txt" 2>&1; echo "bf16 rc $?" >> "$L"; grep -E "^FAIL|passed|failed" "$OUT/bf16.txt" | tail -5 >> "$L"
$T 40 node scripts/gpu-concat-strided.mjs --batch 8 > "$OUT/concat.txt" 2>&1; echo "concat rc $?" >> "$L"; grep -E "^FAIL|passed|failed" "$OUT/concat.txt" | tail -3 >> "$L"
$T 200 node scripts/test-gpu.mjs --tests .gpu/onnx-tests --models $M > "$OUT/test-gpu.txt" 2>&1; echo "test-gpu rc $?" >> "$L"
echo "test-gpu: $(grep -c '^PASS' "$OUT/test-gpu.txt") PASS lines, $(grep -c '^FAIL' "$OUT/test-gpu.txt") FAIL lines" >> "$L"; grep -E "^FAIL|passed, " "$OUT/test-gpu.txt" | head -12 >> "$L"
cp $TC "$OUT/timing-cache.json"
cat "$L"
