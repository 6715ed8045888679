// Depthwise 2-D convolution (group == c == k, one filter per channel): a direct, memory-bound kernel.
// The implicit-GEMM kernels of tc_conv.ts turn it into c tiny GEMMs with a reduction of r*s, which wastes
// almost all of their tile; here each thread owns a small register tile of outputs and reads its inputs
// straight from global memory (L1 catches the overlap between neighbouring threads and taps).
//
// NHWC (the fp16 layout): a thread owns `vec` consecutive channels (one 16/8/4/2-byte vector load) of a
// tileH x tileW patch of outputs; adjacent threads take adjacent channel vectors, so a warp's loads are
// contiguous. Along W the tap loop is unrolled at emit time: every input column the patch needs is loaded
// once per kernel row and feeds every (output, tap) pair that uses it.
// NCHW (the fp32 layout): a thread owns one output column of tileH rows; adjacent threads take adjacent
// output columns, so a warp's loads are contiguous, and along H each input row feeds every (output, tap)
// pair that uses it.
// fp32 accumulation in both, the epilogue (bias, residual, activation) is tc_gemm's, so fused semantics are
// identical to the GEMM-based convs. No shared memory and no barriers: every thread is independent.
import { TsrtError } from '../errors.js';
import { shortHash } from './kernel.js';
import type { ConvProblem } from './tc_conv.js';
import {
  actFunction, dtypeTag, epilogueKey, epilogueStatements, SM_COUNT, storageType, tcHelpers,
  type Epilogue, type GenericDType, type TcKernelSource,
} from './tc_gemm.js';

export interface DepthwiseOptions {
  dtype: GenericDType;
  /** 'nhwc': x [n,h,w,c], w [r][s][c], y [n,p,q,c]. 'nchw': x [n,c,h,w], w [c][r][s] (ONNX's own), y [n,c,p,q].
   * The residual has y's layout. Produce w with depthwiseWeightLayout. */
  layout: 'nhwc' | 'nchw';
  /** NHWC: channels per thread (8/4/2/1 for fp16, 4/2/1 for fp32; must divide c). Default: the widest. */
  vec?: number;
  /** Outputs per thread along H (both layouts) and along W (NHWC only). Defaults: chooseDepthwiseTile. */
  tileH?: number;
  tileW?: number;
}

export const DW_THREADS = 256;

/** One filter per channel, one output channel per input channel (channel multiplier 1). */
export function isDepthwise(group: number, c: number, k: number): boolean {
  return group === c && k === c;
}

/** ONNX weights [k, 1, r, s] -> the layout emitDepthwiseConv reads: [r][s][k] for NHWC (a warp reads
 * consecutive channels of one tap), [k][r][s] (unchanged, copied) for NCHW. */
export function depthwiseWeightLayout(wOnnx: Float64Array, k: number, r: number, s: number, layout: 'nhwc' | 'nchw' = 'nhwc'): Float64Array {
  if (wOnnx.length !== k * r * s) throw new TsrtError('USAGE', `depthwise weights have ${wOnnx.length} values, expected k*r*s = ${k * r * s} ([k,1,r,s])`);
  if (layout === 'nchw') return Float64Array.from(wOnnx);
  const out = new Float64Array(k * r * s);
  for (let ko = 0; ko < k; ko++) for (let ri = 0; ri < r; ri++) for (let si = 0; si < s; si++) {
    out[(ri * s + si) * k + ko] = wOnnx[(ko * r + ri) * s + si];
  }
  return out;
}

/** For an output tile of `t` outputs at stride `stride`, taps `taps` at dilation `dil`: input offset j
 * (0 .. (t-1)*stride + (taps-1)*dil) -> every (output, tap) pair reading it. Offsets no pair reads are empty. */
export function tapPairs(t: number, taps: number, stride: number, dil: number): { out: number; tap: number }[][] {
  const span = (t - 1) * stride + (taps - 1) * dil + 1;
  const pairs: { out: number; tap: number }[][] = Array.from({ length: span }, () => []);
  for (let o = 0; o < t; o++) for (let k = 0; k < taps; k++) pairs[o * stride + k * dil].push({ out: o, tap: k });
  return pairs;
}

