// Per-layer profile: which kernels the engine launches, and on a GPU how long each one takes (CUDA events).
// Without a GPU the engine runs on the CPU reference and only the layer list is shown.
//   node examples/04-profile.mjs [model.onnx]
import { build, randomTensor } from 'tsrt';

const model = process.argv[2] ?? new URL('../models/ppocr_mobile_v2_cls/model.onnx', import.meta.url).pathname;
// the bundled model's input has symbolic height and width; other models' symbolic dims default to 1
const shapes = process.argv[2] ? undefined : { x: [1, 3, 48, 192] };
const engine = await build(model, { shapes, fp16: process.env.FP16 === '1' });
const feeds = Object.fromEntries(engine.inputs.map((vi, k) => [vi.name, randomTensor(vi.type.dtype, vi.type.shape, k + 1)]));

const layers = engine.layers();
const kinds = layers.reduce((a, l) => ({ ...a, [l.kind]: (a[l.kind] ?? 0) + 1 }), {});
console.log(`${layers.length} layers: ${Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(', ')}`);

const profile = await engine.profile(feeds);
if (!profile) {
  console.log('no GPU: per-layer times are not measured; the engine\'s layers:');
  for (const l of layers.slice(0, 10)) console.log(`  ${l.kind.padEnd(6)} ${l.op.padEnd(18)} ${l.name}${l.grid ? `  grid ${l.grid.join('x')}` : ''}`);
  await engine.run(feeds); // still runs, on the CPU reference
} else {
  const total = profile.reduce((a, p) => a + p.ms, 0);
  console.log(`GPU time ${total.toFixed(3)} ms over ${profile.length} kernels; the slowest:`);
  for (const p of [...profile].sort((a, b) => b.ms - a.ms).slice(0, 10)) {
    console.log(`  ${p.ms.toFixed(4)} ms ${(100 * p.ms / total).toFixed(1).padStart(5)}%  ${p.op.padEnd(18)} ${p.layer}`);
  }
}
engine.dispose();
