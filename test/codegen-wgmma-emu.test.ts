// The wgmma kernels (src/codegen/wgmma.ts) under the CPU emulator of test/tc_emu.ts, against a float64 reference.
// wgmma is modelled from the PTX ISA, independently of the emitter: the descriptor is decoded field by field
// (start address, stride byte offset, base offset, swizzle mode), the operand element (row r, k) of a K-major
// 128B-swizzled matrix is read at address a = start + (r/8)*SBO + (r%8)*128 + 2k with bits [4,7) XOR bits [7,10),
// and each thread's accumulators follow the m64nNk16 D fragment (warp w: rows 16w + lane/4 (+8), columns
// 8j + 2(lane%4) (+1)). The math runs asynchronously as on the GPU: a wgmma reads shared memory only when a
// wait_group retires its group, so a pipeline that overwrites a stage still being read computes wrong results
// here. The kernel's shared base is deliberately not 1024-aligned, so the alignment code is exercised.
// Skipped without g++.
import { describe, expect, it } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import type { ConvProblem } from '../src/codegen/tc_conv.js';
import { tcHelpers, type Epilogue, type GemmProblem, type TileConfig } from '../src/codegen/tc_gemm.js';
import { bf16BitsToF32, f32ToBf16Bits } from '../src/ir/tensor.js';
import { emitConvTc, emitGemmTc, WGMMA_ASM_HELPERS, wgmmaInstr } from '../src/codegen/wgmma.js';
import { WGMMA_WS_ASM_HELPERS } from '../src/codegen/wgmma_ws.js';
import { EMU_PRELUDE, WS_EMU } from './tc_emu.js';

const WGMMA_EMU = String.raw`
// ---- wgmma emulation (see codegen-wgmma-emu.test.ts) ----
struct WgOp { u64 da, db; float* d; int n; };
static std::vector<WgOp> g_wg_pending[1024];
static std::vector<std::vector<WgOp>> g_wg_groups[1024];
static inline uint16_t wg_elem(u64 desc, int r, int k) {
  const u32 start = (u32)(desc & 0x3FFF) << 4, sbo = (u32)((desc >> 32) & 0x3FFF) << 4;
  if (((desc >> 49) & 7) != 0) emu_fail("descriptor base offset is not 0", (long long)desc);
  if ((desc >> 62) != 1) emu_fail("descriptor swizzle mode is not 128B", (long long)(desc >> 62));
  u32 a = start + (u32)(r / 8) * sbo + (u32)(r % 8) * 128 + 2 * k;
  a ^= ((a >> 7) & 7) << 4;
  if (a + 2 > g_smem_bytes) emu_fail("wgmma operand outside shared memory", a);
  uint16_t v; memcpy(&v, tc_smem + a, 2); return v;
}
static void wg_exec(const WgOp& op) {
  const int l = threadIdx.x & 31, w = (threadIdx.x >> 5) & 3;
  for (int j = 0; j < op.n / 8; ++j) for (int e = 0; e < 4; ++e) {
    const int row = 16 * w + l / 4 + (e >= 2 ? 8 : 0), col = 8 * j + 2 * (l % 4) + (e & 1);
    double s = op.d[4 * j + e];
    for (int k = 0; k < 16; ++k) s += (double)h2f(wg_elem(op.da, row, k)) * h2f(wg_elem(op.db, col, k));
    op.d[4 * j + e] = (float)s;
  }
}
inline void wg_fence() {}
inline void fence_proxy_async() {}
inline void wg_keep(float&) {}
inline void wg_commit() { g_wg_groups[g_cur].push_back(g_wg_pending[g_cur]); g_wg_pending[g_cur].clear(); }
template <int N> inline void wg_wait() {
  if (!g_wg_pending[g_cur].empty()) emu_fail("wgmma issued but not committed before wait_group", N);
  while ((int)g_wg_groups[g_cur].size() > N) {
    for (auto& op : g_wg_groups[g_cur].front()) wg_exec(op);
    g_wg_groups[g_cur].erase(g_wg_groups[g_cur].begin());
  }
}
${WS_EMU}`;

