// Horizontal fusion of the Q/K/V projections: three sibling GEMMs that read the same activation and feed one
// self-attention become one GEMM over the concatenated weights, and the attention reads its packed [B, S, 3*H*D]
// output in place (tsrt::FusedAttention packed=1). One launch instead of three, and a 3x wider N, which fills the
// GPU at small batch where a single 768-wide projection leaves most SMs idle.
import type { Node, Tensor } from '../ir/types.js';
import { attrInt } from '../ops/attrs.js';
import { attentionAttrMap, attentionAttrs } from '../ops/attention_fused.js';
import { runOnnxOp } from '../ops/fused.js';
import { GraphEdit, GraphView, recordFusion, recordRejection, scopedPass } from './patterns.js';
import type { PassContext } from './pass.js';

export const FUSE_QKV = 'fuse-qkv';

/** Epilogue attributes that must be equal for three GEMMs to share one kernel. */
const SHARED_ATTRS = ['transA', 'transB', 'alpha', 'beta', 'activation', 'activation_params'];

const attrKey = (n: Node) => JSON.stringify(SHARED_ATTRS.map((k) => n.attrs[k] ?? null));

/** Constants concatenated along `axis`, by the Concat op's CPU reference (bits copied as they are). */
function concatConst(ts: Tensor[], axis: number, opset: number): Tensor {
  return runOnnxOp('Concat', ts, { opset, runGraph: () => { throw new Error('Concat has no subgraphs'); } }, { axis: { kind: 'int', value: axis } }, 4);
}

/** Why the projections of `attn` cannot merge, or the three producers when they can. */
function projections(v: GraphView, attn: Node): Node[] | string {
  const [q, k, vv] = attn.inputs;
  if (!q || !k || !vv) return 'attention has no separate Q, K and V inputs';
  if (new Set([q, k, vv]).size !== 3) return 'Q, K and V are not three distinct values';
  const ps = [q, k, vv].map((x) => v.prod(x));
  if (ps.some((p) => !p || p.domain !== 'tsrt' || p.op !== 'FusedGemm')) return 'Q, K or V is not produced by a fused GEMM';
  const [pq, pk, pv] = ps as Node[];
  if (pq.inputs[0] !== pk.inputs[0] || pq.inputs[0] !== pv.inputs[0]) return 'Q, K and V project different inputs (cross-attention)';
  if (ps.some((p) => p!.inputs[3])) return 'a projection has a residual input';
  if (new Set(ps.map((p) => attrKey(p!))).size !== 1) return 'the projections differ in transposes, scaling or activation';
  if (ps.some((p) => !v.const(p!.inputs[1]))) return 'a projection weight is not a constant';
  const hasBias = ps.map((p) => !!p!.inputs[2]);
  if (new Set(hasBias).size !== 1) return 'only some projections have a bias';
  if (hasBias[0] && ps.some((p) => { const c = v.const(p!.inputs[2]); return !c || c.dims.length !== 1; })) return 'a bias is not a constant vector';
  for (const [p, x] of [[pq, q], [pk, k], [pv, vv]] as const) {
    if (v.graphOutputs.has(x) || v.usersOf(x).length !== 1) return `'${x}' is also read outside the attention`;
    if (attrInt(p, 'transA', 0)) return 'a projection transposes its input';
  }
  const ws = ps.map((p) => v.const(p!.inputs[1])!);
  if (ws.some((w) => w.dims.length !== 2 || w.dtype !== ws[0].dtype || w.dims.join() !== ws[0].dims.join())) return 'the weights differ in shape or dtype';
  return ps as Node[];
}

function fuseOne(v: GraphView, e: GraphEdit, ctx: PassContext, attn: Node): void {
  const a = attentionAttrs(attn);
  if (a.packed) return;
  const ps = projections(v, attn);
  if (typeof ps === 'string') {
    recordRejection(ctx, FUSE_QKV, 'QKV', [attn], ps);
    return;
  }
  if (e.anyTaken([...ps, attn])) return;
  const [pq] = ps;
  const transB = attrInt(pq, 'transB', 0);
  // N is the weight's axis 1 ([K, N]) or axis 0 with transB ([N, K]); the bias is [N]
  const w = e.addConst(`${pq.inputs[1]}_qkv`, concatConst(ps.map((p) => v.const(p.inputs[1])!), transB ? 0 : 1, v.g.opset));
  const bias = pq.inputs[2] ? e.addConst(`${pq.inputs[2]}_qkv`, concatConst(ps.map((p) => v.const(p.inputs[2])!), 0, v.g.opset)) : '';
  const out = e.fresh(`${attn.inputs[0]}_qkv`);
  const qt = v.g.valueTypes.get(attn.inputs[0]);
  if (qt) e.types.set(out, { dtype: qt.dtype, shape: [...qt.shape.slice(0, -1), 3 * a.numHeads * a.headDim] });
  const gemm: Node = { ...pq, name: e.fresh(`${pq.name}_qkv`), inputs: [pq.inputs[0], w, ...(bias ? [bias] : [])], outputs: [out] };
  const packed: Node = { ...attn, inputs: [out, '', '', ...attn.inputs.slice(3)], attrs: { ...attn.attrs, ...attentionAttrMap({ ...a, packed: true }) } };
  e.replace([...ps, attn], [gemm, packed]);
  recordFusion(ctx, FUSE_QKV, 'QKV', gemm.name, ps);
}

export const fuseQkv = scopedPass(FUSE_QKV, 2, (g, ctx, scope) => {
  const v = new GraphView(g, scope);
  const e = new GraphEdit(v);
  for (const n of v.order) if (n.domain === 'tsrt' && n.op === 'FusedAttention') fuseOne(v, e, ctx, n);
  return e.finish();
});
