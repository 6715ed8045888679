// Hopper wgmma family for the int8 conv/GEMM kernels (tc_int8.ts): wgmma.mma_async m64nNk32 .s32.s8.s8, both
// operands K-major from 128-B-swizzled shared memory through matrix descriptors, s32 accumulators, the int8
// epilogue (per-channel scale, bias, residual, activation, requantize; staged 16-byte stores) of the mma.sync
// kernels. The kernel description (loaders, setup, epilogue code) is the one tc_int8.ts builds for tcKernel,
// so lowering swaps families by tile config (TileConfig.wgmma) as the fp16 path does. Needs sm_90a.
//
// Rules taken from the PTX ISA (wgmma.mma_async, integer variant) and why the kernel matches wgmma.ts:
//  - Syntax: `wgmma.mma_async.sync.aligned.m64nNk32.s32.s8.s8 d, a-desc, b-desc, scale-d;` - no imm-scale
//    (negation is floating-point only) and no imm-trans: integer operands must be K-major, which is what the
//    loaders write (A [M,K] rows, B [N,K] rows). N: the integer shapes take every multiple of 16 up to 256 (and
//    8, 24). ptxas of CUDA 13.0 for sm_90a assembles m64nNk32.s32.s8.s8 for N = 128, 192, 208, 224, 240 and 256
//    and refuses N = 200 ("Illegal matrix shape ... with integer types") and 264, so int8 tiles take fp16's bn
//    64, 128, 192 and 256 (wgmma.ts's WG_TILES; at most 128 s32 accumulators a thread, as 128 f32 ones there).
//  - An s8 k32 step reads 32 bytes of each row, as an f16 k16 step does: one 128-B swizzle row holds 128 int8
//    elements, so bk = 128 and the four k-steps of a tile start at +32*kk bytes, with the same descriptor
//    (WGMMA_DESC: LBO 1, SBO 1024, 128-B swizzle, 1024-B aligned atoms) and the same cp.async swizzle.
//  - The s32 D fragment is laid out as the f32 one (warp w: rows 16w + lane/4 (+8), columns 8j + 2(lane%4)
//    (+1)), so the epilogue sees the accumulator pairs it sees in the mma.sync kernels.
//  - Pipeline, proxy fence, wait_group discipline and the accumulator fence after the last wait are those of
//    wgmma.ts (see there); the accumulator fence uses "+r" since the registers hold integers.
// Forms, as for fp16 (the autotuner times them side by side): all-threads-load (wgmmaMainloop), warp-specialized
// (`ws`: wgmma_ws.ts's producer/consumer skeleton, s32 accumulators), `se` (output staged through a tile in shared
// memory with the residual tile requested by cp.async before the mainloop, so its latency hides under it), and
// `persistent` (ws + se; grid = min(tiles, SMs), the producer loads the next tile during this tile's epilogue, the
// residual double-buffered when two residual tiles fit). The epilogue arithmetic is tc_int8.ts's (pairToTile) in
// every form: per-channel scale, bias, residual, activation and requantize round exactly as in the CPU reference.
import { TsrtError } from '../errors.js';
import { shortHash, type KernelParam } from './kernel.js';
import { configName, SM_COUNT, type TcKernelSource, type TcSpec, type TileConfig } from './tc_gemm.js';
import { WGMMA_ASM_HELPERS, wgmmaFragmentStores, wgmmaGeometry, wgmmaInstr, wgmmaMainloop, wgmmaPreamble } from './wgmma.js';
import { WGMMA_ALIGN_SLACK, wgmmaDynamicSmemMax } from './wgmma_config.js';
import { persistentKernelBody, WGMMA_WS_ASM_HELPERS, wsKernelBody } from './wgmma_ws.js';


/** The int-accumulator fence (the CPU emulator in test/int8-wgmma-emu.test.ts replaces exactly this text). */
export const WGMMA_S8_KEEP = `// compiler-only: ties an int accumulator to this point, so no read moves above the last wgmma.wait_group
__device__ __forceinline__ void wg_keep_i(int& x) { asm volatile("" : "+r"(x) :: "memory"); }
`;

/** The `se` epilogue of an int8 kernel description (tc_int8.ts): output and residual element bytes (rb 0: no
 * residual) and the code of one accumulator pair t[0..1] at (m, n), both in range, reading its residual pair at
 * `rsp` and writing its output pair at `sp` (both byte pointers into the staging tiles). */
