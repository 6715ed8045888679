#!/usr/bin/env bash
# Device call: the whole GPU test suite (conformance on CUDA, shared models, concat in place, engine files and
# profiles, int8 kernels and ResNet-50 int8, soak / two streams / NVRTC errors, ResNet-50 / MobileNetV2 / BERT against
# PyTorch) and the small ViT fixture re-export (files flat in $OUT: the device returns shallow paths only).
#   source .gpu/enter && bash bench/gpu-session2c.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/export-fixtures.py /tmp/fx vit_tiny > /dev/null 2>&1 && for f in model.onnx test_data_set_0/input_0.pb test_data_set_0/output_0.pb; do cp /tmp/fx/vit_tiny/$f "$OUT/vit_tiny_$(basename $f)"; done
python3 bench/export.py $M resnet50 mobilenet_v2 bert-base > /dev/null 2>&1 || echo "export failed"
timeout ${T:-520} node scripts/test-gpu.mjs --models $M --soak-runs ${SOAK:-10000} > "$OUT/test-gpu.txt" 2>&1; echo "test-gpu rc=$?"
grep -E "^FAIL" "$OUT/test-gpu.txt" | cut -c1-300 | head -40; grep -E "vs PyTorch|int8|plan|profile|soak|stream|concat|NVRTC" "$OUT/test-gpu.txt" | cut -c1-250 | head -60; tail -3 "$OUT/test-gpu.txt"
node bin/tsrt.js report models/ppocr_mobile_v2_cls/model.onnx -o "$OUT/report_ppocr_fp16.html" --profile --fp16 2>&1 | tail -2
node bin/tsrt.js report $M/resnet50/model.onnx --shapes input:32x3x224x224 -o "$OUT/report_r50_fp16.html" --profile --fp16 2>&1 | tail -2
