// `tsrt compare`: the engine in the requested precision against fp32 (the fp32 engine on the GPU, the CPU
// reference of the unoptimized model on the CPU backend), per output and with --per-layer per tensor of the
// optimized graph, pointing at the layer where accuracy drops. Logic in runtime/compare.ts.
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { TsrtError } from '../errors.js';
import type { Model, Tensor } from '../ir/types.js';
import { loadModel } from '../onnx/import.js';
import { openCalibrationData } from '../quant/data.js';
import { compareModel, type CompareResult } from '../runtime/compare.js';
import type { BuildOptions } from '../runtime/engine.js';
import { failedBounds, fmt, jsonNumbers, parseBounds } from '../runtime/metrics.js';
import { concreteShape, randomTensor, readTensor } from './io.js';
import { buildOptions, testDataShapes, withBuildOptions, type CommonOpts } from './main.js';

export interface SampleFlags { input?: string[]; calibData?: string; samples?: string }

/** Samples to measure on: --input files (one sample), --calib-data DIR (up to --samples batches), the model's
 * test_data_set_0, or seeded random data; sets bo.shapes from the data when --shapes was not given. */
export async function gatherSamples(modelPath: string, model: Model, bo: BuildOptions, o: SampleFlags, random = 1): Promise<{ feeds: Map<string, Tensor>[]; source: string }> {
  const inputs = model.graph.inputs;
  const fix = (feeds: Map<string, Tensor>) => { if (!bo.shapes) bo.shapes = Object.fromEntries([...feeds].map(([k, v]) => [k, v.dims])); };
  if (o.calibData) {
    const max = Number(o.samples ?? 8);
    if (!Number.isInteger(max) || max < 1) throw new TsrtError('USAGE', `bad --samples '${o.samples}'`, 'a positive integer');
    const out: Map<string, Tensor>[] = [];
    for await (const b of openCalibrationData(o.calibData, inputs).batches) { out.push(b.feeds); if (out.length >= max) break; }
    fix(out[0]);
    return { feeds: out, source: `${out.length} batch(es) of ${o.calibData}` };
  }
  if (o.input?.length) {
    const feeds = new Map<string, Tensor>();
    for (const s of o.input) {
      const i = s.indexOf('=');
      const [name, file] = i < 0 ? [inputs[0]?.name, s] : [s.slice(0, i), s.slice(i + 1)];
      feeds.set(name, readTensor(file));
    }
    const missing = inputs.filter((vi) => !feeds.has(vi.name) && !model.graph.initializers.has(vi.name));
    if (missing.length) throw new TsrtError('USAGE', `--input gives no data for ${missing.map((m) => `'${m.name}'`).join(', ')}`, 'pass --input name=file for every input');
    fix(feeds);
    return { feeds: [feeds], source: 'the --input files' };
  }
  if (!bo.shapes && !bo.dims) bo.shapes = testDataShapes(modelPath);
  const dir = join(dirname(modelPath), 'test_data_set_0');
  const test = new Map<string, Tensor>();
  inputs.forEach((vi, k) => { const f = join(dir, `input_${k}.pb`); if (existsSync(f)) test.set(vi.name, readTensor(f)); });
  if (test.size === inputs.length && inputs.length) return { feeds: [test], source: 'the model\'s test_data_set_0' };
  const feeds = Array.from({ length: random }, (_, s) => new Map(inputs.map((vi, k) => [vi.name, randomTensor(vi.type.dtype, concreteShape(vi, bo.shapes, bo.dims), 1000 * s + k + 1)])));
  return { feeds, source: `${random} set(s) of seeded random inputs (uniform in [-1, 1); real data measures better: --calib-data DIR or --input)` };
}

