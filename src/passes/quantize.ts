// INT8 quantization passes: Conv / Gemm / MatMul (plain or with fused epilogues) become tsrt::QConv / tsrt::QGemm,
// which run on the int8 tensor-core kernels (codegen/tc_int8.ts).
//  - explicit: QDQ models (DequantizeLinear on the activation and the weights feeding the layer, optionally
//    QuantizeLinear after it; onnxruntime's QDQ format and pytorch-quantization's export), with the model's
//    scales. Asymmetric (non-zero zero point) or uint8 quantization keeps the dequantized float path, with the
//    reason in the fusion report. (QLinearConv / QLinearMatMul: qlinear_int8.ts, which runs just before.)
//  - implicit (BuildOptions.int8 with int8Scales, TensorRT's calibrated mode): every layer whose input activation
//    has a calibration scale runs int8, with weights quantized symmetrically per output channel here.
// Consecutive int8 layers hand int8 tensors to each other: a layer requantizes in its epilogue when every reader
// of its output is an int8 layer (as input or residual); otherwise it writes fp16 and readers quantize once.
import { nameGenerator, producers } from '../ir/graph.js';
import { DTYPE_ONNX, fromF64, makeTensor, size, toF64 } from '../ir/tensor.js';
import type { Attr, Graph, Node, Tensor } from '../ir/types.js';
import { attrFloat, attrInt, withoutAttrs } from '../ops/attrs.js';
import { rint } from '../ops/quant.js';
import type { Pass, PassContext } from './pass.js';
import { forcedPrecision } from './precision_rules.js';

const PASS = 'quantize-int8';

/** Weights of `DequantizeLinear(const int8)` nodes, recorded before constant folding turns them into floats. */
interface QWeights { q: Tensor; scales: Float64Array; axis: number }
const recorded = new WeakMap<PassContext, Map<string, QWeights>>();

/** Symmetric int8 parameters of a DequantizeLinear / QuantizeLinear node: scale values (1 per tensor or per
 * axis), or the reason they are not symmetric int8. */
function symmetricParams(g: Graph, n: Node, dtype: string | undefined): { scales: Float64Array; axis: number } | string {
  if (dtype !== 'int8') return `${dtype ?? 'unknown'} quantization (only symmetric int8 runs on the int8 kernels)`;
  if (attrInt(n, 'block_size', 0)) return 'blocked quantization';
  const s = g.initializers.get(n.inputs[1]);
  if (!s) return 'scale is not a constant';
  const z = n.inputs[2] ? g.initializers.get(n.inputs[2]) : undefined;
  if (n.inputs[2] && !z) return 'zero point is not a constant';
  if (z && toF64(z).some((v) => v !== 0)) return 'asymmetric quantization (non-zero zero point)';
  const scales = toF64(s);
  if (scales.some((v) => !(v > 0) || !Number.isFinite(v))) return 'scale is not positive';
  return { scales, axis: attrInt(n, 'axis', 1) };
}

/** Runs before constant folding: remembers the int8 weights behind each DequantizeLinear of a constant. */
export const recordQdqWeights: Pass = {
  name: 'record-qdq-weights', level: 2,
  run(g, ctx) {
    const m = new Map<string, QWeights>();
    for (const n of g.nodes) {
      if (n.op !== 'DequantizeLinear' || n.domain !== '') continue;
      const q = g.initializers.get(n.inputs[0]);
      if (!q) continue;
      const p = symmetricParams(g, n, q.dtype);
      if (typeof p !== 'string') m.set(n.outputs[0], { q, ...p });
    }
    if (m.size) recorded.set(ctx, m);
    return g;
  },
};

/** Quantizes float weights symmetrically per output channel (rows of `rows` values). */
function quantizeWeights(w: Float64Array, channels: number): { q: Int8Array; scales: Float64Array } {
  const per = w.length / channels;
  const q = new Int8Array(w.length), scales = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    let amax = 0;
    for (let i = c * per; i < (c + 1) * per; i++) amax = Math.max(amax, Math.abs(w[i]));
    const s = Math.fround(amax > 0 ? amax / 127 : 1);
    scales[c] = s;
    for (let i = c * per; i < (c + 1) * per; i++) q[i] = Math.max(-128, Math.min(127, rint(Math.fround(w[i] / s))));
  }
  return { q, scales };
}

