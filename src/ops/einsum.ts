// Einsum: a general implementation. Each operand becomes a strided view with one label per distinct axis
// (repeated labels in a term read the diagonal). Operands are contracted left to right; each pairwise
// contraction is laid out as a batched matmul [batch, m, k] x [batch, k, n], so the common forms
// (bij,bjk->bik; ij,jk; bhqd,bhkd->bhqk) run at matmul speed. Ellipsis dims broadcast numpy-style.
import { GraphError } from '../errors.js';
import type { Dim, Node, Tensor } from '../ir/types.js';
import { fromF64, size, strides, toF64 } from '../ir/tensor.js';
import { attrString } from './attrs.js';
import { matmulF64 } from './gemm.js';
import { register } from './registry.js';
import { stridedOffsets } from './util.js';

/** Labels are character codes for letters and ELLIPSIS + i for the i-th (right-aligned) ellipsis dim. */
const ELLIPSIS = 1000;

export interface EinsumEquation {
  /** Label of every axis of every operand, repeats kept. */
  terms: number[][];
  /** Output labels in output order. */
  output: number[];
}

const labelName = (l: number) => (l >= ELLIPSIS ? `...[${l - ELLIPSIS}]` : String.fromCharCode(l));

/** Parses `equation` for operands of the given ranks. */
export function parseEinsum(node: Node, equation: string, ranks: number[]): EinsumEquation {
  const eq = equation.replace(/\s+/g, '');
  const bad = (why: string): never => {
    throw new GraphError(`Einsum equation '${equation}': ${why}`, node.name,
      'write terms of letters separated by commas, optionally "->" and the output term; "..." may stand for broadcast dims');
  };
  const sides = eq.split('->');
  if (sides.length > 2) bad('more than one "->"');
  const lhs = sides[0].split(',');
  if (lhs.length !== ranks.length) bad(`${lhs.length} terms for ${ranks.length} inputs`);
  const letters = (s: string): number[] => {
    if (!/^[A-Za-z]*$/.test(s)) bad(`unexpected character in '${s}'`);
    return [...s].map((c) => c.charCodeAt(0));
  };
  const split = (term: string): { pre: number[]; post: number[]; ell: boolean } => {
    const parts = term.split('...');
    if (parts.length > 2) bad(`term '${term}' has more than one ellipsis`);
    return { pre: letters(parts[0]), post: parts.length === 2 ? letters(parts[1]) : [], ell: parts.length === 2 };
  };
  const parsed = lhs.map(split);
  const nEll = parsed.map((p, i) => {
    const n = ranks[i] - p.pre.length - p.post.length;
    if (n < 0 || (!p.ell && n !== 0)) bad(`term '${lhs[i]}' does not match input ${i} of rank ${ranks[i]}`);
    return n;
  });
  const E = Math.max(0, ...nEll);
  const ellLabels = (n: number) => Array.from({ length: n }, (_, e) => ELLIPSIS + E - n + e);
  const terms = parsed.map((p, i) => [...p.pre, ...ellLabels(nEll[i]), ...p.post]);
  let output: number[];
  if (sides.length === 2) {
    const o = split(sides[1]);
    output = [...o.pre, ...(o.ell ? ellLabels(E) : []), ...o.post];
    const seen = new Set<number>();
    const all = new Set(terms.flat());
    for (const l of output) {
      if (seen.has(l)) bad(`output label '${labelName(l)}' appears twice`);
      if (!all.has(l)) bad(`output label '${labelName(l)}' does not appear in any input`);
      seen.add(l);
    }
  } else {
    const count = new Map<number, number>();
    for (const l of terms.flat()) if (l < ELLIPSIS) count.set(l, (count.get(l) ?? 0) + 1);
    output = [...ellLabels(E), ...[...count].filter(([, c]) => c === 1).map(([l]) => l).sort((a, b) => a - b)];
  }
  return { terms, output };
}

/** Size of every label across operands; size-1 dims broadcast. */
function labelSizes<D extends Dim>(node: Node, eq: EinsumEquation, shapes: D[][]): Map<number, D> {
  const sizes = new Map<number, D>();
  eq.terms.forEach((term, i) => term.forEach((l, k) => {
    const d = shapes[i][k];
    const prev = sizes.get(l);
    if (prev === undefined || prev === 1) sizes.set(l, d);
    else if (d !== 1 && typeof d === 'number' && typeof prev === 'number' && d !== prev) {
      throw new GraphError(`Einsum label '${labelName(l)}' has size ${prev} in one place and ${d} in input ${i}`, node.name,
        'every occurrence of a label must have the same size (or 1, which broadcasts)');
    } else if (typeof prev !== 'number' && typeof d === 'number') sizes.set(l, d);
  }));
  return sizes;
}

interface View {
  data: Float64Array;
  labels: number[];
  dims: number[];
  strides: number[];
}

/** Flat offsets of every index of `dims` under `st` (row-major order). */
/** A view of one operand with one axis per distinct label (repeated labels walk the diagonal). */
function operandView(node: Node, t: Tensor, term: number[]): View {
  const st = strides(t.dims);
  const labels: number[] = [], dims: number[] = [], vst: number[] = [];
  term.forEach((l, k) => {
    const j = labels.indexOf(l);
    if (j < 0) { labels.push(l); dims.push(t.dims[k]); vst.push(st[k]); return; }
    if (dims[j] !== t.dims[k]) {
      throw new GraphError(`Einsum label '${labelName(l)}' repeats in one term with sizes ${dims[j]} and ${t.dims[k]}`, node.name,
        'a repeated label takes a diagonal, so its dims must be equal');
    }
    vst[j] += st[k];
  });
  return { data: toF64(t), labels, dims, strides: vst };
}

