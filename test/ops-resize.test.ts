// Resize and Upsample: hand-computed nearest (every nearest_mode) and linear results under each coordinate
// transformation, keep_aspect_ratio_policy and axes, integer and float16 outputs, zero-size tensors, inference,
// supports() reasons, and the import-time rewrites of Resize-10, opset-11 empty scales and Upsample-7/9.
import { describe, expect, it } from 'vitest';
import '../src/ops/index.js';
import { getOp, type InferCtx } from '../src/ops/registry.js';
import { f16BitsToF32, f32ToF16Bits, fromF64, makeTensor, toF64 } from '../src/ir/tensor.js';
import { upgradeGraph } from '../src/onnx/import.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import type { Attr, Dim, Graph, Node, Tensor, TensorType } from '../src/ir/types.js';

const A = {
  int: (value: number): Attr => ({ kind: 'int', value }),
  ints: (value: number[]): Attr => ({ kind: 'ints', value }),
  floats: (value: number[]): Attr => ({ kind: 'floats', value }),
  str: (value: string): Attr => ({ kind: 'string', value }),
};
function mk(op: string, nIn: number, attrs: Record<string, Attr> = {}): Node {
  return { name: `${op}_t`, op, domain: '', attrs, inputs: Array.from({ length: nIn }, (_, i) => `in${i}`), outputs: ['out0'] };
}
const f32 = (dims: number[], v: number[]) => fromF64('float32', dims, v);
const i64 = (v: number[]) => makeTensor('int64', [v.length], BigInt64Array.from(v.map(BigInt)));
const vals = (x: Tensor) => Array.from(toF64(x));
const h = (x: number) => f16BitsToF32(f32ToF16Bits(x));

/** Resize with X and either scales or sizes. */
function resize(x: Tensor, by: { scales?: number[]; sizes?: number[] }, attrs: Record<string, Attr> = {}): Tensor {
  const ins = [x, undefined, by.scales ? f32([by.scales.length], by.scales) : undefined, by.sizes ? i64(by.sizes) : undefined];
  const node = mk('Resize', 4, attrs);
  ins.forEach((t, i) => { if (!t) node.inputs[i] = ''; });
  return getOp('Resize')!.cpu(node, ins, { opset: 19, runGraph: () => [] })[0];
}
function near(got: number[], want: number[]): void {
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => expect(g, `index ${i}`).toBeCloseTo(want[i], 5));
}
function graph(nodes: Node[], inputs: [string, TensorType][], inits: [string, Tensor][], opset: number): Graph {
  return {
    name: 'g', nodes, opset, inputs: inputs.map(([name, type]) => ({ name, type })),
    outputs: [{ name: 'out0', type: { dtype: 'float32', shape: [] } }], initializers: new Map(inits), valueTypes: new Map(),
  };
}

describe('Resize nearest', () => {
  it('upsamples by scales with half_pixel + round_prefer_floor (the defaults)', () => {
    const y = resize(f32([1, 1, 2, 2], [1, 2, 3, 4]), { scales: [1, 1, 2, 3] });
    expect(y.dims).toEqual([1, 1, 4, 6]);
    expect(vals(y).slice(0, 6)).toEqual([1, 1, 1, 2, 2, 2]);
    expect(vals(y).slice(12, 18)).toEqual([3, 3, 3, 4, 4, 4]);
  });
  it('rounds ties and fractions by nearest_mode', () => {
    // sizes 4 -> 3 (scale 0.75), half_pixel sources: 0.1667, 1.5, 2.8333
    const x = f32([1, 4], [0, 1, 2, 3]);
    const by = { sizes: [1, 3] };
    expect(vals(resize(x, by))).toEqual([0, 1, 3]);
    expect(vals(resize(x, by, { nearest_mode: A.str('round_prefer_ceil') }))).toEqual([0, 2, 3]);
    expect(vals(resize(x, by, { nearest_mode: A.str('floor') }))).toEqual([0, 1, 2]);
    expect(vals(resize(x, by, { nearest_mode: A.str('ceil') }))).toEqual([1, 2, 3]);
  });
  it('gathers int64 exactly (beyond 2^53) and honours axes', () => {
    const big = 2n ** 60n + 1n;
    const x = makeTensor('int64', [2, 1], BigInt64Array.from([big, -3n]));
    const node = mk('Resize', 4, { axes: A.ints([1]) });
    node.inputs[1] = ''; node.inputs[2] = '';
    const y = getOp('Resize')!.cpu(node, [x, undefined, undefined, i64([2])], { opset: 19, runGraph: () => [] })[0];
    expect(y.dims).toEqual([2, 2]);
    expect(Array.from(y.data as BigInt64Array)).toEqual([big, big, -3n, -3n]);
  });
  it('keep_aspect_ratio_policy scales every listed axis by one factor', () => {
    const x = f32([1, 1, 2, 4], [1, 2, 3, 4, 5, 6, 7, 8]);
    const axes = { axes: A.ints([2, 3]) };
    const nl = resize(x, { sizes: [4, 4] }, { ...axes, keep_aspect_ratio_policy: A.str('not_larger') });
    expect(nl.dims).toEqual([1, 1, 2, 4]);
    expect(vals(nl)).toEqual(vals(x));
    expect(resize(x, { sizes: [4, 4] }, { ...axes, keep_aspect_ratio_policy: A.str('not_smaller') }).dims).toEqual([1, 1, 4, 8]);
    expect(resize(x, { sizes: [4, 4] }, axes).dims).toEqual([1, 1, 4, 4]);
  });
  it('handles zero-size tensors', () => {
    expect(resize(f32([0, 3], []), { scales: [1, 2] }).dims).toEqual([0, 6]);
    expect(resize(f32([2, 3], [1, 2, 3, 4, 5, 6]), { sizes: [2, 0] }).dims).toEqual([2, 0]);
  });
});

