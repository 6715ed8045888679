// Tactic spaces of the memory-bound kernel families (codegen/kernel_tactics.ts) and their tuner
// (runtime/kernel_tuner.ts): the default tactic reproduces the kernels recorded before tactics existed byte for
// byte; pruning names why a tactic cannot run; every valid tactic compiles with NVRTC for sm_90 and, under the CPU
// emulator (kernel_emu.ts), gives the CPU reference's result; the tuner replaces kernels with the fastest
// candidate, keys the timing cache by family, and reuses it. GPU timing itself: scripts/gpu-tactics.mjs.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../src/ops/index.js';
import { getOp } from '../src/ops/registry.js';
import { makeTensor, toF64, fromF64 } from '../src/ir/tensor.js';
import type { Attr, DType, Tensor } from '../src/ir/types.js';
import { emitLayerNorm, emitReduce, emitSoftmax, type LayerNormProblem, type ReduceProblem, type SoftmaxProblem } from '../src/codegen/reduce.js';
import { emitElementwise, type EwProgram } from '../src/codegen/elementwise.js';
import { broadcastView, contiguousView, transposeView } from '../src/codegen/indexing.js';
import { packModules, type KernelSource } from '../src/codegen/kernel.js';
import { familyProblem, kernelTacticSignature, pickTactics, type FamilyProblem } from '../src/codegen/kernel_tactics.js';
import { tacticLabel, tunableOf, type KernelTactic, type Tunable } from '../src/codegen/tactics.js';
import type { Lowered } from '../src/codegen/lower.js';
import { Autotuner } from '../src/runtime/autotune.js';
import { build } from '../src/runtime/engine.js';
import { loadModel, loadTensorFile } from '../src/onnx/import.js';
import { KernelCache } from '../src/runtime/kernel_cache.js';
import { isKernelTacticKey, TimingCache, type DeviceId } from '../src/runtime/timing_cache.js';
import { compileCuda } from '../src/runtime/nvrtc.js';
import { loadNvrtc } from '../src/runtime/libs.js';
import { emulateKernels, hasGxx, type EmuBuffer } from './kernel_emu.js';
import { opNode, rng } from './helpers.js';

let nvrtc = true;
try { loadNvrtc(); } catch { nvrtc = false; }
if (!nvrtc) console.log('[autotune-tactics] NVRTC compile checks skipped: NVRTC is not installed');
if (!hasGxx) console.log('[autotune-tactics] emulator checks skipped: g++ is not installed');

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const tunable = (k: KernelSource): Tunable => { const u = tunableOf(k); expect(u, k.name).toBeDefined(); return u!; };
const family = (k: KernelSource, align = 16): FamilyProblem => familyProblem(tunable(k), { align });
const valid = (f: FamilyProblem) => f.space.filter((t) => !f.problems(t).length);

// ---- the default tactic ----------------------------------------------------------------------------------------

interface FixtureCase { family: string; problem: unknown; prefix?: string; name: string; sha256: string; grid: number[]; block: number[] }
const fixture = JSON.parse(readFileSync(new URL('./fixtures/kernel-tactics-defaults.json', import.meta.url), 'utf8')) as { cases: FixtureCase[] };

function emitCase(c: FixtureCase): KernelSource {
  switch (c.family) {
    case 'layernorm': return emitLayerNorm(c.problem as LayerNormProblem);
    case 'softmax': return emitSoftmax(c.problem as SoftmaxProblem);
    case 'reduce': return emitReduce(c.problem as ReduceProblem);
    default: return emitElementwise(c.problem as EwProgram, c.prefix);
  }
}

describe('default tactic', () => {
  it('emits the kernels recorded before tactics existed, byte for byte, and is what the heuristic names', () => {
    expect(fixture.cases.length).toBe(48);
    for (const c of fixture.cases) {
      const k = emitCase(c);
      expect(sha(k.source), `${c.family} ${c.name}`).toBe(c.sha256);
      expect([k.name, k.grid, k.block]).toEqual([c.name, c.grid, c.block]);
      const f = family(k);
      expect(f.family).toBe(c.family);
      expect(f.problems(f.heuristic), c.name).toEqual([]);
      expect(f.emit(f.heuristic).source).toBe(k.source);
    }
  });
});

// ---- pruning and level picks -----------------------------------------------------------------------------------

const LN = (dtype: DType, rows: number, cols: number, o: Partial<LayerNormProblem> = {}): LayerNormProblem =>
  ({ dtype, scaleDtype: 'float32', rows, cols, eps: 1e-5, hasScale: true, hasBias: true, ...o });
