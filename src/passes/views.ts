// Strided views: where the elements of a value computed by pure data movement (Reshape, Squeeze, Unsqueeze, Flatten,
// Identity, Transpose, Gather of one constant index) sit in the value the movement started from (its root). A pass
// that wants to read the root in place (an attention kernel reading a packed QKV projection, a GEMM reading its rows
// in another order) follows the movement here instead of matching every chain of ops exporters write.
//
// A view is one list of atoms per dim, outer first: a dim of atoms (n1, s1), (n2, s2) has n1*n2 indices, and index
// i1*n2 + i2 sits at offset + i1*s1 + i2*s2 in the root (row-major). Reshapes regroup and split atoms, so a merge of
// dims that are not adjacent in memory (a Reshape after a Transpose) stays exact, and a later split undoes it.
import type { Node } from '../ir/types.js';
import { attrInt, attrInts } from '../ops/attrs.js';
import type { GraphView } from './patterns.js';

export interface Atom { size: number; stride: number }
export interface View { dims: Atom[][]; offset: number }

const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);

/** The row-major layout of a value of `shape` (the root itself). */
export function contiguous(shape: readonly number[]): View {
  const dims: Atom[][] = [];
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) { dims.unshift(shape[i] === 1 ? [] : [{ size: shape[i], stride: s }]); s *= shape[i]; }
  return { dims, offset: 0 };
}

export const viewShape = (v: View) => v.dims.map((d) => prod(d.map((a) => a.size)));

/** Size-1 atoms dropped and neighbours that are one run of memory merged: equal views have equal forms. */
export function canonical(atoms: readonly Atom[]): Atom[] {
  const out: Atom[] = [];
  for (const a of atoms) {
    if (a.size === 1) continue;
    const last = out[out.length - 1];
    if (last && last.stride === a.stride * a.size) out[out.length - 1] = { size: last.size * a.size, stride: a.stride };
    else out.push({ ...a });
  }
  return out;
}

/** The same elements in the same order, grouped into `shape` (undefined when sizes differ or an atom would split
 * unevenly). */
export function reshape(v: View, shape: readonly number[]): View | undefined {
  const atoms = v.dims.flat().filter((a) => a.size !== 1);
  if (shape.some((d) => !Number.isInteger(d) || d < 1) || prod(shape) !== prod(atoms.map((a) => a.size))) return undefined;
  const dims: Atom[][] = [];
  let k = 0;
  let cur: Atom | undefined = atoms[k];
  for (const want of shape) {
    const dim: Atom[] = [];
    let rem = want;
    while (rem > 1) {
      if (!cur) return undefined;
      if (cur.size <= rem) {
        if (rem % cur.size) return undefined;
        dim.push(cur); rem /= cur.size; cur = atoms[++k];
      } else {
        if (cur.size % rem) return undefined;
        const inner: number = cur.size / rem;
        dim.push({ size: rem, stride: cur.stride * inner });
        cur = { size: inner, stride: cur.stride };
        rem = 1;
      }
    }
    dims.push(dim);
  }
  return { dims, offset: v.offset };
}

export const transpose = (v: View, perm: readonly number[]): View => ({ dims: perm.map((p) => v.dims[p]), offset: v.offset });

/** Index `index` of dim `axis`, the dim dropped (Gather of a scalar index). */
export function select(v: View, axis: number, index: number): View | undefined {
  const atoms = v.dims[axis];
  const n = prod(atoms.map((a) => a.size));
  const i = index < 0 ? index + n : index;
  if (!Number.isInteger(i) || i < 0 || i >= n) return undefined;
  let offset = v.offset, rest = i;
  for (let j = atoms.length - 1; j >= 0; j--) { offset += (rest % atoms[j].size) * atoms[j].stride; rest = Math.floor(rest / atoms[j].size); }
  return { dims: v.dims.filter((_, k) => k !== axis), offset };
}

