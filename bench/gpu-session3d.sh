#!/usr/bin/env bash
# Session 3: engines with the se / n192 tactics and the LayerNorm/elementwise tactics (fresh timing caches),
# per-kernel profiles of ResNet-50 bs256 and bs1, BERT bs32, then the tactic report and ViT.
#   source .gpu/enter && bash bench/gpu-session3d.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/export.py $M resnet50 bert-base vit_b_16 2>&1 | grep -v Warning | tail -3
P="node scripts/gpu-profile.mjs"
$P $M/resnet50/model.onnx --batch 256 --timing-cache $TC --json "$OUT/prof_r50_256.json" --top 14
$P $M/bert-base/model.onnx --batch 32 --timing-cache $TC --json "$OUT/prof_bert_32.json" --top 12
$P $M/resnet50/model.onnx --batch 1 --timing-cache $TC --json "$OUT/prof_r50_1.json" --top 3
timeout 120 node scripts/gpu-tactics.mjs $M/bert-base/model.onnx --batch 32 --json "$OUT/tactics_bert32.json" 2>&1 | tail -25
timeout 120 node bench/bench.mjs $M/vit_b_16/model.onnx 1,32 --fp16 --opt-level 3 --timing-cache $TC --profile --json "$OUT/vit.json" | cut -c1-500
cp $TC "$OUT/timing-cache.json"
