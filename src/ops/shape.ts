// Shape and data-movement ops: Shape, Size, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split, Slice,
// Gather*, ScatterND, Pad, Expand, Tile, Constant, ConstantOfShape, Range, NonZero, TopK, Trilu, DepthToSpace,
// SpaceToDepth.
//
// One file on purpose (STYLE.md's ~600-line guide): these ops share one strided-copy helper and the symbolic-dim
// arithmetic below, and splitting them would scatter that shared core.
//
// Data movement never converts through float64: elements are moved as stored (bigint for int64, raw bits for
// float16/bfloat16, strings), whole contiguous runs at a time where the layout allows.
import { GraphError } from '../errors.js';
import type { DType, Dim, Node, Tensor, TensorType, TypedArray } from '../ir/types.js';
import { fromF64, isInt, makeTensor, size, strides, toF64 } from '../ir/tensor.js';
import { attrFloat, attrInt, attrInts, attrString, attrTensor, attrFloats, attrStrings, withoutAttrs } from './attrs.js';
import { register, type InferCtx, type OpDef, type UpgradeCtx } from './registry.js';
import { broadcastShapes, need, normAxis } from './util.js';

// ---------------------------------------------------------------------------------------------------------------
// Element movement

type Data = Tensor['data'];

/** Copies n elements src[sOff..] -> dst[dOff..]; long runs of typed arrays go through TypedArray.set (memcpy). */
function copyRun(dst: Data, dOff: number, src: Data, sOff: number, n: number): void {
  if (n >= 16 && !Array.isArray(dst)) {
    (dst as Float64Array).set((src as Float64Array).subarray(sOff, sOff + n), dOff);
    return;
  }
  const d = dst as unknown[], s = src as unknown[];
  for (let i = 0; i < n; i++) d[dOff + i] = s[sOff + i];
}

/** A contiguous tensor of `dims` read from a strided view of `t`: out[i0..ik] = t[base + sum(ij * st[j])].
 * Unit axes are dropped and axes that are contiguous with their inner neighbour merged, so the inner loop runs as
 * long as the layout allows (a memcpy for stride 1, a fill for stride 0). Serves Transpose, Slice, Expand, Tile,
 * Split and DepthToSpace. */
function stridedCopy(t: Tensor, dims: number[], base: number, st: number[]): Tensor {
  const out = makeTensor(t.dtype, dims);
  const n = out.data.length;
  if (n === 0) return out;
  const d: number[] = [], s: number[] = [];
  for (let i = 0; i < dims.length; i++) {
    if (dims[i] === 1) continue;
    const k = d.length - 1;
    if (k >= 0 && s[k] === st[i] * dims[i]) { d[k] *= dims[i]; s[k] = st[i]; } else { d.push(dims[i]); s.push(st[i]); }
  }
  const src = t.data as unknown[], dst = out.data as unknown[];
  if (!d.length) { dst[0] = src[base]; return out; }
  const r = d.length - 1, inner = d[r], is = s[r];
  const typed = !Array.isArray(t.data);
  const ctr = new Array<number>(r).fill(0);
  let off = base;
  for (let o = 0; o < n; o += inner) {
    if (is === 1) copyRun(out.data, o, t.data, off, inner);
    else if (is === 0 && typed) (out.data as Float64Array).fill(src[off] as number, o, o + inner);
    else for (let j = 0, p = off; j < inner; j++, p += is) dst[o + j] = src[p];
    for (let i = r - 1; i >= 0; i--) {
      off += s[i];
      if (++ctr[i] < d[i]) break;
      off -= s[i] * d[i];
      ctr[i] = 0;
    }
  }
  return out;
}

/** Same data, new dims (Reshape, Flatten, Squeeze, Unsqueeze): tensors are never mutated, so sharing is safe. */
const view = (t: Tensor, dims: number[]): Tensor => ({ dtype: t.dtype, dims, data: t.data });

/** A scalar in the storage form of `dtype` (bigint, f16 bits, ...). */
function storedValue(dtype: DType, v: number): unknown {
  return fromF64(dtype, [], [v]).data[0];
}

/** Element 0 of `t` in the storage form of `dtype`, converting only when the dtypes differ. */
function storedFrom(t: Tensor, dtype: DType): unknown {
  if (t.dtype === dtype) return (t.data as unknown[])[0];
  if (t.dtype === 'string' || dtype === 'string') throw new Error(`cannot convert a ${t.dtype} value to ${dtype}`);
  return storedValue(dtype, toF64(t)[0]);
}

function ints(t: Tensor): number[] {
  const d = t.data;
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) return Array.from(d, Number);
  if (Array.isArray(d)) throw new Error('expected an integer tensor, got strings');
  return Array.from(d as ArrayLike<number>);
}

function i64(dims: number[], vals: ArrayLike<number>): Tensor {
  const d = new BigInt64Array(vals.length);
  for (let i = 0; i < vals.length; i++) d[i] = BigInt(vals[i]);
  return makeTensor('int64', dims, d);
}

// ---------------------------------------------------------------------------------------------------------------
// Symbolic dims

/** Values of input i as dims, from shape propagation or a constant. */
function valuesOf(ctx: InferCtx, i: number): Dim[] | undefined {
  const v = ctx.shapeValues[i];
  if (v) return v;
  const c = ctx.consts[i];
  return c && c.dtype !== 'string' ? Array.from(toF64(c)) : undefined;
}

/** Values of input i when every one is a known number. */
function numsOf(ctx: InferCtx, i: number): number[] | undefined {
  const v = valuesOf(ctx, i);
  return v && v.every((x): x is number => typeof x === 'number') ? v : undefined;
}

const allNums = (v: Dim[] | undefined): v is number[] => !!v && v.every((x) => typeof x === 'number');

/** Product of dims: a number when all are known, the lone symbol when the rest multiply to 1, else undefined. */
function dimProduct(ds: readonly Dim[]): Dim | undefined {
  let p = 1;
  let sym: string | undefined;
  for (const d of ds) {
    if (typeof d === 'number') p *= d;
    else if (sym === undefined) sym = d;
    else return undefined;
  }
  if (sym === undefined || p === 0) return p;
  return p === 1 ? sym : undefined;
}

/** Sum of dims: a number when all are known, the lone symbol when the rest are 0, else undefined. */
function dimSum(ds: readonly Dim[]): Dim | undefined {
  let s = 0;
  let sym: string | undefined;
  for (const d of ds) {
    if (typeof d === 'number') s += d;
    else if (sym === undefined) sym = d;
    else return undefined;
  }
  if (sym === undefined) return s;
  return s === 0 ? sym : undefined;
}

/** The dim that -1 stands for in a reshape of `inDims` to `known` (the other target dims): symbols common to both
 * sides cancel, so [batch,3,4] -> [batch,-1] gives 12. Undefined when it cannot be told statically. */
function inferredDim(node: Node, inDims: readonly Dim[], known: readonly Dim[]): Dim | undefined {
  const syms: string[] = [];
  let pin = 1, pout = 1;
  for (const d of inDims) { if (typeof d === 'number') pin *= d; else syms.push(d); }
  const outSyms: string[] = [];
  for (const d of known) {
    if (typeof d === 'number') { pout *= d; continue; }
    // '?' is an anonymous unknown: two of them need not be equal, so only named symbols cancel.
    const k = d === '?' ? -1 : syms.indexOf(d);
    if (k >= 0) syms.splice(k, 1); else outSyms.push(d);
  }
  if (outSyms.length) return undefined;
  if (pout === 0) {
    throw new GraphError(`reshape cannot infer -1 when the other target dims multiply to 0`, node.name,
      'give the target shape explicitly, without -1');
  }
  if (!syms.length) {
    if (pin % pout !== 0) {
      throw new GraphError(`cannot reshape [${inDims}] (${pin} elements) with the other target dims multiplying to ${pout}`,
        node.name, 'the target shape must keep the number of elements');
    }
    return pin / pout;
  }
  return syms.length === 1 && pin === pout ? syms[0] : undefined;
}

