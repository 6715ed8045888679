// Precision by timing (TensorRT's "int8 with fp16 fallback by speed"): an --int8 build at opt level >= 3 on a GPU
// times every calibrated int8 layer's kernel in int8 and in fp16 (same fused epilogue) with the autotuner, adds
// the conversions its precision creates or removes at int8/fp16 boundaries (precision_model.ts), moves to fp16
// the layers where that is faster, and builds the engine once more with those moves as fp16 precision rules.
//
// Flow: optimize the model twice (int8 as asked; the same with int8 off: the fp16 twin of every layer keeps its
// name and fused epilogue), lower both with one tuner, so every tensor-core kernel of both is timed or read from
// the timing cache (the fp16 layers they share are the same signatures, timed once), then the final build() finds
// every conv/GEMM choice in the timing cache. Heuristic levels (< 3) have no timings and change nothing.
// User rules win: a layer any --layer-precisions rule names is left as the rules make it. --no-precision-timing
// (precisionByTiming: false) keeps every calibrated layer int8.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DTYPE_SIZE, size } from '../ir/tensor.js';
import type { Graph, Model } from '../ir/types.js';
import { inferShapes } from '../ir/infer.js';
import { lowerGraph, type Lowered, type Tactic } from '../codegen/lower.js';
import { newPassContext, type Instrument } from '../passes/pass.js';
import { optimize } from '../passes/pipeline.js';
import { forcedPrecision, fusedFrom, type PrecisionRule } from '../passes/precision_rules.js';
import { Autotuner, ContextLost, type TuningReport } from './autotune.js';
import { firstLine } from './gpu_timer.js';
import { cudaAvailable, sharedCuda } from './device_runner.js';
import { boundaryGraph, boundaryMsOf, choosePrecisions, type CostModel, type LayerTimes } from './precision_model.js';
import { buildTarget, openBuildTuner, passOptions, type BuildOptions, type Engine } from './engine.js';

type BuildFn = (m: Model, opts: BuildOptions) => Promise<Engine>;

export interface PrecisionTimingLayer {
  /** Layer of the optimized graph (the int8 QConv/QGemm and its fp16 twin share the name), its op and ONNX nodes. */
  layer: string;
  op: string;
  nodes: string[];
  /** Best tuned kernel time in each precision (plus the estimate for untuned helper kernels of the layer). */
  int8Ms: number;
  fp16Ms: number;
  /** Conversion time running this layer fp16 adds (negative: saves), given the other layers' final precisions. */
  boundaryMs: number;
  precision: 'int8' | 'fp16';
}

export interface PrecisionTimingReport {
  /** Every compared layer, in graph order. */
  layers: PrecisionTimingLayer[];
  /** Layers moved to fp16. */
  moved: string[];
  /** int8 layers a user precision rule names: left as the rules make them. */
  pinned: string[];
  /** int8 layers kept int8 without a comparison, and why. */
  untimed: { layer: string; reason: string }[];
  /** Bandwidth the boundary tensors are charged at. */
  bandwidth: { gbPerS: number; source: 'nominal' | 'given' | 'default' };
  /** Predicted ms of the compared layers' kernels and the conversions, all-int8 and as chosen. */
  predicted: { allInt8Ms: number; chosenMs: number; savingMs: number };
  /** The timing passes' tuning (the final build's own is in BuildReport.tuning). */
  tuning?: TuningReport;
  notes: string[];
}

export interface PrecisionTimingHooks {
  /** The tuner to time with; default Autotuner.open() on this machine's GPU. Tests pass one with a fake timer. */
  tuner?: Autotuner;
  /** Device memory bandwidth in bytes/s; default the GPU's nominal (memory clock x bus width). */
  bandwidth?: number;
  /** NVRTC target for the timing lowerings; default the engine's. */
  arch?: string;
}

/** Whether build() times int8 layers against fp16: --int8, opt level >= 3, kernels compiled, a GPU, not turned off. */
export function precisionTimingApplies(opts: BuildOptions): boolean {
  return !!opts.int8 && opts.precisionByTiming !== false && (opts.optLevel ?? 2) >= 3 && opts.compileKernels !== false
    && opts.device !== 'cpu' && cudaAvailable();
}

/** build() with each calibrated int8 layer's precision chosen by timing; engine.report.precisionTiming says what
 * moved and why. Level < 3, no --int8 or precisionByTiming false: exactly build(). */
