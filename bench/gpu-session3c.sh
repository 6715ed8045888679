#!/usr/bin/env bash
# Session 3: the staged wgmma epilogue (src/codegen/wgmma_epilogue.ts) on the GPU: correctness of every kernel
# family against mma.sync / float64 (gpu-wgmma-check), then ResNet-50 bs256 and BERT bs32 engines with it
# (default) and without it (TSRT_WGMMA_STAGED=0), each tuned into its own timing cache, then the tile sweep.
#   source .gpu/enter && bash bench/gpu-session3c.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
(python3 bench/export.py $M resnet50 bert-base > /dev/null 2>&1 || echo "export failed") &
timeout 200 node scripts/gpu-wgmma-check.mjs --filter=odd,bert,rn50_bs256_3x3_c64,rn50_bs1 --iters=10 --budget-s=170 > "$OUT/check.txt" 2>&1
grep -E "^FAIL|passed|====" "$OUT/check.txt"; grep -A20 '==== summary' "$OUT/check.txt"
wait
P="node scripts/gpu-profile.mjs"
for m in resnet50:256 bert-base:32; do
  TSRT_WGMMA_STAGED=0 $P $M/${m%%:*}/model.onnx --batch ${m##*:} --timing-cache /tmp/tc_off.json --json "$OUT/prof_${m%%:*}_off.json" --top 0
  $P $M/${m%%:*}/model.onnx --batch ${m##*:} --timing-cache /tmp/tc_on.json --json "$OUT/prof_${m%%:*}_on.json" --top 12
done
timeout 150 node scripts/gpu-wgmma-check.mjs --filter=1x1_64_256_56,1x1_128_512_28 --mma --iters=5 --budget-s=120 > "$OUT/sweep.txt" 2>&1
grep -A20 '==== summary' "$OUT/sweep.txt"
