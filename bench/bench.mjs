// GPU benchmark of tsrt engines (CUDA events around whole-engine replays), one JSON line per config.
//   node bench/bench.mjs <model.onnx> <batch,...> [--fp16] [--fp32] [--iters N] [--seq 128] [--json out.json]
//     [--opt-level N] [--timing-cache file | --no-timing-cache] [--tuning-budget-s S]   (autotuning at level 3+)
//     [--int8] [--int8-all]   int8 with each layer's precision chosen by timing at level 3+ (precision_timing.ts), and
//                             int8 with every calibrated layer int8 (--no-precision-timing), e.g. both with --fp16
//     [--pdl | --no-pdl | --pdl-ab]  programmatic dependent launches on / off (default: on); --pdl-ab times each config without and with
import { build } from '../dist/runtime/engine.js';
import { accuracy } from '../dist/cli/io.js';
import { loadModel, loadTensorFile } from '../dist/onnx/import.js';
import { makeTensor, size } from '../dist/ir/tensor.js';
import { randomInput, randomScales } from './random_scales.mjs';
import { dirname, join } from 'node:path';
import { writeFileSync, existsSync, readFileSync } from 'node:fs';

const [model, batches, ...rest] = process.argv.slice(2);
const flag = (f) => rest.includes(f);
const opt = (f, d) => { const i = rest.indexOf(f); return i >= 0 ? rest[i + 1] : d; };
const iters = Number(opt('--iters', 50));
const precisions = [flag('--fp32') ? 'fp32' : null, flag('--fp16') || (!flag('--fp32') && !flag('--int8') && !flag('--int8-all')) ? 'fp16' : null, flag('--int8') ? 'int8' : null, flag('--int8-all') ? 'int8_all' : null].filter(Boolean);
const isInt8 = (prec) => prec === 'int8' || prec === 'int8_all';
const out = opt('--json');
// [autotune] optimization level (3+: measured tile configs) and the timing cache
const tuneOpts = {
  optLevel: Number(opt('--opt-level', 2)),
  timingCache: flag('--no-timing-cache') ? false : opt('--timing-cache'),
  tuningBudgetMs: opt('--tuning-budget-s') === undefined ? undefined : Number(opt('--tuning-budget-s')) * 1000,
  log: process.env.TSRT_DEBUG ? (m) => process.stderr.write(m + '\n') : undefined,
};
// what precision by timing moved (int8 at level 3+): layers moved of those compared, the predicted saving
const precisionTiming = (t) => t && { moved: t.moved.length, compared: t.layers.length, predicted_saving_ms: +t.predicted.savingMs.toFixed(4),
  layers: t.layers.filter((l) => l.precision === 'fp16').map((l) => ({ layer: l.layer, int8_ms: +l.int8Ms.toFixed(4), fp16_ms: +l.fp16Ms.toFixed(4), conv_ms: +l.boundaryMs.toFixed(4) })),
  untimed: t.untimed.length || undefined, notes: t.notes.length ? t.notes : undefined };
const rows = out && existsSync(out) ? JSON.parse(readFileSync(out, 'utf8')) : [];
const m = loadModel(model);
// bench/export.py's batch-1 test set (PyTorch fp32 output), when present next to the model
const tdir = join(dirname(model), 'test_data_set_0');
const ref = existsSync(join(tdir, 'output_0.pb')) ? { x: loadTensorFile(join(tdir, 'input_0.pb')), y: loadTensorFile(join(tdir, 'output_0.pb')) } : undefined;
const vi = m.graph.inputs[0];
const int8Scales = precisions.some(isInt8) ? await randomScales(m) : undefined;
// --pdl / --no-pdl: programmatic dependent launches on / off (absent: the engine default, on unless TSRT_PDL=0);
// --pdl-ab: each config without, then with them
const pdlModes = flag('--pdl-ab') ? [false, true] : [flag('--pdl') ? true : flag('--no-pdl') ? false : undefined];
for (const prec of precisions) {
  for (const b of batches.split(',').map(Number)) for (const pdl of pdlModes) {
    const shape = vi.type.shape.map((d, i) => (i === 0 ? b : typeof d === 'number' ? d : 128));
    const t0 = performance.now();
    let engine, vsPytorch;
    try {
      engine = await build(m, { fp16: prec !== 'fp32', int8: isInt8(prec), int8Scales: isInt8(prec) ? int8Scales : undefined, precisionByTiming: prec !== 'int8_all', pdl, shapes: { [vi.name]: shape }, ...tuneOpts });
    } catch (e) { console.log(JSON.stringify({ model, prec, batch: b, error: String(e.message).split('\n')[0] })); continue; }
    const buildS = (performance.now() - t0) / 1000;
    const x = randomInput(vi, shape, 1);
    // the timed engine's accuracy: sample 0 of the batch is the exported test input, whose PyTorch fp32 output
    // (bench/export.py) its output row 0 is compared with; the other samples stay random
    if (ref && size(ref.x.dims) <= size(x.dims)) {
      x.data.set(ref.x.data.subarray(0, size(ref.x.dims)), 0);
      const y = (await engine.run({ [vi.name]: x })).get(engine.outputs[0].name);
      const n0 = size(ref.y.dims);
      const row0 = makeTensor(y.dtype, ref.y.dims, y.data.subarray(0, n0));
      const a = accuracy(row0, ref.y);
      // torchvision's ViT zero-initializes its head: a random-weight export has all-zero logits, nothing to compare
      vsPytorch = a.range === 0 ? { note: 'PyTorch output is all zeros' } : { cosine: +a.cosine.toFixed(6), argmax_same: a.argmaxMatch, max_abs: +a.maxAbs.toExponential(2) };
    }
    const times = (await engine.time({ [vi.name]: x }, iters, 10)).sort((a, c) => a - c);
    const med = times[Math.floor(times.length / 2)], p99 = times[Math.min(times.length - 1, Math.floor(times.length * 0.99))];
    const row = { model: model.split('/').slice(-2, -1)[0], prec, batch: b, pdl: engine.report.programmaticLaunches, median_ms: +med.toFixed(4), p99_ms: +p99.toFixed(4), per_s: +(b / med * 1000).toFixed(1),
      opt_level: tuneOpts.optLevel, tuning: engine.report.tuning && { timed: engine.report.tuning.timed, cached: engine.report.tuning.cached, heuristic: engine.report.tuning.heuristic, s: +(engine.report.tuning.ms / 1000).toFixed(1), warnings: engine.report.tuning.warnings.length ? engine.report.tuning.warnings : undefined },
      vs_pytorch: vsPytorch, precision_timing: precisionTiming(engine.report.precisionTiming), kernels: engine.report.kernels, host_steps: engine.report.hostSteps, build_s: +buildS.toFixed(2), compile_s: +(engine.report.compileMs / 1000).toFixed(2), arena_mib: +(engine.report.arenaBytes / 2 ** 20).toFixed(1) };
    if (flag('--profile')) {
      const prof = await engine.profile({ [vi.name]: x }, 5);
      const byOp = {};
      for (const p of prof) byOp[p.op] = (byOp[p.op] ?? 0) + p.ms;
      row.profile_ms = Object.fromEntries(Object.entries(byOp).sort((a, c) => c[1] - a[1]).map(([k, v]) => [k, +v.toFixed(3)]));
    }
    console.log(JSON.stringify(row));
    rows.push(row);
    if (out) writeFileSync(out, JSON.stringify(rows, null, 1));
    engine.dispose();
  }
}