const bertLn = emitLayerNorm(LN('float16', 4096, 768));
const ew = (dims: number[], dtype: DType, n2 = dims): EwProgram => ({
  dims, inputs: [{ dtype, view: contiguousView(dims) }, { dtype, view: broadcastView(n2, dims) }],
  steps: [{ name: 't0', ctype: 'float', expr: 'a0 + a1' }], outputs: [{ dtype, value: '(t0 > 0 ? t0 : 0)' }],
});

describe('static pruning', () => {
  const reasons = (f: FamilyProblem, t: KernelTactic) => f.problems(t).join('; ');

  it('LayerNorm: block limits, vector width and alignment, register budget, idle threads, dtype', () => {
    const f = family(bertLn);
    expect(reasons(f, { tpr: 32, rpb: 8, vec: 8 })).toBe('');
    expect(reasons(f, { tpr: 32, rpb: 64, vec: 8 })).toMatch(/2048 threads exceeds the 1024-thread limit/);
    expect(reasons(f, { tpr: 8, rpb: 2, vec: 8 })).toMatch(/16 threads is less than a warp/);
    expect(reasons(f, { tpr: 48, rpb: 4, vec: 1 })).toMatch(/tpr 48 is not one of/);
    expect(reasons(f, { tpr: 64, rpb: 4, vec: 8 })).toMatch(/cols 768 is not a multiple of tpr x vec = 512/);
    expect(reasons(f, { tpr: 1024, rpb: 1, vec: 1 })).toMatch(/1024 threads per row for rows of 768/);
    expect(reasons(f, { tpr: 32, rpb: 8, vec: 3 })).toMatch(/vec 3 is not one of/);
    expect(reasons(family(bertLn, 8), { tpr: 32, rpb: 8, vec: 8 })).toMatch(/only 8-byte aligned, the 16-byte vectors/);
    expect(reasons(family(bertLn, 8), { tpr: 32, rpb: 8, vec: 4 })).toBe('');
    expect(reasons(family(emitLayerNorm(LN('float32', 64, 768))), { tpr: 32, rpb: 8, vec: 8 })).toMatch(/32 bytes, more than 16/);
    expect(reasons(family(emitLayerNorm(LN('float16', 64, 8192))), { tpr: 32, rpb: 8, vec: 8 })).toMatch(/256 values per thread/);
    expect(reasons(family(emitLayerNorm(LN('float64', 64, 256))), { tpr: 32, rpb: 8, vec: 2 })).toMatch(/float16\/bfloat16\/float32 rows, not float64/);
  });

  it('softmax, reductions and elementwise: the fields of their kernel shape, block limits, vector alignment', () => {
    const rows = family(emitSoftmax({ dtype: 'float16', outer: 1536, axis: 128, inner: 1, log: false }));
    expect(reasons(rows, { block: 256 })).toMatch(/flat-kernel fields/);
    expect(reasons(rows, { tpr: 32, rpb: 8, vec: 4 })).toMatch(/no vector form/);
    const flat = family(emitReduce({ inDtype: 'float32', outDtype: 'float32', outer: 8, r: 49, inner: 64, op: 'mean' }));
    expect(reasons(flat, { tpr: 32, rpb: 8 })).toMatch(/row-kernel fields/);
    expect(reasons(flat, { block: 2048 })).toMatch(/exceeds the 1024-thread limit/);
    expect(reasons(flat, { block: 128, vec: 2 })).toMatch(/no vector or multi-element form/);
    const e = family(emitElementwise(ew([6, 64], 'float16', [64])));
    expect(reasons(e, { block: 256, vec: 8, ept: 2 })).toBe('');
    expect(reasons(family(emitElementwise(ew([6, 64], 'float16', [64])), 4), { block: 256, vec: 4, ept: 1 })).toMatch(/only 4-byte aligned, the 8-byte vectors/);
    expect(reasons(family(emitElementwise(ew([5, 7], 'float32'))), { block: 256, vec: 2, ept: 1 })).toMatch(/35 elements are not a multiple of vec 2/);
    expect(reasons(family(emitElementwise(ew([4, 64], 'int64'))), { block: 256, vec: 4, ept: 1 })).toMatch(/4 elements of 8 bytes is more than 16/);
    expect(reasons(e, { block: 256, vec: 1, ept: 3 })).toMatch(/ept 3 is not one of/);
    expect(reasons(e, { tpr: 32, rpb: 8 })).toMatch(/row-kernel fields/);
  });

  it('levels: none below 3, the default plus 4 / 12 best estimates at 3 / 4, every valid tactic at 5', () => {
    for (const k of [bertLn, emitSoftmax({ dtype: 'float16', outer: 1536, axis: 128, inner: 1, log: false }), emitElementwise(ew([32, 128, 768], 'float16', [768]))]) {
      const f = family(k);
      for (const level of [0, 1, 2]) expect(pickTactics(f, level)).toEqual([]);
      const [l3, l4, l5] = [3, 4, 5].map((l) => pickTactics(f, l).map(tacticLabel));
      expect(l3[0]).toBe(tacticLabel(f.heuristic));
      expect(l3).toHaveLength(5);
      expect(l4).toHaveLength(13);
      expect(l4.slice(0, 5)).toEqual(l3);
      expect(new Set(l5)).toEqual(new Set(valid(f).map(tacticLabel)));
      for (const t of pickTactics(f, 5)) expect(f.problems(t)).toEqual([]);
      // every tactic is its own kernel (names hash the source), so the tuner never mistakes two for one
      expect(new Set(valid(f).map((t) => f.emit(t).name)).size).toBe(valid(f).length);
    }
  });
});

