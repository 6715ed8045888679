// Depthwise conv emitter (src/codegen/depthwise.ts):
//  - API contracts: isDepthwise, the weight layout, parameter order, names, launch geometry, option checks;
//  - every variant (fp16/fp32, NHWC/NCHW, 3x3/5x5, strides, c = 3/8/96/960 and other c % 8 != 0, activations,
//    residual before/after the activation, MobileNetV2 and EfficientNet-B0 layers) compiles with NVRTC for
//    sm_90 without warnings or register spills (skipped without NVRTC);
//  - small cases run on the CPU (g++ with AddressSanitizer and UBSan: every CUDA thread in turn, which is
//    exact for this kernel since its threads share nothing) and match a float64 reference; out-of-bounds or
//    misaligned accesses abort (skipped without g++).
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import { TsrtError } from '../src/errors.js';
import {
  chooseDepthwiseTile, defaultVec, depthwiseWeightLayout, DW_THREADS, emitDepthwiseConv, isDepthwise, tapPairs,
  type DepthwiseOptions,
} from '../src/codegen/depthwise.js';
import { convOutSize, type ConvProblem } from '../src/codegen/tc_conv.js';
import { TC_HELPERS, type Epilogue } from '../src/codegen/tc_gemm.js';
import { compileCuda, nvrtcVersion } from '../src/runtime/nvrtc.js';

/** Depthwise problem; pads [top, left, bottom, right]. */
function dw(n: number, h: number, w: number, c: number, r: number, s: number,
  o: { stride?: [number, number]; pads?: [number, number, number, number]; dil?: [number, number] } = {}): ConvProblem {
  const [sh, sw] = o.stride ?? [1, 1];
  const [dh, dwl] = o.dil ?? [1, 1];
  const [pt, pl, pb, pr] = o.pads ?? [dh * (r - 1) >> 1, dwl * (s - 1) >> 1, dh * (r - 1) >> 1, dwl * (s - 1) >> 1];
  return {
    n, h, w, c, k: c, r, s, strideH: sh, strideW: sw, padH: pt, padW: pl, dilH: dh, dilW: dwl,
    p: convOutSize(h, r, sh, pt, pb, dh), q: convOutSize(w, s, sw, pl, pr, dwl),
  };
}
const sq = (n: number, hw: number, c: number, k: number, stride: number) => dw(n, hw, hw, c, k, k, { stride: [stride, stride] });

interface DwCase { id: string; p: ConvProblem; epi: Epilogue; opts: DepthwiseOptions }

const BR6: Epilogue = { bias: true, act: 'relu6' };

