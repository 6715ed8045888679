// Matrix products: Gemm and MatMul, plus the CPU matmul kernels that Einsum, Attention and the quantized ops
// share. Einsum and Attention live in their own files (einsum.ts, attention.ts) and register from here.
import { GraphError } from '../errors.js';
import type { Dim, Node, Tensor } from '../ir/types.js';
import { fromF64, makeTensor, shapeStr, toF32, toF64 } from '../ir/tensor.js';
import { attrFloat, attrInt, withoutAttrs } from './attrs.js';
import { gemmF32 } from './cpu_gemm.js';
import { register } from './registry.js';
import { broadcastIndex, broadcastShapes, need } from './util.js';
import './einsum.js';
import './attention.js';

/** One matrix product out[M,N] = op(A)[M,K] * op(B)[K,N] inside larger buffers. */
export interface MatmulArgs {
  M: number;
  K: number;
  N: number;
  /** A is stored [K, M] (row-major) instead of [M, K]. */
  transA?: boolean;
  /** B is stored [N, K] instead of [K, N]. */
  transB?: boolean;
  aOff?: number;
  bOff?: number;
  outOff?: number;
}

// Dot-product tile: with op(A) row-major [M,K] and op(B) stored [N,K], a 2x4 register tile computes eight dot
// products at once (six loads per eight multiply-adds, accumulators in registers as doubles); 2-4x faster in V8
// than an i-k-j loop. The float64 path brings operands to that layout (copying only what is not already in it).
// Float32 and float64 get separate copies so that V8 keeps element loads monomorphic.

function tileF32(a: Float32Array, aOff: number, bt: Float32Array, bOff: number, out: Float32Array, oOff: number, M: number, K: number, N: number): void {
  let i = 0;
  for (; i + 2 <= M; i += 2) {
    const a0 = aOff + i * K, a1 = a0 + K, o0 = oOff + i * N, o1 = o0 + N;
    let j = 0;
    for (; j + 4 <= N; j += 4) {
      const b0 = bOff + j * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      for (let k = 0; k < K; k++) {
        const x0 = a[a0 + k], x1 = a[a1 + k];
        const y0 = bt[b0 + k], y1 = bt[b1 + k], y2 = bt[b2 + k], y3 = bt[b3 + k];
        c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
        c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
      }
      out[o0 + j] = c00; out[o0 + j + 1] = c01; out[o0 + j + 2] = c02; out[o0 + j + 3] = c03;
      out[o1 + j] = c10; out[o1 + j + 1] = c11; out[o1 + j + 2] = c12; out[o1 + j + 3] = c13;
    }
    for (; j < N; j++) {
      const b0 = bOff + j * K;
      let c0 = 0, c1 = 0;
      for (let k = 0; k < K; k++) { const y = bt[b0 + k]; c0 += a[a0 + k] * y; c1 += a[a1 + k] * y; }
      out[o0 + j] = c0; out[o1 + j] = c1;
    }
  }
  for (; i < M; i++) {
    const a0 = aOff + i * K, o0 = oOff + i * N;
    for (let j = 0; j < N; j++) {
      const b0 = bOff + j * K;
      let c = 0;
      for (let k = 0; k < K; k++) c += a[a0 + k] * bt[b0 + k];
      out[o0 + j] = c;
    }
  }
}

/** out = op(A) * op(B) in float32; overwrites the M*N block of `out`. Runs the blocked GEMM of cpu_gemm.ts, except
 * for few rows against a B stored [N, K] (Linear layers at batch 1-7), where the dot-product tile needs no packing
 * and measured 1.3-4x faster. */
export function matmulF32(a: Float32Array, b: Float32Array, out: Float32Array, p: MatmulArgs): void {
  const { M, K, N } = p;
  const aOff = p.aOff ?? 0, bOff = p.bOff ?? 0, oOff = p.outOff ?? 0;
  if (p.transB && !p.transA && M < 8) {
    tileF32(a, aOff, b, bOff, out, oOff, M, K, N);
    return;
  }
  gemmF32(M, N, K, a, p.transA ? M : K, b, p.transB ? K : N, out, N,
    { transA: p.transA, transB: p.transB, aOffset: aOff, bOffset: bOff, cOffset: oOff });
}

