// Hopper tensor-core family for the fp16 conv/GEMM kernels: wgmma.mma_async m64nNk16 (f32 accumulation) with
// both operands read by the tensor cores straight from 128-B-swizzled shared memory through matrix descriptors.
// Same problems, loaders, epilogues and kernel signature as the mma.sync family (tc_gemm.ts / tc_conv.ts: the
// kernel description comes from gemmTcSpec / convTcSpec), so lowering swaps one for the other by tile config
// (TileConfig.wgmma). Needs sm_90a (NVRTC 12+); see engineArch.
//
// Kernel shape: 1 or 2 warpgroups (128/256 threads); warpgroup g owns rows [g*bm/G, (g+1)*bm/G) of the
// bm x bn tile as 1 or 2 m64 blocks, all bn (64/128/256) columns; bk = 64 fp16 = one 128-B row per tile
// row. Every thread also loads: cp.async 16-B chunks into the swizzled layout (the same rowChunkLoader code
// as the mma.sync kernels; at bk 64 their swizzle, chunk ^ (row % 8), is exactly the hardware's 128-B
// swizzle), which also serves the conv's im2col gathers. TMA and warp specialization are not used.
//
// What was checked in the PTX ISA (wgmma sections) and CUTLASS (cute/arch/mma_sm90_desc.hpp,
// mma_sm90_gmma.hpp, mma_traits_sm90_gmma.hpp), and why the code is as it is:
//  - Descriptor bits: [0,14) start address >> 4, [16,30) leading byte offset >> 4, [32,46) stride byte offset
//    >> 4, [49,52) base offset, [62,64) swizzle (1 = 128B). For K-major operands with a swizzle the leading
//    byte offset is unused (CUTLASS: "assumed 1"); the stride byte offset is the distance between 8-row
//    groups: 8 x 128 B = 1024. Base offset 0 requires each swizzle atom (8 rows x 128 B) to start 1024-B
//    aligned: the kernel rounds its shared base up to 1024 (hence WGMMA_ALIGN_SLACK) and every tile size
//    is a multiple of 8 KB.
//  - The swizzle is applied by the hardware to address bits: 16-B chunk bits [4,7) XOR row bits [7,10). The
//    k16 step kk of a 64-wide k-tile therefore starts at +32*kk bytes (CUTLASS's descriptor iterator does the
//    same), and the stored chunk (k/8) ^ (row % 8) is what the tensor core reads back.
//  - imm-trans-a/b = 0: both operands K-major (A [M,K] rows, B [N,K] rows). B stored [K,N] would need the
//    transposed (MN-major) descriptor form; those GEMMs stay on mma.sync (wgmmaProblems rejects them).
//  - Accumulator fragment (CUTLASS CLayout_64xN): warp w of the warpgroup holds rows 16w..16w+15; lane l
//    holds d[4j + 2h + e] = D[16w + l/4 + 8h][8j + 2(l%4) + e] - the mma.sync m16n8 C layout repeated over
//    n-blocks j, so the epilogue is the mma.sync one.
//  - wgmma.fence before the first wgmma of each k-tile (the accumulators were written by ordinary code
//    before the first one; the PTX ISA requires the fence whenever registers or shared memory the wgmma reads
//    were modified since the last fence).
//  - cp.async writes shared memory through the generic proxy and wgmma reads it through the async proxy:
//    each thread runs fence.proxy.async.shared::cta after its cp.async.wait_group and before the barrier
//    that publishes the tile (CUTLASS issues the same fence for non-TMA shared writes consumed by GMMA).
//  - Pipeline: S stages, S-2 tiles of cp.async in flight, one k-tile of wgmma in flight (wait_group 1). At
//    iteration it the loads go to stage (it-2)%S, whose readers (the wgmmas of tile it-2) every warpgroup
//    retired with wait_group 1 in iteration it-1, before the barrier of iteration it. The stage being
//    computed, it%S, is next written at iteration it+2, after every warpgroup retired tile it.
//  - After the last wait_group 0, an empty asm with "+f" on each accumulator keeps the compiler from moving
//    epilogue reads above the wait (CUTLASS's warpgroup_fence_operand).
import { TsrtError } from '../errors.js';
import { shortHash, type KernelParam } from './kernel.js';
import {
  actFunction, configName, configProblems, emitGemm, epilogueKey, epilogueStatements, gemmTcSpec, specElem, tcHelpers,
  type Epilogue, type GemmProblem, type TcKernelSource, type TcSpec, type TileConfig, type TileShape,
} from './tc_gemm.js';
import { convShape, convTcSpec, emitConv, type ConvProblem } from './tc_conv.js';
import { WGMMA_ALIGN_SLACK, wgmmaGroups, wgmmaMBlocks, wgmmaStagingBytes } from './wgmma_config.js';
import { wgmmaWsKernel } from './wgmma_ws.js';
import { stagedCopyOut, stagedDecl, stagedFragmentStore, stagedResidualPrefetch, stagingPlan } from './wgmma_epilogue.js';

