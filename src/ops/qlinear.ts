// Internal int8 ops (domain 'tsrt') that the quantize pass emits and the int8 tensor-core kernels run
// (codegen/tc_int8.ts):
//   tsrt::QConv (X int8, W int8 [K,C/g,kh,kw], w_scale f32 [K], B f32 [K]?, Z?)
//   tsrt::QGemm (A int8 [..,K], W int8 [N,K], w_scale f32 [N], B f32 [N]?, Z?)
// Attributes: x_scale, y_scale (present: int8 output, requantized; absent: float output of `out_dtype`), z_scale
// (int8 residual), the FusedConv/FusedGemm epilogue attributes (activation, activation_params,
// residual_before_act), and for QConv the Conv attributes plus `layout` (NCHW or NHWC). Zero points are 0.
// `qlinear=1` (QLinearConv / QLinearMatMul converted by passes/qlinear_int8.ts): B is int32 and the output is ONNX's
// saturate(rint((acc + B[n]) * M[n])), M[n] = fp32(fp32(x_scale * w_scale[n]) / y_scale), sum and product in
// float64 exactly as the ONNX reference (and this repo's QLinearConv CPU reference) computes them.
// The CPU reference sums the integer products exactly (float64), then rounds every float step to fp32 in the
// kernel's order, so the GPU is checked against it to the last bit (activations with exp/erf/tanh aside). An int8
// output with no activation or relu requantizes in the folded form (int8FoldedNode: two FMAs an element).
import { GraphError } from '../errors.js';
import { DTYPE_ONNX, ONNX_DTYPE, fromF64, makeTensor, shapeStr, size, toF64 } from '../ir/tensor.js';
import type { DType, Node, Tensor, TensorType } from '../ir/types.js';
import { attrFloat, attrFloats, attrInt, attrString } from './attrs.js';
import { ACTIVATIONS, applyActivation } from './fused.js';
import { convF64, convGeometry, rint } from './quant.js';
import { register, type CpuCtx } from './registry.js';
import { need, transposeTensor } from './util.js';

const f = Math.fround;
const FLOAT_OUT: DType[] = ['float32', 'float16'];

/** Output dtype: int8 with a y_scale, else out_dtype (float32 or float16). */
export function qOutType(node: Node): DType {
  if (attrFloat(node, 'y_scale') !== undefined) return 'int8';
  const t = ONNX_DTYPE[attrInt(node, 'out_dtype', DTYPE_ONNX.float32)];
  if (!t || !FLOAT_OUT.includes(t)) throw new GraphError(`out_dtype ${attrInt(node, 'out_dtype', 0)} is not float32 or float16`, node.name);
  return t;
}

const isQlinear = (node: Node) => attrInt(node, 'qlinear', 0) !== 0;

function qSupports(node: Node): string | undefined {
  if (isQlinear(node)) {
    if (attrFloat(node, 'y_scale') === undefined) return 'qlinear=1 needs y_scale (the QLinear ops write int8)';
    if (attrString(node, 'activation', 'none') !== 'none' || node.inputs[4]) return 'qlinear=1 has no activation or residual';
  }
  const act = attrString(node, 'activation', 'none');
  if (!(ACTIVATIONS as readonly string[]).includes(act)) return `activation '${act}' is not one of ${ACTIVATIONS.join(', ')}`;
  const xs = attrFloat(node, 'x_scale');
  if (!(xs !== undefined && xs > 0 && Number.isFinite(xs))) return `x_scale must be a positive number, got ${xs}`;
  const ys = attrFloat(node, 'y_scale');
  if (ys !== undefined && !(ys > 0 && Number.isFinite(ys))) return `y_scale must be a positive number, got ${ys}`;
  return undefined;
}

function checkInputs(node: Node, ins: (TensorType | Tensor | undefined)[], wRank: number): void {
  const x = need(node, ins, 0), w = need(node, ins, 1), ws = need(node, ins, 2);
  const wDims = 'dims' in w ? w.dims : w.shape;
  if (x.dtype !== 'int8' || w.dtype !== 'int8') throw new GraphError(`X and W must be int8, got ${x.dtype} and ${w.dtype}`, node.name);
  if (wDims.length !== wRank) throw new GraphError(`W must have rank ${wRank}, got ${shapeStr(wDims)}`, node.name);
  const wsDims = 'dims' in ws ? ws.dims : ws.shape;
  if (wsDims.length !== 1 || wsDims[0] !== wDims[0]) {
    throw new GraphError(`w_scale ${shapeStr(wsDims)} must have one value per output channel (${wDims[0]})`, node.name, 'quantize weights per output channel');
  }
  const b = ins[3];
  if (b && b.dtype !== (isQlinear(node) ? 'int32' : 'float32')) {
    throw new GraphError(`bias is ${b.dtype}; ${isQlinear(node) ? 'qlinear=1 takes an int32 bias (ONNX QLinearConv B)' : 'the bias must be float32'}`, node.name);
  }
  const z = ins[4];
  if (z && z.dtype === 'int8' && attrFloat(node, 'z_scale') === undefined) throw new GraphError('an int8 residual Z needs z_scale', node.name);
}

