// Differential tests: convolutions, pooling, normalizations, softmax and resize against ONNX Runtime on
// randomized shapes and attribute combinations that the ONNX node tests do not cover (groups x dilations x
// auto_pad, ceil_mode with pads and dilations, Indices with storage_order, every Resize coordinate and nearest
// mode, legacy Softmax/Resize/Upsample forms).
import { describe, expect, it } from 'vitest';
import { compareWithOrt, rand, type AttrSpec, type GraphSpec } from './rnn-control.build.js';
import { fromF64 } from '../src/ir/tensor.js';
import type { DType, Tensor } from '../src/ir/types.js';

/** One node with inputs x0..xn (undefined = omitted) and `nOut` outputs; returns the differences from ORT. */
async function one(op: string, opset: number, ins: (Tensor | undefined)[], attrs: Record<string, AttrSpec> = {},
  outs: DType[] = ['float32'], tol?: { rtol?: number; atol?: number }, inits: Record<string, Tensor> = {}): Promise<string[]> {
  const names = ins.map((t, i) => (t ? `x${i}` : ''));
  const g: GraphSpec = {
    inputs: ins.flatMap((t, i) => (t && !inits[`x${i}`] ? [[`x${i}`, t.dtype, t.dims] as [string, DType, number[]]] : [])),
    outputs: outs.map((d, i) => [`y${i}`, d]),
    nodes: [{ op, inputs: names, outputs: outs.map((_, i) => `y${i}`), attrs }],
    inits,
  };
  const feeds: Record<string, Tensor> = {};
  ins.forEach((t, i) => { if (t && !inits[`x${i}`]) feeds[`x${i}`] = t; });
  return compareWithOrt(g, opset, feeds, tol);
}
const ints = (v: number[]): AttrSpec => ({ ints: v });
const str = (s: string): AttrSpec => ({ s });
let seed = 1;
const r = (dims: number[]) => rand('float32', dims, seed++);

describe('convolutions against ONNX Runtime', () => {
  it('Conv: ranks, groups, dilations, strides, pads and auto_pad', async () => {
    const cases: { x: number[]; w: number[]; a: Record<string, AttrSpec>; bias?: boolean }[] = [
      { x: [2, 3, 10], w: [4, 3, 3], a: { strides: ints([2]), pads: ints([2, 1]), dilations: ints([2]) }, bias: true },
      { x: [1, 4, 9, 11], w: [6, 2, 3, 3], a: { group: { i: 2 }, auto_pad: str('SAME_UPPER'), strides: ints([2, 3]) } },
      { x: [1, 4, 9, 11], w: [6, 2, 3, 2], a: { group: { i: 2 }, auto_pad: str('SAME_LOWER'), strides: ints([2, 2]) }, bias: true },
      { x: [1, 3, 8, 7], w: [5, 3, 3, 3], a: { auto_pad: str('VALID'), dilations: ints([2, 1]) } },
      { x: [2, 6, 7, 7], w: [12, 1, 5, 5], a: { group: { i: 6 }, pads: ints([2, 2, 2, 2]) }, bias: true },
      { x: [1, 8, 12, 10], w: [16, 8, 1, 1], a: { strides: ints([2, 2]) }, bias: true },
      { x: [1, 2, 6, 5, 4], w: [4, 2, 3, 2, 2], a: { pads: ints([1, 0, 1, 1, 1, 0]), strides: ints([2, 1, 1]) }, bias: true },
      { x: [1, 40, 17, 19], w: [33, 40, 3, 3], a: { pads: ints([1, 1, 1, 1]) }, bias: true },
    ];
    for (const c of cases) {
      const ins = [r(c.x), r(c.w), c.bias ? r([c.w[0]]) : undefined];
      expect(await one('Conv', 22, ins, c.a), JSON.stringify(c)).toEqual([]);
    }
  });
  it('Conv in float16 rounds like ONNX Runtime', async () => {
    const x = fromF64('float16', [1, 3, 6, 6], Array.from(rand('float32', [108], 77).data as Float32Array));
    const w = fromF64('float16', [4, 3, 3, 3], Array.from(rand('float32', [108], 78).data as Float32Array));
    expect(await one('Conv', 13, [x, w], { pads: ints([1, 1, 1, 1]) }, ['float16'], { rtol: 2e-3, atol: 2e-3 })).toEqual([]);
  });
  it('ConvTranspose: output_padding, output_shape, auto_pad, groups, dilations', async () => {
    const cases: { x: number[]; w: number[]; a: Record<string, AttrSpec> }[] = [
      { x: [1, 2, 5], w: [2, 3, 3], a: { strides: ints([3]), output_padding: ints([2]), pads: ints([1, 0]) } },
      { x: [2, 4, 4, 5], w: [4, 2, 3, 3], a: { group: { i: 2 }, strides: ints([2, 2]), dilations: ints([1, 2]) } },
      { x: [1, 3, 4, 4], w: [3, 2, 3, 3], a: { strides: ints([2, 2]), output_shape: ints([9, 10]) } },
      { x: [1, 3, 4, 5], w: [3, 2, 4, 3], a: { strides: ints([2, 3]), auto_pad: str('SAME_UPPER') } },
      { x: [1, 3, 4, 5], w: [3, 2, 4, 3], a: { strides: ints([2, 3]), auto_pad: str('SAME_LOWER') } },
      { x: [1, 2, 3, 4, 3], w: [2, 2, 2, 3, 2], a: { strides: ints([1, 2, 2]), pads: ints([0, 1, 1, 1, 0, 0]) } },
    ];
    for (const c of cases) {
      expect(await one('ConvTranspose', 22, [r(c.x), r(c.w), r([c.w[1] * ((c.a.group as { i: number })?.i ?? 1)])], c.a), JSON.stringify(c)).toEqual([]);
    }
  });
});

