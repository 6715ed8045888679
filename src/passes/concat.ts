// Concat elimination (TensorRT's concat fusion): the producers of a Concat write straight into their slices of the
// output buffer and the copy disappears. The pass marks such a Concat as tsrt::ConcatInPlace; its lowering
// (codegen/concat.ts) places each input inside the output with an offset alias, which the memory planner and the
// device runner resolve to `output base + byte offset`.
//
// Contiguous slices (every dim before the axis is 1: a batch-1 NCHW channel concat, any axis-0 concat): any producer
// can be placed, since its slice is an ordinary dense tensor that every other reader can read too.
// Strided slices (the inputs interleave in the output: batch > 1 NCHW, or a channels-last concat on C at any batch):
// an input's rows lie `ld` elements apart, so only a producer that stores with a row stride can be placed, and only
// when the concat is its one reader (nothing else could read the strided rows). The convs do (tc_conv.ts: tensor-core
// NHWC rows are output pixels, SIMT NCHW rows are images): the pass marks the conv with y_concat (the concat output),
// y_row_stride and y_offset (elements), and the conv's lowering stores its rows there and aliases its output into the
// concat; a conv lowered some other way (depthwise, host) keeps its own buffer and the concat lowering copies it.
//
// An input keeps a buffer of its own and is copied into its slot (with the reason in ctx.rejected) when it cannot
// live in a slice: a constant, a graph input or output, a value already placed in another Concat, the same value
// twice, a contiguous slice not 16-byte aligned, a strided slice whose producer is not such a conv; the other inputs
// are still placed.
//
// Channels-last: the layout pass leaves Concat in NCHW, so in an fp16 engine each input is an NHWC->NCHW Transpose
// of a conv output and the result goes back to NHWC for the next conv. Concat(T(a), T(b)) = T(Concat(a, b)) on the
// permuted axis, so those transposes are sunk below the Concat first, and cancel against the ones after it.
import { size, DTYPE_SIZE } from '../ir/tensor.js';
import { nameGenerator } from '../ir/graph.js';
import type { Graph, Node } from '../ir/types.js';
import { attrInt, attrInts } from '../ops/attrs.js';
import { cancelTransposes } from './layout.js';
import type { Pass, PassContext } from './pass.js';
import { GraphView, recordFusion, recordRejection } from './patterns.js';

const NAME = 'concat-in-place';
/** Must match codegen/concat.ts IN_PLACE_ALIGN (kept apart so passes do not import codegen). */
const ALIGN = 16;
/** Ops the CUDA lowering turns into views of their first input (an alias step, no kernel writes the output). */
const VIEW_OPS = new Set(['Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Identity', 'Dropout']);

/** The value whose buffer `x` is after the view ops the lowering aliases (Transpose too when it moves only size-1 dims). */
function storageValue(v: GraphView, x: string): string {
  for (;;) {
    const p = v.prod(x);
    if (!p || p.domain !== '') return x;
    if (VIEW_OPS.has(p.op) && !p.outputs.slice(1).some(Boolean)) { x = p.inputs[0]; continue; }
    if (p.op === 'Transpose') {
      const dims = v.type(p.inputs[0])?.shape;
      if (!dims) return x;
      const perm = attrInts(p, 'perm') ?? dims.map((_, i) => dims.length - 1 - i);
      const order = perm.filter((k) => dims[k] !== 1);
      if (order.every((k, i) => i === 0 || order[i - 1] < k)) { x = p.inputs[0]; continue; }
    }
    return x;
  }
}

/** The attributes a placed conv carries (read by codegen/lower_conv.ts): the concat output its rows go into, the
 * elements between its output rows there, and where its first row starts. */
export const PLACED_ATTRS = { into: 'y_concat', ld: 'y_row_stride', offset: 'y_offset' } as const;

/** Why `x` (an input of a strided concat on `axis`) cannot be stored straight into its rows of the output; undefined: it
 * can (its producer is a conv whose lowering takes a row stride, and the concat is its one reader). */