function tileF64(a: Float64Array, aOff: number, bt: Float64Array, bOff: number, out: Float64Array, oOff: number, M: number, K: number, N: number): void {
  let i = 0;
  for (; i + 2 <= M; i += 2) {
    const a0 = aOff + i * K, a1 = a0 + K, o0 = oOff + i * N, o1 = o0 + N;
    let j = 0;
    for (; j + 4 <= N; j += 4) {
      const b0 = bOff + j * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      for (let k = 0; k < K; k++) {
        const x0 = a[a0 + k], x1 = a[a1 + k];
        const y0 = bt[b0 + k], y1 = bt[b1 + k], y2 = bt[b2 + k], y3 = bt[b3 + k];
        c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
        c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
      }
      out[o0 + j] = c00; out[o0 + j + 1] = c01; out[o0 + j + 2] = c02; out[o0 + j + 3] = c03;
      out[o1 + j] = c10; out[o1 + j + 1] = c11; out[o1 + j + 2] = c12; out[o1 + j + 3] = c13;
    }
    for (; j < N; j++) {
      const b0 = bOff + j * K;
      let c0 = 0, c1 = 0;
      for (let k = 0; k < K; k++) { const y = bt[b0 + k]; c0 += a[a0 + k] * y; c1 += a[a1 + k] * y; }
      out[o0 + j] = c0; out[o1 + j] = c1;
    }
  }
  for (; i < M; i++) {
    const a0 = aOff + i * K, o0 = oOff + i * N;
    for (let j = 0; j < N; j++) {
      const b0 = bOff + j * K;
      let c = 0;
      for (let k = 0; k < K; k++) c += a[a0 + k] * bt[b0 + k];
      out[o0 + j] = c;
    }
  }
}

/** out = op(A) * B for few rows of A and B not transposed: B streams once, row by row, with no packing. */
function axpyF64(a: Float64Array, aOff: number, ars: number, acs: number, b: Float64Array, bOff: number, out: Float64Array, oOff: number, M: number, K: number, N: number): void {
  out.fill(0, oOff, oOff + M * N);
  for (let k = 0; k < K; k++) {
    const bk = bOff + k * N;
    for (let i = 0; i < M; i++) {
      const x = a[aOff + i * ars + k * acs], o0 = oOff + i * N;
      for (let j = 0; j < N; j++) out[o0 + j] += x * b[bk + j];
    }
  }
}

/** [rows, cols] at src[off..] -> a new [cols, rows] array. */
function transposedF64(src: Float64Array, off: number, rows: number, cols: number): Float64Array {
  const dst = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const s0 = off + r * cols;
    for (let c = 0; c < cols; c++) dst[c * rows + r] = src[s0 + c];
  }
  return dst;
}

/** out = op(A) * op(B) in float64 (exact for integer operands whose sums stay below 2^53); overwrites the M*N block of `out`. */
export function matmulF64(a: Float64Array, b: Float64Array, out: Float64Array, p: MatmulArgs): void {
  const { M, K, N } = p;
  const aOff = p.aOff ?? 0, bOff = p.bOff ?? 0, oOff = p.outOff ?? 0;
  if (M < 4 && !p.transB) {
    axpyF64(a, aOff, p.transA ? 1 : K, p.transA ? M : 1, b, bOff, out, oOff, M, K, N);
    return;
  }
  const [aa, ao] = p.transA ? [transposedF64(a, aOff, K, M), 0] : [a, aOff];
  const [bt, bo] = p.transB ? [b, bOff] : [transposedF64(b, bOff, K, N), 0];
  tileF64(aa, ao, bt, bo, out, oOff, M, K, N);
}

