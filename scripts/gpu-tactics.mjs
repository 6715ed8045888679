// GPU check of the kernel tactic families (LayerNorm/softmax/reduce/elementwise/pool/relayout) on the device:
// builds the model at --opt-level 3 with a fresh timing cache, prints per kernel signature the chosen tactic and its
// time next to the default tactic's (both measured by the tuner in the same process), per family the totals, and
// checks the tuned engine against the --opt-level 2 engine (default tactics, same GPU) and the CPU reference.
//   npm run build && node scripts/gpu-tactics.mjs MODEL.onnx [--batch 1] [--seq 128] [--fp32] [--opt-level 3] [--cpu] [--json out.json]
// The CPU reference runs at batch 1 (or with --cpu); larger batches are checked against the level-2 engine only.
// Exits 1 when an output misses the check (cosine < 0.999 against the CPU reference, or < 0.9999 against level 2).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imp } from './gpu-kernel-harness.mjs';

// the build under test: dist/, or TSRT_DIST=<a private tsc --outDir>
const { build } = await imp('runtime/engine.js');
const { runModelCpu } = await imp('runtime/cpu_executor.js');
const { accuracy, randomTensor } = await imp('cli/io.js');
const { loadModel } = await imp('onnx/import.js');
const { makeTensor } = await imp('ir/tensor.js');
const { familyProblem } = await imp('codegen/kernel_tactics.js');
const { tunableOf } = await imp('codegen/tactics.js');

const [model, ...rest] = process.argv.slice(2);
if (!model) { console.error('usage: node scripts/gpu-tactics.mjs MODEL.onnx [--batch N] [--seq N] [--fp32] [--opt-level 3] [--json out.json]'); process.exit(2); }
const opt = (f, d) => { const i = rest.indexOf(f); return i >= 0 ? rest[i + 1] : d; };
const batch = Number(opt('--batch', 1)), seq = Number(opt('--seq', 128)), level = Number(opt('--opt-level', 3)), fp16 = !rest.includes('--fp32');
const m = loadModel(model);

// token ids stay below the rows of the embedding tables that gather them (else 1000)
const vocab = (input) => Math.min(1000, ...m.graph.nodes.filter((n) => n.op === 'Gather' && n.inputs[1] === input && m.graph.initializers.has(n.inputs[0]))
  .map((n) => m.graph.initializers.get(n.inputs[0]).dims[0]));
// BERT-style inputs: token ids, an all-ones mask, zero token types; other inputs random in [-1, 1]
const feeds = new Map(), shapes = {};
m.graph.inputs.forEach((vi, k) => {
  const dims = vi.type.shape.map((d, i) => (typeof d === 'number' ? d : i === 0 ? batch : seq));
  shapes[vi.name] = dims;
  const n = dims.reduce((a, b) => a * b, 1);
  let t;
  if (vi.type.dtype === 'int64' || vi.type.dtype === 'int32') {
    const fill = /mask/i.test(vi.name) ? () => 1 : /type/i.test(vi.name) ? () => 0 : null;
    t = fill ? makeTensor(vi.type.dtype, dims, vi.type.dtype === 'int64' ? BigInt64Array.from({ length: n }, () => BigInt(fill())) : Int32Array.from({ length: n }, fill))
      : randomTensor(vi.type.dtype, dims, 7 + k, 0, vocab(vi.name) - 1);
  } else t = randomTensor(vi.type.dtype, dims, 7 + k);
  feeds.set(vi.name, t);
});

const dir = mkdtempSync(join(tmpdir(), 'tsrt-tactics-'));
const timingCache = join(dir, 'timing-cache.json');
const log = [];
const t0 = performance.now();
const tuned = await build(m, { fp16, shapes, optLevel: level, timingCache, log: (s) => log.push(s) });
const buildS = (performance.now() - t0) / 1000;
if (tuned.backend !== 'cuda') { console.error('no GPU: this script times kernels on the device machine'); process.exit(2); }
const base = await build(m, { fp16, shapes, optLevel: 2 });
const entries = JSON.parse(readFileSync(timingCache, 'utf8')).entries;

