// Tensor-core GEMM family for fp16 (mma.sync m16n8k16, ldmatrix, cp.async multi-stage pipeline, fp32
// accumulation) plus the SIMT fallback. The conv emitter (tc_conv.ts) reuses the same kernel skeleton with
// an implicit-im2col A loader, so everything shared lives here: tile configs, the epilogue, the PTX helpers
// and `tcKernel`, which assembles one fully specialized kernel from operand loaders.
//
// Generated sources include no headers (fp16 is handled as raw 16-bit storage through PTX cvt), so they
// compile under any NVRTC without include paths. NVRTC 11.8 cannot include CUDA 13's cuda_fp16.h unless
// `#include <nv/target>` comes first and both include/ and include/cccl are on the path; we avoid that.
import { TsrtError } from '../errors.js';
import { shortHash, type KernelParam, type KernelSource } from './kernel.js';
import { tcLoaderThreads, WGMMA_ALIGN_SLACK, wgmmaDynamicSmemMax, wgmmaProblems, wgmmaRegEstimate } from './wgmma_config.js';

export type Activation = 'none' | 'relu' | 'relu6' | 'clip' | 'sigmoid' | 'silu' | 'gelu_erf' | 'gelu_tanh'
  | 'hardswish' | 'hardsigmoid' | 'leakyrelu';

/** Fused epilogue: v = alpha*acc + bias[n]; v += residual (unless residualAfterAct); v = act(v);
 * v += residual (if residualAfterAct); store. */
export interface Epilogue {
  /** Per-output-channel (per-N) bias, **fp32**, length N. */
  bias?: boolean;
  /** Tensor in the output's dtype and layout, added after the bias and before the activation. */
  residual?: boolean;
  /** Add the residual after the activation instead (act-then-add patterns). */
  residualAfterAct?: boolean;
  act?: Activation;
  /** clip: [min, max]; leakyrelu: [alpha=0.01]; hardsigmoid: [alpha=0.2, beta=0.5] (ONNX defaults). */
  actArgs?: number[];
  /** Scale on the accumulator, e.g. 1/sqrt(d) for attention scores. */
  alpha?: number;
}

export interface TileConfig {
  bm: number; bn: number; bk: number;
  warpsM: number; warpsN: number;
  /** cp.async pipeline depth, 2..5. */
  stages: number;
  /** Split the K loop over this many CTAs; the last CTA of a tile reduces (deterministic order). */
  splitK?: number;
  /** Hopper wgmma kernel (wgmma.ts, sm_90a only): warpsM/4 warpgroups, bk 64, no split-K. Emit with
   * emitConvTc / emitGemmTc, which dispatch on this flag. */
  wgmma?: boolean;
  /** [wgmma] Warp-specialized variant (wgmma_ws.ts): one producer warpgroup loads through an mbarrier
   * pipeline, warpsM/4 consumer warpgroups issue wgmma, and the epilogue stores through shared memory. */
  ws?: boolean;
  /** [wgmma] Staged 16-bit epilogue (wgmma_epilogue.ts): the residual tile is prefetched under the mainloop
   * and the output leaves in 16-B row-contiguous stores. A tactic, not a default: it made ResNet-50 bs256's
   * small-K convs 1.2-1.7x faster and BERT's gelu/residual GEMMs 1.2-1.3x slower (H200). */
  se?: boolean;
  /** [wgmma ws + se] Persistent grid (wgmma_ws.ts): one CTA per SM walks the tiles, so the producer loads
   * the next tile while the consumers run the epilogue of this one. */
  persistent?: boolean;
}

/** A kernel plus the scratch it needs. When `workspaceBytes` > 0 the last parameter is `workspace`: the
 * caller allocates that many bytes once, zeroes the first `workspaceZeroBytes` once (tile counters that
 * the kernel resets itself after each use), and may reuse it across launches on one stream.
 * `sharedBytes` is dynamic shared memory; above 48 KB the caller must first raise
 * cudaFuncAttributeMaxDynamicSharedMemorySize (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) to it. */
export interface TcKernelSource extends KernelSource {
  config?: TileConfig;
  workspaceBytes: number;
  workspaceZeroBytes: number;
  /** Floating-point operations of one launch (2*M*N*K*batch), for TFLOP/s reports. */
  flops: number;
}

/** SMs of the GPU a build targets when there is none to ask (CPU-only builds, CI): H100 SXM / H200. A build on a
 * GPU lowers for its own count (BuildOptions.smCount, from CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT): an H100
 * PCIe has 114, an L40S 142, and one wave of CTAs is what split-K, the time model and persistent grids size for. */
export const SM_COUNT = 132;

/** `{ smCount }` for a problem whose target GPU has another SM count than SM_COUNT, else nothing: problems for
 * 132-SM GPUs (and their timing-cache signatures, and the kernel sources that print them) stay as they were. */
export function smCountField(smCount: number | undefined): { smCount?: number } {
  return smCount !== undefined && smCount !== SM_COUNT ? { smCount } : {};
}
export const MAX_SMEM = 227 * 1024;

// ---------------------------------------------------------------------------------------------------
// Shared device code

/** Tensor-core element type of a kernel: the 16-bit storage its `tc_half` values hold. */
export type TcElem = 'f16' | 'bf16';

/** The tensor-core element of a storage dtype (float16 or bfloat16). */
export function tcElem(d: 'float16' | 'bfloat16' | undefined): TcElem { return d === 'bfloat16' ? 'bf16' : 'f16'; }

/** Shared device helpers for one element type. Kernels use the same names for both (`tc_half` storage,
 * h2f/f2h/pack_h2/lo_h2f/hi_h2f conversions, mma16816), so every emitter is written once and a bf16 kernel
 * differs from its fp16 twin only here. bf16 -> f32 is exact widening (the bits shifted up 16); f32 -> bf16
 * rounds to nearest even (cvt.rn.bf16{x2}.f32, sm_80+), as the CPU reference does (f32ToBf16Bits). */
