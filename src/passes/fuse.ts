// Fusion passes: BatchNorm folding into the producing Conv/Gemm/MatMul, Conv and Gemm epilogues (bias, residual,
// activation) into tsrt::FusedConv / tsrt::FusedGemm, vertical elementwise groups into tsrt::Fused, common
// subexpression elimination and Transpose/Reshape chain folding. Every fusion lands in ctx.fusions, every candidate
// left alone in ctx.rejected with the reason, so the fusion report explains each kernel boundary.
import { fromF64, isInt, size, toF64 } from '../ir/tensor.js';
import type { Attr, Graph, Node, Tensor, ValueInfo } from '../ir/types.js';
import { attrFloat, attrInt, attrInts } from '../ops/attrs.js';
import { eliminateDeadCode } from './basic.js';
import type { Pass, PassContext } from './pass.js';
import {
  GraphEdit, GraphView, UNFUSABLE_ACTIVATIONS, scopedPass, alongAxis, broadcastsInto, matchActivation, recognizePatterns,
  recordFusion, recordRejection, renameReads, sameShape, type ActMatch,
} from './patterns.js';

export { recognizePatterns } from './patterns.js';

const f64 = (t: Tensor) => toF64(t);

// ---- foldBatchNorm ---------------------------------------------------------------------------------------

const FOLD_BN = 'fold-batchnorm';

/** y = a[c] * z + b[c] per channel: what a run of BatchNormalization and constant per-channel Mul/Add/Sub/Div
 * computes from the value z it starts at. */
interface AffineChain {
  nodes: Node[];
  out: string;
  a: Float64Array;
  b: Float64Array;
  /** A BatchNormalization or a scale (Mul/Div) is in the chain; a chain of Adds alone is left to the epilogues. */
  scales: boolean;
  /** Why the chain stopped at a BatchNormalization it could not take. */
  blocked?: { node: Node; reason: string };
}

function bnParams(v: GraphView, bn: Node, K: number): { g: Float64Array; shift: Float64Array; stats: Tensor[] } | string {
  if (bn.outputs.slice(1).some((o) => o) || attrInt(bn, 'training_mode', 0)) return 'BatchNormalization is in training mode';
  const stats = [1, 2, 3, 4].map((i) => v.const(bn.inputs[i]));
  if (stats.some((s) => !s)) return 'BatchNormalization parameters are not constant';
  if (stats.some((s) => s!.dims.length !== 1 || s!.dims[0] !== K)) return `BatchNormalization parameters are not 1-D over ${K} channels`;
  const eps = attrFloat(bn, 'epsilon', 1e-5);
  const [sc, bb, mean, vr] = stats.map((s) => f64(s!));
  const g = sc.map((s, k) => s / Math.sqrt(vr[k] + eps));
  return { g, shift: bb.map((x, k) => x - mean[k] * g[k]), stats: stats as Tensor[] };
}

/** Extends y = a*z + b through the per-channel ops after `start` (channel axis `axis` of a rank-`rank` value with K
 * channels); BatchNormalization joins only when `axis` is its channel axis 1. */
function affineChain(v: GraphView, e: GraphEdit, start: string, axis: number, rank: number, K: number, b0?: Float64Array): AffineChain {
  const c: AffineChain = { nodes: [], out: start, a: new Float64Array(K).fill(1), b: b0 ? Float64Array.from(b0) : new Float64Array(K), scales: false };
  for (;;) {
    const n = v.sole(c.out);
    if (!n || n.domain !== '' || e.taken(n)) {
      const bn = v.usersOf(c.out).find((u) => u.op === 'BatchNormalization' && u.domain === '');
      if (!n && bn) c.blocked = { node: bn, reason: v.blocked(c.out)! };
      return c;
    }
    if (n.op === 'BatchNormalization' && n.inputs[0] === c.out) {
      const p = axis === 1 ? bnParams(v, n, K) : 'BatchNormalization channel axis 1 is not the producer\'s channel axis';
      if (typeof p === 'string') { c.blocked = { node: n, reason: p }; return c; }
      c.a = c.a.map((x, k) => x * p.g[k]);
      c.b = c.b.map((x, k) => x * p.g[k] + p.shift[k]);
    } else if (['Mul', 'Add', 'Sub', 'Div'].includes(n.op) && n.inputs.length === 2) {
      const first = n.inputs[0] === c.out;
      const other = first ? n.inputs[1] : n.inputs[0];
      const t = v.const(other);
      const vec = t && other !== c.out && t.dtype === v.type(c.out)?.dtype ? alongAxis(t, rank, axis, K) : undefined;
      if (!vec || ((n.op === 'Sub' || n.op === 'Div') && !first)) return c;
      if (n.op === 'Mul') { c.a = c.a.map((x, k) => x * vec[k]); c.b = c.b.map((x, k) => x * vec[k]); }
      else if (n.op === 'Div') { c.a = c.a.map((x, k) => x / vec[k]); c.b = c.b.map((x, k) => x / vec[k]); }
      else if (n.op === 'Add') c.b = c.b.map((x, k) => x + vec[k]);
      else c.b = c.b.map((x, k) => x - vec[k]);
    } else return c;
    if (n.op !== 'Add' && n.op !== 'Sub') c.scales = true;
    c.nodes.push(n);
    c.out = n.outputs[0];
  }
}

