// Correctness and cleanup passes: shape specialization, inference, constant folding, dead-code elimination,
// and removal of no-op nodes.
import { GraphError, atNode } from '../errors.js';
import { consumers, implicitInputs, topoSort } from '../ir/graph.js';
import { inferShapes } from '../ir/infer.js';
import { size } from '../ir/tensor.js';
import type { Dim, Graph, Node, Tensor } from '../ir/types.js';
import { getOp } from '../ops/registry.js';
import type { Pass } from './pass.js';

/** Replaces symbolic input dims with concrete sizes (from options.shapes / options.dims, else 1). */
export const specializeShapes: Pass = {
  name: 'specialize-shapes', level: 0,
  run(g, ctx) {
    const byName = ctx.options.shapes ?? {};
    const dims = ctx.options.dims ?? {};
    const fixed = ctx.options.inputValues ?? {};
    const initializers = new Map(g.initializers);
    for (const [k, t] of Object.entries(fixed)) initializers.set(k, t);
    const inputs = g.inputs.filter((vi) => !fixed[vi.name]).map((vi) => {
      const given = byName[vi.name];
      if (given) {
        if (given.length !== vi.type.shape.length) {
          throw new GraphError(`shape [${given}] for input '${vi.name}' has rank ${given.length}, the model's input has rank ${vi.type.shape.length} ([${vi.type.shape}])`, undefined,
            `give ${vi.type.shape.length} dims`);
        }
        given.forEach((d, i) => {
          const want = vi.type.shape[i];
          if (typeof want === 'number' && want !== d) {
            throw new GraphError(`shape [${given}] for input '${vi.name}' conflicts with the model's fixed dim ${i} = ${want}`, undefined,
              'only symbolic (named) dims can be set');
          }
        });
        return { ...vi, type: { ...vi.type, shape: [...given] } };
      }
      const shape: Dim[] = vi.type.shape.map((d) => (typeof d === 'number' ? d : dims[d] ?? 1));
      return { ...vi, type: { ...vi.type, shape } };
    });
    return { ...g, inputs, initializers };
  },
};

/** Annotates every value with its inferred type. */
export const inferTypes: Pass = {
  name: 'infer-shapes', level: 0,
  run(g) { return inferShapes(g).graph; },
};

const MAX_FOLD_ELEMENTS = 1 << 26;

/** Evaluates nodes whose inputs are all constant on the CPU reference and turns their outputs into
 * initializers (shape subgraphs, weight transforms, BERT's mask arithmetic). */
export const foldConstants: Pass = {
  name: 'fold-constants', level: 0,
  run(g) {
    // Inference already evaluated small constant expressions and shape arithmetic on static shapes.
    const inits = new Map(inferShapes(g).consts);
    const nodes: Node[] = [];
    for (const n of topoSort(g)) {
      if (n.outputs.every((o) => !o || inits.has(o))) continue;
      const def = getOp(n.op, n.domain);
      const foldable = def && n.inputs.every((x) => !x || inits.has(x)) && !implicitInputs(n).length
        && !['RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike', 'Multinomial', 'Bernoulli'].includes(n.op);
      const outTypes = n.outputs.map((o) => g.valueTypes.get(o));
      const small = outTypes.every((t) => !t || t.shape.every((d) => typeof d === 'number') && size(t.shape as number[]) <= MAX_FOLD_ELEMENTS);
      if (!foldable || !small) { nodes.push(n); continue; }
      let outs: Tensor[];
      try {
        outs = def.cpu(n, n.inputs.map((x) => (x ? inits.get(x) : undefined)), {
          opset: g.opset, runGraph: () => { throw new Error('subgraph in folded node'); },
        });
      } catch (e) {
        throw atNode(n.name, n.op, e);
      }
      n.outputs.forEach((o, k) => { if (o && outs[k]) inits.set(o, outs[k]); });
    }
    return eliminateDeadCode({ ...g, nodes, initializers: inits });
  },
};

/** Drops nodes and initializers nothing reaches from the graph outputs. */
export function eliminateDeadCode(g: Graph): Graph {
  const live = new Set(g.outputs.map((o) => o.name));
  const keep: Node[] = [];
  const order = topoSort(g);
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i];
    if (!n.outputs.some((o) => live.has(o))) continue;
    keep.push(n);
    for (const x of [...n.inputs, ...implicitInputs(n)]) if (x) live.add(x);
  }
  keep.reverse();
  const initializers = new Map([...g.initializers].filter(([k]) => live.has(k)));
  return { ...g, nodes: keep, initializers };
}

export const deadCode: Pass = { name: 'dead-code', level: 0, run: eliminateDeadCode };

/** Removes Identity, inference Dropout and Casts to the same type by renaming their consumers' inputs. */
export const removeNoOps: Pass = {
  name: 'remove-noops', level: 1,
  run(g) {
    const rename = new Map<string, string>();
    const outputs = new Set(g.outputs.map((o) => o.name));
    const resolve = (x: string) => { while (rename.has(x)) x = rename.get(x)!; return x; };
    const nodes: Node[] = [];
    for (const n of g.nodes) {
      const src = n.inputs[0];
      const t = g.valueTypes.get(n.outputs[0]);
      const ts = src ? g.valueTypes.get(src) ?? (g.initializers.get(src) && { dtype: g.initializers.get(src)!.dtype }) : undefined;
      const noop = (n.op === 'Identity')
        || (n.op === 'Dropout' && (n.outputs.length < 2 || !n.outputs[1]))
        || (n.op === 'Cast' && t && ts && t.dtype === ts.dtype);
      if (noop && !outputs.has(n.outputs[0])) { rename.set(n.outputs[0], resolve(src)); continue; }
      nodes.push({ ...n, inputs: n.inputs.map((x) => (x ? resolve(x) : x)) });
    }
    return { ...g, nodes: renameInSubgraphs(nodes, resolve) };
  },
};

function renameInSubgraphs(nodes: Node[], resolve: (x: string) => string): Node[] {
  return nodes.map((n) => {
    if (!Object.values(n.attrs).some((a) => a.kind === 'graph' || a.kind === 'graphs')) return n;
    const attrs = { ...n.attrs };
    for (const [k, a] of Object.entries(attrs)) {
      if (a.kind === 'graph') attrs[k] = { kind: 'graph', value: renameGraph(a.value, resolve) };
      if (a.kind === 'graphs') attrs[k] = { kind: 'graphs', value: a.value.map((x) => renameGraph(x, resolve)) };
    }
    return { ...n, attrs };
  });
}

function renameGraph(g: Graph, resolve: (x: string) => string): Graph {
  const local = new Set([...g.initializers.keys(), ...g.inputs.map((i) => i.name), ...g.nodes.flatMap((n) => n.outputs)]);
  const r = (x: string) => (x && !local.has(x) ? resolve(x) : x);
  return {
    ...g,
    nodes: renameInSubgraphs(g.nodes.map((n) => ({ ...n, inputs: n.inputs.map(r) })), r),
    outputs: g.outputs.map((o) => ({ ...o, name: r(o.name) })),
  };
}

/** Consumers count helper for fusion passes. */
export function useCount(g: Graph): Map<string, number> {
  const m = new Map<string, number>();
  for (const [k, v] of consumers(g)) m.set(k, v.length);
  for (const o of g.outputs) m.set(o.name, (m.get(o.name) ?? 0) + 1);
  return m;
}
