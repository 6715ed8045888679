// Hopper wgmma conv/GEMM kernels (src/codegen/wgmma.ts):
//  - API contracts: config space and pruning, names, parameter order and launch geometry shared with the
//    mma.sync kernels, the arch decision;
//  - every tile shape of the config space compiles with nvcc for sm_90a (NVRTC 11.8 here cannot target
//    sm_90a) without register spills, with a sane register count and without ptxas serializing the wgmmas
//    (skipped with a printed reason when nvcc is missing);
//  - the CPU emulator test (codegen-wgmma-emu.test.ts) runs small cases against a float64 reference.
// The GPU itself is exercised by scripts/gpu-wgmma-check.mjs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { TsrtError } from '../src/errors.js';
import { packModules } from '../src/codegen/kernel.js';
import { emitConv, type ConvProblem } from '../src/codegen/tc_conv.js';
import { configName, configProblems, emitGemm, estimateTime, MAX_SMEM, smemBytes, type TileConfig } from '../src/codegen/tc_gemm.js';
import { emitConvTc, emitGemmTc, engineArch, wgmmaConfigSpace, wgmmaEnabled } from '../src/codegen/wgmma.js';
import { wgmmaAccRegs } from '../src/codegen/wgmma_config.js';
import { convConfigSpace } from '../src/codegen/tc_conv.js';
import { gemmConfigSpace, tileConfigSpace, type GemmProblem } from '../src/codegen/tc_gemm.js';
import { lowerGraph, type Tactic } from '../src/codegen/lower.js';
import '../src/codegen/lowerings.js';
import '../src/codegen/lower_conv.js';
import { parseGraph } from '../src/ir/text.js';
import { inferShapes } from '../src/ir/infer.js';
import { upgradeGraph } from '../src/onnx/import.js';
import { newPassContext } from '../src/passes/pass.js';
import { optimize } from '../src/passes/pipeline.js';
import { Autotuner, pickCandidates } from '../src/runtime/autotune.js';
import { parseSignature, TimingCache } from '../src/runtime/timing_cache.js';

const conv3 = (n: number, h: number, c: number, k: number, stride = 1): ConvProblem => {
  const p = Math.floor((h + 2 - 3) / stride) + 1;
  return { n, h, w: h, c, k, r: 3, s: 3, strideH: stride, strideW: stride, padH: 1, padW: 1, dilH: 1, dilW: 1, p, q: p };
};
const conv1 = (n: number, h: number, c: number, k: number, stride = 1): ConvProblem => {
  const p = Math.floor((h - 1) / stride) + 1;
  return { n, h, w: h, c, k, r: 1, s: 1, strideH: stride, strideW: stride, padH: 0, padW: 0, dilH: 1, dilW: 1, p, q: p };
};
const big = { m: 4096, n: 3072, k: 768, batch: 1 };
const wg = (bm: number, bn: number, warpsM: number, stages = 4, ws = false, se = false): TileConfig => ({ bm, bn, bk: 64, warpsM, warpsN: 1, stages, wgmma: true, ...(ws ? { ws } : {}), ...(se ? { se } : {}) });

