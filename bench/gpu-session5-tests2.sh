#!/usr/bin/env bash
# Session 5, after turning programmatic dependent launch on by default: the whole GPU suite (npm run test:gpu with
# the reference models and TSRT_INT8_QUICK=1; its int8 kernel sweep ran in gpu-session5c.sh). One device call.
#   (dist/ built here; .gpu/ packed with --tests)  source .gpu/enter && bash bench/gpu-session5-tests2.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; L="$OUT/log.txt"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
timeout -k 5 150 python3 bench/export.py $M resnet50 mobilenet_v2 bert-base > /dev/null 2>&1 || echo "export failed" >> "$L"
TSRT_INT8_QUICK=1 timeout -k 5 420 node scripts/test-gpu.mjs --models $M > "$OUT/test-gpu.txt" 2>&1; echo "test-gpu rc $?" >> "$L"
grep -E "^FAIL" "$OUT/test-gpu.txt" | cut -c1-250 | head -30 >> "$L"; grep -E "vs PyTorch|pdl:|robust|soak" "$OUT/test-gpu.txt" | cut -c1-220 | head -20 >> "$L"; tail -1 "$OUT/test-gpu.txt" >> "$L"
cat "$L"