export function printComparison(res: CompareResult, engineDesc: string): void {
  console.log(`${engineDesc} (${res.backend}) vs ${res.reference}, ${res.samples} sample(s)`);
  const rows = res.outputs.map((o) => [o.name, o.dims.join('x'), fmt(o.metrics.maxAbs), fmt(o.metrics.meanAbs), fmt(o.metrics.cosine, 'frac'), fmt(o.metrics.sqnrDb, 'db'), fmt(o.metrics.top1, 'frac'), o.metrics.nonFinite ? String(o.metrics.nonFinite) : '']);
  table(['output', 'dims', 'max abs', 'mean abs', 'cosine', 'SQNR dB', 'top-1', 'inf/nan'], rows);
  if (!res.layers) return;
  console.log(`\nper layer, in execution order (drop = dB of SQNR the layer itself loses: its inputs' SQNR minus its output's):`);
  table(['#', 'layer', 'op', 'tensor', 'dtype', 'cosine', 'SQNR dB', 'drop dB', 'max abs', 'inf/nan'], res.layers.map((l, i) => [
    String(i), l.layer, l.op, l.tensor + (l.perm ? ` (${l.perm.join('')})` : ''), l.dtype, fmt(l.metrics.cosine, 'frac'), fmt(l.metrics.sqnrDb, 'db'),
    fmt(l.dropDb, 'db'), fmt(l.metrics.maxAbs), l.metrics.nonFinite ? String(l.metrics.nonFinite) : '']));
  const w = res.worst;
  if (w) {
    console.log(`\nlargest accuracy loss: layer '${w.layer}' (${w.op}${w.nodes.length > 1 || w.nodes[0] !== w.layer ? `, fused from ${w.nodes.join(', ')}` : ''}): `
      + `SQNR ${fmt(w.metrics.sqnrDb, 'db')} dB from inputs at ${fmt(w.inputSqnrDb, 'db')} dB${w.metrics.nonFinite ? `, ${w.metrics.nonFinite} inf/nan values (fp16 overflow?)` : ''}`);
    const movable = w.lowNodes;
    if (movable.length) console.log(`  to keep it in fp32: --layer-precisions '${movable.map((n) => `${n}:fp32`).join(',')}'`);
  }
  for (const n of res.notes) console.log(`note: ${n}`);
}

function table(head: string[], rows: string[][]): void {
  const w = head.map((h, i) => Math.min(60, Math.max(h.length, ...rows.map((r) => r[i].length))));
  const line = (r: string[]) => r.map((c, i) => (i >= 2 && i !== 3 ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ').trimEnd();
  console.log(line(head));
  for (const r of rows) console.log(line(r));
}

export function registerCompare(program: Command): void {
  withBuildOptions(program.command('compare').argument('<model>', 'ONNX model file'))
    .description('compare the engine (--fp16, --bf16, --int8, precision rules) with fp32 per output, and per layer with --per-layer')
    .option('--per-layer', 'also compare every tensor of the optimized graph (fusion unchanged) and name the layer that loses the most')
    .option('--input <name=file...>', 'input data (.pb or .npy); default: the model\'s test_data_set_0 or seeded random')
    .option('--calib-data <dir>', 'measure over batches of this folder (same layout as tsrt calibrate)')
    .option('--samples <n>', 'with --calib-data, at most this many batches', '8')
    .option('--json <file>', 'write every number (outputs, layers, skipped tensors) as JSON')
    .option('--check <bounds>', 'exit 1 unless every output meets these, e.g. cosine>=0.999,top1>=0.99,sqnr>=30')
    .addHelpText('after', `
Metrics: max/mean abs error, cosine similarity, SQNR = 10 log10(sum ref^2 / sum (ref - x)^2) dB, top-1 = share of
rows (last axis) whose argmax agrees. The reference is the fp32 engine on the same GPU; on the CPU backend, the
CPU reference of the unoptimized model. Per layer, NHWC tensors are transposed back before comparing.`)
    .action(async (modelPath: string, o: CommonOpts & SampleFlags & { perLayer?: boolean; json?: string; check?: string }) => {
      const bounds = o.check ? parseBounds(o.check, '--check') : undefined;
      const bo = buildOptions(o);
      const model = loadModel(modelPath);
      const { feeds, source } = await gatherSamples(modelPath, model, bo, o);
      console.log(`inputs: ${source}`);
      const res = await compareModel(model, { build: bo, feeds, perLayer: !!o.perLayer });
      const desc = `${bo.int8 ? 'int8' : bo.fp16 ? 'fp16' : bo.bf16 ? 'bf16' : 'fp32'} engine${bo.layerPrecisions?.length ? ` with ${bo.layerPrecisions.length} precision rule(s)` : ''}`;
      printComparison(res, desc);
      if (o.json) { writeFileSync(o.json, JSON.stringify({ model: modelPath, engine: desc, inputs: source, ...res }, jsonNumbers, 1)); console.log(`wrote ${o.json}`); }
      if (bounds) {
        const bad = res.outputs.flatMap((out) => failedBounds(out.metrics, bounds).map((b) => `${out.name}: ${b.text}`));
        console.log(bad.length ? `check FAILED: ${bad.join('; ')}` : `check passed: ${bounds.map((b) => b.text).join(', ')} on every output`);
        if (bad.length) process.exitCode = 1;
      }
    });
}
