// The target GPU's SM count (BuildOptions.smCount, default the device's, 132 without one) reaches the lowering:
// persistent wgmma grids, split-K candidates, the depthwise tile and attention blockM heuristics; engine files
// refit persistent grids on a GPU with another count and say so.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TsrtError } from '../src/errors.js';
import { lowerGraph, type Tactic } from '../src/codegen/lower.js';
import '../src/codegen/lowerings.js';
import '../src/codegen/lower_conv.js';
import { SM_COUNT, smCountField, tileConfigSpace } from '../src/codegen/tc_gemm.js';
import { chooseDepthwiseTile } from '../src/codegen/depthwise.js';
import { emitFlashAttention } from '../src/codegen/attention.js';
import { emitConvInt8, int8WgmmaConvSpace } from '../src/codegen/tc_int8.js';
import type { KernelSource } from '../src/codegen/kernel.js';
import { parseGraph } from '../src/ir/text.js';
import { inferShapes } from '../src/ir/infer.js';
import { upgradeGraph } from '../src/onnx/import.js';
import { newPassContext } from '../src/passes/pass.js';
import { optimize } from '../src/passes/pipeline.js';
import { build } from '../src/runtime/engine.js';
import { checkPlanDevice, fitPersistentGrids, readPlanHeader, type PlanHeader } from '../src/runtime/plan.js';

/** fp16 MatMul of 2048x1024 by 1024x1024 (16 x 8 = 128 tiles of 128x128, 256 of 128x64) and a 3x3 conv. */
function graph() {
  const vals = (n: number) => Array.from({ length: n }, (_, i) => ((i * 7919) % 2001) / 1000 - 1);
  const text = `graph g(%a: float32[2048,1024], %x: float32[8,64,32,32]) -> (%z: float32[2048,1024], %y: float32[8,128,32,32]) opset 13 {
    const %w: float32[1024,1024] = [${vals(1024 * 1024).join(', ')}]
    const %wc: float32[128,64,3,3] = [${vals(128 * 64 * 9).join(', ')}]
    %z = MatMul(%a, %w) name="mm"
    %y = Conv(%x, %wc) {pads=[1, 1, 1, 1]} name="conv"
  }`;
  return optimize(inferShapes(upgradeGraph(parseGraph(text))).graph, newPassContext({ optLevel: 2, fp16: true }));
}

