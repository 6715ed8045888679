// Tensor-core and generic conv/GEMM emitters (src/codegen/tc_conv.ts, tc_gemm.ts):
//  - API contracts: preconditions, configs, names, parameter order, launch geometry;
//  - every case of scripts/emit-tc-cases.mjs (ResNet-50, BERT, attention, odd shapes, activations, tile
//    configs) compiles with NVRTC for sm_90 without warnings or register spills (skipped without NVRTC);
//  - small cases run under a CPU emulator of the generated CUDA (one fiber per CUDA thread; ldmatrix,
//    mma.sync and cp.async modelled from the PTX spec) and match a float64 reference (skipped without g++).
// The GPU itself is exercised by scripts/gpu-tc-check.py.
import { describe, expect, it } from 'vitest';
import koffi from 'koffi';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import { TsrtError } from '../src/errors.js';
import {
  chooseConvConfig, convConfigSpace, convTcPreconditions, emitConv, emitConvGeneric, type ConvProblem,
} from '../src/codegen/tc_conv.js';
import {
  chooseGemmConfig, configProblems, emitGemm, emitGemmGeneric, gemmConfigSpace, gemmTcPreconditions, MAX_SMEM,
  smemBytes, TC_HELPERS, type Epilogue, type TcKernelSource,
} from '../src/codegen/tc_gemm.js';
import { buildCases, emitCase } from '../scripts/emit-tc-cases.mjs';
import { EMU_PRELUDE } from './tc_emu.js';

interface Case {
  id: string; op: 'conv' | 'gemm'; impl: 'tc' | 'generic'; problem: any; epi: Epilogue; cfg?: any; opts?: any;
  dtype?: string; cReal?: number; offA?: number; offB?: number; offC?: number;
}
const API = { emitConv, emitConvGeneric, emitGemm, emitGemmGeneric };
const CASES: Case[] = buildCases();
// strided outputs (a channel slice of a concat output, concat-in-place): rows ldY apart from yOffset, the residual
// dense. mma.sync with 4-byte pair stores (even, not 16-B aligned offset) and scalar stores (odd offset); the SIMT
// kernel in NCHW (rows are images) and NHWC
{
  const cv = (n: number, h: number, c: number, k: number, r: number): ConvProblem => ({ n, h, w: h, c, k, r, s: r, strideH: 1, strideW: 1, padH: r >> 1, padW: r >> 1, dilH: 1, dilW: 1, p: h, q: h });
  CASES.push(
    { id: 'strided_conv_3x3_pairs_res', op: 'conv', impl: 'tc', problem: { ...cv(2, 9, 24, 40, 3), ldY: 50, yOffset: 6 }, epi: { bias: true, residual: true, act: 'relu' }, cfg: { bm: 64, bn: 64, bk: 32, warpsM: 2, warpsN: 2, stages: 3 } },
    { id: 'strided_conv_1x1_odd_res_splitk', op: 'conv', impl: 'tc', problem: { ...cv(2, 7, 64, 24, 1), ldY: 37, yOffset: 13 }, epi: { bias: true, residual: true, residualAfterAct: true, act: 'silu' }, cfg: { bm: 32, bn: 32, bk: 32, warpsM: 1, warpsN: 2, stages: 3, splitK: 2 } },
    { id: 'strided_gen_conv_f32_nchw_res', op: 'conv', impl: 'generic', problem: { ...cv(2, 6, 5, 7, 3), ldY: 12 * 36, yOffset: 3 * 36 }, epi: { bias: true, residual: true }, opts: { dtype: 'float32', layout: 'nchw' } },
    { id: 'strided_gen_conv_f16_nhwc_res', op: 'conv', impl: 'generic', problem: { ...cv(2, 6, 12, 10, 3), ldY: 23, yOffset: 9 }, epi: { residual: true, act: 'relu' }, opts: { dtype: 'float16', layout: 'nhwc', groups: 2 } },
  );
}
const emit = (c: Case): TcKernelSource => emitCase(c, API);

const conv3 = (n: number, h: number, c: number, k: number, stride = 1): ConvProblem => {
  const p = Math.floor((h + 2 - 3) / stride) + 1;
  return { n, h, w: h, c, k, r: 3, s: 3, strideH: stride, strideW: stride, padH: 1, padW: 1, dilH: 1, dilW: 1, p, q: p };
};

