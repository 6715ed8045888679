// Reductions: ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare (axes as an input, keepdims,
// noop_with_empty_axes) and ArgMax/ArgMin. Float reductions accumulate in float64 and round once; int64/uint64
// sums, products and extrema use BigInt so they stay exact. Reducing an empty set gives the identity of the
// reduction (0, 1, -inf/+inf or the dtype's min/max for integers, NaN for a mean), as the ONNX reference does.
import { GraphError } from '../errors.js';
import type { DType, Dim, Node, Tensor, TensorType } from '../ir/types.js';
import { fromF64, isFloat, isInt, makeTensor, size, strides, toF64, toInts } from '../ir/tensor.js';
import { attrInt, attrInts, withoutAttrs } from './attrs.js';
import { register, type OpDef, type PrecisionPolicy, type UpgradeCtx } from './registry.js';
import { constInts, need, normAxis } from './util.js';

type Kind = 'sum' | 'mean' | 'max' | 'min' | 'prod' | 'l1' | 'l2' | 'logsum' | 'logsumexp' | 'sumsquare';
type NumArr = { [i: number]: number; readonly length: number };

const is64 = (d: DType) => d === 'int64' || d === 'uint64';
const isHalf = (d: DType) => d === 'float16' || d === 'bfloat16';

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  int8: [-128, 127], uint8: [0, 255], int16: [-32768, 32767], uint16: [0, 65535],
  int32: [-2147483648, 2147483647], uint32: [0, 4294967295],
};

function checkNumeric(node: Node, t: TensorType): void {
  if (!isFloat(t.dtype) && !isInt(t.dtype)) {
    throw new GraphError(`${node.op} does not accept a ${t.dtype} input`, node.name, 'insert a Cast to a numeric type before this node');
  }
}

/** Which axes to reduce. Empty axes reduce everything, or nothing with noop_with_empty_axes (each element is then
 * reduced on its own, so ReduceSumSquare still squares and ReduceL1 still takes |x|, as the reference does). */
function reducedAxes(node: Node, rank: number, axes: number[]): boolean[] {
  if (!axes.length) return new Array<boolean>(rank).fill(!attrInt(node, 'noop_with_empty_axes', 0));
  const red = new Array<boolean>(rank).fill(false);
  for (const a of axes) {
    const k = normAxis(a, rank, node);
    if (red[k]) throw new GraphError(`axes [${axes}] name axis ${k} twice`, node.name, 'list each axis once');
    red[k] = true;
  }
  return red;
}

/** Calls body(inOffset, outOffset, outStride) for each innermost row of x, where outStride is 0 if the last
 * axis is reduced and 1 otherwise; the row has x.dims[rank-1] elements. */
function forRows(dims: number[], red: boolean[], body: (io: number, oo: number, os: number) => void): void {
  const rank = dims.length, total = size(dims);
  if (!total) return;
  const kdims = dims.map((d, i) => (red[i] ? 1 : d));
  const ost = strides(kdims).map((s, i) => (red[i] ? 0 : s));
  const len = rank ? dims[rank - 1] : 1, os = rank ? ost[rank - 1] : 0;
  const ctr = new Array<number>(rank).fill(0);
  let oo = 0;
  for (let io = 0; io < total; io += len) {
    body(io, oo, os);
    for (let d = rank - 2; d >= 0; d--) {
      oo += ost[d];
      if (++ctr[d] < dims[d]) break;
      oo -= ost[d] * ctr[d];
      ctr[d] = 0;
    }
  }
}

