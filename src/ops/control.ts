// Control flow: If, Loop, Scan. Bodies are IR subgraphs: the CPU reference runs them through CpuCtx.runGraph,
// which resolves outer-scope names, and inference infers them in the enclosing scope (InferCtx.scope).
import { GraphError } from '../errors.js';
import { inferShapes } from '../ir/infer.js';
import { makeTensor, shapeStr, size, toF64 } from '../ir/tensor.js';
import type { Dim, Graph, Node, Tensor, TensorType } from '../ir/types.js';
import { attrGraph, attrInt, attrInts } from './attrs.js';
import { register, type InferCtx, type OpDef } from './registry.js';
import { need, normAxis } from './util.js';

function bodyGraph(node: Node, name: string): Graph {
  const g = attrGraph(node, name);
  if (!g) throw new GraphError(`${node.op} has no '${name}' graph attribute`, node.name, 'the attribute is required; re-export the model');
  return g;
}

/** A condition value: one element of any numeric type (ONNX declares bool), true when non-zero. */
function truth(node: Node, t: Tensor, what: string): boolean {
  if (t.data.length !== 1) {
    throw new GraphError(`${what} must hold exactly one element, got shape ${shapeStr(t.dims)}`, node.name,
      'pass a bool scalar or a 1-element tensor');
  }
  return toF64(t)[0] !== 0;
}

const boolScalar = (v: boolean): Tensor => makeTensor('bool', [], Uint8Array.of(v ? 1 : 0));

interface BodyTypes { outs: TensorType[]; consts: Map<string, Tensor> }

/** Output types of a body graph whose inputs have the given types, inferred with the enclosing scope visible.
 * Without scope information (a caller that infers one node alone) the body's declared output types are used. */
function inferBody(g: Graph, ctx: InferCtx, inputTypes?: TensorType[]): BodyTypes {
  if (!ctx.scope) return { outs: g.outputs.map((o) => o.type), consts: new Map() };
  // Declared body types describe the first iteration at best; with the real input types given, trust inference
  // (an empty declared shape makes inferShapes keep the inferred one).
  const typed: Graph = inputTypes ? {
    ...g,
    inputs: g.inputs.map((vi, i) => ({ name: vi.name, type: inputTypes[i] ?? vi.type })),
    outputs: g.outputs.map((o) => ({ name: o.name, type: { dtype: o.type.dtype, shape: [] } })),
  } : g;
  const r = inferShapes(typed, ctx.scope.types, ctx.scope.consts);
  return { outs: r.graph.outputs.map((o) => o.type), consts: r.consts };
}

/** Smallest type covering both: equal dims stay, differing dims become fresh symbols. Ranks that differ cannot be
 * expressed (the IR has no unknown-rank type), so the first type's rank is kept with every dim fresh. */
function unionType(node: Node, what: string, a: TensorType, b: TensorType, ctx: InferCtx): TensorType {
  if (a.dtype !== b.dtype) {
    throw new GraphError(`${what} is ${a.dtype} in one place and ${b.dtype} in the other`, node.name,
      'both must produce the same element type; insert a Cast');
  }
  if (a.shape.length !== b.shape.length) return { dtype: a.dtype, shape: a.shape.map(() => ctx.freshDim()) };
  return { dtype: a.dtype, shape: a.shape.map((d, i) => (d === b.shape[i] ? d : ctx.freshDim())) };
}

// ---- pure-data helpers: take one index along an axis, stack slices along a new axis ----

function copyRange(dst: Tensor['data'], dOff: number, src: Tensor['data'], sOff: number, n: number): void {
  if (Array.isArray(dst)) { for (let i = 0; i < n; i++) dst[dOff + i] = (src as string[])[sOff + i]; return; }
  (dst as Float32Array).set((src as Float32Array).subarray(sOff, sOff + n), dOff);
}

/** t[..., i, ...] at `axis`, with that axis removed. */
function takeAlong(t: Tensor, axis: number, i: number): Tensor {
  const dims = t.dims.filter((_, k) => k !== axis);
  const outer = size(t.dims.slice(0, axis)), inner = size(t.dims.slice(axis + 1)), len = t.dims[axis];
  const out = makeTensor(t.dtype, dims);
  for (let o = 0; o < outer; o++) copyRange(out.data, o * inner, t.data, (o * len + i) * inner, inner);
  return out;
}