export function tcHelpers(e: TcElem = 'f16'): string {
  const bf = e === 'bf16';
  const h2f = bf
    ? 'return __uint_as_float((u32)h << 16);'
    : 'float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;';
  return `typedef unsigned short tc_half;
typedef unsigned int u32;
__device__ __forceinline__ u32 smem_u32(const void* p) {
  u32 r; asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p)); return r;
}
__device__ __forceinline__ float h2f(tc_half h) { ${h2f} }
__device__ __forceinline__ tc_half f2h(float f) { tc_half h; asm("cvt.rn.${e}.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
__device__ __forceinline__ u32 pack_h2(float lo, float hi) {
  u32 r; asm("cvt.rn.${e}x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}
__device__ __forceinline__ float lo_h2f(u32 v) { return h2f((tc_half)(v & 0xffffu)); }
__device__ __forceinline__ float hi_h2f(u32 v) { return h2f((tc_half)(v >> 16)); }
__device__ __forceinline__ void cp_async16(u32 dst, const void* src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\\n" :: "r"(dst), "l"(src), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\\n" :: "n"(N)); }
__device__ __forceinline__ void ldsm_x4(u32* r, u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\\n"
    : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(u32* r, u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\\n"
    : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void mma16816(float* d, const u32* a, const u32* b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.${e}.${e}.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\\n"
    : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void st_cg4(float* p, float a, float b, float c, float d) {
  asm volatile("st.global.cg.v4.f32 [%0], {%1,%2,%3,%4};\\n" :: "l"(p), "f"(a), "f"(b), "f"(c), "f"(d) : "memory");
}
__device__ __forceinline__ void ld_cg4(const float* p, float* v) {
  asm volatile("ld.global.cg.v4.f32 {%0,%1,%2,%3}, [%4];\\n" : "=f"(v[0]), "=f"(v[1]), "=f"(v[2]), "=f"(v[3]) : "l"(p) : "memory");
}
`;
}

/** The element type of a kernel description (fp16 unless it says bf16; int8 kernels use the fp16 helpers). */
export const specElem = (s: Pick<TcSpec, 'mma'>): TcElem => (s.mma === 'bf16' ? 'bf16' : 'f16');

/** The fp16 helpers (most kernels; bf16 ones call tcHelpers('bf16')). */
export const TC_HELPERS = tcHelpers('f16');

/** [int8] mma.sync for int8 operands (s32 accumulation); only int8 kernels include it. */
export const TC_S8_HELPERS = `__device__ __forceinline__ void mma16832s8(int* d, const u32* a, const u32* b) {
  asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\\n"
    : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
`;

/** C float literal. */
export function flit(x: number): string {
  if (!Number.isFinite(x)) throw new TsrtError('USAGE', `epilogue constant ${x} is not finite`);
  const s = Math.fround(x).toPrecision(9);
  return `${s.includes('.') || s.includes('e') ? s : s + '.0'}f`;
}

/** Device function `float tc_act(float v)` for the epilogue's activation. */
export function actFunction(epi: Epilogue): string {
  const a = epi.actArgs ?? [];
  const body = (() => {
    switch (epi.act ?? 'none') {
      case 'none': return 'return v;';
      case 'relu': return 'return fmaxf(v, 0.0f);';
      case 'relu6': return 'return fminf(fmaxf(v, 0.0f), 6.0f);';
      case 'clip': {
        const lo = a[0] ?? -3.4028234663852886e38, hi = a[1] ?? 3.4028234663852886e38;
        return `return fminf(fmaxf(v, ${flit(lo)}), ${flit(hi)});`;
      }
      // fast exp/divide: ~1e-6 relative error, and the limits stay right (x/inf -> 0)
      case 'sigmoid': return 'return __fdividef(1.0f, 1.0f + __expf(-v));';
      case 'silu': return 'return __fdividef(v, 1.0f + __expf(-v));';
      case 'gelu_erf': return 'return 0.5f * v * (1.0f + erff(v * 0.707106781f));';
      case 'gelu_tanh': return 'return 0.5f * v * (1.0f + tanhf(0.797884561f * (v + 0.044715f * v * v * v)));';
      case 'hardswish': return 'return v * fminf(fmaxf(v * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f);';
      case 'hardsigmoid': return `return fminf(fmaxf(${flit(a[0] ?? 0.2)} * v + ${flit(a[1] ?? 0.5)}, 0.0f), 1.0f);`;
      case 'leakyrelu': return `return v >= 0.0f ? v : ${flit(a[0] ?? 0.01)} * v;`;
    }
  })();
  return `__device__ __forceinline__ float tc_act(float v) { ${body} }\n`;
}

/** Statements turning float `v` (the scaled accumulator) for output column `nExpr` into the final value;
 * `resExpr` reads the residual as float. */
export function epilogueStatements(epi: Epilogue, v: string, nExpr: string, resExpr: string): string {
  const out: string[] = [];
  if (epi.alpha !== undefined && epi.alpha !== 1) out.push(`${v} *= ${flit(epi.alpha)};`);
  if (epi.bias) out.push(`${v} += bias[${nExpr}];`);
  if (epi.residual && !epi.residualAfterAct) out.push(`${v} += ${resExpr};`);
  if ((epi.act ?? 'none') !== 'none') out.push(`${v} = tc_act(${v});`);
  if (epi.residual && epi.residualAfterAct) out.push(`${v} += ${resExpr};`);
  return out.join(' ');
}

export function epilogueKey(epi: Epilogue): string {
  let s = '';
  if (epi.bias) s += 'b';
  if (epi.residual) s += epi.residualAfterAct ? 'Ra' : 'r';
  if (epi.act && epi.act !== 'none') s += `_${epi.act}`;
  return s || 'plain';
}

// ---------------------------------------------------------------------------------------------------
// Tile configurations

export interface TileShape {
  m: number; n: number; k: number; batch: number;
  /** SMs of the target GPU (absent: SM_COUNT): split-K candidates and estimateTime's waves. */
  smCount?: number;
}

/** Storage dtypes of the tensor-core conv/GEMM kernels. */
export type TcDType = 'float16' | 'bfloat16';

function regEstimate(c: TileConfig): number {
  if (c.wgmma) return wgmmaRegEstimate(c);
  const mi = c.bm / c.warpsM / 16, ni = c.bn / c.warpsN / 8;
  return mi * ni * 4 + 2 * (mi * 4 + ni * 2) + 48;
}

export function smemBytes(c: TileConfig): number {
  return c.stages * (c.bm + c.bn) * c.bk * 2 + (c.wgmma ? WGMMA_ALIGN_SLACK : 0);
}

/** Why a config cannot be used (empty when valid). `bKN`: B is [K,N] so its smem rows are K. */
export function configProblems(c: TileConfig, bKN = false): string[] {
  if (c.wgmma || c.ws || c.se || c.persistent) {
    const w = wgmmaProblems(c, bKN);
    if (smemBytes(c) > wgmmaDynamicSmemMax(c)) w.push(`shared memory ${smemBytes(c)} > ${wgmmaDynamicSmemMax(c)}`);
    return w;
  }
  const r: string[] = [];
  const threads = 32 * c.warpsM * c.warpsN;
  const wm = c.bm / c.warpsM, wn = c.bn / c.warpsN;
  if (c.bk !== 32 && c.bk !== 64) r.push('bk must be 32 or 64');
  if (!Number.isInteger(wm) || wm % 16 !== 0) r.push('bm/warpsM must be a multiple of 16');
  if (!Number.isInteger(wn) || wn % 16 !== 0) r.push('bn/warpsN must be a multiple of 16');
  if (threads < 64 || threads > 512) r.push('2..16 warps');
  if (c.stages < 2 || c.stages > 5) r.push('stages must be 2..5');
  if (((c.bm * c.bk) / 8) % threads !== 0) r.push('bm*bk/8 must be a multiple of the thread count');
  if (((c.bn * c.bk) / 8) % threads !== 0) r.push('bn*bk/8 must be a multiple of the thread count');
  if (bKN && (c.bn / 8 < 2 || threads % (c.bn / 8) !== 0)) r.push('B [K,N] needs bn/8 >= 2 dividing the thread count');
  if (smemBytes(c) > MAX_SMEM) r.push(`shared memory ${smemBytes(c)} > ${MAX_SMEM}`);
  const regs = regEstimate(c);
  if (regs > 255 || regs * threads > 65536) r.push('too many registers');
  if ((c.splitK ?? 1) < 1) r.push('splitK >= 1');
  return r;
}

