// INT8 execution (issue 6, items 1/4/5):
//  - the int8 tensor-core kernels (codegen/tc_int8.ts) compile with NVRTC for sm_90 without spills, and small
//    cases run under the CPU emulator of the generated CUDA (test/tc_emu.ts, s8 mma from the PTX fragment
//    tables) and equal the exact CPU reference of tsrt::QConv / tsrt::QGemm bit for bit;
//  - explicit quantization: QDQ conv graphs build into int8 layers and match onnxruntime (uint8 stays float);
//  - implicit int8 with minmax scales on the bundled ppocr classifier: cosine >= 0.99 against fp32.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { build } from '../src/runtime/engine.js';
import { loadModel, loadTensorFile } from '../src/onnx/import.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { accuracy } from '../src/cli/io.js';
import { fromF64, makeTensor, toF64 } from '../src/ir/tensor.js';
import type { Model, Tensor } from '../src/ir/types.js';
import '../src/ops/index.js';
import { emitConvInt8, emitGemmInt8, int8ConvConfigSpace, int8ConvPreconditions, int8StagingRowBytes } from '../src/codegen/tc_int8.js';
import { compileCuda } from '../src/runtime/nvrtc.js';
import { accFitsSmall } from '../src/codegen/lower_int8.js';
import { conv, diffCount, emulate, hasGxx, randI8, setup, small, type KCase } from './int8_cases.js';
import { modelBytes, rand, runOrt, type GraphSpec } from './rnn-control.build.js';
import { parseModel } from '../src/onnx/import.js';

const MODELS = new URL('../models/', import.meta.url).pathname;

/** Minmax calibration on the CPU reference: scale = amax / 127 for every float tensor of the model. */
function minmaxScales(model: Model, feeds: Map<string, Tensor>[]): Record<string, number> {
  const amax: Record<string, number> = {};
  for (const f of feeds) {
    for (const [k, t] of runGraph(model.graph, f, { keepAll: true })) {
      if (t.dtype !== 'float32') continue;
      let m = amax[k] ?? 0;
      for (const v of toF64(t)) m = Math.max(m, Math.abs(v));
      amax[k] = m;
    }
  }
  return Object.fromEntries(Object.entries(amax).filter(([, v]) => v > 0).map(([k, v]) => [k, v / 127]));
}