describe('tc emitters: API contracts', () => {
  it('rejects c % 8 != 0 and unaligned GEMMs with UNSUPPORTED, pointing at the generic kernel', () => {
    const p = { ...conv3(1, 224, 3, 64, 2) };
    expect(convTcPreconditions(p)).toHaveLength(1);
    expect(() => emitConv(p)).toThrow(TsrtError);
    expect(() => emitConv(p)).toThrow(/multiple of 8[\s\S]*emitConvGeneric/);
    expect(gemmTcPreconditions({ m: 8, n: 8, k: 12 })[0]).toMatch(/K=12/);
    expect(gemmTcPreconditions({ m: 8, n: 12, k: 16, bLayout: 'kn' }).join('; ')).toMatch(/N=12/);
    expect(() => emitGemm({ m: 8, n: 8, k: 12 })).toThrow(/emitGemmGeneric/);
    expect(emitConvGeneric(p, { bias: true }, { dtype: 'float32', layout: 'nchw' }).name).toMatch(/^conv_generic_f32_nchw_3x3_b_/);
  });

  it('puts pointer params first in the documented order and names kernels after their config', () => {
    const k = emitConv(conv3(2, 56, 64, 64), { bias: true, residual: true, act: 'relu' }, { bm: 128, bn: 64, bk: 32, warpsM: 2, warpsN: 2, stages: 4 });
    expect(k.params.map((p) => p.name)).toEqual(['x', 'w', 'bias', 'residual', 'y']);
    expect(k.name).toMatch(/^conv_tc_3x3s1_m128n64k32_w2x2_s4_br_relu_[0-9a-f]{12}$/);
    expect(k.source).toContain(`extern "C" __global__ void __launch_bounds__(128) ${k.name}(const tc_half* __restrict__ x, const tc_half* __restrict__ w, const float* __restrict__ bias, const tc_half* __restrict__ residual, tc_half* __restrict__ y)`);
    expect(k.block).toEqual([128, 1, 1]);
    expect(k.grid).toEqual([Math.ceil((2 * 56 * 56) / 128), 1, 1]);
    expect(k.sharedBytes).toBe(4 * (128 + 64) * 32 * 2);
    expect(k.workspaceBytes).toBe(0);
    const g = emitGemm({ m: 4096, n: 768, k: 768 }, { bias: true });
    expect(g.params.map((p) => p.name)).toEqual(['a', 'b', 'bias', 'residual', 'c']);
    expect(g.name).toMatch(/^gemm_tc_nk_m\d+n\d+k\d+_w\dx\d_s\d_b_[0-9a-f]{12}$/);
  });

  it('adds a workspace parameter for split-K and never leaves a split empty', () => {
    const k = emitConv(conv3(1, 7, 512, 512), { bias: true }, { bm: 32, bn: 32, bk: 32, warpsM: 1, warpsN: 2, stages: 4, splitK: 16 });
    expect(k.params.map((p) => p.name)).toEqual(['x', 'w', 'bias', 'residual', 'y', 'workspace']);
    expect(k.config?.splitK).toBe(16);
    expect(k.grid[1]).toBe(16);
    expect(k.workspaceZeroBytes).toBeGreaterThan(0);
    expect(k.workspaceBytes).toBe(k.workspaceZeroBytes + 16 * k.grid[0] * 32 * 32 * 4);
    const odd = emitGemm({ m: 64, n: 64, k: 9 * 32 }, {}, { bm: 64, bn: 64, bk: 32, warpsM: 2, warpsN: 2, stages: 3, splitK: 4 });
    expect(odd.config?.splitK).toBe(3); // 9 k-tiles: 3+3+3, not 3+3+3+0
  });

  it('chooses big tiles for big layers and small tiles or split-K for batch-1 layers', () => {
    const big = chooseConvConfig(conv3(256, 28, 128, 128));
    expect(big.bm * big.bn).toBeGreaterThanOrEqual(128 * 128);
    const small = chooseConvConfig(conv3(1, 7, 512, 512));
    const ctas = Math.ceil(49 / small.bm) * Math.ceil(512 / small.bn) * (small.splitK ?? 1);
    expect(ctas).toBeGreaterThanOrEqual(64);
    expect(chooseGemmConfig({ m: 4096, n: 3072, k: 768 }).bm).toBeGreaterThanOrEqual(128);
  });

  it('lists only valid configs that fit shared memory', () => {
    for (const space of [convConfigSpace(conv3(256, 56, 64, 64)), convConfigSpace(conv3(1, 7, 512, 512)), gemmConfigSpace({ m: 128, n: 64, k: 128, bLayout: 'kn', batch: [12] })]) {
      expect(space.length).toBeGreaterThan(10);
      for (const c of space) {
        expect(configProblems(c)).toEqual([]);
        expect(smemBytes(c)).toBeLessThanOrEqual(MAX_SMEM);
      }
    }
    expect(gemmConfigSpace({ m: 1, n: 64, k: 64 }).some((c) => (c.splitK ?? 1) > 1)).toBe(false); // k too short to split
  });

  it('bakes the problem into the source (no size parameters)', () => {
    const k = emitGemm({ m: 300, n: 264, k: 328, bLayout: 'kn' }, { alpha: 0.125 });
    expect(k.params.every((p) => p.type === 'ptr')).toBe(true);
    expect(k.source).toContain('M=300 N=264 K=328');
    expect(k.source).toContain('v0 *= 0.125000000f;');
    expect(k.source).not.toMatch(/#include/);
  });
});

// ---------------------------------------------------------------------------------------------------
// NVRTC

type Compile = (src: string, name: string) => { ok: boolean; log: string };

function loadNvrtc(): Compile | undefined {
  const cands = [process.env.TSRT_NVRTC, 'libnvrtc.so', 'libnvrtc.so.13', 'libnvrtc.so.12', 'libnvrtc.so.11.2',
    '/usr/local/cuda/lib64/libnvrtc.so', '/usr/lib/x86_64-linux-gnu/libnvrtc.so.11.2'].filter((x): x is string => !!x);
  for (const path of cands) {
    let lib;
    try { lib = koffi.load(path); } catch { continue; }
    const create = lib.func('int nvrtcCreateProgram(_Out_ void** prog, const char* src, const char* name, int n, const char** h, const char** i)');
    const compile = lib.func('int nvrtcCompileProgram(void* prog, int n, const char** opts)');
    const logSize = lib.func('int nvrtcGetProgramLogSize(void* prog, _Out_ size_t* sz)');
    const getLog = lib.func('int nvrtcGetProgramLog(void* prog, _Out_ uint8_t* buf)');
    const destroy = lib.func('int nvrtcDestroyProgram(_Inout_ void** prog)');
    return (src, name) => {
      const prog: unknown[] = [null];
      if (create(prog, src, `${name}.cu`, 0, null, null) !== 0) return { ok: false, log: 'nvrtcCreateProgram failed' };
      const opts = ['--gpu-architecture=sm_90', '-std=c++17', '--ptxas-options=-v'];
      const rc = compile(prog[0], opts.length, opts);
      const sz = [0];
      logSize(prog[0], sz);
      const buf = Buffer.alloc(Number(sz[0]));
      getLog(prog[0], buf);
      destroy(prog);
      return { ok: rc === 0, log: buf.toString().replace(/\0/g, '') };
    };
  }
  return undefined;
}

const nvrtc = loadNvrtc();
// Every case except the tuning variants and the kn/conv halves of the tile-config sweep (the nk half
// covers every tile shape).
const COMPILE_CASES = CASES.filter((c) => !/^(cfg_(gemm_kn|conv)|tune)_/.test(c.id));

describe.skipIf(!nvrtc)('tc emitters: NVRTC sm_90 compile', () => {
  it.each(COMPILE_CASES.map((c) => [c.id, c] as const))('%s', (_id, c) => {
    const k = emit(c);
    const { ok, log } = nvrtc!(k.source, k.name);
    expect(ok, log).toBe(true);
    expect(log.split('\n').filter((l) => /warning|error/i.test(l))).toEqual([]);
    if (c.impl === 'tc') {
      expect(log, 'register spills').toMatch(/ 0 bytes spill stores, 0 bytes spill loads/);
      expect(Number(/Used (\d+) registers/.exec(log)?.[1])).toBeLessThanOrEqual(255);
    }
  });
});

// ---------------------------------------------------------------------------------------------------
// CPU emulation of the generated CUDA


const hasGxx = (() => { try { execFileSync('g++', ['--version'], { stdio: 'pipe' }); return true; } catch { return false; } })();
const EMU_DIR = join(new URL('..', import.meta.url).pathname, '.cache', 'tc-emu');

let seed = 12345;
const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return (seed / 2 ** 32) * 2 - 1; };
const dv2 = new DataView(new ArrayBuffer(2));
const f16 = (v: number) => { setFloat16(dv2, 0, v, true); return getFloat16(dv2, 0, true); };

