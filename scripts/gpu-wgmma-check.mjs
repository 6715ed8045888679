#!/usr/bin/env node
// GPU check of the Hopper wgmma conv/GEMM kernels (src/codegen/wgmma.ts) against the mma.sync kernels they
// replace. Run on the H100/H200 after `npm run build`:
//   node scripts/gpu-wgmma-check.mjs [--filter=SUBSTR[,SUBSTR...]] [--all-configs] [--no-ws] [--mma] [--iters=N] [--budget-s=S] [--dry-run]
// (--mma: also every mma.sync config of the problem's tile space, and a top-8 of all kernels per case.)
// (--dry-run: no GPU; emits every kernel and checks the mma.sync-free parts, e.g. on a machine without one.)
// For every case (BERT GEMMs, ResNet-50 convs at batch 256 and 1, odd shapes) it builds random fp16 inputs,
// runs the heuristic mma.sync kernel as the reference, then the wgmma configs, and prints PASS/FAIL with the
// max abs difference relative to the output range, plus median CUDA-event times and TFLOP/s of each. Which
// wgmma configs: every warp-specialized one (`_ws`, wgmma_ws.ts: all tiles and stage counts), and of the
// all-threads-load kernels (wgmma.ts) the deepest pipeline of the 3 tiles the model ranks best plus the
// tiles that measured best before (128x256, 256x128, 256x64), so the whole list fits the budget; every
// config with --all-configs and for the odd cases. The small odd cases are also checked against a float64
// CPU reference. Each case runs in try/catch; a kernel that kills the CUDA context (or hangs: a deadlocked
// mbarrier pipeline shows as a launch timeout / lost context) stops the run with its name (rerun with
// --filter to skip past it). Exit code 1 when anything failed. Stops starting new cases after --budget-s
// (default 190) seconds.
import {
  caseShape, convProblem as conv, decodeTable, errText, halfToF64, imp, lcg, NoGpuError, openDevice, parseArgs, relDiff,
  reporter, sampleStride, tcBuffers, tcReference, tflops,
} from './gpu-kernel-harness.mjs';

const { emitConv } = await imp('codegen/tc_conv.js');
const { emitGemm, configName, estimateTime, tileConfigSpace } = await imp('codegen/tc_gemm.js');
const { convShape } = await imp('codegen/tc_conv.js');
const { emitConvTc, emitGemmTc, wgmmaConvSpace, wgmmaGemmSpace } = await imp('codegen/wgmma.js');

const { args, wants, overBudget } = parseArgs(process.argv.slice(2), { budgetS: 190 });
const ITERS = Number(args.iters ?? 10);
const r = reporter();

const DRY = !!args['dry-run'];
let gpu;
if (!DRY) {
  try { gpu = await openDevice({ iters: ITERS }); } catch (e) {
    if (!(e instanceof NoGpuError)) throw e;
    console.error(`${e.message} (--dry-run checks the kernels' emission without one)`); process.exit(1);
  }
  console.log(`device ${gpu.describe()}`);
  if (gpu.arch !== 'sm_90a') { console.error('wgmma needs an sm_90 GPU and NVRTC 12+: nothing to check'); process.exit(1); }
}

// ---- problems ----------------------------------------------------------------------------------------

