// Differential tests: elementwise and reduction ops against ONNX Runtime on randomized inputs over the dtypes,
// broadcasts and attributes the ONNX node tests leave out (integer wrap, int64/uint64, float16, Mod/BitShift,
// comparisons, every Reduce* kind with keepdims/negative axes/opset-13 attributes, ArgMax select_last_index).
// Where the ONNX reference and ORT disagree (NaN in ReduceMax, empty ReduceMean, Dropout masks before opset 12)
// the reference wins and the case is left to the hand-written tests.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { modelBytes, rand, type AttrSpec, type GraphSpec } from './rnn-control.build.js';
import { parseModel } from '../src/onnx/import.js';
import { runModelCpu } from '../src/runtime/cpu_executor.js';
import { DTYPE_ONNX, fromF64, makeTensor, toF64 } from '../src/ir/tensor.js';
import type { DType, Tensor, TypedArray } from '../src/ir/types.js';

const ORT_TYPES: DType[] = ['float32', 'float64', 'float16', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'bool'];

let seed = 1;
/** Random values of dtype: integers in [lo, hi] for integer types, 0/1 for bool. */
function r(dtype: DType, dims: number[], lo = -3, hi = 3): Tensor {
  const f = toF64(rand('float64', dims, seed++, lo, hi));
  if (dtype === 'bool') return fromF64('bool', dims, f.map((v) => (v > (lo + hi) / 2 ? 1 : 0)));
  return fromF64(dtype, dims, dtype.startsWith('float') ? f : f.map(Math.round));
}
const i64 = (v: number[]) => fromF64('int64', [v.length], v);

interface Case { op: string; inputs: (Tensor | undefined)[]; attrs?: Record<string, AttrSpec>; opset?: number; nOut?: number }

async function diff(c: Case, rtol = 1e-5, atol = 1e-6): Promise<string | undefined> {
  const names = c.inputs.map((t, i) => (t ? `x${i}` : ''));
  const present = c.inputs.map((t, i) => [`x${i}`, t] as const).filter((p): p is [string, Tensor] => !!p[1]);
  const outs = Array.from({ length: c.nOut ?? 1 }, (_, i) => `y${i}`);
  const graph = (outTypes: DType[]): GraphSpec => ({
    inputs: present.map(([n, t]) => [n, t.dtype, t.dims]),
    outputs: outs.map((o, i) => [o, outTypes[i]]),
    nodes: [{ op: c.op, inputs: names, outputs: outs, attrs: c.attrs }],
  });
  // tsrt does not check declared output types; ORT does, so the model it gets declares the types tsrt produced
  // and a dtype disagreement fails at session creation.
  const got = runModelCpu(parseModel(modelBytes(graph(outs.map(() => 'float32')), c.opset ?? 21), { file: `${c.op}.onnx` }), new Map(present));
  const bytes = modelBytes(graph(got.map((t) => t.dtype)), c.opset ?? 21);
  const sess = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  const feeds: Record<string, ort.Tensor> = {};
  for (const [n, t] of present) feeds[n] = new ort.Tensor(t.dtype as ort.Tensor.Type, t.data as Float32Array, t.dims);
  const res = await sess.run(feeds);
  for (let k = 0; k < outs.length; k++) {
    const o = res[outs[k]];
    const dtype = ORT_TYPES.find((d) => d === o.type)!;
    const want = makeTensor(dtype, [...o.dims], o.data as TypedArray);
    const a = got[k];
    if (a.dtype !== want.dtype || a.dims.join() !== want.dims.join()) return `output ${k}: ${a.dtype}[${a.dims}] vs ${want.dtype}[${want.dims}]`;
    const x = toF64(a), y = toF64(want);
    for (let i = 0; i < y.length; i++) {
      if (x[i] === y[i] || (Number.isNaN(x[i]) && Number.isNaN(y[i]))) continue;
      if (!(Math.abs(x[i] - y[i]) <= atol + rtol * Math.abs(y[i]))) return `output ${k} element ${i}: ${x[i]} vs ${y[i]}`;
    }
  }
  return undefined;
}

async function expectAllMatch(cases: Case[]): Promise<void> {
  const bad: string[] = [];
  for (const c of cases) {
    const why = await diff(c).catch((e: Error) => e.message.split('\n')[0]);
    if (why) bad.push(`${c.op}(${c.inputs.map((t) => (t ? `${t.dtype}[${t.dims}]` : '-')).join(', ')}) ${JSON.stringify(c.attrs ?? {})}: ${why}`);
  }
  expect(bad).toEqual([]);
}