interface HostBuf { buf: Buffer; vals: Float64Array }
function hostBuf(n: number, f32: boolean, gen: (i: number) => number): HostBuf {
  const buf = Buffer.alloc(Math.ceil((n * (f32 ? 4 : 2)) / 16) * 16 + 16);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  const vals = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (f32) { vals[i] = Math.fround(gen(i)); dv.setFloat32(i * 4, vals[i], true); } else { vals[i] = f16(gen(i)); setFloat16(dv, i * 2, vals[i], true); }
  }
  return { buf, vals };
}

function erf(x: number): number { // Numerical Recipes erfc, |error| < 1.2e-7
  const t = 1 / (1 + 0.5 * Math.abs(x));
  const y = 1 - t * Math.exp(-x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? y : -y;
}
function refEpilogue(acc: number, e: Epilogue, bias: number, res: number): number {
  const a = e.actArgs ?? [];
  let v = acc * (e.alpha ?? 1);
  if (e.bias) v += bias;
  if (e.residual && !e.residualAfterAct) v += res;
  switch (e.act ?? 'none') {
    case 'none': break;
    case 'relu': v = Math.max(v, 0); break;
    case 'relu6': v = Math.min(Math.max(v, 0), 6); break;
    case 'clip': v = Math.min(Math.max(v, a[0]), a[1]); break;
    case 'sigmoid': v = 1 / (1 + Math.exp(-v)); break;
    case 'silu': v = v / (1 + Math.exp(-v)); break;
    case 'gelu_erf': v = 0.5 * v * (1 + erf(v / Math.SQRT2)); break;
    case 'gelu_tanh': v = 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))); break;
    case 'hardswish': v = v * Math.min(Math.max(v / 6 + 0.5, 0), 1); break;
    case 'hardsigmoid': v = Math.min(Math.max((a[0] ?? 0.2) * v + (a[1] ?? 0.5), 0), 1); break;
    case 'leakyrelu': v = v >= 0 ? v : (a[0] ?? 0.01) * v; break;
  }
  if (e.residual && e.residualAfterAct) v += res;
  return v;
}