/** Folds BatchNormalization, and constant per-channel Mul/Add/Sub/Div next to it (Caffe2's Scale layers), into the
 * Conv/Gemm/MatMul with constant weights that produces the value: W' = W*a[k], B' = (B - mean)*a + beta with
 * a = scale/sqrt(var + eps), extended through the following per-channel ops. A BatchNormalization with another
 * producer stays, absorbing the per-channel Mul/Add after it. */
export const foldBatchNorm: Pass = scopedPass(FOLD_BN, 1, (g, ctx, scope) => {
  const v = new GraphView(g, scope);
  const e = new GraphEdit(v);
  const blockedBn = new Set<Node>();
  for (const p of v.order) {
    if (p.domain !== '' || e.taken(p)) continue;
    if (p.op === 'BatchNormalization') { foldIntoBatchNorm(v, e, ctx, p, blockedBn.has(p)); continue; }
    if (!['Conv', 'Gemm', 'MatMul'].includes(p.op)) continue;
    const y = p.outputs[0];
    const yt = v.type(y);
    const W = v.const(p.inputs[1]);
    if (!yt || !W) {
      const bn = v.usersOf(y).find((u) => u.op === 'BatchNormalization');
      if (bn) { recordRejection(ctx, FOLD_BN, `${p.op}+BatchNormalization`, [p, bn], W ? 'output type is unknown' : 'weights are not constant'); blockedBn.add(bn); }
      continue;
    }
    const rank = yt.shape.length;
    const transB = p.op === 'Gemm' && attrInt(p, 'transB', 0) !== 0;
    const K = p.op === 'Conv' ? W.dims[0] : W.dims.length === 2 ? W.dims[transB ? 0 : 1] : -1;
    if (K < 0) continue;
    const B = p.op === 'Conv' && p.inputs[2] ? v.const(p.inputs[2]) : undefined;
    if (p.op === 'Conv' && p.inputs[2] && !B) continue;
    const c = affineChain(v, e, y, p.op === 'Conv' ? 1 : rank - 1, rank, K, B ? f64(B) : undefined);
    const kind = [p.op, ...c.nodes.map((n) => n.op)].join('+');
    if (c.blocked) {
      recordRejection(ctx, FOLD_BN, `${kind}+${c.blocked.node.op}`, [p, ...c.nodes, c.blocked.node], c.blocked.reason);
      blockedBn.add(c.blocked.node);
    }
    if (!c.scales) continue;
    const by = foldedProducer(v, e, ctx, p, W, c);
    if (!by) continue;
    e.replace([p, ...c.nodes], by);
    recordFusion(ctx, FOLD_BN, kind, by[0].name, [p, ...c.nodes]);
  }
  return e.finish();
});

