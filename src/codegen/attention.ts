// Attention kernels for tsrt::FusedAttention: Y = Softmax(Q K^T * scale [+ mask]) V per (batch, head), reading Q/K/V
// straight from the projections' [B, S, H*D] layout and writing Y as [B, Sq, H*D], so no head split or merge
// is materialized.
//
//  - fp16/bf16 'tc': flash-attention forward. One CTA per (query block of BM = 64/128 rows, head, batch), one warp per 16
//    query rows. Q is loaded into shared memory once; K/V tiles of 64 keys stream through a 2-stage cp.async
//    pipeline; S = Q K^T and O += P V run on mma.sync m16n8k16 with fp32 accumulation; the softmax is online (running
//    row max and sum in fp32 registers, base-2 exponentials). D in {32, 64, 128}.
//  - 'simt' (fp32, and fp16/bf16 with other head sizes): one warp per query row, each lane owning D/32 of the head dims,
//    keys one at a time with the same online softmax. Simple and exact enough to be the reference on the GPU.
//
// Like tc_gemm.ts the sources include no headers (fp16/bf16 are raw 16-bit storage converted with PTX cvt, through
// the tc_half helpers of the element type: tcHelpers), so they compile under any NVRTC. Sizes are baked into the source; the kernel takes only pointers.
import { strides } from '../ir/tensor.js';
import { attentionAttrs } from '../ops/attention_fused.js';
import { shortHash, type KernelParam, type KernelSource } from './kernel.js';
import { NotLowerable, registerLowering } from './lower.js';
import { MAX_SMEM, SM_COUNT, flit, tcHelpers, type TcElem } from './tc_gemm.js';

export interface AttentionProblem {
  dtype: 'float16' | 'bfloat16' | 'float32';
  b: number; h: number; sq: number; sk: number; d: number;
  scale: number;
  /** Additive mask in the kernel's dtype, with dims that broadcast (numpy rules) to [b, h, sq, sk]. */
  mask: 'none' | { dims: number[] };
  /** Elements between consecutive tokens of Q, K, V and Y (default h*d); more when they are column slices of a
   * wider tensor (a fused QKV projection). The head's D columns start at h*d within each token. */
  ldq?: number; ldk?: number; ldv?: number; ldo?: number;
  /** Element offsets of Q, K and V from their pointers (a packed QKV buffer passed as q, k and v: 0, h*d, 2*h*d). */
  offq?: number; offk?: number; offv?: number;
  /** 'tc' (fp16/bf16, d in 32/64/128; the default for them) or 'simt' (any d up to 1024; the only one for fp32). */
  impl?: 'tc' | 'simt';
  /** Query rows per CTA of the tc kernel; default 128 when that still gives two CTAs per SM, else 64. */
  blockM?: 64 | 128;
  /** SMs of the target GPU (absent: SM_COUNT), for the blockM default. */
  smCount?: number;
}

export const TC_HEAD_DIMS = [32, 64, 128] as const;
/** Keys per K/V tile of the tc kernel. */
const BN = 64;
const LOG2E = Math.LOG2E;

interface Resolved extends Required<Omit<AttentionProblem, 'mask' | 'blockM' | 'impl' | 'smCount'>> {
  impl: 'tc' | 'simt';
  /** Element strides of the mask over [b, h, sq, sk] (0 where it broadcasts), or undefined without a mask. */
  maskStrides?: number[];
  maskDims?: number[];
  /** Some element offset reaches 2^31: index with 64-bit integers. */
  big: boolean;
}

