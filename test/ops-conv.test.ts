// Conv, ConvTranspose, pooling and the blocked GEMM: hand-computed small cases, a direct-loop reference for
// random 1-D/2-D/3-D convolutions (groups, depthwise, dilations, strides, asymmetric pads), float16 rounding,
// zero-size tensors, symbolic shape inference and attribute errors.
import { describe, expect, it } from 'vitest';
import '../src/ops/index.js';
import { getOp, type InferCtx } from '../src/ops/registry.js';
import { gemmF32, gemmF64 } from '../src/ops/cpu_gemm.js';
import { f16BitsToF32, f32ToF16Bits, fromF64 } from '../src/ir/tensor.js';
import { TsrtError } from '../src/errors.js';
import { opNode, vals } from './helpers.js';
import type { Attr, Tensor, TensorType } from '../src/ir/types.js';

const A = {
  int: (value: number): Attr => ({ kind: 'int', value }),
  ints: (value: number[]): Attr => ({ kind: 'ints', value }),
  str: (value: string): Attr => ({ kind: 'string', value }),
};

const mk = opNode;
const f32 = (dims: number[], v: number[]) => fromF64('float32', dims, v);
const h = (x: number) => f16BitsToF32(f32ToF16Bits(x));

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

/** Deterministic pseudo-random values in [-1, 1). */
function rand(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2 ** 31 - 1; });
}
const prod = (d: number[]) => d.reduce((a, b) => a * b, 1);

/** Direct-loop convolution, independent of the im2col implementation under test. */
function naiveConv(x: number[], xd: number[], w: number[], wd: number[], b: number[] | undefined, o: {
  group: number; strides: number[]; dil: number[]; pads: number[];
}): { dims: number[]; v: number[] } {
  const n = xd.length - 2, [N, C] = xd, M = wd[0], cg = C / o.group, mg = M / o.group;
  const inSp = xd.slice(2), k = wd.slice(2);
  const outSp = inSp.map((s, i) => Math.floor((s + o.pads[i] + o.pads[i + n] - o.dil[i] * (k[i] - 1) - 1) / o.strides[i]) + 1);
  const v: number[] = [];
  const idx = (dims: number[], c: number[]) => c.reduce((acc, ci, i) => acc * dims[i] + ci, 0);
  const each = (dims: number[], f: (c: number[]) => void) => {
    const c = dims.map(() => 0);
    for (let t = 0; t < prod(dims); t++) { f([...c]); for (let d = dims.length - 1; d >= 0; d--) { if (++c[d] < dims[d]) break; c[d] = 0; } }
  };
  for (let bn = 0; bn < N; bn++) {
    for (let m = 0; m < M; m++) {
      const g = Math.floor(m / mg);
      each(outSp, (oc) => {
        let s = b ? b[m] : 0;
        for (let c = 0; c < cg; c++) {
          each(k, (kc) => {
            const ic = oc.map((oi, i) => oi * o.strides[i] - o.pads[i] + kc[i] * o.dil[i]);
            if (ic.some((p, i) => p < 0 || p >= inSp[i])) return;
            s += x[idx(xd, [bn, g * cg + c, ...ic])] * w[idx(wd, [m, c, ...kc])];
          });
        }
        v.push(s);
      });
    }
  }
  return { dims: [N, M, ...outSp], v };
}

function expectClose(got: number[], want: number[], tol = 1e-5): void {
  expect(got.length).toBe(want.length);
  const bad = got.findIndex((g, i) => !(Math.abs(g - want[i]) <= tol * (1 + Math.abs(want[i]))));
  expect(bad, bad >= 0 ? `index ${bad}: got ${got[bad]}, want ${want[bad]}` : '').toBe(-1);
}

