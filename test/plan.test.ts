// Engine files: round trip of the bundled model (kernels compiled by NVRTC, so cubins are in the file), refusal of
// corrupted, truncated and foreign files, the device compatibility rules, and the value codec's edge cases.
import { describe, expect, it, beforeAll, vi } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, type Engine } from '../src/runtime/engine.js';
import { checkPlanDevice, isPlanFile, loadEngine, readPlanHeader, PLAN_FORMAT_VERSION, type PlanHeader } from '../src/runtime/plan.js';
import { BlobWriter, Decoder, encodeValue } from '../src/runtime/plan_codec.js';
import { loadTensorFile, parseModel } from '../src/onnx/import.js';
import { printGraph } from '../src/ir/text.js';
import { TsrtError } from '../src/errors.js';
import { makeTensor } from '../src/ir/tensor.js';
import type { Tensor } from '../src/ir/types.js';
import { makeProgram } from '../src/cli/main.js';
import { bool, modelBytes, rand, type AttrSpec, type GraphSpec } from './rnn-control.build.js';

const MODEL = new URL('../models/ppocr_mobile_v2_cls/model.onnx', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'tsrt-plan-'));
const bytesOf = (t: Tensor) => Buffer.from((t.data as Uint8Array).buffer, (t.data as Uint8Array).byteOffset, (t.data as Uint8Array).byteLength);

/** The ENGINE_FILE error loading `bytes` gives (fails the test when it loads). */
async function refusal(bytes: Uint8Array, name: string): Promise<TsrtError> {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  try {
    const e = await loadEngine(p, { device: 'cpu' });
    e.dispose();
  } catch (e) {
    expect(e).toBeInstanceOf(TsrtError);
    expect((e as TsrtError).code).toBe('ENGINE_FILE');
    expect((e as Error).message).toContain(p);
    return e as TsrtError;
  }
  throw new Error(`${name} loaded`);
}