function resolve(p: AttentionProblem): Resolved {
  for (const [k, x] of Object.entries({ b: p.b, h: p.h, sq: p.sq, sk: p.sk, d: p.d })) {
    if (!Number.isInteger(x) || x < 1) throw new NotLowerable(`attention ${k}=${x} must be a positive integer`);
  }
  if (!Number.isFinite(p.scale)) throw new NotLowerable(`attention scale ${p.scale} is not finite`);
  if (p.dtype !== 'float16' && p.dtype !== 'bfloat16' && p.dtype !== 'float32') throw new NotLowerable(`${p.dtype} attention`);
  const hd = p.h * p.d;
  const r = {
    dtype: p.dtype, b: p.b, h: p.h, sq: p.sq, sk: p.sk, d: p.d, scale: p.scale,
    ldq: p.ldq ?? hd, ldk: p.ldk ?? hd, ldv: p.ldv ?? hd, ldo: p.ldo ?? hd,
    offq: p.offq ?? 0, offk: p.offk ?? 0, offv: p.offv ?? 0,
    impl: p.impl ?? (p.dtype === 'float32' ? 'simt' : 'tc'),
  } as const;
  for (const [k, x] of Object.entries({ ldq: r.ldq, ldk: r.ldk, ldv: r.ldv, ldo: r.ldo })) {
    if (!Number.isInteger(x) || x < hd) throw new NotLowerable(`${k}=${x} is less than h*d=${hd}`);
  }
  let maskStrides: number[] | undefined, maskDims: number[] | undefined;
  if (p.mask !== 'none') {
    const full = [p.b, p.h, p.sq, p.sk];
    if (p.mask.dims.length > 4) throw new NotLowerable(`mask of rank ${p.mask.dims.length} does not broadcast to [${full}]`);
    maskDims = [...new Array<number>(4 - p.mask.dims.length).fill(1), ...p.mask.dims];
    if (maskDims.some((x, i) => x !== 1 && x !== full[i])) throw new NotLowerable(`mask [${p.mask.dims}] does not broadcast to [${full}]`);
    const st = strides(maskDims);
    maskStrides = maskDims.map((x, i) => (x === 1 ? 0 : st[i]));
  }
  for (const [k, x] of Object.entries({ offq: r.offq, offk: r.offk, offv: r.offv })) {
    if (!Number.isInteger(x) || x < 0) throw new NotLowerable(`${k}=${x} must be a non-negative integer`);
  }
  const ends = [r.offq + p.b * p.sq * r.ldq, r.offk + p.b * p.sk * r.ldk, r.offv + p.b * p.sk * r.ldv, p.b * p.sq * r.ldo, maskDims ? maskDims.reduce((a, x) => a * x, 1) : 0];
  return { ...r, maskStrides, maskDims, big: Math.max(...ends) >= 2 ** 31 };
}

/** The tc_half element of a 16-bit problem (the fp32 SIMT kernel includes the fp16 helpers unused, as before). */
const elem = (r: Resolved): TcElem => (r.dtype === 'bfloat16' ? 'bf16' : 'f16');

/** Moves q/k/v to their parts of a packed buffer (they alias it read-only, so __restrict__ still holds). */
const packedOffsets = (r: Resolved) => (r.offq || r.offk || r.offv ? `  q += ${r.offq}; k += ${r.offk}; v += ${r.offv};\n` : '');

const problemComment = (r: Resolved) => `b=${r.b} h=${r.h} sq=${r.sq} sk=${r.sk} d=${r.d} scale=${r.scale} ld=${r.ldq}/${r.ldk}/${r.ldv}/${r.ldo}`
  + (r.offq || r.offk || r.offv ? ` off=${r.offq}/${r.offk}/${r.offv}` : '')
  + ` mask=${r.maskDims ? `[${r.maskDims}]` : 'none'}`;

/** Pointer parameters: q, k, v, [mask,] y. */
function params(r: Resolved, T: string): { params: KernelParam[]; decls: string[] } {
  const names = ['q', 'k', 'v', ...(r.maskDims ? ['mask'] : []), 'y'];
  return {
    params: names.map((name) => ({ name, type: 'ptr' as const })),
    decls: names.map((n) => (n === 'y' ? `${T}* __restrict__ y` : `const ${T}* __restrict__ ${n}`)),
  };
}

/** Statement adding the mask element of (query `qr`, key `key`) to float `x`, scaled by `mul`. */
function maskTerm(r: Resolved, x: string, qr: string, key: string, load: (e: string) => string, mul: number): string {
  if (!r.maskStrides) return '';
  const [, , sq, sk] = r.maskStrides;
  const off = `mBase${sq ? ` + (idx_t)${qr} * ${sq}` : ''}${sk ? ` + (idx_t)${key} * ${sk}` : ''}`;
  return `${x} = fmaf(${load(`mask[${off}]`)}, ${flit(mul)}, ${x});`;
}