const BASE_CONFIGS: TileConfig[] = (() => {
  const out: TileConfig[] = [];
  const tiles: Array<[number, number, number, number]> = [
    [256, 128, 4, 2], [128, 256, 2, 4], [128, 128, 2, 2], [128, 128, 2, 4], [128, 128, 4, 2],
    [128, 64, 2, 2], [64, 128, 2, 2], [128, 64, 4, 1], [64, 64, 2, 2], [64, 64, 2, 1], [64, 64, 1, 2],
    [32, 64, 1, 2], [64, 32, 2, 1], [32, 32, 1, 2], [32, 128, 1, 4], [128, 32, 4, 1],
  ];
  for (const [bm, bn, warpsM, warpsN] of tiles) {
    for (const bk of [32, 64]) {
      for (const stages of [2, 3, 4, 5]) out.push({ bm, bn, bk, warpsM, warpsN, stages });
    }
  }
  return out;
})();

export function configName(c: TileConfig): string {
  return `${c.wgmma ? 'wg_' : ''}m${c.bm}n${c.bn}k${c.bk}_w${c.warpsM}x${c.warpsN}_s${c.stages}${(c.splitK ?? 1) > 1 ? `_sk${c.splitK}` : ''}${c.ws ? '_ws' : ''}${c.se ? '_se' : ''}${c.persistent ? '_p' : ''}`;
}

const ceil = (a: number, b: number) => Math.ceil(a / b);

/** All valid configs for a problem (the autotuner's search space), including split-K variants where the
 * tile grid leaves SMs idle. */
export function tileConfigSpace(s: TileShape, bKN = false): TileConfig[] {
  const out: TileConfig[] = [];
  for (const c of BASE_CONFIGS) {
    if (configProblems(c, bKN).length) continue;
    // tiles far larger than the problem only waste work
    if (c.bm > 2 * Math.max(16, s.m) + 64 || c.bn > 2 * Math.max(16, s.n) + 64) continue;
    out.push(c);
    const ctas = ceil(s.m, c.bm) * ceil(s.n, c.bn) * s.batch;
    const kTiles = ceil(s.k, c.bk);
    const sms = s.smCount ?? SM_COUNT;
    if (ctas < sms) {
      for (const sk of [2, 3, 4, 6, 8, 12, 16]) {
        if (kTiles / sk < 2 || ctas * sk > 4 * sms) continue;
        out.push({ ...c, splitK: sk });
      }
    }
  }
  return out;
}

/** Rough mma.sync fp16 throughput of one H100 SM at full efficiency (flop/s: ~450 TFLOP/s over 132 SMs), and
 * L2/DRAM bandwidth. */
const SM_FLOPS = 450e12 / 132;
const MEM_BW = 2.5e12;

/** Fraction of SM peak a tile shape sustains: ldmatrix bytes per mma fall with the warp tile, global
 * bytes per flop with the CTA tile. */
function tileEfficiency(c: TileConfig): number {
  // wgmma reads both operands from shared memory itself (no ldmatrix), and its peak is ~1.8x mma.sync's
  if (c.wgmma) return 1.8 / (1 + 16 / ((c.bm * c.bn) / (c.bm + c.bn)));
  const wm = c.bm / c.warpsM, wn = c.bn / c.warpsN;
  const warpReuse = (wm * wn) / (wm + wn), ctaReuse = (c.bm * c.bn) / (c.bm + c.bn);
  return 1 / (1 + 8 / warpReuse + 16 / ctaReuse);
}

/** Estimated seconds for one launch (the heuristic's model; the autotuner measures instead). */
export function estimateTime(s: TileShape, c: TileConfig): number {
  const sk = c.splitK ?? 1;
  const threads = 32 * c.warpsM * c.warpsN;
  const slots = Math.max(1, Math.min(Math.floor(MAX_SMEM / smemBytes(c)), Math.floor(65536 / (regEstimate(c) * threads)), 4));
  const ctas = ceil(s.m, c.bm) * ceil(s.n, c.bn) * s.batch * sk;
  const perSm = ceil(ctas, s.smCount ?? SM_COUNT);
  const warpsActive = Math.min(perSm, slots) * c.warpsM * c.warpsN;
  const occ = Math.min(1, warpsActive / 8);
  const kPer = ceil(ceil(s.k, c.bk), sk) * c.bk + 3 * c.bk; // + prologue/epilogue overhead
  const compute = (perSm * 2 * c.bm * c.bn * kPer) / (SM_FLOPS * tileEfficiency(c) * occ);
  const reduce = sk > 1 ? (ctas * c.bm * c.bn * 8) / MEM_BW + 2e-6 : 0;
  return compute + reduce;
}

/** Heuristic default: the cheapest config of `tileConfigSpace` under `estimateTime`, among the usual
 * pipeline depths (bk 32 with 4 stages). The autotuner replaces this with measurements. */
export function chooseTileConfig(s: TileShape, bKN = false): TileConfig {
  let best: TileConfig | undefined;
  let bestCost = Infinity;
  for (const c of tileConfigSpace(s, bKN)) {
    if (c.bk !== 32 || c.stages !== 4) continue;
    const cost = estimateTime(s, c);
    if (cost < bestCost * 0.999) { bestCost = cost; best = c; }
  }
  if (!best) throw new TsrtError('USAGE', `no tensor-core tile config fits ${JSON.stringify(s)}`);
  return best;
}

// ---------------------------------------------------------------------------------------------------
// Kernel skeleton

/** Code fragments that specialize the skeleton for one operator. Loader code runs once per k-tile with
 * `kt` (k-tile index) and `sA`/`sB` (u32 shared addresses of this stage's A and B tiles) in scope, and
 * calls `cp_async16(dst, src, ok)`; `sw_a(row, chunk)` / `sw_b(row, chunk)` give swizzled byte offsets.
 * Setup code runs once per CTA with `mBase`, `nBase`, `bz` (batch index) in scope. */
