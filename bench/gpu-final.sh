#!/usr/bin/env bash
# One device call: GPU test suite (with the attention fusion), then tsrt at opt-level 2 (heuristic tiles) and 3
# (autotuned) next to PyTorch eager.   source .gpu/enter && bash bench/gpu-final.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/export.py $M resnet50 mobilenet_v2 bert-base > /dev/null 2>&1 || echo "export failed"
node scripts/test-gpu.mjs --models $M > "$OUT/test-gpu.txt" 2>&1; echo "test-gpu rc=$?"
grep -E "^FAIL" "$OUT/test-gpu.txt" | cut -c1-220 | head -20; grep -E "vs PyTorch|device buffers" "$OUT/test-gpu.txt"; tail -1 "$OUT/test-gpu.txt"
node bench/bench.mjs $M/bert-base/model.onnx 1,32 --fp16 --profile --json "$OUT/tsrt.json" | cut -c1-500
node bench/bench.mjs $M/resnet50/model.onnx 1,256 --fp16 --json "$OUT/tsrt.json" | cut -c1-300
node bench/bench.mjs $M/resnet50/model.onnx 1,256 --fp16 --opt-level 3 --timing-cache /tmp/tc.json --json "$OUT/tsrt.json" | cut -c1-400
node bench/bench.mjs $M/mobilenet_v2/model.onnx 1,64 --fp16 --json "$OUT/tsrt.json" | cut -c1-300
for m in resnet50:1,256 bert-base:1,32 mobilenet_v2:1,64; do python3 .gpu/models.py peers --model ${m%%:*} --batch ${m##*:} --dtype fp16 --modes eager --json "$OUT/peers_${m%%:*}.json" 2>&1 | grep '^{'; done
cp /tmp/tc.json "$OUT/timing-cache.json" 2>/dev/null
