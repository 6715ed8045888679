// Normalizations and the softmax family: hand-computed CPU results, float16 rounding, zero-size tensors,
// symbolic inference, and the import-time upgrades (BatchNormalization is_test/spatial, opset < 13 Softmax).
import { describe, expect, it } from 'vitest';
import '../src/ops/index.js';
import { getOp, type InferCtx } from '../src/ops/registry.js';
import { f16BitsToF32, f32ToF16Bits, fromF64 } from '../src/ir/tensor.js';
import { upgradeGraph } from '../src/onnx/import.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { opNode, vals } from './helpers.js';
import type { Attr, Graph, Node, Tensor, TensorType } from '../src/ir/types.js';

const A = {
  int: (value: number): Attr => ({ kind: 'int', value }),
  float: (value: number): Attr => ({ kind: 'float', value }),
  ints: (value: number[]): Attr => ({ kind: 'ints', value }),
};
const mk = opNode;
const f32 = (dims: number[], v: number[]) => fromF64('float32', dims, v);
const h = (x: number) => f16BitsToF32(f32ToF16Bits(x));
const near = (got: number[], want: number[], tol = 1e-6) => {
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => expect(Math.abs(g - want[i]), `index ${i}: ${g} vs ${want[i]}`).toBeLessThanOrEqual(tol * (1 + Math.abs(want[i]))));
};

function run(op: string, ins: (Tensor | undefined)[], attrs: Record<string, Attr> = {}, nOut = 1): Tensor[] {
  const node = mk(op, ins.length, attrs, nOut);
  ins.forEach((x, i) => { if (!x) node.inputs[i] = ''; });
  return getOp(op)!.cpu(node, ins, { opset: 22, runGraph: () => [] });
}
let sym = 0;
function infer(op: string, ins: TensorType[], attrs: Record<string, Attr> = {}, nOut = 1): TensorType[] {
  const ctx: InferCtx = { opset: 22, consts: ins.map(() => undefined), shapeValues: ins.map(() => undefined), freshDim: () => `s${sym++}` };
  return getOp(op)!.infer(mk(op, ins.length, attrs, nOut), ins, ctx);
}
function graph(nodes: Node[], inputs: [string, TensorType][], outputs: string[], inits: [string, Tensor][], opset: number): Graph {
  return {
    name: 'g', nodes, opset,
    inputs: inputs.map(([name, type]) => ({ name, type })),
    outputs: outputs.map((name) => ({ name, type: { dtype: 'float32', shape: [] } })),
    initializers: new Map(inits), valueTypes: new Map(),
  };
}

