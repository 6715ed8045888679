// compareModel(): an engine in reduced precision (fp16, int8, with precision rules) against a reference, per
// output and, with perLayer, per tensor of the optimized graph (Polygraphy's `--mark-outputs all` comparison,
// without changing the fusion). The reference is the fp32 engine on the GPU, and the CPU reference of the
// unoptimized model on the CPU backend. Per layer it finds where the error jumps: the tensor whose SQNR drops the
// most below that of the tensors it was computed from, which is what "which layer loses accuracy" asks.
import { TsrtError } from '../errors.js';
import { topoSort } from '../ir/graph.js';
import type { Graph, Model, Node, Tensor } from '../ir/types.js';
import { loadModel } from '../onnx/import.js';
import { getOp } from '../ops/registry.js';
import { fusedFrom, type PrecisionReport } from '../passes/precision_rules.js';
import { runGraph } from './cpu_executor.js';
import { build, type BuildOptions, type Engine } from './engine.js';
import { MetricAccumulator, type Metrics } from './metrics.js';

export interface OutputRow { name: string; dims: number[]; dtype: string; metrics: Metrics }

export interface LayerRow {
  /** Tensor of the optimized graph and the reference tensor it is compared with. */
  tensor: string;
  ref: string;
  /** Node of the optimized graph that produces it, and the ONNX nodes it was fused from. */
  layer: string;
  op: string;
  nodes: string[];
  /** Those of `nodes` that run in reduced precision (what a `name:fp32` rule would move back). */
  lowNodes: string[];
  dims: number[];
  dtype: string;
  /** Set when the tensor is in another layout (NHWC) and was transposed by this perm before comparing. */
  perm?: number[];
  metrics: Metrics;
  /** Lowest SQNR among the compared tensors this layer reads (inf for graph inputs and weights). */
  inputSqnrDb: number;
  /** inputSqnrDb - metrics.sqnrDb, both capped at what rounding to the tensor's dtype alone gives (sqnrCap): how
   * much accuracy this layer itself loses beyond storing its result. */
  dropDb: number;
}

export interface CompareResult {
  backend: 'cuda' | 'cpu';
  reference: string;
  samples: number;
  outputs: OutputRow[];
  layers?: LayerRow[];
  /** The layer with the largest SQNR drop (per-layer only). */
  worst?: LayerRow;
  /** Tensors of the engine that were not compared, with why (no reference tensor, other dims). */
  skipped?: { tensor: string; reason: string }[];
  notes: string[];
  /** The engine's precision decisions (which ONNX nodes run in reduced precision, which stay fp32 and why). */
  precision?: PrecisionReport;
}

/** SQNR that rounding to `dtype` alone gives (6.02 dB per mantissa bit + 1.76): fp16 ~68 dB, bf16 ~50, fp32 ~146.
 * Drops are measured below it, so storing fp16 (the input Cast, the first conv) is not "losing accuracy", and the
 * difference between 180 and 300 dB in fp32 says nothing about a layer. */
export function sqnrCap(dtype: string): number {
  const bits = dtype === 'float16' ? 11 : dtype === 'bfloat16' ? 8 : dtype === 'float64' ? 53 : 24;
  return 6.02 * bits + 1.76;
}

/** Reference values for each sample, computed once and reused (compare, and every rebuild of the budget). */
export interface Reference {
  description: string;
  /** Values by tensor name for sample i (all tensors when built for per-layer, else the outputs). */
  values(i: number): Promise<Map<string, Tensor>>;
  dispose(): void;
}

/** The build options without reduced precision (int8 and its scales, engineer B's options, dropped too). */
export function fp32Options(opts: BuildOptions): BuildOptions {
  const { fp16: _f, bf16: _b, layerPrecisions: _l, markOutputs: _m, ...rest } = opts;
  const out: BuildOptions = { ...rest, fp16: false };
  for (const k of ['int8', 'int8Scales']) delete (out as Record<string, unknown>)[k];
  return out;
}

/** The fp32 engine on CUDA, else the CPU reference of the unoptimized model; results are cached per sample. */
export async function makeReference(model: Model, opts: BuildOptions, feeds: Map<string, Tensor>[], backend: 'cuda' | 'cpu', perLayer: boolean): Promise<Reference> {
  const cache = new Map<number, Map<string, Tensor>>();
  if (backend === 'cuda') {
    const ref = await build(model, { ...fp32Options(opts), markOutputs: perLayer ? 'all' : undefined });
    return {
      description: 'fp32 engine (CUDA)',
      async values(i) {
        if (!cache.has(i)) cache.set(i, await ref.run(feeds[i]));
        return cache.get(i)!;
      },
      dispose: () => ref.dispose(),
    };
  }
  return {
    description: 'CPU reference of the unoptimized model (fp32)',
    async values(i) {
      if (!cache.has(i)) cache.set(i, runGraph(model.graph, feeds[i], { keepAll: perLayer }));
      return cache.get(i)!;
    },
    dispose: () => cache.clear(),
  };
}

