// Quantization ops: QuantizeLinear / DequantizeLinear (per-tensor, per-axis, blocked), DynamicQuantizeLinear,
// MatMulInteger, QLinearMatMul and QLinearConv. Integer parts are computed exactly (float64 holds every int8 /
// int16 product sum), and float steps round where the ONNX reference rounds, so results match it bit for bit.
import { GraphError } from '../errors.js';
import type { DType, Dim, Node, Tensor, TensorType } from '../ir/types.js';
import {
  ONNX_DTYPE, bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, fromF64, makeTensor, shapeStr, size, toF64,
} from '../ir/tensor.js';
import { attrInt, attrInts, attrString } from './attrs.js';
import { matmulF64, matmulShape, planMatmul, runMatmulF64 } from './gemm.js';
import { register } from './registry.js';
import { broadcastIndex, need, normAxis } from './util.js';

/** Saturation range of each integer type quantization writes. */
const QRANGE: Partial<Record<DType, [number, number]>> = {
  int8: [-128, 127], uint8: [0, 255], int16: [-32768, 32767], uint16: [0, 65535],
};
const DQ_INPUTS = new Set<DType>(['int8', 'uint8', 'int16', 'uint16', 'int32']);
const FLOAT_OUT = new Set<DType>(['float32', 'float16', 'bfloat16']);

