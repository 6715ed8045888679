// Convolutions: Conv and ConvTranspose over 1-D, 2-D and 3-D inputs with groups, dilations, strides, pads and
// auto_pad. The CPU reference lowers both to the blocked GEMM in cpu_gemm.ts: Conv as im2col (in column chunks,
// so the lowered matrix stays cache- and memory-friendly) x weights, ConvTranspose as weights^T x input followed
// by col2im. Depthwise convolutions (one input channel per group) skip the GEMM, which would have M = 1.
// float16/bfloat16 inputs compute in float32 and round once at the end; float64 stays float64.
import { GraphError } from '../errors.js';
import type { Dim, Node, Tensor, TensorType } from '../ir/types.js';
import { fromF64, makeTensor, size, toF32, toF64 } from '../ir/tensor.js';
import { attrInt, attrInts } from './attrs.js';
import { gemmF32, gemmF64 } from './cpu_gemm.js';
import { register, type OpDef } from './registry.js';
import { need } from './util.js';
import { kernelTaps, readWindowAttrs, resolveWindow, tapOffsets, windowOutDims, type Window, type WindowAttrs } from './window.js';

type FloatArray = Float32Array | Float64Array;

/** Target size (elements) of one im2col / col2im chunk: big enough for long GEMM rows, small enough for L3. */
const CHUNK_ELEMS = 1 << 21;

const FLOAT_TYPES = ['float32', 'float16', 'bfloat16', 'float64'];

function checkFloat(node: Node, t: { dtype: string }, what: string): void {
  if (!FLOAT_TYPES.includes(t.dtype)) {
    throw new GraphError(`${what} is ${t.dtype}; ${node.op} takes float32, float16, bfloat16 or float64`, node.name,
      'cast the input to float, or use ConvInteger/QLinearConv for integer data');
  }
}

function spatialRank(node: Node, x: Dim[], w: Dim[]): number {
  if (x.length < 3) {
    throw new GraphError(`input X has rank ${x.length}; ${node.op} needs [N, C, spatial...] with at least one spatial axis`, node.name);
  }
  if (w.length !== x.length) {
    throw new GraphError(`weight W has rank ${w.length}, X has rank ${x.length}; they must match`, node.name,
      `W is [${node.op === 'Conv' ? 'M, C/group' : 'C, M/group'}, k1, k2, ...]`);
  }
  return x.length - 2;
}

/** Kernel sizes from the weight shape (known when W is an initializer), for a missing kernel_shape. */
function weightKernel(w: Dim[]): number[] | undefined {
  const k = w.slice(2);
  return k.every((d): d is number => typeof d === 'number') ? k : undefined;
}

function convAttrs(node: Node, x: Dim[], w: Dim[]): WindowAttrs {
  const n = spatialRank(node, x, w);
  const a = readWindowAttrs(node, n, weightKernel(w));
  const wk = w.slice(2);
  if (a.kernel.some((k, i) => typeof wk[i] === 'number' && wk[i] !== k)) {
    throw new GraphError(`kernel_shape [${a.kernel}] does not match the weight's spatial dims [${wk}]`, node.name,
      'drop kernel_shape (it is inferred from W) or fix it');
  }
  return { ...a, ceilMode: false };
}

function groupOf(node: Node): number {
  const g = attrInt(node, 'group', 1);
  if (!Number.isInteger(g) || g < 1) throw new GraphError(`group ${g} must be a positive integer`, node.name);
  return g;
}

// ---------------------------------------------------------------------------------------------------------
// Conv

function inferConv(node: Node, ins: (TensorType | undefined)[], ctx: { freshDim(): string }): TensorType[] {
  const x = need(node, ins, 0), w = need(node, ins, 1);
  checkFloat(node, x, 'input X');
  const a = convAttrs(node, x.shape, w.shape);
  const g = groupOf(node);
  const [c, cg, m] = [x.shape[1], w.shape[1], w.shape[0]];
  if (typeof c === 'number' && typeof cg === 'number' && c !== cg * g) {
    throw new GraphError(`X has ${c} channels but W expects ${cg} per group x ${g} groups = ${cg * g}`, node.name,
      'W must be [M, C/group, k...]; check group and the weight shape');
  }
  if (typeof m === 'number' && m % g !== 0) {
    throw new GraphError(`W has ${m} output channels, not divisible by group ${g}`, node.name);
  }
  const b = ins[2];
  if (b && (b.shape.length !== 1 || (typeof b.shape[0] === 'number' && typeof m === 'number' && b.shape[0] !== m))) {
    throw new GraphError(`bias B has shape [${b.shape}], expected [${m}]`, node.name, 'B holds one value per output channel');
  }
  return [{ dtype: x.dtype, shape: [x.shape[0], m, ...windowOutDims(node, a, x.shape.slice(2), ctx.freshDim)] }];
}

