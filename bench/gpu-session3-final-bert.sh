#!/usr/bin/env bash
# Session 3 final bench, BERT-base seq 128 (one device call): PyTorch eager bs1/bs32 and torch.compile max-autotune
# bs32, then tsrt fp16 at --opt-level 3 (bs1, bs32, with the per-op profile), checked against PyTorch (vs_pytorch).
#   source .gpu/enter && bash bench/gpu-session3-final-bert.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
T="timeout -k 5"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
python3 bench/export.py $M bert-base > /dev/null 2>&1 || echo "export failed" >> "$L"
$T 60 python3 .gpu/models.py peers --model bert-base --batch 1,32 --dtype fp16 --modes eager --json "$OUT/peers_bert_eager.json" 2>&1 | grep '^{' >> "$L"
$T 150 python3 .gpu/models.py peers --model bert-base --batch 32 --dtype fp16 --modes compile --json "$OUT/peers_bert_compile.json" 2>&1 | grep '^{"model' >> "$L"
$T 120 node bench/bench.mjs $M/bert-base/model.onnx 1,32 --fp16 --opt-level 3 --timing-cache $TC --profile --json "$OUT/tsrt_bert.json" 2>&1 | cut -c1-800 >> "$L"
cp $TC "$OUT/timing-cache.json"
cat "$L"
