// Compiled-kernel cache: memory (dedupes identical sources within a build) then disk (<dir>/<key>.cubin), keyed by
// the full source and the full NVRTC option list, so nothing hand-picked can be forgotten in the key.
// compileAll spreads misses over helper processes or threads; this same file is the helpers' entry point.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, homedir } from 'node:os';
import { join } from 'node:path';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, threadId, workerData } from 'node:worker_threads';
import { TsrtError } from '../errors.js';
import { DEFAULT_ARCH, compileCuda, moduleImage, nvrtcVersion, resolveCompileOptions } from './nvrtc.js';

export interface KernelCacheOptions {
  /** Disk cache folder; null keeps the cache in memory only. Default: defaultCacheDir(). */
  dir?: string | null;
  arch?: string;
  /** Extra NVRTC options for every kernel (see compileCuda). */
  options?: string[];
  includeDirs?: string[];
}

export interface CachedKernel {
  /** Module image for Cuda.loadModule: an ELF cubin (sm_XX), or NUL-terminated PTX (compute_XX). */
  cubin: Uint8Array;
  key: string;
  /** True when no compile was needed (memory or disk). */
  hit: boolean;
  from: 'memory' | 'disk' | 'compile';
  /** NVRTC warnings; empty for hits. */
  log: string;
}

export interface KernelItem { source: string; name: string }

/** $TSRT_CACHE_DIR, else $XDG_CACHE_HOME/tsrt/kernels, else ~/.cache/tsrt/kernels. */
export function defaultCacheDir(): string {
  if (process.env.TSRT_CACHE_DIR) return process.env.TSRT_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'tsrt', 'kernels');
}

const EM_CUDA = 190;

/** Whether `bytes` is a complete module image: a 64-bit CUDA ELF whose section table fits, or NUL-ended PTX. */
export function isValidImage(bytes: Uint8Array, ptx: boolean): boolean {
  if (ptx) return bytes.length > 1 && bytes[bytes.length - 1] === 0 && Buffer.from(bytes.subarray(0, 4096)).includes('.version');
  if (bytes.length < 64 || bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46 || bytes[4] !== 2) return false;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint16(18, true) !== EM_CUDA) return false;
  const shoff = Number(dv.getBigUint64(0x28, true));
  const shentsize = dv.getUint16(0x3a, true), shnum = dv.getUint16(0x3c, true);
  return shoff + shentsize * shnum <= bytes.length;
}

export class KernelCache {
  readonly dir: string | null;
  readonly arch: string;
  readonly options: string[];
  readonly includeDirs: string[];
  readonly stats = { memoryHits: 0, diskHits: 0, compiled: 0, diskErrors: 0 };
  private readonly memory = new Map<string, Uint8Array>();
  private fullOptions?: string[];
  private warned = false;

  constructor(opts: KernelCacheOptions = {}) {
    this.dir = opts.dir === undefined ? defaultCacheDir() : opts.dir;
    this.arch = opts.arch ?? DEFAULT_ARCH;
    this.options = [...(opts.options ?? [])];
    this.includeDirs = [...(opts.includeDirs ?? [])];
  }

  /** sha256(source \0 full NVRTC options \0 NVRTC version \0 arch). */
  key(source: string): string {
    this.fullOptions ??= resolveCompileOptions({ arch: this.arch, options: this.options, includeDirs: this.includeDirs });
    const [major, minor] = nvrtcVersion();
    return createHash('sha256')
      .update(source).update('\0').update(this.fullOptions.join(' ')).update('\0')
      .update(`${major}.${minor}`).update('\0').update(this.arch)
      .digest('hex');
  }

  /** Returns the module image for `source`, compiling (synchronously, on this thread) only on a miss. */
  get(source: string, name: string): CachedKernel {
    const key = this.key(source);
    const found = this.lookup(key);
    if (found) return found;
    const r = compileCuda(source, this.compileOpts(name));
    return this.store(key, moduleImage(r), r.log);
  }