/** Builds inputs and the float64 reference; `written` marks output elements the kernel must write. */
function reference(c: Case, f32: boolean) {
  const e = c.epi;
  const bufs: Record<string, HostBuf> = {};
  let ref: Float64Array;
  let written: Uint8Array | undefined;
  if (c.op === 'conv') {
    const p = c.problem as ConvProblem;
    const g = c.opts?.groups ?? 1, nchw = c.opts?.layout === 'nchw', Cg = p.c / g, Ng = p.k / g, cReal = c.cReal ?? p.c;
    const xi = (b: number, ih: number, iw: number, ci: number) => (nchw ? ((b * p.c + ci) * p.h + ih) * p.w + iw : ((b * p.h + ih) * p.w + iw) * p.c + ci);
    const wi = (ko: number, ri: number, si: number, ci: number) => (nchw ? ((ko * Cg + ci) * p.r + ri) * p.s + si : ((ko * p.r + ri) * p.s + si) * Cg + ci);
    const yi = (b: number, oh: number, ow: number, ko: number) => (nchw ? ((b * p.k + ko) * p.p + oh) * p.q + ow : ((b * p.p + oh) * p.q + ow) * p.k + ko);
    bufs.x = hostBuf(p.n * p.h * p.w * p.c, f32, (i) => ((nchw ? Math.floor(i / (p.h * p.w)) % p.c : i % p.c) < cReal ? rnd() : 0));
    const sc = 2 / Math.sqrt(p.r * p.s * Cg);
    bufs.w = hostBuf(p.k * p.r * p.s * Cg, f32, (i) => ((nchw ? Math.floor(i / (p.r * p.s)) % Cg : i % Cg) < cReal ? rnd() * sc : 0));
    bufs.bias = hostBuf(p.k, true, () => rnd() * 0.5);
    const yN = p.n * p.p * p.q * p.k, ld = p.ldY ?? (nchw ? p.k * p.p * p.q : p.k), yo = p.yOffset ?? 0;
    // a strided output: row i (an image in NCHW, a pixel in NHWC) at i * ld + yo; the residual stays dense
    const ys = (o: number) => (nchw ? Math.floor(o / (p.k * p.p * p.q)) * ld + yo + (o % (p.k * p.p * p.q)) : Math.floor(o / p.k) * ld + yo + (o % p.k));
    bufs.residual = hostBuf(yN, f32, () => rnd());
    ref = new Float64Array(ys(yN - 1) + 1);
    written = new Uint8Array(ref.length);
    for (let b = 0; b < p.n; b++) for (let oh = 0; oh < p.p; oh++) for (let ow = 0; ow < p.q; ow++) for (let ko = 0; ko < p.k; ko++) {
      const gg = Math.floor(ko / Ng);
      let s = 0;
      for (let ri = 0; ri < p.r; ri++) {
        const ih = oh * p.strideH - p.padH + ri * p.dilH;
        if (ih < 0 || ih >= p.h) continue;
        for (let si = 0; si < p.s; si++) {
          const iw = ow * p.strideW - p.padW + si * p.dilW;
          if (iw < 0 || iw >= p.w) continue;
          for (let ci = 0; ci < Cg; ci++) s += bufs.x.vals[xi(b, ih, iw, gg * Cg + ci)] * bufs.w.vals[wi(ko, ri, si, ci)];
        }
      }
      const o = yi(b, oh, ow, ko);
      ref[ys(o)] = refEpilogue(s, e, bufs.bias.vals[ko], bufs.residual.vals[o]);
      written[ys(o)] = 1;
    }
  } else {
    const p = c.problem;
    const kn = p.bLayout === 'kn', batch: number[] = p.batch ?? [];
    const lda = p.lda ?? p.k, ldb = p.ldb ?? (kn ? p.n : p.k), ldc = p.ldc ?? p.n;
    const dflt = (s: number[] | undefined, per: number) => s ?? batch.map((_, i) => per * batch.slice(i + 1).reduce((a, b) => a * b, 1));
    const sA = dflt(p.strideA, p.m * lda), sB = dflt(p.strideB, kn ? p.k * ldb : p.n * ldb), sC = dflt(p.strideC, p.m * ldc);
    const b0n = batch[0] ?? 1, b1n = batch[1] ?? 1;
    const bo = (s: number[], b0: number, b1: number) => (s[0] ?? 0) * b0 + (s[1] ?? 0) * b1;
    const offA = c.offA ?? 0, offB = c.offB ?? 0, offC = c.offC ?? 0;
    const aN = offA + bo(sA, b0n - 1, b1n - 1) + (p.m - 1) * lda + p.k;
    const bN = offB + bo(sB, b0n - 1, b1n - 1) + (kn ? (p.k - 1) * ldb + p.n : (p.n - 1) * ldb + p.k);
    const cN = offC + bo(sC, b0n - 1, b1n - 1) + (p.m - 1) * ldc + p.n;
    bufs.a = hostBuf(aN, f32, () => rnd());
    bufs.b = hostBuf(bN, f32, () => (rnd() * 2) / Math.sqrt(p.k));
    bufs.bias = hostBuf(p.n, true, () => rnd() * 0.5);
    bufs.residual = hostBuf(cN, f32, () => rnd());
    ref = new Float64Array(cN);
    written = new Uint8Array(cN);
    for (let b0 = 0; b0 < b0n; b0++) for (let b1 = 0; b1 < b1n; b1++) for (let m = 0; m < p.m; m++) for (let n = 0; n < p.n; n++) {
      let s = 0;
      for (let kk = 0; kk < p.k; kk++) {
        s += bufs.a.vals[offA + bo(sA, b0, b1) + m * lda + kk] * bufs.b.vals[offB + bo(sB, b0, b1) + (kn ? kk * ldb + n : n * ldb + kk)];
      }
      const o = offC + bo(sC, b0, b1) + m * ldc + n;
      ref[o] = refEpilogue(s, e, bufs.bias.vals[n], bufs.residual.vals[o]);
      written[o] = 1;
    }
  }
  return { bufs, ref, written };
}

