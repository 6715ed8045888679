// CUDA lowerings for each op: pick an emitter, bind its parameters. Shapes are static here.
import { attrFloat, attrInt, attrInts, attrString } from '../ops/attrs.js';
import { fromF64, size, strides, toF64 } from '../ir/tensor.js';
import type { Node } from '../ir/types.js';
import { emitElementwise, type EwProgram } from './elementwise.js';
import { ewExpr, EW_OPS } from './ew_ops.js';
import { broadcastView, contiguousView, transposeView, type View } from './indexing.js';
import { computeType } from './kernel.js';
import { NotLowerable, registerLowering, type LowerCtx } from './lower.js';
import { emitGather, emitPad } from './movement.js';
import './concat.js'; // Concat and tsrt::ConcatInPlace
import { emitPool, poolHeuristic, type PoolProblem } from './pool.js';
import { storageAlign } from './vector_io.js';
import { emitLayerNorm, emitReduce, emitSoftmax, reduceShape, type ReduceOp } from './reduce.js';

const normAxis = (a: number, r: number) => (a < 0 ? a + r : a);

/** One elementwise node as a one-step program. */
function lowerEw(ctx: LowerCtx): void {
  const { node } = ctx;
  const out = ctx.t(node.outputs[0]);
  const ins = node.inputs.map((x) => (x ? ctx.t(x) : undefined));
  const present = node.inputs.map((x, i) => ({ x, i })).filter((p) => p.x);
  const args: string[] = node.inputs.map(() => '');
  present.forEach((p, k) => { args[p.i] = `a${k}`; });
  const prog: EwProgram = {
    dims: out.dims,
    inputs: present.map((p) => ({ dtype: ins[p.i]!.dtype, view: broadcastView(ins[p.i]!.dims, out.dims) })),
    steps: [{ name: 'r', ctype: computeType(out.dtype), expr: ewExpr(node, args, { node, inDtypes: ins.map((t) => t?.dtype), outDtype: out.dtype }) }],
    outputs: [{ dtype: out.dtype, value: 'r' }],
  };
  if (!size(out.dims)) return;
  ctx.kernel(emitElementwise(prog, `ew_${node.op.toLowerCase()}`), [...present.map((p) => ctx.v(p.x)), ctx.v(node.outputs[0])]);
}

/** A copy of input 0 through a view into output 0 (Transpose, Slice, Expand). */
function lowerView(ctx: LowerCtx, view: View): void {
  const out = ctx.t(ctx.node.outputs[0]);
  const x = ctx.t(ctx.node.inputs[0]);
  if (!size(out.dims)) return;
  const prog: EwProgram = { dims: out.dims, inputs: [{ dtype: x.dtype, view }], steps: [], outputs: [{ dtype: out.dtype, value: 'a0' }] };
  ctx.kernel(emitElementwise(prog, `copy_${ctx.node.op.toLowerCase()}`), [ctx.v(ctx.node.inputs[0]), ctx.v(ctx.node.outputs[0])]);
}

for (const op of Object.keys(EW_OPS)) {
  if (op === 'Dropout') continue;
  registerLowering(op, {
    lower: lowerEw,
    check: (ctx) => (ctx.node.outputs.length > 1 && ctx.node.outputs.slice(1).some(Boolean) ? 'extra outputs' : undefined),
  });
}

for (const op of ['Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Identity', 'Dropout']) {
  registerLowering(op, {
    check: (ctx) => (ctx.node.outputs.slice(1).some(Boolean) ? 'mask output is not supported on the GPU' : undefined),
    lower: (ctx) => ctx.alias(ctx.node.outputs[0], ctx.node.inputs[0]),
  });
}

registerLowering('Transpose', (ctx) => {
  const x = ctx.t(ctx.node.inputs[0]);
  const perm = attrInts(ctx.node, 'perm') ?? x.dims.map((_, i) => x.dims.length - 1 - i);
  // moving only size-1 dims keeps the memory order: a reshape, no copy ([N,1,1,C] -> [N,C,1,1])
  const order = perm.filter((p) => x.dims[p] !== 1);
  if (order.every((p, i) => i === 0 || order[i - 1] < p)) { ctx.alias(ctx.node.outputs[0], ctx.node.inputs[0]); return; }
  lowerView(ctx, transposeView(x.dims, perm));
});