/** Stacks equally shaped tensors along a new axis. */
function stackAlong(node: Node, what: string, ts: Tensor[], axis: number): Tensor {
  const first = ts[0];
  for (const t of ts) {
    if (t.dtype !== first.dtype || t.dims.length !== first.dims.length || t.dims.some((d, k) => d !== first.dims[k])) {
      throw new GraphError(`${what} is ${first.dtype}${shapeStr(first.dims)} in one iteration and ${t.dtype}${shapeStr(t.dims)} in another`,
        node.name, 'scan outputs must keep one shape across iterations');
    }
  }
  const dims = [...first.dims.slice(0, axis), ts.length, ...first.dims.slice(axis)];
  const outer = size(first.dims.slice(0, axis)), inner = size(first.dims.slice(axis));
  const out = makeTensor(first.dtype, dims);
  ts.forEach((t, k) => {
    for (let o = 0; o < outer; o++) copyRange(out.data, (o * ts.length + k) * inner, t.data, o * inner, inner);
  });
  return out;
}

/** A zero-length scan output: the body's declared element shape (unknown dims as 0) with 0 inserted at `axis`. */
function emptyScan(type: TensorType, axis: number): Tensor {
  const dims = type.shape.map((d) => (typeof d === 'number' ? d : 0));
  dims.splice(axis, 0, 0);
  return makeTensor(type.dtype, dims);
}

// ---- If ----

/** Reason a node lacks one of its required body graphs, or undefined. */
const needsGraphs = (...names: string[]) => (node: Node): string | undefined => {
  const missing = names.filter((n) => node.attrs[n]?.kind !== 'graph');
  return missing.length ? `${node.op} needs the graph attribute(s) ${missing.join(', ')}` : undefined;
};

const ifOp: OpDef = {
  op: 'If', since: 1, precision: 'follow',
  supports: needsGraphs('then_branch', 'else_branch'),
  infer(node, _ins, ctx) {
    const thenG = bodyGraph(node, 'then_branch'), elseG = bodyGraph(node, 'else_branch');
    if (thenG.outputs.length !== elseG.outputs.length) {
      throw new GraphError(`then_branch has ${thenG.outputs.length} outputs, else_branch ${elseG.outputs.length}`, node.name,
        'both branches must produce the same number of outputs');
    }
    if (node.outputs.length > thenG.outputs.length) {
      throw new GraphError(`If has ${node.outputs.length} outputs but its branches produce ${thenG.outputs.length}`, node.name);
    }
    // A condition known at build time picks one branch exactly (shape-dependent If nodes from exporters).
    const c = ctx.consts[0];
    if (c) return inferBody(truth(node, c, 'cond') ? thenG : elseG, ctx).outs;
    // A branch that cannot be inferred would fail at run time too (exporters keep branches that are only valid
    // for other input shapes, e.g. Silero's 8 kHz path under a 16 kHz shape), so a successful run takes the other.
    const tryBody = (g: Graph): TensorType[] | Error => {
      try { return inferBody(g, ctx).outs; } catch (e) { return e as Error; }
    };
    const a = tryBody(thenG), b = tryBody(elseG);
    if (a instanceof Error && b instanceof Error) throw a;
    if (a instanceof Error) return b as TensorType[];
    if (b instanceof Error) return a;
    return a.map((t, k) => unionType(node, `output ${k} of the branches`, t, b[k], ctx));
  },
  cpu(node, ins, ctx) {
    const branch = truth(node, need(node, ins, 0), 'cond') ? 'then_branch' : 'else_branch';
    return ctx.runGraph(bodyGraph(node, branch), new Map());
  },
};

// ---- Loop ----

interface LoopShape { n: number; k: number }

function loopShape(node: Node, g: Graph): LoopShape {
  const n = node.inputs.length - 2;
  if (n < 0) throw new GraphError('Loop needs inputs M and cond (either may be empty)', node.name);
  if (g.inputs.length !== n + 2) {
    throw new GraphError(`Loop body has ${g.inputs.length} inputs, expected ${n + 2} (iteration_num, cond, ${n} loop-carried)`, node.name);
  }
  const k = g.outputs.length - 1 - n;
  if (k < 0) throw new GraphError(`Loop body has ${g.outputs.length} outputs, expected at least ${n + 1} (cond, ${n} loop-carried)`, node.name);
  if (node.outputs.length > n + k) throw new GraphError(`Loop has ${node.outputs.length} outputs, its body yields ${n + k}`, node.name);
  return { n, k };
}

