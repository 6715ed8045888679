// Reductions and ArgMax/ArgMin: hand-computed CPU results (keepdims, negative axes, noop_with_empty_axes,
// empty sets, int64 beyond 2^53, float16), the opset < 18 axes-attribute upgrade and static inference.
import { describe, expect, it } from 'vitest';
import '../src/ops/index.js';
import { getOp, type InferCtx } from '../src/ops/registry.js';
import { f16BitsToF32, f32ToF16Bits, fromF64, makeTensor, toF64 } from '../src/ir/tensor.js';
import { upgradeGraph } from '../src/onnx/import.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { GraphError } from '../src/errors.js';
import type { Attr, DType, Dim, Graph, Node, Tensor, TensorType } from '../src/ir/types.js';

const int = (value: number): Attr => ({ kind: 'int', value });
const ints = (value: number[]): Attr => ({ kind: 'ints', value });

function mk(op: string, nIn: number, attrs: Record<string, Attr> = {}): Node {
  return { name: `${op}_t`, op, domain: '', attrs, inputs: Array.from({ length: nIn }, (_, i) => `in${i}`), outputs: ['out0'] };
}
const t = (dtype: DType, dims: number[], v: number[]) => fromF64(dtype, dims, v);
const f32 = (dims: number[], v: number[]) => t('float32', dims, v);
const i64 = (dims: number[], v: (number | bigint)[]) => makeTensor('int64', dims, BigInt64Array.from(v.map((x) => BigInt(x))));
const axes = (...a: number[]) => i64([a.length], a);
const vals = (x: Tensor) => Array.from(toF64(x));
const bigs = (x: Tensor) => Array.from(x.data as BigInt64Array);

function run(op: string, ins: (Tensor | undefined)[], attrs: Record<string, Attr> = {}): Tensor {
  const node = mk(op, ins.length, attrs);
  ins.forEach((x, i) => { if (!x) node.inputs[i] = ''; });
  return getOp(op)!.cpu(node, ins, { opset: 18, runGraph: () => [] })[0];
}

let sym = 0;
function infer(op: string, ins: TensorType[], consts: (Tensor | undefined)[] = [], attrs: Record<string, Attr> = {}): TensorType {
  const node = mk(op, ins.length, attrs);
  const ctx = { opset: 18, consts: ins.map((_, i) => consts[i]), shapeValues: ins.map(() => undefined), freshDim: () => `s${sym++}` } as InferCtx;
  return getOp(op)!.infer(node, ins, ctx)[0];
}
const tt = (dtype: DType, shape: Dim[]): TensorType => ({ dtype, shape });

// [[1, 2, 3], [4, 5, 6]]
const x23 = f32([2, 3], [1, 2, 3, 4, 5, 6]);

describe('Reduce* values', () => {
  it('ReduceSum over one axis, negative axes, keepdims and all axes', () => {
    const r = run('ReduceSum', [x23, axes(1)]);
    expect(r.dims).toEqual([2, 1]);
    expect(vals(r)).toEqual([6, 15]);
    const r0 = run('ReduceSum', [x23, axes(-2)], { keepdims: int(0) });
    expect(r0.dims).toEqual([3]);
    expect(vals(r0)).toEqual([5, 7, 9]);
    const all = run('ReduceSum', [x23]);
    expect(all.dims).toEqual([1, 1]);
    expect(vals(all)).toEqual([21]);
    const scalar = run('ReduceSum', [x23, axes()], { keepdims: int(0) });
    expect(scalar.dims).toEqual([]);
    expect(vals(scalar)).toEqual([21]);
  });
  it('each reduction kind over axis 1', () => {
    const x = f32([2, 3], [1, -2, 3, 0.5, 4, 2]);
    const r = (op: string) => vals(run(op, [x, axes(1)], { keepdims: int(0) }));
    expect(r('ReduceMean')).toEqual([2 / 3, 6.5 / 3].map(Math.fround));
    expect(r('ReduceMax')).toEqual([3, 4]);
    expect(r('ReduceMin')).toEqual([-2, 0.5]);
    expect(r('ReduceProd')).toEqual([-6, 4]);
    expect(r('ReduceL1')).toEqual([6, 6.5]);
    expect(r('ReduceL2')).toEqual([Math.sqrt(14), Math.sqrt(20.25)].map(Math.fround));
    expect(r('ReduceSumSquare')).toEqual([14, 20.25]);
    expect(r('ReduceLogSum')).toEqual([Math.log(2), Math.log(6.5)].map(Math.fround));
    expect(r('ReduceLogSumExp')).toEqual([Math.log(Math.exp(1) + Math.exp(-2) + Math.exp(3)), Math.log(Math.exp(0.5) + Math.exp(4) + Math.exp(2))].map(Math.fround));
  });
  it('ReduceLogSumExp does not overflow on large values and handles -inf rows', () => {
    const x = f32([2, 2], [1000, 1001, -Infinity, -Infinity]);
    expect(vals(run('ReduceLogSumExp', [x, axes(1)]))).toEqual([Math.fround(1001 + Math.log1p(Math.exp(-1))), -Infinity]);
  });
  it('reduces a middle axis of a 3-D tensor and several axes at once', () => {
    const x = f32([2, 3, 2], Array.from({ length: 12 }, (_, i) => i));
    expect(vals(run('ReduceSum', [x, axes(1)], { keepdims: int(0) }))).toEqual([6, 9, 24, 27]);
    expect(vals(run('ReduceMax', [x, axes(0, 2)], { keepdims: int(0) }))).toEqual([7, 9, 11]);
  });
  it('ReduceMax propagates NaN like numpy', () => {
    expect(vals(run('ReduceMax', [f32([3], [1, NaN, 5])]))).toEqual([NaN]);
  });
});