const hasGxx = (() => { try { execFileSync('g++', ['--version'], { stdio: 'pipe' }); return true; } catch { return false; } })();
if (!hasGxx) console.warn('codegen-wgmma-emu: skipped (no g++)');
const EMU_DIR = join(new URL('..', import.meta.url).pathname, '.cache', 'wgmma-emu');
const SHIFT = 48; // kernel's shared window starts 48 bytes in: the kernel must align its base itself

let seed = 777;
const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return (seed / 2 ** 32) * 2 - 1; };
const dv2 = new DataView(new ArrayBuffer(2));
const f16 = (v: number) => { setFloat16(dv2, 0, v, true); return getFloat16(dv2, 0, true); };
/** n random 16-bit floats (fp16, or bf16 bits for the bf16 kernels) and their exact values. */
function halfOf(n: number, scale = 1, bf16 = false) {
  const buf = Buffer.alloc(Math.ceil((n * 2) / 16) * 16 + 16);
  const vals = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (bf16) { const b = f32ToBf16Bits(rnd() * scale); vals[i] = bf16BitsToF32(b); buf.writeUInt16LE(b, i * 2); continue; }
    vals[i] = f16(rnd() * scale); setFloat16(new DataView(buf.buffer, buf.byteOffset), i * 2, vals[i], true);
  }
  return { buf, vals };
}
/** The prelude's fp16 conversions swapped for bf16 ones (widening; round to nearest even, NaN kept quiet), so the
 * emulated wgmma and epilogue see the bf16 kernel's numbers. */