/** Values of a float tensor in the compute precision: float64 stays float64, everything else becomes float32. */
function computeData(t: Tensor, f64: boolean): FloatArray {
  return f64 ? (t.dtype === 'float64' ? (t.data as Float64Array) : toF64(t)) : toF32(t);
}

function outputTensor(dtype: Tensor['dtype'], dims: number[], data: FloatArray): Tensor {
  if (dtype === 'float32' || dtype === 'float64') return makeTensor(dtype, dims, data);
  return fromF64(dtype, dims, data);
}

function cpuConv(node: Node, ins: (Tensor | undefined)[]): Tensor[] {
  const x = need(node, ins, 0), w = need(node, ins, 1), bias = ins[2];
  const [t] = inferConv(node, ins.map((v) => v && { dtype: v.dtype, shape: v.dims }), { freshDim: () => '?' });
  const outDims = t.shape as number[];
  const a = convAttrs(node, x.dims, w.dims);
  const win = resolveWindow(node, a, x.dims.slice(2));
  const f64 = x.dtype === 'float64';
  const xd = computeData(x, f64), wd = computeData(w, f64);
  const out = f64 ? new Float64Array(size(outDims)) : new Float32Array(size(outDims));
  const [batch, cIn] = x.dims;
  const m = w.dims[0], g = groupOf(node);
  convForward(win, batch, cIn, m, g, xd, wd, out);
  if (bias) addChannelBias(out, computeData(bias, f64), batch, m, size(win.outSp));
  return [outputTensor(x.dtype, outDims, out)];
}

function addChannelBias(out: FloatArray, b: FloatArray, batch: number, channels: number, plane: number): void {
  for (let n = 0; n < batch; n++) {
    for (let c = 0; c < channels; c++) {
      const v = b[c];
      const o = (n * channels + c) * plane;
      for (let j = 0; j < plane; j++) out[o + j] += v;
    }
  }
}

/** out[N, M, outSp] = conv(x[N, C, inSp], w[M, C/g, k]) without bias. */
function convForward(win: Window, batch: number, cIn: number, m: number, g: number, x: FloatArray, w: FloatArray,
  out: FloatArray): void {
  const cg = cIn / g, mg = m / g;
  const taps = kernelTaps(win.kernel);
  const inPlane = size(win.inSp), outPlane = size(win.outSp);
  const K = cg * taps.length;
  if (outPlane === 0 || batch === 0 || m === 0) return;
  if (cg === 1) { depthwise(win, taps, batch, cIn, mg, x, w, out); return; }
  const pointwise = taps.length === 1 && win.strides.every((s) => s === 1) && win.padsBegin.every((p) => p === 0) &&
    win.padsEnd.every((p) => p === 0);
  if (pointwise) {
    // A 1x1 stride-1 convolution is a plain GEMM on the input planes.
    for (let n = 0; n < batch; n++) {
      for (let gi = 0; gi < g; gi++) {
        gemm(mg, outPlane, K, w, K, x, outPlane, out, outPlane, false,
          gi * mg * K, (n * cIn + gi * cg) * inPlane, (n * m + gi * mg) * outPlane);
      }
    }
    return;
  }
  const chunk = Math.max(1, Math.min(outPlane, Math.floor(CHUNK_ELEMS / K)));
  const cols = x instanceof Float64Array ? new Float64Array(K * chunk) : new Float32Array(K * chunk);
  const idx = taps.map(() => new Int32Array(chunk));
  for (let n0 = 0; n0 < outPlane; n0 += chunk) {
    const nc = Math.min(chunk, outPlane - n0);
    taps.forEach((tap, t) => tapOffsets(win, tap, n0, nc, idx[t]));
    for (let n = 0; n < batch; n++) {
      for (let gi = 0; gi < g; gi++) {
        im2col(x, (n * cIn + gi * cg) * inPlane, inPlane, cg, idx, nc, cols);
        gemm(mg, nc, K, w, K, cols, nc, out, outPlane, false, gi * mg * K, 0, (n * m + gi * mg) * outPlane + n0);
      }
    }
  }
}

/** cols[(c * taps + t) * nc + j] = x[base + c * plane + idx[t][j]] (0 where idx is -1). */
function im2col(x: FloatArray, base: number, plane: number, channels: number, idx: Int32Array[], nc: number,
  cols: FloatArray): void {
  let row = 0;
  for (let c = 0; c < channels; c++) {
    const cb = base + c * plane;
    for (let t = 0; t < idx.length; t++) {
      const it = idx[t];
      const r = row * nc;
      for (let j = 0; j < nc; j++) {
        const s = it[j];
        cols[r + j] = s >= 0 ? x[cb + s] : 0;
      }
      row++;
    }
  }
}