const ceil = (a: number, b: number) => Math.ceil(a / b);

// ---------------------------------------------------------------------------------------------------
// Target selection

/** NVRTC target for an engine on a GPU of `deviceArch` (e.g. 'sm_90'): Hopper gets sm_90a when this NVRTC
 * (12+) can emit it, so the wgmma family is available; an sm_90a cubin runs only on compute capability 9.0,
 * which is the GPU it is built for. Everything else keeps the device arch. */
export function engineArch(deviceArch: string, nvrtc: [number, number]): string {
  return deviceArch === 'sm_90' && nvrtc[0] >= 12 ? 'sm_90a' : deviceArch;
}

/** Whether lowering may offer wgmma configs: sm_90a targets, unless TSRT_WGMMA=0. */
export function wgmmaEnabled(arch: string | undefined): boolean {
  return arch === 'sm_90a' && process.env.TSRT_WGMMA !== '0';
}

// ---------------------------------------------------------------------------------------------------
// Config space

/** [bm, bn, warpsM]: 2 warpgroups x m64 (128 x 64..256), 2 warpgroups x 2 m64 (256 x 64..128), 1 warpgroup
 * x 2 m64 (128 x 64..128), 1 warpgroup x m64 (64 x 64..256, for small M); bn 64, 128, 192 or 256. The int8
 * wgmma kernels take the same list in the same order (tc_int8.ts int8WgmmaConfigSpace). */
export const WG_TILES: Array<[number, number, number]> = [
  [128, 256, 8], [128, 128, 8], [128, 64, 8], [256, 128, 8], [256, 64, 8],
  [128, 128, 4], [128, 64, 4], [64, 256, 4], [64, 128, 4], [64, 64, 4],
  // n192: wave quantization. BERT-base bs32 has M = 4096 and N = 768 / 2304: 128x256 tiles make 96 / 288
  // CTAs on 132 SMs (73% of the last wave busy), 128x192 make 128 / 384 (97%)
  [128, 192, 8], [64, 192, 4],
];

/** Valid wgmma configs for a problem (stages 3..5 where shared memory allows). Empty when B is [K,N]. Each
 * tile comes warp-specialized (wgmma_ws.ts) first, then in the all-threads-load form, each with the staged
 * epilogue (`se`, when N % 8 == 0) first, then without: the autotuner's estimate ties them, and input order
 * puts the variants next to each other in every timed tile group; the persistent ws kernel (`persistent`)
 * comes first of all. TSRT_WGMMA_WS=0 / TSRT_WGMMA_SE=0 / TSRT_WGMMA_PERSISTENT=0 leave those variants out. */
/** Output tiles of 128x128 below which a problem gets no wgmma configs: one per SM (TSRT_WGMMA_MIN_TILES overrides). */
export const WGMMA_MIN_TILES = 132;

