// space-to-depth-conv: a stride-2 tensor-core conv over very few channels (the ResNet stem: 7x7, 3 channels) becomes
// a stride-1 conv over the 2x2 space-to-depth of its input, as MLPerf ResNet-50 submissions do. The tensor-core conv
// loads 16-byte chunks of 8 channels, so 3 channels are padded to 8 and 5/8 of the stem's math multiplies zeros
// (K = 7*7*8 = 392, 147 real). Per axis, with the kernel shifted right by e = padBegin % 2 zero taps (so that
// padBegin + e is even, m = (padBegin + e) / 2) and rounded up to an even length 2T:
//
//   out[p] = sum_{r<K} W[r] in[2p - pb + r] = sum_{a<T, b<2} W'[2a + b] in[2(p - m + a) + b],   W'[r + e] = W[r]
//
// i.e. a T-tap stride-1 conv over S[q] = (in[2q], in[2q+1]) with m zero pixels before. Two axes make 4C channels,
// padded to a multiple of 8: the stem becomes a 4x4 conv over 16 channels, K = 256, and each pixel is 32 contiguous
// bytes. The space-to-depth input (with its zero border, so the conv runs unpadded) is a tsrt::Relayout with
// blocksize 2: merged into the Relayout that already prepares the image (Cast + NCHW->NHWC + channel pad), else a new
// one in place of the channel-pad kernel the lowering would add. Only where it strictly lowers K; the fusion
// report says why not otherwise. TSRT_SPACE_TO_DEPTH=0 turns it off (A/B timing on the GPU).
// The int8 stem (tsrt::QConv over the quantizing Relayout of fuse-relayout) takes the same rewrite with 16-channel
// chunks: 7*7*16 = 784 -> 4*4*16 = 256. Its int32 sums are exact, so the rewritten conv gives the same bits.
import type { DType, Node, Tensor } from '../ir/types.js';
import { DTYPE_ONNX, DTYPE_SIZE, fromF64, toF64 } from '../ir/tensor.js';
import { attrInt, attrInts, attrString } from '../ops/attrs.js';
import { relayoutAttrs } from '../ops/relayout.js';
import { readWindowAttrs, windowAxis, type WindowAttrs } from '../ops/window.js';
import type { Pass } from './pass.js';
import { GraphEdit, GraphView, recordFusion, recordRejection, scopedPass } from './patterns.js';

export const SPACE_TO_DEPTH = 'space-to-depth-conv';
/** Bytes of the channel chunk the tensor-core convs load (8 fp16/bf16 channels, lower_conv.ts; 16 int8, lower_int8.ts). */
const TC_BYTES = 16;
/** Input channels up to which 2x2 space-to-depth (4C channels) can fit in the padding it removes. */
const MAX_CHANNELS = 4;
const roundUp = (c: number, dtype: DType) => { const m = TC_BYTES / DTYPE_SIZE[dtype]; return Math.ceil(c / m) * m; };

/** Where the conv's real input comes from: the tensor the new Relayout reads, viewed as NHWC through `perm`. */
interface Source {
  input: string;
  /** [N, H, W, C] after perm: C real channels. */
  dims: number[];
  perm: number[];
  to?: DType;
  /** The merged Relayout's int8 quantization scale. */
  scale?: number;
  /** The block-1 Relayout merged into the new one (its channel pad is dropped, its spatial pads join the conv's). */
  merged?: Node;
  /** Zero pixels the merged Relayout puts around the image: [top, left, bottom, right]. */
  border: number[];
  /** Weight channel of real channel 0 (the merged Relayout's channel pad before the data). */
  cOff: number;
}