const maskBase = (r: Resolved, b: string, h: string) => (r.maskStrides
  ? `const idx_t mBase = (idx_t)${b} * ${r.maskStrides[0]} + (idx_t)${h} * ${r.maskStrides[1]}; (void)mBase;` : '');

/** The kernel for a problem: the tc flash-attention kernel for fp16 (NotLowerable outside its head sizes, where
 * the caller may ask for impl 'simt'), the SIMT kernel otherwise. */
export function emitFlashAttention(p: AttentionProblem): KernelSource {
  const r = resolve(p);
  if (r.impl === 'simt') return emitSimt(r);
  if (r.dtype === 'float32') throw new NotLowerable('the tensor-core attention kernel is fp16/bf16 only');
  if (!(TC_HEAD_DIMS as readonly number[]).includes(r.d)) throw new NotLowerable(`head size ${r.d} is not one of ${TC_HEAD_DIMS.join(', ')} (tensor-core attention)`);
  for (const [k, x] of Object.entries({ ldq: r.ldq, ldk: r.ldk, ldv: r.ldv, ldo: r.ldo, offq: r.offq, offk: r.offk, offv: r.offv })) {
    if (x % 8) throw new NotLowerable(`${k}=${x} is not a multiple of 8 (16-byte rows for cp.async)`);
  }
  if (r.h > 65535 || r.b > 65535) throw new NotLowerable(`heads ${r.h} or batch ${r.b} exceed the grid's 65535`);
  const bm = p.blockM ?? (Math.ceil(r.sq / 128) * r.b * r.h >= 2 * (p.smCount ?? SM_COUNT) ? 128 : 64);
  if (bm !== 64 && bm !== 128) throw new NotLowerable(`blockM ${bm} is not 64 or 128`);
  return emitTc(r, bm);
}

// ---- fp16 tensor-core flash attention -------------------------------------------------------------------

/** Adds the mask to the key pair (key, key + 1) of row qr, in the log2 domain: one 32-bit load when the pair is
 * adjacent and 4-byte aligned in the mask (contiguous along keys, even strides, even sk), two 16-bit loads otherwise. */
function tcMaskPair(r: Resolved): string {
  if (!r.maskStrides) return '(void)qr; (void)key;';
  const [, , sq, sk] = r.maskStrides;
  const off = (key: string) => `mBase${sq ? ` + (idx_t)qr * ${sq}` : ''}${sk ? ` + (idx_t)(${key}) * ${sk}` : ''}`;
  const L = flit(LOG2E);
  if (sk === 1 && r.maskStrides.slice(0, 3).every((x) => x % 2 === 0) && r.sk % 2 === 0) {
    return `if (qr < ${r.sq} && key < ${r.sk}) {
          const u32 mv = *reinterpret_cast<const u32*>(mask + ${off('key')});
          x0 = fmaf(lo_h2f(mv), ${L}, x0); x1 = fmaf(hi_h2f(mv), ${L}, x1);
        }`;
  }
  return `if (qr < ${r.sq}) {
          if (key < ${r.sk}) x0 = fmaf(h2f(mask[${off('key')}]), ${L}, x0);
          if (key + 1 < ${r.sk}) x1 = fmaf(h2f(mask[${off('key + 1')}]), ${L}, x1);
        }`;
}