// ---- timing-cache keys and the tuner ---------------------------------------------------------------------------

const DEV: DeviceId = { name: 'NVIDIA H200', arch: 'sm_90', driver: 12080, nvrtc: '12.8' };

describe('timing-cache signatures', () => {
  it('name the family first, then dtype, problem and alignment', () => {
    const key = kernelTacticSignature(tunable(bertLn), { align: 16 });
    expect(key).toMatch(/^layernorm float16 \{/);
    expect(JSON.parse(key.slice(key.indexOf('{')))).toMatchObject({ family: 'layernorm', align: 16, problem: { cols: 768, rows: 4096, dtype: 'float16' } });
    expect(isKernelTacticKey(key)).toBe(true);
    expect(kernelTacticSignature(tunable(bertLn), { align: 8 })).not.toBe(key);
    const sm = kernelTacticSignature(tunable(emitSoftmax({ dtype: 'float16', outer: 4096, axis: 768, inner: 1, log: false })), { align: 16 });
    expect(sm).toMatch(/^softmax float16 /);
    const e1 = kernelTacticSignature(tunable(emitElementwise(ew([4, 64], 'float16'))), { align: 16 });
    const p2 = ew([4, 64], 'float16');
    p2.outputs[0].value = 't0';
    expect(e1).toMatch(/^elementwise float16 \{.*"family":"elementwise"/);
    expect(kernelTacticSignature(tunable(emitElementwise(p2)), { align: 16 })).not.toBe(e1); // another program, same shapes
    expect(isKernelTacticKey('conv float16 b {"epi":{},"problem":{}}')).toBe(false);
  });

  it('round-trip through the cache file; a broken tactic entry makes the file corrupt', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-tactics-'));
    const path = join(dir, 'tc.json');
    const c = TimingCache.load(path, DEV);
    const key = kernelTacticSignature(tunable(bertLn), { align: 16 });
    c.set(key, { config: { tpr: 64, rpb: 2, vec: 4 }, ms: 0.01, candidates: [{ config: 't64.r2.v4', ms: 0.01 }], level: 3 });
    c.save();
    expect(TimingCache.load(path, DEV).get(key)?.config).toEqual({ tpr: 64, rpb: 2, vec: 4 });
    const bad = JSON.parse(readFileSync(path, 'utf8'));
    bad.entries[key].config = { tpr: 0 };
    const p2 = join(dir, 'bad.json');
    writeFileSync(p2, JSON.stringify(bad));
    expect(() => TimingCache.load(p2, DEV)).toThrow(/corrupt.*config\.tpr is not a positive integer/);
    bad.entries[key].config = { bm: 64 };
    writeFileSync(p2, JSON.stringify(bad));
    expect(() => TimingCache.load(p2, DEV)).toThrow(/config\.bm is not a tactic field/);
  });
});

/** A lowered program of two LayerNorm layers (one kernel), a softmax and an elementwise kernel writing into a
 * concat buffer 8 bytes in (so its vector tactics are limited to 8 bytes). */
function loweredProgram(): Lowered {
  const ln = emitLayerNorm(LN('float16', 256, 768));
  const sm = emitSoftmax({ dtype: 'float16', outer: 512, axis: 128, inner: 1, log: false });
  const e = emitElementwise(ew([64, 128], 'float16', [128]), 'fused');
  const v = (name: string) => ({ kind: 'value' as const, name });
  const t = (dtype: DType, dims: number[]) => ({ dtype, dims });
  return {
    steps: [
      { kind: 'kernel', layer: 'ln1', op: 'LayerNormalization', kernel: ln, args: [v('x'), v('g'), v('b'), v('h')] },
      { kind: 'kernel', layer: 'ln2', op: 'LayerNormalization', kernel: ln, args: [v('h'), v('g'), v('b'), v('h2')] },
      { kind: 'kernel', layer: 'sm', op: 'Softmax', kernel: sm, args: [v('s'), v('p')] },
      { kind: 'alias', layer: 'cat', op: 'Concat', out: 'e', src: 'cat', offset: 8 },
      { kind: 'kernel', layer: 'add', op: 'Add', kernel: e, args: [v('ea'), v('eb'), v('e')] },
    ],
    consts: new Map(),
    types: new Map([['x', t('float16', [256, 768])], ['g', t('float32', [768])], ['b', t('float32', [768])], ['h', t('float16', [256, 768])],
      ['h2', t('float16', [256, 768])], ['s', t('float16', [512, 128])], ['p', t('float16', [512, 128])], ['ea', t('float16', [64, 128])],
      ['eb', t('float16', [128])], ['e', t('float16', [64, 128])], ['cat', t('float16', [64, 132])]]),
  };
}

/** Fake GPU: a deterministic time per kernel name, and the scratch it was asked to allocate. */
function fakeTimer() {
  const timed: { kernel: KernelSource; key: string }[] = [];
  const ms = (k: KernelSource) => 0.001 + parseInt(sha(k.name).slice(0, 6), 16) / 0xffffff;
  return { timed, ms, timeKernel: (k: KernelSource, key: string) => { timed.push({ kernel: k, key }); return ms(k); } };
}

describe('kernel tuner', () => {
  it('times each signature once, puts the fastest candidate in every step that runs it, and counts per family', async () => {
    const cache = TimingCache.load(null, DEV);
    const fake = fakeTimer();
    const tuner = new Autotuner({ arch: 'sm_90', cache, level: 3, timeBudgetMs: 60_000, kernelCache: null, timeKernel: fake.timeKernel });
    const before = loweredProgram(), tactics: Record<string, string> = {};
    const after = await tuner.tuneKernels(before, tactics);
    expect(before.steps.map((s) => s.kind === 'kernel' && s.kernel.name)).toEqual(loweredProgram().steps.map((s) => s.kind === 'kernel' && s.kernel.name));
    const keys = [...new Set(fake.timed.map((x) => x.key))];
    expect(keys.map((k) => k.split(' ')[0]).sort()).toEqual(['elementwise', 'layernorm', 'softmax']);
    expect(fake.timed.length).toBeLessThanOrEqual(15);
    for (const key of keys) {
      const cands = fake.timed.filter((x) => x.key === key).map((x) => x.kernel);
      const best = cands.reduce((a, b) => (fake.ms(b) < fake.ms(a) ? b : a));
      const i = after.steps.findIndex((s) => s.kind === 'kernel' && tunableOf(s.kernel)?.family === key.split(' ')[0]);
      expect((after.steps[i] as { kernel: KernelSource }).kernel.name).toBe(best.name);
      const entry = cache.get(key)!;
      expect(entry.kernel).toBe(best.name);
      expect(entry.level).toBe(3);
      expect(entry.candidates.map((c) => c.config)).toContain(tacticLabel(family(cands[0]).heuristic));
      expect(tactics[key]).toBe(tacticLabel(entry.config as KernelTactic));
    }
    const [s0, s1] = after.steps as { kernel: KernelSource }[];
    expect(s0.kernel.name).toBe(s1.kernel.name); // both LayerNorm layers take the one pick
    expect(after.steps[3]).toBe(before.steps[3]);
    // the elementwise kernel writes 8 bytes into its concat buffer: no 16-byte vectors were offered
    const ewKey = keys.find((k) => k.startsWith('elementwise'))!;
    expect(JSON.parse(ewKey.slice(ewKey.indexOf('{'))).align).toBe(8);
    for (const x of fake.timed.filter((t) => t.key === ewKey)) expect(x.kernel.source).not.toContain('tsrt_vec_<half, 8>');
    expect(tuner.report()).toMatchObject({ timed: 0, cached: 0, families: { layernorm: { timed: 1 }, softmax: { timed: 1 }, elementwise: { timed: 1 } } });

    // a second build reuses the cache and times nothing; a lower level does not trust a higher one's absence
    const again = fakeTimer();
    const t2 = new Autotuner({ arch: 'sm_90', cache, level: 3, timeBudgetMs: 60_000, kernelCache: null, timeKernel: again.timeKernel });
    const after2 = await t2.tuneKernels(loweredProgram(), {});
    expect(again.timed).toEqual([]);
    expect(after2.steps.map((s) => s.kind === 'kernel' && s.kernel.name)).toEqual(after.steps.map((s) => s.kind === 'kernel' && s.kernel.name));
    expect(t2.report().families).toMatchObject({ layernorm: { cached: 1 }, softmax: { cached: 1 }, elementwise: { cached: 1 } });
    const t4 = new Autotuner({ arch: 'sm_90', cache, level: 4, timeBudgetMs: 60_000, kernelCache: null, timeKernel: fakeTimer().timeKernel });
    await t4.tuneKernels(loweredProgram(), {});
    expect(t4.report().families).toMatchObject({ layernorm: { timed: 1 } });
  });

  it('levels 0-2 leave the kernels alone; failing candidates are skipped; a spent budget keeps the default', async () => {
    for (const level of [0, 2]) {
      const fake = fakeTimer();
      const t = new Autotuner({ arch: 'sm_90', cache: TimingCache.load(null, DEV), level, timeBudgetMs: 60_000, kernelCache: null, timeKernel: fake.timeKernel });
      const l = loweredProgram();
      expect(await t.tuneKernels(l, {})).toBe(l);
      expect(fake.timed).toEqual([]);
    }
    // every candidate but the default fails: the default is kept and recorded
    const cache = TimingCache.load(null, DEV);
    const defaults = new Set(loweredProgram().steps.flatMap((s) => (s.kind === 'kernel' ? [s.kernel.name] : [])));
    const t = new Autotuner({ arch: 'sm_90', cache, level: 3, timeBudgetMs: 60_000, kernelCache: null,
      timeKernel: (k) => { if (!defaults.has(k.name)) throw new Error('launch failed'); return 0.5; } });
    const l = await t.tuneKernels(loweredProgram(), {});
    expect(l.steps.map((s) => s.kind === 'kernel' && s.kernel.name)).toEqual(loweredProgram().steps.map((s) => s.kind === 'kernel' && s.kernel.name));
    for (const k of cache.keys()) expect(cache.get(k)!.candidates.filter((c) => c.error === 'launch failed').length).toBeGreaterThan(0);
    const broke = new Autotuner({ arch: 'sm_90', cache: TimingCache.load(null, DEV), level: 3, timeBudgetMs: 0, kernelCache: null, timeKernel: () => 1 });
    const kept = await broke.tuneKernels(loweredProgram(), {});
    expect(kept.steps.map((s) => s.kind === 'kernel' && s.kernel.name)).toEqual(loweredProgram().steps.map((s) => s.kind === 'kernel' && s.kernel.name));
    expect(broke.report().families).toMatchObject({ layernorm: { heuristic: 1 }, softmax: { heuristic: 1 }, elementwise: { heuristic: 1 } });
    expect(broke.report().warnings.join()).toMatch(/budget/);
    // a timer that cannot run at all (no GPU, no test timer) leaves every kernel as lowered, without failing the build
    const logs: string[] = [];
    const none = new Autotuner({ arch: 'sm_90', cache: TimingCache.load(null, DEV), level: 3, timeBudgetMs: 60_000, kernelCache: null, log: (m) => logs.push(m) });
    const same = await none.tuneKernels(loweredProgram(), {});
    expect(same.steps.map((s) => s.kind === 'kernel' && s.kernel.name)).toEqual(loweredProgram().steps.map((s) => s.kind === 'kernel' && s.kernel.name));
    expect(logs.join('\n')).toMatch(/needs a cuda instance or a timeKernel function; keeping the default tactic/);
  });

  it.skipIf(!nvrtc)('precompiles the candidates with NVRTC and times compiled images', async () => {
    const kc = new KernelCache({ dir: null, arch: 'sm_90' });
    const images: (Uint8Array | undefined)[] = [];
    const t = new Autotuner({ arch: 'sm_90', cache: TimingCache.load(null, DEV), level: 3, timeBudgetMs: 600_000, kernelCache: kc, parallel: 2,
      timeKernel: (_k, _key, image) => { images.push(image); return 1; } });
    await t.tuneKernels(loweredProgram(), {});
    expect(images.length).toBeGreaterThanOrEqual(9);
    for (const img of images) expect(img?.length).toBeGreaterThan(0);
    expect(kc.stats.compiled).toBeGreaterThan(0);
  }, 120_000);
});

describe('kernel tuner on a lowered model', () => {
  it.skipIf(!nvrtc)('BERT-tiny fp16: every tunable kernel gets a valid tactic at level 5, with the same parameters, and compiles', async () => {
    const dir = new URL('./fixtures/bert_tiny/', import.meta.url).pathname;
    const x = loadTensorFile(join(dir, 'test_data_set_0/input_0.pb'));
    const engine = await build(loadModel(join(dir, 'model.onnx')), { device: 'cpu', compileKernels: false, fp16: true, shapes: { input: x.dims } });
    const before = engine.lowered;
    const defaults = new Set(before.steps.flatMap((st) => (st.kind === 'kernel' ? [st.kernel.name] : [])));
    // the fake GPU prefers anything but the default, so every signature moves off it
    const t = new Autotuner({ arch: 'sm_90', cache: TimingCache.load(null, DEV), level: 5, timeBudgetMs: 600_000, kernelCache: null,
      timeKernel: (k) => (defaults.has(k.name) ? 1 : 0.5 + parseInt(sha(k.name).slice(0, 4), 16) / 0x20000) });
    const tactics: Record<string, string> = {};
    const after = await t.tuneKernels(before, tactics);
    const fams = t.report().families!;
    expect(fams.layernorm.timed).toBeGreaterThanOrEqual(1);
    expect(fams.elementwise?.timed ?? 0).toBeGreaterThanOrEqual(0);
    const changed: KernelSource[] = [];
    after.steps.forEach((st, i) => {
      const b = before.steps[i];
      expect(st.kind).toBe(b.kind);
      if (st.kind !== 'kernel' || b.kind !== 'kernel') return;
      expect(st.kernel.params).toEqual(b.kernel.params);
      expect(st.args).toBe(b.args);
      if (tunableOf(b.kernel)) { expect(st.kernel.name, b.layer).not.toBe(b.kernel.name); changed.push(st.kernel); }
      else expect(st.kernel).toBe(b.kernel);
    });
    expect(Object.keys(tactics)).toHaveLength(Object.values(fams).reduce((a, c) => a + c.timed, 0));
    for (const m of packModules([...new Map(changed.map((k) => [k.name, k])).values()], 64)) expect(compileCuda(m.source, { name: m.name, arch: 'sm_90' }).cubin.length).toBeGreaterThan(0);
  }, 120_000);
});

// ---- every tactic: NVRTC and the CPU emulator ------------------------------------------------------------------

const bytesOf = (t: Tensor) => { const d = t.data as unknown as ArrayBufferView; return Buffer.from(d.buffer, d.byteOffset, d.byteLength); };
function tensorOf(dtype: DType, dims: number[], b: Buffer): Tensor {
  const t = makeTensor(dtype, dims);
  const d = t.data as unknown as ArrayBufferView;
  Buffer.from(d.buffer, d.byteOffset, d.byteLength).set(b.subarray(0, d.byteLength));
  return t;
}
const cpu = (op: string, ins: Tensor[], attrs: Record<string, Attr> = {}): Tensor => getOp(op)!.cpu(opNode(op, ins.length, attrs), ins, { opset: 22, runGraph: () => [] })[0];
const int = (value: number): Attr => ({ kind: 'int', value });
const randT = (dtype: DType, dims: number[], seed: number, scale = 2) => {
  const r = rng(seed);
  return fromF64(dtype, dims, Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => (r() * 2 - 1) * scale));
};