describe('pooling against ONNX Runtime', () => {
  it('MaxPool with ceil_mode, dilations, pads, auto_pad and Indices in both storage orders', async () => {
    const cases: { x: number[]; a: Record<string, AttrSpec> }[] = [
      { x: [2, 3, 11], a: { kernel_shape: ints([3]), strides: ints([2]), pads: ints([1, 1]), ceil_mode: { i: 1 } } },
      { x: [1, 2, 9, 10], a: { kernel_shape: ints([3, 2]), strides: ints([2, 3]), dilations: ints([2, 1]), ceil_mode: { i: 1 } } },
      { x: [1, 2, 7, 8], a: { kernel_shape: ints([3, 3]), strides: ints([2, 2]), auto_pad: str('SAME_UPPER') } },
      { x: [1, 2, 7, 8], a: { kernel_shape: ints([2, 3]), strides: ints([3, 2]), auto_pad: str('SAME_LOWER') } },
      { x: [1, 2, 7, 8], a: { kernel_shape: ints([2, 2]), strides: ints([2, 2]), pads: ints([1, 0, 0, 1]), storage_order: { i: 1 } } },
      { x: [1, 2, 5, 6, 4], a: { kernel_shape: ints([2, 3, 2]), strides: ints([2, 1, 2]), pads: ints([1, 1, 0, 0, 1, 1]) } },
    ];
    for (const c of cases) {
      expect(await one('MaxPool', 12, [r(c.x)], c.a, ['float32', 'int64']), JSON.stringify(c)).toEqual([]);
    }
  });
  it('AveragePool with count_include_pad, ceil_mode and dilations (opset 19)', async () => {
    for (const cip of [0, 1]) {
      const cases: Record<string, AttrSpec>[] = [
        { kernel_shape: ints([3, 3]), strides: ints([2, 2]), pads: ints([1, 1, 1, 1]), ceil_mode: { i: 1 } },
        { kernel_shape: ints([2, 3]), strides: ints([3, 2]), pads: ints([0, 2, 1, 0]) },
        { kernel_shape: ints([2, 2]), dilations: ints([2, 3]), strides: ints([1, 2]), pads: ints([1, 1, 0, 1]) },
        { kernel_shape: ints([3, 2]), auto_pad: str('SAME_UPPER'), strides: ints([2, 2]) },
      ];
      for (const a of cases) {
        expect(await one('AveragePool', 19, [r([2, 3, 9, 8])], { ...a, count_include_pad: { i: cip } }), JSON.stringify(a)).toEqual([]);
      }
    }
  });
  it('LpPool, GlobalLpPool, GlobalMaxPool and GlobalAveragePool', async () => {
    for (const p of [1, 2, 3]) {
      expect(await one('LpPool', 18, [r([1, 3, 7, 6])], { p: { i: p }, kernel_shape: ints([3, 2]), strides: ints([2, 2]), pads: ints([1, 0, 1, 1]) })).toEqual([]);
      expect(await one('GlobalLpPool', 13, [r([2, 3, 4, 5])], { p: { i: p } })).toEqual([]);
    }
    expect(await one('GlobalMaxPool', 13, [r([2, 3, 4, 5, 2])])).toEqual([]);
    expect(await one('GlobalAveragePool', 13, [r([2, 3, 7])])).toEqual([]);
  });
});