/** No real model comes near this rank; a corrupt shape input claiming 2^31 dims would otherwise take minutes and
 * gigabytes to build a shape of fresh symbols (found by test/fuzz.test.ts). */
const MAX_RANK = 64;

const freshShape = (n: number, ctx: InferCtx, node?: Node): Dim[] => {
  if (n > MAX_RANK) throw new GraphError(`output would have rank ${n} (more than ${MAX_RANK})`, node?.name, 'the model is corrupt: check the length of its shape/axes inputs');
  return Array.from({ length: n }, () => ctx.freshDim());
};

/** Length of a 1-D shape-like input (shape, axes, pads) when static. */
function staticLen(t: TensorType | undefined): number | undefined {
  if (!t) return undefined;
  if (t.shape.length === 0) return 1;
  return typeof t.shape[0] === 'number' ? t.shape[0] : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Legacy attribute forms -> inputs

/** Moves attributes into inputs at the given positions as int64 constants (or the given tensors). */
function liftAttrs(node: Node, ctx: UpgradeCtx, lifts: { attr: string; at: number; value?: Tensor }[]): Node {
  const inputs = [...node.inputs];
  const removed: string[] = [];
  for (const { attr, at, value } of lifts) {
    const a = node.attrs[attr];
    if (!a) continue;
    removed.push(attr);
    let t = value;
    if (!t) {
      const v = attrInts(node, attr);
      if (!v) continue;
      t = i64([v.length], v);
    }
    while (inputs.length <= at) inputs.push('');
    inputs[at] = ctx.addConst(`${node.name}_${attr}`, t);
  }
  return { ...withoutAttrs(node, removed), inputs };
}

// ---------------------------------------------------------------------------------------------------------------
// Shape, Size, Reshape, Flatten, Squeeze, Unsqueeze

function shapeRange(node: Node, rank: number): [number, number] {
  const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + rank : v, 0), rank);
  return [clamp(attrInt(node, 'start', 0)), clamp(attrInt(node, 'end', rank))];
}

const Shape: OpDef = {
  op: 'Shape', since: 1, precision: 'never',
  infer: (node, ins) => {
    const [s, e] = shapeRange(node, need(node, ins, 0).shape.length);
    return [{ dtype: 'int64', shape: [Math.max(0, e - s)] }];
  },
  propagate: (node, _v, ins) => {
    const x = need(node, ins, 0);
    const [s, e] = shapeRange(node, x.shape.length);
    return [x.shape.slice(s, Math.max(s, e))];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    const [s, e] = shapeRange(node, x.dims.length);
    const d = x.dims.slice(s, Math.max(s, e));
    return [i64([d.length], d)];
  },
};

const Size: OpDef = {
  op: 'Size', since: 1, precision: 'never',
  infer: () => [{ dtype: 'int64', shape: [] }],
  propagate: (node, _v, ins) => {
    const p = dimProduct(need(node, ins, 0).shape);
    return [p === undefined ? undefined : [p]];
  },
  cpu: (node, ins) => [i64([], [size(need(node, ins, 0).dims)])],
};

/** Target dims of Reshape: 0 copies the input dim (unless allowzero), -1 is inferred. */
function reshapeDims(node: Node, inDims: readonly Dim[], target: readonly Dim[], allowZero: boolean): (Dim | undefined)[] {
  let neg = -1;
  const out: (Dim | undefined)[] = target.map((v, i) => {
    if (typeof v !== 'number') return v;
    if (v === -1) {
      if (neg >= 0) throw new GraphError('reshape target has more than one -1', node.name, 'at most one dim may be -1');
      neg = i;
      return v;
    }
    if (v < -1) throw new GraphError(`reshape target dim ${v} is invalid`, node.name, 'dims must be >= -1');
    if (v === 0 && !allowZero) {
      if (i >= inDims.length) {
        throw new GraphError(`reshape target has 0 (copy) at position ${i} but the input has rank ${inDims.length}`, node.name);
      }
      return inDims[i];
    }
    return v;
  });
  if (neg >= 0) {
    if (allowZero && target.includes(0)) {
      throw new GraphError('reshape with allowzero=1 cannot have both 0 and -1 in the target', node.name);
    }
    out[neg] = inferredDim(node, inDims, out.filter((_, i) => i !== neg) as Dim[]);
  } else if (allNums(out as Dim[]) && allNums(inDims as Dim[]) && size(out as number[]) !== size(inDims as number[])) {
    throw new GraphError(`cannot reshape [${inDims}] to [${out}]`, node.name, 'the target shape must keep the number of elements');
  }
  return out;
}

const Reshape: OpDef = {
  op: 'Reshape', since: 5, precision: 'follow',
  infer: (node, ins, ctx) => {
    const x = need(node, ins, 0);
    const target = valuesOf(ctx, 1);
    if (!target) {
      const n = staticLen(need(node, ins, 1));
      if (n === undefined) {
        throw new GraphError('reshape target has unknown length, so the output rank is unknown', node.name,
          'make the shape input a constant or a computation on static shapes');
      }
      return [{ dtype: x.dtype, shape: freshShape(n, ctx, node) }];
    }
    const dims = reshapeDims(node, x.shape, target, attrInt(node, 'allowzero', 0) !== 0);
    return [{ dtype: x.dtype, shape: dims.map((d) => d ?? ctx.freshDim()) }];
  },
  propagate: (node, values, ins) => {
    // Reshape of a shape value to [n] or [] keeps its elements.
    const v = values[0], target = values[1];
    if (!v || !target || target.length > 1 || need(node, ins, 0).shape.length > 1) return [undefined];
    return [v];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    const dims = reshapeDims(node, x.dims, ints(need(node, ins, 1)), attrInt(node, 'allowzero', 0) !== 0) as number[];
    return [view(x, dims)];
  },
};

function flattenAxis(node: Node, rank: number): number {
  const axis = attrInt(node, 'axis', 1);
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a > rank) {
    throw new GraphError(`Flatten axis ${axis} is out of range for rank ${rank}`, node.name, `use an axis in [${-rank}, ${rank}]`);
  }
  return a;
}

const Flatten: OpDef = {
  op: 'Flatten', since: 1, precision: 'follow',
  infer: (node, ins, ctx) => {
    const x = need(node, ins, 0);
    const a = flattenAxis(node, x.shape.length);
    const outer = dimProduct(x.shape.slice(0, a)) ?? ctx.freshDim();
    const inner = dimProduct(x.shape.slice(a)) ?? ctx.freshDim();
    return [{ dtype: x.dtype, shape: [outer, inner] }];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    const a = flattenAxis(node, x.dims.length);
    return [view(x, [size(x.dims.slice(0, a)), size(x.dims.slice(a))])];
  },
};

/** Normalized, duplicate-free axes. */
function normAxes(node: Node, axes: number[], rank: number): number[] {
  const out = axes.map((a) => normAxis(a, rank, node));
  if (new Set(out).size !== out.length) throw new GraphError(`axes [${axes}] repeat an axis`, node.name, 'list each axis once');
  return out;
}

function squeezeShape(node: Node, shape: readonly Dim[], axes: number[] | undefined): Dim[] {
  if (!axes) return shape.filter((d) => d !== 1);
  const drop = normAxes(node, axes, shape.length);
  for (const a of drop) {
    if (typeof shape[a] === 'number' && shape[a] !== 1) {
      throw new GraphError(`cannot squeeze axis ${a} of size ${shape[a]}`, node.name, 'only size-1 axes can be squeezed');
    }
  }
  return shape.filter((_, i) => !drop.includes(i));
}