describe('engine files', () => {
  let engine: Engine;
  let plan: string;
  let file: Buffer;
  let buildMs: number;
  const x = loadTensorFile(new URL('../models/ppocr_mobile_v2_cls/test_data_set_0/input_0.pb', import.meta.url).pathname);

  beforeAll(async () => {
    const t0 = performance.now();
    engine = await build(MODEL, { device: 'cpu', shapes: { x: x.dims } });
    buildMs = performance.now() - t0;
    plan = join(dir, 'ppocr.plan');
    engine.save(plan);
    file = readFileSync(plan);
  }, 120_000);

  it('round trip: same outputs bit for bit, same layers, graph, memory plan, cubins and report', async () => {
    expect(isPlanFile(plan)).toBe(true);
    expect(isPlanFile(MODEL)).toBe(false);
    const t0 = performance.now();
    const loaded = await loadEngine(plan, { device: 'cpu' });
    const loadMs = performance.now() - t0;
    console.log(`ppocr: build ${buildMs.toFixed(0)} ms (kernel cache warm or cold), load ${loadMs.toFixed(0)} ms, file ${(file.length / 1024).toFixed(0)} KiB`);
    expect(loaded.backend).toBe('cpu');
    expect(loaded.layers()).toEqual(engine.layers());
    expect(printGraph(loaded.graph)).toBe(printGraph(engine.graph));
    expect(loaded.memory).toEqual(engine.memory);
    expect(loaded.report).toEqual(engine.report);
    expect(loaded.built).toEqual({ ...engine.built, options: { shapes: { x: x.dims } } });
    expect([...loaded.lowered.types]).toEqual([...engine.lowered.types]);
    expect([...loaded.lowered.consts.keys()]).toEqual([...engine.lowered.consts.keys()]);
    for (const [k, t] of engine.lowered.consts) expect(bytesOf(loaded.lowered.consts.get(k)!).equals(bytesOf(t))).toBe(true);
    expect(engine.kernels.size).toBeGreaterThan(10);
    const modules = new Set<Uint8Array>();
    for (const [k, v] of engine.kernels) {
      const got = loaded.kernels.get(k)!;
      expect(got.source).toEqual(v.source);
      expect(Buffer.from(got.cubin!).equals(Buffer.from(v.cubin!))).toBe(true);
      modules.add(got.cubin!);
    }
    // kernels packed into one NVRTC module share one cubin object again (the runner loads each module once)
    expect(modules.size).toBe(new Set([...engine.kernels.values()].map((k) => k.cubin)).size);
    const [a, b] = [await engine.run({ x }), await loaded.run({ x })];
    for (const [k, t] of a) expect(bytesOf(b.get(k)!).equals(bytesOf(t))).toBe(true);
    const h = readPlanHeader(plan);
    expect(h).toMatchObject({ formatVersion: PLAN_FORMAT_VERSION, arch: 'sm_90', hasCubins: true, hasProfiles: false, fileBytes: file.length });
    expect(h.nvrtc[0]).toBeGreaterThanOrEqual(11);
    expect(h.build).toMatchObject({ model: MODEL, backend: 'cpu', kernels: engine.kernels.size });
    loaded.dispose();
  });

  it('a flipped byte anywhere is refused (checksum, or the header field it hit)', async () => {
    const h = readPlanHeader(plan);
    const headerBytes = file.readUInt32LE(12);
    const positions = [0, 5, 8, 13, 17, 30, 60, 70, 85, 100, 120, 130, headerBytes - 1];
    for (const s of h.sections) positions.push(headerBytes + s.offset, headerBytes + s.offset + Math.floor(s.bytes / 2));
    for (let i = 0; i < 12; i++) positions.push(headerBytes + Math.floor(((i + 0.5) / 12) * (file.length - headerBytes)));
    positions.push(file.length - 1);
    for (const pos of positions) {
      const bad = Buffer.from(file);
      bad[pos] ^= 0x10;
      const e = await refusal(bad, 'flipped.plan');
      if (pos >= 16) expect(e.message, `byte ${pos}`).toMatch(/checksum|truncated|unexpected bytes|corrupt header/);
      if (pos >= headerBytes) expect(e.message, `byte ${pos}`).toMatch(/checksum mismatch/);
      expect(e.message).toMatch(/fix: /);
    }
  });

  it('a truncated or extended file is refused and says so', async () => {
    for (const n of [0, 5, 8, 100, 127, 200, file.readUInt32LE(12), Math.floor(file.length / 2), file.length - 1]) {
      const e = await refusal(file.subarray(0, n), `cut-${n}.plan`);
      expect(e.message, `${n} bytes`).toMatch(/truncated/);
    }
    const e = await refusal(Buffer.concat([file, Buffer.from('tail')]), 'long.plan');
    expect(e.message).toMatch(/4 unexpected bytes after the end/);
  });

  it('a foreign file or another format version is refused with the fix', async () => {
    const onnx = await refusal(readFileSync(MODEL), 'model-as.plan');
    expect(onnx.message).toMatch(/not a tsrt engine file.*ONNX model/s);
    expect(onnx.message).toMatch(/tsrt build MODEL.onnx -o/);
    const v = Buffer.from(file);
    v.writeUInt32LE(PLAN_FORMAT_VERSION + 1, 8);
    const ev = await refusal(v, 'v2.plan');
    expect(ev.message).toMatch(new RegExp(`format ${PLAN_FORMAT_VERSION + 1} .*reads format ${PLAN_FORMAT_VERSION}`));
    expect(ev.message).toMatch(/rebuild it with this tsrt/);
    await expect(loadEngine(join(dir, 'missing.plan'))).rejects.toThrow(/cannot read the engine file/);
  });

  it('device rules: other arch and too-old driver refuse; same-major older driver and another GPU model warn', () => {
    const h = readPlanHeader(plan);
    const hdr = (o: Partial<PlanHeader>): PlanHeader => ({ ...h, ...o, build: { ...h.build, ...(o.build ?? {}) } });
    const h100 = { name: 'NVIDIA H100 80GB HBM3', ccMajor: 9, ccMinor: 0, driverVersion: 12040 };
    const check = (p: PlanHeader, gpu = h100) => { const w: string[] = []; checkPlanDevice('x.plan', p, gpu, (m) => w.push(m)); return w; };
    expect(check(hdr({ arch: 'sm_90', nvrtc: [11, 8] }))).toEqual([]);
    expect(check(hdr({ arch: 'sm_90a', nvrtc: [12, 4] }))).toEqual([]);
    expect(check(hdr({ arch: 'compute_80', nvrtc: [12, 0] }))).toEqual([]); // PTX: the driver compiles it for sm_90
    const a100 = { name: 'NVIDIA A100', ccMajor: 8, ccMinor: 0, driverVersion: 12040 };
    expect(() => check(hdr({ arch: 'sm_90', build: { device: 'NVIDIA H100 80GB HBM3' } }), a100))
      .toThrow(/built for sm_90 \(NVIDIA H100 80GB HBM3\), but this GPU \(NVIDIA A100\) is sm_80[\s\S]*tsrt build .*model.onnx -o x.plan/);
    expect(() => check(hdr({ arch: 'compute_90' }), a100)).toThrow(/is sm_80/);
    expect(() => check(hdr({ hasCubins: false }))).toThrow(/no compiled kernels/);
    expect(() => check(hdr({ nvrtc: [13, 0] }))).toThrow(/compiled by NVRTC 13.0, this driver supports CUDA 12.4/);
    expect(() => check(hdr({ arch: 'compute_90', nvrtc: [12, 8] }))).toThrow(/NVRTC 12.8/);
    expect(check(hdr({ nvrtc: [12, 8] }))[0]).toMatch(/minor-version compatibility/);
    expect(check(hdr({ build: { device: 'NVIDIA H200' } }))[0]).toMatch(/tuned on NVIDIA H200; this GPU is NVIDIA H100/);
  });
});

