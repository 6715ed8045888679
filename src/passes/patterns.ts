// Pattern-matching helpers shared by the fusion passes: a read-only view of a graph (producers, consumers,
// constants, types), an edit list that builds the rewritten graph without touching the input, and an
// activation recognizer that identifies decomposed activations (GELU, SiLU, HardSwish) by evaluating the
// candidate subgraph on sample points instead of listing every operand order exporters produce.
import { implicitInputs, nameGenerator, topoSort } from '../ir/graph.js';
import { inferShapes } from '../ir/infer.js';
import { fromF64, size, toF64 } from '../ir/tensor.js';
import type { Attr, Dim, Graph, Node, Tensor, TensorType } from '../ir/types.js';
import { attrFloat, attrString } from '../ops/attrs.js';
import type { Activation } from '../ops/fused.js';
import { getOp } from '../ops/registry.js';
import { eliminateDeadCode } from './basic.js';
import type { Pass, PassContext } from './pass.js';

/** Types and constants visible from enclosing graphs, for passes inside If/Loop/Scan bodies. */
export interface Scope {
  types: ReadonlyMap<string, TensorType>;
  consts: ReadonlyMap<string, Tensor>;
}

/** A pass that also rewrites the subgraphs of If/Loop/Scan nodes (bodies first), with the enclosing scope's types
 * and constants visible there. Bodies of tsrt ops (a Fused group) are left as built. */
export function scopedPass(name: string, level: number, fn: (g: Graph, ctx: PassContext, scope?: Scope) => Graph): Pass {
  const run = (g: Graph, ctx: PassContext, scope?: Scope): Graph => {
    let inner: Scope | undefined;
    let changed = false;
    const nodes = g.nodes.map((n) => {
      if (n.domain === 'tsrt' || !Object.values(n.attrs).some((a) => a.kind === 'graph' || a.kind === 'graphs')) return n;
      inner ??= innerScope(g, scope);
      const attrs: Record<string, Attr> = { ...n.attrs };
      for (const [k, a] of Object.entries(n.attrs)) {
        if (a.kind === 'graph') attrs[k] = { kind: 'graph', value: run(a.value, ctx, inner) };
        if (a.kind === 'graphs') attrs[k] = { kind: 'graphs', value: a.value.map((b) => run(b, ctx, inner)) };
      }
      changed = true;
      return { ...n, attrs };
    });
    return fn(changed ? { ...g, nodes } : g, ctx, scope);
  };
  return { name, level, run: (g, ctx) => run(g, ctx) };
}

function innerScope(g: Graph, outer?: Scope): Scope {
  const types = new Map(outer?.types ?? []);
  try {
    for (const [k, t] of inferShapes(g, outer?.types, outer?.consts).graph.valueTypes) types.set(k, t);
  } catch {
    for (const [k, t] of g.valueTypes) types.set(k, t);
  }
  for (const i of g.inputs) types.set(i.name, i.type);
  for (const [k, t] of g.initializers) types.set(k, { dtype: t.dtype, shape: [...t.dims] });
  const consts = new Map(outer?.consts ?? []);
  for (const k of [...g.inputs.map((i) => i.name), ...g.nodes.flatMap((n) => n.outputs)]) consts.delete(k);
  for (const [k, t] of g.initializers) consts.set(k, t);
  return { types, consts };
}

/** Read-only queries over one graph. */
export class GraphView {
  readonly order: Node[];
  readonly index = new Map<Node, number>();
  readonly producer = new Map<string, Node>();
  readonly users = new Map<string, Node[]>();
  readonly graphOutputs: Set<string>;
  private inferred?: { types: ReadonlyMap<string, TensorType>; consts: ReadonlyMap<string, Tensor> };
  private readonly constNodes = new Map<string, Tensor | undefined>();

  constructor(readonly g: Graph, readonly scope?: Scope) {
    this.order = topoSort(g);
    this.order.forEach((n, i) => {
      this.index.set(n, i);
      for (const o of n.outputs) if (o) this.producer.set(o, n);
    });
    for (const n of this.order) {
      for (const x of new Set([...n.inputs, ...implicitInputs(n)])) {
        if (!x) continue;
        if (!this.users.has(x)) this.users.set(x, []);
        this.users.get(x)!.push(n);
      }
    }
    this.graphOutputs = new Set(g.outputs.map((o) => o.name));
  }

