#!/usr/bin/env bash
# Session 4: programmatic dependent launch (BuildOptions.pdl, --pdl), written without device time: first the
# bit-for-bit check (scripts/test-gpu.mjs --filter pdl), then each engine timed without and with it in one process on
# one timing cache (bench.mjs --pdl-ab): ResNet-50 bs1/256 and BERT-base bs1/32 in fp16 at level 3. If pdl wins,
# make it the default (device_runner.ts pdlDefault) and say so with these numbers.
#   (dist/ built here and carried with .gpu/)  source .gpu/enter && bash bench/gpu-session4c.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
T="timeout -k 5"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
(python3 bench/export.py $M resnet50 bert-base > /dev/null 2>&1 || echo "export failed" >> "$L") &
$T 120 node scripts/test-gpu.mjs --filter pdl > "$OUT/pdl_check.txt" 2>&1; echo "pdl check rc $?" >> "$L"
grep -E "^(PASS|FAIL)|passed, " "$OUT/pdl_check.txt" >> "$L"
wait
$T 200 node bench/bench.mjs $M/resnet50/model.onnx 1,256 --fp16 --pdl-ab --opt-level 3 --timing-cache $TC --json "$OUT/pdl_r50.json" 2>&1 | cut -c1-300 >> "$L"
$T 200 node bench/bench.mjs $M/bert-base/model.onnx 1,32 --fp16 --pdl-ab --opt-level 3 --timing-cache $TC --json "$OUT/pdl_bert.json" 2>&1 | cut -c1-300 >> "$L"
cat "$L"
