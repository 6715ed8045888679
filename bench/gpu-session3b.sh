#!/usr/bin/env bash
# Session 3: every mma.sync and wgmma config on ResNet-50 bs256's memory-bound 1x1 convs and the stem (which
# kernels come near the memory roofline), then the bs256 engine profile with shared memory capped to the stages used.
#   source .gpu/enter && bash bench/gpu-session3b.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
(python3 bench/export.py $M resnet50 > /dev/null 2>&1 || echo "export failed") &
timeout 300 node scripts/gpu-wgmma-check.mjs --filter=rn50_bs256_1x1 --mma --all-configs --iters=10 --budget-s=240 > "$OUT/sweep_1x1.txt" 2>&1
timeout 100 node scripts/gpu-wgmma-check.mjs --filter=stem --mma --all-configs --iters=5 --budget-s=60 > "$OUT/sweep_stem.txt" 2>&1
grep -A40 '==== summary' "$OUT/sweep_1x1.txt" "$OUT/sweep_stem.txt"
wait
node scripts/gpu-profile.mjs $M/resnet50/model.onnx --batch 256 --json "$OUT/prof_r50_256.json" --top 25
