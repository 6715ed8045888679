// Concat lowerings. ONNX Concat copies each input into its slot of the output (one launch per input).
// tsrt::ConcatInPlace (picked by the concat-in-place pass) copies nothing: each input's storage is placed inside the
// output with an offset alias, so its producer already wrote the slot. Where the lowered graph does not allow that
// after all, it falls back to the copies, so the result never depends on the pass having been right.
import { DTYPE_SIZE, size } from '../ir/tensor.js';
import { attrInt } from '../ops/attrs.js';
import { registerLowering, type LowerCtx } from './lower.js';
import { emitConcatSlot } from './movement.js';

/** Byte alignment every slice must keep: kernels load and store up to 16-byte vectors (uint4, cp.async). */
export const IN_PLACE_ALIGN = 16;

const normAxis = (a: number, r: number) => (a < 0 ? a + r : a);

function lowerConcatCopy(ctx: LowerCtx): void {
  const out = ctx.t(ctx.node.outputs[0]);
  const axis = normAxis(attrInt(ctx.node, 'axis', 0), out.dims.length);
  let off = 0;
  for (const x of ctx.node.inputs) {
    const t = ctx.t(x);
    if (size(t.dims)) ctx.kernel(emitConcatSlot({ dtype: out.dtype, outDims: out.dims, axis, inDims: t.dims, offset: off }), [ctx.v(x), ctx.v(ctx.node.outputs[0])]);
    off += t.dims[axis];
  }
}

/** Storage roots to place at their byte offsets in the output, or why the lowered graph does not allow it. */
export function inPlaceSlots(ctx: LowerCtx): { root: string; offset: number }[] | string {
  const y = ctx.node.outputs[0];
  const out = ctx.t(y);
  const axis = normAxis(attrInt(ctx.node, 'axis', 0), out.dims.length);
  if (size(out.dims.slice(0, axis)) !== 1) return `the inputs are strided in the output (dims before axis ${axis} of [${out.dims}] are not all 1)`;
  const io = new Set([...ctx.graph.inputs, ...ctx.graph.outputs].map((v) => v.name));
  const esize = DTYPE_SIZE[out.dtype];
  const slots: { root: string; offset: number }[] = [];
  let off = 0;
  for (const x of ctx.node.inputs) {
    const t = ctx.t(x);
    const bytes = size(t.dims) * esize;
    const at = off;
    off += bytes;
    if (!bytes) continue;
    const { root, offset } = ctx.storage(x);
    const rt = ctx.t(root);
    if (offset !== 0 || size(rt.dims) * DTYPE_SIZE[rt.dtype] !== bytes) return `input '${x}' is a view of a larger buffer '${root}'`;
    if (ctx.constOf(root)) return `input '${x}' is the constant '${root}'`;
    if (io.has(root)) return `input '${x}' lives in the graph input/output '${root}'`;
    if (root === y || slots.some((s) => s.root === root)) return `input '${x}' shares its buffer with another input`;
    if (at % IN_PLACE_ALIGN) return `input '${x}' would start at byte ${at}, not ${IN_PLACE_ALIGN}-byte aligned`;
    slots.push({ root, offset: at });
  }
  return slots;
}

registerLowering('Concat', lowerConcatCopy);

registerLowering('ConcatInPlace', (ctx) => {
  const slots = inPlaceSlots(ctx);
  if (typeof slots === 'string') { lowerConcatCopy(ctx); return; }
  for (const s of slots) ctx.alias(s.root, ctx.node.outputs[0], s.offset);
}, 'tsrt');
