// Resize (opset 11+ form: X, roi, scales, sizes; axes and keep_aspect_ratio_policy from opset 18) with nearest
// (every nearest_mode) and n-linear interpolation under half_pixel, half_pixel_symmetric, pytorch_half_pixel,
// align_corners and asymmetric coordinates. Resize-10 and Upsample-7/9 are rewritten into that form at import.
// Both modes are separable, so the CPU reference resizes one axis at a time: nearest as an index gather (exact
// for every dtype), linear in float64 with one rounding to the output dtype.
import { GraphError } from '../errors.js';
import type { DType, Dim, Node, Tensor, TensorType, TypedArray } from '../ir/types.js';
import { fromF64, isFloat, isInt, makeTensor, size, toF64 } from '../ir/tensor.js';
import { attrFloats, attrInt, attrInts, attrString, withoutAttrs } from './attrs.js';
import { register, type InferCtx, type OpDef, type UpgradeCtx } from './registry.js';
import { need, normAxis } from './util.js';

const MODES = ['nearest', 'linear'];
const COORD_MODES = ['half_pixel', 'half_pixel_symmetric', 'pytorch_half_pixel', 'align_corners', 'asymmetric'];
const NEAREST_MODES = ['round_prefer_floor', 'round_prefer_ceil', 'floor', 'ceil'];
const POLICIES = ['stretch', 'not_larger', 'not_smaller'];

interface ResizeAttrs {
  mode: string;
  coord: string;
  nearest: string;
  policy: string;
  axes?: number[];
}

function readAttrs(node: Node): ResizeAttrs {
  return {
    mode: attrString(node, 'mode', 'nearest'),
    coord: attrString(node, 'coordinate_transformation_mode', 'half_pixel'),
    nearest: attrString(node, 'nearest_mode', 'round_prefer_floor'),
    policy: attrString(node, 'keep_aspect_ratio_policy', 'stretch'),
    axes: attrInts(node, 'axes'),
  };
}

function supportsResize(node: Node): string | undefined {
  const a = readAttrs(node);
  if (a.mode === 'cubic') return "mode 'cubic' is not supported (nearest and linear are)";
  if (!MODES.includes(a.mode)) return `mode '${a.mode}' is not a Resize mode`;
  if (a.coord === 'tf_crop_and_resize') return "coordinate_transformation_mode 'tf_crop_and_resize' is not supported";
  if (!COORD_MODES.includes(a.coord)) return `coordinate_transformation_mode '${a.coord}' is not a Resize mode`;
  if (!NEAREST_MODES.includes(a.nearest)) return `nearest_mode '${a.nearest}' is not a Resize nearest_mode`;
  if (!POLICIES.includes(a.policy)) return `keep_aspect_ratio_policy '${a.policy}' is not one of ${POLICIES.join(', ')}`;
  if (attrInt(node, 'antialias', 0) !== 0) return 'antialias = 1 is not supported';
  return undefined;
}

/** Positions in [0, rank) of the resized axes (all axes when `axes` is absent). */
function resizeAxes(node: Node, a: ResizeAttrs, rank: number): number[] {
  const axes = (a.axes ?? [...Array(rank).keys()]).map((x) => normAxis(x, rank, node));
  if (new Set(axes).size !== axes.length) throw new GraphError(`axes [${a.axes}] repeat an axis`, node.name);
  return axes;
}

interface Plan {
  outDims: number[];
  /** Per axis: the scale used by the coordinate transform (1 for axes that are not resized). */
  scales: number[];
}

