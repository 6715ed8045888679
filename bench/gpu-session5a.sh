#!/usr/bin/env bash
# Session 5, after the first H100 profile showed the int8 ResNet-50 bs256 engine conversion-bound: the int8
# epilogue's I2F/F2I (16 a clock on an SM) took the memory-bound 1x1 convs to 0.42 ms against fp16's 0.32, and the
# int8 max pool converted every byte to float. Checks the conversion-free epilogue (Int8Epilogue.smallAcc, the
# FADD requantize) and the packed int8 max pool bit for bit, then times fp16 vs int8 (precision by timing) vs
# int8 with every layer int8 on ResNet-50 bs256 in one process, and profiles the int8 engine. One device call.
#   (dist/ built here and carried with .gpu/)  source .gpu/enter && bash bench/gpu-session5a.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
T="timeout -k 5"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
(python3 bench/export.py $M resnet50 > /dev/null 2>&1 || echo "export failed" >> "$L") &
run() { local name=$1 limit=$2; shift 2; $T "$limit" "$@" > "$OUT/$name.txt" 2>&1; echo "$name rc $?" >> "$L"; grep -E "^FAIL|passed, |^====" "$OUT/$name.txt" | head -20 >> "$L"; }
run int8 110 node scripts/gpu-int8-kernels.mjs --filter=odd,rn50_bs256_1x1_64_256_56_res,rn50_bs256_3x3_c64_56 --configs=_p,m128n256k128_w8x1_s3_ws_se,m128n64k128_w8x1_s3_se --budget-s=100
run pool 40 node scripts/gpu-pool-relayout.mjs --filter=int8
wait
$T 330 node bench/bench.mjs $M/resnet50/model.onnx 256 --fp16 --int8 --int8-all --opt-level 3 --timing-cache $TC --json "$OUT/precision_timing.json" 2>&1 | cut -c1-900 >> "$L"
echo "bench rc $?" >> "$L"
$T 60 node scripts/gpu-profile.mjs $M/resnet50/model.onnx --batch 256 --int8 --timing-cache $TC --json "$OUT/prof_int8.json" --top 8 >> "$L" 2>&1
echo "int8 profile rc $?" >> "$L"
cp $TC "$OUT/timing-cache.json" 2>/dev/null
cat "$L"
