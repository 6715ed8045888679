// Lowerings for int8 execution: tsrt::QConv / tsrt::QGemm on the int8 tensor-core kernels (tc_int8.ts), and
// QuantizeLinear / DequantizeLinear as elementwise kernels (fp16/fp32 <-> int8/uint8, per tensor or per axis).
// Weights arrive quantized (int8, per output channel) from the quantize pass; here they only change layout.
// qlinear=1 layers (QLinearConv / QLinearMatMul, passes/qlinear_int8.ts) take the kernels' qlinear epilogue: the
// fp32 multiplier x_scale * w_scale / y_scale per channel and the int32 bias as they are.
import { attrFloat, attrInt, attrInts, attrString } from '../ops/attrs.js';
import { qOutType } from '../ops/qlinear.js';
import { fromF64, makeTensor, size, toF64 } from '../ir/tensor.js';
import type { DType } from '../ir/types.js';
import { emitElementwise, type EwInput } from './elementwise.js';
import { broadcastView, contiguousView } from './indexing.js';
import { NotLowerable, registerLowering, type Arg, type LowerCtx } from './lower.js';
import { resolvePads } from './lowerings.js';
import { emitPad } from './movement.js';
import type { ConvProblem } from './tc_conv.js';
import { smCountField, type Activation, type TcKernelSource } from './tc_gemm.js';
import {
  emitConvInt8, emitGemmInt8, int8ConvConfigSpace, int8ConvPreconditions, int8GemmConfigSpace, int8GemmPreconditions,
  int8ChannelParams, int8WgmmaConvSpace, int8WgmmaGemmSpace, SMALL_ACC_MAX, type Int8Epilogue, type Int8Out,
} from './tc_int8.js';
import { wgmmaEnabled } from './wgmma.js';
import { tacticSignature } from '../runtime/timing_cache.js'; // [autotune]

const ACT: Record<string, Activation> = {
  none: 'none', Relu: 'relu', LeakyRelu: 'leakyrelu', Sigmoid: 'sigmoid', HardSigmoid: 'hardsigmoid', HardSwish: 'hardswish',
  Silu: 'silu', GeluErf: 'gelu_erf', GeluTanh: 'gelu_tanh', Clip: 'clip',
};

const KERNEL_DTYPES = new Set<DType>(['int8', 'float16', 'float32']);

/** The node's epilogue as the int8 kernels take it. */
function int8Epilogue(ctx: LowerCtx): Int8Epilogue {
  const { node } = ctx;
  const a = attrString(node, 'activation', 'none');
  const act = ACT[a];
  if (!act) throw new NotLowerable(`activation ${a} has no int8 epilogue`);
  const p = node.attrs.activation_params?.kind === 'floats' ? node.attrs.activation_params.value : [];
  const out = qOutType(node) as Int8Out;
  const zn = node.inputs[4];
  const zt = zn ? ctx.t(zn).dtype : undefined;
  if (zt && !KERNEL_DTYPES.has(zt)) throw new NotLowerable(`${zt} residual`);
  const clip = act === 'clip' ? (p[0] === 0 && p[1] === 6 ? { act: 'relu6' as const } : { act, actArgs: [p[0] ?? -Infinity, p[1] ?? Infinity] }) : undefined;
  return {
    ...(attrInt(node, 'qlinear', 0) ? { qlinear: true } : {}),
    out, outScale: attrFloat(node, 'y_scale'),
    bias: !!node.inputs[3], residual: !!zn, residualAfterAct: attrInt(node, 'residual_before_act', 1) === 0,
    residualType: zt as Int8Out | undefined, residualScale: attrFloat(node, 'z_scale'),
    ...(clip ?? (p.length ? { act, actArgs: p } : { act })),
  };
}

/** Per-output-channel fp32 scale x_scale * w_scale[n] (rounded as the CPU reference rounds it), and fp32 bias,
 * both times 1 / y_scale for the folded requantize (int8ChannelParams); qlinear=1: the multiplier
 * fp32(x_scale * w_scale[n]) / y_scale and the int32 bias. */
function scaleAndBias(ctx: LowerCtx, epi: Int8Epilogue): { scale: string; bias?: string } {
  const { node } = ctx;
  const ws = ctx.constOf(node.inputs[2]);
  if (!ws) throw new NotLowerable('w_scale is not constant');
  const f = Math.fround;
  const xs = f(attrFloat(node, 'x_scale', 1));
  const ql = attrInt(node, 'qlinear', 0) !== 0, ys = f(attrFloat(node, 'y_scale', 1));
  const b = node.inputs[3] ? ctx.constOf(node.inputs[3]) : undefined;
  if (node.inputs[3] && !b) throw new NotLowerable('bias is not constant');
  if (ql) {
    const scale = ctx.addConst('scale_f32', fromF64('float32', ws.dims, Array.from(toF64(ws), (s) => f(f(xs * s) / ys))));
    return { scale, bias: b && ctx.addConst('bias_i32', fromF64('int32', b.dims, toF64(b))) };
  }
  const p = int8ChannelParams(epi, Array.from(toF64(ws), (s) => f(xs * s)), b && toF64(b));
  return { scale: ctx.addConst('scale_f32', makeTensor('float32', ws.dims, p.scale)), bias: b && ctx.addConst('bias_f32', makeTensor('float32', b.dims, p.bias!)) };
}

