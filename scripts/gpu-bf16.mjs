#!/usr/bin/env node
// GPU check of the bf16 build (--bf16, BuildOptions.bf16). Run on the H100/H200 after a build:
//   node scripts/gpu-bf16.mjs [--part=kernels|families|models] [--filter=SUBSTR] [--models=DIR] [--iters=N] [--budget-s=S] [--dry-run]
// (TSRT_DIST=folder: a private `tsc --outDir` build instead of dist/; --dry-run: no GPU, emits the kernels and the
// CPU references only.)
//  1. kernels: every bf16 tensor-core conv/GEMM family on random bf16 inputs against a float64 reference of the
//     same bf16 values: the mma.sync heuristic kernel, a spread of mma.sync tiles (split-K included), and on
//     sm_90a every wgmma tile (all-threads and warp-specialized); big BERT/ResNet-50 shapes check the wgmma
//     tiles against the mma.sync kernel and print TFLOP/s next to the fp16 twin of the same config.
//  2. families: one small graph per kernel family (conv+residual, depthwise, Gemm, batched MatMul, LayerNorm
//     vector and scalar, Softmax, reductions, pooling, concat/transpose/slice, an elementwise chain, BERT-tiny's
//     fused attention) built with bf16 on the GPU and compared with the CPU reference of the same bf16 graph.
//  3. models: ResNet-50 and BERT-base from `python3 .gpu/models.py export` (--models=DIR, default /tmp/models;
//     exported first when missing) built fp32, fp16 and bf16 on the GPU: cosine / SQNR / top-1 of fp16 and bf16
//     against the fp32 engine, and GPU time of each engine.
// Prints PASS/FAIL lines; exit code 1 when anything failed.
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import {
  caseShape, convProblem, decodeTable, errText, halfToF64, imp, lcg, NoGpuError, openDevice, parseArgs, relDiff, reporter,
  sampleStride, tcBuffers, tcReference, tflops,
} from './gpu-kernel-harness.mjs';

const { convShape } = await imp('codegen/tc_conv.js');
const { configName, tileConfigSpace } = await imp('codegen/tc_gemm.js');
const { emitConvTc, emitGemmTc, wgmmaConvSpace, wgmmaGemmSpace } = await imp('codegen/wgmma.js');
const { fromF64, toF64 } = await imp('ir/tensor.js');
const { build } = await imp('runtime/engine.js');
const { runGraph } = await imp('runtime/cpu_executor.js');
const { loadModel, loadTensorFile } = await imp('onnx/import.js');
const { compareModel } = await imp('runtime/compare.js');

const { args, wants, overBudget } = parseArgs(process.argv.slice(2), { budgetS: 400 });
const ITERS = Number(args.iters ?? 10);
const DRY = !!args['dry-run'];
const PARTS = args.part ? String(args.part).split(',') : ['kernels', 'families', 'models'];
const r = reporter();
const report = (ok, line) => r.report(ok, line);

let gpu, arch = 'sm_90';
if (!DRY) {
  try { gpu = await openDevice({ iters: ITERS }); } catch (e) {
    if (!(e instanceof NoGpuError)) throw e;
    console.error(`${e.message} (--dry-run emits the kernels without one)`); process.exit(1);
  }
  arch = gpu.arch;
  console.log(`device ${gpu.describe()}`);
}
const wgmma = DRY || arch === 'sm_90a';
const contextAlive = () => gpu.alive();

// ---- part 1: tensor-core kernels ---------------------------------------------------------------------------

