#!/usr/bin/env bash
# Precision by timing (runtime/precision_timing.ts: int8 with fp16 fallback by speed) on ResNet-50 bs256, one device
# call, one timing cache: fp16, int8 with each layer's precision chosen by timing, and int8 with every calibrated layer
# int8 (--no-precision-timing), each checked against PyTorch's fp32 output (vs_pytorch). The int8 row's
# precision_timing lists the moved layers (int8/fp16/conversion ms) and the predicted saving.
#   (dist/ built here and carried with .gpu/)  source .gpu/enter && bash bench/gpu-precision-timing.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
T="timeout -k 5"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
[ -f $M/resnet50/model.onnx ] || python3 bench/export.py $M resnet50 > /dev/null 2>&1 || echo "export failed" >> "$L"
$T 480 node bench/bench.mjs $M/resnet50/model.onnx 256 --fp16 --int8 --int8-all --opt-level 3 --timing-cache $TC --json "$OUT/precision_timing.json" >> "$L" 2>&1
echo "bench rc $?" >> "$L"
cp $TC "$OUT/timing-cache.json" 2>/dev/null
cat "$L"
