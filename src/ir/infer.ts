// Static shape and type inference over a whole graph, with symbolic dims (e.g. "batch") kept symbolic.
// Small constant subexpressions are evaluated on the CPU reference so that shape computations
// (Shape -> Gather -> Concat -> Reshape) resolve; symbolic ones propagate through `propagate` hooks.
import { GraphError, TsrtError, atNode } from '../errors.js';
import { getOp, type InferCtx } from '../ops/registry.js';
import { topoSort } from './graph.js';
import { fromF64, isInt, size, staticSize, toF64 } from './tensor.js';
import type { Dim, Graph, Tensor, TensorType } from './types.js';

/** Largest constant (in elements) that inference will compute on the CPU to resolve shapes. */
const FOLD_LIMIT = 4096;

export interface InferResult {
  graph: Graph;
  /** Values known at build time (initializers + small folded constants). */
  consts: Map<string, Tensor>;
}

export function inferShapes(g: Graph, outerTypes?: ReadonlyMap<string, TensorType>,
  outerConsts?: ReadonlyMap<string, Tensor>): InferResult {
  const types = new Map<string, TensorType>();
  for (const [k, v] of outerTypes ?? []) types.set(k, v);
  for (const [k, t] of g.initializers) types.set(k, { dtype: t.dtype, shape: [...t.dims] });
  for (const i of g.inputs) types.set(i.name, i.type);
  const consts = new Map([...(outerConsts ?? []), ...g.initializers]);
  const shapeVals = new Map<string, Dim[]>();
  const asShapeValue = (t: Tensor): Dim[] | undefined =>
    isInt(t.dtype) && t.dims.length <= 1 && t.data.length <= 64 ? Array.from(toF64(t)) : undefined;
  for (const [k, t] of consts) { const v = asShapeValue(t); if (v) shapeVals.set(k, v); }
  let sym = 0;
  const nodes = topoSort(g);
  for (const node of nodes) {
    const def = getOp(node.op, node.domain);
    if (!def) throw new GraphError(`op ${node.op} is not implemented`, node.name);
    const ins = node.inputs.map((x) => (x ? types.get(x) : undefined));
    const missing = node.inputs.findIndex((x, i) => x && !ins[i]);
    if (missing >= 0) {
      throw new GraphError(`input '${node.inputs[missing]}' is not produced by any node and is not a graph input or initializer`, node.name,
        'the model is malformed; check it with onnx.checker');
    }
    const ctx: InferCtx = {
      opset: g.opset,
      consts: node.inputs.map((x) => (x ? consts.get(x) : undefined)),
      shapeValues: node.inputs.map((x) => (x ? shapeVals.get(x) : undefined)),
      freshDim: () => `${node.name}_d${sym++}`,
      scope: { types, consts },
    };
    let outs: TensorType[];
    try {
      outs = def.infer(node, ins, ctx);
    } catch (e) {
      throw atNode(node.name, node.op, e);
    }
    node.outputs.forEach((o, k) => { if (o && outs[k]) types.set(o, outs[k]); });
    // Fold small all-constant nodes so later shape arithmetic sees values.
    const allConst = node.inputs.every((x, i) => !x || ctx.consts[i]) && !Object.values(node.attrs).some((a) => a.kind === 'graph' || a.kind === 'graphs');
    const small = outs.every((t) => t && t.shape.every((d) => typeof d === 'number') && size(t.shape as number[]) <= FOLD_LIMIT);
    if (allConst && small && node.op !== 'RandomNormal' && node.op !== 'RandomUniform') {
      try {
        const vals = def.cpu(node, ctx.consts, { opset: g.opset, runGraph: () => { throw new Error('no subgraphs here'); } });
        node.outputs.forEach((o, k) => {
          if (!o || !vals[k]) return;
          consts.set(o, vals[k]);
          const sv = asShapeValue(vals[k]);
          if (sv) shapeVals.set(o, sv);
        });
        continue;
      } catch (e) {
        if (e instanceof TsrtError) throw e;
        throw atNode(node.name, node.op, e);
      }
    }
    if (def.propagate) {
      const vs = def.propagate(node, ctx.shapeValues, ins);
      node.outputs.forEach((o, k) => {
        const v = vs[k];
        if (!o || !v) return;
        shapeVals.set(o, v);
        // A shape value with every dim known is a constant, so comparisons and casts on it fold too (exporters'
        // If conditions such as Size(Shape(x)) == 2 then pick their branch at build time).
        const t = outs[k];
        if (t && isInt(t.dtype) && v.every((d) => typeof d === 'number') && staticSize(t.shape) === v.length) {
          consts.set(o, fromF64(t.dtype, t.shape as number[], v as number[]));
        }
      });
    }
  }
  const valueTypes = new Map(g.valueTypes);
  for (const n of nodes) for (const o of n.outputs) if (o && types.has(o)) valueTypes.set(o, types.get(o)!);
  const outputs = g.outputs.map((o) => {
    const t = types.get(o.name);
    return t ? { name: o.name, type: mergeDeclared(o.type, t) } : o;
  });
  return { graph: { ...g, valueTypes, outputs }, consts };
}

/** Prefer inferred static dims, keep declared names where inference only knows '?'. */
function mergeDeclared(declared: TensorType, inferred: TensorType): TensorType {
  if (declared.shape.length !== inferred.shape.length) return inferred;
  return { dtype: inferred.dtype, shape: inferred.shape.map((d, i) => (typeof d === 'number' ? d : declared.shape[i] !== '?' ? declared.shape[i] : d)) };
}
