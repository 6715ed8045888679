// Per-kernel GPU profile of an engine (device machine): which layers take the time, with which kernel and config,
// and at what rate (TFLOP/s for tensor-core kernels, whose sources carry their flop count).
//   node scripts/gpu-profile.mjs model.onnx --batch N [--fp16|--int8] [--opt-level 3] [--timing-cache F] [--json out.json] [--top 40]
import { build } from '../dist/runtime/engine.js';
import { randomInput, randomScales } from '../bench/random_scales.mjs';
import { loadModel } from '../dist/onnx/import.js';
import { writeFileSync } from 'node:fs';

const [model, ...rest] = process.argv.slice(2);
const opt = (f, d) => { const i = rest.indexOf(f); return i >= 0 ? rest[i + 1] : d; };
const flag = (f) => rest.includes(f);
const b = Number(opt('--batch', 1));
const m = loadModel(model);
const vi = m.graph.inputs[0];
const shape = vi.type.shape.map((d, i) => (i === 0 ? b : typeof d === 'number' ? d : 128));
// --int8 without scales would build fp16 layers only: calibrate on random data as bench.mjs does
const int8Scales = flag('--int8') ? await randomScales(m) : undefined;
const engine = await build(m, { fp16: !flag('--fp32'), int8: flag('--int8'), int8Scales, shapes: { [vi.name]: shape }, optLevel: Number(opt('--opt-level', 3)), timingCache: opt('--timing-cache') });
const x = randomInput(vi, shape, 1);
const total = (await engine.time({ [vi.name]: x }, 30, 5)).sort((a, c) => a - c)[15];
const prof = await engine.profile({ [vi.name]: x }, 10);
const kernels = engine.lowered.steps.filter((s) => s.kind === 'kernel');
const rows = prof.map((p, i) => {
  const k = kernels[i]?.kernel;
  const fl = k?.flops;
  return { layer: p.layer, op: p.op, ms: +p.ms.toFixed(4), tflops: fl ? +(fl / p.ms / 1e9).toFixed(1) : undefined, kernel: k?.name, grid: k?.grid?.join('x'), block: k?.block?.[0], smem: k?.sharedBytes };
});
const sum = rows.reduce((a, r) => a + r.ms, 0);
console.log(`${model.split('/').slice(-2, -1)[0]} batch ${b}: engine ${total.toFixed(4)} ms (graph), sum of kernels ${sum.toFixed(4)} ms, ${rows.length} kernels`);
const top = Number(opt('--top', 40));
for (const r of [...rows].sort((a, c) => c.ms - a.ms).slice(0, top)) console.log(`${r.ms.toFixed(4).padStart(8)} ${String(r.tflops ?? '').padStart(6)} ${r.op.padEnd(18)} ${r.layer.slice(0, 28).padEnd(28)} ${r.kernel} grid ${r.grid} block ${r.block} smem ${r.smem}`);
if (opt('--json')) writeFileSync(opt('--json'), JSON.stringify({ model, batch: b, engine_ms: total, rows }, null, 1));
engine.dispose();
