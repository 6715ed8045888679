// Max / average pooling, 1-3 spatial dims, NCHW or NHWC. The scalar kernel takes one thread per output element;
// channels-last pools whose channels allow it take the vector kernel: one thread per `vec` contiguous channels of
// one output pixel (8 fp16 = 16 bytes), one packed load per window tap and one packed store, each lane computing
// exactly what the scalar kernel computes for its channel (fp32 max/sum in the same tap order, same divisor).
import { DTYPE_SIZE } from '../ir/tensor.js';
import type { DType } from '../ir/types.js';
import { cType, finalizeKernel, grid1d, load, store, type KernelSource } from './kernel.js';
import { markTunable, type KernelTactic } from './tactics.js';
import { vecAccessProblems, vecLane, vecLoad, vecStore, vecStoreWords, vecWords, widestVec } from './vector_io.js';

export interface PoolProblem {
  dtype: DType;
  kind: 'max' | 'avg';
  layout: 'NCHW' | 'NHWC';
  n: number;
  c: number;
  inSpatial: number[];
  outSpatial: number[];
  kernel: number[];
  strides: number[];
  padsBegin: number[];
  padsEnd: number[];
  dilations: number[];
  countIncludePad: boolean;
}

const DEFAULT_BLOCK = 256;
const prod = (xs: number[]) => xs.reduce((a, b) => a * b, 1);

/** Why `vec` channels per thread cannot run `p` with buffers `align`-byte aligned; empty when they can. */
export function poolVecProblems(p: PoolProblem, vec: number, align: number): string[] {
  if (vec === 1) return [];
  if (p.layout !== 'NHWC') return ['channels-first pooling has no vector form (a pixel\'s channels are not contiguous)'];
  const bad = vecAccessProblems(p.dtype, vec);
  if (bad.length) return bad;
  const out: string[] = [];
  if (p.c % vec) out.push(`${p.c} channels are not a multiple of vec ${vec}`);
  if (align % (vec * DTYPE_SIZE[p.dtype])) out.push(`x/y are only ${align}-byte aligned, the ${vec * DTYPE_SIZE[p.dtype]}-byte vectors need more`);
  return out;
}

/** Default tactic: the widest packed access (at most 16 bytes) the channels and alignment allow, blocks of 256. */
export function poolHeuristic(p: PoolProblem, align: number): KernelTactic {
  return { block: DEFAULT_BLOCK, vec: p.layout === 'NHWC' ? widestVec(p.dtype, p.c, align) : 1 };
}

/** The pool kernel for tactic `t` (block size, channels per thread); `{}` is the scalar kernel, blocks of 256.
 * The caller checks the tactic (poolVecProblems, and the alignment the lowering or tuner knows). */
export function emitPool(p: PoolProblem, t: KernelTactic = {}): KernelSource {
  const block = t.block ?? DEFAULT_BLOCK, vec = t.vec ?? 1;
  const bad = poolVecProblems(p, vec, 16);
  if (bad.length) throw new Error(`emitPool: ${bad.join('; ')}`);
  return markTunable(vec > 1 ? emitPoolVec(p, vec, block) : emitPoolScalar(p, block), { family: 'pool', problem: p });
}

/** Window loops shared by both kernels: `o<d>` are the output coordinates, `visit(indent, off)` the body for an
 * in-bounds tap whose element offset (times `chanStride`) is `off`. */
function windowLoops(p: PoolProblem, coord: string, chanStride: number, visit: (indent: string, off: string) => string[], unroll = false): string[] {
  const sd = p.inSpatial.length;
  const lines: string[] = [];
  let indent = '    ';
  const spStr: number[] = [];
  let acc = 1;
  for (let d = sd - 1; d >= 0; d--) { spStr[d] = acc; acc *= p.inSpatial[d]; }
  for (let d = 0; d < sd; d++) {
    if (unroll) lines.push(`${indent}#pragma unroll`);
    lines.push(`${indent}for (int k${d} = 0; k${d} < ${p.kernel[d]}; k${d}++) {`);
    indent += '  ';
    lines.push(`${indent}const ${coord} s${d} = o${d} * ${p.strides[d]} - ${p.padsBegin[d]} + k${d} * ${p.dilations[d]};`);
    lines.push(`${indent}if (s${d} < 0 || s${d} >= ${p.inSpatial[d]}${coord === 'int' ? '' : 'LL'}) continue;`);
  }
  const L = coord === 'int' ? '' : 'LL';
  lines.push(...visit(indent, Array.from({ length: sd }, (_, d) => `s${d} * ${spStr[d] * chanStride}${L}`).join(' + ')));
  for (let d = sd - 1; d >= 0; d--) { indent = indent.slice(2); lines.push(`${indent}}`); }
  return lines;
}

