// Internal ops (domain 'tsrt') that the fusion passes emit and the CUDA lowering consumes. Each CPU reference is
// composed from the ONNX ops' own CPU references, so a fused graph computes what the nodes it replaced did.
import { GraphError } from '../errors.js';
import { inferShapes } from '../ir/infer.js';
import { fromF64 } from '../ir/tensor.js';
import type { Attr, Dim, Node, Tensor, TensorType } from '../ir/types.js';
import { attrFloat, attrFloats, attrGraph, attrInt, attrString, withoutAttrs } from './attrs.js';
import { getOp, register, type CpuCtx, type InferCtx } from './registry.js';
import { broadcastShapes, need, transposeTensor } from './util.js';

/** Epilogue activations of FusedConv and FusedGemm; `activation_params` per kind:
 * Clip [min, max] (±Infinity or ±FLT_MAX or beyond = unbounded), LeakyRelu [alpha], HardSigmoid [alpha, beta]. */
export const ACTIVATIONS = ['none', 'Relu', 'Clip', 'LeakyRelu', 'Sigmoid', 'HardSigmoid', 'HardSwish', 'Silu', 'GeluErf', 'GeluTanh', 'Tanh'] as const;
export type Activation = (typeof ACTIVATIONS)[number];

/** Attributes FusedConv/FusedGemm add on top of the ONNX op's own. */
export const EPILOGUE_ATTRS = ['activation', 'activation_params', 'residual_before_act', 'layout'];

const FLT_MAX = 3.4028234663852886e38;

/** Runs one ONNX op's CPU reference on host tensors (a throwaway node carries the attributes). */
export function runOnnxOp(op: string, ins: (Tensor | undefined)[], ctx: CpuCtx, attrs: Record<string, Attr> = {}, minOpset = 13): Tensor {
  const def = getOp(op);
  if (!def) throw new GraphError(`op ${op} has no CPU reference, and a fused op needs it`);
  const node: Node = { name: `fused_ref_${op}`, op, domain: '', inputs: ins.map((t, i) => (t ? `in${i}` : '')), outputs: ['out'], attrs };
  return def.cpu(node, ins, { ...ctx, opset: Math.max(ctx.opset, minOpset) })[0];
}

/** y = act(t) with the ONNX ops' semantics (Silu = x*Sigmoid(x); Gelu forms through the opset-20 Gelu op when
 * registered, else through Erf/Tanh as PyTorch exports them). */
export function applyActivation(t: Tensor, act: string, params: readonly number[], ctx: CpuCtx): Tensor {
  const s = (v: number) => fromF64(t.dtype, [], [v]);
  const f = (v: number): Attr => ({ kind: 'float', value: v });
  switch (act) {
    case 'none': return t;
    case 'Relu': case 'Sigmoid': case 'Tanh': case 'HardSwish': return runOnnxOp(act, [t], ctx, {}, 14);
    case 'LeakyRelu': return runOnnxOp(act, [t], ctx, { alpha: f(params[0] ?? 0.01) });
    case 'HardSigmoid': return runOnnxOp(act, [t], ctx, { alpha: f(params[0] ?? 0.2), beta: f(params[1] ?? 0.5) });
    case 'Clip': {
      const lo = params[0] ?? -Infinity, hi = params[1] ?? Infinity;
      return runOnnxOp('Clip', [t, lo > -FLT_MAX ? s(lo) : undefined, hi < FLT_MAX ? s(hi) : undefined], ctx);
    }
    case 'Silu': return runOnnxOp('Mul', [t, runOnnxOp('Sigmoid', [t], ctx)], ctx);
    case 'GeluErf': case 'GeluTanh': {
      const approximate = act === 'GeluTanh' ? 'tanh' : 'none';
      if (getOp('Gelu')) return runOnnxOp('Gelu', [t], ctx, { approximate: { kind: 'string', value: approximate } }, 20);
      const op = (name: string, ...xs: Tensor[]) => runOnnxOp(name, xs, ctx);
      const inner = act === 'GeluErf'
        ? op('Erf', op('Div', t, s(Math.SQRT2)))
        : op('Tanh', op('Mul', s(Math.sqrt(2 / Math.PI)), op('Add', t, op('Mul', s(0.044715), op('Pow', t, s(3))))));
      return op('Mul', op('Mul', t, s(0.5)), op('Add', s(1), inner));
    }
    default:
      throw new GraphError(`unknown fused activation '${act}'`, undefined, `use one of ${ACTIVATIONS.join(', ')}`);
  }
}