const u = lcg(4242), rnd = () => u() * 2 - 1;
const BF16 = await decodeTable('bfloat16');
const asF64 = (buf) => halfToF64(buf, BF16, sampleStride(buf.byteLength));
const conv = (n, h, c, k, r, stride) => convProblem(n, h, c, k, r, stride, { dtype: 'bfloat16' });
const fp16Of = (p) => { const { dtype: _d, ...rest } = p; return rest; };
const KCASES = [
  // small odd shapes: every candidate against float64
  { id: 'odd_conv_3x3_n3_h17_c24_k40', op: 'conv', p: conv(3, 17, 24, 40, 3, 1), epi: { bias: true, residual: true, residualAfterAct: true, act: 'silu' }, cpu: true },
  { id: 'odd_conv_1x1s2_n2_h15_c96_k80', op: 'conv', p: conv(2, 15, 96, 80, 1, 2), epi: { bias: true, act: 'relu' }, cpu: true },
  { id: 'odd_gemm_333x45x200_b2', op: 'gemm', p: { m: 333, n: 45, k: 200, batch: [2], dtype: 'bfloat16' }, epi: { bias: true, residual: true, act: 'gelu_tanh' }, cpu: true },
  { id: 'odd_gemm_kn_130x72x96_b2x3', op: 'gemm', p: { m: 130, n: 72, k: 96, bLayout: 'kn', batch: [2, 3], dtype: 'bfloat16' }, epi: { alpha: 0.125 }, cpu: true },
  { id: 'odd_gemm_1000x264x328', op: 'gemm', p: { m: 1000, n: 264, k: 328, dtype: 'bfloat16' }, epi: { alpha: 0.5, bias: true }, cpu: true },
  // model shapes: wgmma against mma.sync, with throughput next to fp16
  { id: 'bert_ffn1_4096x3072x768', op: 'gemm', p: { m: 4096, n: 3072, k: 768, dtype: 'bfloat16' }, epi: { bias: true, act: 'gelu_erf' } },
  { id: 'bert_attn_out_4096x768x768', op: 'gemm', p: { m: 4096, n: 768, k: 768, dtype: 'bfloat16' }, epi: { bias: true, residual: true } },
  { id: 'rn50_bs256_3x3_c128_28', op: 'conv', p: conv(256, 28, 128, 128, 3, 1), epi: { bias: true, act: 'relu' } },
  { id: 'rn50_bs256_1x1_64_256_56', op: 'conv', p: conv(256, 56, 64, 256, 1, 1), epi: { bias: true, residual: true, act: 'relu' } },
  { id: 'rn50_bs1_3x3_c256_14', op: 'conv', p: conv(1, 14, 256, 256, 3, 1), epi: { bias: true, act: 'relu' } },
];
// fp32 accumulation in another order plus one bf16 rounding of the output (half an ulp: 2^-9 of the value)
const KTOL = 8e-3;

const spread = (cs, n) => cs.filter((_, i) => i % Math.max(1, Math.floor(cs.length / n)) === 0).slice(0, n);

async function kernelPart() {
  // the small cases check every wgmma tile too (the engine offers wgmma only from one wave of 128x128 tiles up)
  const minTiles = process.env.TSRT_WGMMA_MIN_TILES;
  process.env.TSRT_WGMMA_MIN_TILES = '0';
  try { await kernelCases(); } finally {
    if (minTiles === undefined) delete process.env.TSRT_WGMMA_MIN_TILES; else process.env.TSRT_WGMMA_MIN_TILES = minTiles;
  }
}

