// The one place that owns stride, broadcast and view arithmetic for generated kernels. A View maps an
// output coordinate space onto an input buffer with per-dimension strides (0 = broadcast, negative =
// reversed) plus an offset, so broadcasting, Transpose, Slice, Expand and Squeeze are all just views
// that fuse into the consuming kernel (tinygrad's ShapeTracker idea, one level deep).
import { strides as contiguousStrides } from '../ir/tensor.js';

export interface View {
  /** Element strides of the input, one per output dimension. */
  strides: number[];
  /** Element offset of output coordinate 0. */
  offset: number;
}

export function contiguousView(dims: number[]): View {
  return { strides: contiguousStrides(dims), offset: 0 };
}

/** View of an input of `inDims` broadcast (numpy rules) to `outDims`. */
export function broadcastView(inDims: number[], outDims: number[]): View {
  const st = contiguousStrides(inDims);
  const r = outDims.length;
  const out = new Array<number>(r).fill(0);
  for (let i = 0; i < r; i++) {
    const j = i - (r - inDims.length);
    if (j >= 0 && inDims[j] !== 1) out[i] = st[j];
  }
  return { strides: out, offset: 0 };
}

/** View after transposing a tensor of `inDims` by `perm` (output dim i reads input dim perm[i]). */
export function transposeView(inDims: number[], perm: number[]): View {
  const st = contiguousStrides(inDims);
  return { strides: perm.map((p) => st[p]), offset: 0 };
}

/** Compose: `outer` indexes a tensor that is itself `inner`-viewed from a buffer. Valid when the outer view's
 * space is the inner tensor's (contiguous) space reinterpreted dim by dim, i.e. both have per-dim strides. */
export function composeViews(inner: View, outer: View, innerDims: number[]): View {
  // outer.strides are in units of the inner tensor's contiguous layout; map back through inner's strides.
  const cst = contiguousStrides(innerDims);
  const strides = outer.strides.map((s) => {
    if (s === 0) return 0;
    const sign = Math.sign(s);
    const a = Math.abs(s);
    const d = cst.findIndex((c, i) => c === a && innerDims[i] !== 1);
    if (d < 0) throw new Error('views do not compose');
    return sign * inner.strides[d];
  });
  let offset = inner.offset;
  let rem = outer.offset;
  for (let i = 0; i < innerDims.length; i++) {
    const c = Math.floor(rem / cst[i]);
    rem -= c * cst[i];
    offset += c * inner.strides[i];
  }
  return { strides, offset };
}

/** Merges adjacent output dims wherever every view stays affine across the merge; returns the smaller
 * problem. Fewer dims means fewer div/mod operations per element. */
export function collapse(outDims: number[], views: View[]): { dims: number[]; views: View[] } {
  const dims: number[] = [];
  const vs = views.map((v) => ({ strides: [] as number[], offset: v.offset }));
  for (let i = 0; i < outDims.length; i++) {
    const d = outDims[i];
    if (d === 1) continue; // size-1 dims contribute nothing
    const last = dims.length - 1;
    const mergeable = last >= 0 && views.every((v, k) => vs[k].strides[last] === v.strides[i] * d);
    if (mergeable) {
      dims[last] *= d;
      views.forEach((v, k) => { vs[k].strides[last] = v.strides[i]; });
    } else {
      dims.push(d);
      views.forEach((v, k) => vs[k].strides.push(v.strides[i]));
    }
  }
  if (!dims.length) { dims.push(1); vs.forEach((v) => v.strides.push(0)); }
  return { dims, views: vs };
}

/** C expression for the element offset of linear output index `idx` (a `long long`) under `view`,
 * for the output space `dims`. Constants are baked in so the compiler strength-reduces divisions. */
export function offsetExpr(dims: number[], view: View, idx: string): string {
  const terms: string[] = [];
  let inner = 1;
  for (let i = dims.length - 1; i >= 0; i--) {
    const s = view.strides[i];
    if (s !== 0 && dims[i] !== 1) {
      let coord = inner === 1 ? idx : `(${idx} / ${inner}LL)`;
      if (i > 0) coord = `(${coord} % ${dims[i]}LL)`;
      terms.push(s === 1 ? coord : `${coord} * ${s}LL`);
    }
    inner *= dims[i];
  }
  if (view.offset) terms.push(`${view.offset}LL`);
  return terms.length ? terms.join(' + ') : '0';
}

/** True when the view reads the buffer exactly in output order. */
export function isContiguous(dims: number[], view: View): boolean {
  const c = collapse(dims, [view]);
  return c.dims.length === 1 && (c.views[0].strides[0] === 1 || c.dims[0] === 1) && c.views[0].offset === 0;
}