registerLowering('Expand', (ctx) => {
  const x = ctx.t(ctx.node.inputs[0]);
  lowerView(ctx, broadcastView(x.dims, ctx.t(ctx.node.outputs[0]).dims));
});

function constInput(ctx: LowerCtx, i: number, what: string): number[] | undefined {
  const name = ctx.node.inputs[i];
  if (!name) return undefined;
  const c = ctx.constOf(name);
  if (!c) throw new NotLowerable(`${what} input is not a build-time constant`);
  return Array.from(toF64(c));
}

registerLowering('Slice', (ctx) => {
  const x = ctx.t(ctx.node.inputs[0]);
  const r = x.dims.length;
  // the element count per axis comes from the inferred output shape, so `ends` needs no second look
  const starts = constInput(ctx, 1, 'starts')!;
  const axes = (constInput(ctx, 3, 'axes') ?? starts.map((_, i) => i)).map((a) => normAxis(a, r));
  const steps = constInput(ctx, 4, 'steps') ?? starts.map(() => 1);
  const st = strides(x.dims);
  const view: View = { strides: [...st], offset: 0 };
  axes.forEach((a, k) => {
    const d = x.dims[a], step = steps[k];
    let s = starts[k];
    if (s < 0) s += d;
    s = step > 0 ? Math.min(Math.max(s, 0), d) : Math.min(Math.max(s, -1), d - 1);
    view.offset += s * st[a];
    view.strides[a] = st[a] * step;
  });
  lowerView(ctx, view);
});

registerLowering('Split', (ctx) => {
  const x = ctx.t(ctx.node.inputs[0]);
  const axis = normAxis(attrInt(ctx.node, 'axis', 0), x.dims.length);
  const st = strides(x.dims);
  let off = 0;
  for (const o of ctx.node.outputs) {
    const t = ctx.t(o);
    if (size(t.dims)) {
      const prog: EwProgram = { dims: t.dims, inputs: [{ dtype: x.dtype, view: { strides: st, offset: off * st[axis] } }], steps: [], outputs: [{ dtype: x.dtype, value: 'a0' }] };
      ctx.kernel(emitElementwise(prog, 'split'), [ctx.v(ctx.node.inputs[0]), ctx.v(o)]);
    }
    off += t.dims[axis];
  }
});

registerLowering('Gather', (ctx) => {
  const x = ctx.t(ctx.node.inputs[0]), idx = ctx.t(ctx.node.inputs[1]);
  const axis = normAxis(attrInt(ctx.node, 'axis', 0), x.dims.length);
  if (!size(ctx.t(ctx.node.outputs[0]).dims)) return;
  ctx.kernel(emitGather({ dtype: x.dtype, dataDims: x.dims, nIdx: size(idx.dims), indexDtype: idx.dtype, axis }),
    [ctx.v(ctx.node.inputs[0]), ctx.v(ctx.node.inputs[1]), ctx.v(ctx.node.outputs[0])]);
});

registerLowering('Pad', (ctx) => {
  const x = ctx.t(ctx.node.inputs[0]);
  const r = x.dims.length;
  let pads = constInput(ctx, 1, 'pads')!;
  const value = constInput(ctx, 2, 'constant_value')?.[0] ?? 0;
  const axes = constInput(ctx, 3, 'axes');
  if (axes) {
    const full = new Array<number>(2 * r).fill(0);
    axes.forEach((a, k) => { const ax = normAxis(a, r); full[ax] = pads[k]; full[ax + r] = pads[k + axes.length]; });
    pads = full;
  }
  if (!size(ctx.t(ctx.node.outputs[0]).dims)) return;
  ctx.kernel(emitPad({ dtype: x.dtype, inDims: x.dims, pads, mode: attrString(ctx.node, 'mode', 'constant'), value }),
    [ctx.v(ctx.node.inputs[0]), ctx.v(ctx.node.outputs[0])]);
});

// ---- reductions ----
const REDUCE: Record<string, ReduceOp> = {
  ReduceSum: 'sum', ReduceMean: 'mean', ReduceMax: 'max', ReduceMin: 'min', ReduceProd: 'prod', ReduceL1: 'l1', ReduceL2: 'l2',
  ReduceLogSum: 'logsum', ReduceLogSumExp: 'logsumexp', ReduceSumSquare: 'sumsquare', ArgMax: 'argmax', ArgMin: 'argmin',
};