/** int32 product that wraps modulo 2^32 like C (numpy int32/uint32 matmul); uint32 passes its bits as int32. */
function matmulI32(a: Int32Array, b: Int32Array, out: Int32Array, p: Required<Pick<MatmulArgs, 'M' | 'K' | 'N' | 'aOff' | 'bOff' | 'outOff'>>): void {
  const { M, K, N, aOff, bOff, outOff } = p;
  for (let i = 0; i < M; i++) {
    const oi = outOff + i * N;
    for (let j = 0; j < N; j++) out[oi + j] = 0;
    for (let k = 0; k < K; k++) {
      const x = a[aOff + i * K + k], bk = bOff + k * N;
      for (let j = 0; j < N; j++) out[oi + j] = (out[oi + j] + Math.imul(x, b[bk + j])) | 0;
    }
  }
}

/** Shapes and per-batch offsets of a numpy matmul (1-D operands promoted, batch dims broadcast). */
export interface MatmulPlan {
  M: number;
  K: number;
  N: number;
  /** Broadcast batch dims. */
  batch: number[];
  /** Shape of the result, with the dims of promoted 1-D operands removed. */
  outDims: number[];
  /** Element offset of each output batch's A and B matrix. */
  aOffs: Float64Array;
  bOffs: Float64Array;
  /** Kernel calls: one per batch, or a single one when B is shared and A's batches are contiguous
   * ([b, M, K] x [K, N] is one [b*M, K] x [K, N] product, so B is packed once). */
  calls: { M: number; aOff: number; bOff: number; outOff: number }[];
}

export function planMatmul(node: Node, aDims: readonly number[], bDims: readonly number[]): MatmulPlan {
  if (!aDims.length || !bDims.length) throw new GraphError('MatMul operands must have rank >= 1 (got a scalar)', node.name);
  const a = aDims.length === 1 ? [1, aDims[0]] : [...aDims];
  const b = bDims.length === 1 ? [bDims[0], 1] : [...bDims];
  const M = a[a.length - 2], K = a[a.length - 1], N = b[b.length - 1];
  if (b[b.length - 2] !== K) {
    throw new GraphError(`inner dimensions differ: A ${shapeStr(aDims)} has K=${K}, B ${shapeStr(bDims)} has K=${b[b.length - 2]}`,
      node.name, 'the last dim of A must equal the second-to-last dim of B');
  }
  const aBatch = a.slice(0, -2), bBatch = b.slice(0, -2);
  const batch = broadcastShapes([aBatch, bBatch], node) as number[];
  const ai = broadcastIndex(aBatch, batch), bi = broadcastIndex(bBatch, batch);
  const aOffs = new Float64Array(ai.length), bOffs = new Float64Array(bi.length);
  for (let i = 0; i < ai.length; i++) { aOffs[i] = ai[i] * M * K; bOffs[i] = bi[i] * K * N; }
  const outDims = [...batch];
  if (aDims.length > 1) outDims.push(M);
  if (bDims.length > 1) outDims.push(N);
  const shareB = bi.every((x) => x === 0) && ai.every((x, i) => x === i);
  const calls = shareB ? [{ M: M * ai.length, aOff: 0, bOff: 0, outOff: 0 }]
    : Array.from(ai, (_, i) => ({ M, aOff: aOffs[i], bOff: bOffs[i], outOff: i * M * N }));
  return { M, K, N, batch, outDims, aOffs, bOffs, calls };
}

/** Batched float64 matmul over a plan; the result is laid out [batch..., M, N]. */
export function runMatmulF64(plan: MatmulPlan, a: Float64Array, b: Float64Array): Float64Array {
  const { M, K, N } = plan;
  const out = new Float64Array(plan.aOffs.length * M * N);
  for (const c of plan.calls) matmulF64(a, b, out, { ...c, K, N });
  return out;
}