function source(v: GraphView, x: string): Source | undefined {
  const t = v.type(x);
  if (!t || t.shape.length !== 4 || !t.shape.every((d): d is number => typeof d === 'number')) return undefined;
  const p = v.prod(x);
  const it = p && v.type(p.inputs[0]);
  if (p && p.domain === 'tsrt' && p.op === 'Relayout' && !v.blocked(x) && it && it.shape.every((d) => typeof d === 'number')) {
    const a = relayoutAttrs(p, it.shape.length, it.dtype);
    if (typeof a !== 'string' && a.blocksize === 1 && it.shape.length === 4 && !a.pads[0] && !a.pads[4]) {
      const dims = a.perm.map((q) => it.shape[q] as number);
      return {
        input: p.inputs[0], dims, perm: a.perm, to: a.to === it.dtype ? undefined : a.to, scale: a.scale, merged: p,
        border: [a.pads[1], a.pads[2], a.pads[5], a.pads[6]], cOff: a.pads[3],
      };
    }
  }
  return { input: x, dims: t.shape, perm: [0, 1, 2, 3], border: [0, 0, 0, 0], cOff: 0 };
}

/** One spatial axis of the rewrite: taps T, shift e, zero pixels before/after the space-to-depth input. */
interface Axis { k: number; e: number; taps: number; before: number; after: number }

function axisPlan(k: number, inSize: number, padBegin: number, out: number): Axis {
  const e = padBegin % 2, m = (padBegin + e) / 2, taps = Math.ceil((k + e) / 2);
  return { k, e, taps, before: m, after: out + taps - 1 - m - Math.ceil(inSize / 2) };
}

type Plan = { reject: string } | { src: Source; axes: Axis[]; cp: number; kBefore: number; kAfter: number };

/** Whether `conv` is a small-channel tensor-core conv (a candidate at all), and if so the rewrite or why not. */
function plan(v: GraphView, conv: Node): Plan | undefined {
  const int8 = conv.op === 'QConv';
  if (conv.domain !== 'tsrt' || (conv.op !== 'FusedConv' && !int8) || attrString(conv, 'layout', 'NCHW') !== 'NHWC') return undefined;
  const x = v.type(conv.inputs[0]), y = v.type(conv.outputs[0]), w = v.const(conv.inputs[1]);
  if (!x || !y || !w || w.dims.length !== 4 || (int8 ? x.dtype !== 'int8' : x.dtype !== 'float16' && x.dtype !== 'bfloat16')) return undefined;
  const src = source(v, conv.inputs[0]);
  if (!src || src.dims[3] > MAX_CHANNELS) return undefined;
  const [kOut, cw, kh, kw] = w.dims;
  const c = src.dims[3];
  const st = attrInts(conv, 'strides', [1, 1]), dil = attrInts(conv, 'dilations', [1, 1]);
  if (attrInt(conv, 'group', 1) !== 1) return { reject: `group ${attrInt(conv, 'group', 1)}: only dense convs` };
  if (cw === 1 && kOut === 1) return { reject: 'a 1-in 1-out conv runs the direct depthwise kernel, not the tensor cores' };
  if (st.join() !== '2,2') return { reject: `strides [${st}]: only stride 2 folds into a 2x2 space-to-depth` };
  if (dil.some((d) => d !== 1)) return { reject: `dilations [${dil}]` };
  if (kh < 3 || kw < 3) return { reject: `kernel ${kh}x${kw}: below 3x3 the taps do not shrink` };
  if (process.env.TSRT_SPACE_TO_DEPTH === '0') return { reject: 'TSRT_SPACE_TO_DEPTH=0' };
  let a: WindowAttrs;
  try { a = readWindowAttrs(conv, 2, [kh, kw]); } catch { return undefined; }
  const inR = [src.dims[1] + src.border[0] + src.border[2], src.dims[2] + src.border[1] + src.border[3]];
  const axes = [0, 1].map((i) => {
    const r = windowAxis(a, i, inR[i]);
    return axisPlan(i ? kw : kh, src.dims[i + 1], r.begin + src.border[i], r.out);
  });
  if (axes.some((ax) => ax.after < 0)) return { reject: 'the space-to-depth input would be cropped (the conv skips its last input rows/columns)' };
  const cp = roundUp(4 * c, x.dtype), kBefore = kh * kw * roundUp(cw, x.dtype), kAfter = axes[0].taps * axes[1].taps * cp;
  if (kAfter >= kBefore) return { reject: `K ${kBefore} -> ${kAfter} (${axes[0].taps}x${axes[1].taps}x${cp}) is no reduction` };
  return { src, axes, cp, kBefore, kAfter };
}