export function wgmmaConfigSpace(s: TileShape, bKN = false): TileConfig[] {
  const out: TileConfig[] = [];
  if (bKN || s.batch > 65535) return out;
  // Problems smaller than one wave of 128x128 tiles stay on mma.sync (its split-K and small tiles): timed alone,
  // wgmma won some ResNet-50 bs1 layers, but the whole bs1 engine ran 0.327 ms with them and 0.309 ms without
  // (H200, one device call, bench/results/2026-11-26-h200-session2-bench.json)
  const minTiles = Number(process.env.TSRT_WGMMA_MIN_TILES ?? WGMMA_MIN_TILES);
  if (s.m * s.n * s.batch < minTiles * 128 * 128) return out;
  const wsToo = process.env.TSRT_WGMMA_WS !== '0', seToo = process.env.TSRT_WGMMA_SE !== '0', pToo = process.env.TSRT_WGMMA_PERSISTENT !== '0';
  for (const [bm, bn, warpsM] of WG_TILES) {
    if (bm > 2 * Math.max(16, s.m) + 64 || bn > 2 * Math.max(16, s.n) + 64) continue;
    for (const stages of [3, 4, 5]) {
      for (const ws of wsToo ? [true, false] : [false]) {
        // the staged-epilogue tactic (wgmma_epilogue.ts) where output rows allow 16-B stores, first; and before
        // it the persistent ws kernel (unbatched problems: its per-tile setup re-runs, batch pointer bumps must not)
        for (const se of s.n % 8 === 0 && seToo ? [true, false] : [false]) {
          for (const persistent of ws && se && pToo && s.batch === 1 ? [true, false] : [false]) {
            const c: TileConfig = { bm, bn, bk: 64, warpsM, warpsN: 1, stages, wgmma: true, ...(ws ? { ws } : {}), ...(se ? { se } : {}), ...(persistent ? { persistent } : {}) };
            if (!configProblems(c).length) out.push(c);
          }
        }
      }
    }
  }
  return out;
}

/** wgmmaConfigSpace of a conv problem (the implicit GEMM M = n*p*q, N = k, K = r*s*c). */
export function wgmmaConvSpace(p: ConvProblem): TileConfig[] { return wgmmaConfigSpace(convShape(p)); }

/** wgmmaConfigSpace of a GEMM problem (empty for B [K,N]). */
export function wgmmaGemmSpace(p: GemmProblem): TileConfig[] {
  const batch = (p.batch ?? []).reduce((a, b) => a * b, 1);
  return wgmmaConfigSpace({ m: p.m, n: p.n, k: p.k, batch }, (p.bLayout ?? 'nk') === 'kn');
}

// ---------------------------------------------------------------------------------------------------
// Emitters

/** Tensor-core conv with any tile config of either family (mma.sync or wgmma); same signature as emitConv. */
export function emitConvTc(p: ConvProblem, epi: Epilogue = {}, cfg?: TileConfig): TcKernelSource {
  return cfg?.wgmma ? wgmmaKernel(convTcSpec(p, epi, cfg)) : emitConv(p, epi, cfg);
}

/** Tensor-core GEMM with any tile config of either family; same signature as emitGemm. */
export function emitGemmTc(p: GemmProblem, epi: Epilogue = {}, cfg?: TileConfig): TcKernelSource {
  return cfg?.wgmma ? wgmmaKernel(gemmTcSpec(p, epi, cfg)) : emitGemm(p, epi, cfg);
}

export const WGMMA_DESC = `typedef unsigned long long u64;
// matrix descriptor of a 128-B-swizzled K-major tile (see wgmma.ts): start>>4 | LBO 1 | SBO 1024>>4 | 128B swizzle
__device__ __forceinline__ u64 wg_desc(u32 addr) {
  return (u64)((addr & 0x3FFFFu) >> 4) | ((u64)1 << 16) | ((u64)(1024 >> 4) << 32) | ((u64)1 << 62);
}
`;

/** The PTX-only helpers (the CPU emulator in test/codegen-wgmma-emu.test.ts replaces exactly this text). */
export const WGMMA_ASM_HELPERS = `__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wg_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\\n" :: "n"(N) : "memory"); }
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\\n" ::: "memory"); }
// compiler-only: ties the accumulator to this point, so no read moves above the last wgmma.wait_group
__device__ __forceinline__ void wg_keep(float& x) { asm volatile("" : "+f"(x) :: "memory"); }
`;

/** The wgmma instruction wrapper for an n-wide tile: `wg_mma(d, descA, descB)`, D[64 x n] += A[64 x 16] *
 * B[n x 16]^T (f16 or bf16 -> f32), or for 's8' `wg_mma_s8`, D[64 x n] += A[64 x 32] * B[n x 32]^T (s8 -> s32);
 * both operands K-major in shared memory. The PTX ISA gives .bf16.bf16 (f32 accumulators only) the operand list
 * of .f16.f16: scale-d, imm-scale-a, imm-scale-b, imm-trans-a, imm-trans-b, so only the type names differ. */