/** One input channel per group: each output channel is a weighted sum of shifted copies of one input plane. */
function depthwise(win: Window, taps: number[][], batch: number, cIn: number, mg: number, x: FloatArray, w: FloatArray,
  out: FloatArray): void {
  const inPlane = size(win.inSp), outPlane = size(win.outSp);
  const idx = taps.map((tap) => { const a = new Int32Array(outPlane); tapOffsets(win, tap, 0, outPlane, a); return a; });
  const m = cIn * mg;
  for (let n = 0; n < batch; n++) {
    for (let oc = 0; oc < m; oc++) {
      const xb = (n * cIn + Math.floor(oc / mg)) * inPlane;
      const ob = (n * m + oc) * outPlane;
      for (let t = 0; t < taps.length; t++) {
        const wv = w[oc * taps.length + t];
        const it = idx[t];
        for (let j = 0; j < outPlane; j++) {
          const s = it[j];
          if (s >= 0) out[ob + j] += wv * x[xb + s];
        }
      }
    }
  }
}

/** Dispatch to the float32 or float64 GEMM (both arrays share one precision). */
function gemm(M: number, N: number, K: number, A: FloatArray, lda: number, B: FloatArray, ldb: number, C: FloatArray,
  ldc: number, transA: boolean, aOffset: number, bOffset: number, cOffset: number): void {
  const opts = { transA, aOffset, bOffset, cOffset };
  if (C instanceof Float64Array) gemmF64(M, N, K, A as Float64Array, lda, B as Float64Array, ldb, C, ldc, opts);
  else gemmF32(M, N, K, A as Float32Array, lda, B as Float32Array, ldb, C, ldc, opts);
}

// ---------------------------------------------------------------------------------------------------------
// ConvTranspose

interface TransposeGeom {
  attrs: WindowAttrs;
  outputPadding: number[];
  /** Explicit output_shape (spatial), if given. */
  outputShape?: number[];
}

function transposeGeom(node: Node, x: Dim[], w: Dim[]): TransposeGeom {
  const n = spatialRank(node, x, w);
  const attrs = readWindowAttrs(node, n, weightKernel(w));
  const outputPadding = attrInts(node, 'output_padding', new Array(n).fill(0));
  if (outputPadding.length !== n || outputPadding.some((p) => !Number.isInteger(p) || p < 0)) {
    throw new GraphError(`output_padding [${outputPadding}] must hold ${n} non-negative integers`, node.name);
  }
  let outputShape = attrInts(node, 'output_shape');
  // Some exporters include N and C in output_shape; the spatial sizes are the last n.
  if (outputShape && outputShape.length === n + 2) outputShape = outputShape.slice(2);
  if (outputShape && outputShape.length !== n) {
    throw new GraphError(`output_shape [${outputShape}] must hold ${n} spatial sizes`, node.name);
  }
  return { attrs: { ...attrs, ceilMode: false }, outputPadding, outputShape };
}

/** Output size and begin/end pads of one axis of ConvTranspose (spec equations). */
function transposeAxis(t: TransposeGeom, i: number, inSize: number): { out: number; begin: number; end: number } {
  const a = t.attrs, n = a.kernel.length;
  const s = a.strides[i], keff = (a.kernel[i] - 1) * a.dilations[i] + 1;
  const full = s * (inSize - 1) + t.outputPadding[i] + keff;
  const split = (out: number) => {
    const total = full - out;
    const half = Math.floor(total / 2);
    return a.autoPad === 'SAME_UPPER' ? { out, begin: half, end: total - half } : { out, begin: total - half, end: half };
  };
  if (t.outputShape) return split(t.outputShape[i]);
  if (a.autoPad === 'SAME_UPPER' || a.autoPad === 'SAME_LOWER') return split(inSize * s);
  if (a.autoPad === 'VALID') return { out: full, begin: 0, end: 0 };
  return { out: full - a.pads[i] - a.pads[i + n], begin: a.pads[i], end: a.pads[i + n] };
}

function inferConvTranspose(node: Node, ins: (TensorType | undefined)[], ctx: { freshDim(): string }): TensorType[] {
  const x = need(node, ins, 0), w = need(node, ins, 1);
  checkFloat(node, x, 'input X');
  const geo = transposeGeom(node, x.shape, w.shape);
  const g = groupOf(node);
  const [c, wc, mg] = [x.shape[1], w.shape[0], w.shape[1]];
  if (typeof c === 'number' && typeof wc === 'number' && c !== wc) {
    throw new GraphError(`X has ${c} channels but W has ${wc} input channels`, node.name, 'ConvTranspose W is [C, M/group, k...]');
  }
  if (typeof c === 'number' && c % g !== 0) throw new GraphError(`X has ${c} channels, not divisible by group ${g}`, node.name);
  const m: Dim = typeof mg === 'number' ? mg * g : ctx.freshDim();
  const sp = x.shape.slice(2).map((d, i) => {
    if (typeof d !== 'number') return geo.outputShape ? geo.outputShape[i] : ctx.freshDim();
    const r = transposeAxis(geo, i, d);
    if (r.out < 0) throw new GraphError(`output size ${r.out} on spatial axis ${i} is negative`, node.name, 'check pads and output_shape');
    return r.out;
  });
  return [{ dtype: x.dtype, shape: [x.shape[0], m, ...sp] }];
}