/** The producer with the chain's per-channel affine folded into its weights (and a bias Add after a MatMul). */
function foldedProducer(v: GraphView, e: GraphEdit, ctx: PassContext, p: Node, W: Tensor, c: AffineChain): Node[] | undefined {
  const { a, b } = c;
  const K = a.length;
  const name = e.fresh(`${p.name}_bn`);
  const wName = (vals: Float64Array) => e.addConst(`${p.inputs[1]}_bn`, fromF64(W.dtype, W.dims, vals));
  if (p.op === 'Conv') {
    const per = size(W.dims) / K;
    // float32 weights scale in place in a float32 copy (each product rounds once, as through float64), at half the
    // memory traffic of a float64 round trip: this was most of a ResNet-50 build's pass time
    const w = W.dtype === 'float32' ? new Float32Array(W.data as Float32Array) : f64(W);
    for (let k = 0; k < K; k++) for (let i = k * per, end = i + per; i < end; i++) w[i] *= a[k];
    const wt = w instanceof Float32Array ? { dtype: W.dtype, dims: W.dims, data: w } as Tensor : fromF64(W.dtype, W.dims, w);
    return [{ ...p, name, outputs: [c.out], inputs: [p.inputs[0], e.addConst(`${p.inputs[1]}_bn`, wt), e.addConst(`${p.name}_bias_bn`, fromF64(W.dtype, [K], b))] }];
  }
  const w = f64(W);
  if (p.op === 'Gemm') {
    const transB = attrInt(p, 'transB', 0) !== 0;
    const C = p.inputs[2] ? v.const(p.inputs[2]) : undefined;
    if (p.inputs[2] && !C) { recordRejection(ctx, FOLD_BN, 'Gemm+BatchNormalization', [p, ...c.nodes], 'Gemm C is not constant'); return undefined; }
    const betaG = attrFloat(p, 'beta', 1);
    let c2: Tensor;
    if (!C || betaG === 0) c2 = fromF64(W.dtype, [K], b);
    else {
      // y = a*(alpha*A*B + beta*C) + b = alpha*A*(B*a) + beta*(C*a + b/beta); C spreads to [rows, K]
      const rows = C.dims.length === 2 ? C.dims[0] : 1;
      const cv = f64(C);
      const at = (i: number, n: number) => (C.dims.length === 2 ? cv[i * C.dims[1] + (C.dims[1] === 1 ? 0 : n)] : cv[C.dims.length === 1 && C.dims[0] !== 1 ? n : 0]);
      const vals = new Float64Array(rows * K);
      for (let i = 0; i < rows; i++) for (let n = 0; n < K; n++) vals[i * K + n] = at(i, n) * a[n] + b[n] / betaG;
      c2 = fromF64(C.dtype, C.dims.length === 2 ? [rows, K] : [K], vals);
    }
    return [{
      ...p, name, outputs: [c.out],
      attrs: { ...p.attrs, beta: { kind: 'float', value: C && betaG !== 0 ? betaG : 1 } },
      inputs: [p.inputs[0], wName(w.map((x, i) => x * a[transB ? Math.floor(i / W.dims[1]) : i % W.dims[1]])), e.addConst(`${p.name}_c_bn`, c2)],
    }];
  }
  const mm: Node = { ...p, name, inputs: [p.inputs[0], wName(w.map((x, i) => x * a[i % K]))] };
  if (b.every((x) => x === 0)) return [{ ...mm, outputs: [c.out] }];
  const mid = e.fresh(`${p.name}_bn_out`);
  const t = v.type(p.outputs[0]);
  if (t) e.types.set(mid, t);
  return [
    { ...mm, outputs: [mid] },
    { name: e.fresh(`${p.name}_bn_shift`), op: 'Add', domain: '', inputs: [mid, e.addConst(`${p.name}_shift_bn`, fromF64(W.dtype, [K], b))], outputs: [c.out], attrs: {} },
  ];
}

/** A BatchNormalization that no Conv/Gemm/MatMul takes: absorbs the per-channel ops after it (scale' = scale*a,
 * bias' = bias*a + b), or stays as it is with the reason in the report. */
function foldIntoBatchNorm(v: GraphView, e: GraphEdit, ctx: PassContext, bn: Node, reported: boolean): void {
  const p = v.prod(bn.inputs[0]);
  const reason = `input is produced by ${p ? p.op : 'no node (graph input)'}, not Conv/Gemm/MatMul with constant weights (BatchNormalization stays standalone)`;
  const xt = v.type(bn.inputs[0]);
  const K = v.const(bn.inputs[1])?.dims[0];
  const params = K !== undefined ? bnParams(v, bn, K) : 'BatchNormalization scale is not constant';
  if (!xt || K === undefined || typeof params === 'string') {
    if (!reported) recordRejection(ctx, FOLD_BN, 'BatchNormalization', [bn], typeof params === 'string' ? params : reason);
    return;
  }
  const c = affineChain(v, e, bn.outputs[0], 1, xt.shape.length, K);
  if (!c.nodes.length) { if (!reported) recordRejection(ctx, FOLD_BN, 'BatchNormalization', [bn], reason); return; }
  const [scale, beta] = params.stats;
  const sc = f64(scale), bb = f64(beta);
  const n: Node = {
    ...bn, name: e.fresh(`${bn.name}_affine`), outputs: [c.out],
    inputs: [bn.inputs[0], e.addConst(`${bn.inputs[1]}_affine`, fromF64(scale.dtype, [K], sc.map((s, k) => s * c.a[k]))),
      e.addConst(`${bn.inputs[2]}_affine`, fromF64(beta.dtype, [K], bb.map((x, k) => x * c.a[k] + c.b[k]))), bn.inputs[3], bn.inputs[4]],
  };
  e.replace([bn, ...c.nodes], [n]);
  recordFusion(ctx, FOLD_BN, ['BatchNormalization', ...c.nodes.map((x) => x.op)].join('+'), n.name, [bn, ...c.nodes]);
}