/** Round half to even (numpy.rint), which the ONNX quantization formulas prescribe. */
export function rint(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** `v` rounded to the precision of a float dtype (float64 and non-float types: unchanged). */
function roundTo(dtype: DType, v: number): number {
  switch (dtype) {
    case 'float32': return Math.fround(v);
    case 'float16': return f16BitsToF32(f32ToF16Bits(v));
    case 'bfloat16': return bf16BitsToF32(f32ToBf16Bits(v));
    default: return v;
  }
}

function dtypeAttr(node: Node, name: string): DType | undefined {
  const code = attrInt(node, name, 0);
  if (!code) return undefined;
  const t = ONNX_DTYPE[code];
  if (!t) throw new GraphError(`${name}=${code} is not a supported element type`, node.name);
  return t;
}

/** Flat scale / zero-point index of every element of x, or undefined for per-tensor parameters. */
function paramIndex(node: Node, xDims: number[], pDims: number[], axisAttr: number, block: number): Int32Array | undefined {
  if (size(pDims) === 1) return undefined;
  const axis = normAxis(axisAttr, xDims.length, node);
  const D = xDims[axis];
  const outer = size(xDims.slice(0, axis)), inner = size(xDims.slice(axis + 1));
  const idx = new Int32Array(size(xDims));
  let k = 0;
  if (!block) {
    if (pDims.length !== 1 || pDims[0] !== D) {
      throw new GraphError(`scale ${shapeStr(pDims)} is neither a scalar nor 1-D of length ${D} (axis ${axis} of ${shapeStr(xDims)})`, node.name,
        'use a scalar (per-tensor), a 1-D tensor of the axis length (per-axis), or set block_size for blocked quantization');
    }
    for (let o = 0; o < outer; o++) for (let a = 0; a < D; a++) for (let i = 0; i < inner; i++) idx[k++] = a;
    return idx;
  }
  const nb = Math.ceil(D / block);
  const ok = block > 0 && pDims.length === xDims.length && pDims.every((d, i) => (i === axis ? d === nb : d === xDims[i]));
  if (!ok) {
    throw new GraphError(`blocked scale ${shapeStr(pDims)} does not fit input ${shapeStr(xDims)} with axis ${axis} and block_size ${block}`, node.name,
      `the scale must equal the input shape except dim ${axis}, which must be ceil(${D}/${block}) = ${nb}`);
  }
  for (let o = 0; o < outer; o++) {
    for (let a = 0; a < D; a++) {
      const base = (o * nb + Math.floor(a / block)) * inner;
      for (let i = 0; i < inner; i++) idx[k++] = base + i;
    }
  }
  return idx;
}

function checkZeroPoint(node: Node, scale: Tensor, zp: Tensor | undefined, what: string): void {
  if (zp && (zp.dims.length !== scale.dims.length || zp.dims.some((d, i) => d !== scale.dims[i])) && size(zp.dims) !== size(scale.dims)) {
    throw new GraphError(`${what} zero point ${shapeStr(zp.dims)} and scale ${shapeStr(scale.dims)} differ in shape`, node.name,
      'give the scale and zero point the same shape');
  }
}

/** Output type of QuantizeLinear: the zero point's type, else output_dtype, else uint8. */
function quantizeType(node: Node, zpType: DType | undefined): DType {
  const attr = dtypeAttr(node, 'output_dtype');
  if (zpType && attr && zpType !== attr) {
    throw new GraphError(`output_dtype ${attr} differs from the zero point type ${zpType}`, node.name, 'drop output_dtype or make them agree');
  }
  return zpType ?? attr ?? 'uint8';
}

/** Precision of x / scale: the `precision` attribute, else numpy's promotion of the two types (the ONNX reference). */
function divisionType(node: Node, x: DType, s: DType): DType {
  const p = dtypeAttr(node, 'precision');
  if (p) return p;
  if (x === 'int32' || s === 'int32' || x === 'float64' || s === 'float64') return 'float64';
  return x === s ? x : 'float32';
}

function quantizeCpu(node: Node, X: Tensor, S: Tensor, Z: Tensor | undefined): Tensor {
  const out = quantizeType(node, Z?.dtype);
  const range = QRANGE[out];
  if (!range) throw new GraphError(`QuantizeLinear to ${out} is not supported`, node.name, 'quantize to int8, uint8, int16 or uint16');
  checkZeroPoint(node, S, Z, 'y');
  const idx = paramIndex(node, X.dims, S.dims, attrInt(node, 'axis', 1), attrInt(node, 'block_size', 0));
  const prec = divisionType(node, X.dtype, S.dtype);
  const x = toF64(X), s = toF64(S).map((v) => roundTo(prec, v)), z = Z ? toF64(Z) : new Float64Array(s.length);
  const [lo, hi] = range;
  const n = x.length, y = new Float64Array(n);
  const fast = prec === 'float32' || prec === 'float64';
  for (let i = 0; i < n; i++) {
    const p = idx ? idx[i] : 0;
    let q: number;
    if (fast) q = prec === 'float32' ? Math.fround(Math.fround(x[i]) / s[p]) : x[i] / s[p];
    else q = roundTo(prec, roundTo(prec, x[i]) / s[p]);
    const v = rint(q) + z[p];
    y[i] = v < lo ? lo : v > hi ? hi : v;
  }
  return fromF64(out, X.dims, y);
}

function dequantizeCpu(node: Node, X: Tensor, S: Tensor, Z: Tensor | undefined): Tensor {
  if (!DQ_INPUTS.has(X.dtype)) throw new GraphError(`DequantizeLinear of ${X.dtype} is not supported`, node.name, 'input must be (u)int8, (u)int16 or int32');
  if (Z && Z.dtype !== X.dtype) throw new GraphError(`x is ${X.dtype} but x_zero_point is ${Z.dtype}`, node.name, 'they must have the same type');
  const out = dtypeAttr(node, 'output_dtype') ?? S.dtype;
  if (!FLOAT_OUT.has(out)) throw new GraphError(`DequantizeLinear output ${out} is not supported`, node.name, 'use float32, float16 or bfloat16');
  checkZeroPoint(node, S, Z, 'x');
  const idx = paramIndex(node, X.dims, S.dims, attrInt(node, 'axis', 1), attrInt(node, 'block_size', 0));
  const x = toF64(X), s = toF64(S), z = Z ? toF64(Z) : new Float64Array(s.length);
  // The reference subtracts and multiplies in float32, then casts to the output type.
  const n = x.length, y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const p = idx ? idx[i] : 0;
    y[i] = Math.fround(Math.fround(x[i]) - z[p]) * s[p];
  }
  return out === 'float32' ? makeTensor('float32', X.dims, y) : fromF64(out, X.dims, y);
}