export interface TcSpec {
  prefix: string;
  cfg: TileConfig;
  m: number; n: number; k: number;
  batch: number;
  bKN: boolean;
  /** Pointer parameters in order (without workspace), as C declarations. */
  params: Array<{ name: string; decl: string }>;
  setup: string;
  loadA: string;
  loadB: string;
  /** Expression of the output element offset of (m, n) (both ints in scope as `m`, `n`); residual uses it too. */
  outOffset: string;
  /** The residual's element offset of (m, n) where it differs from outOffset (an output stored with a row stride
   * into a concat slice, tc_conv.ts, while the residual stays dense); reads use `off` (outOffset) when absent. */
  resOffset?: string;
  /** Offsets of (m, n) and (m, n+1) are adjacent and 4-byte aligned whenever n is even. */
  pairStores: boolean;
  epi: Epilogue;
  /** Consecutive CTAs walk N first (A tile stays hot) instead of M first. */
  nFastest: boolean;
  /** Some in-batch element offset reaches 2^31: index with 64-bit integers. */
  bigIndex: boolean;
  flops: number;
  /** [int8] 's8': operands are int8 (mma.sync m16n8k32 .s8, s32 accumulators, `cfg.bk` counted in int8
   * elements), and `store` replaces the fp16 store code. Byte for byte an int8 k32 fragment is an fp16 k16
   * fragment, so tiles, swizzles, cp.async and ldmatrix are shared unchanged (tc_int8.ts). 'bf16': bfloat16
   * storage and mma (tcHelpers('bf16')); everything else is the fp16 kernel. */
  mma?: 'f16' | 's8' | 'bf16';
  /** [int8] Store code run with `m`, `n`, `t` (this thread's two accumulators at (m, n), (m, n+1)) in scope. */
  store?: string;
  /** outOffset(m, n) for n % 8 == 0 is 16-byte aligned and n..n+7 are contiguous (N % 8 == 0): the ws
   * wgmma kernels then store 8 outputs (and read 8 residuals) per 16-byte access. */
  vecStores?: boolean;
  /** [int8] Code run once before / after the per-fragment stores (all threads, after the main loop and split-K):
   * tc_int8.ts stages the output tile in shared memory there and writes it back in 16-byte rows. */
  storeBegin?: string;
  storeEnd?: string;
  /** SMs of the target GPU (the problem's smCount; absent: SM_COUNT): a persistent kernel's grid (wgmma_ws.ts). */
  smCount?: number;
}

function swizzleExpr(rowChunks: number): { sh: number; mask: number } {
  const rowsPerLine = Math.max(1, 8 / rowChunks);
  return { sh: Math.log2(rowsPerLine), mask: Math.min(rowChunks, 8) - 1 };
}

