#!/usr/bin/env node
// GPU test suite (`npm run test:gpu`): needs an NVIDIA GPU and a built dist/. Runs without vitest (the GPU
// machine has only production dependencies):
//  1. ONNX conformance on the CUDA backend: every test that passes on the CPU reference must pass on CUDA
//     (test/conformance/cpu-expected.tsv lists the CPU exceptions);
//  2. the shared real/light models on CUDA (fp32);
//  3. with --models DIR (bench/export.py output): ResNet-50, MobileNetV2, BERT-base against PyTorch's fp32
//     outputs: fp32 max abs error <= 1e-3 of the output range; fp16 cosine >= 0.999 and the same argmax;
//  4. concat in place (no copy kernel) on an Inception-like block and the light models with random weights;
//  5. engine files: every model above built, saved as .plan and loaded on the GPU gives the same outputs bit for
//     bit (build vs load time printed), and a ppocr batch profile [1, 8] on CUDA (--filter 'plan|profiles' for just these);
//  6. programmatic dependent launches (BuildOptions.pdl) give the same bits as plain launches (--filter pdl).
// Ends with the plain line `N passed, N failed, N skipped`.
//   node scripts/test-gpu.mjs [--tests DIR] [--models DIR] [--filter RE]
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const opt = (f, d) => { const i = args.indexOf(f); return i >= 0 ? args[i + 1] : d; };
const root = new URL('..', import.meta.url).pathname;
const tests = opt('--tests', existsSync(join(root, '.gpu/onnx-tests')) ? join(root, '.gpu/onnx-tests') : join(root, '../shared/onnx-tests'));
const models = opt('--models');
const filter = opt('--filter') ? new RegExp(opt('--filter')) : undefined;

const { cudaAvailable } = await import('../dist/runtime/device_runner.js');
if (!cudaAvailable()) {
  console.log('GPU tests skipped: no CUDA device (libcuda.so.1 or a GPU is missing)');
  console.log('0 passed, 0 failed, 1 skipped');
  process.exit(0);
}
const { build, buildForFeeds } = await import('../dist/runtime/engine.js');
const { runConformance } = await import('../dist/cli/conformance.js');
const { loadModel, loadTensorFile } = await import('../dist/onnx/import.js');
const { accuracy } = await import('../dist/cli/io.js');

