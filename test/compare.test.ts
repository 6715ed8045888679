// tsrt compare, precision rules and the accuracy budget (issue 6 items 1, 6, 7), on the CPU backend: metric
// formulas on hand-made tensors, fp16 vs the CPU reference on the bundled model (per output and per layer),
// per-layer fp32 rules in the optimized IR, and a budget that must move exactly the layer that overflows fp16.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { fromF64 } from '../src/ir/tensor.js';
import { inferShapes } from '../src/ir/infer.js';
import { parseGraph } from '../src/ir/text.js';
import type { Model, Tensor } from '../src/ir/types.js';
import { loadModel, upgradeGraph } from '../src/onnx/import.js';
import { randomTensor } from '../src/cli/io.js';
import { DEFAULT_MODEL, makeProgram } from '../src/cli/main.js';
import { build } from '../src/runtime/engine.js';
import { compareModel, sqnrCap, sqnrDrop } from '../src/runtime/compare.js';
import { buildWithBudget } from '../src/runtime/budget.js';
import { calibrate } from '../src/quant/calibrate.js';
import { failedBounds, metrics, parseBounds } from '../src/runtime/metrics.js';
import { PrecisionRules, fusedFrom, parsePrecisionSpec } from '../src/passes/precision_rules.js';

const t = (dims: number[], v: number[]): Tensor => fromF64('float32', dims, v);
const cpu = { device: 'cpu' as const, compileKernels: false };

describe('metrics', () => {
  it('SQNR of a known noise, cosine, abs errors', () => {
    // ref = [3, 4] (energy 25), noise = [0.3, -0.4] (energy 0.25): SQNR = 10 log10(100) = 20 dB
    const m = metrics(t([2], [3.3, 3.6]), t([2], [3, 4]));
    expect(m.sqnrDb).toBeCloseTo(20, 5); // float32 storage of 3.3 and 3.6
    expect(m.maxAbs).toBeCloseTo(0.4, 6);
    expect(m.meanAbs).toBeCloseTo(0.35, 6);
    expect(m.cosine).toBeCloseTo((3.3 * 3 + 3.6 * 4) / (Math.hypot(3.3, 3.6) * 5), 6);
    // orthogonal and opposite vectors; equal tensors are exact
    expect(metrics(t([2], [0, 1]), t([2], [1, 0])).cosine).toBe(0);
    expect(metrics(t([2], [-1, -2]), t([2], [1, 2])).cosine).toBeCloseTo(-1, 12);
    const same = metrics(t([3], [1, 2, 3]), t([3], [1, 2, 3]));
    expect(same.sqnrDb).toBe(Infinity);
    expect(same.cosine).toBeCloseTo(1, 12);
  });

  it('top-1 agreement over rows of the last axis; overflow counts as non-finite', () => {
    // rows: [argmax 2 vs 2] agree, [0 vs 1] disagree, [1 vs 1] agree
    const m = metrics(t([3, 3], [0, 1, 5, 9, 1, 2, 0, 7, 1]), t([3, 3], [0, 2, 3, 1, 8, 0, 1, 6, 2]));
    expect(m.top1).toBeCloseTo(2 / 3, 12);
    const inf = metrics(t([2], [Infinity, 1]), t([2], [70000, 1]));
    expect(inf.nonFinite).toBe(1);
    expect(inf.sqnrDb).toBe(-Infinity);
    expect(failedBounds(inf, parseBounds('cosine>=0.9,maxabs<=1')).map((b) => b.metric)).toEqual(['cosine', 'maxabs']);
  });

  it('bounds and precision specs parse, bad ones are usage errors', () => {
    expect(parseBounds('cosine>=0.999, top1>=0.99,sqnr>30')).toMatchObject([
      { metric: 'cosine', op: '>=', value: 0.999 }, { metric: 'top1', op: '>=', value: 0.99 }, { metric: 'sqnr', op: '>', value: 30 }]);
    expect(() => parseBounds('cosine=0.9')).toThrow(/bad --accuracy-budget bound 'cosine=0.9'/);
    expect(() => parseBounds('psnr>=3')).toThrow(/metric one of cosine/);
    expect(parsePrecisionSpec('/a{1,2}b/:fp32,conv*:fp16, last:fp32')).toEqual([
      { pattern: '/a{1,2}b/', precision: 'fp32', by: 'layer' }, { pattern: 'conv*', precision: 'fp16', by: 'layer' }, { pattern: 'last', precision: 'fp32', by: 'layer' }]);
    expect(() => parsePrecisionSpec('conv1:fp8')).toThrow(/bad --layer-precisions entry 'conv1:fp8'/);
    // later rules win; layer rules beat op rules; * is a wildcard
    const rules = new PrecisionRules([...parsePrecisionSpec('Softmax:fp32', 'op'), ...parsePrecisionSpec('*:fp32,attn*:fp16')]);
    expect(rules.match({ name: 'attn3', op: 'Softmax', domain: '' })?.precision).toBe('fp16');
    expect(rules.match({ name: 'mlp', op: 'Softmax', domain: '' })?.precision).toBe('fp32');
    expect(sqnrDrop(Infinity, 60, sqnrCap('float16'))).toBeCloseTo(68.0 - 60, 1); // below what storing fp16 costs anyway
    expect(sqnrDrop(Infinity, 70, sqnrCap('float16'))).toBe(0); // the input Cast to fp16 loses nothing beyond that
    expect(sqnrDrop(50, -Infinity)).toBe(Infinity); // overflow after finite inputs
    expect(sqnrDrop(-Infinity, -Infinity)).toBe(0); // lost upstream
  });
});