describe('plan value codec', () => {
  it('keeps non-finite numbers, -0, bigints, Maps, Sets, $-keys, undefined in arrays, and typed array identity', () => {
    const w = new Float32Array([1, NaN, -0]);
    const big = new Float32Array(2048).map((_, i) => i);
    const value = {
      nums: [NaN, Infinity, -Infinity, -0, 0, 1.5, Number.MAX_VALUE], big: 12345678901234567890n,
      map: new Map<unknown, unknown>([[1, 'a'], ['k', new Set([1, 2])]]), odd: { $typed: 'x', $map: 1 },
      holes: [undefined, 1], fn: () => 1, shared: [w, w], copy: [big, Float32Array.from(big)],
      i64: new BigInt64Array([-1n, 2n ** 62n]), buf: Buffer.from([1, 2, 3]), t: makeTensor('float16', [2], new Uint16Array([0x3c00, 0x7e00])),
    };
    const blobs = new BlobWriter();
    const json = JSON.parse(JSON.stringify(encodeValue(value, blobs)));
    const data = Buffer.concat(blobs.chunks());
    const area = new Uint8Array(data.length);
    area.set(data);
    const back = new Decoder('t.plan', (i) => blobs.index[i] && area.subarray(blobs.index[i][0], blobs.index[i][0] + blobs.index[i][1])).decode(json) as typeof value;
    expect(back.nums).toEqual(value.nums);
    expect(Object.is(back.nums[3], -0)).toBe(true);
    expect(back.big).toBe(value.big);
    expect(back.map).toEqual(value.map);
    expect(back.odd).toEqual(value.odd);
    expect(back.holes).toEqual([undefined, 1]);
    expect('fn' in back).toBe(false);
    expect(back.shared[0]).toBe(back.shared[1]);
    expect(Array.from(back.shared[0])).toEqual(Array.from(w));
    expect(blobs.index.length).toBe(5); // w, big (its copy deduplicated by content), i64, buf, t
    expect(back.copy[1]).toEqual(big);
    expect(back.i64).toEqual(value.i64);
    expect(back.buf).toEqual(new Uint8Array([1, 2, 3]));
    expect(back.t).toEqual(value.t);
    for (const [off] of blobs.index) expect(off % 64).toBe(0);
  });

  it('refuses a blob reference that does not exist', () => {
    const d = new Decoder('t.plan', () => undefined);
    expect(() => d.decode({ $typed: 'Float32Array', blob: 3, length: 1 })).toThrow(/malformed engine data: blob 3/);
  });
});

