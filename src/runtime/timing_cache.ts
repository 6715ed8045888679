// Persisted autotuning results (TensorRT's timing cache): which tile config won for each kernel signature on
// one GPU + driver + NVRTC. A file made elsewhere is ignored with a warning rather than trusted, and a damaged
// one is refused loudly, because silently re-tuning would hide a broken cache forever.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { TsrtError } from '../errors.js';
import { epilogueKey, type Epilogue, type TileConfig } from '../codegen/tc_gemm.js';
import type { ConvProblem } from '../codegen/tc_conv.js';
import type { GemmProblem } from '../codegen/tc_gemm.js';
import { defaultCacheDir } from './kernel_cache.js';
import { KERNEL_FAMILIES, type KernelTactic } from '../codegen/tactics.js';

/** 2: wgmma configs gained the staged-epilogue variant (`_se`) and LayerNorm/softmax/reduction/elementwise
 * tactic entries appeared; a version-1 cache would pin picks timed without them, so it is set aside. */
export const TIMING_CACHE_VERSION = 2;

export interface DeviceId {
  name: string;
  arch: string;
  /** cuDriverGetVersion, e.g. 12080. */
  driver: number;
  /** NVRTC version, e.g. '12.8'. */
  nvrtc: string;
}

export interface CandidateTiming {
  /** configName() of the candidate. */
  config: string;
  /** Median launch time; null when the candidate failed to compile or launch. */
  ms: number | null;
  error?: string;
}

export interface TimingEntry {
  /** A TileConfig for conv/gemm signatures; a KernelTactic for the LayerNorm/softmax/reduce/elementwise families
   * (keys starting with the family name, kernel_tactics.ts). */
  config: TileConfig | KernelTactic;
  /** Median ms of the winner. */
  ms: number;
  candidates: CandidateTiming[];
  /** Name of the winning kernel: it hashes the generated source, so an emitter change invalidates the entry. */
  kernel?: string;
  /** Optimization level that produced the entry (a higher level searches more candidates). */
  level?: number;
}

interface TimingCacheFile {
  version: number;
  device: DeviceId;
  entries: Record<string, TimingEntry>;
}

/** `<kernel cache dir>/../timing-cache.json`, e.g. ~/.cache/tsrt/timing-cache.json. */
export function defaultTimingCachePath(): string {
  return join(dirname(defaultCacheDir()), 'timing-cache.json');
}

// ---- signatures ----------------------------------------------------------------------------------------------

export type TacticKind = 'conv' | 'gemm';

export interface ParsedSignature {
  kind: TacticKind;
  dtype: string;
  problem: ConvProblem | GemmProblem;
  epi: Epilogue;
}

/** Plain data with object keys sorted and undefined dropped, so equal problems print equally. */
export function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = canonical(x);
    }
    return out;
  }
  return v;
}

/** The epilogue fields that change generated code, with defaults dropped (false flags, act 'none', alpha 1). */
function canonicalEpilogue(e: Epilogue): Epilogue {
  const out: Epilogue = {};
  if (e.bias) out.bias = true;
  if (e.residual) out.residual = true;
  if (e.residual && e.residualAfterAct) out.residualAfterAct = true;
  if (e.act && e.act !== 'none') out.act = e.act;
  if (e.act && e.act !== 'none' && e.actArgs?.length) out.actArgs = [...e.actArgs];
  if (e.alpha !== undefined && e.alpha !== 1) out.alpha = e.alpha;
  // [int8] output and residual storage change the kernel (tc_int8.ts Int8Epilogue); its scales do not change speed
  const q = e as Epilogue & { out?: string; residualType?: string };
  const o = out as Epilogue & { out?: string; residualType?: string };
  if (q.out) o.out = q.out;
  if (e.residual && q.residualType) o.residualType = q.residualType;
  return out;
}

/** Timing-cache key of one tensor-core kernel: op kind, storage dtype, epilogue and every problem field, e.g.
 * `conv float16 b_relu {"epi":{"act":"relu","bias":true},"problem":{"c":64,...}}`. */
export function tacticSignature(kind: TacticKind, problem: ConvProblem | GemmProblem, epi: Epilogue, dtype: string): string {
  const e = canonicalEpilogue(epi);
  return `${kind} ${dtype} ${epilogueKey(e)} ${JSON.stringify(canonical({ epi: e, problem }))}`;
}

/** Inverse of tacticSignature; undefined for a string it did not make. */
export function parseSignature(sig: string): ParsedSignature | undefined {
  const brace = sig.indexOf('{');
  if (brace < 0) return undefined;
  const [kind, dtype] = sig.slice(0, brace).trim().split(' ');
  if (kind !== 'conv' && kind !== 'gemm') return undefined;
  try {
    const body = JSON.parse(sig.slice(brace)) as { epi?: Epilogue; problem?: ConvProblem | GemmProblem };
    if (!body || typeof body.problem !== 'object' || typeof body.epi !== 'object') return undefined;
    return { kind, dtype, problem: body.problem, epi: body.epi };
  } catch {
    return undefined;
  }
}

// ---- validation ----------------------------------------------------------------------------------------------

const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function configShape(c: unknown): string | undefined {
  if (!isObj(c)) return 'config is not an object';
  for (const f of ['bm', 'bn', 'bk', 'warpsM', 'warpsN', 'stages'] as const) {
    if (!Number.isInteger(c[f]) || (c[f] as number) < 1) return `config.${f} is not a positive integer`;
  }
  if (c.splitK !== undefined && (!Number.isInteger(c.splitK) || (c.splitK as number) < 1)) return 'config.splitK is not a positive integer';
  return undefined;
}