function dynamicQuantizeCpu(X: Tensor): Tensor[] {
  const x = toF64(X);
  let mx = 0, mn = 0;
  for (let i = 0; i < x.length; i++) { if (x[i] > mx) mx = x[i]; if (x[i] < mn) mn = x[i]; }
  mx = Math.fround(mx);
  mn = Math.fround(mn);
  const scale = Math.fround((mx === mn ? 1 : Math.fround(mx - mn)) / 255);
  const zp = rint(Math.min(255, Math.max(0, Math.fround(-Math.fround(mn / scale)))));
  const y = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = rint(Math.fround(x[i] / scale)) + zp;
    y[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  return [makeTensor('uint8', X.dims, y), fromF64(X.dtype, [], [scale]), makeTensor('uint8', [], Uint8Array.of(zp))];
}

// ---------------------------------------------------------------------------------------------------------
// Quantized matmul

/** Index of a per-tensor / per-row / per-column parameter for each element of a `target`-shaped tensor.
 * A 1-D parameter of length > 1 is per row when `perRow` (reshaped to [M, 1]), else per column. */
function broadcastParam(node: Node, p: Tensor, target: number[], perRow: boolean, what: string): Int32Array {
  let dims = p.dims;
  if (dims.length === 1 && dims[0] > 1 && perRow) dims = [dims[0], 1];
  const ok = dims.length <= target.length && dims.every((d, i) => d === 1 || d === target[target.length - dims.length + i]);
  if (!ok) {
    throw new GraphError(`${what} ${shapeStr(p.dims)} does not broadcast to ${shapeStr(target)}`, node.name,
      'use a scalar (per tensor), or per-row [.., M, 1] for A and per-column [.., 1, N] for B');
  }
  return broadcastIndex(dims, target);
}

/** Operand minus its zero point, in float64, over the operand's matmul shape (1-D promoted). */
function centered(node: Node, x: Tensor, zp: Tensor | undefined, isA: boolean): Float64Array {
  const v = toF64(x);
  if (!zp) return v;
  if (zp.dtype !== x.dtype) throw new GraphError(`${isA ? 'a' : 'b'} is ${x.dtype} but its zero point is ${zp.dtype}`, node.name);
  const dims = x.dims.length === 1 ? (isA ? [1, x.dims[0]] : [x.dims[0], 1]) : x.dims;
  const z = toF64(zp);
  const idx = broadcastParam(node, zp, dims, isA, `${isA ? 'a' : 'b'}_zero_point`);
  for (let i = 0; i < v.length; i++) v[i] -= z[idx[i]];
  return v;
}

function qlinearMatmulCpu(node: Node, ins: (Tensor | undefined)[]): Tensor {
  const a = need(node, ins, 0), as = need(node, ins, 1), b = need(node, ins, 3), bs = need(node, ins, 4), ys = need(node, ins, 6);
  const [azp, bzp, yzp] = [ins[2], ins[5], ins[7]];
  const out = yzp?.dtype ?? a.dtype;
  const range = QRANGE[out];
  if (!range) throw new GraphError(`QLinearMatMul output ${out} is not supported`, node.name, 'use int8 or uint8');
  const plan = planMatmul(node, a.dims, b.dims);
  const c = runMatmulF64(plan, centered(node, a, azp, true), centered(node, b, bzp, false));
  const full = [...plan.batch, plan.M, plan.N];
  // The reference forms a_scale * b_scale / y_scale in the scale type, then scales the int32 sums in float64.
  const st = as.dtype;
  const [av, bv, yv] = [toF64(as), toF64(bs), toF64(ys)];
  const ai = broadcastParam(node, as, full, true, 'a_scale'), bi = broadcastParam(node, bs, full, false, 'b_scale');
  const yi = broadcastParam(node, ys, full, false, 'y_scale');
  const zv = yzp ? toF64(yzp) : undefined, zi = yzp ? broadcastParam(node, yzp, full, false, 'y_zero_point') : undefined;
  const [lo, hi] = range;
  const y = new Float64Array(c.length);
  for (let i = 0; i < c.length; i++) {
    const m = roundTo(st, roundTo(st, av[ai[i]] * bv[bi[i]]) / yv[yi[i]]);
    const v = rint(c[i] * m + (zv ? zv[zi![i]] : 0));
    y[i] = v < lo ? lo : v > hi ? hi : v;
  }
  return fromF64(out, plan.outDims, y);
}

function matmulIntegerCpu(node: Node, ins: (Tensor | undefined)[]): Tensor {
  const a = need(node, ins, 0), b = need(node, ins, 1);
  const plan = planMatmul(node, a.dims, b.dims);
  const c = runMatmulF64(plan, centered(node, a, ins[2], true), centered(node, b, ins[3], false));
  return fromF64('int32', plan.outDims, c);
}

// ---------------------------------------------------------------------------------------------------------
// Quantized convolution

interface ConvGeom {
  kernel: number[];
  strides: number[];
  dilations: number[];
  padsBegin: number[];
  out: number[];
  group: number;
}

/** Output size and padding of each spatial dim (auto_pad, pads, strides, dilations as in Conv). */
export function convGeometry(node: Node, inSpatial: Dim[], kernel: number[]): { geom: Omit<ConvGeom, 'out'>; out: Dim[] } {
  const r = kernel.length;
  const ks = attrInts(node, 'kernel_shape');
  if (ks && (ks.length !== r || ks.some((k, i) => k !== kernel[i]))) {
    throw new GraphError(`kernel_shape [${ks}] differs from the weight's spatial dims [${kernel}]`, node.name, 'drop kernel_shape or make it match w');
  }
  const strides = attrInts(node, 'strides', new Array(r).fill(1));
  const dilations = attrInts(node, 'dilations', new Array(r).fill(1));
  const pads = attrInts(node, 'pads', new Array(2 * r).fill(0));
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  if (strides.length !== r || dilations.length !== r || pads.length !== 2 * r) {
    throw new GraphError(`strides/dilations/pads do not match ${r} spatial dims`, node.name, `give ${r} strides and dilations and ${2 * r} pads`);
  }
  const padsBegin: number[] = [];
  const out = inSpatial.map((d, i) => {
    const ek = (kernel[i] - 1) * dilations[i] + 1;
    let pb = pads[i], pe = pads[i + r];
    if (autoPad === 'VALID') pb = pe = 0;
    if (typeof d !== 'number') { padsBegin.push(pb); return '?'; }
    if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
      const o = Math.ceil(d / strides[i]);
      const total = Math.max(0, (o - 1) * strides[i] + ek - d);
      pb = autoPad === 'SAME_UPPER' ? Math.floor(total / 2) : Math.ceil(total / 2);
      pe = total - pb;
    }
    padsBegin.push(pb);
    const o = Math.floor((d + pb + pe - ek) / strides[i]) + 1;
    if (o < 1) throw new GraphError(`spatial dim ${i} of size ${d} is smaller than the dilated kernel ${ek}`, node.name, 'check pads, strides and dilations');
    return o;
  });
  return { geom: { kernel, strides, dilations, padsBegin, group: attrInt(node, 'group', 1) }, out };
}