describe('Resize linear', () => {
  const x = f32([1, 2], [0, 10]);
  it('maps coordinates per coordinate_transformation_mode', () => {
    const mode = (m: string) => vals(resize(x, { sizes: [1, 4] }, { mode: A.str('linear'), coordinate_transformation_mode: A.str(m) }));
    near(mode('half_pixel'), [0, 2.5, 7.5, 10]);
    near(mode('pytorch_half_pixel'), [0, 2.5, 7.5, 10]);
    near(mode('align_corners'), [0, 10 / 3, 20 / 3, 10]);
    near(mode('asymmetric'), [0, 5, 10, 10]);
    // pytorch_half_pixel maps a length-1 output to source 0, half_pixel to the centre
    const one = (m: string) => vals(resize(f32([1, 3], [0, 3, 6]), { sizes: [1, 1] }, { mode: A.str('linear'), coordinate_transformation_mode: A.str(m) }));
    near(one('pytorch_half_pixel'), [0]);
    near(one('half_pixel'), [3]);
  });
  it('align_corners uses the fractional output length when scales do not divide evenly (as the ONNX reference)', () => {
    // 4 * 0.6 = 2.4: source of output 1 is 1 * 3 / 1.4
    near(vals(resize(f32([1, 4], [1, 2, 3, 4]), { scales: [1, 0.6] }, { mode: A.str('linear'), coordinate_transformation_mode: A.str('align_corners') })),
      [1, 1 + 3 / 1.4]);
  });
  it('is bilinear in 2-D, rounds uint8 half to even and float16 once', () => {
    const y = resize(f32([2, 2], [0, 10, 20, 30]), { scales: [2, 2] }, { mode: A.str('linear') });
    const w = [0, 0.25, 0.75, 1];
    near(vals(y), w.flatMap((a) => w.map((b) => 20 * a + 10 * b)));
    const u = resize(fromF64('uint8', [1, 2], [0, 255]), { sizes: [1, 4] }, { mode: A.str('linear') });
    expect(u.dtype).toBe('uint8');
    expect(vals(u)).toEqual([0, 64, 191, 255]);
    const f = resize(fromF64('float16', [1, 2], [0.1, 0.3]), { sizes: [1, 4] }, { mode: A.str('linear') });
    expect(f.dtype).toBe('float16');
    expect(vals(f)).toEqual([h(0.1), h(h(0.1) * 0.75 + h(0.3) * 0.25), h(h(0.1) * 0.25 + h(0.3) * 0.75), h(0.3)]);
  });
});

describe('Resize inference and support', () => {
  const ctx = (consts: (Tensor | undefined)[], shapeValues: (Dim[] | undefined)[] = []): InferCtx => {
    let k = 0;
    return { opset: 19, consts, shapeValues, freshDim: () => `r${k++}` };
  };
  it('computes static sizes from constant scales, keeps symbols where the scale is 1', () => {
    const [t] = getOp('Resize')!.infer(mk('Resize', 3), [{ dtype: 'float32', shape: ['N', 3, 5, 7] }, undefined,
      { dtype: 'float32', shape: [4] }], ctx([undefined, undefined, f32([4], [1, 1, 2, 0.5])]));
    expect(t.shape).toEqual(['N', 3, 10, 3]);
  });
  it('takes output sizes from a symbolic shape computation', () => {
    const [t] = getOp('Resize')!.infer(mk('Resize', 4), [{ dtype: 'float32', shape: ['N', 3, 'H', 'W'] }, undefined, undefined,
      { dtype: 'int64', shape: [4] }], ctx([], [undefined, undefined, undefined, ['N', 3, 64, 'W']]));
    expect(t.shape).toEqual(['N', 3, 64, 'W']);
  });
  it('reports cubic, antialias and tf_crop_and_resize as unsupported', () => {
    const s = (attrs: Record<string, Attr>) => getOp('Resize')!.supports!(mk('Resize', 3, attrs), 19);
    expect(s({ mode: A.str('cubic') })).toMatch(/cubic/);
    expect(s({ mode: A.str('linear'), antialias: A.int(1) })).toMatch(/antialias/);
    expect(s({ coordinate_transformation_mode: A.str('tf_crop_and_resize') })).toMatch(/tf_crop_and_resize/);
    expect(s({ mode: A.str('linear') })).toBeUndefined();
  });
});

