// gemm-row-order: a row-wise GEMM (MatMul of a constant 2-D weight, Gemm) whose output rows are only reordered
// afterwards (Reshape/Transpose among the row axes, the feature axis kept last) computes the same when its input
// rows are reordered instead. When the input is itself made by data movement, the two movements merge into one
// (Reshape -> Transpose -> Reshape from where the movement started), and the GEMM's output is the reordered value,
// so a residual Add after it joins the GEMM's epilogue.
//
// nn.MultiheadAttention runs sequence first: torchvision's ViT export merges the heads into [S*B, E] rows, runs the
// out-projection Gemm, and transposes the result back to [B,S,E]. After this pass the heads merge straight into
// [B,S,E] (Transpose [0,2,1,3] -> Reshape, what fuse-attention takes as the head merge) and the out-projection adds
// the residual in its epilogue.
import type { Node } from '../ir/types.js';
import { fromF64, size } from '../ir/tensor.js';
import { attrFloat, attrInt } from '../ops/attrs.js';
import { transposeTensor } from '../ops/util.js';
import type { Pass } from './pass.js';
import { GraphEdit, GraphView, recordFusion, recordRejection, scopedPass } from './patterns.js';
import { applyMove, canonical, compose, contiguous, isMove, staticShape, viewOps, type View } from './views.js';

const ROW_ORDER = 'gemm-row-order';
const KIND = 'GemmRowOrder';

/** The view is R's rows reordered, each row of `n` features kept whole and last: 'moved' when the order changes,
 * 'same' when it does not (a Transpose of size-1 axes, at batch 1). */
function rowOrder(view: View, n: number): 'moved' | 'same' | undefined {
  const last = canonical(view.dims[view.dims.length - 1] ?? []);
  const all = canonical(view.dims.flat());
  if (!(last.length === 1 && last[0].size === n && last[0].stride === 1)) return undefined;
  return all.length === 1 && all[0].stride === 1 ? 'same' : 'moved';
}

/** The longest chain of single-reader data movement after `r` that only reorders its rows (or transposes axes of
 * size 1): its nodes, end value and view of `r`. */
function reorderAfter(v: GraphView, r: string, shape: number[]): { nodes: Node[]; out: string; view: View } | undefined {
  let view: View | undefined = contiguous(shape), cur = r;
  const nodes: Node[] = [];
  let best: { nodes: Node[]; out: string; view: View } | undefined;
  for (let n = v.sole(cur); n && isMove(v, n) && n.op !== 'Gather'; n = v.sole(cur)) {
    view = applyMove(v, n, view);
    if (!view) break;
    nodes.push(n);
    cur = n.outputs[0];
    // rows in the same order are worth taking only when a Transpose (a kernel) goes with them
    const order = rowOrder(view, shape[shape.length - 1]);
    if (order === 'moved' || (order === 'same' && nodes.some((x) => x.op === 'Transpose'))) best = { nodes: [...nodes], out: cur, view };
  }
  return best;
}

/** Single-reader data movement that makes `a`: its nodes (last first), start value and view of the start. */
function movementBefore(v: GraphView, a: string): { nodes: Node[]; root: string; view: View } | undefined {
  const nodes: Node[] = [];
  let cur = a;
  for (let p = v.prod(cur); p && isMove(v, p) && (cur === a || !v.blocked(cur)); p = v.prod(cur)) { nodes.push(p); cur = p.inputs[0]; }
  const shape = staticShape(v, cur);
  if (!nodes.length || !shape) return undefined;
  let view: View | undefined = contiguous(shape);
  for (const n of [...nodes].reverse()) if (!(view = view && applyMove(v, n, view))) return undefined;
  return { nodes, root: cur, view };
}

/** The GEMM computing `out` from the reordered input `a2`: the same node when it can take `a2`'s rank, else
 * MatMul (+ Add of the bias) for a Gemm with unit alpha and beta. */