/** Ops that only move data and keep the element order (their output is a reshape of their input). */
const SAME_ORDER = new Set(['Reshape', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity']);

export const staticShape = (g: GraphView, x: string): number[] | undefined => {
  const t = g.type(x);
  return t && t.shape.every((d): d is number => typeof d === 'number') ? t.shape : undefined;
};

/** `v` moved by node `n` (a data-movement op of input 0), or undefined when `n` is no such op or needs a copy that
 * no view expresses (dynamic shapes, a Gather of several or computed indices). */
export function applyMove(g: GraphView, n: Node, v: View): View | undefined {
  if (n.domain !== '' || !n.outputs[0]) return undefined;
  const out = staticShape(g, n.outputs[0]);
  if (!out) return undefined;
  if (SAME_ORDER.has(n.op)) return reshape(v, out);
  if (n.op === 'Transpose') {
    const r = v.dims.length;
    const perm = attrInts(n, 'perm') ?? Array.from({ length: r }, (_, i) => r - 1 - i);
    return perm.length === r && [...perm].sort((a, b) => a - b).every((p, i) => p === i) ? transpose(v, perm) : undefined;
  }
  if (n.op === 'Gather') {
    const idx = g.const(n.inputs[1]);
    if (!idx || idx.dims.reduce((a, b) => a * b, 1) !== 1 || (idx.dtype !== 'int64' && idx.dtype !== 'int32')) return undefined;
    const r = v.dims.length;
    const a = attrInt(n, 'axis', 0);
    const axis = a < 0 ? a + r : a;
    if (axis < 0 || axis >= r) return undefined;
    const s = select(v, axis, Number(idx.data[0]));
    return s && reshape(s, out);
  }
  return undefined;
}

/** A data-movement op that `applyMove` may follow (a Gather only of one constant index). */
export function isMove(g: GraphView, n: Node): boolean {
  if (n.domain !== '') return false;
  if (n.op !== 'Gather') return SAME_ORDER.has(n.op) || n.op === 'Transpose';
  const idx = g.const(n.inputs[1]);
  return !!idx && idx.dims.reduce((a, b) => a * b, 1) === 1;
}

/** `view` of a row-major root as Reshape(split) -> Transpose(perm) -> Reshape(shape): possible when the view reads
 * every element of a root of `total` elements once, from offset 0. */
export interface Steps { split: number[]; perm: number[]; shape: number[] }

export function steps(view: View, total: number): Steps | undefined {
  const atoms = canonical(view.dims.flat());
  if (view.offset !== 0 || prod(atoms.map((a) => a.size)) !== total) return undefined;
  const byStride = [...atoms].sort((a, b) => b.stride - a.stride);
  let s = 1;
  for (let i = byStride.length - 1; i >= 0; i--) { if (byStride[i].stride !== s) return undefined; s *= byStride[i].size; }
  return { split: byStride.map((a) => a.size), perm: atoms.map((a) => byStride.indexOf(a)), shape: viewShape(view) };
}

/** `outer` (a view of a row-major value R) of R's own view `inner` of a root: the view of the root it reads. */
export function compose(outer: View, inner: View): View | undefined {
  const st = steps(outer, prod(viewShape(inner)));
  const a = st && reshape(inner, st.split);
  const b = a && reshape(transpose(a, st.perm), st.shape);
  return b;
}

/** Ops that give `view` of the row-major value `root` (of `rootShape`) as value `out`: Reshape -> Transpose ->
 * Reshape, a no-op step left out (none at all when the view is `root` itself); undefined when no such ops exist
 * (see `steps`). */
export function viewOps(root: string, rootShape: readonly number[], view: View, out: string,
  fresh: (hint: string) => string, shapeConst: (hint: string, dims: number[]) => string): Node[] | undefined {
  const st = steps(view, prod(rootShape));
  if (!st) return undefined;
  const nodes: Node[] = [];
  let cur = root;
  const step = (op: string, inputs: string[], attrs: Node['attrs'], last: boolean) => {
    const y = last ? out : fresh(`${out}_${op.toLowerCase()}`);
    nodes.push({ name: fresh(`${out}/${op}`), op, domain: '', inputs, outputs: [y], attrs });
    cur = y;
  };
  const identity = st.perm.every((p, i) => p === i);
  const needSplit = !identity && st.split.join() !== rootShape.join();
  const needMerge = (identity ? rootShape : st.split).join() !== st.shape.join();
  if (needSplit) step('Reshape', [cur, shapeConst(`${out}_split`, st.split)], {}, false);
  if (!identity) step('Transpose', [cur], { perm: { kind: 'ints', value: st.perm } }, !needMerge);
  if (needMerge) step('Reshape', [cur, shapeConst(`${out}_shape`, st.shape)], {}, true);
  return nodes;
}
