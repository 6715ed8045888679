// Normalizations and softmax: BatchNormalization (inference), InstanceNormalization, LayerNormalization, LRN,
// MeanVarianceNormalization, Softmax, LogSoftmax and Hardmax.
// Precision: all are 'follow' (fp16 storage is fine) on the condition that kernels accumulate sums, means and
// variances in fp32 and subtract the max before exp; the CPU reference accumulates in float64 and rounds once.
// Legacy forms are rewritten at import: BatchNormalization's is_test/spatial/consumed_inputs (opset < 9), and
// opset < 13 Softmax/LogSoftmax/Hardmax, which flatten to 2-D at `axis`, into the opset-13 `axis` form.
import { GraphError } from '../errors.js';
import type { DType, Dim, Node, Tensor, TensorType } from '../ir/types.js';
import { fromF64, isFloat, makeTensor, size, toF64 } from '../ir/tensor.js';
import { attrFloat, attrInt, attrInts, withoutAttrs } from './attrs.js';
import { register, type OpDef, type UpgradeCtx } from './registry.js';
import { broadcastShapes, broadcastTo, need, normAxis } from './util.js';

function checkFloat(node: Node, t: { dtype: DType }, what = 'input X'): void {
  if (!isFloat(t.dtype)) {
    throw new GraphError(`${what} is ${t.dtype}; ${node.op} takes float types`, node.name, 'cast the input to a float type');
  }
}

/** Rounds float64 results to the output dtype; float64 results are returned as they are. */
function out(dtype: DType, dims: number[], v: Float64Array): Tensor {
  return dtype === 'float64' ? makeTensor(dtype, dims, v) : fromF64(dtype, dims, v);
}

/** Per-channel parameter of BatchNormalization/InstanceNormalization: C values. */
function channelParam(node: Node, t: Tensor, c: number, what: string): Float64Array {
  if (size(t.dims) !== c) {
    throw new GraphError(`${what} has shape [${t.dims}], expected [${c}] (one value per channel)`, node.name);
  }
  return toF64(t);
}

// ---------------------------------------------------------------------------------------------------------
// BatchNormalization (inference form)

/** Nodes that compute y = (x - mean) / sqrt(var + eps) * scale + b with broadcasting ops (spatial = 0). */
function expandPerActivationBN(node: Node, ctx: UpgradeCtx, eps: number): Node[] {
  const [x, scale, b, mean, v] = node.inputs;
  const dtype = ctx.typeOf?.(v)?.dtype ?? ctx.typeOf?.(x)?.dtype ?? 'float32';
  const epsName = ctx.addConst(`${node.name}_eps`, fromF64(dtype, [], [eps]));
  const t = (h: string) => ctx.freshName(`${node.name}_${h}`);
  const [centered, veps, std, normed, scaled] = [t('centered'), t('var_eps'), t('std'), t('normed'), t('scaled')];
  const mk = (suffix: string, op: string, inputs: string[], output: string): Node =>
    ({ name: `${node.name}/${suffix}`, op, domain: '', inputs, outputs: [output], attrs: {} });
  return [
    mk('sub', 'Sub', [x, mean], centered),
    mk('add_eps', 'Add', [v, epsName], veps),
    mk('sqrt', 'Sqrt', [veps], std),
    mk('div', 'Div', [centered, std], normed),
    mk('mul', 'Mul', [normed, scale], scaled),
    mk('add', 'Add', [scaled, b], node.outputs[0]),
  ];
}

function upgradeBN(node: Node, ctx: UpgradeCtx): Node[] {
  if (ctx.opset >= 14) return [node];
  // Before opset 14 the mode is implied: an explicit is_test = 0 (opset < 7) or any statistics output means
  // training. A missing is_test (spec default 0) with only Y runs as inference, as in ONNX Runtime.
  const training = attrInt(node, 'is_test') === 0 || node.outputs.slice(1).some((o) => o);
  const spatial = attrInt(node, 'spatial', 1);
  let n = withoutAttrs(node, ['is_test', 'spatial', 'consumed_inputs']);
  if (training) {
    n = { ...n, attrs: { ...n.attrs, training_mode: { kind: 'int', value: 1 } } };
    return [n];
  }
  n = { ...n, outputs: n.outputs.slice(0, 1) };
  if (ctx.opset < 9 && spatial === 0) return expandPerActivationBN(n, ctx, attrFloat(node, 'epsilon', 1e-5));
  return [n];
}