function emitTc(r: Resolved, BM: number): KernelSource {
  const D = r.d, W = BM / 16, T = 32 * W;
  const CH = D / 8; // 16-byte chunks per row
  const ROWB = D * 2;
  const TILE = BN * ROWB; // bytes of one K or V tile
  const QBYTES = BM * ROWB;
  const smem = QBYTES + 4 * TILE;
  if (smem > MAX_SMEM) throw new NotLowerable(`attention tile needs ${smem} bytes of shared memory`);
  // XOR swizzle of 16-byte chunks so ldmatrix rows of one 8x8 matrix hit different banks (as tc_gemm.ts)
  const rowsPerLine = Math.max(1, 8 / CH);
  const SH = Math.log2(rowsPerLine), SWM = Math.min(CH, 8) - 1;
  const NT = Math.ceil(r.sk / BN);
  const C = r.scale * LOG2E;
  const { params: ps, decls } = params(r, 'tc_half');
  const tail = r.sk % BN !== 0;
  // register budget: 128 per thread up to D = 64 (two 8-warp or four 4-warp CTAs per SM), 255 beyond
  const minBlocks = Math.max(1, Math.floor(65536 / (T * (D <= 64 ? 128 : 255))));
  const e = elem(r);
  const body = (name: string) => `// flash attention ${e === 'bf16' ? 'bf16' : 'fp16'} (mma.sync m16n8k16) BM=${BM} BN=${BN} ${problemComment(r)}
${tcHelpers(e)}
typedef ${r.big ? 'long long' : 'int'} idx_t;
__device__ __forceinline__ u32 fa_sw(int row, int ch) { return (u32)((ch ^ ((row >> ${SH}) & ${SWM})) << 4); }
__device__ __forceinline__ float fa_quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float fa_quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

extern "C" __global__ void __launch_bounds__(${T}, ${minBlocks}) ${name}(${decls.join(', ')}) {
${packedOffsets(r)}  extern __shared__ __align__(128) unsigned char tc_smem[];
  const float NEG_INF = -__int_as_float(0x7f800000);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int qBase = blockIdx.x * ${BM}, hh = blockIdx.y, bb = blockIdx.z;
  const u32 sQ = smem_u32(tc_smem);
  const u32 sKV = sQ + ${QBYTES}; // stage s: K tile at sKV + s * ${2 * TILE}, V tile ${TILE} bytes after it
  // (b, h) slices: token t of Q starts at qp + t * ${r.ldq}; likewise K, V (and Y at the end)
  const tc_half* qp = q + (idx_t)bb * ${r.sq * r.ldq} + hh * ${D};
  const tc_half* kp = k + (idx_t)bb * ${r.sk * r.ldk} + hh * ${D};
  const tc_half* vp = v + (idx_t)bb * ${r.sk * r.ldv} + hh * ${D};
  ${maskBase(r, 'bb', 'hh')}

  // Q block: ${BM} rows x ${CH} chunks, rows past sq read as zeros
  #pragma unroll
  for (int i = 0; i < ${(BM * CH) / T}; ++i) {
    const int c = tid + i * ${T}, row = c / ${CH}, ch = c % ${CH};
    const bool ok = qBase + row < ${r.sq};
    cp_async16(sQ + row * ${ROWB} + fa_sw(row, ch), ok ? (const void*)(qp + (idx_t)(qBase + row) * ${r.ldq} + ch * 8) : (const void*)q, ok);
  }
  // K and V tile t (${BN} keys) into stage s, keys past sk read as zeros
  auto load_kv = [&](int s, int t) {
    const u32 sK = sKV + s * ${2 * TILE}, sV = sK + ${TILE};
    #pragma unroll
    for (int i = 0; i < ${(BN * CH) / T}; ++i) {
      const int c = tid + i * ${T}, row = c / ${CH}, ch = c % ${CH};
      const int key = t * ${BN} + row;
      const bool ok = key < ${r.sk};
      cp_async16(sK + row * ${ROWB} + fa_sw(row, ch), ok ? (const void*)(kp + (idx_t)key * ${r.ldk} + ch * 8) : (const void*)k, ok);
      cp_async16(sV + row * ${ROWB} + fa_sw(row, ch), ok ? (const void*)(vp + (idx_t)key * ${r.ldv} + ch * 8) : (const void*)v, ok);
    }
  };
  load_kv(0, 0);
  cp_async_commit();

  // this thread's rows: r0 (accumulator elements 0, 1) and r0 + 8 (elements 2, 3) of the warp's 16
  const int r0 = warp * 16 + (lane >> 2);
  const int qRow0 = qBase + r0, qRow1 = qRow0 + 8;
  float o[${D / 8}][4];
  #pragma unroll
  for (int j = 0; j < ${D / 8}; ++j) { o[j][0] = 0.0f; o[j][1] = 0.0f; o[j][2] = 0.0f; o[j][3] = 0.0f; }
  // running max (log2 domain) and this thread's share of the running sum, per row
  float mRow[2] = {NEG_INF, NEG_INF}, lRow[2] = {0.0f, 0.0f};

  #pragma unroll 1
  for (int t = 0; t < ${NT}; ++t) {
    if (t + 1 < ${NT}) load_kv((t + 1) & 1, t + 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const u32 sK = sKV + (t & 1) * ${2 * TILE}, sV = sK + ${TILE};

    // S = Q K^T for 16 rows x ${BN} keys
    float s[${BN / 8}][4];
    #pragma unroll
    for (int j = 0; j < ${BN / 8}; ++j) { s[j][0] = 0.0f; s[j][1] = 0.0f; s[j][2] = 0.0f; s[j][3] = 0.0f; }
    #pragma unroll
    for (int kk = 0; kk < ${D / 16}; ++kk) {
      // Q fragments come from shared memory on every tile: keeping all of them live costs ${D / 4} registers
      u32 a4[4];
      { const int row = warp * 16 + (lane & 15), ch = kk * 2 + (lane >> 4); ldsm_x4(a4, sQ + row * ${ROWB} + fa_sw(row, ch)); }
      #pragma unroll
      for (int np = 0; np < ${BN / 16}; ++np) {
        u32 b4[4];
        const int row = np * 16 + (lane & 7) + ((lane >> 4) << 3), ch = kk * 2 + ((lane >> 3) & 1);
        ldsm_x4(b4, sK + row * ${ROWB} + fa_sw(row, ch));
        mma16816(s[2 * np], a4, b4);
        mma16816(s[2 * np + 1], a4, b4 + 2);
      }
    }

    // scale (and mask) into the log2 domain, keys past sk to -inf; new row maxima. Elements 2*hr and 2*hr+1 of
    // s[j] are keys (key, key + 1) of row qRow0 (hr = 0) or qRow1 (hr = 1).
    float mx0 = mRow[0], mx1 = mRow[1];
    #pragma unroll
    for (int j = 0; j < ${BN / 8}; ++j) {
      #pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int key = t * ${BN} + j * 8 + (lane & 3) * 2;
        const int qr = hr ? qRow1 : qRow0;
        float x0 = s[j][2 * hr] * ${flit(C)}, x1 = s[j][2 * hr + 1] * ${flit(C)};
        ${tcMaskPair(r)}
        ${tail ? `if (key >= ${r.sk}) x0 = NEG_INF;
        if (key + 1 >= ${r.sk}) x1 = NEG_INF;` : ''}
        s[j][2 * hr] = x0; s[j][2 * hr + 1] = x1;
        if (hr) mx1 = fmaxf(mx1, fmaxf(x0, x1)); else mx0 = fmaxf(mx0, fmaxf(x0, x1));
      }
    }
    mx0 = fa_quad_max(mx0);
    mx1 = fa_quad_max(mx1);
    // a row with no finite score yet subtracts 0, so exp2 gives 0 instead of NaN
    const float mu0 = mx0 == NEG_INF ? 0.0f : mx0, mu1 = mx1 == NEG_INF ? 0.0f : mx1;
    const float a0 = exp2f(mRow[0] - mu0), a1 = exp2f(mRow[1] - mu1);
    mRow[0] = mx0; mRow[1] = mx1;
    lRow[0] *= a0; lRow[1] *= a1;
    #pragma unroll
    for (int j = 0; j < ${D / 8}; ++j) { o[j][0] *= a0; o[j][1] *= a0; o[j][2] *= a1; o[j][3] *= a1; }
    #pragma unroll
    for (int j = 0; j < ${BN / 8}; ++j) {
      s[j][0] = exp2f(s[j][0] - mu0); s[j][1] = exp2f(s[j][1] - mu0);
      s[j][2] = exp2f(s[j][2] - mu1); s[j][3] = exp2f(s[j][3] - mu1);
      lRow[0] += s[j][0] + s[j][1];
      lRow[1] += s[j][2] + s[j][3];
    }

    // O += P V: the accumulator layout of S is the A-fragment layout of P (two 8-key halves per 16-key step)
    #pragma unroll
    for (int kk = 0; kk < ${BN / 16}; ++kk) {
      u32 pa[4];
      pa[0] = pack_h2(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = pack_h2(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = pack_h2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = pack_h2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
      #pragma unroll
      for (int np = 0; np < ${D / 16}; ++np) {
        u32 b4[4];
        const int row = kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3), ch = np * 2 + (lane >> 4);
        ldsm_x4_t(b4, sV + row * ${ROWB} + fa_sw(row, ch));
        mma16816(o[2 * np], pa, b4);
        mma16816(o[2 * np + 1], pa, b4 + 2);
      }
    }
    __syncthreads(); // the next iteration refills this stage
  }
  cp_async_wait<0>();

  // O / l (a row whose every score is -inf gives 0/0 = NaN, as Softmax does)
  const float i0 = 1.0f / fa_quad_sum(lRow[0]), i1 = 1.0f / fa_quad_sum(lRow[1]);
  tc_half* yp = y + (idx_t)bb * ${r.sq * r.ldo} + hh * ${D};
  #pragma unroll
  for (int j = 0; j < ${D / 8}; ++j) {
    const int col = j * 8 + (lane & 3) * 2;
    if (qRow0 < ${r.sq}) *reinterpret_cast<u32*>(yp + (idx_t)qRow0 * ${r.ldo} + col) = pack_h2(o[j][0] * i0, o[j][1] * i0);
    if (qRow1 < ${r.sq}) *reinterpret_cast<u32*>(yp + (idx_t)qRow1 * ${r.ldo} + col) = pack_h2(o[j][2] * i1, o[j][3] * i1);
  }
}
`;
  const name = `flash_attn_${e}_d${D}_m${BM}${r.maskDims ? '_mask' : ''}_${shortHash(body('K'))}`;
  return {
    name, source: body(name),
    grid: [Math.ceil(r.sq / BM), r.h, r.b], block: [T, 1, 1],
    sharedBytes: smem, params: ps,
  };
}

