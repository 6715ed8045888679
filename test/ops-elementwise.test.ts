// Elementwise ops: hand-computed CPU results (broadcasting, integer wrap and truncation, int64 beyond 2^53,
// float16/bfloat16 rounding, NaN handling, zero-size tensors), legacy-form upgrades (opset 6 broadcast/axis,
// per-channel PRelu, Clip attributes, Dropout), static inference and shape-value propagation.
import { describe, expect, it } from 'vitest';
import '../src/ops/index.js';
import { getOp, type InferCtx } from '../src/ops/registry.js';
import { erf, roundEven } from '../src/ops/elementwise.js';
import { f16BitsToF32, f32ToF16Bits, fromF64, makeTensor, toF64 } from '../src/ir/tensor.js';
import { upgradeGraph } from '../src/onnx/import.js';
import { inferShapes } from '../src/ir/infer.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { GraphError, UnsupportedError } from '../src/errors.js';
import type { Attr, DType, Dim, Graph, Node, Tensor, TensorType } from '../src/ir/types.js';

const A = {
  int: (value: number): Attr => ({ kind: 'int', value }),
  float: (value: number): Attr => ({ kind: 'float', value }),
  str: (value: string): Attr => ({ kind: 'string', value }),
};

function mk(op: string, nIn: number, attrs: Record<string, Attr> = {}, nOut = 1): Node {
  return {
    name: `${op}_t`, op, domain: '', attrs,
    inputs: Array.from({ length: nIn }, (_, i) => `in${i}`),
    outputs: Array.from({ length: nOut }, (_, i) => `out${i}`),
  };
}

const t = (dtype: DType, dims: number[], v: number[]) => fromF64(dtype, dims, v);
const f32 = (dims: number[], v: number[]) => t('float32', dims, v);
const i64 = (dims: number[], v: (number | bigint)[]) => makeTensor('int64', dims, BigInt64Array.from(v.map((x) => BigInt(x))));
const vals = (x: Tensor) => Array.from(toF64(x));
const bigs = (x: Tensor) => Array.from(x.data as BigInt64Array);
/** A float16 value as the nearest representable number (what a float16 result must equal). */
const h = (x: number) => f16BitsToF32(f32ToF16Bits(x));

function run(op: string, ins: (Tensor | undefined)[], attrs: Record<string, Attr> = {}, nOut = 1, opset = 25): Tensor[] {
  const node = mk(op, ins.length, attrs, nOut);
  ins.forEach((x, i) => { if (!x) node.inputs[i] = ''; });
  return getOp(op)!.cpu(node, ins, { opset, runGraph: () => [] });
}
const run1 = (op: string, ins: (Tensor | undefined)[], attrs: Record<string, Attr> = {}) => run(op, ins, attrs)[0];

let sym = 0;
function infer(op: string, ins: (TensorType | undefined)[], opts: { attrs?: Record<string, Attr>; consts?: (Tensor | undefined)[]; nOut?: number; opset?: number } = {}): TensorType[] {
  const node = mk(op, ins.length, opts.attrs, opts.nOut ?? 1);
  const ctx: InferCtx = {
    opset: opts.opset ?? 25, consts: opts.consts ?? ins.map(() => undefined),
    shapeValues: ins.map(() => undefined), freshDim: () => `s${sym++}`,
  } as InferCtx;
  return getOp(op)!.infer(node, ins, ctx);
}
const tt = (dtype: DType, shape: Dim[]): TensorType => ({ dtype, shape });

function graph(nodes: Node[], inputs: [string, TensorType][], outputs: string[], inits: [string, Tensor][] = [], opset = 6): Graph {
  return {
    name: 'g', nodes, opset,
    inputs: inputs.map(([name, type]) => ({ name, type })),
    outputs: outputs.map((name) => ({ name, type: { dtype: 'float32', shape: [] } })),
    initializers: new Map(inits), valueTypes: new Map(),
  };
}
const node = (op: string, inputs: string[], outputs: string[], attrs: Record<string, Attr> = {}): Node =>
  ({ name: `${op}_${outputs[0]}`, op, domain: '', inputs, outputs, attrs });

/** Upgrades legacy forms like the importer does, then runs the graph on the CPU reference. */
function runUpgraded(g: Graph, feeds: [string, Tensor][], out = 'y'): { graph: Graph; y: Tensor } {
  const up = upgradeGraph(g);
  return { graph: up, y: runGraph(up, new Map(feeds)).get(out)! };
}