async function kernelCases() {
  for (const c of KCASES) {
    if (!wants(c.id)) continue;
    if (overBudget()) { console.log(`SKIP ${c.id}: time budget spent`); continue; }
    const emit = (p, cfg) => (c.op === 'conv' ? emitConvTc(p, c.epi, cfg) : emitGemmTc(p, c.epi, cfg));
    const shape = caseShape(c, convShape);
    const mma = tileConfigSpace(shape, c.p.bLayout === 'kn');
    const wg = wgmma ? (c.op === 'conv' ? wgmmaConvSpace(c.p) : wgmmaGemmSpace(c.p)) : [];
    // odd cases: a spread of mma.sync tiles (split-K among them) and every wgmma tile; big cases: a few of each
    const cfgs = c.cpu ? [...spread(mma, 12), ...mma.filter((x) => (x.splitK ?? 1) > 1).slice(0, 2), ...wg] : [...spread(mma, 3), ...spread(wg.filter((x) => !x.ws), 3), ...spread(wg.filter((x) => x.ws), 3)];
    const ref = emit(c.p);
    const kernels = [ref, ...cfgs.map((x) => emit(c.p, x))];
    // the fp16 twins of the timed configs, for the throughput comparison (big cases only)
    const twins = c.cpu ? [] : kernels.map((k) => emit(fp16Of(c.p), k.config));
    const bad = kernels.filter((k) => !/\.bf16\b/.test(k.source) || /\.f16\.f16\b|cvt\.rn\.f16\./.test(k.source));
    if (bad.length) { report(false, `${c.id}: ${bad.map((k) => k.name).join(', ')} not bf16 kernels`); continue; }
    if (DRY) {
      const cpu = c.cpu ? tcReference(c, await tcBuffers(c, rnd), BF16) : undefined;
      console.log(`DRY ${c.id}: ${kernels.length} bf16 kernels (${cfgs.filter((x) => x.wgmma).length} wgmma)${cpu ? `, float64 reference of ${cpu.length} outputs` : ''}`);
      continue;
    }
    let dev = {};
    try {
      const images = await gpu.compile([...kernels, ...twins]);
      const h = await tcBuffers(c, rnd);
      dev = gpu.upload(h);
      const outName = c.op === 'conv' ? 'y' : 'c', outBytes = h[outName].byteLength;
      // NaN pattern: unwritten outputs fail; no untimed warm-up launches (as before the harness)
      const runKernel = (k, img) => gpu.run(k, img, dev, { out: outName, bytes: outBytes, warmup: 0 });
      let base = c.cpu ? tcReference(c, h, BF16) : undefined;
      for (const [i, k] of kernels.entries()) {
        const img = images.get(k.name);
        try {
          if (img instanceof Error) throw img;
          const x = runKernel(k, img);
          base ??= asF64(x.out); // big cases: the mma.sync heuristic kernel is the reference
          const d = relDiff(asF64(x.out), base);
          let vs = '';
          if (twins[i]) {
            const ti = images.get(twins[i].name);
            if (!(ti instanceof Error)) vs = `, fp16 ${tflops(twins[i].flops, runKernel(twins[i], ti).ms)} TFLOP/s`;
          }
          report(d <= KTOL, `${c.id} ${configName(k.config)}${i === 0 ? ' (heuristic)' : ''} rel diff ${d.toExponential(2)} vs ${c.cpu ? 'float64' : 'mma.sync heuristic'}  ${x.ms.toFixed(4)} ms ${tflops(k.flops, x.ms)} TFLOP/s${vs}`);
        } catch (e) {
          report(false, `${c.id} ${configName(k.config)}: ${errText(e)}`);
          if (!contextAlive()) { console.log(`CUDA context lost after ${k.name}; stopping`); process.exit(1); }
        }
      }
    } finally {
      gpu.free(dev);
    }
  }
}

// ---- part 2: every kernel family in an engine --------------------------------------------------------------

