#!/usr/bin/env bash
# Session 3 correctness call: the GPU suite (conformance on CUDA, shared models, exported models vs PyTorch, concat
# in place, engine files), then the bf16, QLinear-int8 and wgmma kernel checks on the GPU.
#   source .gpu/enter && bash bench/gpu-session3e.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/export.py $M resnet50 bert-base 2>&1 | grep '^{' | cut -c1-80
timeout 200 node scripts/test-gpu.mjs --tests .gpu/onnx-tests --models $M > "$OUT/test-gpu.txt" 2>&1; echo "test-gpu rc $?"
grep -E "^(FAIL|not ok)|passed, " "$OUT/test-gpu.txt" | head -20
timeout 100 node scripts/gpu-bf16.mjs --part=kernels,families --budget-s=90 > "$OUT/bf16.txt" 2>&1; echo "bf16 rc $?"; grep -E "^FAIL|passed|failed" "$OUT/bf16.txt" | head
timeout 60 node scripts/gpu-qlinear.mjs > "$OUT/qlinear.txt" 2>&1; echo "qlinear rc $?"; grep -E "^FAIL|passed|failed" "$OUT/qlinear.txt" | tail -3
timeout 60 node scripts/gpu-int8-kernels.mjs --filter=qlinear > "$OUT/int8k.txt" 2>&1; echo "int8 kernels rc $?"; grep -E "^FAIL|passed|failed" "$OUT/int8k.txt" | tail -3
timeout 70 node scripts/gpu-wgmma-check.mjs --filter=odd --iters=3 --budget-s=60 > "$OUT/wgmma.txt" 2>&1; echo "wgmma rc $?"; grep -E "^FAIL|passed, " "$OUT/wgmma.txt" | head
timeout 110 node scripts/gpu-bf16.mjs --part=models > "$OUT/bf16_models.txt" 2>&1; echo "bf16 models rc $?"; grep -E "^(PASS|FAIL)|passed|failed" "$OUT/bf16_models.txt" | tail -8