describe('binary arithmetic with broadcasting', () => {
  it('broadcasts [2,3] with [3], [2,1] with [1,3] and a scalar', () => {
    const a = f32([2, 3], [1, 2, 3, 4, 5, 6]);
    expect(vals(run1('Add', [a, f32([3], [10, 20, 30])]))).toEqual([11, 22, 33, 14, 25, 36]);
    const m = run1('Mul', [f32([2, 1], [2, 3]), f32([1, 3], [1, 10, 100])]);
    expect(m.dims).toEqual([2, 3]);
    expect(vals(m)).toEqual([2, 20, 200, 3, 30, 300]);
    expect(vals(run1('Sub', [f32([], [10]), a]))).toEqual([9, 8, 7, 6, 5, 4]);
    expect(vals(run1('Div', [a, f32([1], [4])]))).toEqual([0.25, 0.5, 0.75, 1, 1.25, 1.5]);
  });
  it('broadcasts a middle dim ([2,3,2] with [3,1])', () => {
    const a = f32([2, 3, 2], Array.from({ length: 12 }, (_, i) => i));
    const r = run1('Add', [a, f32([3, 1], [100, 200, 300])]);
    expect(vals(r)).toEqual([100, 101, 202, 203, 304, 305, 106, 107, 208, 209, 310, 311]);
  });
  it('integer Div truncates toward zero and integer results wrap', () => {
    expect(vals(run1('Div', [t('int32', [4], [7, -7, 7, -7]), t('int32', [4], [2, 2, -2, -2])]))).toEqual([3, -3, -3, 3]);
    expect(vals(run1('Add', [t('int8', [2], [100, -100]), t('int8', [2], [100, -100])]))).toEqual([-56, 56]);
    expect(vals(run1('Sub', [t('uint8', [1], [1]), t('uint8', [1], [2])]))).toEqual([255]);
    expect(vals(run1('Mul', [t('int32', [2], [65536, 2147483647]), t('int32', [2], [65536, 2])]))).toEqual([0, -2]);
    expect(vals(run1('Mul', [t('uint32', [1], [4294967295]), t('uint32', [1], [4294967295])]))).toEqual([1]);
  });
  it('int64 stays exact beyond 2^53 and wraps at 2^64', () => {
    const big = 2n ** 60n;
    expect(bigs(run1('Add', [i64([2], [big, -5]), i64([2], [1, 3])]))).toEqual([big + 1n, -2n]);
    expect(bigs(run1('Mul', [i64([1], [2n ** 62n]), i64([1], [4])]))).toEqual([0n]);
    expect(bigs(run1('Div', [i64([3], [-7, 7, 9]), i64([3], [2, 0, 3])]))).toEqual([-3n, 0n, 3n]);
  });
  it('float16 results round to the nearest float16', () => {
    const r = run1('Mul', [t('float16', [2], [0.1, 1000]), t('float16', [2], [3, 1.001])]);
    expect(r.dtype).toBe('float16');
    expect(vals(r)).toEqual([h(h(0.1) * 3), h(1000 * h(1.001))]);
  });
  it('keeps zero-size shapes', () => {
    const r = run1('Add', [f32([0, 3], []), f32([3], [1, 2, 3])]);
    expect(r.dims).toEqual([0, 3]);
    expect(r.data.length).toBe(0);
  });
  it('Mod follows the divisor sign with fmod=0 and the dividend sign with fmod=1', () => {
    const a = t('int32', [4], [-7, 7, -7, 7]), b = t('int32', [4], [3, -3, -3, 3]);
    expect(vals(run1('Mod', [a, b]))).toEqual([2, -2, -1, 1]);
    expect(vals(run1('Mod', [a, b], { fmod: A.int(1) }))).toEqual([-1, 1, -1, 1]);
    expect(bigs(run1('Mod', [i64([2], [-7, 7]), i64([2], [3, -3])]))).toEqual([2n, -2n]);
    expect(vals(run1('Mod', [f32([2], [5.5, -5.5]), f32([1], [2])], { fmod: A.int(1) }))).toEqual([1.5, -1.5]);
    expect(() => run1('Mod', [f32([1], [1]), f32([1], [2])])).toThrow(/fmod=1/);
  });
  it('Pow keeps the base type: float^int, exact int^int with wrap, int^float truncates', () => {
    expect(vals(run1('Pow', [f32([2], [2, 3]), i64([1], [3])]))).toEqual([8, 27]);
    expect(vals(run1('Pow', [t('int32', [3], [3, -2, 2]), t('int32', [3], [4, 3, 31])]))).toEqual([81, -8, -2147483648]);
    expect(vals(run1('Pow', [t('int32', [2], [5, 10]), f32([2], [0.5, 0.5])]))).toEqual([2, 3]);
    expect(bigs(run1('Pow', [i64([1], [3]), i64([1], [39])]))).toEqual([3n ** 39n]);
    expect(vals(run1('Pow', [f32([2], [1, -1]), f32([2], [NaN, Infinity])]))).toEqual([1, 1]);
  });
  it('BitShift wraps left shifts and gives 0 past the width', () => {
    const x = t('uint8', [3], [200, 200, 1]), s = t('uint8', [3], [1, 3, 8]);
    expect(vals(run1('BitShift', [x, s], { direction: A.str('LEFT') }))).toEqual([144, 64, 0]);
    expect(vals(run1('BitShift', [x, s], { direction: A.str('RIGHT') }))).toEqual([100, 25, 0]);
    expect(vals(run1('BitShift', [t('uint32', [1], [0x80000001]), t('uint32', [1], [1])], { direction: A.str('LEFT') }))).toEqual([2]);
  });
  it('PRelu applies a per-channel slope shaped [C,1,1]', () => {
    const x = f32([1, 2, 1, 2], [-1, 2, -3, 4]);
    expect(vals(run1('PRelu', [x, f32([2, 1, 1], [0.5, 0.25])]))).toEqual([-0.5, 2, -0.75, 4]);
    expect(() => run1('PRelu', [x, f32([3], [1, 2, 3])])).toThrow(/slope/);
  });
});

