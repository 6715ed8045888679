// Shared helpers for op entries: broadcasting, axis normalization, elementwise CPU kernels, type checks.
// Keeping stride/broadcast arithmetic here lets each op entry stay short.
import { GraphError } from '../errors.js';
import type { DType, Dim, Node, Tensor, TensorType } from '../ir/types.js';
import { fromF64, makeTensor, size, strides, toF64 } from '../ir/tensor.js';
import type { InferCtx } from './registry.js';

/** Input i or a clear error naming the node. */
export function need<T>(node: Node, xs: (T | undefined)[], i: number): T {
  const x = xs[i];
  if (x === undefined) throw new GraphError(`input ${i} is required but missing`, node.name);
  return x;
}

export function normAxis(axis: number, rank: number, node?: Node): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= Math.max(rank, 1)) throw new GraphError(`axis ${axis} is out of range for rank ${rank}`, node?.name);
  return a;
}

/** Numpy-style broadcast of static or symbolic shapes. */
export function broadcastShapes(shapes: Dim[][], node?: Node): Dim[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const x = s[s.length - rank + i] ?? 1;
      if (x === 1) continue;
      if (d === 1) d = x;
      else if (typeof d === 'number' && typeof x === 'number' && d !== x) {
        throw new GraphError(`cannot broadcast shapes ${shapes.map((s) => `[${s}]`).join(' and ')}`, node?.name,
          'the input shapes must be equal or 1 in each dimension (numpy broadcasting)');
      } else if (typeof d !== 'number' && typeof x === 'number') d = x;
    }
    out.push(d);
  }
  return out;
}

/** Flat offsets visited by walking `dims` in row-major order with per-dim element `strides` (0 = broadcast,
 * permuted = transpose): the one odometer loop the CPU reference's data movement shares. */
export function stridedOffsets(dims: readonly number[], st: readonly number[]): Int32Array {
  const n = size(dims);
  const out = new Int32Array(n);
  const rank = dims.length;
  const ctr = new Array<number>(rank).fill(0);
  let off = 0;
  for (let k = 0; k < n; k++) {
    out[k] = off;
    for (let i = rank - 1; i >= 0; i--) {
      ctr[i]++;
      off += st[i];
      if (ctr[i] < dims[i]) break;
      off -= st[i] * ctr[i];
      ctr[i] = 0;
    }
  }
  return out;
}

/** For each output element, the flat index into an input broadcast to `outDims`. */
export function broadcastIndex(inDims: readonly number[], outDims: readonly number[]): Int32Array {
  const rank = outDims.length;
  const inStr = strides(inDims);
  const st = new Array<number>(rank).fill(0);
  for (let i = 0; i < rank; i++) {
    const j = i - (rank - inDims.length);
    if (j >= 0 && inDims[j] !== 1) st[i] = inStr[j];
  }
  return stridedOffsets(outDims, st);
}

/** Expand tensor values to `outDims` as float64. */
export function broadcastTo(t: Tensor, outDims: number[]): Float64Array {
  const v = toF64(t);
  if (t.dims.length === outDims.length && t.dims.every((d, i) => d === outDims[i])) return v;
  const idx = broadcastIndex(t.dims, outDims);
  const out = new Float64Array(idx.length);
  for (let i = 0; i < idx.length; i++) out[i] = v[idx[i]];
  return out;
}

/** Elementwise op over any number of broadcast inputs, computed in float64, stored as `outDtype`. */
export function elementwise(inputs: Tensor[], outDtype: DType, fn: (...xs: number[]) => number): Tensor {
  const outDims = broadcastShapes(inputs.map((t) => t.dims)) as number[];
  const n = size(outDims);
  const vals = inputs.map((t) => broadcastTo(t, outDims));
  const out = new Float64Array(n);
  if (vals.length === 1) { const a = vals[0]; for (let i = 0; i < n; i++) out[i] = fn(a[i]); }
  else if (vals.length === 2) { const [a, b] = vals; for (let i = 0; i < n; i++) out[i] = fn(a[i], b[i]); }
  else { const xs = new Array<number>(vals.length); for (let i = 0; i < n; i++) { for (let j = 0; j < vals.length; j++) xs[j] = vals[j][i]; out[i] = fn(...xs); } }
  return fromF64(outDtype, outDims, out);
}

/** Float math on a float tensor rounds each result to the tensor's dtype (fp16 stays fp16). */
export function unaryFloat(t: Tensor, fn: (x: number) => number): Tensor {
  return elementwise([t], t.dtype, fn);
}

/** Type of an elementwise result: broadcast shape, dtype of `dtypeFrom` input (or given). */
export function inferBroadcast(node: Node, inputs: (TensorType | undefined)[], dtype?: DType): TensorType[] {
  const present = inputs.filter((t): t is TensorType => !!t);
  if (!present.length) throw new GraphError('elementwise op has no inputs', node.name);
  return [{ dtype: dtype ?? present[0].dtype, shape: broadcastShapes(present.map((t) => t.shape), node) }];
}

/** Same type as input 0. */
export function inferSame(node: Node, inputs: (TensorType | undefined)[]): TensorType[] {
  const t = need(node, inputs, 0);
  return [{ dtype: t.dtype, shape: [...t.shape] }];
}

/** Constant integer list of input i (shape, axes, pads ...), or undefined when not known at build time. */
export function constInts(ctx: InferCtx, i: number): number[] | undefined {
  const c = ctx.consts[i];
  return c ? Array.from(toF64(c)) : undefined;
}

/** Symbolic integer list of input i: numbers where known, symbols where only the name is known. */
export function shapeValue(ctx: InferCtx, i: number): Dim[] | undefined {
  return ctx.shapeValues[i];
}

export function checkRank(node: Node, t: { dims?: number[]; shape?: Dim[] }, ranks: number[], what = 'input'): void {
  const r = (t.dims ?? t.shape ?? []).length;
  if (!ranks.includes(r)) throw new GraphError(`${what} has rank ${r}, expected ${ranks.join(' or ')}`, node.name);
}

/** Transpose of a tensor by permutation (any dtype). */
export function transposeTensor(t: Tensor, perm: number[]): Tensor {
  const dims = perm.map((p) => t.dims[p]);
  const out = makeTensor(t.dtype, dims);
  const inStr = strides(t.dims);
  const idx = stridedOffsets(dims, perm.map((p) => inStr[p]));
  const src = t.data as unknown as ArrayLike<unknown>;
  const dst = out.data as unknown as unknown[];
  for (let k = 0; k < idx.length; k++) dst[k] = src[idx[k]];
  return out;
}
