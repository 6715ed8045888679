#!/usr/bin/env bash
# One device call: accuracy (BERT with fused attention; attention conformance), then tsrt (opt 3, autotuned) next to
# PyTorch eager and torch.compile max-autotune.   source .gpu/enter && bash bench/gpu-compile-peers.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/export.py $M resnet50 mobilenet_v2 bert-base > /dev/null 2>&1 || echo "export failed"
node scripts/test-gpu.mjs --models $M --filter attention > "$OUT/test-gpu.txt" 2>&1; echo "test-gpu rc=$?"
grep -E "^FAIL" "$OUT/test-gpu.txt" | cut -c1-200 | head; grep -E "vs PyTorch" "$OUT/test-gpu.txt"; tail -1 "$OUT/test-gpu.txt"
node bench/bench.mjs $M/bert-base/model.onnx 1,32 --fp16 --opt-level 3 --timing-cache /tmp/tc.json --profile --json "$OUT/tsrt.json" | cut -c1-500
node bench/bench.mjs $M/resnet50/model.onnx 1,256 --fp16 --opt-level 3 --timing-cache /tmp/tc.json --json "$OUT/tsrt.json" | cut -c1-300
node bench/bench.mjs $M/resnet50/model.onnx 256 --fp16 --opt-level 3 --timing-cache /tmp/tc.json --json "$OUT/tsrt.json" | cut -c1-300
node bench/bench.mjs $M/mobilenet_v2/model.onnx 1,64 --fp16 --opt-level 3 --timing-cache /tmp/tc.json --json "$OUT/tsrt.json" | cut -c1-300
for m in resnet50:1,256 bert-base:1,32 mobilenet_v2:1,64; do python3 .gpu/models.py peers --model ${m%%:*} --batch ${m##*:} --dtype fp16 --modes eager --json "$OUT/peers_${m%%:*}.json" 2>&1 | grep '^{'; done
python3 .gpu/models.py peers --model bert-base --batch 32 --dtype fp16 --modes compile --json "$OUT/peers_bert_compile.json" 2>&1 | grep '^{"model'
python3 .gpu/models.py peers --model resnet50 --batch 256 --dtype fp16 --modes compile --json "$OUT/peers_r50_compile.json" 2>&1 | grep '^{"model'
