// fuseAttention: multi-head attention as exporters write it, from the head split to the head merge, becomes one
// tsrt::FusedAttention node (one flash-attention kernel):
//
//   Q = Reshape(xq -> [B,Sq,H,D]) -> Transpose [0,2,1,3]          (K: -> [0,2,3,1], or [0,2,1,3] then [0,1,3,2])
//   S = MatMul(Q, K^T) [-> Mul/Div by a scalar]* [-> Add(mask)] -> Softmax(axis -1) -> MatMul(., V)
//     -> Transpose [0,2,1,3] [-> Reshape [B,Sq,H*D]]
//
// Scalar Mul/Div may also sit on the Q or K side (PyTorch's SDPA export scales both by sqrt(scale)); all of them
// multiply into one `scale`. The scale and mask ops may also come as a tsrt::Fused group (when fuseElementwise ran
// first). An all-zero constant mask is dropped. Every value between the head split and the head merge must have
// exactly one reader. Anything else leaves the graph as it is, with the reason in ctx.rejected.
//
// When Q, K and V are not such head splits, they may still be strided views (./views.ts) of the projections: any
// chain of Reshape/Squeeze/Unsqueeze/Transpose/Gather(constant) that reads Q, K and V as [B,S,H,D] out of values
// laid out [B,S,H*D], or out of one packed [B,S,3*H*D] projection (nn.MultiheadAttention's in_proj, as torchvision's
// ViT exports it: Reshape -> Unsqueeze -> Transpose -> Squeeze -> Gather 0/1/2 -> Reshape -> Transpose -> Reshape).
// The packed case becomes FusedAttention packed=1 on the projection's output. nn.MultiheadAttention runs sequence
// first ([S,B,E]): when the projection is a row-wise GEMM of Transpose(x [B,S,E]), the GEMM reads x instead, so its
// rows come out in [B,S] order (the sequence-first out-projection is turned around before fusion: ./row_order.ts).
import { fromF64, size, toF64 } from '../ir/tensor.js';
import type { Dim, Graph, Node, Tensor, TensorType } from '../ir/types.js';
import { attrGraph, attrInt, attrInts } from '../ops/attrs.js';
import { attentionAttrMap } from '../ops/attention_fused.js';
import type { Pass } from './pass.js';
import { GraphEdit, GraphView, broadcastsInto, recordFusion, recordRejection, scopedPass } from './patterns.js';
import { applyMove, canonical, contiguous, isMove, staticShape, transpose, type View } from './views.js';

const FUSE_ATTN = 'fuse-attention';
const KIND = 'Attention';

const Q_PERM = [0, 2, 1, 3];
const K_PERM = [0, 2, 3, 1];

const samePerm = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
const staticDims = (s: readonly Dim[]): s is number[] => s.every((d) => typeof d === 'number');

function permOf(v: GraphView, t: Node): number[] | undefined {
  const p = attrInts(t, 'perm');
  if (p) return p;
  const r = v.type(t.inputs[0])?.shape.length;
  return r === undefined ? undefined : Array.from({ length: r }, (_, i) => r - 1 - i);
}

/** `x` = scalar * y or y / scalar for a one-element constant: [y, factor]. */
function scalarScale(v: GraphView, n: Node): [string, number] | undefined {
  if (n.domain !== '' || n.inputs.length !== 2 || (n.op !== 'Mul' && n.op !== 'Div')) return undefined;
  const [a, b] = n.inputs;
  const rankOk = (c: string, other: string) => (v.const(c)?.dims.length ?? 9) <= (v.type(other)?.shape.length ?? -1);
  const sb = v.scalar(b);
  if (sb !== undefined && rankOk(b, a) && a !== b) return [a, n.op === 'Mul' ? sb : 1 / sb];
  const sa = n.op === 'Mul' ? v.scalar(a) : undefined;
  if (sa !== undefined && rankOk(a, b) && a !== b) return [b, sa];
  return undefined;
}

/** Why `x` cannot be absorbed into its one reader `by`, or undefined when it can. */
function notSole(v: GraphView, x: string, by: Node): string | undefined {
  const why = v.blocked(x);
  if (why) return why;
  return v.usersOf(x)[0] === by ? undefined : `'${x}' is not read by ${by.name}`;
}

// ---- Q / K / V head splits -------------------------------------------------------------------------------

interface HeadSplit {
  /** The value before the Reshape (FusedAttention reads it, through `flat` when it is not [B,S,H*D]). */
  input: string;
  /** Reshape dims [B,S,H*D] to put in front when `input` has another shape (same elements, same order). */
  flat?: number[];
  nodes: Node[];
  scale: number;
  b: Dim; s: Dim; h: number; d: number;
  dtype: TensorType['dtype'];
}