describe('comparisons, logic and Where', () => {
  it('comparisons give bool, NaN compares false', () => {
    const r = run1('Less', [f32([3], [1, NaN, 3]), f32([1], [2])]);
    expect(r.dtype).toBe('bool');
    expect(Array.from(r.data as Uint8Array)).toEqual([1, 0, 0]);
    expect(Array.from(run1('GreaterOrEqual', [t('int32', [3], [1, 2, 3]), t('int32', [1], [2])]).data as Uint8Array)).toEqual([0, 1, 1]);
    expect(Array.from(run1('Equal', [i64([2], [2n ** 60n, 2n ** 60n + 1n]), i64([1], [2n ** 60n])]).data as Uint8Array)).toEqual([1, 0]);
    expect(Array.from(run1('Equal', [makeTensor('string', [2], ['a', 'b']), makeTensor('string', [1], ['b'])]).data as Uint8Array)).toEqual([0, 1]);
  });
  it('And/Or/Xor/Not on bool', () => {
    const a = t('bool', [4], [0, 0, 1, 1]), b = t('bool', [4], [0, 1, 0, 1]);
    expect(Array.from(run1('And', [a, b]).data as Uint8Array)).toEqual([0, 0, 0, 1]);
    expect(Array.from(run1('Or', [a, b]).data as Uint8Array)).toEqual([0, 1, 1, 1]);
    expect(Array.from(run1('Xor', [a, b]).data as Uint8Array)).toEqual([0, 1, 1, 0]);
    expect(Array.from(run1('Not', [a]).data as Uint8Array)).toEqual([1, 1, 0, 0]);
  });
  it('Where broadcasts all three inputs and copies any dtype', () => {
    const c = t('bool', [2, 1], [1, 0]);
    const r = run1('Where', [c, f32([1, 3], [1, 2, 3]), f32([], [-1])]);
    expect(r.dims).toEqual([2, 3]);
    expect(vals(r)).toEqual([1, 2, 3, -1, -1, -1]);
    expect(bigs(run1('Where', [c, i64([1], [2n ** 62n]), i64([1], [7])]))).toEqual([2n ** 62n, 7n]);
    expect(run1('Where', [c, makeTensor('string', [1], ['x']), makeTensor('string', [1], ['y'])]).data).toEqual(['x', 'y']);
  });
});