export async function buildWithPrecisionTiming(m: Model, opts: BuildOptions, buildFn: BuildFn, hooks: PrecisionTimingHooks = {}): Promise<Engine> {
  if (!opts.int8 || opts.precisionByTiming === false || (opts.optLevel ?? 2) < 3) return buildFn(m, opts);
  const log = opts.log ?? (() => {});
  // --no-timing-cache: the timing passes and the final build share a throwaway file, so the final build does not
  // time every kernel again; nothing is read from or left in the user's cache
  let tmp: string | undefined;
  let timingCache = opts.timingCache;
  if (timingCache === false && !hooks.tuner) { tmp = mkdtempSync(join(tmpdir(), 'tsrt-precision-')); timingCache = join(tmp, 'timing-cache.json'); }
  try {
    let d: Decision;
    try {
      d = await decide(m, { ...opts, timingCache }, hooks, log);
    } catch (e) {
      if (e instanceof ContextLost) throw e;
      // the final build meets a bad model or option again and reports it; anything else keeps every layer int8
      log(`precision timing: skipped (${firstLine(e)}); every calibrated layer stays int8`);
      d = { rules: opts.layerPrecisions ?? [], report: emptyReport([`skipped: ${firstLine(e)}`]) };
    }
    for (const line of describePrecisionTiming(d.report)) log(line);
    const engine = await buildFn(m, { ...opts, timingCache, layerPrecisions: d.rules, precisionByTiming: false });
    engine.report.precisionTiming = d.report;
    // the engine's options rebuild this very engine (the moves are fp16 rules, timing off); the cache as asked
    engine.built.options = { ...engine.built.options, timingCache: opts.timingCache };
    const byLayer = new Map(d.report.layers.map((l) => [l.layer, l]));
    for (const r of engine.passContext.rejected) {
      const l = r.pass === 'quantize-int8' ? byLayer.get(r.nodes[0]) : undefined;
      if (l && l.precision === 'fp16') r.reason = `precision by timing: fp16 ${ms(l.fp16Ms)} + conversions ${signed(l.boundaryMs)} beats int8 ${ms(l.int8Ms)}`;
    }
    return engine;
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}

interface Decision { rules: PrecisionRule[]; report: PrecisionTimingReport }

function emptyReport(notes: string[]): PrecisionTimingReport {
  return {
    layers: [], moved: [], pinned: [], untimed: [], bandwidth: { gbPerS: 0, source: 'default' },
    predicted: { allInt8Ms: 0, chosenMs: 0, savingMs: 0 }, notes,
  };
}

const INT8_LAYER = new Set(['QConv', 'QGemm']);

async function decide(m: Model, opts: BuildOptions, hooks: PrecisionTimingHooks, log: (msg: string) => void): Promise<Decision> {
  // the int8 graph, and the graph the quantize pass ran on (its boundaries are decided there)
  const ctx8 = newPassContext(passOptions(opts));
  ctx8.log = log;
  let last = m.graph, pre: Graph | undefined;
  const capture: Instrument = { after(p, g) { if (p.name === 'quantize-int8') pre = last; last = g; } };
  const g8 = optimize(m.graph, ctx8, [capture], opts.passes);
  // the fp16 twin: int8 off (int8 rules would be refused there; they only pin layers to int8)
  const ctx16 = newPassContext({ ...passOptions(opts), int8: false, int8Scales: undefined, layerPrecisions: opts.layerPrecisions?.filter((r) => r.precision !== 'int8') });
  const g16 = optimize(m.graph, ctx16, [], opts.passes);
  if (!pre) return { rules: opts.layerPrecisions ?? [], report: emptyReport(['no quantize-int8 pass in the pipeline: nothing to compare']) };
  if (!pre.valueTypes.size) pre = inferShapes(pre).graph;

  const implicit = g8.nodes.filter((n) => n.domain === 'tsrt' && INT8_LAYER.has(n.op)
    && ctx8.fusions.some((f) => f.pass === 'quantize-int8' && f.into === n.name && !f.kind.includes('[explicit]')));
  const pinned = implicit.filter((n) => forcedPrecision(ctx8.precision, ctx8.fusions, n.name) !== undefined).map((n) => n.name);
  const twins = new Map(g16.nodes.map((n) => [n.name, n]));
  const untimed: PrecisionTimingReport['untimed'] = [];
  const candidates = implicit.filter((n) => {
    if (pinned.includes(n.name)) return false;
    if (!twins.has(n.name)) { untimed.push({ layer: n.name, reason: 'no fp16 layer of the same name in the fp16 graph' }); return false; }
    return true;
  }).map((n) => n.name);

  const bw = bandwidth(hooks);
  const bytesPerMs = bw.bytesPerS / 1000;
  // lowered and timed for the final build's target, so the signatures timed here are the ones it looks up
  const gpu = opts.device !== 'cpu' && cudaAvailable();
  const { arch, smCount } = buildTarget({ ...opts, arch: hooks.arch ?? opts.arch }, gpu);
  const tuner = hooks.tuner ?? openBuildTuner({ ...opts, optLevel: opts.optLevel ?? 3 }, arch, log);
  const notes: string[] = [];
  let times8: Map<string, number | string>, times16: Map<string, number | string>;
  let tuning: TuningReport | undefined;
  try {
    const lowerOpts = { fp16: true, allowHost: opts.allowHost ?? true, arch, smCount };
    const keyOf = new Map<string, string>();
    const tactic: Tactic = (key, cands, emit) => {
      const pick = tuner.choose(key, cands, emit);
      if (pick) { try { keyOf.set(emit(pick).name, key); } catch { /* the lowering meets the same error */ } }
      return pick;
    };
    await tuner.precompile(() => {
      lowerGraph(g8, { ...lowerOpts, tactic: tuner.collect });
      lowerGraph(g16, { ...lowerOpts, tactic: tuner.collect });
    });
    const l8 = lowerGraph(g8, { ...lowerOpts, tactic });
    const l16 = lowerGraph(g16, { ...lowerOpts, tactic });
    const tunedMs = (key: string) => tuner.cache.get(key)?.ms;
    times8 = layerMs(l8, candidates, keyOf, tunedMs, bytesPerMs);
    times16 = layerMs(l16, candidates, keyOf, tunedMs, bytesPerMs);
  } finally {
    if (!hooks.tuner) tuning = tuner.finish();
  }
  const times = new Map<string, LayerTimes>();
  for (const l of candidates) {
    const a = times8.get(l), b = times16.get(l);
    if (typeof a === 'number' && typeof b === 'number') times.set(l, { int8Ms: a, fp16Ms: b });
    else untimed.push({ layer: l, reason: `${typeof a === 'string' ? `int8: ${a}` : ''}${typeof a === 'string' && typeof b === 'string' ? '; ' : ''}${typeof b === 'string' ? `fp16: ${b}` : ''}` });
  }
  if (bw.source === 'default') notes.push('the GPU did not report its memory clock and bus width: boundary tensors charged at 2000 GB/s');

  const scales = opts.int8Scales ?? {};
  const model: CostModel = { b: boundaryGraph(pre, implicit.map((n) => n.name), scales), times, bytesPerMs };
  const { S, base, initialMs, finalMs } = choosePrecisions(model);
  const low = new Set(ctx8.precision?.low ?? []);
  const onnxNodes = (l: string) => [...new Set(fusedFrom(ctx8.fusions, l, true).filter((x) => low.has(x)).flatMap((x) => fusedFrom(ctx8.fusions, x)))];
  const layers: PrecisionTimingLayer[] = [];
  const rules: PrecisionRule[] = [...(opts.layerPrecisions ?? [])];
  for (const n of implicit) {
    const t = times.get(n.name);
    if (!t) continue;
    const nodes = onnxNodes(n.name);
    let precision: 'int8' | 'fp16' = S.has(n.name) ? 'int8' : 'fp16';
    if (precision === 'fp16' && !nodes.length) {
      notes.push(`${n.name}: fp16 predicted faster, but no reduced-precision ONNX node to write a rule for; kept int8`);
      precision = 'int8';
    }
    if (precision === 'fp16') for (const x of nodes) rules.push({ pattern: x, precision: 'fp16' });
    layers.push({ layer: n.name, op: `tsrt::${n.op}`, nodes, ...t, boundaryMs: boundaryMsOf(model, S, base, n.name), precision });
  }
  const moved = layers.filter((l) => l.precision === 'fp16').map((l) => l.layer);
  return {
    rules,
    report: {
      layers, moved, pinned, untimed,
      bandwidth: { gbPerS: bw.bytesPerS / 1e9, source: bw.source },
      predicted: { allInt8Ms: initialMs, chosenMs: finalMs, savingMs: initialMs - finalMs },
      tuning, notes,
    },
  };
}

/** Per layer: the tuned ms of its tensor-core kernels plus its other kernels' bytes at the bandwidth, or why not. */
function layerMs(lowered: Lowered, layers: readonly string[], keyOf: Map<string, string>, tunedMs: (key: string) => number | undefined,
  bytesPerMs: number): Map<string, number | string> {
  const want = new Set(layers);
  const acc = new Map<string, { ms: number; tuned: number; why?: string }>();
  for (const s of lowered.steps) {
    if (!want.has(s.layer)) continue;
    const a = acc.get(s.layer) ?? { ms: 0, tuned: 0 };
    acc.set(s.layer, a);
    if (s.kind === 'host') { a.why = `runs on the host (${s.reason})`; continue; }
    if (s.kind !== 'kernel') continue;
    const key = keyOf.get(s.kernel.name);
    const t = key !== undefined ? tunedMs(key) : undefined;
    if (t !== undefined) { a.ms += t; a.tuned++; continue; }
    // a helper kernel of the layer (channel pad): memory-bound, charged for the bytes it reads and writes
    let bytes = 0;
    for (const arg of s.args) {
      const ty = arg.kind === 'value' ? lowered.types.get(arg.name) : undefined;
      if (ty) bytes += size(ty.dims) * (DTYPE_SIZE[ty.dtype] ?? 4);
    }
    a.ms += bytes / bytesPerMs;
  }
  const out = new Map<string, number | string>();
  for (const l of layers) {
    const a = acc.get(l);
    out.set(l, !a ? 'not lowered' : a.why ?? (a.tuned ? a.ms : 'no tuned kernel (heuristic config: budget spent or no candidate ran)'));
  }
  return out;
}


/** DRAM bandwidth: given, else the GPU's nominal (double data rate: 2 x memory clock x bus width). */
function bandwidth(hooks: PrecisionTimingHooks): { bytesPerS: number; source: 'nominal' | 'given' | 'default' } {
  if (hooks.bandwidth !== undefined) return { bytesPerS: hooks.bandwidth, source: 'given' };
  const info = sharedCuda().deviceInfo();
  const nominal = 2 * info.memClockKHz * 1e3 * (info.memBusWidth / 8);
  return nominal > 0 ? { bytesPerS: nominal, source: 'nominal' } : { bytesPerS: 2e12, source: 'default' };
}

const ms = (x: number) => `${x.toFixed(4)} ms`;
const signed = (x: number) => `${x >= 0 ? '+' : '-'}${Math.abs(x).toFixed(4)} ms`;

/** Lines for the build log, `tsrt build` and the report page. */
export function describePrecisionTiming(r: PrecisionTimingReport): string[] {
  const p = r.predicted;
  const lines = [r.layers.length
    ? `precision by timing: ${r.moved.length} of ${r.layers.length} int8 layers moved to fp16; predicted ${p.allInt8Ms.toFixed(4)} -> ${p.chosenMs.toFixed(4)} ms (saves ${p.savingMs.toFixed(4)} ms; boundary tensors at ${r.bandwidth.gbPerS.toFixed(0)} GB/s, ${r.bandwidth.source})`
    : 'precision by timing: no int8 layer compared'];
  for (const l of r.layers) {
    const fasterFp16 = l.fp16Ms < l.int8Ms;
    if (l.precision === 'fp16') lines.push(`  ${l.layer}: int8 ${ms(l.int8Ms)}, fp16 ${ms(l.fp16Ms)}, conversions ${signed(l.boundaryMs)} -> fp16`);
    else if (fasterFp16) lines.push(`  ${l.layer}: fp16 kernel ${ms(l.int8Ms - l.fp16Ms)} faster, but conversions ${signed(l.boundaryMs)} -> stays int8`);
  }
  if (r.pinned.length) lines.push(`  ${r.pinned.length} layer(s) left to precision rules: ${r.pinned.join(', ')}`);
  for (const u of r.untimed) lines.push(`  ${u.layer}: stays int8, not compared (${u.reason})`);
  for (const n of r.notes) lines.push(`  note: ${n}`);
  return lines;
}

