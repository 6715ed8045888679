// Optimization profiles: the bundled PaddleOCR classifier has a symbolic batch; an engine with a [1, 8] batch profile
// runs batches 1, 3 and 8 like the CPU reference of the original model and refuses 9; several profiles, the LRU of
// on-demand shapes, profile validation, the CLI flag parsing, and a profile engine through an engine file.
import { describe, expect, it, beforeAll } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, type Engine } from '../src/runtime/engine.js';
import { ProfileSet, parseProfileFlags, validateProfiles, type Profile } from '../src/runtime/profiles.js';
import { loadEngine, readPlanHeader } from '../src/runtime/plan.js';
import { loadModel } from '../src/onnx/import.js';
import { runModelCpu } from '../src/runtime/cpu_executor.js';
import { compareTensors } from '../src/cli/conformance.js';
import { parseShapes, randomTensor } from '../src/cli/io.js';
import { TsrtError } from '../src/errors.js';
import type { Tensor } from '../src/ir/types.js';

const MODEL = new URL('../models/ppocr_mobile_v2_cls/model.onnx', import.meta.url).pathname;
const model = loadModel(MODEL);
const shape = (b: number) => [b, 3, 48, 192];
const input = (b: number) => randomTensor('float32', shape(b), 100 + b);
const profile = (lo: number, opt: number, hi: number): Profile => ({ min: { x: shape(lo) }, opt: { x: shape(opt) }, max: { x: shape(hi) } });
// The CPU backend does not need cubins; kernel compilation is covered by the engine-file tests.
const opts = { device: 'cpu' as const, compileKernels: false };

async function expectReference(engine: Engine, x: Tensor): Promise<void> {
  const got = await engine.run({ x });
  const [ref] = runModelCpu(model, new Map([['x', x]]));
  const out = got.get(engine.outputs[0].name)!;
  expect(out.dims).toEqual([x.dims[0], 2]);
  expect(compareTensors(out, ref, 1e-4, 1e-6)).toBeUndefined();
}

describe('one profile, batch 1..8', () => {
  let engine: Engine;
  beforeAll(async () => { engine = await build(model, { ...opts, profiles: [profile(1, 4, 8)] }); }, 60_000);

  it('is built at the opt shape and runs batches 1, 3, 8 like the CPU reference', async () => {
    expect(engine.inputs[0].type.shape).toEqual(shape(4));
    for (const b of [1, 3, 8, 4]) await expectReference(engine, input(b));
    expect(engine.profileSet!.cachedShapes()).toHaveLength(3); // 1, 3 and 8 specialized on first use; 4 is the engine
    await expectReference(engine, input(3)); // memoized
    expect(engine.profileSet!.cachedShapes()).toHaveLength(3);
  }, 60_000);

  it('refuses batch 9 and other spatial sizes, listing the profile', async () => {
    for (const dims of [shape(9), [2, 3, 48, 100]]) {
      const err = await engine.run({ x: randomTensor('float32', dims, 1) }).catch((e) => e);
      expect(err).toBeInstanceOf(TsrtError);
      expect(err.code).toBe('INPUT');
      expect(err.message).toContain(`x:${dims.join('x')} are outside every optimization profile`);
      expect(err.message).toContain('profile 0: x min 1x3x48x192 opt 4x3x48x192 max 8x3x48x192');
      expect(err.message).toMatch(/--min-shapes/);
    }
  });

  it('survives an engine file: the opt engine is stored, other shapes are built from the stored model', async () => {
    const p = join(mkdtempSync(join(tmpdir(), 'tsrt-prof-')), 'p.plan');
    engine.save(p);
    expect(readPlanHeader(p)).toMatchObject({ hasProfiles: true, build: { profiles: 1 } });
    const loaded = await loadEngine(p, { device: 'cpu' });
    expect(loaded.profileSet!.profiles).toEqual([profile(1, 4, 8)]);
    for (const b of [4, 3]) {
      const x = input(b);
      const [a, c] = [await engine.run({ x }), await loaded.run({ x })];
      expect([...c]).toEqual([...a]);
    }
    await expect(loaded.run({ x: input(9) })).rejects.toThrow(/outside every optimization profile/);
    loaded.dispose();
  }, 60_000);
});

