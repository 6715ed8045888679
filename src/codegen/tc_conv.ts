// 2-D convolution as implicit GEMM on the tensor-core skeleton of tc_gemm.ts: M = n*p*q output pixels,
// N = k output channels, K = r*s*c. A rows are gathered straight from the NHWC activation (16-byte
// cp.async chunks of 8 channels, zero-filled outside the image), B rows are the [K][R][S][C] weights.
// 1x1 unpadded convs skip the im2col index math. The SIMT fallback covers fp32, odd channel counts,
// groups and NCHW.
import { TsrtError } from '../errors.js';
import { shortHash } from './kernel.js';
import { tcLoaderThreads } from './wgmma_config.js';
import {
  chooseTileConfig, configName, configProblems, epilogueKey, epilogueStatements, genericKernel, GENERIC_TILE,
  dtypeTag, loadF, rowChunkLoader, smCountField, storageType, storeF, tcKernel, tileConfigSpace,
  type Epilogue, type GenericDType, type TcDType, type TcKernelSource, type TcSpec, type TileConfig, type TileShape,
} from './tc_gemm.js';

/** NHWC input [n,h,w,c], weights [k][r][s][c], output NHWC [n,p,q,k]. padH/padW are the top/left pads
 * (the bottom/right pads are implied by p and q). */
export interface ConvProblem {
  n: number; h: number; w: number; c: number; k: number; r: number; s: number;
  strideH: number; strideW: number; padH: number; padW: number; dilH: number; dilW: number;
  p: number; q: number;
  /** Storage of x, w, y and the residual: float16 (default, absent) or bfloat16. */
  dtype?: TcDType;
  /** Output stored into a slice of a wider tensor (a concat output, concat-in-place): output row i starts at
   * y + i * ldY + yOffset, a row being one output pixel's k channels (NHWC) or one image's k*p*q values (NCHW);
   * ldY >= yOffset + that row's length. Absent: rows are dense (ldY = row length, yOffset 0). The residual keeps
   * y's dense layout either way. */
  ldY?: number; yOffset?: number;
  /** SMs of the GPU the kernel is for (absent: SM_COUNT; set with smCountField). */
  smCount?: number;
}

/** Row stride and offset of the output (see ConvProblem.ldY) for a row of `row` elements; dense when absent. */
export function outputRows(p: ConvProblem, row: number): { ld: number; off: number; strided: boolean } {
  const ld = p.ldY ?? row, off = p.yOffset ?? 0;
  if (ld < off + row) throw new TsrtError('USAGE', `conv output rows of ${row} elements at offset ${off} do not fit a row stride ldY=${ld}`);
  return { ld, off, strided: ld !== row || off !== 0 };
}

/** Output size for symmetric-or-not pads: p = floor((h + padTop + padBottom - dil*(r-1) - 1)/stride) + 1. */
export function convOutSize(inSize: number, kernel: number, stride: number, padBegin: number, padEnd: number, dil: number): number {
  return Math.floor((inSize + padBegin + padEnd - dil * (kernel - 1) - 1) / stride) + 1;
}

function checkShape(p: ConvProblem): void {
  for (const [nm, v] of Object.entries(p)) {
    if (nm === 'dtype') {
      if (v !== undefined && v !== 'float16' && v !== 'bfloat16') throw new TsrtError('USAGE', `conv dtype ${String(v)} is not float16 or bfloat16`);
      continue;
    }
    const min = nm.startsWith('pad') || nm === 'yOffset' ? 0 : 1;
    if (!Number.isInteger(v) || v < min) throw new TsrtError('USAGE', `conv ${nm}=${v} must be an integer >= ${min}`);
  }
}

const ceil = (a: number, b: number) => Math.ceil(a / b);

