// Differential tests: matmul-family and quantized ops against ONNX Runtime on randomized shapes and attributes
// that the ONNX node tests do not cover (groups, dilations, auto_pad, per-channel scales, batch broadcasting).
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { modelBytes, rand, type AttrSpec, type GraphSpec } from './rnn-control.build.js';
import { parseModel } from '../src/onnx/import.js';
import { runModelCpu } from '../src/runtime/cpu_executor.js';
import { fromF64, makeTensor, toF64 } from '../src/ir/tensor.js';
import type { DType, Tensor, TypedArray } from '../src/ir/types.js';

const ORT: Partial<Record<DType, ort.Tensor.Type>> = {
  float32: 'float32', float64: 'float64', float16: 'float16', int64: 'int64', int32: 'int32', int8: 'int8', uint8: 'uint8', bool: 'bool',
};

/** Integers in [lo, hi] of an integer dtype. */
function randInt(dtype: DType, dims: number[], seed: number, lo: number, hi: number): Tensor {
  const f = toF64(rand('float64', dims, seed, lo, hi + 1));
  return fromF64(dtype, dims, f.map(Math.floor));
}

interface Case {
  op: string;
  inputs: [string, Tensor | undefined][];
  attrs?: Record<string, AttrSpec>;
  /** Output element types (float32 by default). */
  outputs?: DType[];
  opset: number;
}

/** Runs one node on ONNX Runtime and on the tsrt CPU reference; returns a difference or undefined. */
async function check(c: Case, rtol = 1e-4, atol = 1e-5): Promise<string | undefined> {
  const present = c.inputs.filter((x): x is [string, Tensor] => !!x[1]);
  const outTypes = c.outputs ?? ['float32'];
  const outs = outTypes.map((_, i) => `y${i}`);
  const g: GraphSpec = {
    inputs: present.map(([n, t]) => [n, t.dtype, t.dims]),
    outputs: outs.map((o, i) => [o, outTypes[i]]),
    nodes: [{ op: c.op, inputs: c.inputs.map(([n, t]) => (t ? n : '')), outputs: outs, attrs: c.attrs }],
  };
  const bytes = modelBytes(g, c.opset);
  const sess = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  const feeds: Record<string, ort.Tensor> = {};
  for (const [n, t] of present) feeds[n] = new ort.Tensor(ORT[t.dtype]!, t.data as Float32Array, t.dims);
  const res = await sess.run(feeds);
  const got = runModelCpu(parseModel(bytes, { file: `${c.op}.onnx` }), new Map(present));
  for (let k = 0; k < outs.length; k++) {
    const o = res[outs[k]];
    const dtype = (Object.entries(ORT).find(([, v]) => v === o.type)![0]) as DType;
    const want = makeTensor(dtype, [...o.dims], o.data as TypedArray);
    const a = got[k];
    if (a.dtype !== want.dtype || a.dims.join() !== want.dims.join()) return `output ${k}: ${a.dtype}[${a.dims}] vs ${want.dtype}[${want.dims}]`;
    const x = toF64(a), y = toF64(want);
    for (let i = 0; i < y.length; i++) {
      if (!(Math.abs(x[i] - y[i]) <= atol + rtol * Math.abs(y[i]))) return `output ${k} element ${i}: ${x[i]} vs ${y[i]}`;
    }
  }
  return undefined;
}

const scalar = (dtype: DType, v: number) => fromF64(dtype, [], [v]);