describe('empty axes and empty sets', () => {
  it('noop_with_empty_axes returns the input for Sum and reduces each element alone for SumSquare/L1/LogSum', () => {
    const x = f32([2], [-3, 4]);
    const noop = { noop_with_empty_axes: int(1) };
    expect(run('ReduceSum', [x, axes()], noop)).toBe(x);
    expect(run('ReduceSum', [x, undefined], noop)).toBe(x);
    expect(vals(run('ReduceSumSquare', [x, axes()], noop))).toEqual([9, 16]);
    expect(vals(run('ReduceL1', [x, axes()], noop))).toEqual([3, 4]);
    expect(vals(run('ReduceLogSum', [f32([2], [1, 4])], noop))).toEqual([0, Math.fround(Math.log(4))]);
  });
  it('reducing an empty set gives the reduction identity', () => {
    const x = f32([2, 0, 3], []);
    const r = (op: string) => run(op, [x, axes(1)]);
    expect(r('ReduceSum').dims).toEqual([2, 1, 3]);
    expect(vals(r('ReduceSum'))).toEqual(new Array(6).fill(0));
    expect(vals(r('ReduceProd'))).toEqual(new Array(6).fill(1));
    expect(vals(r('ReduceMax'))).toEqual(new Array(6).fill(-Infinity));
    expect(vals(r('ReduceMin'))).toEqual(new Array(6).fill(Infinity));
    expect(vals(r('ReduceLogSumExp'))).toEqual(new Array(6).fill(-Infinity));
    expect(vals(r('ReduceLogSum'))).toEqual(new Array(6).fill(-Infinity));
    expect(vals(r('ReduceL2'))).toEqual(new Array(6).fill(0));
    expect(vals(r('ReduceMean')).every(Number.isNaN)).toBe(true);
    expect(vals(run('ReduceMax', [t('int32', [0], []), axes(0)]))).toEqual([-2147483648]);
    expect(vals(run('ReduceMin', [t('uint8', [0], []), axes(0)]))).toEqual([255]);
    // Reducing a non-empty axis of an empty tensor keeps it empty.
    expect(run('ReduceSum', [x, axes(2)]).dims).toEqual([2, 0, 1]);
  });
});

describe('dtypes', () => {
  it('int64 sums, products and extrema stay exact', () => {
    const x = i64([3], [2n ** 60n, 1, -2]);
    expect(bigs(run('ReduceSum', [x]))).toEqual([2n ** 60n - 1n]);
    expect(bigs(run('ReduceMax', [x]))).toEqual([2n ** 60n]);
    expect(bigs(run('ReduceProd', [i64([2], [2n ** 31n, 2n ** 31n])]))).toEqual([2n ** 62n]);
    expect(bigs(run('ReduceMean', [i64([2], [7, 8])]))).toEqual([7n]);
  });
  it('int32 mean truncates and float16 rounds once', () => {
    expect(vals(run('ReduceMean', [t('int32', [2], [-7, 0])]))).toEqual([-3]);
    const r = run('ReduceSum', [t('float16', [3], [2048, 1, 1])]);
    expect(r.dtype).toBe('float16');
    expect(vals(r)).toEqual([f16BitsToF32(f32ToF16Bits(2050))]);
  });
});