describe('gemmF32', () => {
  function naive(M: number, N: number, K: number, a: Float32Array, lda: number, b: Float32Array, ldb: number, tA: boolean, tB: boolean) {
    const c = new Float64Array(M * N);
    for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
      let s = 0;
      for (let p = 0; p < K; p++) s += (tA ? a[p * lda + i] : a[i * lda + p]) * (tB ? b[j * ldb + p] : b[p * ldb + j]);
      c[i * N + j] = s;
    }
    return c;
  }
  it('matches a naive product for edge-tile, transposed and matrix-vector shapes', () => {
    for (const [M, N, K] of [[1, 1, 1], [3, 5, 7], [4, 8, 256], [9, 17, 300], [1, 33, 20], [21, 1, 40], [130, 70, 3]]) {
      for (const tA of [false, true]) {
        for (const tB of [false, true]) {
          const a = Float32Array.from(rand(M * K, M + K)), b = Float32Array.from(rand(K * N, N * 7 + K));
          const c = new Float32Array(M * N).fill(123);
          gemmF32(M, N, K, a, tA ? M : K, b, tB ? K : N, c, N, { transA: tA, transB: tB });
          expectClose(Array.from(c), Array.from(naive(M, N, K, a, tA ? M : K, b, tB ? K : N, tA, tB)), 1e-5);
        }
      }
    }
  });
  it('honours offsets, strides, alpha and accumulate', () => {
    // C[1..2, 1..2] of a 3x4 buffer += 2 * A(2x2 at offset 1, lda 3) * B(2x2 at offset 2, ldb 4)
    const a = Float32Array.from([9, 1, 2, 9, 3, 4]);
    const b = Float32Array.from([9, 9, 1, 0, 9, 9, 0, 1]);
    const c = new Float32Array(12).fill(1);
    gemmF32(2, 2, 2, a, 3, b, 4, c, 4, { aOffset: 1, bOffset: 2, cOffset: 5, alpha: 2, accumulate: true });
    expect(Array.from(c)).toEqual([1, 1, 1, 1, 1, 3, 5, 1, 1, 7, 9, 1]);
  });
  it('K = 0 clears C unless accumulating; float64 variant agrees', () => {
    const c = new Float32Array([5, 5]);
    gemmF32(1, 2, 0, new Float32Array(0), 0, new Float32Array(0), 2, c, 2);
    expect(Array.from(c)).toEqual([0, 0]);
    const c64 = new Float64Array(4);
    gemmF64(2, 2, 2, Float64Array.from([1, 2, 3, 4]), 2, Float64Array.from([5, 6, 7, 8]), 2, c64, 2);
    expect(Array.from(c64)).toEqual([19, 22, 43, 50]);
  });
});