const NAME_SUFFIX = /_(nhwc|low|float16|bfloat16)(_\d+)?$/;

/** The reference tensor a tensor of the optimized graph corresponds to, and the perm that brings it to the
 * reference's layout. NHWC copies made by the layout pass are named `<name>_nhwc_<n>`. */
function matchTensor(name: string, t: Tensor, ref: Map<string, Tensor>): { ref: string; perm?: number[] } | { reason: string } {
  let base = name;
  let nhwc = false;
  while (!ref.has(base) && NAME_SUFFIX.test(base)) {
    if (/_nhwc(_\d+)?$/.test(base)) nhwc = true;
    base = base.replace(NAME_SUFFIX, '');
  }
  const r = ref.get(base);
  if (!r) return { reason: 'no reference tensor (made by a pass)' };
  if (nhwc && t.dims.length === 4) {
    const perm = [0, 3, 1, 2];
    if (perm.map((p) => t.dims[p]).join() === r.dims.join()) return { ref: base, perm };
  }
  if (t.dims.join() === r.dims.join()) return { ref: base };
  const perms = permutations(t.dims, r.dims);
  if (perms.length === 1) return { ref: base, perm: perms[0] };
  return { reason: perms.length ? `dims ${t.dims.join('x')} map to ${r.dims.join('x')} in ${perms.length} ways (layout unknown)` : `dims ${t.dims.join('x')} differ from the reference's ${r.dims.join('x')}` };
}

/** Every perm p with from[p[i]] == to[i] (small ranks only). */
function permutations(from: number[], to: number[]): number[][] {
  if (from.length !== to.length || from.length > 6 || [...from].sort().join() !== [...to].sort().join()) return [];
  const out: number[][] = [];
  const go = (i: number, used: boolean[], acc: number[]) => {
    if (i === to.length) { out.push([...acc]); return; }
    for (let j = 0; j < from.length; j++) if (!used[j] && from[j] === to[i]) { used[j] = true; acc.push(j); go(i + 1, used, acc); acc.pop(); used[j] = false; }
  };
  go(0, from.map(() => false), []);
  return out;
}

function transpose(t: Tensor, perm: number[]): Tensor {
  const node: Node = { name: 'compare_transpose', op: 'Transpose', domain: '', inputs: ['x'], outputs: ['y'], attrs: { perm: { kind: 'ints', value: perm } } };
  return getOp('Transpose')!.cpu(node, [t], { opset: 17, runGraph: () => [] })[0];
}

/** dB lost between a layer's inputs and its output (both capped at `capDb`); overflow (-inf) after finite inputs
 * is an infinite drop. */
export function sqnrDrop(inputDb: number, ownDb: number, capDb = sqnrCap('float32')): number {
  const a = Math.min(inputDb, capDb), b = Math.min(ownDb, capDb);
  if (Number.isNaN(a) || Number.isNaN(b)) return 0;
  if (a === -Infinity) return 0; // already lost upstream
  return a - b;
}

/** Runs `engine` on every sample and compares with `reference`. The engine must have been built with
 * markOutputs: 'all' for perLayer. */
export async function measure(engine: Engine, reference: Reference, feeds: Map<string, Tensor>[], perLayer: boolean, outputNames: string[]): Promise<CompareResult> {
  const outAcc = new Map(outputNames.map((n) => [n, new MetricAccumulator()]));
  const layerAcc = new Map<string, { acc: MetricAccumulator; ref: string; perm?: number[] }>();
  const skipped = new Map<string, string>();
  const outInfo = new Map<string, Tensor>();
  for (let i = 0; i < feeds.length; i++) {
    const got = await engine.run(feeds[i]);
    const ref = await reference.values(i);
    for (const name of outputNames) {
      const x = got.get(name), r = ref.get(name);
      if (!x || !r) throw new TsrtError('USAGE', `output '${name}' is missing from the ${!x ? 'engine' : 'reference'}`, 'this is a tsrt bug: report it with the model');
      if (x.dims.join() !== r.dims.join()) throw new TsrtError('USAGE', `output '${name}' has dims ${x.dims.join('x')}, the reference ${r.dims.join('x')}`, 'this is a tsrt bug: report it with the model');
      outAcc.get(name)!.addTensors(x, r);
      outInfo.set(name, x);
    }
    if (!perLayer) continue;
    for (const [name, x] of got) {
      if (outAcc.has(name)) continue;
      let slot = layerAcc.get(name);
      if (!slot && !skipped.has(name)) {
        const m = matchTensor(name, x, ref);
        if ('reason' in m) skipped.set(name, m.reason);
        else layerAcc.set(name, slot = { acc: new MetricAccumulator(), ...m });
      }
      if (!slot) continue;
      slot.acc.addTensors(slot.perm ? transpose(x, slot.perm) : x, ref.get(slot.ref)!);
    }
  }
  const outputs = outputNames.map((name) => ({ name, dims: outInfo.get(name)?.dims ?? [], dtype: outInfo.get(name)?.dtype ?? '', metrics: outAcc.get(name)!.result() }));
  const result: CompareResult = { backend: engine.backend, reference: reference.description, samples: feeds.length, outputs, notes: [], precision: engine.passContext.precision };
  if (!perLayer) return result;
  // outputs are layers too (their producer may be where the error jumps)
  for (const o of outputNames) if (!layerAcc.has(o)) layerAcc.set(o, { acc: outAcc.get(o)!, ref: o });
  result.layers = layerRows(engine.graph, engine.passContext.fusions, layerAcc, new Set(engine.passContext.precision?.low ?? []));
  result.skipped = [...skipped].map(([tensor, reason]) => ({ tensor, reason }));
  result.worst = result.layers.reduce<LayerRow | undefined>((w, r) => (r.dropDb > (w?.dropDb ?? 0) ? r : w), undefined);
  if (result.skipped.length) result.notes.push(`${result.skipped.length} tensors not compared (made by passes, or dims without a reference); see skipped in --json`);
  return result;
}