describe('axes attribute upgrade', () => {
  const g = (op: string, opset: number, attrs: Record<string, Attr>): Graph => ({
    name: 'g', opset, initializers: new Map(), valueTypes: new Map(),
    inputs: [{ name: 'x', type: tt('float32', [2, 3]) }], outputs: [{ name: 'y', type: tt('float32', []) }],
    nodes: [{ name: 'r', op, domain: '', inputs: ['x'], outputs: ['y'], attrs }],
  });
  it('moves axes into an int64 input below opset 18 (13 for ReduceSum)', () => {
    const up = upgradeGraph(g('ReduceMean', 13, { axes: ints([1]), keepdims: int(0) }));
    expect(up.nodes[0].attrs.axes).toBeUndefined();
    expect(bigs(up.initializers.get(up.nodes[0].inputs[1])!)).toEqual([1n]);
    expect(vals(runGraph(up, new Map([['x', x23]])).get('y')!)).toEqual([2, 5]);
    const sum = upgradeGraph(g('ReduceSum', 11, { axes: ints([0]) }));
    expect(vals(runGraph(sum, new Map([['x', x23]])).get('y')!)).toEqual([5, 7, 9]);
  });
  it('leaves the newest form alone and reduces everything without axes', () => {
    const same = g('ReduceSum', 13, {});
    expect(upgradeGraph(same).nodes[0]).toEqual(same.nodes[0]);
    const none = upgradeGraph(g('ReduceMax', 11, {}));
    expect(none.nodes[0].inputs).toEqual(['x']);
    expect(vals(runGraph(none, new Map([['x', x23]])).get('y')!)).toEqual([6]);
  });
});

describe('ArgMax / ArgMin', () => {
  const x = f32([2, 3], [1, 3, 3, 2, 2, 1]);
  it('first or last index of the extremum, int64 output, keepdims', () => {
    const r = run('ArgMax', [x], { axis: int(1) });
    expect(r.dtype).toBe('int64');
    expect(r.dims).toEqual([2, 1]);
    expect(bigs(r)).toEqual([1n, 0n]);
    expect(bigs(run('ArgMax', [x], { axis: int(1), select_last_index: int(1) }))).toEqual([2n, 1n]);
    expect(bigs(run('ArgMin', [x], { axis: int(-1), keepdims: int(0) }))).toEqual([0n, 2n]);
    expect(bigs(run('ArgMin', [x], { axis: int(0), keepdims: int(0) }))).toEqual([0n, 1n, 1n]);
  });
  it('NaN wins, int64 values compare exactly, empty axis is an error', () => {
    expect(bigs(run('ArgMax', [f32([4], [1, NaN, 5, NaN])]))).toEqual([1n]);
    expect(bigs(run('ArgMin', [f32([4], [1, NaN, -5, NaN])], { select_last_index: int(1) }))).toEqual([3n]);
    expect(bigs(run('ArgMax', [i64([2], [2n ** 60n + 1n, 2n ** 60n])]))).toEqual([0n]);
    expect(() => run('ArgMax', [f32([2, 0], [])], { axis: int(1) })).toThrow(GraphError);
  });
});

describe('inference', () => {
  it('uses constant axes, keeps symbolic dims and honours keepdims', () => {
    expect(infer('ReduceMean', [tt('float32', ['b', 3, 4]), tt('int64', [1])], [undefined, axes(-1)])).toEqual(tt('float32', ['b', 3, 1]));
    expect(infer('ReduceSum', [tt('float32', ['b', 3, 4]), tt('int64', [2])], [undefined, axes(1, 2)], { keepdims: int(0) })).toEqual(tt('float32', ['b']));
    expect(infer('ReduceMax', [tt('float16', ['b', 3])])).toEqual(tt('float16', [1, 1]));
    expect(infer('ReduceSum', [tt('float32', ['b', 3]), tt('int64', [0])], [undefined, axes()], { noop_with_empty_axes: int(1) })).toEqual(tt('float32', ['b', 3]));
    expect(infer('ArgMax', [tt('float32', ['b', 7])], [], { axis: int(1), keepdims: int(0) })).toEqual(tt('int64', ['b']));
  });
  it('run-time axes: fresh dims with keepdims, the rank from the axes length without', () => {
    const keep = infer('ReduceSum', [tt('float32', ['b', 1, 4]), tt('int64', [1])]);
    expect(keep.shape[1]).toBe(1);
    expect(keep.shape.filter((d) => typeof d === 'string' && /^s\d+$/.test(d)).length).toBe(2);
    expect(infer('ReduceSum', [tt('float32', [2, 3, 4]), tt('int64', [2])], [], { keepdims: int(0) }).shape.length).toBe(1);
    expect(() => infer('ReduceSum', [tt('float32', [2, 3]), tt('int64', ['k'])], [], { keepdims: int(0) })).toThrow(/constant axes/);
  });
  it('rejects repeated or out-of-range axes and non-numeric inputs', () => {
    expect(() => infer('ReduceSum', [tt('float32', [2, 3]), tt('int64', [2])], [undefined, axes(1, -1)])).toThrow(/twice/);
    expect(() => run('ReduceSum', [x23, axes(2)])).toThrow(/out of range/);
    expect(() => infer('ReduceMax', [tt('bool', [2])])).toThrow(GraphError);
  });
});