interface TacticCase {
  id: string;
  /** The default kernel: its family gives the space. */
  kernel: KernelSource;
  inputs: Record<string, Tensor>;
  /** Output parameter -> the CPU reference. */
  ref: Record<string, Tensor>;
  /** Tolerance relative to 1 + |ref|. */
  tol: number;
}

function lnCase(id: string, p: LayerNormProblem, seed: number): TacticCase {
  const x = randT(p.dtype, [p.rows, p.cols], seed), g = randT(p.scaleDtype, [p.cols], seed + 1), b = randT(p.scaleDtype, [p.cols], seed + 2, 0.5);
  const ref = cpu('LayerNormalization', p.hasBias ? [x, g, b] : [x, g], { axis: int(-1), epsilon: { kind: 'float', value: p.eps } });
  return { id, kernel: emitLayerNorm(p), inputs: { x, g, b }, ref: { y: ref }, tol: p.dtype === 'float16' ? 2e-3 : 2e-5 };
}

function softmaxCase(id: string, p: SoftmaxProblem, seed: number): TacticCase {
  const x = randT(p.dtype, [p.outer, p.axis, p.inner], seed, 4);
  return { id, kernel: emitSoftmax(p), inputs: { x }, ref: { y: cpu(p.log ? 'LogSoftmax' : 'Softmax', [x], { axis: int(1) }) }, tol: p.dtype === 'float16' ? 2e-3 : 2e-5 };
}

