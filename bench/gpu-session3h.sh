#!/usr/bin/env bash
# Session 3: the double-buffered persistent kernels checked (float64 / mma.sync references) and profiled on
# ResNet-50 bs256; int8 vs fp16 at bs256 (same process), bf16 models vs fp32, ViT-B/16; level-3 engines' sample 0
# against PyTorch's fp32 output (bench.mjs vs_pytorch).
#   source .gpu/enter && bash bench/gpu-session3h.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
T="timeout -k 5"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
(python3 bench/export.py $M resnet50 bert-base vit_b_16 > /dev/null 2>&1 || echo "export failed" >> "$L") &
$T 100 node scripts/gpu-wgmma-check.mjs --filter=odd,rn50_bs256_1x1_64_256_56,bert_attn --iters=5 --budget-s=85 > "$OUT/wgmma.txt" 2>&1; echo "wgmma-check rc $?" >> "$L"
grep -E "^FAIL|passed, " "$OUT/wgmma.txt" | head >> "$L"; grep -A8 "==== summary" "$OUT/wgmma.txt" | cut -c1-200 >> "$L"
wait
$T 100 node scripts/gpu-profile.mjs $M/resnet50/model.onnx --batch 256 --timing-cache $TC --json "$OUT/prof_r50_256.json" --top 8 >> "$L" 2>&1
$T 150 node bench/bench.mjs $M/resnet50/model.onnx 256 --fp16 --int8 --opt-level 3 --timing-cache $TC --json "$OUT/int8.json" 2>&1 | cut -c1-420 >> "$L"
$T 90 node bench/bench.mjs $M/vit_b_16/model.onnx 1,32 --fp16 --opt-level 3 --timing-cache $TC --json "$OUT/vit.json" 2>&1 | cut -c1-420 >> "$L"
$T 140 node scripts/gpu-bf16.mjs --part=models > "$OUT/bf16_models.txt" 2>&1; echo "bf16 models rc $?" >> "$L"; grep -E "^(PASS|FAIL)|passed|failed" "$OUT/bf16_models.txt" | tail -8 >> "$L"
cat "$L"
