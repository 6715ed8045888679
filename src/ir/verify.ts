// Graph verifier: the structural rules every pass must keep (SSA names, topological order, defined inputs and
// outputs, registered ops, acyclic) and, where the graph records value types, agreement with a fresh inference.
// Run it after each pass in debug builds and in pass tests; it reports every problem at once.
import { GraphError } from '../errors.js';
import { getOp } from '../ops/registry.js';
import { topoSort } from './graph.js';
import { inferShapes } from './infer.js';
import { shapeStr } from './tensor.js';
import type { Graph, Node, Tensor, TensorType } from './types.js';

export interface Problem {
  /** Path of the graph: `main`, `main/If_3.then_branch`, ... */
  graph: string;
  node?: string;
  message: string;
}

export interface VerifyOptions {
  /** Throw one GraphError listing every problem instead of returning them. */
  throwOnError?: boolean;
  /** Skip the comparison of recorded value types with a fresh inference. */
  skipTypes?: boolean;
}

export function verifyGraph(g: Graph, opts: VerifyOptions = {}): Problem[] {
  const problems: Problem[] = [];
  const path = g.name || 'main';
  checkStructure(g, path, new Set(), problems);
  // Inference needs a sound graph (it stops at the first dangling input), so types are checked only then.
  if (!problems.length && !opts.skipTypes) checkTypes(g, path, undefined, undefined, problems);
  if (opts.throwOnError && problems.length) {
    const lines = problems.map((p) => `  - ${p.graph}${p.node ? ` node '${p.node}'` : ''}: ${p.message}`);
    throw new GraphError(`graph '${g.name}' fails verification (${problems.length} problem(s)):\n${lines.join('\n')}`, undefined,
      'the pass (or model) that produced this graph broke an IR rule; dump the IR before and after it (TSRT_DEBUG) to find where');
  }
  return problems;
}

/** Names, order, ops and cycles of `g` and (recursively) its subgraphs; `outer` holds the names visible from
 * enclosing graphs at this graph's node. */
function checkStructure(g: Graph, path: string, outer: ReadonlySet<string>, problems: Problem[]): void {
  const report = (message: string, node?: string) => problems.push({ graph: path, node, message });
  // Names visible so far: enclosing scopes, then this graph's inputs and initializers, then node outputs in order.
  const defined = new Set<string>(outer);
  const local = new Map<string, string>();
  for (const i of g.inputs) {
    if (local.has(i.name)) report(`graph input '${i.name}' is listed twice`);
    local.set(i.name, 'a graph input');
    defined.add(i.name);
  }
  for (const name of g.initializers.keys()) {
    // An initializer may share its name with an input: it is that input's default (IR version < 4 models).
    if (local.has(name) && local.get(name) !== 'a graph input') report(`initializer '${name}' is defined twice`);
    local.set(name, 'an initializer');
    defined.add(name);
  }
  const producer = new Map<string, string>();
  for (const n of g.nodes) for (const o of n.outputs) if (o && !producer.has(o)) producer.set(o, n.name);

  const nodeNames = new Set<string>();
  const subgraphs: { graph: Graph; path: string; visible: Set<string> }[] = [];
  for (const n of g.nodes) {
    if (nodeNames.has(n.name)) report(`node name '${n.name}' is used by more than one node`, n.name);
    nodeNames.add(n.name);
    if (!getOp(n.op, n.domain)) report(`op ${n.domain ? n.domain + '::' : ''}${n.op} is not registered`, n.name);
    n.inputs.forEach((x, k) => {
      if (!x || defined.has(x)) return;
      const later = producer.get(x);
      report(later
        ? `input ${k} '${x}' is used before node '${later}' produces it (nodes must be in topological order)`
        : `input ${k} '${x}' is not produced by any node and is not a graph input, initializer or outer-scope value`, n.name);
    });
    forEachSubgraph(n, path, (sub, subPath) => subgraphs.push({ graph: sub, path: subPath, visible: new Set(defined) }));
    for (const o of n.outputs) {
      if (!o) continue;
      if (local.has(o)) report(`value '${o}' is produced more than once (already ${local.get(o)})`, n.name);
      else if (outer.has(o)) report(`value '${o}' shadows a value of an enclosing graph`, n.name);
      local.set(o, `an output of node '${n.name}'`);
      defined.add(o);
    }
  }
  for (const o of g.outputs) if (!defined.has(o.name)) report(`graph output '${o.name}' is never produced`);
  try {
    topoSort(g);
  } catch (e) {
    report((e as Error).message.split('\n')[0]);
  }
  for (const s of subgraphs) checkStructure(s.graph, s.path, s.visible, problems);
}

