// Graph queries and builders shared by passes, executors and codegen. Graphs are treated as immutable:
// helpers here return new graphs.
import { GraphError } from '../errors.js';
import type { Graph, Node } from './types.js';

/** Nodes in a topological order, stable with respect to the original order. Names produced by no node
 * (graph inputs, initializers, outer-scope values) are ready from the start. */
export function topoSort(g: Graph): Node[] {
  const producer = new Map<string, number>();
  g.nodes.forEach((n, i) => n.outputs.forEach((o) => { if (o) producer.set(o, i); }));
  const indeg = new Array<number>(g.nodes.length).fill(0);
  const users = new Map<number, number[]>();
  g.nodes.forEach((n, i) => {
    const deps = new Set<number>();
    for (const x of [...n.inputs, ...implicitInputs(n)]) {
      const p = x ? producer.get(x) : undefined;
      if (p !== undefined && p !== i) deps.add(p);
    }
    indeg[i] = deps.size;
    for (const p of deps) { if (!users.has(p)) users.set(p, []); users.get(p)!.push(i); }
  });
  // A min-heap keeps the original order where possible; graphs are usually already sorted, so a
  // simple sorted ready list is enough.
  const ready: number[] = [];
  indeg.forEach((d, i) => { if (d === 0) ready.push(i); });
  const out: Node[] = [];
  while (ready.length) {
    ready.sort((a, b) => b - a);
    const i = ready.pop()!;
    out.push(g.nodes[i]);
    for (const u of users.get(i) ?? []) if (--indeg[u] === 0) ready.push(u);
  }
  if (out.length !== g.nodes.length) {
    const stuck = g.nodes.filter((_, i) => indeg[i] > 0).map((n) => n.name).slice(0, 5);
    throw new GraphError(`graph '${g.name}' has a cycle through node(s) ${stuck.join(', ')}`, undefined,
      'ONNX graphs must be acyclic; re-export the model');
  }
  return out;
}

/** Outer-scope names used inside a node's subgraphs (If/Loop bodies capture values by name). */
export function implicitInputs(n: Node): string[] {
  const names: string[] = [];
  // `enclosing`: names defined by the subgraphs around `g` inside this node (nested If/Loop bodies see them)
  const visit = (g: Graph, enclosing: Set<string>) => {
    const local = new Set<string>([...enclosing, ...g.initializers.keys(), ...g.inputs.map((i) => i.name), ...g.nodes.flatMap((x) => x.outputs)]);
    for (const m of g.nodes) {
      for (const x of m.inputs) if (x && !local.has(x)) names.push(x);
      for (const a of Object.values(m.attrs)) {
        if (a.kind === 'graph') visit(a.value, local);
        if (a.kind === 'graphs') a.value.forEach((sg) => visit(sg, local));
      }
    }
    for (const o of g.outputs) if (!local.has(o.name)) names.push(o.name);
  };
  for (const a of Object.values(n.attrs)) {
    if (a.kind === 'graph') visit(a.value, new Set());
    if (a.kind === 'graphs') a.value.forEach((sg) => visit(sg, new Set()));
  }
  return [...new Set(names)];
}

/** Map from value name to the nodes that read it. */
export function consumers(g: Graph): Map<string, Node[]> {
  const m = new Map<string, Node[]>();
  for (const n of g.nodes) {
    for (const x of new Set([...n.inputs, ...implicitInputs(n)])) {
      if (!x) continue;
      if (!m.has(x)) m.set(x, []);
      m.get(x)!.push(n);
    }
  }
  return m;
}

/** Map from value name to the node that writes it. */
export function producers(g: Graph): Map<string, Node> {
  const m = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) if (o) m.set(o, n);
  return m;
}

/** A fresh-name generator that avoids every name already used in the graph. */
export function nameGenerator(g: Graph): (hint: string) => string {
  const taken = new Set<string>([
    ...g.initializers.keys(), ...g.inputs.map((i) => i.name), ...g.outputs.map((o) => o.name),
    ...g.nodes.flatMap((n) => [n.name, ...n.outputs]),
  ]);
  let k = 0;
  return (hint: string) => {
    let name: string;
    do name = `${hint}_${k++}`; while (taken.has(name));
    taken.add(name);
    return name;
  };
}
