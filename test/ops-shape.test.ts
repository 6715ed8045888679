// Shape and data-movement ops: hand-computed CPU results (float, int64, bool, float16 bits, strings, zero-size),
// legacy-form upgrades, and static inference with symbolic dims.
import { describe, expect, it } from 'vitest';
import '../src/ops/index.js';
import { getOp, type InferCtx } from '../src/ops/registry.js';
import { f32ToF16Bits, fromF64, makeTensor } from '../src/ir/tensor.js';
import { inferShapes } from '../src/ir/infer.js';
import { upgradeGraph } from '../src/onnx/import.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { TsrtError } from '../src/errors.js';
import { opNode, vals } from './helpers.js';
import type { Attr, DType, Dim, Graph, Node, Tensor, TensorType } from '../src/ir/types.js';

const A = {
  int: (value: number): Attr => ({ kind: 'int', value }),
  ints: (value: number[]): Attr => ({ kind: 'ints', value }),
  float: (value: number): Attr => ({ kind: 'float', value }),
  str: (value: string): Attr => ({ kind: 'string', value }),
  strs: (value: string[]): Attr => ({ kind: 'strings', value }),
  tensor: (value: Tensor): Attr => ({ kind: 'tensor', value }),
};

const mk = opNode;

const f32 = (dims: number[], v: number[]) => fromF64('float32', dims, v);
const i64 = (dims: number[], v: (number | bigint)[]) => makeTensor('int64', dims, BigInt64Array.from(v.map((x) => BigInt(x))));
const bigs = (t: Tensor) => Array.from(t.data as BigInt64Array);

function run(op: string, ins: (Tensor | undefined)[], attrs: Record<string, Attr> = {}, nOut = 1, opset = 25): Tensor[] {
  const node = mk(op, ins.length, attrs, nOut);
  ins.forEach((t, i) => { if (!t) node.inputs[i] = ''; });
  return getOp(op)!.cpu(node, ins, { opset, runGraph: () => [] });
}
const run1 = (op: string, ins: (Tensor | undefined)[], attrs: Record<string, Attr> = {}) => run(op, ins, attrs)[0];

let sym = 0;
function infer(op: string, ins: (TensorType | undefined)[], opts: { attrs?: Record<string, Attr>; consts?: (Tensor | undefined)[];
  values?: (Dim[] | undefined)[]; nOut?: number; opset?: number } = {}): TensorType[] {
  const node = mk(op, ins.length, opts.attrs, opts.nOut ?? 1);
  ins.forEach((t, i) => { if (!t) node.inputs[i] = ''; });
  const ctx: InferCtx = {
    opset: opts.opset ?? 25,
    consts: opts.consts ?? ins.map(() => undefined),
    shapeValues: opts.values ?? ins.map(() => undefined),
    freshDim: () => `s${sym++}`,
  };
  return getOp(op)!.infer(node, ins, ctx);
}
const tt = (dtype: DType, shape: Dim[]): TensorType => ({ dtype, shape });
const isFresh = (d: Dim) => typeof d === 'string' && /^s\d+$/.test(d);

function graph(nodes: Node[], inputs: [string, TensorType][], outputs: string[], inits: [string, Tensor][] = [], opset = 13): Graph {
  return {
    name: 'g', nodes, opset,
    inputs: inputs.map(([name, type]) => ({ name, type })),
    outputs: outputs.map((name) => ({ name, type: { dtype: 'float32', shape: [] } })),
    initializers: new Map(inits), valueTypes: new Map(),
  };
}
const node = (op: string, inputs: string[], outputs: string[], attrs: Record<string, Attr> = {}): Node =>
  ({ name: `${op}_${outputs[0]}`, op, domain: '', inputs, outputs, attrs });

