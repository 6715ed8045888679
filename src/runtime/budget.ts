// Accuracy budget (issue 6 item 6): build in reduced precision, measure against fp32 on the user's data, and while
// the budget (`cosine>=0.999`, `top1>=0.99`, `sqnr>=30`, on every output) fails, move the least tolerant layer
// back to fp32 (int8 layers to fp16 first), rebuild and measure again.
//
// Sensitivity = the per-layer SQNR drop of `tsrt compare --per-layer` (dB lost between a layer's inputs and its
// output, on the engine as fused). We chose it over leave-one-out (rebuild with only layer L in fp32, measure the
// output gain) because it costs one build and one marked run per move instead of one build per layer per move
// (ResNet-50 has ~55 reduced-precision layers, BERT ~100), and it points straight at overflow (an inf output after
// finite inputs is an infinite drop). Its blind spot, a layer with a large local error that later layers
// absorb, costs at most an unneeded move; ranking again after every rebuild keeps it honest, since moving one
// layer changes the errors downstream. Rebuilds are cheap: the kernels of unchanged layers come from the NVRTC
// kernel cache.
import { TsrtError } from '../errors.js';
import type { Model, Tensor } from '../ir/types.js';
import { loadModel } from '../onnx/import.js';
import type { LayerPrecision, PrecisionRule } from '../passes/precision_rules.js';
import { fp32Options, makeReference, measure, type CompareResult, type LayerRow } from './compare.js';
import { build, type BuildOptions, type Engine } from './engine.js';
import { failedBounds, parseBounds, type Bound, type Metrics } from './metrics.js';

export interface BudgetOptions {
  /** Bounds every output must meet, e.g. 'cosine>=0.999' or parsed Bound[]. */
  budget: string | Bound[];
  /** Samples to measure on (calibration data, or seeded random inputs). */
  feeds: Map<string, Tensor>[];
  /** At most this many layers move back (default 32); each move is one rebuild. */
  maxMoves?: number;
  log?: (msg: string) => void;
}

export interface BudgetMove {
  /** Layer of the optimized graph and the ONNX nodes that moved with it. */
  layer: string;
  op: string;
  nodes: string[];
  to: LayerPrecision;
  /** Why: its numbers before the move. */
  sqnrDb: number;
  inputSqnrDb: number;
  dropDb: number;
  nonFinite: number;
  /** Output metrics measured after the move (filled by the next rebuild). */
  after?: { name: string; metrics: Metrics }[];
}