// ---- epilogue chains shared by Conv and Gemm -------------------------------------------------------------

interface Chain {
  /** Epilogue nodes absorbed, in order. */
  nodes: Node[];
  /** Value the fused node writes (the last absorbed node's output). */
  out: string;
  kinds: string[];
  Z?: string;
  act?: ActMatch;
  residualBeforeAct: boolean;
  /** Why the chain stopped although a fusable op followed. */
  blocked?: { reason: string; nodes: Node[] };
}

/** Single-op activations; a blocked chain is reported when one of these (or an Add) was next. */
const ACTIVATION_OPS = new Set(['Relu', 'Clip', 'LeakyRelu', 'Sigmoid', 'HardSigmoid', 'HardSwish', 'Tanh', 'Gelu']);

/** A two-input sum (Caffe2 exports write residuals as Sum). */
const isResidualOp = (n: Node) => n.domain === '' && (n.op === 'Add' || (n.op === 'Sum' && n.inputs.length === 2));

/** Residual Add and activation after `c.out`, in either order (act(y + Z) or act(y) + Z). */
function extendEpilogue(v: GraphView, e: GraphEdit, c: Chain): void {
  let wantResidual = true, wantAct = true;
  const residual = (): boolean => {
    const n = v.sole(c.out);
    if (!n || !isResidualOp(n) || e.taken(n)) return false;
    const other = n.inputs[0] === c.out ? n.inputs[1] : n.inputs[0];
    const ot = v.type(other), ct = v.type(c.out);
    if (other === c.out || !ot || !ct || ot.dtype !== ct.dtype || !sameShape(ot.shape, ct.shape)) return false;
    c.nodes.push(n); c.Z = other; c.out = n.outputs[0]; c.kinds.push(n.op);
    wantResidual = false;
    return true;
  };
  const activation = (): boolean => {
    const m = matchActivation(v, c.out);
    if (!m) return false;
    if ('reject' in m) { c.blocked = { reason: m.reject, nodes: v.usersOf(c.out) }; return false; }
    if (e.anyTaken(m.nodes)) return false;
    c.nodes.push(...m.nodes); c.act = m; c.out = m.output;
    c.kinds.push(m.nodes.length === 1 ? m.nodes[0].op : m.act);
    wantAct = false;
    return true;
  };
  if (residual()) activation();
  else if (activation() && residual()) c.residualBeforeAct = false;
  if (c.blocked || v.graphOutputs.has(c.out)) return;
  const users = v.usersOf(c.out);
  const wanted = users.filter((u) => (wantResidual && isResidualOp(u)) || (wantAct && (ACTIVATION_OPS.has(u.op) || UNFUSABLE_ACTIVATIONS.has(u.op))));
  if (users.length > 1 && wanted.length) c.blocked = { reason: `output '${c.out}' has ${users.length} consumers`, nodes: wanted };
}

function epilogueAttrs(c: Chain): Record<string, Attr> {
  const attrs: Record<string, Attr> = {};
  if (c.act) {
    attrs.activation = { kind: 'string', value: c.act.act };
    if (c.act.params.length) attrs.activation_params = { kind: 'floats', value: [...c.act.params] };
  }
  if (c.Z) attrs.residual_before_act = { kind: 'int', value: c.residualBeforeAct ? 1 : 0 };
  return attrs;
}

/** Users of `x` that an epilogue would have taken, for rejection records. */
function epilogueUsers(v: GraphView, x: string): Node[] {
  return v.usersOf(x).filter((u) => isResidualOp(u) || ACTIVATION_OPS.has(u.op));
}

/** Drops trailing omitted optional inputs. */
function trimInputs(xs: string[]): string[] {
  const out = [...xs];
  while (out.length && !out[out.length - 1]) out.pop();
  return out;
}

/** Rejections held until the pass ends: one whose next ops were all fused some other way (a skip connection's Add
 * taken as the residual of a later Conv) is no missed fusion and stays out of the report. */
class PendingRejections {
  private readonly items: { kind: string; nodes: Node[]; next: Node[]; reason: string }[] = [];
  constructor(private readonly pass: string) {}
  add(kind: string, nodes: Node[], next: Node[], reason: string): void { this.items.push({ kind, nodes, next, reason }); }
  flush(ctx: PassContext, e: GraphEdit): void {
    for (const r of this.items) if (!r.next.length || !r.next.every((n) => e.taken(n))) recordRejection(ctx, this.pass, r.kind, r.nodes, r.reason);
  }
}

