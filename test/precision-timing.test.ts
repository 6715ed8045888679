// Precision by timing (runtime/precision_timing.ts, precision_model.ts): an --int8 build at opt level 3 compares
// each calibrated layer's tuned int8 kernel with its fp16 twin plus the boundary conversions, and moves the
// layers where fp16 wins. On the CPU with a fake kernel timer (per output-channel count and dtype) injected into
// the real Autotuner: exactly the faster-in-fp16 layers move, conversion cost can keep one int8, user rules win,
// level < 3 and precisionByTiming: false change nothing, and the engine stays within int8 accuracy of the CPU
// reference. The boundary model's mirror of quantize.ts is checked against the pass for every choice.
import { describe, expect, it } from 'vitest';
import { parseGraph } from '../src/ir/text.js';
import { inferShapes } from '../src/ir/infer.js';
import { fromF64, toF64 } from '../src/ir/tensor.js';
import type { Graph, Model, Tensor } from '../src/ir/types.js';
import { upgradeGraph } from '../src/onnx/import.js';
import { newPassContext, type Instrument } from '../src/passes/pass.js';
import { optimize } from '../src/passes/pipeline.js';
import type { PrecisionRule } from '../src/passes/precision_rules.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { metrics } from '../src/runtime/metrics.js';
import { Autotuner } from '../src/runtime/autotune.js';
import { parseSignature, TimingCache, type DeviceId } from '../src/runtime/timing_cache.js';
import { build, type BuildOptions } from '../src/runtime/engine.js';
import { buildWithPrecisionTiming, describePrecisionTiming } from '../src/runtime/precision_timing.js';
import { assign, boundaryGraph } from '../src/runtime/precision_model.js';
import type { ConvProblem } from '../src/codegen/tc_conv.js';
import type { GemmProblem } from '../src/codegen/tc_gemm.js';
import { Command } from 'commander';
import { precisionOptions, withPrecisionOptions } from '../src/cli/precision_flags.js';
import { renderReport } from '../src/cli/report.js';
import '../src/ops/index.js';

let seed = 5;
const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 2 ** 32 - 0.5; };
const vals = (n: number, s: number) => Array.from({ length: n }, () => (rnd() * s).toFixed(4)).join(', ');

// four convs in a chain, each with its own output channel count so the fake timer can tell them apart
const CHAIN = `graph g(%x: float32[2,16,8,8]) -> (%y: float32[2,80,8,8]) opset 13 {
  const %w1: float32[32,16,3,3] = [${vals(32 * 16 * 9, 0.3)}]
  const %b1: float32[32] = [${vals(32, 0.2)}]
  const %w2: float32[48,32,1,1] = [${vals(48 * 32, 0.5)}]
  const %w3: float32[64,48,1,1] = [${vals(64 * 48, 0.5)}]
  const %w4: float32[80,64,1,1] = [${vals(80 * 64, 0.4)}]
  %c1 = Conv(%x, %w1, %b1) {pads=[1, 1, 1, 1]} name="conv1"
  %r1 = Relu(%c1) name="relu1"
  %c2 = Conv(%r1, %w2) name="conv2"
  %r2 = Relu(%c2) name="relu2"
  %c3 = Conv(%r2, %w3) name="conv3"
  %r3 = Relu(%c3) name="relu3"
  %y = Conv(%r3, %w4) name="conv4"
}`;

// a stem with a pool and a residual branch, for the boundary model's mirror of quantize.ts
const BRANCHY = `graph g(%x: float32[2,16,16,16]) -> (%y: float32[2,32,8,8]) opset 13 {
  const %w1: float32[32,16,3,3] = [${vals(32 * 16 * 9, 0.3)}]
  const %w2: float32[32,32,1,1] = [${vals(32 * 32, 0.5)}]
  const %w3: float32[32,32,3,3] = [${vals(32 * 32 * 9, 0.15)}]
  const %w4: float32[32,32,1,1] = [${vals(32 * 32, 0.4)}]
  %c1 = Conv(%x, %w1) {pads=[1, 1, 1, 1]} name="conv1"
  %r1 = Relu(%c1) name="relu1"
  %p = MaxPool(%r1) {kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]} name="pool"
  %c2 = Conv(%p, %w2) name="conv2"
  %c3 = Conv(%p, %w3) {pads=[1, 1, 1, 1]} name="conv3"
  %s = Add(%c2, %c3) name="add"
  %r = Relu(%s) name="relu2"
  %c4 = Conv(%r, %w4) name="conv4"
  %y = Add(%c4, %r) name="add2"
}`;

