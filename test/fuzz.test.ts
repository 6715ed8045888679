// Importer robustness: thousands of mutated and truncated ONNX models (from the shared backend tests and the
// bundled model) must each end in success or a TsrtError, never another exception, a hang or runaway memory.
// Models that load are built (every third) and run on the CPU reference when their inputs are small.
// TSRT_FUZZ_CASES=N (default 4000) and TSRT_FUZZ_SEED=S run more or other cases locally.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorker, runFuzz } from './fuzz/run.js';
import { onnx } from '../src/onnx/onnx_pb.js';
import { parseModel } from '../src/onnx/import.js';
import { build } from '../src/runtime/engine.js';
import { TsrtError } from '../src/errors.js';
import { readNpy, writeNpy } from '../src/cli/io.js';
import { makeTensor } from '../src/ir/tensor.js';
import { mutate, prng } from './fuzz/mutate.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const nodeTests = resolve(root, '../shared/onnx-tests/node');
const corpus = [
  join(root, 'models/ppocr_mobile_v2_cls/model.onnx'),
  ...(existsSync(nodeTests) ? readdirSync(nodeTests).sort().map((d) => join(nodeTests, d, 'model.onnx')).filter(existsSync) : []),
];
const CASES = Number(process.env.TSRT_FUZZ_CASES ?? 4000);
const SEED = Number(process.env.TSRT_FUZZ_SEED ?? 1);

let bundle = '';
beforeAll(async () => { bundle = await bundleWorker(); });
afterAll(() => { if (bundle) rmSync(dirname(bundle), { recursive: true, force: true }); });

describe('importer fuzz', () => {
  it(`${CASES} mutated models end in success or a TsrtError`, async () => {
    const t0 = performance.now();
    const r = await runFuzz(bundle, { corpus, seed: SEED, start: 0, end: CASES, buildEvery: 3 }, { caseLimitMs: 10_000, heapMb: 1024 });
    console.log(`fuzz: ${r.cases} cases from ${corpus.length} models in ${((performance.now() - t0) / 1000).toFixed(1)} s: `
      + `${r.loaded} loaded, ${r.built} built, ${r.typedErrors} TsrtErrors, ${r.crashes.length} crashes, ${r.hangs.length} hangs, ${r.slowRuns.length} slow runs`);
    for (const c of r.crashes.slice(0, 20)) console.log(`  crash case ${c.i} (${c.desc}) at ${c.stage}: ${c.error}`);
    for (const h of r.hangs) console.log(`  hang case ${h.i} (${h.desc})`);
    for (const h of r.slowRuns) console.log(`  slow CPU run (not a failure) case ${h.i} (${h.desc})`);
    expect(r.hangs).toEqual([]);
    expect(r.crashes).toEqual([]);
    expect(r.cases + r.slowRuns.length).toBe(CASES);
    // the mutations must reach past the decoder: a fuzzer whose cases all die in protobuf decoding tests little
    expect(r.loaded).toBeGreaterThan(CASES * 0.2);
    expect(r.built).toBeGreaterThan(CASES * 0.02);
  }, 300_000);
});

