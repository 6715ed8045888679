#!/usr/bin/env bash
# Session 5, second int8 pass: Nsight Compute showed the int8 1x1 convs instruction-bound (SM 78%, DRAM 34%), so the
# requantize is folded (tc_int8.ts int8Folded: scale, bias and residual scale times 1 / y_scale at build time, two
# FMAs an element), channel scale/bias load once per column pair, bounds tests only at ragged tile edges. Checks
# every changed int8 kernel bit for bit against the CPU reference (odd cases) and the heuristic kernel, times the
# ResNet-50 bs256 1x1 shapes over every staged-epilogue form, then fp16 vs int8 (precision by timing) vs int8-all
# on ResNet-50 bs256 in one process, and the int8 engine profile. One device call.
#   (dist/ built here and carried with .gpu/)  source .gpu/enter && bash bench/gpu-session5c.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
T="timeout -k 5"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
(python3 bench/export.py $M resnet50 > /dev/null 2>&1 || echo "export failed" >> "$L") &
run() { local name=$1 limit=$2; shift 2; $T "$limit" "$@" > "$OUT/$name.txt" 2>&1; echo "$name rc $?" >> "$L"; grep -E "^FAIL|passed, |^====" "$OUT/$name.txt" | head -20 >> "$L"; }
run int8 130 node scripts/gpu-int8-kernels.mjs --filter=odd,qlinear_conv_1x1,rn50_bs256_1x1_64_256_56_res,rn50_bs256_1x1s2_512_1024_28,rn50_bs256_3x3_c64_56 --configs=_se,m128n64k64 --budget-s=120
wait
$T 330 node bench/bench.mjs $M/resnet50/model.onnx 256 --fp16 --int8 --int8-all --opt-level 3 --timing-cache $TC --json "$OUT/precision_timing.json" 2>&1 | cut -c1-900 >> "$L"
echo "bench rc $?" >> "$L"
$T 60 node scripts/gpu-profile.mjs $M/resnet50/model.onnx --batch 256 --int8 --timing-cache $TC --json "$OUT/prof_int8.json" --top 12 >> "$L" 2>&1
echo "int8 profile rc $?" >> "$L"
cp $TC "$OUT/timing-cache.json" 2>/dev/null
cat "$L"
