// Matrix products: Gemm and MatMul, plus the CPU matmul kernels that Einsum, Attention and the quantized ops
// share. Einsum and Attention live in their own files (einsum.ts, attention.ts) and register from here.
import { GraphError } from '../errors.js';
import type { Dim, Node, Tensor } from '../ir/types.js';
import { fromF64, makeTensor, shapeStr, toF32, toF64 } from '../ir/tensor.js';
import { attrFloat, attrInt, withoutAttrs } from './attrs.js';
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

// The kernels come in a Float32Array and a Float64Array copy so that each stays monomorphic for V8.
// Non-transposed B runs i-k-j over four output rows at a time (each B row is read once per four rows of A);
// transposed B runs dot products, where both operands are contiguous. A transposed A is read strided.

/** out = op(A) * op(B) in float32; overwrites the M*N block of `out`. */
export function matmulF32(a: Float32Array, b: Float32Array, out: Float32Array, p: MatmulArgs): void {
  const { M, K, N } = p;
  const aOff = p.aOff ?? 0, bOff = p.bOff ?? 0, oOff = p.outOff ?? 0;
  const ars = p.transA ? 1 : K, acs = p.transA ? M : 1;
  if (p.transB) {
    for (let i = 0; i < M; i++) {
      const ai = aOff + i * ars, oi = oOff + i * N;
      for (let j = 0; j < N; j++) {
        const bj = bOff + j * K;
        let s = 0;
        for (let k = 0; k < K; k++) s += a[ai + k * acs] * b[bj + k];
        out[oi + j] = s;
      }
    }
    return;
  }
  out.fill(0, oOff, oOff + M * N);
  let i = 0;
  for (; i + 4 <= M; i += 4) {
    const o0 = oOff + i * N, o1 = o0 + N, o2 = o1 + N, o3 = o2 + N;
    const a0 = aOff + i * ars, a1 = a0 + ars, a2 = a1 + ars, a3 = a2 + ars;
    for (let k = 0; k < K; k++) {
      const ka = k * acs;
      const x0 = a[a0 + ka], x1 = a[a1 + ka], x2 = a[a2 + ka], x3 = a[a3 + ka];
      const bk = bOff + k * N;
      for (let j = 0; j < N; j++) {
        const y = b[bk + j];
        out[o0 + j] += x0 * y;
        out[o1 + j] += x1 * y;
        out[o2 + j] += x2 * y;
        out[o3 + j] += x3 * y;
      }
    }
  }
  for (; i < M; i++) {
    const o0 = oOff + i * N, a0 = aOff + i * ars;
    for (let k = 0; k < K; k++) {
      const x0 = a[a0 + k * acs];
      const bk = bOff + k * N;
      for (let j = 0; j < N; j++) out[o0 + j] += x0 * b[bk + j];
    }
  }
}

/** out = op(A) * op(B) in float64 (exact for integer operands whose sums stay below 2^53). */
export function matmulF64(a: Float64Array, b: Float64Array, out: Float64Array, p: MatmulArgs): void {
  const { M, K, N } = p;
  const aOff = p.aOff ?? 0, bOff = p.bOff ?? 0, oOff = p.outOff ?? 0;
  const ars = p.transA ? 1 : K, acs = p.transA ? M : 1;
  if (p.transB) {
    for (let i = 0; i < M; i++) {
      const ai = aOff + i * ars, oi = oOff + i * N;
      for (let j = 0; j < N; j++) {
        const bj = bOff + j * K;
        let s = 0;
        for (let k = 0; k < K; k++) s += a[ai + k * acs] * b[bj + k];
        out[oi + j] = s;
      }
    }
    return;
  }
  out.fill(0, oOff, oOff + M * N);
  let i = 0;
  for (; i + 4 <= M; i += 4) {
    const o0 = oOff + i * N, o1 = o0 + N, o2 = o1 + N, o3 = o2 + N;
    const a0 = aOff + i * ars, a1 = a0 + ars, a2 = a1 + ars, a3 = a2 + ars;
    for (let k = 0; k < K; k++) {
      const ka = k * acs;
      const x0 = a[a0 + ka], x1 = a[a1 + ka], x2 = a[a2 + ka], x3 = a[a3 + ka];
      const bk = bOff + k * N;
      for (let j = 0; j < N; j++) {
        const y = b[bk + j];
        out[o0 + j] += x0 * y;
        out[o1 + j] += x1 * y;
        out[o2 + j] += x2 * y;
        out[o3 + j] += x3 * y;
      }
    }
  }
  for (; i < M; i++) {
    const o0 = oOff + i * N, a0 = aOff + i * ars;
    for (let k = 0; k < K; k++) {
      const x0 = a[a0 + k * acs];
      const bk = bOff + k * N;
      for (let j = 0; j < N; j++) out[o0 + j] += x0 * b[bk + j];
    }
  }
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
  return { M, K, N, batch, outDims, aOffs, bOffs };
}

/** Batched float64 matmul over a plan; the result is laid out [batch..., M, N]. */
export function runMatmulF64(plan: MatmulPlan, a: Float64Array, b: Float64Array): Float64Array {
  const { M, K, N } = plan;
  const out = new Float64Array(plan.aOffs.length * M * N);
  for (let i = 0; i < plan.aOffs.length; i++) {
    matmulF64(a, b, out, { M, K, N, aOff: plan.aOffs[i], bOff: plan.bOffs[i], outOff: i * M * N });
  }
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
      for (let i = 0; i < nb; i++) matmulF32(a, b, out, { M, K, N, aOff: plan.aOffs[i], bOff: plan.bOffs[i], outOff: i * M * N });
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

