#!/usr/bin/env bash
# Session 5 final bench, second call: gpu-session5-final-r50.sh's torch.compile run was killed at its 280 s limit on
# the H100 (no result line), so this call gives torch.compile max-autotune bs256 470 s, then times tsrt fp16 and int8
# bs256 at --opt-level 3 in the same call, from the timing cache the first call measured on the same GPU model
# (bench/results/2026-11-26-h100-timing-cache.json: no tuning, same kernels).
#   (dist/ built here and carried with .gpu/)  source .gpu/enter && bash bench/gpu-session5-final-r50b.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=/tmp/bm; TC=/tmp/tc.json; L="$OUT/log.txt"
cp bench/results/2026-11-26-h100-timing-cache.json $TC
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
(python3 bench/export.py $M resnet50 > /dev/null 2>&1 || echo "export failed" >> "$L") &
timeout -k 5 470 python3 .gpu/models.py peers --model resnet50 --batch 256 --dtype fp16 --modes compile --json "$OUT/peers_r50_compile.json" > "$OUT/peers_compile.txt" 2>&1
echo "compile rc $?" >> "$L"; grep '^{"model' "$OUT/peers_compile.txt" >> "$L"; tail -3 "$OUT/peers_compile.txt" | cut -c1-300 >> "$L"
wait
timeout -k 5 80 node bench/bench.mjs $M/resnet50/model.onnx 256 --fp16 --int8 --opt-level 3 --timing-cache $TC --json "$OUT/tsrt_r50.json" 2>&1 | cut -c1-500 >> "$L"
cat "$L"
