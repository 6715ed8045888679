#!/usr/bin/env node
// A/B of the space-to-depth stem (issue 7; passes/space_to_depth.ts) in one process: the same model built with
// TSRT_SPACE_TO_DEPTH=0 (input Relayout to [N,224,224,8] + 7x7/2 conv, K = 392) and with the pass (Relayout with
// blocksize 2 to [N,115,115,16] + 4x4/1 conv, K = 256). Prints, per engine, the input-preparation and stem-conv
// kernels with their median GPU times, their sum and the whole engine's time (CUDA graph), then checks that the
// stem outputs (and the model outputs) of the two engines agree within fp16 rounding. Run on the H100/H200 after
// `npm run build` (or TSRT_DIST=<a private tsc --outDir build>):
//   node scripts/gpu-stem-s2d.mjs /tmp/bm/resnet50/model.onnx --batch 256 [--opt-level 3] [--timing-cache F] [--bf16|--int8]
// --int8: the int8 engine (minmax scales of the random input, calibrated on the GPU): the stem is an int8 QConv over the
// quantizing Relayout (K 7*7*16 = 784 -> 4*4*16 = 256); its int32 sums are exact, so the stem output must be equal.
// --dry-run: no GPU; builds both engines on the CPU at the given batch (default 1), NVRTC-compiles their kernels and
// compares the two CPU references. Exit code 1 when the outputs disagree or the pass did not fire.
import { imp } from './gpu-kernel-harness.mjs';
const { build } = await imp('runtime/engine.js');
const { randomTensor } = await imp('cli/io.js');
const { loadModel } = await imp('onnx/import.js');
const { toF64 } = await imp('ir/tensor.js');

const [model = '/tmp/bm/resnet50/model.onnx', ...rest] = process.argv.slice(2);
const opt = (f, d) => { const i = rest.indexOf(f); return i >= 0 ? rest[i + 1] : d; };
const dry = rest.includes('--dry-run'), bf16 = rest.includes('--bf16'), int8 = rest.includes('--int8');
if (bf16 && int8) { console.error('--bf16 and --int8 exclude each other (the int8 fallback is fp16)'); process.exit(2); }
const batch = Number(opt('--batch', dry ? 1 : 256));
const m = loadModel(model);
const vi = m.graph.inputs[0];
const shape = vi.type.shape.map((d, i) => (i === 0 ? batch : typeof d === 'number' ? d : 224));
const x = randomTensor(vi.type.dtype, shape, 1, -1, 1);
let int8Scales;
if (int8) {
  const { calibrate } = await imp('quant/calibrate.js');
  int8Scales = (await calibrate(m, [{ [vi.name]: x }], { method: 'minmax', device: dry ? 'cpu' : 'auto' })).scales;
}
const base = {
  fp16: true, bf16, ...(int8 ? { int8, int8Scales } : {}), shapes: { [vi.name]: shape }, optLevel: Number(opt('--opt-level', dry ? 2 : 3)),
  timingCache: opt('--timing-cache'), ...(dry ? { device: 'cpu' } : {}),
};

// the stem conv's output name (the pass keeps it): from a quick CPU build without kernels
const probe = await build(m, { ...base, device: 'cpu', compileKernels: false, optLevel: 2 });
const s2d = probe.graph.nodes.find((n) => n.op === 'Relayout' && n.attrs.blocksize);
const stemConv = s2d && probe.graph.nodes.find((n) => (n.op === 'FusedConv' || n.op === 'QConv') && n.inputs[0] === s2d.outputs[0]);
if (!stemConv) { console.log('space-to-depth-conv did not fire on this model:', probe.passContext.rejected.filter((r) => r.pass === 'space-to-depth-conv')); process.exit(1); }
const stem = stemConv.outputs[0];
probe.dispose();