function layerRows(g: Graph, fusions: Engine['passContext']['fusions'], acc: Map<string, { acc: MetricAccumulator; ref: string; perm?: number[] }>, low: Set<string>): LayerRow[] {
  const order = topoSort(g);
  const producer = new Map<string, Node>();
  for (const n of order) for (const o of n.outputs) if (o) producer.set(o, n);
  const results = new Map([...acc].map(([k, v]) => [k, v.acc.result()]));
  // effective SQNR of any tensor: its own where compared, else the worst of what it was computed from
  const eff = new Map<string, number>();
  const effSqnr = (x: string, depth = 0): number => {
    if (results.has(x)) return results.get(x)!.sqnrDb;
    if (eff.has(x)) return eff.get(x)!;
    const p = producer.get(x);
    let v = Infinity;
    if (p && depth < 64) for (const i of p.inputs) if (i) v = Math.min(v, effSqnr(i, depth + 1));
    eff.set(x, v);
    return v;
  };
  const rows: LayerRow[] = [];
  for (const n of order) {
    for (const o of n.outputs) {
      const slot = acc.get(o);
      if (!o || !slot) continue;
      const m = results.get(o)!;
      const inputSqnrDb = n.inputs.reduce((v, i) => (i ? Math.min(v, effSqnr(i)) : v), Infinity);
      const dtype = g.valueTypes.get(o)?.dtype ?? '';
      rows.push({
        tensor: o, ref: slot.ref, layer: n.name, op: n.domain && n.domain !== 'ai.onnx' ? `${n.domain}::${n.op}` : n.op,
        nodes: fusedFrom(fusions, n.name),
        // the report names nodes as the fp16 pass saw them (a Conv+BN folded before it is one node); rules take ONNX names
        lowNodes: [...new Set(fusedFrom(fusions, n.name, true).filter((x) => low.has(x)).flatMap((x) => fusedFrom(fusions, x)))],
        dims: g.valueTypes.get(o)?.shape.filter((d): d is number => typeof d === 'number') ?? [],
        dtype, perm: slot.perm, metrics: m, inputSqnrDb, dropDb: sqnrDrop(inputSqnrDb, m.sqnrDb, sqnrCap(dtype)),
      });
    }
  }
  return rows;
}

export interface CompareOptions {
  /** Options of the engine under test (fp16, precision rules, shapes, device ...). */
  build?: BuildOptions;
  /** One map of inputs per sample; metrics are accumulated over all of them. */
  feeds: Map<string, Tensor>[];
  perLayer?: boolean;
}

/** Builds the engine and its reference, runs both on the samples and compares. */
export async function compareModel(model: Model | string, opts: CompareOptions): Promise<CompareResult> {
  const m = typeof model === 'string' ? loadModel(model) : model;
  if (!opts.feeds.length) throw new TsrtError('USAGE', 'compareModel needs at least one sample of inputs', 'pass feeds: [new Map([[inputName, tensor]])]');
  const perLayer = !!opts.perLayer;
  const engine = await build(m, { ...opts.build, markOutputs: perLayer ? 'all' : undefined });
  const reference = await makeReference(m, opts.build ?? {}, opts.feeds, engine.backend, perLayer);
  try {
    const res = await measure(engine, reference, opts.feeds, perLayer, m.graph.outputs.map((o) => o.name));
    if (!opts.build?.fp16 && !opts.build?.bf16 && !(opts.build as Record<string, unknown> | undefined)?.int8) res.notes.push('the engine is fp32: differences are fusion and summation order only');
    return res;
  } finally {
    engine.dispose();
    reference.dispose();
  }
}
