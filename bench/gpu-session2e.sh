#!/usr/bin/env bash
# Final bench (session 2). One device call: tsrt fp16 at --opt-level 3 (wgmma + mma.sync tactics timed), a rebuild from the timing cache,
# int8 vs fp16 at ResNet-50 bs256, and the PyTorch peers (eager, torch.compile max-autotune) in the same call.
#   source .gpu/enter && bash bench/gpu-session2e.sh      (INT8_OPT=2: int8 with heuristic tiles, as in the first run)
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/export.py $M resnet50 bert-base > /dev/null 2>&1 || echo "export failed"
B="node bench/bench.mjs"
$B $M/resnet50/model.onnx 1,256 --fp16 --opt-level 3 --timing-cache $TC --json "$OUT/tsrt.json" | cut -c1-400
$B $M/bert-base/model.onnx 1,32 --fp16 --opt-level 3 --timing-cache $TC --profile --json "$OUT/tsrt.json" | cut -c1-600
echo "-- rebuild from the timing cache (issue 7: <= 5 s)"
$B $M/resnet50/model.onnx 256 --fp16 --opt-level 3 --timing-cache $TC --json "$OUT/tsrt_cached.json" | cut -c1-400
echo "-- int8 (issue 6: >= 1.5x fp16 at bs256)"
timeout 150 $B $M/resnet50/model.onnx 256 --int8 --opt-level ${INT8_OPT:-3} --timing-cache $TC --json "$OUT/tsrt_int8.json" | cut -c1-400
cp $TC "$OUT/timing-cache.json"
for m in resnet50:1,256 bert-base:1,32; do timeout 60 python3 .gpu/models.py peers --model ${m%%:*} --batch ${m##*:} --dtype fp16 --modes eager --json "$OUT/peers_${m%%:*}.json" 2>&1 | grep '^{'; done
timeout 120 python3 .gpu/models.py peers --model bert-base --batch 32 --dtype fp16 --modes compile --json "$OUT/peers_bert_compile.json" 2>&1 | grep '^{"model'
timeout 280 python3 .gpu/models.py peers --model resnet50 --batch 256 --dtype fp16 --modes compile --json "$OUT/peers_r50_compile.json" 2>&1 | grep '^{"model'