describe('legacy forms', () => {
  it('Resize-10 becomes asymmetric; nearest rounds down when enlarging and up when shrinking', () => {
    const x: [string, TensorType] = ['in0', { dtype: 'float32', shape: [1, 1, 2, 4] }];
    const g = upgradeGraph(graph([mk('Resize', 2)], [x], [['in1', f32([4], [1, 1, 0.6, 0.6])]], 10));
    expect(g.nodes[0].inputs).toEqual(['in0', '', 'in1']);
    expect(g.nodes[0].attrs.coordinate_transformation_mode).toEqual(A.str('asymmetric'));
    // the opset-10 conformance case: [[1,2,3,4],[5,6,7,8]] * 0.6 -> [[1, 3]]
    expect(vals(runGraph(g, new Map([['in0', f32([1, 1, 2, 4], [1, 2, 3, 4, 5, 6, 7, 8])]])).get('out0')!)).toEqual([1, 3]);
    const up = upgradeGraph(graph([mk('Resize', 2)], [x], [['in1', f32([4], [1, 1, 2, 3])]], 10));
    const y = runGraph(up, new Map([['in0', f32([1, 1, 2, 2], [1, 2, 3, 4])]])).get('out0')!;
    expect(vals(y).slice(0, 6)).toEqual([1, 1, 1, 2, 2, 2]);
    // mixed directions split into a shrinking and an enlarging node
    const mixed = upgradeGraph(graph([mk('Resize', 2)], [x], [['in1', f32([4], [1, 1, 0.5, 2])]], 10));
    expect(mixed.nodes.map((n) => n.attrs.nearest_mode)).toEqual([A.str('ceil'), A.str('floor')]);
    expect(vals(runGraph(mixed, new Map([['in0', f32([1, 1, 2, 2], [1, 2, 3, 4])]])).get('out0')!)).toEqual([1, 1, 2, 2]);
  });
  it('opset-11 empty scales with sizes becomes an omitted input', () => {
    const n = mk('Resize', 4);
    const g = upgradeGraph(graph([n], [['in0', { dtype: 'float32', shape: [1, 2] }]],
      [['in1', f32([0], [])], ['in2', f32([0], [])], ['in3', i64([1, 4])]], 11));
    expect(g.nodes[0].inputs).toEqual(['in0', 'in1', '', 'in3']);
    expect(vals(runGraph(g, new Map([['in0', f32([1, 2], [5, 7])]])).get('out0')!)).toEqual([5, 5, 7, 7]);
  });
  it('Upsample-7 (scales attribute) and Upsample-9 (scales input) become Resize', () => {
    const up7 = mk('Upsample', 1, { scales: A.floats([1, 2]), mode: A.str('nearest') });
    const g7 = upgradeGraph(graph([up7], [['in0', { dtype: 'float32', shape: [1, 3] }]], [], 7));
    expect(g7.nodes[0].op).toBe('Resize');
    expect(vals(runGraph(g7, new Map([['in0', f32([1, 3], [1, 2, 3])]])).get('out0')!)).toEqual([1, 1, 2, 2, 3, 3]);
    const up9 = mk('Upsample', 2, { mode: A.str('linear') });
    const g9 = upgradeGraph(graph([up9], [['in0', { dtype: 'float32', shape: [1, 2] }]], [['in1', f32([2], [1, 2])]], 9));
    // asymmetric: sources 0, 0.5, 1, 1.5 (clamped)
    expect(vals(runGraph(g9, new Map([['in0', f32([1, 2], [0, 10])]])).get('out0')!)).toEqual([0, 5, 10, 10]);
    // an Upsample node built by hand (no import) still runs
    const direct = getOp('Upsample')!.cpu(up7, [f32([1, 2], [4, 5])], { opset: 7, runGraph: () => [] })[0];
    expect(vals(direct)).toEqual([4, 4, 5, 5]);
  });
});
