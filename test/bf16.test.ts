// bf16 builds (--bf16, BuildOptions.bf16) on the CPU machine: a small ResNet-like CNN and the BERT-tiny fixture
//  - build in bf16 to bfloat16 tensors and the bf16 kernel twins (tensor-core conv/GEMM, depthwise, attention,
//    LayerNorm, pooling, elementwise), which all compile with NVRTC for sm_90 (the bf16 mma.sync and cvt need sm_80+);
//    the Hopper wgmma bf16 kernels compile with nvcc for sm_90a (skipped with the reason when nvcc is missing);
//  - the CPU reference of the bf16 engine rounds to nearest even like the GPU's cvt.rn.bf16.f32, lands within bf16's
//    error of fp32, and is not the fp16 engine's result;
//  - --fp16 with --bf16 is a usage error; --layer-precisions keeps a layer fp32 in a bf16 build; compare measures
//    a bf16 engine against fp32.
// The GPU runs of these kernels are scripts/gpu-bf16.mjs.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, type BuildOptions } from '../src/runtime/engine.js';
import { compareModel } from '../src/runtime/compare.js';
import { loadEngine } from '../src/runtime/plan.js';
import { loadModel, loadTensorFile } from '../src/onnx/import.js';
import { fromF64, makeTensor, toF64 } from '../src/ir/tensor.js';
import type { Graph, Model, Node, Tensor } from '../src/ir/types.js';
import { packModules, type KernelSource } from '../src/codegen/kernel.js';
import { KernelCache } from '../src/runtime/kernel_cache.js';
import { loadNvrtc } from '../src/runtime/libs.js';
import { emitConvTc, emitGemmTc, wgmmaConfigSpace } from '../src/codegen/wgmma.js';
import { convConfigSpace, emitConvGeneric, type ConvProblem } from '../src/codegen/tc_conv.js';
import { emitGemmGeneric, gemmConfigSpace, type GemmProblem, type TileConfig } from '../src/codegen/tc_gemm.js';
import { emitDepthwiseConv } from '../src/codegen/depthwise.js';
import { emitFlashAttention } from '../src/codegen/attention.js';
import { emitLayerNorm } from '../src/codegen/reduce.js';
import { writeEngineDumps } from '../src/cli/dumps.js';
import { main } from '../src/cli/main.js';
import { TsrtError } from '../src/errors.js';
import { rng } from './helpers.js';

let nvrtc = true;
try { loadNvrtc(); } catch { nvrtc = false; }
if (!nvrtc) console.warn('[bf16] skipping the NVRTC compile checks: NVRTC is not installed');

// ---- models ---------------------------------------------------------------------------------------------

/** A ResNet-like CNN with seeded weights: conv+BN+ReLU stem, max pool, a residual block, a depthwise conv, a strided
 * 1x1 conv, global average pool, Gemm and Softmax; x is [2, 3, 16, 16]. Node names are the ONNX ones rules use. */