export interface BudgetResult {
  /** The engine with the moves applied (built without marked outputs). */
  engine: Engine;
  met: boolean;
  bounds: Bound[];
  /** Worst output before any move and at the end. */
  initial: { name: string; metrics: Metrics }[];
  final: { name: string; metrics: Metrics }[];
  moves: BudgetMove[];
  /** The rules the final engine was built with (the user's, then one fp32/fp16 rule per moved node). */
  layerPrecisions: PrecisionRule[];
  /** GPU time (median ms) of the engine without and with the moves; undefined on the CPU backend. */
  timing?: { beforeMs: number; afterMs: number };
  /** Why the budget failed, when it did. */
  reason?: string;
  notes: string[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Builds `model` with `opts` (fp16 / int8 ...) and moves layers back to higher precision until `budget` holds. */
export async function buildWithBudget(model: Model | string, opts: BuildOptions, budget: BudgetOptions): Promise<BudgetResult> {
  const m = typeof model === 'string' ? loadModel(model) : model;
  const bounds = typeof budget.budget === 'string' ? parseBounds(budget.budget) : budget.budget;
  const log = budget.log ?? (() => {});
  const maxMoves = budget.maxMoves ?? 32;
  if (!budget.feeds.length) throw new TsrtError('USAGE', 'the accuracy budget needs at least one sample of inputs', 'pass calibration data (--calib-data DIR) or let tsrt use seeded random inputs');
  if (!opts.fp16 && !opts.bf16 && !(opts as Record<string, unknown>).int8) {
    throw new TsrtError('USAGE', 'an accuracy budget needs a reduced-precision build', 'add --fp16 (or --bf16 / --int8 / --best): an fp32 engine has nothing to move back');
  }
  const outputs = m.graph.outputs.map((o) => o.name);
  const rules: PrecisionRule[] = [...(opts.layerPrecisions ?? [])];
  /** Precision each moved ONNX node was moved to. */
  const moved = new Map<string, LayerPrecision>();
  const moves: BudgetMove[] = [];
  const notes: string[] = [];
  let reference: Awaited<ReturnType<typeof makeReference>> | undefined;
  let initial: CompareResult | undefined;
  let cur: CompareResult;
  let reason: string | undefined;
  try {
    for (;;) {
      const marked = await build(m, { ...opts, layerPrecisions: [...rules], markOutputs: 'all' });
      reference ??= await makeReference(m, opts, budget.feeds, marked.backend, true);
      try {
        cur = await measure(marked, reference, budget.feeds, true, outputs);
      } finally { marked.dispose(); }
      initial ??= cur;
      if (moves.length) moves[moves.length - 1].after = outputsOf(cur);
      const failing = cur.outputs.map((o) => ({ o, bad: failedBounds(o.metrics, bounds) })).filter((x) => x.bad.length);
      log(`budget: ${moves.length} layers moved, ${failing.length ? `fails ${failing.map((f) => `${f.o.name} ${f.bad.map((b) => b.text).join(' ')}`).join('; ')}` : 'holds'}`);
      if (!failing.length) break;
      if (!moves.length) {
        // Can any amount of moving reach it? The fp32 engine is the ceiling (exact on the GPU, where it is also the
        // reference; within summation-order noise of the CPU reference otherwise). One build, and it saves up to
        // maxMoves rebuilds on a budget no precision mix can meet.
        const fp32 = await build(m, fp32Options(opts));
        let top: CompareResult;
        try { top = await measure(fp32, reference, budget.feeds, false, outputs); } finally { fp32.dispose(); }
        const out = top.outputs.map((o) => ({ o, bad: failedBounds(o.metrics, bounds) })).find((x) => x.bad.length);
        if (out) {
          reason = `out of reach: even the fp32 engine breaks ${out.bad.map((b) => b.text).join(', ')} on output '${out.o.name}' `
            + `(cosine ${out.o.metrics.cosine.toFixed(6)}, SQNR ${out.o.metrics.sqnrDb.toFixed(1)} dB, top-1 ${out.o.metrics.top1.toFixed(4)}); no layer was moved`;
          break;
        }
      }
      if (moves.length >= maxMoves) { reason = `still failing after moving ${moves.length} layers (maxMoves ${maxMoves})`; break; }
      const candidates = (cur.layers ?? [])
        // int8 layers (B's tsrt::QConv/QGemm) go to fp16 first, then like any fp16 layer to fp32
        .map((r) => ({ r, to: (INT8_OPS.has(r.op) ? 'fp16' : 'fp32') as LayerPrecision }))
        .map(({ r, to }) => ({ r, to, nodes: r.lowNodes.filter((n) => moved.get(n) !== 'fp32' && moved.get(n) !== to) }))
        .filter((c) => c.nodes.length)
        .sort((a, b) => rank(b.r) - rank(a.r));
      if (!candidates.length) { reason = `still failing with every reduced-precision layer moved back (${moves.length} moves): the budget is out of reach of this engine`; break; }
      const { r, nodes, to } = candidates[0];
      for (const n of nodes) { rules.push({ pattern: n, precision: to }); moved.set(n, to); }
      moves.push({ layer: r.layer, op: r.op, nodes, to, sqnrDb: r.metrics.sqnrDb, inputSqnrDb: r.inputSqnrDb, dropDb: r.dropDb, nonFinite: r.metrics.nonFinite });
      log(`budget: moving ${r.layer} (${r.op}) to ${to}: SQNR ${r.metrics.sqnrDb.toFixed(1)} dB after inputs at ${r.inputSqnrDb.toFixed(1)} dB`);
    }
  } catch (e) {
    reference?.dispose();
    throw e;
  }
  reference?.dispose();
  const engine = await build(m, { ...opts, layerPrecisions: rules });
  let timing: BudgetResult['timing'];
  if (engine.backend === 'cuda' && moves.length) {
    const before = await build(m, opts);
    try {
      const b = await before.time(budget.feeds[0], 50, 5);
      const a = await engine.time(budget.feeds[0], 50, 5);
      if (a && b) timing = { beforeMs: median(b), afterMs: median(a) };
    } finally { before.dispose(); }
  } else if (engine.backend === 'cpu' && moves.length) notes.push('speed cost not measured: the CPU backend runs the reference implementation, which says nothing about GPU time');
  return { engine, met: !reason, bounds, initial: outputsOf(initial!), final: outputsOf(cur!), moves, layerPrecisions: rules, timing, reason, notes };
}

const INT8_OPS = new Set(['tsrt::QConv', 'tsrt::QGemm']);

const outputsOf = (res: CompareResult) => res.outputs.map((o) => ({ name: o.name, metrics: o.metrics }));

/** Ranking key: overflow first (inf/nan where the reference is finite), then the SQNR drop. */
function rank(r: LayerRow): number {
  if (r.metrics.nonFinite > 0 && r.dropDb === Infinity) return Number.MAX_VALUE;
  return Number.isNaN(r.dropDb) ? -Infinity : r.dropDb;
}
