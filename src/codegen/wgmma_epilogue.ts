// Staged epilogue of the fp16/bf16 wgmma kernels (wgmma.ts, wgmma_ws.ts): the output tile goes through a
// 16-bit staging tile in shared memory and leaves in 16-B row-contiguous stores, and a residual is fetched into
// that same tile by cp.async while the mainloop runs.
//
// Why (H200 profile of ResNet-50 bs256, bench/results/2026-11-26-h200-session3-*.json): the 1x1 convs with
// K = 64..128 and a residual ran at 2 TB/s, under half of HBM bandwidth. Per CTA the mainloop is one or two
// k-tiles; the time went to the epilogue, where each thread read its residual pairs (4 B, 8 rows per warp
// instruction: 8 half-used sectors) right before storing them, so a CTA had a few KB of loads in flight and
// one CTA fits an SM (128 accumulator registers a thread). Now:
//  - the residual tile (bm x bn) is requested at the start of the CTA, cp.async 16 B per chunk, zero-filled
//    outside M x N, into the staging tile; its latency hides under the mainloop;
//  - each thread applies the epilogue to its accumulator pairs, reading the residual pair from the staging
//    tile and writing the 16-bit result to the same place (same thread, same address: no hazard);
//  - after a barrier the tile is copied out row-contiguously, 16 B a thread, so a warp writes 512 contiguous
//    bytes per instruction.
// Staging rows are bn + 8 elements: row r starts 4r banks further on (bn + 8 = 8 (mod 64) elements), so the
// 8 rows x 4 pairs of a warp's fragment access hit 32 distinct banks.
// The tile lives after the pipeline stages when there is a residual (it is filled during the mainloop), and
// over the pipeline's memory otherwise (written only once every wgmma has retired). Needs spec.vecStores
// (outOffset(m, n) 16-B aligned for n % 8 == 0, n..n+7 contiguous); a residual tile that would not fit
// beside the stages keeps the fragment stores.
import { epilogueStatements, type TcSpec } from './tc_gemm.js';
import { WGMMA_ALIGN_SLACK, wgmmaDynamicSmemMax } from './wgmma_config.js';

export interface StagingPlan {
  /** Byte offset of the staging tile from the 1024-aligned shared base. */
  offset: number;
  /** Dynamic shared memory of the kernel, slack included. */
  sharedBytes: number;
  /** Staging row stride in elements. */
  ld: number;
}

/** Where the staging tile goes, or undefined when the kernel keeps its usual stores: configs without `se`
 * (the tactic), outputs without 16-B rows, or a residual (or persistent kernel's) tile that does not fit
 * beside `pipelineBytes` (the stages' shared memory). */
export function stagingPlan(s: TcSpec, pipelineBytes: number): StagingPlan | undefined {
  if (!s.cfg.se || !s.vecStores) return undefined;
  const c = s.cfg, ld = c.bn + 8, bytes = c.bm * ld * 2;
  // persistent kernels (wgmma_ws.ts) refill the stages with the next tile during the epilogue: never overlay
  if (s.epi.residual || c.persistent) {
    const offset = Math.ceil(pipelineBytes / 1024) * 1024;
    const total = offset + bytes + WGMMA_ALIGN_SLACK;
    return total <= wgmmaDynamicSmemMax(c) ? { offset, sharedBytes: total, ld } : undefined;
  }
  return { offset: 0, sharedBytes: Math.max(pipelineBytes, bytes) + WGMMA_ALIGN_SLACK, ld };
}

export interface StagedScope {
  /** Rows of the tile this thread group owns (the whole tile, or one consumer warpgroup's rows). */
  rowBase: string; rows: number;
  /** Threads of the group and this thread's index in it. */
  threads: number; tid: string;
}

/** Issues the cp.async of the group's residual rows into the staging tile (one commit group); the caller
 * waits for it (cp_async_wait) and syncs the group before the fragment pass. Empty without a residual. */
export function stagedResidualPrefetch(s: TcSpec, p: StagingPlan, g: StagedScope, offsetExpr = String(p.offset)): string {
  if (!s.epi.residual) return '';
  const cpr = s.cfg.bn / 8;
  return `  { // residual tile -> staging tile, under the mainloop (wgmma_epilogue.ts)
    const u32 stg = smemBase + ${offsetExpr};
    for (int i = ${g.tid}; i < ${g.rows * cpr}; i += ${g.threads}) {
      const int r = ${g.rowBase} + i / ${cpr}, cc = i % ${cpr};
      const int m = mBase + r, n = nBase + cc * 8;
      const bool ok = m < ${s.m} && n < ${s.n};
      const idx_t off = ok ? (idx_t)(${s.resOffset ?? s.outOffset}) : (idx_t)0;
      cp_async16(stg + (u32)((r * ${p.ld} + cc * 8) * 2), residual + off, ok);
    }
    cp_async_commit();
  }
`;
}

/** The per-fragment store (for wgmmaFragmentStores: pair t[0..1] at (m, n), (m, n+1)): epilogue applied,
 * the residual pair read from and the result written to the staging tile. */
export function stagedFragmentStore(s: TcSpec, p: StagingPlan): string {
  return `if (n < ${s.n}) {
          tc_half* sp = stg + (m - mBase) * ${p.ld} + (n - nBase);
          float v0 = t[0], v1 = t[1];
          ${s.epi.residual ? 'const u32 rv = *reinterpret_cast<const u32*>(sp);' : ''}
          { ${epilogueStatements(s.epi, 'v0', 'n', 'lo_h2f(rv)')} }
          { ${epilogueStatements(s.epi, 'v1', '(n + 1)', 'hi_h2f(rv)')} }
          *reinterpret_cast<u32*>(sp) = pack_h2(v0, v1);
        }`;
}

/** Declares `stg`, the staging tile as a generic tc_half pointer (tc_smem rounded up to smemBase, + offset). */
export function stagedDecl(p: StagingPlan, offsetExpr = String(p.offset)): string {
  return `  tc_half* stg = reinterpret_cast<tc_half*>(tc_smem + (smemBase - smem_u32(tc_smem)) + ${offsetExpr});\n`;
}

/** Bytes of one staging tile. */
export function stagingTileBytes(s: TcSpec): number { return s.cfg.bm * (s.cfg.bn + 8) * 2; }

/** The row-contiguous copy of the group's rows from the staging tile to y, 16 B a thread. */
export function stagedCopyOut(s: TcSpec, p: StagingPlan, g: StagedScope): string {
  const cpr = s.cfg.bn / 8;
  return `  #pragma unroll 4
  for (int i = ${g.tid}; i < ${g.rows * cpr}; i += ${g.threads}) {
    const int r = ${g.rowBase} + i / ${cpr}, cc = i % ${cpr};
    const int m = mBase + r, n = nBase + cc * 8;
    if (m < ${s.m} && n < ${s.n}) {
      const idx_t off = ${s.outOffset};
      *reinterpret_cast<uint4*>(y + off) = *reinterpret_cast<const uint4*>(stg + r * ${p.ld} + cc * 8);
    }
  }
`;
}