const modelOf = (text: string): Model => ({ graph: inferShapes(upgradeGraph(parseGraph(text))).graph, irVersion: 8, producer: 'test', opsets: { '': 13 } });
const inputOf = (g: Graph): Tensor => {
  const dims = g.inputs[0].type.shape as number[];
  return fromF64('float32', dims, Array.from({ length: dims.reduce((a, b) => a * b) }, () => rnd() * 4));
};

/** minmax scales of every float tensor over a few random inputs (CPU reference). */
function scalesOf(g: Graph): Record<string, number> {
  const amax: Record<string, number> = {};
  for (let i = 0; i < 3; i++) {
    for (const [k, t] of runGraph(g, new Map([['x', inputOf(g)]]), { keepAll: true })) {
      if (t.dtype !== 'float32') continue;
      amax[k] = Math.max(amax[k] ?? 0, ...Array.from(toF64(t), Math.abs));
    }
  }
  return Object.fromEntries(Object.entries(amax).filter(([, v]) => v > 0).map(([k, v]) => [k, v / 127]));
}

const DEV: DeviceId = { name: 'fake', arch: 'sm_90', driver: 12080, nvrtc: '12.8' };
type Table = Record<'int8' | 'float16', Record<number, number>>;

/** A real Autotuner whose "GPU" answers from `table` by dtype and output channels (conv k or GEMM n). */
function fakeTuner(table: Table, calls: { n: number } = { n: 0 }): Autotuner {
  return new Autotuner({
    arch: 'sm_90', cache: TimingCache.load(null, DEV), level: 3, timeBudgetMs: 60_000, kernelCache: null,
    timeKernel: (_k, key) => {
      calls.n++;
      const sig = parseSignature(key)!;
      const ch = sig.kind === 'conv' ? (sig.problem as ConvProblem).k : (sig.problem as GemmProblem).n;
      const t = table[sig.dtype as 'int8' | 'float16']?.[ch];
      if (t === undefined) throw new Error(`no fake time for ${sig.dtype} ${ch}`);
      return t;
    },
  });
}

const CPU: BuildOptions = { device: 'cpu', compileKernels: false, optLevel: 3, int8: true };
/** ONNX names of the int8 layers (a Conv fused with its Relu is the layer `<conv>_fused`). */
const base = (l: string) => l.replace(/_fused$/, '');
const qconvs = (g: Graph) => g.nodes.filter((n) => n.op === 'QConv').map((n) => base(n.name)).sort();
const names = (ls: string[]) => ls.map(base).sort();