/** Output sizes and per-axis scales from the scales or sizes input (spec rules, incl. keep_aspect_ratio_policy). */
function plan(node: Node, a: ResizeAttrs, inDims: number[], scales: number[] | undefined, sizes: number[] | undefined): Plan {
  const rank = inDims.length;
  const axes = resizeAxes(node, a, rank);
  const outDims = [...inDims];
  const sc = new Array<number>(rank).fill(1);
  if (scales && sizes) throw new GraphError('both scales and sizes are given; Resize takes one of them', node.name, 'leave one input empty');
  if (scales) {
    if (scales.length !== axes.length) {
      throw new GraphError(`scales has ${scales.length} values for ${axes.length} resized axes`, node.name, 'give one scale per axis');
    }
    axes.forEach((ax, i) => {
      if (!(scales[i] > 0)) throw new GraphError(`scale ${scales[i]} on axis ${ax} must be positive`, node.name);
      sc[ax] = scales[i];
      // floor(in * scale) in float32 arithmetic, as in ONNX shape inference and ONNX Runtime.
      outDims[ax] = Math.floor(Math.fround(inDims[ax] * scales[i]));
    });
    return { outDims, scales: sc };
  }
  if (!sizes) throw new GraphError('Resize needs scales or sizes', node.name, 'give a non-empty scales or sizes input');
  if (sizes.length !== axes.length) {
    throw new GraphError(`sizes has ${sizes.length} values for ${axes.length} resized axes`, node.name, 'give one size per axis');
  }
  if (sizes.some((s) => !Number.isInteger(s) || s < 0)) throw new GraphError(`sizes [${sizes}] must be non-negative integers`, node.name);
  if (a.policy === 'stretch') {
    axes.forEach((ax, i) => { outDims[ax] = sizes[i]; sc[ax] = sizes[i] / inDims[ax]; });
    return { outDims, scales: sc };
  }
  const ratios = axes.map((ax, i) => sizes[i] / inDims[ax]);
  const s = a.policy === 'not_larger' ? Math.min(...ratios) : Math.max(...ratios);
  for (const ax of axes) {
    sc[ax] = s;
    outDims[ax] = Math.floor(s * inDims[ax] + 0.5);
  }
  return { outDims, scales: sc };
}

/** scales/sizes input values; an empty tensor counts as absent (opset 11-12 models pass one to use sizes). */
function optionalValues(t: Tensor | undefined): number[] | undefined {
  return t && t.data.length ? Array.from(toF64(t)) : undefined;
}

// ---- inference ----

function inferResize(node: Node, ins: (TensorType | undefined)[], ctx: InferCtx): TensorType[] {
  const x = need(node, ins, 0);
  const rank = x.shape.length;
  const a = readAttrs(node);
  const scalesT = ctx.consts[2], sizesT = ctx.consts[3];
  const scalesEmpty = ins[2] && ins[2].shape.length === 1 && ins[2].shape[0] === 0;
  const sizesGiven = !!ins[3] && !(ins[3].shape.length === 1 && ins[3].shape[0] === 0);
  const axes = resizeAxes(node, a, rank);
  const fresh = (): Dim[] => x.shape.map((d, i) => (axes.includes(i) ? ctx.freshDim() : d));
  if (ins[2] && !scalesEmpty && !sizesGiven) {
    const scales = optionalValues(scalesT);
    if (!scales) return [{ dtype: x.dtype, shape: fresh() }];
    if (scales.length !== axes.length) throw new GraphError(`scales has ${scales.length} values for ${axes.length} resized axes`, node.name);
    const shape = x.shape.map((d, i) => {
      const k = axes.indexOf(i);
      if (k < 0 || scales[k] === 1) return d;
      return typeof d === 'number' ? Math.floor(Math.fround(d * scales[k])) : ctx.freshDim();
    });
    return [{ dtype: x.dtype, shape }];
  }
  if (!sizesGiven) throw new GraphError('Resize needs scales or sizes', node.name, 'give a non-empty scales or sizes input');
  const sizes = sizesT ? Array.from(toF64(sizesT)) : ctx.shapeValues[3];
  if (!sizes) return [{ dtype: x.dtype, shape: fresh() }];
  if (sizes.length !== axes.length) throw new GraphError(`sizes has ${sizes.length} values for ${axes.length} resized axes`, node.name);
  if (a.policy === 'stretch') return [{ dtype: x.dtype, shape: x.shape.map((d, i) => (axes.includes(i) ? sizes[axes.indexOf(i)] : d)) }];
  const known = x.shape.every((d): d is number => typeof d === 'number') && sizes.every((s): s is number => typeof s === 'number');
  if (!known) return [{ dtype: x.dtype, shape: fresh() }];
  return [{ dtype: x.dtype, shape: plan(node, a, x.shape as number[], undefined, sizes as number[]).outDims }];
}