  usersOf(x: string): Node[] { return this.users.get(x) ?? []; }
  prod(x: string): Node | undefined { return x ? this.producer.get(x) : undefined; }
  /** Constant value: an initializer of this graph, or of an enclosing one that no local name shadows. */
  const(x: string): Tensor | undefined {
    if (!x) return undefined;
    const t = this.g.initializers.get(x);
    if (t) return t;
    const p = this.producer.get(x);
    if (p) return p.op === 'Constant' && p.domain === '' ? this.constantNode(p, x) : undefined;
    return this.scope && !this.isGraphInput(x) ? this.scope.consts.get(x) : undefined;
  }

  /** Value of a Constant node (subgraph bodies keep their weights as Constant nodes: folding runs on the top graph). */
  private constantNode(n: Node, x: string): Tensor | undefined {
    if (!this.constNodes.has(x)) {
      let t: Tensor | undefined;
      try { t = getOp('Constant')?.cpu(n, [], { opset: this.g.opset, runGraph: () => { throw new Error('no subgraphs'); } })[0]; } catch { t = undefined; }
      this.constNodes.set(x, t);
    }
    return this.constNodes.get(x);
  }

  /** Shape inference over this graph (once): types of every value, and the values it computes at build time. */
  analysis(): { types: ReadonlyMap<string, TensorType>; consts: ReadonlyMap<string, Tensor> } {
    if (!this.inferred) {
      try {
        const r = inferShapes(this.g, this.scope?.types, this.scope?.consts);
        this.inferred = { types: r.graph.valueTypes, consts: r.consts };
      } catch {
        this.inferred = { types: new Map(), consts: new Map() };
      }
    }
    return this.inferred;
  }
  isGraphInput(x: string): boolean { return this.g.inputs.some((i) => i.name === x); }

  /** Constant that is a single element (any rank), as a number. */
  scalar(x: string): number | undefined {
    const t = this.const(x);
    return t && size(t.dims) === 1 && t.dtype !== 'string' ? toF64(t)[0] : undefined;
  }

  /** Declared or inferred type; runs shape inference once when a node output has none. */
  type(x: string): TensorType | undefined {
    const t = this.g.initializers.get(x);
    if (t) return { dtype: t.dtype, shape: [...t.dims] };
    const vt = this.g.valueTypes.get(x) ?? this.g.inputs.find((i) => i.name === x)?.type;
    if (vt) return vt;
    if (!this.producer.has(x) && this.scope?.types.has(x)) return this.scope.types.get(x);
    return this.analysis().types.get(x);
  }

  /** Why `x` cannot be folded into the node that reads it, or undefined when exactly one node reads it. */
  blocked(x: string): string | undefined {
    if (this.graphOutputs.has(x)) return `'${x}' is a graph output`;
    const n = this.usersOf(x).length;
    return n === 1 ? undefined : `output '${x}' has ${n} consumers`;
  }

  /** The one node reading `x` (and `x` is no graph output). */
  sole(x: string): Node | undefined {
    return this.blocked(x) ? undefined : this.usersOf(x)[0];
  }
}

/** Edits collected against a GraphView, applied at once by `finish`. Replacement nodes go where the
 * topologically last node of the group they replace was, which keeps the order valid. */
export class GraphEdit {
  readonly inits: Map<string, Tensor>;
  readonly types = new Map<string, TensorType>();
  readonly fresh: (hint: string) => string;
  private readonly removed = new Set<Node>();
  private readonly placed = new Map<Node, Node[]>();
  private readonly renames = new Map<string, string>();

  constructor(readonly v: GraphView) {
    this.inits = new Map(v.g.initializers);
    // the hint itself when free (readable dumps: conv1_fused), else nameGenerator's hint_k
    const gen = nameGenerator(v.g);
    const taken = new Set([...v.g.initializers.keys(), ...v.g.inputs.map((i) => i.name), ...v.g.outputs.map((o) => o.name),
      ...v.g.nodes.flatMap((n) => [n.name, ...n.inputs, ...n.outputs, ...implicitInputs(n)])]);
    this.fresh = (hint) => {
      let name = hint;
      while (taken.has(name)) name = gen(hint);
      taken.add(name);
      return name;
    };
  }

