// `tsrt bench` (like trtexec): warm-up, timed iterations, latency percentiles, throughput, GPU vs host time,
// per-layer profile, and the batch-size sweep that recommends the best batch within a latency bound.
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { TsrtError } from '../errors.js';
import type { Model, Tensor } from '../ir/types.js';
import { loadModel } from '../onnx/import.js';
import { build, type BuildOptions, type Engine } from '../runtime/engine.js';
import { buildOptions, gatherInputs, testDataShapes, withBuildOptions, type CommonOpts } from './main.js';
import { openEngine } from './plan_cli.js';
import { isPlanFile } from '../runtime/plan.js';

export interface LatencyStats { runs: number; min: number; median: number; p90: number; p99: number; mean: number }

export function latencyStats(times: number[]): LatencyStats {
  if (!times.length) throw new TsrtError('USAGE', 'no timed runs', 'pass --iterations >= 1');
  const s = [...times].sort((a, b) => a - b);
  const pct = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { runs: s.length, min: s[0], median: pct(0.5), p90: pct(0.9), p99: pct(0.99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

export interface BenchResult {
  batch: number;
  /** GPU time per run (CUDA events around the replayed graph), or the host wall clock on the CPU backend. */
  gpu?: LatencyStats;
  /** Host wall clock of Engine.run: upload, launch, download and the JS around them. */
  host: LatencyStats;
  clock: 'cuda-events' | 'host';
  throughput: number;
  buildMs: number;
  /** Per-run times (ms) behind `gpu` (or `host` on the CPU backend), for --export-times. */
  times: number[];
}

/** Times one built engine: GPU time (CUDA events) where there is a GPU, and the host time of run() always. */
export async function benchEngine(engine: Engine, feeds: Map<string, Tensor>, iterations: number, warmup: number): Promise<BenchResult> {
  const batch = (engine.inputs[0]?.type.shape[0] as number) || 1;
  const gpuTimes = await engine.time(feeds, iterations, warmup);
  // the CPU reference is slow: a few host runs are enough to say how slow
  const hostRuns = gpuTimes ? Math.min(iterations, 50) : Math.min(iterations, 5);
  for (let i = 0; i < (gpuTimes ? Math.min(warmup, 5) : 1); i++) await engine.run(feeds);
  const host: number[] = [];
  for (let i = 0; i < hostRuns; i++) { const t = performance.now(); await engine.run(feeds); host.push(performance.now() - t); }
  const gpu = gpuTimes ? latencyStats(gpuTimes) : undefined;
  const h = latencyStats(host);
  return { batch, gpu, host: h, clock: gpu ? 'cuda-events' : 'host', throughput: batch / (gpu ?? h).median * 1000, buildMs: engine.report.buildMs, times: gpuTimes ?? host };
}

/** The name of the batch dim: the symbolic first dim shared by the inputs. */
export function batchDim(model: Model): string {
  const first = model.graph.inputs.map((i) => i.type.shape[0]);
  const sym = first.find((d): d is string => typeof d === 'string');
  if (!sym) {
    throw new TsrtError('USAGE', `${model.graph.name || 'the model'} has a static batch (${first.join(', ')}): --sweep-batch needs a symbolic first input dim`,
      'export the model with a dynamic batch axis (torch.onnx.export(..., dynamic_axes={"input": {0: "batch"}}))');
  }
  return sym;
}

export interface SweepEntry extends BenchResult { withinBound: boolean }

/** Builds and times the model at each batch size; recommends the highest throughput whose median latency is
 * within maxLatencyMs (every batch when there is no bound). */
export async function sweepBatch(model: Model, sizes: number[], opts: BuildOptions, run: { iterations: number; warmup: number; maxLatencyMs?: number; log?: (s: string) => void; modelPath?: string }):
  Promise<{ dim: string; entries: SweepEntry[]; best?: SweepEntry }> {
  const dim = batchDim(model);
  const entries: SweepEntry[] = [];
  for (const b of sizes) {
    // other symbolic dims keep the sizes given (--shapes, or the model's test data), with the batch replaced
    const shapes = opts.shapes && Object.fromEntries(Object.entries(opts.shapes).map(([k, d]) => [k, [b, ...d.slice(1)]]));
    const engine = await build(model, { ...opts, dims: { ...opts.dims, [dim]: b }, shapes });
    try {
      const feeds = gatherInputs(engine, run.modelPath ?? '', []);
      const r = await benchEngine(engine, feeds, run.iterations, run.warmup);
      const lat = (r.gpu ?? r.host).median;
      const e = { ...r, withinBound: run.maxLatencyMs === undefined || lat <= run.maxLatencyMs };
      entries.push(e);
      run.log?.(formatSweepRow(e));
    } finally { engine.dispose(); }
  }
  const ok = entries.filter((e) => e.withinBound);
  const best = ok.reduce<SweepEntry | undefined>((a, e) => (!a || e.throughput > a.throughput ? e : a), undefined);
  return { dim, entries, best };
}

function formatSweepRow(e: SweepEntry): string {
  const s = e.gpu ?? e.host;
  return `${String(e.batch).padStart(6)} ${s.median.toFixed(3).padStart(10)} ${s.p99.toFixed(3).padStart(10)} ${e.throughput.toFixed(1).padStart(12)} ${e.host.median.toFixed(3).padStart(10)}  ${e.withinBound ? '' : 'over the latency bound'}`;
}

/** "10ms", "10", "0.5 ms", "2s" -> milliseconds. */
export function parseLatency(s: string): number {
  const m = /^\s*([0-9]*\.?[0-9]+)\s*(ms|s|us)?\s*$/.exec(s);
  if (!m) throw new TsrtError('USAGE', `--max-latency '${s}' is not a duration`, 'write it like 10ms, 0.5ms or 2s');
  return Number(m[1]) * ({ us: 1e-3, ms: 1, s: 1000 } as Record<string, number>)[m[2] ?? 'ms'];
}

export function parseBatches(s: string): number[] {
  const out = s.split(',').map((x) => Number(x.trim()));
  if (!out.length || out.some((b) => !Number.isInteger(b) || b < 1)) throw new TsrtError('USAGE', `--sweep-batch '${s}' is not a list of positive integers`, 'e.g. --sweep-batch 1,2,4,8,16,32,64,128,256');
  return out;
}

const fmtStats = (s: LatencyStats) => `min ${s.min.toFixed(3)} ms, median ${s.median.toFixed(3)} ms, p90 ${s.p90.toFixed(3)} ms, p99 ${s.p99.toFixed(3)} ms`;

interface BenchOpts extends CommonOpts {
  iterations: string; warmup: string; exportTimes?: string; dumpProfile?: boolean; sweepBatch?: string; maxLatency?: string; json?: string;
}

export function registerBench(program: Command, printBuild: (engine: Engine, model: string) => void): void {
  withBuildOptions(program.command('bench').argument('<model>', 'ONNX model or engine file (.plan: loaded, not rebuilt)'))
    .description('time the engine like trtexec: warm-up, iterations, latency percentiles, throughput, GPU vs host time')
    .option('--iterations <n>', 'timed iterations', '100')
    .option('--warmup <n>', 'warm-up iterations', '10')
    .option('--export-times <file>', 'write per-iteration times as JSON')
    .option('--dump-profile', 'per-layer GPU time')
    .option('--sweep-batch <list>', 'build and time each batch size (symbolic batch dim), e.g. 1,2,4,8,16,32,64,128,256')
    .option('--max-latency <t>', 'with --sweep-batch: recommend the best throughput whose median latency is within this, e.g. 10ms')
    .option('--json <file>', 'with --sweep-batch: write the table as JSON')
    .addHelpText('after', `
Examples:
  $ tsrt bench resnet50.onnx --fp16 --shapes input:32x3x224x224 --dump-profile
  $ tsrt bench resnet50.onnx --fp16 --sweep-batch 1,8,32,64,128,256 --max-latency 10ms --json sweep.json
  $ tsrt bench model.onnx --no-cuda-graph       # launches one by one: the CUDA graph's saving is the difference`)
    .action(async (model: string, o: BenchOpts) => {
      const bo = buildOptions(o);
      if (o.sweepBatch) {
        if (isPlanFile(model)) throw new TsrtError('USAGE', `--sweep-batch builds an engine per batch size, ${model} is an engine file`, 'give the ONNX model');
        const sizes = parseBatches(o.sweepBatch);
        const maxLatencyMs = o.maxLatency ? parseLatency(o.maxLatency) : undefined;
        console.log(`${'batch'.padStart(6)} ${'median ms'.padStart(10)} ${'p99 ms'.padStart(10)} ${'inferences/s'.padStart(12)} ${'host ms'.padStart(10)}`);
        if (!bo.shapes) bo.shapes = testDataShapes(model);
        const r = await sweepBatch(loadModel(model), sizes, bo, { iterations: Number(o.iterations), warmup: Number(o.warmup), maxLatencyMs, log: console.log, modelPath: model });
        const clock = r.entries[0]?.clock === 'cuda-events' ? 'GPU time (CUDA events)' : 'host wall clock, CPU reference';
        if (r.best) console.log(`recommended batch: ${r.best.batch} (${r.best.throughput.toFixed(1)} inferences/s, median ${(r.best.gpu ?? r.best.host).median.toFixed(3)} ms${maxLatencyMs !== undefined ? ` <= ${maxLatencyMs} ms` : ''}; ${clock})`);
        else console.log(`no batch size meets --max-latency ${o.maxLatency}; the smallest, ${r.entries[0]?.batch}, took ${(r.entries[0]?.gpu ?? r.entries[0]?.host)?.median.toFixed(3)} ms`);
        if (o.json) writeFileSync(o.json, JSON.stringify({ model, dim: r.dim, maxLatencyMs, clock, recommended: r.best?.batch ?? null, entries: r.entries.map(({ times: _, ...e }) => e) }, null, 1));
        if (!r.best) process.exitCode = 1;
        return;
      }
      const { engine, plan } = await openEngine(model, bo, { printBuild, testDataShapes });
      try {
        const feeds = gatherInputs(engine, model, [], plan ? bo.shapes : undefined);
        const r = await benchEngine(engine, feeds, Number(o.iterations), Number(o.warmup));
        if (r.gpu) {
          console.log(`GPU time (CUDA events, ${engine.report.kernels} kernels${bo.cudaGraphs === false ? ', launched one by one' : ', one CUDA graph'}) over ${r.gpu.runs} runs: ${fmtStats(r.gpu)}`);
          console.log(`host time (Engine.run: upload, run, download) over ${r.host.runs} runs: ${fmtStats(r.host)}`);
        } else {
          console.log(`latency (host wall clock, CPU reference) over ${r.host.runs} runs: ${fmtStats(r.host)}`);
        }
        console.log(`throughput: ${r.throughput.toFixed(1)} inferences/s (batch ${r.batch})`);
        if (o.exportTimes) writeFileSync(o.exportTimes, JSON.stringify({ model, ...r }, null, 1));
        if (o.dumpProfile) {
          const prof = await engine.profile(feeds);
          if (prof) {
            const total = prof.reduce((a, p) => a + p.ms, 0);
            for (const p of [...prof].sort((a, b) => b.ms - a.ms).slice(0, 40)) console.log(`  ${p.ms.toFixed(4).padStart(9)} ms ${(100 * p.ms / total).toFixed(1).padStart(5)}%  ${p.op.padEnd(20)} ${p.layer}`);
          } else console.log('--dump-profile: no GPU, per-layer times are not measured on the CPU reference');
        }
      } finally { engine.dispose(); }
    });
}
