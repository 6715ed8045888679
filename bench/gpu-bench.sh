#!/usr/bin/env bash
# One device call: export the reference models (dynamic batch), check accuracy at batch 1, time tsrt engines
# and PyTorch eager on the same GPU. Usage on the GPU machine:  source .gpu/enter && bash bench/gpu-bench.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 bench/export.py $M resnet50 mobilenet_v2 bert-base 2>&1 | grep -v Warning | tail -3
for m in resnet50 mobilenet_v2 bert-base; do for p in "" "--fp16"; do
  node bin/tsrt.js run $M/$m/model.onnx $p > "$OUT/acc_${m}${p}.txt" 2>&1; echo "== $m $p rc=$?"; grep -E "vs reference|FAILED|error|built" "$OUT/acc_${m}${p}.txt" | cut -c1-200
done; done
node bench/bench.mjs $M/resnet50/model.onnx 1,32,256 --fp16 --profile --json "$OUT/tsrt.json"
node bench/bench.mjs $M/resnet50/model.onnx 1,32 --fp32 --json "$OUT/tsrt.json"
node bench/bench.mjs $M/mobilenet_v2/model.onnx 1,64 --fp16 --fp32 --json "$OUT/tsrt.json"
node bench/bench.mjs $M/bert-base/model.onnx 1,32 --fp16 --fp32 --profile --json "$OUT/tsrt.json"
python3 .gpu/models.py peers --model resnet50 --batch 1,32,256 --dtype fp16 --modes eager --json "$OUT/peers_resnet50.json" 2>&1 | grep '^{'
python3 .gpu/models.py peers --model mobilenet_v2 --batch 1,64 --dtype fp16 --modes eager --json "$OUT/peers_mobilenet_v2.json" 2>&1 | grep '^{'
python3 .gpu/models.py peers --model bert-base --batch 1,32 --dtype fp16 --modes eager --json "$OUT/peers_bert.json" 2>&1 | grep '^{'