function stridedWhy(v: GraphView, n: Node, x: string, axis: number): string | undefined {
  const p = v.prod(x);
  if (!p) return `input '${x}' has no producer`;
  const users = v.usersOf(x).filter((u) => u !== n);
  if (users.length) return `input '${x}' (${p.op} ${p.name}) is also read by ${users.map((u) => `${u.op} ${u.name}`).join(', ')}, which could not read its strided rows`;
  const conv = (p.op === 'Conv' && p.domain === '') || (p.op === 'FusedConv' && p.domain === 'tsrt');
  if (!conv) return `input '${x}' is written by ${p.op} ${p.name}, which stores dense rows only (strided stores: tensor-core and SIMT convs)`;
  if (p.outputs[0] !== x) return `input '${x}' is not the output of ${p.name}`;
  const xt = v.type(p.inputs[0]), yt = v.type(x);
  if (xt?.shape.length !== 4 || yt?.shape.length !== 4) return `input '${x}' is not a 2-D conv output`;
  if (!v.const(p.inputs[1])) return `input '${x}': ${p.name} has non-constant weights (it runs on the host)`;
  const nhwc = p.attrs.layout?.kind === 'string' && p.attrs.layout.value === 'NHWC';
  // the row the conv kernels can stride: an output pixel's channels (NHWC, axis 3) or an image's (NCHW, axis 1)
  if (axis !== (nhwc ? 3 : 1)) return `input '${x}' comes from ${nhwc ? 'an NHWC' : 'an NCHW'} conv, whose channel axis is not the concat axis ${axis}`;
  const c = xt.shape[nhwc ? 3 : 1], k = yt.shape[nhwc ? 3 : 1], group = attrInt(p, 'group', 1);
  if (group > 1 && group === c && k === c) return `input '${x}' comes from a depthwise conv (${p.name}), whose kernel stores dense rows only`;
  return undefined;
}

/** Sinks Transposes below Concats whose inputs are all transposed the same way (module header), then cancels the
 * transposes that meet their inverse. */
function sinkTransposes(g: Graph, ctx: PassContext): Graph {
  const v = new GraphView(g);
  const fresh = nameGenerator(g);
  const valueTypes = new Map(g.valueTypes);
  const replaced = new Map<Node, Node[]>();
  for (const n of v.order) {
    if (n.op !== 'Concat' || n.domain !== '' || n.outputs.length !== 1 || !n.inputs.length) continue;
    const ts = n.inputs.map((x) => v.prod(x));
    const perms = ts.map((t) => (t && t.op === 'Transpose' && t.domain === '' ? attrInts(t, 'perm') : undefined));
    const perm = perms[0];
    if (!perm || perms.some((q) => q?.join() !== perm.join())) continue;
    const yt = v.type(n.outputs[0]);
    if (!yt || yt.shape.length !== perm.length) continue;
    const a = attrInt(n, 'axis', g.opset < 4 ? 1 : 0);
    const axis = a < 0 ? a + perm.length : a;
    const inner = fresh(`${n.outputs[0]}_${perm.join('')}`);
    // Transpose(perm): out dim i is in dim perm[i], so the inputs' own axis is perm[axis] and inner's shape is yt's
    // shape through the inverse permutation
    const shape = perm.map(() => yt.shape[0]);
    perm.forEach((pi, i) => { shape[pi] = yt.shape[i]; });
    valueTypes.set(inner, { dtype: yt.dtype, shape });
    const cat: Node = { ...n, inputs: ts.map((t) => t!.inputs[0]), outputs: [inner], attrs: { ...n.attrs, axis: { kind: 'int', value: perm[axis] } } };
    const back: Node = { name: fresh(`transpose_${n.name}`), op: 'Transpose', domain: '', inputs: [inner], outputs: [n.outputs[0]], attrs: { perm: { kind: 'ints', value: perm } } };
    replaced.set(n, [cat, back]);
    recordFusion(ctx, NAME, `Transpose sunk below Concat (${ts.length} inputs, now on axis ${perm[axis]})`, n.name, [n, ...ts.map((t) => t!)]);
  }
  if (!replaced.size) return g;
  // a sunk Concat's new Transpose may feed the next Concat (DenseNet's chains): repeat until nothing moves
  return sinkTransposes(cancelTransposes({ ...g, valueTypes, nodes: g.nodes.flatMap((n) => replaced.get(n) ?? [n]) }), ctx);
}