/** Permutation from channels-last [N, spatial..., C] to channels-first [N, C, spatial...], and back. */
const toChannelsFirst = (rank: number) => [0, rank - 1, ...Array.from({ length: rank - 2 }, (_, i) => i + 1)];
const toChannelsLast = (rank: number) => [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2), 1];
const permuteType = (t: TensorType, perm: number[]): TensorType => ({ dtype: t.dtype, shape: perm.map((p) => t.shape[p]) });

function sameDims(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i] || typeof d !== 'number' || typeof b[i] !== 'number');
}

function checkActivation(node: Node): string | undefined {
  const act = attrString(node, 'activation', 'none');
  if (!(ACTIVATIONS as readonly string[]).includes(act)) return `activation '${act}' is not one of ${ACTIVATIONS.join(', ')}`;
  return undefined;
}

/** Shared epilogue: Z added before or after the activation. */
function epilogue(node: Node, y: Tensor, Z: Tensor | undefined, ctx: CpuCtx): Tensor {
  const act = attrString(node, 'activation', 'none');
  const params = attrFloats(node, 'activation_params', []);
  const before = attrInt(node, 'residual_before_act', 1) !== 0;
  let out = y;
  if (Z && before) out = runOnnxOp('Add', [out, Z], ctx);
  out = applyActivation(out, act, params, ctx);
  if (Z && !before) out = runOnnxOp('Add', [out, Z], ctx);
  return out;
}

function checkResidual(node: Node, y: TensorType, z: TensorType | undefined): void {
  if (z && !sameDims(y.shape, z.shape)) {
    throw new GraphError(`residual Z has shape [${z.shape}], the result has shape [${y.shape}]`, node.name,
      'Z must have exactly the shape of the output (in the node\'s layout)');
  }
}

function subCtx(ctx: InferCtx, n: number): InferCtx {
  return { ...ctx, consts: ctx.consts.slice(0, n), shapeValues: ctx.shapeValues.slice(0, n) };
}

// ---- tsrt::FusedConv (X, W, B?, Z?) ---------------------------------------------------------------------

const convNode = (node: Node): Node => ({ ...withoutAttrs(node, EPILOGUE_ATTRS), op: 'Conv', domain: '', inputs: node.inputs.slice(0, 3) });
const isNhwc = (node: Node) => attrString(node, 'layout', 'NCHW') === 'NHWC';

function convDef(): NonNullable<ReturnType<typeof getOp>> {
  const def = getOp('Conv');
  if (!def) throw new GraphError('op Conv has no implementation, and FusedConv needs it');
  return def;
}

// ---- tsrt::FusedGemm (A, B, C?, Z?) ---------------------------------------------------------------------

const gemmNode = (node: Node): Node => ({ ...withoutAttrs(node, EPILOGUE_ATTRS), op: 'Gemm', domain: '', inputs: node.inputs.slice(0, 3) });

function gemmCore(node: Node, A: Tensor, B: Tensor, C: Tensor | undefined, ctx: CpuCtx): Tensor {
  if (A.dims.length === 2) return runOnnxOp('Gemm', [A, B, C], ctx, gemmNode(node).attrs, 6);
  if (attrInt(node, 'transA', 0)) throw new GraphError('transA needs a 2-D A', node.name);
  const alpha = attrFloat(node, 'alpha', 1), beta = attrFloat(node, 'beta', 1);
  const Bm = attrInt(node, 'transB', 0) ? transposeTensor(B, [1, 0]) : B;
  let y = runOnnxOp('MatMul', [A, Bm], ctx);
  if (alpha !== 1) y = runOnnxOp('Mul', [y, fromF64(y.dtype, [], [alpha])], ctx);
  if (C && beta !== 0) y = runOnnxOp('Add', [y, beta === 1 ? C : runOnnxOp('Mul', [C, fromF64(C.dtype, [], [beta])], ctx)], ctx);
  return y;
}