describe('BatchNormalization', () => {
  const params = (): Tensor[] => [f32([2], [1, 2]), f32([2], [0, 1]), f32([2], [1, 3]), f32([2], [4, 1])];
  it('normalizes per channel', () => {
    const y = run('BatchNormalization', [f32([1, 2, 1, 2], [1, 2, 3, 4]), ...params()], { epsilon: A.float(0) })[0];
    expect(vals(y)).toEqual([0, 0.5, 1, 3]);
  });
  it('rounds float16 results and accepts rank-2 input', () => {
    const y = run('BatchNormalization', [fromF64('float16', [2, 2], [0.3, 0.7, 1.1, 5]), ...params()], { epsilon: A.float(0) })[0];
    expect(y.dtype).toBe('float16');
    expect(vals(y)).toEqual([h((h(0.3) - 1) / 2), h((h(0.7) - 3) * 2 + 1), h((h(1.1) - 1) / 2), 5]);
  });
  it('upgrades opset-6 attributes; is_test = 0 becomes training mode, which supports() rejects', () => {
    const bn = { ...mk('BatchNormalization', 5, { is_test: A.int(1), consumed_inputs: A.ints([0, 0, 0, 1, 1]), spatial: A.int(1), momentum: A.float(0.9) }) };
    const g = upgradeGraph(graph([bn], [['in0', { dtype: 'float32', shape: [1, 2, 2] }]], ['out0'], [], 6));
    expect(g.nodes).toHaveLength(1);
    expect(Object.keys(g.nodes[0].attrs)).toEqual(['momentum']);
    const train = upgradeGraph(graph([{ ...bn, attrs: { is_test: A.int(0) }, outputs: ['out0', 'm', 'v'] }], [], ['out0'], [], 6));
    expect(train.nodes[0].attrs.training_mode).toEqual(A.int(1));
    expect(getOp('BatchNormalization')!.supports!(train.nodes[0], 6)).toMatch(/training/);
    expect(getOp('BatchNormalization')!.supports!(mk('BatchNormalization', 5, { training_mode: A.int(1) }), 15)).toMatch(/eval mode/);
  });
  it('expands spatial = 0 (per-activation statistics) into broadcasting ops', () => {
    const bn = mk('BatchNormalization', 5, { spatial: A.int(0), epsilon: A.float(0) });
    const p = (v: number[]) => f32([2, 2], v);
    const inits: [string, Tensor][] = [['in1', p([1, 2, 3, 4])], ['in2', p([0, 1, 0, 1])], ['in3', p([1, 1, 2, 2])], ['in4', p([1, 4, 1, 4])]];
    const g = upgradeGraph(graph([bn], [['in0', { dtype: 'float32', shape: [2, 2, 2] }]], ['out0'], inits, 7));
    expect(g.nodes.map((n) => n.op)).toEqual(['Sub', 'Add', 'Sqrt', 'Div', 'Mul', 'Add']);
    const x = [3, 5, 4, 6, 1, 1, 2, 2];
    const out = runGraph(g, new Map([['in0', f32([2, 2, 2], x)]])).get('out0')!;
    const [sc, b, m, v] = [[1, 2, 3, 4], [0, 1, 0, 1], [1, 1, 2, 2], [1, 4, 1, 4]];
    expect(vals(out)).toEqual(x.map((xi, i) => ((xi - m[i % 4]) / Math.sqrt(v[i % 4])) * sc[i % 4] + b[i % 4]));
  });
  it('checks parameter shapes in inference', () => {
    const t = (s: (number | string)[]): TensorType => ({ dtype: 'float32', shape: s });
    expect(infer('BatchNormalization', [t(['N', 3, 'H', 'W']), t([3]), t([3]), t([3]), t([3])])[0].shape).toEqual(['N', 3, 'H', 'W']);
    expect(() => infer('BatchNormalization', [t([1, 3, 2]), t([4]), t([3]), t([3]), t([3])])).toThrow(/BatchNormalization_t.*\[4\]/);
  });
});

describe('InstanceNormalization, LayerNormalization, LRN, MVN', () => {
  it('InstanceNormalization normalizes each (n, c) plane', () => {
    // default epsilon 1e-5 keeps the constant plane finite: it maps to B
    const y = run('InstanceNormalization', [f32([1, 2, 4], [1, 2, 3, 4, 5, 5, 5, 5]), f32([2], [2, 1]), f32([2], [1, 7])])[0];
    const s = Math.sqrt(1.25 + 1e-5);
    near(vals(y), [-1.5 / s * 2 + 1, -0.5 / s * 2 + 1, 0.5 / s * 2 + 1, 1.5 / s * 2 + 1, 7, 7, 7, 7]);
  });
  it('LayerNormalization returns Y, Mean and InvStdDev over the trailing axes', () => {
    const [y, mean, inv] = run('LayerNormalization', [f32([2, 3], [1, 2, 3, 0, 0, 6]), f32([3], [1, 1, 2]), f32([3], [0, 0, 1])],
      { epsilon: A.float(0) }, 3);
    const i0 = 1 / Math.sqrt(2 / 3), i1 = 1 / Math.sqrt(8);
    near(vals(y), [-i0, 0, 2 * i0 + 1, -2 * i1, -2 * i1, 8 * i1 + 1]);
    expect(mean.dims).toEqual([2, 1]);
    near(vals(mean), [2, 2]);
    near(vals(inv), [i0, i1]);
    // axis 0 normalizes everything as one group
    const [, m0] = run('LayerNormalization', [f32([2, 2], [1, 2, 3, 6]), f32([2, 2], [1, 1, 1, 1])], { axis: A.int(0) }, 3);
    expect(m0.dims).toEqual([1, 1]);
    near(vals(m0), [3]);
  });
  it('LayerNormalization keeps fp16 Y and fp32 statistics (stash_type) with symbolic dims', () => {
    const t = infer('LayerNormalization', [{ dtype: 'float16', shape: ['N', 'T', 8] }, { dtype: 'float16', shape: [8] }], {}, 3);
    expect(t).toEqual([
      { dtype: 'float16', shape: ['N', 'T', 8] }, { dtype: 'float32', shape: ['N', 'T', 1] }, { dtype: 'float32', shape: ['N', 'T', 1] },
    ]);
    const [y, m] = run('LayerNormalization', [fromF64('float16', [1, 2], [1, 3]), fromF64('float16', [2], [1, 1])], { epsilon: A.float(0) }, 3);
    expect(y.dtype).toBe('float16');
    expect(vals(y)).toEqual([-1, 1]);
    expect(m.dtype).toBe('float32');
    expect(() => infer('LayerNormalization', [{ dtype: 'float32', shape: [2, 3] }, { dtype: 'float32', shape: [4] }])).toThrow(/broadcast/);
  });
  it('LRN sums squares over the channel window', () => {
    // alpha / size = 1, beta = 1, bias = 1
    const y = run('LRN', [f32([1, 3, 1, 1], [1, 2, 3])], { size: A.int(3), alpha: A.float(3), beta: A.float(1), bias: A.float(1) })[0];
    near(vals(y), [1 / 6, 2 / 15, 3 / 14]);
    // even size: the window reaches one channel further up than down
    const y2 = run('LRN', [f32([1, 3, 1, 1], [1, 2, 3])], { size: A.int(2), alpha: A.float(2), beta: A.float(1), bias: A.float(0) })[0];
    near(vals(y2), [1 / 5, 2 / 13, 3 / 9]);
  });
  it('MeanVarianceNormalization over the default axes [0, 2, 3]', () => {
    const y = run('MeanVarianceNormalization', [f32([2, 1, 1, 1], [1, 3])])[0];
    near(vals(y), [-1 / (1 + 1e-9), 1 / (1 + 1e-9)]);
  });
});

