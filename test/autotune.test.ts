// Autotuning (src/runtime/autotune.ts, timing_cache.ts) and its lowering hook:
//  - the timing cache: round trip, foreign GPU/driver/NVRTC ignored with a warning, corrupt files refused;
//  - signatures: stable, and different for any problem field, epilogue, dtype or op kind;
//  - candidate choice per level with the timing function mocked, failures skipped, cache reuse, budget;
//  - the GPU timing path against a fake Cuda (buffers, parameter binding, cleanup, a dead context);
//  - lowering asks the tactic for every tensor-core conv/GEMM and uses its answer;
//  - NVRTC compiles of the candidates (needs libnvrtc, no GPU) and a real tuned build (needs a GPU).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TsrtError } from '../src/errors.js';
import { convConfigSpace, emitConv, type ConvProblem } from '../src/codegen/tc_conv.js';
import { configName, estimateTime, gemmConfigSpace, type Epilogue, type GemmProblem, type TileConfig } from '../src/codegen/tc_gemm.js';
import type { KernelSource } from '../src/codegen/kernel.js';
import { lowerGraph, type Tactic } from '../src/codegen/lower.js';
import { parseGraph } from '../src/ir/text.js';
import { inferShapes } from '../src/ir/infer.js';
import { upgradeGraph } from '../src/onnx/import.js';
import { newPassContext } from '../src/passes/pass.js';
import { optimize } from '../src/passes/pipeline.js';
import { build } from '../src/runtime/engine.js';
import { cudaAvailable } from '../src/runtime/device_runner.js';
import { nvrtcVersion } from '../src/runtime/nvrtc.js';
import { KernelCache } from '../src/runtime/kernel_cache.js';
import type { Cuda } from '../src/runtime/cuda.js';
import {
  Autotuner, ContextLost, candidatesForLevel, median, pickCandidates, problemInfo, type AutotunerOptions,
} from '../src/runtime/autotune.js';
import {
  defaultTimingCachePath, isKernelTacticKey, parseSignature, tacticSignature, TimingCache, type DeviceId, type TimingEntry,
} from '../src/runtime/timing_cache.js';
import type { Model, Tensor } from '../src/ir/types.js';
import { makeTensor } from '../src/ir/tensor.js';

const DEV: DeviceId = { name: 'NVIDIA H200', arch: 'sm_90', driver: 12080, nvrtc: '12.8' };
const dirs: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'tsrt-tune-')); dirs.push(d); return d; };
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

const conv3 = (n: number, h: number, c: number, k: number): ConvProblem =>
  ({ n, h, w: h, c, k, r: 3, s: 3, strideH: 1, strideW: 1, padH: 1, padW: 1, dilH: 1, dilW: 1, p: h, q: h });
const CONV = conv3(32, 28, 128, 128);
const EPI: Epilogue = { bias: true, act: 'relu' };
const CONV_KEY = tacticSignature('conv', CONV, EPI, 'float16');
const convEmit = (c: TileConfig) => emitConv(CONV, EPI, c);

const entry = (cfg: TileConfig, extra: Partial<TimingEntry> = {}): TimingEntry =>
  ({ config: cfg, ms: 0.5, candidates: [{ config: configName(cfg), ms: 0.5 }], ...extra });

// ---------------------------------------------------------------------------------------------------------------