const ints = (v) => ({ kind: 'ints', value: v });
const int = (v) => ({ kind: 'int', value: v });
function rand(dims, scale = 1) { return fromF64('float32', dims, Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => rnd() * scale)); }
/** One-op-family graph: inputs [name, dims], constants, nodes [op, inputs, outputs, attrs], outputs [name, dims]. */
function model(id, inputs, consts, nodes, outputs) {
  const graph = {
    name: id, opset: 17, valueTypes: new Map(), initializers: new Map(Object.entries(consts)),
    inputs: inputs.map(([name, dims]) => ({ name, type: { dtype: 'float32', shape: dims } })),
    outputs: outputs.map(([name, dims]) => ({ name, type: { dtype: 'float32', shape: dims } })),
    nodes: nodes.map(([op, ins, outs, attrs = {}], i) => ({ name: `${op.toLowerCase()}_${i}`, op, domain: '', inputs: ins, outputs: outs, attrs })),
  };
  return { graph, irVersion: 8, producer: 'gpu-bf16', opsets: { '': 17 } };
}
const FAMILIES = [
  ['conv3x3_bias_residual_relu', () => model('c', [['x', [4, 32, 20, 20]]], { w: rand([48, 32, 3, 3], 0.1), b: rand([48], 0.1), w2: rand([48, 48, 3, 3], 0.05) },
    [['Conv', ['x', 'w', 'b'], ['c1'], { pads: ints([1, 1, 1, 1]) }], ['Relu', ['c1'], ['r1']], ['Conv', ['r1', 'w2'], ['c2'], { pads: ints([1, 1, 1, 1]) }],
      ['Add', ['c2', 'r1'], ['s']], ['Relu', ['s'], ['y']]], [['y', [4, 48, 20, 20]]])],
  ['conv_stem_c3_7x7s2', () => model('stem', [['x', [2, 3, 64, 64]]], { w: rand([16, 3, 7, 7], 0.1) }, [['Conv', ['x', 'w'], ['y'], { pads: ints([3, 3, 3, 3]), strides: ints([2, 2]) }]], [['y', [2, 16, 32, 32]]])],
  ['depthwise_3x3s2', () => model('dw', [['x', [2, 64, 17, 17]]], { w: rand([64, 1, 3, 3], 0.3), b: rand([64], 0.1), lo: fromF64('float32', [], [0]), hi: fromF64('float32', [], [6]) },
    [['Conv', ['x', 'w', 'b'], ['c'], { group: int(64), pads: ints([1, 1, 1, 1]), strides: ints([2, 2]) }], ['Clip', ['c', 'lo', 'hi'], ['y']]], [['y', [2, 64, 9, 9]]])],
  ['gemm_bias_gelu', () => model('g', [['x', [64, 96]]], { w: rand([80, 96], 0.1), b: rand([80], 0.1) },
    [['Gemm', ['x', 'w', 'b'], ['g'], { transB: int(1) }], ['Sigmoid', ['g'], ['y']]], [['y', [64, 80]]])],
  ['matmul_batched_kn', () => model('mm', [['a', [2, 4, 33, 40]], ['b', [2, 4, 40, 24]]], {}, [['MatMul', ['a', 'b'], ['y']]], [['y', [2, 4, 33, 24]]])],
  ['matmul_odd_k_generic', () => model('mmo', [['a', [3, 37, 21]]], { w: rand([21, 19], 0.2) }, [['MatMul', ['a', 'w'], ['y']]], [['y', [3, 37, 19]]])],
  ['layernorm_768_vector', () => model('ln', [['x', [2, 32, 768]]], { g: rand([768], 1), b: rand([768], 0.1) }, [['LayerNormalization', ['x', 'g', 'b'], ['y'], { axis: int(-1) }]], [['y', [2, 32, 768]]])],
  ['layernorm_100_scalar', () => model('lns', [['x', [3, 7, 100]]], { g: rand([100], 1), b: rand([100], 0.1) }, [['LayerNormalization', ['x', 'g', 'b'], ['y'], { axis: int(-1) }]], [['y', [3, 7, 100]]])],
  ['softmax_reduce', () => model('sm', [['x', [8, 12, 77]]], { ax: fromF64('int64', [1], [2]) }, [['Softmax', ['x'], ['s'], { axis: int(-1) }],
    ['ReduceMean', ['x'], ['m'], { axes: ints([1]), keepdims: int(0) }], ['ReduceSum', ['s', 'ax'], ['t'], { keepdims: int(0) }], ['ReduceMax', ['x'], ['u'], { axes: ints([2]), keepdims: int(0) }]],
  [['s', [8, 12, 77]], ['m', [8, 77]], ['t', [8, 12]], ['u', [8, 12]]])],
  ['pooling', () => model('pool', [['x', [2, 24, 15, 15]]], {}, [['MaxPool', ['x'], ['a'], { kernel_shape: ints([3, 3]), strides: ints([2, 2]) }],
    ['AveragePool', ['x'], ['b'], { kernel_shape: ints([3, 3]), strides: ints([2, 2]), pads: ints([1, 1, 1, 1]) }], ['GlobalAveragePool', ['x'], ['c']]],
  [['a', [2, 24, 7, 7]], ['b', [2, 24, 8, 8]], ['c', [2, 24, 1, 1]]])],
  ['movement', () => model('mv', [['x', [2, 6, 10, 12]], ['z', [2, 6, 10, 4]]], { st: fromF64('int64', [1], [2]), en: fromF64('int64', [1], [9]), ax: fromF64('int64', [1], [3]) },
    [['Concat', ['x', 'z'], ['c'], { axis: int(3) }], ['Transpose', ['c'], ['t'], { perm: ints([0, 3, 1, 2]) }], ['Slice', ['c', 'st', 'en', 'ax'], ['s']]],
  [['t', [2, 16, 6, 10]], ['s', [2, 6, 10, 7]]])],
  ['elementwise_chain', () => model('ew', [['x', [3, 5, 128]], ['y', [5, 128]]], {}, [['Mul', ['x', 'y'], ['m']], ['Tanh', ['m'], ['t']], ['Erf', ['x'], ['e']], ['Add', ['t', 'e'], ['a']],
    ['Div', ['a', 'y'], ['d']], ['Abs', ['d'], ['ad']], ['Sqrt', ['ad'], ['q']], ['Max', ['a', 'q'], ['out']]], [['out', [3, 5, 128]]])],
];