const loopOp: OpDef = {
  op: 'Loop', since: 1, precision: 'follow',
  supports: needsGraphs('body'),
  infer(node, ins, ctx) {
    const g = bodyGraph(node, 'body');
    const { n } = loopShape(node, g);
    const bodyIns = (carried: TensorType[]): TensorType[] =>
      [{ dtype: 'int64', shape: [] }, { dtype: 'bool', shape: [] }, ...carried];
    let carried = ins.slice(2).map((_, j) => need(node, ins, 2 + j));
    let r = inferBody(g, ctx, bodyIns(carried));
    // Loop-carried values may change shape between iterations; widen once to the union and infer again.
    const widened = carried.map((t, j) => unionType(node, `loop-carried value ${j}`, t, r.outs[1 + j], ctx));
    if (widened.some((t, j) => t.shape.some((d, i) => d !== carried[j].shape[i]))) {
      carried = widened;
      r = inferBody(g, ctx, bodyIns(carried));
    }
    const trips = tripCount(node, g, ctx, r);
    const scans = r.outs.slice(1 + n).map((t) => ({ dtype: t.dtype, shape: [trips, ...t.shape] }));
    return [...carried, ...scans];
  },
  cpu(node, ins, ctx) {
    const g = bodyGraph(node, 'body');
    const { n, k } = loopShape(node, g);
    const maxTrips = ins[0] ? toF64(ins[0])[0] : Infinity;
    let cond: Tensor = ins[1] ?? boolScalar(true);
    let carried = ins.slice(2).map((_, j) => need(node, ins, 2 + j));
    const scans: Tensor[][] = Array.from({ length: k }, () => []);
    // The body's cond output always decides the next iteration, also when the cond input is omitted: the ONNX
    // reference implementation and ONNX Runtime both do so.
    for (let i = 0; i < maxTrips && truth(node, cond, 'the loop condition'); i++) {
      const feeds = new Map<string, Tensor>();
      const iter = makeTensor('int64', [], BigInt64Array.of(BigInt(i)));
      [iter, cond, ...carried].forEach((t, j) => { if (g.inputs[j].name) feeds.set(g.inputs[j].name, t); });
      const outs = ctx.runGraph(g, feeds);
      cond = outs[0];
      carried = outs.slice(1, 1 + n);
      outs.slice(1 + n).forEach((t, j) => scans[j].push(t));
    }
    return [...carried, ...scans.map((ts, j) =>
      (ts.length ? stackAlong(node, `scan output ${j}`, ts, 0) : emptyScan(g.outputs[1 + n + j].type, 0)))];
  },
};

/** Trip count when it is known at build time: M constant and the loop cannot stop early. */
function tripCount(node: Node, g: Graph, ctx: InferCtx, r: BodyTypes): Dim {
  const m = ctx.consts[0];
  const condIn = ctx.consts[1];
  const condOut = g.outputs[0].name;
  const bodyCond = r.consts.get(condOut);
  const neverStops = (!node.inputs[1] || (condIn && toF64(condIn)[0] !== 0))
    && ((bodyCond && toF64(bodyCond)[0] !== 0) || condOut === g.inputs[1].name);
  return m && neverStops ? toF64(m)[0] : ctx.freshDim();
}

// ---- Scan (opset 9+) ----

/** Scan attributes; input axes normalized, output axes raw (their rank is known only once the body has run). */
interface ScanAttrs { n: number; m: number; k: number; inAxes: number[]; inDirs: number[]; outAxes: number[]; outDirs: number[] }