function inferGemmCore(node: Node, ins: (TensorType | undefined)[], ctx: InferCtx): TensorType {
  const A = need(node, ins, 0), B = need(node, ins, 1);
  if (A.shape.length === 2) {
    const def = getOp('Gemm');
    if (!def) throw new GraphError('op Gemm has no implementation, and FusedGemm needs it', node.name);
    return def.infer(gemmNode(node), ins.slice(0, 3), subCtx(ctx, 3))[0];
  }
  if (B.shape.length !== 2) throw new GraphError(`B must be 2-D when A is ${A.shape.length}-D, got [${B.shape}]`, node.name);
  if (attrInt(node, 'transA', 0)) throw new GraphError('transA needs a 2-D A', node.name);
  const Bt = attrInt(node, 'transB', 0) ? { dtype: B.dtype, shape: [B.shape[1], B.shape[0]] } : B;
  const def = getOp('MatMul');
  if (!def) throw new GraphError('op MatMul has no implementation, and FusedGemm needs it', node.name);
  const y = def.infer({ ...node, op: 'MatMul', domain: '', attrs: {} }, [A, Bt], subCtx(ctx, 2))[0];
  const C = ins[2];
  if (C && !sameDims(broadcastShapes([y.shape, C.shape], node), y.shape)) {
    throw new GraphError(`C of shape [${C.shape}] does not broadcast into the result [${y.shape}]`, node.name);
  }
  return y;
}

// ---- tsrt::Fused (elementwise group with a `body` graph) ------------------------------------------------

function fusedBody(node: Node) {
  const body = attrGraph(node, 'body');
  if (!body) throw new GraphError('tsrt::Fused needs a `body` graph attribute', node.name);
  if (body.inputs.length !== node.inputs.length) {
    throw new GraphError(`body has ${body.inputs.length} inputs, the node passes ${node.inputs.length}`, node.name);
  }
  return body;
}

register(
  {
    op: 'FusedConv', domain: 'tsrt', since: 1, precision: 'always',
    supports: (node) => checkActivation(node)
      ?? (['NCHW', 'NHWC'].includes(attrString(node, 'layout', 'NCHW')) ? undefined : `layout '${attrString(node, 'layout', '')}' is not NCHW or NHWC`),
    infer: (node, ins, ctx) => {
      const X = need(node, ins, 0);
      const nhwc = isNhwc(node);
      const r = X.shape.length;
      const xs = nhwc ? permuteType(X, toChannelsFirst(r)) : X;
      const y = convDef().infer(convNode(node), [xs, ins[1], ins[2]], subCtx(ctx, 3))[0];
      const out = nhwc ? permuteType(y, toChannelsLast(r)) : y;
      checkResidual(node, out, ins[3]);
      return [out];
    },
    cpu: (node, ins, ctx) => {
      const X = need(node, ins, 0);
      const nhwc = isNhwc(node);
      const r = X.dims.length;
      const x = nhwc ? transposeTensor(X, toChannelsFirst(r)) : X;
      const z = ins[3] && nhwc ? transposeTensor(ins[3], toChannelsFirst(r)) : ins[3];
      const y = convDef().cpu(convNode(node), [x, ins[1], ins[2]], ctx)[0];
      const out = epilogue(node, y, z, ctx);
      return [nhwc ? transposeTensor(out, toChannelsLast(r)) : out];
    },
  },
  {
    op: 'FusedGemm', domain: 'tsrt', since: 1, precision: 'always',
    supports: checkActivation,
    infer: (node, ins, ctx) => {
      const y = inferGemmCore(node, ins, ctx);
      checkResidual(node, y, ins[3]);
      return [y];
    },
    cpu: (node, ins, ctx) => [epilogue(node, gemmCore(node, need(node, ins, 0), need(node, ins, 1), ins[2], ctx), ins[3], ctx)],
  },
  {
    op: 'Fused', domain: 'tsrt', since: 1, precision: 'follow',
    infer: (node, ins) => {
      const body = fusedBody(node);
      const inputs = body.inputs.map((vi, i) => ({ name: vi.name, type: ins[i] ?? vi.type }));
      const { graph } = inferShapes({ ...body, inputs });
      return graph.outputs.map((o) => graph.valueTypes.get(o.name) ?? o.type);
    },
    cpu: (node, ins, ctx) => {
      const body = fusedBody(node);
      const feeds = new Map<string, Tensor>();
      body.inputs.forEach((vi, i) => { if (ins[i]) feeds.set(vi.name, ins[i]!); });
      return ctx.runGraph(body, feeds);
    },
  },
);