const br = { bias: true, act: 'relu' }, brr = { bias: true, residual: true, act: 'relu' };
const CASES = [
  { id: 'bert_attn_out_4096x768x768', op: 'gemm', p: { m: 4096, n: 768, k: 768 }, epi: { bias: true, residual: true } },
  { id: 'bert_ffn1_4096x3072x768', op: 'gemm', p: { m: 4096, n: 3072, k: 768 }, epi: { bias: true, act: 'gelu_erf' } },
  { id: 'bert_ffn2_4096x768x3072', op: 'gemm', p: { m: 4096, n: 768, k: 3072 }, epi: { bias: true, residual: true } },
  { id: 'rn50_bs256_3x3_c64_56', op: 'conv', p: conv(256, 56, 64, 64, 3, 1), epi: br },
  { id: 'rn50_bs256_3x3_c128_28', op: 'conv', p: conv(256, 28, 128, 128, 3, 1), epi: br },
  { id: 'rn50_bs256_3x3_c256_14', op: 'conv', p: conv(256, 14, 256, 256, 3, 1), epi: br },
  { id: 'rn50_bs256_3x3_c512_7', op: 'conv', p: conv(256, 7, 512, 512, 3, 1), epi: br },
  { id: 'rn50_bs256_1x1_64_256_56', op: 'conv', p: conv(256, 56, 64, 256, 1, 1), epi: brr },
  { id: 'rn50_bs256_1x1_1024_256_14', op: 'conv', p: conv(256, 14, 1024, 256, 1, 1), epi: br },
  { id: 'rn50_bs256_3x3s2_c128_56', op: 'conv', p: conv(256, 56, 128, 128, 3, 2), epi: br },
  { id: 'rn50_bs256_1x1s2_512_1024_28', op: 'conv', p: conv(256, 28, 512, 1024, 1, 2), epi: { bias: true } },
  // memory-bound ResNet-50 bs256 layers (small K, large M: the epilogue's traffic dominates) and the stem
  { id: 'rn50_bs256_1x1_64_256_56_ds', op: 'conv', p: conv(256, 56, 64, 256, 1, 1), epi: { bias: true } },
  { id: 'rn50_bs256_1x1_128_512_28', op: 'conv', p: conv(256, 28, 128, 512, 1, 1), epi: brr },
  { id: 'rn50_bs256_1x1_256_128_56', op: 'conv', p: conv(256, 56, 256, 128, 1, 1), epi: br },
  { id: 'rn50_bs256_1x1_64_64_56', op: 'conv', p: conv(256, 56, 64, 64, 1, 1), epi: br },
  { id: 'rn50_bs256_stem_7x7s2_c8', op: 'conv', p: conv(256, 224, 8, 64, 7, 2), epi: br },
  { id: 'rn50_bs1_3x3_c256_14', op: 'conv', p: conv(1, 14, 256, 256, 3, 1), epi: br },
  { id: 'rn50_bs1_1x1_2048_512_7', op: 'conv', p: conv(1, 7, 2048, 512, 1, 1), epi: br },
  // odd shapes: M, N and K tails, odd N (scalar stores), batch, residual after the activation; all configs, CPU-checked
  { id: 'odd_conv_3x3_m867_k40', op: 'conv', p: conv(3, 17, 24, 40, 3, 1), epi: { bias: true, residual: true, residualAfterAct: true, act: 'silu' }, all: true, cpu: true },
  { id: 'odd_gemm_333x45x200_b2', op: 'gemm', p: { m: 333, n: 45, k: 200, batch: [2] }, epi: { bias: true, residual: true, act: 'gelu_tanh' }, all: true, cpu: true },
  { id: 'odd_gemm_1000x264x328', op: 'gemm', p: { m: 1000, n: 264, k: 328 }, epi: { alpha: 0.5, bias: true }, all: true, cpu: true },
];

// ---- host data ----------------------------------------------------------------------------------------

const u = lcg(12345), rnd = () => u() * 2 - 1;
const HALF = await decodeTable('float16');
const asF64 = (buf) => halfToF64(buf, HALF, sampleStride(buf.byteLength));
const TOL = 4e-3; // fp32 accumulation in another order plus one fp16 rounding of the output

const summary = [];