function regemm(v: GraphView, e: GraphEdit, g: Node, a2: string, out: string, rank: number, n: number): Node[] | string {
  if (g.op === 'MatMul' || rank === 2) return [{ ...g, name: e.fresh(`${g.name}_rows`), inputs: [a2, ...g.inputs.slice(1)], outputs: [out] }];
  if (attrFloat(g, 'alpha', 1) !== 1 || (g.inputs[2] && attrFloat(g, 'beta', 1) !== 1)) return `Gemm '${g.name}' scales by alpha or beta`;
  const c = g.inputs[2] ? v.const(g.inputs[2]) : undefined;
  if (g.inputs[2] && (!c || size(c.dims) !== n || c.dims.length > 2)) return `the bias of Gemm '${g.name}' is not a constant [${n}] vector`;
  const w = v.const(g.inputs[1])!;
  const wn = attrInt(g, 'transB', 0) ? e.addConst(`${g.inputs[1]}_t`, transposeTensor(w, [1, 0])) : g.inputs[1];
  const mm: Node = { name: e.fresh(`${g.name}_rows`), op: 'MatMul', domain: '', inputs: [a2, wn], outputs: [c ? e.fresh(`${out}_mm`) : out], attrs: {} };
  if (!c) return [mm];
  const bias = e.addConst(`${g.inputs[2]}_row`, { ...c, dims: [n] });
  return [mm, { name: e.fresh(`${g.name}_bias`), op: 'Add', domain: '', inputs: [mm.outputs[0], bias], outputs: [out], attrs: {} }];
}

export const gemmRowOrder: Pass = scopedPass(ROW_ORDER, 2, (g, ctx, scope) => {
  const v = new GraphView(g, scope);
  const e = new GraphEdit(v);
  for (const gm of v.order) {
    if (gm.domain !== '' || (gm.op !== 'MatMul' && gm.op !== 'Gemm') || e.taken(gm)) continue;
    const w = v.const(gm.inputs[1]);
    if (!w || w.dims.length !== 2 || (gm.op === 'Gemm' && attrInt(gm, 'transA', 0))) continue;
    const as = staticShape(v, gm.inputs[0]), rs = staticShape(v, gm.outputs[0]);
    if (!as || !rs || as.length < 2) continue;
    const after = reorderAfter(v, gm.outputs[0], rs);
    if (!after) continue;
    const reject = (why: string) => recordRejection(ctx, ROW_ORDER, KIND, [gm, ...after.nodes], why);
    const k = as[as.length - 1], n = rs[rs.length - 1];
    if (k > n) { reject(`the input rows (${k}) are wider than the output rows (${n}): reordering them moves more data`); continue; }
    const before = v.sole(gm.inputs[0]) === gm ? movementBefore(v, gm.inputs[0]) : undefined;
    if (!before) { reject(`the input '${gm.inputs[0]}' is not data movement read only by '${gm.name}': reordering it adds a copy`); continue; }
    // the rows of the input in the order `after` gives the output's, as a view of the input, then of its start
    const rows: View = {
      dims: [...after.view.dims.slice(0, -1).map((d) => d.map((a) => ({ size: a.size, stride: (a.stride / n) * k }))), [{ size: k, stride: 1 }]],
      offset: 0,
    };
    const full = compose(rows, before.view);
    const outShape = staticShape(v, after.out)!;
    const moved = e.fresh(`${after.out}_in`);
    const shapeConst = (hint: string, dims: number[]) => e.addConst(hint, fromF64('int64', [dims.length], dims));
    const moves = full && viewOps(before.root, staticShape(v, before.root)!, full, moved, e.fresh, shapeConst);
    if (!moves) { reject('the reordered input is no Reshape -> Transpose -> Reshape of where its movement starts'); continue; }
    const a2 = moves.length ? moved : before.root;
    if (moves.length) e.types.set(a2, { dtype: v.type(gm.inputs[0])!.dtype, shape: [...outShape.slice(0, -1), k] });
    const gemm = regemm(v, e, gm, a2, after.out, outShape.length, n);
    if (typeof gemm === 'string') { reject(gemm); continue; }
    const old = [...before.nodes, gm, ...after.nodes];
    e.replace(old, [...moves, ...gemm]);
    recordFusion(ctx, ROW_ORDER, KIND, gemm[gemm.length - 1].name, old);
  }
  return e.finish();
});