export function wgmmaInstr(n: number, kind: 'f16' | 'bf16' | 's8' = 'f16'): string {
  const regs = n / 2;
  const f16 = kind !== 's8';
  const list = Array.from({ length: regs }, (_, i) => `%${i}`).join(', ');
  const outs = Array.from({ length: regs }, (_, i) => `"+${f16 ? 'f' : 'r'}"(d[${i}])`).join(', ');
  const op = f16 ? `m64n${n}k16.f32.${kind}.${kind} {${list}}, %${regs}, %${regs + 1}, p, 1, 1, 0, 0` : `m64n${n}k32.s32.s8.s8 {${list}}, %${regs}, %${regs + 1}, p`;
  return `__device__ __forceinline__ void ${f16 ? 'wg_mma(float*' : 'wg_mma_s8(int*'} d, u64 da, u64 db) {
  asm volatile("{\\n.reg .pred p;\\nsetp.ne.b32 p, %${regs + 2}, 0;\\n"
    "wgmma.mma_async.sync.aligned.${op};\\n}\\n"
    : ${outs}
    : "l"(da), "l"(db), "r"(1) : "memory");
}
`;
}

/** Tile counts and shared-memory layout of a wgmma kernel: per stage the A tile (bm rows of 128 B) then the B tile. */
export function wgmmaGeometry(s: TcSpec) {
  const c = s.cfg;
  const G = wgmmaGroups(c), MI = wgmmaMBlocks(c), S = c.stages;
  const mTiles = ceil(s.m, c.bm), nTiles = ceil(s.n, c.bn), kTiles = ceil(s.k, c.bk);
  if (mTiles * nTiles > 2 ** 31 - 1) throw new TsrtError('USAGE', 'too many tiles');
  const aBytes = c.bm * 128, bBytes = c.bn * 128, stageBytes = aBytes + bBytes;
  // Shared memory: only the stages a problem of kTiles k-tiles ever fills (stage = kt % S, so kTiles < S uses
  // stages 0..kTiles-1). A ResNet-50 1x1 conv with K = 64 has one k-tile: three stages would hold one CTA per
  // SM where one stage lets several overlap their epilogue traffic with each other's loads. The ws kernels'
  // epilogue staging tile reuses this memory, so it is never less than that.
  const used = Math.min(S, kTiles) * stageBytes;
  const sharedBytes = Math.max(used, c.ws ? wgmmaStagingBytes(c) : 0) + WGMMA_ALIGN_SLACK;
  // NR: accumulator registers per m64 block
  return { G, MI, S, mTiles, nTiles, kTiles, aBytes, bBytes, stageBytes, NR: c.bn / 2, sharedBytes };
}

/** The fp16 store of this thread's accumulator pair t[0..1] at (m, n), (m, n+1): the mma.sync kernels'
 * epilogue (tcKernel), bias/residual/activation included. */
export function wgmmaStoreCode(s: TcSpec): string {
  const pair = `float v0 = t[0], v1 = t[1];
          { ${epilogueStatements(s.epi, 'v0', 'n', 'lo_h2f(rv)')} }
          { ${epilogueStatements(s.epi, 'v1', '(n + 1)', 'hi_h2f(rv)')} }
          *reinterpret_cast<u32*>(y + off) = pack_h2(v0, v1);`;
  const roff = s.resOffset ? `(${s.resOffset})` : 'off'; // a dense residual beside a strided output (tc_conv.ts)
  const single = (j: number) => `{ float v = t[${j}]; ${epilogueStatements(s.epi, 'v', `(n + ${j})`, `h2f(residual[${roff} + ${j}])`)} y[off + ${j}] = f2h(v); }`;
  return s.pairStores
    ? `if (m < ${s.m} && n < ${s.n}) {
          const idx_t off = ${s.outOffset};
          ${s.epi.residual ? `const u32 rv = *reinterpret_cast<const u32*>(residual + ${roff});` : ''}
          ${pair}
        }`
    : `if (m < ${s.m}) {
          const idx_t off = ${s.outOffset};
          if (n < ${s.n}) ${single(0)}
          if (n + 1 < ${s.n}) ${single(1)}
        }`;
}

export interface WgmmaMainloop {
  s: TcSpec; name: string; threads: number; mTiles: number; nTiles: number; kTiles: number;
  MI: number; NR: number; S: number; stageBytes: number; aBytes: number;
  /** Accumulator type: fp32 (the fp16 kernels) or s32 (the int8 ones, wgmma_s8.ts). */
  acc: 'float' | 'int';
  /** Declare bz = blockIdx.y (batched GEMMs' loaders read it). */
  batchIndex: boolean;
  /** Code after the setup, before the first tile load (the staged epilogue's residual prefetch). */
  prologue?: string;
}