const upgradeAxes = (since: number) => (node: Node, ctx: UpgradeCtx): Node[] =>
  [ctx.opset < since && node.attrs.axes ? liftAttrs(node, ctx, [{ attr: 'axes', at: 1 }]) : node];

/** Shape values (rank <= 1) keep their elements through Squeeze, and through Unsqueeze of a scalar. */
const passValues: OpDef['propagate'] = (_node, values) => [values[0]];
const passScalarValues: OpDef['propagate'] = (_node, values, ins) => [ins[0]?.shape.length === 0 ? values[0] : undefined];

const Squeeze: OpDef = {
  op: 'Squeeze', since: 1, precision: 'follow',
  upgrade: upgradeAxes(13),
  infer: (node, ins, ctx) => {
    const x = need(node, ins, 0);
    let axes: number[] | undefined;
    if (node.inputs[1]) {
      axes = numsOf(ctx, 1);
      if (!axes) {
        const n = staticLen(need(node, ins, 1));
        if (n === undefined) {
          throw new GraphError('Squeeze axes have unknown length, so the output rank is unknown', node.name, 'make axes a constant');
        }
        return [{ dtype: x.dtype, shape: freshShape(x.shape.length - n, ctx, node) }];
      }
    }
    return [{ dtype: x.dtype, shape: squeezeShape(node, x.shape, axes) }];
  },
  propagate: passValues,
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    return [view(x, squeezeShape(node, x.dims, ins[1] && ints(ins[1])) as number[])];
  },
};

function unsqueezeShape(node: Node, shape: readonly Dim[], axes: number[]): Dim[] {
  const rank = shape.length + axes.length;
  const at = normAxes(node, axes, rank);
  const out: Dim[] = [];
  let k = 0;
  for (let i = 0; i < rank; i++) out.push(at.includes(i) ? 1 : shape[k++]);
  return out;
}

