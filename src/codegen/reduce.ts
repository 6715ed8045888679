// Reductions, softmax and layer normalization. All accumulate in fp32 (double for float64 data).
// Problems are collapsed to [outer, R, inner]: inner == 1 uses one warp per output with shuffles,
// inner > 1 uses one thread per (outer, inner) pair looping over R, which keeps loads coalesced.
import type { DType } from '../ir/types.js';
import { cType, computeType, finalizeKernel, grid1d, load, store, type KernelSource } from './kernel.js';
import { EW_HELPERS } from './ew_ops.js';

export type ReduceOp = 'sum' | 'mean' | 'max' | 'min' | 'prod' | 'l1' | 'l2' | 'logsum' | 'logsumexp' | 'sumsquare' | 'argmax' | 'argmin';

export interface ReduceProblem {
  inDtype: DType;
  outDtype: DType;
  outer: number;
  r: number;
  inner: number;
  op: ReduceOp;
  selectLastIndex?: boolean;
}

/** Split dims into [outer, R, inner] when the reduced axes are contiguous; undefined otherwise. */
export function reduceShape(dims: number[], axes: number[]): { outer: number; r: number; inner: number } | undefined {
  const ax = [...new Set(axes)].sort((a, b) => a - b);
  const nonTrivial = ax.filter((a) => dims[a] !== 1);
  if (!nonTrivial.length) return { outer: dims.reduce((a, b) => a * b, 1), r: ax.length ? 1 : 1, inner: 1 };
  const lo = nonTrivial[0], hi = nonTrivial[nonTrivial.length - 1];
  for (let a = lo; a <= hi; a++) if (!ax.includes(a) && dims[a] !== 1) return undefined;
  const prod = (s: number, e: number) => dims.slice(s, e).reduce((a, b) => a * b, 1);
  return { outer: prod(0, lo), r: prod(lo, hi + 1), inner: prod(hi + 1, dims.length) };
}

function ops(op: ReduceOp, acc: string): { init: string; step: (x: string) => string; combine: (a: string, b: string) => string; fin: (a: string, r: string) => string } {
  const fl = acc === 'double' ? '' : 'f';
  switch (op) {
    case 'sum': return { init: '0', step: (x) => x, combine: (a, b) => `${a} + ${b}`, fin: (a) => a };
    case 'mean': return { init: '0', step: (x) => x, combine: (a, b) => `${a} + ${b}`, fin: (a, r) => `${a} / (${acc})${r}` };
    case 'sumsquare': return { init: '0', step: (x) => `${x} * ${x}`, combine: (a, b) => `${a} + ${b}`, fin: (a) => a };
    case 'l1': return { init: '0', step: (x) => `fabs${fl}(${x})`, combine: (a, b) => `${a} + ${b}`, fin: (a) => a };
    case 'l2': return { init: '0', step: (x) => `${x} * ${x}`, combine: (a, b) => `${a} + ${b}`, fin: (a) => `sqrt${fl}(${a})` };
    case 'logsum': return { init: '0', step: (x) => x, combine: (a, b) => `${a} + ${b}`, fin: (a) => `log${fl}(${a})` };
    case 'logsumexp': return { init: '0', step: (x) => `exp${fl}(${x})`, combine: (a, b) => `${a} + ${b}`, fin: (a) => `log${fl}(${a})` };
    case 'prod': return { init: '1', step: (x) => x, combine: (a, b) => `${a} * ${b}`, fin: (a) => a };
    case 'max': return acc === 'float'
      ? { init: '-INFINITY', step: (x) => x, combine: (a, b) => `fmaxf_nan(${a}, ${b})`, fin: (a) => a }
      : { init: acc === 'double' ? '-INFINITY' : '(-9223372036854775807LL - 1)', step: (x) => x, combine: (a, b) => `(${a} > ${b} ? ${a} : ${b})`, fin: (a) => a };
    case 'min': return acc === 'float'
      ? { init: 'INFINITY', step: (x) => x, combine: (a, b) => `fminf_nan(${a}, ${b})`, fin: (a) => a }
      : { init: acc === 'double' ? 'INFINITY' : '9223372036854775807LL', step: (x) => x, combine: (a, b) => `(${a} < ${b} ? ${a} : ${b})`, fin: (a) => a };
    default: throw new Error(`not a value reduction: ${op}`);
  }
}