function supportsBN(node: Node): string | undefined {
  if (attrInt(node, 'training_mode', 0) !== 0) {
    return 'training-mode BatchNormalization (batch statistics, running-mean outputs) is not supported; export the model in eval mode';
  }
  if (node.outputs.slice(1).some((o) => o)) {
    return 'BatchNormalization running_mean/running_var outputs exist only in training mode; export the model in eval mode';
  }
  return undefined;
}

function inferBN(node: Node, ins: (TensorType | undefined)[]): TensorType[] {
  const x = need(node, ins, 0);
  checkFloat(node, x);
  if (x.shape.length < 2) throw new GraphError(`input X has rank ${x.shape.length}; BatchNormalization needs [N, C, ...]`, node.name);
  for (let i = 1; i <= 4; i++) {
    const p = need(node, ins, i);
    const c = x.shape[1];
    if (p.shape.length !== 1 || (typeof p.shape[0] === 'number' && typeof c === 'number' && p.shape[0] !== c)) {
      throw new GraphError(`input ${i} has shape [${p.shape}], expected [${c}] (one value per channel)`, node.name,
        'per-activation (spatial = 0) statistics are only valid before opset 9');
    }
  }
  return [{ dtype: x.dtype, shape: [...x.shape] }];
}

function cpuBN(node: Node, ins: (Tensor | undefined)[]): Tensor[] {
  const x = need(node, ins, 0);
  const [n, c] = x.dims;
  const [scale, b, mean, v] = [1, 2, 3, 4].map((i) => channelParam(node, need(node, ins, i), c, `input ${i}`));
  const eps = attrFloat(node, 'epsilon', 1e-5);
  const plane = size(x.dims.slice(2));
  // float32 stays in float32 arrays (CNN activations are large); other dtypes go through float64.
  const f32 = x.dtype === 'float32';
  const xv = f32 ? (x.data as Float32Array) : toF64(x);
  const y = f32 ? new Float32Array(xv.length) : new Float64Array(xv.length);
  for (let ch = 0; ch < c; ch++) {
    // Fold into y = x * a + k: the form every backend uses after constant folding.
    const a = scale[ch] / Math.sqrt(v[ch] + eps);
    const k = b[ch] - mean[ch] * a;
    for (let i = 0; i < n; i++) {
      const o = (i * c + ch) * plane;
      for (let j = 0; j < plane; j++) y[o + j] = xv[o + j] * a + k;
    }
  }
  return [y instanceof Float32Array ? makeTensor('float32', x.dims, y) : out(x.dtype, x.dims, y)];
}

// ---------------------------------------------------------------------------------------------------------
// InstanceNormalization

function cpuInstanceNorm(node: Node, ins: (Tensor | undefined)[]): Tensor[] {
  const x = need(node, ins, 0);
  if (x.dims.length < 3) throw new GraphError(`input has rank ${x.dims.length}; InstanceNormalization needs [N, C, D1, ...]`, node.name);
  const [n, c] = x.dims;
  const scale = channelParam(node, need(node, ins, 1), c, 'scale');
  const b = channelParam(node, need(node, ins, 2), c, 'B');
  const eps = attrFloat(node, 'epsilon', 1e-5);
  const plane = size(x.dims.slice(2));
  const xv = toF64(x);
  const y = new Float64Array(xv.length);
  for (let p = 0; p < n * c; p++) {
    const o = p * plane, ch = p % c;
    const [mean, inv] = meanInvStd(xv, o, plane, eps);
    const a = scale[ch] * inv;
    for (let j = 0; j < plane; j++) y[o + j] = (xv[o + j] - mean) * a + b[ch];
  }
  return [out(x.dtype, x.dims, y)];
}