function resnetLike(seed = 7): Model {
  const r = rng(seed);
  const inits = new Map<string, Tensor>();
  const param = (name: string, dims: number[], scale: number, offset = 0) => {
    inits.set(name, fromF64('float32', dims, Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => offset + (r() * 2 - 1) * scale)));
    return name;
  };
  const nodes: Node[] = [];
  const node = (name: string, op: string, inputs: string[], attrs: Node['attrs'] = {}): string => {
    nodes.push({ name, op, domain: '', inputs, outputs: [`${name}_out`], attrs });
    return `${name}_out`;
  };
  const ints = (v: number[]) => ({ kind: 'ints' as const, value: v });
  const conv = (name: string, x: string, cin: number, cout: number, k: number, stride = 1, group = 1) => node(name, 'Conv',
    [x, param(`${name}_w`, [cout, cin / group, k, k], 1 / Math.sqrt((cin / group) * k * k)), param(`${name}_b`, [cout], 0.1)],
    { kernel_shape: ints([k, k]), strides: ints([stride, stride]), pads: ints(Array(4).fill(k >> 1)), group: { kind: 'int', value: group } });
  let x = conv('stem', 'x', 3, 16, 3);
  x = node('stem_bn', 'BatchNormalization', [x, param('bn_s', [16], 0.2, 1), param('bn_b', [16], 0.1), param('bn_m', [16], 0.1), param('bn_v', [16], 0.2, 1)]);
  x = node('stem_relu', 'Relu', [x]);
  x = node('pool', 'MaxPool', [x], { kernel_shape: ints([2, 2]), strides: ints([2, 2]) });
  let y = node('conv1_relu', 'Relu', [conv('conv1', x, 16, 16, 3)]);
  y = conv('conv2', y, 16, 16, 3);
  x = node('block_relu', 'Relu', [node('block_add', 'Add', [y, x])]);
  x = node('dw_relu', 'Relu', [conv('dw', x, 16, 16, 3, 1, 16)]);
  x = conv('down', x, 16, 32, 1, 2);
  x = node('gap', 'GlobalAveragePool', [x]);
  x = node('flat', 'Flatten', [x]);
  x = node('fc', 'Gemm', [x, param('fc_w', [10, 32], 0.3), param('fc_b', [10], 0.1)], { transB: { kind: 'int', value: 1 } });
  nodes.push({ name: 'prob', op: 'Softmax', domain: '', inputs: [x], outputs: ['y'], attrs: { axis: { kind: 'int', value: 1 } } });
  const graph: Graph = {
    name: 'resnet_like', nodes, initializers: inits, valueTypes: new Map(), opset: 17,
    inputs: [{ name: 'x', type: { dtype: 'float32', shape: [2, 3, 16, 16] } }],
    outputs: [{ name: 'y', type: { dtype: 'float32', shape: [2, 10] } }],
  };
  return { graph, irVersion: 8, producer: 'bf16.test', opsets: { '': 17 } };
}

const BERT = join(import.meta.dirname, 'fixtures/bert_tiny');
function bertFeeds(m: Model): Map<string, Tensor> {
  const feeds = new Map<string, Tensor>();
  m.graph.inputs.forEach((vi, k) => feeds.set(vi.name, loadTensorFile(join(BERT, `test_data_set_0/input_${k}.pb`))));
  return feeds;
}
const shapesOf = (feeds: Map<string, Tensor>) => Object.fromEntries([...feeds].map(([k, v]) => [k, v.dims]));
const xFeed = () => { const r = rng(3); return new Map([['x', fromF64('float32', [2, 3, 16, 16], Array.from({ length: 1536 }, () => r() * 2 - 1))]]); };
const cpu = (o: BuildOptions = {}): BuildOptions => ({ device: 'cpu', compileKernels: false, ...o });