const ceil = (a: number, b: number) => Math.ceil(a / b);
const elemBytes = (d: GenericDType) => (d === 'float32' ? 4 : 2);

function checkProblem(p: ConvProblem): void {
  for (const [nm, v] of Object.entries(p)) {
    if (nm === 'dtype') continue; // the storage dtype comes in DepthwiseOptions
    const min = nm.startsWith('pad') ? 0 : 1;
    if (!Number.isInteger(v) || v < min) throw new TsrtError('USAGE', `depthwise conv ${nm}=${v} must be an integer >= ${min}`);
  }
  if (p.k !== p.c) throw new TsrtError('USAGE', `depthwise conv needs k == c (got c=${p.c}, k=${p.k})`, 'use emitConvGeneric with groups for channel multipliers > 1');
}

/** Widest channel vector (at most 16 bytes) that divides c. */
export function defaultVec(c: number, dtype: GenericDType): number {
  for (const v of [8, 4, 2, 1]) if (v * elemBytes(dtype) <= 16 && c % v === 0) return v;
  return 1;
}

/** Enough threads for the loads in flight to cover DRAM latency on every SM of the target GPU. */
const minThreads = (p: ConvProblem) => (p.smCount ?? SM_COUNT) * 512;
/** Accumulator floats per thread; beyond this the register file limits occupancy more than the reuse gains. */
const ACC_BUDGET = 32;
/** L1 bandwidth over L2 bandwidth (H100: ~33 TB/s over ~7 TB/s): what one L2 load costs in L1 loads. */
const L2_OVER_L1 = 5;

/** Output tile per thread (tileW along W for NHWC only). A thread's input footprint is spanH x spanW for
 * th x tw outputs: loaded from L1 once per kernel row (NHWC) or column (NCHW), fetched from L2 once per
 * thread (input rows shared by vertically adjacent threads are in other blocks, on other SMs; columns
 * shared with horizontal neighbours are mostly in the same block). Pick the tile with the lowest modelled
 * cost per output within ACC_BUDGET accumulators and minThreads threads (padded tiles included). */
export function chooseDepthwiseTile(p: ConvProblem, layout: 'nhwc' | 'nchw', vec: number): { tileH: number; tileW: number } {
  const nhwc = layout === 'nhwc';
  let best = { tileH: 1, tileW: 1 }, bestCost = Infinity;
  for (let th = 1; th <= Math.min(8, p.p); th++) {
    for (let tw = 1; tw <= (nhwc ? Math.min(8, p.q) : 1); tw++) {
      if (th * tw > 1 && th * tw * vec > ACC_BUDGET) continue;
      const threads = p.n * ceil(p.p, th) * ceil(p.q, tw) * (nhwc ? p.c / vec : p.c);
      if (th * tw > 1 && threads < minThreads(p)) continue;
      const spanW = (tw - 1) * p.strideW + (p.s - 1) * p.dilW + 1;
      const spanH = (th - 1) * p.strideH + (p.r - 1) * p.dilH + 1;
      const l1 = nhwc ? th * p.r * spanW + p.r * p.s : p.s * spanH + p.r * p.s;
      const l2 = spanH * tw * p.strideW;
      const waste = ((ceil(p.p, th) * th) / p.p) * ((ceil(p.q, tw) * tw) / p.q);
      const cost = (waste * (l1 / L2_OVER_L1 + l2)) / (th * tw);
      if (cost < bestCost - 1e-9) { bestCost = cost; best = { tileH: th, tileW: tw }; }
    }
  }
  return best;
}

/** Device helpers: load `vec` values of dtype T as floats, store `vec` floats as T. One vector memory
 * access each (the pointer must be aligned to vec * sizeof(T), which c % vec == 0 gives for aligned buffers). */
