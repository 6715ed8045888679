// QLinearConv / QLinearMatMul -> tsrt::QConv / tsrt::QGemm with qlinear=1: the int8 tensor-core kernels with the
// ONNX requantize epilogue (ops/qlinear.ts, codegen/tc_int8.ts), so the layer computes exactly what the ONNX
// definition computes: y = saturate(rint((acc + B) * fp32(fp32(x_scale * w_scale) / y_scale))).
// Converted when the kernels can take the operands as they are: int8 data with zero point 0 everywhere (the
// symmetric quantization TensorRT runs), fp32 scales (per tensor; weights per tensor or per output channel),
// constant int8 weights, an int32 bias, a 2-D convolution with group 1, a GEMM with K % 16 == 0. Anything else
// keeps the op's CPU reference (a host step), with the reason in the fusion report.
// Not converted: uint8 data. With zero point 128 it is int8 shifted by 128, but exactness needs the shift at every
// boundary and the output zero point added in float64 before the rounding (rint(p + 128) != rint(p) + 128 when p
// carries bits below 2^-45), which the kernels' epilogue does not do.
import { nameGenerator } from '../ir/graph.js';
import { fromF64, makeTensor, shapeStr, size, toF64 } from '../ir/tensor.js';
import type { Attr, DType, Graph, Node, Tensor } from '../ir/types.js';
import { attrInt } from '../ops/attrs.js';
import type { Pass } from './pass.js';
import { forcedPrecision } from './precision_rules.js';

const PASS = 'qlinear-int8';
const CONV_ATTRS = ['strides', 'pads', 'dilations', 'group', 'kernel_shape', 'auto_pad'];
const fl = (v: number): Attr => ({ kind: 'float', value: v });

const isQLinear = (n: Node) => n.domain === '' && (n.op === 'QLinearConv' || n.op === 'QLinearMatMul');

/** The int8 layer replacing one QLinear node: the node, and the constants it adds. */
interface Layer { node: Node; inits: [string, Tensor][] }

function dtypeOf(g: Graph, v: string): DType | undefined {
  return g.valueTypes.get(v)?.dtype ?? g.inputs.find((i) => i.name === v)?.type.dtype ?? g.initializers.get(v)?.dtype;
}

/** Checks shared by both ops: zero points, data types, the per-tensor scales; returns x_scale and y_scale, or the
 * reason the kernels cannot run the node. `x`, `w` name the ONNX operands (x, w or a, b) in the reasons. */
function common(g: Graph, n: Node, x: string, w: string): { xs: number; ys: number } | string {
  const [xn, xs, xzp, wn, , wzp, ys, yzp] = n.inputs;
  // zero points first: they decide whether the quantization is symmetric at all
  for (const [zp, what] of [[xzp, `input ${x}`], [wzp, `input ${w}`], [yzp, 'output y']]) {
    if (!zp) continue;
    const t = g.initializers.get(zp);
    if (!t) return `zero point of ${what} is not a constant: int8 kernels need it known (and 0)`;
    const nz = toF64(t).find((v) => v !== 0);
    if (nz !== undefined) return `zero point ${nz} (${t.dtype}) on ${what}: int8 kernels are symmetric (int8, zero point 0)`;
  }
  const yType = yzp ? g.initializers.get(yzp)?.dtype : dtypeOf(g, xn);
  for (const [dt, what] of [[dtypeOf(g, xn), `input ${x}`], [dtypeOf(g, wn), `input ${w}`], [yType, 'output y']]) {
    if (dt !== 'int8') return `${dt ?? 'untyped'} ${what}: the int8 kernels take int8 data`;
  }
  const scalar = (v: string, what: string): number | string => {
    const t = g.initializers.get(v);
    if (!t) return `${what} is not a constant`;
    if (t.dtype !== 'float32') return `${t.dtype} ${what} (the kernels' requantize is fp32)`;
    if (size(t.dims) !== 1) return `${what} ${shapeStr(t.dims)} is not per tensor`;
    const s = toF64(t)[0];
    return s > 0 && Number.isFinite(s) ? s : `${what} ${s} is not a positive number`;
  };
  const xv = scalar(xs, `${x}_scale`);
  if (typeof xv === 'string') return xv;
  const yv = scalar(ys, 'y_scale');
  if (typeof yv === 'string') return yv;
  return { xs: xv, ys: yv };
}

/** Weight scales expanded to one fp32 value per output channel, or the reason they cannot be. */
function channelScales(g: Graph, v: string, channels: number, what: string): Float64Array | string {
  const t = g.initializers.get(v);
  if (!t) return `${what} is not a constant`;
  if (t.dtype !== 'float32') return `${t.dtype} ${what} (the kernels' requantize is fp32)`;
  const s = toF64(t);
  if (s.some((x) => !(x > 0) || !Number.isFinite(x))) return `${what} has a value that is not a positive number`;
  if (s.length === 1) return new Float64Array(channels).fill(s[0]);
  const per = t.dims.length === 1 || (t.dims.length === 2 && t.dims[0] === 1);
  if (!per || s.length !== channels) return `${what} ${shapeStr(t.dims)} is neither per tensor nor per output channel (${channels})`;
  return s;
}