/** Walks back from the MatMul operand `x` through Transposes (and scalar Mul/Div when `scaled`) to the Reshape
 * [B,S,H*D] -> [B,S,H,D] of a head split, and checks that the composed permutation is `want`. */
function headSplit(v: GraphView, x: string, reader: Node, want: number[], scaled: boolean): HeadSplit | string {
  const nodes: Node[] = [];
  let perm = [0, 1, 2, 3]; // x[i] = reshaped[perm[i]]
  let scale = 1;
  let cur = x, by = reader;
  for (;;) {
    const why = notSole(v, cur, by);
    if (why) return why;
    const p = v.prod(cur);
    if (!p) return `'${cur}' is not computed in this graph (no head-split Reshape)`;
    if (p.domain !== '') return `'${cur}' comes from ${p.domain}::${p.op}, not a head-split Reshape/Transpose`;
    nodes.push(p);
    if (p.op === 'Reshape') break;
    if (p.op === 'Transpose') {
      const pp = permOf(v, p);
      if (!pp || pp.length !== 4) return `Transpose '${p.name}' is not 4-D`;
      perm = perm.map((j) => pp[j]);
      cur = p.inputs[0]; by = p;
      continue;
    }
    const sc = scaled ? scalarScale(v, p) : undefined;
    if (!sc) return `'${cur}' comes from ${p.op} '${p.name}', not a head-split Reshape/Transpose${scaled ? ' or a scalar Mul/Div' : ''}`;
    scale *= sc[1];
    cur = sc[0]; by = p;
  }
  if (!samePerm(perm, want)) return `the head split permutes [B,S,H,D] by [${perm}], not [${want}]`;
  const reshape = nodes[nodes.length - 1];
  const input = reshape.inputs[0];
  const it = v.type(input), rt = v.type(reshape.outputs[0]);
  if (!it || !rt) return `the type of '${it ? reshape.outputs[0] : input}' is unknown`;
  if (rt.shape.length !== 4) return `head-split Reshape '${reshape.name}' gives [${rt.shape}], not [B,S,H,D]`;
  const [b, s, h, d] = rt.shape;
  if (typeof h !== 'number' || typeof d !== 'number') return `head count and size [${rt.shape}] are not static`;
  const base = { input, nodes, scale, b, s, h, d, dtype: it.dtype };
  const is = it.shape;
  if (is.length === 3 && is[0] === b && is[1] === s && is[2] === h * d) return base;
  if (staticDims(is) && staticDims(rt.shape) && size(is) === size(rt.shape)) return { ...base, flat: [b as number, s as number, h * d] };
  return `head-split Reshape '${reshape.name}' reads [${is}], not [B,S,H*D] = [${b},${s},${h * d}]`;
}

// ---- Q / K / V as strided views of their projections -----------------------------------------------------

/** Nodes from a Q/K/V operand back to the value its data comes from (data movement, and scalar Mul/Div when
 * `scaled`), last node first. */
interface ViewChain { root: string; nodes: Node[]; scale: number }

function viewChain(v: GraphView, x: string, scaled: boolean): ViewChain {
  const nodes: Node[] = [];
  let scale = 1, cur = x;
  for (let p = v.prod(cur); p; p = v.prod(cur)) {
    const sc = scaled ? scalarScale(v, p) : undefined;
    if (sc) { scale *= sc[1]; cur = sc[0]; }
    else if (isMove(v, p)) cur = p.inputs[0];
    else break;
    nodes.push(p);
  }
  return { root: cur, nodes, scale };
}

/** The operand's view of its root, starting from `base` (the root's own layout, or the layout it has relative to
 * the GEMM it will be re-read from). */
function replay(v: GraphView, c: ViewChain, base: View): View | string {
  let view = base;
  for (const n of [...c.nodes].reverse()) {
    if (n.op === 'Mul' || n.op === 'Div') continue;
    const next = applyMove(v, n, view);
    if (!next) return `${n.op} '${n.name}' moves data in a way no strided view describes`;
    view = next;
  }
  return view;
}

/** Whether `view` reads a [B,H,S,D] operand (dims named by `order`) out of a [B,S,ld] buffer at column `off`. */
function fits(view: View, order: string, s: number, ld: number, d: number, off: number): boolean {
  const stride: Record<string, number> = { b: s * ld, s: ld, h: d, d: 1 };
  return view.offset === off && view.dims.every((atoms, i) => {
    const c = canonical(atoms);
    return c.length === 0 || (c.length === 1 && c[0].stride === stride[order[i]]);
  });
}

