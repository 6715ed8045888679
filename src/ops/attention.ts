// Attention (ai.onnx 23, 24): scaled dot-product attention over 3-D ([B,S,H*D]) or 4-D ([B,H,S,D]) Q/K/V with
// grouped KV heads, a float or bool mask (broadcast, and padded with -inf when shorter than the KV length),
// causal masking, softcap, an in-operator KV cache (past_* -> present_*), nonpad_kv_seqlen (opset 24) and the
// optional QK output. Computed in float64 and rounded once to the output type.
import { GraphError } from '../errors.js';
import type { Dim, Node, Tensor, TensorType } from '../ir/types.js';
import { fromF64, shapeStr, toF64 } from '../ir/tensor.js';
import { attrFloat, attrInt } from './attrs.js';
import { matmulF64 } from './gemm.js';
import { register, type InferCtx } from './registry.js';
import { broadcastIndex, need } from './util.js';

/** ONNX float types softmax_precision may name: float, float16, double, bfloat16. */
const SOFTMAX_PRECISIONS = new Set([1, 10, 11, 16]);

/** Attributes of later opsets (sliding windows) that this implementation does not apply. */
const WINDOW_ATTRS = ['local_window_size', 'left_window_size', 'right_window_size'];

function headsAttrs(node: Node): { qHeads: number; kvHeads: number } {
  const qHeads = attrInt(node, 'q_num_heads'), kvHeads = attrInt(node, 'kv_num_heads');
  if (qHeads === undefined || kvHeads === undefined || qHeads <= 0 || kvHeads <= 0) {
    throw new GraphError('3-D Q/K/V need positive q_num_heads and kv_num_heads attributes', node.name,
      'set q_num_heads and kv_num_heads, or pass 4-D [batch, heads, seq, head_size] inputs');
  }
  return { qHeads, kvHeads };
}

const divDim = (d: Dim, by: number): Dim => (typeof d === 'number' ? d / by : by === 1 ? d : '?');

function inferAttention(node: Node, ins: (TensorType | undefined)[], ctx: InferCtx): TensorType[] {
  const Q = need(node, ins, 0), K = need(node, ins, 1), V = need(node, ins, 2);
  const r = Q.shape.length;
  if ((r !== 3 && r !== 4) || K.shape.length !== r || V.shape.length !== r) {
    throw new GraphError(`Q, K, V must all be 3-D or all 4-D, got ${shapeStr(Q.shape)}, ${shapeStr(K.shape)}, ${shapeStr(V.shape)}`, node.name);
  }
  let B: Dim, Hq: Dim, Hkv: Dim, S: Dim, L: Dim, Dk: Dim, Dv: Dim;
  if (r === 3) {
    const { qHeads, kvHeads } = headsAttrs(node);
    [B, S, L, Hq, Hkv] = [Q.shape[0], Q.shape[1], K.shape[1], qHeads, kvHeads];
    Dk = divDim(Q.shape[2], qHeads);
    Dv = divDim(V.shape[2], kvHeads);
  } else {
    [B, Hq, S, Dk] = Q.shape;
    [Hkv, L] = [K.shape[1], K.shape[2]];
    Dv = V.shape[3];
  }
  const P: Dim = ins[4] ? ins[4].shape[2] : 0;
  const T: Dim = typeof P === 'number' && typeof L === 'number' ? P + L : P === 0 ? L : ctx.freshDim();
  const yShape: Dim[] = r === 4 ? [B, Hq, S, Dv]
    : [B, S, typeof Dv === 'number' ? (Hq as number) * Dv : Hq === Hkv ? V.shape[2] : ctx.freshDim()];
  return [
    { dtype: Q.dtype, shape: yShape },
    { dtype: K.dtype, shape: [B, Hkv, T, Dk] },
    { dtype: V.dtype, shape: [B, Hkv, T, Dv] },
    { dtype: Q.dtype, shape: [B, Hq, S, T] },
  ];
}