function convLayer(g: Graph, n: Node, fresh: (h: string) => string): Layer | string {
  const [x, , , w, ws, , , , b] = n.inputs;
  const c = common(g, n, 'x', 'w');
  if (typeof c === 'string') return c;
  const wt = g.initializers.get(w);
  if (!wt) return 'weights w are not a constant';
  const xt = g.valueTypes.get(x) ?? g.inputs.find((i) => i.name === x)?.type;
  if (wt.dims.length !== 4 || xt?.shape.length !== 4) return `${(xt?.shape.length ?? 2) - 2}-D convolution: the int8 kernels are 2-D`;
  if (attrInt(n, 'group', 1) !== 1) return `group ${attrInt(n, 'group', 1)}: the int8 conv kernels need group 1`;
  const M = wt.dims[0];
  const scales = channelScales(g, ws, M, 'w_scale');
  if (typeof scales === 'string') return scales;
  const inits: [string, Tensor][] = [];
  const sName = fresh(`${n.name}_w_scale`);
  inits.push([sName, fromF64('float32', [M], scales)]);
  if (b) {
    const bt = g.initializers.get(b);
    if (!bt) return 'bias B is not a constant';
    if (bt.dtype !== 'int32' || size(bt.dims) !== M) return `bias B ${bt.dtype}${shapeStr(bt.dims)} is not int32 [${M}]`;
  }
  const attrs: Record<string, Attr> = Object.fromEntries(Object.entries(n.attrs).filter(([k]) => CONV_ATTRS.includes(k)));
  Object.assign(attrs, { x_scale: fl(c.xs), y_scale: fl(c.ys), qlinear: { kind: 'int', value: 1 } });
  const inputs = [x, w, sName, ...(b ? [b] : [])];
  return { node: { name: n.name, op: 'QConv', domain: 'tsrt', inputs, outputs: [n.outputs[0]], attrs }, inits };
}

function matmulLayer(g: Graph, n: Node, fresh: (h: string) => string): Layer | string {
  const [a, , , bIn, bs] = n.inputs;
  const c = common(g, n, 'a', 'b');
  if (typeof c === 'string') return c;
  const bt = g.initializers.get(bIn);
  if (!bt) return 'b is not a constant (the int8 GEMM takes constant weights)';
  if (bt.dims.length !== 2) return `b ${shapeStr(bt.dims)} is not a matrix`;
  const [K, N] = bt.dims;
  const at = g.valueTypes.get(a) ?? g.inputs.find((i) => i.name === a)?.type;
  if (!at?.shape.length || at.shape[at.shape.length - 1] !== K) return `a ${at ? shapeStr(at.shape) : '(untyped)'} is not [.., ${K}]`;
  if (K % 16) return `K=${K} is not a multiple of 16 (the int8 GEMM loads 16-byte rows)`;
  const scales = channelScales(g, bs, N, 'b_scale');
  if (typeof scales === 'string') return scales;
  // the kernel reads W as [N, K] rows
  const bv = bt.data as Int8Array, wnk = new Int8Array(N * K);
  for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) wnk[j * K + k] = bv[k * N + j];
  const wName = fresh(`${n.name}_w_nk`), sName = fresh(`${n.name}_w_scale`);
  const inits: [string, Tensor][] = [[wName, makeTensor('int8', [N, K], wnk)], [sName, fromF64('float32', [N], scales)]];
  const attrs: Record<string, Attr> = { x_scale: fl(c.xs), y_scale: fl(c.ys), qlinear: { kind: 'int', value: 1 } };
  return { node: { name: n.name, op: 'QGemm', domain: 'tsrt', inputs: [a, wName, sName], outputs: [n.outputs[0]], attrs }, inits };
}

export const qlinearInt8: Pass = {
  name: PASS, level: 2,
  run(g, ctx) {
    if (!g.nodes.some(isQLinear)) return g;
    const fresh = nameGenerator(g);
    const inits = new Map(g.initializers);
    const dropped = new Set<string>();
    let converted = 0;
    const nodes = g.nodes.map((n) => {
      if (!isQLinear(n)) return n;
      const reject = (reason: string) => { ctx.rejected.push({ pass: PASS, kind: 'int8', nodes: [n.name], reason: `${reason}; runs its CPU reference on the host` }); return n; };
      // --layer-precisions / the accuracy budget: a layer held at fp16 or fp32 has no float form here
      const held = forcedPrecision(ctx.precision, ctx.fusions, n.name);
      if (held && held !== 'int8') return reject(`precision rule keeps it ${held}`);
      const l = n.op === 'QLinearConv' ? convLayer(g, n, fresh) : matmulLayer(g, n, fresh);
      if (typeof l === 'string') return reject(l);
      for (const [k, t] of l.inits) inits.set(k, t);
      n.inputs.forEach((v) => { if (v && !l.node.inputs.includes(v)) dropped.add(v); });
      ctx.fusions.push({ pass: PASS, kind: `int8 ${n.op === 'QLinearConv' ? 'conv' : 'gemm'} [qlinear]`, into: n.name, nodes: [n.name] });
      converted++;
      return l.node;
    });
    if (!converted) return g;
    // scales, zero points and untransposed weights the converted nodes no longer read
    const used = new Set([...nodes.flatMap((n) => n.inputs), ...g.outputs.map((o) => o.name)]);
    for (const v of dropped) if (!used.has(v)) inits.delete(v);
    ctx.log(`${PASS}: ${converted} QLinear layers on the int8 kernels`);
    // outputs keep their names, dtypes and shapes, so the value types stay valid
    return { ...g, nodes, initializers: inits };
  },
};