describe('compare on the bundled model (fp16 vs the CPU reference)', () => {
  const model = loadModel(DEFAULT_MODEL);
  const shapes = { x: [1, 3, 48, 192] };
  const feeds = [new Map([['x', randomTensor('float32', shapes.x, 7)]])];

  it('per output and per layer, in topological order, transposing NHWC tensors', async () => {
    const res = await compareModel(model, { build: { ...cpu, shapes, fp16: true }, feeds, perLayer: true });
    expect(res.backend).toBe('cpu');
    expect(res.outputs).toHaveLength(1);
    const out = res.outputs[0].metrics;
    expect(out.cosine).toBeGreaterThan(0.999);
    expect(out.sqnrDb).toBeGreaterThan(30);
    expect(out.sqnrDb).toBeLessThan(120); // fp16 is not exact
    expect(out.top1).toBe(1);
    const layers = res.layers!;
    expect(layers.length).toBeGreaterThan(30);
    // in the order of the optimized graph, each layer after the ones it reads
    const engine = await build(model, { ...cpu, shapes, fp16: true });
    const order = engine.graph.nodes.map((n) => n.name);
    const idx = layers.map((l) => order.indexOf(l.layer));
    expect(idx.every((v) => v >= 0)).toBe(true);
    expect(idx).toEqual([...idx].sort((a, b) => a - b));
    // the NHWC conv outputs are compared in NCHW with the reference's tensor of the same name
    const conv = layers.find((l) => l.tensor.includes('_nhwc'))!;
    expect(conv.perm).toEqual([0, 3, 1, 2]);
    expect(conv.ref).toBe(conv.tensor.replace(/_nhwc_\d+$/, ''));
    expect(conv.metrics.cosine).toBeGreaterThan(0.999);
    // fused layers name the ONNX nodes they came from
    expect(layers.find((l) => l.layer === 'p2o.Conv.0_bn_fused')?.nodes).toEqual(expect.arrayContaining(['p2o.Conv.0']));
    expect(res.worst).toBeDefined();
    expect(res.worst!.dropDb).toBe(Math.max(...layers.map((l) => l.dropDb)));
    // fp32 build on the CPU: differences are summation order only
    const fp32 = await compareModel(model, { build: { ...cpu, shapes }, feeds });
    expect(fp32.outputs[0].metrics.sqnrDb).toBeGreaterThan(out.sqnrDb + 20);
  }, 60_000);

  it('a layer rule keeps the matched conv fp32 in the optimized IR, and bad rules are refused', async () => {
    const e = await build(model, { ...cpu, shapes, fp16: true, layerPrecisions: parsePrecisionSpec('p2o.Conv.1:fp32') });
    const conv = e.graph.nodes.find((n) => fusedFrom(e.passContext.fusions, n.name).includes('p2o.Conv.1'))!;
    expect(conv).toBeDefined();
    expect(conv.outputs.map((o) => e.graph.valueTypes.get(o)?.dtype)).toEqual(['float32']);
    expect(e.graph.initializers.get(conv.inputs[1])?.dtype).toBe('float32');
    const other = e.graph.nodes.find((n) => fusedFrom(e.passContext.fusions, n.name).includes('p2o.Conv.2'))!;
    expect(e.graph.valueTypes.get(other.outputs[0])?.dtype).toBe('float16');
    // the rule names the ONNX conv; the report may name it after BatchNorm folding (p2o.Conv.1_bn)
    expect(e.passContext.precision?.kept.find((k) => k.reason === 'rule p2o.Conv.1:fp32')?.op).toBe('Conv');
    expect(e.passContext.precision?.low.filter((n) => n.startsWith('p2o.Conv.1_') || n === 'p2o.Conv.1')).toEqual([]);
    // op rules: every Softmax stays fp32
    const sm = await build(model, { ...cpu, shapes, fp16: true, layerPrecisions: parsePrecisionSpec('Softmax:fp32', 'op') });
    const smNode = sm.graph.nodes.find((n) => n.op === 'Softmax')!;
    expect(sm.graph.valueTypes.get(smNode.outputs[0])?.dtype).toBe('float32');
    // the kernels of an fp32 conv inside an fp16 engine compile (NVRTC, sm_90)
    const compiled = await build(model, { device: 'cpu', shapes, fp16: true, layerPrecisions: parsePrecisionSpec('p2o.Conv.1:fp32') });
    expect(compiled.report.uniqueKernels).toBeGreaterThan(0);
    await expect(build(model, { ...cpu, shapes, fp16: true, layerPrecisions: parsePrecisionSpec('p2o.Conv.1_bn_fused:fp32') }))
      .rejects.toThrow(/match no node of the graph/);
    await expect(build(model, { ...cpu, shapes, layerPrecisions: parsePrecisionSpec('p2o.Conv.1:fp16') }))
      .rejects.toThrow(/asks for fp16, but the build is fp32/);
  }, 60_000);
});