interface Candidate {
  node: Node;
  kind: 'conv' | 'gemm';
  /** Activation input (float) and its scale, or the int8 source it already has (explicit models). */
  x: string;
  xScale: number;
  xInt8?: string;
  w: Tensor; wScales: Float64Array;
  bias?: Tensor;
  z?: string;
  /** Explicit models: the QuantizeLinear after the layer (and a Cast between them) and its scale. */
  outQ?: { node: Node; via?: Node; scale: number };
  attrs: Record<string, Attr>;
}

const fl = (v: number): Attr => ({ kind: 'float', value: v });

export const quantizeInt8: Pass = {
  name: PASS, level: 2,
  run(g, ctx) {
    const scales = ctx.options.int8 ? ctx.options.int8Scales ?? {} : {};
    const hasQ = g.nodes.some((n) => n.domain === '' && ['DequantizeLinear', 'QLinearConv', 'QLinearMatMul'].includes(n.op));
    if (!ctx.options.int8 && !hasQ) return g;
    const prod = producers(g);
    const readers = new Map<string, Node[]>();
    for (const n of g.nodes) for (const x of n.inputs) if (x) readers.set(x, [...(readers.get(x) ?? []), n]);
    const graphOutputs = new Set(g.outputs.map((o) => o.name));
    const weights = recorded.get(ctx);
    const reject = (n: Node, reason: string) => ctx.rejected.push({ pass: PASS, kind: 'int8', nodes: [n.name], reason });
    /** The name behind Casts (the fp16 pass casts activations; calibration names the original tensors). */
    const behindCasts = (x: string): string => {
      for (let p = prod.get(x); p && p.op === 'Cast' && p.domain === ''; p = prod.get(x)) x = p.inputs[0];
      return x;
    };
    const scaleOf = (x: string): number | undefined => scales[x] ?? scales[behindCasts(x)];

    const cands: Candidate[] = [];
    for (const n of g.nodes) {
      const conv = (n.op === 'Conv' && n.domain === '') || (n.op === 'FusedConv' && n.domain === 'tsrt');
      const gemm = (['Gemm', 'MatMul'].includes(n.op) && n.domain === '') || (n.op === 'FusedGemm' && n.domain === 'tsrt');
      if (!conv && !gemm) continue;
      // --layer-precisions / the accuracy budget: a layer held at fp32 or fp16 is not quantized
      const held = forcedPrecision(ctx.precision, ctx.fusions, n.name);
      if (held && held !== 'int8') { reject(n, `precision rule keeps it ${held}`); continue; }
      const c = candidate(g, n, conv ? 'conv' : 'gemm', { prod, readers, weights, scaleOf, behindCasts });
      if (typeof c === 'string') reject(n, c); else cands.push(c);
    }
    if (!cands.length && !hasQ) return g;
    // A layer's output stays int8 when every reader is an int8 layer reading it as input or residual.
    const int8Out = (c: Candidate): number | undefined => {
      const y = c.node.outputs[0];
      if (c.outQ) return c.outQ.scale;
      const s = scaleOf(y);
      const rs = readers.get(y) ?? [];
      if (s === undefined || graphOutputs.has(y) || !rs.length) return undefined;
      const ok = rs.every((r) => { const rc = cands.find((k) => k.node === r); return rc && !rc.xInt8 && (rc.x === y || rc.z === y); });
      return ok ? s : undefined;
    };
    // MaxPool between int8 layers (ResNet's stem) runs on int8: rounding and saturation are monotone, so the max
    // of quantized values is the quantized max. The layer before it then requantizes to the pool output's scale,
    // which replaces an fp16 write, an fp16 pool and a QuantizeLinear with an int8 write and an int8 pool.
    const int8Pool = new Map<string, { pool: Node; scale: number }>();
    for (const c of cands) {
      const y = c.node.outputs[0];
      const rs = readers.get(y) ?? [];
      if (c.outQ || rs.length !== 1 || graphOutputs.has(y)) continue;
      const pool = rs[0];
      if (pool.op !== 'MaxPool' || pool.domain !== '' || pool.outputs.length !== 1 || pool.inputs[0] !== y) continue;
      const p = pool.outputs[0], s = scaleOf(p), prs = readers.get(p) ?? [];
      if (s === undefined || graphOutputs.has(p) || !prs.length) continue;
      const ok = prs.every((r) => { const rc = cands.find((k) => k.node === r); return rc && !rc.xInt8 && (rc.x === p || rc.z === p); });
      if (ok) int8Pool.set(y, { pool, scale: s });
    }
    const outScale = new Map(cands.map((c) => [c, int8Pool.get(c.node.outputs[0])?.scale ?? int8Out(c)]));
    /** Values that are int8 after this pass (int8 layer outputs and int8 pools), with their scales. */
    const int8Values = new Map<string, number>();
    for (const c of cands) {
      const s = outScale.get(c);
      if (s === undefined) continue;
      int8Values.set(c.outQ ? c.outQ.node.outputs[0] : c.node.outputs[0], s);
      const ip = int8Pool.get(c.node.outputs[0]);
      if (ip) {
        int8Values.set(ip.pool.outputs[0], s);
        ctx.fusions.push({ pass: PASS, kind: 'int8 MaxPool', into: ip.pool.name, nodes: [ip.pool.name] });
      }
    }

    const fresh = nameGenerator(g);
    const inits = new Map(g.initializers);
    const replaced = new Map<Node, Node[]>();
    const removed = new Set<Node>();
    const quantized = new Map<string, string>();
    /** An fp32 -> fp16 Cast in front of a quantization (the fp16 pass casts graph inputs) is skipped: quantizing
     * the fp32 value rounds once instead of twice and saves the fp16 tensor's write and read. */
    const widest = (x: string): string => {
      const p = prod.get(x);
      if (!p || p.op !== 'Cast' || p.domain !== '' || attrInt(p, 'to', 0) !== DTYPE_ONNX.float16) return x;
      const src = p.inputs[0];
      const from = g.valueTypes.get(src)?.dtype ?? g.inputs.find((i) => i.name === src)?.type.dtype;
      return from === 'float32' ? src : x;
    };
    const quantizeOnce = (x0: string, s: number, before: Node[]): string => {
      const x = widest(x0);
      const key = `${x}@${s}`;
      if (quantized.has(key)) return quantized.get(key)!;
      const sName = fresh(`${x}_scale`), zName = fresh(`${x}_zp`), out = fresh(`${x}_i8`);
      inits.set(sName, fromF64('float32', [], [s]));
      inits.set(zName, makeTensor('int8', [], Int8Array.of(0)));
      before.push({ name: fresh(`quantize_${x}`), op: 'QuantizeLinear', domain: '', inputs: [x, sName, zName], outputs: [out], attrs: {} });
      quantized.set(key, out);
      return out;
    };
    for (const c of cands) {
      const pre: Node[] = [];
      const x = c.xInt8 ?? (int8Values.has(c.x) ? c.x : quantizeOnce(c.x, c.xScale, pre));
      const xScale = c.xInt8 ? c.xScale : int8Values.get(c.x) ?? c.xScale;
      const attrs: Record<string, Attr> = { ...c.attrs, x_scale: fl(xScale) };
      const ys = outScale.get(c);
      if (ys !== undefined) attrs.y_scale = fl(ys);
      else attrs.out_dtype = { kind: 'int', value: DTYPE_ONNX[g.valueTypes.get(c.node.outputs[0])?.dtype ?? 'float32'] };
      const z = c.z ?? '';
      if (z && int8Values.has(z)) attrs.z_scale = fl(int8Values.get(z)!);
      const wName = fresh(`${c.node.name}_w_i8`), sName = fresh(`${c.node.name}_w_scale`);
      inits.set(wName, c.w);
      inits.set(sName, fromF64('float32', [c.wScales.length], c.wScales));
      let bName = '';
      if (c.bias) { bName = fresh(`${c.node.name}_bias_f32`); inits.set(bName, fromF64('float32', [size(c.bias.dims)], toF64(c.bias))); }
      const out = c.outQ ? c.outQ.node.outputs[0] : c.node.outputs[0];
      if (c.outQ) { removed.add(c.outQ.node); if (c.outQ.via) removed.add(c.outQ.via); }
      const q: Node = {
        name: c.node.name, op: c.kind === 'conv' ? 'QConv' : 'QGemm', domain: 'tsrt',
        inputs: [x, wName, sName, bName, z], outputs: [out], attrs,
      };
      while (q.inputs.length && !q.inputs[q.inputs.length - 1]) q.inputs.pop();
      replaced.set(c.node, [...pre, q]);
      ctx.fusions.push({
        pass: PASS, kind: `int8 ${c.kind}${ys !== undefined ? ' (int8 out)' : ''}${c.xInt8 ? ' [explicit]' : ''}`,
        into: q.name, nodes: [c.node.name, ...(c.outQ ? [c.outQ.node.name] : [])],
      });
    }
    const nodes: Node[] = [];
    for (const n of g.nodes) {
      if (removed.has(n)) continue;
      nodes.push(...(replaced.get(n) ?? [n]));
    }
    ctx.log(`${PASS}: ${cands.length} layers int8, ${[...outScale.values()].filter((v) => v !== undefined).length} with int8 outputs`);
    return { ...g, nodes, initializers: inits, valueTypes: new Map() };
  },
};