describe('Conv', () => {
  it('computes a hand-checked 2-D case with padding and bias', () => {
    // x = [[1,2],[3,4]], w = ones 2x2, pads 1: every output sums the taps that land inside x.
    const y = run('Conv', [f32([1, 1, 2, 2], [1, 2, 3, 4]), f32([1, 1, 2, 2], [1, 1, 1, 1]), f32([1], [10])],
      { pads: A.ints([1, 1, 1, 1]) })[0];
    expect(y.dims).toEqual([1, 1, 3, 3]);
    expect(vals(y)).toEqual([11, 13, 12, 14, 20, 16, 13, 17, 14]);
  });
  it('matches a direct loop for 1-D, 2-D and 3-D with groups, dilations, strides and asymmetric pads', () => {
    const cases = [
      { xd: [2, 4, 9], wd: [6, 2, 3], group: 2, strides: [2], dil: [1], pads: [1, 0] },
      { xd: [1, 3, 11, 10], wd: [8, 3, 3, 3], group: 1, strides: [1, 1], dil: [1, 1], pads: [1, 1, 1, 1] },
      { xd: [2, 6, 9, 8], wd: [4, 3, 3, 2], group: 2, strides: [2, 1], dil: [2, 1], pads: [0, 2, 1, 0] },
      { xd: [1, 5, 7, 7], wd: [10, 1, 3, 3], group: 5, strides: [2, 2], dil: [1, 1], pads: [1, 1, 1, 1] }, // depthwise x2
      { xd: [1, 8, 6, 6], wd: [16, 8, 1, 1], group: 1, strides: [1, 1], dil: [1, 1], pads: [0, 0, 0, 0] }, // pointwise
      { xd: [1, 2, 5, 4, 6], wd: [3, 2, 2, 3, 2], group: 1, strides: [1, 2, 1], dil: [1, 1, 2], pads: [0, 1, 1, 1, 0, 0] },
    ];
    for (const [ci, c] of cases.entries()) {
      const x = rand(prod(c.xd), ci + 1), w = rand(prod(c.wd), ci + 50), b = rand(c.wd[0], ci + 99);
      const want = naiveConv(x, c.xd, w, c.wd, b, c);
      const y = run('Conv', [f32(c.xd, x), f32(c.wd, w), f32([c.wd[0]], b)],
        { group: A.int(c.group), strides: A.ints(c.strides), dilations: A.ints(c.dil), pads: A.ints(c.pads) })[0];
      expect(y.dims).toEqual(want.dims);
      expectClose(vals(y), want.v, 1e-5);
    }
  });
  it('places the odd auto_pad pixel at the end for SAME_UPPER and at the start for SAME_LOWER', () => {
    const x = f32([1, 1, 4], [1, 2, 3, 4]), w = f32([1, 1, 2], [1, 10]);
    // out = ceil(4/1) = 4, total pad 1
    expect(vals(run('Conv', [x, w], { auto_pad: A.str('SAME_UPPER') })[0])).toEqual([21, 32, 43, 4]);
    expect(vals(run('Conv', [x, w], { auto_pad: A.str('SAME_LOWER') })[0])).toEqual([10, 21, 32, 43]);
    expect(run('Conv', [x, w], { auto_pad: A.str('VALID'), strides: A.ints([2]) })[0].dims).toEqual([1, 1, 2]);
  });
  it('computes float16 in float32 and rounds once', () => {
    const xs = [0.1, 0.2, 0.3, 0.7], ws = [1.1, 2.3];
    const y = run('Conv', [fromF64('float16', [1, 1, 4], xs), fromF64('float16', [1, 1, 2], ws)])[0];
    expect(y.dtype).toBe('float16');
    const hx = xs.map(h), hw = ws.map(h);
    expect(vals(y)).toEqual([0, 1, 2].map((i) => h(Math.fround(hx[i] * hw[0] + hx[i + 1] * hw[1]))));
  });
  it('handles zero-size batches and keeps symbolic dims in inference', () => {
    const y = run('Conv', [f32([0, 2, 5, 5], []), f32([3, 2, 3, 3], rand(54, 3)), f32([3], [1, 2, 3])])[0];
    expect(y.dims).toEqual([0, 3, 3, 3]);
    const [t] = infer('Conv', [{ dtype: 'float32', shape: ['N', 3, 'H', 224] }, { dtype: 'float32', shape: [64, 3, 3, 3] }],
      { pads: A.ints([1, 1, 1, 1]), strides: A.ints([1, 2]) });
    expect(t.shape).toEqual(['N', 64, 'H', 112]);
  });
  it('rejects a channel mismatch and a bad kernel_shape with the node named', () => {
    const bad = () => infer('Conv', [{ dtype: 'float32', shape: [1, 4, 5, 5] }, { dtype: 'float32', shape: [2, 3, 3, 3] }]);
    expect(bad).toThrow(TsrtError);
    expect(bad).toThrow(/Conv_t.*4 channels/);
    expect(() => infer('Conv', [{ dtype: 'float32', shape: [1, 3, 5, 5] }, { dtype: 'float32', shape: [2, 3, 3, 3] }],
      { kernel_shape: A.ints([2, 2]) })).toThrow(/kernel_shape/);
  });
});

