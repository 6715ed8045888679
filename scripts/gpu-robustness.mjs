#!/usr/bin/env node
// Runtime robustness checks for the GPU machine (needs a built dist/; plain node, no vitest). Called by
// scripts/test-gpu.mjs (`--filter robust`), or alone: `node scripts/gpu-robustness.mjs [--soak-runs N] [--tests DIR]`.
//  a. soak: one engine, 10,000 runs: device memory (cuMemGetInfo) and host RSS flat, outputs bit-identical;
//     and 20 build/dispose cycles leave device memory where it was (dispose frees modules, arena, constants);
//  b. two engines of different models in one process, each on its own stream, runs interleaved as promises many
//     times: every result bit-identical to the engine's result when run alone;
//  c. an NVRTC compile error, through the kernel cache both in-process and through the helper-process pool that
//     only dist/ uses: the error names the saved kernel source (.cu) path, which holds the source, and the log.
// Section c runs without a GPU too.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

export async function robustness({ report, tests, soakRuns = 10_000, gpu = true }) {
  const { KernelCache } = await import('../dist/runtime/kernel_cache.js');
  const { TsrtError } = await import('../dist/errors.js');

  // c. NVRTC errors: one broken kernel among good ones, in-process (1 job) and in helper processes (>= 4 jobs)
  for (const [label, n] of [['in-process', 1], ['helper pool', 6]]) {
    const stamp = `${Date.now()}_${n}`;
    const good = Array.from({ length: n - 1 }, (_, i) => ({ name: `ok_${stamp}_${i}`, source: `extern "C" __global__ void ok_${stamp}_${i}(float* p) { p[threadIdx.x] = ${i}.0f; }` }));
    const broken = { name: `broken_${stamp}`, source: `extern "C" __global__ void broken_${stamp}(float* p) {\n  p[0] = undefined_symbol_${stamp};\n}\n` };
    let err;
    try { await new KernelCache({ dir: null, arch: 'sm_90' }).compileAll([...good, broken]); } catch (e) { err = e; }
    const path = /source: (\S+\.cu)/.exec(err?.message ?? '')?.[1];
    const ok = err instanceof TsrtError && err.code === 'NVRTC' && !!path && existsSync(path)
      && readFileSync(path, 'utf8') === broken.source && /log:[\s\S]*undefined_symbol_/.test(err.message);
    report(ok, `nvrtc error (${label}): names the saved source and shows the log`, ok ? path : String(err?.message ?? 'no error thrown').slice(0, 400));
  }
  if (!gpu) return;

  const { build } = await import('../dist/runtime/engine.js');
  const { sharedCuda } = await import('../dist/runtime/device_runner.js');
  const { loadTensorFile } = await import('../dist/onnx/import.js');
  const cu = sharedCuda();
  const mib = (b) => `${(b / 1048576).toFixed(1)} MiB`;
  const same = (a, b) => a.dtype === b.dtype && a.dims.join() === b.dims.join()
    && Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength));
  const ppocrDir = join(root, 'models/ppocr_mobile_v2_cls');
  const x = loadTensorFile(join(ppocrDir, 'test_data_set_0/input_0.pb'));

  // a. soak
  {
    const engine = await build(join(ppocrDir, 'model.onnx'), { device: 'cuda', shapes: { x: x.dims } });
    const out = engine.outputs[0].name;
    const ref = (await engine.run({ x })).get(out);
    for (let i = 0; i < 200; i++) await engine.run({ x });
    global.gc?.();
    const free0 = cu.memInfo().free, rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    let diffs = 0;
    for (let i = 0; i < soakRuns; i++) {
      const y = (await engine.run({ x })).get(out);
      if (i % 500 === 0 && !same(y, ref)) diffs++;
    }
    const ms = (performance.now() - t0) / soakRuns;
    global.gc?.();
    const free1 = cu.memInfo().free, rss1 = process.memoryUsage().rss;
    engine.dispose();
    const drift = free0 - free1;
    report(Math.abs(drift) <= 2 * 1048576 && rss1 - rss0 < 256 * 1048576 && diffs === 0,
      `soak: ${soakRuns} runs of one engine`, `device free ${mib(free0)} -> ${mib(free1)} (drift ${mib(drift)}), host RSS +${mib(rss1 - rss0)}, ${ms.toFixed(3)} ms/run, ${diffs} changed outputs`);

    const base = cu.memInfo().free;
    for (let i = 0; i < 20; i++) (await build(join(ppocrDir, 'model.onnx'), { device: 'cuda', shapes: { x: x.dims } })).dispose();
    const after = cu.memInfo().free;
    report(Math.abs(base - after) <= 2 * 1048576, 'soak: 20 build/dispose cycles free their device memory', `free ${mib(base)} -> ${mib(after)}`);
  }

  // b. two engines, two streams, interleaved runs
  {
    const sq = join(tests, 'models/light/light_squeezenet');
    if (!existsSync(join(sq, 'model.onnx'))) { report(false, 'two engines: light_squeezenet missing', sq); return; }
    const x2 = loadTensorFile(join(sq, 'test_data_set_0/input_0.pb'));
    const e1 = await build(join(ppocrDir, 'model.onnx'), { device: 'cuda', shapes: { x: x.dims } });
    const m2 = (await import('../dist/onnx/import.js')).loadModel(join(sq, 'model.onnx'));
    const e2 = await build(m2, { device: 'cuda', shapes: { [m2.graph.inputs[0].name]: x2.dims } });
    const f1 = { x }, f2 = { [e2.inputs[0].name]: x2 };
    const r1 = (await e1.run(f1)).get(e1.outputs[0].name), r2 = (await e2.run(f2)).get(e2.outputs[0].name);
    const b1 = e1.deviceBuffers(), b2 = e2.deviceBuffers();
    const distinct = Object.values(b1.outputs).every((p) => !Object.values(b2.outputs).includes(p));
    let bad = 0;
    const rounds = 500;
    const jobs = [];
    for (let i = 0; i < rounds; i++) {
      jobs.push(e1.run(f1).then((o) => { if (!same(o.get(e1.outputs[0].name), r1)) bad++; }));
      jobs.push(e2.run(f2).then((o) => { if (!same(o.get(e2.outputs[0].name), r2)) bad++; }));
    }
    await Promise.all(jobs);
    // and a mixed order: e2, e1, e1, e2, ...
    for (let i = 0; i < rounds; i++) {
      const [a, b] = i % 2 ? [e1, e2] : [e2, e1];
      const [oa, ob] = await Promise.all([a.run(a === e1 ? f1 : f2), b.run(b === e1 ? f1 : f2)]);
      if (!same(oa.get(a.outputs[0].name), a === e1 ? r1 : r2) || !same(ob.get(b.outputs[0].name), b === e1 ? r1 : r2)) bad++;
    }
    e1.dispose(); e2.dispose();
    report(bad === 0 && distinct, `two engines (ppocr + squeezenet) on their own streams, ${4 * rounds} interleaved runs`, `${bad} results differ from single-engine runs; separate output buffers: ${distinct}`);
  }
}

// standalone
if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const opt = (f, d) => { const i = args.indexOf(f); return i >= 0 ? args[i + 1] : d; };
  const { cudaAvailable } = await import('../dist/runtime/device_runner.js');
  let passed = 0, failed = 0;
  const report = (ok, name, why = '') => { if (ok) passed++; else failed++; console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${why ? ' ' + why : ''}`); };
  const gpu = cudaAvailable();
  if (!gpu) console.log('no CUDA device: only the NVRTC error checks run');
  await robustness({ report, gpu, tests: opt('--tests', join(root, '../shared/onnx-tests')), soakRuns: Number(opt('--soak-runs', 10_000)) });
  console.log(`${passed} passed, ${failed} failed, ${gpu ? 0 : 2} skipped`);
  process.exit(failed ? 1 : 0);
}
