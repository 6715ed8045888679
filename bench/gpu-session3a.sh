#!/usr/bin/env bash
# Session 3, first call: per-kernel profiles of ResNet-50 bs256/bs1 and BERT-base bs32 at --opt-level 3 (where the time goes).
#   source .gpu/enter && bash bench/gpu-session3a.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/export.py $M resnet50 bert-base > /dev/null 2>&1 || echo "export failed"
P="node scripts/gpu-profile.mjs"
$P $M/resnet50/model.onnx --batch 256 --timing-cache $TC --json "$OUT/prof_r50_256.json" --top 60
$P $M/bert-base/model.onnx --batch 32 --timing-cache $TC --json "$OUT/prof_bert_32.json" --top 30
$P $M/resnet50/model.onnx --batch 1 --timing-cache $TC --json "$OUT/prof_r50_1.json" --top 20
cp $TC "$OUT/timing-cache.json"
