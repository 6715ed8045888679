// Pooling: MaxPool (with the optional Indices output), AveragePool, LpPool and their Global forms, over 1-D to
// 3-D windows with strides, dilations, pads, auto_pad and ceil_mode. Window geometry lives in window.ts; the CPU
// kernels walk one precomputed offset table per kernel tap, so every spatial rank shares the same loops.
// Averages and Lp sums accumulate in float32 (float64 for float64 inputs) and round once to the input dtype.
import { GraphError } from '../errors.js';
import type { DType, Dim, Node, Tensor, TensorType } from '../ir/types.js';
import { fromF64, isFloat, makeTensor, size, toF32, toF64 } from '../ir/tensor.js';
import { attrInt } from './attrs.js';
import { register, type OpDef } from './registry.js';
import { need } from './util.js';
import { kernelTaps, readWindowAttrs, resolveWindow, tapOffsets, windowOutDims, type Window, type WindowAttrs } from './window.js';

type Kind = 'max' | 'avg' | 'lp';
type NumArray = Float32Array | Float64Array;

const MAXPOOL_TYPES: DType[] = ['float32', 'float16', 'bfloat16', 'float64', 'int8', 'uint8'];

function checkInput(node: Node, x: { dtype: DType; shape: Dim[] }, kind: Kind): void {
  if (x.shape.length < 3) {
    throw new GraphError(`input X has rank ${x.shape.length}; ${node.op} needs [N, C, spatial...] with at least one spatial axis`,
      node.name);
  }
  const ok = kind === 'max' ? MAXPOOL_TYPES.includes(x.dtype) : isFloat(x.dtype);
  if (!ok) {
    throw new GraphError(`input X is ${x.dtype}, which ${node.op} does not take`, node.name,
      kind === 'max' ? 'MaxPool takes float types, int8 and uint8' : 'cast the input to a float type');
  }
}

function poolAttrs(node: Node, rank: number): WindowAttrs {
  return readWindowAttrs(node, rank - 2);
}

function inferPool(kind: Kind) {
  return (node: Node, ins: (TensorType | undefined)[], ctx: { freshDim(): string }): TensorType[] => {
    const x = need(node, ins, 0);
    checkInput(node, x, kind);
    const a = poolAttrs(node, x.shape.length);
    const shape = [x.shape[0], x.shape[1], ...windowOutDims(node, a, x.shape.slice(2), ctx.freshDim)];
    const out: TensorType[] = [{ dtype: x.dtype, shape }];
    if (kind === 'max' && node.outputs.length > 1 && node.outputs[1]) out.push({ dtype: 'int64', shape: [...shape] });
    return out;
  };
}

/** Values in the compute precision: float32 for float32/16/bf16, float64 otherwise (float64 and integers). */
function values(t: Tensor): NumArray {
  return t.dtype === 'float32' || t.dtype === 'float16' || t.dtype === 'bfloat16' ? toF32(t) : toF64(t);
}

function result(dtype: DType, dims: number[], v: NumArray): Tensor {
  if (dtype === 'float32' && v instanceof Float32Array) return makeTensor(dtype, dims, v);
  if (dtype === 'float64' && v instanceof Float64Array) return makeTensor(dtype, dims, v);
  return fromF64(dtype, dims, v);
}

/** Per-axis count of taps whose coordinate lies in [lo, hi) for each output index along that axis. */
function axisCounts(w: Window, d: number, lo: number, hi: number): Int32Array {
  const c = new Int32Array(w.outSp[d]);
  for (let o = 0; o < c.length; o++) {
    const start = o * w.strides[d] - w.padsBegin[d];
    let n = 0;
    for (let k = 0; k < w.kernel[d]; k++) {
      const p = start + k * w.dilations[d];
      if (p >= lo && p < hi) n++;
    }
    c[o] = n;
  }
  return c;
}

