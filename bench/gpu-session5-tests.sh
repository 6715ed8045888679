#!/usr/bin/env bash
# Session 5: the GPU test suites after the int8 epilogue changes, one device call: npm run test:gpu (CUDA
# conformance, models vs PyTorch, engine files, PDL bit for bit) and the int8 suite (scripts/test-gpu-int8.mjs,
# TSRT_INT8_QUICK=1: its kernel sweep is gpu-int8-kernels.mjs, run in gpu-session5c.sh).
#   (dist/ built here; .gpu/ packed with --tests)  source .gpu/enter && bash bench/gpu-session5-tests.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; L="$OUT/log.txt"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
timeout -k 5 150 python3 bench/export.py $M resnet50 mobilenet_v2 bert-base > /dev/null 2>&1 || echo "export failed" >> "$L"
timeout -k 5 300 node scripts/test-gpu.mjs --models $M > "$OUT/test-gpu.txt" 2>&1; echo "test-gpu rc $?" >> "$L"
grep -E "^FAIL" "$OUT/test-gpu.txt" | cut -c1-250 | head -30 >> "$L"; grep -E "vs PyTorch|pdl" "$OUT/test-gpu.txt" | cut -c1-200 | head -12 >> "$L"; tail -1 "$OUT/test-gpu.txt" >> "$L"
TSRT_INT8_QUICK=1 timeout -k 5 120 node scripts/test-gpu-int8.mjs --models $M > "$OUT/test-gpu-int8.txt" 2>&1; echo "test-gpu-int8 rc $?" >> "$L"
grep -E "^FAIL|^PASS" "$OUT/test-gpu-int8.txt" | cut -c1-250 | head -20 >> "$L"; tail -1 "$OUT/test-gpu-int8.txt" >> "$L"
cat "$L"