function scanAttrs(node: Node, g: Graph, inRanks: number[]): ScanAttrs {
  const m = attrInt(node, 'num_scan_inputs');
  if (m === undefined || m < 1 || m > node.inputs.length) {
    throw new GraphError(`Scan needs num_scan_inputs between 1 and ${node.inputs.length}, got ${m}`, node.name);
  }
  const n = node.inputs.length - m;
  if (g.inputs.length !== n + m) throw new GraphError(`Scan body has ${g.inputs.length} inputs, expected ${n + m}`, node.name);
  const k = g.outputs.length - n;
  if (k < 0) throw new GraphError(`Scan body has ${g.outputs.length} outputs, expected at least ${n} state values`, node.name);
  const list = (name: string, len: number) => {
    const v = attrInts(node, name, new Array<number>(len).fill(0));
    if (v.length !== len) throw new GraphError(`${name} has ${v.length} entries, expected ${len}`, node.name);
    return v;
  };
  const inAxes = list('scan_input_axes', m).map((a, i) => normAxis(a, inRanks[i], node));
  return { n, m, k, inAxes, outAxes: list('scan_output_axes', k), inDirs: list('scan_input_directions', m), outDirs: list('scan_output_directions', k) };
}

const scanOp: OpDef = {
  op: 'Scan', since: 9, precision: 'follow',
  supports(node, opset) {
    if (opset < 9) return 'Scan-8 (batch axis and sequence_lens input) is not supported; convert the model to opset 9 or newer';
    return needsGraphs('body')(node);
  },
  infer(node, ins, ctx) {
    const g = bodyGraph(node, 'body');
    const n0 = node.inputs.length - attrInt(node, 'num_scan_inputs', 0);
    const xs = ins.slice(n0).map((_, i) => need(node, ins, n0 + i));
    const a = scanAttrs(node, g, xs.map((t) => t.shape.length));
    const slices = xs.map((t, i) => ({ dtype: t.dtype, shape: t.shape.filter((_, d) => d !== a.inAxes[i]) }));
    let states = ins.slice(0, a.n).map((_, j) => need(node, ins, j));
    let r = inferBody(g, ctx, [...states, ...slices]);
    const widened = states.map((t, j) => unionType(node, `state value ${j}`, t, r.outs[j], ctx));
    if (widened.some((t, j) => t.shape.some((d, i) => d !== states[j].shape[i]))) {
      states = widened;
      r = inferBody(g, ctx, [...states, ...slices]);
    }
    const len = xs[0].shape[a.inAxes[0]];
    const scans = r.outs.slice(a.n).map((t, j) => {
      const shape = [...t.shape];
      shape.splice(normAxis(a.outAxes[j], shape.length + 1, node), 0, len);
      return { dtype: t.dtype, shape };
    });
    return [...states, ...scans];
  },
  cpu(node, ins, ctx) {
    const g = bodyGraph(node, 'body');
    const n0 = node.inputs.length - attrInt(node, 'num_scan_inputs', 0);
    const xs = ins.slice(n0).map((_, i) => need(node, ins, n0 + i));
    const a = scanAttrs(node, g, xs.map((t) => t.dims.length));
    const len = xs[0].dims[a.inAxes[0]];
    xs.forEach((t, i) => {
      if (t.dims[a.inAxes[i]] !== len) {
        throw new GraphError(`scan input ${i} has length ${t.dims[a.inAxes[i]]} along axis ${a.inAxes[i]}, scan input 0 has ${len}`,
          node.name, 'all scan inputs must have the same sequence length');
      }
    });
    let states = ins.slice(0, a.n).map((_, j) => need(node, ins, j));
    const scans: Tensor[][] = Array.from({ length: a.k }, () => []);
    for (let t = 0; t < len; t++) {
      const feeds = new Map<string, Tensor>();
      states.forEach((v, j) => feeds.set(g.inputs[j].name, v));
      xs.forEach((x, i) => feeds.set(g.inputs[a.n + i].name, takeAlong(x, a.inAxes[i], a.inDirs[i] ? len - 1 - t : t)));
      const outs = ctx.runGraph(g, feeds);
      states = outs.slice(0, a.n);
      outs.slice(a.n).forEach((v, j) => scans[j].push(v));
    }
    return [...states, ...scans.map((ts, j) => {
      if (!ts.length) {
        const type = g.outputs[a.n + j].type;
        return emptyScan(type, normAxis(a.outAxes[j], type.shape.length + 1, node));
      }
      const axis = normAxis(a.outAxes[j], ts[0].dims.length + 1, node);
      return stackAlong(node, `scan output ${j}`, a.outDirs[j] ? [...ts].reverse() : ts, axis);
    })];
  },
};

register(ifOp, loopOp, scanOp);
