// CPU reference executor: runs a whole graph with each op's `cpu` implementation. It is the oracle for GPU
// tests, the fallback without a GPU, and the source of calibration statistics on small models.
import { GraphError, InputError, atNode } from '../errors.js';
import type { Graph, Model, Node, Tensor } from '../ir/types.js';
import { getOp, type CpuCtx } from '../ops/registry.js';
import { shapeStr } from '../ir/tensor.js';
import { implicitInputs, topoSort } from '../ir/graph.js';

export interface CpuRunOptions {
  /** Called after each node with its outputs (per-layer comparison, calibration statistics). */
  onNode?: (node: Node, outputs: Tensor[]) => void;
  /** Keep every intermediate value in the returned map. */
  keepAll?: boolean;
}

/** Checks feeds against the graph's declared inputs: every input present, dtype and known dims equal. */
export function checkFeeds(g: Graph, feeds: Map<string, Tensor>, source = 'model'): void {
  for (const vi of g.inputs) {
    const t = feeds.get(vi.name);
    if (!t) {
      throw new InputError(`${source}: input '${vi.name}' was not given`,
        `pass all inputs: ${g.inputs.map((i) => `${i.name} ${vi.type.dtype}${shapeStr(i.type.shape)}`).join(', ')}`);
    }
    if (t.dtype !== vi.type.dtype) {
      throw new InputError(`${source}: input '${vi.name}' is ${t.dtype}, the model expects ${vi.type.dtype}`,
        `convert the data to ${vi.type.dtype}`);
    }
    const want = vi.type.shape;
    const bad = want.length !== t.dims.length || want.some((d, i) => typeof d === 'number' && d !== t.dims[i]);
    if (want.length && bad) {
      throw new InputError(`${source}: input '${vi.name}' has shape ${shapeStr(t.dims)}, the model expects ${shapeStr(want)}`,
        'reshape the input to the expected shape (named dims may take any size)');
    }
  }
  const known = new Set(g.inputs.map((i) => i.name));
  for (const name of feeds.keys()) {
    if (!known.has(name) && !g.initializers.has(name)) {
      throw new InputError(`${source}: '${name}' is not an input of the model`,
        `inputs are: ${[...known].join(', ') || '(none)'}`);
    }
  }
}

/** Runs graph `g` given feeds. `outer` resolves names from enclosing graphs (If/Loop bodies). */
export function runGraph(g: Graph, feeds: Map<string, Tensor>, opts: CpuRunOptions = {},
  outer?: (name: string) => Tensor | undefined): Map<string, Tensor> {
  const values = new Map<string, Tensor>();
  for (const [k, v] of g.initializers) values.set(k, v);
  for (const [k, v] of feeds) values.set(k, v); // inputs may override initializers (IR < 4 defaults)
  const lookup = (name: string): Tensor | undefined => values.get(name) ?? outer?.(name);
  const order = topoSort(g);
  // Free intermediates after their last use so big models fit.
  const lastUse = new Map<string, number>();
  order.forEach((n, i) => { for (const x of n.inputs) lastUse.set(x, i); for (const x of implicitInputs(n)) lastUse.set(x, i); });
  const outputs = new Set(g.outputs.map((o) => o.name));
  const ctx: CpuCtx = {
    opset: g.opset,
    runGraph: (sub, subFeeds) => {
      const r = runGraph(sub, subFeeds, {}, lookup);
      return sub.outputs.map((o) => r.get(o.name)!);
    },
  };
  order.forEach((node, i) => {
    const def = getOp(node.op, node.domain);
    if (!def) throw new GraphError(`op ${node.domain ? node.domain + '::' : ''}${node.op} is not implemented`, node.name);
    const ins = node.inputs.map((name) => {
      if (!name) return undefined;
      const v = lookup(name);
      if (!v) throw new GraphError(`input '${name}' has no value (not produced by any node, not an initializer or input)`, node.name);
      return v;
    });
    let outs: Tensor[];
    try {
      outs = def.cpu(node, ins, ctx);
    } catch (e) {
      throw atNode(node.name, node.op, e);
    }
    node.outputs.forEach((name, k) => { if (name && outs[k]) values.set(name, outs[k]); });
    opts.onNode?.(node, outs);
    if (!opts.keepAll) {
      for (const x of node.inputs) {
        if (x && lastUse.get(x) === i && !outputs.has(x) && !g.initializers.has(x) && !feeds.has(x)) values.delete(x);
      }
    }
  });
  for (const o of g.outputs) {
    if (!lookup(o.name)) throw new GraphError(`graph output '${o.name}' was not computed`);
    if (!values.has(o.name)) values.set(o.name, lookup(o.name)!);
  }
  return values;
}

/** Runs a model on the CPU reference; returns outputs in graph order. */
export function runModelCpu(model: Model, feeds: Map<string, Tensor>, opts: CpuRunOptions = {}): Tensor[] {
  checkFeeds(model.graph, feeds, model.source);
  const values = runGraph(model.graph, feeds, opts);
  return model.graph.outputs.map((o) => values.get(o.name)!);
}
