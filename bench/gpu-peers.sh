#!/usr/bin/env bash
# One device call: tsrt engines and PyTorch peers (eager and torch.compile max-autotune) on the same GPU.
#   source .gpu/enter && bash bench/gpu-peers.sh "<resnet50 compile batches>" "<bert compile batches>"
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm
R50C=${1:-256}; BERTC=${2:-32}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/export.py $M resnet50 mobilenet_v2 bert-base > /dev/null 2>&1 || echo "export failed"
node bench/bench.mjs $M/resnet50/model.onnx 1,32,256 --fp16 --profile --json "$OUT/tsrt.json" | cut -c1-400
node bench/bench.mjs $M/mobilenet_v2/model.onnx 1,64 --fp16 --profile --json "$OUT/tsrt.json" | cut -c1-400
node bench/bench.mjs $M/bert-base/model.onnx 1,32 --fp16 --profile --json "$OUT/tsrt.json" | cut -c1-600
python3 .gpu/models.py peers --model resnet50 --batch 1,32,256 --dtype fp16 --modes eager --json "$OUT/peers_r50_eager.json" 2>&1 | grep '^{'
python3 .gpu/models.py peers --model mobilenet_v2 --batch 1,64 --dtype fp16 --modes eager --json "$OUT/peers_mnv2_eager.json" 2>&1 | grep '^{'
python3 .gpu/models.py peers --model bert-base --batch 1,32 --dtype fp16 --modes eager --json "$OUT/peers_bert_eager.json" 2>&1 | grep '^{'
[ -n "$BERTC" ] && python3 .gpu/models.py peers --model bert-base --batch $BERTC --dtype fp16 --modes compile --json "$OUT/peers_bert_compile.json" 2>&1 | grep '^{'
[ -n "$R50C" ] && python3 .gpu/models.py peers --model resnet50 --batch $R50C --dtype fp16 --modes compile --json "$OUT/peers_r50_compile.json" 2>&1 | grep '^{'