// ---- CPU reference ----

/** Source coordinate of output index y along one axis (spec formulas; float lengths as in the reference). */
function sourceCoord(mode: string, y: number, scale: number, inLen: number, outLen: number): number {
  const outF = scale * inLen;
  switch (mode) {
    case 'asymmetric': return y / scale;
    case 'align_corners': return outLen === 1 ? 0 : (y * (inLen - 1)) / (outF - 1);
    case 'pytorch_half_pixel': return outLen > 1 ? (y + 0.5) / scale - 0.5 : 0;
    case 'half_pixel_symmetric': {
      const offset = (inLen / 2) * (1 - outLen / outF);
      return offset + (y + 0.5) / scale - 0.5;
    }
    default: return (y + 0.5) / scale - 0.5;
  }
}

function nearestIndex(mode: string, x: number, inLen: number): number {
  const f = Math.floor(x);
  let i: number;
  if (x === f) i = x;
  else if (mode === 'floor') i = f;
  else if (mode === 'ceil') i = f + 1;
  else if (mode === 'round_prefer_ceil') i = x - f < 0.5 ? f : f + 1;
  else i = x - f <= 0.5 ? f : f + 1;
  return Math.min(Math.max(i, 0), inLen - 1);
}

/** Gathers src along `axis` with idx (one source index per output position). Works for any dtype. */
function gatherAxis<T extends TypedArray | string[] | Float64Array>(src: T, dims: number[], axis: number, idx: Int32Array,
  dst: T): void {
  const outer = size(dims.slice(0, axis)), inner = size(dims.slice(axis + 1)), len = dims[axis], outLen = idx.length;
  const s = src as unknown as ArrayLike<unknown>, d = dst as unknown as unknown[];
  for (let o = 0; o < outer; o++) {
    for (let k = 0; k < outLen; k++) {
      const si = (o * len + idx[k]) * inner, di = (o * outLen + k) * inner;
      for (let i = 0; i < inner; i++) d[di + i] = s[si + i];
    }
  }
}

function linearAxis(src: Float64Array, dims: number[], axis: number, i0: Int32Array, i1: Int32Array, w1: Float64Array): Float64Array {
  const outer = size(dims.slice(0, axis)), inner = size(dims.slice(axis + 1)), len = dims[axis], outLen = i0.length;
  const dst = new Float64Array(outer * outLen * inner);
  for (let o = 0; o < outer; o++) {
    for (let k = 0; k < outLen; k++) {
      const a = (o * len + i0[k]) * inner, b = (o * len + i1[k]) * inner, di = (o * outLen + k) * inner;
      const w = w1[k];
      for (let i = 0; i < inner; i++) dst[di + i] = src[a + i] + (src[b + i] - src[a + i]) * w;
    }
  }
  return dst;
}

/** Integer results of linear interpolation round half to even and saturate, like the ONNX reference. */
function toIntegerDtype(dtype: DType, dims: number[], v: Float64Array): Tensor {
  const lim: Partial<Record<DType, [number, number]>> = {
    int8: [-128, 127], uint8: [0, 255], int16: [-32768, 32767], uint16: [0, 65535],
    int32: [-(2 ** 31), 2 ** 31 - 1], uint32: [0, 2 ** 32 - 1], int64: [-(2 ** 63), 2 ** 63], uint64: [0, 2 ** 64],
  };
  const [lo, hi] = lim[dtype] ?? [-Infinity, Infinity];
  const r = v.map((x) => {
    const f = Math.floor(x), d = x - f;
    const n = d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
    return Math.min(Math.max(n, lo), hi);
  });
  return fromF64(dtype, dims, r);
}

