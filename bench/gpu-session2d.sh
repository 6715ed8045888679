#!/usr/bin/env bash
# Device call: kernel checks of the new tactic families before they reach whole models — the warp-specialized
# fp16 wgmma kernels and the int8 (mma.sync + wgmma s8) kernels, each against its reference (bit for bit for int8),
# with TFLOP/s / TOP/s per config; then ResNet-50 int8 vs fp16 at bs256 (opt 3) and the GPU suite's model checks.
#   source .gpu/enter && bash bench/gpu-session2d.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/export.py $M resnet50 bert-base > /dev/null 2>&1 || echo "export failed" &
timeout 200 node scripts/gpu-wgmma-check.mjs --budget-s=170 > "$OUT/wgmma.txt" 2>&1; echo "wgmma rc=$?"
grep -E "FAIL|summary" -A30 "$OUT/wgmma.txt" | grep -vE "^PASS" | head -40
timeout 150 node scripts/gpu-int8-kernels.mjs --budget-s=120 > "$OUT/int8-kernels.txt" 2>&1; echo "int8 kernels rc=$?"
grep -E "FAIL|summary|TOP/s" "$OUT/int8-kernels.txt" | tail -25
wait
B="node bench/bench.mjs"
echo "-- ResNet-50 bs1 with and without wgmma (was 0.303 ms before sm_90a/wgmma, 0.325 after)"
TSRT_WGMMA=0 timeout 60 $B $M/resnet50/model.onnx 1 --fp16 --opt-level 3 --no-timing-cache --json "$OUT/r50_bs1.json" | cut -c1-300
timeout 60 $B $M/resnet50/model.onnx 1 --fp16 --opt-level 3 --no-timing-cache --json "$OUT/r50_bs1.json" | cut -c1-300
echo "-- int8 vs fp16 at bs256, opt 3"
timeout 200 $B $M/resnet50/model.onnx 256 --fp16 --int8 --opt-level 3 --no-timing-cache --json "$OUT/r50_int8_fp16.json" | cut -c1-400
