// Reduced precision: run every node whose policy allows it in fp16 (storage fp16, kernels accumulate in
// fp32), keep `never` ops in fp32, and insert Casts only at the boundaries. Graph inputs and outputs keep
// their declared types.
import { nameGenerator } from '../ir/graph.js';
import { fromF64, toF64 } from '../ir/tensor.js';
import type { DType, Graph, Node } from '../ir/types.js';
import { getOp } from '../ops/registry.js';
import type { Pass } from './pass.js';

/** Inputs that are parameters of a fixed dtype by the ONNX spec and must not change type. */
const FIXED_INPUTS: Record<string, number[]> = {
  Resize: [1, 2], Upsample: [1], ConstantOfShape: [0], Reshape: [1], Expand: [1], Tile: [1], Slice: [1, 2, 3, 4],
  Pad: [1, 3], Range: [0, 1, 2], Gather: [1], Split: [1], Squeeze: [1], Unsqueeze: [1], ReduceSum: [1], ReduceMean: [1],
  ReduceMax: [1], ReduceMin: [1], ReduceProd: [1], ReduceL1: [1], ReduceL2: [1], ReduceLogSum: [1], ReduceLogSumExp: [1],
  ReduceSumSquare: [1], TopK: [1], Dropout: [1, 2],
  // BatchNorm statistics stay fp32: folding and the fused kernel read them in fp32
  BatchNormalization: [1, 2, 3, 4],
};

/** Ops whose output dtype is fixed by an attribute or that produce no float output. */
const KEEP_OUTPUT_TYPE = new Set(['Cast', 'Shape', 'Size', 'ArgMax', 'ArgMin', 'Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual',
  'Not', 'And', 'Or', 'Xor', 'IsNaN', 'IsInf', 'NonZero', 'QuantizeLinear', 'DynamicQuantizeLinear', 'ConstantOfShape', 'Constant']);

export function convertToFp16(g: Graph, lowDtype: DType = 'float16'): Graph {
  const fresh = nameGenerator(g);
  const types = g.valueTypes;
  const dtypeOf = (x: string): DType | undefined => g.initializers.get(x)?.dtype ?? types.get(x)?.dtype ?? g.inputs.find((i) => i.name === x)?.type.dtype;
  const inits = new Map(g.initializers);
  const nodes: Node[] = [];
  /** Current low-precision name of a value, cached so each conversion happens once. */
  const lowName = new Map<string, string>();
  const highName = new Map<string, string>();
  /** Values whose storage now is `lowDtype` (originally float32). */
  const isLow = new Set<string>();
  const cast = (x: string, to: DType): string => {
    const cache = to === lowDtype ? lowName : highName;
    if (cache.has(x)) return cache.get(x)!;
    const c = inits.get(x);
    let name: string;
    if (c) {
      name = fresh(`${x}_${to}`);
      inits.set(name, fromF64(to, c.dims, toF64(c)));
    } else {
      name = fresh(`${x}_${to}`);
      nodes.push({ name: fresh(`cast_${to}`), op: 'Cast', domain: '', inputs: [x], outputs: [name], attrs: { to: { kind: 'int', value: to === 'float16' ? 10 : to === 'bfloat16' ? 16 : 1 } } });
    }
    cache.set(x, name);
    if (to === lowDtype) isLow.add(name);
    return name;
  };
  for (const n of g.nodes) {
    const def = getOp(n.op, n.domain);
    const policy = def?.precision ?? 'never';
    const fixed = FIXED_INPUTS[n.op] ?? [];
    const runLow = policy !== 'never' && !Object.values(n.attrs).some((a) => a.kind === 'graph' || a.kind === 'graphs');
    const inputs = n.inputs.map((x, i) => {
      if (!x || fixed.includes(i)) return x;
      const cur = isLow.has(x) ? lowDtype : dtypeOf(x);
      if (runLow && cur === 'float32') return cast(x, lowDtype);
      if (!runLow && isLow.has(x)) return cast(x, 'float32');
      return x;
    });
    nodes.push({ ...n, inputs });
    if (runLow && !KEEP_OUTPUT_TYPE.has(n.op)) {
      // outputs that were float32 now hold lowDtype when any float input was converted
      const anyLow = inputs.some((x, i) => x && !fixed.includes(i) && (isLow.has(x) || dtypeOf(x) === lowDtype));
      if (anyLow) for (const o of n.outputs) if (o && types.get(o)?.dtype === 'float32') isLow.add(o);
    }
  }
  // Graph outputs keep their declared dtype: the producer writes a low-precision twin, a Cast restores it.
  const finalNodes = [...nodes];
  for (const o of g.outputs) {
    if (!isLow.has(o.name)) continue;
    const low = fresh(`${o.name}_low`);
    // the producer writes `low`; a Cast restores the declared name and dtype
    for (const m of finalNodes) {
      m.outputs = m.outputs.map((x) => (x === o.name ? low : x));
      m.inputs = m.inputs.map((x) => (x === o.name ? low : x));
    }
    finalNodes.push({ name: fresh('cast_output'), op: 'Cast', domain: '', inputs: [low], outputs: [o.name], attrs: { to: { kind: 'int', value: 1 } } });
  }
  return { ...g, nodes: finalNodes, initializers: inits, valueTypes: new Map() };
}

export const fp16Precision: Pass = {
  name: 'fp16', level: 0,
  run: (g, ctx) => (ctx.options.fp16 ? convertToFp16(g) : g),
};
