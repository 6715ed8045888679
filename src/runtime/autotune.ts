// Measured tile-config choice for the tensor-core convs and GEMMs (TensorRT's tactic selection, tinygrad's BEAM).
// Lowering asks `choose(key, candidates, emit)` for every tensor-core kernel; at optLevel >= 3 the tuner compiles
// the most promising configs of the emitter's own search space (4 / 12 / all, ranked by estimateTime, plus the
// heuristic's pick: see pickCandidates), times each on the GPU and returns the fastest; results persist in the
// timing cache.
// Every candidate comes from convConfigSpace/gemmConfigSpace, so tuning changes speed, never what is computed;
// a candidate that fails to emit, compile or launch is skipped, and a kernel whose candidates all fail keeps
// the heuristic config.
//
// Build flow (engine.ts): a first lowering pass with `collect` records every request, `precompile` compiles all
// candidates in parallel helper processes into the kernel cache, then the real lowering pass calls `choose`,
// which finds its modules there (same packing, same sources) and only times.
import { availableParallelism } from 'node:os';
import { TsrtError } from '../errors.js';
import { packModules, type KernelSource, type ModuleSource } from '../codegen/kernel.js';
import type { Tactic } from '../codegen/lower.js';
import { configName, configProblems, estimateTime, type TileConfig, type TileShape } from '../codegen/tc_gemm.js';
import { asHalf, asInt8, halfShape, int8ConfigProblems } from '../codegen/tc_int8.js';
import { problemInfo, type ProblemInfo } from './tune_problems.js';
export { problemInfo, type ProblemInfo } from './tune_problems.js';
import type { Cuda } from './cuda.js';
import { asError, ContextLost, firstLine, GpuTimer } from './gpu_timer.js';
export { ContextLost, median } from './gpu_timer.js';
import { sharedCuda } from './device_runner.js';
import { KernelCache } from './kernel_cache.js';
import { nvrtcVersion } from './nvrtc.js';
import type { Lowered } from '../codegen/lower.js';
import { emptyFamilyCounts, tuneKernelSteps, type FamilyCounts } from './kernel_tuner.js';
import {
  defaultTimingCachePath, parseSignature, TimingCache, type CandidateTiming, type DeviceId,
} from './timing_cache.js';

export interface TuningReport {
  /** Kernel signatures measured in this build. */
  timed: number;
  /** Signatures answered by the timing cache. */
  cached: number;
  /** Signatures left to the heuristic (time budget spent, every candidate failed, unknown signature). */
  heuristic: number;
  /** Wall time spent tuning (collect pass, compiles, timing), ms. */
  ms: number;
  warnings: string[];
  /** [kernel tactics] LayerNorm / softmax / reduce / elementwise signatures, per family (not in the counts above,
   * which are the tensor-core kernels'); absent when none was tuned. */
  families?: Record<string, FamilyCounts>;
}

export interface AutotunerOptions {
  /** The GPU to time on; not needed when `timeKernel` is given. */
  cuda?: Cuda;
  /** NVRTC target of the candidates (the engine's). */
  arch: string;
  cache: TimingCache;
  /** optLevel: 0-2 heuristic only; 3 times 10 candidates, 4 times 40, 5 all (see pickCandidates). */
  level: number;
  /** Tuning stops starting new compiles past this much time; kernels not tuned by then keep the heuristic. */
  timeBudgetMs: number;
  log?: (msg: string) => void;
  /** Where candidate modules are compiled; default a KernelCache on the default folder when `cuda` is given,
   * none otherwise (then `timeKernel` gets no image). */
  kernelCache?: KernelCache | null;
  /** Replaces the GPU measurement (tests): the median ms of one launch; throwing marks the candidate failed. */
  timeKernel?: (kernel: KernelSource, key: string, image?: Uint8Array) => number;
  /** Timed launches per candidate (median taken), default 10; warm-up launches, default 3. */
  iterations?: number;
  warmup?: number;
  /** Overwrite a 64 MiB+ buffer before each timed launch so no candidate runs from a warm L2 (default true). */
  flushL2?: boolean;
  /** Compile processes for precompile (default: the CPU count, at most 16). */
  parallel?: number;
}