/** [kernel tactics] tpr/rpb/block/vec/ept, each a positive integer when present, at least one present. */
function tacticShape(c: unknown): string | undefined {
  if (!isObj(c)) return 'config is not an object';
  const fields = Object.keys(c);
  if (!fields.length) return 'config is empty';
  for (const f of fields) {
    if (!['tpr', 'rpb', 'block', 'vec', 'ept'].includes(f)) return `config.${f} is not a tactic field`;
    if (!Number.isInteger(c[f]) || (c[f] as number) < 1) return `config.${f} is not a positive integer`;
  }
  return undefined;
}

/** Whether a key belongs to a kernel-tactic family (kernel_tactics.ts kernelTacticSignature) rather than conv/gemm. */
export function isKernelTacticKey(key: string): boolean {
  return (KERNEL_FAMILIES as string[]).includes(key.slice(0, key.indexOf(' ')));
}

function entryShape(e: unknown, tactic = false): string | undefined {
  if (!isObj(e)) return 'not an object';
  const bad = tactic ? tacticShape(e.config) : configShape(e.config);
  if (bad) return bad;
  if (!isNum(e.ms)) return 'ms is not a number';
  if (!Array.isArray(e.candidates)) return 'candidates is not a list';
  for (const c of e.candidates) {
    if (!isObj(c) || typeof c.config !== 'string' || !(c.ms === null || isNum(c.ms))) return 'a candidate is not { config, ms }';
  }
  if (e.kernel !== undefined && typeof e.kernel !== 'string') return 'kernel is not a string';
  if (e.level !== undefined && !Number.isInteger(e.level)) return 'level is not an integer';
  return undefined;
}

function deviceText(d: DeviceId): string {
  return `${d.name} (${d.arch}, driver ${d.driver}, NVRTC ${d.nvrtc})`;
}

// ---- the cache -----------------------------------------------------------------------------------------------

export class TimingCache {
  /** Why entries on disk were not used (another GPU/driver/NVRTC, another file version). */
  readonly warnings: string[] = [];
  private entries = new Map<string, TimingEntry>();
  private dirty = false;

  /** `path` null: in memory only (--no-timing-cache). */
  private constructor(readonly path: string | null, readonly device: DeviceId) {}

  /** Reads `path` if it exists. Throws TsrtError('USAGE') for a file that is not a timing cache. */
  static load(path: string | null, device: DeviceId): TimingCache {
    const cache = new TimingCache(path, device);
    if (path === null) return cache;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return cache;
      throw new TsrtError('USAGE', `cannot read timing cache ${path}: ${(e as Error).message}`, 'fix its permissions, or pass --no-timing-cache');
    }
    const corrupt = (why: string) => new TsrtError('USAGE', `timing cache ${path} is corrupt (${why})`,
      `delete ${path} (it is rebuilt by the next tuned build), or pass --no-timing-cache`);
    let data: unknown;
    try { data = JSON.parse(text); } catch (e) { throw corrupt(`bad JSON: ${(e as Error).message}`); }
    if (!isObj(data)) throw corrupt('not a JSON object');
    if (!isNum(data.version)) throw corrupt('no version');
    if (data.version !== TIMING_CACHE_VERSION) {
      cache.warnings.push(`timing cache ${path} has format version ${data.version}, this tsrt writes ${TIMING_CACHE_VERSION}: ignoring it (it will be overwritten)`);
      return cache;
    }
    const d = data.device;
    if (!isObj(d) || typeof d.name !== 'string' || typeof d.arch !== 'string' || !isNum(d.driver) || typeof d.nvrtc !== 'string') {
      throw corrupt('device is not { name, arch, driver, nvrtc }');
    }
    if (!isObj(data.entries)) throw corrupt('entries is not an object');
    for (const [k, e] of Object.entries(data.entries)) {
      const bad = entryShape(e, isKernelTacticKey(k));
      if (bad) throw corrupt(`entry '${k.slice(0, 80)}': ${bad}`);
    }
    const theirs = d as unknown as DeviceId;
    const same = theirs.name === device.name && theirs.arch === device.arch && theirs.driver === device.driver && theirs.nvrtc === device.nvrtc;
    if (!same) {
      cache.warnings.push(`timing cache ${path} was made on ${deviceText(theirs)}, this is ${deviceText(device)}: ` +
        `ignoring its ${Object.keys(data.entries).length} entries (they will be replaced)`);
      return cache;
    }
    for (const [k, e] of Object.entries(data.entries)) cache.entries.set(k, e as TimingEntry);
    return cache;
  }

  get size(): number { return this.entries.size; }

  get(key: string): TimingEntry | undefined { return this.entries.get(key); }

  set(key: string, e: TimingEntry): void {
    this.entries.set(key, e);
    this.dirty = true;
  }

  keys(): string[] { return [...this.entries.keys()]; }

  toJSON(): TimingCacheFile {
    const entries: Record<string, TimingEntry> = {};
    for (const k of [...this.entries.keys()].sort()) entries[k] = this.entries.get(k)!;
    return { version: TIMING_CACHE_VERSION, device: this.device, entries };
  }

  /** Writes the file atomically when anything changed. A write failure is a warning (returned), not an error:
   * the engine is fine, only the next build tunes again. */
  save(): string | undefined {
    if (this.path === null || !this.dirty) return undefined;
    const tmp = `${this.path}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
    try {
      mkdirSync(dirname(this.path), { recursive: true });
      writeFileSync(tmp, JSON.stringify(this.toJSON(), null, 1) + '\n');
      renameSync(tmp, this.path);
      this.dirty = false;
      return undefined;
    } catch (e) {
      try { rmSync(tmp, { force: true }); } catch { /* nothing to clean */ }
      const w = `cannot write timing cache ${this.path}: ${(e as Error).message}; the next build tunes again`;
      this.warnings.push(w);
      return w;
    }
  }
}