describe('normalizations and softmax against ONNX Runtime', () => {
  it('BatchNormalization, InstanceNormalization, LRN and MeanVarianceNormalization', async () => {
    const c = 4, pos = (n: number) => rand('float32', [n], seed++, 0.5, 2);
    expect(await one('BatchNormalization', 15, [r([2, c, 3, 5]), r([c]), r([c]), r([c]), pos(c)], { epsilon: { f: 1e-3 } })).toEqual([]);
    expect(await one('InstanceNormalization', 6, [r([2, c, 3, 5]), r([c]), r([c])])).toEqual([]);
    // ONNX Runtime only takes odd sizes; even sizes are checked by hand in ops-norm.test.ts.
    for (const size of [1, 3, 5]) {
      expect(await one('LRN', 13, [r([2, 6, 3, 4])], { size: { i: size }, alpha: { f: 0.3 }, beta: { f: 0.6 }, bias: { f: 1.5 } })).toEqual([]);
    }
    expect(await one('MeanVarianceNormalization', 13, [r([2, 3, 4, 5])])).toEqual([]);
    expect(await one('MeanVarianceNormalization', 13, [r([2, 3, 4, 5])], { axes: ints([1, 3]) })).toEqual([]);
  });
  it('LayerNormalization over several axes with broadcast Scale/B and statistics outputs', async () => {
    for (const [axis, sdims] of [[-1, [6]], [1, [4, 5, 6]], [2, [1, 6]], [-3, [5, 1]]] as [number, number[]][]) {
      const x = r([3, 4, 5, 6]);
      expect(await one('LayerNormalization', 17, [x, r(sdims), r(sdims)], { axis: { i: axis } }, ['float32', 'float32', 'float32']),
        `axis ${axis}`).toEqual([]);
    }
  });
  it('Softmax, LogSoftmax and Hardmax: opset-11 2-D coercion and opset-13 axes', async () => {
    for (const op of ['Softmax', 'LogSoftmax', 'Hardmax']) {
      for (const axis of [0, 1, 2, -1]) {
        expect(await one(op, 11, [r([2, 3, 4])], { axis: { i: axis } }), `${op} opset 11 axis ${axis}`).toEqual([]);
        expect(await one(op, 13, [r([2, 3, 4])], { axis: { i: axis } }), `${op} opset 13 axis ${axis}`).toEqual([]);
      }
      expect(await one(op, 9, [r([2, 3, 4])]), `${op} opset 9 default axis`).toEqual([]);
    }
  });
});

