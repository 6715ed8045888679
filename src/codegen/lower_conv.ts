// Lowerings for the compute-heavy ops: Conv / tsrt::FusedConv (tensor-core implicit GEMM in NHWC fp16, SIMT
// implicit GEMM otherwise) and Gemm / MatMul / tsrt::FusedGemm (tensor-core GEMM in fp16, SIMT otherwise).
// Weights are transformed once at build time into the layout each kernel reads.
import { attrFloat, attrFloats, attrInt, attrInts, attrString } from '../ops/attrs.js';
import { DTYPE_SIZE, fromF64, makeTensor, size, toF64 } from '../ir/tensor.js';
import type { DType, Tensor } from '../ir/types.js';
import { NotLowerable, registerLowering, type Arg, type LowerCtx } from './lower.js';
import { resolvePads } from './lowerings.js';
import { emitConvGeneric, convConfigSpace, convTcPreconditions, type ConvProblem } from './tc_conv.js';
import { emitGemmGeneric, gemmConfigSpace, gemmTcPreconditions, smCountField, type Activation, type Epilogue, type GemmProblem, type TcKernelSource } from './tc_gemm.js';
import { tacticSignature } from '../runtime/timing_cache.js'; // [autotune]
import { emitElementwise } from './elementwise.js';
import { transposeView } from './indexing.js';
import { emitPad } from './movement.js';
import { depthwiseWeightLayout, emitDepthwiseConv, isDepthwise } from './depthwise.js';
import { emitConvTc, emitGemmTc, wgmmaConvSpace, wgmmaEnabled, wgmmaGemmSpace } from './wgmma.js';

/** Maps a tsrt::Fused* `activation` attribute onto the kernel epilogue. */
function activation(ctx: LowerCtx): Pick<Epilogue, 'act' | 'actArgs'> {
  const a = attrString(ctx.node, 'activation', 'none');
  const p = attrFloats(ctx.node, 'activation_params', []);
  const map: Record<string, Activation> = {
    none: 'none', Relu: 'relu', LeakyRelu: 'leakyrelu', Sigmoid: 'sigmoid', HardSigmoid: 'hardsigmoid', HardSwish: 'hardswish',
    Silu: 'silu', GeluErf: 'gelu_erf', GeluTanh: 'gelu_tanh', Clip: 'clip',
  };
  const act = map[a];
  if (!act) throw new NotLowerable(`activation ${a} has no fused epilogue`);
  if (act === 'clip') {
    const lo = p[0] ?? -Infinity, hi = p[1] ?? Infinity;
    return lo === 0 && hi === 6 ? { act: 'relu6' } : { act: 'clip', actArgs: [lo, hi] };
  }
  return p.length ? { act, actArgs: p } : { act };
}

/** Binds kernel params by name: the emitters name them x/a, w/b, bias, residual, y/c, workspace. */
function bindByName(ctx: LowerCtx, k: TcKernelSource, names: Record<string, string | undefined>): Arg[] {
  return k.params.map((p) => {
    if (p.name === 'workspace') {
      // split-K tile counters: a dedicated zeroed buffer the kernel resets after each use
      return ctx.v(ctx.addConst(`workspace_${k.name}`, makeTensor('uint8', [k.workspaceBytes])));
    }
    const v = names[p.name];
    return v ? ctx.v(v) : { kind: 'null' } as Arg;
  });
}

function f32Const(t: Tensor): Tensor { return t.dtype === 'float32' ? t : fromF64('float32', t.dims, toF64(t)); }

function isFloatStorage(d: DType): d is 'float16' | 'bfloat16' | 'float32' { return d === 'float16' || d === 'bfloat16' || d === 'float32'; }

/** fp16 and bf16 run the tensor-core kernels; a bf16 problem says so (fp16 problems carry no dtype, so their
 * kernels and timing-cache signatures are what they were before bf16 existed). */
function tcDtype(d: DType): { dtype?: 'bfloat16' } { return d === 'bfloat16' ? { dtype: d } : {}; }

/** Where concat-in-place put this conv's output rows (passes/concat.ts PLACED_ATTRS): the concat output, the row
 * stride and the first row's offset in elements; undefined: a dense output of its own. */
function placement(ctx: LowerCtx): { into: string; ld: number; offset: number } | undefined {
  const into = attrString(ctx.node, 'y_concat', '');
  return into ? { into, ld: attrInt(ctx.node, 'y_row_stride', 0), offset: attrInt(ctx.node, 'y_offset', 0) } : undefined;
}