describe('variadic Max/Min/Sum/Mean', () => {
  it('broadcast across three inputs', () => {
    const a = f32([2, 2], [1, 5, 3, 7]), b = f32([2], [4, 4]), c = f32([2, 1], [0, 6]);
    expect(vals(run1('Max', [a, b, c]))).toEqual([4, 5, 6, 7]);
    expect(vals(run1('Min', [a, b, c]))).toEqual([0, 0, 3, 4]);
    expect(vals(run1('Sum', [a, b, c]))).toEqual([5, 9, 13, 17]);
    expect(vals(run1('Mean', [a, b, c]))).toEqual([5 / 3, 3, 13 / 3, 17 / 3].map(Math.fround));
  });
  it('Max/Min propagate NaN, work on int64 and a single input', () => {
    expect(vals(run1('Max', [f32([2], [NaN, 1]), f32([2], [0, NaN])]))).toEqual([NaN, NaN]);
    expect(bigs(run1('Min', [i64([2], [2n ** 62n + 1n, -3]), i64([2], [2n ** 62n, 4])]))).toEqual([2n ** 62n, -3n]);
    expect(vals(run1('Max', [f32([2], [1, 2])]))).toEqual([1, 2]);
  });
  it('float16 Sum rounds once at the end', () => {
    const r = run1('Sum', [t('float16', [1], [2048]), t('float16', [1], [1]), t('float16', [1], [1])]);
    expect(r.dtype).toBe('float16');
    expect(vals(r)).toEqual([2050]);
  });
});

describe('unary math and activations', () => {
  it('erf matches known values across its range', () => {
    const cases: [number, number][] = [[0.5, 0.5204998778130465], [-1, -0.8427007929497149], [2.4, 0.999311486103355],
      [3, 0.9999779095030014], [1e-5, 1.1283791670578999e-5], [5.5, 0.9999999999999927], [7, 1]];
    for (const [x, e] of cases) expect(erf(x)).toBeCloseTo(e, 14);
  });
  it('Round is half to even; Sign keeps 0 and NaN', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, -2.6].map(roundEven)).toEqual([0, 2, 2, -0, -2, 2, -3]);
    expect(vals(run1('Sign', [f32([4], [-3, 0, 2, NaN])]))).toEqual([-1, 0, 1, NaN]);
    expect(vals(run1('Sign', [t('int8', [2], [-5, 7])]))).toEqual([-1, 1]);
  });
  it('integer Abs/Neg wrap like C', () => {
    expect(vals(run1('Abs', [t('int8', [3], [-128, -5, 5])]))).toEqual([-128, 5, 5]);
    expect(vals(run1('Neg', [t('int32', [2], [-2147483648, 3])]))).toEqual([-2147483648, -3]);
    expect(bigs(run1('Abs', [i64([1], [-(2n ** 62n) - 1n])]))).toEqual([2n ** 62n + 1n]);
  });
  it('activations with attributes and defaults', () => {
    const x = f32([3], [-1, 0, 2]);
    expect(vals(run1('Relu', [x]))).toEqual([0, 0, 2]);
    expect(vals(run1('LeakyRelu', [x], { alpha: A.float(0.5) }))).toEqual([-0.5, 0, 2]);
    expect(vals(run1('Elu', [x]))).toEqual([Math.fround(Math.exp(-1) - 1), 0, 2]);
    expect(vals(run1('Selu', [x]))).toEqual([Math.fround(1.0507009873554805 * 1.6732632423543772 * (Math.exp(-1) - 1)), 0, Math.fround(2 * 1.0507009873554805)]);
    expect(vals(run1('HardSigmoid', [x]))).toEqual([Math.fround(0.3), 0.5, Math.fround(0.9)]);
    expect(vals(run1('HardSwish', [f32([3], [-4, 1, 4])]))).toEqual([-0, Math.fround(2 / 3), 4]);
    expect(vals(run1('ThresholdedRelu', [f32([3], [0.5, 1, 1.5])]))).toEqual([0, 0, 1.5]);
    expect(vals(run1('Celu', [f32([1], [-1])], { alpha: A.float(2) }))).toEqual([Math.fround(2 * (Math.exp(-0.5) - 1))]);
    expect(vals(run1('Shrink', [f32([3], [-2, 0.3, 2])], { bias: A.float(0.5), lambd: A.float(1) }))).toEqual([-1.5, 0, 1.5]);
    expect(vals(run1('Softsign', [f32([2], [1, -3])]))).toEqual([0.5, -0.75]);
  });
  it('Gelu exact and tanh forms; Mish; Softplus and Sigmoid stay finite at extremes', () => {
    expect(vals(run1('Gelu', [f32([2], [1, -1])]))).toEqual([Math.fround(0.8413447460685429), Math.fround(-0.15865525393145707)]);
    expect(vals(run1('Gelu', [f32([1], [1])], { approximate: A.str('tanh') }))).toEqual([Math.fround(0.8411919906082768)]);
    expect(vals(run1('Mish', [f32([1], [1])]))).toEqual([Math.fround(0.8650983882673103)]);
    expect(vals(run1('Softplus', [f32([3], [100, -100, 0])]))).toEqual([100, Math.fround(Math.exp(-100)), Math.fround(Math.LN2)]);
    expect(vals(run1('Sigmoid', [f32([2], [-1000, 1000])]))).toEqual([0, 1]);
  });
  it('IsNaN and IsInf produce bool; IsInf honours detect_positive/negative', () => {
    const x = f32([4], [NaN, Infinity, -Infinity, 1]);
    expect(Array.from(run1('IsNaN', [x]).data as Uint8Array)).toEqual([1, 0, 0, 0]);
    expect(Array.from(run1('IsInf', [x]).data as Uint8Array)).toEqual([0, 1, 1, 0]);
    expect(Array.from(run1('IsInf', [x], { detect_positive: A.int(0) }).data as Uint8Array)).toEqual([0, 0, 1, 0]);
  });
  it('float16 unary results are float16-rounded and zero-size works', () => {
    const r = run1('Exp', [t('float16', [2], [1, -1])]);
    expect(r.dtype).toBe('float16');
    expect(vals(r)).toEqual([h(Math.E), h(Math.exp(h(-1)))]);
    expect(run1('Tanh', [f32([0, 2], [])]).dims).toEqual([0, 2]);
  });
  it('Gelu with an unknown approximation is reported by supports()', () => {
    expect(getOp('Gelu')!.supports!(mk('Gelu', 1, { approximate: A.str('erf') }), 20)).toMatch(/approximate/);
    expect(getOp('Gelu')!.supports!(mk('Gelu', 1, { approximate: A.str('tanh') }), 20)).toBeUndefined();
  });
});

