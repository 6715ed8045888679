// Reductions, softmax and layer normalization. All accumulate in fp32 (double for float64 data).
// Problems are collapsed to [outer, R, inner]: inner == 1 uses one warp per output with shuffles,
// inner > 1 uses one thread per (outer, inner) pair looping over R, which keeps loads coalesced.
import type { DType } from '../ir/types.js';
import { cType, computeType, finalizeKernel, grid1d, load, store, type KernelSource } from './kernel.js';
import { EW_HELPERS } from './ew_ops.js';
import { markTunable, rowLayout, type KernelTactic } from './tactics.js';

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

/** Default tactic of a reduction: what emitReduce picks without one. */
export function reduceHeuristic(p: ReduceProblem): KernelTactic {
  return isRowReduce(p) ? { tpr: 32, rpb: 8 } : { block: 256 };
}

/** One group of threads per output row (inner == 1, R >= 32); else one thread per output. */
export const isRowReduce = (p: ReduceProblem) => p.op !== 'argmax' && p.op !== 'argmin' && p.inner === 1 && p.r >= 32;

/** `t`: tpr/rpb for row reductions, block for the others (kernel_tactics.ts validates; default reduceHeuristic). */
export function emitReduce(p: ReduceProblem, t: KernelTactic = reduceHeuristic(p)): KernelSource {
  return markTunable(emitReduceWith(p, t), { family: 'reduce', problem: p });
}