function reduceCase(id: string, p: ReduceProblem, seed: number): TacticCase {
  const x = randT(p.inDtype, [p.outer, p.r, p.inner], seed);
  const op = { sum: 'ReduceSum', max: 'ReduceMax', mean: 'ReduceMean', argmax: 'ArgMax' }[p.op as string]!;
  const ref = p.op === 'argmax' ? cpu(op, [x], { axis: int(1), keepdims: int(0) })
    : cpu(op, [x, fromF64('int64', [1], [1])], { keepdims: int(0) });
  return { id, kernel: emitReduce(p), inputs: { x }, ref: { y: ref }, tol: p.inDtype === 'float16' ? 2e-3 : 2e-5 };
}

/** out0 = relu(a0 + broadcast a1) in `dtype`, and (two outputs) out1 = a0 * transpose(a1) stored as float16. */
function ewCase(id: string, dtype: DType, dims: number[], twoOutputs: boolean, seed: number): TacticCase {
  const a0 = randT(dtype, dims, seed);
  if (!twoOutputs) {
    const a1 = randT(dtype, [dims[dims.length - 1]], seed + 1);
    return { id, kernel: emitElementwise(ew(dims, dtype, [dims[dims.length - 1]]), 'fused'), inputs: { in0: a0, in1: a1 },
      ref: { out0: cpu('Relu', [cpu('Add', [a0, a1])]) }, tol: dtype === 'float16' ? 1e-3 : 1e-6 };
  }
  const a1 = randT(dtype, [dims[1], dims[0]], seed + 1);
  const p: EwProgram = {
    dims, inputs: [{ dtype, view: contiguousView(dims) }, { dtype, view: transposeView([dims[1], dims[0]], [1, 0]) }],
    steps: [], outputs: [{ dtype, value: 'a0 + a1' }, { dtype: 'float16', value: 'a0 * a1' }],
  };
  const t1 = cpu('Transpose', [a1], { perm: { kind: 'ints', value: [1, 0] } });
  return { id, kernel: emitElementwise(p, 'ew_two'), inputs: { in0: a0, in1: a1 },
    ref: { out0: cpu('Add', [a0, t1]), out1: cpu('Cast', [cpu('Mul', [a0, t1])], { to: int(10) }) }, tol: 1e-3 };
}

