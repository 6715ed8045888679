#!/usr/bin/env bash
# One device call: runtime smoke test, ONNX conformance on the CUDA backend, and the reference models
# (exported by .gpu/models.py with PyTorch fp32 outputs) in fp32 and fp16. Usage on the GPU machine:
#   source .gpu/enter && bash bench/gpu-check.sh [conformance-seconds]
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
M=/tmp/models
T=${1:-240}
step() { local name=$1; shift; local t0=$(date +%s.%N); "$@" > "$OUT/$name.txt" 2>&1; local rc=$?; echo "== $name rc=$rc $(echo "$(date +%s.%N) - $t0" | bc) s"; tail -n ${TAILN:-6} "$OUT/$name.txt"; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
step smoke node scripts/gpu-smoke.mjs
for m in resnet50 mobilenet_v2 bert-base; do python3 .gpu/models.py export --model $m --batch 1 --dir $M > /dev/null 2>&1 || echo "export $m failed"; done
TAILN=8 step r50_fp32 node bin/tsrt.js run $M/resnet50_b1/model.onnx
TAILN=8 step r50_fp16 node bin/tsrt.js run $M/resnet50_b1/model.onnx --fp16
TAILN=8 step mnv2_fp32 node bin/tsrt.js run $M/mobilenet_v2_b1/model.onnx
TAILN=8 step bert_fp32 node bin/tsrt.js run $M/bert-base_b1/model.onnx
TAILN=8 step bert_fp16 node bin/tsrt.js run $M/bert-base_b1/model.onnx --fp16
TAILN=3 step conf_cuda timeout $T node bin/tsrt.js conformance .gpu/onnx-tests/node --backend cuda
grep -c ^PASS "$OUT/conf_cuda.txt"; grep ^FAIL "$OUT/conf_cuda.txt" | head -30
