// Measured tactics for the memory-bound kernels (LayerNorm, softmax, reductions, elementwise chains): after
// lowering, every kernel an emitter registered as tunable (codegen/tactics.ts) is re-emitted with the candidate
// tactics of its family (codegen/kernel_tactics.ts), the candidates are compiled in parallel, timed on the GPU
// with the tile-config timer (CUDA events, warm-up, median, L2 flush: autotune.ts), and the fastest replaces
// the kernel in its steps. Parameters never change between tactics, so the steps' arguments and the memory plan
// stay as lowered. Results persist in the timing cache under the family's signature.
import { DTYPE_SIZE, size } from '../ir/tensor.js';
import type { KernelSource } from '../codegen/kernel.js';
import type { Lowered, Step } from '../codegen/lower.js';
import { familyProblem, pickTactics, type FamilyProblem } from '../codegen/kernel_tactics.js';
import { KERNEL_FAMILIES, tacticLabel, tunableOf, type KernelFamily, type KernelTactic } from '../codegen/tactics.js';
import { candidateModules, pickSummary, rankCandidates } from './autotune.js';
import { ContextLost, firstLine } from './gpu_timer.js';
import type { KernelCache } from './kernel_cache.js';
import type { CandidateTiming, TimingCache } from './timing_cache.js';

export interface FamilyCounts { timed: number; cached: number; heuristic: number }

export function emptyFamilyCounts(): Record<KernelFamily, FamilyCounts> {
  return Object.fromEntries(KERNEL_FAMILIES.map((f) => [f, { timed: 0, cached: 0, heuristic: 0 }])) as Record<KernelFamily, FamilyCounts>;
}

/** What the tuner lends (autotune.ts Autotuner.tuneKernels): its cache, compiler, timer, budget and counters. */
export interface KernelTunerHost {
  level: number;
  cache: TimingCache;
  kernelCache: KernelCache | null;
  parallel: number;
  log(msg: string): void;
  counts: Record<KernelFamily, FamilyCounts>;
  /** True once the tuning time budget is spent (then the rest keep their default tactic). */
  overBudget(): boolean;
  budgetSpent(): void;
  /** Median ms (or the failure) per kernel name, on scratch buffers of these byte sizes per parameter name. */
  measure(key: string, kernels: KernelSource[], buffers: Record<string, number>): Map<string, number | Error>;
}

interface Job {
  f: FamilyProblem;
  buffers: Record<string, number>;
  /** Indices of the steps running this kernel. */
  steps: number[];
}

interface Plan { entries: { t: KernelTactic; kernel: KernelSource }[]; failed: CandidateTiming[] }

const lowBit = (n: number) => (n === 0 ? 16 : Math.min(16, n & -n));
/** Scratch for a parameter bound to null (LayerNorm without bias): never read, but the timer binds every one. */
const NULL_BYTES = 256;

/** Scratch sizes and pointer alignment of a kernel step, from the lowered types and alias offsets; undefined when
 * an argument is not a buffer (such kernels are not tuned). */
function stepBuffers(s: Step & { kind: 'kernel' }, lowered: Lowered, aliasOf: Map<string, { src: string; offset: number }>):
  { buffers: Record<string, number>; align: number } | undefined {
  const buffers: Record<string, number> = {};
  let align = 16;
  for (const [i, p] of s.kernel.params.entries()) {
    const a = s.args[i];
    if (p.type !== 'ptr' || !a || (a.kind !== 'value' && a.kind !== 'null')) return undefined;
    if (a.kind === 'null') { buffers[p.name] = NULL_BYTES; continue; }
    const t = lowered.types.get(a.name);
    if (!t) return undefined;
    buffers[p.name] = Math.max(1, size(t.dims) * DTYPE_SIZE[t.dtype]);
    let offset = 0;
    for (let r = aliasOf.get(a.name); r; r = aliasOf.get(r.src)) offset += r.offset;
    align = Math.min(align, lowBit(offset));
  }
  return { buffers, align };
}

/** `layernorm float16 {"cols":768,...}` -> `layernorm float16 cols=768 ...` for logs. */
function describe(f: FamilyProblem): string {
  const brace = f.key.indexOf('{');
  try {
    const body = JSON.parse(f.key.slice(brace)) as { problem: Record<string, unknown> };
    const fields = Object.entries(body.problem).map(([k, v]) => `${k}=${Array.isArray(v) ? `[${v.join(',')}]` : String(v)}`);
    return `${f.key.slice(0, brace).trim()} ${fields.join(' ')}`;
  } catch { return f.key.slice(0, 120); }
}

/** The timing cache's pick when it is still valid: same level or higher, still a valid tactic, and it still emits
 * the very kernel that was timed (kernel names hash their source). */
function cachedChoice(host: KernelTunerHost, f: FamilyProblem): { t: KernelTactic; kernel: KernelSource } | undefined {
  const e = host.cache.get(f.key);
  if (!e || (e.level ?? 0) < host.level) return undefined;
  const t = e.config as KernelTactic;
  if (f.problems(t).length) return undefined;
  try {
    const kernel = f.emit(t);
    return e.kernel === undefined || e.kernel === kernel.name ? { t, kernel } : undefined;
  } catch { return undefined; }
}

