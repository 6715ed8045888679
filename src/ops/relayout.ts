// tsrt::Relayout: a chain of pure data movement and one dtype conversion as one op, so it runs as one kernel:
//
//   Y = Cast(Pad(Transpose(X, perm), pads, 0), to)
//
// attributes: perm (ints, default identity), pads (ints [begin..., end...] of Y's axes, >= 0, zeros written;
// default none), to (ONNX dtype, default X's). The fuse-relayout pass builds it from Cast/Transpose/Pad chains: an fp32
// NCHW model input cast to fp16, transposed to NHWC and padded from 3 to 8 channels for the tensor-core stem conv.
// The CPU reference runs those ONNX ops in that order (a Cast commutes with the movement, so the order the chain
// had does not matter).
import { GraphError } from '../errors.js';
import { DTYPE_ONNX, ONNX_DTYPE, fromF64 } from '../ir/tensor.js';
import type { DType, Node, Tensor, TensorType } from '../ir/types.js';
import { attrInt, attrInts } from './attrs.js';
import { runOnnxOp } from './fused.js';
import { register } from './registry.js';
import { need } from './util.js';

export interface RelayoutAttrs { perm: number[]; pads: number[]; to: DType }

const FLOATS: DType[] = ['float32', 'float16', 'bfloat16'];

/** The node's fields for an input of `rank` and dtype `from`, or why they are invalid. */
export function relayoutAttrs(node: Node, rank: number, from: DType): RelayoutAttrs | string {
  const perm = attrInts(node, 'perm') ?? Array.from({ length: rank }, (_, i) => i);
  const pads = attrInts(node, 'pads') ?? new Array<number>(2 * rank).fill(0);
  const code = attrInt(node, 'to', DTYPE_ONNX[from]);
  const to = ONNX_DTYPE[code];
  if (perm.length !== rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) return `perm [${perm}] is not a permutation of ${rank} axes`;
  if (pads.length !== 2 * rank || pads.some((p) => !Number.isInteger(p) || p < 0)) return `pads [${pads}] must be ${2 * rank} non-negative integers`;
  if (!to || !FLOATS.includes(to) || !FLOATS.includes(from)) return `converts ${from} to ${to ?? `dtype ${code}`}; only float32/float16/bfloat16`;
  return { perm, pads, to };
}

const ints = (v: number[]) => fromF64('int64', [v.length], v);

function infer(node: Node, ins: (TensorType | undefined)[]): TensorType[] {
  const x = need(node, ins, 0);
  const a = relayoutAttrs(node, x.shape.length, x.dtype);
  if (typeof a === 'string') throw new GraphError(a, node.name);
  const r = x.shape.length;
  return [{ dtype: a.to, shape: a.perm.map((p, i) => { const d = x.shape[p]; return typeof d === 'number' ? d + a.pads[i] + a.pads[i + r] : d; }) }];
}

function cpu(node: Node, ins: (Tensor | undefined)[], ctx: Parameters<typeof runOnnxOp>[2]): Tensor[] {
  const x = need(node, ins, 0);
  const a = relayoutAttrs(node, x.dims.length, x.dtype);
  if (typeof a === 'string') throw new GraphError(a, node.name);
  let y = runOnnxOp('Transpose', [x], ctx, { perm: { kind: 'ints', value: a.perm } });
  if (a.pads.some((p) => p)) y = runOnnxOp('Pad', [y, ints(a.pads)], ctx, {});
  if (a.to !== x.dtype) y = runOnnxOp('Cast', [y], ctx, { to: { kind: 'int', value: DTYPE_ONNX[a.to] } });
  return [y];
}

register({
  op: 'Relayout', domain: 'tsrt', since: 1, precision: 'follow',
  supports: (node) => { const p = attrInts(node, 'pads'); return p && p.some((v) => v < 0) ? `pads [${p}] must be non-negative` : undefined; },
  infer,
  cpu,
});