// ---- SIMT: one warp per query row -----------------------------------------------------------------------

const SIMT_WARPS = 4;

function emitSimt(r: Resolved): KernelSource {
  if (r.d > 1024) throw new NotLowerable(`head size ${r.d} exceeds 1024 (SIMT attention)`);
  const f16 = r.dtype !== 'float32'; // 16-bit storage (fp16 or bf16) through the tc_half helpers
  const T = f16 ? 'tc_half' : 'float';
  const ld = (e: string) => (f16 ? `h2f(${e})` : e);
  const st = (e: string) => (f16 ? `f2h(${e})` : e);
  const DPL = Math.ceil(r.d / 32); // head dims per lane
  const rows = r.b * r.h * r.sq;
  const { params: ps, decls } = params(r, T);
  const guard = (body: string) => (r.d % 32 === 0 ? body : `if (dd < ${r.d}) { ${body} }`);
  const body = (name: string) => `// attention ${r.dtype} SIMT (warp per query row) ${problemComment(r)}
${tcHelpers(elem(r))}
typedef ${r.big ? 'long long' : 'int'} idx_t;

extern "C" __global__ void __launch_bounds__(${32 * SIMT_WARPS}) ${name}(${decls.join(', ')}) {
${packedOffsets(r)}  const float NEG_INF = -__int_as_float(0x7f800000);
  const int lane = threadIdx.x & 31;
  const long long row = (long long)blockIdx.x * ${SIMT_WARPS} + (threadIdx.x >> 5);
  if (row >= ${rows}LL) return; // whole warps leave together
  const int qi = (int)(row % ${r.sq}), hh = (int)((row / ${r.sq}) % ${r.h}), bb = (int)(row / ${r.sq * r.h});
  const ${T}* qr = q + (idx_t)bb * ${r.sq * r.ldq} + (idx_t)qi * ${r.ldq} + hh * ${r.d};
  const ${T}* kp = k + (idx_t)bb * ${r.sk * r.ldk} + hh * ${r.d};
  const ${T}* vp = v + (idx_t)bb * ${r.sk * r.ldv} + hh * ${r.d};
  ${T}* yr = y + (idx_t)bb * ${r.sq * r.ldo} + (idx_t)qi * ${r.ldo} + hh * ${r.d};
  ${maskBase(r, 'bb', 'hh')}
  float qv[${DPL}], o[${DPL}];
  #pragma unroll
  for (int i = 0; i < ${DPL}; ++i) {
    const int dd = lane + 32 * i;
    qv[i] = 0.0f; o[i] = 0.0f;
    ${guard(`qv[i] = ${ld('qr[dd]')};`)}
  }
  float m = NEG_INF, l = 0.0f;
  for (int key = 0; key < ${r.sk}; ++key) {
    const ${T}* kr = kp + (idx_t)key * ${r.ldk};
    const ${T}* vr = vp + (idx_t)key * ${r.ldv};
    float dot = 0.0f;
    #pragma unroll
    for (int i = 0; i < ${DPL}; ++i) {
      const int dd = lane + 32 * i;
      ${guard(`dot = fmaf(qv[i], ${ld('kr[dd]')}, dot);`)}
    }
    // butterfly sum: every lane ends with the same total (each step adds the same pair on both sides)
    #pragma unroll
    for (int sh = 16; sh > 0; sh >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, sh);
    float x = dot * ${flit(r.scale)};
    ${maskTerm(r, 'x', 'qi', 'key', ld, 1)}
    const float mNew = fmaxf(m, x);
    const float mu = mNew == NEG_INF ? 0.0f : mNew; // no finite score yet: subtract 0, not -inf
    const float a = expf(m - mu), p = expf(x - mu);
    l = l * a + p;
    #pragma unroll
    for (int i = 0; i < ${DPL}; ++i) {
      const int dd = lane + 32 * i;
      o[i] *= a;
      ${guard(`o[i] = fmaf(p, ${ld('vr[dd]')}, o[i]);`)}
    }
    m = mNew;
  }
  const float inv = 1.0f / l; // l = 0 (every score -inf) gives NaN, as Softmax does
  #pragma unroll
  for (int i = 0; i < ${DPL}; ++i) {
    const int dd = lane + 32 * i;
    ${guard(`yr[dd] = ${st('o[i] * inv')};`)}
  }
}
`;
  const name = `attn_simt_${f16 ? elem(r) : 'f32'}_d${r.d}${r.maskDims ? '_mask' : ''}_${shortHash(body('K'))}`;
  return {
    name, source: body(name),
    grid: [Math.ceil(rows / SIMT_WARPS), 1, 1], block: [32 * SIMT_WARPS, 1, 1],
    sharedBytes: 0, params: ps,
  };
}

