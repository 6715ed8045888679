// Data movement kernels that are not plain views: Gather, Concat, Pad, Resize, and tsrt::Relayout (transpose + pad
// + dtype conversion in one pass). (Transpose, Slice, Expand and broadcasting are views fused into elementwise
// kernels, see indexing.ts.)
import type { DType } from '../ir/types.js';
import { relayoutAttrs } from '../ops/relayout.js';
import { cType, computeType, finalizeKernel, grid1d, load, store, type KernelSource } from './kernel.js';
import { NotLowerable, registerLowering } from './lower.js';

const floatLit = (v: number) => (Number.isFinite(v) ? `${v}` : Number.isNaN(v) ? 'NAN' : v > 0 ? 'INFINITY' : '(-INFINITY)');
import { strides } from '../ir/tensor.js';

const prod = (xs: number[]) => xs.reduce((a, b) => a * b, 1);

/** Gather along `axis`: out[o, i..., in] = data[o, idx[i...], in]; negative indices wrap. */
export function emitGather(p: { dtype: DType; dataDims: number[]; nIdx: number; indexDtype: DType; axis: number }): KernelSource {
  const outer = prod(p.dataDims.slice(0, p.axis)), axisLen = p.dataDims[p.axis], inner = prod(p.dataDims.slice(p.axis + 1));
  const n = outer * p.nIdx * inner;
  const T = cType(p.dtype), I = cType(p.indexDtype);
  return finalizeKernel({
    prefix: 'gather', grid: grid1d(n), block: [256, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'idx', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void ${name}(const ${T}* __restrict__ x, const ${I}* __restrict__ idx, ${T}* __restrict__ y) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < ${n}LL; i += (long long)gridDim.x * blockDim.x) {
    const long long in_ = i % ${inner}LL, t = i / ${inner}LL, k = t % ${p.nIdx}LL, o = t / ${p.nIdx}LL;
    long long j = (long long)idx[k]; if (j < 0) j += ${axisLen}LL;
    y[i] = (j >= 0 && j < ${axisLen}LL) ? x[(o * ${axisLen}LL + j) * ${inner}LL + in_] : (${T})0;
  }
}
`,
  });
}

/** Copies one input of a Concat into its slot of the output (one launch per input). */
export function emitConcatSlot(p: { dtype: DType; outDims: number[]; axis: number; inDims: number[]; offset: number }): KernelSource {
  const outer = prod(p.inDims.slice(0, p.axis)), inAxis = p.inDims[p.axis], inner = prod(p.inDims.slice(p.axis + 1));
  const outAxis = p.outDims[p.axis];
  const n = outer * inAxis * inner;
  const T = cType(p.dtype);
  return finalizeKernel({
    prefix: 'concat', grid: grid1d(n), block: [256, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void ${name}(const ${T}* __restrict__ x, ${T}* __restrict__ y) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < ${n}LL; i += (long long)gridDim.x * blockDim.x) {
    const long long in_ = i % ${inAxis * inner}LL, o = i / ${inAxis * inner}LL;
    y[o * ${outAxis * inner}LL + ${p.offset * inner}LL + in_] = x[i];
  }
}
`,
  });
}

/** Pad with constant / reflect / edge / wrap modes; pads = [begin..., end...] (may be negative = crop). */
export function emitPad(p: { dtype: DType; inDims: number[]; pads: number[]; mode: string; value: number }): KernelSource {
  const r = p.inDims.length;
  const outDims = p.inDims.map((d, i) => d + p.pads[i] + p.pads[i + r]);
  const n = prod(outDims);
  const T = cType(p.dtype);
  const ist = strides(p.inDims);
  const lines: string[] = [];
  let rem = 'i';
  for (let d = r - 1; d >= 0; d--) {
    lines.push(`    long long c${d} = (${rem}) % ${outDims[d]}LL - ${p.pads[d]}LL;`);
    rem = `(${rem}) / ${outDims[d]}LL`;
    const L = p.inDims[d];
    if (p.mode === 'constant') lines.push(`    if (c${d} < 0 || c${d} >= ${L}LL) inside = false;`);
    else if (p.mode === 'edge') lines.push(`    c${d} = c${d} < 0 ? 0 : (c${d} >= ${L}LL ? ${L - 1}LL : c${d});`);
    else if (p.mode === 'wrap') lines.push(`    c${d} = ((c${d} % ${L}LL) + ${L}LL) % ${L}LL;`);
    else if (L === 1) lines.push(`    c${d} = 0;`);
    else lines.push(`    { const long long per = ${2 * (L - 1)}LL; long long m = ((c${d} % per) + per) % per; c${d} = m < ${L}LL ? m : per - m; }`);
  }
  const off = p.inDims.map((_, d) => `c${d} * ${ist[d]}LL`).join(' + ') || '0';
  return finalizeKernel({
    prefix: 'pad', grid: grid1d(n), block: [256, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void ${name}(const ${T}* __restrict__ x, ${T}* __restrict__ y) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < ${n}LL; i += (long long)gridDim.x * blockDim.x) {
    bool inside = true;
${lines.join('\n')}
    y[i] = inside ? x[${off}] : ${store(p.dtype, `(${computeType(p.dtype)})(${floatLit(p.value)})`)};
  }
}
`,
  });
}

/** tsrt::Relayout: y = convert(pad(transpose(x, perm), pads, 0)): each thread one output element, read through the
 * transposed strides of x, zero in the padding. One pass over the data where Cast, Transpose and Pad took three. */
export function emitRelayout(p: { from: DType; to: DType; inDims: number[]; perm: number[]; pads: number[] }): KernelSource {
  const r = p.inDims.length;
  const outDims = p.perm.map((q, i) => p.inDims[q] + p.pads[i] + p.pads[i + r]);
  const n = prod(outDims);
  const ist = strides(p.inDims);
  const lines: string[] = [];
  let rem = 'i';
  for (let d = r - 1; d >= 0; d--) {
    lines.push(`    const long long c${d} = (${rem}) % ${outDims[d]}LL - ${p.pads[d]}LL;`);
    rem = `(${rem}) / ${outDims[d]}LL`;
    if (p.pads[d] || p.pads[d + r]) lines.push(`    if (c${d} < 0 || c${d} >= ${p.inDims[p.perm[d]]}LL) inside = false;`);
  }
  const off = p.perm.map((q, d) => `c${d} * ${ist[q]}LL`).join(' + ') || '0';
  const X = cType(p.from), Y = cType(p.to);
  return finalizeKernel({
    prefix: 'relayout', grid: grid1d(n), block: [256, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void ${name}(const ${X}* __restrict__ x, ${Y}* __restrict__ y) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < ${n}LL; i += (long long)gridDim.x * blockDim.x) {
    bool inside = true;
${lines.join('\n')}
    y[i] = ${store(p.to, `inside ? ${load(p.from, `x[${off}]`)} : 0.0f`)};
  }
}
`,
  });
}

registerLowering('Relayout', (ctx) => {
  const x = ctx.t(ctx.node.inputs[0]);
  const a = relayoutAttrs(ctx.node, x.dims.length, x.dtype);
  if (typeof a === 'string') throw new NotLowerable(a);
  if (!prod(x.dims)) return;
  ctx.kernel(emitRelayout({ from: x.dtype, to: a.to, inDims: x.dims, perm: a.perm, pads: a.pads }), [ctx.v(ctx.node.inputs[0]), ctx.v(ctx.node.outputs[0])]);
}, 'tsrt');