interface Lookup {
  prod: Map<string, Node>;
  readers: Map<string, Node[]>;
  weights?: Map<string, QWeights>;
  scaleOf: (x: string) => number | undefined;
  behindCasts: (x: string) => string;
}

const EPILOGUE = ['activation', 'activation_params', 'residual_before_act', 'layout'];

/** Decides whether a layer can run int8 and gathers its operands; returns the reason when it cannot. */
function candidate(g: Graph, n: Node, kind: 'conv' | 'gemm', l: Lookup): Candidate | string {
  const [xn, wn, bn, zn] = n.inputs;
  const wc = g.initializers.get(wn);
  if (!wc) return 'weights are not constant';
  // activation: explicit DequantizeLinear(int8) behind Casts, else a calibration scale
  let xScale: number | undefined, xInt8: string | undefined;
  const dq = l.prod.get(l.behindCasts(xn));
  if (dq && dq.op === 'DequantizeLinear' && dq.domain === '') {
    const p = symmetricParams(g, dq, g.valueTypes.get(dq.inputs[0])?.dtype ?? g.initializers.get(dq.inputs[0])?.dtype);
    if (typeof p === 'string') return `input ${p}: kept on the dequantized float path`;
    if (p.scales.length !== 1) return 'per-channel activation scale';
    xScale = p.scales[0];
    xInt8 = dq.inputs[0];
  } else {
    xScale = l.scaleOf(xn);
    if (xScale === undefined) return `no int8 scale for input '${l.behindCasts(xn)}'`;
  }
  // graph inputs have no valueTypes entry (a conv reading the model input directly, without an fp16 Cast)
  const xt = g.valueTypes.get(xn) ?? g.inputs.find((i) => i.name === xn)?.type;
  let w: { q: Int8Array; scales: Float64Array };
  let attrs: Record<string, Attr>;
  let bias: Tensor | undefined = bn ? g.initializers.get(bn) : undefined;
  if (bn && !bias) return 'bias is not constant';
  if (kind === 'conv') {
    if (wc.dims.length !== 4 || xt?.shape.length !== 4) return 'only 2-D convolutions run int8';
    if (attrInt(n, 'group', 1) !== 1) return 'grouped convolution (int8 kernels need group 1)';
    const rec = recordedWeights(l.weights, wn, wc.dims[0], 0);
    w = rec ?? quantizeWeights(toF64(wc), wc.dims[0]);
    attrs = { ...withoutAttrs(n, []).attrs };
    for (const k of Object.keys(attrs)) if (!EPILOGUE.includes(k) && !['strides', 'pads', 'dilations', 'group', 'kernel_shape', 'auto_pad'].includes(k)) delete attrs[k];
  } else {
    if (wc.dims.length !== 2) return 'weights are not a matrix';
    if (attrInt(n, 'transA', 0)) return 'transA';
    const transB = n.op !== 'MatMul' && attrInt(n, 'transB', 0) === 1;
    const [K, N] = transB ? [wc.dims[1], wc.dims[0]] : wc.dims;
    if (K % 16) return `K=${K} is not a multiple of 16`;
    if ((xt?.shape.length ?? 0) < 2 || xt?.shape[xt.shape.length - 1] !== K) return 'A is not [.., K]';
    const alpha = n.op === 'MatMul' ? 1 : attrFloat(n, 'alpha', 1), beta = n.op === 'MatMul' ? 1 : attrFloat(n, 'beta', 1);
    if (alpha !== 1) return 'alpha != 1';
    if (bias && (size(bias.dims) !== N || beta !== 1)) return 'C is not a bias vector';
    const wv = toF64(wc), wnk = new Float64Array(N * K);
    for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) wnk[j * K + k] = transB ? wv[j * K + k] : wv[k * N + j];
    // recorded weights are [K, N] with per-column (axis 1) scales for MatMul/Gemm exports
    const rec = recordedWeights(l.weights, wn, N, transB ? 0 : 1);
    if (rec && !transB) {
      const t = new Int8Array(N * K);
      for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) t[j * K + k] = rec.q[k * N + j];
      rec.q = t;
    }
    w = rec ?? quantizeWeights(wnk, N);
    attrs = Object.fromEntries(Object.entries(n.attrs).filter(([k]) => EPILOGUE.includes(k)));
  }
  if (zn && !g.valueTypes.get(zn)) return 'residual without a type';
  if (bias && bias.dtype !== 'float32') bias = fromF64('float32', bias.dims, toF64(bias));
  // explicit: one QuantizeLinear (symmetric int8, per tensor) reading the output, behind Casts
  let outQ: Candidate['outQ'];
  const y = n.outputs[0];
  let rs = l.readers.get(y) ?? [];
  let via: Node | undefined;
  if (rs.length === 1 && rs[0].op === 'Cast' && rs[0].domain === '') { via = rs[0]; rs = l.readers.get(via.outputs[0]) ?? []; }
  if (xInt8 && rs.length === 1 && rs[0].op === 'QuantizeLinear' && rs[0].domain === '') {
    const p = symmetricParams(g, rs[0], g.valueTypes.get(rs[0].outputs[0])?.dtype);
    if (typeof p !== 'string' && p.scales.length === 1) outQ = { node: rs[0], via, scale: p.scales[0] };
  }
  const wDims = kind === 'conv' ? wc.dims : [w.scales.length, w.q.length / w.scales.length];
  return {
    node: n, kind, x: xn, xScale, xInt8, w: makeTensor('int8', wDims, w.q), wScales: w.scales, bias, z: zn || undefined, outQ, attrs,
  };
}

/** The recorded int8 weights behind weight value `wn` (the fp16 pass renames converted constants
 * `<name>_float16_<k>`), when quantized per output channel along `axis` (or per tensor). */
function recordedWeights(m: Map<string, QWeights> | undefined, wn: string, channels: number, axis: number): { q: Int8Array; scales: Float64Array } | undefined {
  const r = m?.get(wn) ?? m?.get(wn.replace(/_b?float16_\d+$/, ''));
  if (!r || r.q.dtype !== 'int8') return undefined;
  if (r.scales.length === 1) return { q: Int8Array.from(r.q.data as Int8Array), scales: new Float64Array(channels).fill(r.scales[0]) };
  const ax = r.axis < 0 ? r.axis + r.q.dims.length : r.axis;
  if (ax !== axis || r.scales.length !== channels) return undefined;
  return { q: Int8Array.from(r.q.data as Int8Array), scales: Float64Array.from(r.scales) };
}