let passed = 0, failed = 0, skipped = 0;
const report = (ok, name, why = '') => { if (ok) passed++; else failed++; console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${why ? ' ' + why : ''}`); };

const expected = new Set(readFileSync(join(root, 'test/conformance/cpu-expected.tsv'), 'utf8').split('\n')
  .filter((l) => l.trim() && !l.startsWith('#')).map((l) => l.split('\t')[0]));

async function cudaBackend(model, feeds) {
  const engine = await buildForFeeds(model, feeds, { device: 'cuda' });
  try {
    const outs = await engine.run(feeds);
    return engine.outputs.map((vi) => outs.get(vi.name));
  } finally { engine.dispose(); }
}

// (without the ONNX tests, e.g. .gpu/ packed without --tests: conformance and the zero-copy check are skipped, said so)
const haveTests = existsSync(join(tests, 'node'));
if (!haveTests) { skipped += 2; console.log(`SKIP conformance and zero-copy: no ONNX tests at ${tests} (pack .gpu/ with --tests, or pass --tests DIR)`); }
for (const [sub, prefix, rtol] of haveTests ? [['node', 'node/', 1e-3], ['models', 'models/', 2e-3]] : []) {
  const results = await runConformance(join(tests, sub), { backend: cudaBackend, filter, rtol });
  for (const r of results) {
    const name = prefix + r.name;
    if (expected.has(name)) { skipped++; continue; }
    if (r.status === 'UNSUPPORTED') { skipped++; console.log(`SKIP ${name} ${r.reason}`); continue; }
    report(r.status === 'PASS', `cuda ${name}`, r.reason);
  }
}

// Zero-copy API: write the input buffer on the device, run in place, read the output buffer.
if (haveTests) {
  const { Cuda } = await import('../dist/runtime/cuda.js');
  const model = loadModel(join(tests, 'node/test_relu/model.onnx'));
  const x = loadTensorFile(join(tests, 'node/test_relu/test_data_set_0/input_0.pb'));
  const engine = await build(model, { device: 'cuda', shapes: { [model.graph.inputs[0].name]: x.dims } });
  const bufs = engine.deviceBuffers();
  const cu = new Cuda().init();
  cu.memcpyHtoD(bufs.inputs[model.graph.inputs[0].name], x.data);
  await engine.runOnDevice();
  const y = new Float32Array(x.data.length);
  cu.memcpyDtoH(y, bufs.outputs[engine.outputs[0].name]);
  engine.dispose();
  report(y.every((v, i) => v === Math.max(0, x.data[i])), 'device buffers: runOnDevice without host copies');
}

if (models) {
  for (const m of ['resnet50', 'mobilenet_v2', 'bert-base']) {
    const dir = join(models, m);
    if (!existsSync(join(dir, 'model.onnx'))) { skipped++; console.log(`SKIP ${m}: not exported in ${models}`); continue; }
    const model = loadModel(join(dir, 'model.onnx'));
    const x = loadTensorFile(join(dir, 'test_data_set_0/input_0.pb'));
    const ref = loadTensorFile(join(dir, 'test_data_set_0/output_0.pb'));
    for (const fp16 of [false, true]) {
      const engine = await build(model, { device: 'cuda', fp16, shapes: { [model.graph.inputs[0].name]: x.dims } });
      const out = (await engine.run({ [model.graph.inputs[0].name]: x })).get(engine.outputs[0].name);
      engine.dispose();
      const a = accuracy(out, ref);
      const ok = fp16 ? a.cosine >= 0.999 && a.argmaxMatch : a.maxAbs <= 1e-3 * a.range;
      report(ok, `${m} ${fp16 ? 'fp16' : 'fp32'} vs PyTorch`, `max abs ${a.maxAbs.toExponential(2)} (${(a.maxAbs / a.range).toExponential(2)} of range), cosine ${a.cosine.toFixed(6)}, argmax ${a.argmaxMatch ? 'same' : 'different'}`);
    }
  }
}

// Concat in place (tsrt::ConcatInPlace: producers write their slots of the concat output through offset aliases, no
// copy kernel) against the CPU reference of the same graph: an Inception-like block at batch 1 (in place) and 2
// (strided: copies), and the light models with concats, their conv/gemm weights randomized (light weights are one
// constant, which would hide a slot at the wrong offset); fp32 and fp16.
{
  const { parseGraph } = await import('../dist/ir/text.js');
  const { newPassContext, runPasses } = await import('../dist/passes/pass.js');
  const B = await import('../dist/passes/basic.js');
  const { runGraph } = await import('../dist/runtime/cpu_executor.js');
  const { randomTensor } = await import('../dist/cli/io.js');
  const { fromF64, toF64, size } = await import('../dist/ir/tensor.js');
  const block = (n) => `graph block(%x: float32[${n},8,8,8]) -> (%y: float32[${n},24,8,8]) opset 17 {
    const %w1: float32[8,8,1,1] = [${Array.from({ length: 64 }, (_, i) => ((i * 37) % 17) / 17 - 0.5).join(', ')}]
    const %w2: float32[8,8,1,1] = [${Array.from({ length: 64 }, (_, i) => ((i * 11) % 13) / 13 - 0.5).join(', ')}]
    %c1 = Conv(%x, %w1)
    %a = Relu(%c1)
    %b = Conv(%x, %w2)
    %p = MaxPool(%x) {kernel_shape=[3, 3], pads=[1, 1, 1, 1]}
    %z = Concat(%a, %b, %p) {axis=1}
    %y = Sigmoid(%z) }`;
  const randomWeights = (g) => {
    const inits = new Map(g.initializers);
    let k = 1;
    for (const n of g.nodes) {
      const W = inits.get(n.inputs[1] ?? '');
      if (!['Conv', 'Gemm', 'MatMul'].includes(n.op) || !W || W.dtype !== 'float32') continue;
      const fanIn = n.op === 'Conv' ? size(W.dims.slice(1)) : W.dims[0];
      for (const x of n.inputs.slice(1, 3)) {
        const t = x && inits.get(x);
        if (t && t.dtype === 'float32') inits.set(x, fromF64('float32', t.dims, Array.from(toF64(randomTensor('float32', t.dims, k++)), (v) => v / Math.sqrt(fanIn))));
      }
    }
    return { ...g, initializers: inits };
  };
  const cases = [1, 2].map((n) => [`block batch ${n}`, parseGraph(block(n))]);
  for (const d of ['light_squeezenet', 'light_inception_v1', 'light_densenet121', 'light_shufflenet']) {
    const f = join(tests, 'models/light', d, 'model.onnx');
    if (!existsSync(f)) continue;
    const g = loadModel(f).graph;
    cases.push([d, randomWeights(runPasses(g, [B.specializeShapes, B.inferTypes, B.foldConstants, B.deadCode], newPassContext()))]);
  }
  for (const [name, g] of cases) {
    if (filter && !filter.test(`concat ${name}`)) continue;
    const x = g.inputs[0];
    const feeds = new Map([[x.name, randomTensor('float32', x.type.shape, 5)]]);
    const out = g.outputs[0].name;
    const ref = runGraph(g, feeds).get(out);
    for (const fp16 of [false, true]) {
      const engine = await build({ graph: g, irVersion: 8, producer: 'tsrt-test', opsets: { '': g.opset } }, { device: 'cuda', fp16, shapes: { [x.name]: x.type.shape } });
      const got = (await engine.run(feeds)).get(out);
      const placed = engine.passContext.fusions.filter((r) => r.pass === 'concat-in-place').length;
      const copies = engine.layers().filter((l) => l.kind === 'kernel' && /Concat/.test(l.op)).length;
      engine.dispose();
      const a = accuracy(got, ref);
      // (no argmax rule: the block's output is no classifier, and light models' outputs are near-uniform)
      const ok = fp16 ? a.cosine >= 0.999 : a.maxAbs <= 1e-3 * a.range;
      report(ok, `concat in place ${name} ${fp16 ? 'fp16' : 'fp32'} (${placed} concats in place, ${copies} copy kernels)`,
        `max abs ${a.maxAbs.toExponential(2)} (${(a.maxAbs / a.range).toExponential(2)} of range), cosine ${a.cosine.toFixed(6)}`);
    }
  }
}

// Engine files (.plan): build on the GPU, save, load (cubins from the file: no passes, no NVRTC); the loaded engine
// must give the built engine's outputs bit for bit, with the same layers. Prints build vs load time and both
// engines' GPU medians. Then optimization profiles on the GPU: ppocr with a [1, 8] batch profile against the CPU
// reference at batches 1, 3, 8, batch 9 refused, and the profile engine through a .plan.
{
  const { loadEngine } = await import('../dist/runtime/plan.js');
  const { runModelCpu } = await import('../dist/runtime/cpu_executor.js');
  const { compareTensors } = await import('../dist/cli/conformance.js');
  const { randomTensor } = await import('../dist/cli/io.js');
  const { mkdtempSync, rmSync, statSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const tmp = mkdtempSync(join(tmpdir(), 'tsrt-gpu-plan-'));
  const bytes = (t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const ppocr = join(root, 'models/ppocr_mobile_v2_cls/model.onnx');
  const cases = [['ppocr', ppocr, false], ['ppocr', ppocr, true]];
  for (const d of ['light_resnet50', 'light_inception_v1', 'light_squeezenet', 'light_densenet121']) {
    const f = join(tests, 'models/light', d, 'model.onnx');
    if (existsSync(f)) cases.push([d, f, false], [d, f, true]);
  }
  for (const m of models ? ['resnet50', 'mobilenet_v2', 'bert-base'] : []) {
    const f = join(models, m, 'model.onnx');
    if (existsSync(f)) cases.push([m, f, false], [m, f, true]);
  }
  for (const [name, file, fp16] of cases) {
    if (filter && !filter.test(`plan ${name}`)) continue;
    const label = `plan ${name} ${fp16 ? 'fp16' : 'fp32'}`;
    try {
      const model = loadModel(file);
      const feeds = new Map(model.graph.inputs.map((vi, k) => {
        const pb = join(file, '..', 'test_data_set_0', `input_${k}.pb`);
        return [vi.name, existsSync(pb) ? loadTensorFile(pb) : randomTensor(vi.type.dtype, vi.type.shape.map((d) => (typeof d === 'number' ? d : 1)), k + 1)];
      }));
      const shapes = Object.fromEntries([...feeds].map(([k, t]) => [k, t.dims]));
      let t0 = performance.now();
      const engine = await build(model, { device: 'cuda', fp16, shapes });
      const buildMs = performance.now() - t0;
      const plan = join(tmp, `${name}-${fp16 ? 'fp16' : 'fp32'}.plan`);
      t0 = performance.now();
      engine.save(plan);
      const saveMs = performance.now() - t0;
      t0 = performance.now();
      const loaded = await loadEngine(plan, { device: 'cuda' });
      const loadMs = performance.now() - t0;
      const [a, b] = [await engine.run(feeds), await loaded.run(feeds)];
      const diff = [...a].filter(([k, t]) => !bytes(t).equals(bytes(b.get(k)))).map(([k]) => k);
      const layersSame = JSON.stringify(engine.layers()) === JSON.stringify(loaded.layers());
      const [ta, tb] = [median((await engine.time(feeds, 50, 5)) ?? [NaN]), median((await loaded.time(feeds, 50, 5)) ?? [NaN])];
      engine.dispose(); loaded.dispose();
      report(!diff.length && layersSame && loaded.backend === 'cuda', label,
        `${diff.length ? `outputs differ: ${diff.join(', ')}; ` : ''}${layersSame ? '' : 'layers differ; '}build ${buildMs.toFixed(0)} ms, save ${saveMs.toFixed(0)} ms, load ${loadMs.toFixed(0)} ms, ${(statSync(plan).size / 1048576).toFixed(1)} MiB; GPU median built ${ta.toFixed(3)} ms, loaded ${tb.toFixed(3)} ms`);
    } catch (e) { report(false, label, String(e?.message ?? e).split('\n')[0]); }
  }

  if (!filter || filter.test('profiles')) {
    try {
      const model = loadModel(ppocr);
      const shape = (n) => [n, 3, 48, 192];
      const profiles = [{ min: { x: shape(1) }, opt: { x: shape(4) }, max: { x: shape(8) } }];
      const engine = await build(model, { device: 'cuda', profiles });
      const problems = [];
      for (const n of [1, 3, 8, 4]) {
        const x = randomTensor('float32', shape(n), 100 + n);
        const got = (await engine.run({ x })).get(engine.outputs[0].name);
        const [ref] = runModelCpu(model, new Map([['x', x]]));
        const why = compareTensors(got, ref, 1e-3, 1e-4);
        if (why) problems.push(`batch ${n}: ${why}`);
      }
      const refused = await engine.run({ x: randomTensor('float32', shape(9), 1) }).then(() => false, (e) => e.code === 'INPUT');
      if (!refused) problems.push('batch 9 was not refused');
      const plan = join(tmp, 'ppocr-profile.plan');
      engine.save(plan);
      const loaded = await loadEngine(plan, { device: 'cuda' });
      for (const n of [4, 3]) {
        const x = randomTensor('float32', shape(n), 7);
        const [a, b] = [await engine.run({ x }), await loaded.run({ x })];
        if (!bytes(a.get(engine.outputs[0].name)).equals(bytes(b.get(engine.outputs[0].name)))) problems.push(`loaded plan batch ${n} differs`);
      }
      engine.dispose(); loaded.dispose();
      report(!problems.length, 'profiles: ppocr batch [1, 8] on CUDA (1, 3, 8 vs CPU reference; 9 refused; through a .plan)', problems.join('; '));
    } catch (e) { report(false, 'profiles: ppocr batch [1, 8] on CUDA', String(e?.message ?? e).split('\n')[0]); }
  }
  rmSync(tmp, { recursive: true, force: true });
}

// Programmatic dependent launches (BuildOptions.pdl): the light models' fp16 engines launched programmatically give
// the same bits as plain launches, replayed as a CUDA graph and launched one by one (--filter pdl for just these)
if (!filter || filter.test('pdl')) {
  const { randomTensor } = await import('../dist/cli/io.js');
  const light = join(tests, 'models/light');
  for (const name of ['light_resnet50', 'light_inception_v1', 'light_squeezenet']) {
    const file = join(light, name, 'model.onnx');
    if (!existsSync(file)) { skipped++; continue; }
    try {
      const plain = await build(file, { fp16: true, device: 'cuda', pdl: false });
      const vi = plain.graph.inputs[0];
      const x = randomTensor(vi.type.dtype, vi.type.shape.map((d) => (typeof d === 'number' ? d : 1)), 5, -1, 1);
      const ref = (await plain.run({ [vi.name]: x })).get(plain.outputs[0].name);
      plain.dispose();
      const problems = [];
      for (const cudaGraphs of [true, false]) {
        const e = await build(file, { fp16: true, device: 'cuda', pdl: true, cudaGraphs });
        if (!e.report.programmaticLaunches) problems.push(`cudaGraphs ${cudaGraphs}: launched plainly (no sm_90 or cuLaunchKernelEx, or capture refused them)`);
        for (let it = 0; it < 3; it++) {
          const got = (await e.run({ [vi.name]: x })).get(e.outputs[0].name);
          if (!Buffer.from(got.data.buffer, got.data.byteOffset, got.data.byteLength).equals(Buffer.from(ref.data.buffer, ref.data.byteOffset, ref.data.byteLength))) problems.push(`cudaGraphs ${cudaGraphs} run ${it}: differs from plain launches`);
        }
        e.dispose();
      }
      report(!problems.length, `pdl: ${name} fp16 programmatic launches equal plain ones bit for bit`, problems.join('; '));
    } catch (e) { report(false, `pdl: ${name}`, String(e?.message ?? e).split('\n')[0]); }
  }
}

// INT8 kernels against their CPU reference, and ResNet-50 int8 vs fp32 with --models (scripts/test-gpu-int8.mjs)
await (await import('./test-gpu-int8.mjs')).int8Checks({ models, report, skip: () => skipped++, filter });

// Robustness: 10,000-run soak (device memory flat), two engines on two streams interleaved, NVRTC error messages
// (scripts/gpu-robustness.mjs; --filter robust for just these, --soak-runs N)
if (!filter || filter.test('robust')) {
  await (await import('./gpu-robustness.mjs')).robustness({ report, tests, soakRuns: Number(opt('--soak-runs', 10_000)) });
}

console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed ? 1 : 0);
