#!/usr/bin/env bash
# One device call: the GPU test suite (CUDA conformance + reference models vs PyTorch) and a quick timing.
#   source .gpu/enter && bash bench/gpu-test.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/export.py $M resnet50 mobilenet_v2 bert-base > /dev/null 2>&1 || echo "export failed"
node scripts/test-gpu.mjs --models $M > "$OUT/test-gpu.txt" 2>&1; echo "test-gpu rc=$?"
grep -E "^FAIL|^SKIP" "$OUT/test-gpu.txt" | cut -c1-220 | head -40; grep -E "vs PyTorch" "$OUT/test-gpu.txt"; tail -1 "$OUT/test-gpu.txt"
node bench/bench.mjs $M/resnet50/model.onnx 1,256 --fp16 --json "$OUT/tsrt.json" | cut -c1-200
