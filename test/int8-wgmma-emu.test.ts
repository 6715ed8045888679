// The int8 wgmma kernels (src/codegen/wgmma_s8.ts) under the CPU emulator (test/tc_emu.ts), against the exact
// tsrt::QConv / tsrt::QGemm CPU reference, bit for bit. wgmma .s32.s8.s8 is modelled from the PTX ISA,
// independently of the emitter: the descriptor is decoded field by field (start address, stride byte offset,
// base offset, swizzle mode); element (row r, k) of a K-major 128B-swizzled s8 matrix is the byte at
// start + (r/8)*SBO + (r%8)*128 + k with address bits [4,7) XOR bits [7,10); each m64nNk32 op adds 32 products
// per accumulator, laid out as the D fragment (warp w: rows 16w + lane/4 (+8), columns 8j + 2(lane%4) (+1)).
// The math is asynchronous as on the GPU: an op reads shared memory only when a wait_group retires its group,
// so a pipeline that overwrites a stage still being read fails here. The kernel's shared window starts 48
// bytes in, so its 1024-B alignment code is exercised. NVRTC 11.8 cannot compile sm_90a: the PTX itself is
// checked on the GPU (scripts/test-gpu-int8.mjs). Skipped without g++.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { compileCuda } from '../src/runtime/nvrtc.js';
import type { TileConfig } from '../src/codegen/tc_gemm.js';
import {
  emitConvInt8, emitGemmInt8, int8ConfigProblems, int8StagingRowBytes, int8WgmmaConfigSpace, int8WgmmaConvSpace,
} from '../src/codegen/tc_int8.js';
import { WGMMA_ASM_HELPERS } from '../src/codegen/wgmma.js';
import { WGMMA_S8_KEEP } from '../src/codegen/wgmma_s8.js';
import { wgmmaInstr } from '../src/codegen/wgmma.js';
import { conv, diffCount, emulate, hasGxx, setup, type KCase } from './int8_cases.js';

const SHIFT = 48;
const WGMMA_S8_EMU = String.raw`typedef unsigned long long u64;
// ---- wgmma .s32.s8.s8 emulation (see int8-wgmma-emu.test.ts) ----
struct WgOp8 { u64 da, db; int* d; int n; };
static std::vector<WgOp8> g_wg_pending[1024];
static std::vector<std::vector<WgOp8>> g_wg_groups[1024];
static inline int wg_s8(u64 desc, int r, int k) {
  const u32 start = (u32)(desc & 0x3FFF) << 4, sbo = (u32)((desc >> 32) & 0x3FFF) << 4;
  if (((desc >> 49) & 7) != 0) emu_fail("descriptor base offset is not 0", (long long)desc);
  if ((desc >> 62) != 1) emu_fail("descriptor swizzle mode is not 128B", (long long)(desc >> 62));
  u32 a = start + (u32)(r / 8) * sbo + (u32)(r % 8) * 128 + (u32)k;
  a ^= ((a >> 7) & 7) << 4;
  if (a + 1 > g_smem_bytes) emu_fail("wgmma operand outside shared memory", a);
  return (int)(signed char)tc_smem[a];
}
static void wg_exec8(const WgOp8& op) {
  const int l = threadIdx.x & 31, w = (threadIdx.x >> 5) & 3;
  for (int j = 0; j < op.n / 8; ++j) for (int e = 0; e < 4; ++e) {
    const int row = 16 * w + l / 4 + (e >= 2 ? 8 : 0), col = 8 * j + 2 * (l % 4) + (e & 1);
    long long s = op.d[4 * j + e];
    for (int k = 0; k < 32; ++k) s += wg_s8(op.da, row, k) * wg_s8(op.db, col, k);
    if (s != (long long)(int)s) emu_fail("s32 accumulator overflow", s);
    op.d[4 * j + e] = (int)s;
  }
}
inline void wg_fence() {}
inline void fence_proxy_async() {}
inline void wg_keep_i(int&) {}
inline void wg_commit() { g_wg_groups[g_cur].push_back(g_wg_pending[g_cur]); g_wg_pending[g_cur].clear(); }
template <int N> inline void wg_wait() {
  if (!g_wg_pending[g_cur].empty()) emu_fail("wgmma issued but not committed before wait_group", N);
  while ((int)g_wg_groups[g_cur].size() > N) {
    for (auto& op : g_wg_groups[g_cur].front()) wg_exec8(op);
    g_wg_groups[g_cur].erase(g_wg_groups[g_cur].begin());
  }
}
`;

