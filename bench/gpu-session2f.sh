#!/usr/bin/env bash
# Device call: tsrt compare / precision rules / accuracy budget on the GPU (bench/gpu-compare.sh: ResNet-50, BERT),
# and the issue-6 accuracy bars on the real-weight models (fp16 cosine >= 0.999, int8 >= 0.99 against the fp32
# engine; int8 scales from the model's own test input).   source .gpu/enter && bash bench/gpu-session2f.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
mkdir -p /tmp/cmp
[ -n "${REAL_ONLY:-}" ] || OUT=/tmp/cmp bash bench/gpu-compare.sh 2>&1 | grep -v "^$" | cut -c1-220
R=.gpu/onnx-tests/models/real
for m in models/ppocr_mobile_v2_cls $R/silero_vad_v5; do
  n=$(basename $m)
  node bin/tsrt.js compare $m/model.onnx --fp16 --check 'cosine>=0.999' > /tmp/cmp/${n}_fp16.txt 2>&1; echo "== $n fp16 compare rc=$?"; tail -4 /tmp/cmp/${n}_fp16.txt | cut -c1-200
  node bin/tsrt.js calibrate $m/model.onnx --calib-data $m/test_data_set_0 --calibrator minmax --calib-cache /tmp/cmp/$n.cache > /tmp/cmp/${n}_cal.txt 2>&1; echo "== $n calibrate rc=$?"; tail -2 /tmp/cmp/${n}_cal.txt | cut -c1-200
  node bin/tsrt.js compare $m/model.onnx --int8 --calib-cache /tmp/cmp/$n.cache --check 'cosine>=0.99' > /tmp/cmp/${n}_int8.txt 2>&1; echo "== $n int8 compare rc=$?"; tail -4 /tmp/cmp/${n}_int8.txt | cut -c1-200
done
tar czf "$OUT/compare-logs.tgz" -C /tmp/cmp . 2>/dev/null