/** The kernel's signature, tile indices and multistage cp.async + wgmma mainloop, shared by the fp16 kernels and
 * the int8 ones (wgmma_s8.ts); the caller's epilogue follows and reads acc[MI][NR]. Int accumulators: each zero
 * passes wg_keep_i, so it is its own register before wgmma.fence; from one shared zero ptxas would move them into
 * the wgmma registers after the fence and inject a warpgroup.arrive (C7519). */
export function wgmmaMainloop(o: WgmmaMainloop): string {
  const { s, name, threads, mTiles, nTiles, kTiles, MI, NR, S, stageBytes, aBytes } = o;
  const c = s.cfg;
  return `extern "C" __global__ void __launch_bounds__(${threads}, 1) ${name}(${s.params.map((p) => p.decl).join(', ')}) {
  extern __shared__ __align__(1024) unsigned char tc_smem[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
  const int mTile = ${s.nFastest ? `blockIdx.x / ${nTiles}` : `blockIdx.x % ${mTiles}`};
  const int nTile = ${s.nFastest ? `blockIdx.x % ${nTiles}` : `blockIdx.x / ${mTiles}`};
${o.batchIndex ? '  const int bz = blockIdx.y;\n' : ''}  const int mBase = mTile * ${c.bm}, nBase = nTile * ${c.bn};
${o.batchIndex ? '  (void)bz;\n' : ''}  // the descriptors assume 1024-B aligned swizzle atoms (base offset 0)
  const u32 smemBase = (smem_u32(tc_smem) + 1023u) & ~1023u;
${s.setup}
${o.prologue ?? ''}  const int ktCount = ${kTiles};

  auto load_tile = [&](int stage, int kt) {
    const u32 sA = smemBase + stage * ${stageBytes};
    const u32 sB = sA + ${aBytes};
${s.loadA}
${s.loadB}
  };

  ${o.acc} acc[${MI}][${NR}];
  #pragma unroll
  for (int i = 0; i < ${MI}; ++i)
    #pragma unroll
    for (int j = 0; j < ${NR}; ++j) ${o.acc === 'float' ? 'acc[i][j] = 0.0f;' : '{ acc[i][j] = 0; wg_keep_i(acc[i][j]); }'}

  #pragma unroll
  for (int st = 0; st < ${S - 2}; ++st) {
    if (st < ktCount) load_tile(st, st);
    cp_async_commit();
  }
  for (int it = 0; it < ktCount; ++it) {
    cp_async_wait<${S - 3}>();
    fence_proxy_async();
    __syncthreads();
    {
      const int nt = it + ${S - 2};
      if (nt < ktCount) load_tile(nt % ${S}, nt);
      cp_async_commit();
    }
    const u32 sA = smemBase + (it % ${S}) * ${stageBytes} + wg * ${MI * 64 * 128};
    const u32 sB = smemBase + (it % ${S}) * ${stageBytes} + ${aBytes};
    wg_fence();
    #pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const u64 db = wg_desc(sB + kk * 32);
      #pragma unroll
      for (int mi = 0; mi < ${MI}; ++mi) ${o.acc === 'float' ? 'wg_mma' : 'wg_mma_s8'}(acc[mi], wg_desc(sA + mi * ${64 * 128} + kk * 32), db);
    }
    wg_commit();
    wg_wait<1>();
  }
  wg_wait<0>();
  #pragma unroll
  for (int i = 0; i < ${MI}; ++i)
    #pragma unroll
    for (int j = 0; j < ${NR}; ++j) ${o.acc === 'float' ? 'wg_keep' : 'wg_keep_i'}(acc[i][j]);
  cp_async_wait<0>();
`;
}

/** The kernel source before the mainloop: a title comment, the helpers, the wgmma wrapper, the index type, the
 * activation and the 128-B swizzle functions (the loaders' `sw_a` / `sw_b`). */