/** Reasons the tensor-core conv cannot run this problem (empty: it can). `c % 8 == 0` is the one that
 * matters in practice: the engine pads C with zeros to a multiple of 8 (in the activation and the
 * weights; e.g. ResNet's first conv c=3 -> 8). Also required at run time: x, w, residual, y 16-byte
 * aligned (y and residual 4-byte aligned suffice when k is even, 2 when odd), bias 4-byte aligned. */
export function convTcPreconditions(p: ConvProblem): string[] {
  checkShape(p);
  const out: string[] = [];
  if (p.c % 8) out.push(`c=${p.c} must be a multiple of 8 (pad channels with zeros)`);
  const x = p.n * p.h * p.w * p.c, y = p.n * p.p * p.q * (p.ldY ?? p.k);
  if (Math.max(x, y, p.k * p.r * p.s * p.c) >= 2 ** 31) out.push('tensors over 2^31 elements');
  return out;
}

export function convShape(p: ConvProblem): TileShape {
  return { m: p.n * p.p * p.q, n: p.k, k: p.r * p.s * p.c, batch: 1, ...smCountField(p.smCount) };
}

export function convConfigSpace(p: ConvProblem): TileConfig[] { return tileConfigSpace(convShape(p)); }
export function chooseConvConfig(p: ConvProblem): TileConfig { return chooseTileConfig(convShape(p)); }

export function isPointwise(p: ConvProblem): boolean {
  return p.r === 1 && p.s === 1 && p.padH === 0 && p.padW === 0;
}

/** Tensor-core implicit-GEMM conv, fp16 (or bf16: p.dtype) NHWC. Kernel signature:
 * (const half* x, const half* w, const float* bias, const half* residual, half* y[, unsigned char* workspace])
 * bias (fp32, length k) and residual (fp16, y's layout) may be null when the epilogue does not use them.
 * Throws TsrtError('UNSUPPORTED') when convTcPreconditions fails: use emitConvGeneric then. wgmma configs go
 * through emitConvTc (wgmma.ts). */
export function emitConv(p: ConvProblem, epi: Epilogue = {}, cfg?: TileConfig): TcKernelSource {
  if (cfg?.wgmma) throw new TsrtError('USAGE', `tile config ${configName(cfg)} is a wgmma config`, 'emit it with emitConvTc (wgmma.ts)');
  return tcKernel(convTcSpec(p, epi, cfg));
}

/** The kernel description emitConv builds (im2col loaders, epilogue, output addressing), for any kernel
 * skeleton that follows tcKernel's contract (tcKernel; wgmmaKernel in wgmma.ts). */
export function convTcSpec(p: ConvProblem, epi: Epilogue = {}, cfg?: TileConfig): TcSpec {
  const pre = convTcPreconditions(p);
  if (pre.length) throw new TsrtError('UNSUPPORTED', `tensor-core conv: ${pre.join('; ')}`, 'use emitConvGeneric');
  const shape = convShape(p);
  const c = cfg ?? chooseTileConfig(shape);
  const bad = configProblems(c);
  if (bad.length) throw new TsrtError('USAGE', `tile config ${configName(c)}: ${bad.join('; ')}`);
  const threads = tcLoaderThreads(c);
  const M = shape.m, K = shape.k;
  const pw = isPointwise(p);
  const { setup, loadA, loadB } = convLoaders(p, c, { threads, chunkElems: 8, elem: 'tc_half', M, K });
  const xBytes = p.n * p.h * p.w * p.c, wBytes = p.k * K;
  // a strided output (a channel slice of an NHWC concat): 4-/16-byte stores only where every row start keeps
  // that alignment (y itself is 16-byte aligned); the dense residual is read at its own offsets
  const o = outputRows(p, p.k);
  const dense = `(idx_t)m * ${p.k} + n`;
  const aligned = (e: number) => p.k % e === 0 && o.ld % e === 0 && o.off % e === 0;
  const kind = pw ? (p.strideH === 1 && p.strideW === 1 ? '1x1' : `1x1s${p.strideH}`) : `${p.r}x${p.s}s${p.strideH}`;
  return {
    prefix: `conv_tc_${p.dtype === 'bfloat16' ? 'bf16_' : ''}${kind}${o.strided ? '_ldy' : ''}`, cfg: c, ...(p.dtype === 'bfloat16' ? { mma: 'bf16' as const } : {}), m: M, n: p.k, k: K, batch: 1, bKN: false,
    params: [
      { name: 'x', decl: 'const tc_half* __restrict__ x' },
      { name: 'w', decl: 'const tc_half* __restrict__ w' },
      { name: 'bias', decl: 'const float* __restrict__ bias' },
      { name: 'residual', decl: 'const tc_half* __restrict__ residual' },
      { name: 'y', decl: 'tc_half* __restrict__ y' },
    ],
    setup, loadA, loadB,
    ...(o.strided ? { outOffset: `(idx_t)m * ${o.ld} + ${o.off} + n`, resOffset: dense } : { outOffset: dense }),
    pairStores: aligned(2), vecStores: aligned(8), epi,
    nFastest: wBytes <= xBytes, flops: 2 * M * p.k * K, bigIndex: false, // convTcPreconditions caps tensors below 2^31
    ...smCountField(p.smCount),
  };
}