const wg = (bm: number, bn: number, warpsM: number, stages: number): TileConfig => ({ bm, bn, bk: 128, warpsM, warpsN: 1, stages, wgmma: true });
type WCase = KCase & { early?: boolean };
const CASES: WCase[] = [
  // 2 warpgroups x 1 m64; K = 9*32 = 288 (2 k-tiles + a 32 tail); M = 72 (tail); staged int8 epilogue with an
  // int8 residual; 3 stages (one tile of cp.async ahead)
  { id: 'wg_conv3x3_q_resq_relu', kind: 'conv', conv: conv(2, 6, 32, 64, 3, 1, 1), act: 'Relu', cfg: wg(128, 64, 8, 3),
    epi: { out: 'int8', outScale: 0.04, bias: true, residual: true, residualType: 'int8', residualScale: 0.03, act: 'relu' } },
  // 1 warpgroup x 2 m64, n128; fp16 out and residual after the activation (staged); 4 stages, more k-tiles than
  // stages; cp.async landing at issue
  { id: 'wg_gemm_h_resh_after', kind: 'gemm', gemm: { m: 100, n: 128, k: 640 }, act: 'Clip', cfg: wg(128, 128, 4, 4), early: true,
    epi: { out: 'float16', bias: true, residual: true, residualType: 'float16', residualAfterAct: true, act: 'clip', actArgs: [-1, 1.5] } },
  // 1x1 stride 2, int8 out with N = 40 (not a multiple of 16: direct stores, N tail inside the n64 tile), 5 stages
  { id: 'wg_conv1x1s2_q_directstores', kind: 'conv', conv: conv(3, 9, 48, 40, 1, 2, 0), cfg: wg(64, 64, 4, 5), epi: { out: 'int8', outScale: 0.3, bias: true } },
  // 2 warpgroups x 2 m64 (bm 256), fp32 out without bias
  { id: 'wg_gemm_bm256_f32', kind: 'gemm', gemm: { m: 300, n: 64, k: 384 }, cfg: wg(256, 64, 8, 3), epi: { out: 'float32' } },
  // the qlinear epilogue (QLinearConv / QLinearMatMul: int32 bias, float64 requantize), staged and direct stores
  { id: 'wg_conv3x3_qlinear_bias', kind: 'conv', conv: conv(2, 6, 32, 64, 3, 1, 1), cfg: wg(128, 64, 8, 3), epi: { out: 'int8', outScale: 0.04, bias: true, qlinear: true } },
  { id: 'wg_gemm_qlinear_n40', kind: 'gemm', gemm: { m: 70, n: 40, k: 256 }, cfg: wg(64, 64, 4, 3), epi: { out: 'int8', outScale: 0.02, qlinear: true } },
];

const emitK = (c: KCase) => (c.kind === 'conv' ? emitConvInt8(c.conv!, c.epi, c.cfg) : emitGemmInt8(c.gemm!, c.epi, c.cfg));