export function wgmmaPreamble(s: TcSpec, o: { title: string; helpers: string[]; instr: string; swizzleNote?: string }): string {
  return `// ${s.prefix} ${o.title}
${tcHelpers(specElem(s))}
${WGMMA_DESC}
${o.helpers.join('\n')}
${o.instr}
typedef ${s.bigIndex ? 'long long' : 'int'} idx_t;
${actFunction(s.epi)}
${o.swizzleNote ? `// 128-B swizzle: 16-B chunk index XOR row % 8 (${o.swizzleNote})\n` : ''}__device__ __forceinline__ u32 sw_a(int row, int ch) { return (u32)((ch ^ (row & 7)) << 4); }
__device__ __forceinline__ u32 sw_b(int row, int ch) { return (u32)((ch ^ (row & 7)) << 4); }
`;
}

/** The epilogue walk over this thread's wgmma accumulator fragments: `store` sees the pair t[0..1] at (m, n), (m, n+1).
 * `column` (optional) runs once per column pair before its two rows, with `n` in scope (per-channel loads). */
export function wgmmaFragmentStores(MI: number, bn: number, acc: 'float' | 'int', store: string, wgVar = 'wg', column = ''): string {
  return `  #pragma unroll
  for (int mi = 0; mi < ${MI}; ++mi) {
    #pragma unroll
    for (int nj = 0; nj < ${bn / 8}; ++nj) {
      const int n = nBase + nj * 8 + (lane & 3) * 2;${column ? `
      ${column}` : ''}
      #pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int m = mBase + (${wgVar} * ${MI} + mi) * 64 + (warp & 3) * 16 + (lane >> 2) + h * 8;
        const ${acc}* t = &acc[mi][nj * 4 + h * 2];
        ${store}
      }
    }
  }`;
}

/** Assembles the wgmma kernel for a kernel description built for tcKernel (same contract: `setup`,
 * `loadA`/`loadB` with `kt`, `sA`, `sB`, `sw_a`, `sw_b` in scope, `outOffset`, epilogue). */
export function wgmmaKernel(s: TcSpec): TcKernelSource {
  const c = s.cfg;
  if (!c.wgmma) throw new TsrtError('USAGE', `tile config ${configName(c)} is not a wgmma config`, 'use tcKernel');
  const bad = configProblems(c, s.bKN);
  if (bad.length) throw new TsrtError('USAGE', `tile config ${configName(c)}: ${bad.join('; ')}`);
  if (s.batch > 65535) throw new TsrtError('USAGE', `batch ${s.batch} exceeds grid.y`);
  if (c.ws) return wgmmaWsKernel(s);
  const { G, MI, S, mTiles, nTiles, kTiles, aBytes, stageBytes, NR, sharedBytes: plainBytes } = wgmmaGeometry(s);
  const threads = 128 * G;
  const params: KernelParam[] = s.params.map((p) => ({ name: p.name, type: 'ptr' as const }));
  // staged epilogue (wgmma_epilogue.ts) when the output rows allow 16-B stores
  const plan = stagingPlan(s, Math.min(S, kTiles) * stageBytes);
  const scope = { rowBase: '0', rows: c.bm, threads, tid: 'tid' };
  const epilogue = plan
    ? `  __syncthreads(); // every warpgroup's wgmmas retired and every residual chunk landed
${stagedDecl(plan)}${wgmmaFragmentStores(MI, c.bn, 'float', stagedFragmentStore(s, plan))}
  __syncthreads();
${stagedCopyOut(s, plan, scope)}`
    : wgmmaFragmentStores(MI, c.bn, 'float', wgmmaStoreCode(s));
  const sharedBytes = plan ? plan.sharedBytes : plainBytes;
  const body = (name: string) => `${wgmmaPreamble(s, {
    title: `wgmma ${configName(c)} M=${s.m} N=${s.n} K=${s.k} batch=${s.batch}${plan ? ' staged epilogue' : ''}`, helpers: [WGMMA_ASM_HELPERS], instr: wgmmaInstr(c.bn, specElem(s)),
    swizzleNote: 'rows are 128 B',
  })}
${wgmmaMainloop({ s, name, threads, mTiles, nTiles, kTiles, MI, NR, S, stageBytes, aBytes, acc: 'float', batchIndex: true, prologue: plan ? stagedResidualPrefetch(s, plan, scope) : undefined })}
${epilogue}
}
`;
  const name = `${s.prefix}_${configName(c)}_${epilogueKey(s.epi)}_${shortHash(body('K'))}`;
  return {
    name, source: body(name),
    grid: [mTiles * nTiles, s.batch, 1], block: [threads, 1, 1],
    sharedBytes, params, config: c,
    workspaceBytes: 0, workspaceZeroBytes: 0, flops: s.flops,
  };
}