/** Direct N-D convolution in float64 (im2col + matmul per image and group). */
export function convF64(node: Node, x: Float64Array, xDims: number[], w: Float64Array, wDims: number[]): { data: Float64Array; dims: number[] } {
  const [N, C] = xDims, [M, Cg] = wDims;
  const inSp = xDims.slice(2), kernel = wDims.slice(2);
  const { geom, out } = convGeometry(node, inSp, kernel);
  const outSp = out as number[];
  const G = geom.group;
  if (Cg * G !== C || M % G !== 0) {
    throw new GraphError(`x has ${C} channels and w is ${shapeStr(wDims)} with group ${G}`, node.name,
      'x channels must equal w.shape[1] * group, and w.shape[0] must be divisible by group');
  }
  const Mg = M / G, kprod = size(kernel), outSize = size(outSp), inSize = size(inSp), rank = kernel.length;
  // For each kernel tap and output position, the input offset inside one channel plane (-1 = padding).
  const tap = new Int32Array(kprod * outSize);
  const kIdx = new Array<number>(rank).fill(0);
  for (let kk = 0; kk < kprod; kk++) {
    const oIdx = new Array<number>(rank).fill(0);
    for (let o = 0; o < outSize; o++) {
      let off = 0;
      for (let d = 0; d < rank && off >= 0; d++) {
        const c = oIdx[d] * geom.strides[d] - geom.padsBegin[d] + kIdx[d] * geom.dilations[d];
        off = c < 0 || c >= inSp[d] ? -1 : off * inSp[d] + c;
      }
      tap[kk * outSize + o] = off;
      for (let d = rank - 1; d >= 0; d--) { if (++oIdx[d] < outSp[d]) break; oIdx[d] = 0; }
    }
    for (let d = rank - 1; d >= 0; d--) { if (++kIdx[d] < kernel[d]) break; kIdx[d] = 0; }
  }
  // Patches are gathered as [outSize, K] rows, the layout the dot-product kernel reads without repacking.
  const K = Cg * kprod;
  const cols = new Float64Array(outSize * K);
  const y = new Float64Array(N * M * outSize);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < G; g++) {
      for (let c = 0; c < Cg; c++) {
        const plane = (n * C + g * Cg + c) * inSize;
        for (let kk = 0; kk < kprod; kk++) {
          const col = c * kprod + kk, t0 = kk * outSize;
          for (let o = 0; o < outSize; o++) { const t = tap[t0 + o]; cols[o * K + col] = t < 0 ? 0 : x[plane + t]; }
        }
      }
      matmulF64(w, cols, y, { M: Mg, K, N: outSize, transB: true, aOff: g * Mg * K, outOff: (n * M + g * Mg) * outSize });
    }
  }
  return { data: y, dims: [N, M, ...outSp] };
}