function emitReduceWith(p: ReduceProblem, t: KernelTactic): KernelSource {
  if (p.op === 'argmax' || p.op === 'argmin') return emitArgReduce(p, t.block ?? 256);
  const acc = computeType(p.inDtype) === 'long long' && (p.op === 'mean' || p.op === 'l2' || p.op.startsWith('log')) ? 'double' : computeType(p.inDtype);
  const o = ops(p.op, acc);
  const nOut = p.outer * p.inner;
  const inT = cType(p.inDtype), outT = cType(p.outDtype);
  const sig = `const ${inT}* __restrict__ x, ${outT}* __restrict__ y`;
  if (isRowReduce(p)) {
    // a group of tpr threads (default one warp) per output row
    const tpr = t.tpr ?? 32, rpb = t.rpb ?? 8, rl = rowLayout(tpr, rpb);
    return finalizeKernel({
      prefix: 'reduce_w', grid: grid1d(nOut, rpb), block: [rl.block, 1, 1], sharedBytes: 0,
      params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
      body: (name) => `${EW_HELPERS}
extern "C" __global__ void ${name}(${sig}) {
${rl.shared(acc)}  const int lane = ${rl.lane};
  ${rl.loop(nOut, 'long long')}
    const ${inT}* xr = x + row * ${p.r}LL;
    ${acc} a = ${o.init};
    for (long long j = lane; j < ${p.r}LL; j += ${tpr}) { ${acc} v = ${load(p.inDtype, 'xr[j]')}; a = ${o.combine('a', o.step('v'))}; }
    for (int off = ${rl.off0}; off > 0; off >>= 1) { ${acc} b = __shfl_xor_sync(0xffffffffu, a, off); a = ${o.combine('a', 'b')}; }${rl.cross('a', o.combine)}
    if (lane == 0${rl.andAct}) y[row] = ${store(p.outDtype, o.fin('a', String(p.r)))};
  }
}
`,
    });
  }
  const block = t.block ?? 256;
  return finalizeKernel({
    prefix: 'reduce_t', grid: grid1d(nOut, block), block: [block, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `${EW_HELPERS}
extern "C" __global__ void ${bounds(block)}${name}(${sig}) {
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

function emitArgReduce(p: ReduceProblem, block: number): KernelSource {
  const nOut = p.outer * p.inner;
  const inT = cType(p.inDtype);
  const acc = computeType(p.inDtype);
  const better = p.op === 'argmax'
    ? (p.selectLastIndex ? 'v >= best' : 'v > best')
    : (p.selectLastIndex ? 'v <= best' : 'v < best');
  return finalizeKernel({
    prefix: 'argreduce', grid: grid1d(nOut, block), block: [block, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void ${bounds(block)}${name}(const ${inT}* __restrict__ x, long long* __restrict__ y) {
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

/** Default tactic of a softmax: what emitSoftmax picks without one. */
export function softmaxHeuristic(p: SoftmaxProblem): KernelTactic {
  return p.inner === 1 ? { tpr: 32, rpb: 8 } : { block: 256 };
}

/** Softmax / LogSoftmax along one axis of [outer, axis, inner]; a group of tpr threads (default one warp) per row
 * when inner == 1, else a thread per (outer, inner) pair. */
export function emitSoftmax(p: SoftmaxProblem, t: KernelTactic = softmaxHeuristic(p)): KernelSource {
  return markTunable(emitSoftmaxWith(p, t), { family: 'softmax', problem: p });
}

function emitSoftmaxWith(p: SoftmaxProblem, t: KernelTactic): KernelSource {
  const T = cType(p.dtype);
  const fin = p.log ? '(v - m) - logf(s)' : 'expf(v - m) / s';
  if (p.inner === 1) {
    const tpr = t.tpr ?? 32, rl = rowLayout(tpr, t.rpb ?? 8);
    return finalizeKernel({
      prefix: 'softmax_w', grid: grid1d(p.outer, t.rpb ?? 8), block: [rl.block, 1, 1], sharedBytes: 0,
      params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
      body: (name) => `
extern "C" __global__ void ${name}(const ${T}* __restrict__ x, ${T}* __restrict__ y) {
${rl.shared('float')}  const int lane = ${rl.lane};
  ${rl.loop(p.outer, 'long long')}
    const ${T}* xr = x + row * ${p.axis}LL; ${T}* yr = y + row * ${p.axis}LL;
    float m = -INFINITY;
    for (int j = lane; j < ${p.axis}; j += ${tpr}) m = fmaxf(m, ${load(p.dtype, 'xr[j]')});
    for (int off = ${rl.off0}; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));${rl.cross('m', (a, b) => `fmaxf(${a}, ${b})`)}
    float s = 0.f;
    for (int j = lane; j < ${p.axis}; j += ${tpr}) s += expf(${load(p.dtype, 'xr[j]')} - m);
    for (int off = ${rl.off0}; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);${rl.cross('s', (a, b) => `${a} + ${b}`)}
    for (int j = lane; j < ${p.axis}; j += ${tpr}) { float v = ${load(p.dtype, 'xr[j]')}; ${rl.guard}yr[j] = ${store(p.dtype, fin)}; }
  }
}
`,
    });
  }
  const n = p.outer * p.inner, block = t.block ?? 256;
  return finalizeKernel({
    prefix: 'softmax_t', grid: grid1d(n, block), block: [block, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void ${bounds(block)}${name}(const ${T}* __restrict__ x, ${T}* __restrict__ y) {
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
const LN_VEC: Partial<Record<DType, number>> = { float16: 8, bfloat16: 8, float32: 4 };

/** 16-bit float <-> its raw bits in a register (the vector LayerNorm unpacks 32-bit words without a local array). */
const HALF_BITS: Partial<Record<DType, { f: (u: string) => string; u: (f: string) => string }>> = {
  float16: { f: (u) => `__half2float(__ushort_as_half(${u}))`, u: (f) => `__half_as_ushort(__float2half_rn(${f}))` },
  bfloat16: { f: (u) => `__bfloat162float(__ushort_as_bfloat16(${u}))`, u: (f) => `__bfloat16_as_ushort(__float2bfloat16_rn(${f}))` },
};
const LN_MAX_VECS_PER_LANE = 8;

/** Default tactic of a LayerNorm: one warp per row, 8 rows per block, 16-byte vectors when the row splits into
 * them evenly over the warp with at most LN_MAX_VECS_PER_LANE per lane, else scalar loads. */
export function layerNormHeuristic(p: LayerNormProblem): KernelTactic {
  const vw = LN_VEC[p.dtype];
  const vec = vw && p.cols % (32 * vw) === 0 && p.cols / (32 * vw) <= LN_MAX_VECS_PER_LANE && p.rows < 2 ** 31 ? vw : 1;
  return { tpr: 32, rpb: 8, vec };
}

/** LayerNormalization over the last `cols` elements of each row, two-pass in fp32 with the row held by a group of
 * tpr threads (default one warp). With vec > 1 the row is loaded once into registers with vector loads (BERT's
 * 768 fp16: 3 uint4 per lane) and stored the same way; with vec 1 it is re-read from L1/L2 element by element.
 * kernel_tactics.ts says which tactics are valid for a problem. */
export function emitLayerNorm(p: LayerNormProblem, t: KernelTactic = layerNormHeuristic(p)): KernelSource {
  const tpr = t.tpr ?? 32, rpb = t.rpb ?? 8, vec = t.vec ?? 1;
  const k = vec > 1 ? emitLayerNormVec(p, vec, tpr, rpb) : emitLayerNormScalar(p, tpr, rpb);
  return markTunable(k, { family: 'layernorm', problem: p });
}

function emitLayerNormScalar(p: LayerNormProblem, tpr: number, rpb: number): KernelSource {
  const T = cType(p.dtype), S = cType(p.scaleDtype);
  const rl = rowLayout(tpr, rpb), block = rl.block;
  const scale = p.hasScale ? load(p.scaleDtype, 'g[j]') : '1.0f';
  const bias = p.hasBias ? load(p.scaleDtype, 'b[j]') : '0.0f';
  return finalizeKernel({
    prefix: 'layernorm', grid: grid1d(p.rows, rpb), block: [block, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'g', type: 'ptr' }, { name: 'b', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void ${name}(const ${T}* __restrict__ x, const ${S}* __restrict__ g, const ${S}* __restrict__ b, ${T}* __restrict__ y) {
${rl.shared('float')}  const int lane = ${rl.lane};
  ${rl.loop(p.rows, 'long long')}
    const ${T}* xr = x + row * ${p.cols}LL; ${T}* yr = y + row * ${p.cols}LL;
    float s = 0.f;
    for (int j = lane; j < ${p.cols}; j += ${tpr}) s += ${load(p.dtype, 'xr[j]')};
    for (int off = ${rl.off0}; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);${rl.cross('s', sum)}
    const float mean = s / ${p.cols}.0f;
    float q = 0.f;
    for (int j = lane; j < ${p.cols}; j += ${tpr}) { float d = ${load(p.dtype, 'xr[j]')} - mean; q += d * d; }
    for (int off = ${rl.off0}; off > 0; off >>= 1) q += __shfl_xor_sync(0xffffffffu, q, off);${rl.cross('q', sum)}
    const float inv = rsqrtf(q / ${p.cols}.0f + ${p.eps.toExponential(8)}f);
    for (int j = lane; j < ${p.cols}; j += ${tpr}) { float v = (${load(p.dtype, 'xr[j]')} - mean) * inv * ${scale} + ${bias}; ${rl.guard}yr[j] = ${store(p.dtype, 'v')}; }
  }
}
`,
  });
}