/** Mean and 1/sqrt(var + eps) of v[o, o + len), two-pass for accuracy. */
function meanInvStd(v: Float64Array, o: number, len: number, eps: number): [number, number] {
  let s = 0;
  for (let j = 0; j < len; j++) s += v[o + j];
  const mean = s / len;
  let q = 0;
  for (let j = 0; j < len; j++) { const d = v[o + j] - mean; q += d * d; }
  return [mean, 1 / Math.sqrt(q / len + eps)];
}

// ---------------------------------------------------------------------------------------------------------
// LayerNormalization

const STASH_TYPES: Record<number, DType> = { 1: 'float32', 10: 'float16', 11: 'float64', 16: 'bfloat16' };

function stashType(node: Node): DType {
  const s = attrInt(node, 'stash_type', 1);
  const t = STASH_TYPES[s];
  if (!t) throw new GraphError(`stash_type ${s} is not a float type`, node.name, 'use 1 (float32)');
  return t;
}

function inferLayerNorm(node: Node, ins: (TensorType | undefined)[]): TensorType[] {
  const x = need(node, ins, 0);
  checkFloat(node, x);
  const r = x.shape.length;
  const axis = normAxis(attrInt(node, 'axis', -1), r, node);
  const norm = x.shape.slice(axis);
  for (const i of [1, 2]) {
    const p = ins[i];
    if (p) broadcastShapes([norm, p.shape], node);
  }
  const stat: Dim[] = [...x.shape.slice(0, axis), ...norm.map(() => 1)];
  const u = stashType(node);
  return [{ dtype: x.dtype, shape: [...x.shape] }, { dtype: u, shape: stat }, { dtype: u, shape: [...stat] }];
}

function cpuLayerNorm(node: Node, ins: (Tensor | undefined)[]): Tensor[] {
  const x = need(node, ins, 0), scale = need(node, ins, 1), bias = ins[2];
  const [, ts, ti] = inferLayerNorm(node, ins.map((t) => t && { dtype: t.dtype, shape: t.dims }));
  const axis = normAxis(attrInt(node, 'axis', -1), x.dims.length, node);
  const eps = attrFloat(node, 'epsilon', 1e-5);
  const cols = size(x.dims.slice(axis)), rows = size(x.dims.slice(0, axis));
  // Scale and B broadcast against X (numpy rules), as in the spec's function body.
  const sv = broadcastTo(scale, x.dims), bv = bias ? broadcastTo(bias, x.dims) : undefined;
  const xv = toF64(x);
  const y = new Float64Array(xv.length);
  const means = new Float64Array(rows), invs = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    const [mean, inv] = meanInvStd(xv, o, cols, eps);
    means[r] = mean;
    invs[r] = inv;
    for (let j = 0; j < cols; j++) y[o + j] = (xv[o + j] - mean) * inv * sv[o + j] + (bv ? bv[o + j] : 0);
  }
  return [out(x.dtype, x.dims, y), out(ts.dtype, ts.shape as number[], means), out(ti.dtype, ti.shape as number[], invs)];
}

// ---------------------------------------------------------------------------------------------------------
// LRN