describe('against ONNX Runtime', () => {
  it('MatMul broadcasts batch dims and promotes 1-D operands', async () => {
    const shapes: [number[], number[]][] = [[[2, 1, 3, 4], [5, 4, 6]], [[4], [2, 4, 3]], [[3, 7, 5], [5]], [[1, 9, 16], [16, 33]], [[6, 2, 8], [6, 8, 2]]];
    for (const [i, [a, b]] of shapes.entries()) {
      expect(await check({ op: 'MatMul', opset: 13, inputs: [['a', rand('float32', a, i)], ['b', rand('float32', b, i + 50)]] }), `${a} x ${b}`).toBeUndefined();
    }
  });

  it('Gemm handles every transpose, alpha/beta and C form', async () => {
    let seed = 100;
    for (const tA of [0, 1]) {
      for (const tB of [0, 1]) {
        for (const cDims of [undefined, [], [1], [9], [5, 1], [5, 9]]) {
          const A = rand('float32', tA ? [7, 5] : [5, 7], seed++), B = rand('float32', tB ? [9, 7] : [7, 9], seed++);
          const C = cDims && rand('float32', cDims, seed++);
          const why = await check({
            op: 'Gemm', opset: 13, inputs: [['A', A], ['B', B], ['C', C]],
            attrs: { transA: { i: tA }, transB: { i: tB }, alpha: { f: 0.75 }, beta: { f: -1.5 } },
          });
          expect(why, `transA=${tA} transB=${tB} C=${cDims}`).toBeUndefined();
        }
      }
    }
  });

  it('Einsum evaluates diagonals, ellipses, chains and implicit outputs', async () => {
    const cases: [string, number[][]][] = [
      ['bij,bjk->bik', [[2, 3, 4], [2, 4, 5]]], ['ij,jk,kl->il', [[2, 3], [3, 4], [4, 2]]], ['ii->i', [[4, 4]]],
      ['...ij,...jk', [[2, 3, 4], [2, 4, 5]]], ['bhqd,bhkd->bhqk', [[1, 2, 3, 4], [1, 2, 5, 4]]], ['ij->', [[3, 3]]],
      ['i,j->ij', [[3], [4]]], ['iij->j', [[3, 3, 2]]], ['abc,cd->abd', [[2, 2, 3], [3, 2]]], ['ji', [[2, 5]]],
    ];
    for (const [k, [eq, shapes]] of cases.entries()) {
      const inputs = shapes.map((s, i): [string, Tensor] => [`x${i}`, rand('float32', s, 200 + 10 * k + i)]);
      expect(await check({ op: 'Einsum', opset: 12, inputs, attrs: { equation: { s: eq } } }), eq).toBeUndefined();
    }
  });

  it('QLinearConv requantizes like ONNX Runtime across pads, strides, dilations, groups and per-channel weights', async () => {
    const configs: { x: number[]; w: number[]; attrs: Record<string, AttrSpec>; perChannel: boolean; t: DType }[] = [
      { x: [1, 3, 7, 7], w: [4, 3, 3, 3], attrs: { pads: { ints: [1, 1, 1, 1] } }, perChannel: false, t: 'uint8' },
      { x: [2, 4, 9, 8], w: [6, 2, 3, 2], attrs: { group: { i: 2 }, strides: { ints: [2, 1] }, dilations: { ints: [1, 2] } }, perChannel: true, t: 'int8' },
      { x: [1, 4, 8, 8], w: [4, 1, 3, 3], attrs: { group: { i: 4 }, auto_pad: { s: 'SAME_UPPER' }, strides: { ints: [2, 2] } }, perChannel: true, t: 'uint8' },
      { x: [1, 2, 10], w: [3, 2, 4], attrs: { pads: { ints: [2, 1] }, strides: { ints: [3] } }, perChannel: false, t: 'uint8' },
      { x: [1, 2, 5, 6], w: [3, 2, 2, 2], attrs: { auto_pad: { s: 'SAME_LOWER' } }, perChannel: true, t: 'int8' },
    ];
    for (const [k, c] of configs.entries()) {
      const M = c.w[0];
      const [lo, hi] = c.t === 'uint8' ? [0, 255] : [-128, 127];
      const wScale = c.perChannel ? rand('float32', [M], 300 + k, 0.01, 0.05) : scalar('float32', 0.02);
      // ONNX Runtime requires symmetric (zero) weight zero points for int8 weights.
      const wZero = c.t === 'int8' ? (c.perChannel ? makeTensor('int8', [M]) : scalar('int8', 0)) : scalar('uint8', 7);
      const why = await check({
        op: 'QLinearConv', opset: 10, attrs: c.attrs, outputs: [c.t],
        inputs: [
          ['x', randInt(c.t, c.x, 310 + k, lo, hi)], ['x_scale', scalar('float32', 0.05)], ['x_zero_point', scalar(c.t, c.t === 'uint8' ? 120 : -3)],
          ['w', randInt(c.t, c.w, 320 + k, lo, hi)], ['w_scale', wScale], ['w_zero_point', wZero],
          ['y_scale', scalar('float32', 0.7)], ['y_zero_point', scalar(c.t, c.t === 'uint8' ? 128 : 5)],
          ['B', randInt('int32', [M], 330 + k, -2000, 2000)],
        ],
      }, 0, 0);
      expect(why, `config ${k}`).toBeUndefined();
    }
  });

  it('QLinearMatMul and MatMulInteger agree on batched shapes', async () => {
    for (const [k, [a, b]] of ([[[2, 3, 5], [5, 4]], [[4, 6], [6, 3]], [[2, 1, 3, 8], [2, 8, 2]]] as [number[], number[]][]).entries()) {
      const A = randInt('uint8', a, 400 + k, 0, 255), B = randInt('int8', b, 410 + k, -128, 127);
      expect(await check({
        op: 'QLinearMatMul', opset: 10, outputs: ['uint8'],
        inputs: [['a', A], ['as', scalar('float32', 0.03)], ['az', scalar('uint8', 131)], ['b', B], ['bs', scalar('float32', 0.011)],
          ['bz', scalar('int8', 0)], ['ys', scalar('float32', 0.2)], ['yz', scalar('uint8', 100)]],
      }, 0, 0), `QLinearMatMul ${a} x ${b}`).toBeUndefined();
      expect(await check({ op: 'MatMulInteger', opset: 10, inputs: [['a', A], ['b', B], ['az', scalar('uint8', 12)]], outputs: ['int32'] }, 0, 0), `MatMulInteger ${a} x ${b}`).toBeUndefined();
    }
  });

  it('Quantize/DequantizeLinear per axis and DynamicQuantizeLinear', async () => {
    const x = rand('float32', [3, 4, 5], 500, -4, 4);
    const scale = rand('float32', [4], 501, 0.01, 0.1), zp = randInt('int8', [4], 502, -10, 10);
    expect(await check({ op: 'QuantizeLinear', opset: 13, inputs: [['x', x], ['s', scale], ['z', zp]], attrs: { axis: { i: 1 } }, outputs: ['int8'] }, 0, 0)).toBeUndefined();
    const q = randInt('uint8', [3, 4, 5], 503, 0, 255);
    expect(await check({ op: 'DequantizeLinear', opset: 13, inputs: [['x', q], ['s', rand('float32', [5], 504, 0.01, 1)], ['z', randInt('uint8', [5], 505, 0, 255)]], attrs: { axis: { i: -1 } } })).toBeUndefined();
    expect(await check({ op: 'DynamicQuantizeLinear', opset: 11, inputs: [['x', x]], outputs: ['uint8', 'float32', 'uint8'] }, 0, 0)).toBeUndefined();
  });

  it('Attention matches with GQA, causal masking, a KV cache, softcap and 3-D inputs', async () => {
    const B = 2, S = 3, P = 4, L = 3, T = P + L, Dk = 8, Dv = 6;
    const configs: { attrs: Record<string, AttrSpec>; mask?: number[]; boolMask?: boolean; past: boolean }[] = [
      { attrs: {}, past: false },
      { attrs: { is_causal: { i: 1 } }, past: true },
      { attrs: { softcap: { f: 1.5 }, scale: { f: 0.3 } }, mask: [S, T], past: true },
      { attrs: { is_causal: { i: 1 } }, mask: [B, 1, S, T], boolMask: true, past: true },
      { attrs: { qk_matmul_output_mode: { i: 3 } }, mask: [S, L], past: false },
    ];
    for (const [k, c] of configs.entries()) {
      for (const rank3 of [false, true]) {
        const Hq = 4, Hkv = 2;
        const shape = (h: number, s: number, d: number) => (rank3 ? [B, s, h * d] : [B, h, s, d]);
        const mask = c.mask && (c.boolMask ? fromF64('bool', c.mask, toF64(rand('float32', c.mask, 600 + k)).map((v) => +(v > -0.6)))
          : rand('float32', c.mask, 600 + k));
        const attrs = rank3 ? { ...c.attrs, q_num_heads: { i: Hq }, kv_num_heads: { i: Hkv } } : c.attrs;
        const why = await check({
          op: 'Attention', opset: 23, attrs, outputs: c.past ? ['float32', 'float32', 'float32'] : ['float32'],
          inputs: [
            ['Q', rand('float32', shape(Hq, S, Dk), 610 + k)], ['K', rand('float32', shape(Hkv, L, Dk), 620 + k)],
            ['V', rand('float32', shape(Hkv, L, Dv), 630 + k)], ['mask', mask],
            ['past_key', c.past ? rand('float32', [B, Hkv, P, Dk], 640 + k) : undefined],
            ['past_value', c.past ? rand('float32', [B, Hkv, P, Dv], 650 + k) : undefined],
          ],
        });
        expect(why, `config ${k} rank3=${rank3}`).toBeUndefined();
      }
    }
  });
});