/** Whether every accumulator of an int8 layer stays below 2^22 in magnitude, so its epilogue may convert it
 * exactly without the conversion unit (Int8Epilogue.smallAcc): for each of the `rows` output channels (weights
 * row-major by output channel), sum |w| * 128, the largest |int8 input| (layers up to K = 255 fit
 * whatever their weights; larger K fits when the weights are small, as trained weights are). */
export function accFitsSmall(w: ArrayLike<number>, rows: number): boolean {
  const per = w.length / rows;
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let i = r * per; i < (r + 1) * per; i++) sum += Math.abs(w[i]);
    if (sum * 128 > SMALL_ACC_MAX) return false;
  }
  return true;
}

function bind(ctx: LowerCtx, k: TcKernelSource, names: Record<string, string | undefined>): Arg[] {
  return k.params.map((p) => {
    if (p.name === 'workspace') return ctx.v(ctx.addConst(`workspace_${k.name}`, makeTensor('uint8', [k.workspaceBytes])));
    const v = names[p.name];
    return v ? ctx.v(v) : ({ kind: 'null' } as Arg);
  });
}

function lowerQConv(ctx: LowerCtx): void {
  const { node } = ctx;
  const [xn, wn, , , zn] = node.inputs;
  const x = ctx.t(xn), y = ctx.t(node.outputs[0]);
  const wc = ctx.constOf(wn);
  if (!wc) throw new NotLowerable('weights are not constant');
  if (attrString(node, 'layout', 'NCHW') !== 'NHWC') throw new NotLowerable('int8 conv runs channels-last (NHWC) only');
  if (x.dims.length !== 4) throw new NotLowerable(`${x.dims.length - 2}-D int8 conv`);
  if (attrInt(node, 'group', 1) !== 1) throw new NotLowerable('grouped int8 conv');
  const [k, c, r, s] = wc.dims;
  const [n, h, w] = x.dims;
  const [p, q] = [y.dims[1], y.dims[2]];
  const st = attrInts(node, 'strides', [1, 1]), dil = attrInts(node, 'dilations', [1, 1]);
  const pads = resolvePads(node, [h, w], [p, q], attrInts(node, 'kernel_shape', [r, s]), st, dil);
  if (pads[0] < 0 || pads[1] < 0) throw new NotLowerable('negative pads');
  // channels padded with zeros to a multiple of 16 (one 16-byte chunk): zero weights add nothing
  const cp = Math.ceil(c / 16) * 16;
  const prob: ConvProblem = { n, h, w, c: cp, k, r, s, strideH: st[0], strideW: st[1], padH: pads[0], padW: pads[1], dilH: dil[0], dilW: dil[1], p, q, ...smCountField(ctx.smCount) };
  const pre = int8ConvPreconditions(prob);
  if (pre.length) throw new NotLowerable(pre.join('; '));
  const epi = int8Epilogue(ctx);
  const { scale, bias } = scaleAndBias(ctx, epi);
  let xin = xn;
  if (cp !== c) {
    xin = ctx.temp('int8', [n, h, w, cp]);
    ctx.kernel(emitPad({ dtype: 'int8', inDims: [n, h, w, c], pads: [0, 0, 0, 0, 0, 0, 0, cp - c], mode: 'constant', value: 0 }), [ctx.v(xn), ctx.v(xin)]);
  }
  const wv = toF64(wc);
  if (x.dtype === 'int8') epi.smallAcc = accFitsSmall(wv, k);
  const wt = new Int8Array(k * r * s * cp);
  for (let ko = 0; ko < k; ko++) for (let ci = 0; ci < c; ci++) for (let ri = 0; ri < r; ri++) for (let si = 0; si < s; si++) {
    wt[((ko * r + ri) * s + si) * cp + ci] = wv[((ko * c + ci) * r + ri) * s + si];
  }
  const wname = ctx.addConst('w_krsc_i8', makeTensor('int8', [k, r, s, cp], wt));
  // [autotune] a measured int8 tile config at optLevel >= 3 on a GPU (bk 64/128 mma.sync tiles, and on sm_90a the
  // int8 wgmma tiles of wgmma_s8.ts), else the heuristic's (mma.sync)
  const space = [...int8ConvConfigSpace(prob), ...(wgmmaEnabled(ctx.arch) ? int8WgmmaConvSpace(prob, epi) : [])];
  const cfg = ctx.tactic?.(tacticSignature('conv', prob, epi, 'int8'), space, (c) => emitConvInt8(prob, epi, c)) ?? undefined;
  const ks = emitConvInt8(prob, epi, cfg);
  ctx.kernel(ks, bind(ctx, ks, { x: xin, w: wname, scale, bias, residual: zn, y: node.outputs[0] }));
}