describe('Cast and CastLike', () => {
  const cast = (x: Tensor, to: number) => run1('Cast', [x], { to: A.int(to) });
  it('float to int truncates toward zero and wraps; to bool is x != 0 (NaN true)', () => {
    expect(vals(cast(f32([4], [1.9, -1.9, 2.5, 300.7]), 6))).toEqual([1, -1, 2, 300]);
    expect(vals(cast(f32([2], [300.7, -129]), 3))).toEqual([44, 127]);
    const b = cast(f32([4], [NaN, 0, -0, 0.1]), 9);
    expect(b.dtype).toBe('bool');
    expect(Array.from(b.data as Uint8Array)).toEqual([1, 0, 0, 1]);
    expect(vals(cast(t('bool', [2], [1, 0]), 1))).toEqual([1, 0]);
  });
  it('rounds to float16 and bfloat16 to nearest even', () => {
    const f16 = cast(f32([4], [1 / 3, 65520, 65504, 1e-8]), 10);
    expect(Array.from(f16.data as Uint16Array)).toEqual([0x3555, 0x7c00, 0x7bff, 0]);
    const bf = cast(f32([3], [1 + 2 ** -8, 1 + 3 * 2 ** -8, -2]), 16);
    expect(Array.from(bf.data as Uint16Array)).toEqual([0x3f80, 0x3f82, 0xc000]);
    expect(vals(cast(makeTensor('float16', [1], Uint16Array.from([0x3555])), 11))).toEqual([f16BitsToF32(0x3555)]);
  });
  it('64-bit integer casts are exact and wrap', () => {
    expect(vals(cast(i64([3], [2n ** 32n + 5n, 2n ** 31n, -1]), 6))).toEqual([5, -2147483648, -1]);
    expect(Array.from(cast(i64([1], [-1]), 13).data as BigUint64Array)).toEqual([2n ** 64n - 1n]);
    expect(Array.from(cast(f32([2], [-1, 3.7]), 13).data as BigUint64Array)).toEqual([2n ** 64n - 1n, 3n]);
    expect(bigs(cast(t('int32', [1], [-7]), 7))).toEqual([-7n]);
  });
  it('CastLike takes the dtype of its second input', () => {
    const r = run1('CastLike', [f32([2], [1.5, -2.5]), t('int32', [0], [])]);
    expect(r.dtype).toBe('int32');
    expect(vals(r)).toEqual([1, -2]);
  });
  it('string and float8 targets are reported by supports()', () => {
    const sup = getOp('Cast')!.supports!;
    expect(sup(mk('Cast', 1, { to: A.int(8) }), 25)).toMatch(/string/);
    expect(sup(mk('Cast', 1, { to: A.int(17) }), 25)).toMatch(/not supported/);
    expect(sup(mk('Cast', 1, { to: A.int(1) }), 25)).toBeUndefined();
    expect(() => cast(makeTensor('string', [1], ['1']), 1)).toThrow(UnsupportedError);
  });
});

