// `tsrt build --accuracy-budget cosine>=0.999 [--calib-data DIR]`: the CLI side of runtime/budget.ts.
import type { Command } from 'commander';
import { TsrtError } from '../errors.js';
import { loadModel } from '../onnx/import.js';
import { buildWithBudget } from '../runtime/budget.js';
import type { BuildOptions, Engine } from '../runtime/engine.js';
import { fmt, parseBounds, type Metrics } from '../runtime/metrics.js';
import { gatherSamples, type SampleFlags } from './compare.js';

export interface BudgetFlags extends SampleFlags { accuracyBudget?: string; budgetMaxMoves?: string }

export function withBudgetOptions(c: Command): Command {
  return c
    .option('--accuracy-budget <bounds>', 'keep every output within these of fp32, moving the least tolerant layers back to fp32 until they hold: cosine>=0.999, top1>=0.99, sqnr>=30 (comma-separated)')
    .option('--calib-data <dir>', 'with --accuracy-budget: measure on batches of this folder (tsrt calibrate layout); default seeded random inputs')
    .option('--samples <n>', 'with --calib-data: at most this many batches', '8')
    .option('--budget-max-moves <n>', 'with --accuracy-budget: give up after moving this many layers (one rebuild each)', '32');
}

const brief = (m: Metrics) => `cosine ${fmt(m.cosine, 'frac')}, SQNR ${fmt(m.sqnrDb, 'db')} dB, top-1 ${fmt(m.top1, 'frac')}${m.nonFinite ? `, ${m.nonFinite} inf/nan` : ''}`;

/** Builds under the budget, prints what moved and why, and the speed cost. Sets exit code 1 when it fails. */
export async function buildWithBudgetCli(modelPath: string, bo: BuildOptions, o: BudgetFlags): Promise<Engine> {
  const bounds = parseBounds(o.accuracyBudget!);
  if (bo.profiles?.length) throw new TsrtError('USAGE', '--accuracy-budget with optimization profiles is not supported', 'build for one shape (--shapes) with the budget');
  const model = loadModel(modelPath);
  const { feeds, source } = await gatherSamples(modelPath, model, bo, o, 2);
  console.log(`accuracy budget ${bounds.map((b) => b.text).join(', ')} on every output, measured on ${source}`);
  const maxMoves = Number(o.budgetMaxMoves ?? 32);
  if (!Number.isInteger(maxMoves) || maxMoves < 0) throw new TsrtError('USAGE', `bad --budget-max-moves '${o.budgetMaxMoves}'`, 'a non-negative integer');
  const res = await buildWithBudget(model, bo, { budget: bounds, feeds, maxMoves, log: (m) => { if (process.env.TSRT_DEBUG) process.stderr.write(m + '\n'); } });
  for (const x of res.initial) console.log(`  before: ${x.name}: ${brief(x.metrics)}`);
  res.moves.forEach((m, i) => {
    const why = m.nonFinite ? `${m.nonFinite} inf/nan values (fp16 overflow), SQNR ${fmt(m.sqnrDb, 'db')} dB` : `SQNR ${fmt(m.sqnrDb, 'db')} dB from inputs at ${fmt(m.inputSqnrDb, 'db')} dB (drop ${fmt(m.dropDb, 'db')} dB)`;
    console.log(`  move ${i + 1}: ${m.layer} (${m.op}${m.nodes.length > 1 || m.nodes[0] !== m.layer ? `; nodes ${m.nodes.join(', ')}` : ''}) -> ${m.to}: ${why}`);
    for (const a of m.after ?? []) console.log(`          then ${a.name}: ${brief(a.metrics)}`);
  });
  if (res.met) {
    console.log(res.moves.length ? `  budget met after moving ${res.moves.length} layer(s)` : '  budget met with no layer moved');
    if (res.moves.length) console.log(`  to rebuild the same engine: --layer-precisions '${res.layerPrecisions.filter((r) => r.by !== 'op').map((r) => `${r.pattern}:${r.precision}`).join(',')}'`);
  } else {
    console.log(`  budget NOT met: ${res.reason}`);
    for (const x of res.final) console.log(`  final: ${x.name}: ${brief(x.metrics)}`);
    process.exitCode = 1;
  }
  if (res.timing) {
    const { beforeMs: b, afterMs: a } = res.timing;
    console.log(`  speed cost: ${b.toFixed(3)} ms -> ${a.toFixed(3)} ms per run (${a >= b ? '+' : ''}${((a / b - 1) * 100).toFixed(1)}%, GPU median)`);
  }
  for (const n of res.notes) console.log(`  note: ${n}`);
  return res.engine;
}