/** Generic conv options: groups (c and k divisible by it) and memory layout. 'nhwc': x [n,h,w,c],
 * weights [k][r][s][c/groups], y [n,p,q,k]. 'nchw': x [n,c,h,w], weights [k][c/groups][r][s] (ONNX's own
 * layout), y [n,k,p,q]. The residual always has y's layout. */
export interface GenericConvOptions { dtype?: GenericDType; layout?: 'nhwc' | 'nchw'; groups?: number }

/** SIMT implicit-GEMM conv for any channel count, alignment, groups and either layout, fp16, bf16 or fp32
 * storage with fp32 accumulation (no TF32). Same signature as emitConv (bias fp32, no workspace). */
export function emitConvGeneric(p: ConvProblem, epi: Epilogue = {}, opts: GenericConvOptions = {}): TcKernelSource {
  checkShape(p);
  const dtype = opts.dtype ?? 'float16';
  const nchw = (opts.layout ?? 'nhwc') === 'nchw';
  const g = opts.groups ?? 1;
  if (p.c % g || p.k % g) throw new TsrtError('USAGE', `groups=${g} must divide c=${p.c} and k=${p.k}`);
  const T = storageType(dtype);
  const { bm, bn, bk } = GENERIC_TILE;
  const M = p.n * p.p * p.q, Ng = p.k / g, Cg = p.c / g, Kg = p.r * p.s * Cg;
  const mTiles = ceil(M, bm), nTiles = ceil(Ng, bn);
  const pq = p.p * p.q;
  const o = outputRows(p, nchw ? p.k * pq : p.k);
  const big = Math.max(p.n * p.h * p.w * p.c, M * p.k, p.k * Kg, (nchw ? p.n : M) * o.ld) >= 2 ** 31;
  const I = big ? 'long long' : 'int';
  const hw = p.h * p.w;
  // per-row state: the image base offset of (nb, group) and the top-left input coordinate
  const setup = `  const int mBase = blockIdx.x % ${mTiles} * ${bm}, nBase = blockIdx.x / ${mTiles} * ${bn};
  const int grp = blockIdx.y; (void)grp;
  ${I} xb[4]; int ihb[4], iwb[4];
  #pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int m = mBase + ty + 16 * i;
    const int ow = m % ${p.q}, t = m / ${p.q}, oh = t % ${p.p}, nb = t / ${p.p};
    const bool ok = m < ${M};
    ihb[i] = ok ? oh * ${p.strideH} - ${p.padH} : -(1 << 28);
    iwb[i] = ok ? ow * ${p.strideW} - ${p.padW} : -(1 << 28);
    xb[i] = ${nchw ? `((${I})nb * ${p.c} + grp * ${Cg}) * ${hw}` : `(${I})nb * ${hw * p.c} + grp * ${Cg}`};
  }`;
  const decompose = nchw
    ? `const int si = kk % ${p.s}, t2 = kk / ${p.s}, ri = t2 % ${p.r}, ci = t2 / ${p.r};`
    : `const int ci = kk % ${Cg}, t2 = kk / ${Cg}, si = t2 % ${p.s}, ri = t2 / ${p.s};`;
  const xOff = nchw ? `xb[i] + (${I})ci * ${hw} + ih * ${p.w} + iw` : `xb[i] + (${I})(ih * ${p.w} + iw) * ${p.c} + ci`;
  const loadA = (kt: string) => `{ const int kk = ${kt} * ${bk} + tx;
  ${decompose}
  #pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int ih = ihb[i] + ri * ${p.dilH}, iw = iwb[i] + si * ${p.dilW};
    va[i] = (kk < ${Kg} && (unsigned)ih < ${p.h}u && (unsigned)iw < ${p.w}u) ? ${loadF(dtype, `x[${xOff}]`)} : 0.0f;
  } }`;
  const loadB = (kt: string) => `#pragma unroll
  for (int i = 0; i < 4; ++i) { const int nn = nBase + ty + 16 * i, kk = ${kt} * ${bk} + tx;
    vb[i] = (nn < ${Ng} && kk < ${Kg}) ? ${loadF(dtype, `w[(${I})(grp * ${Ng} + nn) * ${Kg} + kk]`)} : 0.0f; }`;
  const yOff = nchw
    ? `((${I})(m / ${pq}) * ${p.k} + ch) * ${pq} + m % ${pq}`
    : `(${I})m * ${p.k} + ch`;
  // a strided output (a slice of a concat output): rows (NCHW: images, NHWC: pixels) ldY apart, the residual dense
  const yStrided = nchw
    ? `(${I})(m / ${pq}) * ${o.ld} + ${o.off} + (${I})ch * ${pq} + m % ${pq}`
    : `(${I})m * ${o.ld} + ${o.off} + ch`;
  const epilogue = `  #pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int m = mBase + ty + 16 * i;
    if (m >= ${M}) continue;
    #pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = nBase + tx + 16 * j;
      if (n >= ${Ng}) continue;
      const int ch = grp * ${Ng} + n;
      const ${I} off = ${yOff};
      float v = acc[i][j];
      ${epilogueStatements(epi, 'v', 'ch', loadF(dtype, 'residual[off]'))}
      ${o.strided ? `y[${yStrided}]` : 'y[off]'} = ${storeF(dtype, 'v')};
    }
  }`;
  const params = `const ${T}* __restrict__ x, const ${T}* __restrict__ w, const float* __restrict__ bias, const ${T}* __restrict__ residual, ${T}* __restrict__ y`;
  const body = (name: string) => `// conv_generic ${dtype} ${nchw ? 'NCHW' : 'NHWC'} ${JSON.stringify(p)} groups=${g}\n` + genericKernel({
    name, params, setup, kTiles: ceil(Kg, bk), loadA, loadB,
    posA: (i) => `[tx][ty + 16 * ${i}]`, posB: (i) => `[tx][ty + 16 * ${i}]`,
    epilogue, epi, dtype,
  });
  const name = `conv_generic_${dtypeTag(dtype)}_${nchw ? 'nchw' : 'nhwc'}_${p.r}x${p.s}${o.strided ? '_ldy' : ''}_${epilogueKey(epi)}_${shortHash(body('K'))}`;
  if (g > 65535) throw new TsrtError('USAGE', `groups ${g} exceeds grid.y`);
  return {
    name, source: body(name), grid: [mTiles * nTiles, g, 1], block: [256, 1, 1], sharedBytes: 0,
    params: ['x', 'w', 'bias', 'residual', 'y'].map((n) => ({ name: n, type: 'ptr' as const })),
    workspaceBytes: 0, workspaceZeroBytes: 0, flops: 2 * M * p.k * Kg,
  };
}