/** Reduces `axes` of input 0 into output 0, moving the axes to the end first when they are not contiguous. */
function lowerReduceAxes(ctx: LowerCtx, axes: number[], op: ReduceOp, selectLast = false): void {
  const x = ctx.t(ctx.node.inputs[0]), out = ctx.t(ctx.node.outputs[0]);
  if (!size(out.dims)) return;
  let src = ctx.node.inputs[0];
  let dims = x.dims;
  let shape = reduceShape(dims, axes);
  if (!shape) {
    const keep = dims.map((_, i) => i).filter((i) => !axes.includes(i));
    const perm = [...keep, ...axes];
    const tdims = perm.map((p) => dims[p]);
    const tmp = ctx.temp(x.dtype, tdims);
    ctx.kernel(emitElementwise({ dims: tdims, inputs: [{ dtype: x.dtype, view: transposeView(dims, perm) }], steps: [], outputs: [{ dtype: x.dtype, value: 'a0' }] }, 'reduce_perm'),
      [ctx.v(src), ctx.v(tmp)]);
    src = tmp; dims = tdims;
    shape = reduceShape(dims, axes.map((_, k) => keep.length + k))!;
  }
  ctx.kernel(emitReduce({ inDtype: x.dtype, outDtype: out.dtype, ...shape, op, selectLastIndex: selectLast }), [ctx.v(src), ctx.v(ctx.node.outputs[0])]);
}

for (const [op, rop] of Object.entries(REDUCE)) {
  registerLowering(op, (ctx) => {
    const x = ctx.t(ctx.node.inputs[0]);
    const r = x.dims.length;
    if (rop === 'argmax' || rop === 'argmin') {
      lowerReduceAxes(ctx, [normAxis(attrInt(ctx.node, 'axis', 0), r)], rop, attrInt(ctx.node, 'select_last_index', 0) === 1);
      return;
    }
    let axes = constInput(ctx, 1, 'axes');
    if (!axes || !axes.length) {
      if (attrInt(ctx.node, 'noop_with_empty_axes', 0)) { lowerView(ctx, contiguousView(x.dims)); return; }
      axes = x.dims.map((_, i) => i);
    }
    lowerReduceAxes(ctx, axes.map((a) => normAxis(a, r)), rop);
  });
}

const isNhwc = (ctx: LowerCtx) => ctx.node.domain === 'tsrt' || attrString(ctx.node, 'layout', 'NCHW') === 'NHWC';

for (const [op, kind] of [['GlobalAveragePool', 'mean'], ['GlobalMaxPool', 'max']] as const) {
  for (const domain of ['', 'tsrt']) registerLowering(op, (ctx) => {
    const r = ctx.t(ctx.node.inputs[0]).dims.length;
    const nhwc = isNhwc(ctx);
    const axes = nhwc ? Array.from({ length: r - 2 }, (_, i) => i + 1) : Array.from({ length: r - 2 }, (_, i) => i + 2);
    lowerReduceAxes(ctx, axes, kind);
  }, domain);
}

for (const [op, log] of [['Softmax', false], ['LogSoftmax', true]] as const) {
  registerLowering(op, (ctx) => {
    const x = ctx.t(ctx.node.inputs[0]);
    if (!size(x.dims)) return;
    const axis = normAxis(attrInt(ctx.node, 'axis', -1), x.dims.length);
    const outer = size(x.dims.slice(0, axis)), inner = size(x.dims.slice(axis + 1));
    ctx.kernel(emitSoftmax({ dtype: x.dtype, outer, axis: x.dims[axis], inner, log }), [ctx.v(ctx.node.inputs[0]), ctx.v(ctx.node.outputs[0])]);
  });
}

registerLowering('LayerNormalization', {
  check: (ctx) => (ctx.node.outputs.slice(1).some(Boolean) ? 'Mean/InvStdDev outputs are not produced on the GPU' : undefined),
  lower: (ctx) => {
    const x = ctx.t(ctx.node.inputs[0]);
    if (!size(x.dims)) return;
    const axis = normAxis(attrInt(ctx.node, 'axis', -1), x.dims.length);
    const cols = size(x.dims.slice(axis)), rows = size(x.dims.slice(0, axis));
    const scale = ctx.node.inputs[1], bias = ctx.node.inputs[2];
    if (size(ctx.t(scale).dims) !== cols || (bias && size(ctx.t(bias).dims) !== cols)) throw new NotLowerable('broadcast scale/bias');
    ctx.kernel(emitLayerNorm({ dtype: x.dtype, scaleDtype: ctx.t(scale).dtype, rows, cols, eps: attrFloat(ctx.node, 'epsilon', 1e-5), hasScale: true, hasBias: !!bias }),
      [ctx.v(ctx.node.inputs[0]), ctx.v(scale), bias ? ctx.v(bias) : { kind: 'null' }, ctx.v(ctx.node.outputs[0])]);
  },
});