function lowerConv(ctx: LowerCtx): void {
  const { node } = ctx;
  const fused = node.domain === 'tsrt';
  const [xn, wn, bn, zn] = node.inputs;
  const x = ctx.t(xn), y = ctx.t(node.outputs[0]);
  const wc = ctx.constOf(wn);
  if (!wc) throw new NotLowerable('weights are not constant');
  if (x.dims.length !== 4) throw new NotLowerable(`${x.dims.length - 2}-D conv runs on the host`);
  if (!isFloatStorage(x.dtype)) throw new NotLowerable(`${x.dtype} conv`);
  const nhwc = attrString(node, 'layout', 'NCHW') === 'NHWC';
  const group = attrInt(node, 'group', 1);
  const [k, cg, r, s] = wc.dims;
  const [n, h, w, c] = nhwc ? x.dims : [x.dims[0], x.dims[2], x.dims[3], x.dims[1]];
  const [p, q] = nhwc ? [y.dims[1], y.dims[2]] : [y.dims[2], y.dims[3]];
  const kernel = attrInts(node, 'kernel_shape', [r, s]);
  const st = attrInts(node, 'strides', [1, 1]);
  const dil = attrInts(node, 'dilations', [1, 1]);
  const pads = resolvePads(node, [h, w], [p, q], kernel, st, dil);
  if (pads[0] < 0 || pads[1] < 0) throw new NotLowerable('negative pads');
  const prob: ConvProblem = { n, h, w, c, k, r, s, strideH: st[0], strideW: st[1], padH: pads[0], padW: pads[1], dilH: dil[0], dilW: dil[1], p, q };
  const epi: Epilogue = { ...(fused ? activation(ctx) : {}), bias: !!bn, residual: !!zn, residualAfterAct: fused && attrInt(node, 'residual_before_act', 1) === 0 };
  // a conv placed in a strided concat slice stores its rows there and its output becomes that slice (an offset alias,
  // which tells the concat lowering not to copy it); the depthwise kernel stores dense rows, so it keeps its buffer
  const at = isDepthwise(group, c, k) ? undefined : placement(ctx);
  const yOut = at?.into ?? node.outputs[0];
  if (at) {
    prob.ldY = at.ld;
    prob.yOffset = at.offset;
    ctx.alias(node.outputs[0], at.into, at.offset * DTYPE_SIZE[y.dtype]);
  }
  const bias = bn ? ctx.addConst('bias_f32', f32Const(ctx.constOf(bn) ?? (() => { throw new NotLowerable('bias is not constant'); })())) : undefined;
  // float64 weights, converted only where a lowering needs them
  let wf: Float64Array | undefined;
  const wv = () => (wf ??= toF64(wc));
  if (isDepthwise(group, c, k)) {
    // direct kernel: weights [r][s][c] for NHWC (a warp reads consecutive channels), ONNX's [c][1][r][s] for NCHW
    const layout = nhwc ? 'nhwc' : 'nchw';
    const wname = ctx.addConst(nhwc ? 'w_rsc' : 'w', fromF64(x.dtype, nhwc ? [r, s, k] : [k, 1, r, s], depthwiseWeightLayout(wv(), k, r, s, layout)));
    const ks = emitDepthwiseConv({ ...prob, ...smCountField(ctx.smCount) }, epi, { dtype: x.dtype, layout });
    ctx.kernel(ks, bindByName(ctx, ks, { x: xn, w: wname, bias, residual: zn, y: node.outputs[0] }));
    return;
  }
  const useTc = (x.dtype === 'float16' || x.dtype === 'bfloat16') && nhwc && group === 1;
  if (useTc) {
    // pad channels to a multiple of 8 (zero weights and zero activations contribute nothing)
    const cp = Math.ceil(c / 8) * 8;
    let xin = xn;
    if (cp !== c) {
      xin = ctx.temp(x.dtype, [n, h, w, cp]);
      ctx.kernel(emitPad({ dtype: x.dtype, inDims: [n, h, w, c], pads: [0, 0, 0, 0, 0, 0, 0, cp - c], mode: 'constant', value: 0 }), [ctx.v(xn), ctx.v(xin)]);
    }
    // KCRS -> KRSC', moving 16-bit bits as they are (no round trip through float64: ResNet-50 has 25M weights)
    const wt = makeTensor(x.dtype, [k, r, s, cp]);
    const src = wc.dtype === x.dtype ? wc.data as Uint16Array : (fromF64(x.dtype, wc.dims, wv()).data as Uint16Array);
    const dst = wt.data as Uint16Array;
    for (let ko = 0; ko < k; ko++) for (let ci = 0; ci < c; ci++) for (let ri = 0; ri < r; ri++) for (let si = 0; si < s; si++) {
      dst[((ko * r + ri) * s + si) * cp + ci] = src[((ko * c + ci) * r + ri) * s + si];
    }
    const wname = ctx.addConst('w_krsc', wt);
    const pp: ConvProblem = { ...prob, c: cp, ...tcDtype(x.dtype), ...smCountField(ctx.smCount) };
    if (!convTcPreconditions(pp).length) {
      // [autotune] a measured tile config when the engine tunes (optLevel >= 3 on a GPU), else the heuristic's.
      // On sm_90a the wgmma configs join the candidates; the heuristic (no timing) keeps mma.sync until the
      // wgmma kernels have been checked on a GPU (scripts/gpu-wgmma-check.mjs).
      const space = [...convConfigSpace(pp), ...(wgmmaEnabled(ctx.arch) ? wgmmaConvSpace(pp) : [])];
      const cfg = ctx.tactic?.(tacticSignature('conv', pp, epi, x.dtype), space, (c) => emitConvTc(pp, epi, c)) ?? undefined;
      const ks = emitConvTc(pp, epi, cfg);
      ctx.kernel(ks, bindByName(ctx, ks, { x: xin, w: wname, bias, residual: zn, y: yOut }));
      return;
    }
  }
  // SIMT implicit GEMM: weights [k][r][s][c/g] for NHWC, ONNX's own [k][c/g][r][s] for NCHW
  let wname = wn;
  if (nhwc) {
    const wt = new Float64Array(k * r * s * cg);
    const w64 = wv();
    for (let ko = 0; ko < k; ko++) for (let ci = 0; ci < cg; ci++) for (let ri = 0; ri < r; ri++) for (let si = 0; si < s; si++) {
      wt[((ko * r + ri) * s + si) * cg + ci] = w64[((ko * cg + ci) * r + ri) * s + si];
    }
    wname = ctx.addConst('w_krsc', fromF64(x.dtype, [k, r, s, cg], wt));
  } else if (wc.dtype !== x.dtype) {
    wname = ctx.addConst('w', fromF64(x.dtype, wc.dims, wv()));
  }
  const ks = emitConvGeneric(prob, epi, { dtype: x.dtype, layout: nhwc ? 'nhwc' : 'nchw', groups: group });
  ctx.kernel(ks, bindByName(ctx, ks, { x: xn, w: wname, bias, residual: zn, y: yOut }));
}