describe('Softmax, LogSoftmax, Hardmax', () => {
  it('normalize along one axis (opset 13 form), stable for large inputs', () => {
    const x = f32([2, 2], [1, 2, 3, 5]);
    const e = Math.E;
    near(vals(run('Softmax', [x], { axis: A.int(0) })[0]), [1 / (1 + e * e), 1 / (1 + e ** 3), e * e / (1 + e * e), e ** 3 / (1 + e ** 3)]);
    near(vals(run('Softmax', [f32([1, 3], [1000, 1000, -1000])])[0]), [0.5, 0.5, 0]);
    near(vals(run('LogSoftmax', [f32([2], [0, 0])])[0]), [-Math.LN2, -Math.LN2]);
    expect(vals(run('Hardmax', [f32([2, 3], [1, 3, 3, -1, -2, -3])])[0])).toEqual([0, 1, 0, 1, 0, 0]);
  });
  it('rounds float16 and handles zero-size tensors', () => {
    const y = run('Softmax', [fromF64('float16', [3], [0, 1, 2])])[0];
    expect(y.dtype).toBe('float16');
    const s = 1 + Math.E + Math.E ** 2;
    expect(vals(y)).toEqual([h(1 / s), h(Math.E / s), h(Math.E ** 2 / s)]);
    expect(run('Softmax', [f32([0, 4], [])])[0].dims).toEqual([0, 4]);
    expect(run('LogSoftmax', [f32([3, 0], [])])[0].dims).toEqual([3, 0]);
  });
  it('opset < 13 flattens at axis: expanded to Flatten -> Softmax(-1) -> Reshape, or kept when axis is last', () => {
    const x = [1, 2, 3, 4, 5, 6, 7, 8];
    const sm = mk('Softmax', 1, { axis: A.int(1) });
    const g = upgradeGraph(graph([sm], [['in0', { dtype: 'float32', shape: [2, 2, 2] }]], ['out0'], [], 11));
    expect(g.nodes.map((n) => n.op)).toEqual(['Shape', 'Flatten', 'Softmax', 'Reshape']);
    expect(g.nodes[2].attrs.axis).toEqual(A.int(-1));
    const y = runGraph(g, new Map([['in0', f32([2, 2, 2], x)]])).get('out0')!;
    expect(y.dims).toEqual([2, 2, 2]);
    // rows of 4: softmax over [1,2,3,4] and [5,6,7,8]
    const row = [1, 2, 3, 4].map((v) => Math.exp(v - 4));
    const sum = row.reduce((a, b) => a + b);
    near(vals(y), [...row, ...row].map((v) => v / sum));
    // declared rank 2 with axis 1 (the last axis): one node, axis -1
    const g2 = upgradeGraph(graph([mk('LogSoftmax', 1)], [['in0', { dtype: 'float32', shape: [2, 5] }]], ['out0'], [], 9));
    expect(g2.nodes.map((n) => [n.op, n.attrs.axis])).toEqual([['LogSoftmax', A.int(-1)]]);
    // opset 13 nodes are left alone
    expect(upgradeGraph(graph([sm], [['in0', { dtype: 'float32', shape: [2, 2, 2] }]], ['out0'], [], 13)).nodes).toHaveLength(1);
  });
});
