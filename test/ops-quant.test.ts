import { describe, expect, it } from 'vitest';
import '../src/ops/index.js';
import { getOp, type CpuCtx, type InferCtx } from '../src/ops/registry.js';
import { rint } from '../src/ops/quant.js';
import { f16BitsToF32, fromF64 } from '../src/ir/tensor.js';
import { opNode, vals } from './helpers.js';
import type { Attr, DType, Node, Tensor, TensorType } from '../src/ir/types.js';

const ctx: CpuCtx = { opset: 21, runGraph: () => { throw new Error('no subgraphs'); } };
const ictx = (n: number): InferCtx => ({ opset: 21, consts: new Array(n).fill(undefined), shapeValues: new Array(n).fill(undefined), freshDim: () => 'fresh' });

const node = (op: string, nIn: number, attrs: Record<string, Attr> = {}, nOut = 1): Node => opNode(op, nIn, attrs, nOut, `${op.toLowerCase()}_test`);
const t = (dims: number[], vals: number[], dtype: DType = 'float32'): Tensor => fromF64(dtype, dims, vals);
const run = (n: Node, ins: (Tensor | undefined)[]) => getOp(n.op)!.cpu(n, ins, ctx);
const int = (value: number): Attr => ({ kind: 'int', value });
const ints = (value: number[]): Attr => ({ kind: 'ints', value });
const s0 = (v: number, dtype: DType = 'float32') => t([], [v], dtype);

describe('rint', () => {
  it('rounds half to even', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 2.5001, -7.5].map((x) => rint(x) + 0)).toEqual([0, 2, 2, 0, -2, -2, 2, 3, -8]);
  });
});

describe('QuantizeLinear', () => {
  const q = (attrs: Record<string, Attr>, ins: (Tensor | undefined)[]) => run(node('QuantizeLinear', ins.length, attrs), ins)[0];
  it('divides, rounds half to even, adds the zero point and saturates', () => {
    const y = q({}, [t([6], [0, 1, 2.5, -3, 1000, -1000]), s0(2), s0(128, 'uint8')]);
    expect(y.dtype).toBe('uint8');
    expect(vals(y)).toEqual([128, 128, 129, 126, 255, 0]);
  });
  it('defaults to uint8 and honours output_dtype', () => {
    expect(q({}, [t([2], [3, -3]), s0(1)])).toMatchObject({ dtype: 'uint8' });
    expect(vals(q({}, [t([2], [3, -3]), s0(1)]))).toEqual([3, 0]);
    const y = q({ output_dtype: int(5) }, [t([3], [40000, -3, -40000]), s0(1)]); // int16
    expect(y.dtype).toBe('int16');
    expect(vals(y)).toEqual([32767, -3, -32768]);
    expect(() => q({ output_dtype: int(3) }, [t([1], [1]), s0(1), s0(0, 'uint8')])).toThrow(/quantizelinear_test.*output_dtype/);
  });
  it('quantizes per axis', () => {
    const y = q({ axis: int(1) }, [t([2, 3], [1, 2, 4, -1, -2, -4]), t([3], [1, 2, 4]), t([3], [0, 1, 2], 'int8')]);
    expect(vals(y)).toEqual([1, 2, 3, -1, 0, 1]);
    expect(() => q({ axis: int(0) }, [t([2, 3], new Array(6).fill(0)), t([3], [1, 2, 4])])).toThrow(/neither a scalar nor 1-D of length 2/);
  });
  it('quantizes in blocks, including a short last block', () => {
    // x [2,4], axis 1, block 3 -> scale [2, ceil(4/3)=2]
    const y = q({ axis: int(1), block_size: int(3) }, [t([2, 4], [2, 4, 6, 8, 2, 4, 6, 8]), t([2, 2], [2, 4, 1, 8]), t([2, 2], [0, 0, 1, 1], 'int8')]);
    expect(vals(y)).toEqual([1, 2, 3, 2, 3, 5, 7, 2]);
    expect(() => q({ axis: int(1), block_size: int(2) }, [t([2, 4], new Array(8).fill(0)), t([2, 3], new Array(6).fill(1))])).toThrow(/blocked scale/);
  });
  it('divides in float16 when x and the scale are float16', () => {
    // 101 / 0.30005 (0.3 in float16) is 336.61 in float32 but rounds to 336.5 in float16 -> 336 (half to even)
    const y = q({}, [t([2], [101, 7.5], 'float16'), s0(0.3, 'float16'), s0(0, 'int16')]);
    expect(vals(y)).toEqual([336, 25]);
    // With a float32 x the division runs in float32 (numpy promotion, as the reference does) -> 337.
    expect(vals(q({}, [t([1], [101]), s0(0.3, 'float16'), s0(0, 'int16')]))).toEqual([337]);
  });
  it('infers the output type from the zero point or output_dtype', () => {
    const f = (shape: (string | number)[], dtype: DType = 'float32'): TensorType => ({ dtype, shape });
    expect(getOp('QuantizeLinear')!.infer(node('QuantizeLinear', 3), [f(['n', 4]), f([]), f([], 'int8')], ictx(3))).toEqual([{ dtype: 'int8', shape: ['n', 4] }]);
    expect(getOp('QuantizeLinear')!.infer(node('QuantizeLinear', 2, { output_dtype: int(4) }), [f(['n']), f([])], ictx(2))[0].dtype).toBe('uint16');
    expect(getOp('QuantizeLinear')!.supports!(node('QuantizeLinear', 2, { output_dtype: int(17) }), 21)).toMatch(/not supported/);
  });
});