// ---- lowering -------------------------------------------------------------------------------------------

registerLowering('FusedAttention', (ctx) => {
  const { node } = ctx;
  const a = attentionAttrs(node);
  const [qn, kn0, vn0, mn] = node.inputs;
  // packed: one [B, S, 3*H*D] buffer passed as q, k and v, each moved to its columns inside the kernel
  const kn = a.packed ? qn : kn0, vn = a.packed ? qn : vn0;
  const hd = a.numHeads * a.headDim;
  const q = ctx.t(qn), k = ctx.t(kn), y = ctx.t(node.outputs[0]);
  if (q.dtype !== 'float16' && q.dtype !== 'bfloat16' && q.dtype !== 'float32') throw new NotLowerable(`${q.dtype} attention`);
  if (y.dims.reduce((s, x) => s * x, 1) === 0) return;
  const m = mn ? ctx.t(mn) : undefined;
  if (m && m.dtype !== q.dtype) throw new NotLowerable(`mask is ${m.dtype}, Q is ${q.dtype}`);
  const prob: AttentionProblem = {
    dtype: q.dtype, b: q.dims[0], h: a.numHeads, sq: q.dims[1], sk: k.dims[1], d: a.headDim, scale: a.scale,
    mask: m ? { dims: m.dims } : 'none', smCount: ctx.smCount,
    ...(a.packed ? { ldq: 3 * hd, ldk: 3 * hd, ldv: 3 * hd, offq: 0, offk: hd, offv: 2 * hd } : {}),
  };
  let ks: KernelSource;
  try {
    ks = emitFlashAttention(prob);
  } catch (e) {
    // fp16/bf16 head sizes without a tensor-core kernel still run fused, on the SIMT kernel
    if (!(e instanceof NotLowerable) || q.dtype === 'float32') throw e;
    ks = emitFlashAttention({ ...prob, impl: 'simt' });
  }
  const names: Record<string, string> = { q: qn, k: kn, v: vn, mask: mn ?? '', y: node.outputs[0] };
  ctx.kernel(ks, ks.params.map((p) => ctx.v(names[p.name])));
}, 'tsrt');
