#!/usr/bin/env node
// GPU test suite (`npm run test:gpu`): needs an NVIDIA GPU and a built dist/. Runs without vitest (the GPU
// machine has only production dependencies):
//  1. ONNX conformance on the CUDA backend: every test that passes on the CPU reference must pass on CUDA
//     (test/conformance/cpu-expected.tsv lists the CPU exceptions);
//  2. the shared real/light models on CUDA (fp32);
//  3. with --models DIR (bench/export.py output): ResNet-50, MobileNetV2, BERT-base against PyTorch's fp32
//     outputs: fp32 max abs error <= 1e-3 of the output range; fp16 cosine >= 0.999 and the same argmax.
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

for (const [sub, prefix, rtol] of [['node', 'node/', 1e-3], ['models', 'models/', 2e-3]]) {
  const results = await runConformance(join(tests, sub), { backend: cudaBackend, filter, rtol });
  for (const r of results) {
    const name = prefix + r.name;
    if (expected.has(name)) { skipped++; continue; }
    if (r.status === 'UNSUPPORTED') { skipped++; console.log(`SKIP ${name} ${r.reason}`); continue; }
    report(r.status === 'PASS', `cuda ${name}`, r.reason);
  }
}

// Zero-copy API: write the input buffer on the device, run in place, read the output buffer.
{
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

console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed ? 1 : 0);
