// Channels-last twins of ONNX ops (domain 'tsrt', same name and attributes): X and Y are NHWC. The layout
// pass moves conv-heavy regions to NHWC, where the tensor-core kernels want them; these keep the pooling and
// normalization in between on that layout. The CPU reference transposes around the ONNX op's own.
import type { Node, TensorType } from '../ir/types.js';
import { getOp, register, type OpDef } from './registry.js';
import { need, transposeTensor } from './util.js';

export const toChannelsFirst = (rank: number) => [0, rank - 1, ...Array.from({ length: rank - 2 }, (_, i) => i + 1)];
export const toChannelsLast = (rank: number) => [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2), 1];

/** Ops whose channels-last twin exists; the input at index 0 and the output at index 0 are activations. */
export const CHANNELS_LAST_OPS = ['MaxPool', 'AveragePool', 'GlobalAveragePool', 'GlobalMaxPool', 'BatchNormalization'];

function channelsLast(op: string): OpDef {
  const onnx = () => getOp(op)!;
  const plain = (n: Node): Node => ({ ...n, domain: '' });
  return {
    op, domain: 'tsrt', since: 1, precision: 'follow',
    infer(node, inputs, ctx) {
      const x = need(node, inputs, 0);
      const r = x.shape.length;
      const nchw: TensorType = { dtype: x.dtype, shape: toChannelsFirst(r).map((p) => x.shape[p]) };
      const outs = onnx().infer(plain(node), [nchw, ...inputs.slice(1)], ctx);
      return outs.map((t, k) => (k === 0 ? { dtype: t.dtype, shape: toChannelsLast(t.shape.length).map((p) => t.shape[p]) } : t));
    },
    cpu(node, inputs, ctx) {
      const x = need(node, inputs, 0);
      const r = x.dims.length;
      const outs = onnx().cpu(plain(node), [transposeTensor(x, toChannelsFirst(r)), ...inputs.slice(1)], ctx);
      return outs.map((t, k) => (k === 0 ? transposeTensor(t, toChannelsLast(t.dims.length)) : t));
    },
  };
}

register(...CHANNELS_LAST_OPS.map(channelsLast));