describe('depthwise: API contracts', () => {
  it('recognises group == c == k only', () => {
    expect(isDepthwise(32, 32, 32)).toBe(true);
    expect(isDepthwise(1, 1, 1)).toBe(true);
    expect(isDepthwise(32, 32, 64)).toBe(false); // channel multiplier 2
    expect(isDepthwise(1, 32, 32)).toBe(false);
    expect(isDepthwise(4, 32, 32)).toBe(false);
  });

  it('lays weights out as [r][s][c] for NHWC and keeps ONNX [c][r][s] for NCHW', () => {
    const k = 3, r = 2, s = 2;
    const onnx = Float64Array.from({ length: k * r * s }, (_, i) => i); // value = (ko*r + ri)*s + si
    const nhwc = depthwiseWeightLayout(onnx, k, r, s);
    for (let ko = 0; ko < k; ko++) for (let ri = 0; ri < r; ri++) for (let si = 0; si < s; si++) {
      expect(nhwc[(ri * s + si) * k + ko]).toBe((ko * r + ri) * s + si);
    }
    expect([...nhwc.slice(0, 6)]).toEqual([0, 4, 8, 1, 5, 9]);
    const nchw = depthwiseWeightLayout(onnx, k, r, s, 'nchw');
    expect([...nchw]).toEqual([...onnx]);
    expect(nchw).not.toBe(onnx);
    expect(() => depthwiseWeightLayout(onnx, 4, r, s)).toThrow(/k\*r\*s = 16/);
  });

  it('pairs every tile input offset with the (output, tap) pairs that read it', () => {
    expect(tapPairs(2, 3, 1, 1).map((ps) => ps.map((x) => `${x.out}:${x.tap}`).join(' '))).toEqual(['0:0', '0:1 1:0', '0:2 1:1', '1:2']);
    expect(tapPairs(2, 3, 2, 1).map((ps) => ps.length)).toEqual([1, 1, 2, 1, 1]);
    expect(tapPairs(1, 2, 2, 3).map((ps) => ps.length)).toEqual([1, 0, 0, 1]); // dilation gap: nothing to load
    for (const [t, k, st, d] of [[4, 3, 1, 1], [3, 5, 2, 1], [2, 3, 1, 2], [5, 3, 3, 2]]) {
      expect(tapPairs(t, k, st, d).flat()).toHaveLength(t * k);
    }
  });

  it('takes x, w, bias, residual, y like emitConv and names the kernel after its variant', () => {
    const k = emitDepthwiseConv(sq(64, 56, 144, 3, 1), BR6, { dtype: 'float16', layout: 'nhwc' });
    expect(k.params.map((q) => q.name)).toEqual(['x', 'w', 'bias', 'residual', 'y']);
    expect(k.params.every((q) => q.type === 'ptr')).toBe(true);
    expect(k.name).toMatch(/^dwconv_f16_nhwc_3x3s1_v8_t\d+x\d+_b_relu6_[0-9a-f]{12}$/);
    expect(k.source).toContain(`extern "C" __global__ void __launch_bounds__(256) ${k.name}(const tc_half* __restrict__ x, const tc_half* __restrict__ w, const float* __restrict__ bias, const tc_half* __restrict__ residual, tc_half* __restrict__ y)`);
    expect(k.source).not.toMatch(/#include/);
    expect(k.block).toEqual([DW_THREADS, 1, 1]);
    expect(k.sharedBytes).toBe(0);
    expect(k.workspaceBytes).toBe(0);
    expect(k.flops).toBe(2 * 64 * 56 * 56 * 144 * 9);
    const f = emitDepthwiseConv(dw(2, 9, 11, 5, 3, 3, { stride: [2, 1] }), { residual: true }, { dtype: 'float32', layout: 'nchw' });
    expect(f.name).toMatch(/^dwconv_f32_nchw_3x3s2x1_v1_t\d+x1_r_/);
    expect(f.source).toContain('const float* __restrict__ x');
  });

  it('covers every output with one thread per (vector, tile) and no more blocks than needed', () => {
    for (const [p, o] of [[sq(64, 112, 96, 3, 2), { dtype: 'float16', layout: 'nhwc' }], [sq(3, 14, 6, 5, 1), { dtype: 'float32', layout: 'nchw' }]] as const) {
      const k = emitDepthwiseConv(p, {}, o);
      const { tileH, tileW } = chooseDepthwiseTile(p, o.layout, o.layout === 'nhwc' ? defaultVec(p.c, o.dtype) : 1);
      const vec = o.layout === 'nhwc' ? defaultVec(p.c, o.dtype) : 1;
      const threads = p.n * Math.ceil(p.p / tileH) * Math.ceil(p.q / tileW) * (p.c / vec);
      expect(k.source).toContain(`if (idx >= ${threads}) return;`);
      expect(k.grid).toEqual([Math.ceil(threads / DW_THREADS), 1, 1]);
      expect(k.source).toContain('const int idx');
    }
    expect(emitDepthwiseConv(sq(2048, 112, 96, 3, 2), {}, { dtype: 'float16', layout: 'nhwc' }).source).toContain('const long long idx');
  });

  it('picks the widest channel vector that divides c', () => {
    expect([96, 12, 6, 3].map((c) => defaultVec(c, 'float16'))).toEqual([8, 4, 2, 1]);
    expect([96, 6, 3].map((c) => defaultVec(c, 'float32'))).toEqual([4, 2, 1]);
    expect(emitDepthwiseConv(sq(1, 8, 12, 3, 1), {}, { dtype: 'float16', layout: 'nhwc' }).name).toContain('_v4_');
  });

  it('tiles the big MobileNetV2 layers and keeps small problems at one output per thread', () => {
    for (const p of [sq(64, 112, 32, 3, 1), sq(64, 112, 96, 3, 2), sq(64, 56, 144, 3, 1), sq(64, 14, 384, 3, 1), sq(64, 7, 960, 3, 1)]) {
      const t = chooseDepthwiseTile(p, 'nhwc', 8);
      expect(t.tileH * t.tileW).toBeGreaterThan(1);
      expect(t.tileH * t.tileW * 8).toBeLessThanOrEqual(32);
    }
    expect(chooseDepthwiseTile(sq(1, 7, 960, 3, 1), 'nhwc', 8)).toEqual({ tileH: 1, tileW: 1 });
    expect(chooseDepthwiseTile(sq(64, 56, 144, 3, 1), 'nchw', 1).tileW).toBe(1);
  });

  it('rejects channel multipliers, bad vectors and bad tiles with a clear error', () => {
    expect(() => emitDepthwiseConv({ ...sq(1, 8, 8, 3, 1), k: 16 }, {}, { dtype: 'float16', layout: 'nhwc' })).toThrow(/k == c[\s\S]*emitConvGeneric/);
    expect(() => emitDepthwiseConv(sq(1, 8, 12, 3, 1), {}, { dtype: 'float16', layout: 'nhwc', vec: 8 })).toThrow(TsrtError);
    expect(() => emitDepthwiseConv(sq(1, 8, 8, 3, 1), {}, { dtype: 'float32', layout: 'nhwc', vec: 8 })).toThrow(/16 bytes/);
    expect(() => emitDepthwiseConv(sq(1, 8, 8, 3, 1), {}, { dtype: 'float32', layout: 'nchw', vec: 4 })).toThrow(/NCHW/);
    expect(() => emitDepthwiseConv(sq(1, 8, 8, 3, 1), {}, { dtype: 'float32', layout: 'nchw', tileW: 2 })).toThrow(/tileW/);
    expect(() => emitDepthwiseConv(sq(1, 8, 8, 3, 1), {}, { dtype: 'float16', layout: 'nhwc', tileH: 0 })).toThrow(/tileH/);
    expect(() => emitDepthwiseConv({ ...sq(1, 8, 8, 3, 1), padH: -1 }, {}, { dtype: 'float16', layout: 'nhwc' })).toThrow(/padH/);
  });
});

// ---------------------------------------------------------------------------------------------------
// NVRTC

const EPIS: Epilogue[] = [BR6, {}, { bias: true, residual: true, act: 'relu6' }, { bias: true, residual: true, residualAfterAct: true, act: 'relu' }];
const SHAPES: [string, (n: number, hw: number, c: number) => ConvProblem][] = [
  ['3x3s1', (n, hw, c) => sq(n, hw, c, 3, 1)], ['3x3s2', (n, hw, c) => sq(n, hw, c, 3, 2)],
  ['5x5s1', (n, hw, c) => sq(n, hw, c, 5, 1)], ['5x5s2', (n, hw, c) => sq(n, hw, c, 5, 2)],
];

function compileCases(): DwCase[] {
  const out: DwCase[] = [];
  let i = 0;
  for (const dtype of ['float16', 'float32'] as const) for (const layout of ['nhwc', 'nchw'] as const) {
    for (const c of [3, 8, 96, 960]) for (const [sn, mk] of SHAPES) {
      const epi = EPIS[i++ % EPIS.length];
      out.push({ id: `${dtype}_${layout}_c${c}_${sn}_${i % EPIS.length}`, p: c === 960 ? mk(64, 7, c) : mk(8, 28, c), epi, opts: { dtype, layout } });
    }
  }
  // MobileNetV2 at batch 64 (fp16 NHWC, bias + relu6) and EfficientNet-B0 (bias + silu)
  const mbv2: [number, number, number][] = [[112, 32, 1], [112, 96, 2], [56, 144, 1], [56, 144, 2], [28, 192, 1], [28, 192, 2], [14, 384, 1], [14, 576, 1], [14, 576, 2], [7, 960, 1]];
  for (const [hw, c, st] of mbv2) out.push({ id: `mbv2_${hw}x${c}_s${st}`, p: sq(64, hw, c, 3, st), epi: BR6, opts: { dtype: 'float16', layout: 'nhwc' } });
  const effb0: [number, number, number, number][] = [[112, 32, 3, 1], [112, 96, 3, 2], [56, 144, 5, 2], [28, 240, 5, 1], [28, 240, 3, 2], [14, 480, 3, 1], [14, 480, 5, 1], [14, 672, 5, 1], [14, 672, 5, 2], [7, 1152, 5, 1], [7, 1152, 3, 1]];
  for (const [hw, c, k, st] of effb0) out.push({ id: `effb0_${hw}x${c}_${k}x${k}s${st}`, p: sq(64, hw, c, k, st), epi: { bias: true, act: 'silu' }, opts: { dtype: 'float16', layout: 'nhwc' } });
  // every channel vector, dilation, uneven strides, explicit tiles up to the accumulator budget and beyond
  for (const vec of [8, 4, 2, 1]) out.push({ id: `f16_vec${vec}`, p: sq(8, 28, 96, 3, 1), epi: BR6, opts: { dtype: 'float16', layout: 'nhwc', vec } });
  out.push({ id: 'f16_dil2_s2x1', p: dw(4, 20, 17, 24, 3, 3, { stride: [2, 1], dil: [2, 2] }), epi: { bias: true, act: 'hardswish' }, opts: { dtype: 'float16', layout: 'nhwc' } });
  out.push({ id: 'f32_nchw_dil2_s2x1', p: dw(4, 20, 17, 24, 3, 3, { stride: [2, 1], dil: [2, 2] }), epi: BR6, opts: { dtype: 'float32', layout: 'nchw', tileH: 4 } });
  for (const [th, tw] of [[1, 8], [2, 4], [4, 2], [8, 1], [3, 3]]) {
    out.push({ id: `f16_tile${th}x${tw}`, p: sq(64, 56, 144, 3, 1), epi: { bias: true, residual: true, act: 'relu6' }, opts: { dtype: 'float16', layout: 'nhwc', tileH: th, tileW: tw } });
  }
  // over 2^31 elements: 64-bit offsets
  out.push({ id: 'f16_nhwc_64bit_index', p: sq(2048, 112, 96, 3, 2), epi: BR6, opts: { dtype: 'float16', layout: 'nhwc' } });
  out.push({ id: 'f32_nchw_64bit_index', p: sq(2048, 112, 96, 3, 1), epi: BR6, opts: { dtype: 'float32', layout: 'nchw' } });
  return out;
}

const hasNvrtc = (() => { try { nvrtcVersion(); return true; } catch { return false; } })();

describe.skipIf(!hasNvrtc)('depthwise: NVRTC sm_90 compile', () => {
  it.each(compileCases().map((c) => [c.id, c] as const))('%s', (_id, c) => {
    const k = emitDepthwiseConv(c.p, c.epi, c.opts);
    const r = compileCuda(k.source, { name: k.name, arch: 'sm_90', options: ['--ptxas-options=-v'] });
    expect(r.cubin?.length).toBeGreaterThan(0);
    expect(r.log.split('\n').filter((l) => /warning|error/i.test(l))).toEqual([]);
    expect(r.log, 'register spills').toMatch(/ 0 bytes spill stores, 0 bytes spill loads/);
  });
});

// ---------------------------------------------------------------------------------------------------
// CPU run of the generated CUDA

const EMU_PRELUDE = String.raw`// The CUDA subset the depthwise kernels use, for g++: threads run one after another.
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <math.h>
struct emu_dim3 { unsigned x = 0, y = 0, z = 0; };
static emu_dim3 blockIdx, threadIdx;
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
typedef unsigned short tc_half;
typedef unsigned int u32;
inline float h2f(tc_half h) { _Float16 f; memcpy(&f, &h, 2); return (float)f; }
inline tc_half f2h(float f) { _Float16 h = (_Float16)f; tc_half r; memcpy(&r, &h, 2); return r; }
inline u32 pack_h2(float lo, float hi) { return (u32)f2h(lo) | ((u32)f2h(hi) << 16); }
inline float lo_h2f(u32 v) { return h2f((tc_half)(v & 0xffffu)); }
inline float hi_h2f(u32 v) { return h2f((tc_half)(v >> 16)); }
inline float __expf(float x) { return expf(x); }
inline float __fdividef(float a, float b) { return a / b; }
`;

const hasGxx = (() => { try { execFileSync('g++', ['--version'], { stdio: 'pipe' }); return true; } catch { return false; } })();
const EMU_DIR = join(new URL('..', import.meta.url).pathname, '.cache', 'dw-emu');

const EMU_CASES: DwCase[] = [
  { id: 'f16_nhwc_3x3s1_v8_default', p: sq(2, 9, 24, 3, 1), epi: BR6, opts: { dtype: 'float16', layout: 'nhwc' } },
  { id: 'f16_nhwc_3x3s1_v8_tile2x2', p: sq(2, 9, 24, 3, 1), epi: BR6, opts: { dtype: 'float16', layout: 'nhwc', tileH: 2, tileW: 2 } },
  { id: 'f16_nhwc_3x3s2_v8_tile4x1_odd', p: dw(2, 11, 10, 16, 3, 3, { stride: [2, 2] }), epi: BR6, opts: { dtype: 'float16', layout: 'nhwc', tileH: 4, tileW: 1 } },
  { id: 'f16_nhwc_3x3s2_v8_tile3x4', p: dw(2, 13, 15, 16, 3, 3, { stride: [2, 2] }), epi: { bias: true, residual: true, act: 'relu6' }, opts: { dtype: 'float16', layout: 'nhwc', tileH: 3, tileW: 4 } },
  { id: 'f16_nhwc_5x5s1_v8_tile2x3_res', p: sq(2, 10, 40, 5, 1), epi: { bias: true, residual: true, act: 'silu' }, opts: { dtype: 'float16', layout: 'nhwc', tileH: 2, tileW: 3 } },
  { id: 'f16_nhwc_5x5s2_v8_tile1x5', p: sq(2, 13, 16, 5, 2), epi: { bias: true, act: 'relu6' }, opts: { dtype: 'float16', layout: 'nhwc', tileH: 1, tileW: 5 } },
  { id: 'f16_nhwc_c3_v1_noepi', p: sq(2, 9, 3, 3, 1), epi: {}, opts: { dtype: 'float16', layout: 'nhwc', tileH: 2, tileW: 3 } },
  { id: 'f16_nhwc_c6_v2_dil2_s2x1_asym_resafter', p: dw(2, 12, 9, 6, 3, 3, { stride: [2, 1], dil: [2, 2], pads: [0, 1, 2, 3] }), epi: { bias: true, residual: true, residualAfterAct: true, act: 'relu' }, opts: { dtype: 'float16', layout: 'nhwc', tileH: 2, tileW: 2 } },
  { id: 'f16_nhwc_c12_v4_nopad_s2', p: dw(2, 9, 9, 12, 3, 3, { stride: [2, 2], pads: [0, 0, 1, 1] }), epi: { bias: true, act: 'clip', actArgs: [-0.25, 0.5] }, opts: { dtype: 'float16', layout: 'nhwc', tileH: 2, tileW: 2 } },
  { id: 'f16_nhwc_c960_7x7', p: sq(1, 7, 960, 3, 1), epi: BR6, opts: { dtype: 'float16', layout: 'nhwc', tileH: 4, tileW: 1 } },
  { id: 'f16_nhwc_1x1', p: dw(2, 5, 5, 16, 1, 1), epi: { bias: true }, opts: { dtype: 'float16', layout: 'nhwc', tileH: 2, tileW: 2 } },
  { id: 'f32_nhwc_c8_v4_s2', p: sq(2, 9, 8, 3, 2), epi: BR6, opts: { dtype: 'float32', layout: 'nhwc', tileH: 2, tileW: 2 } },
  { id: 'f32_nhwc_c5_v1_5x5', p: sq(2, 8, 5, 5, 1), epi: { bias: true, residual: true }, opts: { dtype: 'float32', layout: 'nhwc' } },
  { id: 'f32_nchw_3x3s1_default', p: sq(2, 9, 8, 3, 1), epi: BR6, opts: { dtype: 'float32', layout: 'nchw' } },
  { id: 'f32_nchw_3x3s1_tile3', p: dw(2, 10, 7, 8, 3, 3), epi: { bias: true, residual: true, act: 'relu6' }, opts: { dtype: 'float32', layout: 'nchw', tileH: 3 } },
  { id: 'f32_nchw_3x3s2_c3_tile4', p: sq(2, 11, 3, 3, 2), epi: {}, opts: { dtype: 'float32', layout: 'nchw', tileH: 4 } },
  { id: 'f32_nchw_5x5s2_tile2_resafter', p: sq(2, 12, 4, 5, 2), epi: { bias: true, residual: true, residualAfterAct: true, act: 'sigmoid' }, opts: { dtype: 'float32', layout: 'nchw', tileH: 2 } },
  { id: 'f32_nchw_dil2_s2x1_asym_tile3', p: dw(2, 12, 9, 5, 3, 3, { stride: [2, 1], dil: [2, 2], pads: [0, 1, 2, 3] }), epi: { bias: true, act: 'relu' }, opts: { dtype: 'float32', layout: 'nchw', tileH: 3 } },
  { id: 'f16_nchw_3x3s1_c5_tile2', p: sq(2, 9, 5, 3, 1), epi: BR6, opts: { dtype: 'float16', layout: 'nchw', tileH: 2 } },
];

let seed = 777;
const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return (seed / 2 ** 32) * 2 - 1; };
const dv2 = new DataView(new ArrayBuffer(2));
const f16 = (v: number) => { setFloat16(dv2, 0, v, true); return getFloat16(dv2, 0, true); };