const Unsqueeze: OpDef = {
  op: 'Unsqueeze', since: 1, precision: 'follow',
  upgrade: upgradeAxes(13),
  infer: (node, ins, ctx) => {
    const x = need(node, ins, 0);
    const axes = numsOf(ctx, 1);
    if (!axes) {
      const n = staticLen(need(node, ins, 1));
      if (n === undefined) throw new GraphError('Unsqueeze axes have unknown length', node.name, 'make axes a constant');
      return [{ dtype: x.dtype, shape: freshShape(x.shape.length + n, ctx, node) }];
    }
    return [{ dtype: x.dtype, shape: unsqueezeShape(node, x.shape, axes) }];
  },
  propagate: passScalarValues,
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    return [view(x, unsqueezeShape(node, x.dims, ints(need(node, ins, 1))) as number[])];
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Transpose, Concat, Split

function permOf(node: Node, rank: number): number[] {
  const perm = attrInts(node, 'perm') ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
  const seen = new Set(perm);
  if (perm.length !== rank || seen.size !== rank || perm.some((p) => p < 0 || p >= rank)) {
    throw new GraphError(`perm [${perm}] is not a permutation of ${rank} axes`, node.name, `list each of 0..${rank - 1} once`);
  }
  return perm;
}

const Transpose: OpDef = {
  op: 'Transpose', since: 1, precision: 'follow',
  infer: (node, ins) => {
    const x = need(node, ins, 0);
    return [{ dtype: x.dtype, shape: permOf(node, x.shape.length).map((p) => x.shape[p]) }];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    const perm = permOf(node, x.dims.length);
    const st = strides(x.dims);
    return [stridedCopy(x, perm.map((p) => x.dims[p]), 0, perm.map((p) => st[p]))];
  },
};

const Concat: OpDef = {
  op: 'Concat', since: 4, precision: 'follow',
  infer: (node, ins, ctx) => {
    const xs = ins.map((t, i) => need(node, ins, i));
    if (!xs.length) throw new GraphError('Concat has no inputs', node.name);
    const rank = xs[0].shape.length;
    const axis = normAxis(attrInt(node, 'axis', ctx.opset < 4 ? 1 : 0), rank, node);
    const shape: Dim[] = [];
    for (let d = 0; d < rank; d++) {
      if (d === axis) { shape.push(dimSum(xs.map((t) => t.shape[d])) ?? ctx.freshDim()); continue; }
      let dim: Dim = xs[0].shape[d];
      for (const t of xs) {
        if (t.shape.length !== rank) {
          throw new GraphError(`Concat inputs have ranks ${xs.map((u) => u.shape.length)}`, node.name, 'all inputs must have the same rank');
        }
        if (t.dtype !== xs[0].dtype) {
          throw new GraphError(`Concat inputs have dtypes ${xs.map((u) => u.dtype)}`, node.name, 'cast the inputs to one dtype');
        }
        const e = t.shape[d];
        if (typeof e === 'number') {
          if (typeof dim === 'number' && dim !== e) {
            throw new GraphError(`Concat inputs differ in dim ${d} (${dim} vs ${e})`, node.name, 'all dims but the concat axis must match');
          }
          dim = e;
        }
      }
      shape.push(dim);
    }
    return [{ dtype: xs[0].dtype, shape }];
  },
  propagate: (_node, values, ins) => {
    if (ins.some((t) => !t || t.shape.length !== 1) || values.some((v) => !v)) return [undefined];
    return [values.flatMap((v) => v!)];
  },
  cpu: (node, ins) => {
    const xs = ins.map((t, i) => need(node, ins, i));
    const rank = xs[0].dims.length;
    const axis = normAxis(attrInt(node, 'axis', 0), rank, node);
    const dims = [...xs[0].dims];
    dims[axis] = 0;
    for (const t of xs) {
      if (t.dims.length !== rank || t.dims.some((d, i) => i !== axis && d !== xs[0].dims[i])) {
        throw new GraphError(`Concat inputs have shapes ${xs.map((u) => `[${u.dims}]`).join(', ')}`, node.name,
          'all dims but the concat axis must match');
      }
      dims[axis] += t.dims[axis];
    }
    const out = makeTensor(xs[0].dtype, dims);
    const outer = size(dims.slice(0, axis));
    const blocks = xs.map((t) => size(t.dims.slice(axis)));
    let o = 0;
    for (let i = 0; i < outer; i++) {
      for (let k = 0; k < xs.length; k++) {
        copyRun(out.data, o, xs[k].data, i * blocks[k], blocks[k]);
        o += blocks[k];
      }
    }
    return [out];
  },
};

/** Split sizes: the split input, else num_outputs (opset 18) or the output count, in ceil-sized chunks. */
function splitSizes(node: Node, dim: number, split: number[] | undefined): number[] {
  const nOut = node.outputs.length;
  if (split) {
    if (split.length !== nOut || split.some((s) => s < 0) || split.reduce((a, b) => a + b, 0) !== dim) {
      throw new GraphError(`split [${split}] does not divide a dim of ${dim} into ${nOut} outputs`, node.name,
        `give ${nOut} non-negative sizes that sum to ${dim}`);
    }
    return split;
  }
  const n = attrInt(node, 'num_outputs') ?? nOut;
  if (n !== nOut) throw new GraphError(`num_outputs is ${n} but the node has ${nOut} outputs`, node.name);
  const chunk = Math.ceil(dim / n);
  return Array.from({ length: n }, (_, i) => Math.max(0, Math.min(chunk, dim - i * chunk)));
}

const Split: OpDef = {
  op: 'Split', since: 2, precision: 'follow',
  upgrade: (node, ctx) => [ctx.opset < 13 && node.attrs.split ? liftAttrs(node, ctx, [{ attr: 'split', at: 1 }]) : node],
  infer: (node, ins, ctx) => {
    const x = need(node, ins, 0);
    const axis = normAxis(attrInt(node, 'axis', 0), x.shape.length, node);
    const dim = x.shape[axis];
    let sizes: Dim[];
    if (node.inputs[1]) {
      const s = numsOf(ctx, 1);
      sizes = s && typeof dim === 'number' ? splitSizes(node, dim, s) : s ?? freshShape(node.outputs.length, ctx, node);
    } else if (typeof dim === 'number') sizes = splitSizes(node, dim, undefined);
    else sizes = node.outputs.length === 1 ? [dim] : freshShape(node.outputs.length, ctx, node);
    return sizes.map((s) => ({ dtype: x.dtype, shape: x.shape.map((d, i) => (i === axis ? s : d)) }));
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    const axis = normAxis(attrInt(node, 'axis', 0), x.dims.length, node);
    const sizes = splitSizes(node, x.dims[axis], ins[1] && ints(ins[1]));
    const st = strides(x.dims);
    let pos = 0;
    return sizes.map((s) => {
      const dims = x.dims.map((d, i) => (i === axis ? s : d));
      const out = stridedCopy(x, dims, pos * st[axis], st);
      pos += s;
      return out;
    });
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Slice

const BIG = 2 ** 31 - 1;

/** Clamped start and element count of one sliced axis, as the ONNX spec defines them. */
function sliceAxis(node: Node, dim: number, start: number, end: number, step: number): [number, number] {
  if (step === 0) throw new GraphError('Slice step is 0', node.name, 'steps must be non-zero');
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = Math.min(Math.max(start, 0), dim);
    end = Math.min(Math.max(end, 0), dim);
    return [start, Math.max(0, Math.ceil((end - start) / step))];
  }
  start = Math.min(Math.max(start, 0), dim - 1);
  end = Math.min(Math.max(end, -1), dim - 1);
  return [start, Math.max(0, Math.ceil((start - end) / -step))];
}

interface SliceArgs { starts: number[]; ends: number[]; axes: number[]; steps: number[] }

function sliceArgs(node: Node, rank: number, starts: number[], ends: number[], axes?: number[], steps?: number[]): SliceArgs {
  const ax = normAxes(node, axes ?? starts.map((_, i) => i), rank);
  const st = steps ?? starts.map(() => 1);
  if (ends.length !== starts.length || ax.length !== starts.length || st.length !== starts.length) {
    throw new GraphError(`Slice starts/ends/axes/steps have lengths ${starts.length}/${ends.length}/${ax.length}/${st.length}`,
      node.name, 'give one value per sliced axis in each');
  }
  return { starts, ends, axes: ax, steps: st };
}

/** Upgrade the opset < 10 attribute form (starts/ends/axes attrs) to inputs. */
function upgradeSlice(node: Node, ctx: UpgradeCtx): Node[] {
  if (ctx.opset >= 10 || !node.attrs.starts) return [node];
  return [liftAttrs(node, ctx, [{ attr: 'starts', at: 1 }, { attr: 'ends', at: 2 }, { attr: 'axes', at: 3 }])];
}

const Slice: OpDef = {
  op: 'Slice', since: 1, precision: 'follow',
  upgrade: upgradeSlice,
  infer: (node, ins, ctx) => {
    const x = need(node, ins, 0);
    const rank = x.shape.length;
    const starts = numsOf(ctx, 1), ends = numsOf(ctx, 2);
    const axes = node.inputs[3] ? numsOf(ctx, 3) : undefined;
    const steps = node.inputs[4] ? numsOf(ctx, 4) : undefined;
    const known = starts && ends && (!node.inputs[3] || axes) && (!node.inputs[4] || steps);
    if (!known) {
      const touched = axes ? normAxes(node, axes, rank) : undefined;
      return [{ dtype: x.dtype, shape: x.shape.map((d, i) => (!touched || touched.includes(i) ? ctx.freshDim() : d)) }];
    }
    const a = sliceArgs(node, rank, starts, ends, axes, steps);
    const shape = [...x.shape];
    a.axes.forEach((ax, k) => {
      const d = shape[ax], s = a.starts[k], e = a.ends[k], st = a.steps[k];
      if (typeof d === 'number') shape[ax] = sliceAxis(node, d, s, e, st)[1];
      else if ((st === 1 && s === 0 && e >= BIG) || (st === -1 && (s === -1 || s >= BIG) && e <= -BIG)) shape[ax] = d;
      else shape[ax] = ctx.freshDim();
    });
    return [{ dtype: x.dtype, shape }];
  },
  propagate: (node, values, ins) => {
    const v = values[0];
    const [s, e, ax, st] = [values[1], values[2], values[3], values[4]];
    if (!v || need(node, ins, 0).shape.length !== 1 || !allNums(s) || !allNums(e)) return [undefined];
    if ((node.inputs[3] && !allNums(ax)) || (node.inputs[4] && !allNums(st))) return [undefined];
    const a = sliceArgs(node, 1, s, e, ax as number[] | undefined, st as number[] | undefined);
    if (!a.axes.length) return [v];
    const [start, len] = sliceAxis(node, v.length, a.starts[0], a.ends[0], a.steps[0]);
    return [Array.from({ length: len }, (_, i) => v[start + i * a.steps[0]])];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    const a = sliceArgs(node, x.dims.length, ints(need(node, ins, 1)), ints(need(node, ins, 2)),
      ins[3] && ints(ins[3]), ins[4] && ints(ins[4]));
    const st = strides(x.dims);
    const dims = [...x.dims], ost = [...st];
    let base = 0;
    a.axes.forEach((ax, k) => {
      const [start, len] = sliceAxis(node, x.dims[ax], a.starts[k], a.ends[k], a.steps[k]);
      dims[ax] = len;
      ost[ax] = st[ax] * a.steps[k];
      if (len) base += start * st[ax];
    });
    return [stridedCopy(x, dims, base, ost)];
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Gather, GatherElements, GatherND, ScatterND

/** Index values normalized against `dim` (negative counts from the end); out-of-range throws. */
function indexValues(node: Node, t: Tensor, dim: number): Int32Array | Float64Array {
  const raw = ints(t);
  const out = dim < 2 ** 31 ? new Int32Array(raw.length) : new Float64Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const v = raw[i] < 0 ? raw[i] + dim : raw[i];
    if (!(v >= 0 && v < dim)) {
      throw new GraphError(`index ${raw[i]} is out of range for a dim of ${dim}`, node.name, `indices must be in [${-dim}, ${dim - 1}]`);
    }
    out[i] = v;
  }
  return out;
}

const Gather: OpDef = {
  op: 'Gather', since: 1, precision: 'follow',
  infer: (node, ins) => {
    const x = need(node, ins, 0), idx = need(node, ins, 1);
    const axis = normAxis(attrInt(node, 'axis', 0), x.shape.length, node);
    return [{ dtype: x.dtype, shape: [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)] }];
  },
  propagate: (node, values, ins) => {
    const v = values[0], idx = values[1];
    if (!v || !allNums(idx) || need(node, ins, 0).shape.length !== 1 || need(node, ins, 1).shape.length > 1) return [undefined];
    const n = v.length;
    if (idx.some((i) => i < -n || i >= n)) return [undefined];
    return [idx.map((i) => v[i < 0 ? i + n : i])];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0), it = need(node, ins, 1);
    const axis = normAxis(attrInt(node, 'axis', 0), x.dims.length, node);
    const dim = x.dims[axis];
    const idx = indexValues(node, it, dim);
    const outer = size(x.dims.slice(0, axis)), inner = size(x.dims.slice(axis + 1));
    const out = makeTensor(x.dtype, [...x.dims.slice(0, axis), ...it.dims, ...x.dims.slice(axis + 1)]);
    const m = idx.length;
    if (inner === 1) {
      const src = x.data as unknown[], dst = out.data as unknown[];
      for (let o = 0, p = 0; o < outer; o++) for (let j = 0; j < m; j++) dst[p++] = src[o * dim + idx[j]];
    } else {
      for (let o = 0; o < outer; o++) {
        for (let j = 0; j < m; j++) copyRun(out.data, (o * m + j) * inner, x.data, (o * dim + idx[j]) * inner, inner);
      }
    }
    return [out];
  },
};

const GatherElements: OpDef = {
  op: 'GatherElements', since: 11, precision: 'follow',
  infer: (node, ins) => {
    const x = need(node, ins, 0), idx = need(node, ins, 1);
    if (idx.shape.length !== x.shape.length) {
      throw new GraphError(`indices have rank ${idx.shape.length}, data has rank ${x.shape.length}`, node.name, 'ranks must match');
    }
    normAxis(attrInt(node, 'axis', 0), x.shape.length, node);
    return [{ dtype: x.dtype, shape: [...idx.shape] }];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0), it = need(node, ins, 1);
    const rank = x.dims.length;
    if (it.dims.length !== rank) throw new GraphError(`indices have rank ${it.dims.length}, data has rank ${rank}`, node.name);
    const axis = normAxis(attrInt(node, 'axis', 0), rank, node);
    const idx = indexValues(node, it, x.dims[axis]);
    const out = makeTensor(x.dtype, it.dims);
    const n = idx.length;
    if (!n) return [out];
    // Data offset of every index position with the axis term left out; the axis term comes from the index value.
    const st = strides(x.dims);
    const walk = st.map((s, i) => (i === axis ? 0 : s));
    const src = x.data as unknown[], dst = out.data as unknown[];
    const ctr = new Array<number>(rank).fill(0);
    let off = 0;
    for (let p = 0; p < n; p++) {
      dst[p] = src[off + idx[p] * st[axis]];
      for (let i = rank - 1; i >= 0; i--) {
        off += walk[i];
        if (++ctr[i] < it.dims[i]) break;
        off -= walk[i] * it.dims[i];
        ctr[i] = 0;
      }
    }
    return [out];
  },
};