function cpuResize(node: Node, ins: (Tensor | undefined)[]): Tensor[] {
  const why = supportsResize(node);
  if (why) throw new GraphError(why, node.name);
  const x = need(node, ins, 0);
  const a = readAttrs(node);
  const p = plan(node, a, x.dims, optionalValues(ins[2]), optionalValues(ins[3]));
  const axes = resizeAxes(node, a, x.dims.length).filter((ax) => p.outDims[ax] !== x.dims[ax] || p.scales[ax] !== 1);
  for (const ax of axes) {
    if (x.dims[ax] === 0 && p.outDims[ax] > 0) throw new GraphError(`cannot resize empty axis ${ax} to ${p.outDims[ax]}`, node.name);
  }
  let dims = [...x.dims];
  if (a.mode === 'nearest') {
    let data = x.data;
    for (const ax of axes) {
      const n = p.outDims[ax];
      const idx = new Int32Array(n);
      for (let k = 0; k < n; k++) idx[k] = nearestIndex(a.nearest, sourceCoord(a.coord, k, p.scales[ax], dims[ax], n), dims[ax]);
      const next = [...dims];
      next[ax] = n;
      const dst = makeTensor(x.dtype, next).data;
      gatherAxis(data, dims, ax, idx, dst);
      data = dst;
      dims = next;
    }
    return [{ dtype: x.dtype, dims, data: data === x.data ? (x.data as TypedArray).slice() : data }];
  }
  if (!isFloat(x.dtype) && !isInt(x.dtype)) throw new GraphError(`linear resize of ${x.dtype} is undefined`, node.name, "use mode 'nearest'");
  let v = toF64(x);
  for (const ax of axes) {
    const n = p.outDims[ax], len = dims[ax];
    const i0 = new Int32Array(n), i1 = new Int32Array(n), w1 = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      const c = sourceCoord(a.coord, k, p.scales[ax], len, n);
      const f = Math.floor(c);
      // Edge padding: neighbours outside the input clamp to the border sample.
      i0[k] = Math.min(Math.max(f, 0), len - 1);
      i1[k] = Math.min(Math.max(f + 1, 0), len - 1);
      w1[k] = c - f;
    }
    v = linearAxis(v, dims, ax, i0, i1, w1);
    dims = [...dims];
    dims[ax] = n;
  }
  if (isInt(x.dtype)) return [toIntegerDtype(x.dtype, dims, v)];
  return [x.dtype === 'float64' ? makeTensor('float64', dims, v) : fromF64(x.dtype, dims, v)];
}

// ---- legacy forms ----

/** Resize-10 and Upsample use asymmetric coordinates; nearest picks floor when enlarging, ceil when shrinking. */
function legacyAttrs(node: Node, mode: string, nearest: string): Node['attrs'] {
  const attrs: Node['attrs'] = { ...withoutAttrs(node, ['scales', 'mode']).attrs };
  attrs.mode = { kind: 'string', value: mode === 'bilinear' ? 'linear' : mode };
  attrs.coordinate_transformation_mode = { kind: 'string', value: 'asymmetric' };
  if (mode === 'nearest') attrs.nearest_mode = { kind: 'string', value: nearest };
  return attrs;
}