function cpuLRN(node: Node, ins: (Tensor | undefined)[]): Tensor[] {
  const x = need(node, ins, 0);
  if (x.dims.length < 3) throw new GraphError(`input has rank ${x.dims.length}; LRN needs [N, C, D1, ...]`, node.name);
  const sz = attrInt(node, 'size');
  if (sz === undefined || sz < 1) throw new GraphError('LRN needs a positive size attribute', node.name, 'set size (the channel window)');
  const alpha = attrFloat(node, 'alpha', 1e-4), beta = attrFloat(node, 'beta', 0.75), bias = attrFloat(node, 'bias', 1);
  const [n, c] = x.dims;
  const plane = size(x.dims.slice(2));
  const before = Math.floor((sz - 1) / 2), after = Math.ceil((sz - 1) / 2);
  const xv = toF64(x);
  const y = new Float64Array(xv.length);
  const sum = new Float64Array(plane);
  for (let i = 0; i < n; i++) {
    const base = i * c * plane;
    for (let ch = 0; ch < c; ch++) {
      sum.fill(0);
      const lo = Math.max(0, ch - before), hi = Math.min(c - 1, ch + after);
      for (let k = lo; k <= hi; k++) {
        const o = base + k * plane;
        for (let j = 0; j < plane; j++) sum[j] += xv[o + j] * xv[o + j];
      }
      const o = base + ch * plane;
      for (let j = 0; j < plane; j++) y[o + j] = xv[o + j] / (bias + (alpha / sz) * sum[j]) ** beta;
    }
  }
  return [out(x.dtype, x.dims, y)];
}

// ---------------------------------------------------------------------------------------------------------
// MeanVarianceNormalization: (x - mean) / (sqrt(var) + 1e-9) over `axes`, as in its function body.

function cpuMVN(node: Node, ins: (Tensor | undefined)[]): Tensor[] {
  const x = need(node, ins, 0);
  const r = x.dims.length;
  const axes = [...new Set(attrInts(node, 'axes', [0, 2, 3]).map((a) => normAxis(a, r, node)))];
  // Group index of every element: its position with the reduced axes dropped.
  const keep = x.dims.map((d, i) => (axes.includes(i) ? 1 : d));
  const groups = size(keep);
  const n = size(x.dims);
  const gid = new Int32Array(n);
  const ctr = new Array<number>(r).fill(0);
  for (let k = 0; k < n; k++) {
    let g = 0;
    for (let d = 0; d < r; d++) g = g * keep[d] + (keep[d] === 1 ? 0 : ctr[d]);
    gid[k] = g;
    for (let d = r - 1; d >= 0; d--) { if (++ctr[d] < x.dims[d]) break; ctr[d] = 0; }
  }
  const xv = toF64(x);
  const cnt = n / Math.max(groups, 1);
  const mean = new Float64Array(groups), sq = new Float64Array(groups);
  for (let k = 0; k < n; k++) mean[gid[k]] += xv[k];
  for (let g = 0; g < groups; g++) mean[g] /= cnt;
  for (let k = 0; k < n; k++) { const d = xv[k] - mean[gid[k]]; sq[gid[k]] += d * d; }
  const y = new Float64Array(n);
  for (let k = 0; k < n; k++) y[k] = (xv[k] - mean[gid[k]]) / (Math.sqrt(sq[gid[k]] / cnt) + 1e-9);
  return [out(x.dtype, x.dims, y)];
}

// ---------------------------------------------------------------------------------------------------------
// Softmax, LogSoftmax, Hardmax

type SoftKind = 'softmax' | 'logsoftmax' | 'hardmax';

/**
 * Before opset 13 these ops flatten the input to 2-D at `axis` (default 1) and normalize each row. Where the
 * declared rank shows `axis` is the last axis, that equals the opset-13 form with axis = -1; otherwise the node
 * becomes Flatten -> op(axis = -1) -> Reshape(Shape(x)), whose middle node means the same under both versions.
 */
function upgradeSoftmax(node: Node, ctx: UpgradeCtx): Node[] {
  if (ctx.opset >= 13) return [node];
  const axis = attrInt(node, 'axis', 1);
  const last: Node = { ...node, attrs: { ...node.attrs, axis: { kind: 'int', value: -1 } } };
  if (axis === -1) return [last];
  const rank = ctx.typeOf?.(node.inputs[0])?.shape.length;
  if (rank !== undefined && rank > 0 && (axis < 0 ? axis + rank : axis) === rank - 1) return [last];
  const x = node.inputs[0];
  const flat = ctx.freshName(`${node.name}_2d`), soft = ctx.freshName(`${node.name}_2d_out`), shape = ctx.freshName(`${node.name}_shape`);
  return [
    { name: `${node.name}/shape`, op: 'Shape', domain: '', inputs: [x], outputs: [shape], attrs: {} },
    { name: `${node.name}/flatten`, op: 'Flatten', domain: '', inputs: [x], outputs: [flat], attrs: { axis: { kind: 'int', value: axis } } },
    { ...last, inputs: [flat], outputs: [soft] },
    { name: `${node.name}/reshape`, op: 'Reshape', domain: '', inputs: [soft, shape], outputs: [node.outputs[0]], attrs: {} },
  ];
}