// Small problems whose rows are not a multiple of the rows per block and whose lengths exercise the tails.
const EMU_CASES: (() => TacticCase)[] = [
  () => lnCase('ln_f16_256', LN('float16', 13, 256), 1),
  () => lnCase('ln_f32_96_nobias', LN('float32', 9, 96, { hasBias: false }), 2),
  () => softmaxCase('softmax_rows_f16', { dtype: 'float16', outer: 11, axis: 50, inner: 1, log: false }, 3),
  () => softmaxCase('softmax_flat_log_f32', { dtype: 'float32', outer: 3, axis: 5, inner: 7, log: true }, 4),
  () => reduceCase('reduce_rows_sum_f32', { inDtype: 'float32', outDtype: 'float32', outer: 10, r: 70, inner: 1, op: 'sum' }, 5),
  () => reduceCase('reduce_rows_max_f16', { inDtype: 'float16', outDtype: 'float16', outer: 6, r: 40, inner: 1, op: 'max' }, 6),
  () => reduceCase('reduce_flat_mean_f16', { inDtype: 'float16', outDtype: 'float16', outer: 3, r: 6, inner: 11, op: 'mean' }, 7),
  () => reduceCase('argmax_flat_f32', { inDtype: 'float32', outDtype: 'int64', outer: 3, r: 5, inner: 7, op: 'argmax' }, 8),
  () => ewCase('ew_bcast_relu_f16', 'float16', [6, 64], false, 9),
  () => ewCase('ew_two_outputs_f32', 'float32', [8, 12], true, 10),
];