describe('implicit int8 (calibration scales)', () => {
  it('ppocr classifier: int8 convs with fp16 fallback stay within cosine 0.99 of fp32 on the CPU backend', async () => {
    const dir = MODELS + 'ppocr_mobile_v2_cls/';
    const model = loadModel(dir + 'model.onnx');
    const x = loadTensorFile(dir + 'test_data_set_0/input_0.pb');
    const name = model.graph.inputs[0].name;
    const scales = minmaxScales(model, [new Map([[name, x]])]);
    const fp32 = await build(model, { device: 'cpu', compileKernels: false, shapes: { [name]: x.dims } });
    const int8 = await build(model, { device: 'cpu', compileKernels: false, int8: true, int8Scales: scales, shapes: { [name]: x.dims }, verify: true });
    const ref = (await fp32.run({ [name]: x })).get(fp32.outputs[0].name)!;
    const got = (await int8.run({ [name]: x })).get(int8.outputs[0].name)!;
    const acc = accuracy(got, ref);
    const q = int8.passContext.fusions.filter((f) => f.pass === 'quantize-int8');
    const rej = int8.passContext.rejected.filter((f) => f.pass === 'quantize-int8');
    console.log(`ppocr int8: ${q.length} int8 layers (${q.filter((f) => /int8 out/.test(f.kind)).length} with int8 outputs), ${rej.length} refused (${[...new Set(rej.map((r) => r.reason))].join('; ')}); cosine ${acc.cosine.toFixed(5)}`);
    expect(q.length).toBeGreaterThan(5);
    expect(acc.cosine).toBeGreaterThanOrEqual(0.99);
    expect(acc.argmaxMatch).toBe(true);
    const kinds = new Set(int8.layers().map((l) => l.op));
    expect(kinds.has('QConv')).toBe(true);
    expect(int8.report.hostSteps).toBe(0);
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------------
// Kernels: NVRTC compile checks and the CPU emulator against the QConv / QGemm references

const KCASES: KCase[] = [
  { id: 'conv3x3_q_bres_relu', kind: 'conv', conv: conv(2, 6, 32, 24, 3, 1, 1), act: 'Relu', cfg: small(32, 32, 1, 2, 3),
    epi: { out: 'int8', outScale: 0.04, bias: true, residual: true, residualType: 'int8', residualScale: 0.03, act: 'relu' } },
  // (Clip rather than LeakyRelu: the CPU LeakyRelu multiplies by alpha in float64, the kernel by fp32(alpha))
  { id: 'conv3x3s2_h_splitk_clip', kind: 'conv', conv: conv(1, 7, 64, 40, 3, 2, 1), act: 'Clip', cfg: small(32, 32, 1, 2, 4, 3),
    epi: { out: 'float16', bias: true, residual: true, residualType: 'float16', residualAfterAct: true, act: 'clip', actArgs: [-1, 1.5] } },
  // (smallAcc: the accumulator and int8 residual converted by the exponent trick, the requantize by the FADD; most
  // of this one's outputs saturate)
  { id: 'conv1x1_q_plain', kind: 'conv', conv: conv(2, 5, 48, 64, 1, 1, 0), cfg: small(64, 32, 2, 1, 2), epi: { out: 'int8', outScale: 0.02, smallAcc: true } },
  { id: 'gemm_f32_bias_splitk', kind: 'gemm', gemm: { m: 37, n: 48, k: 192 }, cfg: small(32, 32, 1, 2, 3, 3), epi: { out: 'float32', bias: true } },
  // N % 16 == 0: the staged (shared-memory, 16-byte store) epilogue with pair residual loads, ragged M
  { id: 'conv3x3_staged_q_resq_relu', kind: 'conv', conv: conv(2, 6, 32, 32, 3, 1, 1), act: 'Relu', cfg: small(32, 32, 1, 2, 3),
    epi: { out: 'int8', outScale: 0.04, bias: true, residual: true, residualType: 'int8', residualScale: 0.03, act: 'relu', smallAcc: true } },
  { id: 'gemm_staged_h_resh_after_splitk', kind: 'gemm', gemm: { m: 37, n: 64, k: 128 }, act: 'Clip', cfg: small(32, 64, 1, 2, 2, 2),
    epi: { out: 'float16', bias: true, residual: true, residualType: 'float16', residualAfterAct: true, act: 'clip', actArgs: [-1, 1.5] } },
];
const emitK = (c: KCase) => (c.kind === 'conv' ? emitConvInt8(c.conv!, c.epi, c.cfg) : emitGemmInt8(c.gemm!, c.epi, c.cfg));

describe('int8 kernels: API', () => {
  it('needs C % 16, names int8 tile configs with bk 64/128, rejects missing scales', () => {
    expect(int8ConvPreconditions(conv(1, 8, 8, 16, 3, 1, 1))[0]).toMatch(/multiple of 16/);
    expect(() => emitConvInt8(conv(1, 8, 24, 16, 3, 1, 1), { out: 'int8', outScale: 1 })).toThrow(/fp16/);
    expect(() => emitConvInt8(conv(1, 8, 32, 16, 3, 1, 1), { out: 'int8' })).toThrow(/outScale/);
    const space = int8ConvConfigSpace(conv(8, 28, 128, 128, 3, 1, 1));
    expect(space.length).toBeGreaterThan(10);
    expect(space.every((c) => c.bk === 64 || c.bk === 128)).toBe(true);
    const k = emitConvInt8(conv(2, 6, 32, 24, 3, 1, 1), KCASES[0].epi, KCASES[0].cfg);
    expect(k.params.map((p) => p.name)).toEqual(['x', 'w', 'scale', 'bias', 'residual', 'y']);
    expect(k.source).toContain('mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32');
    expect(k.sharedBytes).toBe(3 * (32 + 32) * 64);
    // N = 24: direct stores; N % 16 == 0: the staged epilogue, unless its tile outgrows the pipeline's smem
    expect(k.source).not.toContain('tc_v16');
    expect(emitK(KCASES[4]).source).toContain('tc_v16');
    expect(int8StagingRowBytes(small(128, 128, 2, 2, 2), 256, 'int8')).toBe(144);
    expect(int8StagingRowBytes(small(128, 128, 2, 2, 2), 256, 'float32')).toBeUndefined();
    expect(int8StagingRowBytes(small(128, 128, 2, 2, 2), 250, 'float16')).toBeUndefined();
  });

  it('converts accumulators by the exponent trick only when the weights bound them below 2^22', () => {
    // 258 weights of 127 against inputs of -128: 4194048 < 2^22; 259 are over (4210304), and so is a row of 256 weights of
    // -128 (exactly 2^22) when the other row is small
    expect(accFitsSmall(new Int8Array(258).fill(127), 1)).toBe(true);
    expect(accFitsSmall(new Int8Array(259).fill(127), 1)).toBe(false);
    expect(accFitsSmall(Int8Array.from({ length: 512 }, (_, i) => (i < 256 ? 1 : -128)), 2)).toBe(false);
    expect(accFitsSmall(Int8Array.from({ length: 512 }, (_, i) => (i % 2 ? 3 : -3)), 1)).toBe(true);
    const epi = { out: 'int8' as const, outScale: 0.5, bias: true };
    const big = emitConvInt8(conv(1, 4, 32, 32, 1, 1, 0), epi).source, fast = emitConvInt8(conv(1, 4, 32, 32, 1, 1, 0), { ...epi, smallAcc: true }).source;
    expect(big).toContain('(float)t[0]');
    expect(fast).not.toContain('(float)t[0]');
    expect(fast).toContain('__int_as_float(0x4B400000 + (t[0]))');
    // requantize never goes through F2I
    expect(big).not.toContain('__float2int_rn');
  });
});

describe.skipIf(!existsSync('/usr/lib/x86_64-linux-gnu/libnvrtc.so.11.2') && !process.env.TSRT_NVRTC)('int8 kernels: NVRTC sm_90 compile', () => {
  const heuristic: KCase[] = [
    { id: 'r50_3x3', kind: 'conv', conv: conv(32, 28, 128, 128, 3, 1, 1), epi: { out: 'int8', outScale: 0.05, bias: true, act: 'relu' } },
    { id: 'r50_1x1_res', kind: 'conv', conv: conv(32, 14, 256, 1024, 1, 1, 0), epi: { out: 'int8', outScale: 0.05, bias: true, residual: true, residualType: 'int8', residualScale: 0.1, act: 'relu' } },
    { id: 'big_tile', kind: 'conv', conv: conv(256, 56, 64, 256, 1, 1, 0), cfg: { bm: 128, bn: 256, bk: 64, warpsM: 2, warpsN: 4, stages: 4 }, epi: { out: 'float16', bias: true } },
    { id: 'bk128', kind: 'gemm', gemm: { m: 4096, n: 768, k: 768 }, cfg: { bm: 128, bn: 128, bk: 128, warpsM: 2, warpsN: 2, stages: 3 }, epi: { out: 'float16', bias: true, act: 'gelu_erf' } },
  ];
  // the emulator cases with a split-K workspace and both residual types, plus ResNet-50 shapes and the largest tiles
  it.each([KCASES[0], KCASES[3], KCASES[4], KCASES[5], ...heuristic].map((c) => [c.id, c] as const))('%s', (_id, c) => {
    const k = emitK(c);
    const r = compileCuda(k.source, { name: k.name, arch: 'sm_90', options: ['--ptxas-options=-v'] });
    expect(r.log.split('\n').filter((l) => /warning|error/i.test(l))).toEqual([]);
    expect(r.log, 'register spills').toMatch(/ 0 bytes spill stores, 0 bytes spill loads/);
  }, 120_000);
});

describe.skipIf(!hasGxx)('int8 kernels: generated CUDA under the CPU emulator equals the CPU reference', () => {
  it.each(KCASES.map((c) => [c.id, c] as const))('%s', (_id, c) => {
    const { ref, bufs, outBytes } = setup(c);
    const diff = diffCount(c.epi, emulate(emitK(c), c.id, bufs, outBytes), ref, outBytes);
    expect(diff, `${diff} of ${ref.dims.reduce((a, b) => a * b, 1)} elements differ`).toBe(0);
  }, 300_000);
});

// ---------------------------------------------------------------------------------------------------
// Explicit quantization against onnxruntime

describe('explicit quantization (QDQ) against onnxruntime', () => {
  const i8 = (dims: number[], s: number) => makeTensor('int8', dims, randI8(dims.reduce((a, b) => a * b), s));
  const x = rand('float32', [2, 16, 8, 8], 3, -3, 3);
  /** Builds with tsrt (CPU backend, no --int8: Q/DQ alone decide), runs both, returns tsrt's report and the outputs. */
  async function both(g: GraphSpec) {
    const bytes = modelBytes(g, 13);
    const [want] = await runOrt(bytes, { x });
    const engine = await build(parseModel(bytes, { file: 'qdq.onnx' }), { device: 'cpu', compileKernels: false, verify: true });
    const got = (await engine.run({ x })).get(engine.outputs[0].name)!;
    const a = toF64(got), b = toF64(want);
    let maxDiff = 0, same = 0;
    for (let i = 0; i < b.length; i++) { const d = Math.abs(a[i] - b[i]); maxDiff = Math.max(maxDiff, d); if (d === 0) same++; }
    return { engine, maxDiff, same: same / b.length };
  }
  it('DQ(x), DQ(w) -> Conv -> Relu -> Q -> DQ builds one int8 conv with int8 output and equals onnxruntime to one step', async () => {
    const w = i8([32, 16, 3, 3], 11);
    const ws = fromF64('float32', [32], Array.from({ length: 32 }, (_, i) => 0.002 + 0.0001 * i));
    const g: GraphSpec = {
      inputs: [['x', 'float32', [2, 16, 8, 8]]], outputs: [['y', 'float32', [2, 32, 8, 8]]],
      inits: {
        xs: fromF64('float32', [], [0.05]), zp: makeTensor('int8', [], Int8Array.of(0)), wq: w, ws, wzp: makeTensor('int8', [32], new Int8Array(32)),
        b: fromF64('float32', [32], Array.from({ length: 32 }, (_, i) => 0.05 * (i % 7) - 0.15)), ys: fromF64('float32', [], [0.04]),
      },
      nodes: [
        { op: 'QuantizeLinear', inputs: ['x', 'xs', 'zp'], outputs: ['xq'] },
        { op: 'DequantizeLinear', inputs: ['xq', 'xs', 'zp'], outputs: ['xd'] },
        { op: 'DequantizeLinear', inputs: ['wq', 'ws', 'wzp'], outputs: ['wd'], attrs: { axis: { i: 0 } } },
        { op: 'Conv', inputs: ['xd', 'wd', 'b'], outputs: ['c'], attrs: { pads: { ints: [1, 1, 1, 1] } } },
        { op: 'Relu', inputs: ['c'], outputs: ['r'] },
        { op: 'QuantizeLinear', inputs: ['r', 'ys', 'zp'], outputs: ['rq'] },
        { op: 'DequantizeLinear', inputs: ['rq', 'ys', 'zp'], outputs: ['y'] },
      ],
    };
    const r = await both(g);
    const q = r.engine.passContext.fusions.filter((f) => f.pass === 'quantize-int8');
    expect(q.map((f) => f.kind)).toEqual(['int8 conv (int8 out) [explicit]']);
    expect(r.engine.layers().some((l) => l.op === 'QConv')).toBe(true);
    expect(r.maxDiff).toBeLessThanOrEqual(0.04 * 1.0001); // at most one quantization step (rounding order)
    expect(r.same).toBeGreaterThan(0.99);
  });
  it('per-tensor weight scale, no bias: int8 conv; a uint8 (asymmetric) zero point keeps the float path with a reason', async () => {
    const mk = (zpType: 'int8' | 'uint8'): GraphSpec => ({
      inputs: [['x', 'float32', [2, 16, 8, 8]]], outputs: [['y', 'float32', [2, 32, 8, 8]]],
      inits: {
        xs: fromF64('float32', [], [0.05]), zp: makeTensor(zpType, [], zpType === 'int8' ? Int8Array.of(0) : Uint8Array.of(128)),
        w: i8([32, 16, 3, 3], 5), ws: fromF64('float32', [], [0.003]), wzp: makeTensor('int8', [], Int8Array.of(0)), ys: fromF64('float32', [], [0.04]),
      },
      nodes: [
        { op: 'QuantizeLinear', inputs: ['x', 'xs', 'zp'], outputs: ['xq'] },
        { op: 'DequantizeLinear', inputs: ['xq', 'xs', 'zp'], outputs: ['xd'] },
        { op: 'DequantizeLinear', inputs: ['w', 'ws', 'wzp'], outputs: ['wd'] },
        { op: 'Conv', inputs: ['xd', 'wd'], outputs: ['c'], attrs: { pads: { ints: [1, 1, 1, 1] } } },
        { op: 'QuantizeLinear', inputs: ['c', 'ys', 'zp'], outputs: ['cq'] },
        { op: 'DequantizeLinear', inputs: ['cq', 'ys', 'zp'], outputs: ['y'] },
      ],
    });
    const s8 = await both(mk('int8'));
    expect(s8.engine.layers().some((l) => l.op === 'QConv')).toBe(true);
    expect(s8.maxDiff).toBeLessThanOrEqual(0.04 * 1.0001);
    const u8 = await both(mk('uint8'));
    expect(u8.engine.layers().some((l) => l.op === 'QConv')).toBe(false);
    expect(u8.engine.passContext.rejected.find((r) => r.pass === 'quantize-int8')?.reason).toMatch(/uint8 quantization.*float path/);
    expect(u8.maxDiff).toBeLessThanOrEqual(0.04 * 1.0001);
  });
});