/** [B, S, H*D] -> [B, H, S, D] */
function splitHeads(x: Float64Array, B: number, S: number, H: number, D: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      for (let h = 0; h < H; h++) {
        const src = ((b * S + s) * H + h) * D, dst = ((b * H + h) * S + s) * D;
        for (let d = 0; d < D; d++) out[dst + d] = x[src + d];
      }
    }
  }
  return out;
}

/** Concatenates past [B,H,P,D] and new [B,H,L,D] along the sequence axis. */
function concatSeq(past: Float64Array | undefined, cur: Float64Array, BH: number, P: number, L: number, D: number): Float64Array {
  if (!past || P === 0) return cur;
  const T = P + L;
  const out = new Float64Array(BH * T * D);
  for (let i = 0; i < BH; i++) {
    out.set(past.subarray(i * P * D, (i + 1) * P * D), i * T * D);
    out.set(cur.subarray(i * L * D, (i + 1) * L * D), (i * T + P) * D);
  }
  return out;
}

interface BiasArgs {
  mask?: Tensor;
  isCausal: boolean;
  /** Valid keys per batch (opset 24 nonpad_kv_seqlen). */
  nonpad?: Float64Array;
  hasPast: boolean;
  B: number; Hq: number; S: number; T: number; P: number;
}

/** Additive bias [B, Hq, S, T] from the mask, causal masking and nonpad_kv_seqlen, or undefined if none. */
function buildBias(node: Node, a: BiasArgs): Float64Array | undefined {
  const { mask, B, Hq, S, T } = a;
  if (!mask && !a.isCausal && !a.nonpad) return undefined;
  const rows = B * Hq * S;
  const bias = new Float64Array(rows * T);
  if (mask) {
    const md = mask.dims;
    const Tm = md[md.length - 1];
    const target = [B, Hq, S, Tm];
    const ok = md.length >= 1 && md.length <= 4 && Tm <= T &&
      md.every((d, i) => d === 1 || d === target[4 - md.length + i]);
    if (!ok) {
      throw new GraphError(`attn_mask ${shapeStr(md)} does not broadcast to [batch=${B}, heads=${Hq}, q_seq=${S}, total_seq<=${T}]`, node.name,
        'give attn_mask a shape broadcastable to (batch, q_heads, q_seq, total_seq); its last dim may be shorter');
    }
    const idx = broadcastIndex(md, target);
    const v = toF64(mask);
    const isBool = mask.dtype === 'bool';
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < T; j++) {
        let x = -Infinity;
        if (j < Tm) { const m = v[idx[r * Tm + j]]; x = isBool ? (m ? 0 : -Infinity) : m; }
        bias[r * T + j] = x;
      }
    }
  }
  for (let b = 0; b < B; b++) {
    // Causal frontier: query i sees key j iff j <= i + offset, offset = keys before this query block.
    const offset = a.hasPast ? a.P : a.nonpad ? a.nonpad[b] - S : 0;
    const valid = a.nonpad ? a.nonpad[b] : T;
    for (let h = 0; h < Hq; h++) {
      for (let i = 0; i < S; i++) {
        const row = ((b * Hq + h) * S + i) * T;
        const first = Math.max(0, Math.min(T, a.isCausal ? Math.min(valid, i + offset + 1) : valid));
        for (let j = first; j < T; j++) bias[row + j] = -Infinity;
      }
    }
  }
  return bias;
}