function lowerQGemm(ctx: LowerCtx): void {
  const { node } = ctx;
  const [an, wn, , , zn] = node.inputs;
  const a = ctx.t(an);
  const wc = ctx.constOf(wn);
  if (!wc) throw new NotLowerable('weights are not constant');
  const [N, K] = wc.dims;
  const prob = { m: size(a.dims) / K, n: N, k: K, ...smCountField(ctx.smCount) };
  const pre = int8GemmPreconditions(prob);
  if (pre.length) throw new NotLowerable(pre.join('; '));
  const epi = int8Epilogue(ctx);
  if (a.dtype === 'int8') epi.smallAcc = accFitsSmall(toF64(wc), N);
  const { scale, bias } = scaleAndBias(ctx, epi);
  const space = [...int8GemmConfigSpace(prob), ...(wgmmaEnabled(ctx.arch) ? int8WgmmaGemmSpace(prob, epi) : [])];
  const cfg = ctx.tactic?.(tacticSignature('gemm', prob, epi, 'int8'), space, (c) => emitGemmInt8(prob, epi, c)) ?? undefined;
  const ks = emitGemmInt8(prob, epi, cfg);
  ctx.kernel(ks, bind(ctx, ks, { a: an, b: wn, scale, bias, residual: zn, c: node.outputs[0] }));
}

registerLowering('QConv', lowerQConv, 'tsrt');
registerLowering('QGemm', lowerQGemm, 'tsrt');

// ---- QuantizeLinear / DequantizeLinear -------------------------------------------------------------------

const QRANGE: Partial<Record<DType, [number, number]>> = { int8: [-128, 127], uint8: [0, 255] };

/** Scale and zero point as inputs broadcast along `axis` (per-axis) or to every element (per-tensor). */
function paramInputs(ctx: LowerCtx, dims: number[]): EwInput[] {
  const { node } = ctx;
  if (attrInt(node, 'block_size', 0)) throw new NotLowerable('blocked quantization');
  const sDims = ctx.t(node.inputs[1]).dims;
  const axis = attrInt(node, 'axis', 1);
  const ax = axis < 0 ? axis + dims.length : axis;
  const pDims = size(sDims) === 1 ? [] : dims.map((d, i) => (i === ax ? d : 1));
  if (pDims.length && size(sDims) !== dims[ax]) throw new NotLowerable('scale is neither per-tensor nor per-axis');
  return [node.inputs[1], node.inputs[2]].filter(Boolean).map((nm) => ({ dtype: ctx.t(nm).dtype, view: broadcastView(pDims, dims) }));
}

registerLowering('QuantizeLinear', (ctx) => {
  const { node } = ctx;
  const x = ctx.t(node.inputs[0]), y = ctx.t(node.outputs[0]);
  const range = QRANGE[y.dtype];
  if (!range || (x.dtype !== 'float32' && x.dtype !== 'float16')) throw new NotLowerable(`QuantizeLinear ${x.dtype} -> ${y.dtype}`);
  if (attrInt(node, 'precision', 0)) throw new NotLowerable('precision attribute');
  const sd = ctx.t(node.inputs[1]).dtype;
  if (sd !== 'float32' && sd !== x.dtype) throw new NotLowerable(`${sd} scale for ${x.dtype} input`);
  if (!size(y.dims)) return;
  const params = paramInputs(ctx, y.dims);
  // x / scale in fp32 (the reference promotes fp16 x with an fp32 scale to fp32), rint = round half to even
  const zp = params.length > 1 ? ' + (float)a2' : '';
  const prog = {
    dims: y.dims, inputs: [{ dtype: x.dtype, view: contiguousView(y.dims) }, ...params],
    steps: [{ name: 'q', ctype: 'float', expr: `fminf(fmaxf(rintf((float)a0 / (float)a1)${zp}, ${range[0]}.0f), ${range[1]}.0f)` }],
    outputs: [{ dtype: y.dtype, value: 'q' }],
  };
  ctx.kernel(emitElementwise(prog, 'quantize'), [...node.inputs.filter(Boolean).map((v) => ctx.v(v)), ctx.v(node.outputs[0])]);
});

registerLowering('DequantizeLinear', (ctx) => {
  const { node } = ctx;
  const x = ctx.t(node.inputs[0]), y = ctx.t(node.outputs[0]);
  if (!QRANGE[x.dtype] && x.dtype !== 'int32') throw new NotLowerable(`DequantizeLinear of ${x.dtype}`);
  if (y.dtype !== 'float32' && y.dtype !== 'float16') throw new NotLowerable(`DequantizeLinear to ${y.dtype}`);
  if (!size(y.dims)) return;
  const params = paramInputs(ctx, y.dims);
  const zp = params.length > 1 ? ' - (float)a2' : '';
  const prog = {
    dims: y.dims, inputs: [{ dtype: x.dtype, view: contiguousView(y.dims) }, ...params],
    steps: [{ name: 'v', ctype: 'float', expr: `((float)a0${zp}) * (float)a1` }],
    outputs: [{ dtype: y.dtype, value: 'v' }],
  };
  ctx.kernel(emitElementwise(prog, 'dequantize'), [...node.inputs.filter(Boolean).map((v) => ctx.v(v)), ctx.v(node.outputs[0])]);
});