  taken(n: Node): boolean { return this.removed.has(n); }
  anyTaken(ns: Node[]): boolean { return ns.some((n) => this.removed.has(n)); }

  addConst(hint: string, t: Tensor): string {
    const name = this.fresh(hint);
    this.inits.set(name, t);
    return name;
  }

  replace(group: Node[], by: Node[]): void {
    const last = group.reduce((a, b) => (this.v.index.get(a)! > this.v.index.get(b)! ? a : b));
    for (const n of group) this.removed.add(n);
    this.placed.set(last, [...(this.placed.get(last) ?? []), ...by]);
  }

  /** Reads of `from` become reads of `to` (never for graph outputs). */
  rename(from: string, to: string): void { this.renames.set(from, to); }

  finish(): Graph {
    const resolve = (x: string) => { let y = x; while (this.renames.has(y)) y = this.renames.get(y)!; return y; };
    const nodes: Node[] = [];
    for (const n of this.v.order) {
      if (!this.removed.has(n)) nodes.push(n);
      nodes.push(...(this.placed.get(n) ?? []));
    }
    const renamed = this.renames.size ? renameReads(nodes, resolve) : nodes;
    const valueTypes = new Map([...this.v.g.valueTypes, ...this.types]);
    const g = eliminateDeadCode({ ...this.v.g, nodes: renamed, initializers: this.inits, valueTypes });
    const live = new Set([...g.initializers.keys(), ...g.inputs.map((i) => i.name), ...g.nodes.flatMap((n) => n.outputs)]);
    return { ...g, valueTypes: new Map([...valueTypes].filter(([k]) => live.has(k))) };
  }
}

/** Renames value reads in nodes, including outer-scope reads inside subgraphs. */
export function renameReads(nodes: Node[], resolve: (x: string) => string): Node[] {
  return nodes.map((n) => {
    const inputs = n.inputs.map((x) => (x ? resolve(x) : x));
    const hasGraph = Object.values(n.attrs).some((a) => a.kind === 'graph' || a.kind === 'graphs');
    if (!hasGraph) return inputs.every((x, i) => x === n.inputs[i]) ? n : { ...n, inputs };
    const attrs: Record<string, Attr> = { ...n.attrs };
    for (const [k, a] of Object.entries(attrs)) {
      if (a.kind === 'graph') attrs[k] = { kind: 'graph', value: renameOuter(a.value, resolve) };
      if (a.kind === 'graphs') attrs[k] = { kind: 'graphs', value: a.value.map((x) => renameOuter(x, resolve)) };
    }
    return { ...n, inputs, attrs };
  });
}

function renameOuter(g: Graph, resolve: (x: string) => string): Graph {
  const local = new Set([...g.initializers.keys(), ...g.inputs.map((i) => i.name), ...g.nodes.flatMap((n) => n.outputs)]);
  const r = (x: string) => (x && !local.has(x) ? resolve(x) : x);
  return { ...g, nodes: renameReads(g.nodes, r), outputs: g.outputs.map((o) => ({ ...o, name: r(o.name) })) };
}

// ---- small tensor and shape helpers ------------------------------------------------------------------------

/** Shapes equal dim by dim (symbols must match by name). */
export function sameShape(a: readonly Dim[] | undefined, b: readonly Dim[] | undefined): boolean {
  return !!a && !!b && a.length === b.length && a.every((d, i) => d === b[i]);
}

/** `s` broadcasts into `full` without enlarging it. */
export function broadcastsInto(s: readonly Dim[], full: readonly Dim[]): boolean {
  if (s.length > full.length) return false;
  const off = full.length - s.length;
  return s.every((d, i) => d === 1 || d === full[off + i]);
}

/** If constant `t` varies only along axis `axis` of a rank-`rank` result whose size there is `n` (all other dims
 * 1 after right-aligning), its values as a 1-D vector of length n; else undefined. */