it('a model with a host step (If with subgraphs) and fixed input values survives the round trip', async () => {
  const branch = (name: string, op: string): AttrSpec => ({ g: { name, inputs: [], outputs: [[name + '_o', 'float32', [2, 3]]], nodes: [{ op, inputs: ['x', 'y'], outputs: [name + '_o'] }] } });
  const spec: GraphSpec = {
    inputs: [['c', 'bool', []], ['x', 'float32', [2, 3]], ['y', 'float32', [2, 3]]], outputs: [['out', 'float32', [2, 3]]],
    nodes: [{ op: 'If', inputs: ['c'], outputs: ['out'], attrs: { then_branch: branch('then', 'Add'), else_branch: branch('else', 'Sub') } }],
  };
  const model = parseModel(modelBytes(spec, 16));
  const y = rand('float32', [2, 3], 2);
  const engine = await build(model, { device: 'cpu', compileKernels: false, inputValues: { y } });
  expect(engine.layers().some((l) => l.kind === 'host' && l.op === 'If')).toBe(true);
  const p = join(dir, 'if.plan');
  engine.save(p);
  const loaded = await loadEngine(p, { device: 'cpu' });
  expect(loaded.fixedInputs).toEqual(engine.fixedInputs);
  expect(printGraph(loaded.graph)).toBe(printGraph(engine.graph));
  expect(loaded.layers()).toEqual(engine.layers());
  for (const c of [true, false]) {
    const feeds = { c: bool([], [c]), x: rand('float32', [2, 3], 1) };
    const [a, b] = [await engine.run(feeds), await loaded.run(feeds)];
    expect([...b]).toEqual([...a]);
  }
  await expect(loaded.run({ c: bool([], [true]), x: rand('float32', [2, 3], 1), y: rand('float32', [2, 3], 3) })).rejects.toThrow(/fixed at build time/);
});

it('CLI: tsrt build -o writes the plan, tsrt run, bench and inspect load it (no rebuild)', async () => {
  const p = join(dir, 'cli.plan');
  const lines: string[] = [];
  const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => { lines.push(a.join(' ')); });
  const code = process.exitCode;
  try {
    await makeProgram().parseAsync(['node', 'tsrt', 'build', MODEL, '-o', p, '--device', 'cpu', '--shapes', 'x:1x3x48x192']);
    await makeProgram().parseAsync(['node', 'tsrt', 'run', p, '--compare-cpu']);
    await makeProgram().parseAsync(['node', 'tsrt', 'bench', p, '--iterations', '1', '--warmup', '0']);
    lines.push('INSPECT');
    await makeProgram().parseAsync(['node', 'tsrt', 'inspect', p]);
  } finally { spy.mockRestore(); }
  const inspected = JSON.parse(lines.slice(lines.indexOf('INSPECT') + 1).join('\n'));
  expect(inspected.header).toMatchObject({ arch: 'sm_90', hasCubins: true });
  expect(inspected.layers.length).toBeGreaterThan(10);
  const out = lines.join('\n');
  expect(out).toMatch(/wrote .*cli.plan \([\d.]+ MiB\)/);
  expect(out).toMatch(/loaded .*cli.plan in \d+ ms \(no passes, no NVRTC\)/);
  expect(out).toMatch(/vs CPU reference of the original model, softmax_0.tmp_0: match/);
  expect(out).toMatch(/throughput: /);
  expect(lines.filter((l) => l.startsWith('built ')).length).toBe(1); // only `build` built; run and bench loaded
  expect(process.exitCode).toBe(code);
}, 120_000);