/** Divisor of each output position: the product over axes of the taps counted on that axis. */
function divisors(w: Window, includePad: boolean): Float64Array {
  const r = w.outSp.length;
  const per = w.outSp.map((_, d) => includePad
    ? axisCounts(w, d, -w.padsBegin[d], w.inSp[d] + w.padsEnd[d])
    : axisCounts(w, d, 0, w.inSp[d]));
  const n = size(w.outSp);
  const out = new Float64Array(n);
  const ctr = new Array<number>(r).fill(0);
  for (let j = 0; j < n; j++) {
    let p = 1;
    for (let d = 0; d < r; d++) p *= per[d][ctr[d]];
    out[j] = p;
    for (let d = r - 1; d >= 0; d--) {
      if (++ctr[d] < w.outSp[d]) break;
      ctr[d] = 0;
    }
  }
  return out;
}

/** Column-major (storage_order = 1) flat offset within one plane for a row-major plane offset. */
function columnMajor(off: number, dims: number[]): number {
  let res = 0, mul = 1, rem = off;
  const idx = new Array<number>(dims.length);
  for (let d = dims.length - 1; d >= 0; d--) { idx[d] = rem % dims[d]; rem = Math.floor(rem / dims[d]); }
  for (let d = 0; d < dims.length; d++) { res += idx[d] * mul; mul *= dims[d]; }
  return res;
}

function cpuPool(kind: Kind) {
  return (node: Node, ins: (Tensor | undefined)[]): Tensor[] => {
    const x = need(node, ins, 0);
    checkInput(node, { dtype: x.dtype, shape: x.dims }, kind);
    const a = poolAttrs(node, x.dims.length);
    const w = resolveWindow(node, a, x.dims.slice(2));
    const [batch, channels] = x.dims;
    const planes = batch * channels;
    const inPlane = size(w.inSp), outPlane = size(w.outSp);
    const outDims = [batch, channels, ...w.outSp];
    const xv = values(x);
    const y = xv instanceof Float64Array ? new Float64Array(planes * outPlane) : new Float32Array(planes * outPlane);
    const taps = kernelTaps(w.kernel);
    const idx = taps.map((tap) => { const t = new Int32Array(outPlane); tapOffsets(w, tap, 0, outPlane, t); return t; });
    const wantIndices = kind === 'max' && node.outputs.length > 1 && !!node.outputs[1];
    if (kind === 'max') {
      const arg = new Int32Array(outPlane);
      const storage = attrInt(node, 'storage_order', 0);
      const ind = wantIndices ? new BigInt64Array(planes * outPlane) : undefined;
      for (let pl = 0; pl < planes; pl++) {
        const xb = pl * inPlane, yb = pl * outPlane;
        y.fill(-Infinity, yb, yb + outPlane);
        arg.fill(-1);
        for (let t = 0; t < taps.length; t++) {
          const it = idx[t];
          for (let j = 0; j < outPlane; j++) {
            const s = it[j];
            if (s < 0) continue;
            const v = xv[xb + s];
            // First maximum in row-major window order wins ties, as in the ONNX reference and ONNX Runtime.
            if (v > y[yb + j] || arg[j] < 0) { y[yb + j] = v; arg[j] = s; }
          }
        }
        if (ind) {
          for (let j = 0; j < outPlane; j++) {
            const s = arg[j];
            ind[yb + j] = s < 0 ? -1n : BigInt(xb + (storage === 1 ? columnMajor(s, w.inSp) : s));
          }
        }
      }
      const out = [result(x.dtype, outDims, y)];
      if (ind) out.push(makeTensor('int64', outDims, ind));
      return out;
    }
    const p = kind === 'lp' ? attrInt(node, 'p', 2) : 1;
    const div = kind === 'avg' ? divisors(w, attrInt(node, 'count_include_pad', 0) !== 0) : undefined;
    for (let pl = 0; pl < planes; pl++) {
      const xb = pl * inPlane, yb = pl * outPlane;
      for (let t = 0; t < taps.length; t++) {
        const it = idx[t];
        for (let j = 0; j < outPlane; j++) {
          const s = it[j];
          if (s < 0) continue;
          const v = xv[xb + s];
          y[yb + j] += kind === 'avg' ? v : p === 2 ? v * v : p === 1 ? Math.abs(v) : Math.abs(v) ** p;
        }
      }
      if (div) for (let j = 0; j < outPlane; j++) y[yb + j] /= div[j];
      else if (p === 2) for (let j = 0; j < outPlane; j++) y[yb + j] = Math.sqrt(y[yb + j]);
      else if (p !== 1) for (let j = 0; j < outPlane; j++) y[yb + j] = y[yb + j] ** (1 / p);
    }
    return [result(x.dtype, outDims, y)];
  };
}