/** The implicit-GEMM loaders of an NHWC conv (cp.async 16-byte chunks of `chunkElems` channels: 8 fp16/bf16, 16
 * int8), shared by the fp16/bf16 kernels (convTcSpec) and the int8 ones (tc_int8.ts): each loading thread's A
 * (im2col) row state computed once per CTA (`setup`), the A chunks per k-tile (K = r*s*c in (r, s, c) order;
 * padding and tails zero-filled) and the B (weights [k, K]) chunks. */
export function convLoaders(p: ConvProblem, c: TileConfig, o: { threads: number; chunkElems: number; elem: string; M: number; K: number }): { setup: string; loadA: string; loadB: string } {
  const { threads, chunkElems, M, K } = o;
  const la = c.bk / chunkElems;
  const rowsA = (c.bm * la) / threads, step = threads / la;
  const pw = isPointwise(p);
  const hw = p.h * p.w;
  // per-thread state for its A rows, computed once per CTA
  const setupA: string[] = [`  const ${o.elem}* tc_dummy = x;`, `  idx_t a_off[${rowsA}];`];
  setupA.push(pw ? `  bool a_ok[${rowsA}];` : `  int a_ih[${rowsA}], a_iw[${rowsA}];`);
  setupA.push(`  #pragma unroll
  for (int j = 0; j < ${rowsA}; ++j) {
    const int m = mBase + tid / ${la} + j * ${step};
    const int ow = m % ${p.q}, t = m / ${p.q}, oh = t % ${p.p}, nb = t / ${p.p};`);
  setupA.push(pw
    ? `    a_ok[j] = m < ${M};
    a_off[j] = a_ok[j] ? ((idx_t)nb * ${hw} + oh * ${p.strideH * p.w} + ow * ${p.strideW}) * ${p.c} : 0;
  }`
    : `    const bool ok = m < ${M};
    a_ih[j] = ok ? oh * ${p.strideH} - ${p.padH} : -(1 << 28);
    a_iw[j] = ok ? ow * ${p.strideW} - ${p.padW} : -(1 << 28);
    a_off[j] = ok ? ((idx_t)nb * ${hw} + a_ih[j] * ${p.w} + a_iw[j]) * ${p.c} : 0;
  }`);
  const kcol = `      const int kcol = kt * ${c.bk} + ch * ${chunkElems};`;
  const perKtile = pw ? kcol : `${kcol}
      const int ci = kcol % ${p.c}, rs = kcol / ${p.c}, si = rs % ${p.s}, ri = rs / ${p.s};
      const int dh = ri * ${p.dilH}, dw = si * ${p.dilW};
      const idx_t delta = (dh * ${p.w} + dw) * ${p.c} + ci;`;
  const loadA = rowChunkLoader({
    smem: 'sA', rows: c.bm, rowChunks: la, threads, perKtile,
    chunk: (j) => (pw
      ? { ok: `a_ok[${j}] && kcol < ${K}`, src: `x + a_off[${j}] + kcol` }
      : { ok: `kcol < ${K} && (unsigned)(a_ih[${j}] + dh) < ${p.h}u && (unsigned)(a_iw[${j}] + dw) < ${p.w}u`, src: `x + a_off[${j}] + delta` }),
  });
  const loadB = rowChunkLoader({
    smem: 'sB', rows: c.bn, rowChunks: la, threads, perKtile: kcol,
    chunk: (_j, row) => ({ ok: `kcol < ${K} && nBase + ${row} < ${p.k}`, src: `w + (idx_t)(nBase + ${row}) * ${K} + kcol` }),
  });
  return { setup: setupA.join('\n'), loadA, loadB };
}