function compareOut(got, ref) {
  const a = toF64(got), b = toF64(ref);
  let md = 0, mr = 0, nan = 0;
  for (let i = 0; i < b.length; i++) {
    if (Number.isNaN(b[i])) continue;
    if (!Number.isFinite(a[i]) && a[i] !== b[i]) { nan++; continue; }
    if (Number.isFinite(b[i])) { md = Math.max(md, Math.abs(a[i] - b[i])); mr = Math.max(mr, Math.abs(b[i])); }
  }
  return { rel: md / (mr || 1), nan };
}

/** bf16 engine on the GPU against the CPU reference of its own optimized (bf16) graph: same graph, same roundings
 * to bf16 at stored tensors, so what differs is summation order and the device's math functions. */
async function familyCheck(id, m, feeds, tol = 2e-2) {
  const shapes = Object.fromEntries([...feeds].map(([k, v]) => [k, v.dims]));
  const e = await build(m, { bf16: true, device: DRY ? 'cpu' : 'cuda', shapes });
  try {
    const host = e.layers().filter((l) => l.kind === 'host');
    const kernels = e.layers().filter((l) => l.kind === 'kernel').map((l) => l.kernel);
    if (host.length) report(false, `${id}: host steps ${host.map((l) => `${l.op} (${l.reason})`).join(', ')}`);
    // bf16 tensors, or (a whole chain fused into one kernel) bf16 roundings inside a kernel
    const lowTypes = [...e.lowered.types.values()].filter((t) => t.dtype === 'bfloat16').length;
    if (!lowTypes && ![...e.kernels.values()].some((k) => k.source.source.includes('bfloat16'))) report(false, `${id}: nothing in the engine is bf16`);
    if (DRY) { console.log(`DRY ${id}: ${kernels.length} kernels: ${kernels.join(' ')}`); return; }
    const outs = await e.run(feeds);
    const ref = runGraph(e.graph, feeds);
    for (const o of m.graph.outputs) {
      const r = compareOut(outs.get(o.name), ref.get(o.name));
      report(r.rel <= tol && !r.nan, `${id} ${o.name}: GPU vs CPU reference of the bf16 graph rel diff ${r.rel.toExponential(2)}${r.nan ? `, ${r.nan} non-finite` : ''} (${kernels.length} kernels: ${kernels.slice(0, 6).join(' ')}${kernels.length > 6 ? ' ...' : ''})`);
    }
  } finally { e.dispose(); }
}