function finishChain(pending: PendingRejections, head: Node, c: Chain): boolean {
  if (c.blocked) {
    pending.add([...c.kinds, ...c.blocked.nodes.map((n) => n.op)].join('+'), [head, ...c.nodes, ...c.blocked.nodes], c.blocked.nodes, c.blocked.reason);
  }
  return c.nodes.length > 0;
}

// ---- fuseConvEpilogue ----------------------------------------------------------------------------------

const FUSE_CONV = 'fuse-conv-epilogue';

/** Conv [-> Add(channel bias)] [-> Add(residual)] [-> activation] (or activation before the residual) => FusedConv. */
export const fuseConvEpilogue: Pass = scopedPass(FUSE_CONV, 2, (g, ctx, scope) => {
  const v = new GraphView(g, scope);
  const e = new GraphEdit(v);
  const pending = new PendingRejections(FUSE_CONV);
  for (const conv of v.order) {
    if (conv.op !== 'Conv' || conv.domain !== '' || e.taken(conv)) continue;
    const y = conv.outputs[0];
    const W = v.const(conv.inputs[1]);
    if (!W) {
      const next = epilogueUsers(v, y);
      if (next.length) pending.add(['Conv', ...next.map((n) => n.op)].join('+'), [conv, ...next], next, 'weights are not constant');
      continue;
    }
    const c: Chain = { nodes: [], out: y, kinds: ['Conv'], residualBeforeAct: true };
    const K = W.dims[0];
    let B = conv.inputs[2] ?? '';
    const yt = v.type(y);
    const n = v.sole(y);
    if (n && n.op === 'Add' && n.domain === '' && yt && (!B || v.const(B))) {
      const other = n.inputs[0] === y ? n.inputs[1] : n.inputs[0];
      const cst = v.const(other);
      const vec = cst && cst.dtype === yt.dtype ? alongAxis(cst, yt.shape.length, 1, K) : undefined;
      if (vec) {
        const b0 = B ? f64(v.const(B)!) : undefined;
        B = e.addConst(`${conv.name}_bias`, fromF64(yt.dtype, [K], b0 ? vec.map((x, i) => x + b0[i]) : vec));
        c.nodes.push(n); c.out = n.outputs[0]; c.kinds.push('Add');
      }
    }
    extendEpilogue(v, e, c);
    if (!finishChain(pending, conv, c)) continue;
    const name = e.fresh(`${conv.name}_fused`);
    const fused: Node = c.act || c.Z
      ? { name, op: 'FusedConv', domain: 'tsrt', inputs: trimInputs([conv.inputs[0], conv.inputs[1], B, c.Z ?? '']), outputs: [c.out],
        attrs: { ...conv.attrs, ...epilogueAttrs(c) } }
      : { ...conv, name, inputs: trimInputs([conv.inputs[0], conv.inputs[1], B]), outputs: [c.out] };
    e.replace([conv, ...c.nodes], [fused]);
    recordFusion(ctx, FUSE_CONV, c.kinds.join('+'), name, [conv, ...c.nodes]);
  }
  pending.flush(ctx, e);
  return e.finish();
});

// ---- fuseGemmEpilogue ----------------------------------------------------------------------------------

const FUSE_GEMM = 'fuse-gemm-epilogue';

/** MatMul(A, constant 2-D W) [-> Add(bias [N])] and Gemm, then [-> activation] [-> Add(residual)] (either order)
 * => FusedGemm. */