function encode(vals: Float64Array, f32: boolean): Buffer {
  const buf = Buffer.alloc(vals.length * (f32 ? 4 : 2));
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  vals.forEach((v, i) => (f32 ? dv.setFloat32(i * 4, v, true) : setFloat16(dv, i * 2, v, true)));
  return buf;
}

function refAct(v: number, e: Epilogue): number {
  const a = e.actArgs ?? [];
  switch (e.act ?? 'none') {
    case 'none': return v;
    case 'relu': return Math.max(v, 0);
    case 'relu6': return Math.min(Math.max(v, 0), 6);
    case 'clip': return Math.min(Math.max(v, a[0]), a[1]);
    case 'sigmoid': return 1 / (1 + Math.exp(-v));
    case 'silu': return v / (1 + Math.exp(-v));
    default: throw new Error(`no reference for ${e.act}`);
  }
}

/** Inputs (rounded to the storage dtype) and the float64 reference output in y's layout. */
function reference(c: DwCase) {
  const { p, epi } = c;
  const f32 = c.opts.dtype === 'float32', nchw = c.opts.layout === 'nchw';
  const q = (v: number) => (f32 ? Math.fround(v) : f16(v));
  const xi = (b: number, ih: number, iw: number, ch: number) => (nchw ? ((b * p.c + ch) * p.h + ih) * p.w + iw : ((b * p.h + ih) * p.w + iw) * p.c + ch);
  const yi = (b: number, oh: number, ow: number, ch: number) => (nchw ? ((b * p.c + ch) * p.p + oh) * p.q + ow : ((b * p.p + oh) * p.q + ow) * p.c + ch);
  const x = Float64Array.from({ length: p.n * p.h * p.w * p.c }, () => q(rnd() * 2));
  const wOnnx = Float64Array.from({ length: p.c * p.r * p.s }, () => q(rnd() / Math.sqrt(p.r * p.s) * 2));
  const bias = Float64Array.from({ length: p.c }, () => Math.fround(rnd()));
  const yN = p.n * p.p * p.q * p.c;
  const res = Float64Array.from({ length: yN }, () => q(rnd()));
  const ref = new Float64Array(yN);
  for (let b = 0; b < p.n; b++) for (let oh = 0; oh < p.p; oh++) for (let ow = 0; ow < p.q; ow++) for (let ch = 0; ch < p.c; ch++) {
    let s = 0;
    for (let ri = 0; ri < p.r; ri++) for (let si = 0; si < p.s; si++) {
      const ih = oh * p.strideH - p.padH + ri * p.dilH, iw = ow * p.strideW - p.padW + si * p.dilW;
      if (ih >= 0 && ih < p.h && iw >= 0 && iw < p.w) s += x[xi(b, ih, iw, ch)] * wOnnx[(ch * p.r + ri) * p.s + si];
    }
    const o = yi(b, oh, ow, ch);
    let v = s + (epi.bias ? bias[ch] : 0);
    if (epi.residual && !epi.residualAfterAct) v += res[o];
    v = refAct(v, epi);
    if (epi.residual && epi.residualAfterAct) v += res[o];
    ref[o] = v;
  }
  return { x, w: depthwiseWeightLayout(wOnnx, p.c, p.r, p.s, c.opts.layout), bias, res, ref };
}