/** Default time budget per level: level 5 on ResNet-50 compiles thousands of candidates. */
export function defaultBudgetMs(level: number): number {
  return level >= 5 ? 600_000 : level === 4 ? 300_000 : 120_000;
}

/** How many candidates each level times (the heuristic's pick is added when missing). */
export function candidatesForLevel(level: number): number {
  return level >= 5 ? Infinity : level === 4 ? 40 : level === 3 ? 10 : 0;
}

/** Pipeline variants (bk / stages) in the order worth trying: estimateTime cannot tell pipeline depths apart,
 * so they are taken from this list (CUTLASS's usual sm80/sm90 mma.sync picks first). */
const PIPELINES = ['32/4', '64/3', '32/3', '64/4', '32/5', '64/2', '32/2', '64/5'];

/** The config as the kernel runs it: tcKernel never leaves a split empty, so e.g. splitK 8 over 18 k-tiles
 * runs as 6 splits of 3 (the same kernel as splitK 6). */
function effective(shape: TileShape, c: TileConfig): TileConfig {
  const sk = c.splitK ?? 1;
  if (sk <= 1) return c;
  const kTiles = Math.ceil(shape.k / c.bk);
  const eff = Math.ceil(kTiles / Math.ceil(kTiles / sk));
  return eff === sk ? c : { ...c, splitK: eff };
}

const tileOf = (c: TileConfig) => `${c.wgmma ? 'wg' : ''}${c.bm}x${c.bn}_${c.warpsM}x${c.warpsN}_${c.splitK ?? 1}`;
const pipeRank = (c: TileConfig) => { const i = PIPELINES.indexOf(`${c.bk}/${c.stages}`); return i < 0 ? PIPELINES.length : i; };

/** The configs a level times. estimateTime ranks tile shapes (bm, bn, warps, split-K) but gives every
 * pipeline depth of a tile the same time, so a plain top-N would spend every slot on one tile: instead the
 * best tiles by the model each get their first pipeline variants (level 3: 2 tiles x 5 variants, level 4:
 * 4 x 10; a wgmma tile has 5 variants per pipeline: persistent ws, ws or not x staged epilogue or not), topped
 * up by estimate to N; level 5 takes everything. The heuristic's pick is always added, so
 * tuning never does worse than not tuning (up to timing noise). Configs that make the same kernel (same
 * effective split-K) count once; input order breaks ties. */
export function pickCandidates(level: number, shape: TileShape, candidates: TileConfig[], heuristic?: TileConfig): TileConfig[] {
  const n = candidatesForLevel(level);
  if (n === 0) return [];
  const seen = new Map<string, TileConfig>();
  for (const c of candidates) { const k = configName(effective(shape, c)); if (!seen.has(k)) seen.set(k, c); }
  const unique = [...seen.values()];
  const scored = unique.map((c, i) => ({ c, i, t: estimateTime(shape, effective(shape, c)) }));
  const ranked = [...scored].sort((a, b) => (a.t - b.t) || (a.i - b.i));
  let out: TileConfig[];
  if (n === Infinity) {
    out = ranked.map((x) => x.c);
  } else {
    // 5 variants a tile at level 3: a wgmma tile's persistent ws, ws x staged-epilogue/not, plain x the same,
    // at its first pipeline
    const [tiles, pipes] = level === 3 ? [2, 5] : [4, 10];
    const groups = new Map<string, typeof scored>();
    for (const x of ranked) {
      const tile = tileOf(effective(shape, x.c));
      const g = groups.get(tile);
      if (g) g.push(x); else groups.set(tile, [x]);
    }
    out = [];
    for (const g of [...groups.values()].slice(0, tiles)) {
      out.push(...[...g].sort((a, b) => (pipeRank(a.c) - pipeRank(b.c)) || (a.t - b.t) || (a.i - b.i)).slice(0, pipes).map((x) => x.c));
    }
    for (const x of ranked) {
      if (out.length >= n) break;
      if (!out.includes(x.c)) out.push(x.c);
    }
    // Few k-tiles (K <= 256: ResNet-50's 1x1 convs) make a problem memory-bound, where the model's best tiles are
    // the largest ones and their persistent kernels cannot double-buffer the residual (two staging tiles do not
    // fit beside the stages). The best persistent tile of at most 128x128 is timed too: it can.
    if (shape.k <= 256) {
      const small = ranked.find((x) => x.c.persistent && x.c.bm * x.c.bn <= 128 * 128 && !out.includes(x.c));
      if (small) out.push(small.c);
    }
  }
  if (heuristic) {
    const h = seen.get(configName(effective(shape, heuristic)));
    if (h && !out.includes(h)) out.push(h);
  }
  return out;
}