describe('Resize against ONNX Runtime', () => {
  const coords = ['half_pixel', 'half_pixel_symmetric', 'pytorch_half_pixel', 'align_corners', 'asymmetric'];
  // Binary-exact scales with integral scale * length: ONNX Runtime maps coordinates in float32 and divides by the
  // integer output length for align_corners, the ONNX reference (and tsrt) in float64 by scale * length, so other
  // scales can move a coordinate across a rounding tie.
  it('nearest: every nearest_mode x coordinate mode, scales and sizes', async () => {
    for (const nm of ['round_prefer_floor', 'round_prefer_ceil', 'floor', 'ceil']) {
      for (const ct of coords) {
        const a = { mode: str('nearest'), nearest_mode: str(nm), coordinate_transformation_mode: str(ct) };
        const x = r([1, 2, 4, 8]);
        expect(await one('Resize', 19, [x, undefined, fromF64('float32', [4], [1, 1, 1.75, 0.625])], a), `${nm} ${ct} scales`).toEqual([]);
        expect(await one('Resize', 19, [x, undefined, undefined, fromF64('int64', [4], [1, 2, 3, 11])], a), `${nm} ${ct} sizes`).toEqual([]);
      }
    }
  });
  // Scales keep scale * length integral: for align_corners ONNX Runtime divides by the integer output length, the
  // ONNX reference (whose node-test data tsrt matches) by scale * length.
  it('linear: every coordinate mode, up and down, 1-D to 3-D', async () => {
    for (const ct of coords) {
      const a = { mode: str('linear'), coordinate_transformation_mode: str(ct) };
      expect(await one('Resize', 19, [r([2, 3, 6, 5]), undefined, fromF64('float32', [4], [1, 1, 0.5, 2.4])], a), `${ct} 2-D`).toEqual([]);
      expect(await one('Resize', 19, [r([1, 2, 4, 3, 5]), undefined, undefined, fromF64('int64', [5], [1, 2, 7, 2, 8])], a), `${ct} 3-D`).toEqual([]);
      expect(await one('Resize', 19, [r([3, 4]), undefined, undefined, fromF64('int64', [2], [3, 9])], a), `${ct} 1-D`).toEqual([]);
    }
  });
  it('axes and keep_aspect_ratio_policy', async () => {
    for (const policy of ['stretch', 'not_larger', 'not_smaller']) {
      for (const mode of ['nearest', 'linear']) {
        const a = { mode: str(mode), axes: ints([3, 2]), keep_aspect_ratio_policy: str(policy) };
        expect(await one('Resize', 19, [r([1, 2, 5, 7]), undefined, undefined, fromF64('int64', [2], [10, 8])], a), `${policy} ${mode}`).toEqual([]);
      }
    }
  });
  it('opset-11 sizes with an empty scales constant, Resize-10 and Upsample-9', async () => {
    const x = r([1, 2, 4, 5]);
    const inits = { x1: fromF64('float32', [0], []), x2: fromF64('float32', [0], []) };
    expect(await one('Resize', 11, [x, inits.x1, inits.x2, fromF64('int64', [4], [1, 2, 7, 3])], { mode: str('linear') }, ['float32'], undefined, inits))
      .toEqual([]);
    for (const mode of ['nearest', 'linear']) {
      const up = { x1: fromF64('float32', [4], [1, 1, 2, 3]) };
      expect(await one('Resize', 10, [x, up.x1], { mode: str(mode) }, ['float32'], undefined, up), `Resize-10 ${mode} up`).toEqual([]);
      const down = { x1: fromF64('float32', [4], [1, 1, 0.5, 0.6]) };
      expect(await one('Resize', 10, [r([1, 2, 6, 9]), down.x1], { mode: str(mode) }, ['float32'], undefined, down), `Resize-10 ${mode} down`).toEqual([]);
      expect(await one('Upsample', 9, [x, up.x1], { mode: str(mode) }, ['float32'], undefined, up), `Upsample-9 ${mode}`).toEqual([]);
    }
  });
});