export const fuseGemmEpilogue: Pass = scopedPass(FUSE_GEMM, 2, (g, ctx, scope) => {
  const v = new GraphView(g, scope);
  const e = new GraphEdit(v);
  const pending = new PendingRejections(FUSE_GEMM);
  for (const mm of v.order) {
    if ((mm.op !== 'MatMul' && mm.op !== 'Gemm') || mm.domain !== '' || e.taken(mm)) continue;
    const y = mm.outputs[0];
    const yt = v.type(y);
    const W = v.const(mm.inputs[1]);
    const reject = (reason: string) => {
      const next = epilogueUsers(v, y);
      if (next.length) pending.add([mm.op, ...next.map((n) => n.op)].join('+'), [mm, ...next], next, reason);
    };
    if (mm.op === 'MatMul' && !W) { reject('weights are not constant'); continue; }
    if (mm.op === 'MatMul' && W!.dims.length !== 2) { reject(`weights are ${W!.dims.length}-D, not 2-D`); continue; }
    const c: Chain = { nodes: [], out: y, kinds: [mm.op], residualBeforeAct: true };
    let C = mm.op === 'Gemm' ? mm.inputs[2] ?? '' : '';
    const N = mm.op === 'MatMul' ? W!.dims[1] : yt?.shape[1];
    const n = v.sole(y);
    if (!C && n && n.op === 'Add' && n.domain === '' && yt && typeof N === 'number') {
      const other = n.inputs[0] === y ? n.inputs[1] : n.inputs[0];
      const cst = v.const(other);
      const vec = cst && cst.dtype === yt.dtype ? alongAxis(cst, yt.shape.length, yt.shape.length - 1, N) : undefined;
      if (vec) {
        C = e.addConst(`${mm.name}_bias`, fromF64(yt.dtype, [N], vec));
        c.nodes.push(n); c.out = n.outputs[0]; c.kinds.push('Add');
      }
    }
    extendEpilogue(v, e, c);
    if (!finishChain(pending, mm, c)) continue;
    const base: Record<string, Attr> = mm.op === 'Gemm' ? { ...mm.attrs } : {};
    if (mm.op === 'Gemm' && !mm.inputs[2] && C) base.beta = { kind: 'float', value: 1 };
    const fused: Node = {
      name: e.fresh(`${mm.name}_fused`), op: 'FusedGemm', domain: 'tsrt',
      inputs: trimInputs([mm.inputs[0], mm.inputs[1], C, c.Z ?? '']),
      outputs: [c.out], attrs: { ...base, ...epilogueAttrs(c) },
    };
    e.replace([mm, ...c.nodes], [fused]);
    recordFusion(ctx, FUSE_GEMM, c.kinds.join('+'), fused.name, [mm, ...c.nodes]);
  }
  pending.flush(ctx, e);
  return e.finish();
});

// ---- fuseElementwise -----------------------------------------------------------------------------------

const FUSE_EW = 'fuse-elementwise';

/** Ops that compute each output element from the same-index (broadcast) input elements only. */
export const ELEMENTWISE_OPS = new Set([
  'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Mod', 'Max', 'Min', 'Sum', 'Mean', 'PRelu',
  'Relu', 'LeakyRelu', 'Elu', 'Selu', 'Celu', 'Sigmoid', 'HardSigmoid', 'HardSwish', 'Tanh', 'Softplus', 'Softsign',
  'ThresholdedRelu', 'Mish', 'Gelu', 'Erf', 'Exp', 'Log', 'Sqrt', 'Reciprocal', 'Neg', 'Abs', 'Sign', 'Floor', 'Ceil',
  'Round', 'Sin', 'Cos', 'Tan', 'Asin', 'Acos', 'Atan', 'Sinh', 'Cosh', 'Asinh', 'Acosh', 'Atanh',
  'Clip', 'Where', 'Cast', 'Not', 'And', 'Or', 'Xor', 'Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual',
  'IsNaN', 'IsInf',
]);
/** Largest constant copied into a Fused body; bigger ones stay node inputs. */
const BODY_CONST_LIMIT = 64;

/** Vertical fusion of elementwise DAGs into tsrt::Fused: a producer joins its consumer's group when every reader
 * of its output is in the group (graph outputs become extra outputs of the group) and its result broadcasts into
 * the group's output. Integer results and values inference can compute (shape arithmetic, If conditions) stay out,
 * so shape-value propagation and constant If conditions keep working. */
export const fuseElementwise: Pass = scopedPass(FUSE_EW, 2, (g, ctx, scope) => {
  const v = new GraphView(g, scope);
  const e = new GraphEdit(v);
  const assigned = new Set<Node>();
  const typeOk = (n: Node) => {
    const t = v.type(n.outputs[0]);
    return !!t && !isInt(t.dtype) && t.dtype !== 'string';
  };
  // values inference computes at build time (shape arithmetic, If conditions) stay visible to it as plain nodes
  const known = v.analysis().consts;
  const isEw = (n: Node) => n.domain === '' && ELEMENTWISE_OPS.has(n.op) && n.outputs.length === 1 && !!n.outputs[0] && typeOk(n)
    && !known.has(n.outputs[0]);
  for (const root of [...v.order].reverse()) {
    if (assigned.has(root) || !isEw(root)) continue;
    const S = v.type(root.outputs[0])!.shape;
    const members = new Set<Node>([root]);
    for (let changed = true; changed;) {
      changed = false;
      for (const m of [...members]) {
        for (const i of m.inputs) {
          const p = v.prod(i);
          if (!p || members.has(p) || assigned.has(p) || !isEw(p)) continue;
          const pt = v.type(p.outputs[0])!;
          if (!broadcastsInto(pt.shape, S)) continue;
          if (v.graphOutputs.has(p.outputs[0]) && !sameShape(pt.shape, S)) continue;
          if (!v.usersOf(p.outputs[0]).every((u) => members.has(u))) continue;
          members.add(p); changed = true;
        }
      }
    }
    if (members.size < 2) continue;
    const fused = buildFused(v, e, root, members);
    if (!fused) continue;
    for (const m of members) assigned.add(m);
    const list = v.order.filter((n) => members.has(n));
    e.replace(list, [fused]);
    recordFusion(ctx, FUSE_EW, list.map((n) => n.op).join('+'), fused.name, list);
  }
  return e.finish();
});

