// tsrt::Relayout: a chain of pure data movement and one dtype conversion as one op, so it runs as one kernel:
//
//   Y = Cast(Pad(SpaceToDepth(Transpose(X, perm), blocksize), pads, 0), to)
//   Y = QuantizeLinear(Pad(SpaceToDepth(Transpose(X, perm), blocksize), pads, 0), scale, int8 0)   (to = int8)
//
// attributes: perm (ints, default identity), pads (ints [begin..., end...] of Y's axes, >= 0, zeros written;
// default none), to (ONNX dtype, default X's), blocksize (int, default 1: no space-to-depth), scale (float: with a
// float X and to = int8, symmetric per-tensor quantization saturate(rint(x / scale)) with the fp32 division and
// half-to-even rounding of ONNX QuantizeLinear; an int8 X moves unconverted). The int8 form is the input of an int8
// model's first conv: quantize + NCHW->NHWC + the 16-channel pad of the int8 tensor-core conv in one kernel. With blocksize b > 1 the
// transposed tensor is read as channels-last [N, H, W, C] and becomes [N, ceil(H/b), ceil(W/b), b*b*C], channel
// (bh*b + bw)*C + c holding T[n, b*i + bh, b*j + bw, c] (ONNX SpaceToDepth's order; zeros past an odd edge); pads
// are in that space. The fuse-relayout pass builds it from Cast/Transpose/Pad chains: an fp32 NCHW model input cast to
// fp16, transposed to NHWC and padded from 3 to 8 channels for the tensor-core stem conv; space-to-depth-conv then
// sets blocksize 2 for a stride-2 stem (see space_to_depth.ts).
// The CPU reference runs those ONNX ops in that order (a Cast commutes with the movement, so the order the chain
// had does not matter).
import { GraphError } from '../errors.js';
import { DTYPE_ONNX, ONNX_DTYPE, fromF64, makeTensor } from '../ir/tensor.js';
import type { DType, Node, Tensor, TensorType } from '../ir/types.js';
import { attrInt, attrInts } from './attrs.js';
import { runOnnxOp } from './fused.js';
import { register, type InferCtx } from './registry.js';
import { need } from './util.js';

export interface RelayoutAttrs { perm: number[]; pads: number[]; to: DType; blocksize: number; scale?: number }

const FLOATS: DType[] = ['float32', 'float16', 'bfloat16'];

/** Why converting `from` to `to` (with quantization `scale`) is not a Relayout; undefined when it is. */
function conversionProblem(from: DType, to: DType | undefined, code: number, scale: number | undefined): string | undefined {
  if (to === 'int8' && FLOATS.includes(from)) {
    return scale !== undefined && scale > 0 && Number.isFinite(scale) ? undefined : `quantizes ${from} to int8 without a positive finite scale (got ${scale})`;
  }
  if (scale !== undefined) return `scale ${scale} is only for a float -> int8 quantization, not ${from} -> ${to ?? `dtype ${code}`}`;
  if (from === 'int8' && to === 'int8') return undefined;
  if (!to || !FLOATS.includes(to) || !FLOATS.includes(from)) return `converts ${from} to ${to ?? `dtype ${code}`}; only float32/float16/bfloat16 among themselves, float -> int8 (with scale) and int8 -> int8`;
  return undefined;
}

/** The node's fields for an input of `rank` and dtype `from`, or why they are invalid. */
export function relayoutAttrs(node: Node, rank: number, from: DType): RelayoutAttrs | string {
  const perm = attrInts(node, 'perm') ?? Array.from({ length: rank }, (_, i) => i);
  const pads = attrInts(node, 'pads') ?? new Array<number>(2 * rank).fill(0);
  const code = attrInt(node, 'to', DTYPE_ONNX[from]);
  const to = ONNX_DTYPE[code];
  const blocksize = attrInt(node, 'blocksize', 1);
  const scale = node.attrs.scale?.kind === 'float' ? node.attrs.scale.value : undefined;
  if (perm.length !== rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) return `perm [${perm}] is not a permutation of ${rank} axes`;
  if (pads.length !== 2 * rank || pads.some((p) => !Number.isInteger(p) || p < 0)) return `pads [${pads}] must be ${2 * rank} non-negative integers`;
  const bad = conversionProblem(from, to, code, scale);
  if (bad) return bad;
  if (!Number.isInteger(blocksize) || blocksize < 1) return `blocksize ${blocksize} must be a positive integer`;
  if (blocksize > 1 && rank !== 4) return `blocksize ${blocksize} needs a rank-4 channels-last tensor after perm, got rank ${rank}`;
  return { perm, pads, to, blocksize, ...(scale !== undefined ? { scale } : {}) };
}