/** A row-wise GEMM (FusedGemm without residual, MatMul of a constant 2-D weight) of Transpose(x) that keeps the
 * feature axis last: it can read x instead, and its output is then the root's rows in x's order. */
interface Regemm { gemm: Node; transpose: Node; x: string; shape: number[]; perm: number[] }

function rowGemmOfTranspose(v: GraphView, root: string): Regemm | undefined {
  const g = v.prod(root);
  const rowWise = g && ((g.domain === 'tsrt' && g.op === 'FusedGemm' && !g.inputs[3] && !attrInt(g, 'transA', 0))
    || (g.domain === '' && g.op === 'MatMul' && v.const(g.inputs[1])?.dims.length === 2));
  const t = rowWise ? v.prod(g!.inputs[0]) : undefined;
  if (!t || t.domain !== '' || t.op !== 'Transpose' || v.blocked(t.outputs[0])) return undefined;
  const xs = staticShape(v, t.inputs[0]), rs = staticShape(v, root);
  const perm = permOf(v, t);
  if (!xs || !rs || !perm || xs.length < 2 || perm.length !== xs.length || perm[perm.length - 1] !== perm.length - 1) return undefined;
  return { gemm: g!, transpose: t, x: t.inputs[0], shape: [...xs.slice(0, -1), rs[rs.length - 1]], perm };
}

interface ViewSplits { q: HeadSplit; k: HeadSplit; v: HeadSplit; packed?: { input: string; flat?: number[] }; regemm?: Regemm }

/** Q, K and V as views of three [B,S,H*D] values, or of one packed [B,S,3*H*D] projection (see the top). */
function viewSplits(v: GraphView, qk: Node, pv: Node): ViewSplits | string {
  const ops = [qk.inputs[0], qk.inputs[1], pv.inputs[1]];
  const shapes = ops.map((x) => staticShape(v, x));
  if (shapes.some((s) => !s || s.length !== 4)) return 'Q, K and V are not 4-D with static shapes';
  const [[b, h, s, d], [, , , sk]] = shapes as number[][];
  const dtype = v.type(ops[0])?.dtype;
  if (!dtype) return `the type of '${ops[0]}' is unknown`;
  const chains = [viewChain(v, ops[0], true), viewChain(v, ops[1], true), viewChain(v, ops[2], false)];
  const orders = ['bhsd', 'bhds', 'bhsd'];
  const lens = [s, sk, sk];
  const split = (i: number, input: string, flat?: number[]): HeadSplit => ({ input, flat, nodes: chains[i].nodes, scale: chains[i].scale, b, s: lens[i], h, d, dtype });
  const rootSize = (x: string) => { const r = staticShape(v, x); return r && r.reduce((p, q) => p * q, 1); };
  const flatOf = (x: string, dims: number[]) => (staticShape(v, x)?.join() === dims.join() ? undefined : dims);
  const roots = new Set(chains.map((c) => c.root));
  if (roots.size === 3) {
    for (let i = 0; i < 3; i++) {
      const view = replay(v, chains[i], contiguous(staticShape(v, chains[i].root) ?? []));
      if (typeof view === 'string') return view;
      if (rootSize(chains[i].root) !== b * lens[i] * h * d || !fits(view, orders[i], lens[i], h * d, d, 0)) {
        return `${'QKV'[i]} is no [B,S,H*D] view of '${chains[i].root}'`;
      }
    }
    return { q: split(0, chains[0].root, flatOf(chains[0].root, [b, s, h * d])), k: split(1, chains[1].root, flatOf(chains[1].root, [b, sk, h * d])), v: split(2, chains[2].root, flatOf(chains[2].root, [b, sk, h * d])) };
  }
  if (roots.size !== 1) return 'Q, K and V come from two different projections';
  if (s !== sk) return `packed self-attention with query length ${s} and key length ${sk}`;
  const root = chains[0].root;
  const ld = 3 * h * d;
  if (rootSize(root) !== b * s * ld) return `'${root}' is not one [B,S,3*H*D] = [${b},${s},${ld}] projection`;
  const tryBase = (base: View): string | undefined => {
    for (let i = 0; i < 3; i++) {
      const view = replay(v, chains[i], base);
      if (typeof view === 'string') return view;
      if (!fits(view, orders[i], s, ld, d, i * h * d)) return `${'QKV'[i]} is not part ${i} of a [B,S,3*H*D] view of '${root}'`;
    }
    return undefined;
  };
  const parts = { q: split(0, root), k: split(1, root), v: split(2, root) };
  const re = rowGemmOfTranspose(v, root);
  if (re && !tryBase(transpose(contiguous(re.shape), re.perm))) {
    return { ...parts, packed: { input: root, flat: re.shape.join() === [b, s, ld].join() ? undefined : [b, s, ld] }, regemm: re };
  }
  const why = tryBase(contiguous(staticShape(v, root)!));
  return why ?? { ...parts, packed: { input: root, flat: flatOf(root, [b, s, ld]) } };
}

