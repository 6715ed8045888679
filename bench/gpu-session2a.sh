#!/usr/bin/env bash
# Device call: the wgmma kernels against mma.sync, the fixture re-export, and the BERT/ResNet fp16 engines after
# the QKV/recognition/BN-folding changes (against PyTorch's fp32 outputs).
#   source .gpu/enter && bash bench/gpu-session2a.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/models
step() { local name=$1; shift; local t0=$(date +%s.%N); "$@" > "$OUT/$name.txt" 2>&1; local rc=$?; echo "== $name rc=$rc $(echo "$(date +%s.%N) - $t0" | bc) s"; tail -n ${TAILN:-8} "$OUT/$name.txt"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/export-fixtures.py "$OUT/fixtures" vit_tiny > /dev/null 2>&1 || echo "vit export failed"
for m in resnet50 bert-base; do python3 .gpu/models.py export --model $m --batch 1 --dir $M > /dev/null 2>&1 || echo "export $m failed"; done
TAILN=60 step wgmma timeout 240 node scripts/gpu-wgmma-check.mjs --budget-s=200
TAILN=10 step bert_fp16 node bin/tsrt.js run $M/bert-base_b1/model.onnx --fp16
TAILN=10 step r50_fp16 node bin/tsrt.js run $M/resnet50_b1/model.onnx --fp16
TAILN=10 step r50_fp32 node bin/tsrt.js run $M/resnet50_b1/model.onnx