const ints = (v: number[]) => fromF64('int64', [v.length], v);

function infer(node: Node, ins: (TensorType | undefined)[], ctx: InferCtx): TensorType[] {
  const x = need(node, ins, 0);
  const a = relayoutAttrs(node, x.shape.length, x.dtype);
  if (typeof a === 'string') throw new GraphError(a, node.name);
  const r = x.shape.length;
  const t = a.perm.map((p) => x.shape[p]);
  const b = a.blocksize;
  // a symbolic dim stays itself unless the blocking changes it
  const s = b === 1 ? t : t.map((d, i) => (i === 0 ? d : typeof d !== 'number' ? ctx.freshDim() : i === 3 ? d * b * b : Math.ceil(d / b)));
  return [{ dtype: a.to, shape: s.map((d, i) => (typeof d === 'number' ? d + a.pads[i] + a.pads[i + r] : d)) }];
}

/** SpaceToDepth of a channels-last tensor, odd H/W zero-extended: through ONNX's NCHW SpaceToDepth, so the
 * reference shares no index arithmetic with the kernel (codegen/relayout_s2d.ts). */
function spaceToDepthNhwc(t: Tensor, b: number, ctx: Parameters<typeof runOnnxOp>[2]): Tensor {
  const [, h, w] = t.dims;
  const eh = (b - (h % b)) % b, ew = (b - (w % b)) % b;
  let y = eh || ew ? runOnnxOp('Pad', [t, ints([0, 0, 0, 0, 0, eh, ew, 0])], ctx, {}) : t;
  y = runOnnxOp('Transpose', [y], ctx, { perm: { kind: 'ints', value: [0, 3, 1, 2] } });
  y = runOnnxOp('SpaceToDepth', [y], ctx, { blocksize: { kind: 'int', value: b } });
  return runOnnxOp('Transpose', [y], ctx, { perm: { kind: 'ints', value: [0, 2, 3, 1] } });
}

function cpu(node: Node, ins: (Tensor | undefined)[], ctx: Parameters<typeof runOnnxOp>[2]): Tensor[] {
  const x = need(node, ins, 0);
  const a = relayoutAttrs(node, x.dims.length, x.dtype);
  if (typeof a === 'string') throw new GraphError(a, node.name);
  let y = runOnnxOp('Transpose', [x], ctx, { perm: { kind: 'ints', value: a.perm } });
  if (a.blocksize > 1) y = spaceToDepthNhwc(y, a.blocksize, ctx);
  if (a.pads.some((p) => p)) y = runOnnxOp('Pad', [y, ints(a.pads)], ctx, {});
  // the quantize is the ONNX op itself (fp32 scale, int8 zero point 0), so the fused form rounds exactly as the
  // QuantizeLinear it replaced; the zeros of the padding quantize to 0
  if (a.scale !== undefined) y = runOnnxOp('QuantizeLinear', [y, fromF64('float32', [], [a.scale]), makeTensor('int8', [], Int8Array.of(0))], ctx, {});
  else if (a.to !== x.dtype) y = runOnnxOp('Cast', [y], ctx, { to: { kind: 'int', value: DTYPE_ONNX[a.to] } });
  return [y];
}

register({
  op: 'Relayout', domain: 'tsrt', since: 1, precision: 'follow',
  supports: (node) => {
    const p = attrInts(node, 'pads'), b = attrInt(node, 'blocksize', 1);
    if (p && p.some((v) => v < 0)) return `pads [${p}] must be non-negative`;
    const sc = node.attrs.scale;
    if (sc && (sc.kind !== 'float' || !(sc.value > 0) || !Number.isFinite(sc.value))) return 'scale must be a positive finite float';
    return Number.isInteger(b) && b >= 1 ? undefined : `blocksize ${b} must be a positive integer`;
  },
  infer,
  cpu,
});