export function alongAxis(t: Tensor, rank: number, axis: number, n: number): Float64Array | undefined {
  if (t.dims.length > rank) return undefined;
  const padded = [...new Array<number>(rank - t.dims.length).fill(1), ...t.dims];
  if (padded.some((d, i) => i !== axis && d !== 1) || (padded[axis] !== n && padded[axis] !== 1)) return undefined;
  const v = toF64(t);
  return v.length === n ? v : new Float64Array(n).fill(v[0]);
}

/** Reduce axes of a ReduceXxx node (attribute before opset 18/13, input after), normalized and sorted;
 * undefined when not constant. `[]` with noop_with_empty_axes=0 means all axes. */
export function reduceAxes(v: GraphView, n: Node, rank: number): number[] | undefined {
  let axes: number[] | undefined;
  if (n.inputs[1]) {
    const c = v.const(n.inputs[1]);
    if (!c) return undefined;
    axes = Array.from(toF64(c));
  } else {
    const a = n.attrs.axes;
    axes = a && (a.kind === 'ints' || a.kind === 'int') ? (a.kind === 'int' ? [a.value] : a.value) : [];
  }
  if (!axes.length) return Array.from({ length: rank }, (_, i) => i);
  return [...new Set(axes.map((x) => (x < 0 ? x + rank : x)))].sort((a, b) => a - b);
}

export const keepDims = (n: Node) => (n.attrs.keepdims?.kind === 'int' ? n.attrs.keepdims.value : 1) !== 0;

// ---- activation recognition ----------------------------------------------------------------------------

export interface ActMatch {
  act: Activation;
  params: number[];
  /** Nodes that compute the activation (all of them go away). */
  nodes: Node[];
  output: string;
}

export type ActResult = ActMatch | { reject: string } | undefined;

/** Unary ops that look like activations but have no fused form, so the report says why they stayed. */
export const UNFUSABLE_ACTIVATIONS = new Set(['Elu', 'Selu', 'Celu', 'Softplus', 'Softsign', 'PRelu', 'ThresholdedRelu',
  'Mish', 'Exp', 'Log', 'Abs', 'Neg', 'Sqrt', 'Sin', 'Cos', 'Reciprocal', 'Floor', 'Ceil', 'Round', 'Sign']);

/** Ops allowed inside a decomposed activation; every other operand must be a one-element constant. */
const COMPOSITE_OPS = new Set(['Add', 'Sub', 'Mul', 'Div', 'Erf', 'Tanh', 'Sigmoid', 'Pow', 'Clip', 'Relu', 'Max', 'Min', 'Sqrt', 'Neg']);
const MAX_COMPOSITE = 12;

/** One node that is an activation of `x`. */
function singleActivation(v: GraphView, n: Node, x: string): ActResult {
  if (n.domain !== '' || n.inputs[0] !== x || n.outputs.length !== 1) return undefined;
  const m = (act: Activation, params: number[] = []): ActMatch => ({ act, params, nodes: [n], output: n.outputs[0] });
  switch (n.op) {
    case 'Relu': case 'Sigmoid': case 'Tanh': case 'HardSwish': return m(n.op);
    case 'LeakyRelu': return m('LeakyRelu', [attrFloat(n, 'alpha', 0.01)]);
    case 'HardSigmoid': return m('HardSigmoid', [attrFloat(n, 'alpha', 0.2), attrFloat(n, 'beta', 0.5)]);
    case 'Gelu': return m(attrString(n, 'approximate', 'none') === 'tanh' ? 'GeluTanh' : 'GeluErf');
    case 'Clip': {
      const bound = (i: number, attr: string, def: number): number | undefined => {
        if (n.inputs[i]) return v.scalar(n.inputs[i]);
        return attrFloat(n, attr, def);
      };
      const lo = bound(1, 'min', -Infinity), hi = bound(2, 'max', Infinity);
      if (lo === undefined || hi === undefined) return { reject: 'Clip bounds are not constant' };
      return m('Clip', [lo, hi]);
    }
    default:
      return UNFUSABLE_ACTIVATIONS.has(n.op) ? { reject: `activation ${n.op} not fusable` } : undefined;
  }
}