const results = {};
for (const [label, env] of [['off (TSRT_SPACE_TO_DEPTH=0)', '0'], ['on', undefined]]) {
  if (env) process.env.TSRT_SPACE_TO_DEPTH = env; else delete process.env.TSRT_SPACE_TO_DEPTH;
  const e = await build(m, { ...base, markOutputs: [stem] });
  const fired = e.passContext.fusions.filter((f) => f.pass === 'space-to-depth-conv').map((f) => f.kind);
  const kernels = e.lowered.steps.filter((s) => s.kind === 'kernel');
  // input preparation: every kernel up to and including the stem conv's
  const upto = kernels.findIndex((s) => s.kernel && e.graph.nodes.some((n) => n.outputs[0] === stem && n.name === s.layer));
  const prep = kernels.slice(0, upto + 1);
  console.log(`\n== space-to-depth ${label}: ${fired.join('; ') || 'no rewrite'}`);
  if (!dry) {
    const total = (await e.time({ [vi.name]: x }, 30, 5)).sort((a, b) => a - b)[15];
    const prof = await e.profile({ [vi.name]: x }, 20);
    let sum = 0;
    prep.forEach((s, i) => {
      const ms = prof[i].ms; sum += ms;
      const tf = s.kernel.flops ? ` ${(s.kernel.flops / ms / 1e9).toFixed(1)} TFLOP/s` : '';
      console.log(`${ms.toFixed(4).padStart(8)} ms ${s.op.padEnd(10)} ${s.kernel.name} grid ${s.kernel.grid.join('x')}${tf}`);
    });
    console.log(`stem (input prep + conv) ${sum.toFixed(4)} ms; engine ${total.toFixed(4)} ms (median of 30, CUDA graph)`);
    results[label] = { stem: sum, total };
  } else {
    for (const s of prep) console.log(`   ${s.op.padEnd(10)} ${s.kernel.name} grid ${s.kernel.grid.join('x')} (compiled: ${!!e.kernels.get(s.kernel.name)?.cubin})`);
  }
  results[label] = { ...results[label], out: await e.run({ [vi.name]: x }) };
  e.dispose();
}
delete process.env.TSRT_SPACE_TO_DEPTH;

const [a, b] = Object.values(results);
if (!dry) console.log(`\nstem ${a.stem.toFixed(4)} -> ${b.stem.toFixed(4)} ms (${(a.stem / b.stem).toFixed(2)}x); engine ${a.total.toFixed(4)} -> ${b.total.toFixed(4)} ms`);
let ok = true;
for (const [name, t] of a.out) {
  const p = toF64(t), q = toF64(b.out.get(name));
  let maxd = 0, maxr = 0, dot = 0, na = 0, nb = 0, nan = 0;
  for (let i = 0; i < p.length; i++) {
    if (Number.isNaN(p[i]) !== Number.isNaN(q[i])) nan++;
    if (Number.isNaN(p[i]) || Number.isNaN(q[i])) continue;
    maxd = Math.max(maxd, Math.abs(p[i] - q[i])); maxr = Math.max(maxr, Math.abs(p[i]));
    dot += p[i] * q[i]; na += p[i] * p[i]; nb += q[i] * q[i];
  }
  const cos = dot / Math.sqrt(na * nb || 1);
  // the stem differs only in fp32 summation order: within an fp16 (bf16) rounding of its output; int8: exact sums
  const tol = name === stem ? (int8 ? 0 : bf16 ? 8e-3 : 1e-3) * maxr : Infinity;
  const pass = nan === 0 && maxd <= tol && (cos >= 0.9999 || na === 0);
  ok &&= pass;
  console.log(`${pass ? 'ok  ' : 'FAIL'} ${name}${name === stem ? ' (stem)' : ''}: max |off - on| ${maxd.toExponential(2)} of max ${maxr.toExponential(2)}, cosine ${cos.toFixed(7)}${nan ? `, ${nan} NaN mismatches` : ''}`);
}
process.exit(ok ? 0 : 1);