/** W [K, Cw, kh, kw] -> [K, cp, Th, Tw]: channel (bh*2 + bw)*C + c, tap (ah, aw) holds W[k, cOff + c, 2ah + bh - eh,
 * 2aw + bw - ew] (zero outside the kernel and in the padding channels). Values move unchanged (same dtype). */
function s2dWeights(w: Tensor, c: number, cOff: number, cp: number, ax: Axis[]): Tensor {
  const [kOut, cw, kh, kw] = w.dims, [th, tw] = [ax[0].taps, ax[1].taps];
  const src = toF64(w), dst = new Float64Array(kOut * cp * th * tw);
  for (let k = 0; k < kOut; k++) for (let ch = 0; ch < 4 * c; ch++) {
    const q = Math.floor(ch / c), ci = ch % c, bh = q >> 1, bw = q & 1;
    for (let ah = 0; ah < th; ah++) for (let aw = 0; aw < tw; aw++) {
      const r = 2 * ah + bh - ax[0].e, s = 2 * aw + bw - ax[1].e;
      if (r >= 0 && r < kh && s >= 0 && s < kw) dst[((k * cp + ch) * th + ah) * tw + aw] = src[((k * cw + cOff + ci) * kh + r) * kw + s];
    }
  }
  return fromF64(w.dtype, [kOut, cp, th, tw], dst);
}

const ints = (value: number[]) => ({ kind: 'ints' as const, value });

export const spaceToDepthConv: Pass = scopedPass(SPACE_TO_DEPTH, 2, (g, ctx, scope) => {
  const v = new GraphView(g, scope);
  const e = new GraphEdit(v);
  for (const conv of v.order) {
    const p = plan(v, conv);
    if (!p) continue;
    const src = 'src' in p ? p.src : source(v, conv.inputs[0])!;
    const group = [...(src.merged ? [src.merged] : []), conv];
    if ('reject' in p) { recordRejection(ctx, SPACE_TO_DEPTH, 'SpaceToDepthConv', group, p.reject); continue; }
    const { axes, cp } = p;
    const x = v.type(conv.inputs[0])!, [n, , , c] = src.dims;
    const yOut = v.type(conv.outputs[0])!.shape as number[];
    const s2d = e.fresh(`${conv.inputs[0]}_s2d`);
    e.types.set(s2d, { dtype: x.dtype, shape: [n, yOut[1] + axes[0].taps - 1, yOut[2] + axes[1].taps - 1, cp] });
    const relayout: Node = {
      name: e.fresh(`${conv.name}_s2d`), op: 'Relayout', domain: 'tsrt', inputs: [src.input], outputs: [s2d],
      attrs: {
        ...(src.perm.some((q, i) => q !== i) ? { perm: ints(src.perm) } : {}),
        pads: ints([0, axes[0].before, axes[1].before, 0, 0, axes[0].after, axes[1].after, cp - 4 * c]),
        ...(src.to ? { to: { kind: 'int' as const, value: DTYPE_ONNX[src.to] } } : {}),
        ...(src.scale !== undefined ? { scale: { kind: 'float' as const, value: src.scale } } : {}),
        blocksize: { kind: 'int', value: 2 },
      },
    };
    const w = s2dWeights(v.const(conv.inputs[1])!, c, src.cOff, cp, axes);
    // explicit geometry: the zero border is in the Relayout, so no auto_pad either
    const attrs = Object.fromEntries(Object.entries(conv.attrs).filter(([k]) => k !== 'auto_pad'));
    const conv2: Node = {
      ...conv, inputs: [s2d, e.addConst(`${conv.inputs[1]}_s2d`, w), ...conv.inputs.slice(2)],
      attrs: { ...attrs, kernel_shape: ints([axes[0].taps, axes[1].taps]), strides: ints([1, 1]), pads: ints([0, 0, 0, 0]), dilations: ints([1, 1]) },
    };
    e.replace(group, [relayout, conv2]);
    const [kh, kw] = [axes[0].k, axes[1].k];
    recordFusion(ctx, SPACE_TO_DEPTH, `SpaceToDepthConv(${kh}x${kw}s2 -> ${axes[0].taps}x${axes[1].taps}s1, K ${p.kBefore} -> ${p.kAfter})`, conv2.name, group);
  }
  return e.finish();
});