function reduceNumber(kind: Kind, x: Tensor, red: boolean[], m: number, count: number): Float64Array {
  const v: NumArr = isHalf(x.dtype) || is64(x.dtype) ? toF64(x) : (x.data as unknown as NumArr);
  const len = x.dims.length ? x.dims[x.dims.length - 1] : 1;
  const range = INT_RANGE[x.dtype];
  const acc = new Float64Array(m);
  if (kind === 'prod') acc.fill(1);
  if (kind === 'max') acc.fill(range ? range[0] : -Infinity);
  if (kind === 'min') acc.fill(range ? range[1] : Infinity);
  if (kind === 'logsumexp') {
    // Shift by the per-output max so exp() cannot overflow; an infinite or NaN max is the answer itself.
    const mx = reduceNumber('max', x, red, m, count);
    forRows(x.dims, red, (io, oo, os) => { for (let i = 0; i < len; i++) acc[oo + i * os] += Math.exp(v[io + i] - mx[oo + i * os]); });
    for (let o = 0; o < m; o++) acc[o] = !count ? -Infinity : Number.isFinite(mx[o]) ? mx[o] + Math.log(acc[o]) : mx[o];
    return acc;
  }
  forRows(x.dims, red, (io, oo, os) => {
    switch (kind) {
      case 'sum': case 'mean': case 'logsum':
        if (os === 0) { let s = 0; for (let i = 0; i < len; i++) s += v[io + i]; acc[oo] += s; }
        else for (let i = 0; i < len; i++) acc[oo + i] += v[io + i];
        return;
      case 'l1': for (let i = 0; i < len; i++) acc[oo + i * os] += Math.abs(v[io + i]); return;
      case 'l2': case 'sumsquare': for (let i = 0; i < len; i++) { const a = v[io + i]; acc[oo + i * os] += a * a; } return;
      case 'prod': for (let i = 0; i < len; i++) acc[oo + i * os] *= v[io + i]; return;
      case 'max': for (let i = 0; i < len; i++) { const a = v[io + i], o = oo + i * os; if (a > acc[o] || a !== a) acc[o] = a; } return;
      case 'min': for (let i = 0; i < len; i++) { const a = v[io + i], o = oo + i * os; if (a < acc[o] || a !== a) acc[o] = a; } return;
    }
  });
  if (kind === 'mean') for (let o = 0; o < m; o++) acc[o] /= count;
  if (kind === 'l2') for (let o = 0; o < m; o++) acc[o] = Math.sqrt(acc[o]);
  if (kind === 'logsum') for (let o = 0; o < m; o++) acc[o] = Math.log(acc[o]);
  return acc;
}

/** Reductions whose value on a single element is that element. */
const IDENTITY_ON_ONE = new Set<Kind>(['sum', 'mean', 'max', 'min', 'prod']);

const BIG_KINDS = new Set<Kind>(['sum', 'mean', 'max', 'min', 'prod', 'l1', 'sumsquare']);

function reduceBig(kind: Kind, x: Tensor, red: boolean[], m: number, count: number): BigInt64Array | BigUint64Array {
  const v = x.data as BigInt64Array;
  const len = x.dims.length ? x.dims[x.dims.length - 1] : 1;
  const unsigned = x.dtype === 'uint64';
  const acc = unsigned ? new BigUint64Array(m) : new BigInt64Array(m);
  const a = acc as unknown as bigint[];
  if (kind === 'prod') acc.fill(1n);
  if (kind === 'max') acc.fill(unsigned ? 0n : -(2n ** 63n));
  if (kind === 'min') acc.fill(unsigned ? 2n ** 64n - 1n : 2n ** 63n - 1n);
  forRows(x.dims, red, (io, oo, os) => {
    for (let i = 0; i < len; i++) {
      const e = v[io + i], o = oo + i * os;
      switch (kind) {
        case 'sum': case 'mean': a[o] += e; break;
        case 'l1': a[o] += e < 0n ? -e : e; break;
        case 'sumsquare': a[o] += e * e; break;
        case 'prod': a[o] *= e; break;
        case 'max': if (e > a[o]) a[o] = e; break;
        case 'min': if (e < a[o]) a[o] = e; break;
        default: break;
      }
    }
  });
  if (kind === 'mean') for (let o = 0; o < m; o++) a[o] = count ? a[o] / BigInt(count) : 0n;
  return acc;
}

export function reduceTensor(node: Node, kind: Kind, x: Tensor, axes: number[]): Tensor {
  const red = reducedAxes(node, x.dims.length, axes);
  if (!red.some((r) => r) && IDENTITY_ON_ONE.has(kind)) return x;
  const kdims = x.dims.map((d, i) => (red[i] ? 1 : d));
  const odims = attrInt(node, 'keepdims', 1) ? kdims : x.dims.filter((_, i) => !red[i]);
  const m = size(kdims);
  const count = size(x.dims.filter((_, i) => red[i]));
  if (is64(x.dtype) && BIG_KINDS.has(kind)) return makeTensor(x.dtype, odims, reduceBig(kind, x, red, m, count));
  const acc = reduceNumber(kind, x, red, m, count);
  if (x.dtype === 'float64') return makeTensor('float64', odims, acc);
  return fromF64(x.dtype, odims, acc);
}

/** Opset < 13 (ReduceSum) / < 18 (the rest) take axes as an attribute; the newest form takes an int64 input. */
function axesUpgrade(axesInputSince: number) {
  return (node: Node, ctx: UpgradeCtx): Node[] => {
    if (ctx.opset >= axesInputSince || !('axes' in node.attrs)) return [node];
    const axes = attrInts(node, 'axes', []);
    const name = ctx.addConst(`${node.name}_axes`, fromF64('int64', [axes.length], axes));
    return [{ ...withoutAttrs(node, ['axes']), inputs: [node.inputs[0], name] }];
  };
}