/** The longest chain of single-reader data movement after P.V [B,H,Sq,D] that ends in its heads merged, [B,Sq,H,D]
 * in memory order (a reshape of it), whatever the ops: Transpose [2,0,1,3] -> Reshape [Sq*B, H*D] at B = 1, say. */
function mergeView(v: GraphView, pv: Node): { nodes: Node[]; out: string } | undefined {
  const o = staticShape(v, pv.outputs[0]);
  if (!o || o.length !== 4) return undefined;
  const want = canonical(transpose(contiguous(o), Q_PERM).dims.flat());
  const same = (x: View) => { const c = canonical(x.dims.flat()); return x.offset === 0 && c.length === want.length && c.every((a, i) => a.size === want[i].size && a.stride === want[i].stride); };
  let view: View | undefined = contiguous(o), cur = pv.outputs[0];
  const nodes: Node[] = [];
  let best: { nodes: Node[]; out: string } | undefined;
  for (let n = v.sole(cur); n && isMove(v, n) && n.op !== 'Gather'; n = v.sole(cur)) {
    if (!(view = applyMove(v, n, view))) break;
    nodes.push(n);
    cur = n.outputs[0];
    if (same(view)) best = { nodes: [...nodes], out: cur };
  }
  return best;
}

/** Why the nodes that split heads cannot go: an output read outside them and `readers`. */
function escapes(v: GraphView, nodes: Node[], readers: Node[]): string | undefined {
  const inside = new Set([...nodes, ...readers]);
  for (const n of nodes) {
    for (const o of n.outputs) {
      if (v.graphOutputs.has(o)) return `'${o}' is a graph output`;
      const u = v.usersOf(o).find((x) => !inside.has(x));
      if (u) return `'${o}' is also read by ${u.op} '${u.name}'`;
    }
  }
  return undefined;
}

// ---- scores: Q.K^T -> scale -> mask -> Softmax ----------------------------------------------------------

/** What the walk from Softmax back to the Q.K^T MatMul met so far (backwards: the mask comes before scales). */
interface WalkState { scaled: boolean; masked: boolean }

/** A mask computed inside a tsrt::Fused group from the group's other inputs (a Cast of the mask input in fp16
 * builds): it moves out into an elementwise group of its own, `body` reading the outer values `inputs`. */
interface MaskGroup { body: Graph; inputs: string[] }
type MaskSource = string | Tensor | MaskGroup;
const isGroup = (m: MaskSource | undefined): m is MaskGroup => typeof m === 'object' && 'body' in m;

interface Scores {
  nodes: Node[];
  scale: number;
  /** Mask value, a small constant mask that sat inside a tsrt::Fused body, or the computation of one. */
  mask?: MaskSource;
  /** The Q.K^T MatMul (outer walks), undefined for walks inside a Fused body. */
  qk?: Node;
  state: WalkState;
}

/** Walks back from `x` (read by `by` alone; unchecked without `by`: a body output) to the value where `atStart`
 * holds: the output of the Q.K^T MatMul in the graph, or the scores input of a Fused body. */
function walkScores(v: GraphView, x: string, by: Node | undefined, st: WalkState, atStart: (x: string) => Node | true | undefined): Scores | string {
  const why = by && notSole(v, x, by);
  if (why) return why;
  const start = atStart(x);
  if (start === true) return { nodes: [], scale: 1, state: st };
  if (start) return { nodes: [start], scale: 1, qk: start, state: st };
  const p = v.prod(x);
  if (!p) return `'${x}' is not computed by a MatMul`;
  const sc = scalarScale(v, p);
  if (sc) {
    const r = walkScores(v, sc[0], p, { ...st, scaled: true }, atStart);
    return typeof r === 'string' ? r : { ...r, nodes: [...r.nodes, p], scale: r.scale * sc[1] };
  }
  if (p.domain === '' && p.op === 'Add' && p.inputs.length === 2) {
    if (st.scaled) return `the scores are scaled after the mask Add '${p.name}'`;
    if (st.masked) return `more than one Add ('${p.name}') before the Softmax`;
    const tries = p.inputs.map((o) => (p.inputs[0] === p.inputs[1] ? 'both Add operands are the same value' : walkScores(v, o, p, { ...st, masked: true }, atStart)));
    const ok = tries.flatMap((r, i) => (typeof r === 'string' ? [] : [{ r, mask: p.inputs[1 - i] }]));
    if (ok.length !== 1) {
      return ok.length ? `both operands of Add '${p.name}' come from Q.K^T` : `no operand of Add '${p.name}' comes from Q.K^T (${tries.join('; ')})`;
    }
    const { r, mask } = ok[0];
    return { ...r, nodes: [...r.nodes, p], mask };
  }
  if (p.domain === 'tsrt' && p.op === 'Fused') return fusedScores(v, p, st, atStart);
  return `'${x}' comes from ${p.domain ? p.domain + '::' : ''}${p.op} '${p.name}', not a scalar Mul/Div, an Add or the Q.K^T MatMul`;
}

