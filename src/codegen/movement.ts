// Data movement kernels that are not plain views: Gather, Concat, Pad, Resize, and tsrt::Relayout (transpose + pad
// + dtype conversion in one pass). (Transpose, Slice, Expand and broadcasting are views fused into elementwise
// kernels, see indexing.ts.)
import type { DType } from '../ir/types.js';
import { relayoutAttrs } from '../ops/relayout.js';
import { cType, computeType, finalizeKernel, grid1d, load, store, type KernelSource } from './kernel.js';
import { NotLowerable, registerLowering } from './lower.js';
import { emitBlockedRelayout, quantizeLane } from './relayout_s2d.js';
import { markTunable, type KernelTactic } from './tactics.js';
import { storageAlign, vecAccessProblems, vecStore, widestVec } from './vector_io.js';

const floatLit = (v: number) => (Number.isFinite(v) ? `${v}` : Number.isNaN(v) ? 'NAN' : v > 0 ? 'INFINITY' : '(-INFINITY)');
import { DTYPE_SIZE, strides } from '../ir/tensor.js';

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

/** `scale`: to is int8 and the values are quantized (quantizeLane); without it they are converted with store(). */
export interface RelayoutProblem { from: DType; to: DType; inDims: number[]; perm: number[]; pads: number[]; scale?: number }

const DEFAULT_BLOCK = 256;
/** Largest flat index the vector kernel forms with 32-bit indices (a grid-stride step past the end included). */
const INT_INDEX_LIMIT = 2 ** 31 - 132 * 32 * 1024;
const relayoutOutDims = (p: RelayoutProblem) => p.perm.map((q, i) => p.inDims[q] + p.pads[i] + p.pads[i + p.inDims.length]);

/** Why `vec` output elements per thread cannot run `p` with buffers `align`-byte aligned; empty when they can. The
 * vector kernel's threads own `vec` consecutive elements of the innermost output axis (reads stay scalar: they
 * come from `vec` places of x when the axis is transposed). */
export function relayoutVecProblems(p: RelayoutProblem, vec: number, align: number): string[] {
  if (vec === 1) return [];
  const bad = vecAccessProblems(p.to, vec);
  if (bad.length) return bad;
  const inner = relayoutOutDims(p).at(-1) ?? 1, out: string[] = [];
  if (inner % vec) out.push(`the innermost output axis (${inner}) is not a multiple of vec ${vec}`);
  if (align % (vec * DTYPE_SIZE[p.to])) out.push(`y is only ${align}-byte aligned, the ${vec * DTYPE_SIZE[p.to]}-byte vectors need more`);
  return out;
}

/** Default tactic: the widest packed store (at most 16 bytes) the innermost axis and alignment allow. */
export function relayoutHeuristic(p: RelayoutProblem, align: number): KernelTactic {
  return { block: DEFAULT_BLOCK, vec: widestVec(p.to, relayoutOutDims(p).at(-1) ?? 1, align) };
}

/** tsrt::Relayout: y = convert(pad(transpose(x, perm), pads, 0)), read through the transposed strides of x, zero in
 * the padding; convert is a dtype conversion or, with `scale`, the int8 quantization. One pass over the data where
 * Cast (or QuantizeLinear), Transpose and Pad took three. `{}`: one thread per output element (the scalar kernel);
 * vec > 1: the vector kernel (relayoutVecProblems says when it applies). */
export function emitRelayout(p: RelayoutProblem, t: KernelTactic = {}): KernelSource {
  const block = t.block ?? DEFAULT_BLOCK, vec = t.vec ?? 1;
  const bad = relayoutVecProblems(p, vec, 16);
  if (bad.length) throw new Error(`emitRelayout: ${bad.join('; ')}`);
  return markTunable(vec > 1 ? emitRelayoutVec(p, vec, block) : emitRelayoutScalar(p, block), { family: 'relayout', problem: p });
}