const BF16_PRELUDE = (() => {
  const h2f = 'inline float h2f(tc_half h) { _Float16 f; memcpy(&f, &h, 2); return (float)f; }';
  const f2h = 'inline tc_half f2h(float f) { _Float16 h = (_Float16)f; tc_half r; memcpy(&r, &h, 2); return r; }';
  if (!EMU_PRELUDE.includes(h2f) || !EMU_PRELUDE.includes(f2h)) throw new Error('tc_emu.ts conversions changed: update BF16_PRELUDE');
  return EMU_PRELUDE.replace(h2f, 'inline float h2f(tc_half h) { u32 u = (u32)h << 16; float f; memcpy(&f, &u, 4); return f; }')
    .replace(f2h, 'inline tc_half f2h(float f) { u32 u; memcpy(&u, &f, 4); if ((u & 0x7fffffffu) > 0x7f800000u) return (tc_half)((u >> 16) | 0x40); u += 0x7fffu + ((u >> 16) & 1u); return (tc_half)(u >> 16); }');
})();
function f32(n: number) {
  const buf = Buffer.alloc(Math.ceil((n * 4) / 16) * 16 + 16);
  const vals = new Float64Array(n);
  for (let i = 0; i < n; i++) { vals[i] = Math.fround(rnd() * 0.5); buf.writeFloatLE(vals[i], i * 4); }
  return { buf, vals };
}
const ACT: Record<string, (v: number) => number> = {
  none: (v) => v, relu: (v) => Math.max(v, 0), silu: (v) => v / (1 + Math.exp(-v)),
  gelu_tanh: (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
  hardswish: (v) => v * Math.min(Math.max(v / 6 + 0.5, 0), 1),
};
function epi(acc: number, e: Epilogue, bias: number, res: number): number {
  let v = acc * (e.alpha ?? 1);
  if (e.bias) v += bias;
  if (e.residual && !e.residualAfterAct) v += res;
  v = ACT[e.act ?? 'none'](v);
  if (e.residual && e.residualAfterAct) v += res;
  return v;
}

/** `early`: cp.async lands at issue (EMU_EARLY) instead of at wait_group. Both are legal timings: late landing
 * catches reads of a stage before its data arrived, early landing (with the wgmma reads still deferred to
 * wait_group) catches loads into a stage that an in-flight wgmma still reads. */
/** `grid`: launch this many CTAs in x instead of the kernel's grid (persistent kernels walk the tiles with any grid). */
interface Case { id: string; op: 'conv' | 'gemm'; p: ConvProblem | GemmProblem; e: Epilogue; cfg: TileConfig; early?: boolean; grid?: number }
const isBf16 = (c: Case) => c.p.dtype === 'bfloat16';
const wg = (bm: number, bn: number, warpsM: number, stages: number, ws = false, se = false): TileConfig => ({ bm, bn, bk: 64, warpsM, warpsN: 1, stages, wgmma: true, ...(ws ? { ws } : {}), ...(se ? { se } : {}) });
const conv = (n: number, h: number, c: number, k: number, r: number, stride: number): ConvProblem => {
  const pad = (r - 1) >> 1, p = Math.floor((h + 2 * pad - r) / stride) + 1;
  return { n, h, w: h, c, k, r, s: r, strideH: stride, strideW: stride, padH: pad, padW: pad, dilH: 1, dilW: 1, p, q: p };
};
const CASES: Case[] = [
  // 2 warpgroups x 1 m64, K tail (264 = 4 k-tiles + 8), M and N tails, 3 stages (1 tile of cp.async ahead)
  { id: 'gemm_w2_tails_s3', op: 'gemm', p: { m: 200, n: 136, k: 264 }, e: { bias: true, act: 'gelu_tanh' }, cfg: wg(128, 64, 8, 3) },
  // 1 warpgroup x 2 m64, odd N (scalar stores), batch 2, residual, 5 stages, more k-tiles than stages
  { id: 'gemm_w1x2_oddn_b2_s5', op: 'gemm', p: { m: 150, n: 45, k: 512, batch: [2] }, e: { bias: true, residual: true, alpha: 0.5 }, cfg: wg(128, 128, 4, 5), early: true },
  // n256 tile, 1 warpgroup
  { id: 'gemm_n256_s4', op: 'gemm', p: { m: 64, n: 256, k: 448 }, e: { residual: true, act: 'relu' }, cfg: wg(64, 256, 4, 4) },
  // implicit-GEMM conv: 3x3 padded (zero-filled chunks), K = 9*24 = 216 (tail), 2 warpgroups x 2 m64
  { id: 'conv_3x3_w2x2_s4', op: 'conv', p: conv(2, 9, 24, 40, 3, 1), e: { bias: true, residual: true, act: 'silu' }, cfg: wg(256, 64, 8, 4), early: true },
  // 1x1 stride 2, residual after the activation
  { id: 'conv_1x1s2_w2_s3', op: 'conv', p: conv(3, 15, 40, 72, 1, 2), e: { bias: true, residual: true, residualAfterAct: true, act: 'hardswish' }, cfg: wg(128, 128, 8, 3) },
  // staged epilogue (wgmma_epilogue.ts): one k-tile (shared memory for one stage), residual prefetched under the
  // mainloop, M tail; and a batched GEMM whose output offset depends on the batch index
  { id: 'staged_conv_1x1_k64_1ktile', op: 'conv', p: conv(2, 11, 64, 136, 1, 1), e: { bias: true, residual: true, act: 'relu' }, cfg: wg(128, 128, 4, 3, false, true) },
  { id: 'staged_gemm_b2_plain', op: 'gemm', p: { m: 130, n: 72, k: 200, batch: [2] }, e: { bias: true, act: 'relu' }, cfg: wg(128, 64, 8, 3, false, true) },
  { id: 'staged_ws_gemm_w2_s3', op: 'gemm', p: { m: 200, n: 136, k: 520 }, e: { bias: true, residual: true, act: 'gelu_tanh' }, cfg: wg(128, 64, 8, 3, true, true), early: true },
  // n192 tiles (wave quantization): plain with N tail, ws staged with residual
  { id: 'n192_gemm_w2_s4', op: 'gemm', p: { m: 136, n: 200, k: 192 }, e: { bias: true, act: 'silu' }, cfg: wg(128, 192, 8, 4) },
  { id: 'n192_ws_gemm_se_s3', op: 'gemm', p: { m: 130, n: 384, k: 256 }, e: { bias: true, residual: true }, cfg: wg(128, 192, 8, 3, true, true), early: true },
  // persistent ws kernel: 2 CTAs walk 5 tiles (stages and barrier parities continue across tiles), with a
  // residual prefetched per tile, M tail; a 3x3 conv (per-tile im2col setup) and a plain epilogue
  { id: 'persistent_gemm_res_tail', op: 'gemm', p: { m: 300, n: 128, k: 320 }, e: { bias: true, residual: true, act: 'relu' }, cfg: { ...wg(64, 64, 4, 3, true, true), persistent: true }, grid: 2 },
  // one k-tile per tile: the producer still cycles through all S stages across tiles (shared memory for S, not 1)
  { id: 'persistent_conv1x1_k64_1ktile', op: 'conv', p: conv(2, 12, 64, 64, 1, 1), e: { bias: true, act: 'relu' }, cfg: { ...wg(128, 64, 8, 3, true, true), persistent: true }, grid: 1 },
  { id: 'persistent_conv1x1_res_dbl_early', op: 'conv', p: conv(2, 12, 64, 136, 1, 1), e: { bias: true, residual: true, act: 'relu' }, cfg: { ...wg(128, 64, 8, 3, true, true), persistent: true }, grid: 3, early: true },
  { id: 'persistent_conv3x3_w2', op: 'conv', p: conv(2, 9, 24, 64, 3, 1), e: { bias: true, act: 'silu' }, cfg: { ...wg(128, 64, 8, 3, true, true), persistent: true }, grid: 1, early: true },
  { id: 'staged_ws_conv_1x1_n256_plain', op: 'conv', p: conv(1, 9, 72, 264, 1, 1), e: { bias: true, act: 'relu' }, cfg: wg(64, 256, 4, 3, true, true) },
  // warp-specialized (wgmma_ws.ts): producer warpgroup + consumers on mbarriers. More k-tiles than stages so
  // every barrier goes through several phases (parity wrap); late and early cp.async landing; staged
  // 16-B epilogue (N % 8 == 0) with residual, and the fragment-store fallback (odd N)
  { id: 'ws_gemm_w2_staged_s3', op: 'gemm', p: { m: 200, n: 136, k: 520 }, e: { bias: true, residual: true, act: 'gelu_tanh' }, cfg: wg(128, 64, 8, 3, true) },
  { id: 'ws_gemm_w2_staged_s3_early', op: 'gemm', p: { m: 200, n: 136, k: 520 }, e: { bias: true, residual: true, act: 'gelu_tanh' }, cfg: wg(128, 64, 8, 3, true), early: true },
  { id: 'ws_gemm_w1x2_oddn_b2_s4', op: 'gemm', p: { m: 150, n: 45, k: 600, batch: [2] }, e: { bias: true, residual: true, alpha: 0.5 }, cfg: wg(128, 128, 4, 4, true), early: true },
  { id: 'ws_conv_3x3_w2x2_s4', op: 'conv', p: conv(2, 9, 48, 40, 3, 1), e: { bias: true, residual: true, act: 'silu' }, cfg: wg(256, 64, 8, 4, true) },
  { id: 'ws_conv_3x3_w2x2_s4_early', op: 'conv', p: conv(2, 9, 48, 40, 3, 1), e: { bias: true, residual: true, act: 'silu' }, cfg: wg(256, 64, 8, 4, true), early: true },
  { id: 'ws_conv_1x1_n256_s3', op: 'conv', p: conv(1, 9, 72, 264, 1, 1), e: { bias: true, residual: true, residualAfterAct: true, act: 'relu' }, cfg: wg(64, 256, 4, 3, true) },
  // bf16 (wgmma .bf16.bf16, cvt.rn.bf16): the all-threads kernel with tails, and the ws conv with the staged epilogue
  { id: 'bf16_gemm_w2_tails_s3', op: 'gemm', p: { m: 200, n: 136, k: 264, dtype: 'bfloat16' }, e: { bias: true, act: 'gelu_tanh' }, cfg: wg(128, 64, 8, 3) },
  { id: 'bf16_ws_conv_3x3_w2x2_s4', op: 'conv', p: { ...conv(2, 9, 48, 40, 3, 1), dtype: 'bfloat16' }, e: { bias: true, residual: true, act: 'silu' }, cfg: wg(256, 64, 8, 4, true), early: true },
  // strided output (a channel slice of an NHWC concat, concat-in-place): rows ldY apart from yOffset, the residual
  // dense; the gaps between rows must stay unwritten. 16-B aligned slice: the staged epilogue (residual prefetched
  // at its own offsets) and the ws vector stores; odd offset: the plain kernel's scalar stores
  { id: 'strided_staged_conv_1x1_res', op: 'conv', p: { ...conv(2, 11, 64, 136, 1, 1), ldY: 208, yOffset: 64 }, e: { bias: true, residual: true, act: 'relu' }, cfg: wg(128, 128, 4, 3, false, true) },
  { id: 'strided_ws_conv_3x3_res', op: 'conv', p: { ...conv(2, 9, 48, 40, 3, 1), ldY: 72, yOffset: 24 }, e: { bias: true, residual: true, act: 'silu' }, cfg: wg(256, 64, 8, 4, true), early: true },
  { id: 'strided_conv_3x3_odd_offset_res', op: 'conv', p: { ...conv(2, 9, 24, 40, 3, 1), ldY: 47, yOffset: 3 }, e: { bias: true, residual: true, residualAfterAct: true, act: 'relu' }, cfg: wg(256, 64, 8, 4) },
];

function reference(c: Case) {
  const bufs: Record<string, { buf: Buffer; vals: Float64Array }> = {};
  const half = (n: number, scale = 1) => halfOf(n, scale, isBf16(c));
  let ref: Float64Array;
  if (c.op === 'conv') {
    const p = c.p as ConvProblem, K = p.r * p.s * p.c;
    bufs.x = half(p.n * p.h * p.w * p.c); bufs.w = half(p.k * K, 2 / Math.sqrt(K)); bufs.bias = f32(p.k);
    const yN = p.n * p.p * p.q * p.k, ld = p.ldY ?? p.k, yo = p.yOffset ?? 0;
    bufs.residual = half(yN);
    // NaN: an element between strided output rows, which the kernel must leave alone
    ref = new Float64Array(p.n * p.p * p.q * ld).fill(NaN);
    for (let b = 0; b < p.n; b++) for (let oh = 0; oh < p.p; oh++) for (let ow = 0; ow < p.q; ow++) for (let ko = 0; ko < p.k; ko++) {
      let s = 0;
      for (let ri = 0; ri < p.r; ri++) for (let si = 0; si < p.s; si++) {
        const ih = oh * p.strideH - p.padH + ri, iw = ow * p.strideW - p.padW + si;
        if (ih < 0 || ih >= p.h || iw < 0 || iw >= p.w) continue;
        for (let ci = 0; ci < p.c; ci++) s += bufs.x.vals[((b * p.h + ih) * p.w + iw) * p.c + ci] * bufs.w.vals[((ko * p.r + ri) * p.s + si) * p.c + ci];
      }
      const o = ((b * p.p + oh) * p.q + ow) * p.k + ko;
      ref[((b * p.p + oh) * p.q + ow) * ld + yo + ko] = epi(s, c.e, bufs.bias.vals[ko], bufs.residual.vals[o]);
    }
  } else {
    const p = c.p as GemmProblem, nb = (p.batch ?? []).reduce((a, b) => a * b, 1);
    bufs.a = half(nb * p.m * p.k); bufs.b = half(nb * p.n * p.k, 2 / Math.sqrt(p.k)); bufs.bias = f32(p.n);
    bufs.residual = half(nb * p.m * p.n);
    ref = new Float64Array(nb * p.m * p.n);
    for (let b = 0; b < nb; b++) for (let m = 0; m < p.m; m++) for (let n = 0; n < p.n; n++) {
      let s = 0;
      for (let k = 0; k < p.k; k++) s += bufs.a.vals[(b * p.m + m) * p.k + k] * bufs.b.vals[(b * p.n + n) * p.k + k];
      const o = (b * p.m + m) * p.n + n;
      ref[o] = epi(s, c.e, bufs.bias.vals[n], bufs.residual.vals[o]);
    }
  }
  return { bufs, ref };
}

async function emulate(c: Case): Promise<{ rel: number; unwritten: number; stray: number }> {
  const k = c.op === 'conv' ? emitConvTc(c.p as ConvProblem, c.e, c.cfg) : emitGemmTc(c.p as GemmProblem, c.e, c.cfg);
  const { bufs, ref } = reference(c);
  const dir = join(EMU_DIR, c.id);
  mkdirSync(dir, { recursive: true });
  const outName = c.op === 'conv' ? 'y' : 'c', outN = ref.length;
  const lines: string[] = [];
  for (const [nm, b] of Object.entries(bufs)) {
    writeFileSync(join(dir, `${nm}.bin`), b.buf);
    lines.push(`  unsigned char* ${nm}_p = load_file("${nm}.bin", ${b.buf.length});`);
  }
  lines.push(`  unsigned char* out_p = (unsigned char*)aligned_alloc(256, ${Math.ceil((outN * 2) / 256) * 256 + 256}); g_bufs.push_back(Buf{out_p, ${outN * 2}});`);
  const args = k.params.map((q) => `(${q.name === 'bias' ? 'float' : 'tc_half'}*)(${q.name === outName ? 'out' : q.name}_p)`);
  const elem = isBf16(c) ? 'bf16' : 'f16', prelude = isBf16(c) ? BF16_PRELUDE : EMU_PRELUDE;
  expect(k.source).toContain(wgmmaInstr(c.cfg.bn, elem));
  const kernelSrc = k.source.replace(tcHelpers(elem), '').replace(WGMMA_ASM_HELPERS, '').replace(WGMMA_WS_ASM_HELPERS, '').replace(wgmmaInstr(c.cfg.bn, elem), '')
    .replace('extern __shared__ __align__(1024) unsigned char tc_smem[];', '')
    .replace('smem_u32(tc_smem)', `smem_u32(tc_smem + ${SHIFT})`);
  expect(kernelSrc).not.toMatch(/asm/);
  const src = `#include "emu_prelude.h"\n${WGMMA_EMU}\ninline void wg_mma(float* d, u64 da, u64 db) { g_wg_pending[g_cur].push_back(WgOp{da, db, d, ${c.cfg.bn}}); }\n`
    + kernelSrc.replace(/typedef unsigned long long u64;\n/, '')
    + `\nint main() {\n${lines.join('\n')}\n  memset(out_p, 0xff, ${outN * 2});\n`
    + `  run_grid(${c.grid ?? k.grid[0]}, ${k.grid[1]}, ${k.block[0]}, ${k.sharedBytes + SHIFT}, [&] { ${k.name}(${args.join(', ')}); });\n`
    + `  save_file("out.bin", out_p, ${outN * 2});\n  return 0;\n}\n`;
  writeFileSync(join(dir, 'emu_prelude.h'), `typedef unsigned long long u64;\n${prelude}`);
  writeFileSync(join(dir, 'k.cpp'), src);
  const exe = join(dir, `k_${createHash('sha1').update(src).update(prelude).update(String(!!c.early)).digest('hex').slice(0, 10)}`);
  const sh = (cmd: string, a: string[]) => new Promise<void>((res, rej) => execFile(cmd, a, { cwd: dir, maxBuffer: 16 << 20 }, (err, _o, e) => (err ? rej(new Error(`${cmd}: ${e}`)) : res())));
  if (!existsSync(exe)) await sh('g++', ['-std=c++20', '-O1', '-w', ...(c.early ? ['-DEMU_EARLY'] : []), '-o', exe, 'k.cpp']);
  await sh(exe, []);
  const ob = readFileSync(join(dir, 'out.bin'));
  const dv = new DataView(ob.buffer, ob.byteOffset, ob.length);
  let maxErr = 0, maxRef = 0, unwritten = 0, stray = 0;
  for (let i = 0; i < outN; i++) {
    const v = isBf16(c) ? bf16BitsToF32(dv.getUint16(i * 2, true)) : getFloat16(dv, i * 2, true);
    if (Number.isNaN(ref[i])) { if (!Number.isNaN(v)) stray++; continue; }
    if (Number.isNaN(v)) { unwritten++; continue; }
    maxErr = Math.max(maxErr, Math.abs(v - ref[i]));
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
  }
  return { rel: maxErr / (maxRef || 1), unwritten, stray };
}

describe.skipIf(!hasGxx)('wgmma kernels under the CPU emulator', () => {
  // started together so the g++ compiles overlap; each test awaits its own
  const runs = new Map<string, Promise<{ rel: number; unwritten: number; stray: number }>>();
  const start = (c: Case) => { if (!runs.has(c.id)) runs.set(c.id, emulate(c)); return runs.get(c.id)!; };
  it.each(CASES.map((c) => [c.id, c] as const))('%s matches the float64 reference', async (_id, c) => {
    for (const x of CASES) void start(x).catch(() => undefined);
    const r = await start(c);
    expect(r.unwritten).toBe(0);
    expect(r.stray).toBe(0);
    // the output rounding alone: half an ulp, 2^-12 of fp16 and 2^-9 of bf16
    expect(r.rel).toBeLessThan(isBf16(c) ? 1e-2 : 4e-3);
  }, 300_000);
});
