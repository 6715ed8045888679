// tsrt::FusedAttention: multi-head scaled dot-product attention over the projections as the Q/K/V GEMMs write them,
// so neither the head split (Reshape -> Transpose) nor the head merge (Transpose -> Reshape) is materialized:
//
//   Q [B, Sq, H*D], K [B, Sk, H*D], V [B, Sk, H*D], mask? (broadcasts to [B, H, Sq, Sk])
//   Y [B, Sq, H*D] = merge(Softmax(split(Q) · split(K)^T * scale [+ mask], axis -1) · split(V))
//
// attributes: num_heads (H), head_dim (D), scale (float), mask_kind ('none' | 'add'; 'add' takes the 4th input),
// packed (0 | 1): with 1, input 0 is the output of one fused QKV projection, QKV [B, S, 3*H*D] with Q, K and V in
// that column order, and inputs 1 and 2 are empty (self-attention: K and V have Q's sequence length).
// The CPU reference runs the ONNX ops the pass removed (Reshape, Transpose, MatMul, Mul, Add, Softmax), so a fused
// fp32 graph computes what the unfused one did (up to where the scale was applied: one multiply on the scores here);
// fp16 runs those ops in fp32, like the kernels.
import { GraphError } from '../errors.js';
import { DTYPE_ONNX, fromF64 } from '../ir/tensor.js';
import type { Attr, Dim, Node, Tensor, TensorType } from '../ir/types.js';
import { attrFloat, attrInt, attrString } from './attrs.js';
import { runOnnxOp } from './fused.js';
import { register, type CpuCtx } from './registry.js';
import { broadcastShapes, need } from './util.js';

export const MASK_KINDS = ['none', 'add'] as const;
export type MaskKind = (typeof MASK_KINDS)[number];

export interface AttentionAttrs { numHeads: number; headDim: number; scale: number; maskKind: MaskKind; packed?: boolean }

export function attentionAttrs(node: Node): AttentionAttrs {
  return {
    numHeads: attrInt(node, 'num_heads', 0),
    headDim: attrInt(node, 'head_dim', 0),
    scale: attrFloat(node, 'scale', 1),
    maskKind: attrString(node, 'mask_kind', 'none') as MaskKind,
    packed: attrInt(node, 'packed', 0) === 1,
  };
}

/** The node's attributes from their fields (the pass and tests build nodes with this). */
export function attentionAttrMap(a: AttentionAttrs): Record<string, Attr> {
  return {
    num_heads: { kind: 'int', value: a.numHeads },
    head_dim: { kind: 'int', value: a.headDim },
    scale: { kind: 'float', value: a.scale },
    mask_kind: { kind: 'string', value: a.maskKind },
    ...(a.packed ? { packed: { kind: 'int', value: 1 } } : {}),
  };
}

function check(node: Node): string | undefined {
  const a = attentionAttrs(node);
  if (!(MASK_KINDS as readonly string[]).includes(a.maskKind)) return `mask_kind '${a.maskKind}' is not one of ${MASK_KINDS.join(', ')}`;
  if (!Number.isInteger(a.numHeads) || a.numHeads < 1) return `num_heads ${a.numHeads} must be a positive integer`;
  if (!Number.isInteger(a.headDim) || a.headDim < 1) return `head_dim ${a.headDim} must be a positive integer`;
  if (!Number.isFinite(a.scale)) return `scale ${a.scale} is not finite`;
  const hasMask = !!node.inputs[3];
  if (hasMask !== (a.maskKind === 'add')) return `mask_kind '${a.maskKind}' ${hasMask ? 'with' : 'without'} a mask input`;
  const packed = attrInt(node, 'packed', 0);
  if (packed !== 0 && packed !== 1) return `packed ${packed} must be 0 or 1`;
  if (packed) {
    if (!node.inputs[0] || node.inputs[1] || node.inputs[2]) return 'packed attention takes QKV as input 0 and leaves inputs 1 and 2 empty';
  } else if (node.inputs.slice(0, 3).some((x) => !x)) return 'Q, K and V are required';
  return undefined;
}

const same = (a: Dim, b: Dim) => a === b || typeof a !== 'number' || typeof b !== 'number';