export function tcKernel(s: TcSpec): TcKernelSource {
  const c = s.cfg;
  const splitK = c.splitK ?? 1;
  const threads = 32 * c.warpsM * c.warpsN;
  const WM = c.bm / c.warpsM, WN = c.bn / c.warpsN, MI = WM / 16, NI = WN / 8;
  const mTiles = ceil(s.m, c.bm), nTiles = ceil(s.n, c.bn);
  const kTiles = ceil(s.k, c.bk);
  const tilesPerSplit = ceil(kTiles, splitK);
  const effSplit = ceil(kTiles, tilesPerSplit); // no empty splits
  const cfg: TileConfig = { ...c, splitK: effSplit };
  const ACC = MI * NI * 4;
  const s8 = s.mma === 's8';
  if (s8 && s.bKN) throw new TsrtError('USAGE', 'int8 tensor-core kernels need B as [N,K]');
  const eb = s8 ? 1 : 2; // bytes per element
  const accT = s8 ? 'int' : 'float';
  const kRowBytes = c.bk * eb, kSteps = kRowBytes / 32; // one mma k-step reads 32 bytes of each row
  const aBytes = c.bm * kRowBytes, bBytes = c.bn * kRowBytes;
  const stageBytes = aBytes + bBytes;
  const la = kRowBytes / 16, lb = s.bKN ? c.bn / 8 : kRowBytes / 16;
  const swA = swizzleExpr(la), swB = swizzleExpr(lb);
  const bRowBytes = s.bKN ? c.bn * 2 : kRowBytes;
  if (s.batch * effSplit > 65535) throw new TsrtError('USAGE', `batch*splitK ${s.batch * effSplit} exceeds grid.y`);
  if (mTiles * nTiles > 2 ** 31 - 1) throw new TsrtError('USAGE', 'too many tiles');
  const numTiles = mTiles * nTiles * s.batch;
  const wsZero = effSplit > 1 ? Math.ceil((numTiles * 4) / 256) * 256 : 0;
  const wsBytes = effSplit > 1 ? wsZero + effSplit * numTiles * c.bm * c.bn * 4 : 0;
  const params: KernelParam[] = s.params.map((p) => ({ name: p.name, type: 'ptr' as const }));
  const decls = s.params.map((p) => p.decl);
  if (effSplit > 1) { params.push({ name: 'workspace', type: 'ptr' }); decls.push('unsigned char* __restrict__ workspace'); }

  const fragB = s.bKN
    ? `{ const int row = kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
          const int ch = ((wn * ${WN} + np * 16) >> 3) + (lane >> 4);
          ldsm_x4_t(r, sB + row * ${bRowBytes} + sw_b(row, ch)); }`
    : `{ const int row = wn * ${WN} + np * 16 + (lane & 7) + ((lane >> 4) << 3);
          const int ch = kk * 2 + ((lane >> 3) & 1);
          ldsm_x4(r, sB + row * ${bRowBytes} + sw_b(row, ch)); }`;

  const roff = s.resOffset ? `(${s.resOffset})` : 'off';
  const res = (j: number) => `h2f(residual[${roff} + ${j}])`;
  const epiPair = `float v0 = t[0], v1 = t[1];
          { ${epilogueStatements(s.epi, 'v0', 'n', 'lo_h2f(rv)')} }
          { ${epilogueStatements(s.epi, 'v1', '(n + 1)', 'hi_h2f(rv)')} }
          *reinterpret_cast<u32*>(y + off) = pack_h2(v0, v1);`;
  const epiSingle = (j: number) => `{ float v = t[${j}]; ${epilogueStatements(s.epi, 'v', `(n + ${j})`, res(j))} y[off + ${j}] = f2h(v); }`;
  const storeCode = s.store ?? (s.pairStores
    ? `if (m < ${s.m} && n < ${s.n}) {
          const idx_t off = ${s.outOffset};
          ${s.epi.residual ? `const u32 rv = *reinterpret_cast<const u32*>(residual + ${roff});` : ''}
          ${epiPair}
        }`
    : `if (m < ${s.m}) {
          const idx_t off = ${s.outOffset};
          if (n < ${s.n}) ${epiSingle(0)}
          if (n + 1 < ${s.n}) ${epiSingle(1)}
        }`);
  // split-K partial sums travel as 32-bit words: float bits for fp16 kernels, exact int32 for int8 ones
  const toW = (e: string) => (s8 ? `__int_as_float(${e})` : e);
  const fromW = (e: string) => (s8 ? `__float_as_int(${e})` : e);

  const splitCode = effSplit > 1 ? `
  {
    // split-K: publish partial sums, the last CTA of this tile adds them in split order and finishes
    __shared__ int tc_last;
    unsigned* counters = reinterpret_cast<unsigned*>(workspace);
    float* part = reinterpret_cast<float*>(workspace + ${wsZero});
    const long long tileId = ((long long)bz * ${mTiles * nTiles} + blockIdx.x);
    float* mine = part + ((long long)split * ${numTiles} + tileId) * ${c.bm * c.bn} + tid * 4;
    #pragma unroll
    for (int j = 0; j < ${ACC / 4}; ++j) {
      const ${accT}* a = &acc[0][0][0] + j * 4;
      st_cg4(mine + j * ${threads * 4}, ${toW('a[0]')}, ${toW('a[1]')}, ${toW('a[2]')}, ${toW('a[3]')});
    }
    __threadfence();
    __syncthreads();
    if (tid == 0) {
      const unsigned prev = atomicAdd(&counters[tileId], 1u);
      tc_last = prev == ${effSplit - 1};
      if (tc_last) counters[tileId] = 0u;
    }
    __syncthreads();
    if (!tc_last) return;
    __threadfence();
    ${accT} sum[${ACC}];
    #pragma unroll
    for (int j = 0; j < ${ACC}; ++j) sum[j] = ${s8 ? '0' : '0.0f'};
    for (int s2 = 0; s2 < ${effSplit}; ++s2) {
      if (s2 == split) {
        #pragma unroll
        for (int j = 0; j < ${ACC}; ++j) sum[j] += (&acc[0][0][0])[j];
      } else {
        const float* other = part + ((long long)s2 * ${numTiles} + tileId) * ${c.bm * c.bn} + tid * 4;
        #pragma unroll
        for (int j = 0; j < ${ACC / 4}; ++j) {
          float v[4]; ld_cg4(other + j * ${threads * 4}, v);
          sum[j * 4] += ${fromW('v[0]')}; sum[j * 4 + 1] += ${fromW('v[1]')}; sum[j * 4 + 2] += ${fromW('v[2]')}; sum[j * 4 + 3] += ${fromW('v[3]')};
        }
      }
    }
    #pragma unroll
    for (int j = 0; j < ${ACC}; ++j) (&acc[0][0][0])[j] = sum[j];
  }` : '';

  const body = (name: string) => `// ${s.prefix} ${configName(cfg)} M=${s.m} N=${s.n} K=${s.k} batch=${s.batch}
${tcHelpers(specElem(s))}${s8 ? TC_S8_HELPERS : ''}
typedef ${s.bigIndex ? 'long long' : 'int'} idx_t;
${actFunction(s.epi)}
__device__ __forceinline__ u32 sw_a(int row, int ch) { return (u32)((ch ^ ((row >> ${swA.sh}) & ${swA.mask})) << 4); }
__device__ __forceinline__ u32 sw_b(int row, int ch) { return (u32)((ch ^ ((row >> ${swB.sh}) & ${swB.mask})) << 4); }

extern "C" __global__ void __launch_bounds__(${threads}) ${name}(${decls.join(', ')}) {
  extern __shared__ __align__(128) unsigned char tc_smem[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / ${c.warpsN}, wn = warp % ${c.warpsN};
  const int mTile = ${s.nFastest ? `blockIdx.x / ${nTiles}` : `blockIdx.x % ${mTiles}`};
  const int nTile = ${s.nFastest ? `blockIdx.x % ${nTiles}` : `blockIdx.x / ${mTiles}`};
  const int bz = blockIdx.y / ${effSplit};
  const int split = blockIdx.y % ${effSplit};
  const int mBase = mTile * ${c.bm}, nBase = nTile * ${c.bn};
  (void)bz; (void)split;
  const u32 smemBase = smem_u32(tc_smem);
${s.setup}
  const int ktBegin = split * ${tilesPerSplit};
  const int ktCount = min(${kTiles} - ktBegin, ${tilesPerSplit});

  auto load_tile = [&](int stage, int kt) {
    const u32 sA = smemBase + stage * ${stageBytes};
    const u32 sB = sA + ${aBytes};
${s.loadA}
${s.loadB}
  };

  ${accT} acc[${MI}][${NI}][4];
  #pragma unroll
  for (int i = 0; i < ${MI}; ++i)
    #pragma unroll
    for (int j = 0; j < ${NI}; ++j)
      #pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = ${s8 ? '0' : '0.0f'};

  u32 af[2][${MI}][4];
  u32 bf[2][${NI}][2];
  auto load_frags = [&](int buf, int stage, int kk) {
    const u32 sA = smemBase + stage * ${stageBytes};
    const u32 sB = sA + ${aBytes};
    #pragma unroll
    for (int mi = 0; mi < ${MI}; ++mi) {
      const int row = wm * ${WM} + mi * 16 + (lane & 15);
      const int ch = kk * 2 + (lane >> 4);
      ldsm_x4(af[buf][mi], sA + row * ${kRowBytes} + sw_a(row, ch));
    }
    #pragma unroll
    for (int np = 0; np < ${NI / 2}; ++np) {
      u32 r[4];
      ${fragB}
      bf[buf][2 * np][0] = r[0]; bf[buf][2 * np][1] = r[1];
      bf[buf][2 * np + 1][0] = r[2]; bf[buf][2 * np + 1][1] = r[3];
    }
  };

  #pragma unroll
  for (int st = 0; st < ${c.stages - 1}; ++st) {
    if (st < ktCount) load_tile(st, ktBegin + st);
    cp_async_commit();
  }
  for (int it = 0; it < ktCount; ++it) {
    cp_async_wait<${c.stages - 2}>();
    __syncthreads();
    {
      const int nt = it + ${c.stages - 1};
      if (nt < ktCount) load_tile(nt % ${c.stages}, ktBegin + nt);
      cp_async_commit();
    }
    const int stage = it % ${c.stages};
    load_frags(0, stage, 0);
    #pragma unroll
    for (int kk = 0; kk < ${kSteps}; ++kk) {
      if (kk + 1 < ${kSteps}) load_frags((kk + 1) & 1, stage, kk + 1);
      #pragma unroll
      for (int mi = 0; mi < ${MI}; ++mi)
        #pragma unroll
        for (int ni = 0; ni < ${NI}; ++ni) ${s8 ? 'mma16832s8' : 'mma16816'}(acc[mi][ni], af[kk & 1][mi], bf[kk & 1][ni]);
    }
  }
  cp_async_wait<0>();
${splitCode}
${s.storeBegin ? `${s.storeBegin}\n` : ''}  #pragma unroll
  for (int mi = 0; mi < ${MI}; ++mi) {
    #pragma unroll
    for (int ni = 0; ni < ${NI}; ++ni) {
      #pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int m = mBase + wm * ${WM} + mi * 16 + (lane >> 2) + h * 8;
        const int n = nBase + wn * ${WN} + ni * 8 + (lane & 3) * 2;
        const ${accT}* t = &acc[mi][ni][h * 2];
        ${storeCode}
      }
    }
  }
${s.storeEnd ? `${s.storeEnd}\n` : ''}}
`;
  const name = `${s.prefix}_${configName(cfg)}_${epilogueKey(s.epi)}_${shortHash(body('K'))}`;
  return {
    name, source: body(name),
    grid: [mTiles * nTiles, s.batch * effSplit, 1], block: [threads, 1, 1],
    sharedBytes: c.stages * stageBytes, params, config: cfg,
    workspaceBytes: wsBytes, workspaceZeroBytes: wsZero, flops: s.flops,
  };
}