/** One program with every case's kernel (each in a namespace of its own), run once per case. */
let emuExe = '';
function buildEmulator(): string {
  const T = (c: DwCase) => (c.opts.dtype === 'float32' ? 'float' : 'tc_half');
  const parts = [EMU_PRELUDE];
  const dispatch: string[] = [];
  EMU_CASES.forEach((c, i) => {
    const k = emitDepthwiseConv(c.p, c.epi, c.opts);
    expect(k.source).toContain(TC_HELPERS);
    parts.push(`namespace case${i} {\n${k.source.replace(TC_HELPERS, '')}\n}`);
    const es = c.opts.dtype === 'float32' ? 4 : 2;
    const xN = c.p.n * c.p.h * c.p.w * c.p.c, yN = c.p.n * c.p.p * c.p.q * c.p.c;
    // exact-size buffers so AddressSanitizer sees any read past the end; unused bias/residual stay null
    dispatch.push(`  if (which == ${i}) {
    void* x = load("x.bin", ${xN * es}); void* w = load("w.bin", ${c.p.c * c.p.r * c.p.s * es});
    void* bias = ${c.epi.bias ? `load("bias.bin", ${c.p.c * 4})` : 'nullptr'};
    void* res = ${c.epi.residual ? `load("res.bin", ${yN * es})` : 'nullptr'};
    void* y = nullptr; if (posix_memalign(&y, 16, ${yN * es})) return 2; memset(y, 0xff, ${yN * es});
    for (unsigned b = 0; b < ${k.grid[0]}u; ++b) for (unsigned t = 0; t < ${k.block[0]}u; ++t) {
      blockIdx.x = b; threadIdx.x = t;
      case${i}::${k.name}((const ${T(c)}*)x, (const ${T(c)}*)w, (const float*)bias, (const ${T(c)}*)res, (${T(c)}*)y);
    }
    FILE* f = fopen("y.bin", "wb"); fwrite(y, 1, ${yN * es}, f); fclose(f);
    return 0;
  }`);
  });
  parts.push(`static void* load(const char* path, size_t n) {
  void* p = nullptr; if (posix_memalign(&p, 16, n)) exit(2);
  FILE* f = fopen(path, "rb"); if (!f || fread(p, 1, n, f) != n) { fprintf(stderr, "cannot read %s\\n", path); exit(2); }
  fclose(f); return p;
}
int main(int argc, char** argv) {
  const int which = atoi(argv[1]);
${dispatch.join('\n')}
  return 2;
}
`);
  const src = parts.join('\n');
  mkdirSync(EMU_DIR, { recursive: true });
  writeFileSync(join(EMU_DIR, 'dw_emu.cpp'), src);
  const exe = join(EMU_DIR, `dw_emu_${createHash('sha1').update(src).digest('hex').slice(0, 10)}`);
  execFileSync('g++', ['-std=c++17', '-O1', '-g', '-fno-strict-aliasing', '-Wno-unknown-pragmas', '-fsanitize=address,undefined',
    '-fno-sanitize-recover=all', '-o', exe, 'dw_emu.cpp'], { cwd: EMU_DIR, stdio: 'pipe' });
  return exe;
}