/** A tsrt::Fused group on the scores: its body must be exactly scalar Mul/Div and at most one mask Add of one
 * body input (the scores); the mask is another input, a constant, or computed from the other inputs only. */
function fusedScores(v: GraphView, f: Node, st: WalkState, atStart: (x: string) => Node | true | undefined): Scores | string {
  const body = attrGraph(f, 'body');
  if (!body || body.outputs.length !== 1 || f.outputs.length !== 1) return `elementwise group '${f.name}' has more than one output`;
  const bv = new GraphView(body);
  const reasons: string[] = [];
  const found: Scores[] = [];
  body.inputs.forEach((bi, k) => {
    const inner = walkScores(bv, body.outputs[0].name, undefined, st, (x) => (x === bi.name ? true : undefined));
    if (typeof inner === 'string') { reasons.push(inner); return; }
    let mask = inner.mask;
    if (typeof mask === 'string') {
      const j = body.inputs.findIndex((x) => x.name === mask);
      const c = body.initializers.get(mask);
      if (j >= 0) mask = f.inputs[j];
      else if (c) mask = c;
      else {
        const g = maskGroup(bv, mask, bi.name);
        if (typeof g === 'string') { reasons.push(`elementwise group '${f.name}': ${g}`); return; }
        mask = { body: g, inputs: g.inputs.map((x) => f.inputs[body.inputs.findIndex((y) => y.name === x.name)]) };
      }
    }
    if (inner.nodes.length + (isGroup(mask) ? mask.body.nodes.length : 0) !== body.nodes.length) {
      reasons.push(`elementwise group '${f.name}' computes more than the scale and mask`);
      return;
    }
    const outer = walkScores(v, f.inputs[k], f, inner.state, atStart);
    if (typeof outer === 'string') { reasons.push(outer); return; }
    found.push({ ...outer, nodes: [...outer.nodes, f], scale: outer.scale * inner.scale, mask: outer.mask ?? mask });
  });
  if (found.length === 1) return found[0];
  return found.length ? `elementwise group '${f.name}' is ambiguous` : reasons.join('; ');
}

/** The nodes of body view `bv` that compute `x`, as a graph of their own; an error when they read `scores`. */
function maskGroup(bv: GraphView, x: string, scores: string): Graph | string {
  const body = bv.g;
  const nodes = new Set<Node>();
  const stack = [x];
  while (stack.length) {
    const y = stack.pop()!;
    const p = bv.prod(y);
    if (!p) {
      if (y === scores) return 'the mask depends on the scores';
      continue;
    }
    if (nodes.has(p)) continue;
    nodes.add(p);
    stack.push(...p.inputs.filter(Boolean));
  }
  const list = bv.order.filter((n) => nodes.has(n));
  const read = new Set(list.flatMap((n) => n.inputs));
  const type = bv.type(x);
  if (!type) return `the type of mask value '${x}' is unknown`;
  return {
    name: `${body.name}_mask`, opset: body.opset,
    inputs: body.inputs.filter((i) => read.has(i.name)), outputs: [{ name: x, type }], nodes: list,
    initializers: new Map([...body.initializers].filter(([k]) => read.has(k))),
    valueTypes: new Map([...body.valueTypes].filter(([k]) => list.some((n) => n.outputs.includes(k)))),
  };
}

// ---- the pass -------------------------------------------------------------------------------------------

interface Match {
  nodes: Node[];
  q: HeadSplit; k: HeadSplit; v: HeadSplit;
  scale: number;
  mask?: MaskSource;
  /** Value the fused node must produce, and its dims when they are not [B,Sq,H*D]. */
  out: string;
  outFlat?: number[];
  /** Q, K and V are parts of one packed projection read in place (and the GEMM that makes it, re-read in order). */
  packed?: ViewSplits['packed'];
  regemm?: Regemm;
}