/** Loader code for a tile stored as rows x (bk/8 or bn/8) 16-byte chunks. Each thread owns one chunk
 * column and `perThread` rows spaced `threads/rowChunks` apart. `rowExpr(r)` declares per-row state
 * (evaluated once per CTA) and `chunkCode(r)` returns [okExpr, srcExpr] per k-tile. */
export function rowChunkLoader(o: {
  smem: 'sA' | 'sB'; rows: number; rowChunks: number; threads: number;
  perKtile: string; chunk: (j: number, row: string) => { ok: string; src: string };
}): string {
  const per = (o.rows * o.rowChunks) / o.threads;
  const step = o.threads / o.rowChunks;
  const sw = o.smem === 'sA' ? 'sw_a' : 'sw_b';
  const lines: string[] = [`    {`, `      const int ch = tid % ${o.rowChunks};`, o.perKtile];
  for (let j = 0; j < per; j++) {
    const row = `(tid / ${o.rowChunks} + ${j * step})`;
    const { ok, src } = o.chunk(j, row);
    lines.push(`      { const int row = ${row}; const bool ok = ${ok}; cp_async16(${o.smem} + row * ${o.rowChunks * 16} + ${sw}(row, ch), ok ? (const void*)(${src}) : (const void*)tc_dummy, ok); }`);
  }
  lines.push('    }');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------
// GEMM

/** C[b][M,N] = epilogue(A[b][M,K] * B[b]), fp16 (or bf16) in/out, fp32 accumulation. */
export interface GemmProblem {
  m: number; n: number; k: number;
  /** Storage of A, B, C and the residual: float16 (default; absent, so fp16 kernels and their timing-cache
   * signatures stay as they were) or bfloat16. */
  dtype?: TcDType;
  /** 'nk': B is [N,K] row-major (weights transposed, Q*K^T); 'kn': B is [K,N] row-major (P*V). */
  bLayout?: 'nk' | 'kn';
  /** Leading dimensions in elements; defaults: lda=k, ldb=k ('nk') or n ('kn'), ldc=n. */
  lda?: number; ldb?: number; ldc?: number;
  /** Up to two batch dims (e.g. [batch, heads]); per-dim element strides of A, B and C (0 = broadcast,
   * e.g. strideB [0] for shared weights). The residual uses C's layout. */
  batch?: number[];
  strideA?: number[]; strideB?: number[]; strideC?: number[];
  /** SMs of the GPU the kernel is for (absent: SM_COUNT; set with smCountField). */
  smCount?: number;
}

interface GemmResolved {
  m: number; n: number; k: number; kn: boolean; lda: number; ldb: number; ldc: number;
  batch: number[]; sA: number[]; sB: number[]; sC: number[]; batchCount: number; smCount?: number;
}

function resolveGemm(p: GemmProblem): GemmResolved {
  const kn = (p.bLayout ?? 'nk') === 'kn';
  const batch = p.batch ?? [];
  if (batch.length > 2) throw new TsrtError('USAGE', 'gemm supports at most two batch dims', 'merge batch dims into two');
  const dflt = (s: number[] | undefined, per: number) => s ?? batch.map((_, i) => per * batch.slice(i + 1).reduce((a, b) => a * b, 1));
  const r: GemmResolved = {
    m: p.m, n: p.n, k: p.k, kn,
    lda: p.lda ?? p.k, ldb: p.ldb ?? (kn ? p.n : p.k), ldc: p.ldc ?? p.n,
    batch, batchCount: batch.reduce((a, b) => a * b, 1),
    sA: [], sB: [], sC: [], ...smCountField(p.smCount),
  };
  r.sA = dflt(p.strideA, p.m * r.lda);
  r.sB = dflt(p.strideB, kn ? p.k * r.ldb : p.n * r.ldb);
  r.sC = dflt(p.strideC, p.m * r.ldc);
  for (const [nm, s] of [['strideA', r.sA], ['strideB', r.sB], ['strideC', r.sC]] as const) {
    if (s.length !== batch.length) throw new TsrtError('USAGE', `${nm} needs one stride per batch dim`);
  }
  for (const [nm, v] of Object.entries({ m: p.m, n: p.n, k: p.k })) {
    if (!Number.isInteger(v) || v < 1) throw new TsrtError('USAGE', `gemm ${nm}=${v} must be a positive integer`);
  }
  return r;
}

/** Reasons the tensor-core GEMM cannot run this problem (empty: it can). Also required at run time:
 * every pointer 16-byte aligned (A, B, C, residual); bias 4-byte aligned. */
export function gemmTcPreconditions(p: GemmProblem): string[] {
  const r = resolveGemm(p);
  const out: string[] = [];
  if (r.k % 8) out.push(`K=${r.k} must be a multiple of 8`);
  if (r.lda % 8) out.push(`lda=${r.lda} must be a multiple of 8`);
  if (r.ldb % 8) out.push(`ldb=${r.ldb} must be a multiple of 8`);
  if (r.kn && r.n % 8) out.push(`N=${r.n} must be a multiple of 8 when B is [K,N]`);
  if ([...r.sA, ...r.sB].some((s) => s % 8)) out.push('A and B batch strides must be multiples of 8');
  return out;
}

function batchSetup(r: GemmResolved, pointers: Array<[string, number[]]>): string {
  if (!r.batch.length) return '';
  const lines: string[] = [];
  const inner = r.batch.length === 2 ? r.batch[1] : 1;
  lines.push(`  const long long b0 = bz / ${inner}, b1 = bz % ${inner}; (void)b1;`);
  for (const [ptr, st] of pointers) {
    const e = st.map((s, i) => `${i === 0 ? 'b0' : 'b1'} * ${s}LL`).join(' + ');
    lines.push(`  ${ptr} += ${e};`);
  }
  return lines.join('\n');
}

function gemmShape(r: GemmResolved): TileShape { return { m: r.m, n: r.n, k: r.k, batch: r.batchCount, ...smCountField(r.smCount) }; }

export function gemmConfigSpace(p: GemmProblem): TileConfig[] {
  const r = resolveGemm(p);
  return tileConfigSpace(gemmShape(r), r.kn);
}

export function chooseGemmConfig(p: GemmProblem): TileConfig {
  const r = resolveGemm(p);
  return chooseTileConfig(gemmShape(r), r.kn);
}

/** Tensor-core GEMM. Kernel signature:
 * (const half* a, const half* b, const float* bias, const half* residual, half* c[, unsigned char* workspace]);
 * bias/residual may be null when the epilogue does not use them. Throws TsrtError('UNSUPPORTED') when
 * `gemmTcPreconditions` fails: use emitGemmGeneric then. wgmma configs go through emitGemmTc (wgmma.ts). */
export function emitGemm(p: GemmProblem, epi: Epilogue = {}, cfg?: TileConfig): TcKernelSource {
  if (cfg?.wgmma) throw new TsrtError('USAGE', `tile config ${configName(cfg)} is a wgmma config`, 'emit it with emitGemmTc (wgmma.ts)');
  return tcKernel(gemmTcSpec(p, epi, cfg));
}

/** The kernel description emitGemm builds (loaders, epilogue, output addressing), for any kernel skeleton
 * that follows tcKernel's contract (tcKernel; wgmmaKernel in wgmma.ts). */
export function gemmTcSpec(p: GemmProblem, epi: Epilogue = {}, cfg?: TileConfig): TcSpec {
  const pre = gemmTcPreconditions(p);
  if (pre.length) throw new TsrtError('UNSUPPORTED', `tensor-core gemm: ${pre.join('; ')}`, 'use emitGemmGeneric');
  const r = resolveGemm(p);
  const c = cfg ?? chooseTileConfig(gemmShape(r), r.kn);
  const bad = configProblems(c, r.kn);
  if (bad.length) throw new TsrtError('USAGE', `tile config ${configName(c)}: ${bad.join('; ')}`);
  const threads = tcLoaderThreads(c);
  const setup = [
    '  const tc_half* tc_dummy = a;',
    batchSetup(r, [['a', r.sA], ['b', r.sB], ['c', r.sC], ...(epi.residual ? [['residual', r.sC] as [string, number[]]] : [])]),
    '  tc_half* __restrict__ y = c;',
  ].join('\n');
  const loadA = rowChunkLoader({
    smem: 'sA', rows: c.bm, rowChunks: c.bk / 8, threads,
    perKtile: `      const int kcol = kt * ${c.bk} + ch * 8;`,
    chunk: (_j, row) => ({ ok: `kcol < ${r.k} && mBase + ${row} < ${r.m}`, src: `a + (idx_t)(mBase + ${row}) * ${r.lda} + kcol` }),
  });
  const loadB = r.kn
    ? rowChunkLoader({
      smem: 'sB', rows: c.bk, rowChunks: c.bn / 8, threads,
      perKtile: `      const int ncol = nBase + ch * 8;`,
      chunk: (_j, row) => ({ ok: `ncol < ${r.n} && kt * ${c.bk} + ${row} < ${r.k}`, src: `b + (idx_t)(kt * ${c.bk} + ${row}) * ${r.ldb} + ncol` }),
    })
    : rowChunkLoader({
      smem: 'sB', rows: c.bn, rowChunks: c.bk / 8, threads,
      perKtile: `      const int kcol = kt * ${c.bk} + ch * 8;`,
      chunk: (_j, row) => ({ ok: `kcol < ${r.k} && nBase + ${row} < ${r.n}`, src: `b + (idx_t)(nBase + ${row}) * ${r.ldb} + kcol` }),
    });
  const pairStores = r.ldc % 2 === 0 && r.n % 2 === 0 && r.sC.every((s) => s % 2 === 0);
  const aBytes = r.m * r.k * (r.sA.some((s) => s === 0) ? 1 : r.batchCount);
  const bBytes = r.n * r.k * (r.sB.every((s) => s === 0) ? 1 : r.batchCount);
  return {
    prefix: `gemm_tc_${p.dtype === 'bfloat16' ? 'bf16_' : ''}${r.kn ? 'kn' : 'nk'}`, cfg: c, ...(p.dtype === 'bfloat16' ? { mma: 'bf16' as const } : {}), m: r.m, n: r.n, k: r.k, batch: r.batchCount, bKN: r.kn,
    params: [
      { name: 'a', decl: 'const tc_half* __restrict__ a' },
      { name: 'b', decl: 'const tc_half* __restrict__ b' },
      { name: 'bias', decl: 'const float* __restrict__ bias' },
      { name: 'residual', decl: 'const tc_half* __restrict__ residual' },
      { name: 'c', decl: 'tc_half* __restrict__ c' },
    ],
    setup, loadA, loadB, outOffset: `(idx_t)m * ${r.ldc} + n`, pairStores, epi,
    vecStores: r.ldc % 8 === 0 && r.n % 8 === 0 && r.sC.every((s) => s % 8 === 0),
    nFastest: bBytes <= aBytes, flops: 2 * r.m * r.n * r.k * r.batchCount,
    bigIndex: (r.m + 1) * Math.max(r.lda, r.ldc) >= 2 ** 31 || (r.kn ? r.k : r.n) * r.ldb >= 2 ** 31, ...smCountField(r.smCount),
  };
}

// ---------------------------------------------------------------------------------------------------
// Generic SIMT fallback (any alignment, fp16 or fp32, fp32 accumulation, no TF32)

export type GenericDType = 'float16' | 'bfloat16' | 'float32';

export const GENERIC_TILE = { bm: 64, bn: 64, bk: 16, threads: 256 };

// 16-bit storage goes through the kernel's tc_half helpers (tcHelpers of its element type)
const isHalf = (d: GenericDType) => d !== 'float32';
export function storageType(d: GenericDType): string { return isHalf(d) ? 'tc_half' : 'float'; }
export function loadF(d: GenericDType, e: string): string { return isHalf(d) ? `h2f(${e})` : `(${e})`; }
export function storeF(d: GenericDType, e: string): string { return isHalf(d) ? `f2h(${e})` : `(${e})`; }
/** Kernel-name tag of a storage dtype. */
export function dtypeTag(d: GenericDType): string { return d === 'float16' ? 'f16' : d === 'bfloat16' ? 'bf16' : 'f32'; }

/** Shared skeleton of the SIMT kernels: 64x64x16 smem tiles, 16x16 threads each owning a 4x4 strided
 * micro-tile, next tile's global loads prefetched into registers during the math. `loadA(kt)`/`loadB(kt)`
 * are statements that set float `va[i]` / `vb[i]` (i < 4, this thread's share of k-tile `kt`);
 * `posA(i)`/`posB(i)` give the smem position `[k][m]` / `[k][n]` element i goes to. */
export function genericKernel(o: {
  name: string; params: string; setup: string; kTiles: number;
  loadA: (kt: string) => string; loadB: (kt: string) => string; posA: (i: string) => string; posB: (i: string) => string;
  epilogue: string; epi: Epilogue; dtype: GenericDType;
}): string {
  return `${tcHelpers(o.dtype === 'bfloat16' ? 'bf16' : 'f16')}
${actFunction(o.epi)}
extern "C" __global__ void __launch_bounds__(256) ${o.name}(${o.params}) {
  __shared__ float As[16][65];
  __shared__ float Bs[16][65];
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
${o.setup}
  float acc[4][4];
  #pragma unroll
  for (int i = 0; i < 4; ++i)
    #pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  float va[4], vb[4];
  ${o.loadA('0')}
  ${o.loadB('0')}
  for (int kt = 0; kt < ${o.kTiles}; ++kt) {
    #pragma unroll
    for (int i = 0; i < 4; ++i) { As${o.posA('i')} = va[i]; Bs${o.posB('i')} = vb[i]; }
    __syncthreads();
    if (kt + 1 < ${o.kTiles}) {
      ${o.loadA('(kt + 1)')}
      ${o.loadB('(kt + 1)')}
    }
    #pragma unroll
    for (int kk = 0; kk < 16; ++kk) {
      float ra[4], rb[4];
      #pragma unroll
      for (int i = 0; i < 4; ++i) { ra[i] = As[kk][ty + 16 * i]; rb[i] = Bs[kk][tx + 16 * i]; }
      #pragma unroll
      for (int i = 0; i < 4; ++i)
        #pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(ra[i], rb[j], acc[i][j]);
    }
    __syncthreads();
  }
${o.epilogue}
}
`;
}

/** Generic GEMM for any sizes/alignment; same signature and problem type as emitGemm, storage dtype
 * fp16, bf16 or fp32 (bias is always fp32). */
export function emitGemmGeneric(p: GemmProblem, epi: Epilogue = {}, dtype: GenericDType = 'float16'): TcKernelSource {
  const r = resolveGemm(p);
  const T = storageType(dtype);
  const { bm, bn, bk } = GENERIC_TILE;
  const mTiles = ceil(r.m, bm), nTiles = ceil(r.n, bn);
  const big = (r.m + 1) * Math.max(r.lda, r.ldc) >= 2 ** 31 || (r.kn ? r.k : r.n) * r.ldb >= 2 ** 31;
  const I = big ? 'long long' : 'int';
  // A: thread loads 4 elements; element i -> (m = tid/16 + 16i, k = tid%16): 16 consecutive k per row
  const loadA = (kt: string) => `#pragma unroll
  for (int i = 0; i < 4; ++i) { const int mm = mBase + ty + 16 * i, kk = ${kt} * ${bk} + tx;
    va[i] = (mm < ${r.m} && kk < ${r.k}) ? ${loadF(dtype, `a[(${I})mm * ${r.lda} + kk]`)} : 0.0f; }`;
  const loadB = (kt: string) => r.kn
    ? `#pragma unroll
  for (int i = 0; i < 4; ++i) { const int e = tid + 256 * i, kk = ${kt} * ${bk} + (e >> 6), nn = nBase + (e & 63);
    vb[i] = (nn < ${r.n} && kk < ${r.k}) ? ${loadF(dtype, `b[(${I})kk * ${r.ldb} + nn]`)} : 0.0f; }`
    : `#pragma unroll
  for (int i = 0; i < 4; ++i) { const int nn = nBase + ty + 16 * i, kk = ${kt} * ${bk} + tx;
    vb[i] = (nn < ${r.n} && kk < ${r.k}) ? ${loadF(dtype, `b[(${I})nn * ${r.ldb} + kk]`)} : 0.0f; }`;
  const setup = `  const int mBase = blockIdx.x % ${mTiles} * ${bm}, nBase = blockIdx.x / ${mTiles} * ${bn};
  const int bz = blockIdx.y; (void)bz;
${batchSetup(r, [['a', r.sA], ['b', r.sB], ['c', r.sC], ...(epi.residual ? [['residual', r.sC] as [string, number[]]] : [])])}`;
  const epilogue = `  #pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int m = mBase + ty + 16 * i;
    if (m >= ${r.m}) continue;
    #pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = nBase + tx + 16 * j;
      if (n >= ${r.n}) continue;
      const ${I} off = (${I})m * ${r.ldc} + n;
      float v = acc[i][j];
      ${epilogueStatements(epi, 'v', 'n', loadF(dtype, 'residual[off]'))}
      c[off] = ${storeF(dtype, 'v')};
    }
  }`;
  const params = `const ${T}* __restrict__ a, const ${T}* __restrict__ b, const float* __restrict__ bias, const ${T}* __restrict__ residual, ${T}* __restrict__ c`;
  const body = (name: string) => `// gemm_generic ${dtype} M=${r.m} N=${r.n} K=${r.k} batch=${r.batchCount} B=${r.kn ? '[K,N]' : '[N,K]'}\n` + genericKernel({
    name, params, setup, kTiles: ceil(r.k, bk), loadA, loadB,
    posA: (i) => `[tx][ty + 16 * ${i}]`,
    posB: (i) => (r.kn ? `[(tid + 256 * ${i}) >> 6][(tid + 256 * ${i}) & 63]` : `[tx][ty + 16 * ${i}]`),
    epilogue, epi, dtype,
  });
  const name = `gemm_generic_${dtypeTag(dtype)}_${r.kn ? 'kn' : 'nk'}_${epilogueKey(epi)}_${shortHash(body('K'))}`;
  if (r.batchCount > 65535) throw new TsrtError('USAGE', `batch ${r.batchCount} exceeds grid.y`);
  return {
    name, source: body(name), grid: [mTiles * nTiles, r.batchCount, 1], block: [256, 1, 1], sharedBytes: 0,
    params: ['a', 'b', 'bias', 'residual', 'c'].map((n) => ({ name: n, type: 'ptr' as const })),
    workspaceBytes: 0, workspaceZeroBytes: 0, flops: 2 * r.m * r.n * r.k * r.batchCount,
  };
}