/** numpy.matmul for any numeric dtype: floats through float32 (float64 stays float64), integers exactly. */
export function matmulTensor(node: Node, A: Tensor, B: Tensor): Tensor {
  if (A.dtype !== B.dtype) throw new GraphError(`A is ${A.dtype} but B is ${B.dtype}`, node.name, 'cast both operands to one type');
  const plan = planMatmul(node, A.dims, B.dims);
  const { M, K, N, outDims } = plan;
  const nb = plan.aOffs.length;
  switch (A.dtype) {
    case 'float32': case 'float16': case 'bfloat16': {
      const a = toF32(A), b = toF32(B);
      const out = new Float32Array(nb * M * N);
      for (const c of plan.calls) matmulF32(a, b, out, { ...c, K, N });
      return A.dtype === 'float32' ? makeTensor('float32', outDims, out) : fromF64(A.dtype, outDims, out);
    }
    case 'int32': case 'uint32': {
      const view = (t: Tensor) => new Int32Array((t.data as Int32Array).buffer, (t.data as Int32Array).byteOffset, t.data.length);
      const a = view(A), b = view(B);
      const out = makeTensor(A.dtype, outDims);
      const o = view(out);
      for (let i = 0; i < nb; i++) matmulI32(a, b, o, { M, K, N, aOff: plan.aOffs[i], bOff: plan.bOffs[i], outOff: i * M * N });
      return out;
    }
    case 'int64': case 'uint64': return matmulBig(A, B, plan);
    case 'float64': case 'int8': case 'uint8': case 'int16': case 'uint16':
      return fromF64(A.dtype, outDims, runMatmulF64(plan, toF64(A), toF64(B)));
    default:
      throw new GraphError(`MatMul does not support ${A.dtype}`, node.name, 'use a float or integer type');
  }
}

