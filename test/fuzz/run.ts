// Parent side of the importer fuzz test: bundles worker.ts to JS (with rolldown, which vite already ships),
// runs cases in a worker thread with a per-case time limit and a heap cap, and restarts the worker after a
// hang or a crash of the worker itself, so one bad case never stops the run.
import { Worker } from 'node:worker_threads';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FuzzJob, FuzzMsg } from './worker.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = resolve(here, '../..');

export async function bundleWorker(): Promise<string> {
  // inside node_modules so the bundle's bare imports (protobufjs, koffi) resolve to the repo's packages
  const dir = join(root, 'node_modules', '.cache', `tsrt-fuzz-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'worker.mjs');
  const { build } = await import('rolldown');
  await build({
    input: join(here, 'worker.ts'), platform: 'node', logLevel: 'silent',
    external: (id: string) => !id.startsWith('.') && !id.startsWith('/') && !/^[A-Za-z]:/.test(id),
    output: { file, format: 'esm' },
  });
  return file;
}

export interface FuzzResult {
  cases: number;
  loaded: number;
  built: number;
  typedErrors: number;
  crashes: { i: number; desc: string; stage: string; error: string }[];
  hangs: { i: number; desc: string }[];
  /** Cases whose CPU-reference run passed the time limit: a valid but absurd model (a 3x2^31 pooling window) is slow,
   * not broken, so these are reported but only load and build are held to the limit. */
  slowRuns: { i: number; desc: string }[];
}

export async function runFuzz(bundle: string, job: FuzzJob, opts: { caseLimitMs: number; heapMb: number }): Promise<FuzzResult> {
  const res: FuzzResult = { cases: 0, loaded: 0, built: 0, typedErrors: 0, crashes: [], hangs: [], slowRuns: [] };
  let next = job.start;
  while (next < job.end) {
    await new Promise<void>((done) => {
      const w = new Worker(bundle, { workerData: { ...job, start: next }, resourceLimits: { maxOldGenerationSizeMb: opts.heapMb } });
      let cur = next, desc = '', running = false, timer: NodeJS.Timeout | undefined, finished = false;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => { (running ? res.slowRuns : res.hangs).push({ i: cur, desc }); finished = true; void w.terminate(); }, opts.caseLimitMs);
      };
      w.on('message', (m: FuzzMsg) => {
        if (m.type === 'start') { cur = m.i; desc = m.desc; running = false; arm(); return; }
        if (m.type === 'stage') { running = true; return; }
        res.cases++;
        if (m.loaded) res.loaded++;
        if (m.built) res.built++;
        if (m.outcome === 'tsrt') res.typedErrors++;
        if (m.outcome === 'crash') res.crashes.push({ i: m.i, desc, stage: m.stage, error: m.error ?? '' });
        next = m.i + 1;
      });
      w.on('error', (e) => {
        if (!finished) res.crashes.push({ i: cur, desc, stage: 'worker', error: `worker died: ${e.message}` });
        finished = true;
      });
      w.on('exit', () => {
        clearTimeout(timer);
        if (next <= cur && finished) next = cur + 1; // skip the case that hung or killed the worker
        if (next <= cur && !finished) next = job.end;  // clean exit before reaching cur: job done
        done();
      });
    });
  }
  return res;
}