/** Geometry shared by GatherND and ScatterND: for each index tuple, the data offset of the slice it selects. */
function ndOffsets(node: Node, data: Tensor, it: Tensor, batchDims: number): { offsets: Float64Array; inner: number; k: number } {
  const k = it.dims[it.dims.length - 1];
  const b = batchDims;
  if (it.dims.length < 1 || k === undefined || k < 1 || b + k > data.dims.length) {
    throw new GraphError(`indices of shape [${it.dims}] do not fit data of shape [${data.dims}] with batch_dims ${b}`, node.name,
      'the last indices dim must be between 1 and rank(data) - batch_dims');
  }
  for (let i = 0; i < b; i++) {
    if (data.dims[i] !== it.dims[i]) throw new GraphError(`batch dim ${i} differs between data and indices`, node.name);
  }
  const raw = ints(it);
  const st = strides(data.dims);
  const inner = size(data.dims.slice(b + k));
  const tuples = raw.length / k;
  const perBatch = size(it.dims.slice(b, -1));
  const batchStride = b ? st[b - 1] : 0;
  const offsets = new Float64Array(tuples);
  for (let j = 0; j < tuples; j++) {
    let off = Math.floor(j / Math.max(perBatch, 1)) * batchStride;
    for (let t = 0; t < k; t++) {
      const dim = data.dims[b + t];
      let v = raw[j * k + t];
      if (v < 0) v += dim;
      if (!(v >= 0 && v < dim)) throw new GraphError(`index ${raw[j * k + t]} is out of range for a dim of ${dim}`, node.name);
      off += v * st[b + t];
    }
    offsets[j] = off;
  }
  return { offsets, inner, k };
}

const GatherND: OpDef = {
  op: 'GatherND', since: 11, precision: 'follow',
  infer: (node, ins) => {
    const x = need(node, ins, 0), idx = need(node, ins, 1);
    const k = idx.shape[idx.shape.length - 1];
    if (typeof k !== 'number') throw new GraphError('the last dim of GatherND indices is not static', node.name, 'it sets the output rank');
    const b = attrInt(node, 'batch_dims', 0);
    return [{ dtype: x.dtype, shape: [...idx.shape.slice(0, -1), ...x.shape.slice(b + k)] }];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0), it = need(node, ins, 1);
    const b = attrInt(node, 'batch_dims', 0);
    const { offsets, inner, k } = ndOffsets(node, x, it, b);
    const out = makeTensor(x.dtype, [...it.dims.slice(0, -1), ...x.dims.slice(b + k)]);
    for (let j = 0; j < offsets.length; j++) copyRun(out.data, j * inner, x.data, offsets[j], inner);
    return [out];
  },
};

const SCATTER_REDUCTIONS = ['none', 'add', 'mul', 'max', 'min'];

