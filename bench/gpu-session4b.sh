#!/usr/bin/env bash
# Session 4's GPU checks, written when the session had no device time left: everything it added that only a GPU can
# confirm, in one call (about 9 minutes). Run it first next session, then bench/gpu-precision-timing.sh.
#  - the kernel-check harness end to end (fp16 wgmma incl. persistent, odd shapes);
#  - the int8 ws / se / persistent wgmma kernels and the bn 192/256 int8 tiles: bit-equal to the heuristic int8 kernel, and their times on the
#    ResNet-50 bs256 residual 1x1 conv;
#  - the int8 input Relayout (quantize + NCHW->NHWC + channel pad / space-to-depth in one kernel), bit for bit;
#  - persistent grids at another SM count (114, an H100 PCIe) give the same outputs;
#  - the int8 ResNet-50 bs256 engine profile (precision by timing on: its fp16 twin layers are timed too).
#   (dist/ built here and carried with .gpu/)  source .gpu/enter && bash bench/gpu-session4b.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
T="timeout -k 5"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
(python3 bench/export.py $M resnet50 > /dev/null 2>&1 || echo "export failed" >> "$L") &
run() { local name=$1 limit=$2; shift 2; $T "$limit" "$@" > "$OUT/$name.txt" 2>&1; echo "$name rc $?" >> "$L"; grep -E "^FAIL|passed, " "$OUT/$name.txt" | head -12 >> "$L"; }
run wgmma 70 node scripts/gpu-wgmma-check.mjs --filter=odd --iters=3 --budget-s=60
run int8 120 node scripts/gpu-int8-kernels.mjs --filter=odd,rn50_bs256_1x1_64_256_56_res,rn50_bs256_1x1s2_512_1024_28,rn50_bs256_3x3_c256_14 --budget-s=110
run relayout 40 node scripts/gpu-pool-relayout.mjs --filter=int8
wait
run smcount 120 node scripts/gpu-sm-count.mjs $M/resnet50/model.onnx --batch=32 --sms=114 --timing-cache=$TC
$T 200 node scripts/gpu-profile.mjs $M/resnet50/model.onnx --batch 256 --int8 --timing-cache $TC --json "$OUT/prof_int8.json" --top 20 >> "$L" 2>&1
echo "int8 profile rc $?" >> "$L"
cat "$L"