async function familyPart() {
  for (const [id, make] of FAMILIES) {
    if (!wants(id)) continue;
    if (overBudget()) { console.log(`SKIP ${id}: time budget spent`); continue; }
    const m = make();
    const feeds = new Map(m.graph.inputs.map((vi) => [vi.name, rand(vi.type.shape, id.startsWith('elementwise') ? 2 : 1)]));
    if (id.startsWith('elementwise')) feeds.set('y', fromF64('float32', [5, 128], Array.from({ length: 640 }, () => 0.5 + Math.abs(rnd()))));
    try { await familyCheck(id, m, feeds); } catch (e) {
      report(false, `${id}: ${errText(e)}`);
      if (!DRY && !contextAlive()) { console.log('CUDA context lost; stopping'); process.exit(1); }
    }
  }
  const bert = new URL('../test/fixtures/bert_tiny/', import.meta.url).pathname;
  if (wants('bert_tiny_attention') && !overBudget()) {
    const m = loadModel(join(bert, 'model.onnx'));
    const feeds = new Map(m.graph.inputs.map((vi, k) => [vi.name, loadTensorFile(join(bert, `test_data_set_0/input_${k}.pb`))]));
    try { await familyCheck('bert_tiny_attention', m, feeds); } catch (e) { report(false, `bert_tiny_attention: ${errText(e, 1)}`); }
  }
}

// ---- part 3: ResNet-50 and BERT-base against the fp32 engine -----------------------------------------------

async function modelPart() {
  const dir = String(args.models ?? '/tmp/models');
  const MODELS = [['resnet50', 'resnet50_b1'], ['bert-base', 'bert-base_b1']];
  for (const [name, sub] of MODELS) {
    if (!wants(name) || overBudget()) continue;
    const path = join(dir, sub, 'model.onnx');
    if (!existsSync(path)) {
      if (DRY) { console.log(`DRY ${name}: ${path} missing (export on the GPU machine)`); continue; }
      try {
        execFileSync('python3', ['.gpu/models.py', 'export', '--model', name, '--batch', '1', '--dir', dir], { stdio: 'inherit' });
      } catch (e) { report(false, `${name}: export failed (${String(e.message ?? e).split('\n')[0]})`); continue; }
    }
    if (!existsSync(path)) { report(false, `${name}: no ${path} after the export`); continue; }
    const m = loadModel(path);
    const data = join(dir, sub, 'test_data_set_0');
    const feeds = new Map(m.graph.inputs.map((vi, k) => [vi.name, loadTensorFile(join(data, `input_${k}.pb`))]));
    for (const mode of ['fp16', 'bf16']) {
      try {
        const res = await compareModel(m, { build: { [mode]: true, device: DRY ? 'cpu' : 'cuda' }, feeds: [feeds] });
        for (const o of res.outputs) {
          const x = o.metrics;
          // bf16 keeps 8 mantissa bits: the bar is the issue's int8 one (0.99); fp16 keeps its 0.999
          const bar = mode === 'bf16' ? 0.99 : 0.999;
          report(x.cosine >= bar && !x.nonFinite, `${name} ${mode} vs ${res.reference} ${o.name}: cosine ${x.cosine.toFixed(6)} SQNR ${x.sqnrDb.toFixed(1)} dB top-1 ${x.top1.toFixed(3)} max abs ${x.maxAbs.toExponential(2)} (bar ${bar})`);
        }
      } catch (e) {
        report(false, `${name} ${mode}: ${errText(e)}`);
        if (!DRY && !contextAlive()) { console.log('CUDA context lost; stopping'); process.exit(1); }
      }
    }
    if (!DRY) {
      // GPU time of one replay per engine (CUDA graphs), the three precisions side by side
      const shapes = Object.fromEntries([...feeds].map(([k, v]) => [k, v.dims]));
      const times = [];
      for (const mode of ['fp32', 'fp16', 'bf16']) {
        const e = await build(m, { fp16: mode === 'fp16', bf16: mode === 'bf16', device: 'cuda', shapes });
        try {
          await e.run(feeds);
          const n = 50, t = performance.now();
          for (let i = 0; i < n; i++) await e.run(feeds);
          times.push(`${mode} ${((performance.now() - t) / n).toFixed(3)} ms`);
        } finally { e.dispose(); }
      }
      console.log(`TIME ${name} bs1 host-timed run(): ${times.join(', ')} (tsrt bench --bf16 gives the CUDA-event numbers)`);
    }
  }
}

if (PARTS.includes('kernels')) await kernelPart();
if (PARTS.includes('families')) await familyPart();
if (PARTS.includes('models')) await modelPart();
process.exit(r.summary({ time: true, blank: true }));