/** Every valid tactic of a kernel's family (the default first) and its kernel. */
function everyTactic(k: KernelSource): { t: KernelTactic; k: KernelSource }[] {
  const f = family(k);
  return [f.heuristic, ...valid(f).filter((t) => tacticLabel(t) !== tacticLabel(f.heuristic))].map((t) => ({ t, k: f.emit(t) }));
}

/** For the BERT-sized problems (NVRTC takes ~0.1 s a kernel): the default, and for every combination of the other
 * fields, the smallest and largest rows per block (row kernels) or block size (flat and elementwise), which only
 * change constants of the same code (a block's row count, strides, __launch_bounds__). */
function spanning(k: KernelSource): { t: KernelTactic; k: KernelSource }[] {
  const f = family(k);
  const groups = new Map<string, KernelTactic[]>();
  for (const t of valid(f)) {
    const g = t.tpr !== undefined ? `t${t.tpr}v${t.vec ?? 1}` : `v${t.vec ?? 1}e${t.ept ?? 1}`;
    groups.set(g, [...(groups.get(g) ?? []), t]);
  }
  const size = (t: KernelTactic) => t.rpb ?? t.block ?? 0;
  const picked = [f.heuristic, ...[...groups.values()].flatMap((ts) => [...new Set([ts.reduce((a, b) => (size(b) < size(a) ? b : a)), ts.reduce((a, b) => (size(b) > size(a) ? b : a))])])];
  const out = new Map(picked.map((t) => { const kk = f.emit(t); return [kk.name, { t, k: kk }]; }));
  return [...out.values()];
}