function vectorHelpers(dtype: GenericDType, vec: number): string {
  const T = storageType(dtype);
  if (vec === 1) {
    // fp16 and bf16 both go through the tc_half helpers of the kernel's element type (tcHelpers)
    const ld = dtype !== 'float32' ? 'h2f(*p)' : '*p', st = dtype !== 'float32' ? 'f2h(f[0])' : 'f[0]';
    return `__device__ __forceinline__ void dw_load(const ${T}* p, float* f) { f[0] = ${ld}; }
__device__ __forceinline__ void dw_store(${T}* p, const float* f) { *p = ${st}; }`;
  }
  const bytes = vec * elemBytes(dtype);
  if (dtype !== 'float32') {
    const words = vec / 2;
    return `struct alignas(${bytes}) dw_vec { u32 w[${words}]; };
__device__ __forceinline__ void dw_load(const ${T}* p, float* f) {
  const dw_vec v = *reinterpret_cast<const dw_vec*>(p);
  #pragma unroll
  for (int i = 0; i < ${words}; ++i) { f[2 * i] = lo_h2f(v.w[i]); f[2 * i + 1] = hi_h2f(v.w[i]); }
}
__device__ __forceinline__ void dw_store(${T}* p, const float* f) {
  dw_vec v;
  #pragma unroll
  for (int i = 0; i < ${words}; ++i) v.w[i] = pack_h2(f[2 * i], f[2 * i + 1]);
  *reinterpret_cast<dw_vec*>(p) = v;
}`;
  }
  return `struct alignas(${bytes}) dw_vec { float w[${vec}]; };
__device__ __forceinline__ void dw_load(const float* p, float* f) {
  const dw_vec v = *reinterpret_cast<const dw_vec*>(p);
  #pragma unroll
  for (int i = 0; i < ${vec}; ++i) f[i] = v.w[i];
}
__device__ __forceinline__ void dw_store(float* p, const float* f) {
  dw_vec v;
  #pragma unroll
  for (int i = 0; i < ${vec}; ++i) v.w[i] = f[i];
  *reinterpret_cast<dw_vec*>(p) = v;
}`;
}

/** Direct depthwise conv (see the file comment). Signature, like emitConv / emitConvGeneric:
 * (const T* x, const T* w, const float* bias, const T* residual, T* y), T = tc_half (fp16, bf16) or float;
 * bias (fp32, length c) and residual may be null when the epilogue does not use them. Weights in the
 * layout depthwiseWeightLayout produces. x, w, residual and y must be aligned to vec * sizeof(T) bytes. */