const erf = (x: number): number => {
  // Abramowitz-Stegun 7.1.26 (1.5e-7) is close to the tolerance that tells GELU forms apart; series + continued fraction is ~1e-14.
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let sum = x, term = x;
    for (let k = 1; k < 80; k++) { term *= -x * x / k; sum += term / (2 * k + 1); if (Math.abs(term) < 1e-17) break; }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction erfc(x) = e^-x^2/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))), evaluated backwards
  let t = ax;
  for (let k = 80; k >= 1; k--) t = ax + (k / 2) / t;
  const erfc = Math.exp(-ax * ax) / (t * Math.sqrt(Math.PI));
  return Math.sign(x) * (1 - erfc);
};

/** Reference functions the composite recognizer compares against. */
export const ACTIVATION_FNS: Partial<Record<Activation, (x: number) => number>> = {
  GeluErf: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  GeluTanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  Silu: (x) => x / (1 + Math.exp(-x)),
  HardSwish: (x) => x * Math.max(0, Math.min(1, x / 6 + 0.5)),
  HardSigmoid: (x) => Math.max(0, Math.min(1, x / 6 + 0.5)),
};
const SAMPLES = Float32Array.from([...Array.from({ length: 81 }, (_, i) => -8 + i * 0.2), -20, -3.01, -1e-3, 1e-3, 2.99, 4.5, 20]);

/** Values of `x`'s subgraph `nodes` (topologically ordered, ending at `output`) on SAMPLES, or undefined. */
function evaluate(v: GraphView, nodes: Node[], x: string, output: string): Float64Array | undefined {
  const vals = new Map<string, Tensor>([[x, { dtype: 'float32', dims: [SAMPLES.length], data: SAMPLES }]]);
  for (const n of nodes) {
    const def = getOp(n.op, n.domain);
    if (!def) return undefined;
    const ins = n.inputs.map((i) => {
      if (!i) return undefined;
      const c = v.const(i);
      return vals.get(i) ?? (c ? fromF64('float32', c.dims, toF64(c)) : undefined);
    });
    try {
      const out = def.cpu(n, ins, { opset: v.g.opset, runGraph: () => { throw new Error('no subgraphs'); } });
      vals.set(n.outputs[0], out[0]);
    } catch {
      return undefined;
    }
  }
  const y = vals.get(output);
  return y && y.data.length === SAMPLES.length ? toF64(y) : undefined;
}

function matchesFn(got: Float64Array, fn: (x: number) => number): boolean {
  for (let i = 0; i < SAMPLES.length; i++) {
    const want = fn(SAMPLES[i]);
    if (!(Math.abs(got[i] - want) <= 2e-5 * (1 + Math.abs(want)))) return false;
  }
  return true;
}

/** A multi-node subgraph of `x` that computes one of `kinds`. With `xMayEscape`, `x` may have readers outside
 * the subgraph (it stays alive); otherwise every reader of `x` must be inside. Prefers the largest match. */
export function compositeActivation(v: GraphView, x: string, kinds: Activation[], xMayEscape = false,
  needOps?: Set<string>): ActMatch | undefined {
  const avail = new Set([x]);
  const region: Node[] = [];
  const inRegion = new Set<Node>();
  for (let changed = true; changed && region.length < MAX_COMPOSITE;) {
    changed = false;
    for (const val of [...avail]) {
      for (const u of v.usersOf(val)) {
        if (inRegion.has(u) || region.length >= MAX_COMPOSITE) continue;
        if (u.domain !== '' || !COMPOSITE_OPS.has(u.op) || u.outputs.length !== 1) continue;
        if (!u.inputs.every((i) => !i || avail.has(i) || v.scalar(i) !== undefined)) continue;
        region.push(u); inRegion.add(u); avail.add(u.outputs[0]); changed = true;
      }
    }
  }
  if (region.length < 2) return undefined;
  if (needOps && !region.some((n) => needOps.has(n.op))) return undefined;
  region.sort((a, b) => v.index.get(a)! - v.index.get(b)!);
  const candidates: Node[][] = [];
  for (const out of region) {
    const sub = new Set<Node>();
    const stack = [out];
    while (stack.length) {
      const n = stack.pop()!;
      if (sub.has(n)) continue;
      sub.add(n);
      for (const i of n.inputs) { const p = v.prod(i); if (p && inRegion.has(p)) stack.push(p); }
    }
    if (sub.size < 2) continue;
    const list = region.filter((n) => sub.has(n));
    const closed = list.every((n) => n === out || (!v.graphOutputs.has(n.outputs[0]) && v.usersOf(n.outputs[0]).every((u) => sub.has(u))));
    const xOk = xMayEscape || (!v.graphOutputs.has(x) && v.usersOf(x).every((u) => sub.has(u)));
    if (closed && xOk && list.some((n) => n.inputs.includes(x))) candidates.push(list);
  }
  candidates.sort((a, b) => b.length - a.length);
  for (const list of candidates) {
    const out = list[list.length - 1].outputs[0];
    const got = evaluate(v, list, x, out);
    if (!got) continue;
    for (const k of kinds) {
      const fn = ACTIVATION_FNS[k];
      if (fn && matchesFn(got, fn)) return { act: k, params: k === 'HardSigmoid' ? [1 / 6, 0.5] : [], nodes: list, output: out };
    }
  }
  return undefined;
}

