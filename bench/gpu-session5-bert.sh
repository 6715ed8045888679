#!/usr/bin/env bash
# Session 5, H100: issue 7's other same-call targets: BERT-base fp16 seq128 bs32 against PyTorch eager, and
# ResNet-50 fp16 bs1 (<= 0.30 ms) with and without programmatic dependent launch, from the session's H100 timing
# cache (bench/results/2026-11-26-h100-timing-cache.json); BERT tuned cold at level 3. One device call.
#   (dist/ built here and carried with .gpu/)  source .gpu/enter && bash bench/gpu-session5-bert.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
cp bench/results/2026-11-26-h100-timing-cache.json $TC
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
timeout -k 5 200 python3 bench/export.py $M resnet50 bert-base > /dev/null 2>&1 || echo "export failed" >> "$L"
timeout -k 5 90 python3 .gpu/models.py peers --model bert-base --batch 1,32 --dtype fp16 --modes eager --json "$OUT/peers_bert_eager.json" 2>&1 | grep '^{' >> "$L"
timeout -k 5 60 python3 .gpu/models.py peers --model resnet50 --batch 1 --dtype fp16 --modes eager --json "$OUT/peers_r50_eager.json" 2>&1 | grep '^{' >> "$L"
timeout -k 5 90 node bench/bench.mjs $M/bert-base/model.onnx 1,32 --fp16 --opt-level 3 --timing-cache $TC --json "$OUT/tsrt_bert.json" 2>&1 | cut -c1-400 >> "$L"
timeout -k 5 60 node bench/bench.mjs $M/resnet50/model.onnx 1 --fp16 --pdl-ab --opt-level 3 --timing-cache $TC --json "$OUT/tsrt_r50_bs1.json" 2>&1 | cut -c1-400 >> "$L"
cat "$L"