const ScatterND: OpDef = {
  op: 'ScatterND', since: 11, precision: 'follow',
  supports: (node) => {
    const r = attrString(node, 'reduction', 'none');
    return SCATTER_REDUCTIONS.includes(r) ? undefined : `reduction '${r}' is not one of ${SCATTER_REDUCTIONS.join(', ')}`;
  },
  infer: (node, ins) => [{ ...need(node, ins, 0), shape: [...need(node, ins, 0).shape] }],
  cpu: (node, ins) => {
    const x = need(node, ins, 0), it = need(node, ins, 1), up = need(node, ins, 2);
    const { offsets, inner } = ndOffsets(node, x, it, 0);
    if (up.data.length !== offsets.length * inner) {
      throw new GraphError(`updates of shape [${up.dims}] do not match indices [${it.dims}] and data [${x.dims}]`, node.name);
    }
    const red = attrString(node, 'reduction', 'none');
    const out = makeTensor(x.dtype, x.dims, Array.isArray(x.data) ? [...x.data] : (x.data as TypedArray).slice());
    if (red === 'none') {
      for (let j = 0; j < offsets.length; j++) copyRun(out.data, offsets[j], up.data, j * inner, inner);
      return [out];
    }
    if (x.dtype === 'string' || x.dtype === 'bool') throw new GraphError(`reduction '${red}' needs numbers, data is ${x.dtype}`, node.name);
    const big = x.dtype === 'int64' || x.dtype === 'uint64';
    // Numbers (f16/bf16 decoded) or bigints, reduced in place, then stored back.
    const acc: (number | bigint)[] = big ? Array.from(out.data as BigInt64Array) : Array.from(toF64(out));
    const upd: (number | bigint)[] = big ? Array.from(up.data as BigInt64Array) : Array.from(toF64(up));
    for (let j = 0; j < offsets.length; j++) {
      for (let i = 0; i < inner; i++) {
        const p = offsets[j] + i, a = acc[p] as number, u = upd[j * inner + i] as number;
        acc[p] = red === 'add' ? a + u : red === 'mul' ? a * u : red === 'max' ? (u > a ? u : a) : (u < a ? u : a);
      }
    }
    if (big) { (out.data as BigInt64Array).set(acc as bigint[]); return [out]; }
    return [fromF64(x.dtype, x.dims, acc as number[])];
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Pad

const PAD_MODES = ['constant', 'reflect', 'edge', 'wrap'];

/** Upgrade opset < 11: pads (opset 1: paddings) and value attributes become inputs. The value constant is float32
 * (Pad-2 only takes float types); `cpu` converts it to the data dtype. */
function upgradePad(node: Node, ctx: UpgradeCtx): Node[] {
  if (ctx.opset >= 11) return [node];
  const pads = attrInts(node, 'pads') ?? attrInts(node, 'paddings');
  if (!pads) return [node];
  const value = attrFloat(node, 'value', 0);
  const inputs = [node.inputs[0], ctx.addConst(`${node.name}_pads`, i64([pads.length], pads))];
  if (value !== 0) inputs.push(ctx.addConst(`${node.name}_value`, fromF64('float32', [], [value])));
  return [{ ...withoutAttrs(node, ['pads', 'paddings', 'value']), inputs }];
}

/** Pads as [begin..., end...] over all axes, from the pads input and the optional axes input (opset 18). */
function fullPads(node: Node, rank: number, pads: number[], axes: number[] | undefined): number[] {
  const ax = axes ? normAxes(node, axes, rank) : Array.from({ length: rank }, (_, i) => i);
  if (pads.length !== 2 * ax.length) {
    throw new GraphError(`Pad has ${pads.length} pads for ${ax.length} axes`, node.name, 'give a begin and an end pad per axis');
  }
  const full = new Array<number>(2 * rank).fill(0);
  ax.forEach((a, i) => { full[a] = pads[i]; full[a + rank] = pads[i + ax.length]; });
  return full;
}

/** Source index along one axis for each output position; -1 where the constant goes. */
function padMap(node: Node, mode: string, n: number, outN: number, begin: number): Int32Array {
  const m = new Int32Array(outN);
  if (n === 0 && mode !== 'constant' && outN > 0) {
    throw new GraphError(`Pad mode '${mode}' cannot pad an empty axis`, node.name, "use mode 'constant'");
  }
  const period = 2 * (n - 1);
  for (let o = 0; o < outN; o++) {
    const i = o - begin;
    if (i >= 0 && i < n) { m[o] = i; continue; }
    switch (mode) {
      case 'constant': m[o] = -1; break;
      case 'edge': m[o] = i < 0 ? 0 : n - 1; break;
      case 'wrap': m[o] = ((i % n) + n) % n; break;
      default: { // reflect, repeated for pads wider than the axis (numpy.pad)
        if (n === 1) { m[o] = 0; break; }
        const r = ((i % period) + period) % period;
        m[o] = r < n ? r : period - r;
      }
    }
  }
  return m;
}

const Pad: OpDef = {
  op: 'Pad', since: 2, precision: 'follow',
  upgrade: upgradePad,
  supports: (node) => {
    const mode = attrString(node, 'mode', 'constant');
    return PAD_MODES.includes(mode) ? undefined : `mode '${mode}' is not one of ${PAD_MODES.join(', ')}`;
  },
  infer: (node, ins, ctx) => {
    const x = need(node, ins, 0);
    const rank = x.shape.length;
    const pads = numsOf(ctx, 1);
    const axes = node.inputs[3] ? numsOf(ctx, 3) : undefined;
    if (!pads || (node.inputs[3] && !axes)) {
      const touched = axes ? normAxes(node, axes, rank) : undefined;
      return [{ dtype: x.dtype, shape: x.shape.map((d, i) => (!touched || touched.includes(i) ? ctx.freshDim() : d)) }];
    }
    const full = fullPads(node, rank, pads, axes);
    return [{ dtype: x.dtype, shape: x.shape.map((d, i) => {
      const p = full[i] + full[i + rank];
      if (typeof d === 'number') {
        if (d + p < 0) throw new GraphError(`pads [${pads}] remove more than dim ${i} (${d}) holds`, node.name);
        return d + p;
      }
      return p === 0 ? d : ctx.freshDim();
    }) }];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    const rank = x.dims.length;
    const mode = attrString(node, 'mode', 'constant');
    const full = fullPads(node, rank, ints(need(node, ins, 1)), ins[3] && ints(ins[3]));
    const dims = x.dims.map((d, i) => d + full[i] + full[i + rank]);
    if (dims.some((d) => d < 0)) throw new GraphError(`pads [${full}] remove more than shape [${x.dims}] holds`, node.name);
    const out = makeTensor(x.dtype, dims);
    const n = out.data.length;
    if (!n) return [out];
    const cv = ins[2] && ins[2].data.length ? storedFrom(ins[2], x.dtype) : undefined;
    if (mode === 'constant' && cv !== undefined) (out.data as unknown as { fill(v: unknown): void }).fill(cv);
    if (rank === 0) { (out.data as unknown[])[0] = (x.data as unknown[])[0]; return [out]; }
    const maps = x.dims.map((d, i) => padMap(node, mode, d, dims[i], full[i]));
    const st = strides(x.dims);
    const last = rank - 1, inner = dims[last], lmap = maps[last], begin = full[last];
    // The output columns that copy the input row unchanged, as one run.
    const lo = Math.min(Math.max(0, begin), inner), hi = Math.max(lo, Math.min(inner, begin + x.dims[last]));
    const src = x.data as unknown[], dst = out.data as unknown[];
    const ctr = new Array<number>(last).fill(0);
    for (let o = 0; o < n; o += inner) {
      let off = 0, skip = false;
      for (let i = 0; i < last; i++) {
        const s = maps[i][ctr[i]];
        if (s < 0) { skip = true; break; }
        off += s * st[i];
      }
      if (!skip) {
        for (let j = 0; j < lo; j++) { const s = lmap[j]; if (s >= 0) dst[o + j] = src[off + s]; }
        if (hi > lo) copyRun(out.data, o + lo, x.data, off + lo - begin, hi - lo);
        for (let j = hi; j < inner; j++) { const s = lmap[j]; if (s >= 0) dst[o + j] = src[off + s]; }
      }
      for (let i = last - 1; i >= 0; i--) { if (++ctr[i] < dims[i]) break; ctr[i] = 0; }
    }
    return [out];
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Expand, Tile

const Expand: OpDef = {
  op: 'Expand', since: 8, precision: 'follow',
  infer: (node, ins, ctx) => {
    const x = need(node, ins, 0);
    const target = valuesOf(ctx, 1);
    if (target) return [{ dtype: x.dtype, shape: broadcastShapes([x.shape, target], node) }];
    const n = staticLen(need(node, ins, 1));
    if (n === undefined) throw new GraphError('Expand shape has unknown length, so the output rank is unknown', node.name);
    const rank = Math.max(n, x.shape.length);
    const shape: Dim[] = [];
    for (let i = 0; i < rank; i++) {
      const d = x.shape[i - (rank - x.shape.length)];
      // A known input dim other than 1 fixes the output dim; otherwise the shape input decides.
      shape.push(typeof d === 'number' && d !== 1 ? d : ctx.freshDim());
    }
    return [{ dtype: x.dtype, shape }];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    const dims = broadcastShapes([x.dims, ints(need(node, ins, 1))], node) as number[];
    const st = strides(x.dims);
    const lead = dims.length - x.dims.length;
    const ost = dims.map((_, i) => (i < lead || x.dims[i - lead] === 1 ? 0 : st[i - lead]));
    return [stridedCopy(x, dims, 0, ost)];
  },
};

function checkRepeats(node: Node, rank: number, reps: number[]): void {
  if (reps.length !== rank || reps.some((r) => r < 0)) {
    throw new GraphError(`Tile repeats [${reps}] do not match input rank ${rank}`, node.name, `give ${rank} non-negative repeats`);
  }
}

const Tile: OpDef = {
  op: 'Tile', since: 6, precision: 'follow',
  infer: (node, ins, ctx) => {
    const x = need(node, ins, 0);
    const reps = numsOf(ctx, 1);
    if (!reps) return [{ dtype: x.dtype, shape: x.shape.map(() => ctx.freshDim()) }];
    checkRepeats(node, x.shape.length, reps);
    return [{ dtype: x.dtype, shape: x.shape.map((d, i) => (typeof d === 'number' ? d * reps[i] : reps[i] === 1 ? d : ctx.freshDim())) }];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    const reps = ints(need(node, ins, 1));
    checkRepeats(node, x.dims.length, reps);
    // Tiled element [k0*d0+i0, k1*d1+i1, ...] sits at the same flat position as [k0,i0,k1,i1,...] of a
    // [r0,d0,r1,d1,...] array, so Tile is a strided copy with stride 0 over the repeat axes.
    const st = strides(x.dims);
    const vd: number[] = [], vs: number[] = [];
    x.dims.forEach((d, i) => { vd.push(reps[i], d); vs.push(0, st[i]); });
    const out = stridedCopy(x, vd, 0, vs);
    return [view(out, x.dims.map((d, i) => d * reps[i]))];
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Constant, ConstantOfShape, Range

const CONSTANT_ATTRS = ['value', 'value_float', 'value_floats', 'value_int', 'value_ints', 'value_string', 'value_strings'];

function constantValue(node: Node): Tensor {
  const t = attrTensor(node, 'value');
  if (t) return t;
  const f = attrFloat(node, 'value_float');
  if (node.attrs.value_float && f !== undefined) return fromF64('float32', [], [f]);
  const fs = attrFloats(node, 'value_floats');
  if (fs) return fromF64('float32', [fs.length], fs);
  const i = attrInt(node, 'value_int');
  if (i !== undefined) return i64([], [i]);
  const is = attrInts(node, 'value_ints');
  if (is) return i64([is.length], is);
  const s = attrString(node, 'value_string');
  if (s !== undefined) return makeTensor('string', [], [s]);
  const ss = attrStrings(node, 'value_strings');
  if (ss) return makeTensor('string', [ss.length], [...ss]);
  throw new GraphError('Constant has no value attribute', node.name, `set one of ${CONSTANT_ATTRS.join(', ')}`);
}

const Constant: OpDef = {
  op: 'Constant', since: 1, precision: 'never',
  supports: (node) => {
    if (node.attrs.sparse_value) return 'sparse_value is not supported; store the constant densely';
    const set = CONSTANT_ATTRS.filter((a) => node.attrs[a]);
    return set.length === 1 ? undefined : `Constant needs exactly one of ${CONSTANT_ATTRS.join(', ')} (has ${set.length})`;
  },
  infer: (node) => {
    const t = constantValue(node);
    return [{ dtype: t.dtype, shape: [...t.dims] }];
  },
  cpu: (node) => [constantValue(node)],
};

function fillValue(node: Node): Tensor {
  const v = attrTensor(node, 'value') ?? fromF64('float32', [1], [0]);
  if (v.data.length !== 1) {
    throw new GraphError(`ConstantOfShape value has ${v.data.length} elements`, node.name, 'value must hold one element');
  }
  return v;
}

const ConstantOfShape: OpDef = {
  op: 'ConstantOfShape', since: 9, precision: 'never',
  infer: (node, ins, ctx) => {
    const dtype = fillValue(node).dtype;
    const dims = valuesOf(ctx, 0);
    if (dims) {
      if (dims.some((d) => typeof d === 'number' && d < 0)) throw new GraphError(`ConstantOfShape shape [${dims}] is negative`, node.name);
      return [{ dtype, shape: [...dims] }];
    }
    const n = staticLen(need(node, ins, 0));
    if (n === undefined) throw new GraphError('ConstantOfShape shape input has unknown length', node.name);
    return [{ dtype, shape: freshShape(n, ctx, node) }];
  },
  propagate: (node, values) => {
    // A small 1-D integer fill is itself a shape value (LayerNormalization's expansion builds [1, 1, ...] this way).
    const dims = values[0], v = fillValue(node);
    if (!allNums(dims) || dims.length > 1 || (dims[0] ?? 1) > 64 || !isInt(v.dtype)) return [undefined];
    return [new Array<Dim>(dims[0] ?? 1).fill(ints(v)[0])];
  },
  cpu: (node, ins) => {
    const v = fillValue(node);
    const dims = ints(need(node, ins, 0));
    if (dims.some((d) => d < 0)) throw new GraphError(`ConstantOfShape shape [${dims}] is negative`, node.name);
    const out = makeTensor(v.dtype, dims);
    (out.data as unknown as { fill(x: unknown): void }).fill((v.data as unknown[])[0]);
    return [out];
  },
};

function rangeCount(node: Node, start: number, limit: number, delta: number): number {
  if (delta === 0) throw new GraphError('Range delta is 0', node.name, 'delta must be non-zero');
  return Math.max(0, Math.ceil((limit - start) / delta));
}

const Range: OpDef = {
  op: 'Range', since: 11, precision: 'never',
  infer: (node, ins, ctx) => {
    const s = need(node, ins, 0);
    const v = [0, 1, 2].map((i) => { const c = ctx.consts[i]; return c ? toF64(c)[0] : valuesOf(ctx, i)?.[0]; });
    const n = v.every((x): x is number => typeof x === 'number') ? rangeCount(node, v[0], v[1], v[2]) : ctx.freshDim();
    return [{ dtype: s.dtype, shape: [n] }];
  },
  propagate: (node, values) => {
    // Range over shape values (range(rank) for axes lists) stays a shape value when short.
    const v = values.map((x) => x?.[0]);
    if (!v.every((x): x is number => typeof x === 'number')) return [undefined];
    const n = rangeCount(node, v[0], v[1], v[2]);
    return [n <= 64 ? Array.from({ length: n }, (_, i) => v[0] + i * v[2]) : undefined];
  },
  cpu: (node, ins) => {
    const s = need(node, ins, 0), l = need(node, ins, 1), d = need(node, ins, 2);
    const [start, limit, delta] = [toF64(s)[0], toF64(l)[0], toF64(d)[0]];
    const n = rangeCount(node, start, limit, delta);
    if (s.dtype === 'int64') {
      const out = new BigInt64Array(n);
      const b0 = (s.data as BigInt64Array)[0], bd = (d.data as BigInt64Array)[0];
      for (let i = 0; i < n; i++) out[i] = b0 + BigInt(i) * bd;
      return [makeTensor('int64', [n], out)];
    }
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++) v[i] = start + i * delta;
    return [fromF64(s.dtype, [n], v)];
  },
};

// ---------------------------------------------------------------------------------------------------------------
// NonZero, TopK, Trilu

/** 1 where an element is non-zero (NaN counts as non-zero, -0 as zero, a string as non-zero when not empty). */
function nonZeroMask(t: Tensor): Uint8Array {
  const n = t.data.length;
  const m = new Uint8Array(n);
  const d = t.data;
  if (Array.isArray(d)) for (let i = 0; i < n; i++) m[i] = d[i] !== '' ? 1 : 0;
  else if (d instanceof BigInt64Array || d instanceof BigUint64Array) for (let i = 0; i < n; i++) m[i] = d[i] !== 0n ? 1 : 0;
  else if (t.dtype === 'float16' || t.dtype === 'bfloat16') for (let i = 0; i < n; i++) m[i] = (d as Uint16Array)[i] & 0x7fff ? 1 : 0;
  else for (let i = 0; i < n; i++) m[i] = (d as Float64Array)[i] !== 0 ? 1 : 0;
  return m;
}

const NonZero: OpDef = {
  op: 'NonZero', since: 9, precision: 'never',
  infer: (node, ins, ctx) => [{ dtype: 'int64', shape: [need(node, ins, 0).shape.length, ctx.freshDim()] }],
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    const mask = nonZeroMask(x);
    let nnz = 0;
    for (let i = 0; i < mask.length; i++) nnz += mask[i];
    const rank = x.dims.length;
    const out = new BigInt64Array(rank * nnz);
    const ctr = new Array<number>(rank).fill(0);
    for (let i = 0, k = 0; i < mask.length; i++) {
      if (mask[i]) { for (let a = 0; a < rank; a++) out[a * nnz + k] = BigInt(ctr[a]); k++; }
      for (let a = rank - 1; a >= 0; a--) { if (++ctr[a] < x.dims[a]) break; ctr[a] = 0; }
    }
    return [makeTensor('int64', [rank, nnz], out)];
  },
};

const TopK: OpDef = {
  op: 'TopK', since: 1, precision: 'follow',
  upgrade: (node, ctx) => {
    const k = attrInt(node, 'k');
    if (ctx.opset >= 10 || k === undefined) return [node];
    return [liftAttrs(node, ctx, [{ attr: 'k', at: 1, value: i64([1], [k]) }])];
  },
  infer: (node, ins, ctx) => {
    const x = need(node, ins, 0);
    const axis = normAxis(attrInt(node, 'axis', -1), x.shape.length, node);
    const k = numsOf(ctx, 1)?.[0] ?? ctx.freshDim();
    const shape = x.shape.map((d, i) => (i === axis ? k : d));
    return [{ dtype: x.dtype, shape }, { dtype: 'int64', shape: [...shape] }];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    const axis = normAxis(attrInt(node, 'axis', -1), x.dims.length, node);
    const k = ints(need(node, ins, 1))[0];
    const n = x.dims[axis];
    if (!(k >= 0 && k <= n)) throw new GraphError(`TopK k=${k} is out of range for an axis of ${n}`, node.name, `k must be in [0, ${n}]`);
    if (x.dtype === 'string') throw new GraphError('TopK does not take strings', node.name);
    const largest = attrInt(node, 'largest', 1) !== 0;
    const vals = toF64(x);
    const outer = size(x.dims.slice(0, axis)), inner = size(x.dims.slice(axis + 1));
    const dims = x.dims.map((d, i) => (i === axis ? k : d));
    const values = makeTensor(x.dtype, dims), indices = new BigInt64Array(size(dims));
    const src = x.data as unknown[], dst = values.data as unknown[];
    const order = new Array<number>(n);
    const key = new Float64Array(n);
    // Sorted output whatever `sorted` says (any order is allowed when sorted=0); ties keep the lower index and NaN
    // ranks above every number, as in numpy's sort.
    const cmp = largest
      ? (a: number, b: number) => (key[b] - key[a]) || (a - b)
      : (a: number, b: number) => (key[a] - key[b]) || (a - b);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        const base = o * n * inner + i;
        for (let j = 0; j < n; j++) {
          order[j] = j;
          const v = vals[base + j * inner];
          key[j] = Number.isNaN(v) ? Infinity : v;
        }
        order.sort(cmp);
        for (let j = 0; j < k; j++) {
          const p = (o * k + j) * inner + i;
          dst[p] = src[base + order[j] * inner];
          indices[p] = BigInt(order[j]);
        }
      }
    }
    return [values, makeTensor('int64', dims, indices)];
  },
};

const Trilu: OpDef = {
  op: 'Trilu', since: 14, precision: 'follow',
  infer: (node, ins) => {
    const x = need(node, ins, 0);
    if (x.shape.length < 2) throw new GraphError(`Trilu input has rank ${x.shape.length}`, node.name, 'the input must have rank >= 2');
    return [{ dtype: x.dtype, shape: [...x.shape] }];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    const r = x.dims.length;
    if (r < 2) throw new GraphError(`Trilu input has rank ${r}`, node.name, 'the input must have rank >= 2');
    const k = ins[1] ? ints(ins[1])[0] : 0;
    const upper = attrInt(node, 'upper', 1) !== 0;
    const rows = x.dims[r - 2], cols = x.dims[r - 1];
    const out = makeTensor(x.dtype, x.dims); // zeros ('' for strings) where nothing is copied
    const mats = size(x.dims.slice(0, -2));
    for (let m = 0; m < mats; m++) {
      for (let i = 0; i < rows; i++) {
        // upper keeps j >= i + k, lower keeps j <= i + k
        const lo = upper ? Math.min(Math.max(i + k, 0), cols) : 0;
        const hi = upper ? cols : Math.min(Math.max(i + k + 1, 0), cols);
        const base = (m * rows + i) * cols;
        if (hi > lo) copyRun(out.data, base + lo, x.data, base + lo, hi - lo);
      }
    }
    return [out];
  },
};

// ---------------------------------------------------------------------------------------------------------------
// DepthToSpace, SpaceToDepth

function blockGeometry(node: Node, shape: readonly Dim[]): number {
  const b = attrInt(node, 'blocksize');
  if (b === undefined || b < 1) throw new GraphError('blocksize must be a positive integer', node.name);
  if (shape.length !== 4) throw new GraphError(`input has rank ${shape.length}`, node.name, 'the input must be NCHW (rank 4)');
  return b;
}

const scaleDim = (d: Dim, f: number, ctx: InferCtx): Dim => (typeof d === 'number' ? d * f : f === 1 ? d : ctx.freshDim());

const DepthToSpace: OpDef = {
  op: 'DepthToSpace', since: 1, precision: 'follow',
  supports: (node) => {
    const m = attrString(node, 'mode', 'DCR');
    return m === 'DCR' || m === 'CRD' ? undefined : `mode '${m}' is not DCR or CRD`;
  },
  infer: (node, ins, ctx) => {
    const x = need(node, ins, 0);
    const b = blockGeometry(node, x.shape);
    const [n, c, h, w] = x.shape;
    if (typeof c === 'number' && c % (b * b)) throw new GraphError(`channels ${c} are not divisible by blocksize^2 = ${b * b}`, node.name);
    const oc = typeof c === 'number' ? c / (b * b) : b === 1 ? c : ctx.freshDim();
    return [{ dtype: x.dtype, shape: [n, oc, scaleDim(h, b, ctx), scaleDim(w, b, ctx)] }];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    const b = blockGeometry(node, x.dims);
    const [n, c, h, w] = x.dims;
    if (c % (b * b)) throw new GraphError(`channels ${c} are not divisible by blocksize^2 = ${b * b}`, node.name);
    const oc = c / (b * b), hw = h * w;
    // Output viewed as [N, C', H, b1, W, b2]; DCR reads channel (b1*b + b2)*C' + c', CRD reads c'*b*b + b1*b + b2.
    const crd = attrString(node, 'mode', 'DCR') === 'CRD';
    const sc = crd ? b * b * hw : hw, sb1 = crd ? b * hw : b * oc * hw, sb2 = crd ? hw : oc * hw;
    const out = stridedCopy(x, [n, oc, h, b, w, b], 0, [c * hw, sc, w, sb1, 1, sb2]);
    return [view(out, [n, oc, h * b, w * b])];
  },
};

const SpaceToDepth: OpDef = {
  op: 'SpaceToDepth', since: 1, precision: 'follow',
  infer: (node, ins, ctx) => {
    const x = need(node, ins, 0);
    const b = blockGeometry(node, x.shape);
    const [n, c, h, w] = x.shape;
    const down = (d: Dim): Dim => {
      if (typeof d !== 'number') return b === 1 ? d : ctx.freshDim();
      if (d % b) throw new GraphError(`spatial dim ${d} is not divisible by blocksize ${b}`, node.name);
      return d / b;
    };
    return [{ dtype: x.dtype, shape: [n, scaleDim(c, b * b, ctx), down(h), down(w)] }];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0);
    const b = blockGeometry(node, x.dims);
    const [n, c, h, w] = x.dims;
    if (h % b || w % b) throw new GraphError(`spatial dims ${h}x${w} are not divisible by blocksize ${b}`, node.name);
    const oh = h / b, ow = w / b;
    // Output channel (b1*b + b2)*C + c reads input [c, oh*b + b1, ow*b + b2].
    const out = stridedCopy(x, [n, b, b, c, oh, ow], 0, [c * h * w, w, 1, h * w, b * w, b]);
    return [view(out, [n, c * b * b, oh, ow])];
  },
};

register(
  Shape, Size, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split, Slice,
  Gather, GatherElements, GatherND, ScatterND, Pad, Expand, Tile,
  Constant, ConstantOfShape, Range, NonZero, TopK, Trilu, DepthToSpace, SpaceToDepth,
);