export function emitReduce(p: ReduceProblem): KernelSource {
  if (p.op === 'argmax' || p.op === 'argmin') return emitArgReduce(p);
  const acc = computeType(p.inDtype) === 'long long' && (p.op === 'mean' || p.op === 'l2' || p.op.startsWith('log')) ? 'double' : computeType(p.inDtype);
  const o = ops(p.op, acc);
  const nOut = p.outer * p.inner;
  const inT = cType(p.inDtype), outT = cType(p.outDtype);
  const sig = `const ${inT}* __restrict__ x, ${outT}* __restrict__ y`;
  if (p.inner === 1 && p.r >= 32) {
    // one warp per output row
    const block = 256, warps = block / 32;
    return finalizeKernel({
      prefix: 'reduce_w', grid: grid1d(nOut, warps), block: [block, 1, 1], sharedBytes: 0,
      params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
      body: (name) => `${EW_HELPERS}
extern "C" __global__ void ${name}(${sig}) {
  const int lane = threadIdx.x & 31;
  for (long long row = blockIdx.x * ${warps}LL + (threadIdx.x >> 5); row < ${nOut}LL; row += (long long)gridDim.x * ${warps}) {
    const ${inT}* xr = x + row * ${p.r}LL;
    ${acc} a = ${o.init};
    for (long long j = lane; j < ${p.r}LL; j += 32) { ${acc} v = ${load(p.inDtype, 'xr[j]')}; a = ${o.combine('a', o.step('v'))}; }
    for (int off = 16; off > 0; off >>= 1) { ${acc} b = __shfl_xor_sync(0xffffffffu, a, off); a = ${o.combine('a', 'b')}; }
    if (lane == 0) y[row] = ${store(p.outDtype, o.fin('a', String(p.r)))};
  }
}
`,
    });
  }
  return finalizeKernel({
    prefix: 'reduce_t', grid: grid1d(nOut), block: [256, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `${EW_HELPERS}
extern "C" __global__ void ${name}(${sig}) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < ${nOut}LL; i += (long long)gridDim.x * blockDim.x) {
    const long long outer = i / ${p.inner}LL, inner = i % ${p.inner}LL;
    const ${inT}* xr = x + outer * ${p.r * p.inner}LL + inner;
    ${acc} a = ${o.init};
    for (long long j = 0; j < ${p.r}LL; j++) { ${acc} v = ${load(p.inDtype, `xr[j * ${p.inner}LL]`)}; a = ${o.combine('a', o.step('v'))}; }
    y[i] = ${store(p.outDtype, o.fin('a', String(p.r)))};
  }
}
`,
  });
}

function emitArgReduce(p: ReduceProblem): KernelSource {
  const nOut = p.outer * p.inner;
  const inT = cType(p.inDtype);
  const acc = computeType(p.inDtype);
  const better = p.op === 'argmax'
    ? (p.selectLastIndex ? 'v >= best' : 'v > best')
    : (p.selectLastIndex ? 'v <= best' : 'v < best');
  return finalizeKernel({
    prefix: 'argreduce', grid: grid1d(nOut), block: [256, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void ${name}(const ${inT}* __restrict__ x, long long* __restrict__ y) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < ${nOut}LL; i += (long long)gridDim.x * blockDim.x) {
    const long long outer = i / ${p.inner}LL, inner = i % ${p.inner}LL;
    const ${inT}* xr = x + outer * ${p.r * p.inner}LL + inner;
    ${acc} best = ${load(p.inDtype, 'xr[0]')}; long long bi = 0;
    for (long long j = 1; j < ${p.r}LL; j++) { ${acc} v = ${load(p.inDtype, `xr[j * ${p.inner}LL]`)}; if (${better}) { best = v; bi = j; } }
    y[i] = bi;
  }
}
`,
  });
}

export interface SoftmaxProblem { dtype: DType; outer: number; axis: number; inner: number; log: boolean }

/** Softmax / LogSoftmax along one axis of [outer, axis, inner]; one warp per row when inner == 1. */
export function emitSoftmax(p: SoftmaxProblem): KernelSource {
  const T = cType(p.dtype);
  const fin = p.log ? '(v - m) - logf(s)' : 'expf(v - m) / s';
  if (p.inner === 1) {
    const block = 256, warps = 8;
    return finalizeKernel({
      prefix: 'softmax_w', grid: grid1d(p.outer, warps), block: [block, 1, 1], sharedBytes: 0,
      params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
      body: (name) => `
extern "C" __global__ void ${name}(const ${T}* __restrict__ x, ${T}* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  for (long long row = blockIdx.x * ${warps}LL + (threadIdx.x >> 5); row < ${p.outer}LL; row += (long long)gridDim.x * ${warps}) {
    const ${T}* xr = x + row * ${p.axis}LL; ${T}* yr = y + row * ${p.axis}LL;
    float m = -INFINITY;
    for (int j = lane; j < ${p.axis}; j += 32) m = fmaxf(m, ${load(p.dtype, 'xr[j]')});
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    float s = 0.f;
    for (int j = lane; j < ${p.axis}; j += 32) s += expf(${load(p.dtype, 'xr[j]')} - m);
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    for (int j = lane; j < ${p.axis}; j += 32) { float v = ${load(p.dtype, 'xr[j]')}; yr[j] = ${store(p.dtype, fin)}; }
  }
}
`,
    });
  }
  const n = p.outer * p.inner;
  return finalizeKernel({
    prefix: 'softmax_t', grid: grid1d(n), block: [256, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void ${name}(const ${T}* __restrict__ x, ${T}* __restrict__ y) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < ${n}LL; i += (long long)gridDim.x * blockDim.x) {
    const long long base = (i / ${p.inner}LL) * ${p.axis * p.inner}LL + i % ${p.inner}LL;
    float m = -INFINITY;
    for (int j = 0; j < ${p.axis}; j++) m = fmaxf(m, ${load(p.dtype, `x[base + j * ${p.inner}LL]`)});
    float s = 0.f;
    for (int j = 0; j < ${p.axis}; j++) s += expf(${load(p.dtype, `x[base + j * ${p.inner}LL]`)} - m);
    for (int j = 0; j < ${p.axis}; j++) { float v = ${load(p.dtype, `x[base + j * ${p.inner}LL]`)}; y[base + j * ${p.inner}LL] = ${store(p.dtype, fin)}; }
  }
}
`,
  });
}