it('several profiles: each opt shape is built ahead, a batch in a gap between profiles is refused', async () => {
  const engine = await build(model, { ...opts, profiles: [profile(1, 2, 2), profile(4, 6, 8)] });
  expect(engine.profileSet!.pinned.map((e) => e.inputs[0].type.shape)).toEqual([shape(6)]);
  await expectReference(engine, input(6));
  expect(engine.profileSet!.cachedShapes()).toHaveLength(0); // served by the pinned engine
  await expectReference(engine, input(5));
  await expect(engine.run({ x: input(3) })).rejects.toThrow(/profile 0: x min 1x3x48x192 opt 2x3x48x192 max 2x3x48x192\n\s+profile 1: x min 4x3x48x192/);
  engine.dispose();
}, 60_000);

it('keeps at most `capacity` on-demand engines, evicting the least recently used', async () => {
  const root = await build(model, { ...opts, shapes: { x: shape(1) } });
  const set = new ProfileSet(model, [profile(1, 1, 8)], opts, build, [], 2);
  root.profileSet = set;
  const key = (b: number) => JSON.stringify([['x', shape(b)]]);
  const e2 = await set.engineForShapes({ x: shape(2) }, root);
  await set.engineForShapes({ x: shape(3) }, root);
  expect(await set.engineForShapes({ x: shape(2) }, root)).toBe(e2); // 2 is now the most recent
  await set.engineForShapes({ x: shape(5) }, root);
  expect(set.cachedShapes()).toEqual([key(2), key(5)]);
  expect(await set.engineForShapes({ x: shape(1) }, root)).toBe(root);
  root.dispose();
}, 60_000);

describe('profile checks', () => {
  const bad = (p: Profile) => { try { validateProfiles(model.graph, [p], {}, 'm.onnx'); } catch (e) { expect((e as TsrtError).code).toBe('USAGE'); return (e as Error).message; } return ''; };
  it('names the profile, the input and the rule broken', () => {
    expect(bad(profile(4, 2, 8))).toMatch(/m.onnx: optimization profile 0: 'x' dim 0: min 4 <= opt 2 <= max 8 does not hold/);
    expect(bad({ ...profile(1, 2, 8), opt: { y: shape(2) } })).toMatch(/'y' is not an input of the model[\s\S]*inputs are: x/);
    expect(bad({ ...profile(1, 2, 8), max: { x: [8, 3, 48] } })).toMatch(/max shape 8x3x48 of 'x' has rank 3/);
    expect(bad({ ...profile(1, 2, 8), min: { x: [1, 4, 48, 192] } })).toMatch(/changes fixed dim 1 = 3/);
    expect(bad({ min: {}, opt: {}, max: {} })).toMatch(/names no input/);
    expect(bad(profile(1, 2, 8))).toBe('');
  });
  it('parses trtexec-style repeated flags; opt alone means min = max = opt', () => {
    expect(parseProfileFlags(['x:1x3x48x192', 'x:4x3x48x192'], ['x:2x3x48x192', 'x:6x3x48x192'], ['x:2x3x48x192', 'x:8x3x48x192'], parseShapes))
      .toEqual([profile(1, 2, 2), profile(4, 6, 8)]);
    expect(parseProfileFlags([], ['x:2x3x48x192'], [], parseShapes)).toEqual([profile(2, 2, 2)]);
    expect(parseProfileFlags([], [], [], parseShapes)).toBeUndefined();
    expect(() => parseProfileFlags(['x:1x3x48x192'], ['x:2x3x48x192', 'x:4x3x48x192'], [], parseShapes)).toThrow(/1 --min-shapes, 2 --opt-shapes and 0 --max-shapes/);
    expect(() => parseProfileFlags([], ['x:2xQ'], [], parseShapes)).toThrow(/--opt-shapes x:2xQ: bad dim 'Q'/);
  });
});