describe('int8 wgmma configs', () => {
  it('are bk 128, bn 64/128, 1-2 warpgroups, and pass int8ConfigProblems; others are refused with the reason', () => {
    const space = int8WgmmaConvSpace(conv(256, 28, 128, 128, 3, 1, 1));
    expect(space.length).toBeGreaterThan(10);
    for (const c of space) {
      expect(c.wgmma && c.bk === 128 && (c.bn === 64 || c.bn === 128) && c.warpsN === 1).toBe(true);
      expect(int8ConfigProblems(c)).toEqual([]);
    }
    expect(int8ConfigProblems(wg(128, 256, 8, 3))).toContain('int8 wgmma: bn must be 64 or 128');
    expect(int8ConfigProblems({ ...wg(128, 128, 8, 3), bk: 64 }).join()).toMatch(/bk must be 128/);
    expect(int8WgmmaConfigSpace({ m: 16, n: 64, k: 256, batch: 1 }).every((c) => c.bm <= 128)).toBe(true);
    const k = emitK(CASES[0]);
    expect(k.source).toContain('wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8');
    expect(k.sharedBytes).toBe(3 * (128 + 64) * 128 + 1024);
    expect(k.block[0]).toBe(256);
    expect(k.source).toContain('tc_v16'); // staged epilogue (N = 64)
    expect(emitK(CASES[2]).source).not.toContain('tc_v16');
    expect(int8StagingRowBytes(wg(256, 128, 8, 3), 128, 'int8')).toBe(144);
    expect(() => emitConvInt8(CASES[0].conv!, CASES[0].epi, { ...wg(128, 64, 8, 3), splitK: 2 })).toThrow(/split-K/);
  });
});

// NVRTC 11.8 has no sm_90a: with the wgmma / proxy-fence PTX stubbed out it still checks the CUDA C++ around them
describe.skipIf(!existsSync('/usr/lib/x86_64-linux-gnu/libnvrtc.so.11.2') && !process.env.TSRT_NVRTC)('int8 wgmma kernels: NVRTC sm_90 compile of the C++ (PTX stubbed)', () => {
  const p = conv(32, 28, 128, 128, 3, 1, 1);
  const epi = CASES[0].epi;
  it.each(int8WgmmaConvSpace(p).filter((c) => c.stages === 4).map((c) => [`${c.bm}x${c.bn}_w${c.warpsM}`, c] as const))('%s', (_id, cfg) => {
    const k = emitConvInt8(p, epi, cfg);
    const src = k.source.replace(/asm volatile\("\{\\n\.reg \.pred p;[\s\S]*?: "memory"\);/, '(void)d; (void)da; (void)db;')
      .replace(/asm volatile\("(wgmma|fence\.proxy)[\s\S]*?\);/g, ';');
    expect(src).not.toMatch(/asm volatile\("[^"]*(wgmma|fence\.proxy)/);
    const r = compileCuda(src, { name: k.name, arch: 'sm_90' });
    expect(r.log.split('\n').filter((l) => /warning|error/i.test(l))).toEqual([]);
  }, 120_000);
});

describe.skipIf(!hasGxx)('int8 wgmma kernels under the CPU emulator equal the CPU reference', () => {
  it.each(CASES.map((c) => [c.id, c] as const))('%s', (_id, c) => {
    const k = emitK(c);
    const { ref, bufs, outBytes } = setup(c);
    const out = emulate(k, c.id, bufs, outBytes, {
      source: (src) => {
        const s = src.replace('typedef unsigned long long u64;\n', '').replace(WGMMA_ASM_HELPERS, '').replace(WGMMA_S8_KEEP, '')
          .replace(wgmmaInstr(c.cfg!.bn, 's8'), `inline void wg_mma_s8(int* d, u64 da, u64 db) { g_wg_pending[g_cur].push_back(WgOp8{da, db, d, ${c.cfg!.bn}}); }\n`)
          .replace('extern __shared__ __align__(1024) unsigned char tc_smem[];', '')
          .replace('smem_u32(tc_smem)', `smem_u32(tc_smem + ${SHIFT})`)
          .replace('#include "../emu_prelude.h"\n', `#include "../emu_prelude.h"\n${WGMMA_S8_EMU}`);
        expect(s).not.toMatch(/asm/);
        return s;
      },
      smemExtra: SHIFT, flags: c.early ? ['-DEMU_EARLY'] : [],
    });
    const diff = diffCount(c.epi, out, ref, outBytes);
    expect(diff, `${diff} of ${ref.dims.reduce((a, b) => a * b, 1)} elements differ`).toBe(0);
  }, 300_000);
});