for (const c of CASES) {
  if (!wants(c.id)) continue;
  if (overBudget()) { console.log(`SKIP ${c.id}: time budget spent`); continue; }
  let dev = {};
  try {
    const emitRef = () => (c.op === 'conv' ? emitConv(c.p, c.epi) : emitGemm(c.p, c.epi));
    const emitWg = (cfg) => (c.op === 'conv' ? emitConvTc(c.p, c.epi, cfg) : emitGemmTc(c.p, c.epi, cfg));
    const space = c.op === 'conv' ? wgmmaConvSpace(c.p) : wgmmaGemmSpace(c.p);
    let cfgs = args['no-ws'] ? space.filter((x) => !x.ws) : space;
    if (!c.all && !args['all-configs']) {
      const deepest = new Map();
      for (const x of space) if (!x.ws) deepest.set(`${x.bm}x${x.bn}x${x.warpsM}`, x);
      const shape = caseShape(c, convShape);
      const ranked = [...deepest.entries()].sort((a, b) => estimateTime(shape, a[1]) - estimateTime(shape, b[1]));
      const keep = new Set([...ranked.slice(0, 3).map(([k]) => k), '128x256x8', '256x128x8', '256x64x8']);
      cfgs = [...ranked.filter(([k]) => keep.has(k)).map(([, x]) => x), ...(args['no-ws'] ? [] : space.filter((x) => x.ws))];
    }
    const ref = emitRef();
    // the two usual pipelines of each mma.sync tile (every one with --all-configs)
    const mmaCfgs = args.mma ? tileConfigSpace(caseShape(c, convShape)).filter((x) => configName(x) !== configName(ref.config) && (args['all-configs'] || ['32/4', '64/3'].includes(`${x.bk}/${x.stages}`))) : [];
    const kernels = [ref, ...cfgs.map(emitWg), ...mmaCfgs.map((x) => (c.op === 'conv' ? emitConv(c.p, c.epi, x) : emitGemm(c.p, c.epi, x)))];
    const timed = [{ name: configName(ref.config), ms: 0, flops: ref.flops, bytes: 0 }];
    if (DRY) {
      const t = performance.now();
      const cpu = c.cpu ? tcReference(c, await tcBuffers(c, rnd), HALF) : undefined;
      console.log(`DRY ${c.id}: ${kernels.length - 1} wgmma kernels (${cfgs.filter((x) => x.ws).length} ws) + ${ref.name}${cpu ? `, float64 reference of ${cpu.length} outputs in ${(performance.now() - t).toFixed(0)} ms` : ''}`);
      r.tally(true);
      continue;
    }
    const images = await gpu.compile(kernels);
    const h = await tcBuffers(c, rnd);
    dev = gpu.upload(h);
    const outName = c.op === 'conv' ? 'y' : 'c', outBytes = h[outName].byteLength;
    const refImg = images.get(ref.name);
    if (refImg instanceof Error) throw refImg;
    const run = (k, img) => gpu.run(k, img, dev, { out: outName, bytes: outBytes }); // NaN pattern: unwritten outputs fail
    const r0 = run(ref, refImg);
    const cpu = c.cpu ? tcReference(c, h, HALF) : undefined;
    const base = cpu ?? asF64(r0.out);
    if (cpu) {
      const d = relDiff(asF64(r0.out), cpu);
      r.report(d <= TOL, `${c.id} mma.sync ${configName(ref.config)} vs float64: rel diff ${d.toExponential(2)}`);
    }
    console.log(`---- ${c.id}: mma.sync ${configName(ref.config)} ${r0.ms.toFixed(4)} ms ${tflops(ref.flops, r0.ms)} TFLOP/s`);
    timed[0].ms = r0.ms;
    let best, bestWs;
    for (const k of kernels.slice(1)) {
      const img = images.get(k.name);
      try {
        if (img instanceof Error) throw img;
        const x = run(k, img);
        const d = relDiff(asF64(x.out), base);
        const ok = d <= TOL;
        timed.push({ name: configName(k.config), ms: x.ms, flops: k.flops, smem: k.sharedBytes });
        if (ok) {
          if (!k.config.wgmma) { /* mma.sync sweep (--mma): only in the top list */ } else if (k.config.ws) { if (!bestWs || x.ms < bestWs.ms) bestWs = { k, ms: x.ms }; } else if (!best || x.ms < best.ms) best = { k, ms: x.ms };
        }
        r.report(ok, `${c.id} ${configName(k.config)} rel diff ${d.toExponential(2)}  ${x.ms.toFixed(4)} ms ${tflops(k.flops, x.ms)} TFLOP/s (${(r0.ms / x.ms).toFixed(2)}x mma.sync)`);
      } catch (e) {
        r.report(false, `${c.id} ${configName(k.config)}: ${errText(e, 6)}`);
        if (!gpu.alive()) {
          console.log(`CUDA context lost after ${k.name}; stopping (rerun with --filter to check the other cases)`);
          process.exit(1);
        }
      }
    }
    const show = (b) => (b ? `${tflops(b.k.flops, b.ms).padStart(6)} TFLOP/s ${configName(b.k.config).padEnd(26)} (${(r0.ms / b.ms).toFixed(2)}x)` : 'none passed'.padEnd(50));
    if (args.mma) {
      const top = timed.filter((x) => x.ms > 0).sort((a, b) => a.ms - b.ms).slice(0, 8);
      summary.push(`${c.id} top: ${top.map((x) => `${x.name} ${x.ms.toFixed(4)}`).join(' | ')}`);
    }
    summary.push(`${c.id.padEnd(30)} mma.sync ${tflops(ref.flops, r0.ms).padStart(6)}  wgmma ${show(best)}  ws ${show(bestWs)}${best && bestWs ? `  ws/wgmma ${(best.ms / bestWs.ms).toFixed(2)}x` : ''}`);
  } catch (e) {
    r.report(false, `${c.id}: ${errText(e, 6)}`);
    if (!DRY && !gpu.alive()) { console.log('CUDA context lost; stopping'); process.exit(1); }
  } finally {
    gpu?.free(dev);
  }
}

console.log('\n==== summary (median of', ITERS, 'launches, warm L2) ====');
for (const s of summary) console.log(s);
process.exit(r.summary({ time: true, blank: true }));