describe('timing cache', () => {
  it('round-trips entries through the JSON file, and writes nothing when unchanged', () => {
    const path = join(tmp(), 'sub', 'timing-cache.json');
    const a = TimingCache.load(path, DEV);
    expect(a.size).toBe(0);
    expect(a.save()).toBeUndefined();
    expect(existsSync(path)).toBe(false);
    const cfg = convConfigSpace(CONV)[3];
    a.set(CONV_KEY, entry(cfg, { kernel: 'k1', level: 3, candidates: [{ config: configName(cfg), ms: 0.5 }, { config: 'x', ms: null, error: 'bad' }] }));
    expect(a.save()).toBeUndefined();
    const file = JSON.parse(readFileSync(path, 'utf8'));
    expect(file.version).toBe(2);
    expect(file.device).toEqual(DEV);
    expect(Object.keys(file.entries)).toEqual([CONV_KEY]);
    const b = TimingCache.load(path, DEV);
    expect(b.warnings).toEqual([]);
    expect(b.get(CONV_KEY)).toEqual(a.get(CONV_KEY));
    expect(b.get(CONV_KEY)!.candidates[1]).toEqual({ config: 'x', ms: null, error: 'bad' });
  });

  it('ignores a cache from another GPU, arch, driver or NVRTC with a warning', () => {
    const path = join(tmp(), 'tc.json');
    const a = TimingCache.load(path, DEV);
    a.set(CONV_KEY, entry(convConfigSpace(CONV)[0]));
    a.save();
    for (const other of [{ name: 'NVIDIA H100 80GB HBM3' }, { arch: 'sm_90a' }, { driver: 13000 }, { nvrtc: '12.4' }]) {
      const b = TimingCache.load(path, { ...DEV, ...other });
      expect(b.size).toBe(0);
      expect(b.warnings).toHaveLength(1);
      expect(b.warnings[0]).toContain(path);
      expect(b.warnings[0]).toContain('NVIDIA H200 (sm_90, driver 12080, NVRTC 12.8)');
      expect(b.warnings[0]).toMatch(/ignoring its 1 entries/);
    }
  });

  it('ignores another format version with a warning', () => {
    const path = join(tmp(), 'tc.json');
    writeFileSync(path, JSON.stringify({ version: 1, whatever: true }));
    const c = TimingCache.load(path, DEV);
    expect(c.size).toBe(0);
    expect(c.warnings[0]).toMatch(/format version 1/);
  });

  it('refuses a corrupt file with a USAGE error naming it and the way out', () => {
    const d = tmp();
    const good = { version: 2, device: DEV, entries: { k: entry(convConfigSpace(CONV)[0]) } };
    const bad: Array<[string, string, RegExp]> = [
      ['trunc', '{"version": 2, "dev', /bad JSON/],
      ['array', '[]', /not a JSON object/],
      ['noversion', JSON.stringify({ device: DEV, entries: {} }), /no version/],
      ['nodevice', JSON.stringify({ version: 2, entries: {} }), /device is not/],
      ['noentries', JSON.stringify({ version: 2, device: DEV }), /entries is not an object/],
      ['badcfg', JSON.stringify({ ...good, entries: { k: { ...good.entries.k, config: { bm: 'x' } } } }), /entry 'k': config.bm/],
      ['badms', JSON.stringify({ ...good, entries: { k: { ...good.entries.k, ms: 'fast' } } }), /ms is not a number/],
      ['badcands', JSON.stringify({ ...good, entries: { k: { ...good.entries.k, candidates: {} } } }), /candidates is not a list/],
    ];
    for (const [name, text, why] of bad) {
      const path = join(d, `${name}.json`);
      writeFileSync(path, text);
      let err: unknown;
      try { TimingCache.load(path, DEV); } catch (e) { err = e; }
      expect(err, name).toBeInstanceOf(TsrtError);
      expect((err as TsrtError).code).toBe('USAGE');
      expect((err as TsrtError).message).toContain(`timing cache ${path} is corrupt`);
      expect((err as TsrtError).message).toMatch(why);
      expect((err as TsrtError).hint).toMatch(new RegExp(`delete ${path}.*--no-timing-cache`));
    }
    writeFileSync(join(d, 'good.json'), JSON.stringify(good));
    expect(TimingCache.load(join(d, 'good.json'), DEV).size).toBe(1);
  });

  it('keeps an in-memory cache when the path is null, and defaults next to the kernel cache', () => {
    const c = TimingCache.load(null, DEV);
    c.set('k', entry(convConfigSpace(CONV)[0]));
    expect(c.save()).toBeUndefined();
    expect(defaultTimingCachePath()).toMatch(/timing-cache\.json$/);
    const old = process.env.TSRT_CACHE_DIR;
    process.env.TSRT_CACHE_DIR = '/x/y/kernels';
    try { expect(defaultTimingCachePath()).toBe('/x/y/timing-cache.json'); } finally {
      if (old === undefined) delete process.env.TSRT_CACHE_DIR; else process.env.TSRT_CACHE_DIR = old;
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('tactic signatures', () => {
  const GEMM: GemmProblem = { m: 64, n: 128, k: 256, bLayout: 'kn', batch: [2, 3], strideA: [3 * 64 * 256, 64 * 256], strideB: [0, 256 * 128], strideC: [3 * 64 * 128, 64 * 128], lda: 256, ldb: 128, ldc: 128 };

  it('is stable: field order, default epilogue fields and undefined fields do not matter', () => {
    const shuffled = Object.fromEntries(Object.entries(CONV).reverse()) as unknown as ConvProblem;
    expect(tacticSignature('conv', shuffled, { act: 'relu', bias: true }, 'float16')).toBe(CONV_KEY);
    expect(tacticSignature('conv', CONV, {}, 'float16'))
      .toBe(tacticSignature('conv', CONV, { act: 'none', alpha: 1, bias: false, residual: false, residualAfterAct: true }, 'float16'));
    expect(tacticSignature('gemm', { m: 1, n: 8, k: 8 }, {}, 'float16'))
      .toBe(tacticSignature('gemm', { m: 1, n: 8, k: 8, batch: undefined, lda: undefined }, {}, 'float16'));
    expect(CONV_KEY.startsWith('conv float16 b_relu {')).toBe(true);
  });

  it('parses back to the same problem and epilogue', () => {
    expect(parseSignature(CONV_KEY)).toEqual({ kind: 'conv', dtype: 'float16', problem: CONV, epi: EPI });
    const g = parseSignature(tacticSignature('gemm', GEMM, { alpha: 0.125 }, 'float16'))!;
    expect(g.problem).toEqual(GEMM);
    expect(g.epi).toEqual({ alpha: 0.125 });
    expect(parseSignature('attention float16 {}')).toBeUndefined();
    expect(parseSignature('conv float16 {not json')).toBeUndefined();
  });

  it('differs when any conv field, gemm field, epilogue field, dtype or kind differs', () => {
    const seen = new Set<string>([CONV_KEY]);
    const add = (s: string, what: string) => { expect(seen.has(s), what).toBe(false); seen.add(s); };
    for (const f of Object.keys(CONV) as (keyof ConvProblem)[]) add(tacticSignature('conv', { ...CONV, [f]: CONV[f] + 1 }, EPI, 'float16'), `conv ${f}`);
    const epis: Epilogue[] = [{}, { bias: true }, { residual: true }, { residual: true, residualAfterAct: true }, { bias: true, act: 'silu' },
      { bias: true, act: 'clip', actArgs: [0, 5] }, { bias: true, act: 'clip', actArgs: [0, 6] }, { bias: true, act: 'relu', alpha: 0.5 }];
    for (const e of epis) add(tacticSignature('conv', CONV, e, 'float16'), `epilogue ${JSON.stringify(e)}`);
    add(tacticSignature('conv', CONV, EPI, 'float32'), 'dtype');
    const g0 = tacticSignature('gemm', GEMM, {}, 'float16');
    add(g0, 'kind');
    const variants: Partial<GemmProblem>[] = [
      { m: 65 }, { n: 129 }, { k: 264 }, { bLayout: 'nk' }, { lda: 264 }, { ldb: 136 }, { ldc: 136 }, { batch: [3, 2] },
      { strideA: [0, 64 * 256] }, { strideB: [256 * 128, 0] }, { strideC: [3 * 64 * 136, 64 * 128] },
    ];
    for (const v of variants) add(tacticSignature('gemm', { ...GEMM, ...v }, {}, 'float16'), `gemm ${JSON.stringify(v)}`);
  });

  it('sizes scratch buffers from the problem', () => {
    const c = problemInfo(parseSignature(tacticSignature('conv', CONV, { bias: true, residual: true }, 'float16'))!);
    const y = 32 * 28 * 28 * 128 * 2;
    expect(c.buffers.x).toBeGreaterThanOrEqual(32 * 28 * 28 * 128 * 2);
    expect(c.buffers.w).toBeGreaterThanOrEqual(128 * 9 * 128 * 2);
    expect(c.buffers.bias).toBeGreaterThanOrEqual(128 * 4);
    expect(c.buffers.residual).toBeGreaterThanOrEqual(y);
    expect(c.buffers.y).toBeGreaterThanOrEqual(y);
    expect(c.shape).toEqual({ m: 32 * 28 * 28, n: 128, k: 9 * 128, batch: 1 });
    expect(problemInfo(parseSignature(CONV_KEY)!).buffers.residual).toBeUndefined();
    const g = problemInfo(parseSignature(tacticSignature('gemm', GEMM, {}, 'float16'))!);
    // A: batch strides reach (2-1)*3*64*256 + (3-1)*64*256, plus the last matrix
    expect(g.buffers.a).toBeGreaterThanOrEqual(2 * ((3 * 64 * 256) + 2 * 64 * 256 + 63 * 256 + 256));
    expect(g.buffers.b).toBeGreaterThanOrEqual(2 * (2 * 256 * 128 + 255 * 128 + 128));
    expect(g.buffers.c).toBeGreaterThanOrEqual(2 * (3 * 64 * 128 + 2 * 64 * 128 + 63 * 128 + 128));
    expect(g.bKN).toBe(true);
    expect(g.shape).toEqual({ m: 64, n: 128, k: 256, batch: 6 });
    const dense = problemInfo(parseSignature(tacticSignature('gemm', { m: 100, n: 48, k: 64 }, { bias: true }, 'float16'))!);
    expect(dense.buffers.a).toBeGreaterThanOrEqual(2 * 100 * 64);
    expect(dense.buffers.b).toBeGreaterThanOrEqual(2 * 48 * 64);
    expect(dense.buffers.c).toBeGreaterThanOrEqual(2 * 100 * 48);
    expect(() => problemInfo({ kind: 'conv', dtype: 'float32', problem: CONV, epi: {} })).toThrow(/fp16/);
  });
});

// ---------------------------------------------------------------------------------------------------------------

/** A tuner whose "GPU" takes `cost(configName)` ms per launch. */
function mockTuner(level: number, cost: (cfg: string, k: KernelSource) => number, extra: Partial<AutotunerOptions> = {}) {
  const calls: string[] = [];
  const logs: string[] = [];
  const byKernel = new Map<string, string>();
  const emitSpy = (emit: (c: TileConfig) => KernelSource) => (c: TileConfig) => { const k = emit(c); byKernel.set(k.name, configName(c)); return k; };
  const tuner = new Autotuner({
    arch: 'sm_90', cache: extra.cache ?? TimingCache.load(null, DEV), level, timeBudgetMs: 60_000, log: (m) => logs.push(m),
    timeKernel: (k) => { calls.push(byKernel.get(k.name)!); return cost(byKernel.get(k.name)!, k); },
    ...extra,
  });
  return { tuner, calls, logs, emitSpy };
}

describe('Autotuner (mocked timing)', () => {
  const space = convConfigSpace(CONV);
  const info = problemInfo(parseSignature(CONV_KEY)!);

  it('levels 0-2 keep the heuristic without timing anything', () => {
    for (const level of [0, 1, 2]) {
      const { tuner, calls } = mockTuner(level, () => 1);
      expect(tuner.choose(CONV_KEY, space, convEmit)).toBeUndefined();
      expect(calls).toEqual([]);
    }
    expect(candidatesForLevel(2)).toBe(0);
  });

  it('times the top 10 / 40 / all candidates by estimateTime (plus the heuristic pick) and returns the fastest', () => {
    for (const [level, n] of [[3, 10], [4, 40], [5, Infinity]] as const) {
      const picked = pickCandidates(level, info.shape, space, info.heuristic);
      const expected = Math.min(n, space.length);
      expect(picked.length === expected || picked.length === expected + 1, `level ${level}`).toBe(true);
      expect(picked.map(configName)).toContain(configName(info.heuristic!));
      // the fastest in this fake world is the last picked config
      const winner = configName(picked[picked.length - 1]);
      const { tuner, calls, emitSpy } = mockTuner(level, (c) => (c === winner ? 0.1 : 1 + c.length / 100));
      const got = tuner.choose(CONV_KEY, space, emitSpy(convEmit));
      expect(configName(got!)).toBe(winner);
      expect(space).toContain(got); // one of the candidate objects, never a new config
      expect(new Set(calls).size).toBe(calls.length);
      expect(calls.length).toBeLessThanOrEqual(picked.length);
      expect(calls.length).toBeGreaterThanOrEqual(Math.min(picked.length, 4));
      const e = tuner.cache.get(CONV_KEY)!;
      expect(configName(e.config)).toBe(winner);
      expect(e.ms).toBe(0.1);
      expect(e.level).toBe(level);
      expect(e.kernel).toBe(convEmit(got!).name);
      expect(e.candidates).toHaveLength(calls.length);
      expect(tuner.report()).toMatchObject({ timed: 1, cached: 0, heuristic: 0 });
    }
    // level 5 covers the whole space
    expect(pickCandidates(5, info.shape, space, info.heuristic)).toHaveLength(space.length);
  });

  it('spreads the slots over the best tiles by the model, each with its first pipeline variants', () => {
    const tile = (c: TileConfig) => `${c.bm}x${c.bn}_${c.warpsM}x${c.warpsN}_${c.splitK ?? 1}`;
    const best = Math.min(...space.map((c) => estimateTime(info.shape, c)));
    const top = pickCandidates(3, info.shape, space);
    expect(top).toHaveLength(10);
    expect(new Set(top.map(tile)).size).toBe(2); // 2 tiles x 5 pipelines, not one tile at 10 depths
    expect(estimateTime(info.shape, top[0])).toBe(best);
    expect(top.map((c) => `${c.bk}/${c.stages}`)).toEqual(['32/4', '64/3', '32/3', '64/4', '32/5', '32/4', '64/3', '32/3', '64/4', '32/5']);
    const l4 = pickCandidates(4, info.shape, space);
    expect(l4).toHaveLength(Math.min(40, space.length));
    expect(l4.slice(0, 2)).toEqual(top.slice(0, 2));
    // 4 tiles x their 8 mma.sync pipelines, topped up by estimate with further tiles
    expect(new Set(l4.slice(0, 32).map(tile)).size).toBe(4);
    expect(pickCandidates(3, info.shape, [...space, ...space])).toEqual(top); // duplicates ignored
    // split-K factors that round to the same split (no empty splits) are one kernel, picked once
    const small = conv3(2, 8, 64, 64);
    const si = problemInfo(parseSignature(tacticSignature('conv', small, EPI, 'float16'))!);
    for (const level of [3, 4, 5]) {
      const names = pickCandidates(level, si.shape, convConfigSpace(small), si.heuristic).map((c) => emitConv(small, EPI, c).name);
      expect(new Set(names).size, `level ${level}`).toBe(names.length);
    }
    // a tiny space still yields what there is
    expect(pickCandidates(4, info.shape, space.slice(0, 3))).toHaveLength(3);
  });

  it('skips a candidate whose compile (or launch) throws, and one whose emit throws', () => {
    const picked = pickCandidates(3, info.shape, space, info.heuristic).map(configName);
    const [broken, unemittable, best] = picked;
    const { tuner, logs, emitSpy } = mockTuner(3, (c) => {
      if (c === broken) throw new TsrtError('NVRTC', `kernel failed to compile\n  log: ...`);
      return c === best ? 0.2 : 0.3;
    });
    const emit = emitSpy((c) => { if (configName(c) === unemittable) throw new Error('grid too large'); return convEmit(c); });
    // make the broken one the fastest on paper: it must still lose
    const got = tuner.choose(CONV_KEY, space, emit);
    expect(configName(got!)).toBe(best);
    const e = tuner.cache.get(CONV_KEY)!;
    expect(e.candidates.find((c) => c.config === broken)).toMatchObject({ ms: null, error: 'kernel failed to compile' });
    expect(e.candidates.find((c) => c.config === unemittable)).toMatchObject({ ms: null, error: 'grid too large' });
    expect(logs.some((l) => l.includes(`skipping ${broken}`))).toBe(true);
  });

  it('keeps the heuristic (undefined) when every candidate fails, and caches nothing', () => {
    const { tuner } = mockTuner(3, () => { throw new Error('no'); });
    expect(tuner.choose(CONV_KEY, space, convEmit)).toBeUndefined();
    expect(tuner.cache.size).toBe(0);
    expect(tuner.report()).toMatchObject({ timed: 0, heuristic: 1 });
    const nan = mockTuner(3, () => NaN).tuner;
    expect(nan.choose(CONV_KEY, space, convEmit)).toBeUndefined();
  });

  it('answers repeated keys once, and reuses a valid timing-cache entry without timing', () => {
    const cache = TimingCache.load(null, DEV);
    const first = mockTuner(3, (c) => c.length, { cache });
    const a = first.tuner.choose(CONV_KEY, space, first.emitSpy(convEmit));
    const n = first.calls.length;
    expect(first.tuner.choose(CONV_KEY, space, convEmit)).toBe(a);
    expect(first.calls).toHaveLength(n);
    const second = mockTuner(3, () => 1, { cache });
    expect(second.tuner.choose(CONV_KEY, space, convEmit)).toBe(a);
    expect(second.calls).toEqual([]);
    expect(second.tuner.report()).toMatchObject({ timed: 0, cached: 1 });
    // a higher level searches more, so a level-3 entry is not good enough for level 4
    const deeper = mockTuner(4, () => 1, { cache });
    deeper.tuner.choose(CONV_KEY, space, deeper.emitSpy(convEmit));
    expect(deeper.calls.length).toBeGreaterThan(n);
    expect(cache.get(CONV_KEY)!.level).toBe(4);
  });

  it('re-times when the cached config left the space or its kernel source changed', () => {
    const cfg = space[0];
    const stale = TimingCache.load(null, DEV);
    stale.set(CONV_KEY, entry(cfg, { kernel: 'conv_tc_old_emitter_000000000000', level: 3 }));
    const t1 = mockTuner(3, () => 1, { cache: stale });
    t1.tuner.choose(CONV_KEY, space, t1.emitSpy(convEmit));
    expect(t1.calls.length).toBeGreaterThan(0);
    const gone = TimingCache.load(null, DEV);
    gone.set(CONV_KEY, entry({ ...cfg, bm: 512 }, { level: 3 }));
    const t2 = mockTuner(3, () => 1, { cache: gone });
    expect(space).toContain(t2.tuner.choose(CONV_KEY, space, t2.emitSpy(convEmit)));
    expect(t2.calls.length).toBeGreaterThan(0);
  });

  it('stops timing new kernels once the time budget is spent', () => {
    const { tuner, calls, logs } = mockTuner(3, () => 1, { timeBudgetMs: -1 });
    expect(tuner.choose(CONV_KEY, space, convEmit)).toBeUndefined();
    expect(calls).toEqual([]);
    expect(tuner.report().warnings[0]).toMatch(/budget/);
    expect(logs.some((l) => /budget/.test(l))).toBe(true);
  });

  it('keeps the heuristic for a signature it cannot read', () => {
    const { tuner, calls } = mockTuner(3, () => 1);
    expect(tuner.choose('attention float16 x', space, convEmit)).toBeUndefined();
    expect(calls).toEqual([]);
  });

  it('medians', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
});

// ---------------------------------------------------------------------------------------------------------------

interface FakeLaunch { fn: bigint; grid: readonly number[]; shared: number; args: bigint[] }

/** Enough of Cuda for GpuTimer: a clock that advances by a per-kernel cost at each launch. */
function fakeCuda(opts: { cost?: (name: string) => number; failLaunch?: string; sticky?: boolean } = {}) {
  let next = 0x1000n, clock = 0, dead = false;
  const live = new Set<bigint>(), modules = new Set<bigint>(), names = new Map<bigint, string>();
  const eventsAt = new Map<bigint, number>();
  const launches: FakeLaunch[] = [], maxShared: Array<[string, number]> = [], memsets: Array<[bigint, number, number]> = [];
  const mallocs: number[] = [];
  const id = () => (next += 0x1000n);
  const check = () => { if (dead) throw new TsrtError('CUDA', 'CUDA_ERROR_ILLEGAL_ADDRESS (700)'); };
  const cu = {
    makeCurrent() {}, synchronize: check,
    deviceInfo: () => ({ l2Bytes: 50 << 20 }),
    createStream: id, destroyStream() {}, syncStream: check,
    createEvent: id, destroyEvent() {},
    record(e: bigint) { eventsAt.set(e, clock); },
    elapsedMs(a: bigint, b: bigint) { check(); return eventsAt.get(b)! - eventsAt.get(a)!; },
    malloc(bytes: number) { const p = id(); live.add(p); mallocs.push(bytes); return p; },
    free(p: bigint) { live.delete(p); },
    memsetD8Async(p: bigint, v: number, bytes: number) { memsets.push([p, v, bytes]); },
    loadModule() { const m = id(); modules.add(m); return m; },
    unloadModule(m: bigint) { modules.delete(m); },
    getFunction(_m: bigint, name: string) { const f = id(); names.set(f, name); return f; },
    setMaxDynamicShared(fn: bigint, bytes: number) { maxShared.push([names.get(fn)!, bytes]); },
    launch(fn: bigint, grid: readonly number[], _block: unknown, shared: number, _s: bigint, params: { count: number; get(i: number): number | bigint }) {
      const name = names.get(fn)!;
      if (name === opts.failLaunch) {
        if (opts.sticky) { dead = true; return; }
        throw new TsrtError('CUDA', 'cuLaunchKernel failed: CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES (701)');
      }
      launches.push({ fn, grid, shared, args: Array.from({ length: params.count }, (_, i) => params.get(i) as bigint) });
      clock += opts.cost?.(name) ?? 1;
    },
  };
  return { cu: cu as unknown as Cuda, live, modules, launches, maxShared, memsets, mallocs, names };
}

describe('Autotuner GPU timing path (fake Cuda)', () => {
  const space = convConfigSpace(CONV);
  const image = new Uint8Array([1, 2, 3]);
  /** kernelCache stub: every module "compiles" to the same image unless it holds `bad`. */
  const stubCache = (bad?: string) => ({
    get: (source: string, name: string) => {
      if (bad && source.includes(bad)) throw new TsrtError('NVRTC', `kernel '${name}' failed to compile`);
      return { cubin: image, key: name, hit: false, from: 'compile' as const, log: '' };
    },
    compileAll: async () => [],
  }) as unknown as KernelCache;

  it('binds scratch buffers by parameter name, raises shared memory, zeroes workspaces and frees everything', () => {
    const f = fakeCuda({ cost: (n) => (n.includes('_sk') ? 0.05 : 0.2) });
    const small = conv3(1, 7, 512, 512); // batch 1, 7x7: split-K candidates
    const key = tacticSignature('conv', small, { bias: true, residual: true }, 'float16');
    const emit = (c: TileConfig) => emitConv(small, { bias: true, residual: true }, c);
    const tuner = new Autotuner({ cuda: f.cu, arch: 'sm_90', cache: TimingCache.load(null, DEV), level: 4, timeBudgetMs: 60_000, kernelCache: stubCache(), iterations: 5, warmup: 2 });
    const got = tuner.choose(key, convConfigSpace(small), emit)!;
    expect(got.splitK ?? 1).toBeGreaterThan(1); // the cheap ones in this fake world
    const kernels = new Set(f.launches.map((l) => f.names.get(l.fn)));
    expect(kernels.size).toBeGreaterThan(4);
    expect(f.launches.length).toBe(kernels.size * 7); // 2 warm-up + 5 timed each
    const info = problemInfo(parseSignature(key)!);
    const byName = new Map(convConfigSpace(small).map((c) => { const k = emit(c); return [k.name, k] as const; }));
    for (const l of f.launches) {
      const k = byName.get(f.names.get(l.fn)!)!;
      expect(l.args).toHaveLength(k.params.length);
      expect(l.args.every((a) => a !== 0n)).toBe(true); // bias and residual are used here, workspace when split
      expect(l.shared).toBe(k.sharedBytes);
      if (k.sharedBytes > 48 * 1024) expect(f.maxShared).toContainEqual([k.name, k.sharedBytes]);
    }
    expect(f.mallocs).toContain(info.buffers.x);
    expect(f.mallocs).toContain(100 << 20); // L2 flush buffer: 2 x 50 MiB
    expect(f.memsets.some(([, v]) => v === 0)).toBe(true); // workspace counters zeroed
    tuner.finish();
    expect(f.live.size).toBe(0);
    expect(f.modules.size).toBe(0);
  });

  it('passes null for bias/residual the epilogue does not read', () => {
    const f = fakeCuda();
    const tuner = new Autotuner({ cuda: f.cu, arch: 'sm_90', cache: TimingCache.load(null, DEV), level: 3, timeBudgetMs: 60_000, kernelCache: stubCache() });
    tuner.choose(tacticSignature('conv', CONV, {}, 'float16'), space, (c) => emitConv(CONV, {}, c));
    expect(f.launches.length).toBeGreaterThan(0);
    for (const l of f.launches) { expect(l.args[2]).toBe(0n); expect(l.args[3]).toBe(0n); }
    tuner.finish();
  });

  it('skips a candidate that fails to launch or compile and keeps going', () => {
    const picked = pickCandidates(3, problemInfo(parseSignature(CONV_KEY)!).shape, space);
    const failing = convEmit(picked[0]).name, uncompilable = convEmit(picked[1]).name;
    const f = fakeCuda({ failLaunch: failing, cost: (n) => (n === failing || n === uncompilable ? 0.01 : 1) });
    const tuner = new Autotuner({ cuda: f.cu, arch: 'sm_90', cache: TimingCache.load(null, DEV), level: 3, timeBudgetMs: 60_000, kernelCache: stubCache(uncompilable) });
    const got = tuner.choose(CONV_KEY, space, convEmit)!;
    expect([failing, uncompilable]).not.toContain(convEmit(got).name);
    const e = tuner.cache.get(CONV_KEY)!;
    expect(e.candidates.find((c) => c.config === configName(picked[0]))!.error).toMatch(/OUT_OF_RESOURCES/);
    expect(e.candidates.find((c) => c.config === configName(picked[1]))!.error).toMatch(/failed to compile/);
    tuner.finish();
    expect(f.live.size).toBe(0);
  });

  it('stops the build when a candidate kills the CUDA context', () => {
    const picked = pickCandidates(3, problemInfo(parseSignature(CONV_KEY)!).shape, space);
    const f = fakeCuda({ failLaunch: convEmit(picked[0]).name, sticky: true });
    const tuner = new Autotuner({ cuda: f.cu, arch: 'sm_90', cache: TimingCache.load(null, DEV), level: 3, timeBudgetMs: 60_000, kernelCache: stubCache() });
    expect(() => tuner.choose(CONV_KEY, space, convEmit)).toThrow(ContextLost);
    expect(() => tuner.finish()).not.toThrow();
  });
});

// ---------------------------------------------------------------------------------------------------------------

/** x -> fp16 Conv+Relu (tensor-core conv, c=32) and a MatMul against constant weights (tensor-core GEMM). */
function testModel(): Model {
  const vals = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (((i * 7919 + seed * 104729) % 2001) / 1000 - 1) * 0.05);
  const text = `graph g(%x: float32[4,32,12,12], %a: float32[64,128]) -> (%y: float32[4,48,12,12], %z: float32[64,64]) opset 13 {
    const %w: float32[48,32,3,3] = [${vals(48 * 32 * 9, 1).join(', ')}]
    const %b: float32[48] = [${vals(48, 2).join(', ')}]
    const %wm: float32[128,64] = [${vals(128 * 64, 3).join(', ')}]
    %c = Conv(%x, %w, %b) {pads=[1, 1, 1, 1]} name="conv"
    %y = Relu(%c) name="relu"
    %z = MatMul(%a, %wm) name="mm"
  }`;
  return { graph: inferShapes(upgradeGraph(parseGraph(text))).graph, irVersion: 8, producer: 'tsrt-test', opsets: { '': 13 } };
}

describe('lowering asks the tactic', () => {
  const graph = optimize(testModel().graph, newPassContext({ optLevel: 2, fp16: true }));

  it('for every tensor-core conv and GEMM, with the emitter\'s space, and uses the answer', () => {
    const asked: Array<{ key: string; n: number; pick: TileConfig }> = [];
    const tactic: Tactic = (key, candidates, emit) => {
      const pick = candidates[candidates.length - 1];
      expect(emit(pick).name).toContain(configName(pick));
      asked.push({ key, n: candidates.length, pick });
      return pick;
    };
    const tuned = lowerGraph(graph, { fp16: true, allowHost: true, tactic });
    expect(asked.map((a) => a.key.split(' ')[0]).sort()).toEqual(['conv', 'gemm']);
    const conv = parseSignature(asked.find((a) => a.key.startsWith('conv'))!.key)!;
    expect(conv.epi).toEqual({ bias: true, act: 'relu' });
    expect(asked.find((a) => a.key.startsWith('conv'))!.n).toBe(convConfigSpace(conv.problem as ConvProblem).length);
    const gemm = parseSignature(asked.find((a) => a.key.startsWith('gemm'))!.key)!;
    expect(asked.find((a) => a.key.startsWith('gemm'))!.n).toBe(gemmConfigSpace(gemm.problem as GemmProblem).length);
    const names = tuned.steps.flatMap((s) => (s.kind === 'kernel' ? [s.kernel.name] : []));
    for (const a of asked) expect(names.some((n) => n.includes(configName(a.pick)))).toBe(true);
    // no tactic, or a tactic that declines: the heuristic kernels
    const plain = lowerGraph(graph, { fp16: true, allowHost: true });
    const declined = lowerGraph(graph, { fp16: true, allowHost: true, tactic: () => undefined });
    const kn = (l: typeof plain) => l.steps.flatMap((s) => (s.kind === 'kernel' ? [s.kernel.name] : []));
    expect(kn(declined)).toEqual(kn(plain));
    expect(kn(tuned)).not.toEqual(kn(plain));
  });

  it('collect -> precompile -> choose through two lowering passes (mocked timing)', async () => {
    const keys: string[] = [];
    const tuner = new Autotuner({
      arch: 'sm_90', cache: TimingCache.load(null, DEV), level: 3, timeBudgetMs: 60_000,
      timeKernel: (k, key) => { keys.push(key); return k.name.length % 7 + 1; },
    });
    await tuner.precompile(() => lowerGraph(graph, { fp16: true, allowHost: true, tactic: tuner.collect }));
    expect(keys).toEqual([]);
    const lowered = lowerGraph(graph, { fp16: true, allowHost: true, tactic: tuner.choose });
    expect(new Set(keys).size).toBe(2);
    const r = tuner.finish();
    expect(r).toMatchObject({ timed: 2, cached: 0, heuristic: 0 });
    expect(lowered.steps.filter((s) => s.kind === 'kernel').length).toBeGreaterThanOrEqual(2);
  });
});

// ---------------------------------------------------------------------------------------------------------------

const nvrtcOk = (() => { try { nvrtcVersion(); return true; } catch { return false; } })();

describe.skipIf(!nvrtcOk)('Autotuner candidate compiles (NVRTC, no GPU)', () => {
  it('precompiles each candidate module once, choose() finds them in the cache, and a broken one is isolated', async () => {
    const small = conv3(2, 8, 64, 64);
    const key = tacticSignature('conv', small, EPI, 'float16');
    const space = convConfigSpace(small);
    const info = problemInfo(parseSignature(key)!);
    const picked = pickCandidates(3, info.shape, space, info.heuristic);
    const broken = configName(picked[0]);
    const emit = (c: TileConfig) => {
      const k = emitConv(small, EPI, c);
      return configName(c) === broken ? { ...k, source: k.source.replace('extern "C"', 'extern "C" this_is_not_cuda') } : k;
    };
    const kc = new KernelCache({ dir: null, arch: 'sm_90' });
    const images: Array<Uint8Array | undefined> = [];
    const tuner = new Autotuner({
      arch: 'sm_90', cache: TimingCache.load(null, DEV), level: 3, timeBudgetMs: 600_000, kernelCache: kc, parallel: 2,
      timeKernel: (_k, _key, image) => { images.push(image); return 1; },
    });
    await tuner.precompile(() => { tuner.collect(key, space, emit); });
    const compiledBefore = kc.stats.compiled;
    const got = tuner.choose(key, space, emit);
    expect(got).toBeDefined();
    expect(configName(got!)).not.toBe(broken);
    expect(images.length).toBe(picked.length - 1);
    for (const img of images) expect(img && img[0] === 0x7f && img[1] === 0x45).toBe(true); // ELF cubins
    // the module with the broken kernel failed as a whole; its good kernels were compiled one by one
    expect(kc.stats.compiled - compiledBefore).toBe(picked.length - 1);
    expect(tuner.cache.get(key)!.candidates.find((c) => c.config === broken)!.error).toMatch(/failed to compile/);
  });

  it('choose() compiles nothing that precompile already compiled', async () => {
    const small = conv3(2, 8, 64, 64);
    const key = tacticSignature('conv', small, { residual: true }, 'float16');
    const space = convConfigSpace(small);
    const emit = (c: TileConfig) => emitConv(small, { residual: true }, c);
    const kc = new KernelCache({ dir: null, arch: 'sm_90' });
    const tuner = new Autotuner({
      arch: 'sm_90', cache: TimingCache.load(null, DEV), level: 3, timeBudgetMs: 600_000, kernelCache: kc, parallel: 2,
      timeKernel: (_k, _key, image) => { expect(image?.[0]).toBe(0x7f); return 1; },
    });
    await tuner.precompile(() => { tuner.collect(key, space, emit); tuner.collect(key, space, emit); });
    expect(kc.stats.compiled).toBe(1); // one module of <= 10 candidates
    const hits = kc.stats.memoryHits;
    expect(tuner.choose(key, space, emit)).toBeDefined();
    expect(kc.stats.compiled).toBe(1);
    expect(kc.stats.memoryHits).toBe(hits + 1);
    expect(tuner.report()).toMatchObject({ timed: 1 });
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe.skipIf(!cudaAvailable())('tuned build on the GPU', () => {
  const feeds = (): Map<string, Tensor> => {
    const x = makeTensor('float32', [4, 32, 12, 12]), a = makeTensor('float32', [64, 128]);
    (x.data as Float32Array).forEach((_, i, d) => { d[i] = Math.sin(i * 0.37); });
    (a.data as Float32Array).forEach((_, i, d) => { d[i] = Math.cos(i * 0.11); });
    return new Map([['x', x], ['a', a]]);
  };

  it('gives the heuristic engine\'s outputs, fills the timing cache, and reuses it', async () => {
    const path = join(tmp(), 'timing-cache.json');
    const model = testModel();
    const base = await build(model, { fp16: true, optLevel: 2 });
    const ref = await base.run(feeds());
    expect(base.report.tuning).toMatchObject({ timed: 0, cached: 0 });
    base.dispose();
    for (const level of [3, 4]) { // (level 5 compiles ~250 candidates serially under vitest: too slow here)
      const tuned = await build(model, { fp16: true, optLevel: level, timingCache: path });
      expect(tuned.backend).toBe('cuda');
      expect(tuned.report.tuning.timed).toBe(2);
      const outs = await tuned.run(feeds());
      for (const [name, r] of ref) {
        const o = outs.get(name)!.data as Float32Array, e = r.data as Float32Array;
        let worst = 0;
        for (let i = 0; i < e.length; i++) worst = Math.max(worst, Math.abs(o[i] - e[i]) / (1e-2 + Math.abs(e[i])));
        expect(worst, `${name} at level ${level}`).toBeLessThan(2e-2);
      }
      tuned.dispose();
    }
    const file = JSON.parse(readFileSync(path, 'utf8'));
    // the tile-config signatures; the model's elementwise kernels add kernel-tactic entries beside them
    expect(Object.keys(file.entries).filter((k) => !isKernelTacticKey(k))).toHaveLength(2);
    for (const e of Object.values(file.entries) as TimingEntry[]) expect(e.ms).toBeGreaterThan(0);
    const again = await build(model, { fp16: true, optLevel: 4, timingCache: path });
    expect(again.report.tuning).toMatchObject({ timed: 0, cached: 2 });
    again.dispose();
  }, 300_000);

  it('refuses a corrupt timing cache at build time', async () => {
    const path = join(tmp(), 'bad.json');
    writeFileSync(path, '{');
    await expect(build(testModel(), { fp16: true, optLevel: 3, timingCache: path })).rejects.toThrow(/is corrupt[\s\S]*--no-timing-cache/);
  });
});
