// GPU check of strided concat placement (issue 5): the light SqueezeNet / Inception v1 / DenseNet-121 at batch N
// (default 8), fp16 and fp32, built with concat-in-place (convs storing their rows into strided concat slices) and
// without it; the outputs must be equal bit for bit (same kernels and tile configs, only the stores differ), and the
// fp32 ones within 1e-3 of the CPU reference of the model (fp16's distance to it is printed). Prints placed concats/convs, kernel
// counts and GPU time per engine. Usage: node scripts/gpu-concat-strided.mjs [--batch 8] [--models a,b]
// (TSRT_DIST=folder: a private `tsc --outDir` build instead of dist/; without a GPU the engines run on the CPU).
import { imp } from './gpu-kernel-harness.mjs';
const { loadModel, loadTensorFile } = await imp('onnx/import.js');
const { build } = await imp('runtime/engine.js');
const { PIPELINE } = await imp('passes/pipeline.js');
const { runGraph } = await imp('runtime/cpu_executor.js');
const { fromF64, toF64, size } = await imp('ir/tensor.js');

const arg = (k, d) => { const i = process.argv.indexOf(k); return i > 0 ? process.argv[i + 1] : d; };
const N = Number(arg('--batch', '8'));
const names = arg('--models', 'light_squeezenet,light_inception_v1,light_densenet121').split(',');
const LIGHT = new URL('../../shared/onnx-tests/models/light/', import.meta.url).pathname;
const noConcat = PIPELINE.filter((p) => p.name !== 'concat-in-place');

/** The model at batch N (symbolic batch dim; Reshape targets fixing batch 1 read -1) and N distinct images. */
function rebatch(name) {
  const model = loadModel(`${LIGHT}${name}/model.onnx`);
  const g = model.graph;
  const inits = new Map(g.initializers);
  for (const nd of g.nodes) {
    const t = nd.op === 'Reshape' ? inits.get(nd.inputs[1]) : undefined;
    if (!t || t.data.length < 2 || Number(t.data[0]) !== 1) continue;
    const d = t.data.slice(); d[0] = -1n; inits.set(nd.inputs[1], { ...t, data: d });
  }
  const sym = (v) => ({ ...v, type: { ...v.type, shape: ['N', ...v.type.shape.slice(1)] } });
  model.graph = { ...g, initializers: inits, inputs: [sym(g.inputs[0]), ...g.inputs.slice(1)], outputs: g.outputs.map(sym), valueTypes: new Map() };
  const one = loadTensorFile(`${LIGHT}${name}/test_data_set_0/input_0.pb`);
  const dims = [N, ...one.dims.slice(1)], x = toF64(one), all = new Float64Array(size(dims));
  for (let i = 0; i < N; i++) all.set(x.map((v, j) => v * (1 - i / (2 * N)) + 0.01 * Math.sin(i + j)), i * x.length);
  return { model, input: g.inputs[0].name, x: fromF64(one.dtype, dims, all), dims };
}

const cosine = (a, b) => { let ab = 0, aa = 0, bb = 0; for (let i = 0; i < a.length; i++) { ab += a[i] * b[i]; aa += a[i] ** 2; bb += b[i] ** 2; } return ab / Math.sqrt(aa * bb || 1); };
let failed = 0;
for (const name of names) {
  const { model, input, x, dims } = rebatch(name);
  const ref = runGraph(model.graph, new Map([[input, x]]));
  for (const fp16 of [true, false]) {
    const opts = { fp16, shapes: { [input]: dims } };
    const [placed, plain] = [await build(model, opts), await build(model, { ...opts, passes: noConcat })];
    const [yp, yq] = [await placed.run({ [input]: x }), await plain.run({ [input]: x })];
    const k = (e) => e.lowered.steps.filter((s) => s.kind === 'kernel').length;
    const convs = placed.graph.nodes.filter((n) => n.attrs.y_concat).length;
    const cats = placed.graph.nodes.filter((n) => n.op === 'ConcatInPlace').length;
    for (const [o, t] of yp) {
      const a = toF64(t), b = toF64(yq.get(o)), r = toF64(ref.get(o));
      const same = a.every((v, i) => Object.is(v, b[i]));
      const maxErr = a.reduce((m, v, i) => Math.max(m, Math.abs(v - r[i])), 0), cos = cosine(a, r);
      // fp16: bitwise against the unplaced engine only (the light models' constant weights overflow fp16 on some
      // outputs, so the fp32 reference is printed, not required)
      const ok = same && (fp16 || maxErr <= 1e-3);
      if (!ok) failed++;
      console.log(`${ok ? 'ok  ' : 'FAIL'} ${name} ${fp16 ? 'fp16' : 'fp32'} bs${N} ${o}: ${cats} concats in place, ${convs} strided convs; ${k(placed)} kernels (without concat-in-place ${k(plain)}); `
        + `bitwise equal to unplaced: ${same}; vs CPU reference max|err| ${maxErr.toExponential(2)} cosine ${cos.toFixed(6)}${fp16 ? ' (informative)' : ''}`);
    }
  }
}
process.exit(failed ? 1 : 0);