  /** Compiles every item not cached yet, `parallel` at a time, in helper processes (default) or worker threads.
   * NVRTC serializes compiles between threads of one process (NVIDIA forums, CUDA 11.8-12.3), so processes are
   * the default; each helper loads NVRTC itself through nvrtc.ts. Few misses, or running from the TypeScript
   * sources (which a helper cannot load), compile serially here. Results are in item order; all compile errors are
   * reported together. */
  async compileAll(items: KernelItem[], opts: { parallel?: number; mode?: 'processes' | 'threads' } = {}): Promise<CachedKernel[]> {
    const keys = items.map((it) => this.key(it.source));
    const results = new Map<string, CachedKernel>();
    const misses = new Map<string, KernelItem>();
    keys.forEach((key, i) => {
      if (results.has(key) || misses.has(key)) return;
      const found = this.lookup(key);
      if (found) results.set(key, found); else misses.set(key, items[i]);
    });
    const jobs = [...misses].map(([key, item], index) => ({ key, item, index }));
    const parallel = Math.max(1, Math.min(opts.parallel ?? Math.min(availableParallelism(), 8), jobs.length));
    const errors: { index: number; error: TsrtError }[] = [];
    const done = (key: string, image: Uint8Array, log: string) => results.set(key, this.store(key, image, log));
    const compileHere = (j: Job) => {
      try {
        const r = compileCuda(j.item.source, this.compileOpts(j.item.name));
        done(j.key, moduleImage(r), r.log);
      } catch (e) {
        errors.push({ index: j.index, error: asTsrtError(e) });
      }
    };
    if (parallel > 1 && jobs.length >= MIN_JOBS_FOR_HELPERS && helpersUsable()) {
      await runPool(jobs, parallel, opts.mode ?? 'processes', this.compileOpts(''), done, errors, compileHere);
    } else {
      jobs.forEach(compileHere);
    }
    errors.sort((a, b) => a.index - b.index);
    if (errors.length === 1) throw errors[0].error;
    if (errors.length > 1) {
      throw new TsrtError('NVRTC', `${errors.length} kernels failed to compile:\n\n${errors.map((e) => e.error.message).join('\n\n')}`);
    }
    // A repeated source in `items` is a memory hit from the caller's point of view after its first occurrence.
    const seen = new Set<string>();
    return keys.map((key) => {
      const r = results.get(key)!;
      if (seen.has(key)) return { ...r, hit: true, from: 'memory' as const, log: '' };
      seen.add(key);
      return r;
    });
  }

  private compileOpts(name: string) {
    return { name, arch: this.arch, options: this.options, includeDirs: this.includeDirs };
  }

  private get isPtx(): boolean { return this.arch.startsWith('compute_'); }

  private path(key: string): string { return join(this.dir!, `${key}.${this.isPtx ? 'ptx' : 'cubin'}`); }

  private lookup(key: string): CachedKernel | undefined {
    const mem = this.memory.get(key);
    if (mem) { this.stats.memoryHits++; return { cubin: mem, key, hit: true, from: 'memory', log: '' }; }
    if (this.dir === null) return undefined;
    let bytes: Uint8Array;
    try { bytes = readFileSync(this.path(key)); } catch { return undefined; }
    if (!isValidImage(bytes, this.isPtx)) return undefined; // truncated or foreign: recompile and overwrite
    this.memory.set(key, bytes);
    this.stats.diskHits++;
    return { cubin: bytes, key, hit: true, from: 'disk', log: '' };
  }

  private store(key: string, image: Uint8Array, log: string): CachedKernel {
    this.memory.set(key, image);
    this.stats.compiled++;
    if (this.dir !== null) {
      const dest = this.path(key);
      const tmp = `${dest}.${process.pid}-${threadId}-${randomBytes(4).toString('hex')}.tmp`;
      try {
        mkdirSync(this.dir, { recursive: true });
        writeFileSync(tmp, image);
        renameSync(tmp, dest); // atomic: readers see the old file or the whole new one
      } catch (e) {
        this.stats.diskErrors++;
        try { rmSync(tmp, { force: true }); } catch { /* nothing to clean */ }
        if (!this.warned) {
          this.warned = true;
          process.emitWarning(`tsrt kernel cache: cannot write ${this.dir} (${e instanceof Error ? e.message : e}); ` +
            'kernels will be recompiled next run (set TSRT_CACHE_DIR or --cache-dir to a writable folder)');
        }
      }
    }
    return { cubin: image, key, hit: false, from: 'compile', log };
  }
}

// ---- helper pool: the same request/reply protocol over worker threads or child processes ----

interface Job { key: string; item: KernelItem; index: number }
interface HelperRequest { source: string; name: string; arch: string; options: string[]; includeDirs: string[] }
interface HelperReply { image?: Uint8Array; log?: string; error?: { code: TsrtError['code']; message: string; hint?: string } }

/** Below this many misses, starting helpers costs more than it saves. */
const MIN_JOBS_FOR_HELPERS = 4;
const HELPER_ENV = 'TSRT_KERNEL_CACHE_HELPER';