registerLowering('Conv', lowerConv);
registerLowering('FusedConv', lowerConv, 'tsrt');

/** Gemm / MatMul / FusedGemm: y = act(alpha * A' B' + bias + residual). */
function lowerGemm(ctx: LowerCtx): void {
  const { node } = ctx;
  const isMatMul = node.op === 'MatMul';
  const [an, bn, cn, zn] = node.inputs;
  const a = ctx.t(an), b = ctx.t(bn), y = ctx.t(node.outputs[0]);
  if (!isFloatStorage(a.dtype) || a.dtype !== y.dtype) throw new NotLowerable(`${a.dtype} matmul`);
  if (!size(y.dims)) return;
  const transA = isMatMul ? 0 : attrInt(node, 'transA', 0);
  const transB = isMatMul ? 0 : attrInt(node, 'transB', 0);
  const alpha = isMatMul ? 1 : attrFloat(node, 'alpha', 1);
  const beta = isMatMul ? 1 : attrFloat(node, 'beta', 1);
  if (a.dims.length < 1 || b.dims.length < 1) throw new NotLowerable('scalar matmul');
  if (a.dims.length === 1 || b.dims.length === 1) throw new NotLowerable('1-D matmul operand');
  const K = transA ? a.dims[a.dims.length - 2] : a.dims[a.dims.length - 1];
  const M = transA ? a.dims[a.dims.length - 1] : a.dims[a.dims.length - 2];
  const N = transB ? b.dims[b.dims.length - 2] : b.dims[b.dims.length - 1];
  const batchA = a.dims.slice(0, -2), batchB = b.dims.slice(0, -2), batchY = y.dims.slice(0, -2);
  let aName = an;
  if (transA) {
    if (batchA.length) throw new NotLowerable('batched transA');
    aName = ctx.temp(a.dtype, [M, K]);
    ctx.kernel(emitElementwise({ dims: [M, K], inputs: [{ dtype: a.dtype, view: transposeView(a.dims, [1, 0]) }], steps: [], outputs: [{ dtype: a.dtype, value: 'a0' }] }, 'transpose_a'),
      [ctx.v(an), ctx.v(aName)]);
  }
  const bConst = ctx.constOf(bn);
  let prob: GemmProblem;
  let bName = bn;
  if (bConst && b.dims.length === 2) {
    // weights: store as [N, K] ('nk') once; A's leading dims fold into M
    const bv = toF64(bConst);
    const wt = new Float64Array(N * K);
    for (let i = 0; i < K; i++) for (let j = 0; j < N; j++) wt[j * K + i] = transB ? bv[j * K + i] : bv[i * N + j];
    bName = ctx.addConst('w_nk', fromF64(a.dtype, [N, K], wt));
    prob = { m: size(batchA) * M, n: N, k: K, bLayout: 'nk' };
  } else {
    // activations on both sides (attention): batch over up to two leading dims, broadcasting by stride 0
    if (batchY.length > 2) throw new NotLowerable('more than two batch dims');
    const bstr = (dims: number[], batch: number[], mat: number) => batchY.map((d, i) => {
      const j = i - (batchY.length - batch.length);
      if (j < 0 || batch[j] === 1) return 0;
      return mat * size(batch.slice(j + 1));
    });
    if (bConst && bConst.dtype !== a.dtype) bName = ctx.addConst('b', fromF64(a.dtype, bConst.dims, toF64(bConst)));
    prob = {
      m: M, n: N, k: K, bLayout: transB ? 'nk' : 'kn',
      batch: batchY.length ? batchY : undefined,
      strideA: batchY.length ? bstr(a.dims, batchA, M * K) : undefined,
      strideB: batchY.length ? bstr(b.dims, batchB, K * N) : undefined,
      strideC: batchY.length ? bstr(y.dims, batchY, M * N) : undefined,
    };
  }
  const epi: Epilogue = { ...(node.domain === 'tsrt' ? activation(ctx) : {}), alpha: alpha === 1 ? undefined : alpha };
  let bias: string | undefined, residual: string | undefined = zn || undefined;
  if (cn) {
    const cc = ctx.constOf(cn);
    const ct = ctx.t(cn);
    if (cc && size(ct.dims) === N && (ct.dims.length === 1 || ct.dims.slice(0, -1).every((d) => d === 1))) {
      const cv = toF64(cc).map((v) => v * beta);
      bias = ctx.addConst('bias_f32', fromF64('float32', [N], cv));
    } else if (beta === 1 && !residual && ct.dims.join() === y.dims.join() && ct.dtype === y.dtype) {
      residual = cn;
    } else throw new NotLowerable('Gemm C that is neither a bias vector nor a full matrix');
  }
  epi.bias = !!bias;
  epi.residual = !!residual;
  if (node.domain === 'tsrt') epi.residualAfterAct = attrInt(node, 'residual_before_act', 1) === 0;
  if (a.dtype === 'bfloat16') prob = { ...prob, ...tcDtype(a.dtype) };
  prob = { ...prob, ...smCountField(ctx.smCount) };
  const tc = (a.dtype === 'float16' || a.dtype === 'bfloat16') && !gemmTcPreconditions(prob).length;
  // [autotune] a measured tile config when the engine tunes (optLevel >= 3 on a GPU), else the heuristic's
  const space = tc ? [...gemmConfigSpace(prob), ...(wgmmaEnabled(ctx.arch) ? wgmmaGemmSpace(prob) : [])] : [];
  const cfg = tc ? ctx.tactic?.(tacticSignature('gemm', prob, epi, a.dtype), space, (c) => emitGemmTc(prob, epi, c)) ?? undefined : undefined;
  const ks = tc ? emitGemmTc(prob, epi, cfg) : emitGemmGeneric(prob, epi, a.dtype);
  ctx.kernel(ks, bindByName(ctx, ks, { a: aName, b: bName, bias, residual, c: node.outputs[0] }));
}

registerLowering('Gemm', lowerGemm);
registerLowering('MatMul', lowerGemm);
registerLowering('FusedGemm', lowerGemm, 'tsrt');