function matchAttention(v: GraphView, sm: Node, pv: Node, guard?: NanGuard): Match | { reason: string; nodes: Node[] } {
  const fail = (reason: string, more: Node[] = []) => ({ reason, nodes: [...new Set([...more, sm, ...(guard?.nodes ?? []), pv])] });
  const st = v.type(sm.inputs[0]);
  if (!st || st.shape.length !== 4) return fail(`the scores are not 4-D [B,H,Sq,Sk] (${st ? `[${st.shape}]` : 'unknown type'})`);
  const axis = attrInt(sm, 'axis', -1);
  if ((axis < 0 ? axis + 4 : axis) !== 3) return fail(`Softmax axis ${axis} is not the key axis`);
  const probs = guard ? guard.out : sm.outputs[0];
  const pw = notSole(v, probs, pv) ?? (guard?.nodes.length === 1 ? notSole(v, sm.outputs[0], guard.nodes[0]) : undefined);
  if (pw) return fail(`attention probabilities: ${pw}`);
  const sc = walkScores(v, sm.inputs[0], sm, { scaled: false, masked: false }, (x) => {
    const p = v.prod(x);
    return p && p.op === 'MatMul' && p.domain === '' ? p : undefined;
  });
  if (typeof sc === 'string') return fail(sc);
  const qk = sc.qk!;
  const core = [...sc.nodes];
  const heads = [headSplit(v, qk.inputs[0], qk, Q_PERM, true), headSplit(v, qk.inputs[1], qk, K_PERM, true), headSplit(v, pv.inputs[1], pv, Q_PERM, false)];
  let views: ViewSplits | undefined;
  const bad = heads.findIndex((x) => typeof x === 'string');
  if (bad >= 0) {
    const vs = viewSplits(v, qk, pv);
    const why = typeof vs === 'string' ? vs : escapes(v, [...new Set([vs.q, vs.k, vs.v].flatMap((x) => x.nodes))], [qk, pv]);
    if (typeof vs === 'string' || why) return fail(`${'QKV'[bad]}: ${heads[bad]as string}; as views of the projections: ${why ?? vs}`, core);
    if (vs.regemm && v.usersOf(vs.packed!.input).some((u) => !vs.q.nodes.includes(u) && !vs.k.nodes.includes(u) && !vs.v.nodes.includes(u))) {
      return fail(`the sequence-first projection '${vs.packed!.input}' is also read outside the attention`, core);
    }
    views = vs;
  }
  const [q, k, vv] = views ? [views.q, views.k, views.v] : (heads as HeadSplit[]);
  const split = [...q.nodes, ...k.nodes, ...vv.nodes, ...(views?.regemm ? [views.regemm.transpose, views.regemm.gemm] : [])];
  if (new Set([q.dtype, k.dtype, vv.dtype]).size !== 1) return fail(`Q, K, V dtypes differ (${q.dtype}, ${k.dtype}, ${vv.dtype})`, [...split, ...core]);
  if (q.h !== k.h || q.h !== vv.h || q.d !== k.d || q.d !== vv.d) {
    return fail(`heads differ: Q ${q.h}x${q.d}, K ${k.h}x${k.d}, V ${vv.h}x${vv.d}`, [...split, ...core]);
  }
  if (q.b !== k.b || q.b !== vv.b || k.s !== vv.s) return fail(`batch or key length differ: Q [${q.b},${q.s}], K [${k.b},${k.s}], V [${vv.b},${vv.s}]`, [...split, ...core]);
  // head merge: Transpose(s) to [B,Sq,H,D], then optionally one Reshape
  const merge: Node[] = [];
  let perm = [0, 1, 2, 3];
  let cur = pv.outputs[0];
  for (;;) {
    const n = v.sole(cur);
    if (!n || n.domain !== '' || n.op !== 'Transpose') break;
    const pp = permOf(v, n);
    if (!pp || pp.length !== 4) break;
    perm = pp.map((j) => perm[j]);
    merge.push(n);
    cur = n.outputs[0];
  }
  const all = [...split, ...core, sm, ...(guard?.nodes ?? []), pv, ...merge];
  const mv = samePerm(perm, Q_PERM) ? undefined : mergeView(v, pv);
  if (mv) { all.splice(all.length - merge.length, merge.length, ...mv.nodes); cur = mv.out; }
  else if (!samePerm(perm, Q_PERM)) {
    const next = v.usersOf(cur).map((u) => `${u.op} '${u.name}'`).join(', ') || 'nothing';
    return fail(`no head merge after P.V: '${cur}' is [B,H,Sq,D] permuted by [${perm}] and read by ${v.blocked(cur) ?? next}`, all);
  } else {
    const r = v.sole(cur);
    if (r && r.domain === '' && r.op === 'Reshape') { merge.push(r); all.push(r); cur = r.outputs[0]; }
  }
  const ot = v.type(cur);
  const full = [q.b, q.s, q.h * q.d];
  let outFlat: number[] | undefined;
  if (!ot) return fail(`the type of '${cur}' is unknown`, all);
  if (!(ot.shape.length === 3 && ot.shape.every((d, i) => d === full[i]))) {
    if (!staticDims(ot.shape) || !staticDims(full) || size(ot.shape) !== size(full)) {
      return fail(`the merged output [${ot.shape}] is not [B,Sq,H*D] = [${full}]`, all);
    }
    outFlat = ot.shape;
  }
  let mask = sc.mask;
  if (mask !== undefined) {
    const mt = typeof mask === 'string' ? v.type(mask) : isGroup(mask) ? mask.body.outputs[0].type : { dtype: mask.dtype, shape: mask.dims };
    const scores: Dim[] = [q.b, q.h, q.s, k.s];
    if (!mt || !broadcastsInto(mt.shape, scores)) return fail(`the mask [${mt?.shape ?? '?'}] does not broadcast into the scores [${scores}]`, all);
    // an all-zero constant mask (HF's extended mask of an all-ones attention mask, folded) adds nothing
    const c = typeof mask === 'string' ? v.const(mask) : isGroup(mask) ? undefined : mask;
    if (c && toF64(c).every((x) => x === 0)) mask = undefined;
    // Where(IsNaN(P), 0, P) only matters for rows the mask blanks out entirely (-inf everywhere); the kernel's
    // output for such rows is not defined the same way, so the guard is dropped only under a finite constant mask
    else if (guard && !(c && toF64(c).every((x) => Number.isFinite(x)))) return fail('NaN guard after Softmax with a mask that may blank whole rows', all);
  }
  const scale = Math.fround(sc.scale * q.scale * k.scale);
  if (!Number.isFinite(scale)) return fail(`the combined scale ${scale} is not finite`, all);
  // order the nodes topologically for the report
  const nodes = [...new Set(all)].sort((a, b) => v.index.get(a)! - v.index.get(b)!);
  return { nodes, q, k, v: vv, scale, mask, out: cur, outFlat, packed: views?.packed, regemm: views?.regemm };
}

