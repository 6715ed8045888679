// fuse-relayout: a chain of Cast (one float conversion), Transpose and zero Pad with single readers becomes one
// tsrt::Relayout node, one kernel. The case it is for: an fp16 channels-last engine prepares an fp32 NCHW image in
// three kernels (Cast to fp16, Transpose to NHWC, and the pad from 3 to 8 channels that the tensor-core conv
// lowering adds for its 16-byte loads); here the pad becomes explicit (zero weights for the extra channels) and the
// three run as one pass over the image. At the outputs the same rule merges NHWC -> NCHW with the Cast back to fp32.
// An int8 engine's first conv reads QuantizeLinear(fp32 image) through the NCHW -> NHWC Transpose and its lowering
// pads 3 channels to 16 (one 16-byte int8 chunk): a symmetric per-tensor int8 QuantizeLinear is the chain's
// conversion (Relayout `scale`), so those three kernels become one that reads fp32 NCHW and writes int8 NHWC. The
// quantize moves after the transpose and pad, which changes nothing: it is elementwise and quantizes a zero to 0.
import type { DType, Node } from '../ir/types.js';
import { DTYPE_ONNX, DTYPE_SIZE, fromF64, ONNX_DTYPE, toF64 } from '../ir/tensor.js';
import { attrInt, attrInts, attrString } from '../ops/attrs.js';
import { runOnnxOp } from '../ops/fused.js';
import type { Pass } from './pass.js';
import { GraphEdit, GraphView, recordFusion, recordRejection, scopedPass } from './patterns.js';

const FUSE_RELAYOUT = 'fuse-relayout';
const FLOATS: DType[] = ['float32', 'float16', 'bfloat16'];
/** Element types a chain moves: floats, and int8 after (or without) a quantization. */
const MOVED: DType[] = [...FLOATS, 'int8'];
/** Channel multiple the tensor-core conv kernels load (16 bytes: 8 fp16/bf16, see lower_conv.ts; 16 int8,
 * lower_int8.ts). */
const TC_BYTES = 16;

interface Chain { input: string; nodes: Node[]; perm: number[]; pads: number[]; to?: DType; scale?: number }

/** The fp32 scale of a QuantizeLinear that a Relayout can take (float input, symmetric per-tensor int8: zero point
 * 0, and an fp32 scale, so x / scale is the fp32 division the Relayout kernel does), or why it cannot. */
function quantizeScale(v: GraphView, n: Node): number | string {
  const out = v.type(n.outputs[0])?.dtype, x = v.type(n.inputs[0])?.dtype;
  if (out !== 'int8') return `quantizes to ${out ?? 'an unknown type'}: the Relayout writes int8 only`;
  if (!x || !FLOATS.includes(x)) return `quantizes ${x ?? 'an unknown type'}, not a float`;
  if (attrInt(n, 'block_size', 0) || n.attrs.precision) return 'blocked quantization or a precision attribute';
  const s = v.const(n.inputs[1]), z = n.inputs[2] ? v.const(n.inputs[2]) : undefined;
  if (!s || s.data.length !== 1) return 'scale is not one constant (per-axis or computed)';
  if (s.dtype !== 'float32') return `${s.dtype} scale: the Relayout divides in fp32`;
  if (n.inputs[2] && (!z || z.data.length !== 1 || toF64(z)[0] !== 0)) return 'zero point is not a constant 0 (asymmetric)';
  const k = toF64(s)[0];
  return k > 0 && Number.isFinite(k) ? k : `scale ${k} is not positive and finite`;
}
const int8Scale = (v: GraphView, n: Node): number | undefined => { const k = quantizeScale(v, n); return typeof k === 'number' ? k : undefined; };

/** Pads of a constant-zero Pad over every axis, or undefined. */
function zeroPads(v: GraphView, n: Node, rank: number): number[] | undefined {
  if (attrString(n, 'mode', 'constant') !== 'constant' || n.inputs[3]) return undefined;
  const p = v.const(n.inputs[1]), c = n.inputs[2] ? v.const(n.inputs[2]) : undefined;
  if (!p || (n.inputs[2] && (!c || toF64(c)[0] !== 0))) return undefined;
  const pads = Array.from(toF64(p));
  return pads.length === 2 * rank && pads.every((x) => Number.isInteger(x) && x >= 0) ? pads : undefined;
}

/** The Cast/Transpose/Pad chain that ends in `x` (each inner value read once), as one Relayout's fields. */
function chainTo(v: GraphView, x: string): Chain | undefined {
  const nodes: Node[] = [];
  let cur = x, casts = 0;
  for (let p = v.prod(cur); p && p.domain === '' && (cur === x || !v.blocked(cur)); p = v.prod(cur)) {
    const t = v.type(p.inputs[0]), out = v.type(cur);
    if (!t || !out || !MOVED.includes(t.dtype)) break;
    const r = t.shape.length;
    // (at most one conversion: floats before it, its type after; the movement commutes with it)
    const ok = p.op === 'Transpose' ? (attrInts(p, 'perm')?.length ?? r) === r
      : p.op === 'Pad' ? !!zeroPads(v, p, r)
        : p.op === 'Cast' ? FLOATS.includes(t.dtype) && FLOATS.includes(out.dtype) && ++casts === 1
          : FLOATS.includes(t.dtype) && int8Scale(v, p) !== undefined && ++casts === 1;
    if (!ok) break;
    nodes.unshift(p);
    cur = p.inputs[0];
  }
  const t = v.type(cur);
  if (!nodes.length || !t) return undefined;
  // forward from the input: perm maps output axes to input axes; pads are in output coordinates
  const r = t.shape.length;
  let perm = Array.from({ length: r }, (_, i) => i), pads = new Array<number>(2 * r).fill(0);
  let to: DType | undefined, scale: number | undefined;
  for (const n of nodes) {
    if (n.op === 'Transpose') {
      const q = attrInts(n, 'perm') ?? perm.map((_, i) => r - 1 - i);
      perm = q.map((j) => perm[j]);
      pads = [...q.map((j) => pads[j]), ...q.map((j) => pads[j + r])];
    } else if (n.op === 'Pad') {
      const p = zeroPads(v, n, r)!;
      pads = pads.map((x, i) => x + p[i]);
    } else if (n.op === 'Cast') to = ONNX_DTYPE[attrInt(n, 'to', 0)];
    else { to = 'int8'; scale = int8Scale(v, n); }
  }
  return { input: cur, nodes, perm, pads, to, ...(scale !== undefined ? { scale } : {}) };
}