const sum = (a: string, b: string) => `${a} + ${b}`;

/** Launch bounds of a flat kernel whose source does not otherwise depend on its block size: none for the default
 * 256 (today's kernels, byte for byte), stated for the others, which also names them apart (names hash sources). */
const bounds = (block: number) => (block === 256 ? '' : `__launch_bounds__(${block}) `);

/** Register-resident LayerNorm with `vw`-element vectors: fp16/bf16 8 (uint4), 4 (uint2), 2 (one 32-bit word); fp32 4
 * (float4), 2 (float2). */
function emitLayerNormVec(p: LayerNormProblem, vw: number, tpr: number, rpb: number): KernelSource {
  const T = cType(p.dtype), S = cType(p.scaleDtype);
  const rl = rowLayout(tpr, rpb), block = rl.block, nv = p.cols / (tpr * vw);
  const halfWords = vw / 2, words = vw === 2 ? ['u'] : ['u.x', 'u.y', 'u.z', 'u.w'].slice(0, halfWords);
  const scale = p.hasScale ? load(p.scaleDtype, 'g[j]') : '1.0f';
  const bias = p.hasBias ? load(p.scaleDtype, 'b[j]') : '0.0f';
  // element e of vector k of this lane is column j = (k * tpr + lane) * vw + e: a group's loads of one k are contiguous
  const bits = HALF_BITS[p.dtype];
  const unpack = bits
    // bit operations instead of reinterpret_cast on a local vector, which would put it on the stack
    ? `const unsigned w[${halfWords}] = { ${words.join(', ')} };
#pragma unroll
      for (int e = 0; e < ${halfWords}; ++e) { v[k][2 * e] = ${bits.f('(unsigned short)(w[e] & 0xffffu)')}; v[k][2 * e + 1] = ${bits.f('(unsigned short)(w[e] >> 16)')}; }`
    : ['x', 'y', 'z', 'w'].slice(0, vw).map((c, i) => `v[k][${i}] = u.${c};`).join(' ');
  const vecT = bits ? ({ 2: 'unsigned', 4: 'uint2', 8: 'uint4' } as Record<number, string>)[vw] : `float${vw}`;
  const pack = bits
    ? `unsigned w[${halfWords}];
#pragma unroll
      for (int e = 0; e < ${halfWords}; ++e) w[e] = (unsigned)${bits.u('o[2 * e]')} | ((unsigned)${bits.u('o[2 * e + 1]')} << 16);
      const ${vecT} u = ${vw === 2 ? 'w[0]' : `make_${vecT}(${words.map((_, i) => `w[${i}]`).join(', ')})`};`
    : `${vecT} u = make_${vecT}(${Array.from({ length: vw }, (_, i) => `o[${i}]`).join(', ')});`;
  return finalizeKernel({
    prefix: 'layernorm_v', grid: grid1d(p.rows, rpb), block: [block, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'g', type: 'ptr' }, { name: 'b', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void __launch_bounds__(${block}) ${name}(const ${T}* __restrict__ x, const ${S}* __restrict__ g, const ${S}* __restrict__ b, ${T}* __restrict__ y) {
${rl.shared('float')}  const int lane = ${rl.lane};
  ${rl.loop(p.rows, 'int')}
    const ${vecT}* xr = reinterpret_cast<const ${vecT}*>(x + (long long)row * ${p.cols});
    ${vecT}* yr = reinterpret_cast<${vecT}*>(y + (long long)row * ${p.cols});
    float v[${nv}][${vw}];
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < ${nv}; ++k) {
      const ${vecT} u = xr[k * ${tpr} + lane];
      ${unpack}
#pragma unroll
      for (int e = 0; e < ${vw}; ++e) s += v[k][e];
    }
    for (int off = ${rl.off0}; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);${rl.cross('s', sum)}
    const float mean = s / ${p.cols}.0f;
    float q = 0.f;
#pragma unroll
    for (int k = 0; k < ${nv}; ++k)
#pragma unroll
      for (int e = 0; e < ${vw}; ++e) { const float d = v[k][e] - mean; q += d * d; }
    for (int off = ${rl.off0}; off > 0; off >>= 1) q += __shfl_xor_sync(0xffffffffu, q, off);${rl.cross('q', sum)}
    const float inv = rsqrtf(q / ${p.cols}.0f + ${p.eps.toExponential(8)}f);
#pragma unroll
    for (int k = 0; k < ${nv}; ++k) {
      float o[${vw}];
#pragma unroll
      for (int e = 0; e < ${vw}; ++e) { const int j = (k * ${tpr} + lane) * ${vw} + e; o[e] = (v[k][e] - mean) * inv * ${scale} + ${bias}; }
      ${pack}
      ${rl.guard}yr[k * ${tpr} + lane] = u;
    }
  }
}
`,
  });
}