describe('Shape and Size', () => {
  const x = f32([2, 3, 4], new Array(24).fill(0));
  it('Shape honours start/end with negative values and clamping', () => {
    expect(bigs(run1('Shape', [x]))).toEqual([2n, 3n, 4n]);
    expect(bigs(run1('Shape', [x], { start: A.int(-2) }))).toEqual([3n, 4n]);
    expect(bigs(run1('Shape', [x], { start: A.int(1), end: A.int(-1) }))).toEqual([3n]);
    expect(bigs(run1('Shape', [x], { start: A.int(-10), end: A.int(10) }))).toEqual([2n, 3n, 4n]);
    const empty = run1('Shape', [x], { start: A.int(2), end: A.int(1) });
    expect(empty.dims).toEqual([0]);
  });
  it('Shape infers its length and propagates symbolic dims', () => {
    const t = tt('float32', ['batch', 3, 'h']);
    expect(infer('Shape', [t], { attrs: { start: A.int(1) } })).toEqual([tt('int64', [2])]);
    expect(getOp('Shape')!.propagate!(mk('Shape', 1, { end: A.int(-1) }), [undefined], [t])).toEqual([['batch', 3]]);
  });
  it('Size counts elements, zero-size included', () => {
    const s = run1('Size', [f32([2, 0, 3], [])]);
    expect(s.dtype).toBe('int64');
    expect(s.dims).toEqual([]);
    expect(bigs(s)).toEqual([0n]);
    expect(bigs(run1('Size', [x]))).toEqual([24n]);
  });
});