function attentionCpu(node: Node, ins: (Tensor | undefined)[]): Tensor[] {
  const Q = need(node, ins, 0), K = need(node, ins, 1), V = need(node, ins, 2);
  const [mask, pastK, pastV, nonpadT] = [ins[3], ins[4], ins[5], ins[6]];
  const r = Q.dims.length;
  if ((r !== 3 && r !== 4) || K.dims.length !== r || V.dims.length !== r) {
    throw new GraphError(`Q, K, V must all be 3-D or all 4-D, got ${shapeStr(Q.dims)}, ${shapeStr(K.dims)}, ${shapeStr(V.dims)}`, node.name);
  }
  if (!pastK !== !pastV) throw new GraphError('past_key and past_value must be given together', node.name);
  let B: number, Hq: number, Hkv: number, S: number, L: number, Dk: number, Dv: number;
  let q: Float64Array, k: Float64Array, v: Float64Array;
  if (r === 3) {
    ({ qHeads: Hq, kvHeads: Hkv } = headsAttrs(node));
    [B, S] = Q.dims;
    L = K.dims[1];
    Dk = Q.dims[2] / Hq;
    Dv = V.dims[2] / Hkv;
    if (!Number.isInteger(Dk) || !Number.isInteger(Dv) || K.dims[2] !== Hkv * Dk) {
      throw new GraphError(`hidden sizes Q ${Q.dims[2]}, K ${K.dims[2]}, V ${V.dims[2]} do not split into ${Hq} query / ${Hkv} kv heads of equal size`,
        node.name, 'check q_num_heads and kv_num_heads');
    }
    if (K.dims[0] !== B || V.dims[0] !== B || V.dims[1] !== L) {
      throw new GraphError(`K ${shapeStr(K.dims)} and V ${shapeStr(V.dims)} do not match Q ${shapeStr(Q.dims)}`, node.name);
    }
    q = splitHeads(toF64(Q), B, S, Hq, Dk);
    k = splitHeads(toF64(K), B, L, Hkv, Dk);
    v = splitHeads(toF64(V), B, L, Hkv, Dv);
  } else {
    [B, Hq, S, Dk] = Q.dims;
    [Hkv, L] = [K.dims[1], K.dims[2]];
    Dv = V.dims[3];
    const kOk = K.dims[0] === B && K.dims[3] === Dk, vOk = V.dims[0] === B && V.dims[1] === Hkv && V.dims[2] === L;
    if (!kOk || !vOk) {
      throw new GraphError(`K ${shapeStr(K.dims)} and V ${shapeStr(V.dims)} do not match Q ${shapeStr(Q.dims)}`, node.name,
        'K must be [batch, kv_heads, kv_seq, head_size] and V [batch, kv_heads, kv_seq, v_head_size]');
    }
    [q, k, v] = [toF64(Q), toF64(K), toF64(V)];
  }
  if (Hq % Hkv !== 0) {
    throw new GraphError(`${Hq} query heads are not a multiple of ${Hkv} kv heads`, node.name, 'q_num_heads must be divisible by kv_num_heads');
  }
  const P = pastK ? pastK.dims[2] : 0;
  if (pastK && pastV) {
    const pk = pastK.dims, pv = pastV.dims;
    if (pk.length !== 4 || pk[0] !== B || pk[1] !== Hkv || pk[3] !== Dk || pv.length !== 4 || pv[0] !== B || pv[1] !== Hkv || pv[2] !== P || pv[3] !== Dv) {
      throw new GraphError(`past_key ${shapeStr(pk)} / past_value ${shapeStr(pv)} do not match [${B},${Hkv},past,${Dk}] / [${B},${Hkv},past,${Dv}]`, node.name);
    }
  }
  const T = P + L;
  const presentK = concatSeq(pastK && toF64(pastK), k, B * Hkv, P, L, Dk);
  const presentV = concatSeq(pastV && toF64(pastV), v, B * Hkv, P, L, Dv);

  const scale = attrFloat(node, 'scale') ?? 1 / Math.sqrt(Dk);
  const softcap = attrFloat(node, 'softcap', 0);
  const mode = attrInt(node, 'qk_matmul_output_mode', 0);
  const nonpad = nonpadT ? toF64(nonpadT) : undefined;
  if (nonpad && nonpad.length !== B) throw new GraphError(`nonpad_kv_seqlen has ${nonpad.length} values for batch ${B}`, node.name);
  const bias = buildBias(node, { mask, isCausal: attrInt(node, 'is_causal', 0) !== 0, nonpad, hasPast: !!pastK, B, Hq, S, T, P });

  // Q and K are each scaled by sqrt(scale) before the product, as the spec prescribes against overflow.
  const sq = Math.sqrt(scale);
  const qs = new Float64Array(q.length), ks = new Float64Array(presentK.length);
  for (let i = 0; i < q.length; i++) qs[i] = q[i] * sq;
  for (let i = 0; i < ks.length; i++) ks[i] = presentK[i] * sq;
  const group = Hq / Hkv;
  const rows = B * Hq * S;
  const raw = new Float64Array(rows * T);
  const y = new Float64Array(rows * Dv);
  const wantQk = mode >= 0 && mode <= 3 ? mode : 0;
  const qkOut = new Float64Array(rows * T);
  const p = new Float64Array(S * T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const kvh = (b * Hkv + Math.floor(h / group));
      const bh = b * Hq + h;
      matmulF64(qs, ks, raw, { M: S, K: Dk, N: T, transB: true, aOff: bh * S * Dk, bOff: kvh * T * Dk, outOff: bh * S * T });
      for (let i = 0; i < S; i++) {
        const row = (bh * S + i) * T;
        let max = -Infinity;
        for (let j = 0; j < T; j++) {
          let x = raw[row + j];
          if (wantQk === 0) qkOut[row + j] = x;
          if (softcap > 0) x = softcap * Math.tanh(x / softcap);
          if (wantQk === 1) qkOut[row + j] = x;
          if (bias) x += bias[row + j];
          if (wantQk === 2) qkOut[row + j] = x;
          p[i * T + j] = x;
          if (x > max) max = x;
        }
        // A row with every key masked yields zeros rather than NaN (ONNX errata to opset 23/24, onnx#8068).
        let sum = 0;
        for (let j = 0; j < T; j++) {
          const e = max === -Infinity ? 0 : Math.exp(p[i * T + j] - max);
          p[i * T + j] = e;
          sum += e;
        }
        const inv = sum > 0 ? 1 / sum : 0;
        for (let j = 0; j < T; j++) {
          p[i * T + j] *= inv;
          if (wantQk === 3) qkOut[row + j] = p[i * T + j];
        }
      }
      matmulF64(p, presentV, y, { M: S, K: T, N: Dv, bOff: kvh * T * Dv, outOff: bh * S * Dv });
    }
  }
  const outY = r === 4 ? fromF64(Q.dtype, [B, Hq, S, Dv], y)
    : fromF64(Q.dtype, [B, S, Hq * Dv], mergeHeads(y, B, Hq, S, Dv));
  return [
    outY,
    fromF64(K.dtype, [B, Hkv, T, Dk], presentK),
    fromF64(V.dtype, [B, Hkv, T, Dv], presentV),
    fromF64(Q.dtype, [B, Hq, S, T], qkOut),
  ];
}