function cosine(a: Float64Array, b: Float64Array): number {
  let d = 0, x = 0, y = 0;
  for (let i = 0; i < a.length; i++) { d += a[i] * b[i]; x += a[i] * a[i]; y += b[i] * b[i]; }
  return d / Math.sqrt(x * y);
}
const maxAbs = (a: Float64Array, b: Float64Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

async function outputsOf(m: Model, feeds: Map<string, Tensor>, o: BuildOptions): Promise<{ out: Float64Array; kernels: KernelSource[]; engine: Awaited<ReturnType<typeof build>> }> {
  const engine = await build(m, cpu({ shapes: shapesOf(feeds), ...o }));
  const outs = await engine.run(feeds);
  return { out: toF64(outs.get(m.graph.outputs[0].name)!), kernels: [...engine.kernels.values()].map((k) => k.source), engine };
}

// ---- tests ----------------------------------------------------------------------------------------------

describe('bf16 engines on the CPU reference', () => {
  it('the ResNet-like CNN: bfloat16 tensors, the bf16 kernel twins, within bf16 error of fp32 and not the fp16 result', async () => {
    const m = resnetLike();
    const feeds = xFeed();
    const f32 = await outputsOf(m, feeds, {});
    const f16 = await outputsOf(m, feeds, { fp16: true });
    const bf = await outputsOf(m, feeds, { bf16: true });
    const dtypes = new Set([...bf.engine.lowered.types.values()].map((t) => t.dtype));
    expect(dtypes.has('bfloat16')).toBe(true);
    expect(dtypes.has('float16')).toBe(false);
    const names = bf.kernels.map((k) => k.name);
    // every conv runs its bf16 kernel: tensor-core implicit GEMM (channels padded to 8) and the depthwise one
    expect(names.filter((n) => n.startsWith('conv_tc_bf16_')).length).toBeGreaterThanOrEqual(4);
    expect(names.some((n) => n.startsWith('dwconv_bf16_nhwc'))).toBe(true);
    for (const k of bf.kernels.filter((k) => k.name.startsWith('conv_tc_bf16_'))) {
      expect(k.source).toContain('mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32');
      expect(k.source).not.toMatch(/\.f16\b/);
    }
    expect(bf.kernels.some((k) => k.source.includes('__nv_bfloat16'))).toBe(true); // pooling/elementwise in bf16 storage
    // probabilities: bf16 (8 mantissa bits) is ~8x further from fp32 than fp16 (11), and within its own bound
    const e16 = maxAbs(f16.out, f32.out), ebf = maxAbs(bf.out, f32.out);
    expect(ebf).toBeLessThan(0.02);
    expect(cosine(bf.out, f32.out)).toBeGreaterThan(0.999);
    expect(ebf).toBeGreaterThan(2 * e16);
    expect(maxAbs(bf.out, f16.out)).toBeGreaterThan(0);
  }, 30_000);

  it('BERT-tiny: fused bf16 attention, LayerNorm and GEMMs, within bf16 error of fp32', async () => {
    const m = loadModel(join(BERT, 'model.onnx'));
    const feeds = bertFeeds(m);
    const f32 = await outputsOf(m, feeds, {});
    const f16 = await outputsOf(m, feeds, { fp16: true });
    const bf = await outputsOf(m, feeds, { bf16: true });
    const names = bf.kernels.map((k) => k.name);
    expect(names.some((n) => n.startsWith('flash_attn_bf16_'))).toBe(true);
    expect(names.some((n) => n.startsWith('gemm_tc_bf16_'))).toBe(true);
    expect(bf.engine.layers().filter((l) => l.kind === 'host')).toEqual([]);
    const scale = Math.max(...f32.out.map(Math.abs));
    expect(maxAbs(bf.out, f32.out) / scale).toBeLessThan(0.05);
    expect(cosine(bf.out, f32.out)).toBeGreaterThan(0.999);
    expect(maxAbs(bf.out, f32.out)).toBeGreaterThan(2 * maxAbs(f16.out, f32.out));
    // layer info (--dump-dir layers.json) shows the bf16 tensors
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-bf16-'));
    writeEngineDumps(bf.engine, dir, ['build', '--bf16']);
    expect(readFileSync(join(dir, 'layers.json'), 'utf8')).toContain('"dtype": "bfloat16"');
    // an engine file keeps the precision: the loaded plan is the bf16 engine
    bf.engine.save(join(dir, 'bert.plan'));
    const loaded = await loadEngine(join(dir, 'bert.plan'));
    expect(loaded.built.options.bf16).toBe(true);
    expect(toF64((await loaded.run(feeds)).get(m.graph.outputs[0].name)!)).toEqual(bf.out);
  }, 30_000);

  it('rounds to nearest even on the bf16 grid, as cvt.rn.bf16.f32 does', async () => {
    // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 (ties to the even 1); 1 + 3*2^-8 halfway between 1 + 2^-7 and
    // 1 + 2^-6 (ties to the even 1 + 2^-6); 1 + 2^-8 + 2^-20 is just above the first tie (rounds up)
    // 262016 (past fp16's 65504) lies between 2^17 * (1 + 127/128) = 261120 and 2^18 = 262144, 128 from the latter
    const xs = [1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -(1 + 2 ** -8), 262016, 2 ** -126 * (1 + 2 ** -9)];
    const want = [1, 1 + 2 ** -6, 1 + 2 ** -7, -1, 262144, 2 ** -126];
    const graph: Graph = {
      name: 'g', opset: 17, initializers: new Map(), valueTypes: new Map(),
      nodes: [{ name: 'relu', op: 'Relu', domain: '', inputs: ['x'], outputs: ['y'], attrs: {} }, { name: 'neg', op: 'Neg', domain: '', inputs: ['x'], outputs: ['z'], attrs: {} }],
      inputs: [{ name: 'x', type: { dtype: 'float32', shape: [xs.length] } }],
      outputs: [{ name: 'y', type: { dtype: 'float32', shape: [xs.length] } }, { name: 'z', type: { dtype: 'float32', shape: [xs.length] } }],
    };
    const e = await build({ graph, irVersion: 8, producer: 't', opsets: { '': 17 } }, cpu({ bf16: true }));
    const outs = await e.run(new Map([['x', makeTensor('float32', [xs.length], Float32Array.from(xs))]]));
    const z = Array.from(toF64(outs.get('z')!));
    want.forEach((w, i) => expect(-z[i], `x=${xs[i]}`).toBe(w));
    expect(Array.from(toF64(outs.get('y')!))[3]).toBe(0);
  });

  it('--layer-precisions keeps a layer fp32 in a bf16 build; rules for the other 16-bit type are refused', async () => {
    const m = resnetLike();
    const feeds = xFeed();
    const rule = { pattern: 'conv2', precision: 'fp32' as const };
    const e = await build(m, cpu({ bf16: true, shapes: shapesOf(feeds), layerPrecisions: [rule] }));
    const p = e.passContext.precision!;
    expect(p.kept.map((k) => k.node)).toContain('conv2');
    expect(p.low).not.toContain('conv2');
    expect(p.low).toContain('conv1');
    // the conv made from conv2 writes fp32, the one from conv1 bf16
    const convOut = (name: string) => {
      const n = e.graph.nodes.find((x) => /Conv$/.test(x.op) && (x.name === name || x.name.includes(name)));
      return e.lowered.types.get(n!.outputs[0])!.dtype;
    };
    expect(convOut('conv2')).toBe('float32');
    expect(convOut('conv1')).toBe('bfloat16');
    await expect(build(m, cpu({ bf16: true, shapes: shapesOf(feeds), layerPrecisions: [{ pattern: 'conv2', precision: 'fp16' }] })))
      .rejects.toThrow(/asks for fp16, but the build's reduced precision is bf16/);
    await expect(build(m, cpu({ fp16: true, shapes: shapesOf(feeds), layerPrecisions: [{ pattern: 'conv2', precision: 'bf16' }] })))
      .rejects.toThrow(/asks for bf16, but the build's reduced precision is fp16/);
    await expect(build(m, cpu({ shapes: shapesOf(feeds), layerPrecisions: [{ pattern: 'conv2', precision: 'bf16' }] })))
      .rejects.toThrow(/add --bf16/);
  }, 30_000);

  it('--fp16/--int8 with --bf16 are usage errors, in the API and on the command line', async () => {
    const m = resnetLike();
    await expect(build(m, cpu({ bf16: true, fp16: true }))).rejects.toThrow(TsrtError);
    await expect(build(m, cpu({ bf16: true, fp16: true }))).rejects.toThrow(/--fp16 and --bf16/);
    await expect(build(m, cpu({ bf16: true, int8: true }))).rejects.toThrow(/int8 layers fall back to fp16/);
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-bf16-cli-'));
    const file = join(dir, 'model.onnx');
    writeFileSync(file, readFileSync(join(BERT, 'model.onnx')));
    const errs: string[] = [];
    const orig = console.error;
    console.error = (...a: unknown[]) => { errs.push(a.join(' ')); };
    const before = process.exitCode;
    try {
      for (const flags of [['--fp16', '--bf16'], ['--best', '--bf16']]) {
        process.exitCode = 0;
        await main(['node', 'tsrt', 'build', file, ...flags, '--device', 'cpu']);
        expect(process.exitCode, flags.join(' ')).toBe(2);
      }
    } finally {
      console.error = orig;
      process.exitCode = before;
    }
    expect(errs.join('\n')).toMatch(/error\[USAGE\]: --fp16 and --bf16/);
  }, 30_000);

  it('compare measures a bf16 engine against fp32 (not against itself)', async () => {
    const m = resnetLike();
    const res = await compareModel(m, { build: cpu({ bf16: true, shapes: { x: [2, 3, 16, 16] } }), feeds: [xFeed()] });
    const o = res.outputs[0];
    expect(res.notes.join()).not.toMatch(/engine is fp32/);
    expect(o.metrics.cosine).toBeGreaterThan(0.999);
    expect(o.metrics.sqnrDb).toBeLessThan(70); // an fp32 reference; the bf16 engine against itself would be +inf
    expect(o.metrics.sqnrDb).toBeGreaterThan(25);
  }, 30_000);
});

// ---- NVRTC / nvcc compile checks -----------------------------------------------------------------------------

const conv3 = (n: number, h: number, c: number, k: number, stride = 1): ConvProblem => {
  const p = Math.floor((h + 2 - 3) / stride) + 1;
  return { n, h, w: h, c, k, r: 3, s: 3, strideH: stride, strideW: stride, padH: 1, padW: 1, dilH: 1, dilW: 1, p, q: p, dtype: 'bfloat16' };
};
const BIG: GemmProblem = { m: 4096, n: 3072, k: 768, dtype: 'bfloat16' };
const spread = (cs: TileConfig[], n: number) => cs.filter((_, i) => i % Math.max(1, Math.floor(cs.length / n)) === 0).slice(0, n);

/** One bf16 kernel of every family and a spread of tile configs, beyond what the two models lower to. */
function bf16KernelZoo(): KernelSource[] {
  const epi = { bias: true, residual: true, act: 'relu' as const };
  const ks: KernelSource[] = [];
  const p3 = conv3(2, 14, 64, 96);
  for (const c of spread(convConfigSpace(p3), 6)) ks.push(emitConvTc(p3, epi, c));
  ks.push(emitConvTc({ ...conv3(1, 7, 256, 256), strideH: 1 }, {}, { bm: 32, bn: 64, bk: 32, warpsM: 1, warpsN: 2, stages: 3, splitK: 4 }));
  for (const c of spread(gemmConfigSpace(BIG), 4)) ks.push(emitGemmTc(BIG, { bias: true, act: 'gelu_erf' }, c));
  const kn: GemmProblem = { m: 128, n: 128, k: 64, bLayout: 'kn', batch: [2, 4], dtype: 'bfloat16' };
  ks.push(emitGemmTc(kn, { alpha: 0.125 }));
  ks.push(emitGemmGeneric({ m: 33, n: 17, k: 9 }, { bias: true }, 'bfloat16'));
  ks.push(emitConvGeneric({ ...conv3(1, 9, 6, 10), dtype: undefined }, { bias: true, act: 'silu' }, { dtype: 'bfloat16', layout: 'nchw', groups: 2 }));
  for (const vec of [8, 2, 1]) ks.push(emitDepthwiseConv({ ...conv3(2, 12, 32, 32), dtype: undefined }, { bias: true, act: 'relu6' }, { dtype: 'bfloat16', layout: 'nhwc', vec }));
  ks.push(emitDepthwiseConv({ ...conv3(2, 12, 32, 32), dtype: undefined }, {}, { dtype: 'bfloat16', layout: 'nchw' }));
  for (const d of [32, 64, 128]) ks.push(emitFlashAttention({ dtype: 'bfloat16', b: 2, h: 4, sq: 77, sk: 77, d, scale: 0.125, mask: { dims: [2, 1, 1, 77] } }));
  ks.push(emitFlashAttention({ dtype: 'bfloat16', b: 2, h: 2, sq: 9, sk: 9, d: 48, scale: 0.2, mask: 'none', impl: 'simt' }));
  for (const cols of [768, 512, 96]) ks.push(emitLayerNorm({ dtype: 'bfloat16', scaleDtype: 'bfloat16', rows: 64, cols, eps: 1e-5, hasScale: true, hasBias: true }));
  return ks;
}

describe.skipIf(!nvrtc)('bf16 kernels compile with NVRTC (sm_90)', () => {
  it('every kernel of the bf16 ResNet-like and BERT-tiny engines, and a bf16 kernel of every family', async () => {
    const all = new Map<string, KernelSource>();
    const m = loadModel(join(BERT, 'model.onnx'));
    for (const k of (await outputsOf(m, bertFeeds(m), { bf16: true })).kernels) all.set(k.name, k);
    for (const k of (await outputsOf(resnetLike(), xFeed(), { bf16: true })).kernels) all.set(k.name, k);
    const zoo = bf16KernelZoo();
    for (const k of zoo) all.set(k.name, k);
    // the vectorized LayerNorm reads bf16 words, not fp16 ones
    const lnv = zoo.find((k) => k.name.startsWith('layernorm_v'))!;
    expect(lnv.source).toContain('__ushort_as_bfloat16');
    expect(lnv.source).not.toContain('__half');
    const modules = packModules([...all.values()], 64);
    const compiled = await new KernelCache({ dir: null, arch: 'sm_90' }).compileAll(modules.map((x) => ({ source: x.source, name: x.name })));
    expect(compiled.length).toBe(modules.length);
    for (const c of compiled) expect(c.cubin[0]).toBe(0x7f); // ELF
    console.log(`[bf16] ${all.size} bf16 kernels compiled in ${modules.length} modules`);
  }, 120_000);
});

const NVCC = process.env.NVCC ?? 'nvcc';
const nvccReason = (() => {
  try { execFileSync(NVCC, ['--version'], { stdio: 'pipe' }); return undefined; } catch (e) { return `${NVCC}: ${(e as Error).message.split('\n')[0]}`; }
})();
if (nvccReason) console.warn(`[bf16] skipping the sm_90a wgmma compile check (${nvccReason})`);

describe.skipIf(!!nvccReason)('bf16 wgmma kernels compile with nvcc (sm_90a)', () => {
  it('plain and warp-specialized wgmma .bf16 conv/GEMM kernels, without spills', () => {
    const space = wgmmaConfigSpace({ m: BIG.m, n: BIG.n, k: BIG.k, batch: 1 });
    const pick = [...spread(space.filter((c) => !c.ws), 2), ...spread(space.filter((c) => c.ws), 2)];
    const ks: KernelSource[] = pick.map((c) => emitGemmTc(BIG, { bias: true, residual: true }, c));
    const p = conv3(8, 56, 64, 128);
    ks.push(emitConvTc(p, { bias: true, act: 'relu' }, space.find((c) => c.bm === 128 && c.bn === 128 && !c.ws)!));
    for (const k of ks) {
      expect(k.source).toMatch(/wgmma\.mma_async\.sync\.aligned\.m64n\d+k16\.f32\.bf16\.bf16 /);
      expect(k.source).not.toMatch(/\.f16\b/);
    }
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-bf16-wgmma-'));
    const [mod] = packModules(ks, ks.length);
    const cu = join(dir, 'm.cu');
    writeFileSync(cu, mod.source);
    const r = spawnSync(NVCC, ['-cubin', '-arch=sm_90a', '-std=c++17', '-Xptxas', '-v', '-o', join(dir, 'm.cubin'), cu], { encoding: 'utf8', maxBuffer: 64 << 20 });
    const log = `${r.stdout}${r.stderr}`;
    expect(r.status, log.slice(0, 4000)).toBe(0);
    expect(log).not.toMatch(/serialized|warning/i);
    for (const k of ks) {
      const at = log.indexOf(`Compiling entry function '${k.name}'`);
      expect(at, k.name).toBeGreaterThanOrEqual(0);
      expect(log.slice(at, at + 600), k.name).toMatch(/ 0 bytes spill stores, 0 bytes spill loads/);
    }
    expect(readFileSync(join(dir, 'm.cubin'))[0]).toBe(0x7f);
  }, 240_000);
});