/** Copy of `v` laid out as `out` (dims `outDims`, size-1 axes broadcast), summing every other label. */
function materialize(v: View, out: number[], outDims: number[]): View {
  const pos = out.map((l) => v.labels.indexOf(l));
  const contiguous = strides(outDims);
  if (out.length === v.labels.length && pos.every((p, i) => p === i && v.dims[p] === outDims[i] && v.strides[p] === contiguous[i])) {
    return v;
  }
  const oStr = pos.map((p) => (p < 0 || v.dims[p] === 1 ? 0 : v.strides[p]));
  const sum = v.labels.map((_, i) => i).filter((i) => !out.includes(v.labels[i]));
  const oOff = stridedOffsets(outDims, oStr);
  const sOff = stridedOffsets(sum.map((i) => v.dims[i]), sum.map((i) => v.strides[i]));
  const src = v.data, res = new Float64Array(oOff.length);
  const ns = sOff.length;
  if (ns === 1) {
    for (let k = 0; k < oOff.length; k++) res[k] = src[oOff[k]];
  } else {
    for (let k = 0; k < oOff.length; k++) {
      const base = oOff[k];
      let s = 0;
      for (let t = 0; t < ns; t++) s += src[base + sOff[t]];
      res[k] = s;
    }
  }
  return { data: res, labels: [...out], dims: [...outDims], strides: contiguous };
}

/** Contracts two views, keeping the labels in `keep`; shared labels not kept are summed. */
function contractPair(A: View, B: View, keep: Set<number>): View {
  const dimOf = (v: View, l: number) => { const i = v.labels.indexOf(l); return i < 0 ? 1 : v.dims[i]; };
  const sz = (l: number) => { const a = dimOf(A, l); return a === 1 ? dimOf(B, l) : a; };
  const inA = new Set(A.labels), inB = new Set(B.labels);
  const batch = A.labels.filter((l) => inB.has(l) && keep.has(l));
  const contr = A.labels.filter((l) => inB.has(l) && !keep.has(l));
  const mL = A.labels.filter((l) => !inB.has(l) && keep.has(l));
  const nL = B.labels.filter((l) => !inA.has(l) && keep.has(l));
  const prod = (ls: number[]) => ls.reduce((p, l) => p * sz(l), 1);
  const nb = prod(batch), M = prod(mL), K = prod(contr), N = prod(nL);
  const a = materialize(A, [...batch, ...mL, ...contr], [...batch, ...mL, ...contr].map(sz));
  // B is laid out [batch, n, k] so that the kernel reads it without repacking.
  const b = materialize(B, [...batch, ...nL, ...contr], [...batch, ...nL, ...contr].map(sz));
  const out = new Float64Array(nb * M * N);
  for (let i = 0; i < nb; i++) {
    matmulF64(a.data, b.data, out, { M, K, N, transB: true, aOff: i * M * K, bOff: i * K * N, outOff: i * M * N });
  }
  const labels = [...batch, ...mL, ...nL];
  const dims = labels.map(sz);
  return { data: out, labels, dims, strides: strides(dims) };
}

/** Evaluates an einsum in float64; returns values and dims. */
export function einsumF64(node: Node, equation: string, inputs: Tensor[]): { data: Float64Array; dims: number[] } {
  const eq = parseEinsum(node, equation, inputs.map((t) => t.dims.length));
  labelSizes(node, eq, inputs.map((t) => t.dims));
  let cur = operandView(node, inputs[0], eq.terms[0]);
  for (let i = 1; i < inputs.length; i++) {
    const keep = new Set([...eq.output, ...eq.terms.slice(i + 1).flat()]);
    cur = contractPair(cur, operandView(node, inputs[i], eq.terms[i]), keep);
  }
  const dims = eq.output.map((l) => cur.dims[cur.labels.indexOf(l)]);
  const res = materialize(cur, eq.output, dims);
  return { data: res.data, dims };
}

register({
  op: 'Einsum', since: 12, precision: 'always',
  supports: (node) => (attrString(node, 'equation') === undefined ? "the required attribute 'equation' is missing" : undefined),
  infer: (node, ins) => {
    const shapes = ins.map((t, i) => {
      if (!t) throw new GraphError(`input ${i} is missing`, node.name);
      return t.shape;
    });
    if (!shapes.length) throw new GraphError('Einsum needs at least one input', node.name);
    const eq = parseEinsum(node, attrString(node, 'equation', ''), shapes.map((s) => s.length));
    const sizes = labelSizes(node, eq, shapes);
    return [{ dtype: ins[0]!.dtype, shape: eq.output.map((l) => sizes.get(l) ?? 1) }];
  },
  cpu: (node, ins) => {
    const ts = ins.map((t, i) => {
      if (!t) throw new GraphError(`input ${i} is missing`, node.name);
      return t;
    });
    if (ts.some((t) => t.dtype !== ts[0].dtype)) {
      throw new GraphError(`inputs have different types (${ts.map((t) => t.dtype).join(', ')})`, node.name, 'cast them to one type');
    }
    const r = einsumF64(node, attrString(node, 'equation', ''), ts);
    return [fromF64(ts[0].dtype, r.dims, r.data)];
  },
});
