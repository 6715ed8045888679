// Per-channel symmetric weight scales for int8 conv/gemm kernels: weights are known at build time, so each
// output channel gets its own range (TensorRT does the same; per-tensor weight scales lose accuracy on
// depthwise and BN-folded convs, whose channels differ by orders of magnitude).
import { TsrtError } from '../errors.js';
import { toF64 } from '../ir/tensor.js';
import type { Tensor } from '../ir/types.js';

/** max |w| over each slice along `axis` (0: Conv's and Gemm-with-transB's output channels; 1: ConvTranspose's
 * and MatMul's [K, N] weights), divided by 127, as float32. An all-zero channel gets scale 0. */
export function perChannelWeightScales(w: Tensor, axis = 0): Float32Array {
  if (!/^(float|bfloat)/.test(w.dtype)) {
    throw new TsrtError('USAGE', `perChannelWeightScales: weight is ${w.dtype}, expected a float tensor`, 'pass the fp32/fp16 weight before quantization');
  }
  const rank = w.dims.length;
  const ax = axis < 0 ? axis + rank : axis;
  if (ax < 0 || ax >= rank) {
    throw new TsrtError('USAGE', `perChannelWeightScales: axis ${axis} is out of range for a weight of shape [${w.dims}]`, `use an axis in [${-rank}, ${rank - 1}]`);
  }
  const v = toF64(w);
  const channels = w.dims[ax];
  let inner = 1;
  for (let d = ax + 1; d < rank; d++) inner *= w.dims[d];
  const amax = new Float64Array(channels);
  for (let i = 0; i < v.length; i++) {
    const c = Math.floor(i / inner) % channels;
    const a = Math.abs(v[i]);
    if (a > amax[c]) amax[c] = a;
  }
  return Float32Array.from(amax, (a) => a / 127);
}