describe('DequantizeLinear', () => {
  const dq = (attrs: Record<string, Attr>, ins: (Tensor | undefined)[]) => run(node('DequantizeLinear', ins.length, attrs), ins)[0];
  it('computes (x - zero_point) * scale', () => {
    const y = dq({}, [t([3], [-128, 0, 127], 'int8'), s0(0.5), s0(-1, 'int8')]);
    expect(y.dtype).toBe('float32');
    expect(vals(y)).toEqual([-63.5, 0.5, 64]);
    expect(vals(dq({}, [t([2], [100000, -7], 'int32'), s0(2)]))).toEqual([200000, -14]);
  });
  it('dequantizes per axis and in blocks', () => {
    expect(vals(dq({ axis: int(0) }, [t([2, 2], [1, 2, 3, 4], 'uint8'), t([2], [1, 10]), t([2], [1, 0], 'uint8')]))).toEqual([0, 1, 30, 40]);
    expect(vals(dq({ axis: int(-1), block_size: int(2) }, [t([1, 3], [1, 2, 3], 'uint8'), t([1, 2], [2, 100])]))).toEqual([2, 4, 300]);
  });
  it('outputs the scale type (float16) or output_dtype', () => {
    const y = dq({}, [t([1], [3], 'uint8'), s0(0.5, 'float16')]);
    expect(y.dtype).toBe('float16');
    expect(f16BitsToF32((y.data as Uint16Array)[0])).toBe(1.5);
    expect(dq({ output_dtype: int(16) }, [t([1], [3], 'uint8'), s0(0.5)]).dtype).toBe('bfloat16');
  });
  it('rejects a zero point of another type', () => {
    expect(() => dq({}, [t([1], [3], 'uint8'), s0(1), s0(0, 'int8')])).toThrow(/dequantizelinear_test': x is uint8 but x_zero_point is int8/);
  });
});

describe('DynamicQuantizeLinear', () => {
  it('matches the ONNX example', () => {
    const [y, scale, zp] = run(node('DynamicQuantizeLinear', 1, {}, 3), [t([6], [0, 2, -3, -2.5, 1.34, 0.5])]);
    expect(vals(y)).toEqual([153, 255, 0, 26, 221, 179]); // 0.5 / scale is 25.5 in float32 -> 26
    expect(vals(scale)[0]).toBeCloseTo(5 / 255, 7);
    expect(vals(zp)).toEqual([153]);
  });
});

describe('MatMulInteger and QLinearMatMul', () => {
  it('subtracts per-row and per-column zero points', () => {
    // A - [1, 2] per row = [[1,2],[1,2]]; B - [0, 1] per column = [[1,1],[2,2]]
    const [y] = run(node('MatMulInteger', 4), [t([2, 2], [2, 3, 3, 4], 'uint8'), t([2, 2], [1, 2, 2, 3], 'uint8'), t([2], [1, 2], 'uint8'), t([2], [0, 1], 'uint8')]);
    expect(y.dtype).toBe('int32');
    expect(vals(y)).toEqual([5, 5, 5, 5]);
  });
  it('requantizes with a_scale * b_scale / y_scale', () => {
    // (A - 2) = [0, 2], (B - 1) = [0, 2]^T -> 4; 4 * 0.5 * 0.25 / 0.1 = 5; + 10
    const ins = [t([1, 2], [2, 4], 'uint8'), s0(0.5), s0(2, 'uint8'), t([2, 1], [1, 3], 'uint8'), s0(0.25), s0(1, 'uint8'), s0(0.1), s0(10, 'uint8')];
    const [y] = run(node('QLinearMatMul', 8), ins);
    expect(y.dtype).toBe('uint8');
    expect(vals(y)).toEqual([15]);
    // Saturation at the int8 bounds.
    const big = [t([1, 1], [127], 'int8'), s0(1), s0(0, 'int8'), t([1, 1], [127], 'int8'), s0(1), s0(0, 'int8'), s0(1), s0(0, 'int8')];
    expect(vals(run(node('QLinearMatMul', 8), big)[0])).toEqual([127]);
  });
  it('infers the output type from y_zero_point', () => {
    const f = (shape: (string | number)[], dtype: DType): TensorType => ({ dtype, shape });
    const ins = [f(['b', 3, 4], 'int8'), f([], 'float32'), f([], 'int8'), f([4, 5], 'int8'), f([], 'float32'), f([], 'int8'), f([], 'float32'), f([], 'uint8')];
    expect(getOp('QLinearMatMul')!.infer(node('QLinearMatMul', 8), ins, ictx(8))).toEqual([{ dtype: 'uint8', shape: ['b', 3, 5] }]);
  });
});

describe('QLinearConv', () => {
  const x = t([1, 1, 3, 3], [11, 12, 13, 14, 15, 16, 17, 18, 19], 'uint8'); // minus zero point 10 -> 1..9
  it('convolves the centered integers and requantizes', () => {
    // 2x2 all-ones kernel (w - 1 = 1): windows sum to 12, 16, 24, 28; * 1 * 1 / 2 = 6, 8, 12, 14; + 100
    const ins = [x, s0(1), s0(10, 'uint8'), t([1, 1, 2, 2], [2, 2, 2, 2], 'uint8'), s0(1), s0(1, 'uint8'), s0(2), s0(100, 'uint8')];
    const [y] = run(node('QLinearConv', 8), ins);
    expect(y.dims).toEqual([1, 1, 2, 2]);
    expect(vals(y)).toEqual([106, 108, 112, 114]);
  });
  it('pads, strides, adds the int32 bias and scales per output channel', () => {
    // Two output channels of a 1x1 kernel (weights 1 and 2 after zero point 0), stride 2, one pad row on top and
    // one pad column on the right.
    const attrs = { pads: ints([1, 0, 0, 1]), strides: ints([2, 2]) };
    const ins = [x, s0(1), s0(10, 'uint8'), t([2, 1, 1, 1], [1, 2], 'int8'), t([2], [1, 0.5]), s0(0, 'int8'), s0(1), s0(0, 'int8'), t([2], [0, -4], 'int32')];
    const [y] = run(node('QLinearConv', 9, attrs), ins);
    expect(y.dims).toEqual([1, 2, 2, 2]);
    // Output (i, j) reads input row 2i-1 (row -1 is padding) and column 2j: values pad, pad, 4, 6.
    expect(vals(y).slice(0, 4)).toEqual([0, 0, 4, 6]);
    // Channel 1: (2 * v - 4) * 0.5.
    expect(vals(y).slice(4)).toEqual([-2, -2, 2, 4]);
  });
  it('supports groups and SAME_UPPER padding in shape inference', () => {
    const f = (shape: (string | number)[], dtype: DType): TensorType => ({ dtype, shape });
    const n = node('QLinearConv', 8, { auto_pad: { kind: 'string', value: 'SAME_UPPER' }, strides: ints([2, 2]), group: int(2) });
    const ins = [f(['n', 4, 7, 8], 'uint8'), f([], 'float32'), f([], 'uint8'), f([6, 2, 3, 3], 'int8'), f([], 'float32'), f([], 'int8'), f([], 'float32'), f([], 'uint8')];
    expect(getOp('QLinearConv')!.infer(n, ins, ictx(8))).toEqual([{ dtype: 'uint8', shape: ['n', 6, 4, 4] }]);
    const bad = [x, s0(1), s0(10, 'uint8'), t([1, 2, 1, 1], [1, 1], 'uint8'), s0(1), s0(0, 'uint8'), s0(1), s0(0, 'uint8')];
    expect(() => run(node('QLinearConv', 8), bad)).toThrow(/qlinearconv_test.*channels/);
  });
});