/** A channels-last tensor-core conv whose input channels the lowering would pad (fp16/bf16 FusedConv or int8 QConv,
 * dense, constant weights): its channels and the multiple they are padded to. */
function padsChannels(v: GraphView, n: Node): { c: number; multiple: number } | undefined {
  const conv = n.domain === 'tsrt' && (n.op === 'FusedConv' || n.op === 'QConv');
  if (!conv || attrString(n, 'layout', 'NCHW') !== 'NHWC' || attrInt(n, 'group', 1) !== 1) return undefined;
  const x = v.type(n.inputs[0]), w = v.const(n.inputs[1]);
  if (!x || !w || x.shape.length !== 4 || w.dims.length !== 4) return undefined;
  const ok = n.op === 'QConv' ? x.dtype === 'int8' : x.dtype === 'float16' || x.dtype === 'bfloat16';
  const c = x.shape[3], multiple = TC_BYTES / DTYPE_SIZE[x.dtype];
  return ok && typeof c === 'number' && c % multiple ? { c, multiple } : undefined;
}

export const fuseRelayout: Pass = scopedPass(FUSE_RELAYOUT, 2, (g, ctx, scope) => {
  const v = new GraphView(g, scope);
  const e = new GraphEdit(v);
  const relayout = (c: Chain, out: string, extraPads?: number[]): Node => {
    const pads = extraPads ? c.pads.map((p, i) => p + extraPads[i]) : c.pads;
    return {
      name: e.fresh(`${c.nodes[c.nodes.length - 1].name}_relayout`), op: 'Relayout', domain: 'tsrt', inputs: [c.input], outputs: [out],
      attrs: {
        ...(c.perm.some((p, i) => p !== i) ? { perm: { kind: 'ints', value: c.perm } } : {}),
        ...(pads.some((p) => p) ? { pads: { kind: 'ints', value: pads } } : {}),
        ...(c.to ? { to: { kind: 'int', value: DTYPE_ONNX[c.to] } } : {}),
        ...(c.scale !== undefined ? { scale: { kind: 'float', value: c.scale } } : {}),
      },
    };
  };
  // convs first: their channel padding joins the chain that prepares their input
  for (const conv of v.order) {
    const pc = padsChannels(v, conv);
    const chain = pc === undefined || e.taken(conv) ? undefined : chainTo(v, conv.inputs[0]);
    if (!chain || !pc || e.anyTaken(chain.nodes)) continue;
    const c = pc.c, cp = Math.ceil(c / pc.multiple) * pc.multiple;
    const x = v.type(conv.inputs[0])!;
    const padded = e.fresh(`${conv.inputs[0]}_c${cp}`);
    e.types.set(padded, { dtype: x.dtype, shape: [...x.shape.slice(0, 3), cp] });
    const w = v.const(conv.inputs[1])!;
    const wp = runOnnxOp('Pad', [w, fromF64('int64', [8], [0, 0, 0, 0, 0, cp - c, 0, 0])], { opset: v.g.opset, runGraph: () => { throw new Error('Pad has no subgraphs'); } }, {});
    const node = relayout(chain, padded, [0, 0, 0, 0, 0, 0, 0, cp - c]);
    const conv2: Node = { ...conv, inputs: [padded, e.addConst(`${conv.inputs[1]}_c${cp}`, wp), ...conv.inputs.slice(2)] };
    e.replace([...chain.nodes, conv], [node, conv2]);
    recordFusion(ctx, FUSE_RELAYOUT, [...chain.nodes.map((n) => n.op), 'ChannelPad'].join('+'), node.name, chain.nodes);
  }
  // then every other chain of two or more, from its last node
  for (const n of [...v.order].reverse()) {
    if (e.taken(n) || n.domain !== '' || !['Cast', 'Transpose', 'Pad'].includes(n.op)) continue;
    const chain = chainTo(v, n.outputs[0]);
    if (!chain || chain.nodes.length < 2 || e.anyTaken(chain.nodes)) continue;
    const node = relayout(chain, n.outputs[0]);
    e.replace(chain.nodes, [node]);
    recordFusion(ctx, FUSE_RELAYOUT, chain.nodes.map((x) => x.op).join('+'), node.name, chain.nodes);
  }
  // a QuantizeLinear left in front of movement or an int8 conv: why the Relayout could not take it
  for (const q of v.order) {
    if (e.taken(q) || q.op !== 'QuantizeLinear' || q.domain !== '') continue;
    const next = v.sole(q.outputs[0]);
    if (!next || !(next.domain === '' ? ['Transpose', 'Pad'].includes(next.op) : next.op === 'QConv')) continue;
    const k = quantizeScale(v, q);
    if (typeof k === 'string') recordRejection(ctx, FUSE_RELAYOUT, `QuantizeLinear+${next.op}`, [q, next], k);
  }
  return e.finish();
});