/** Runs a case's kernel under the emulator (twice when it uses a split-K workspace: counters must reset). */
function emulate(c: Case): { rel: number; unwritten: number; stray: number; f32: boolean } {
  const k = emit(c);
  const f32 = c.impl === 'generic' && (c.opts?.dtype ?? c.dtype) === 'float32';
  const { bufs, ref, written } = reference(c, f32);
  const es = f32 ? 4 : 2, T = f32 ? 'float' : 'tc_half', outN = ref.length;
  const dir = join(EMU_DIR, c.id);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(EMU_DIR, 'emu_prelude.h'), EMU_PRELUDE);
  const outName = c.op === 'conv' ? 'y' : 'c';
  const offs: Record<string, number> = { a: c.offA ?? 0, b: c.offB ?? 0, c: c.offC ?? 0, residual: c.offC ?? 0 };
  const lines: string[] = [];
  for (const [nm, b] of Object.entries(bufs)) {
    writeFileSync(join(dir, `${nm}.bin`), b.buf);
    lines.push(`  unsigned char* ${nm}_p = load_file("${nm}.bin", ${b.buf.length});`);
  }
  lines.push(`  unsigned char* out_p = (unsigned char*)aligned_alloc(256, ${Math.ceil((outN * es) / 256) * 256 + 256}); g_bufs.push_back(Buf{out_p, ${outN * es}});`);
  const args = k.params.map((q) => {
    if (q.name === 'workspace') return 'ws_p';
    const ty = q.name === 'bias' ? 'float' : T;
    return `(${ty}*)(${q.name === outName ? 'out' : q.name}_p) + ${offs[q.name] ?? 0}`;
  });
  if (k.workspaceBytes) lines.push(`  unsigned char* ws_p = (unsigned char*)calloc(1, ${k.workspaceBytes});`);
  const src = k.source.replace(TC_HELPERS, '#include "../emu_prelude.h"\n').replace('extern __shared__ __align__(128) unsigned char tc_smem[];', '')
    + `\nint main() {\n${lines.join('\n')}\n  for (int rep = 0; rep < ${k.workspaceBytes ? 2 : 1}; ++rep) {\n    memset(out_p, 0xff, ${outN * es});\n`
    + `    run_grid(${k.grid[0]}, ${k.grid[1]}, ${k.block[0]}, ${k.sharedBytes}, [&] { ${k.name}(${args.join(', ')}); });\n  }\n`
    + `  save_file("out.bin", out_p, ${outN * es});\n  return 0;\n}\n`;
  writeFileSync(join(dir, 'k.cpp'), src);
  const exe = join(dir, `k_${createHash('sha1').update(src).update(EMU_PRELUDE).digest('hex').slice(0, 10)}`);
  if (!existsSync(exe)) execFileSync('g++', ['-std=c++20', '-O1', '-w', '-o', exe, 'k.cpp'], { cwd: dir, stdio: 'pipe' });
  execFileSync(exe, [], { cwd: dir, stdio: 'pipe' });
  const ob = readFileSync(join(dir, 'out.bin'));
  const dv = new DataView(ob.buffer, ob.byteOffset, ob.length);
  let maxErr = 0, maxRef = 0, unwritten = 0, stray = 0;
  for (let i = 0; i < outN; i++) {
    const v = f32 ? dv.getFloat32(i * 4, true) : getFloat16(dv, i * 2, true);
    if (written && !written[i]) { if (!Number.isNaN(v)) stray++; continue; }
    if (Number.isNaN(v)) { unwritten++; continue; }
    maxErr = Math.max(maxErr, Math.abs(v - ref[i]));
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
  }
  return { rel: maxErr / (maxRef || 1), unwritten, stray, f32 };
}

const EMU_CASES = ['conv_5x5_splitk', 'conv_dil2_s2', 'conv_1x1s2_tail', 'conv_1x3_k17', 'gemm_kn_bshared', 'gemm_nk_2batch_ld',
  'act_gelu_erf', 'gen_conv_f32_nchw_g4_dil2', 'gen_gemm_f32_kn_bshared', 'gen_conv_f16_nhwc_g2',
  'strided_conv_3x3_pairs_res', 'strided_conv_1x1_odd_res_splitk', 'strided_gen_conv_f32_nchw_res', 'strided_gen_conv_f16_nhwc_res'];

describe.skipIf(!hasGxx)('tc emitters: generated CUDA under the CPU emulator', () => {
  it.each(EMU_CASES)('%s matches the float64 reference', (id) => {
    const c = CASES.find((x) => x.id === id);
    expect(c, id).toBeDefined();
    const r = emulate(c!);
    expect(r.unwritten).toBe(0);
    expect(r.stray).toBe(0);
    expect(r.rel).toBeLessThan(r.f32 ? 1e-5 : 4e-3);
  }, 600_000);
});