const EPILOGUE_COMPOSITES: Activation[] = ['GeluErf', 'GeluTanh', 'Silu', 'HardSwish', 'HardSigmoid'];

/** The activation applied to `x` that an epilogue can absorb: every reader of `x` is part of it. */
export function matchActivation(v: GraphView, x: string): ActResult {
  if (v.graphOutputs.has(x)) return undefined;
  const users = v.usersOf(x);
  let single: ActResult;
  if (users.length === 1) {
    single = singleActivation(v, users[0], x);
    if (single && 'act' in single) return single;
  }
  const comp = compositeActivation(v, x, EPILOGUE_COMPOSITES);
  return comp ?? single;
}

// ---- records -------------------------------------------------------------------------------------------------

export function recordFusion(ctx: PassContext, pass: string, kind: string, into: string, nodes: Node[]): void {
  ctx.fusions.push({ pass, kind, into, nodes: nodes.map((n) => n.name) });
  ctx.log(`${pass}: ${kind} [${nodes.map((n) => n.name).join(', ')}] -> ${into}`);
}

export function recordRejection(ctx: PassContext, pass: string, kind: string, nodes: Node[], reason: string): void {
  ctx.rejected.push({ pass, kind, nodes: nodes.map((n) => n.name), reason });
}

// ---- recognizePatterns: decomposed LayerNorm, GELU, HardSwish and Softmax back into single ONNX ops ---------------

const RECOGNIZE = 'recognize-patterns';

/** ReduceMean -> Sub -> Pow(2)|Mul(d,d) -> ReduceMean -> [Add(eps)] -> Sqrt -> Div -> [Mul(gamma)] -> [Add(beta)]
 * over trailing axes (PyTorch < 1.12 and Paddle exports) => LayerNormalization. */