/** The mask input of the fused node: the value itself, a new initializer, or the output of the mask's own
 * elementwise group (appended to `into`). */
function maskValue(e: GraphEdit, name: string, m: MaskSource | undefined, into: Node[]): string | undefined {
  if (m === undefined || typeof m === 'string') return m;
  if (!isGroup(m)) return e.addConst(`${name}_mask`, m);
  const out = e.fresh(`${name}_mask`);
  e.types.set(out, m.body.outputs[0].type);
  into.push({ name: e.fresh(`${name}/mask`), op: 'Fused', domain: 'tsrt', inputs: m.inputs, outputs: [out], attrs: { body: { kind: 'graph', value: m.body } } });
  return out;
}

interface NanGuard { nodes: Node[]; out: string }

/** PyTorch's SDPA export guards fully masked rows with Where(IsNaN(P), 0, P) after the Softmax (as two nodes, or
 * as one tsrt::Fused of exactly those two). Returns the guard when `probs`' only reader is one. */
function nanGuard(v: GraphView, probs: string): NanGuard | undefined {
  const isGuard = (isnan: Node | undefined, where: Node | undefined, x: string) =>
    isnan?.op === 'IsNaN' && where?.op === 'Where' && where.inputs[0] === isnan.outputs[0] && isnan.inputs[0] === x && where.inputs[2] === x;
  const users = v.usersOf(probs);
  if (users.length === 2) {
    const isnan = users.find((n) => n.domain === '' && n.op === 'IsNaN'), w = users.find((n) => n.domain === '' && n.op === 'Where');
    const zero = w && v.const(w.inputs[1]);
    if (isGuard(isnan, w, probs) && zero && toF64(zero).every((z) => z === 0) && v.usersOf(isnan!.outputs[0]).length === 1) {
      return { nodes: [isnan!, w!], out: w!.outputs[0] };
    }
    return undefined;
  }
  const u = v.sole(probs);
  if (!u) return undefined;
  if (u.domain === 'tsrt' && u.op === 'Fused' && u.inputs.length === 1 && u.outputs.length === 1) {
    const body = u.attrs.body?.kind === 'graph' ? u.attrs.body.value : undefined;
    if (!body || body.nodes.length !== 2) return undefined;
    const [a, b] = body.nodes;
    const x = body.inputs[0].name;
    const zero = body.initializers.get(b.inputs[1]);
    if (isGuard(a, b, x) && zero && toF64(zero).every((z) => z === 0) && body.outputs[0].name === b.outputs[0]) return { nodes: [u], out: u.outputs[0] };
  }
  return undefined;
}