// BatchNormalization (inference) = x * a + b with per-channel a, b folded at build time.
for (const domain of ['', 'tsrt']) registerLowering('BatchNormalization', {
  check: (ctx) => (ctx.node.outputs.slice(1).some(Boolean) ? 'training outputs' : ['scale', 'B', 'mean', 'var'].find((_, i) => !ctx.constOf(ctx.node.inputs[i + 1])) && 'non-constant statistics'),
  lower: (ctx) => {
    const x = ctx.t(ctx.node.inputs[0]);
    const [s, b, m, v] = [1, 2, 3, 4].map((i) => toF64(ctx.constOf(ctx.node.inputs[i])!));
    const eps = attrFloat(ctx.node, 'epsilon', 1e-5);
    const a = s.map((si, c) => si / Math.sqrt(v[c] + eps));
    const bb = b.map((bi, c) => bi - m[c] * a[c]);
    const nhwc = isNhwc(ctx);
    const cdim = nhwc ? x.dims.length - 1 : 1;
    const pdims = x.dims.map((d, i) => (i === cdim ? d : 1));
    const pa = ctx.addConst('a', fromF64('float32', pdims, a)), pb = ctx.addConst('b', fromF64('float32', pdims, bb));
    if (!size(x.dims)) return;
    const prog: EwProgram = {
      dims: x.dims,
      inputs: [{ dtype: x.dtype, view: contiguousView(x.dims) }, { dtype: 'float32', view: broadcastView(pdims, x.dims) }, { dtype: 'float32', view: broadcastView(pdims, x.dims) }],
      steps: [], outputs: [{ dtype: x.dtype, value: 'a0 * a1 + a2' }],
    };
    ctx.kernel(emitElementwise(prog, 'batchnorm'), [ctx.v(ctx.node.inputs[0]), ctx.v(pa), ctx.v(pb), ctx.v(ctx.node.outputs[0])]);
  },
}, domain);

for (const op of ['MaxPool', 'AveragePool']) for (const domain of ['', 'tsrt']) {
  registerLowering(op, {
    check: (ctx) => (ctx.node.outputs[1] ? 'MaxPool Indices output' : undefined),
    lower: (ctx) => {
      const x = ctx.t(ctx.node.inputs[0]), out = ctx.t(ctx.node.outputs[0]);
      if (!size(out.dims)) return;
      const nhwc = isNhwc(ctx);
      const sd = x.dims.length - 2;
      const inSp = nhwc ? x.dims.slice(1, -1) : x.dims.slice(2);
      const outSp = nhwc ? out.dims.slice(1, -1) : out.dims.slice(2);
      const kernel = attrInts(ctx.node, 'kernel_shape')!;
      const st = attrInts(ctx.node, 'strides', kernel.map(() => 1));
      const dil = attrInts(ctx.node, 'dilations', kernel.map(() => 1));
      const pads = resolvePads(ctx.node, inSp, outSp, kernel, st, dil);
      const p: PoolProblem = {
        dtype: x.dtype, kind: op === 'MaxPool' ? 'max' : 'avg', layout: nhwc ? 'NHWC' : 'NCHW', n: x.dims[0], c: nhwc ? x.dims[sd + 1] : x.dims[1],
        inSpatial: inSp, outSpatial: outSp, kernel, strides: st, padsBegin: pads.slice(0, sd), padsEnd: pads.slice(sd), dilations: dil,
        countIncludePad: attrInt(ctx.node, 'count_include_pad', 0) === 1,
      };
      // channels-last: packed loads/stores of up to 16 bytes of channels when C and the buffers' alignment allow
      const align = storageAlign(ctx, [ctx.node.inputs[0], ctx.node.outputs[0]]);
      ctx.kernel(emitPool(p, poolHeuristic(p, align)), [ctx.v(ctx.node.inputs[0]), ctx.v(ctx.node.outputs[0])]);
    },
  }, domain);
}