describe.skipIf(!nvrtc)('every valid tactic compiles with NVRTC for sm_90', () => {
  // the emulated problems plus BERT-base-sized ones (the register-resident LayerNorm at 768 and 1024)
  const big = [bertLn, emitLayerNorm(LN('float32', 4096, 1024)), emitLayerNorm(LN('bfloat16', 4096, 768, { scaleDtype: 'bfloat16' })), emitSoftmax({ dtype: 'float16', outer: 49152, axis: 128, inner: 1, log: false }),
    emitElementwise(ew([32, 128, 3072], 'float16', [3072]), 'fused'), emitReduce({ inDtype: 'float32', outDtype: 'float32', outer: 4096, r: 768, inner: 1, op: 'mean' })];
  it.each([...EMU_CASES.map((c) => c().id), 'bert_sized'])('%s', (id) => {
    const kernels = id === 'bert_sized' ? big.flatMap((k) => spanning(k).map((x) => x.k)) : everyTactic(EMU_CASES.map((c) => c()).find((c) => c.id === id)!.kernel).map((x) => x.k);
    expect(kernels.length).toBeGreaterThanOrEqual(5); // flat kernels: the 5 block sizes
    for (const m of packModules(kernels, 64)) {
      const r = compileCuda(m.source, { name: m.name, arch: 'sm_90' });
      expect(r.cubin.length, m.name).toBeGreaterThan(0);
    }
  }, 120_000);
});

describe.skipIf(!hasGxx)('every valid tactic gives the CPU reference under the emulator', () => {
  it('all cases, one emulator build', () => {
    const cases = EMU_CASES.map((c) => c());
    const tactics = cases.map((c) => everyTactic(c.kernel));
    const outs = emulateKernels('tactics', cases.map((c, i) => ({
      kernels: tactics[i].map((x) => x.k),
      bufs: [
        ...Object.entries(c.inputs).map(([param, t]) => ({ param, bytes: bytesOf(t) })),
        ...Object.entries(c.ref).map(([param, t]) => ({ param, bytes: Buffer.alloc(bytesOf(t).length), output: true })),
      ] as EmuBuffer[],
    })));
    let checked = 0;
    cases.forEach((c, i) => {
      for (const { t, k } of tactics[i]) {
        for (const [param, ref] of Object.entries(c.ref)) {
          const got = toF64(tensorOf(ref.dtype, ref.dims, outs[i].get(k.name)![param])), want = toF64(ref);
          let worst = 0;
          for (let j = 0; j < want.length; j++) worst = Math.max(worst, Number.isNaN(got[j]) ? Infinity : Math.abs(got[j] - want[j]) / (1 + Math.abs(want[j])));
          expect(worst, `${c.id} ${tacticLabel(t)} ${param}`).toBeLessThanOrEqual(c.tol);
        }
        checked++;
      }
    });
    expect(checked).toBeGreaterThanOrEqual(289);
  }, 300_000);
});