export function emitDepthwiseConv(p: ConvProblem, epi: Epilogue, opts: DepthwiseOptions): TcKernelSource {
  checkProblem(p);
  const { dtype, layout } = opts;
  const nhwc = layout === 'nhwc';
  const vec = nhwc ? (opts.vec ?? defaultVec(p.c, dtype)) : 1;
  if (![1, 2, 4, 8].includes(vec) || vec * elemBytes(dtype) > 16 || p.c % vec) {
    throw new TsrtError('USAGE', `depthwise vec=${vec} must be 1, 2, 4 or 8, divide c=${p.c} and fit 16 bytes of ${dtype}`);
  }
  if (!nhwc && opts.vec !== undefined && opts.vec !== 1) throw new TsrtError('USAGE', 'depthwise NCHW has no channel vectors (vec must be 1)');
  const dflt = chooseDepthwiseTile(p, layout, vec);
  const tileH = opts.tileH ?? dflt.tileH, tileW = nhwc ? (opts.tileW ?? dflt.tileW) : 1;
  if (!nhwc && (opts.tileW ?? 1) !== 1) throw new TsrtError('USAGE', 'depthwise NCHW tiles along H only (tileW must be 1)');
  for (const [nm, v] of [['tileH', tileH], ['tileW', tileW]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 16) throw new TsrtError('USAGE', `depthwise ${nm}=${v} must be an integer in 1..16`);
  }
  const T = storageType(dtype);
  const xN = p.n * p.c * p.h * p.w, yN = p.n * p.c * p.p * p.q;
  const tilesH = ceil(p.p, tileH), tilesW = ceil(p.q, tileW);
  const threads = nhwc ? p.n * tilesH * tilesW * (p.c / vec) : p.n * p.c * tilesH * p.q;
  const big = Math.max(xN, yN, threads + DW_THREADS) >= 2 ** 31 - 1;
  const I = big ? 'long long' : 'int';
  const body = nhwc ? nhwcBody(p, epi, T, vec, tileH, tileW, I) : nchwBody(p, epi, T, tileH, I);
  const params = `const ${T}* __restrict__ x, const ${T}* __restrict__ w, const float* __restrict__ bias, const ${T}* __restrict__ residual, ${T}* __restrict__ y`;
  const tag = `${dtypeTag(dtype)}_${layout}_${p.r}x${p.s}s${p.strideH}${p.strideW === p.strideH ? '' : `x${p.strideW}`}`;
  // the SM count only steers the tile choice: left out of the text, so a kernel is the same for every GPU that picks its tile
  const { smCount: _sms, ...shown } = p;
  const source = (name: string) => `// dwconv ${dtype} ${layout.toUpperCase()} ${JSON.stringify(shown)} vec=${vec} tile=${tileH}x${tileW}
${tcHelpers(dtype === 'bfloat16' ? 'bf16' : 'f16')}
${vectorHelpers(dtype, vec)}
${actFunction(epi)}
extern "C" __global__ void __launch_bounds__(${DW_THREADS}) ${name}(${params}) {
  const ${I} idx = (${I})blockIdx.x * ${DW_THREADS} + threadIdx.x;
  if (idx >= ${threads}) return;
${body}
}
`;
  const name = `dwconv_${tag}_v${vec}_t${tileH}x${tileW}_${epilogueKey(epi)}_${shortHash(source('K'))}`;
  const blocks = ceil(threads, DW_THREADS);
  if (blocks > 2 ** 31 - 1) throw new TsrtError('USAGE', `depthwise conv needs ${blocks} blocks, more than grid.x allows`);
  return {
    name, source: source(name), grid: [blocks, 1, 1], block: [DW_THREADS, 1, 1], sharedBytes: 0,
    params: ['x', 'w', 'bias', 'residual', 'y'].map((n) => ({ name: n, type: 'ptr' as const })),
    workspaceBytes: 0, workspaceZeroBytes: 0, flops: 2 * yN * p.r * p.s,
  };
}

/** NHWC: thread -> (channel vector, W tile, H tile, image), channel vector fastest. */
function nhwcBody(p: ConvProblem, epi: Epilogue, T: string, vec: number, tileH: number, tileW: number, I: string): string {
  const cv = p.c / vec, tilesW = ceil(p.q, tileW), tilesH = ceil(p.p, tileH);
  // one statement block per input column of the tile: load it once, feed every (output, tap) pair
  const columns = tapPairs(tileW, p.s, p.strideW, p.dilW).map((pairs, j) => {
    if (!pairs.length) return '';
    const fma = pairs.map(({ out, tap }) => `acc[th][${out}][e] = fmaf(xv[e], wv[${tap}][e], acc[th][${out}][e]);`).join(' ');
    return `      if ((unsigned)(iw0 + ${j}) < ${p.w}u) {
        float xv[${vec}];
        dw_load(xrow + (iw0 + ${j}) * ${p.c}, xv);
        #pragma unroll
        for (int e = 0; e < ${vec}; ++e) { ${fma} }
      }`;
  }).filter(Boolean).join('\n');
  return `  const int c0 = (int)(idx % ${cv}) * ${vec};
  ${I} t = idx / ${cv};
  const int ow0 = (int)(t % ${tilesW}) * ${tileW};
  t /= ${tilesW};
  const int oh0 = (int)(t % ${tilesH}) * ${tileH};
  const ${I} nb = t / ${tilesH};
  const int ih0 = oh0 * ${p.strideH} - ${p.padH}, iw0 = ow0 * ${p.strideW} - ${p.padW};
  const ${T}* xn = x + nb * ${p.h * p.w * p.c} + c0;
  float acc[${tileH}][${tileW}][${vec}];
  #pragma unroll
  for (int th = 0; th < ${tileH}; ++th)
    #pragma unroll
    for (int tw = 0; tw < ${tileW}; ++tw)
      #pragma unroll
      for (int e = 0; e < ${vec}; ++e) acc[th][tw][e] = 0.0f;
  #pragma unroll
  for (int ri = 0; ri < ${p.r}; ++ri) {
    float wv[${p.s}][${vec}];
    #pragma unroll
    for (int si = 0; si < ${p.s}; ++si) dw_load(w + (ri * ${p.s} + si) * ${p.c} + c0, wv[si]);
    #pragma unroll
    for (int th = 0; th < ${tileH}; ++th) {
      const int ih = ih0 + th * ${p.strideH} + ri * ${p.dilH};
      if ((unsigned)ih >= ${p.h}u) continue;
      const ${T}* xrow = xn + ih * ${p.w * p.c};
${columns}
    }
  }
  #pragma unroll
  for (int th = 0; th < ${tileH}; ++th) {
    const int oh = oh0 + th;
    if (oh >= ${p.p}) continue;
    #pragma unroll
    for (int tw = 0; tw < ${tileW}; ++tw) {
      const int ow = ow0 + tw;
      if (ow >= ${p.q}) continue;
      const ${I} off = ((nb * ${p.p} + oh) * ${p.q} + ow) * ${p.c} + c0;
      float o[${vec}];${epi.residual ? `
      float rv[${vec}];
      dw_load(residual + off, rv);` : ''}
      #pragma unroll
      for (int e = 0; e < ${vec}; ++e) {
        float v = acc[th][tw][e];
        ${epilogueStatements(epi, 'v', '(c0 + e)', 'rv[e]')}
        o[e] = v;
      }
      dw_store(y + off, o);
    }
  }`;
}