function matchLayerNorm(v: GraphView, e: GraphEdit, ctx: PassContext, rm1: Node): void {
  const x = rm1.inputs[0];
  const xt = v.type(x);
  if (!xt || !['float32', 'float16', 'bfloat16', 'float64'].includes(xt.dtype)) return;
  const rank = xt.shape.length;
  const axes = reduceAxes(v, rm1, rank);
  if (!axes || !keepDims(rm1) || !axes.every((a, i) => a === rank - axes.length + i)) return;
  const sub = v.sole(rm1.outputs[0]);
  if (!sub || sub.op !== 'Sub' || sub.inputs[0] !== x || sub.inputs[1] !== rm1.outputs[0]) return;
  const d = sub.outputs[0];
  if (v.graphOutputs.has(d)) return;
  const du = v.usersOf(d);
  const sq = du.find((n) => (n.op === 'Pow' && n.inputs[0] === d && v.scalar(n.inputs[1]) === 2) || (n.op === 'Mul' && n.inputs[0] === d && n.inputs[1] === d));
  const div = du.find((n) => n.op === 'Div' && n.inputs[0] === d);
  if (du.length !== 2 || !sq || !div) return;
  const rm2 = v.sole(sq.outputs[0]);
  if (!rm2 || rm2.op !== 'ReduceMean' || !keepDims(rm2) || String(reduceAxes(v, rm2, rank)) !== String(axes)) return;
  const nodes = [rm1, sub, sq, rm2];
  let cur = rm2.outputs[0];
  let eps = 0;
  const addEps = v.sole(cur);
  if (addEps?.op === 'Add') {
    const other = addEps.inputs[0] === cur ? addEps.inputs[1] : addEps.inputs[0];
    const c = v.scalar(other);
    if (c === undefined) { recordRejection(ctx, RECOGNIZE, 'LayerNorm', [...nodes, addEps], 'epsilon is not a constant scalar'); return; }
    eps = c; nodes.push(addEps); cur = addEps.outputs[0];
  }
  const sqrt = v.sole(cur);
  if (!sqrt || sqrt.op !== 'Sqrt' || v.sole(sqrt.outputs[0]) !== div || div.inputs[1] !== sqrt.outputs[0]) return;
  nodes.push(sqrt, div);
  cur = div.outputs[0];
  const normShape = xt.shape.slice(rank - axes.length);
  if (!normShape.every((s): s is number => typeof s === 'number')) {
    recordRejection(ctx, RECOGNIZE, 'LayerNorm', nodes, 'normalized dims are not static');
    return;
  }
  const vec = (t: Tensor): Tensor | undefined => {
    if (t.dims.length > rank) return undefined;
    const padded = [...new Array<number>(rank - t.dims.length).fill(1), ...t.dims];
    if (!padded.every((s, i) => (i < rank - axes.length ? s === 1 : s === 1 || s === normShape[i - rank + axes.length]))) return undefined;
    const outDims = normShape as number[];
    const src = toF64(t);
    if (src.length === size(outDims)) return fromF64(xt.dtype, outDims, src);
    // expand dims of size 1 along the normalized axes
    const out = new Float64Array(size(outDims));
    const inDims = padded.slice(rank - axes.length);
    for (let k = 0; k < out.length; k++) {
      let rem = k, off = 0, mul = 1;
      for (let j = outDims.length - 1; j >= 0; j--) {
        const idx = rem % outDims[j]; rem = Math.floor(rem / outDims[j]);
        if (inDims[j] !== 1) off += idx * mul;
        mul *= inDims[j];
      }
      out[k] = src[off];
    }
    return fromF64(xt.dtype, outDims, out);
  };
  const affine = (op: string): { node: Node; value: Tensor } | undefined | 'bad' => {
    const n = v.sole(cur);
    if (!n || n.op !== op) return undefined;
    const other = n.inputs[0] === cur ? n.inputs[1] : n.inputs[0];
    const c = v.const(other);
    const t = c && c.dtype === xt.dtype ? vec(c) : undefined;
    return t ? { node: n, value: t } : 'bad';
  };
  const gamma = affine('Mul');
  if (gamma === 'bad') recordRejection(ctx, RECOGNIZE, 'LayerNorm', [...nodes, v.sole(cur)!], 'scale is not a constant over the normalized axes (kept outside)');
  let scale: Tensor;
  if (gamma && gamma !== 'bad') { nodes.push(gamma.node); cur = gamma.node.outputs[0]; scale = gamma.value; }
  else scale = fromF64(xt.dtype, normShape as number[], new Float64Array(size(normShape as number[])).fill(1));
  let bias: Tensor | undefined;
  const beta = gamma && gamma !== 'bad' ? affine('Add') : undefined;
  if (beta && beta !== 'bad') { nodes.push(beta.node); cur = beta.node.outputs[0]; bias = beta.value; }
  if (e.anyTaken(nodes)) return;
  const ln: Node = {
    name: e.fresh(`${rm1.name}_layernorm`), op: 'LayerNormalization', domain: '',
    inputs: [x, e.addConst(`${rm1.name}_scale`, scale), ...(bias ? [e.addConst(`${rm1.name}_bias`, bias)] : [])],
    outputs: [cur],
    attrs: { axis: { kind: 'int', value: rank - axes.length }, epsilon: { kind: 'float', value: eps } },
  };
  e.replace(nodes, [ln]);
  recordFusion(ctx, RECOGNIZE, 'LayerNorm', ln.name, nodes);
}

