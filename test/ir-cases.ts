// Before/After pass tests in text IR (TVM Relax style). A case is a Before graph, the pass, and the Expected graph;
// both are compared after canonical renaming, and the CPU reference must give the same outputs before and after.
//
// Names: graph inputs and outputs keep their names; every other value is renamed %v0, %v1 ... (initializers %c0 ...)
// in the order a walk over the nodes first meets it, and node names are dropped. So the comparison is structural
// (alpha-equivalence): the fresh names a pass picks (`x_float16_0`, `conv1_fused`) are its own business and change
// without breaking tests, while the ops, their order, attributes, wiring and constant values must match exactly.
// Nested graphs (tsrt::Fused bodies) are renamed with the same map, so a body input stays tied to the outer value.
import { expect } from 'vitest';
import { parseGraph, printGraph } from '../src/ir/text.js';
import { inferShapes } from '../src/ir/infer.js';
import { verifyGraph } from '../src/ir/verify.js';
import { fromF64, isInt } from '../src/ir/tensor.js';
import type { Attr, Graph, Node, Tensor } from '../src/ir/types.js';
import '../src/ops/index.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { upgradeGraph } from '../src/onnx/import.js';
import { compareTensors } from '../src/cli/conformance.js';
import { newPassContext, runPasses, type Pass, type PassContext, type PassOptions } from '../src/passes/pass.js';
import { rng } from './helpers.js';

/** Text IR parsed, upgraded to the newest op forms and type-annotated, as the importer hands graphs to the pipeline. */
export const prep = (text: string): Graph => inferShapes(upgradeGraph(parseGraph(text))).graph;

/** Canonical text of a graph: alpha-renamed (see the header), node names dropped, every constant inline. */
export function canonical(g: Graph, opts: { types?: boolean } = {}): string {
  const keep = new Set([...g.inputs, ...g.outputs].map((v) => v.name));
  const map = new Map<string, string>();
  let nv = 0, nc = 0;
  const isInit = (x: string, gr: Graph) => gr.initializers.has(x);
  const name = (x: string, gr: Graph): string => {
    if (!x || keep.has(x)) return x;
    if (!map.has(x)) map.set(x, isInit(x, gr) ? `c${nc++}` : `v${nv++}`);
    return map.get(x)!;
  };
  const walk = (gr: Graph): void => {
    for (const i of gr.inputs) name(i.name, gr);
    for (const n of gr.nodes) {
      for (const x of n.inputs) name(x, gr);
      for (const a of Object.values(n.attrs)) {
        if (a.kind === 'graph') walk(a.value);
        if (a.kind === 'graphs') a.value.forEach(walk);
      }
      for (const o of n.outputs) name(o, gr);
    }
    for (const o of gr.outputs) name(o.name, gr);
    for (const k of gr.initializers.keys()) name(k, gr);
  };
  walk(g);
  const r = (x: string) => (x ? map.get(x) ?? x : x);
  const rebuild = (gr: Graph, top: boolean): Graph => {
    const nodes: Node[] = gr.nodes.map((n, i) => {
      const attrs: Record<string, Attr> = {};
      for (const [k, a] of Object.entries(n.attrs)) {
        attrs[k] = a.kind === 'graph' ? { kind: 'graph', value: rebuild(a.value, false) }
          : a.kind === 'graphs' ? { kind: 'graphs', value: a.value.map((b) => rebuild(b, false)) } : a;
      }
      return { ...n, name: `${n.op}_${i}`, inputs: n.inputs.map(r), outputs: n.outputs.map(r), attrs };
    });
    const num = (s: string) => Number(s.slice(1));
    const initializers = new Map([...gr.initializers].map(([k, t]) => [r(k), t] as [string, Tensor]).sort((a, b) => num(a[0]) - num(b[0])));
    return {
      ...gr, name: top ? gr.name : 'body', nodes, initializers,
      inputs: gr.inputs.map((v) => ({ ...v, name: r(v.name) })), outputs: gr.outputs.map((v) => ({ ...v, name: r(v.name) })),
      valueTypes: new Map([...gr.valueTypes].map(([k, t]) => [r(k), t])),
    };
  };
  return printGraph(rebuild(g, true), { inlineLimit: Infinity, types: opts.types ?? false });
}


/** Seeded random feeds for the graph's inputs: floats in [-2, 2), integers in [0, 3), booleans. Symbolic dims: 1. */
export function randomFeeds(g: Graph, seed = 1): Map<string, Tensor> {
  const r = rng(seed);
  return new Map(g.inputs.map((i) => {
    const dims = i.type.shape.map((d) => (typeof d === 'number' ? d : 1));
    const n = dims.reduce((a, b) => a * b, 1);
    const vals = Array.from({ length: n }, () => (i.type.dtype === 'bool' ? (r() < 0.5 ? 1 : 0) : isInt(i.type.dtype) ? Math.floor(r() * 3) : r() * 4 - 2));
    return [i.name, fromF64(i.type.dtype, dims, vals)];
  }));
}

/** CPU reference outputs of `after` equal those of `before` on the same random feeds (shaped for `after`). */
export function expectSameOutputs(before: Graph, after: Graph, tol = { rtol: 1e-5, atol: 1e-6 }, seed = 1): void {
  const feeds = randomFeeds(after, seed);
  const ref = runGraph(before, feeds);
  const got = runGraph(after, feeds);
  for (const o of before.outputs) {
    expect(got.has(o.name), `output ${o.name} missing after the pass`).toBe(true);
    expect(compareTensors(got.get(o.name)!, ref.get(o.name)!, tol.rtol, tol.atol), `output ${o.name}`).toBeUndefined();
  }
}

export interface PassCase {
  /** The pass (or a short list, e.g. a pass and the inference that follows it in the pipeline). */
  pass: Pass | Pass[];
  before: string;
  /** Expected text IR; omitted: the graph must come out unchanged. */
  after?: string;
  options?: Partial<PassOptions>;
  /** Compare value types too (passes whose job is types). */
  types?: boolean;
  tol?: { rtol: number; atol: number };
  /** Skip the numeric check (no inputs to vary, or a case about errors). */
  numeric?: boolean;
}

/** Runs one Before/After case; returns the rewritten graph and the pass context (fusions, rejections). */
export function checkPass(c: PassCase): { after: Graph; ctx: PassContext } {
  const before = prep(c.before);
  const ctx = newPassContext({ optLevel: 2, ...c.options });
  const snapshot = printGraph(before, { inlineLimit: Infinity });
  const after = runPasses(before, Array.isArray(c.pass) ? c.pass : [c.pass], ctx);
  expect(printGraph(before, { inlineLimit: Infinity }), 'the pass mutated its input graph').toBe(snapshot);
  expect(verifyGraph(after, { skipTypes: true })).toEqual([]);
  const want = c.after === undefined ? before : parseGraph(c.after);
  expect(canonical(after, { types: c.types })).toBe(canonical(want, { types: c.types }));
  if (c.numeric !== false) expectSameOutputs(before, after, c.tol);
  return { after, ctx };
}

/** The fusion-report entries of one pass, as `kind: reason` / `kind -> nodes`, for compact assertions. */
export const rejections = (ctx: PassContext, pass: string) => ctx.rejected.filter((r) => r.pass === pass).map((r) => `${r.kind}: ${r.reason}`);
export const fusions = (ctx: PassContext, pass: string) => ctx.fusions.filter((f) => f.pass === pass).map((f) => `${f.kind} [${f.nodes.join(', ')}]`);