export const concatInPlace: Pass = {
  name: NAME, level: 2,
  run(g0, ctx) {
    const g = sinkTransposes(g0, ctx);
    const v = new GraphView(g);
    const io = new Set([...g.inputs, ...g.outputs].map((x) => x.name));
    /** storage value -> the ConcatInPlace whose output now holds it */
    const placed = new Map<string, string>();
    const replaced = new Map<Node, Node>();
    for (const n of v.order) {
      if (n.op !== 'Concat' || n.domain !== '' || n.outputs.length !== 1) continue;
      const producers = n.inputs.map((x) => v.prod(x)).filter((p): p is Node => !!p);
      const roots: string[] = [];
      /** inputs that keep their own buffer and are copied into their slot, with the reason */
      const copied: { x: string; why: string }[] = [];
      /** convs that store their rows straight into a strided slice */
      const strided: Node[] = [];
      const whole = ((): string | undefined => {
        const yt = v.type(n.outputs[0]);
        if (!yt || yt.shape.some((d) => typeof d !== 'number')) return 'output shape is not static';
        const dims = yt.shape as number[];
        const rank = dims.length;
        const a = attrInt(n, 'axis', g.opset < 4 ? 1 : 0);
        const axis = a < 0 ? a + rank : a;
        const interleaved = size(dims.slice(0, axis)) !== 1;
        const inner = size(dims.slice(axis + 1)), ld = size(dims.slice(axis));
        let at = 0, along = 0;
        for (const x of n.inputs) {
          const t = v.type(x);
          if (!t || t.shape.some((d) => typeof d !== 'number')) return `input '${x}' has no static shape`;
          const bytes = size(t.shape as number[]) * DTYPE_SIZE[t.dtype];
          const start = at, offset = along * inner;
          at += bytes;
          along += t.shape[axis] as number;
          if (!bytes) continue;
          const s = storageValue(v, x);
          const view = s === x ? '' : `a view of '${s}', `;
          const why = io.has(x) || io.has(s) ? `input '${x}' is ${view}a graph input or output (it keeps its own buffer)`
            : v.const(s) ? `input '${x}' is ${view}a constant`
            : placed.has(s) ? `input '${x}' already lives in the output of ${placed.get(s)}`
            : roots.includes(s) ? `input '${x}' shares its buffer with another input of this Concat`
            : interleaved ? stridedWhy(v, n, x, axis)
            : start % ALIGN ? `input '${x}' would start at byte ${start} of the output, not ${ALIGN}-byte aligned`
            : undefined;
          if (why) { copied.push({ x, why }); continue; }
          roots.push(s);
          if (!interleaved) continue;
          // the conv stores its rows at y + row * ld + offset (no alignment needed: it narrows its stores to fit)
          const p = v.prod(x)!;
          strided.push({
            ...p, op: 'FusedConv', domain: 'tsrt',
            attrs: { ...p.attrs, [PLACED_ATTRS.into]: { kind: 'string', value: n.outputs[0] }, [PLACED_ATTRS.ld]: { kind: 'int', value: ld }, [PLACED_ATTRS.offset]: { kind: 'int', value: offset } },
          });
        }
        if (roots.length) return undefined;
        const head = interleaved ? `concat on axis ${axis} of [${dims}] interleaves its inputs (strided slices): ` : '';
        return head + copied.map((c) => c.why).join('; ');
      })();
      if (whole) { recordRejection(ctx, NAME, 'Concat', [n, ...producers], whole); continue; }
      // the axis written out: ONNX Concat before opset 4 defaulted to 1, tsrt ops read a missing axis as 0
      const by: Node = { ...n, op: 'ConcatInPlace', domain: 'tsrt', attrs: { ...n.attrs, axis: { kind: 'int', value: attrInt(n, 'axis', g.opset < 4 ? 1 : 0) } } };
      for (const s of roots) placed.set(s, by.name);
      replaced.set(n, by);
      for (const c of strided) replaced.set(v.prod(c.outputs[0])!, c);
      const from = n.inputs.map((x) => v.prod(x)?.op ?? (v.const(x) ? 'constant' : 'input'));
      recordFusion(ctx, NAME, `Concat(${from.join(',')})${strided.length ? `: ${strided.length} conv${strided.length > 1 ? 's' : ''} store strided rows` : ''}`, by.name, [n, ...strided.map((c) => v.prod(c.outputs[0])!)]);
      // the rest of this Concat still runs: one copy kernel per input left out
      for (const c of copied) recordRejection(ctx, NAME, 'Concat input', [n, ...(v.prod(c.x) ? [v.prod(c.x)!] : [])], `${c.why}: copied into its slot`);
    }
    if (!replaced.size) return g;
    return { ...g, nodes: g.nodes.map((n) => replaced.get(n) ?? n) };
  },
};