function inferReduce(node: Node, ins: (TensorType | undefined)[], axes: number[] | undefined, freshDim: () => string): TensorType[] {
  const x = need(node, ins, 0);
  checkNumeric(node, x);
  const rank = x.shape.length;
  const keep = attrInt(node, 'keepdims', 1);
  if (axes) {
    const red = reducedAxes(node, rank, axes);
    return [{ dtype: x.dtype, shape: keep ? x.shape.map((d, i) => (red[i] ? 1 : d)) : x.shape.filter((_, i) => !red[i]) }];
  }
  // Axes computed at run time: keepdims keeps the rank; otherwise the axes input's static length gives it.
  if (keep) return [{ dtype: x.dtype, shape: x.shape.map((d) => (d === 1 ? 1 : freshDim())) }];
  const k = ins[1]?.shape[0];
  if (typeof k === 'number' && k > 0 && k <= rank) return [{ dtype: x.dtype, shape: Array.from({ length: rank - k }, freshDim) }];
  throw new GraphError(`${node.op} with keepdims=0 needs constant axes to know its output rank`, node.name,
    'make the axes input an initializer or a Constant');
}

function reduceDef(op: string, kind: Kind, axesInputSince: number, precision: PrecisionPolicy): OpDef {
  return {
    op, since: axesInputSince, precision,
    upgrade: axesUpgrade(axesInputSince),
    infer: (node, ins, ctx) => inferReduce(node, ins, node.inputs[1] ? constInts(ctx, 1) : [], ctx.freshDim),
    cpu: (node, ins) => [reduceTensor(node, kind, need(node, ins, 0), ins[1] ? toInts(ins[1]) : [])],
  };
}

// ---------------------------------------------------------------------------------------------------------
// ArgMax / ArgMin

function argDef(op: 'ArgMax' | 'ArgMin'): OpDef {
  const isMax = op === 'ArgMax';
  const axisOf = (node: Node, rank: number) => normAxis(attrInt(node, 'axis', 0), rank, node);
  return {
    op, since: 11, precision: 'follow',
    infer: (node, ins) => {
      const x = need(node, ins, 0);
      checkNumeric(node, x);
      const axis = axisOf(node, x.shape.length);
      const shape: Dim[] = attrInt(node, 'keepdims', 1) ? x.shape.map((d, i) => (i === axis ? 1 : d)) : x.shape.filter((_, i) => i !== axis);
      return [{ dtype: 'int64', shape }];
    },
    cpu: (node, ins) => {
      const x = need(node, ins, 0);
      const dims = x.dims, axis = axisOf(node, dims.length);
      const outer = size(dims.slice(0, axis)), n = dims[axis], inner = size(dims.slice(axis + 1));
      const last = attrInt(node, 'select_last_index', 0) !== 0;
      const odims = attrInt(node, 'keepdims', 1) ? dims.map((d, i) => (i === axis ? 1 : d)) : dims.filter((_, i) => i !== axis);
      const out = new BigInt64Array(outer * inner);
      if (n === 0 && out.length) throw new GraphError(`${op} over an empty axis ${axis} of shape [${dims}]`, node.name, 'the reduced axis must have at least one element');
      // bigint and number arrays compare the same way; NaN wins (numpy returns the first NaN, or the last one
      // with select_last_index).
      const v = (isHalf(x.dtype) ? toF64(x) : x.data) as unknown as ArrayLike<number>;
      for (let o = 0; o < outer; o++) {
        for (let i = 0; i < inner; i++) {
          const base = o * n * inner + i;
          let best = v[base], bi = 0;
          for (let k = 1; k < n; k++) {
            const e = v[base + k * inner];
            const better = isMax
              ? (last ? e >= best || e !== e : e > best || (e !== e && best === best))
              : (last ? e <= best || e !== e : e < best || (e !== e && best === best));
            if (better) { best = e; bi = k; }
          }
          out[o * inner + i] = BigInt(bi);
        }
      }
      return [makeTensor('int64', odims, out)];
    },
  };
}

register(
  reduceDef('ReduceSum', 'sum', 13, 'never'),
  reduceDef('ReduceMean', 'mean', 18, 'never'),
  reduceDef('ReduceMax', 'max', 18, 'follow'),
  reduceDef('ReduceMin', 'min', 18, 'follow'),
  reduceDef('ReduceProd', 'prod', 18, 'never'),
  reduceDef('ReduceL1', 'l1', 18, 'never'),
  reduceDef('ReduceL2', 'l2', 18, 'never'),
  reduceDef('ReduceLogSum', 'logsum', 18, 'never'),
  reduceDef('ReduceLogSumExp', 'logsumexp', 18, 'never'),
  reduceDef('ReduceSumSquare', 'sumsquare', 18, 'never'),
  argDef('ArgMax'),
  argDef('ArgMin'),
);