function plan(f: FamilyProblem, level: number): Plan {
  const entries: Plan['entries'] = [], failed: CandidateTiming[] = [], names = new Set<string>();
  for (const t of pickTactics(f, level)) {
    let kernel: KernelSource;
    try { kernel = f.emit(t); } catch (e) { failed.push({ config: tacticLabel(t), ms: null, error: firstLine(e) }); continue; }
    if (names.has(kernel.name)) continue;
    names.add(kernel.name);
    entries.push({ t, kernel });
  }
  return { entries, failed };
}

/** Re-emits the tunable kernels of `lowered` with their fastest tactic (level >= 3; otherwise `lowered` as is).
 * `tactics` gets each timed or cached signature's pick (engine.built.tactics). */
export async function tuneKernelSteps(lowered: Lowered, tactics: Record<string, string>, host: KernelTunerHost): Promise<Lowered> {
  if (host.level < 3) return lowered;
  const aliasOf = new Map<string, { src: string; offset: number }>();
  for (const s of lowered.steps) if (s.kind === 'alias') aliasOf.set(s.out, { src: s.src, offset: s.offset ?? 0 });
  const jobs = new Map<string, Job>();
  lowered.steps.forEach((s, i) => {
    if (s.kind !== 'kernel') return;
    const u = tunableOf(s.kernel);
    const b = u && stepBuffers(s, lowered, aliasOf);
    if (!u || !b) return;
    const f = familyProblem(u, { align: b.align });
    const job = jobs.get(f.key);
    if (job) job.steps.push(i); else jobs.set(f.key, { f, buffers: b.buffers, steps: [i] });
  });
  const picks = new Map<string, KernelSource>();
  const todo: { key: string; job: Job; plan: Plan }[] = [];
  for (const [key, job] of jobs) {
    const c = cachedChoice(host, job.f);
    if (c) {
      host.counts[job.f.family].cached++;
      tactics[key] = tacticLabel(c.t);
      picks.set(key, c.kernel);
      host.log(`autotune ${describe(job.f)}: ${tacticLabel(c.t)} (timing cache)`);
      continue;
    }
    todo.push({ key, job, plan: plan(job.f, host.level) });
  }
  await precompile(host, todo.map((x) => x.plan));
  for (const { key, job, plan: p } of todo) {
    const f = job.f;
    if (host.overBudget()) { host.budgetSpent(); host.counts[f.family].heuristic++; continue; }
    let results = new Map<string, number | Error>();
    try {
      if (p.entries.length) results = host.measure(key, p.entries.map((e) => e.kernel), job.buffers);
    } catch (e) {
      if (e instanceof ContextLost) throw e;
      host.log(`autotune ${describe(f)}: ${firstLine(e)}; keeping the default tactic`);
    }
    const { timings, best } = rankCandidates(p.entries, results, (e) => tacticLabel(e.t), p.failed, (msg) => host.log(`autotune ${describe(f)}: ${msg}`));
    if (!best) {
      host.counts[f.family].heuristic++;
      host.log(`autotune ${describe(f)}: no candidate ran; keeping the default tactic`);
      continue;
    }
    host.cache.set(key, { config: best.t, ms: best.ms, candidates: timings, kernel: best.kernel.name, level: host.level });
    host.counts[f.family].timed++;
    tactics[key] = tacticLabel(best.t);
    picks.set(key, best.kernel);
    host.log(`autotune ${describe(f)}: ${pickSummary(tacticLabel(best.t), best.ms, timings, tacticLabel(f.heuristic), 'default')}`);
  }
  if (!picks.size) return lowered;
  const steps = [...lowered.steps];
  for (const [key, kernel] of picks) {
    for (const i of jobs.get(key)!.steps) steps[i] = { ...(steps[i] as Step & { kind: 'kernel' }), kernel };
  }
  return { ...lowered, steps };
}

/** Compiles every plan's candidates into the kernel cache in parallel helper processes, packed as measure() packs
 * them, until the budget is spent; what is not compiled here is compiled kernel by kernel when timed. */
async function precompile(host: KernelTunerHost, plans: Plan[]): Promise<void> {
  const kc = host.kernelCache;
  if (!kc) return;
  const seen = new Set<string>();
  const modules = plans.flatMap((p) => candidateModules(p.entries.map((e) => e.kernel))).filter((m) => !seen.has(m.name) && seen.add(m.name));
  const chunk = 4 * Math.max(1, host.parallel);
  for (let i = 0; i < modules.length; i += chunk) {
    if (host.overBudget()) return;
    try {
      await kc.compileAll(modules.slice(i, i + chunk).map((m) => ({ source: m.source, name: m.name })), { parallel: host.parallel });
    } catch (e) {
      host.log(`autotune: some kernel-tactic candidate modules failed to compile (retried kernel by kernel when timed): ${firstLine(e)}`);
    }
  }
}