function emitRelayoutScalar(p: RelayoutProblem, block: number): KernelSource {
  const r = p.inDims.length;
  const outDims = relayoutOutDims(p);
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
  // a non-default block is stated in the source so each block size is its own kernel (the tuner times them apart)
  const bounds = block === DEFAULT_BLOCK ? '' : `__launch_bounds__(${block}) `;
  return finalizeKernel({
    prefix: 'relayout', grid: grid1d(n, block), block: [block, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void ${bounds}${name}(const ${X}* __restrict__ x, ${Y}* __restrict__ y) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < ${n}LL; i += (long long)gridDim.x * blockDim.x) {
    bool inside = true;
${lines.join('\n')}
    y[i] = ${store(p.to, quantizeLane(p.scale, `inside ? ${load(p.from, `x[${off}]`)} : 0.0f`))};
  }
}
`,
  });
}

/** Thread i writes output elements [i*vec, i*vec+vec): a run of the innermost axis, one packed store. Outer
 * coordinates and their padding checks are per thread; the innermost one per lane, resolved while emitting when
 * the axis is exactly one vector (the stem input: 3 channels of 3 planes and 5 zeros per 16-byte pixel). */
function emitRelayoutVec(p: RelayoutProblem, vec: number, block: number): KernelSource {
  const r = p.inDims.length, outDims = relayoutOutDims(p), ist = strides(p.inDims);
  const nv = prod(outDims) / vec, runs = outDims[r - 1] / vec;
  const big = Math.max(prod(p.inDims), nv * vec) > INT_INDEX_LIMIT;
  const U = big ? 'long long' : 'unsigned', S = big ? 'long long' : 'int', L = big ? 'LL' : 'u';
  const lines: string[] = [];
  const padded = (d: number) => !!(p.pads[d] || p.pads[d + r]);
  const outerPad = outDims.slice(0, -1).some((_, d) => padded(d));
  if (outerPad) lines.push('    bool inside = true;');
  lines.push(runs === 1 ? `    ${U} rem = i;` : `    ${U} rem = i / ${runs}${L};
    const ${S} cl = (${S})(i - rem * ${runs}${L}) * ${vec} - ${p.pads[r - 1]};`);
  for (let d = r - 2; d >= 0; d--) {
    // (the outermost coordinate is what is left: i < nv bounds it)
    const c = d ? `(${S})(rem % ${outDims[d]}${L})` : `(${S})rem`;
    lines.push(`    const ${S} c${d} = ${c}${p.pads[d] ? ` - ${p.pads[d]}` : ''};${d ? ` rem /= ${outDims[d]}${L};` : ''}`);
    if (padded(d)) lines.push(`    if (c${d} < 0 || c${d} >= ${p.inDims[p.perm[d]]}) inside = false;`);
  }
  const base = p.perm.slice(0, -1).map((q, d) => `c${d} * ${ist[q]}`).join(' + ') || '0';
  lines.push(`    const ${cType(p.from)}* xb = x + (${base});`);
  const inLen = p.inDims[p.perm[r - 1]], step = ist[p.perm[r - 1]];
  const lanes = Array.from({ length: vec }, (_, j) => {
    const cond: string[] = outerPad ? ['inside'] : [];
    let at: string;
    if (runs === 1) {
      const c = j - p.pads[r - 1];
      if (c < 0 || c >= inLen) return '0.0f';
      at = `${c * step}`;
    } else {
      at = `(cl + ${j}) * ${step}`;
      if (padded(r - 1)) cond.push(`cl + ${j} >= 0 && cl + ${j} < ${inLen}`);
    }
    const v = quantizeLane(p.scale, load(p.from, `xb[${at}]`));
    return cond.length ? `(${cond.join(' && ')}) ? ${v} : 0.0f` : v;
  });
  lines.push(`    ${vecStore(p.to, `y + i * ${vec}${L}`, lanes)}`);
  return finalizeKernel({
    prefix: `relayout_v${vec}`, grid: grid1d(nv, block), block: [block, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void __launch_bounds__(${block}) ${name}(const ${cType(p.from)}* __restrict__ x, ${cType(p.to)}* __restrict__ y) {
  for (${U} i = blockIdx.x * (${U})blockDim.x + threadIdx.x; i < ${nv}${L}; i += (${U})gridDim.x * blockDim.x) {
${lines.join('\n')}
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
  // blocksize > 1: the space-to-depth input of a stride-2 stem conv (passes/space_to_depth.ts) has its own kernel
  if (a.blocksize > 1) {
    ctx.kernel(emitBlockedRelayout({ from: x.dtype, to: a.to, inDims: x.dims, perm: a.perm, pads: a.pads, blocksize: a.blocksize, scale: a.scale }), [ctx.v(ctx.node.inputs[0]), ctx.v(ctx.node.outputs[0])]);
    return;
  }
  const p: RelayoutProblem = { from: x.dtype, to: a.to, inDims: x.dims, perm: a.perm, pads: a.pads, ...(a.scale !== undefined ? { scale: a.scale } : {}) };
  const align = storageAlign(ctx, [ctx.node.inputs[0], ctx.node.outputs[0]]);
  ctx.kernel(emitRelayout(p, relayoutHeuristic(p, align)), [ctx.v(ctx.node.inputs[0]), ctx.v(ctx.node.outputs[0])]);
}, 'tsrt');