function forEachSubgraph(n: Node, path: string, fn: (g: Graph, path: string) => void): void {
  for (const [key, a] of Object.entries(n.attrs)) {
    if (a.kind === 'graph') fn(a.value, `${path}/${n.name}.${key}`);
    if (a.kind === 'graphs') a.value.forEach((sub, i) => fn(sub, `${path}/${n.name}.${key}[${i}]`));
  }
}

/** Recorded value types and declared outputs of `g` against a fresh inference, then the same for its subgraphs
 * with this graph's inferred types as their outer scope. */
function checkTypes(g: Graph, path: string, outerTypes: ReadonlyMap<string, TensorType> | undefined,
  outerConsts: ReadonlyMap<string, Tensor> | undefined, problems: Problem[]): void {
  const report = (message: string, node?: string) => problems.push({ graph: path, node, message });
  let r: ReturnType<typeof inferShapes>;
  try {
    r = inferShapes(g, outerTypes, outerConsts);
  } catch (e) {
    // A body that cannot be inferred on its own was already judged by its node's inference in the enclosing graph,
    // which fails if it matters (If tolerates one branch that is invalid for these shapes: dead at run time).
    if (!outerTypes) {
      const err = e as Error & { node?: string };
      report(`type inference fails: ${err.message.split('\n')[0]}`, err.node);
    }
    return;
  }
  const written = new Map<string, string>();
  for (const n of g.nodes) for (const o of n.outputs) if (o) written.set(o, n.name);
  for (const [name, declared] of g.valueTypes) {
    const inferred = written.has(name) ? r.graph.valueTypes.get(name) : undefined;
    const why = inferred && mismatch(declared, inferred);
    if (why) report(`recorded type of '${name}' is ${typeText(declared)} but inference gives ${typeText(inferred)} (${why})`, written.get(name));
  }
  r.graph.outputs.forEach((o, i) => {
    const why = mismatch(g.outputs[i].type, o.type);
    if (why) report(`graph output '${o.name}' is declared ${typeText(g.outputs[i].type)} but inference gives ${typeText(o.type)} (${why})`);
  });
  const types = new Map<string, TensorType>(outerTypes ?? []);
  for (const [k, t] of g.initializers) types.set(k, { dtype: t.dtype, shape: t.dims });
  for (const i of g.inputs) types.set(i.name, i.type);
  for (const [k, t] of r.graph.valueTypes) if (written.has(k)) types.set(k, t);
  for (const n of g.nodes) forEachSubgraph(n, path, (sub, subPath) => checkTypes(sub, subPath, types, r.consts, problems));
}

const typeText = (t: TensorType) => `${t.dtype}${shapeStr(t.shape)}`;

/** Why a recorded type `a` cannot describe the same value as inferred `b`, or undefined. Symbols match anything;
 * a recorded rank 0 is taken as "shape not recorded", which is how the importer reads a value_info without shape. */
function mismatch(a: TensorType, b: TensorType): string | undefined {
  if (a.dtype !== b.dtype) return 'element types differ';
  if (a.shape.length !== b.shape.length) return a.shape.length ? 'ranks differ' : undefined;
  const i = a.shape.findIndex((d, k) => typeof d === 'number' && typeof b.shape[k] === 'number' && d !== b.shape[k]);
  return i >= 0 ? `dim ${i} differs` : undefined;
}