interface Helper {
  send(m: HelperRequest): void;
  onReply(f: (m: HelperReply) => void): void;
  onFailure(f: (e: Error) => void): void;
  close(): void;
}

function startHelper(mode: 'processes' | 'threads'): Helper {
  if (mode === 'threads') {
    const w = new Worker(new URL(import.meta.url), { workerData: { [HELPER_ENV]: true } });
    return {
      send: (m) => w.postMessage(m),
      onReply: (f) => w.on('message', f),
      onFailure: (f) => w.on('error', f),
      close: () => { void w.terminate(); },
    };
  }
  // 'advanced' serialization carries Uint8Arrays without base64/JSON.
  const c = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, [HELPER_ENV]: '1' }, serialization: 'advanced' });
  return {
    send: (m) => c.send(m),
    onReply: (f) => c.on('message', (m) => f(m as HelperReply)),
    onFailure: (f) => {
      c.on('error', f);
      c.on('exit', (code, signal) => f(new Error(`kernel compile helper exited (${signal ?? code})`)));
    },
    close: () => { c.removeAllListeners('exit'); if (c.connected) c.disconnect(); },
  };
}

/** Runs `jobs` on `parallel` helpers. A helper that fails to start or dies hands its job back to this thread
 * (compileHere), so a broken helper setup degrades to a serial build instead of failing it. */
async function runPool(
  jobs: Job[], parallel: number, mode: 'processes' | 'threads', base: Omit<HelperRequest, 'source' | 'name'>,
  done: (key: string, image: Uint8Array, log: string) => void,
  errors: { index: number; error: TsrtError }[],
  compileHere: (j: Job) => void,
): Promise<void> {
  let next = 0;
  const one = () => new Promise<void>((resolve) => {
    let helper: Helper;
    try { helper = startHelper(mode); } catch { resolve(); return; }
    let current: Job | undefined;
    let finished = false;
    const finish = () => { if (!finished) { finished = true; helper.close(); resolve(); } };
    const feed = () => {
      current = jobs[next++];
      if (!current) { finish(); return; }
      helper.send({ ...base, name: current.item.name, source: current.item.source });
    };
    helper.onReply((m) => {
      if (finished || !current) return;
      if (m.error) errors.push({ index: current.index, error: new TsrtError(m.error.code, m.error.message, m.error.hint) });
      else done(current.key, m.image!, m.log ?? '');
      feed();
    });
    helper.onFailure(() => {
      if (finished) return;
      const orphan = current;
      current = undefined;
      finish();
      if (orphan) compileHere(orphan);
    });
    feed();
  });
  await Promise.all(Array.from({ length: parallel }, one));
  while (next < jobs.length) compileHere(jobs[next++]); // left by helpers that never started
}

function asTsrtError(e: unknown): TsrtError {
  return e instanceof TsrtError ? e : new TsrtError('NVRTC', e instanceof Error ? e.message : String(e));
}

/** Helpers load this module by path; Node cannot run it from the .ts sources (tests), only from dist. */
function helpersUsable(): boolean {
  return import.meta.url.endsWith('.js');
}

function serveRequest(m: HelperRequest): { reply: HelperReply; transfer?: ArrayBuffer } {
  try {
    const r = compileCuda(m.source, m);
    let image = moduleImage(r);
    if (image.byteOffset !== 0 || image.byteLength !== image.buffer.byteLength) image = image.slice();
    return { reply: { image, log: r.log }, transfer: image.buffer as ArrayBuffer };
  } catch (e) {
    const err = asTsrtError(e);
    // TsrtError appends its hint to the message; send them apart so the parent rebuilds the same error.
    const suffix = err.hint ? `\n  fix: ${err.hint}` : '';
    const message = suffix && err.message.endsWith(suffix) ? err.message.slice(0, -suffix.length) : err.message;
    return { reply: { error: { code: err.code, message, hint: suffix ? err.hint : undefined } } };
  }
}

if (!isMainThread && (workerData as Record<string, unknown> | null)?.[HELPER_ENV]) {
  parentPort!.on('message', (m: HelperRequest) => {
    const { reply, transfer } = serveRequest(m);
    parentPort!.postMessage(reply, transfer ? [transfer] : []);
  });
} else if (isMainThread && process.env[HELPER_ENV] === '1' && process.send) {
  process.on('message', (m) => { process.send!(serveRequest(m as HelperRequest).reply); });
  process.on('disconnect', () => process.exit(0));
}