/** x -> Mul (fits fp16) -> MatMul summing 4096 products of ~40 x ~0.5 (~80000 > 65504: inf when stored in fp16,
 * though the tensor cores accumulate in fp32) -> y. */
function overflowModel(): Model {
  const w = Array.from({ length: 4096 * 4 }, (_, i) => 0.3 + 0.4 * ((i * 7) % 11) / 10);
  const text = `graph g(%x: float32[2,4096]) -> (%y: float32[2,4]) opset 13 {
    const %s: float32[1] = [2]
    const %w: float32[4096,4] = [${w.join(', ')}]
    %h = Mul(%x, %s) name="scale"
    %y = MatMul(%h, %w) name="mm"
  }`;
  return { graph: inferShapes(upgradeGraph(parseGraph(text))).graph, irVersion: 8, producer: 'tsrt-test', opsets: { '': 13 } };
}

describe('int8 (engineer B\'s pass) under precision rules', () => {
  it('a layer held at fp16 is not quantized, and compare measures the int8 engine', async () => {
    const model = loadModel(DEFAULT_MODEL);
    const shapes = { x: [1, 3, 48, 192] };
    const feeds = [new Map([['x', randomTensor('float32', shapes.x, 11)]])];
    const { scales } = await calibrate(model, feeds.map((f) => Object.fromEntries(f)), { method: 'minmax', device: 'cpu' });
    const opts = { ...cpu, shapes, int8: true, int8Scales: scales };
    const plain = await build(model, opts);
    const conv5 = (n: string) => /^p2o\.Conv\.5(_|$)/.test(n);
    const q = (e: typeof plain) => e.graph.nodes.filter((n) => n.op === 'QConv').flatMap((n) => fusedFrom(e.passContext.fusions, n.name, true));
    expect(q(plain).some(conv5)).toBe(true);
    const held = await build(model, { ...opts, layerPrecisions: parsePrecisionSpec('p2o.Conv.5:fp16') });
    expect(q(held).some(conv5)).toBe(false);
    expect(held.passContext.rejected.some((r) => r.reason === 'precision rule keeps it fp16' && conv5(r.nodes[0]))).toBe(true);
    const res = await compareModel(model, { build: opts, feeds });
    expect(res.outputs[0].metrics.cosine).toBeGreaterThan(0.99);
    await expect(build(model, { ...cpu, shapes, fp16: true, layerPrecisions: parsePrecisionSpec('p2o.Conv.5:int8') })).rejects.toThrow(/asks for int8, but the build has no int8/);
  }, 60_000);
});