describe('Clip', () => {
  it('clips with optional bounds, min > max gives max, NaN passes through', () => {
    const x = f32([4], [-5, 0.5, 5, NaN]);
    expect(vals(run1('Clip', [x, f32([], [-1]), f32([], [1])]))).toEqual([-1, 0.5, 1, NaN]);
    expect(vals(run1('Clip', [x, undefined, f32([], [1])]))).toEqual([-5, 0.5, 1, NaN]);
    expect(vals(run1('Clip', [x]))).toEqual([-5, 0.5, 5, NaN]);
    expect(vals(run1('Clip', [x, f32([], [2]), f32([], [1])]))).toEqual([1, 1, 1, NaN]);
  });
  it('clips integers, int64 exactly', () => {
    expect(vals(run1('Clip', [t('int8', [3], [-100, 5, 100]), t('int8', [], [-10])]))).toEqual([-10, 5, 100]);
    expect(bigs(run1('Clip', [i64([2], [2n ** 62n, -5]), undefined, i64([], [2n ** 61n])]))).toEqual([2n ** 61n, -5n]);
  });
  it('accepts float bounds of another float type (legacy upgrade) but not mixed int/float', () => {
    expect(infer('Clip', [tt('float16', ['n']), tt('float32', []), undefined])).toEqual([tt('float16', ['n'])]);
    expect(() => infer('Clip', [tt('int8', [2]), tt('float32', [])])).toThrow(/different types/);
    expect(vals(run1('Clip', [t('float16', [2], [-3, 3]), f32([], [-1]), f32([], [1])]))).toEqual([-1, 1]);
  });
  it('rejects non-scalar bounds', () => {
    expect(() => run1('Clip', [f32([2], [1, 2]), f32([2], [0, 0])])).toThrow(/scalar/);
  });
  it('upgrades opset 6 min/max attributes into inputs', () => {
    const g = graph([node('Clip', ['x'], ['y'], { min: A.float(-0.5), max: A.float(0.5) })], [['x', tt('float32', [3])]], ['y']);
    const { graph: up, y } = runUpgraded(g, [['x', f32([3], [-1, 0.25, 1])]]);
    expect(up.nodes[0].inputs.length).toBe(3);
    expect(up.nodes[0].attrs.min).toBeUndefined();
    expect(vals(y)).toEqual([-0.5, 0.25, 0.5]);
    const onlyMax = upgradeGraph(graph([node('Clip', ['x'], ['y'], { max: A.float(0.5) })], [['x', tt('float64', [3])]], ['y']));
    expect(onlyMax.nodes[0].inputs[1]).toBe('');
    expect(onlyMax.initializers.get(onlyMax.nodes[0].inputs[2])!.dtype).toBe('float64');
  });
});

describe('Identity and Dropout', () => {
  it('Dropout at inference copies X and gives an all-true mask', () => {
    const x = f32([2, 2], [1, 2, 3, 4]);
    const [y, mask] = run('Dropout', [x, f32([], [0.3])], {}, 2, 13);
    expect(vals(y)).toEqual([1, 2, 3, 4]);
    expect(mask.dtype).toBe('bool');
    expect(Array.from(mask.data as Uint8Array)).toEqual([1, 1, 1, 1]);
    const [, oldMask] = run('Dropout', [x], {}, 2, 7);
    expect(oldMask.dtype).toBe('float32');
    expect(vals(oldMask)).toEqual([1, 1, 1, 1]);
  });
  it('training_mode=true is unsupported', () => {
    const x = f32([1], [1]);
    expect(() => run('Dropout', [x, f32([], [0.5]), t('bool', [], [1])], {}, 1, 13)).toThrow(UnsupportedError);
    expect(vals(run('Dropout', [x, f32([], [0.5]), t('bool', [], [0])], {}, 1, 13)[0])).toEqual([1]);
  });
  it('upgrades the opset 7 ratio attribute into an input', () => {
    const g = graph([node('Dropout', ['x'], ['y'], { ratio: A.float(0.2) })], [['x', tt('float32', [2])]], ['y'], [], 7);
    const { graph: up, y } = runUpgraded(g, [['x', f32([2], [3, 4])]]);
    expect(up.nodes[0].attrs.ratio).toBeUndefined();
    expect(vals(up.initializers.get(up.nodes[0].inputs[1])!)).toEqual([Math.fround(0.2)]);
    expect(vals(y)).toEqual([3, 4]);
  });
  it('Identity passes any dtype through', () => {
    expect(run1('Identity', [makeTensor('string', [1], ['s'])]).data).toEqual(['s']);
  });
});