// ---- Global pools: one window covering every spatial position ----

function inferGlobal(kind: Kind) {
  return (node: Node, ins: (TensorType | undefined)[]): TensorType[] => {
    const x = need(node, ins, 0);
    checkInput(node, x, kind);
    return [{ dtype: x.dtype, shape: [x.shape[0], x.shape[1], ...x.shape.slice(2).map(() => 1)] }];
  };
}

function cpuGlobal(kind: Kind) {
  return (node: Node, ins: (Tensor | undefined)[]): Tensor[] => {
    const x = need(node, ins, 0);
    checkInput(node, { dtype: x.dtype, shape: x.dims }, kind);
    const [batch, channels] = x.dims;
    const planes = batch * channels, plane = size(x.dims.slice(2));
    const xv = values(x);
    const y = xv instanceof Float64Array ? new Float64Array(planes) : new Float32Array(planes);
    const p = kind === 'lp' ? attrInt(node, 'p', 2) : 1;
    for (let pl = 0; pl < planes; pl++) {
      const b = pl * plane;
      let acc = kind === 'max' ? -Infinity : 0;
      for (let j = 0; j < plane; j++) {
        const v = xv[b + j];
        if (kind === 'max') { if (v > acc || j === 0) acc = v; }
        else if (kind === 'avg') acc += v;
        else acc += Math.abs(v) ** p;
      }
      // An empty plane averages to NaN (0/0) like numpy's mean.
      y[pl] = kind === 'avg' ? acc / plane : kind === 'lp' ? acc ** (1 / p) : acc;
    }
    return [result(x.dtype, [batch, channels, ...x.dims.slice(2).map(() => 1)], y)];
  };
}

function supportsPool(node: Node): string | undefined {
  const so = node.attrs.storage_order;
  if (so && so.kind === 'int' && so.value !== 0 && so.value !== 1) return `storage_order ${so.value} must be 0 or 1`;
  const p = node.attrs.p;
  if (p && p.kind === 'int' && p.value < 1) return `p ${p.value} must be >= 1`;
  return undefined;
}

const defs: OpDef[] = [
  { op: 'MaxPool', since: 1, precision: 'follow', supports: supportsPool, infer: inferPool('max'), cpu: cpuPool('max') },
  // Averages accumulate in fp32 in every backend; storage may follow the input precision.
  { op: 'AveragePool', since: 1, precision: 'follow', infer: inferPool('avg'), cpu: cpuPool('avg') },
  { op: 'LpPool', since: 1, precision: 'follow', supports: supportsPool, infer: inferPool('lp'), cpu: cpuPool('lp') },
  { op: 'GlobalMaxPool', since: 1, precision: 'follow', infer: inferGlobal('max'), cpu: cpuGlobal('max') },
  { op: 'GlobalAveragePool', since: 1, precision: 'follow', infer: inferGlobal('avg'), cpu: cpuGlobal('avg') },
  { op: 'GlobalLpPool', since: 2, precision: 'follow', supports: supportsPool, infer: inferGlobal('lp'), cpu: cpuGlobal('lp') },
];

register(...defs);
