// fuse-relayout: a chain of Cast (one float conversion), Transpose and zero Pad with single readers becomes one
// tsrt::Relayout node, one kernel. The case it is for: an fp16 channels-last engine prepares an fp32 NCHW image in
// three kernels (Cast to fp16, Transpose to NHWC, and the pad from 3 to 8 channels that the tensor-core conv
// lowering adds for its 16-byte loads); here the pad becomes explicit (zero weights for the extra channels) and the
// three run as one pass over the image. At the outputs the same rule merges NHWC -> NCHW with the Cast back to fp32.
import type { DType, Node } from '../ir/types.js';
import { DTYPE_ONNX, fromF64, ONNX_DTYPE, toF64 } from '../ir/tensor.js';
import { attrInt, attrInts, attrString } from '../ops/attrs.js';
import { runOnnxOp } from '../ops/fused.js';
import type { Pass } from './pass.js';
import { GraphEdit, GraphView, recordFusion, scopedPass } from './patterns.js';

const FUSE_RELAYOUT = 'fuse-relayout';
const FLOATS: DType[] = ['float32', 'float16', 'bfloat16'];
/** Channel multiple the tensor-core conv kernels load (16 bytes of fp16/bf16); see lower_conv.ts. */
const TC_CHANNELS = 8;

interface Chain { input: string; nodes: Node[]; perm: number[]; pads: number[]; to?: DType }

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
    if (!t || !out || !FLOATS.includes(t.dtype)) break;
    const r = t.shape.length;
    const ok = p.op === 'Transpose' ? (attrInts(p, 'perm')?.length ?? r) === r
      : p.op === 'Pad' ? !!zeroPads(v, p, r)
        : p.op === 'Cast' && FLOATS.includes(out.dtype) && ++casts === 1;
    if (!ok) break;
    nodes.unshift(p);
    cur = p.inputs[0];
  }
  const t = v.type(cur);
  if (!nodes.length || !t) return undefined;
  // forward from the input: perm maps output axes to input axes; pads are in output coordinates
  const r = t.shape.length;
  let perm = Array.from({ length: r }, (_, i) => i), pads = new Array<number>(2 * r).fill(0);
  let to: DType | undefined;
  for (const n of nodes) {
    if (n.op === 'Transpose') {
      const q = attrInts(n, 'perm') ?? perm.map((_, i) => r - 1 - i);
      perm = q.map((j) => perm[j]);
      pads = [...q.map((j) => pads[j]), ...q.map((j) => pads[j + r])];
    } else if (n.op === 'Pad') {
      const p = zeroPads(v, n, r)!;
      pads = pads.map((x, i) => x + p[i]);
    } else to = ONNX_DTYPE[attrInt(n, 'to', 0)];
  }
  return { input: cur, nodes, perm, pads, to };
}

/** A channels-last tensor-core conv whose input channels the lowering would pad (fp16/bf16, dense, constant weights). */
function padsChannels(v: GraphView, n: Node): number | undefined {
  if (n.domain !== 'tsrt' || n.op !== 'FusedConv' || attrString(n, 'layout', 'NCHW') !== 'NHWC' || attrInt(n, 'group', 1) !== 1) return undefined;
  const x = v.type(n.inputs[0]), w = v.const(n.inputs[1]);
  if (!x || !w || x.shape.length !== 4 || w.dims.length !== 4 || (x.dtype !== 'float16' && x.dtype !== 'bfloat16')) return undefined;
  const c = x.shape[3];
  return typeof c === 'number' && c % TC_CHANNELS ? c : undefined;
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
      },
    };
  };
  // convs first: their channel padding joins the chain that prepares their input
  for (const conv of v.order) {
    const c = padsChannels(v, conv);
    const chain = c === undefined || e.taken(conv) ? undefined : chainTo(v, conv.inputs[0]);
    if (!chain || e.anyTaken(chain.nodes)) continue;
    const cp = Math.ceil(c! / TC_CHANNELS) * TC_CHANNELS;
    const x = v.type(conv.inputs[0])!;
    const padded = e.fresh(`${conv.inputs[0]}_c${cp}`);
    e.types.set(padded, { dtype: x.dtype, shape: [...x.shape.slice(0, 3), cp] });
    const w = v.const(conv.inputs[1])!;
    const wp = runOnnxOp('Pad', [w, fromF64('int64', [8], [0, 0, 0, 0, 0, cp - c!, 0, 0])], { opset: v.g.opset, runGraph: () => { throw new Error('Pad has no subgraphs'); } }, {});
    const node = relayout(chain, padded, [0, 0, 0, 0, 0, 0, 0, cp - c!]);
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
  return e.finish();
});