export interface S8Staged {
  ob: number; rb: number; pair: string;
  /** Per column pair, before its rows (the channel scale and bias loads the pair code reads), given the guard `ok`
   * of n against N (a literal true when the tiles cover N exactly). */
  column?: (ok: string) => string;
}

/** Where the se staging tiles go: the output tile (rows of bn*ob + 16 bytes: a warp's pair writes fall on distinct
 * banks) and `resBufs` residual tiles (rows of bn*rb + 16), after the stages when there is a residual or the kernel
 * is persistent (whose producer refills the stages during the epilogue), else over the stages. */
interface S8Plan { outOff: number; outRow: number; resOff: number; resRow: number; resTile: number; resBufs: number; sharedBytes: number }

function s8Plan(c: TileConfig, k: Pick<S8Staged, 'ob' | 'rb'>, pipelineBytes: number): S8Plan | undefined {
  const outRow = c.bn * k.ob + 16, resRow = c.bn * k.rb + 16, outTile = c.bm * outRow, resTile = k.rb ? c.bm * resRow : 0;
  if (!k.rb && !c.persistent) return { outOff: 0, outRow, resOff: 0, resRow, resTile, resBufs: 0, sharedBytes: Math.max(pipelineBytes, outTile) + WGMMA_ALIGN_SLACK };
  const outOff = Math.ceil(pipelineBytes / 1024) * 1024, resOff = outOff + outTile;
  const fits = (bufs: number) => resOff + bufs * resTile + WGMMA_ALIGN_SLACK <= wgmmaDynamicSmemMax(c);
  if (!fits(k.rb ? 1 : 0)) return undefined;
  // persistent: a second residual buffer lets the next tile's residual load under this tile's epilogue
  const resBufs = !k.rb ? 0 : c.persistent && fits(2) ? 2 : 1;
  return { outOff, outRow, resOff, resRow, resTile, resBufs, sharedBytes: resOff + resBufs * resTile + WGMMA_ALIGN_SLACK };
}

/** Why a persistent int8 wgmma config cannot stage an epilogue of `ob`-byte outputs and `rb`-byte residuals
 * (rb 0: none) beside its stages, or undefined when it can: the emitter's exact layout (s8Plan: S stages rounded up
 * to 1 KiB, the output tile, one residual tile; the alignment slack; the ws kernels' static mbarrier block is
 * off the maximum). For int8ConfigProblems, which the config spaces and the autotuner filter by. */
export function s8PersistentProblem(c: TileConfig, ob: number, rb: number): string | undefined {
  if (!c.persistent) return undefined;
  const pipelineBytes = c.stages * (c.bm + c.bn) * 128;
  if (s8Plan(c, { ob, rb }, pipelineBytes)) return undefined;
  const outOff = Math.ceil(pipelineBytes / 1024) * 1024, need = outOff + c.bm * (c.bn * ob + 16) + (rb ? c.bm * (c.bn * rb + 16) : 0) + WGMMA_ALIGN_SLACK;
  return `persistent int8 wgmma: ${c.stages} stages and a staging tile of ${ob * 8}-bit outputs${rb ? ` and one of ${rb * 8}-bit residuals` : ''} take ${need} B of shared memory, over the ${wgmmaDynamicSmemMax(c)} B a ws kernel may use (fewer stages or a smaller tile)`;
}

interface Scope { rowBase: string; rows: number; threads: number; tid: string }

/** The bounds test of element (m, n) of a tile: only the edges the tiles do not cover exactly (M % bm, N % bn). */
function inRange(s: TcSpec): string {
  return [s.m % s.cfg.bm ? `m < ${s.m}` : '', s.n % s.cfg.bn ? `n < ${s.n}` : ''].filter(Boolean).join(' && ') || 'true';
}

/** cp.async of the scope's residual rows (16 B a chunk, zero-filled outside M x N) into the residual tile at
 * byte offset `off` from smemBase; one commit group. */
function residualPrefetch(s: TcSpec, k: S8Staged, p: S8Plan, g: Scope, off: string): string {
  const cpr = (s.cfg.bn * k.rb) / 16;
  return `  { // residual tile -> shared memory, under the mainloop
    const u32 rstg = smemBase + ${off};
    for (int i = ${g.tid}; i < ${g.rows * cpr}; i += ${g.threads}) {
      const int r = ${g.rowBase} + i / ${cpr}, cc = i % ${cpr};
      const int m = mBase + r, n = nBase + cc * ${16 / k.rb};
      const bool ok = ${inRange(s)};
      const idx_t off = ok ? (idx_t)(${s.outOffset}) : (idx_t)0;
      cp_async16(rstg + (u32)(r * ${p.resRow} + cc * 16), residual + off, ok);
    }
    cp_async_commit();
  }
`;
}