function upgradeResize(node: Node, ctx: UpgradeCtx): Node[] {
  if (ctx.opset < 11 && node.inputs.length === 2) {
    const mode = attrString(node, 'mode', 'nearest');
    const scales = ctx.constOf?.(node.inputs[1]);
    const s = scales ? Array.from(toF64(scales)) : [];
    const down = s.some((v) => v < 1), up = s.some((v) => v > 1);
    const [x, sc] = node.inputs;
    if (mode === 'nearest' && down && up) {
      // ONNX Runtime rounds each axis by its own direction; nearest is separable, so split into two nodes.
      const mid = ctx.freshName(`${node.name}_down`);
      const downScales = ctx.addConst(`${node.name}_down_scales`, fromF64('float32', [s.length], s.map((v) => Math.min(v, 1))));
      const upScales = ctx.addConst(`${node.name}_up_scales`, fromF64('float32', [s.length], s.map((v) => Math.max(v, 1))));
      return [
        { ...node, name: `${node.name}/down`, inputs: [x, '', downScales], outputs: [mid], attrs: legacyAttrs(node, mode, 'ceil') },
        { ...node, inputs: [mid, '', upScales], attrs: legacyAttrs(node, mode, 'floor') },
      ];
    }
    return [{ ...node, inputs: [x, '', sc], attrs: legacyAttrs(node, mode, down ? 'ceil' : 'floor') }];
  }
  // Opset 11-12 models pass an empty scales constant to use sizes; make it an omitted input.
  const sc = node.inputs[2] ? ctx.constOf?.(node.inputs[2]) : undefined;
  if (sc && sc.data.length === 0) return [{ ...node, inputs: node.inputs.map((v, i) => (i === 2 ? '' : v)) }];
  return [node];
}

/** Upsample-7 (scales attribute) and Upsample-9 (scales input) as the equivalent Resize node. */
function upsampleAsResize(node: Node, ctx: Pick<UpgradeCtx, 'addConst'>): Node {
  const mode = attrString(node, 'mode', 'nearest');
  let scales = node.inputs[1];
  const attr = attrFloats(node, 'scales');
  if (!scales) {
    if (!attr) throw new GraphError('Upsample needs scales', node.name, 'set the scales attribute (opset 7-8) or input (opset 9)');
    scales = ctx.addConst(`${node.name}_scales`, fromF64('float32', [attr.length], attr));
  }
  return { ...node, op: 'Resize', inputs: [node.inputs[0], '', scales], attrs: legacyAttrs(node, mode, 'floor') };
}

/** Upsample nodes that bypassed import (built by hand) run through Resize with a local constant. */
function localUpsample(node: Node): { node: Node; scales?: Tensor } {
  let scales: Tensor | undefined;
  const n = upsampleAsResize(node, { addConst: (_h, t) => { scales = t; return '__upsample_scales'; } });
  return { node: n, scales };
}

function inferUpsample(node: Node, ins: (TensorType | undefined)[], ctx: InferCtx): TensorType[] {
  const { node: n, scales } = localUpsample(node);
  const x = need(node, ins, 0);
  const sType = scales ? { dtype: scales.dtype, shape: [...scales.dims] } : ins[1];
  return inferResize(n, [x, undefined, sType], { ...ctx, consts: [ctx.consts[0], undefined, scales ?? ctx.consts[1]], shapeValues: [] });
}

function cpuUpsample(node: Node, ins: (Tensor | undefined)[]): Tensor[] {
  const { node: n, scales } = localUpsample(node);
  return cpuResize(n, [ins[0], undefined, scales ?? ins[1]]);
}

function supportsUpsample(node: Node): string | undefined {
  const mode = attrString(node, 'mode', 'nearest');
  return ['nearest', 'linear', 'bilinear'].includes(mode) ? undefined : `Upsample mode '${mode}' is not supported`;
}

const defs: OpDef[] = [
  // Nearest and linear resampling are exact or convex combinations: fine in fp16.
  { op: 'Resize', since: 11, precision: 'follow', upgrade: upgradeResize, supports: supportsResize, infer: inferResize, cpu: cpuResize },
  {
    op: 'Upsample', since: 7, precision: 'follow', upgrade: (node, ctx) => [upsampleAsResize(node, ctx)],
    supports: supportsUpsample, infer: inferUpsample, cpu: cpuUpsample,
  },
];

register(...defs);