describe('wgmma: configs and API', () => {
  it('lists only valid configs that fit shared memory and 128 accumulator registers', () => {
    const space = wgmmaConfigSpace(big);
    expect(space.length).toBeGreaterThanOrEqual(20);
    for (const c of space) {
      expect(configProblems(c), configName(c)).toEqual([]);
      expect(smemBytes(c)).toBeLessThanOrEqual(MAX_SMEM);
      expect(wgmmaAccRegs(c)).toBeLessThanOrEqual(128);
      expect(configName(c)).toMatch(/^wg_m\d+n\d+k64_w[48]x1_s[345](_ws)?(_se)?(_p)?$/);
    }
    const names = space.map(configName);
    expect(names).toContain('wg_m128n256k64_w8x1_s4');
    expect(names).toContain('wg_m128n256k64_w8x1_s4_ws');
    // every all-threads config also comes warp-specialized, every one without the staged epilogue also with it
    // (N % 8 == 0), and the persistent kernel only as ws + se
    for (const n of names.filter((x) => !x.includes('_ws'))) expect(names, n).toContain(n.replace(/(_se)?$/, '_ws$1'));
    for (const n of names.filter((x) => !/_se/.test(x))) expect(names, n).toContain(`${n}_se`);
    expect(names.filter((n) => n.endsWith('_p')).every((n) => n.endsWith('_ws_se_p'))).toBe(true);
    expect(names).toContain('wg_m128n256k64_w8x1_s3_ws_se_p');
    expect(names).not.toContain('wg_m128n256k64_w8x1_s4_ws_se_p'); // 4 x 48 KB + the 66 KB staging tile > 227 KB
    expect(wgmmaConfigSpace({ ...big, batch: 2 }).some((c) => c.persistent)).toBe(false); // batched: no persistent
    expect(wgmmaConfigSpace({ ...big, n: big.n + 4 }).some((c) => c.se)).toBe(false); // no 16-B rows: no se variant
    expect(names).not.toContain('wg_m128n256k64_w8x1_s5'); // 5 x 48 KB + 1 KB > 227 KB
    expect(configProblems(wg(128, 256, 4))).toEqual(['wgmma: 256 accumulator registers per thread (max 128)']);
    expect(configProblems({ ...wg(128, 128, 8), bk: 32 }).join()).toMatch(/bk must be 64/);
    expect(configProblems({ ...wg(128, 128, 8), splitK: 2 }).join()).toMatch(/split-K/);
    expect(configProblems(wg(128, 128, 8), true).join()).toMatch(/\[N,K\]/);
    expect(wgmmaConfigSpace(big, true)).toEqual([]); // B [K,N] stays on mma.sync
    // tiny problems drop tiles far larger than the problem
    expect(wgmmaConfigSpace({ m: 49, n: 64, k: 4608, batch: 1 }).every((c) => c.bm <= 64 * 2 + 64 && c.bn <= 192)).toBe(true);
  });

  it('ranks wgmma tiles ahead of mma.sync for big layers in the heuristic model', () => {
    const mma: TileConfig = { bm: 128, bn: 256, bk: 32, warpsM: 2, warpsN: 4, stages: 4 };
    expect(estimateTime(big, wg(128, 256, 8))).toBeLessThan(estimateTime(big, mma));
  });

  it('keeps the mma.sync kernel signature, so lowering swaps families by config', () => {
    const p = conv3(2, 56, 64, 64);
    const epi = { bias: true, residual: true, act: 'relu' as const };
    const k = emitConvTc(p, epi, wg(128, 128, 8));
    const ref = emitConv(p, epi);
    expect(k.params).toEqual(ref.params);
    expect(k.name).toMatch(/^conv_tc_3x3s1_wg_m128n128k64_w8x1_s4_br_relu_[0-9a-f]{12}$/);
    expect(k.block).toEqual([256, 1, 1]);
    expect(k.grid).toEqual([Math.ceil((2 * 56 * 56) / 128) * 1, 1, 1]);
    expect(k.sharedBytes).toBe(smemBytes(wg(128, 128, 8)));
    expect(k.source).not.toContain('staged epilogue');
    // the se tactic: the residual tile (128 rows of 128 + 8 halves) is prefetched beside the 4 stages (wgmma_epilogue.ts)
    const se = emitConvTc(p, epi, wg(128, 128, 8, 4, false, true));
    expect(se.name).toMatch(/^conv_tc_3x3s1_wg_m128n128k64_w8x1_s4_se_br_relu_[0-9a-f]{12}$/);
    expect(se.sharedBytes).toBe(smemBytes(wg(128, 128, 8)) + 128 * 136 * 2);
    expect(se.source).toContain('residual tile -> staging tile');
    expect(se.source).toContain('reinterpret_cast<uint4*>(y + off)');
    expect(k.workspaceBytes).toBe(0);
    expect(k.flops).toBe(ref.flops);
    expect(k.source).toContain('wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16');
    const g = emitGemmTc({ m: 300, n: 200, k: 328, batch: [3] }, { bias: true }, wg(64, 256, 4, 3));
    expect(g.params.map((x) => x.name)).toEqual(['a', 'b', 'bias', 'residual', 'c']);
    expect(g.grid).toEqual([Math.ceil(300 / 64) * Math.ceil(200 / 256), 3, 1]);
    // without a wgmma config the dispatchers are the mma.sync emitters
    expect(emitGemmTc({ m: 64, n: 64, k: 64 }).name).toBe(emitGemm({ m: 64, n: 64, k: 64 }).name);
  });

  it('allocates only the stages a problem fills, and stages the epilogue over them without a residual', () => {
    // K = 64: one k-tile, so one of the 3 stages (48 KB) + the 256 x (128 + 8) fp16 staging tile after it
    const p = conv1(256, 56, 64, 256);
    expect(emitConvTc(p, { bias: true, residual: true, act: 'relu' }, wg(256, 128, 8, 3)).sharedBytes).toBe(48 * 1024 + 1024);
    const res = emitConvTc(p, { bias: true, residual: true, act: 'relu' }, wg(256, 128, 8, 3, false, true));
    expect(res.sharedBytes).toBe(48 * 1024 + 256 * 136 * 2 + 1024);
    // no residual: the staging tile overlays the (larger of) pipeline and staging memory
    const plain = emitConvTc(p, { bias: true }, wg(256, 128, 8, 3, false, true));
    expect(plain.sharedBytes).toBe(256 * 136 * 2 + 1024);
    expect(plain.source).not.toContain('residual tile -> staging tile');
    // odd N keeps the fragment stores and the capped pipeline
    const odd = emitGemmTc({ m: 4096, n: 45, k: 64 }, { bias: true, residual: true }, wg(128, 64, 4, 3, false, true));
    expect(odd.sharedBytes).toBe(16 * 1024 + 8 * 1024 + 1024);
    expect(odd.source).not.toContain('staged epilogue');
    // warp-specialized kernels hold 1 KiB of static shared memory (their mbarriers): dynamic stays <= 226 KiB. The
    // persistent 64x256 s4 kernel with a double-buffered residual asked for 227 KiB and the H200 refused it.
    const p64 = emitGemmTc({ m: 4096, n: 768, k: 768 }, { bias: true, residual: true }, { ...wg(64, 256, 4, 4, true, true), persistent: true });
    expect(p64.sharedBytes).toBeLessThanOrEqual(227 * 1024 - 1024);
    for (const c of wgmmaConfigSpace(big)) {
      const k = emitGemmTc({ m: 4096, n: 768, k: 768 }, { bias: true, residual: true }, c);
      expect(k.sharedBytes, configName(c)).toBeLessThanOrEqual(227 * 1024 - (c.ws ? 1024 : 0));
    }
  });

  it('emits the warp-specialized variant with a producer warpgroup, mbarriers and the staged epilogue', () => {
    const p = conv3(2, 56, 64, 64);
    const epi = { bias: true, residual: true, act: 'relu' as const };
    const k = emitConvTc(p, epi, wg(128, 256, 8, 4, true));
    expect(k.params).toEqual(emitConv(p, epi).params);
    expect(k.name).toMatch(/^conv_tc_3x3s1_wg_m128n256k64_w8x1_s4_ws_br_relu_[0-9a-f]{12}$/);
    expect(k.block).toEqual([384, 1, 1]); // producer + 2 consumer warpgroups
    expect(k.grid).toEqual(emitConvTc(p, epi, wg(128, 256, 8, 4)).grid);
    expect(k.sharedBytes).toBe(smemBytes(wg(128, 256, 8, 4, true)));
    for (const s of ['cp.async.mbarrier.arrive.noinc', 'mbarrier.try_wait.parity', 'setmaxnreg.inc', 'named_bar_sync(1, 256)', 'reinterpret_cast<uint4*>(y + off)']) expect(k.source).toContain(s);
    // odd N: no 16-B stores, fragment stores instead; one consumer warpgroup: no setmaxnreg
    const odd = emitGemmTc({ m: 100, n: 45, k: 64 }, { bias: true }, wg(64, 64, 4, 3, true));
    expect(odd.block).toEqual([256, 1, 1]);
    expect(odd.source).not.toContain('reinterpret_cast<uint4*>(y + off)');
    expect(odd.source).not.toMatch(/setmaxnreg_(inc|dec)</);
    expect(configProblems({ ...wg(128, 128, 8), wgmma: false, warpsM: 4, warpsN: 2, ws: true }).join()).toMatch(/ws/);
    const prev = process.env.TSRT_WGMMA_WS;
    process.env.TSRT_WGMMA_WS = '0';
    try { expect(wgmmaConfigSpace(big).some((c) => c.ws)).toBe(false); } finally { if (prev === undefined) delete process.env.TSRT_WGMMA_WS; else process.env.TSRT_WGMMA_WS = prev; }
  });

  it('refuses wgmma configs in the mma.sync emitters and B [K,N] problems', () => {
    expect(() => emitConv(conv3(1, 8, 64, 64), {}, wg(128, 128, 8))).toThrow(/emitConvTc/);
    expect(() => emitGemm({ m: 64, n: 64, k: 64 }, {}, wg(128, 128, 8))).toThrow(/emitGemmTc/);
    expect(() => emitGemmTc({ m: 64, n: 64, k: 64, bLayout: 'kn' }, {}, wg(128, 128, 8))).toThrow(TsrtError);
    expect(() => emitGemmTc({ m: 64, n: 64, k: 64 }, {}, wg(128, 256, 4))).toThrow(/accumulator registers/);
  });

  it('targets sm_90a on Hopper with NVRTC 12+, and only then offers wgmma', () => {
    expect(engineArch('sm_90', [13, 0])).toBe('sm_90a');
    expect(engineArch('sm_90', [12, 4])).toBe('sm_90a');
    expect(engineArch('sm_90', [11, 8])).toBe('sm_90');
    expect(engineArch('sm_80', [13, 0])).toBe('sm_80');
    expect(engineArch('sm_100', [13, 0])).toBe('sm_100');
    expect(wgmmaEnabled('sm_90a')).toBe(process.env.TSRT_WGMMA !== '0');
    expect(wgmmaEnabled('sm_90')).toBe(false);
    expect(wgmmaEnabled(undefined)).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------
// Lowering and autotuning

/** x -> fp16 Conv+Relu (tensor-core conv) and a MatMul against constant weights (tensor-core GEMM). */
function testGraph() {
  const vals = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (((i * 7919 + seed * 104729) % 2001) / 1000 - 1) * 0.05);
  const text = `graph g(%x: float32[4,32,16,16], %a: float32[256,128]) -> (%y: float32[4,64,16,16], %z: float32[256,64]) opset 13 {
    const %w: float32[64,32,3,3] = [${vals(64 * 32 * 9, 1).join(', ')}]
    const %b: float32[64] = [${vals(64, 2).join(', ')}]
    const %wm: float32[128,64] = [${vals(128 * 64, 3).join(', ')}]
    %c = Conv(%x, %w, %b) {pads=[1, 1, 1, 1]} name="conv"
    %y = Relu(%c) name="relu"
    %z = MatMul(%a, %wm) name="mm"
  }`;
  return optimize(inferShapes(upgradeGraph(parseGraph(text))).graph, newPassContext({ optLevel: 2, fp16: true }));
}

describe('wgmma: lowering and autotuning', () => {
  // the test graph is small: let its problems take wgmma configs (below one wave of 128x128 tiles they don't)
  beforeAll(() => { process.env.TSRT_WGMMA_MIN_TILES = '0'; });
  afterAll(() => { delete process.env.TSRT_WGMMA_MIN_TILES; });
  const graph = testGraph();

  it('keeps problems under one wave of 128x128 tiles on mma.sync', () => {
    delete process.env.TSRT_WGMMA_MIN_TILES;
    try {
      expect(wgmmaConfigSpace({ m: 49, n: 2048, k: 4608, batch: 1 })).toEqual([]);        // ResNet-50 bs1 layer4
      expect(wgmmaConfigSpace({ m: 4096, n: 768, k: 768, batch: 1 }).length).toBeGreaterThan(0); // BERT bs32
    } finally { process.env.TSRT_WGMMA_MIN_TILES = '0'; }
  });

  const kernelNames = (arch?: string, tactic?: Tactic) =>
    lowerGraph(graph, { fp16: true, allowHost: true, arch, tactic }).steps.flatMap((s) => (s.kind === 'kernel' ? [s.kernel.name] : []));

  it('offers wgmma configs to the tactic only on sm_90a, and lowers the pick with the wgmma kernel', () => {
    const spaces = new Map<string, { n: number; wg: number }>();
    const pickWg: Tactic = (key, candidates, emit) => {
      spaces.set(key.split(' ')[0], { n: candidates.length, wg: candidates.filter((c) => c.wgmma).length });
      const pick = candidates.find((c) => c.wgmma) ?? candidates[0];
      expect(emit(pick).name).toContain(configName(pick));
      return pick;
    };
    const tuned = kernelNames('sm_90a', pickWg);
    const conv = [...spaces.entries()].find(([k]) => k === 'conv')![1];
    expect(conv.wg).toBeGreaterThan(0);
    expect(spaces.get('gemm')!.wg).toBeGreaterThan(0);
    expect(tuned.filter((n) => /_wg_m\d+n\d+k64_w[48]x1_s\d/.test(n))).toHaveLength(2);
    // sm_90 (or no arch): the mma.sync space only, and without a tactic the heuristic kernels either way
    const seen: Array<{ key: string; n: number }> = [];
    kernelNames('sm_90', (key, c) => { seen.push({ key, n: c.length }); expect(c.some((x) => x.wgmma)).toBe(false); return undefined; });
    for (const { key, n } of seen) {
      const sig = parseSignature(key)!;
      expect(n).toBe(sig.kind === 'conv' ? convConfigSpace(sig.problem as ConvProblem).length : gemmConfigSpace(sig.problem as GemmProblem).length);
    }
    expect(kernelNames('sm_90a')).toEqual(kernelNames(undefined));
  });

  it('puts a warp-specialized variant next to the all-threads one in the tiles a level times', () => {
    for (const shape of [big, { m: 4096, n: 768, k: 3072, batch: 1 }, { m: 3136, n: 64, k: 576, batch: 1 }]) {
      for (const level of [3, 4]) {
        const picked = pickCandidates(level, shape, [...tileConfigSpace(shape), ...wgmmaConfigSpace(shape)]).filter((c) => c.wgmma);
        expect(picked.some((c) => c.ws), `${JSON.stringify(shape)} L${level}`).toBe(true);
        expect(picked.some((c) => !c.ws), `${JSON.stringify(shape)} L${level}`).toBe(true);
      }
    }
  });

  it('times a double-buffering persistent tile (<= 128x128) for few-k-tile problems, not for the others', () => {
    const k64 = { m: 256 * 56 * 56, n: 256, k: 64, batch: 1 }; // ResNet-50 layer1 conv3
    const space = [...tileConfigSpace(k64), ...wgmmaConfigSpace(k64)];
    const picked = pickCandidates(3, k64, space);
    expect(picked.some((c) => c.persistent && c.bm * c.bn <= 128 * 128), picked.map(configName).join()).toBe(true);
    expect(picked).toHaveLength(11);
    expect(pickCandidates(3, big, [...tileConfigSpace(big), ...wgmmaConfigSpace(big)])).toHaveLength(10);
  });

  it('times wgmma candidates next to the heuristic at level 3 and keeps the fastest', async () => {
    const timed: string[] = [];
    const tuner = new Autotuner({
      arch: 'sm_90a', cache: TimingCache.load(null, { name: 'NVIDIA H200', arch: 'sm_90a', driver: 13000, nvrtc: '13.0' }), level: 3,
      timeBudgetMs: 60_000, kernelCache: null,
      // mocked GPU: wgmma kernels twice as fast as mma.sync ones
      timeKernel: (k) => { timed.push(k.name); return /_wg_/.test(k.name) ? 0.5 : 1; },
    });
    await tuner.precompile(() => lowerGraph(graph, { fp16: true, allowHost: true, arch: 'sm_90a', tactic: tuner.collect }));
    const names = lowerGraph(graph, { fp16: true, allowHost: true, arch: 'sm_90a', tactic: tuner.choose }).steps
      .flatMap((s) => (s.kind === 'kernel' ? [s.kernel.name] : []));
    tuner.finish();
    expect(timed.some((n) => /_wg_/.test(n))).toBe(true);
    expect(timed.some((n) => !/_wg_/.test(n))).toBe(true); // the heuristic's mma.sync kernel is always timed
    expect(names.filter((n) => /_wg_/.test(n))).toHaveLength(2);
  });
});

// ---------------------------------------------------------------------------------------------------
// nvcc sm_90a compile checks

const NVCC = process.env.NVCC ?? 'nvcc';
const nvccReason = (() => {
  try { execFileSync(NVCC, ['--version'], { stdio: 'pipe' }); return undefined; } catch (e) { return `${NVCC} not runnable: ${(e as Error).message.split('\n')[0]}`; }
})();
if (nvccReason) console.warn(`codegen-wgmma: skipping the sm_90a compile checks (${nvccReason})`);

/** Every tile shape once (stages: the deepest that fits) for a ResNet 3x3 conv with the full epilogue, a 1x1
 * stride-2 conv and a BERT GEMM, plus odd tails and every stage count on one tile. */
function compileKernels() {
  const tiles = new Map<string, TileConfig>();
  for (const c of wgmmaConfigSpace(big)) tiles.set(`${c.bm}x${c.bn}x${c.warpsM}${c.ws ? 'ws' : ''}${c.se ? 'se' : ''}${c.persistent ? 'p' : ''}`, c); // last = deepest
  const ks = [];
  for (const c of tiles.values()) {
    ks.push(emitConvTc(conv3(256, 28, 128, 128), { bias: true, residual: true, act: 'relu' }, c));
    ks.push(emitGemmTc({ m: 4096, n: 3072, k: 768 }, { bias: true, act: 'gelu_erf' }, c));
  }
  for (const stages of [3, 4, 5]) ks.push(emitConvTc(conv1(256, 56, 256, 512, 2), { bias: true }, wg(128, 128, 8, stages)));
  ks.push(emitGemmTc({ m: 333, n: 45, k: 24, batch: [2], ldc: 45 }, { bias: true, residual: true, act: 'silu' }, wg(128, 64, 4, 3)));
  ks.push(emitConvTc({ ...conv3(3, 17, 16, 24), k: 17 }, { bias: true, residual: true, residualAfterAct: true, act: 'hardswish' }, wg(64, 64, 4, 3)));
  // ws: the im2col-heaviest producer (3x3, 256-row tiles) and the odd-N fragment-store fallback
  ks.push(emitConvTc(conv3(256, 56, 64, 64), { bias: true, residual: true, act: 'relu' }, wg(256, 128, 8, 4, true)));
  ks.push(emitGemmTc({ m: 333, n: 45, k: 24, batch: [2], ldc: 45 }, { bias: true, residual: true, act: 'silu' }, wg(128, 64, 8, 3, true)));
  return ks;
}

describe.skipIf(!!nvccReason)('wgmma: nvcc sm_90a compile', () => {
  it('compiles every tile shape without spills or serialized wgmmas', () => {
    const kernels = compileKernels();
    const dir = join(tmpdir(), `tsrt-wgmma-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    // two modules compiled in parallel: the machine has 2 cores
    const mods = packModules(kernels, Math.ceil(kernels.length / 2));
    const logs = mods.map((m) => {
      const cu = join(dir, `${m.name}.cu`);
      writeFileSync(cu, m.source);
      return new Promise<string>((resolve, reject) => {
        import('node:child_process').then(({ execFile }) => execFile(NVCC,
          ['-cubin', '-arch=sm_90a', '-std=c++17', '-Xptxas', '-v', '-o', join(dir, `${m.name}.cubin`), cu],
          { maxBuffer: 64 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`${cu}: ${stderr}`)) : resolve(stdout + stderr))));
      });
    });
    return Promise.all(logs).then((all) => {
      const log = all.join('\n');
      expect(log).not.toMatch(/serialized|warning/i);
      expect(log).not.toMatch(/C7519/); // no warpgroup.arrive injected by ptxas ahead of a wgmma
      for (const k of kernels) {
        const at = log.indexOf(`Compiling entry function '${k.name}'`);
        expect(at, k.name).toBeGreaterThanOrEqual(0);
        const sect = log.slice(at, at + 600);
        expect(sect, k.name).toMatch(/ 0 bytes spill stores, 0 bytes spill loads/);
        const regs = Number(/Used (\d+) registers/.exec(sect)?.[1]);
        const acc = wgmmaAccRegs(k.config!);
        expect(regs, k.name).toBeGreaterThanOrEqual(acc); // the accumulators stayed in registers
        expect(regs, k.name).toBeLessThanOrEqual(255);
        // setmaxnreg (2 consumer warpgroups) is safe only when the CTA's pool is the full 384 x 168: the
        // producer's 120 + consumers' 184 are sized against it (wgmma_ws.ts)
        if (k.config!.ws && k.block[0] === 384) expect(regs, k.name).toBe(168);
      }
    });
  }, 240_000);
});