/** [B, H, S, D] -> [B, S, H*D] */
function mergeHeads(x: Float64Array, B: number, H: number, S: number, D: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let s = 0; s < S; s++) {
        const src = ((b * H + h) * S + s) * D, dst = ((b * S + s) * H + h) * D;
        for (let d = 0; d < D; d++) out[dst + d] = x[src + d];
      }
    }
  }
  return out;
}

register({
  op: 'Attention', since: 23, precision: 'follow',
  supports: (node, opset) => {
    const mode = attrInt(node, 'qk_matmul_output_mode', 0);
    if (mode < 0 || mode > 3) return `qk_matmul_output_mode ${mode} is not one of 0 (QK), 1 (softcap), 2 (mask), 3 (softmax)`;
    const sp = attrInt(node, 'softmax_precision');
    if (sp !== undefined && !SOFTMAX_PRECISIONS.has(sp)) return `softmax_precision ${sp} is not a float type (1, 10, 11 or 16)`;
    const win = WINDOW_ATTRS.find((a) => node.attrs[a] && attrInt(node, a, -1) !== -1);
    if (win) return `attribute '${win}' (sliding-window attention) is not implemented`;
    if (opset < 24 && node.inputs[6]) return 'nonpad_kv_seqlen needs opset 24';
    return undefined;
  },
  infer: inferAttention,
  cpu: (node, ins) => attentionCpu(node, ins),
});