function buildFused(v: GraphView, e: GraphEdit, root: Node, members: Set<Node>): Node | undefined {
  const list = v.order.filter((n) => members.has(n));
  const produced = new Set(list.map((n) => n.outputs[0]));
  const inputs: ValueInfo[] = [];
  const inits = new Map<string, Tensor>();
  for (const n of list) {
    for (const i of n.inputs) {
      if (!i || produced.has(i) || inits.has(i) || inputs.some((x) => x.name === i)) continue;
      const c = v.const(i);
      if (c && size(c.dims) <= BODY_CONST_LIMIT) { inits.set(i, c); continue; }
      const t = v.type(i);
      if (!t) return undefined;
      inputs.push({ name: i, type: t });
    }
  }
  const outNodes = list.filter((n) => n === root || v.graphOutputs.has(n.outputs[0]));
  const outputs = outNodes.map((n) => ({ name: n.outputs[0], type: v.type(n.outputs[0])! }));
  const name = e.fresh(`fused_${root.name}`);
  const body: Graph = {
    name, inputs, outputs, nodes: list, initializers: inits, opset: v.g.opset,
    valueTypes: new Map(list.map((n) => [n.outputs[0], v.type(n.outputs[0])!])),
  };
  return { name, op: 'Fused', domain: 'tsrt', inputs: inputs.map((i) => i.name), outputs: outputs.map((o) => o.name), attrs: { body: { kind: 'graph', value: body } } };
}

// ---- cse -------------------------------------------------------------------------------------------------

const NONDETERMINISTIC = new Set(['RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike', 'Multinomial', 'Bernoulli']);
/** Initializers up to this size are compared by value. */
const CSE_CONST_LIMIT = 1024;

function tensorKey(t: Tensor): string {
  return `${t.dtype}[${t.dims}]${Array.from(t.data as ArrayLike<unknown>).map(String).join(',')}`;
}

function attrKey(attrs: Record<string, Attr>): string {
  return Object.keys(attrs).sort().map((k) => {
    const a = attrs[k];
    const val = a.kind === 'tensor' ? tensorKey(a.value) : Array.isArray(a.value) ? (a.value as unknown[]).map((x) => JSON.stringify(String(x))).join(',') : JSON.stringify(String(a.value));
    return `${k}:${a.kind}=${val}`;
  }).join(';');
}

/** Common subexpression elimination: nodes with the same op, domain, attributes and inputs compute the same
 * values, so later copies read the first one's outputs. Small equal initializers merge first. */
export const cse: Pass = scopedPass('cse', 1, (g, ctx) => {
  const v = new GraphView(g);
  const rename = new Map<string, string>();
  const resolve = (x: string) => { let y = x; while (rename.has(y)) y = rename.get(y)!; return y; };
  const initByKey = new Map<string, string>();
  for (const [name, t] of g.initializers) {
    if (size(t.dims) > CSE_CONST_LIMIT || v.graphOutputs.has(name)) continue;
    const k = tensorKey(t);
    const first = initByKey.get(k);
    if (first) rename.set(name, first); else initByKey.set(k, name);
  }
  const seen = new Map<string, Node>();
  const nodes: Node[] = [];
  let merged = 0;
  for (const n of v.order) {
    const inputs = n.inputs.map((x) => (x ? resolve(x) : x));
    const cur = inputs.every((x, i) => x === n.inputs[i]) ? n : { ...n, inputs };
    const eligible = n.outputs.length > 0 && !NONDETERMINISTIC.has(n.op) && !n.outputs.some((o) => v.graphOutputs.has(o))
      && !Object.values(n.attrs).some((a) => a.kind === 'graph' || a.kind === 'graphs');
    const key = eligible ? `${n.domain}::${n.op}(${inputs.join(',')})#${n.outputs.length}{${attrKey(n.attrs)}}` : '';
    const prev = key ? seen.get(key) : undefined;
    if (prev && n.outputs.every((o, i) => !o || prev.outputs[i])) {
      n.outputs.forEach((o, i) => { if (o) rename.set(o, prev.outputs[i]); });
      merged++;
      continue;
    }
    if (key) seen.set(key, cur);
    nodes.push(cur);
  }
  if (!rename.size) return g;
  if (merged) ctx.log(`cse: merged ${merged} duplicate node(s)`);
  return eliminateDeadCode({ ...g, nodes: renameReads(nodes, resolve) });
});