/** Candidates worth timing: the valid ones picked by pickCandidates, int8 configs ranked as their fp16 twins. */
function pickValid(level: number, info: ProblemInfo, candidates: TileConfig[]): TileConfig[] {
  if (!info.int8) {
    const valid = candidates.filter((c) => !configProblems(c, info.bKN).length);
    return pickCandidates(level, info.shape, valid, info.heuristic);
  }
  const valid = candidates.filter((c) => !int8ConfigProblems(c).length);
  const twins = valid.map(asHalf);
  const pick = (family: TileConfig[]) => pickCandidates(level, halfShape(info.shape), family, info.heuristic && asHalf(info.heuristic));
  // The model ranks wgmma tiles above every mma.sync tile, so a joint pick would time wgmma only: each family is
  // picked on its own, so a failing or slow wgmma kernel still leaves tuned mma.sync tiles to choose from.
  const wg = twins.filter((t) => t.wgmma), mma = twins.filter((t) => !t.wgmma);
  const picked = wg.length && mma.length ? [...new Set([...pick(wg), ...pick(mma)])] : pick(twins);
  const out = picked.map((t) => valid[twins.indexOf(t)] ?? asInt8(t));
  // Memory-bound int8 layers (K <= 256: one or two k-tiles) ran fastest on the H100 in the all-threads staged
  // wgmma kernels of small tiles (several CTAs an SM at 58-90 registers): ResNet-50's layer1 residual 1x1 conv took
  // 0.240 ms as wg_m64n128k128_w4x1_s5_se, 0.265 ms as the model's pick, a persistent 128x128
  // (bench/results/2026-11-26-h100-session5.json). The model ranks those tiles low, so the best of them by the
  // model is timed too.
  if (info.shape.k <= 256 && out.length) {
    const hs = halfShape(info.shape);
    const small = valid.map((c, i) => ({ c, t: estimateTime(hs, twins[i]) }))
      .filter(({ c }) => c.wgmma && c.se && !c.ws && c.bm * c.bn <= 64 * 128 && !out.includes(c))
      .sort((a, b) => a.t - b.t)[0];
    if (small) out.push(small.c);
  }
  return out;
}

/** `layernorm 2 timed, 1 cached; elementwise 9 timed` for the build summary (TuningReport.families). */
export function familySummary(families: Record<string, FamilyCounts>): string {
  return Object.entries(families).map(([f, c]) => `${f} ${[c.timed && `${c.timed} timed`, c.cached && `${c.cached} cached`, c.heuristic && `${c.heuristic} default`].filter(Boolean).join(', ')}`).join('; ');
}

