// Validity rules of the Hopper wgmma tile configs (kernels in wgmma.ts). Kept apart from wgmma.ts so that
// tc_gemm.ts (configProblems, configName, estimateTime) can apply them without an import cycle.
import type { TileConfig } from './tc_gemm.js';

/** Dynamic shared memory the kernel adds so it can round its base up to 1024 B: the 128-B swizzle atom is
 * 8 rows x 128 B and the matrix descriptors carry base offset 0, so every stage must start 1024-B aligned. */
export const WGMMA_ALIGN_SLACK = 1024;

/** Static shared memory of the warp-specialized kernels (wgmma_ws.ts): ptxas gives their mbarrier array a 1024-byte
 * block of its own ahead of the 1024-aligned dynamic tile memory (nvcc 13, -Xptxas -v: "1024 bytes smem"; the
 * all-threads kernels have none). The opt-in maximum, 227 KiB on H100/H200, covers static plus dynamic: an H200
 * refused a persistent kernel whose dynamic memory alone was 227 KiB. */
export const WS_STATIC_SMEM = 1024;

/** Dynamic shared memory a wgmma kernel of config `c` may ask for. */
export function wgmmaDynamicSmemMax(c: TileConfig): number { return 227 * 1024 - (c.ws ? WS_STATIC_SMEM : 0); }

/** Threads that issue the cp.async tile loads: all of them, except in the warp-specialized kernels (`ws`,
 * wgmma_ws.ts) where only the producer warpgroup (128 threads) loads. The spec builders (gemmTcSpec,
 * convTcSpec) size their loaders and per-thread im2col state with it. */
export function tcLoaderThreads(c: TileConfig): number { return c.ws ? 128 : 32 * c.warpsM * c.warpsN; }

/** Consumer warpgroups (128 threads each) of a wgmma config: warpsM/4, warpsN is 1. */
export function wgmmaGroups(c: TileConfig): number { return c.warpsM / 4; }

/** m64 blocks per warpgroup: each warpgroup owns bm/groups rows of the tile and all bn columns. */
export function wgmmaMBlocks(c: TileConfig): number { return c.bm / (64 * wgmmaGroups(c)); }

/** Accumulator registers per thread: an m64nN f32 accumulator is 64*N/128 = N/2 registers per thread. */
export function wgmmaAccRegs(c: TileConfig): number { return wgmmaMBlocks(c) * (c.bn / 2); }

/** Registers per thread the heuristic assumes: accumulators plus ~40 for addresses, im2col state, epilogue. */
export function wgmmaRegEstimate(c: TileConfig): number { return wgmmaAccRegs(c) + 48; }

/** Shape rules (shared memory and registers are checked by configProblems). `bKN`: B stored [K,N], which
 * the wgmma kernels do not read (they take both operands K-major; see wgmma.ts). */
export function wgmmaProblems(c: TileConfig, bKN: boolean): string[] {
  const r: string[] = [];
  if (bKN) r.push('wgmma kernels need B as [N,K] (K-major)');
  if (c.bk !== 64) r.push('wgmma: bk must be 64 (one 128-B swizzle row of fp16)');
  if (c.warpsN !== 1 || (c.warpsM !== 4 && c.warpsM !== 8)) r.push('wgmma: warpsM 4 or 8 (1 or 2 warpgroups), warpsN 1');
  const g = c.warpsM / 4;
  if (!Number.isInteger(c.bm / (64 * g)) || c.bm % (64 * g) || c.bm / (64 * g) > 2) r.push('wgmma: bm must be 64 or 128 per warpgroup');
  if (![64, 128, 192, 256].includes(c.bn)) r.push('wgmma: bn must be 64, 128, 192 or 256');
  if (c.stages < 3 || c.stages > 5) r.push('wgmma: stages must be 3..5');
  if ((c.splitK ?? 1) !== 1) r.push('wgmma: no split-K');
  if (c.ws && !c.wgmma) r.push('ws (warp-specialized) is a wgmma variant');
  if (c.se && !c.wgmma) r.push('se (staged epilogue) is a wgmma variant');
  if (c.persistent && !(c.ws && c.se)) r.push('persistent: only the warp-specialized kernel with the staged epilogue (ws, se)');
  if (c.persistent && c.stages * (c.bm + c.bn) * 128 + c.bm * (c.bn + 8) * 2 + WGMMA_ALIGN_SLACK > wgmmaDynamicSmemMax(c)) {
    r.push('persistent: the stages and a separate staging tile do not fit shared memory');
  }
  if (r.length === 0 && c.ws && wgmmaStagingBytes(c) > c.stages * (c.bm + c.bn) * 128) r.push('ws: the epilogue staging tile does not fit the pipeline shared memory');
  if (r.length === 0 && wgmmaAccRegs(c) > 128) r.push(`wgmma: ${wgmmaAccRegs(c)} accumulator registers per thread (max 128)`);
  return r;
}

/** fp32 row stride (floats) of the ws kernels' epilogue staging tile: bn + 8 puts the 8 rows a warp's
 * float2 fragment stores touch on 4 distinct bank groups (two wavefronts, the minimum for 256 B). */
export function wgmmaStagingStride(c: TileConfig): number { return c.bn + 8; }

/** Bytes of the ws kernels' fp32 epilogue staging tile (bm rows), which reuses the pipeline's shared memory. */
export function wgmmaStagingBytes(c: TileConfig): number { return c.bm * wgmmaStagingStride(c) * 4; }