describe('legacy (opset < 7) broadcasting', () => {
  const a = f32([2, 3, 2], Array.from({ length: 12 }, (_, i) => i));
  const want = [100, 101, 202, 203, 304, 305, 106, 107, 208, 209, 310, 311];
  it('reshapes a constant B aligned at axis 1', () => {
    const g = graph([node('Add', ['a', 'b'], ['y'], { broadcast: A.int(1), axis: A.int(1) })], [['a', tt('float32', [2, 3, 2])]], ['y'],
      [['b', f32([3], [100, 200, 300])]]);
    const { graph: up, y } = runUpgraded(g, [['a', a]]);
    expect(up.nodes.map((n) => n.op)).toEqual(['Add']);
    expect(up.nodes[0].attrs).toEqual({});
    expect(up.initializers.get(up.nodes[0].inputs[1])!.dims).toEqual([3, 1]);
    expect(vals(y)).toEqual(want);
  });
  it('inserts a Reshape for a graph-input B, and a run-time shape computation when ranks are unknown', () => {
    const g = graph([node('Add', ['a', 'b'], ['y'], { broadcast: A.int(1), axis: A.int(1) })],
      [['a', tt('float32', [2, 3, 2])], ['b', tt('float32', [3])]], ['y']);
    const r1 = runUpgraded(g, [['a', a], ['b', f32([3], [100, 200, 300])]]);
    expect(r1.graph.nodes.map((n) => n.op)).toEqual(['Reshape', 'Add']);
    expect(vals(r1.y)).toEqual(want);
    // A is computed by a node (no declared type): the target shape is built from Shape(A) at run time.
    const g2 = graph([node('Relu', ['a0'], ['a']), node('Mul', ['a', 'b'], ['y'], { broadcast: A.int(1), axis: A.int(1) })],
      [['a0', tt('float32', [2, 3, 2])]], ['y'], [['b', f32([3], [1, 2, 3])]]);
    const r2 = runUpgraded(g2, [['a0', a]]);
    expect(r2.graph.nodes.some((n) => n.op === 'ConstantOfShape')).toBe(true);
    expect(vals(r2.y)).toEqual([0, 1, 4, 6, 12, 15, 6, 7, 16, 18, 30, 33]);
  });
  it('suffix broadcast (no axis) and broadcast=0 only drop the attributes', () => {
    const g = graph([node('Sub', ['a', 'b'], ['y'], { broadcast: A.int(1) })], [['a', tt('float32', [2, 3, 2])]], ['y'], [['b', f32([2], [1, 2])]]);
    const { graph: up, y } = runUpgraded(g, [['a', a]]);
    expect(up.nodes[0].attrs).toEqual({});
    expect(vals(y).slice(0, 4)).toEqual([-1, -1, 1, 1]);
  });
  it('opset 6 PRelu applies a 1-D slope per channel', () => {
    const g = graph([node('PRelu', ['x', 's'], ['y'])], [['x', tt('float32', [1, 2, 2])]], ['y'], [['s', f32([2], [0.5, 0.25])]]);
    const { y } = runUpgraded(g, [['x', f32([1, 2, 2], [-2, 2, -4, 4])]]);
    expect(vals(y)).toEqual([-1, 2, -1, 4]);
  });
});