function qlinearConvCpu(node: Node, ins: (Tensor | undefined)[]): Tensor {
  const x = need(node, ins, 0), xs = need(node, ins, 1), w = need(node, ins, 3), ws = need(node, ins, 4), ys = need(node, ins, 6);
  const [xzp, wzp, yzp, bias] = [ins[2], ins[5], ins[7], ins[8]];
  const out = yzp?.dtype ?? x.dtype;
  const range = QRANGE[out];
  if (!range || x.dims.length < 3 || w.dims.length !== x.dims.length) {
    throw new GraphError(`QLinearConv needs (u)int8 data with x [N,C,...] and w [M,C/group,...] of equal rank; got ${out} x ${shapeStr(x.dims)}, w ${shapeStr(w.dims)}`, node.name);
  }
  const M = w.dims[0];
  const perM = (t: Tensor | undefined, what: string): ((m: number) => number) => {
    if (!t) return () => 0;
    const v = toF64(t);
    if (v.length === 1) return () => v[0];
    if (t.dims.length !== 1 || v.length !== M) throw new GraphError(`${what} ${shapeStr(t.dims)} must be a scalar or have ${M} values (one per output channel)`, node.name);
    return (m) => v[m];
  };
  const scalar = (t: Tensor | undefined, what: string): number => {
    if (!t) return 0;
    if (size(t.dims) !== 1) throw new GraphError(`${what} must be a scalar (per-tensor), got ${shapeStr(t.dims)}`, node.name);
    return toF64(t)[0];
  };
  const xz = scalar(xzp, 'x_zero_point'), yz = scalar(yzp, 'y_zero_point');
  const xsv = scalar(xs, 'x_scale'), ysv = scalar(ys, 'y_scale');
  const wz = perM(wzp, 'w_zero_point'), wsv = perM(ws, 'w_scale'), bv = perM(bias, 'B');
  const xv = toF64(x);
  for (let i = 0; i < xv.length; i++) xv[i] -= xz;
  const wv = toF64(w), wPer = wv.length / M;
  for (let m = 0; m < M; m++) { const z = wz(m); for (let i = m * wPer; i < (m + 1) * wPer; i++) wv[i] -= z; }
  const r = convF64(node, xv, x.dims, wv, w.dims);
  const plane = size(r.dims.slice(2));
  const [lo, hi] = range;
  const y = new Float64Array(r.data.length);
  for (let n = 0; n < r.dims[0]; n++) {
    for (let m = 0; m < M; m++) {
      const mult = Math.fround(Math.fround(xsv * wsv(m)) / ysv), b = bv(m);
      const base = (n * M + m) * plane;
      for (let i = base; i < base + plane; i++) {
        const v = rint((r.data[i] + b) * mult + yz);
        y[i] = v < lo ? lo : v > hi ? hi : v;
      }
    }
  }
  return fromF64(out, r.dims, y);
}