function inferSoft(node: Node, ins: (TensorType | undefined)[]): TensorType[] {
  const x = need(node, ins, 0);
  checkFloat(node, x);
  normAxis(attrInt(node, 'axis', -1), x.shape.length, node);
  return [{ dtype: x.dtype, shape: [...x.shape] }];
}

function cpuSoft(kind: SoftKind) {
  return (node: Node, ins: (Tensor | undefined)[]): Tensor[] => {
    const x = need(node, ins, 0);
    const r = x.dims.length;
    const axis = normAxis(attrInt(node, 'axis', -1), r, node);
    const len = r ? x.dims[axis] : 1;
    const inner = size(x.dims.slice(axis + 1)), outer = size(x.dims.slice(0, axis));
    const xv = toF64(x);
    const y = new Float64Array(xv.length);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        const b = o * len * inner + i;
        let max = -Infinity, arg = 0;
        for (let k = 0; k < len; k++) { const v = xv[b + k * inner]; if (v > max) { max = v; arg = k; } }
        if (kind === 'hardmax') { if (len) y[b + arg * inner] = 1; continue; }
        let sum = 0;
        for (let k = 0; k < len; k++) { const e = Math.exp(xv[b + k * inner] - max); y[b + k * inner] = e; sum += e; }
        if (kind === 'softmax') { const inv = 1 / sum; for (let k = 0; k < len; k++) y[b + k * inner] *= inv; }
        else { const ls = Math.log(sum); for (let k = 0; k < len; k++) y[b + k * inner] = xv[b + k * inner] - max - ls; }
      }
    }
    return [out(x.dtype, x.dims, y)];
  };
}

function sameAsInput(node: Node, ins: (TensorType | undefined)[]): TensorType[] {
  const x = need(node, ins, 0);
  checkFloat(node, x);
  return [{ dtype: x.dtype, shape: [...x.shape] }];
}

const defs: OpDef[] = [
  // Inference BN is a per-channel affine map (usually folded into the preceding Conv).
  { op: 'BatchNormalization', since: 6, precision: 'follow', upgrade: upgradeBN, supports: supportsBN, infer: inferBN, cpu: cpuBN },
  { op: 'InstanceNormalization', since: 6, precision: 'follow', infer: sameAsInput, cpu: cpuInstanceNorm },
  // stash_type fixes the statistics precision (fp32 by default); Y may be stored in fp16.
  { op: 'LayerNormalization', since: 17, precision: 'follow', infer: inferLayerNorm, cpu: cpuLayerNorm },
  { op: 'LRN', since: 1, precision: 'follow', infer: sameAsInput, cpu: cpuLRN },
  { op: 'MeanVarianceNormalization', since: 9, precision: 'follow', infer: sameAsInput, cpu: cpuMVN },
  // Softmax family: fp16 in/out is safe when the kernel subtracts the row max and sums in fp32.
  { op: 'Softmax', since: 13, precision: 'follow', upgrade: upgradeSoftmax, infer: inferSoft, cpu: cpuSoft('softmax') },
  { op: 'LogSoftmax', since: 13, precision: 'follow', upgrade: upgradeSoftmax, infer: inferSoft, cpu: cpuSoft('logsoftmax') },
  { op: 'Hardmax', since: 13, precision: 'follow', upgrade: upgradeSoftmax, infer: inferSoft, cpu: cpuSoft('hardmax') },
];

register(...defs);