// Regressions found by the fuzzer, each a minimal model.
describe('importer regressions', () => {
  const io = (name: string, dims: number[]) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } });
  const model = (graph: Record<string, unknown>) => onnx.ModelProto.encode({
    irVersion: 8, opsetImport: [{ domain: '', version: 17 }],
    graph: { name: 'g', input: [io('x', [4])], output: [io('y', [4])], ...graph },
  }).finish();
  const relu = { name: 'r', opType: 'Relu', input: ['x'], output: ['y'] };
  const fails = (bytes: Uint8Array, re: RegExp) => {
    let err: unknown;
    try { parseModel(bytes); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(TsrtError);
    expect((err as Error).message).toMatch(re);
  };

  it('an initializer claiming 2^40 elements is refused before anything is allocated', () => {
    const huge = [1 << 20, 1 << 20];
    fails(model({ node: [relu], initializer: [{ name: 'w', dims: huge, dataType: 1, rawData: new Uint8Array(16) }] }), /bytes of data/);
    fails(model({ node: [relu], initializer: [{ name: 'w', dims: huge, dataType: 1, floatData: [1, 2] }] }), /has 2 values/);
    fails(model({ node: [relu], initializer: [{ name: 'w', dims: [2 ** 40, 2 ** 20], dataType: 7 }] }), /more than any file can hold/);
  });

  it('a TENSOR or GRAPH attribute without its value is a model-load error, not a TypeError', () => {
    const T = onnx.AttributeProto.AttributeType;
    fails(model({ node: [{ name: 'c', opType: 'Constant', output: ['y'], attribute: [{ name: 'value', type: T.TENSOR }] }] }), /attribute 'value' has type TENSOR but no 't'/);
    fails(model({ node: [{ name: 'i', opType: 'If', input: ['x'], output: ['y'], attribute: [{ name: 'then_branch', type: T.GRAPH }] }] }), /no 'g'/);
  });

  it('a negative dim (some exporters\' "dynamic") is symbolic, so no negative size reaches the build', async () => {
    const m = parseModel(model({ input: [io('x', [-1])], output: [io('y', [-1])], node: [relu] }));
    expect(m.graph.inputs[0].type.shape).toEqual(['?']);
    const engine = await build(m, { device: 'cpu', compileKernels: false, shapes: { x: [3] } });
    expect(engine.inputs[0].type.shape).toEqual([3]);
    fails(model({ input: [{ name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 2 ** 62 }] } } } }], node: [relu] }), /invalid dim/);
  });

  it('a shape input claiming 2^31 dims is refused instead of building a 2^31-rank shape', async () => {
    const axes = { name: 'axes', type: { tensorType: { elemType: 7, shape: { dim: [{ dimValue: 2 ** 31 }] } } } };
    const m = parseModel(model({ input: [io('x', [4]), axes], output: [io('y', [4])], node: [{ name: 'u', opType: 'Unsqueeze', input: ['x', 'axes'], output: ['y'] }] }));
    await expect(build(m, { device: 'cpu', compileKernels: false })).rejects.toThrow(/node 'u': output would have rank 2147483649/);
  });

  it('a value produced twice (fuzzed duplicate node) is refused at import instead of hanging a pass', () => {
    fails(model({ node: [relu, { ...relu, name: 'r2' }] }), /value 'y' is produced twice/);
    fails(model({ node: [{ ...relu, output: ['x'] }] }), /value 'x' is produced twice/);
  });
});

// .npy inputs (tsrt run --input x.npy): every truncation and 2000 byte-flipped/header-edited copies of a valid file
// load or end in a TsrtError; a header claiming a huge shape is refused before anything is allocated.
describe('npy reader fuzz', () => {
  it('mutated .npy files load or fail with a TsrtError', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-npy-'));
    const good = join(dir, 'x.npy');
    writeNpy(good, makeTensor('float32', [2, 3], Float32Array.from([1, 2, 3, 4, 5, 6])));
    const src = readFileSync(good);
    const rnd = prng(SEED);
    const cases: Buffer[] = [];
    for (let n = 0; n < src.length; n++) cases.push(src.subarray(0, n));
    for (let i = 0; i < 2000; i++) cases.push(Buffer.from(mutate(src, 'flip', rnd)));
    const header = src.toString('latin1');
    for (const shape of ['(1099511627776, 3)', '(-2, 3)', '(2.5, 3)', '(1e400,)', '(2, 3, 4)', '()']) {
      cases.push(Buffer.from(header.replace('(2, 3)', shape), 'latin1'));
    }
    cases.push(Buffer.from(header.replace("'<f4'", "'<f8'"), 'latin1'));
    const f = join(dir, 'case.npy');
    let loaded = 0;
    const crashes: string[] = [];
    for (const [i, c] of cases.entries()) {
      writeFileSync(f, c);
      try { readNpy(f); loaded++; } catch (e) { if (!(e instanceof TsrtError)) crashes.push(`case ${i}: ${(e as Error).stack?.split('\n').slice(0, 2).join(' ')}`); }
    }
    rmSync(dir, { recursive: true, force: true });
    expect(crashes).toEqual([]);
    expect(loaded).toBeGreaterThan(100);
  });
});
