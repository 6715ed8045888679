// Worker side of the importer fuzz test: generates case i deterministically from (seed, i), loads it, builds (and
// runs, when the inputs are small) a sample of the models that load, and reports each outcome. Runs in a worker
// thread so the parent can kill a case that hangs or runs away with memory. Bundled to plain JS by
// test/fuzz/run.ts (workers can't load TS).
import { parentPort, workerData } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseModel } from '../../src/onnx/import.js';
import { build } from '../../src/runtime/engine.js';
import { TsrtError } from '../../src/errors.js';
import { MUTATIONS, mutate, prng } from './mutate.js';
import { size } from '../../src/ir/tensor.js';
import { randomTensor } from '../../src/cli/io.js';

export interface FuzzJob { corpus: string[]; seed: number; start: number; end: number; buildEvery: number }
export type FuzzMsg =
  | { type: 'start'; i: number; desc: string }
  | { type: 'stage'; i: number; stage: 'run' }
  | { type: 'done'; i: number; stage: 'load' | 'build' | 'run'; outcome: 'ok' | 'tsrt' | 'crash'; error?: string; loaded: boolean; built: boolean };

export function describeCase(corpus: string[], seed: number, i: number): { file: string; kind: typeof MUTATIONS[number]; bytes: Uint8Array; rounds: number } {
  const rnd = prng(Math.imul(seed, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca6b));
  const file = corpus[Math.floor(rnd() * corpus.length)];
  let bytes: Uint8Array = readCached(file);
  const kind = MUTATIONS[Math.floor(rnd() * MUTATIONS.length)];
  const rounds = 1 + Math.floor(rnd() * 3);
  for (let r = 0; r < rounds; r++) bytes = mutate(bytes, r === 0 ? kind : MUTATIONS[Math.floor(rnd() * MUTATIONS.length)], rnd);
  return { file, kind, bytes, rounds };
}

const cache = new Map<string, Uint8Array>();
function readCached(f: string): Uint8Array {
  let b = cache.get(f);
  if (!b) { b = new Uint8Array(readFileSync(f)); cache.set(f, b); }
  return b;
}

async function runJob(job: FuzzJob): Promise<void> {
  const post = (m: FuzzMsg) => parentPort!.postMessage(m);
  for (let i = job.start; i < job.end; i++) {
    post({ type: 'start', i, desc: '(generating)' });
    const c = describeCase(job.corpus, job.seed, i);
    post({ type: 'start', i, desc: `${c.file} ${c.kind} x${c.rounds}` });
    let stage: 'load' | 'build' | 'run' = 'load';
    let loaded = false, built = false;
    try {
      const model = parseModel(c.bytes, { file: `case${i}.onnx`, baseDir: dirname(c.file) });
      loaded = true;
      if (i % job.buildEvery === 0) {
        stage = 'build';
        const engine = await build(model, { device: 'cpu', compileKernels: false });
        built = true;
        {
          // and run it on the CPU reference when its inputs are small (mutated attributes reach the op kernels)
          stage = 'run';
          post({ type: 'stage', i, stage });
          const small = engine.inputs.every((vi) => vi.type.shape.every((d) => typeof d === 'number') && size(vi.type.shape as number[]) <= 1 << 16);
          if (small) await engine.run(Object.fromEntries(engine.inputs.map((vi, k) => [vi.name, randomTensor(vi.type.dtype, vi.type.shape as number[], k + 1)])));
        }
        engine.dispose();
      }
      post({ type: 'done', i, stage, outcome: 'ok', loaded, built });
    } catch (e) {
      const ok = e instanceof TsrtError;
      post({ type: 'done', i, stage, outcome: ok ? 'tsrt' : 'crash', loaded, built,
        error: ok ? (e as Error).message.split('\n')[0] : String((e as Error)?.stack ?? e).split('\n').slice(0, 4).join(' | ') });
    }
  }
}

if (parentPort && workerData) await runJob(workerData as FuzzJob);