describe('ConvTranspose', () => {
  it('scatters a hand-checked 1-D case with stride, pads and output_padding', () => {
    // x = [1, 2], w = [1, 10, 100], stride 2: full = [1, 10, 102, 20, 200]
    const x = f32([1, 1, 2], [1, 2]), w = f32([1, 1, 3], [1, 10, 100]);
    expect(vals(run('ConvTranspose', [x, w], { strides: A.ints([2]) })[0])).toEqual([1, 10, 102, 20, 200]);
    expect(vals(run('ConvTranspose', [x, w], { strides: A.ints([2]), pads: A.ints([1, 1]) })[0])).toEqual([10, 102, 20]);
    expect(vals(run('ConvTranspose', [x, w], { strides: A.ints([2]), output_padding: A.ints([1]) })[0]))
      .toEqual([1, 10, 102, 20, 200, 0]);
    // output_shape 4 => total padding 1, which goes to the start (neither SAME_UPPER): [10, 102, 20, 200]
    expect(vals(run('ConvTranspose', [x, w], { strides: A.ints([2]), output_shape: A.ints([4]) })[0])).toEqual([10, 102, 20, 200]);
  });
  it('is the adjoint of Conv (groups, dilation, stride) on random data', () => {
    // <Conv(x), y> == <x, ConvT(y)> with the same weights: checks the scatter indices and group layout.
    const xd = [1, 4, 7, 6], wd = [6, 2, 3, 2], attrs = { group: A.int(2), strides: A.ints([2, 1]), dilations: A.ints([1, 2]), pads: A.ints([1, 0, 0, 1]) };
    const x = rand(prod(xd), 5), w = rand(prod(wd), 6);
    const cx = run('Conv', [f32(xd, x), f32(wd, w)], attrs)[0];
    const yv = rand(prod(cx.dims), 7);
    // ConvTranspose weight is [C_in_of_transpose = 6, M/group = 2, k...]: the same array read as [6, 2, 3, 2].
    const ty = run('ConvTranspose', [f32(cx.dims, yv), f32([6, 2, 3, 2], w)],
      { ...attrs, output_padding: A.ints([1, 0]) })[0];
    expect(ty.dims).toEqual(xd);
    const dot = (p: number[], q: number[]) => p.reduce((s, v, i) => s + v * q[i], 0);
    expect(dot(vals(cx), yv)).toBeCloseTo(dot(x, vals(ty)), 4);
  });
  it('infers SAME_UPPER output = input * stride with symbolic batch', () => {
    const [t] = infer('ConvTranspose', [{ dtype: 'float16', shape: ['B', 2, 3, 3] }, { dtype: 'float16', shape: [2, 4, 3, 3] }],
      { auto_pad: A.str('SAME_UPPER'), strides: A.ints([2, 2]), group: A.int(2) });
    expect(t).toEqual({ dtype: 'float16', shape: ['B', 8, 6, 6] });
  });
});