/** The epilogue proper: accumulator pairs through the int8 epilogue into the output tile (residual read from the
 * residual tile at byte offset `resOff`), `sync`, then the scope's rows copied out 16 B a thread. The caller
 * syncs before (residual landed, stages free when overlaid). */
function stagedEpilogue(s: TcSpec, k: S8Staged, p: S8Plan, g: Scope, o: { MI: number; wgVar: string; sync: string; resOff: string }): string {
  const c = s.cfg, chunks = (c.bn * k.ob) / 16;
  const base = '(smemBase - smem_u32(tc_smem))';
  const store = `if (${inRange(s)}) {
          ${k.rb ? `const unsigned char* rsp = r8 + (m - mBase) * ${p.resRow} + (n - nBase) * ${k.rb};` : ''}
          unsigned char* sp = o8 + (m - mBase) * ${p.outRow} + (n - nBase) * ${k.ob};
          ${k.pair}
        }`;
  return `  struct __align__(16) tc_v16 { unsigned a, b, c, d; };
  unsigned char* o8 = tc_smem + ${base} + ${p.outOff};
${k.rb ? `  const unsigned char* r8 = tc_smem + ${base} + ${o.resOff};\n` : ''}${wgmmaFragmentStores(o.MI, c.bn, 'int', store, o.wgVar, k.column?.(s.n % c.bn ? `n < ${s.n}` : 'true') ?? '')}
  ${o.sync}
  #pragma unroll 4
  for (int i = ${g.tid}; i < ${g.rows * chunks}; i += ${g.threads}) {
    const int r = ${g.rowBase} + i / ${chunks}, ch = i % ${chunks};
    const int m = mBase + r, n = nBase + ch * ${16 / k.ob};
    if (${inRange(s)}) {
      const idx_t off = ${s.outOffset};
      *reinterpret_cast<tc_v16*>(y + off) = *reinterpret_cast<const tc_v16*>(o8 + r * ${p.outRow} + ch * 16);
    }
  }
`;
}

/** Assembles the int8 wgmma kernel from a tc_int8.ts kernel description (`mma: 's8'`, `store` with `t` as two
 * int accumulators, optional `storeBegin` / `storeEnd`) and its se epilogue parts (`staged`: undefined when the
 * output or residual rows are not 16-B aligned; the se form then keeps the spec's stores). Config validity is
 * int8ConfigProblems' (tc_int8.ts). */
