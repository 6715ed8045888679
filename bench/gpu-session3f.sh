#!/usr/bin/env bash
# Session 3: persistent ws kernels, space-to-depth stem, vector maxpool/relayout on the GPU: kernel checks (float64 and
# mma.sync references), stem A/B, per-kernel profiles of ResNet-50 bs256/bs1 and BERT bs32 (fresh timing cache).
#   source .gpu/enter && bash bench/gpu-session3f.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
T="timeout -k 5"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
(python3 bench/export.py $M resnet50 bert-base > /dev/null 2>&1 || echo "export failed" >> "$L") &
$T 90 node scripts/gpu-wgmma-check.mjs --filter=odd,bert_ffn1,bert_attn --iters=5 --budget-s=80 > "$OUT/wgmma.txt" 2>&1; echo "wgmma-check rc $?" >> "$L"
grep -E "^FAIL|passed, |_p " "$OUT/wgmma.txt" | head -30 >> "$L"
$T 60 node scripts/gpu-pool-relayout.mjs > "$OUT/pool.txt" 2>&1; echo "pool-relayout rc $?" >> "$L"; grep -E "FAIL|passed|x old|speedup" "$OUT/pool.txt" | head -12 >> "$L"
wait
$T 120 node scripts/gpu-stem-s2d.mjs $M/resnet50/model.onnx --batch 256 --opt-level 3 > "$OUT/stem.txt" 2>&1; echo "stem rc $?" >> "$L"; tail -12 "$OUT/stem.txt" >> "$L"
P="$T 150 node scripts/gpu-profile.mjs"
$P $M/resnet50/model.onnx --batch 256 --timing-cache $TC --json "$OUT/prof_r50_256.json" --top 25 >> "$L" 2>&1
$P $M/bert-base/model.onnx --batch 32 --timing-cache $TC --json "$OUT/prof_bert_32.json" --top 6 >> "$L" 2>&1
$P $M/resnet50/model.onnx --batch 1 --timing-cache $TC --json "$OUT/prof_r50_1.json" --top 3 >> "$L" 2>&1
cp $TC "$OUT/timing-cache.json"
cat "$L"
