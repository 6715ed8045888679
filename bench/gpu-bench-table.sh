#!/usr/bin/env bash
# Issue 7's benchmark in one device call: exports ResNet-50 and BERT-base (.gpu/models.py via bench/export.py), times
# the PyTorch peers (eager; torch.compile max-autotune for ResNet-50 bs256, and BERT bs32 with BENCH_BERT_COMPILE=1:
# both cold do not fit one 600 s call on the H100), builds tsrt engines with autotuning (--opt-level 3, cold timing
# cache; fp16 and int8 with random-weight calibration scales) and a rebuild from the timing cache, and writes the
# comparison table with ratios: $OUT/table.md and $OUT/table.json (bench/table.mjs). Copy them to bench/results/;
# `node bench/table.mjs DIR --readme README.md` puts a call's table into the README's bench-table block.
#   (dist/ built here and carried with .gpu/)  source .gpu/enter && bash bench/gpu-bench-table.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
T="timeout -k 5"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
(python3 bench/export.py $M resnet50 bert-base > /dev/null 2>&1 || echo "export failed" >> "$L") &
$T 330 python3 .gpu/models.py peers --model resnet50 --batch 256 --dtype fp16 --modes compile --json "$OUT/peers_r50_compile.json" > "$OUT/peers_compile.txt" 2>&1 || echo "torch.compile resnet50: rc $? (see peers_compile.txt)" >> "$L"
if [ -n "${BENCH_BERT_COMPILE:-}" ]; then
  $T 200 python3 .gpu/models.py peers --model bert-base --batch 32 --dtype fp16 --modes compile --json "$OUT/peers_bert_compile.json" >> "$OUT/peers_compile.txt" 2>&1 || echo "torch.compile bert-base: rc $?" >> "$L"
fi
$T 60 python3 .gpu/models.py peers --model resnet50 --batch 1,256 --dtype fp16 --modes eager --json "$OUT/peers_r50_eager.json" > /dev/null 2>&1 || echo "eager resnet50: rc $?" >> "$L"
wait
$T 60 python3 .gpu/models.py peers --model bert-base --batch 1,32 --dtype fp16 --modes eager --json "$OUT/peers_bert_eager.json" > /dev/null 2>&1 || echo "eager bert-base: rc $?" >> "$L"
$T 120 node bench/bench.mjs $M/resnet50/model.onnx 1,256 --fp16 --opt-level 3 --timing-cache $TC --json "$OUT/tsrt_1_r50.json" 2>&1 | cut -c1-300 >> "$L"
$T 90 node bench/bench.mjs $M/resnet50/model.onnx 256 --int8 --opt-level 3 --timing-cache $TC --json "$OUT/tsrt_2_r50_int8.json" 2>&1 | cut -c1-300 >> "$L"
$T 30 node bench/bench.mjs $M/resnet50/model.onnx 256 --fp16 --opt-level 3 --timing-cache $TC --json "$OUT/tsrt_3_r50_cached.json" 2>&1 | cut -c1-300 >> "$L"
$T 90 node bench/bench.mjs $M/bert-base/model.onnx 1,32 --fp16 --opt-level 3 --timing-cache $TC --json "$OUT/tsrt_4_bert.json" 2>&1 | cut -c1-300 >> "$L"
node bench/table.mjs "$OUT" --md "$OUT/table.md" --json "$OUT/table.json" >> "$L" 2>&1
cp $TC "$OUT/timing-cache.json" 2>/dev/null
cat "$L"