describe('precision by timing', () => {
  const m = modelOf(CHAIN);
  const int8Scales = scalesOf(m.graph);
  const ALL = ['conv1', 'conv2', 'conv3', 'conv4'];

  it('moves exactly the layers whose fp16 kernel is faster when conversions are free, and stays accurate', async () => {
    const table: Table = { int8: { 32: 0.1, 48: 0.1, 64: 0.1, 80: 0.1 }, float16: { 32: 0.2, 48: 0.05, 64: 0.06, 80: 0.15 } };
    const e = await buildWithPrecisionTiming(m, { ...CPU, int8Scales }, build, { tuner: fakeTuner(table), bandwidth: 1e30, arch: 'sm_90' });
    const r = e.report.precisionTiming!;
    expect(names(r.moved)).toEqual(['conv2', 'conv3']);
    expect(qconvs(e.graph)).toEqual(['conv1', 'conv4']);
    expect(r.layers.map((l) => [base(l.layer), l.int8Ms, l.fp16Ms])).toEqual([['conv1', 0.1, 0.2], ['conv2', 0.1, 0.05], ['conv3', 0.1, 0.06], ['conv4', 0.1, 0.15]]);
    expect(r.predicted.savingMs).toBeCloseTo(0.05 + 0.04, 9);
    expect(r.pinned).toEqual([]);
    expect(r.untimed).toEqual([]);
    // the moves are fp16 rules on the ONNX nodes (kept in the engine's options: a rebuild gives this engine)
    expect(e.built.options.precisionByTiming).toBe(false);
    expect(e.built.options.layerPrecisions?.map((x) => x.pattern)).toEqual(expect.arrayContaining(['conv2', 'conv3']));
    // the quantize pass's reason names the timing
    expect(e.passContext.rejected.find((x) => base(x.nodes[0]) === 'conv2')?.reason).toMatch(/precision by timing: fp16 0\.0500 ms/);
    expect(describePrecisionTiming(r)[0]).toMatch(/2 of 4 int8 layers moved to fp16/);
    const html = renderReport({ model: 'chain.onnx', engine: e, imported: m.graph, beforeFusion: m.graph }, { int8: true, optLevel: 3 });
    expect(html).toMatch(/<h2>Precision by timing \(2 of 4 int8 layers moved to fp16\)/);
    expect(html).toMatch(/conv2_fused<\/td><td><code>conv2<\/code> <code>relu2<\/code><\/td><td class="num">0\.1000<\/td><td class="num">0\.0500<\/td><td class="num">[-+]0\.0000<\/td><td><b>fp16<\/b>/);
    const x = inputOf(m.graph);
    const want = runGraph(m.graph, new Map([['x', x]])).get('y')!;
    const got = (await e.run({ x })).get('y')!;
    const acc = metrics(fromF64('float32', got.dims, toF64(got)), want);
    expect(acc.cosine).toBeGreaterThanOrEqual(0.99);
  });

  it('keeps a layer int8 when the conversions its move creates cost more than its faster fp16 kernel', async () => {
    // 1 GB/s = 1e6 bytes per ms. conv4 moves: 0.08 ms faster, and conv3 then writes its 8192 elements fp16 instead
    // of int8 (+8192 B = 0.0082 ms). conv2 is 0.0001 ms faster in fp16, but conv1 would then write fp16 instead of
    // int8 (+4096 B) and conv3's input would need a QuantizeLinear (6144 x (2 + 1) B): +0.0225 ms, so it stays.
    const table: Table = { int8: { 32: 0.1, 48: 0.1, 64: 0.1, 80: 0.1 }, float16: { 32: 0.2, 48: 0.0999, 64: 0.2, 80: 0.02 } };
    const e = await buildWithPrecisionTiming(m, { ...CPU, int8Scales }, build, { tuner: fakeTuner(table), bandwidth: 1e9, arch: 'sm_90' });
    const r = e.report.precisionTiming!;
    expect(names(r.moved)).toEqual(['conv4']);
    expect(qconvs(e.graph)).toEqual(['conv1', 'conv2', 'conv3']);
    const l = new Map(r.layers.map((x) => [base(x.layer), x]));
    expect(l.get('conv4')!.boundaryMs).toBeCloseTo(8192 / 1e6, 9);
    expect(l.get('conv2')!.boundaryMs).toBeCloseTo((4096 + 6144 * 3) / 1e6, 9);
    expect(l.get('conv2')!.precision).toBe('int8');
    expect(r.predicted.savingMs).toBeCloseTo(0.08 - 8192 / 1e6, 9);
    expect(describePrecisionTiming(r).some((s) => /conv2_fused: fp16 kernel 0\.0001 ms faster, but conversions \+0\.0225 ms -> stays int8/.test(s))).toBe(true);
    // with free conversions conv2 moves too
    const free = await buildWithPrecisionTiming(m, { ...CPU, int8Scales }, build, { tuner: fakeTuner(table), bandwidth: 1e30, arch: 'sm_90' });
    expect(names(free.report.precisionTiming!.moved)).toEqual(['conv2', 'conv4']);
  });

  it('leaves layers named by user precision rules as the rules make them', async () => {
    const table: Table = { int8: { 32: 0.1, 48: 0.1, 64: 0.1, 80: 0.1 }, float16: { 32: 0.01, 48: 0.01, 64: 0.01, 80: 0.01 } };
    const rules: PrecisionRule[] = [{ pattern: 'conv2', precision: 'int8' }, { pattern: 'conv4', precision: 'fp16' }];
    const e = await buildWithPrecisionTiming(m, { ...CPU, int8Scales, layerPrecisions: rules }, build, { tuner: fakeTuner(table), bandwidth: 1e30, arch: 'sm_90' });
    const r = e.report.precisionTiming!;
    expect(names(r.pinned)).toEqual(['conv2']);
    expect(names(r.moved)).toEqual(['conv1', 'conv3']);
    expect(r.layers.map((x) => base(x.layer))).not.toContain('conv4'); // fp16 by the user's rule: never int8, not compared
    expect(qconvs(e.graph)).toEqual(['conv2']);
  });

  it('changes nothing below opt level 3 or with precisionByTiming: false, and never times', async () => {
    const table: Table = { int8: { 32: 1, 48: 1, 64: 1, 80: 1 }, float16: { 32: 0.01, 48: 0.01, 64: 0.01, 80: 0.01 } };
    for (const opts of [{ ...CPU, int8Scales, optLevel: 2 }, { ...CPU, int8Scales, precisionByTiming: false }]) {
      const calls = { n: 0 };
      const e = await buildWithPrecisionTiming(m, opts, build, { tuner: fakeTuner(table, calls), bandwidth: 1e30, arch: 'sm_90' });
      expect(e.report.precisionTiming).toBeUndefined();
      expect(qconvs(e.graph)).toEqual(ALL);
      expect(calls.n).toBe(0);
    }
    // and build() itself does not time on the CPU backend (no GPU timings to compare)
    const plain = await build(m, { ...CPU, int8Scales });
    expect(plain.report.precisionTiming).toBeUndefined();
    expect(qconvs(plain.graph)).toEqual(ALL);
  });

  it('keeps a layer int8 when it has no timing (every candidate failed)', async () => {
    const table: Table = { int8: { 32: 0.1, 48: 0.1, 64: 0.1, 80: 0.1 }, float16: { 32: 0.01, 64: 0.01, 80: 0.01 } };
    const e = await buildWithPrecisionTiming(m, { ...CPU, int8Scales }, build, { tuner: fakeTuner(table), bandwidth: 1e30, arch: 'sm_90' });
    const r = e.report.precisionTiming!;
    expect(names(r.untimed.map((u) => u.layer))).toEqual(['conv2']);
    expect(r.untimed[0].reason).toMatch(/fp16: no tuned kernel/);
    expect(qconvs(e.graph)).toContain('conv2');
    expect(names(r.moved)).toEqual(['conv1', 'conv3', 'conv4']);
  });
});