describe('Reshape, Flatten, Squeeze, Unsqueeze', () => {
  it('Reshape copies 0 dims and infers -1, keeping int64 values exact', () => {
    const big = 2n ** 60n + 3n;
    const x = i64([2, 3, 2], [big, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const y = run1('Reshape', [x, i64([2], [0, -1])]);
    expect(y.dims).toEqual([2, 6]);
    expect(bigs(y)[0]).toBe(big);
    expect(run1('Reshape', [x, i64([3], [-1, 0, 1])]).dims).toEqual([4, 3, 1]);
  });
  it('Reshape allowzero=1 keeps a literal 0 dim', () => {
    const x = f32([0, 3], []);
    expect(run1('Reshape', [x, i64([2], [3, 0])], { allowzero: A.int(1) }).dims).toEqual([3, 0]);
    expect(run1('Reshape', [x, i64([2], [0, 3])]).dims).toEqual([0, 3]);
  });
  it('Reshape rejects a target that changes the element count', () => {
    expect(() => run1('Reshape', [f32([2, 3], [1, 2, 3, 4, 5, 6]), i64([2], [4, 2])])).toThrow(TsrtError);
    expect(() => run1('Reshape', [f32([2, 3], [1, 2, 3, 4, 5, 6]), i64([2], [-1, 4])])).toThrow(/elements/);
  });
  it('Reshape infers symbolic dims from shape values, cancelling common symbols', () => {
    const x = tt('float32', ['batch', 3, 4, 4]);
    expect(infer('Reshape', [x, tt('int64', [2])], { values: [undefined, ['batch', -1]] })[0].shape).toEqual(['batch', 48]);
    expect(infer('Reshape', [x, tt('int64', [3])], { values: [undefined, [0, 12, -1]] })[0].shape).toEqual(['batch', 12, 4]);
    expect(infer('Reshape', [x, tt('int64', [2])], { values: [undefined, [-1, 16]] })[0].shape[0]).toSatisfy(isFresh);
    const anon = infer('Reshape', [tt('float32', ['?', 12]), tt('int64', [2])], { values: [undefined, ['?', -1]] })[0].shape;
    expect(anon[0]).toBe('?');
    expect(anon[1]).toSatisfy(isFresh);
    expect(infer('Reshape', [tt('float32', [2, 'n']), tt('int64', [3])])[0].shape.every(isFresh)).toBe(true);
  });
  it('Flatten splits at the axis, negative axis and symbolic batch included', () => {
    const x = f32([2, 3, 4], new Array(24).fill(1));
    expect(run1('Flatten', [x]).dims).toEqual([2, 12]);
    expect(run1('Flatten', [x], { axis: A.int(0) }).dims).toEqual([1, 24]);
    expect(run1('Flatten', [x], { axis: A.int(-1) }).dims).toEqual([6, 4]);
    expect(run1('Flatten', [x], { axis: A.int(3) }).dims).toEqual([24, 1]);
    expect(infer('Flatten', [tt('float32', ['N', 512, 1, 1])])[0].shape).toEqual(['N', 512]);
    expect(() => run1('Flatten', [x], { axis: A.int(4) })).toThrow(/axis/);
  });
  it('Squeeze and Unsqueeze move axes; unknown axes give fresh dims of the right rank', () => {
    const x = f32([1, 3, 1], [1, 2, 3]);
    expect(run1('Squeeze', [x]).dims).toEqual([3]);
    expect(run1('Squeeze', [x, i64([1], [-1])]).dims).toEqual([1, 3]);
    expect(() => run1('Squeeze', [x, i64([1], [1])])).toThrow(/size-1/);
    expect(run1('Unsqueeze', [x, i64([2], [4, 0])]).dims).toEqual([1, 1, 3, 1, 1]);
    expect(run1('Unsqueeze', [f32([], [5]), i64([1], [0])]).dims).toEqual([1]);
    expect(infer('Squeeze', [tt('float32', ['b', 1, 7])], { values: [undefined, [1]] })[0].shape).toEqual(['b', 7]);
    const sq = infer('Squeeze', [tt('float32', ['b', 1, 7]), tt('int64', [1])])[0].shape;
    expect(sq.length).toBe(2);
    expect(infer('Unsqueeze', [tt('float32', ['b', 7]), tt('int64', [2])], { values: [undefined, [1, -1]] })[0].shape).toEqual(['b', 1, 7, 1]);
  });
});

describe('Transpose', () => {
  it('permutes float32, default perm reverses', () => {
    const x = f32([2, 3], [1, 2, 3, 4, 5, 6]);
    const y = run1('Transpose', [x]);
    expect(y.dims).toEqual([3, 2]);
    expect(vals(y)).toEqual([1, 4, 2, 5, 3, 6]);
  });
  it('moves float16 bits, bool and strings untouched', () => {
    const h = makeTensor('float16', [2, 2], Uint16Array.from([1, 2, 3, 0xfc00]));
    expect(Array.from(run1('Transpose', [h]).data as Uint16Array)).toEqual([1, 3, 2, 0xfc00]);
    const b = makeTensor('bool', [1, 2, 2], Uint8Array.from([1, 0, 0, 1]));
    const yb = run1('Transpose', [b], { perm: A.ints([2, 0, 1]) });
    expect(yb.dims).toEqual([2, 1, 2]);
    expect(Array.from(yb.data as Uint8Array)).toEqual([1, 0, 0, 1]);
    const s = makeTensor('string', [2, 2], ['a', 'b', 'c', 'd']);
    expect(run1('Transpose', [s]).data).toEqual(['a', 'c', 'b', 'd']);
  });
  it('keeps contiguous inner runs (channel shuffle) correct', () => {
    // [1, 2, 3, 2, 2] -> perm [0, 2, 1, 3, 4]: blocks of 4 reorder g-major to c-major.
    const v = Array.from({ length: 24 }, (_, i) => i);
    const y = run1('Transpose', [f32([1, 2, 3, 2, 2], v)], { perm: A.ints([0, 2, 1, 3, 4]) });
    expect(y.dims).toEqual([1, 3, 2, 2, 2]);
    expect(vals(y)).toEqual([0, 1, 2, 3, 12, 13, 14, 15, 4, 5, 6, 7, 16, 17, 18, 19, 8, 9, 10, 11, 20, 21, 22, 23]);
  });
  it('rejects a bad perm', () => {
    expect(() => run1('Transpose', [f32([2, 3], [1, 2, 3, 4, 5, 6])], { perm: A.ints([0, 0]) })).toThrow(/permutation/);
  });
});

describe('Concat and Split', () => {
  it('Concat joins along an axis with zero-size inputs and int64 data', () => {
    const a = i64([2, 1], [1, 2]), z = i64([2, 0], []), b = i64([2, 2], [3, 4, 5, 6]);
    const y = run1('Concat', [a, z, b], { axis: A.int(-1) });
    expect(y.dims).toEqual([2, 3]);
    expect(bigs(y)).toEqual([1n, 3n, 4n, 2n, 5n, 6n]);
    expect(() => run1('Concat', [a, i64([3, 1], [1, 2, 3])], { axis: A.int(1) })).toThrow(/shapes/);
  });
  it('Concat infers symbolic sums and propagates 1-D shape values', () => {
    const out = infer('Concat', [tt('float32', ['b', 2]), tt('float32', ['b', 3])], { attrs: { axis: A.int(1) } });
    expect(out[0].shape).toEqual(['b', 5]);
    const s = infer('Concat', [tt('float32', ['n', 2]), tt('float32', [4, 2])], { attrs: { axis: A.int(0) } })[0].shape[0];
    expect(s).toSatisfy(isFresh);
    const p = getOp('Concat')!.propagate!(mk('Concat', 2, { axis: A.int(0) }), [['b'], [-1]], [tt('int64', [1]), tt('int64', [1])]);
    expect(p).toEqual([['b', -1]]);
  });
  it('Split follows the split input, num_outputs (ceil chunks) and zero sizes', () => {
    const x = f32([7], [0, 1, 2, 3, 4, 5, 6]);
    const parts = run('Split', [x], { num_outputs: A.int(4) }, 4);
    expect(parts.map((p) => vals(p))).toEqual([[0, 1], [2, 3], [4, 5], [6]]);
    const m = f32([2, 3], [1, 2, 3, 4, 5, 6]);
    const [p, q] = run('Split', [m, i64([2], [1, 2])], { axis: A.int(1) }, 2);
    expect(vals(p)).toEqual([1, 4]);
    expect(q.dims).toEqual([2, 2]);
    expect(vals(q)).toEqual([2, 3, 5, 6]);
    const z = run('Split', [f32([0], []), i64([3], [0, 0, 0])], {}, 3);
    expect(z.map((t) => t.dims)).toEqual([[0], [0], [0]]);
    expect(() => run('Split', [x, i64([2], [3, 3])], {}, 2)).toThrow(/split/);
  });
  it('Split upgrades the opset < 13 split attribute to an input', () => {
    const g = graph([node('Split', ['x'], ['a', 'b'], { axis: A.int(0), split: A.ints([2, 1]) })],
      [['x', tt('float32', [3])]], ['a', 'b'], [], 11);
    const u = upgradeGraph(g);
    expect(u.nodes[0].inputs.length).toBe(2);
    expect(u.nodes[0].attrs.split).toBeUndefined();
    const r = runGraph(u, new Map([['x', f32([3], [7, 8, 9])]]));
    expect(vals(r.get('a')!)).toEqual([7, 8]);
    expect(vals(r.get('b')!)).toEqual([9]);
    expect(inferShapes(u).graph.valueTypes.get('b')!.shape).toEqual([1]);
  });
});

describe('Slice', () => {
  const x = f32([3, 4], Array.from({ length: 12 }, (_, i) => i));
  it('handles negative steps and clamps huge INT64 bounds', () => {
    const MAX = 2n ** 63n - 1n, MIN = -(2n ** 63n);
    const rev = run1('Slice', [x, i64([1], [-1]), i64([1], [MIN]), i64([1], [1]), i64([1], [-1])]);
    expect(vals(rev)).toEqual([3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8]);
    const tail = run1('Slice', [x, i64([2], [1, 1]), i64([2], [MAX, MAX])]);
    expect(tail.dims).toEqual([2, 3]);
    expect(vals(tail)).toEqual([5, 6, 7, 9, 10, 11]);
    const step2 = run1('Slice', [x, i64([1], [3]), i64([1], [0]), i64([1], [-1]), i64([1], [-2])]);
    expect(vals(step2)).toEqual([3, 1, 7, 5, 11, 9]);
    const none = run1('Slice', [x, i64([1], [10]), i64([1], [20]), i64([1], [0])]);
    expect(none.dims).toEqual([0, 4]);
  });
  it('works on int64 and string data', () => {
    const t = i64([4], [10, 20, 30, 40]);
    expect(bigs(run1('Slice', [t, i64([1], [1]), i64([1], [3])]))).toEqual([20n, 30n]);
    const s = makeTensor('string', [3], ['a', 'b', 'c']);
    expect(run1('Slice', [s, i64([1], [-1]), i64([1], [-4]), i64([1], [0]), i64([1], [-1])]).data).toEqual(['c', 'b', 'a']);
  });
  it('upgrades the opset < 10 attribute form', () => {
    const g = graph([node('Slice', ['x'], ['y'], { starts: A.ints([1]), ends: A.ints([1000]), axes: A.ints([1]) })],
      [['x', tt('float32', [3, 4])]], ['y'], [], 9);
    const u = upgradeGraph(g);
    expect(u.nodes[0].inputs.length).toBe(4);
    const y = runGraph(u, new Map([['x', x]])).get('y')!;
    expect(y.dims).toEqual([3, 3]);
    expect(vals(y).slice(0, 3)).toEqual([1, 2, 3]);
  });
  it('infers static and symbolic dims', () => {
    const c = (v: number[]) => i64([v.length], v);
    const t = tt('int64', [1]);
    const full = infer('Slice', [tt('float32', ['b', 10]), t, t, t], { consts: [undefined, c([0]), c([2 ** 62]), c([0])] });
    expect(full[0].shape).toEqual(['b', 10]);
    const part = infer('Slice', [tt('float32', ['b', 10]), t, t, t], { consts: [undefined, c([2]), c([-1]), c([1])] });
    expect(part[0].shape).toEqual(['b', 7]);
    const unknown = infer('Slice', [tt('float32', ['b', 10]), t, t, t], { consts: [undefined, undefined, undefined, c([1])] });
    expect(unknown[0].shape[0]).toBe('b');
    expect(unknown[0].shape[1]).toSatisfy(isFresh);
  });
});

describe('Gather family', () => {
  it('Gather takes negative indices along any axis', () => {
    const x = f32([2, 3], [1, 2, 3, 4, 5, 6]);
    const y = run1('Gather', [x, i64([2], [-1, 0])], { axis: A.int(1) });
    expect(y.dims).toEqual([2, 2]);
    expect(vals(y)).toEqual([3, 1, 6, 4]);
    const row = run1('Gather', [x, i64([], [1])]);
    expect(row.dims).toEqual([3]);
    expect(vals(row)).toEqual([4, 5, 6]);
    expect(() => run1('Gather', [x, i64([1], [2])])).toThrow(/out of range/);
  });
  it('Gather propagates shape values', () => {
    const p = getOp('Gather')!.propagate!(mk('Gather', 2), [['b', 3, 224], [0]], [tt('int64', [3]), tt('int64', [])]);
    expect(p).toEqual([['b']]);
    expect(infer('Gather', [tt('float32', ['b', 5, 6]), tt('int64', [2, 2])], { attrs: { axis: A.int(1) } })[0].shape).toEqual(['b', 2, 2, 6]);
  });
  it('GatherElements follows the spec example', () => {
    const y = run1('GatherElements', [f32([2, 2], [1, 2, 3, 4]), i64([2, 2], [0, 0, 1, 0])], { axis: A.int(1) });
    expect(vals(y)).toEqual([1, 1, 4, 3]);
    const z = run1('GatherElements', [f32([3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]), i64([2, 3], [1, 2, 0, 2, 0, -3])]);
    expect(vals(z)).toEqual([4, 8, 3, 7, 2, 3]);
  });
  it('GatherND with and without batch_dims', () => {
    const d = f32([2, 2, 2], [0, 1, 2, 3, 4, 5, 6, 7]);
    const y = run1('GatherND', [d, i64([2, 2], [0, 1, 1, 0])]);
    expect(y.dims).toEqual([2, 2]);
    expect(vals(y)).toEqual([2, 3, 4, 5]);
    const b = run1('GatherND', [d, i64([2, 1], [1, 0])], { batch_dims: A.int(1) });
    expect(b.dims).toEqual([2, 2]);
    expect(vals(b)).toEqual([2, 3, 4, 5]);
  });
  it('ScatterND writes and reduces', () => {
    const d = f32([8], [1, 2, 3, 4, 5, 6, 7, 8]);
    const idx = i64([4, 1], [4, 3, 1, 7]), up = f32([4], [9, 10, 11, 12]);
    expect(vals(run1('ScatterND', [d, idx, up]))).toEqual([1, 11, 3, 10, 9, 6, 7, 12]);
    expect(vals(run1('ScatterND', [d, i64([2, 1], [0, 0]), f32([2], [5, 6])], { reduction: A.str('add') }))).toEqual([12, 2, 3, 4, 5, 6, 7, 8]);
    expect(vals(d)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });
});

describe('Pad', () => {
  const x = f32([2, 3], [1, 2, 3, 4, 5, 6]);
  const pads = i64([4], [0, 2, 1, 1]);
  it('constant with a value', () => {
    const y = run1('Pad', [x, pads, f32([], [9])]);
    expect(y.dims).toEqual([3, 6]);
    expect(vals(y)).toEqual([9, 9, 1, 2, 3, 9, 9, 9, 4, 5, 6, 9, 9, 9, 9, 9, 9, 9]);
  });
  it('reflect, edge and wrap', () => {
    expect(vals(run1('Pad', [x, pads], { mode: A.str('reflect') }))).toEqual([3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5, 3, 2, 1, 2, 3, 2]);
    expect(vals(run1('Pad', [x, pads], { mode: A.str('edge') }))).toEqual([1, 1, 1, 2, 3, 3, 4, 4, 4, 5, 6, 6, 4, 4, 4, 5, 6, 6]);
    expect(vals(run1('Pad', [x, pads], { mode: A.str('wrap') }))).toEqual([2, 3, 1, 2, 3, 1, 5, 6, 4, 5, 6, 4, 2, 3, 1, 2, 3, 1]);
  });
  it('negative pads crop; axes input pads selected axes; int64 data keeps exact values', () => {
    const y = run1('Pad', [x, i64([4], [0, -1, 0, 0])]);
    expect(vals(y)).toEqual([2, 3, 5, 6]);
    const big = 2n ** 55n + 1n;
    const t = i64([2], [big, 2]);
    const z = run1('Pad', [t, i64([2], [1, 1]), i64([], [-7]), i64([1], [0])]);
    expect(bigs(z)).toEqual([-7n, big, 2n, -7n]);
  });
  it('upgrades the opset 2 pads/value attributes and checks the mode up front', () => {
    const g = graph([node('Pad', ['x'], ['y'], { pads: A.ints([0, 1, 0, 0]), value: A.float(1.5) })],
      [['x', tt('float32', [2, 3])]], ['y'], [], 7);
    const u = upgradeGraph(g);
    expect(u.nodes[0].attrs.pads).toBeUndefined();
    expect(vals(runGraph(u, new Map([['x', x]])).get('y')!)).toEqual([1.5, 1, 2, 3, 1.5, 4, 5, 6]);
    expect(getOp('Pad')!.supports!(mk('Pad', 2, { mode: A.str('symmetric') }), 13)).toMatch(/symmetric/);
  });
  it('infers from constant pads, symbolic dims pass through unpadded axes', () => {
    const y = infer('Pad', [tt('float32', ['b', 3, 4]), tt('int64', [6])], { values: [undefined, [0, 1, 1, 0, 1, 1]] });
    expect(y[0].shape).toEqual(['b', 5, 6]);
  });
});

describe('Expand and Tile', () => {
  it('Expand broadcasts both ways', () => {
    const y = run1('Expand', [f32([3, 1], [1, 2, 3]), i64([3], [2, 1, 2])]);
    expect(y.dims).toEqual([2, 3, 2]);
    expect(vals(y)).toEqual([1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3]);
    const b = run1('Expand', [makeTensor('bool', [1], Uint8Array.of(1)), i64([1], [3])]);
    expect(Array.from(b.data as Uint8Array)).toEqual([1, 1, 1]);
    expect(infer('Expand', [tt('float32', [3, 1]), tt('int64', [2])], { values: [undefined, ['n', 4]] })[0].shape).toEqual([3, 4]);
  });
  it('Tile repeats each axis, zero repeats give empty output', () => {
    const y = run1('Tile', [f32([2, 2], [1, 2, 3, 4]), i64([2], [2, 3])]);
    expect(y.dims).toEqual([4, 6]);
    expect(vals(y).slice(0, 12)).toEqual([1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4]);
    expect(vals(y).slice(12)).toEqual([1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4]);
    expect(run1('Tile', [i64([2], [1, 2]), i64([1], [0])]).dims).toEqual([0]);
    expect(() => run1('Tile', [f32([2], [1, 2]), i64([2], [1, 1])])).toThrow(/repeats/);
  });
});

describe('Constant, ConstantOfShape, Range', () => {
  it('Constant builds each attribute form', () => {
    expect(bigs(run1('Constant', [], { value_ints: A.ints([1, -2]) }))).toEqual([1n, -2n]);
    const f = run1('Constant', [], { value_float: A.float(0.5) });
    expect([f.dtype, f.dims, vals(f)]).toEqual(['float32', [], [0.5]]);
    expect(run1('Constant', [], { value_strings: A.strs(['a', 'b']) }).data).toEqual(['a', 'b']);
    expect(getOp('Constant')!.supports!(mk('Constant', 0), 13)).toMatch(/exactly one/);
  });
  it('ConstantOfShape fills with value (default float 0), zero-size included', () => {
    const d = run1('ConstantOfShape', [i64([2], [2, 3])]);
    expect([d.dtype, d.dims, vals(d)]).toEqual(['float32', [2, 3], [0, 0, 0, 0, 0, 0]]);
    const v = run1('ConstantOfShape', [i64([1], [2])], { value: A.tensor(i64([1], [7])) });
    expect(bigs(v)).toEqual([7n, 7n]);
    expect(run1('ConstantOfShape', [i64([1], [0])], { value: A.tensor(fromF64('int32', [1], [1])) }).dims).toEqual([0]);
    const s = infer('ConstantOfShape', [tt('int64', [2])], { values: [['b', 4]] });
    expect(s[0]).toEqual(tt('float32', ['b', 4]));
  });
  it('Range counts ceil((limit - start) / delta) in the input dtype', () => {
    const r = run1('Range', [f32([], [1]), f32([], [2]), f32([], [0.3])]);
    expect(r.dims).toEqual([4]);
    expect(vals(r).map((v) => Math.round(v * 10) / 10)).toEqual([1, 1.3, 1.6, 1.9]);
    expect(bigs(run1('Range', [i64([], [10]), i64([], [4]), i64([], [-3])]))).toEqual([10n, 7n]);
    expect(run1('Range', [i64([], [5]), i64([], [1]), i64([], [2])]).dims).toEqual([0]);
  });
});

describe('NonZero, TopK, Trilu', () => {
  it('NonZero lists coordinates in row-major order', () => {
    const y = run1('NonZero', [f32([2, 2], [1, 0, 1, 1])]);
    expect(y.dims).toEqual([2, 3]);
    expect(bigs(y)).toEqual([0n, 1n, 1n, 0n, 0n, 1n]);
    const h = makeTensor('float16', [3], Uint16Array.of(0x8000, f32ToF16Bits(2), 0));
    expect(bigs(run1('NonZero', [h]))).toEqual([1n]);
  });
  it('TopK largest and smallest with ties keeping the lower index', () => {
    const x = f32([2, 4], [1, 3, 3, 2, 5, 4, 6, 0]);
    const [v, i] = run('TopK', [x, i64([1], [2])], {}, 2);
    expect(vals(v)).toEqual([3, 3, 6, 5]);
    expect(bigs(i)).toEqual([1n, 2n, 2n, 0n]);
    const [vs, is] = run('TopK', [x, i64([1], [1])], { largest: A.int(0), axis: A.int(0) }, 2);
    expect(vals(vs)).toEqual([1, 3, 3, 0]);
    expect(bigs(is)).toEqual([0n, 0n, 0n, 1n]);
  });
  it('Trilu keeps the upper or lower triangle shifted by k', () => {
    const x = f32([3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(vals(run1('Trilu', [x]))).toEqual([1, 2, 3, 0, 5, 6, 0, 0, 9]);
    expect(vals(run1('Trilu', [x, i64([], [-1])], { upper: A.int(0) }))).toEqual([0, 0, 0, 4, 0, 0, 7, 8, 0]);
    expect(vals(run1('Trilu', [x, i64([], [1])]))).toEqual([0, 2, 3, 0, 0, 6, 0, 0, 0]);
  });
});

describe('DepthToSpace and SpaceToDepth', () => {
  const x = f32([1, 8, 1, 1], [0, 1, 2, 3, 4, 5, 6, 7]);
  it('DCR and CRD orders', () => {
    const dcr = run1('DepthToSpace', [x], { blocksize: A.int(2) });
    expect(dcr.dims).toEqual([1, 2, 2, 2]);
    expect(vals(dcr)).toEqual([0, 2, 4, 6, 1, 3, 5, 7]);
    expect(vals(run1('DepthToSpace', [x], { blocksize: A.int(2), mode: A.str('CRD') }))).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });
  it('SpaceToDepth inverts DCR DepthToSpace', () => {
    const v = Array.from({ length: 2 * 4 * 6 }, (_, i) => i);
    const s = f32([1, 2, 4, 6], v);
    const d = run1('SpaceToDepth', [s], { blocksize: A.int(2) });
    expect(d.dims).toEqual([1, 8, 2, 3]);
    // out channel (b1*2 + b2)*C + c at [h, w] = in[c, 2h + b1, 2w + b2]: channel 3 is c=1, b1=0, b2=1.
    expect(vals(d).slice(18, 24)).toEqual([25, 27, 29, 37, 39, 41]);
    expect(vals(run1('DepthToSpace', [d], { blocksize: A.int(2) }))).toEqual(v);
  });
});

describe('whole-graph inference with symbolic batch', () => {
  it('Shape -> Gather -> Unsqueeze -> Concat -> Reshape gives [batch, C*H*W]', () => {
    const g = graph([
      node('Shape', ['x'], ['s']),
      node('Gather', ['s', 'zero'], ['n'], { axis: A.int(0) }),
      node('Unsqueeze', ['n', 'ax0'], ['n1']),
      node('Concat', ['n1', 'minus1'], ['target'], { axis: A.int(0) }),
      node('Reshape', ['x', 'target'], ['y']),
      node('Flatten', ['x'], ['f']),
      node('Slice', ['s', 'one', 'big'], ['tail']),
      node('ConstantOfShape', ['tail'], ['zeros']),
    ], [['x', tt('float32', ['batch', 3, 4, 5])]], ['y', 'f', 'zeros'], [
      ['zero', i64([], [0])], ['ax0', i64([1], [0])], ['minus1', i64([1], [-1])],
      ['one', i64([1], [1])], ['big', i64([1], [2n ** 63n - 1n])],
    ]);
    const r = inferShapes(g).graph.valueTypes;
    expect(r.get('target')!.shape).toEqual([2]);
    expect(r.get('y')!).toEqual(tt('float32', ['batch', 60]));
    expect(r.get('f')!.shape).toEqual(['batch', 60]);
    expect(r.get('zeros')!).toEqual(tt('float32', [3, 4, 5]));
    // And the same graph computes the same shapes at run time.
    const run = runGraph(g, new Map([['x', f32([2, 3, 4, 5], new Array(120).fill(1))]]));
    expect(run.get('y')!.dims).toEqual([2, 60]);
    expect(run.get('zeros')!.dims).toEqual([3, 4, 5]);
  });
  it('ConstantOfShape and Range carry shape values (LayerNormalization expansion pattern)', () => {
    const g = graph([
      node('Shape', ['x'], ['tail'], { start: A.int(1) }),
      node('Size', ['tail'], ['nred']),
      node('Unsqueeze', ['nred', 'ax0'], ['nred1']),
      node('ConstantOfShape', ['nred1'], ['ones'], { value: A.tensor(i64([1], [1])) }),
      node('Shape', ['x'], ['head'], { end: A.int(1) }),
      node('Concat', ['head', 'ones'], ['rshape'], { axis: A.int(0) }),
      node('Reshape', ['m', 'rshape'], ['mean']),
      node('Range', ['zero', 'nred', 'one'], ['axes']),
    ], [['x', tt('float32', ['batch', 3, 4, 5])], ['m', tt('float32', ['batch', 1])]], ['mean', 'axes'], [
      ['ax0', i64([1], [0])], ['zero', i64([], [0])], ['one', i64([], [1])],
    ]);
    const r = inferShapes(g).graph.valueTypes;
    expect(r.get('mean')!.shape).toEqual(['batch', 1, 1, 1]);
    expect(r.get('axes')!.shape).toEqual([3]);
    const p = getOp('Range')!.propagate!(mk('Range', 3), [[0], [3], [1]], []);
    expect(p).toEqual([[0, 1, 2]]);
  });
});