/** Short readable form of a signature for logs. */
export function describeKey(key: string): string {
  const sig = parseSignature(key);
  if (!sig) return key.slice(0, 120);
  const fields = Object.entries(sig.problem as unknown as Record<string, unknown>)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? `[${v.join(',')}]` : String(v)}`).join(' ');
  return `${key.slice(0, key.indexOf('{')).trim()} ${fields}`;
}

// ---- helpers --------------------------------------------------------------------------------------------------

/** The candidates' timings, after `failed` (those that did not compile), each failure logged through `skip` with its
 * reason, and the fastest that ran. Shared by the tile-config tuner here and the kernel-tactic tuner
 * (kernel_tuner.ts), which differ only in what they time and how a candidate is named. */
export function rankCandidates<E extends { kernel: KernelSource }>(entries: readonly E[], results: Map<string, number | Error>,
  label: (e: E) => string, failed: readonly CandidateTiming[], skip: (msg: string) => void): { timings: CandidateTiming[]; best?: E & { ms: number } } {
  const timings: CandidateTiming[] = [...failed];
  let best: (E & { ms: number }) | undefined;
  for (const e of entries) {
    const r = results.get(e.kernel.name) ?? new Error('not measured');
    if (r instanceof Error) {
      timings.push({ config: label(e), ms: null, error: firstLine(r) });
      skip(`skipping ${label(e)}: ${firstLine(r)}`);
      continue;
    }
    timings.push({ config: label(e), ms: r });
    if (!best || r < best.ms) best = { ...e, ms: r };
  }
  return { timings, best };
}

/** The log line of a timed pick: its time among the candidates, and the untimed choice's (`was`: 'heuristic' for
 * tile configs, 'default' for kernel tactics) when it was among them. */
export function pickSummary(pick: string, ms: number, timings: readonly CandidateTiming[], untimed: string | undefined, was: string): string {
  const h = untimed === undefined ? undefined : timings.find((t) => t.config === untimed);
  const vs = h && h.ms !== null ? `; ${was} ${h.config} ${h.ms.toFixed(4)} ms (${(h.ms / ms).toFixed(2)}x)` : '';
  return `${pick} ${ms.toFixed(4)} ms of ${timings.length} candidates${vs}`;
}

/** Candidate kernels go into modules of this many; precompile and choose must pack identically. */
const MODULE_KERNELS = 10; // level 3 times 10: one module

export function candidateModules(kernels: KernelSource[]): ModuleSource[] {
  return packModules(kernels, MODULE_KERNELS);
}

const now = () => performance.now();

interface Request { candidates: TileConfig[]; emit: (cfg: TileConfig) => KernelSource }

interface Plan {
  info: ProblemInfo;
  /** One entry per distinct kernel, in pick order. */
  entries: { cfg: TileConfig; kernel: KernelSource }[];
  /** Candidates that failed to emit. */
  failed: CandidateTiming[];
  /** Estimated seconds of the heuristic config: precompile does the biggest layers first. */
  estimate: number;
}

// ---- the tuner ------------------------------------------------------------------------------------------------

export class Autotuner {
  readonly stats = { timed: 0, cached: 0, heuristic: 0 };
  readonly familyStats = emptyFamilyCounts();
  readonly warnings: string[] = [];
  readonly level: number;
  readonly cache: TimingCache;
  private readonly o: AutotunerOptions;
  private readonly log: (msg: string) => void;
  private readonly kernelCache: KernelCache | null;
  private ms = 0;
  private timer?: GpuTimer;
  private budgetWarned = false;
  private readonly requests = new Map<string, Request>();
  private readonly plans = new Map<string, Plan>();
  private readonly prepared = new Set<string>();
  private readonly decided = new Map<string, TileConfig | undefined>();

  constructor(opts: AutotunerOptions) {
    this.o = opts;
    this.level = opts.level;
    this.cache = opts.cache;
    this.log = opts.log ?? (() => {});
    this.kernelCache = opts.kernelCache !== undefined ? opts.kernelCache : opts.cuda ? new KernelCache({ arch: opts.arch }) : null;
    for (const w of opts.cache.warnings) this.warn(w);
  }

  /** The engine's tuner: the shared CUDA context, the timing cache at `timingCache` (default path; false: in
   * memory only) keyed by this GPU, driver, NVRTC and target arch. Throws for a corrupt timing cache file. */
  static open(o: { arch: string; level: number; timingCache?: string | false; budgetMs?: number; cacheDir?: string; log?: (m: string) => void }): Autotuner {
    const cuda = sharedCuda();
    const info = cuda.deviceInfo();
    const [major, minor] = nvrtcVersion();
    const device: DeviceId = { name: info.name, arch: o.arch, driver: info.driverVersion, nvrtc: `${major}.${minor}` };
    const path = o.timingCache === false ? null : o.timingCache ?? defaultTimingCachePath();
    const cache = TimingCache.load(path, device);
    return new Autotuner({
      cuda, arch: o.arch, cache, level: o.level, timeBudgetMs: o.budgetMs ?? defaultBudgetMs(o.level), log: o.log,
      kernelCache: new KernelCache({ dir: o.cacheDir, arch: o.arch }),
    });
  }

  /** Tactic for a first lowering pass: records each request and keeps the heuristic. */
  readonly collect: Tactic = (key, candidates, emit) => {
    if (!this.requests.has(key)) this.requests.set(key, { candidates, emit });
    return undefined;
  };

  /** Runs `collectPass` (a lowering with `collect` as its tactic), then compiles every candidate that choose()
   * will time, biggest layers first, in parallel, until the time budget is spent. Only speeds choose() up:
   * whatever is not compiled here is compiled (or left to the heuristic) there. */
  async precompile(collectPass?: () => void): Promise<void> {
    const t0 = now();
    try {
      collectPass?.();
      const kc = this.kernelCache;
      if (!kc || this.level < 3) return;
      const todo: { key: string; plan: Plan }[] = [];
      for (const [key, req] of this.requests) {
        if (this.cachedChoice(key, req.candidates, req.emit)) continue;
        try {
          const plan = this.plan(key, req.candidates, req.emit);
          if (plan) todo.push({ key, plan });
        } catch (e) {
          this.log(`autotune ${describeKey(key)}: ${firstLine(e)}; keeping the heuristic config`);
        }
      }
      todo.sort((a, b) => b.plan.estimate - a.plan.estimate);
      const parallel = Math.max(1, this.o.parallel ?? Math.min(availableParallelism(), 16));
      const seen = new Set<string>();
      let batch: ModuleSource[] = [], keys: string[] = [];
      const flush = async () => {
        if (batch.length) {
          try {
            await kc.compileAll(batch.map((m) => ({ source: m.source, name: m.name })), { parallel });
          } catch (e) {
            this.log(`autotune: some candidate modules failed to compile (retried kernel by kernel when timed): ${firstLine(e)}`);
          }
        }
        for (const k of keys) this.prepared.add(k);
        batch = []; keys = [];
      };
      let modules = 0;
      for (const { key, plan } of todo) {
        if (this.overBudget(now() - t0)) { this.budgetSpent(); break; }
        for (const m of candidateModules(plan.entries.map((e) => e.kernel))) {
          if (seen.has(m.name)) continue;
          seen.add(m.name);
          batch.push(m);
        }
        keys.push(key);
        if (batch.length >= 4 * parallel) { modules += batch.length; await flush(); }
      }
      modules += batch.length;
      await flush();
      this.log(`autotune: precompiled ${modules} candidate modules for ${this.prepared.size} kernels in ${((now() - t0) / 1000).toFixed(1)} s`);
    } finally {
      this.requests.clear();
      this.ms += now() - t0;
    }
  }

  /** The tactic: a measured config from `candidates`, or undefined for the heuristic. */
  readonly choose: Tactic = (key, candidates, emit) => {
    if (this.level < 3 || !candidates.length) return undefined;
    if (this.decided.has(key)) return this.decided.get(key);
    const t0 = now();
    let pick: TileConfig | undefined;
    try {
      pick = this.decide(key, candidates, emit);
    } catch (e) {
      if (e instanceof ContextLost) throw e;
      this.log(`autotune ${describeKey(key)}: ${firstLine(e)}; keeping the heuristic config`);
      pick = undefined;
    } finally {
      this.ms += now() - t0;
    }
    if (!pick) this.stats.heuristic++;
    this.decided.set(key, pick);
    return pick;
  };

  /** [kernel tactics] `lowered` with its LayerNorm, softmax, reduction and elementwise kernels re-emitted with their
   * measured best tactic (kernel_tuner.ts), under the same budget, cache and timer; `tactics` gets each pick. */
  async tuneKernels(lowered: Lowered, tactics: Record<string, string>): Promise<Lowered> {
    const t0 = now();
    try {
      return await tuneKernelSteps(lowered, tactics, {
        level: this.level, cache: this.cache, kernelCache: this.kernelCache, log: this.log, counts: this.familyStats,
        parallel: Math.max(1, this.o.parallel ?? Math.min(availableParallelism(), 16)),
        overBudget: () => this.overBudget(now() - t0), budgetSpent: () => this.budgetSpent(),
        measure: (key, kernels, buffers) => this.measure(key, kernels, buffers),
      });
    } finally {
      this.ms += now() - t0;
    }
  }

  /** Saves the timing cache and frees the GPU scratch; returns the report. Safe to call more than once. */
  finish(): TuningReport {
    const w = this.cache.save();
    if (w) this.warn(w);
    this.timer?.dispose();
    this.timer = undefined;
    this.plans.clear();
    const r = this.report();
    this.log(`autotune: ${r.timed} kernels timed, ${r.cached} from the timing cache, ${r.heuristic} left to the heuristic, ${(r.ms / 1000).toFixed(1)} s`);
    if (r.families) this.log(`autotune: ${familySummary(r.families)}`);
    return r;
  }

  report(): TuningReport {
    const used = Object.entries(this.familyStats).filter(([, c]) => c.timed + c.cached + c.heuristic > 0);
    return { ...this.stats, ms: Math.round(this.ms), warnings: [...this.warnings], ...(used.length ? { families: Object.fromEntries(used.map(([f, c]) => [f, { ...c }])) } : {}) };
  }

  // ---- internals ----

  private warn(w: string): void {
    this.warnings.push(w);
    this.log(`autotune: ${w}`);
  }

  private overBudget(extra = 0): boolean { return this.ms + extra > this.o.timeBudgetMs; }

  private budgetSpent(): void {
    if (this.budgetWarned) return;
    this.budgetWarned = true;
    this.warn(`tuning time budget of ${(this.o.timeBudgetMs / 1000).toFixed(0)} s spent: the remaining kernels keep the heuristic config`);
  }

  /** The timing cache's answer when it is still valid: same level or higher, the config still in the space,
   * and it still emits the very kernel that was timed (the name hashes the source). */
  private cachedChoice(key: string, candidates: TileConfig[], emit: Request['emit']): TileConfig | undefined {
    const e = this.cache.get(key);
    if (!e || (e.level ?? 0) < this.level) return undefined;
    const name = configName(e.config as TileConfig); // conv/gemm keys hold tile configs (timing_cache.ts validates)
    const c = candidates.find((x) => configName(x) === name);
    if (!c) return undefined;
    if (e.kernel !== undefined) {
      try { if (emit(c).name !== e.kernel) return undefined; } catch { return undefined; }
    }
    return c;
  }

  private plan(key: string, candidates: TileConfig[], emit: Request['emit']): Plan | undefined {
    const known = this.plans.get(key);
    if (known) return known;
    const sig = parseSignature(key);
    if (!sig) { this.log(`autotune: cannot read signature '${key.slice(0, 80)}'; keeping the heuristic config`); return undefined; }
    const info = problemInfo(sig);
    const picked = pickValid(this.level, info, candidates);
    const entries: Plan['entries'] = [];
    const failed: CandidateTiming[] = [];
    const names = new Set<string>();
    for (const cfg of picked) {
      let kernel: KernelSource;
      try { kernel = emit(cfg); } catch (e) { failed.push({ config: configName(cfg), ms: null, error: firstLine(e) }); continue; }
      if (names.has(kernel.name)) continue; // e.g. two split-K factors that round to the same split
      names.add(kernel.name);
      entries.push({ cfg, kernel });
    }
    const estimate = !info.heuristic ? 0 : info.int8 ? estimateTime(halfShape(info.shape), asHalf(info.heuristic)) : estimateTime(info.shape, info.heuristic);
    const plan: Plan = { info, entries, failed, estimate };
    this.plans.set(key, plan);
    return plan;
  }

  private decide(key: string, candidates: TileConfig[], emit: Request['emit']): TileConfig | undefined {
    const cached = this.cachedChoice(key, candidates, emit);
    if (cached) {
      this.stats.cached++;
      this.log(`autotune ${describeKey(key)}: ${configName(cached)} (timing cache)`);
      return cached;
    }
    if (!this.prepared.has(key) && this.overBudget()) { this.budgetSpent(); return undefined; }
    const plan = this.plan(key, candidates, emit);
    this.plans.delete(key);
    if (!plan || !plan.entries.length) return undefined;
    const results = this.measure(key, plan.entries.map((e) => e.kernel), plan.info.buffers);
    const { timings, best } = rankCandidates(plan.entries, results, (e) => configName(e.cfg), plan.failed, (msg) => this.log(`autotune ${describeKey(key)}: ${msg}`));
    if (!best) { this.log(`autotune ${describeKey(key)}: no candidate ran; keeping the heuristic config`); return undefined; }
    this.cache.set(key, { config: best.cfg, ms: best.ms, candidates: timings, kernel: best.kernel.name, level: this.level });
    this.stats.timed++;
    this.log(`autotune ${describeKey(key)}: ${pickSummary(configName(best.cfg), best.ms, timings, plan.info.heuristic && configName(plan.info.heuristic), 'heuristic')}`);
    return best.cfg;
  }

  /** Median ms (or the failure) per kernel name. */
  private measure(key: string, kernels: KernelSource[], buffers: Record<string, number>): Map<string, number | Error> {
    const out = new Map<string, number | Error>();
    const images = this.kernelCache ? this.compile(kernels) : undefined;
    const runnable: { k: KernelSource; image?: Uint8Array }[] = [];
    for (const k of kernels) {
      const img = images?.get(k.name);
      if (img instanceof Error) out.set(k.name, img); else runnable.push({ k, image: img });
    }
    const valid = (ms: number) => (Number.isFinite(ms) && ms >= 0 ? ms : new Error(`measured ${ms} ms`));
    if (this.o.timeKernel) {
      for (const { k, image } of runnable) {
        try { out.set(k.name, valid(this.o.timeKernel(k, key, image))); } catch (e) { out.set(k.name, asError(e)); }
      }
      return out;
    }
    if (!this.o.cuda) throw new TsrtError('USAGE', 'Autotuner needs a cuda instance or a timeKernel function');
    this.timer ??= new GpuTimer(this.o.cuda, {
      iterations: Math.max(1, this.o.iterations ?? 10), warmup: Math.max(0, this.o.warmup ?? 3), flushL2: this.o.flushL2 ?? true,
    });
    const items = runnable.filter((r): r is { k: KernelSource; image: Uint8Array } => r.image !== undefined);
    for (const [name, r] of this.timer.time(buffers, items)) out.set(name, r instanceof Error ? r : valid(r));
    return out;
  }

  /** Module image per kernel name: one NVRTC program per module of candidates; when a module fails, its
   * kernels are compiled one by one so one bad candidate does not sink the others. */
  private compile(kernels: KernelSource[]): Map<string, Uint8Array | Error> {
    const kc = this.kernelCache!;
    const out = new Map<string, Uint8Array | Error>();
    for (const m of candidateModules(kernels)) {
      try {
        const img = kc.get(m.source, m.name).cubin;
        for (const n of m.kernels) out.set(n, img);
        continue;
      } catch (e) {
        if (m.kernels.length === 1) { out.set(m.kernels[0], asError(e)); continue; }
      }
      for (const n of m.kernels) {
        const single = candidateModules([kernels.find((k) => k.name === n)!])[0];
        try { out.set(n, kc.get(single.source, single.name).cubin); } catch (e) { out.set(n, asError(e)); }
      }
    }
    return out;
  }
}