/** tsrt::FusedAttention for the attention blocks described at the top of this file. */
export const fuseAttention: Pass = scopedPass(FUSE_ATTN, 2, (g, ctx, scope) => {
  const v = new GraphView(g, scope);
  const e = new GraphEdit(v);
  let fused = 0;
  for (const sm of v.order) {
    if (sm.op !== 'Softmax' || sm.domain !== '' || e.taken(sm)) continue;
    const guard = nanGuard(v, sm.outputs[0]);
    const probs = guard ? guard.out : sm.outputs[0];
    const pv = v.usersOf(probs).find((u) => u.op === 'MatMul' && u.domain === '' && u.inputs[0] === probs);
    if (!pv) continue; // a Softmax that no P.V MatMul reads is no attention
    const m = matchAttention(v, sm, pv, guard);
    if ('reason' in m) { recordRejection(ctx, FUSE_ATTN, KIND, m.nodes, m.reason); continue; }
    if (e.anyTaken(m.nodes)) { recordRejection(ctx, FUSE_ATTN, KIND, m.nodes, 'overlaps an attention block fused already'); continue; }
    const name = e.fresh(`${sm.name}_attention`);
    const before: Node[] = [], after: Node[] = [];
    const reshape = (into: Node[], x: string, dims: Dim[], dtype: TensorType['dtype'], hint: string, out = e.fresh(`${name}_${hint}`)): string => {
      const shape = e.addConst(`${name}_${hint}_shape`, fromF64('int64', [dims.length], dims as number[]));
      into.push({ name: e.fresh(`${name}/${hint}`), op: 'Reshape', domain: '', inputs: [x, shape], outputs: [out], attrs: {} });
      e.types.set(out, { dtype, shape: dims });
      return out;
    };
    const input = (h: HeadSplit, hint: string) => (h.flat ? reshape(before, h.input, h.flat, h.dtype, hint) : h.input);
    let [qi, ki, vi] = m.packed ? [m.packed.input, '', ''] : [input(m.q, 'q_flat'), input(m.k, 'k_flat'), input(m.v, 'v_flat')];
    if (m.regemm) {
      // the projection reads x itself: its rows come out in [B,S] order, which is what the packed kernel reads
      const r = m.regemm, out = e.fresh(`${r.gemm.outputs[0]}_rows`);
      e.types.set(out, { dtype: m.q.dtype, shape: r.shape });
      before.push({ ...r.gemm, inputs: [r.x, ...r.gemm.inputs.slice(1)], outputs: [out] });
      qi = out;
    }
    if (m.packed?.flat) qi = reshape(before, qi, m.packed.flat, m.q.dtype, 'qkv_flat');
    const mask = maskValue(e, name, m.mask, before);
    // the fused node writes [B,Sq,H*D]; a Reshape gives the merged output its own dims where they differ
    const y = m.outFlat ? e.fresh(`${name}_out`) : m.out;
    if (m.outFlat) {
      e.types.set(y, { dtype: m.q.dtype, shape: [m.q.b, m.q.s, m.q.h * m.q.d] });
      reshape(after, y, m.outFlat, m.q.dtype, 'out_reshape', m.out);
    }
    const node: Node = {
      name, op: 'FusedAttention', domain: 'tsrt',
      inputs: mask ? [qi, ki, vi, mask] : [qi, ki, vi], outputs: [y],
      attrs: attentionAttrMap({ numHeads: m.q.h, headDim: m.q.d, scale: m.scale, maskKind: mask ? 'add' : 'none', packed: !!m.packed }),
    };
    e.replace(m.nodes, [...before, node, ...after]);
    // the projection GEMM of a sequence-first block is rewritten, not merged into the attention
    recordFusion(ctx, FUSE_ATTN, m.packed ? `${KIND}(packed QKV)` : KIND, name, m.nodes.filter((n) => n !== m.regemm?.gemm));
    fused++;
  }
  return fused ? e.finish() : g;
});