// ---- transposeFold -------------------------------------------------------------------------------------

const FOLD_TRANSPOSE = 'transpose-fold';

/** Transpose -> Transpose => one Transpose (none when the perms cancel); Reshape -> Reshape => one Reshape. */
export const transposeFold: Pass = scopedPass(FOLD_TRANSPOSE, 1, (g, ctx, scope) => {
  const v = new GraphView(g, scope);
  const e = new GraphEdit(v);
  /** Current definition of values whose Transpose/Reshape producer was rewritten in this pass. */
  const def = new Map<string, Node>();
  const permOf = (n: Node): number[] | undefined => {
    const p = attrInts(n, 'perm');
    if (p) return p;
    const t = v.type(n.inputs[0]);
    return t ? t.shape.map((_, i) => t.shape.length - 1 - i) : undefined;
  };
  for (const n of v.order) {
    if (n.domain !== '' || (n.op !== 'Transpose' && n.op !== 'Reshape')) continue;
    const p = def.get(n.inputs[0]) ?? v.prod(n.inputs[0]);
    if (!p || p.op !== n.op || p.domain !== '') continue;
    const x = p.inputs[0];
    const origP = v.prod(n.inputs[0])!;
    if (n.op === 'Transpose') {
      const p1 = permOf(p), p2 = permOf(n);
      if (!p1 || !p2 || p1.length !== p2.length) continue;
      const perm = p2.map((j) => p1[j]);
      const out = n.outputs[0];
      if (perm.every((q, i) => q === i)) {
        if (v.graphOutputs.has(out)) {
          const id: Node = { name: e.fresh(`${n.name}_identity`), op: 'Identity', domain: '', inputs: [x], outputs: [out], attrs: {} };
          e.replace([n], [id]);
          recordFusion(ctx, FOLD_TRANSPOSE, 'Transpose+Transpose', id.name, [origP, n]);
        } else {
          e.replace([n], []);
          e.rename(out, x);
          recordFusion(ctx, FOLD_TRANSPOSE, 'Transpose+Transpose', x, [origP, n]);
        }
        continue;
      }
      const t: Node = { ...n, name: e.fresh(`${n.name}_folded`), inputs: [x], attrs: { ...n.attrs, perm: { kind: 'ints', value: perm } } };
      e.replace([n], [t]);
      def.set(out, t);
      recordFusion(ctx, FOLD_TRANSPOSE, 'Transpose+Transpose', t.name, [origP, n]);
    } else {
      const outT = v.type(n.outputs[0]);
      const s2 = v.const(n.inputs[1]);
      const allowZero = attrInt(n, 'allowzero', 0) !== 0;
      let shape: number[] | undefined;
      if (outT && outT.shape.every((d): d is number => typeof d === 'number') && (allowZero || !outT.shape.includes(0))) shape = outT.shape as number[];
      else if (s2 && (allowZero || !f64(s2).includes(0))) shape = Array.from(f64(s2));
      if (!shape) continue;
      const r: Node = { ...n, name: e.fresh(`${n.name}_folded`), inputs: [x, e.addConst(`${n.name}_shape`, fromF64('int64', [shape.length], shape))] };
      e.replace([n], [r]);
      def.set(n.outputs[0], r);
      recordFusion(ctx, FOLD_TRANSPOSE, 'Reshape+Reshape', r.name, [origP, n]);
    }
  }
  return e.finish();
});

/** The fusion passes in pipeline order: clean-ups that expose patterns, pattern recognition, BatchNorm folding
 * (before epilogues so Conv+BN+Relu becomes one FusedConv), epilogues, then elementwise groups over what is left. */
export const FUSION_PASSES: Pass[] = [
  cse,
  transposeFold,
  recognizePatterns,
  foldBatchNorm,
  fuseConvEpilogue,
  fuseGemmEpilogue,
  fuseElementwise,
];