// per kernel-tactic signature: the pick, the default tactic, both times, and how many launches run it
const FAMILIES = ['layernorm', 'softmax', 'reduce', 'elementwise', 'pool', 'relayout'];
const rows = [];
for (const [key, label] of Object.entries(tuned.built.tactics)) {
  const family = key.slice(0, key.indexOf(' '));
  if (!FAMILIES.includes(family)) continue;
  const e = entries[key];
  const steps = tuned.lowered.steps.filter((s) => s.kind === 'kernel' && s.kernel.name === e.kernel);
  const u = steps.length ? tunableOf(steps[0].kernel) : undefined;
  const body = JSON.parse(key.slice(key.indexOf('{')));
  const dflt = u ? familyProblem(u, { align: body.align }).heuristic : undefined;
  const dLabel = dflt && (dflt.tpr !== undefined ? `t${dflt.tpr}.r${dflt.rpb ?? 1}.v${dflt.vec ?? 1}` : `b${dflt.block ?? 256}.v${dflt.vec ?? 1}.e${dflt.ept ?? 1}`);
  const d = e.candidates.find((c) => c.config === dLabel);
  const p = body.problem;
  const what = family === 'elementwise' ? `${p.prefix} [${p.dims}] ${p.inputs.join(',')}->${p.outputs.join(',')}`
    : family === 'layernorm' ? `${p.dtype} ${p.rows}x${p.cols}` : family === 'softmax' ? `${p.dtype} ${p.outer}x${p.axis}x${p.inner}`
    : family === 'pool' ? `${p.kind}pool ${p.dtype} ${p.layout} n${p.n} c${p.c} [${p.inSpatial}]->[${p.outSpatial}]`
      : family === 'relayout' ? `relayout ${p.from}->${p.to} [${p.inDims}] perm [${p.perm}]`
        : `${p.op} ${p.inDtype} ${p.outer}x${p.r}x${p.inner}`;
  rows.push({ family, what, align: body.align, launches: steps.length, pick: label, ms: e.ms, default: dLabel, defaultMs: d?.ms ?? null, candidates: e.candidates.length, failed: e.candidates.filter((c) => c.ms === null).map((c) => `${c.config}: ${c.error}`) });
}
console.log(`${model}: batch ${batch}, ${fp16 ? 'fp16' : 'fp32'}, --opt-level ${level}, build ${buildS.toFixed(1)} s`);
console.log(`tuning: ${JSON.stringify(tuned.report.tuning.families ?? {})}`);
for (const fam of FAMILIES) {
  const rs = rows.filter((r) => r.family === fam);
  if (!rs.length) { console.log(`\n${fam}: no tunable kernel in this engine`); continue; }
  const tot = rs.reduce((a, r) => a + r.ms * r.launches, 0), totD = rs.reduce((a, r) => a + (r.defaultMs ?? r.ms) * r.launches, 0);
  console.log(`\n${fam}: ${rs.length} signatures, per engine run ${tot.toFixed(4)} ms tuned vs ${totD.toFixed(4)} ms default (${(totD / tot).toFixed(2)}x)`);
  for (const r of rs) {
    console.log(`  ${r.what.padEnd(46)} x${String(r.launches).padEnd(3)} ${r.pick.padEnd(12)} ${r.ms.toFixed(4)} ms | default ${String(r.default).padEnd(12)} ${r.defaultMs === null ? 'failed' : `${r.defaultMs.toFixed(4)} ms (${(r.defaultMs / r.ms).toFixed(2)}x)`} | ${r.candidates} candidates${r.failed.length ? `, FAILED: ${r.failed.join('; ')}` : ''}`);
  }
}

// whole-engine time, tuned vs default tactics (same process, same GPU)
const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const tT = med(await tuned.time(feeds, 50, 10)), tB = med(await base.time(feeds, 50, 10));
console.log(`\nengine: --opt-level ${level} ${tT.toFixed(4)} ms, --opt-level 2 ${tB.toFixed(4)} ms (${(tB / tT).toFixed(3)}x)`);

// results: tuned vs level 2 on the GPU, and both vs the CPU reference of the unoptimized model
const outT = await tuned.run(feeds), outB = await base.run(feeds);
// (the CPU reference of BERT-base takes ~30 s a sequence: only at batch 1 unless --cpu)
const withCpu = batch <= 1 || rest.includes('--cpu');
if (!withCpu) console.log(`(CPU reference skipped at batch ${batch}: pass --cpu, or check at --batch 1)`);
const ref = withCpu ? runModelCpu(m, feeds) : undefined;
let ok = true;
const checks = m.graph.outputs.map((o, i) => {
  const vsBase = accuracy(outT.get(o.name), outB.get(o.name));
  const vsCpu = ref && accuracy(outT.get(o.name), ref[i]), baseCpu = ref && accuracy(outB.get(o.name), ref[i]);
  const pass = (!vsCpu || vsCpu.cosine >= 0.999) && vsBase.cosine >= 0.9999;
  ok &&= pass;
  const cpuText = vsCpu ? `tuned vs CPU cosine ${vsCpu.cosine.toFixed(6)} maxAbs ${vsCpu.maxAbs.toExponential(2)} (level 2 vs CPU ${baseCpu.cosine.toFixed(6)}); ` : '';
  console.log(`${pass ? 'PASS' : 'FAIL'} ${o.name}: ${cpuText}tuned vs level 2 cosine ${vsBase.cosine.toFixed(7)} maxAbs ${vsBase.maxAbs.toExponential(2)}`);
  return { output: o.name, pass, vsCpu, vsBase, baseCpu };
});
if (opt('--json')) writeFileSync(opt('--json'), JSON.stringify({ model, batch, fp16, level, buildS, tuning: tuned.report.tuning, rows, engineMs: { tuned: tT, level2: tB }, checks, log }, null, 1));
tuned.dispose(); base.dispose();
process.exit(ok ? 0 : 1);
