#!/usr/bin/env bash
# Session 5: why the int8 1x1 convs of ResNet-50 bs256 move bytes at a third of the fp16 kernels' rate (layer1
# conv3: int8 0.39 ms for 461 MB, fp16 0.32 ms for 925 MB on the H100). Every int8 staged-epilogue form of that
# conv timed (the engine tuner timed only its 21 best-estimated candidates), then Nsight Compute (when the machine
# has it) on the tuned int8 kernel, the int8 downsample-shaped kernel without residual, and the fp16 kernel of the
# same layer: speed of light, memory workload, warp states, occupancy. One device call.
#   (dist/ built here and carried with .gpu/)  source .gpu/enter && bash bench/gpu-session5b.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; L="$OUT/log.txt"
T="timeout -k 5"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L"
run() { local name=$1 limit=$2; shift 2; $T "$limit" "$@" > "$OUT/$name.txt" 2>&1; echo "$name rc $?" >> "$L"; grep -E "^FAIL|passed, |^====" "$OUT/$name.txt" | head -20 >> "$L"; }
run int8sweep 120 node scripts/gpu-int8-kernels.mjs --filter=rn50_bs256_1x1_64_256_56_res,rn50_bs256_1x1s2_512_1024_28 --configs=_se,m128n64k64 --budget-s=110
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute*/ncu 2>/dev/null | head -1)
echo "ncu: ${NCU:-none}" >> "$L"
if [ -n "$NCU" ]; then
  S="--section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats"
  $T 150 $NCU $S -k regex:'conv_i8_1x1_qbrq_wg_m128n128k128_w8x1_s3_ws_se_p|conv_i8_1x1_qbrq_wg_m128n64k128_w8x1_s5_se_' -c 2 node scripts/gpu-int8-kernels.mjs --filter=rn50_bs256_1x1_64_256_56_res --configs=m128n128k128_w8x1_s3_ws_se_p,m128n64k128_w8x1_s5_se --iters=1 > "$OUT/ncu_int8.txt" 2>&1
  echo "ncu int8 rc $?" >> "$L"
  $T 150 $NCU $S -k regex:'conv_tc_1x1_.*wg_m128n256k64_w8x1_s3_ws_se_b' -c 1 node scripts/gpu-wgmma-check.mjs --filter=rn50_bs256_1x1_64_256_56 --iters=1 > "$OUT/ncu_fp16.txt" 2>&1
  echo "ncu fp16 rc $?" >> "$L"
  grep -E "^  [a-z_]+.*\(|DRAM Throughput|Memory Throughput|Duration|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Theoretical Occupancy|Issued Ipc|No Eligible|Warp Cycles Per Issued|L2 Hit|Block Limit" "$OUT"/ncu_*.txt | cut -c1-200 >> "$L"
fi
cat "$L"