describe('boundary model mirrors quantize-int8', () => {
  const m = modelOf(BRANCHY);
  const int8Scales = scalesOf(m.graph);
  // the graph the quantize pass runs on
  let pre: Graph | undefined, last = m.graph;
  const capture: Instrument = { after(p, g) { if (p.name === 'quantize-int8') pre = last; last = g; } };
  const all = optimize(m.graph, newPassContext({ optLevel: 2, fp16: true, int8: true, int8Scales }), [capture]);
  const layers = all.nodes.filter((n) => n.op === 'QConv').map((n) => n.name);

  it('predicts the int8 tensors, int8 pools and QuantizeLinear kernels of every choice of int8 layers', () => {
    expect(names(layers)).toEqual(['conv1', 'conv2', 'conv3', 'conv4']);
    const b = boundaryGraph(pre!, layers, int8Scales);
    const seen = { int8Out: 0, pools: 0, quantized: 0, deadCasts: 0, residualInt8: 0 };
    for (let mask = 0; mask < 1 << layers.length; mask++) {
      const S = new Set(layers.filter((_, i) => mask & (1 << i)));
      const rules: PrecisionRule[] = layers.filter((l) => !S.has(l)).map((l) => ({ pattern: base(l), precision: 'fp16' }));
      // right after the quantize pass: later passes merge a graph input's QuantizeLinear into the input Relayout
      let g = m.graph;
      const after: Instrument = { after(p, x) { if (p.name === 'quantize-int8') g = x; } };
      optimize(m.graph, newPassContext({ optLevel: 2, fp16: true, int8: true, int8Scales, layerPrecisions: rules }), [after]);
      const typed = inferShapes(g).graph;
      const a = assign(b, S);
      const what = `int8 layers {${[...S].join(',')}}`;
      expect(qconvs(g), what).toEqual(names([...S]));
      const int8Out = g.nodes.filter((n) => n.op === 'QConv' && n.attrs.y_scale).map((n) => n.name).sort();
      expect(int8Out, what).toEqual([...a.int8Out].sort());
      const pool = g.nodes.find((n) => n.op === 'MaxPool')!;
      expect(typed.valueTypes.get(pool.outputs[0])?.dtype === 'int8', what).toBe(a.int8Pools.has('pool'));
      expect(g.nodes.filter((n) => n.op === 'QuantizeLinear').map((n) => n.inputs[0]).sort(), what).toEqual([...a.quantized.values()].sort());
      const read = new Set(g.nodes.flatMap((n) => n.inputs));
      const dead = g.nodes.filter((n) => n.op === 'Cast' && !read.has(n.outputs[0]) && !g.outputs.some((o) => o.name === n.outputs[0]));
      expect(dead.map((n) => n.outputs[0]), what).toEqual([...a.deadCasts]);
      const residuals = g.nodes.filter((n) => n.op === 'QConv' && n.attrs.z_scale).length;
      if (residuals) seen.residualInt8++;
      if (a.int8Out.size) seen.int8Out++;
      if (a.int8Pools.size) seen.pools++;
      if (a.quantized.size) seen.quantized++;
      if (a.deadCasts.size) seen.deadCasts++;
    }
    // every rule of the mirror was exercised by some choice
    for (const [k, v] of Object.entries(seen)) expect(v, k).toBeGreaterThan(0);
  });
});

describe('--no-precision-timing', () => {
  const parse = (args: string[]) => precisionOptions(withPrecisionOptions(new Command()).parse(args, { from: 'user' }).opts(), () => {});
  it('turns precision by timing off; without it the build option is left to its default (on)', () => {
    expect(parse(['--no-precision-timing'])).toEqual({ precisionByTiming: false });
    expect(parse([])).toEqual({});
  });
});