function infer(node: Node, ins: (TensorType | undefined)[]): TensorType[] {
  const why = check(node);
  if (why) throw new GraphError(why, node.name);
  const { numHeads: H, headDim: D, packed } = attentionAttrs(node);
  if (packed) {
    const P = need(node, ins, 0);
    if (P.shape.length !== 3 || !same(P.shape[2], 3 * H * D)) throw new GraphError(`packed QKV must be [B, S, 3*H*D] = [B, S, ${3 * H * D}], got [${P.shape}]`, node.name);
  }
  const [Q, K, V] = packed
    ? [0, 1, 2].map(() => ({ dtype: ins[0]!.dtype, shape: [ins[0]!.shape[0], ins[0]!.shape[1], H * D] }))
    : [0, 1, 2].map((i) => need(node, ins, i));
  for (const [nm, t] of [['Q', Q], ['K', K], ['V', V]] as const) {
    if (t.shape.length !== 3) throw new GraphError(`${nm} must be [B, S, H*D], got [${t.shape}]`, node.name);
    if (!same(t.shape[2], H * D)) throw new GraphError(`${nm} has ${t.shape[2]} features, num_heads*head_dim is ${H * D}`, node.name);
    if (t.dtype !== Q.dtype) throw new GraphError(`${nm} is ${t.dtype}, Q is ${Q.dtype}`, node.name);
  }
  if (!same(K.shape[0], Q.shape[0]) || !same(V.shape[0], Q.shape[0])) throw new GraphError(`batch of Q [${Q.shape}], K [${K.shape}], V [${V.shape}] differ`, node.name);
  if (!same(K.shape[1], V.shape[1])) throw new GraphError(`K [${K.shape}] and V [${V.shape}] have different sequence lengths`, node.name);
  const M = ins[3];
  if (M) {
    if (M.dtype !== Q.dtype) throw new GraphError(`mask is ${M.dtype}, Q is ${Q.dtype}`, node.name);
    const scores: Dim[] = [Q.shape[0], H, Q.shape[1], K.shape[1]];
    const b = broadcastShapes([scores, M.shape], node);
    if (b.length !== 4 || !b.every((d, i) => same(d, scores[i]))) {
      throw new GraphError(`mask [${M.shape}] does not broadcast into the scores [${scores}]`, node.name);
    }
  }
  return [{ dtype: Q.dtype, shape: [Q.shape[0], Q.shape[1], Q.shape[2]] }];
}

/** 16-bit float inputs compute in float32 (cast in, cast out), as the kernels keep scores and the softmax in fp32:
 * rounding the unscaled scores to fp16 would make the reference coarser than the GPU. */
function cpu(node: Node, ins: (Tensor | undefined)[], ctx: CpuCtx): Tensor[] {
  const { numHeads: H, headDim: D, scale } = attentionAttrs(node);
  const perm = (p: number[]): Record<string, Attr> => ({ perm: { kind: 'ints', value: p } });
  const shape = (dims: number[]) => fromF64('int64', [dims.length], dims);
  const op = (name: string, xs: (Tensor | undefined)[], attrs: Record<string, Attr> = {}) => runOnnxOp(name, xs, ctx, attrs);
  const dtype = need(node, ins, 0).dtype;
  const narrow = dtype === 'float16' || dtype === 'bfloat16';
  const cast = (t: Tensor, to: number) => op('Cast', [t], { to: { kind: 'int', value: to } });
  const wide = (t: Tensor) => (narrow ? cast(t, DTYPE_ONNX.float32) : t);
  const { packed } = attentionAttrs(node);
  const [Q, K, V] = [0, 1, 2].map((i) => wide(packed ? unpack(node, need(node, ins, 0), i, ctx) : need(node, ins, i)));
  const M = ins[3] && wide(ins[3]);
  const split = (t: Tensor, p: number[]) => op('Transpose', [op('Reshape', [t, shape([t.dims[0], t.dims[1], H, D])])], perm(p));
  const q = split(Q, [0, 2, 1, 3]), kt = split(K, [0, 2, 3, 1]), v = split(V, [0, 2, 1, 3]);
  let s = op('Mul', [op('MatMul', [q, kt]), fromF64(Q.dtype, [], [scale])]);
  if (M) s = op('Add', [s, M]);
  const p = op('Softmax', [s], { axis: { kind: 'int', value: -1 } });
  const o = op('Transpose', [op('MatMul', [p, v])], perm([0, 2, 1, 3]));
  const y = op('Reshape', [o, shape([Q.dims[0], Q.dims[1], H * D])]);
  return [narrow ? cast(y, DTYPE_ONNX[dtype]) : y];
}

/** Q (part 0), K (1) or V (2) of a packed [B, S, 3*H*D] projection. */
function unpack(node: Node, qkv: Tensor, part: number, ctx: CpuCtx): Tensor {
  const hd = qkv.dims[2] / 3;
  const ints = (v: number[]) => fromF64('int64', [v.length], v);
  return runOnnxOp('Slice', [qkv, ints([part * hd]), ints([(part + 1) * hd]), ints([2])], ctx, {});
}

register({
  op: 'FusedAttention', domain: 'tsrt', since: 1, precision: 'always',
  supports: check,
  infer,
  cpu,
});