describe('SM count of the target GPU', () => {
  beforeAll(() => { process.env.TSRT_WGMMA_MIN_TILES = '0'; });
  afterAll(() => { delete process.env.TSRT_WGMMA_MIN_TILES; });
  const g = graph();
  /** The persistent candidate with the most tiles (the 128x64 one), and every signature the tactic saw. */
  const lower = (smCount?: number) => {
    const keys: string[] = [];
    const pickPersistent: Tactic = (key, candidates) => {
      keys.push(key);
      return candidates.filter((c) => c.persistent).sort((a, b) => a.bm * a.bn - b.bm * b.bn)[0];
    };
    const steps = lowerGraph(g, { fp16: true, allowHost: false, arch: 'sm_90a', smCount, tactic: pickPersistent }).steps;
    return { keys, kernels: steps.flatMap((s) => (s.kind === 'kernel' && s.kernel.persistentTiles ? [s.kernel] : [])) };
  };

  it('sizes persistent wgmma grids as min(tiles, SMs): 114 on an H100 PCIe, 132 by default', () => {
    const d = lower(), pcie = lower(114), sxm = lower(132);
    expect(d.kernels.length).toBe(2);
    for (const k of d.kernels) {
      expect(k.persistentTiles).toBeGreaterThan(132);
      expect(k.grid).toEqual([132, 1, 1]);
    }
    expect(pcie.kernels.map((k) => k.grid[0])).toEqual([114, 114]);
    // the kernel text walks tiles with gridDim.x: the same source for every SM count
    expect(pcie.kernels.map((k) => k.source)).toEqual(d.kernels.map((k) => k.source));
    expect(sxm.kernels).toEqual(d.kernels);
    // problems for 132 SMs carry no smCount: timing-cache signatures stay as they were
    expect(sxm.keys).toEqual(d.keys);
    expect(d.keys.every((k) => !k.includes('smCount'))).toBe(true);
    expect(pcie.keys.every((k) => k.includes('"smCount":114'))).toBe(true);
    const small = lower(1024);
    expect(small.kernels.map((k) => k.grid[0])).toEqual(small.kernels.map((k) => k.persistentTiles));
  });

  it('sizes the int8 persistent wgmma grid the same way', () => {
    // ResNet-50 bs32 layer2 3x3: 32*28*28 = 25088 rows, 128 channels
    const p = { n: 32, h: 28, w: 28, c: 128, k: 128, r: 3, s: 3, strideH: 1, strideW: 1, padH: 1, padW: 1, dilH: 1, dilW: 1, p: 28, q: 28 };
    const epi = { out: 'int8' as const, outScale: 0.5, bias: true, act: 'relu' as const };
    const cfg = int8WgmmaConvSpace(p).find((c) => c.persistent);
    expect(cfg).toBeDefined();
    const d = emitConvInt8(p, epi, cfg), pcie = emitConvInt8({ ...p, ...smCountField(114) }, epi, cfg);
    expect(d.persistentTiles).toBeGreaterThan(132);
    expect([d.grid[0], pcie.grid[0]]).toEqual([132, 114]);
    expect(pcie.source).toBe(d.source);
  });

  it('offers split-K only while the tile grid leaves SMs idle', () => {
    // 120 CTAs of 128x128: under one wave of 132, a full wave of 114
    const shape = { m: 128 * 12, n: 128 * 10, k: 4096, batch: 1 };
    const split = (s: typeof shape & { smCount?: number }) => tileConfigSpace(s).filter((c) => c.bm === 128 && c.bn === 128 && (c.splitK ?? 1) > 1).length;
    expect(split(shape)).toBeGreaterThan(0);
    expect(split({ ...shape, ...smCountField(114) })).toBe(0);
    expect(smCountField(SM_COUNT)).toEqual({});
    expect(smCountField(undefined)).toEqual({});
  });

  it('steers the depthwise tile and the attention blockM defaults', () => {
    const dw = (n: number, smCount?: number) => chooseDepthwiseTile({ n, h: 56, w: 56, c: 144, k: 144, r: 3, s: 3, strideH: 1, strideW: 1, padH: 1, padW: 1, dilH: 1, dilW: 1, p: 56, q: 56, ...smCountField(smCount) }, 'nhwc', 8);
    // more SMs want more threads in flight: a small batch drops to one output per thread sooner
    const sizes = [1, 2, 4, 8, 16].map((n) => [dw(n), dw(n, 1024)].map((t) => t.tileH * t.tileW));
    expect(sizes.some(([a, b]) => b < a)).toBe(true);
    expect(sizes.every(([a, b]) => b <= a)).toBe(true);
    // 8 x 16 heads x 2 row blocks of 128 = 256 CTAs: two per SM on 114 SMs, not on 132
    const attn = (smCount?: number) => emitFlashAttention({ dtype: 'float16', b: 8, h: 16, sq: 256, sk: 256, d: 64, scale: 0.125, mask: 'none', smCount }).grid[0];
    expect(attn(114)).toBe(2);
    expect(attn()).toBe(4);
  });

  it('build() takes BuildOptions.smCount (132 without a GPU) and refuses a bad one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-sms-'));
    const e = await build({ graph: g, irVersion: 8, producer: 't', opsets: { '': 13 } }, { device: 'cpu', compileKernels: false, fp16: true });
    expect(e.built.smCount).toBe(SM_COUNT);
    e.dispose();
    const p = await build({ graph: g, irVersion: 8, producer: 't', opsets: { '': 13 } }, { device: 'cpu', compileKernels: false, fp16: true, smCount: 114 });
    expect(p.built.smCount).toBe(114);
    p.save(join(dir, 'e.plan'));
    expect(readPlanHeader(join(dir, 'e.plan')).build.sms).toBe(114);
    p.dispose();
    for (const smCount of [0, 1.5, -3, NaN]) {
      const err = await build({ graph: g, irVersion: 8, producer: 't', opsets: { '': 13 } }, { device: 'cpu', compileKernels: false, smCount }).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(TsrtError);
      expect((err as TsrtError).message).toMatch(/smCount .* is not a multiprocessor count/);
    }
  });

  it('engine files: persistent grids are refit to the loading GPU, and another SM count warns', () => {
    const k = (name: string, grid: [number, number, number], persistentTiles?: number) => ({ name, source: { name, source: '', grid, block: [384, 1, 1], sharedBytes: 0, params: [], ...(persistentTiles ? { persistentTiles } : {}) } as KernelSource });
    const ks = [k('p', [132, 1, 1], 256), k('few', [100, 1, 1], 100), k('plain', [512, 2, 1])];
    expect(fitPersistentGrids(ks, 114).map((x) => x.source.grid)).toEqual([[114, 1, 1], [100, 1, 1], [512, 2, 1]]);
    expect(fitPersistentGrids(ks, 142).map((x) => x.source.grid)).toEqual([[142, 1, 1], [100, 1, 1], [512, 2, 1]]);
    expect(ks[0].source.grid).toEqual([132, 1, 1]); // the stored kernels are not modified
    const h = { arch: 'sm_90a', nvrtc: [12, 4], hasCubins: true, build: { device: 'NVIDIA H100 80GB HBM3', sms: 132, model: 'm.onnx' } } as unknown as PlanHeader;
    const gpu = (name: string, sms: number) => ({ name, ccMajor: 9, ccMinor: 0, driverVersion: 12040, sms });
    const warnings = (hh: PlanHeader, dev: ReturnType<typeof gpu>) => { const w: string[] = []; checkPlanDevice('x.plan', hh, dev, (m) => w.push(m)); return w; };
    expect(warnings(h, gpu('NVIDIA H100 80GB HBM3', 132))).toEqual([]);
    expect(warnings(h, gpu('NVIDIA H100 PCIe', 114))[0]).toMatch(/lowered for 132 SMs, this one has 114 \(persistent grids are refit/);
    // a plan from before the count was recorded was lowered for 132
    const old = { ...h, build: { device: 'NVIDIA H100 80GB HBM3' } } as unknown as PlanHeader;
    expect(warnings(old, gpu('NVIDIA H100 80GB HBM3', 132))).toEqual([]);
    expect(warnings(old, gpu('NVIDIA H100 80GB HBM3', 114))[0]).toMatch(/lowered for 132 SMs, this one has 114/);
  });
});
