// Concat lowerings. ONNX Concat copies each input into its slot of the output (one launch per input).
// tsrt::ConcatInPlace (picked by the concat-in-place pass) copies nothing: each input's storage is placed inside the
// output with an offset alias, so its producer already wrote the slot. An input the lowered graph does not allow
// there after all (checked again here, input by input) is copied into its slot, so the result never depends on the
// pass having been right. An input of a strided concat can only have been placed by its producer (a conv storing its
// rows with a stride, lower_conv.ts, which aliases its output into the slot): it is found here already inside the
// output, at its slot's offset; any other strided input is copied.
import { TsrtError } from '../errors.js';
import { DTYPE_SIZE, size } from '../ir/tensor.js';
import { attrInt } from '../ops/attrs.js';
import { registerLowering, type LowerCtx } from './lower.js';
import { emitConcatSlot } from './movement.js';

/** Byte alignment every slice must keep: kernels load and store up to 16-byte vectors (uint4, cp.async). */
export const IN_PLACE_ALIGN = 16;

const normAxis = (a: number, r: number) => (a < 0 ? a + r : a);

/** One input of a Concat: its slot in the output (element offset along the axis, byte offset of its first element)
 * and, when it can live there, the storage root to place; `written`: its producer already stores it in the slot; else
 * why it is copied. */
export interface Slot { x: string; axisOffset: number; byteOffset: number; root?: string; written?: boolean; copy?: string }

/** How each input of the Concat `ctx.node` reaches its slot; `inPlace` false: every input is copied (plain Concat). */
export function concatSlots(ctx: LowerCtx, inPlace: boolean): Slot[] {
  const y = ctx.node.outputs[0];
  const out = ctx.t(y);
  const axis = normAxis(attrInt(ctx.node, 'axis', 0), out.dims.length);
  const strided = size(out.dims.slice(0, axis)) !== 1;
  const io = new Set([...ctx.graph.inputs, ...ctx.graph.outputs].map((v) => v.name));
  const esize = DTYPE_SIZE[out.dtype];
  const inner = size(out.dims.slice(axis + 1));
  const slots: Slot[] = [];
  let along = 0, at = 0;
  for (const x of ctx.node.inputs) {
    const t = ctx.t(x);
    const bytes = size(t.dims) * esize;
    // a strided slot's first element is at its axis offset in the first outer row
    const slot: Slot = { x, axisOffset: along, byteOffset: strided ? along * inner * esize : at };
    along += t.dims[axis];
    at += bytes;
    if (!bytes) continue; // nothing to write
    slots.push(slot);
    const { root, offset } = ctx.storage(x);
    if (root === y) {
      // placed by its producer (only a ConcatInPlace's placed convs alias into a concat output before it lowers)
      if (!inPlace || offset !== slot.byteOffset) {
        throw new TsrtError('INVALID_GRAPH', `internal: input '${x}' of ${ctx.node.op} '${ctx.node.name}' was stored at byte ${offset} of '${y}', its slot starts at ${slot.byteOffset}`,
          'rebuild without concat-in-place (--opt-level 1) and report the model');
      }
      slot.written = true;
      continue;
    }
    const rt = ctx.t(root);
    slot.copy = !inPlace ? 'plain Concat'
      : strided ? `the inputs are strided in the output (dims before axis ${axis} of [${out.dims}] are not all 1)`
      : offset !== 0 || size(rt.dims) * DTYPE_SIZE[rt.dtype] !== bytes ? `input '${x}' is a view of a larger buffer '${root}'`
      : ctx.constOf(root) ? `input '${x}' is the constant '${root}'`
      : io.has(root) ? `input '${x}' lives in the graph input/output '${root}'`
      : root === y || slots.some((s) => s !== slot && s.root === root) ? `input '${x}' shares its buffer with another input`
      : slot.byteOffset % IN_PLACE_ALIGN ? `input '${x}' would start at byte ${slot.byteOffset}, not ${IN_PLACE_ALIGN}-byte aligned`
      : undefined;
    if (!slot.copy) slot.root = root;
  }
  return slots;
}

/** Placed inputs become offset aliases of the output (their producers already wrote the slot); the rest are copied. */
function lowerConcat(ctx: LowerCtx, inPlace: boolean): void {
  const y = ctx.node.outputs[0];
  const out = ctx.t(y);
  const axis = normAxis(attrInt(ctx.node, 'axis', 0), out.dims.length);
  for (const s of concatSlots(ctx, inPlace)) {
    if (s.written) continue;
    if (s.root) ctx.alias(s.root, y, s.byteOffset);
    else ctx.kernel(emitConcatSlot({ dtype: out.dtype, outDims: out.dims, axis, inDims: ctx.t(s.x).dims, offset: s.axisOffset }), [ctx.v(s.x), ctx.v(y)]);
  }
}

registerLowering('Concat', (ctx) => lowerConcat(ctx, false));
registerLowering('ConcatInPlace', (ctx) => lowerConcat(ctx, true), 'tsrt');