/** The average's divisor as a float expression (the same text in both kernels, so the same value). */
function avgDivisor(p: PoolProblem, cnt: string): string {
  if (!p.countIncludePad) return `(float)(${cnt} > 0 ? ${cnt} : 1)`;
  // divisor = window clipped to the padded extent [-padBegin, in - 1 + padEnd] (ONNX semantics)
  const terms = p.inSpatial.map((_, d) => {
    const start = `(o${d} * ${p.strides[d]}LL - ${p.padsBegin[d]}LL)`;
    return `((min(${start} + ${(p.kernel[d] - 1) * p.dilations[d]}LL, ${p.inSpatial[d] - 1 + p.padsEnd[d]}LL) - ${start}) / ${p.dilations[d]}LL + 1)`;
  });
  return `(float)(${terms.join(' * ')})`;
}

/** A non-default block size is stated in the source, so each block size is its own kernel (names hash sources)
 * and the tuner times them apart; the default keeps the original text. */
const bounds = (block: number) => (block === DEFAULT_BLOCK ? '' : `__launch_bounds__(${block}) `);

function emitPoolScalar(p: PoolProblem, block: number): KernelSource {
  const sd = p.inSpatial.length;
  const T = cType(p.dtype);
  const outSp = p.outSpatial.reduce((a, b) => a * b, 1);
  const inSp = p.inSpatial.reduce((a, b) => a * b, 1);
  const n = p.n * p.c * outSp;
  const lines: string[] = [];
  // decompose output index
  if (p.layout === 'NCHW') {
    lines.push(`    long long r = i;`);
    for (let d = sd - 1; d >= 0; d--) lines.push(`    const long long o${d} = r % ${p.outSpatial[d]}LL; r /= ${p.outSpatial[d]}LL;`);
    lines.push(`    const long long c = r % ${p.c}LL, b = r / ${p.c}LL;`);
    lines.push(`    const ${T}* xb = x + (b * ${p.c}LL + c) * ${inSp}LL;`);
  } else {
    lines.push(`    const long long c = i % ${p.c}LL; long long r = i / ${p.c}LL;`);
    for (let d = sd - 1; d >= 0; d--) lines.push(`    const long long o${d} = r % ${p.outSpatial[d]}LL; r /= ${p.outSpatial[d]}LL;`);
    lines.push(`    const long long b = r;`);
    lines.push(`    const ${T}* xb = x + b * ${inSp * p.c}LL + c;`);
  }
  const chanStride = p.layout === 'NCHW' ? 1 : p.c;
  lines.push(p.kind === 'max' ? '    float acc = -INFINITY;' : '    float acc = 0.f; int cnt = 0;');
  lines.push(...windowLoops(p, 'long long', chanStride, (indent, off) => [
    `${indent}const float v = ${load(p.dtype, `xb[${off}]`)};`,
    p.kind === 'max' ? `${indent}acc = (v > acc || v != v) ? v : acc;` : `${indent}acc += v; cnt++;`,
  ]));
  const result = p.kind === 'avg' ? `acc / ${avgDivisor(p, 'cnt')}` : 'acc';
  const body = lines.join('\n');
  return finalizeKernel({
    prefix: `${p.kind}pool`, grid: grid1d(n, block), block: [block, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void ${bounds(block)}${name}(const ${T}* __restrict__ x, ${T}* __restrict__ y) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < ${n}LL; i += (long long)gridDim.x * blockDim.x) {
${body}
    y[i] = ${store(p.dtype, result)};
  }
}
`,
  });
}

/** Windows up to this many taps are unrolled whole in the vector kernel, so every tap's load is in flight at once
 * (3x3: 9, where unrolling the inner loop only gives 3 per outer iteration); larger ones would bloat the code. */
const MAX_UNROLLED_TAPS = 27;

/** Largest flat index the vector kernel may form with 32-bit indices (a grid-stride step past the end included). */
const INT_INDEX_LIMIT = 2 ** 31 - 132 * 32 * 1024;

/** The vector kernel's window walk in float (every lane through load()/store(), as the scalar kernel) and its
 * store to `out`. */
function floatBody(p: PoolProblem, vec: number, S: string, out: string): string[] {
  const lanes = Array.from({ length: vec }, (_, j) => j);
  const lines = [`    float ${lanes.map((j) => `a${j} = ${p.kind === 'max' ? '-INFINITY' : '0.f'}`).join(', ')};${p.kind === 'avg' ? ' int cnt = 0;' : ''}`];
  lines.push(...windowLoops(p, S, p.c, (indent, off) => [
    `${indent}${vecLoad(p.dtype, vec, 'v', `xb + (${off})`)}`,
    ...lanes.map((j) => `${indent}{ const float v${j} = ${vecLane(p.dtype, vec, 'v', j)}; ${p.kind === 'max'
      ? `a${j} = (v${j} > a${j} || v${j} != v${j}) ? v${j} : a${j};` : `a${j} += v${j};`} }`),
    ...(p.kind === 'avg' ? [`${indent}cnt++;`] : []),
  ], prod(p.kernel) <= MAX_UNROLLED_TAPS));
  if (p.kind === 'avg') lines.push(`    const float dv = ${avgDivisor(p, 'cnt')};`);
  lines.push(`    ${vecStore(p.dtype, out, lanes.map((j) => (p.kind === 'avg' ? `a${j} / dv` : `a${j}`)))}`);
  return lines;
}

/** The int8 / uint8 max pool's window walk on packed words, no float conversions (I2F and F2I issue at 16 a clock
 * on an SM, an eighth of the ALU rate, and made the int8 ResNet-50 stem pool conversion-bound): each 32-bit word's
 * bytes go into two words of 16-bit lanes (even and odd bytes) maxed with __vmaxu2; int8 bytes are biased by 0x80
 * first, which maps signed order onto unsigned order. The accumulators start at the smallest value (0, i.e. -128 for
 * int8), which is what the float path's -inf saturates to when no tap is inside: the same bits. Ends with the
 * store to `out`. */
function byteMaxBody(p: PoolProblem, vec: number, S: string, out: string): string[] {
  const words = vec / 4, bias = p.dtype === 'int8' ? ' ^ 0x80808080u' : '';
  const ws = Array.from({ length: words }, (_, k) => k);
  const lines = [`    unsigned ${ws.map((k) => `lo${k} = 0u, hi${k} = 0u`).join(', ')};`];
  lines.push(...windowLoops(p, S, p.c, (indent, off) => [
    `${indent}${vecLoad(p.dtype, vec, 'v', `xb + (${off})`)}`,
    ...vecWords('v', vec).map((w, k) => `${indent}{ const unsigned b = ${w}${bias}; lo${k} = __vmaxu2(lo${k}, b & 0x00FF00FFu); hi${k} = __vmaxu2(hi${k}, (b >> 8) & 0x00FF00FFu); }`),
  ], prod(p.kernel) <= MAX_UNROLLED_TAPS));
  lines.push(`    ${vecStoreWords(out, ws.map((k) => `((lo${k} | (hi${k} << 8))${bias})`))}`);
  return lines;
}

/** Channels-last, `vec` channels of one output pixel per thread. Thread i owns channels [cv*vec, cv*vec+vec) of
 * pixel i / (C/vec): a warp reads whole pixels' channel runs (coalesced) and writes `vec` outputs in one store. */
function emitPoolVec(p: PoolProblem, vec: number, block: number): KernelSource {
  const sd = p.inSpatial.length;
  const T = cType(p.dtype);
  const cv = p.c / vec, inPix = prod(p.inSpatial) * p.c;
  const nv = p.n * prod(p.outSpatial) * cv;
  const big = Math.max(p.n * inPix, nv * vec) > INT_INDEX_LIMIT;
  // 32-bit index math where it fits: the 64-bit divisions by constants are several times the instructions
  const U = big ? 'long long' : 'unsigned', S = big ? 'long long' : 'int', L = big ? 'LL' : 'u';
  const lines: string[] = [];
  lines.push(`    ${U} r = i / ${cv}${L};`);
  lines.push(`    const ${U} cv = i - r * ${cv}${L};`);
  for (let d = sd - 1; d >= 0; d--) {
    lines.push(`    const ${S} o${d} = (${S})(r % ${p.outSpatial[d]}${L}); r /= ${p.outSpatial[d]}${L};`);
  }
  lines.push(`    const ${T}* xb = x + r * ${inPix}${L} + cv * ${vec}${L};`);
  const out = `y + i * ${vec}${L}`;
  lines.push(...(p.kind === 'max' && (p.dtype === 'int8' || p.dtype === 'uint8') ? byteMaxBody(p, vec, S, out) : floatBody(p, vec, S, out)));
  return finalizeKernel({
    prefix: `${p.kind}pool_v${vec}`, grid: grid1d(nv, block), block: [block, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void __launch_bounds__(${block}) ${name}(const ${T}* __restrict__ x, ${T}* __restrict__ y) {
  for (${U} i = blockIdx.x * (${U})blockDim.x + threadIdx.x; i < ${nv}${L}; i += (${U})gridDim.x * blockDim.x) {
${lines.join('\n')}
  }
}
`,
  });
}