/** NCHW: thread -> (output column, H tile, channel, image), output column fastest. */
function nchwBody(p: ConvProblem, epi: Epilogue, T: string, tileH: number, I: string): string {
  const tilesH = ceil(p.p, tileH);
  const rows = tapPairs(tileH, p.r, p.strideH, p.dilH).map((pairs, j) => {
    if (!pairs.length) return '';
    const fma = pairs.map(({ out, tap }) => `acc[${out}] = fmaf(xv, wv[${tap}], acc[${out}]);`).join(' ');
    return `    if ((unsigned)(ih0 + ${j}) < ${p.h}u) {
      float xv;
      dw_load(xc + (ih0 + ${j}) * ${p.w} + iw, &xv);
      ${fma}
    }`;
  }).filter(Boolean).join('\n');
  return `  const int ow = (int)(idx % ${p.q});
  ${I} t = idx / ${p.q};
  const int oh0 = (int)(t % ${tilesH}) * ${tileH};
  t /= ${tilesH};
  const int ch = (int)(t % ${p.c});
  const ${I} nc = t;  // nb * c + ch
  const int ih0 = oh0 * ${p.strideH} - ${p.padH}, iw0 = ow * ${p.strideW} - ${p.padW};
  const ${T}* xc = x + nc * ${p.h * p.w};
  float acc[${tileH}];
  #pragma unroll
  for (int th = 0; th < ${tileH}; ++th) acc[th] = 0.0f;
  #pragma unroll
  for (int si = 0; si < ${p.s}; ++si) {
    const int iw = iw0 + si * ${p.dilW};
    if ((unsigned)iw >= ${p.w}u) continue;
    float wv[${p.r}];
    #pragma unroll
    for (int ri = 0; ri < ${p.r}; ++ri) dw_load(w + (ch * ${p.r} + ri) * ${p.s} + si, &wv[ri]);
${rows}
  }
  #pragma unroll
  for (int th = 0; th < ${tileH}; ++th) {
    const int oh = oh0 + th;
    if (oh >= ${p.p}) continue;
    const ${I} off = (nc * ${p.p} + oh) * ${p.q} + ow;
    float v = acc[th];${epi.residual ? `
    float rv;
    dw_load(residual + off, &rv);` : ''}
    ${epilogueStatements(epi, 'v', 'ch', 'rv')}
    dw_store(y + off, &v);
  }`;
}