describe('inference', () => {
  it('broadcasts symbolic shapes and types comparisons as bool', () => {
    expect(infer('Add', [tt('float32', ['batch', 1]), tt('float32', [1, 4])])).toEqual([tt('float32', ['batch', 4])]);
    expect(infer('Less', [tt('int64', [3]), tt('int64', [])])).toEqual([tt('bool', [3])]);
    expect(infer('Where', [tt('bool', ['n', 1]), tt('float16', [5]), tt('float16', [1])])).toEqual([tt('float16', ['n', 5])]);
    expect(infer('Max', [tt('int32', [2, 1]), tt('int32', [3]), tt('int32', [])])).toEqual([tt('int32', [2, 3])]);
    expect(infer('Cast', [tt('float32', ['b', 3])], { attrs: { to: A.int(7) } })).toEqual([tt('int64', ['b', 3])]);
    expect(infer('Pow', [tt('float32', [2]), tt('int64', [])])).toEqual([tt('float32', [2])]);
    expect(infer('IsNaN', [tt('float32', [2])])).toEqual([tt('bool', [2])]);
    expect(infer('Dropout', [tt('float32', [2])], { nOut: 2 })).toEqual([tt('float32', [2]), tt('bool', [2])]);
  });
  it('rejects mismatched types, bad broadcasts and float-only ops on ints, naming the node', () => {
    expect(() => infer('Add', [tt('float32', [2]), tt('float16', [2])])).toThrow(/Cast/);
    expect(() => infer('Mul', [tt('float32', [2, 3]), tt('float32', [4])])).toThrow(GraphError);
    expect(() => infer('Exp', [tt('int32', [2])])).toThrow(/Exp_t/);
    expect(() => infer('PRelu', [tt('float32', [2, 3]), tt('float32', [2, 3, 1])])).toThrow(/slope/);
    expect(() => infer('Dropout', [tt('float32', [2]), tt('float32', []), tt('bool', [])], { consts: [undefined, undefined, t('bool', [], [1])] }))
      .toThrow(UnsupportedError);
  });
  it('propagates shape values through Add/Sub/Mul/Div, Cast and Identity', () => {
    const p = (op: string, vs: (Dim[] | undefined)[], attrs: Record<string, Attr> = {}) =>
      getOp(op)!.propagate!(mk(op, vs.length, attrs), vs, vs.map(() => tt('int64', [])))[0];
    expect(p('Mul', [['batch', 4], [2]])).toEqual(['batch*2', 8]);
    expect(p('Div', [['batch*2', 8], [2]])).toEqual(['batch', 4]);
    expect(p('Add', [[3, 'n'], [0]])).toEqual([3, 'n']);
    expect(p('Sub', [['n'], ['n']])).toEqual([0]);
    expect(p('Div', [[7, -7], [2]])).toEqual([3, -3]);
    expect(p('Add', [[1, 2], [1, 2, 3]])).toBeUndefined();
    expect(p('Cast', [['b', 3]], { to: A.int(7) })).toEqual(['b', 3]);
    expect(p('Cast', [['b', 3]], { to: A.int(1) })).toBeUndefined();
    expect(p('Identity', [['b']])).toEqual(['b']);
    expect(p('Equal', [['b', 4, -1], [-1]])).toEqual([0, 0, 1]);
    expect(p('Equal', [['b'], [3]])).toBeUndefined();
    expect(p('Where', [[1, 0], [1], ['b', 4]])).toEqual([1, 4]);
    expect(p('Max', [[2, 5], [3], [1, 9]])).toEqual([3, 9]);
  });
  it('resolves a symbolic shape subgraph end to end (Shape -> Equal/Where -> Mul/Div -> Reshape)', () => {
    const g: Graph = {
      name: 'g', opset: 13, valueTypes: new Map(),
      inputs: [{ name: 'x', type: tt('float32', ['batch', 4]) }],
      outputs: [{ name: 'y', type: tt('float32', []) }],
      initializers: new Map([['neg', i64([2], [-1, -1])], ['ones', i64([2], [1, 1])], ['k', i64([2], [2, 1])], ['d', i64([2], [1, 2])]]),
      nodes: [
        node('Shape', ['x'], ['s']), node('Equal', ['s', 'neg'], ['m']), node('Where', ['m', 'ones', 's'], ['t']),
        node('Mul', ['t', 'k'], ['u']), node('Div', ['u', 'd'], ['v']), node('Reshape', ['x', 'v'], ['y']),
      ],
    };
    const r = inferShapes(g);
    expect(r.graph.outputs[0].type).toEqual(tt('float32', ['batch*2', 2]));
  });
});