/** Whether the int8 requantize is the folded form (codegen/tc_int8.ts int8Folded, the same rule on the epilogue
 * the lowering builds from these attributes): int8 output, activation none or Relu, a residual (if any) added before
 * it, not qlinear. Then y = saturate(rint(act(fma(acc, s*inv, fma(z, zs*inv, b*inv))))) with each scale product
 * rounded to fp32 (inv = fp32(1 / y_scale); z the raw residual: its int8 value, or the float value with zs = 1). */
export function int8FoldedNode(node: Node): boolean {
  const act = attrString(node, 'activation', 'none');
  return qOutType(node) === 'int8' && !isQlinear(node) && (act === 'none' || act === 'Relu')
    && !(node.inputs[4] && attrInt(node, 'residual_before_act', 1) === 0 && act !== 'none');
}

const F32 = new Float32Array(1), U32 = new Uint32Array(F32.buffer);
/** The fp32 next to fp32 value `r` in the direction of `to` (r != to, both finite). */
function nextF32(r: number, to: number): number {
  F32[0] = r;
  if (r === 0) U32[0] = 1; else U32[0] += (to > r) === (r > 0) ? 1 : -1;
  return to > 0 || r !== 0 ? F32[0] : -F32[0];
}

/** fp32 fused multiply-add a * b + c with one rounding (CUDA's __fmaf_rn), for fp32 a, b, c: a * b is exact in
 * float64 (48 bits), the sum's float64 rounding error is recovered exactly (TwoSum), and the float64 sum only
 * misrounds to fp32 when it lands exactly on the midpoint of two fp32 values; the error's sign then decides. */
export function fma32(a: number, b: number, c: number): number {
  const p = a * b, s = p + c;
  if (!Number.isFinite(s)) return f(s);
  const bb = s - p, err = (p - (s - bb)) + (c - bb);
  const r = f(s);
  if (err === 0 || r === s) return r;
  const o = nextF32(r, s);
  if ((r + o) / 2 !== s) return r; // not a tie: the float64 sum rounds as the exact one
  return (err > 0) === (o > r) ? o : r;
}

/** The kernel's epilogue on exact integer sums `acc` (channel of element i: `chan(i)`), returning the output. */
function epilogue(node: Node, acc: Float64Array, dims: number[], chan: (i: number) => number, ins: (Tensor | undefined)[], ctx: CpuCtx): Tensor {
  if (isQlinear(node)) return qlinearEpilogue(node, acc, dims, chan, ins);
  const xs = f(attrFloat(node, 'x_scale', 1));
  const ws = toF64(need(node, ins, 2));
  const scale = Float64Array.from(ws, (s) => f(xs * s));
  const bias = ins[3] ? toF64(ins[3]) : undefined;
  const Z = ins[4];
  if (Z && Z.dims.join() !== dims.join()) throw new GraphError(`residual Z ${shapeStr(Z.dims)} differs from the output ${shapeStr(dims)}`, node.name);
  const zs = f(attrFloat(node, 'z_scale', 1));
  if (int8FoldedNode(node)) return foldedEpilogue(node, acc, dims, chan, scale, bias, Z, zs);
  const z = Z ? toF64(Z).map((v) => (Z.dtype === 'int8' ? f(v * zs) : v)) : undefined;
  const before = attrInt(node, 'residual_before_act', 1) !== 0;
  const v = new Float32Array(acc.length);
  for (let i = 0; i < acc.length; i++) {
    const n = chan(i);
    let t = f(f(acc[i]) * scale[n]);
    if (bias) t = f(t + bias[n]);
    if (z && before) t = f(t + z[i]);
    v[i] = t;
  }
  const act = attrString(node, 'activation', 'none');
  let y = toF64(applyActivation(makeTensor('float32', dims, v), act, attrFloats(node, 'activation_params', []), ctx));
  if (z && !before) y = y.map((t, i) => f(t + z[i]));
  const out = qOutType(node);
  if (out !== 'int8') return fromF64(out, dims, y);
  const inv = f(1 / attrFloat(node, 'y_scale', 1));
  const q = new Int8Array(y.length);
  for (let i = 0; i < y.length; i++) { const r = rint(f(y[i] * inv)); q[i] = r < -128 ? -128 : r > 127 ? 127 : r; }
  return makeTensor('int8', dims, q);
}

/** The folded int8 requantize (int8FoldedNode), operation for operation as the kernels compute it. */
function foldedEpilogue(node: Node, acc: Float64Array, dims: number[], chan: (i: number) => number, scale: Float64Array,
  bias: Float64Array | undefined, Z: Tensor | undefined, zs: number): Tensor {
  const inv = f(1 / attrFloat(node, 'y_scale', 1));
  const s = scale.map((v) => f(v * inv)), b = bias?.map((v) => f(v * inv));
  const z = Z && toF64(Z), rs = Z && Z.dtype === 'int8' ? f(zs * inv) : inv;
  const lo = attrString(node, 'activation', 'none') === 'Relu' ? 0 : -128;
  const q = new Int8Array(acc.length);
  for (let i = 0; i < acc.length; i++) {
    const n = chan(i);
    const t = b ? (z ? fma32(z[i], rs, b[n]) : b[n]) : z ? f(z[i] * rs) : undefined;
    const v = t === undefined ? f(f(acc[i]) * s[n]) : fma32(f(acc[i]), s[n], t);
    q[i] = v !== v ? lo : rint(Math.min(Math.max(v, lo), 127)); // (fmaxf takes NaN to the bound)
  }
  return makeTensor('int8', dims, q);
}