/** [ReduceMax -> Sub] -> Exp -> ReduceSum -> Div over one axis => Softmax. */
function matchSoftmax(v: GraphView, e: GraphEdit, ctx: PassContext, exp: Node): void {
  const ev = exp.outputs[0];
  const eu = v.usersOf(ev);
  const rs = eu.find((n) => n.op === 'ReduceSum' && n.inputs[0] === ev);
  const div = eu.find((n) => n.op === 'Div' && n.inputs[0] === ev);
  if (eu.length !== 2 || !rs || !div || v.graphOutputs.has(ev) || v.sole(rs.outputs[0]) !== div || div.inputs[1] !== rs.outputs[0]) return;
  let x = exp.inputs[0];
  const xt = v.type(x);
  if (!xt) return;
  const rank = xt.shape.length;
  const nodes = [exp, rs, div];
  const axes = reduceAxes(v, rs, rank);
  if (!axes || axes.length !== 1 || !keepDims(rs)) {
    recordRejection(ctx, RECOGNIZE, 'Softmax', nodes, 'ReduceSum is not over a single constant axis with keepdims');
    return;
  }
  // optional max subtraction for stability
  const sub = v.prod(x);
  if (sub?.op === 'Sub' && v.sole(x) === exp) {
    const mx = v.prod(sub.inputs[1]);
    if (mx?.op === 'ReduceMax' && mx.inputs[0] === sub.inputs[0] && v.sole(mx.outputs[0]) === sub && keepDims(mx)
      && String(reduceAxes(v, mx, rank)) === String(axes)) {
      nodes.unshift(mx, sub);
      x = sub.inputs[0];
    }
  }
  // Softmax here has the opset-13 single-axis meaning at every opset: the importer upgrades older forms.
  if (e.anyTaken(nodes)) return;
  const sm: Node = { name: e.fresh(`${exp.name}_softmax`), op: 'Softmax', domain: '', inputs: [x], outputs: [div.outputs[0]],
    attrs: { axis: { kind: 'int', value: axes[0] } } };
  e.replace(nodes, [sm]);
  recordFusion(ctx, RECOGNIZE, 'Softmax', sm.name, nodes);
}

const STANDARD_ACTS: Activation[] = ['GeluErf', 'GeluTanh', 'HardSwish', 'HardSigmoid'];
const ACT_MARKERS = new Set(['Erf', 'Tanh', 'Clip', 'Min', 'Max', 'Relu']);

/** A decomposed GELU/HardSwish/HardSigmoid on `x` => the single ONNX op (opset 20 Gelu, opset 14 HardSwish). */
function matchStandardActivation(v: GraphView, e: GraphEdit, ctx: PassContext, x: string): void {
  const m = compositeActivation(v, x, STANDARD_ACTS, true, ACT_MARKERS);
  if (!m || e.anyTaken(m.nodes)) return;
  const last = m.nodes[m.nodes.length - 1];
  const attrs: Record<string, Attr> = {};
  let op: string = m.act;
  if (m.act === 'GeluErf' || m.act === 'GeluTanh') {
    op = 'Gelu';
    if (m.act === 'GeluTanh') attrs.approximate = { kind: 'string', value: 'tanh' };
  } else if (m.act === 'HardSigmoid') {
    attrs.alpha = { kind: 'float', value: 1 / 6 };
    attrs.beta = { kind: 'float', value: 0.5 };
  }
  if (!getOp(op)) {
    recordRejection(ctx, RECOGNIZE, m.act, m.nodes, `op ${op} is not implemented`);
    return;
  }
  const n: Node = { name: e.fresh(`${last.name}_${op.toLowerCase()}`), op, domain: '', inputs: [x], outputs: [m.output], attrs };
  e.replace(m.nodes, [n]);
  recordFusion(ctx, RECOGNIZE, m.act, n.name, m.nodes);
}

export const recognizePatterns: Pass = scopedPass(RECOGNIZE, 1, (g, ctx, scope) => {
  const v = new GraphView(g, scope);
  const e = new GraphEdit(v);
  for (const n of v.order) {
    if (n.domain !== '' || e.taken(n)) continue;
    if (n.op === 'ReduceMean') matchLayerNorm(v, e, ctx, n);
    else if (n.op === 'Exp') matchSoftmax(v, e, ctx, n);
  }
  const values = [...g.inputs.map((i) => i.name), ...v.order.flatMap((n) => (e.taken(n) ? [] : n.outputs))];
  for (const x of values) if (x) matchStandardActivation(v, e, ctx, x);
  return e.finish();
});