describe('tsrt compare (CLI)', () => {
  it('prints the tables, writes --json, and exits 1 when --check fails', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-compare-'));
    const logs: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => { logs.push(a.join(' ')); });
    try {
      await makeProgram().parseAsync(['node', 'tsrt', 'compare', DEFAULT_MODEL, '--fp16', '--device', 'cpu', '--per-layer',
        '--op-precisions', 'Softmax:fp32', '--json', join(dir, 'c.json'), '--check', 'cosine>=0.99,sqnr>=200']);
    } finally { spy.mockRestore(); }
    expect(process.exitCode).toBe(1);
    process.exitCode = 0;
    const text = logs.join('\n');
    expect(text).toMatch(/fp16 engine with 1 precision rule\(s\) \(cpu\) vs CPU reference of the unoptimized model/);
    expect(text).toMatch(/check FAILED: softmax_0.tmp_0: sqnr>=200/);
    expect(text).toMatch(/largest accuracy loss: layer '/);
    const json = JSON.parse(readFileSync(join(dir, 'c.json'), 'utf8'));
    expect(json.outputs[0].name).toBe('softmax_0.tmp_0');
    expect(json.layers.find((l: { op: string }) => l.op === 'Softmax').dtype).toBe('float32');
    expect(json.precision.matched).toContainEqual({ node: 'p2o.Softmax.0', precision: 'fp32', rule: 'op Softmax:fp32' });
  }, 60_000);
});

describe('accuracy budget', () => {
  it('moves exactly the layer that overflows fp16 back to fp32', async () => {
    const model = overflowModel();
    const feeds = [1, 2].map((s) => new Map([['x', randomTensor('float32', [2, 4096], s, 0, 40)]]));
    const res = await buildWithBudget(model, { ...cpu, fp16: true }, { budget: 'cosine>=0.999', feeds });
    expect(res.initial[0].metrics.nonFinite).toBeGreaterThan(4);
    expect(res.met).toBe(true);
    expect(res.moves.map((m) => [m.nodes, m.to])).toEqual([[['mm'], 'fp32']]);
    expect(res.moves[0].dropDb).toBe(Infinity);
    expect(res.moves[0].nonFinite).toBe(res.initial[0].metrics.nonFinite);
    expect(res.final[0].metrics.cosine).toBeGreaterThan(0.999);
    expect(res.layerPrecisions).toEqual([{ pattern: 'mm', precision: 'fp32' }]);
    // the returned engine has the move: Mul still fp16, MatMul fp32
    const { graph: g, passContext: pc } = res.engine;
    expect(pc.precision?.low).toEqual(['scale']);
    const mm = g.nodes.find((n) => fusedFrom(pc.fusions, n.name).includes('mm'))!;
    expect(g.initializers.get(mm.inputs[1])?.dtype).toBe('float32');
    expect(g.valueTypes.get(mm.outputs[0])?.dtype).toBe('float32');
    expect(res.notes.join()).toMatch(/speed cost not measured/);
  }, 60_000);

  it('reports an unreachable budget clearly after trying', async () => {
    const model = loadModel(DEFAULT_MODEL);
    const shapes = { x: [1, 3, 48, 192] };
    const feeds = [new Map([['x', randomTensor('float32', shapes.x, 5)]])];
    const res = await buildWithBudget(model, { ...cpu, shapes, fp16: true }, { budget: 'sqnr>=200', feeds, maxMoves: 2 });
    expect(res.met).toBe(false);
    expect(res.reason).toMatch(/out of reach: even the fp32 engine breaks sqnr>=200 on output 'softmax_0.tmp_0'/);
    expect(res.moves).toEqual([]);
    // reachable by the fp32 engine but not within two moves: says how far it got
    const two = await buildWithBudget(model, { ...cpu, shapes, fp16: true }, { budget: 'sqnr>=100', feeds, maxMoves: 2 });
    expect(two.met).toBe(false);
    expect(two.moves).toHaveLength(2);
    expect(two.reason).toMatch(/still failing after moving 2 layers/);
    await expect(buildWithBudget(model, { ...cpu, shapes }, { budget: 'cosine>=0.9', feeds })).rejects.toThrow(/needs a reduced-precision build/);
  }, 60_000);
});