describe.skipIf(!hasGxx)('depthwise: generated CUDA run on the CPU', () => {
  beforeAll(() => { emuExe = buildEmulator(); }, 300_000);

  it.each(EMU_CASES.map((c, i) => [c.id, i] as const))('%s matches the float64 reference', (id, i) => {
    const c = EMU_CASES[i];
    const f32 = c.opts.dtype === 'float32';
    const { x, w, bias, res, ref } = reference(c);
    const dir = join(EMU_DIR, id);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'x.bin'), encode(x, f32));
    writeFileSync(join(dir, 'w.bin'), encode(w, f32));
    writeFileSync(join(dir, 'bias.bin'), encode(bias, true));
    writeFileSync(join(dir, 'res.bin'), encode(res, f32));
    execFileSync(emuExe, [String(i)], { cwd: dir, stdio: 'pipe', env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=0' } });
    const ob = readFileSync(join(dir, 'y.bin'));
    const dv = new DataView(ob.buffer, ob.byteOffset, ob.length);
    let maxErr = 0, maxRef = 0, unwritten = 0;
    for (let j = 0; j < ref.length; j++) {
      const v = f32 ? dv.getFloat32(j * 4, true) : getFloat16(dv, j * 2, true);
      if (Number.isNaN(v)) { unwritten++; continue; }
      maxErr = Math.max(maxErr, Math.abs(v - ref[j]));
      maxRef = Math.max(maxRef, Math.abs(ref[j]));
    }
    expect(unwritten).toBe(0);
    expect(maxErr / (maxRef || 1)).toBeLessThan(f32 ? 1e-5 : 1e-3);
  });
});