export interface LayerNormProblem { dtype: DType; scaleDtype: DType; rows: number; cols: number; eps: number; hasScale: boolean; hasBias: boolean }

/** Elements per 16-byte vector for the register-resident LayerNorm, and the most vectors a lane holds. */
const LN_VEC: Partial<Record<DType, number>> = { float16: 8, float32: 4 };
const LN_MAX_VECS_PER_LANE = 8;

/** LayerNormalization over the last `cols` elements of each row, two-pass in fp32 with the row held by one warp.
 * Rows that split into 16-byte vectors evenly over the warp (BERT's 768 fp16: 3 per lane) are loaded once into
 * registers with vector loads and stored the same way; others re-read the row from L1/L2 element by element. */
export function emitLayerNorm(p: LayerNormProblem): KernelSource {
  const vw = LN_VEC[p.dtype];
  if (vw && p.cols % (32 * vw) === 0 && p.cols / (32 * vw) <= LN_MAX_VECS_PER_LANE && p.rows < 2 ** 31) return emitLayerNormVec(p, vw);
  const T = cType(p.dtype), S = cType(p.scaleDtype);
  const warps = 8, block = 256;
  const scale = p.hasScale ? load(p.scaleDtype, 'g[j]') : '1.0f';
  const bias = p.hasBias ? load(p.scaleDtype, 'b[j]') : '0.0f';
  return finalizeKernel({
    prefix: 'layernorm', grid: grid1d(p.rows, warps), block: [block, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'g', type: 'ptr' }, { name: 'b', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void ${name}(const ${T}* __restrict__ x, const ${S}* __restrict__ g, const ${S}* __restrict__ b, ${T}* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  for (long long row = blockIdx.x * ${warps}LL + (threadIdx.x >> 5); row < ${p.rows}LL; row += (long long)gridDim.x * ${warps}) {
    const ${T}* xr = x + row * ${p.cols}LL; ${T}* yr = y + row * ${p.cols}LL;
    float s = 0.f;
    for (int j = lane; j < ${p.cols}; j += 32) s += ${load(p.dtype, 'xr[j]')};
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    const float mean = s / ${p.cols}.0f;
    float q = 0.f;
    for (int j = lane; j < ${p.cols}; j += 32) { float d = ${load(p.dtype, 'xr[j]')} - mean; q += d * d; }
    for (int off = 16; off > 0; off >>= 1) q += __shfl_xor_sync(0xffffffffu, q, off);
    const float inv = rsqrtf(q / ${p.cols}.0f + ${p.eps.toExponential(8)}f);
    for (int j = lane; j < ${p.cols}; j += 32) { float v = (${load(p.dtype, 'xr[j]')} - mean) * inv * ${scale} + ${bias}; yr[j] = ${store(p.dtype, 'v')}; }
  }
}
`,
  });
}

function emitLayerNormVec(p: LayerNormProblem, vw: number): KernelSource {
  const T = cType(p.dtype), S = cType(p.scaleDtype);
  const warps = 8, block = 256, nv = p.cols / (32 * vw);
  const scale = p.hasScale ? load(p.scaleDtype, 'g[j]') : '1.0f';
  const bias = p.hasBias ? load(p.scaleDtype, 'b[j]') : '0.0f';
  // element e of vector k of this lane is column j = (k * 32 + lane) * vw + e: a warp's loads of one k are contiguous
  const unpack = p.dtype === 'float16'
    // bit operations instead of reinterpret_cast on a local vector, which would put it on the stack
    ? `const unsigned w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
      for (int e = 0; e < 4; ++e) { v[k][2 * e] = __half2float(__ushort_as_half((unsigned short)(w[e] & 0xffffu))); v[k][2 * e + 1] = __half2float(__ushort_as_half((unsigned short)(w[e] >> 16))); }`
    : `v[k][0] = u.x; v[k][1] = u.y; v[k][2] = u.z; v[k][3] = u.w;`;
  const vecT = p.dtype === 'float16' ? 'uint4' : 'float4';
  const pack = p.dtype === 'float16'
    ? `unsigned w[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) w[e] = (unsigned)__half_as_ushort(__float2half_rn(o[2 * e])) | ((unsigned)__half_as_ushort(__float2half_rn(o[2 * e + 1])) << 16);
      const uint4 u = make_uint4(w[0], w[1], w[2], w[3]);`
    : `float4 u = make_float4(o[0], o[1], o[2], o[3]);`;
  return finalizeKernel({
    prefix: 'layernorm_v', grid: grid1d(p.rows, warps), block: [block, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'g', type: 'ptr' }, { name: 'b', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void __launch_bounds__(${block}) ${name}(const ${T}* __restrict__ x, const ${S}* __restrict__ g, const ${S}* __restrict__ b, ${T}* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  for (int row = blockIdx.x * ${warps} + (threadIdx.x >> 5); row < ${p.rows}; row += gridDim.x * ${warps}) {
    const ${vecT}* xr = reinterpret_cast<const ${vecT}*>(x + (long long)row * ${p.cols});
    ${vecT}* yr = reinterpret_cast<${vecT}*>(y + (long long)row * ${p.cols});
    float v[${nv}][${vw}];
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < ${nv}; ++k) {
      const ${vecT} u = xr[k * 32 + lane];
      ${unpack}
#pragma unroll
      for (int e = 0; e < ${vw}; ++e) s += v[k][e];
    }
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    const float mean = s / ${p.cols}.0f;
    float q = 0.f;
#pragma unroll
    for (int k = 0; k < ${nv}; ++k)
#pragma unroll
      for (int e = 0; e < ${vw}; ++e) { const float d = v[k][e] - mean; q += d * d; }
    for (int off = 16; off > 0; off >>= 1) q += __shfl_xor_sync(0xffffffffu, q, off);
    const float inv = rsqrtf(q / ${p.cols}.0f + ${p.eps.toExponential(8)}f);
#pragma unroll
    for (int k = 0; k < ${nv}; ++k) {
      float o[${vw}];
#pragma unroll
      for (int e = 0; e < ${vw}; ++e) { const int j = (k * 32 + lane) * ${vw} + e; o[e] = (v[k][e] - mean) * inv * ${scale} + ${bias}; }
      ${pack}
      yr[k * 32 + lane] = u;
    }
  }
}
`,
  });
}