describe('pooling', () => {
  const x44 = f32([1, 1, 4, 4], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
  it('MaxPool returns values and row-major or column-major Indices', () => {
    const [y, i] = run('MaxPool', [x44], { kernel_shape: A.ints([2, 2]), strides: A.ints([2, 2]) }, 2);
    expect(vals(y)).toEqual([6, 8, 14, 16]);
    expect(Array.from(i.data as BigInt64Array)).toEqual([5n, 7n, 13n, 15n]);
    const [, ic] = run('MaxPool', [x44], { kernel_shape: A.ints([2, 2]), strides: A.ints([2, 2]), storage_order: A.int(1) }, 2);
    expect(Array.from(ic.data as BigInt64Array)).toEqual([5n, 13n, 7n, 15n]);
    // Indices count from the start of the whole tensor (batch and channel included).
    const x2 = f32([2, 1, 1, 2], [3, 1, 0, 7]);
    const [, i2] = run('MaxPool', [x2], { kernel_shape: A.ints([1, 2]) }, 2);
    expect(Array.from(i2.data as BigInt64Array)).toEqual([0n, 3n]);
  });
  it('ceil_mode keeps a partial last window but drops one that starts in the end padding', () => {
    const x = f32([1, 1, 5], [1, 2, 3, 4, 5]);
    expect(vals(run('MaxPool', [x], { kernel_shape: A.ints([2]), strides: A.ints([2]), ceil_mode: A.int(1) })[0])).toEqual([2, 4, 5]);
    expect(vals(run('MaxPool', [x], { kernel_shape: A.ints([2]), strides: A.ints([2]) })[0])).toEqual([2, 4]);
    // in 4, pads 0+1, k 2, s 2, ceil: ceil(3/2)+1 = 3 windows, but the third would start at 4 >= in + pad_begin => 2.
    const x4 = f32([1, 1, 4], [1, 2, 3, 4]);
    expect(run('MaxPool', [x4], { kernel_shape: A.ints([2]), strides: A.ints([2]), pads: A.ints([0, 1]), ceil_mode: A.int(1) })[0].dims)
      .toEqual([1, 1, 2]);
  });
  it('AveragePool counts pads only with count_include_pad, never the ceil_mode overhang', () => {
    const x = f32([1, 1, 3], [3, 6, 9]);
    const base = { kernel_shape: A.ints([2]), strides: A.ints([2]), pads: A.ints([1, 0]) };
    expect(vals(run('AveragePool', [x], base)[0])).toEqual([3, 7.5]);
    expect(vals(run('AveragePool', [x], { ...base, count_include_pad: A.int(1) })[0])).toEqual([1.5, 7.5]);
    // ceil_mode window [2, 4) overhangs the input by one: divided by the one real element either way.
    const c = { kernel_shape: A.ints([2]), strides: A.ints([2]), ceil_mode: A.int(1) };
    expect(vals(run('AveragePool', [x], c)[0])).toEqual([4.5, 9]);
    expect(vals(run('AveragePool', [x], { ...c, count_include_pad: A.int(1) })[0])).toEqual([4.5, 9]);
  });
  it('AveragePool with dilations and SAME_LOWER', () => {
    const x = f32([1, 1, 5], [1, 2, 3, 4, 5]);
    expect(vals(run('AveragePool', [x], { kernel_shape: A.ints([2]), dilations: A.ints([2]) })[0])).toEqual([2, 3, 4]);
    // SAME_LOWER, k 2: pad 1 at the start, excluded from the count.
    expect(vals(run('AveragePool', [x], { kernel_shape: A.ints([2]), auto_pad: A.str('SAME_LOWER') })[0])).toEqual([1, 1.5, 2.5, 3.5, 4.5]);
  });
  it('MaxPool on int8 and float16; global pools; zero-size', () => {
    const xi = fromF64('int8', [1, 1, 4], [-5, -3, 100, -128]);
    const yi = run('MaxPool', [xi], { kernel_shape: A.ints([2]) })[0];
    expect(yi.dtype).toBe('int8');
    expect(vals(yi)).toEqual([-3, 100, 100]);
    const xh = fromF64('float16', [1, 2, 3], [0.1, 0.2, 0.4, 1, 2, 4]);
    const ga = run('GlobalAveragePool', [xh])[0];
    expect(ga.dtype).toBe('float16');
    expect(ga.dims).toEqual([1, 2, 1]);
    expect(vals(ga)).toEqual([h((h(0.1) + h(0.2) + h(0.4)) / 3), h(7 / 3)]);
    expect(vals(run('GlobalMaxPool', [x44])[0])).toEqual([16]);
    expect(run('MaxPool', [f32([0, 3, 4, 4], [])], { kernel_shape: A.ints([2, 2]) })[0].dims).toEqual([0, 3, 3, 3]);
    expect(vals(run('LpPool', [f32([1, 1, 2], [3, 4])], { kernel_shape: A.ints([2]) })[0])).toEqual([5]);
  });
  it('infers pooled shapes with symbols and an int64 Indices output', () => {
    const t = infer('MaxPool', [{ dtype: 'float32', shape: ['N', 3, 'H', 9] }], { kernel_shape: A.ints([3, 3]), strides: A.ints([1, 2]), pads: A.ints([1, 1, 1, 1]) }, 2);
    expect(t).toEqual([{ dtype: 'float32', shape: ['N', 3, 'H', 5] }, { dtype: 'int64', shape: ['N', 3, 'H', 5] }]);
    expect(() => infer('MaxPool', [{ dtype: 'float32', shape: [1, 1, 4, 4] }], { kernel_shape: A.ints([2]) })).toThrow(/kernel_shape/);
    expect(() => infer('AveragePool', [{ dtype: 'int32', shape: [1, 1, 4] }], { kernel_shape: A.ints([2]) })).toThrow(/int32/);
  });
  it('rejects unsupported storage_order up front', () => {
    expect(getOp('MaxPool')!.supports!(mk('MaxPool', 1, { kernel_shape: A.ints([2]), storage_order: A.int(2) }), 22)).toMatch(/storage_order/);
  });
});
