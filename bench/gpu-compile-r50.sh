#!/usr/bin/env bash
# One device call: tsrt (opt 3, autotuned) vs PyTorch eager and torch.compile max-autotune, ResNet-50 bs256 and
# BERT-base bs32.   source .gpu/enter && bash bench/gpu-compile-r50.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/export.py $M resnet50 bert-base > /dev/null 2>&1 || echo "export failed"
node bench/bench.mjs $M/resnet50/model.onnx 256 --fp16 --opt-level 3 --timing-cache /tmp/tc.json --json "$OUT/tsrt.json" | cut -c1-300
node bench/bench.mjs $M/bert-base/model.onnx 32 --fp16 --opt-level 3 --timing-cache /tmp/tc.json --json "$OUT/tsrt.json" | cut -c1-300
python3 .gpu/models.py peers --model resnet50 --batch 256 --dtype fp16 --modes eager,compile --json "$OUT/peers_r50.json" 2>&1 | grep '^{"model'
python3 .gpu/models.py peers --model bert-base --batch 32 --dtype fp16 --modes eager,compile --json "$OUT/peers_bert.json" 2>&1 | grep '^{"model'
