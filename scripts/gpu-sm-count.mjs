#!/usr/bin/env node
// GPU check of BuildOptions.smCount: the model built at --opt-level 3 for this GPU's SM count and for --sms=N (default
// 114, an H100 PCIe): the second engine's persistent wgmma kernels launch min(tiles, N) CTAs and walk the tiles with
// that stride (and split-K / tile heuristics size their waves for N). Both engines run on this GPU; their outputs must
// agree within fp16 summation-order noise (cosine >= 0.9999). Prints the persistent launches' grid/tiles per engine.
//   node scripts/gpu-sm-count.mjs [/tmp/bm/resnet50/model.onnx] [--batch=32] [--sms=114] [--timing-cache=F]
// (TSRT_DIST=folder: a private `tsc --outDir` build.) Exit code 1 when the outputs disagree or nothing ran persistent.
import { imp, NoGpuError, openDevice, parseArgs, reporter } from './gpu-kernel-harness.mjs';

const { build } = await imp('runtime/engine.js');
const { loadModel } = await imp('onnx/import.js');
const { randomTensor, accuracy } = await imp('cli/io.js');

const argv = process.argv.slice(2), model = argv.find((a) => !a.startsWith('--')) ?? '/tmp/bm/resnet50/model.onnx';
const { args } = parseArgs(argv.filter((a) => a.startsWith('--')));
try { (await openDevice({ iters: 1 })); } catch (e) {
  if (!(e instanceof NoGpuError)) throw e;
  console.error(`${e.message} (this script runs both engines on the GPU)`); process.exit(2);
}
const r = reporter();
const m = loadModel(model), vi = m.graph.inputs[0], batch = Number(args.batch ?? 32), sms = Number(args.sms ?? 114);
const shape = vi.type.shape.map((d, i) => (i === 0 ? batch : typeof d === 'number' ? d : 224));
const x = randomTensor(vi.type.dtype, shape, 1, -1, 1);
const outs = [];
for (const smCount of [undefined, sms]) {
  const e = await build(m, { fp16: true, optLevel: 3, shapes: { [vi.name]: shape }, smCount, timingCache: args['timing-cache'] ?? false, device: 'cuda' });
  const p = e.lowered.steps.filter((s) => s.kind === 'kernel' && s.kernel.persistentTiles).map((s) => `${s.kernel.grid[0]}/${s.kernel.persistentTiles}`);
  console.log(`smCount ${e.built.smCount}${smCount ? '' : ' (this GPU)'}: ${p.length} persistent launches, grid/tiles ${[...new Set(p)].join(' ') || '-'}`);
  if (smCount) r.report(p.length > 0 && p.every((g) => Number(g.split('/')[0]) === Math.min(sms, Number(g.split('/')[1]))), `persistent grids of the ${sms}-SM engine are min(tiles, ${sms})`, `(${p.length} launches)`);
  outs.push((await e.run({ [vi.name]: x })).get(e.outputs[0].name));
  e.dispose();
}
const a = accuracy(outs[1], outs[0]);
r.report(a.cosine >= 0.9999, `${sms}-SM engine vs this GPU's engine`, `cosine ${a.cosine.toFixed(7)} maxAbs ${a.maxAbs.toExponential(2)}`);
process.exit(r.summary());
