// Concat elimination (TensorRT's concat fusion): when each input of a Concat is a contiguous chunk of its output
// (every dim before the axis is 1: a batch-1 NCHW channel concat, any axis-0 concat), the producers can write
// straight into their slices of the output buffer and the copy disappears. The pass marks such a Concat as
// tsrt::ConcatInPlace; its lowering (codegen/concat.ts) places each input inside the output with an offset alias,
// which the memory planner and the device runner resolve to `output base + byte offset`.
//
// An input keeps a buffer of its own and is copied into its slot (with the reason in ctx.rejected) when it cannot
// live in a slice: a constant, a graph input or output, a value already placed in another Concat, the same value
// twice, a slice not 16-byte aligned; the other inputs are still placed. A strided concat (inputs interleave in the
// output) stays a plain Concat: producers write contiguous tensors, so it needs strided stores this pass does not
// arrange.
import { size, DTYPE_SIZE } from '../ir/tensor.js';
import type { Node } from '../ir/types.js';
import { attrInt, attrInts } from '../ops/attrs.js';
import type { Pass } from './pass.js';
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

export const concatInPlace: Pass = {
  name: NAME, level: 2,
  run(g, ctx) {
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
      const whole = ((): string | undefined => {
        const yt = v.type(n.outputs[0]);
        if (!yt || yt.shape.some((d) => typeof d !== 'number')) return 'output shape is not static';
        const dims = yt.shape as number[];
        const rank = dims.length;
        const a = attrInt(n, 'axis', g.opset < 4 ? 1 : 0);
        const axis = a < 0 ? a + rank : a;
        if (size(dims.slice(0, axis)) !== 1) {
          const ops = [...new Set(producers.map((p) => p.op))].join('/') || 'none';
          return `concat on axis ${axis} of [${dims}] interleaves its inputs (dims before the axis are not all 1); producers (${ops}) write contiguous tensors, a strided store would be needed`;
        }
        let at = 0;
        for (const x of n.inputs) {
          const t = v.type(x);
          if (!t || t.shape.some((d) => typeof d !== 'number')) return `input '${x}' has no static shape`;
          const bytes = size(t.shape as number[]) * DTYPE_SIZE[t.dtype];
          const start = at;
          at += bytes;
          if (!bytes) continue;
          const s = storageValue(v, x);
          const view = s === x ? '' : `a view of '${s}', `;
          const why = io.has(x) || io.has(s) ? `input '${x}' is ${view}a graph input or output (it keeps its own buffer)`
            : v.const(s) ? `input '${x}' is ${view}a constant`
            : placed.has(s) ? `input '${x}' already lives in the output of ${placed.get(s)}`
            : roots.includes(s) ? `input '${x}' shares its buffer with another input of this Concat`
            : start % ALIGN ? `input '${x}' would start at byte ${start} of the output, not ${ALIGN}-byte aligned`
            : undefined;
          if (why) copied.push({ x, why }); else roots.push(s);
        }
        return roots.length ? undefined : copied.map((c) => c.why).join('; ');
      })();
      if (whole) { recordRejection(ctx, NAME, 'Concat', [n, ...producers], whole); continue; }
      // the axis written out: ONNX Concat before opset 4 defaulted to 1, tsrt ops read a missing axis as 0
      const by: Node = { ...n, op: 'ConcatInPlace', domain: 'tsrt', attrs: { ...n.attrs, axis: { kind: 'int', value: attrInt(n, 'axis', g.opset < 4 ? 1 : 0) } } };
      for (const s of roots) placed.set(s, by.name);
      replaced.set(n, by);
      const from = n.inputs.map((x) => v.prod(x)?.op ?? (v.const(x) ? 'constant' : 'input'));
      recordFusion(ctx, NAME, `Concat(${from.join(',')})`, by.name, [n]);
      // the rest of this Concat still runs: one copy kernel per input left out
      for (const c of copied) recordRejection(ctx, NAME, 'Concat input', [n, ...(v.prod(c.x) ? [v.prod(c.x)!] : [])], `${c.why}: copied into its slot`);
    }
    if (!replaced.size) return g;
    return { ...g, nodes: g.nodes.map((n) => replaced.get(n) ?? n) };
  },
};
