// tsrt::Relayout with blocksize > 1: transpose, 2x2 (bxb) space-to-depth, zero padding and dtype conversion in one pass.
// It prepares the input of a stride-2 stem conv rewritten by space-to-depth-conv (passes/space_to_depth.ts): an fp32
// NCHW image becomes fp16 [N, H/2 + pads, W/2 + pads, 16], each output pixel 32 contiguous bytes the tensor-core conv
// reads as two 16-byte chunks. A thread writes one 16-byte chunk of a pixel's channels (one vector store; 8 fp16
// channels read from 2x2 input pixels), so a warp's stores are contiguous; it falls back to one element per thread
// when the channel count does not split into 16-byte chunks. An int8 stem (QConv) takes the same layout quantized
// (quantizeLane): 16 int8 channels are one 16-byte chunk.
import { DTYPE_SIZE, strides } from '../ir/tensor.js';
import type { DType } from '../ir/types.js';
import { cType, finalizeKernel, grid1d, load, store, type KernelSource } from './kernel.js';
import { flit } from './tc_gemm.js';
import { vecStore } from './vector_io.js';

export interface BlockedRelayout { from: DType; to: DType; inDims: number[]; perm: number[]; pads: number[]; blocksize: number; scale?: number }

/** Compute-type expression of float `v` quantized to int8 by the Relayout's `scale` (`v` itself without one), as
 * ONNX QuantizeLinear rounds: the fp32 division x / scale (not a multiply by 1/scale: the op the Relayout replaces
 * divides, and the CPU reference runs that op), half to even, saturated; NaN -> 0 as the reference's int8 store.
 * The result is an integer in [-128, 127], so the int8 store() after it is exact. */
export function quantizeLane(scale: number | undefined, v: string): string {
  return scale === undefined ? v : `(float)max(-128, min(127, __float2int_rn(__fdiv_rn(${v}, ${flit(scale)}))))`;
}

const prod = (xs: number[]) => xs.reduce((a, b) => a * b, 1);

/** Output dims: the transposed [N, H, W, C] as [N, ceil(H/b), ceil(W/b), b*b*C], plus pads. */
export function blockedRelayoutDims(p: Pick<BlockedRelayout, 'inDims' | 'perm' | 'pads' | 'blocksize'>): number[] {
  const [n, h, w, c] = p.perm.map((q) => p.inDims[q]), b = p.blocksize;
  return [n, Math.ceil(h / b), Math.ceil(w / b), b * b * c].map((d, i) => d + p.pads[i] + p.pads[i + 4]);
}

/** 32-bit word of two 16-bit stored values (lo first in memory). */
function pack16(to: DType, lo: string, hi: string): string {
  const bits = (v: string) => (to === 'float16' ? `(unsigned)__half_as_ushort(${v})` : `(unsigned)__bfloat16_as_ushort(${v})`);
  return `(${bits(lo)} | (${bits(hi)} << 16))`;
}

export function emitBlockedRelayout(p: BlockedRelayout): KernelSource {
  if (p.inDims.length !== 4 || p.perm.length !== 4 || p.pads.length !== 8 || p.blocksize < 2) {
    throw new Error(`emitBlockedRelayout: needs rank 4, 8 pads and blocksize >= 2 (got dims [${p.inDims}], blocksize ${p.blocksize})`);
  }
  const b = p.blocksize;
  const [N, H, W, C] = p.perm.map((q) => p.inDims[q]);
  const S = [N, Math.ceil(H / b), Math.ceil(W / b), b * b * C];
  const out = blockedRelayoutDims(p);
  const ist = strides(p.inDims), st = p.perm.map((q) => ist[q]);
  const pd = p.pads;
  // a 16-byte chunk per thread where the channels split into them (y 16-byte aligned: every engine buffer is)
  const es = DTYPE_SIZE[p.to];
  const V = (es === 1 || es === 2 || es === 4) && (out[3] * es) % 16 === 0 ? 16 / es : 1;
  const n = prod(out) / V;
  const X = cType(p.from), Y = cType(p.to);
  const lane = (u: string) => `
      {
        const long long sc = c0 + ${u};
        if (inside && sc >= 0 && sc < ${S[3]}LL) {
          const long long q = sc / ${C}LL, c = sc % ${C}LL, h = i1 * ${b}LL + q / ${b}LL, w = i2 * ${b}LL + q % ${b}LL;
          if (h < ${H}LL && w < ${W}LL) v = ${load(p.from, `x[i0 * ${st[0]}LL + h * ${st[1]}LL + w * ${st[2]}LL + c * ${st[3]}LL]`)};
        }
      }`;
  let body: string;
  if (V === 1) {
    body = `    float v = 0.0f;${lane('0')}
    y[e] = ${store(p.to, quantizeLane(p.scale, 'v'))};`;
  } else {
    // lanes converted one by one like the scalar kernel (same bits), then one packed store
    const packed = es === 4 ? `*reinterpret_cast<float4*>(y + e) = make_float4(o[0], o[1], o[2], o[3]);`
      : es === 1 ? vecStore(p.to, 'y + e', Array.from({ length: V }, (_, u) => `o[${u}]`))
        : `*reinterpret_cast<uint4*>(y + e) = make_uint4(${Array.from({ length: 4 }, (_, k) => pack16(p.to, `o[${2 * k}]`, `o[${2 * k + 1}]`)).join(', ')});`;
    body = `    ${Y} o[${V}];
#pragma unroll
    for (int u = 0; u < ${V}; ++u) {
      float v = 0.0f;${lane('u')}
      o[u] = ${store(p.to, quantizeLane(p.scale, 'v'))};
    }
    ${packed}`;
  }
  return finalizeKernel({
    prefix: 'relayout_s2d', grid: grid1d(n), block: [256, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void ${name}(const ${X}* __restrict__ x, ${Y}* __restrict__ y) {
  for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < ${n}LL; t += (long long)gridDim.x * blockDim.x) {
    const long long e = t * ${V}LL, c0 = e % ${out[3]}LL - ${pd[3]}LL, px = e / ${out[3]}LL;
    const long long i2 = px % ${out[2]}LL - ${pd[2]}LL, i1 = (px / ${out[2]}LL) % ${out[1]}LL - ${pd[1]}LL, i0 = px / ${out[2] * out[1]}LL - ${pd[0]}LL;
    const bool inside = i0 >= 0 && i0 < ${S[0]}LL && i1 >= 0 && i1 < ${S[1]}LL && i2 >= 0 && i2 < ${S[2]}LL;
${body}
  }
}
`,
  });
}