describe('elementwise vs ONNX Runtime', () => {
  it('float unary math and activations, with NaN/inf inputs', async () => {
    const special = (dims: number[]) => {
      const t = r('float32', dims, -4, 4);
      const d = t.data as Float32Array;
      [NaN, Infinity, -Infinity, 0, -0].forEach((v, i) => { d[i * 7] = v; });
      return t;
    };
    const ops = ['Exp', 'Log', 'Sqrt', 'Reciprocal', 'Tanh', 'Sigmoid', 'Erf', 'Floor', 'Ceil', 'Round', 'Sin', 'Cos', 'Tan', 'Asin',
      'Acos', 'Atan', 'Sinh', 'Cosh', 'Asinh', 'Acosh', 'Atanh', 'Softplus', 'Softsign', 'Relu', 'Abs', 'Neg', 'Sign', 'IsNaN', 'IsInf',
      'HardSwish', 'Mish'];
    const cases: Case[] = ops.map((op) => ({ op, inputs: [special([3, 4, 5])] }));
    cases.push(
      { op: 'LeakyRelu', inputs: [r('float32', [3, 4])], attrs: { alpha: { f: 0.3 } } },
      { op: 'Elu', inputs: [r('float32', [3, 4])], attrs: { alpha: { f: 0.7 } } },
      { op: 'Selu', inputs: [r('float32', [3, 4])] },
      { op: 'Selu', inputs: [r('float32', [3, 4])], attrs: { alpha: { f: 2 }, gamma: { f: 3 } } },
      { op: 'Celu', inputs: [r('float32', [3, 4])], attrs: { alpha: { f: 2 } } },
      { op: 'HardSigmoid', inputs: [r('float32', [3, 4])], attrs: { alpha: { f: 0.3 }, beta: { f: 0.4 } } },
      { op: 'ThresholdedRelu', inputs: [r('float32', [3, 4])], attrs: { alpha: { f: 0.5 } } },
      { op: 'Shrink', inputs: [r('float32', [3, 4])], attrs: { bias: { f: 0.5 }, lambd: { f: 1 } } },
      { op: 'Gelu', inputs: [r('float32', [3, 4], -5, 5)], opset: 20 },
      { op: 'Gelu', inputs: [r('float32', [3, 4], -5, 5)], attrs: { approximate: { s: 'tanh' } }, opset: 20 },
      { op: 'IsInf', inputs: [special([30])], attrs: { detect_negative: { i: 0 } } },
      { op: 'Not', inputs: [r('bool', [3, 4])] },
    );
    for (const op of ['Exp', 'Sigmoid', 'Tanh', 'Relu', 'Abs', 'Neg', 'Sqrt', 'Erf', 'Round']) cases.push({ op, inputs: [r('float16', [4, 5], -4, 4)] });
    for (const op of ['Abs', 'Neg', 'Sign']) for (const dt of ['int8', 'int16', 'int32', 'int64'] as DType[]) cases.push({ op, inputs: [r(dt, [3, 7], -100, 100)] });
    await expectAllMatch(cases);
  });

  it('broadcasting arithmetic over every integer and float dtype, with wrap-around', async () => {
    const cases: Case[] = [];
    const shapes: [number[], number[]][] = [[[3, 4], [3, 4]], [[2, 3, 4], [4]], [[2, 1, 4], [3, 1]], [[], [2, 2]], [[2, 3, 4, 5], [3, 1, 1]], [[0, 3], [3]]];
    for (const op of ['Add', 'Sub', 'Mul', 'Div']) {
      for (const dt of ['float32', 'float64', 'float16', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64'] as DType[]) {
        for (const [a, b] of dt === 'float32' ? shapes : shapes.slice(0, 3)) {
          const lo = dt.startsWith('u') ? 0 : -100;
          const y = r(dt, b, lo, 100);
          if (op === 'Div' && !dt.startsWith('float')) { const d = y.data as unknown as (number | bigint)[]; d.forEach((v, i) => { if (v == 0) d[i] = typeof v === 'bigint' ? 7n : 7; }); }
          cases.push({ op, inputs: [r(dt, a, lo, 100), y] });
        }
      }
    }
    cases.push(
      { op: 'Mul', inputs: [r('int32', [50], -2e9, 2e9), r('int32', [50], -2e9, 2e9)] },
      { op: 'Mul', inputs: [r('uint32', [50], 0, 4e9), r('uint32', [50], 0, 4e9)] },
      { op: 'Mul', inputs: [r('int64', [50], -4e9, 4e9), r('int64', [50], -4e9, 4e9)] },
      { op: 'Add', inputs: [r('int8', [50], -128, 127), r('int8', [50], -128, 127)] },
    );
    await expectAllMatch(cases);
  });

  it('Mod, BitShift, Pow, PRelu', async () => {
    const cases: Case[] = [];
    for (const dt of ['float32', 'float16', 'float64', 'int32', 'int64', 'int8', 'uint8'] as DType[]) {
      for (const fmod of dt.startsWith('float') ? [1] : [0, 1]) {
        const lo = dt.startsWith('u') ? 1 : -20;
        const y = r(dt, [4], lo, 20);
        const d = y.data as unknown as (number | bigint)[];
        d.forEach((v, i) => { if (v == 0) d[i] = typeof v === 'bigint' ? 3n : 3; });
        cases.push({ op: 'Mod', inputs: [r(dt, [3, 4], lo, 50), y], attrs: { fmod: { i: fmod } } });
      }
    }
    for (const dt of ['uint8', 'uint32', 'uint64'] as DType[]) for (const direction of ['LEFT', 'RIGHT']) {
      cases.push({ op: 'BitShift', inputs: [r(dt, [3, 4], 0, 200), r(dt, [4], 0, 7)], attrs: { direction: { s: direction } } });
    }
    cases.push(
      { op: 'Pow', inputs: [r('float32', [3, 4], 0, 3), r('float32', [4], -2, 2)] },
      { op: 'Pow', inputs: [r('float32', [3, 4], -3, 3), r('int64', [4], -2, 3)] },
      { op: 'Pow', inputs: [r('int32', [3, 4], -5, 5), r('int32', [4], 0, 5)] },
      { op: 'Pow', inputs: [r('int64', [3, 4], -5, 5), r('int64', [4], 0, 5)] },
      { op: 'Pow', inputs: [r('int32', [3, 4], 0, 5), r('float32', [4], 0, 3)] },
      { op: 'Pow', inputs: [r('float16', [3, 4], 0, 3), r('float16', [4], -2, 2)] },
      { op: 'PRelu', inputs: [r('float32', [2, 3, 4, 5]), r('float32', [3, 1, 1])] },
      { op: 'PRelu', inputs: [r('float32', [2, 3, 4, 5]), r('float32', [5])] },
    );
    await expectAllMatch(cases);
  });

  it('comparisons, logic, Where and variadic Max/Min/Sum/Mean', async () => {
    const cases: Case[] = [];
    for (const op of ['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual']) {
      for (const dt of ['float32', 'int32', 'int64', 'uint8', 'float16', 'float64'] as DType[]) cases.push({ op, inputs: [r(dt, [3, 4], 0, 4), r(dt, [4], 0, 4)] });
    }
    cases.push({ op: 'Equal', inputs: [r('bool', [3, 4]), r('bool', [4])] });
    for (const op of ['And', 'Or', 'Xor']) cases.push({ op, inputs: [r('bool', [2, 3, 4]), r('bool', [3, 1])] });
    cases.push(
      { op: 'Where', inputs: [r('bool', [3, 1]), r('float32', [2, 3, 4]), r('float32', [4])] },
      { op: 'Where', inputs: [r('bool', [3, 4]), r('int64', [3, 4]), r('int64', [])] },
      { op: 'Where', inputs: [r('bool', [4]), r('float16', [3, 4]), r('float16', [1])] },
    );
    for (const op of ['Max', 'Min', 'Sum', 'Mean']) {
      cases.push(
        { op, inputs: [r('float32', [2, 3, 4]), r('float32', [4]), r('float32', [3, 1])] },
        { op, inputs: [r('float32', [3])] },
        { op, inputs: [r('float16', [3, 4]), r('float16', [4])] },
      );
    }
    for (const dt of ['int32', 'int64', 'uint8', 'uint64', 'int8', 'uint32'] as DType[]) {
      cases.push({ op: 'Max', inputs: [r(dt, [3, 4], 0, 100), r(dt, [4], 0, 100)] }, { op: 'Min', inputs: [r(dt, [3, 4], 0, 100), r(dt, [4], 0, 100)] });
    }
    await expectAllMatch(cases);
  });

  it('Cast between every pair of numeric and bool types; CastLike; Clip on each dtype', async () => {
    const cases: Case[] = [];
    for (const from of ORT_TYPES) for (const to of ORT_TYPES) {
      cases.push({ op: 'Cast', inputs: [r(from, [3, 5], from.startsWith('u') ? 0 : -100, 100)], attrs: { to: { i: DTYPE_ONNX[to] } } });
    }
    cases.push(
      { op: 'Cast', inputs: [fromF64('float32', [8], [65504, 65520, 1e-8, 6e-5, -0, 1 / 3, 1e6, -70000])], attrs: { to: { i: 10 } } },
      { op: 'Cast', inputs: [fromF64('float32', [6], [NaN, Infinity, -Infinity, 0.5, 1.7, -2.5])], attrs: { to: { i: 9 } } },
      { op: 'Cast', inputs: [fromF64('int64', [4], [2 ** 40 + 5, -(2 ** 35) - 1, 2 ** 31, -1])], attrs: { to: { i: 6 } } },
      { op: 'CastLike', inputs: [r('float32', [3, 4]), r('int32', [1])] },
      { op: 'CastLike', inputs: [r('int64', [3, 4]), r('float16', [1])] },
    );
    for (const dt of ['float32', 'float16', 'float64', 'int8', 'int32', 'int64', 'uint8', 'uint64'] as DType[]) {
      const lo = dt.startsWith('u') ? 0 : -50;
      cases.push(
        { op: 'Clip', inputs: [r(dt, [3, 4], lo, 50), fromF64(dt, [], [dt.startsWith('u') ? 10 : -10]), fromF64(dt, [], [20])] },
        { op: 'Clip', inputs: [r(dt, [3, 4], lo, 50), undefined, fromF64(dt, [], [20])] },
        { op: 'Clip', inputs: [r(dt, [3, 4], lo, 50)] },
      );
    }
    await expectAllMatch(cases);
  });
});

describe('reductions vs ONNX Runtime', () => {
  it('every Reduce* kind over axes sets, keepdims, noop, empty sets, attribute form and dtypes', async () => {
    const cases: Case[] = [];
    const kinds = ['ReduceSum', 'ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceSumSquare'];
    for (const op of kinds) {
      const lo = op === 'ReduceLogSum' ? 0.1 : -2;
      for (const axes of [[1], [0, 2], [-1], [], [2, 0]]) for (const keepdims of [0, 1]) {
        cases.push({ op, inputs: [r('float32', [3, 4, 5], lo, 2), i64(axes)], attrs: { keepdims: { i: keepdims } }, opset: 18 });
      }
      cases.push(
        { op, inputs: [r('float32', [3, 4], 0.1, 2), i64([])], attrs: { noop_with_empty_axes: { i: 1 } }, opset: 18 },
        { op, inputs: [r('float32', [3, 4, 5], 0.1, 2)], attrs: { axes: { ints: [0] } }, opset: 11 },
        { op, inputs: [r('float16', [3, 4, 5], 0.1, 2), i64([1])], opset: 18 },
      );
      if (op !== 'ReduceMean') cases.push({ op, inputs: [r('float32', [3, 0, 2], 0.1, 2), i64([1])], opset: 18 });
      // Integer LogSumExp is ill-defined (the reference truncates the exp-sum; opset 28 drops it).
      for (const dt of (op === 'ReduceLogSumExp' ? ['float64'] : ['int32', 'int64', 'float64']) as DType[]) cases.push({ op, inputs: [r(dt, [3, 4, 5], 1, 4), i64([1])], attrs: { keepdims: { i: 0 } }, opset: 18 });
    }
    cases.push({ op: 'ReduceLogSumExp', inputs: [fromF64('float32', [2, 3], [1000, 1001, 999, -Infinity, -Infinity, -Infinity]), i64([1])], opset: 18 });
    await expectAllMatch(cases);
  });

  it('ArgMax/ArgMin with ties, axes, keepdims and select_last_index', async () => {
    const cases: Case[] = [];
    const ties = fromF64('float32', [3, 4, 5], Array.from({ length: 60 }, (_, i) => (i * 7) % 4));
    for (const op of ['ArgMax', 'ArgMin']) {
      for (const axis of [0, 1, -1]) for (const keepdims of [0, 1]) for (const last of [0, 1]) {
        cases.push({ op, inputs: [ties], attrs: { axis: { i: axis }, keepdims: { i: keepdims }, select_last_index: { i: last } } });
      }
      cases.push(
        { op, inputs: [r('int64', [3, 4], 0, 3)], attrs: { axis: { i: 1 } } },
        { op, inputs: [r('int32', [3, 4], 0, 3)], attrs: { axis: { i: 0 }, select_last_index: { i: 1 } } },
        { op, inputs: [r('float16', [3, 4], 0, 3)], attrs: { axis: { i: 1 } } },
      );
    }
    await expectAllMatch(cases);
  });
});