/** The qlinear=1 epilogue: QLinearConv's requantize (ops/quant.ts qlinearConvCpu) on the exact integer sums. */
function qlinearEpilogue(node: Node, acc: Float64Array, dims: number[], chan: (i: number) => number, ins: (Tensor | undefined)[]): Tensor {
  const xs = f(attrFloat(node, 'x_scale', 1)), ys = f(attrFloat(node, 'y_scale', 1));
  const mult = Float64Array.from(toF64(need(node, ins, 2)), (s) => f(f(xs * s) / ys));
  const bias = ins[3] ? toF64(ins[3]) : undefined;
  const q = new Int8Array(acc.length);
  for (let i = 0; i < acc.length; i++) {
    const n = chan(i);
    const r = rint((bias ? acc[i] + bias[n] : acc[i]) * mult[n]);
    q[i] = r < -128 ? -128 : r > 127 ? 127 : r;
  }
  return makeTensor('int8', dims, q);
}

const isNhwc = (node: Node) => attrString(node, 'layout', 'NCHW') === 'NHWC';
const toCF = (r: number) => [0, r - 1, ...Array.from({ length: r - 2 }, (_, i) => i + 1)];
const toCL = (r: number) => [0, ...Array.from({ length: r - 2 }, (_, i) => i + 2), 1];

/** Conv attributes only, for convGeometry/convF64. */
const convAttrs = (node: Node): Node => ({ ...node, op: 'Conv', domain: '' });

function qconvCpu(node: Node, ins: (Tensor | undefined)[], ctx: CpuCtx): Tensor {
  checkInputs(node, ins, need(node, ins, 0).dims.length);
  const X = need(node, ins, 0), W = need(node, ins, 1);
  const r = X.dims.length;
  const x = isNhwc(node) ? transposeTensor(X, toCF(r)) : X;
  const res = convF64(convAttrs(node), toF64(x), x.dims, toF64(W), W.dims);
  const K = W.dims[0];
  if (!isNhwc(node)) {
    const plane = size(res.dims.slice(2));
    return epilogue(node, res.data, res.dims, (i) => Math.floor(i / plane) % K, ins, ctx);
  }
  const acc = transposeTensor(makeTensor('float64', res.dims, res.data), toCL(r));
  return epilogue(node, acc.data as Float64Array, acc.dims, (i) => i % K, ins, ctx);
}

function qgemmCpu(node: Node, ins: (Tensor | undefined)[], ctx: CpuCtx): Tensor {
  checkInputs(node, ins, 2);
  const A = need(node, ins, 0), W = need(node, ins, 1);
  const [N, K] = W.dims;
  if (A.dims[A.dims.length - 1] !== K) throw new GraphError(`A ${shapeStr(A.dims)} and W ${shapeStr(W.dims)} disagree on K`, node.name);
  const a = toF64(A), w = toF64(W), M = a.length / K;
  const acc = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[m * K + k] * w[n * K + k];
      acc[m * N + n] = s;
    }
  }
  return epilogue(node, acc, [...A.dims.slice(0, -1), N], (i) => i % N, ins, ctx);
}

register(
  {
    op: 'QConv', domain: 'tsrt', since: 1, precision: 'never',
    supports: (node) => qSupports(node) ?? (['NCHW', 'NHWC'].includes(attrString(node, 'layout', 'NCHW')) ? undefined : 'layout must be NCHW or NHWC'),
    infer: (node, ins) => {
      const X = need(node, ins, 0), W = need(node, ins, 1);
      checkInputs(node, ins, X.shape.length);
      const r = X.shape.length;
      const xs = isNhwc(node) ? toCF(r).map((p) => X.shape[p]) : X.shape;
      const kernel = W.shape.slice(2);
      if (kernel.some((k) => typeof k !== 'number')) throw new GraphError('QConv needs static kernel dims', node.name);
      const { out } = convGeometry(convAttrs(node), xs.slice(2), kernel as number[]);
      const y = [xs[0], W.shape[0], ...out];
      return [{ dtype: qOutType(node), shape: isNhwc(node) ? toCL(r).map((p) => y[p]) : y }];
    },
    cpu: (node, ins, ctx) => [qconvCpu(node, ins, ctx)],
  },
  {
    op: 'QGemm', domain: 'tsrt', since: 1, precision: 'never',
    supports: qSupports,
    infer: (node, ins) => {
      checkInputs(node, ins, 2);
      const A = need(node, ins, 0), W = need(node, ins, 1);
      return [{ dtype: qOutType(node), shape: [...A.shape.slice(0, -1), W.shape[0]] }];
    },
    cpu: (node, ins, ctx) => [qgemmCpu(node, ins, ctx)],
  },
);