// ---------------------------------------------------------------------------------------------------------
// Registry entries

function quantSupports(node: Node): string | undefined {
  const od = attrInt(node, 'output_dtype', 0);
  if (od && !ONNX_DTYPE[od]) return `output_dtype ${od} (float8/int4/float4 family) is not supported`;
  if (node.op === 'QuantizeLinear') {
    if (od && !QRANGE[ONNX_DTYPE[od]]) return `QuantizeLinear to ${ONNX_DTYPE[od]} is not supported (int8, uint8, int16, uint16 are)`;
    const p = attrInt(node, 'precision', 0);
    if (p && !FLOAT_OUT.has(ONNX_DTYPE[p]) && ONNX_DTYPE[p] !== 'float64') return `precision ${p} is not a float type`;
  } else if (od && !FLOAT_OUT.has(ONNX_DTYPE[od])) {
    return `DequantizeLinear to ${ONNX_DTYPE[od]} is not supported (float32, float16, bfloat16 are)`;
  }
  return undefined;
}

const same = (dtype: DType, t: TensorType): TensorType[] => [{ dtype, shape: [...t.shape] }];

register(
  {
    op: 'QuantizeLinear', since: 10, precision: 'never',
    supports: quantSupports,
    infer: (node, ins) => same(quantizeType(node, ins[2]?.dtype), need(node, ins, 0)),
    cpu: (node, ins) => [quantizeCpu(node, need(node, ins, 0), need(node, ins, 1), ins[2])],
  },
  {
    op: 'DequantizeLinear', since: 10, precision: 'never',
    supports: quantSupports,
    infer: (node, ins) => same(dtypeAttr(node, 'output_dtype') ?? need(node, ins, 1).dtype, need(node, ins, 0)),
    cpu: (node, ins) => [dequantizeCpu(node, need(node, ins, 0), need(node, ins, 1), ins[2])],
  },
  {
    op: 'DynamicQuantizeLinear', since: 11, precision: 'never',
    infer: (node, ins) => {
      const x = need(node, ins, 0);
      return [{ dtype: 'uint8', shape: [...x.shape] }, { dtype: x.dtype, shape: [] }, { dtype: 'uint8', shape: [] }];
    },
    cpu: (node, ins) => dynamicQuantizeCpu(need(node, ins, 0)),
  },
  {
    op: 'MatMulInteger', since: 10, precision: 'never',
    infer: (node, ins) => [{ dtype: 'int32', shape: matmulShape(node, need(node, ins, 0).shape, need(node, ins, 1).shape) }],
    cpu: (node, ins) => [matmulIntegerCpu(node, ins)],
  },
  {
    op: 'QLinearMatMul', since: 10, precision: 'never',
    infer: (node, ins) => [{
      dtype: ins[7]?.dtype ?? need(node, ins, 0).dtype,
      shape: matmulShape(node, need(node, ins, 0).shape, need(node, ins, 3).shape),
    }],
    cpu: (node, ins) => [qlinearMatmulCpu(node, ins)],
  },
  {
    op: 'QLinearConv', since: 10, precision: 'never',
    supports: (node) => {
      const ap = attrString(node, 'auto_pad', 'NOTSET');
      return ['NOTSET', 'SAME_UPPER', 'SAME_LOWER', 'VALID'].includes(ap) ? undefined : `auto_pad '${ap}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID`;
    },
    infer: (node, ins) => {
      const x = need(node, ins, 0), w = need(node, ins, 3);
      const kernel = w.shape.slice(2);
      if (x.shape.length < 3 || w.shape.length !== x.shape.length || kernel.some((k) => typeof k !== 'number')) {
        throw new GraphError(`QLinearConv needs x [N,C,...] and w [M,C/group,...] of equal rank with static kernel dims; got ${shapeStr(x.shape)}, ${shapeStr(w.shape)}`, node.name);
      }
      const { out } = convGeometry(node, x.shape.slice(2), kernel as number[]);
      return [{ dtype: ins[7]?.dtype ?? x.dtype, shape: [x.shape[0], w.shape[0], ...out] }];
    },
    cpu: (node, ins) => [qlinearConvCpu(node, ins)],
  },
);