/** 64-bit integer product with wrap-around, as numpy computes it. */
function matmulBig(A: Tensor, B: Tensor, plan: MatmulPlan): Tensor {
  const { M, K, N } = plan;
  const a = A.data as BigInt64Array, b = B.data as BigInt64Array;
  const out = makeTensor(A.dtype, plan.outDims);
  const o = out.data as BigInt64Array;
  const wrap = A.dtype === 'int64' ? (v: bigint) => BigInt.asIntN(64, v) : (v: bigint) => BigInt.asUintN(64, v);
  for (let t = 0; t < plan.aOffs.length; t++) {
    const ao = plan.aOffs[t], bo = plan.bOffs[t], oo = t * M * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0n;
        for (let k = 0; k < K; k++) s += a[ao + i * K + k] * b[bo + k * N + j];
        o[oo + i * N + j] = wrap(s);
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Type inference

const dimEq = (a: Dim, b: Dim) => a === b || typeof a !== 'number' || typeof b !== 'number';

/** numpy.matmul result shape (symbolic dims kept). */
export function matmulShape(node: Node, aShape: readonly Dim[], bShape: readonly Dim[]): Dim[] {
  if (!aShape.length || !bShape.length) throw new GraphError('MatMul operands must have rank >= 1 (got a scalar)', node.name);
  const a = aShape.length === 1 ? [1, aShape[0]] : aShape;
  const b = bShape.length === 1 ? [bShape[0], 1] : bShape;
  const K = a[a.length - 1], K2 = b[b.length - 2];
  if (!dimEq(K, K2)) {
    throw new GraphError(`inner dimensions differ: A ${shapeStr(aShape)}, B ${shapeStr(bShape)}`, node.name,
      'the last dim of A must equal the second-to-last dim of B');
  }
  const out = broadcastShapes([a.slice(0, -2), b.slice(0, -2)], node);
  if (aShape.length > 1) out.push(a[a.length - 2]);
  if (bShape.length > 1) out.push(b[b.length - 1]);
  return out;
}

/** Unidirectional broadcast check of Gemm's C against [M, N]. */
function checkGemmC(node: Node, c: readonly Dim[], M: Dim, N: Dim): void {
  const ok = c.length <= 2 && c.every((d, i) => {
    const want = c.length === 2 ? [M, N][i] : N;
    return d === 1 || dimEq(d, want);
  });
  if (!ok) {
    throw new GraphError(`C has shape ${shapeStr(c)}, which does not broadcast to [${M},${N}]`, node.name,
      'C must be unidirectionally broadcastable to (M, N): a scalar, [N], [1,N], [M,1] or [M,N]');
  }
}

function gemmDims(node: Node, a: readonly Dim[], b: readonly Dim[]): { M: Dim; K: Dim; N: Dim } {
  if (a.length !== 2 || b.length !== 2) {
    throw new GraphError(`Gemm takes 2-D A and B, got ${shapeStr(a)} and ${shapeStr(b)}`, node.name,
      'flatten the inputs to 2-D (Flatten/Reshape) or use MatMul');
  }
  const tA = attrInt(node, 'transA', 0) !== 0, tB = attrInt(node, 'transB', 0) !== 0;
  const M = tA ? a[1] : a[0], K = tA ? a[0] : a[1];
  const Kb = tB ? b[1] : b[0], N = tB ? b[0] : b[1];
  if (!dimEq(K, Kb)) {
    throw new GraphError(`inner dimensions differ: op(A) is [${M},${K}], op(B) is [${Kb},${N}]`, node.name,
      'check transA/transB and the operand shapes');
  }
  return { M, K, N };
}

// ---------------------------------------------------------------------------------------------------------
// CPU implementations

function gemmCpu(node: Node, A: Tensor, B: Tensor, C: Tensor | undefined): Tensor {
  const { M, K, N } = gemmDims(node, A.dims, B.dims) as { M: number; K: number; N: number };
  const alpha = attrFloat(node, 'alpha', 1), beta = attrFloat(node, 'beta', 1);
  const transA = attrInt(node, 'transA', 0) !== 0, transB = attrInt(node, 'transB', 0) !== 0;
  if (C) checkGemmC(node, C.dims, M, N);
  const cIdx = C && beta !== 0 ? broadcastIndex(C.dims, [M, N]) : undefined;
  const p = { M, K, N, transA, transB };
  if (A.dtype === 'float32' || A.dtype === 'float16' || A.dtype === 'bfloat16') {
    const out = new Float32Array(M * N);
    matmulF32(toF32(A), toF32(B), out, p);
    if (alpha !== 1) for (let i = 0; i < out.length; i++) out[i] *= alpha;
    if (cIdx) {
      const c = toF32(C!);
      for (let i = 0; i < out.length; i++) out[i] += beta * c[cIdx[i]];
    }
    return A.dtype === 'float32' ? makeTensor('float32', [M, N], out) : fromF64(A.dtype, [M, N], out);
  }
  // float64 and integer types: exact integer products below 2^53, then a C-style cast back.
  const out = new Float64Array(M * N);
  matmulF64(toF64(A), toF64(B), out, p);
  if (alpha !== 1) for (let i = 0; i < out.length; i++) out[i] *= alpha;
  if (cIdx) {
    const c = toF64(C!);
    for (let i = 0; i < out.length; i++) out[i] += beta * c[cIdx[i]];
  }
  return fromF64(A.dtype, [M, N], out);
}

register(
  {
    op: 'Gemm', since: 6, precision: 'always',
    // Opset 6 has `broadcast`; unidirectional broadcasting (opset 7+) accepts every C it allowed.
    upgrade: (node, ctx) => [ctx.opset < 7 && node.attrs.broadcast ? withoutAttrs(node, ['broadcast']) : node],
    infer: (node, ins) => {
      const A = need(node, ins, 0), B = need(node, ins, 1);
      const { M, N } = gemmDims(node, A.shape, B.shape);
      if (ins[2]) checkGemmC(node, ins[2].shape, M, N);
      return [{ dtype: A.dtype, shape: [M, N] }];
    },
    cpu: (node, ins) => [gemmCpu(node, need(node, ins, 0), need(node, ins, 1), ins[2])],
  },
  {
    op: 'MatMul', since: 1, precision: 'always',
    infer: (node, ins) => {
      const A = need(node, ins, 0), B = need(node, ins, 1);
      return [{ dtype: A.dtype, shape: matmulShape(node, A.shape, B.shape) }];
    },
    cpu: (node, ins) => [matmulTensor(node, need(node, ins, 0), need(node, ins, 1))],
  },
);