/** Explicit begin/end pads, resolving auto_pad the way ONNX does. */
export function resolvePads(node: Node, inSp: number[], outSp: number[], kernel: number[], st: number[], dil: number[]): number[] {
  const sd = inSp.length;
  const auto = attrString(node, 'auto_pad', 'NOTSET');
  if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') {
    const begin: number[] = [], end: number[] = [];
    for (let i = 0; i < sd; i++) {
      const total = Math.max(0, (outSp[i] - 1) * st[i] + (kernel[i] - 1) * dil[i] + 1 - inSp[i]);
      const small = Math.floor(total / 2);
      begin.push(auto === 'SAME_UPPER' ? small : total - small);
      end.push(auto === 'SAME_UPPER' ? total - small : small);
    }
    return [...begin, ...end];
  }
  if (auto === 'VALID') return new Array(2 * sd).fill(0);
  return attrInts(node, 'pads', new Array(2 * sd).fill(0));
}

// tsrt::Fused: an elementwise DAG (the `body` graph) becomes one kernel. Scalar constants become literals,
// other constants extra inputs; every member computes in registers, only the body outputs are stored.
registerLowering('Fused', (ctx) => {
  const { node } = ctx;
  const body = node.attrs.body;
  if (body?.kind !== 'graph') throw new NotLowerable('Fused node without a body graph');
  const g = body.value;
  const outDims = ctx.t(node.outputs[0]).dims;
  if (node.outputs.some((o) => ctx.t(o).dims.join() !== outDims.join())) throw new NotLowerable('Fused outputs of different shapes');
  if (!size(outDims)) return;
  const names = new Map<string, string>();
  const inputs: EwProgram['inputs'] = [];
  const args: ReturnType<LowerCtx['v']>[] = [];
  const dtypeOf = new Map<string, import('../ir/types.js').DType>();
  g.inputs.forEach((vi, k) => {
    const t = ctx.t(node.inputs[k]);
    names.set(vi.name, `a${inputs.length}`);
    dtypeOf.set(vi.name, t.dtype);
    inputs.push({ dtype: t.dtype, view: broadcastView(t.dims, outDims) });
    args.push(ctx.v(node.inputs[k]));
  });
  for (const [name, c] of g.initializers) {
    dtypeOf.set(name, c.dtype);
    if (size(c.dims) === 1) { names.set(name, scalarLiteral(toF64(c)[0], c.dtype)); continue; }
    const cname = ctx.addConst(`c_${inputs.length}`, c);
    names.set(name, `a${inputs.length}`);
    inputs.push({ dtype: c.dtype, view: broadcastView(c.dims, outDims) });
    args.push(ctx.v(cname));
  }
  const steps: EwProgram['steps'] = [];
  g.nodes.forEach((m, j) => {
    const outDtype = g.valueTypes.get(m.outputs[0])?.dtype ?? ctx.t(node.outputs[0]).dtype;
    const margs = m.inputs.map((x) => (x ? names.get(x) ?? (() => { throw new NotLowerable(`body value ${x} unknown`); })() : ''));
    const v = `t${j}`;
    steps.push({ name: v, ctype: computeType(outDtype), expr: ewExpr(m, margs, { node: m, inDtypes: m.inputs.map((x) => (x ? dtypeOf.get(x) : undefined)), outDtype }) });
    names.set(m.outputs[0], v);
    dtypeOf.set(m.outputs[0], outDtype);
  });
  const outputs = g.outputs.map((o, k) => ({ dtype: ctx.t(node.outputs[k]).dtype, value: names.get(o.name)! }));
  ctx.kernel(emitElementwise({ dims: outDims, inputs, steps, outputs }, 'fused'), [...args, ...node.outputs.map((o) => ctx.v(o))]);
}, 'tsrt');

function scalarLiteral(v: number, dtype: import('../ir/types.js').DType): string {
  if (computeType(dtype) !== 'float' && computeType(dtype) !== 'double') return `((${computeType(dtype)})${v}LL)`;
  if (Number.isNaN(v)) return 'NAN';
  if (!Number.isFinite(v)) return v > 0 ? 'INFINITY' : '(-INFINITY)';
  return `(${Math.fround(v).toPrecision(9)}f)`;
}
