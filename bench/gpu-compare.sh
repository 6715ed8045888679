#!/usr/bin/env bash
# tsrt compare / precision rules / accuracy budget on the GPU (fp32 engine as the reference, engine.time for the
# budget's speed cost). Usage on the GPU machine, after `npm run build`:
#   source .gpu/enter && bash bench/gpu-compare.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
M=/tmp/models
step() { local name=$1; shift; local t0=$(date +%s.%N); "$@" > "$OUT/$name.txt" 2>&1; local rc=$?; echo "== $name rc=$rc $(echo "$(date +%s.%N) - $t0" | bc) s"; tail -n ${TAILN:-8} "$OUT/$name.txt"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for m in resnet50 bert-base; do python3 .gpu/models.py export --model $m --batch 1 --dir $M > /dev/null 2>&1 || echo "export $m failed"; done
R=$M/resnet50_b1/model.onnx; B=$M/bert-base_b1/model.onnx
# per output and per layer, fp16 vs the fp32 engine on the same GPU
TAILN=6 step r50_cmp_fp16 node bin/tsrt.js compare $R --fp16 --per-layer --json "$OUT/r50_cmp_fp16.json" --check 'cosine>=0.999,top1>=1'
TAILN=6 step bert_cmp_fp16 node bin/tsrt.js compare $B --fp16 --per-layer --json "$OUT/bert_cmp_fp16.json" --check 'cosine>=0.999'
# rules: every Softmax/LayerNorm fp32 in BERT (should not lose accuracy; compare says what it costs)
TAILN=4 step bert_cmp_rules node bin/tsrt.js compare $B --fp16 --op-precisions 'Softmax:fp32,LayerNormalization:fp32'
# int8: minmax scales from the model's test input, int8 compare per layer
step r50_calib node bin/tsrt.js calibrate $R --calib-data $M/resnet50_b1 --calibrator minmax --calib-cache "$OUT/r50.cache"
TAILN=6 step r50_cmp_int8 node bin/tsrt.js compare $R --int8 --calib-cache "$OUT/r50.cache" --per-layer --json "$OUT/r50_cmp_int8.json"
# accuracy budget: a tight one that needs moves, then the speed cost (GPU median before/after)
TAILN=14 step r50_budget node bin/tsrt.js build $R --fp16 --accuracy-budget 'sqnr>=60' --budget-max-moves 6
TAILN=14 step r50_budget_int8 node bin/tsrt.js build $R --int8 --calib-cache "$OUT/r50.cache" --accuracy-budget 'cosine>=0.999' --budget-max-moves 8