export function wgmmaS8Kernel(s: TcSpec, staged?: S8Staged): TcKernelSource {
  const c = s.cfg;
  if (!c.wgmma || s.mma !== 's8') throw new TsrtError('USAGE', `wgmmaS8Kernel: ${configName(c)} is not an int8 wgmma kernel description`);
  if (c.bk !== 128 || ![64, 128, 192, 256].includes(c.bn) || (c.splitK ?? 1) !== 1 || s.bKN || !s.store) {
    throw new TsrtError('USAGE', `int8 wgmma: config ${configName(c)} needs bk 128, bn 64/128/192/256, no split-K, B [N,K] and int8 store code`);
  }
  if (s.batch !== 1) throw new TsrtError('USAGE', 'int8 wgmma kernels are not batched');
  const { G, MI, S, mTiles, nTiles, kTiles, aBytes, stageBytes, NR } = wgmmaGeometry(s);
  const params: KernelParam[] = s.params.map((p) => ({ name: p.name, type: 'ptr' as const }));
  // a persistent kernel cycles through all S stages across its tiles, whatever one tile's k-tile count
  const pipelineBytes = (c.persistent ? S : Math.min(S, kTiles)) * stageBytes;
  const plan = c.se && staged ? s8Plan(c, staged, pipelineBytes) : undefined;
  const k = staged!;
  const seNote = plan ? ' staged epilogue' : '';
  const parts = {
    helpers: [WGMMA_ASM_HELPERS, WGMMA_S8_KEEP, ...(c.ws ? [WGMMA_WS_ASM_HELPERS] : [])], instr: wgmmaInstr(c.bn, 's8'),
    swizzleNote: 'rows are 128 B = 128 int8', acc: 'int' as const,
  };
  const named = (body: (name: string) => string, grid: number, threads: number, sharedBytes: number): TcKernelSource => {
    const name = `${s.prefix}_${configName(c)}_${shortHash(body('K'))}`;
    return {
      name, source: body(name), grid: [grid, 1, 1], block: [threads, 1, 1], sharedBytes, params, config: c,
      workspaceBytes: 0, workspaceZeroBytes: 0, flops: s.flops,
    };
  };
  // the spec's stores (direct, or staged over the stages: tc_int8.ts's stagedStore, which syncs the consumers only
  // in ws kernels) for configs without se or whose output rows do not allow it
  const specStores = (wgVar: string) => `${s.storeBegin ?? ''}
${wgmmaFragmentStores(MI, c.bn, 'int', s.store!, wgVar)}
${s.storeEnd ?? ''}`;
  const allBytes = S * stageBytes + 1024; // the spec's staged stores assume every stage (int8StagingRowBytes)

  if (!c.ws) {
    const threads = 128 * G;
    const scope = { rowBase: '0', rows: c.bm, threads, tid: 'tid' };
    const epilogue = plan ? `  __syncthreads(); // every warpgroup's wgmmas retired and every residual chunk landed
${stagedEpilogue(s, k, plan, scope, { MI, wgVar: 'wg', sync: '__syncthreads();', resOff: String(plan.resOff) })}` : `${specStores('wg')}\n`;
    const body = (name: string) => `${wgmmaPreamble(s, { title: `wgmma s8 ${configName(c)} M=${s.m} N=${s.n} K=${s.k}${seNote}`, ...parts })}
${wgmmaMainloop({ s, name, threads, mTiles, nTiles, kTiles, MI, NR, S, stageBytes, aBytes, acc: 'int', batchIndex: false, prologue: plan && k.rb ? residualPrefetch(s, k, plan, scope, String(plan.resOff)) : undefined })}${epilogue}}
`;
    return named(body, mTiles * nTiles, threads, plan ? plan.sharedBytes : allBytes);
  }

  const threads = 128 * (G + 1), rowsPerWg = MI * 64;
  const scope = { rowBase: `cw * ${rowsPerWg}`, rows: rowsPerWg, threads: 128, tid: 'ctid' };
  const wgSync = 'named_bar_sync(2 + cw, 128);';
  if (c.persistent) {
    if (!plan) throw new TsrtError('USAGE', `persistent int8 wgmma config ${configName(c)}: needs 16-B output and residual rows and its staging tiles beside the stages`);
    const dbl = plan.resBufs === 2;
    const bufOff = (buf: string) => `${plan.resOff} + (${buf}) * ${plan.resTile}`;
    // per tile: this tile's residual chunks landed (dbl: the next tile's stay in flight) and are visible to the
    // warpgroup; its staging rows were released by the skeleton's sync at the end of the previous tile
    const epilogue = `    cp_async_wait<${dbl ? 1 : 0}>();
    ${wgSync}
${stagedEpilogue(s, k, plan, scope, { MI, wgVar: 'cw', sync: wgSync, resOff: dbl ? bufOff('tl & 1') : String(plan.resOff) })}`;
    const body = persistentKernelBody(s, {
      title: `wgmma s8 warp-specialized persistent ${configName(c)} M=${s.m} N=${s.n} K=${s.k} staged epilogue`, ...parts,
      dbl, prefetch: (buf) => (k.rb ? residualPrefetch(s, k, plan, scope, buf === undefined ? String(plan.resOff) : bufOff(buf)) : ''),
      epilogue,
    });
    return { ...named(body, Math.min(mTiles * nTiles, s.smCount ?? SM_COUNT), threads, plan.sharedBytes), persistentTiles: mTiles * nTiles };
  }
  const epilogue = plan ? `${plan.outOff === 0 ? `  named_bar_sync(1, ${128 * G}); // the output tile overlays the stages: every consumer's wgmmas retired first` : `  cp_async_wait<0>(); // this thread's residual chunks
  ${wgSync}`}
${stagedEpilogue(s, k, plan, scope, { MI, wgVar: 'cw', sync: wgSync, resOff: String(plan.resOff) })}` : specStores('cw');
  const body = wsKernelBody(s, {
    title: `wgmma s8 warp-specialized ${configName(c)} M=${s.m} N=${s.n} K=${s.k}${seNote}`, ...parts,
    prologue: plan && k.rb ? residualPrefetch(s, k, plan, scope, String(plan.resOff)) : '', epilogue,
  });
  return named(body, mTiles * nTiles, threads, plan ? plan.sharedBytes : allBytes);
}