function cpuConvTranspose(node: Node, ins: (Tensor | undefined)[]): Tensor[] {
  const x = need(node, ins, 0), w = need(node, ins, 1), bias = ins[2];
  const [t] = inferConvTranspose(node, ins.map((v) => v && { dtype: v.dtype, shape: v.dims }), { freshDim: () => '?' });
  const outDims = t.shape as number[];
  const geo = transposeGeom(node, x.dims, w.dims);
  const inSp = x.dims.slice(2);
  const axes = inSp.map((d, i) => transposeAxis(geo, i, d));
  // The scatter is the forward window with input and output swapped: output position o = i*s - pad + k*d.
  const win: Window = {
    inSp: axes.map((r) => r.out), outSp: inSp, kernel: geo.attrs.kernel, strides: geo.attrs.strides,
    dilations: geo.attrs.dilations, padsBegin: axes.map((r) => r.begin), padsEnd: axes.map((r) => r.end),
  };
  const f64 = x.dtype === 'float64';
  const xd = computeData(x, f64), wd = computeData(w, f64);
  const out = f64 ? new Float64Array(size(outDims)) : new Float32Array(size(outDims));
  const [batch, cIn] = x.dims;
  const g = groupOf(node), mg = w.dims[1], m = mg * g, cg = cIn / g;
  const taps = kernelTaps(geo.attrs.kernel);
  const inPlane = size(inSp), outPlane = size(win.inSp);
  const K = mg * taps.length;
  if (inPlane > 0 && outPlane > 0 && K > 0) {
    const chunk = Math.max(1, Math.min(inPlane, Math.floor(CHUNK_ELEMS / K)));
    const cols = f64 ? new Float64Array(K * chunk) : new Float32Array(K * chunk);
    const idx = taps.map(() => new Int32Array(chunk));
    for (let n0 = 0; n0 < inPlane; n0 += chunk) {
      const nc = Math.min(chunk, inPlane - n0);
      taps.forEach((tap, ti) => tapOffsets(win, tap, n0, nc, idx[ti]));
      for (let n = 0; n < batch; n++) {
        for (let gi = 0; gi < g; gi++) {
          // cols[mg*taps, nc] = W_g^T [mg*taps, cg] x X_g [cg, nc]
          gemm(K, nc, cg, wd, K, xd, inPlane, cols, nc, true, gi * cg * K, (n * cIn + gi * cg) * inPlane + n0, 0);
          col2im(cols, idx, nc, mg, out, (n * m + gi * mg) * outPlane, outPlane);
        }
      }
    }
  }
  if (bias) addChannelBias(out, computeData(bias, f64), batch, m, outPlane);
  return [outputTensor(x.dtype, outDims, out)];
}

/** out[base + c * plane + idx[t][j]] += cols[(c * taps + t) * nc + j] where idx >= 0. */
function col2im(cols: FloatArray, idx: Int32Array[], nc: number, channels: number, out: FloatArray, base: number,
  plane: number): void {
  let row = 0;
  for (let c = 0; c < channels; c++) {
    const ob = base + c * plane;
    for (let t = 0; t < idx.length; t++) {
      const it = idx[t];
      const r = row * nc;
      for (let j = 0; j < nc; j++) {
        const d = it[j];
        if (d >= 0) out[ob + d] += cols[r + j];
      }
      row++;
    }
  }
}

function supportsConv(node: Node): string | undefined {
  const g = node.attrs.group;
  if (g && g.kind === 'int' && g.value < 1) return `group ${g.value} must be >= 1`;
  return undefined;
}

const conv: OpDef = {
  // Tensor-core friendly: runs in fp16/bf16 when the build allows it (fp32 accumulation in the kernels).
  op: 'Conv', since: 1, precision: 'always',
  supports: supportsConv,
  infer: inferConv,
  cpu: cpuConv,
};

const convTranspose: OpDef = {
  op: 'ConvTranspose', since: 1, precision: 'always',
  supports: supportsConv,
  infer: inferConvTranspose,
  cpu: cpuConvTranspose,
};

register(conv, convTranspose);
