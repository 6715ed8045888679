#!/usr/bin/env node
// GPU check of the int8 conv/GEMM kernels (src/codegen/tc_int8.ts: mma.sync m16n8k32; wgmma_s8.ts: Hopper
// wgmma m64nNk32 .s32.s8.s8) over their autotuning space. Run on the H100/H200 after a build:
//   node scripts/gpu-int8-kernels.mjs [--filter=SUBSTR] [--configs=SUBSTR,...] [--all-configs] [--iters=N] [--budget-s=S] [--dry-run]
// (TSRT_DIST=folder: a private `tsc --outDir` build instead of dist/; --dry-run: no GPU, emits every kernel
// and computes the CPU references.) Per case (ResNet-50 layers at batch 256 and 1, odd shapes) random int8
// inputs; the heuristic mma.sync kernel is the reference, checked bit for bit against the tsrt::QConv /
// tsrt::QGemm CPU reference on the small cases; every other candidate (one mma.sync config per tile, bk and
// split or not; every int8 wgmma tile (bn 64, 128, 192, 256: fp16's list) in each form (plain, se, ws, ws+se,
// persistent) at its deepest pipeline,
// every wgmma config on the odd cases; everything
// with --all-configs) must equal it bit for bit (integer accumulation is exact, the epilogue is the same
// code). Prints PASS/FAIL, median CUDA-event times and TOP/s. Exit code 1 when anything failed; also callable
// as int8KernelChecks() (scripts/test-gpu-int8.mjs).
import { pathToFileURL } from 'node:url';
import { convProblem as conv, diffCount, errText, imp, lcg, NoGpuError, openDevice, parseArgs, reporter } from './gpu-kernel-harness.mjs';

const Q = (s, extra = {}) => ({ out: 'int8', outScale: s, bias: true, act: 'relu', ...extra });
const RES = { residual: true, residualType: 'int8', residualScale: 0.05 };
const QL = (s, bias) => ({ out: 'int8', outScale: s, bias, qlinear: true });
export const INT8_CASES = [
  { id: 'rn50_bs256_3x3_c64_56', op: 'conv', p: conv(256, 56, 64, 64, 3, 1), epi: Q(0.5) },
  { id: 'rn50_bs256_3x3_c128_28', op: 'conv', p: conv(256, 28, 128, 128, 3, 1), epi: Q(0.7) },
  { id: 'rn50_bs256_3x3_c256_14', op: 'conv', p: conv(256, 14, 256, 256, 3, 1), epi: Q(1) },
  { id: 'rn50_bs256_3x3_c512_7', op: 'conv', p: conv(256, 7, 512, 512, 3, 1), epi: Q(1.4) },
  { id: 'rn50_bs256_1x1_64_256_56_res', op: 'conv', p: conv(256, 56, 64, 256, 1, 1), epi: Q(0.3, RES) },
  { id: 'rn50_bs256_1x1_1024_256_14', op: 'conv', p: conv(256, 14, 1024, 256, 1, 1), epi: Q(1) },
  { id: 'rn50_bs256_3x3s2_c128_56', op: 'conv', p: conv(256, 56, 128, 128, 3, 2), epi: Q(0.7) },
  { id: 'rn50_bs256_1x1s2_512_1024_28', op: 'conv', p: conv(256, 28, 512, 1024, 1, 2), epi: { out: 'int8', outScale: 0.7, bias: true } },
  { id: 'rn50_bs256_fc_2048_1000_f16', op: 'gemm', p: { m: 256, n: 1000, k: 2048 }, epi: { out: 'float16', bias: true } },
  { id: 'rn50_bs1_3x3_c256_14', op: 'conv', p: conv(1, 14, 256, 256, 3, 1), epi: Q(1) },
  // odd shapes: M/N/K tails, N % 16 != 0 (direct stores), fp16/fp32 outputs and residuals; all configs, CPU-checked
  { id: 'odd_conv_3x3_n3_h17_c48_k40_h', op: 'conv', p: conv(3, 17, 48, 40, 3, 1), epi: { out: 'float16', bias: true, residual: true, residualType: 'float16', residualAfterAct: true, act: 'clip', actArgs: [-1, 2] }, all: true, cpu: true },
  { id: 'odd_conv_1x1s2_n2_h15_c96_k80_q', op: 'conv', p: conv(2, 15, 96, 80, 1, 2), epi: Q(0.2, RES), all: true, cpu: true },
  { id: 'odd_gemm_333x200x320_f32', op: 'gemm', p: { m: 333, n: 200, k: 320 }, epi: { out: 'float32', bias: true }, all: true, cpu: true },
  // N % 16 == 0: the wgmma se / persistent forms (residual prefetched into shared memory) with an fp16 residual
  // into int8 and into fp16, M and K tails
  { id: 'odd_gemm_333x208x320_q_resh', op: 'gemm', p: { m: 333, n: 208, k: 320 }, epi: Q(0.3, { residual: true, residualType: 'float16' }), all: true, cpu: true },
  { id: 'odd_conv_1x1_n3_h13_c64_k144_h_resh', op: 'conv', p: conv(3, 13, 64, 144, 1, 1), epi: { out: 'float16', bias: true, residual: true, residualType: 'float16', act: 'relu' }, all: true, cpu: true },
  // the bn 192 / 256 tiles across more than one n-tile: N = 400 = 256 + 144 = 2 * 192 + 16, int8 residual into int8
  // (the 128x256 persistent kernel's two int8 staging tiles fit beside 3 stages), M and K tails
  { id: 'odd_gemm_333x400x480_q_resq', op: 'gemm', p: { m: 333, n: 400, k: 480 }, epi: Q(0.3, RES), all: true, cpu: true },
  // the qlinear epilogue (QLinearConv / QLinearMatMul: int32 bias, float64 requantize), CPU-checked at full size
  { id: 'qlinear_conv_3x3_n4_c128_28_bias', op: 'conv', p: conv(4, 28, 128, 128, 3, 1), epi: QL(0.05, true), cpu: true },
  { id: 'qlinear_conv_1x1s2_n2_c96_15_k80', op: 'conv', p: conv(2, 15, 96, 80, 1, 2), epi: QL(0.01, false), all: true, cpu: true },
  { id: 'qlinear_gemm_308x768x3072_bias', op: 'gemm', p: { m: 308, n: 3072, k: 768 }, epi: QL(0.04, true), cpu: true },
  { id: 'qlinear_gemm_333x200x320', op: 'gemm', p: { m: 333, n: 200, k: 320 }, epi: QL(0.02, false), all: true, cpu: true },
];

/** Runs the checks; `report(ok, name, detail)` per kernel. Options: filter, allConfigs, iters, budgetMs, dry. */
export async function int8KernelChecks({ report, filter, configs, allConfigs = false, iters = 10, budgetMs = 150_000, dry = false, log = console.log }) {
  const { configName } = await imp('codegen/tc_gemm.js');
  const t8 = await imp('codegen/tc_int8.js');
  const { accFitsSmall } = await imp('codegen/lower_int8.js');
  const { getOp } = await imp('ops/registry.js');
  await imp('ops/index.js');
  const { makeTensor, fromF64 } = await imp('ir/tensor.js');

  // the case filter (comma-separated substrings) and the time budget, as the command line gives them
  const { wants, overBudget } = parseArgs(filter ? [`--filter=${filter}`] : [], { budgetS: budgetMs / 1000 });
  let gpu, arch = 'sm_90a';
  if (!dry) {
    try { gpu = await openDevice({ iters }); } catch (e) {
      if (!(e instanceof NoGpuError)) throw e;
      report(false, 'int8 kernels', e.message); return;
    }
    arch = gpu.arch;
    log(`int8 kernels on ${gpu.describe()}${arch === 'sm_90a' ? '' : ' (no wgmma)'}`);
  }

  const rnd = lcg(4242);
  const i8 = (n) => Int8Array.from({ length: n }, () => Math.floor(rnd() * 256) - 128);
  const OB = { int8: 1, float16: 2, float32: 4 };

  /** Host buffers by kernel parameter name; `w` is [K][R][S][C] (the kernel's layout). */
  function buffers(c) {
    const e = c.epi, K = c.op === 'conv' ? c.p.k : c.p.n;
    const y = c.op === 'conv' ? c.p.n * c.p.p * c.p.q * c.p.k : c.p.m * c.p.n;
    const kk = c.op === 'conv' ? c.p.r * c.p.s * c.p.c : c.p.k;
    // per-channel w_scale; the kernel's scale is fp32(fp32(x_scale 0.02) * w_scale), as lower_int8.ts computes it
    // (qlinear: that divided by y_scale in fp32; w_scale a power of two on every 4th channel, so ties occur)
    const ws = Float64Array.from({ length: K }, (_, i) => (e.qlinear && i % 4 === 0 ? 2 ** -(9 + (i % 3)) : Math.fround(1e-3 * (0.5 + rnd()))));
    const f = Math.fround;
    const h = {
      [c.op === 'conv' ? 'x' : 'a']: i8(c.op === 'conv' ? c.p.n * c.p.h * c.p.w * c.p.c : c.p.m * c.p.k),
      [c.op === 'conv' ? 'w' : 'b']: i8(K * kk),
      scale: Float32Array.from(ws, (v) => (e.qlinear ? f(f(f(0.02) * v) / f(e.outScale)) : f(f(0.02) * v))),
      [c.op === 'conv' ? 'y' : 'c']: new Uint8Array(y * OB[e.out]),
    };
    if (e.bias) h.bias = e.qlinear ? Int32Array.from({ length: K }, () => Math.floor(rnd() * 40000) - 20000) : Float32Array.from({ length: K }, () => Math.fround(rnd() * 2 - 1));
    // the kernel's channel buffers: times 1 / y_scale for the folded requantize (tc_int8.ts int8ChannelParams);
    // the CPU reference takes the unfolded scale and bias (hc)
    const hc = { scale: h.scale, bias: h.bias };
    if (!e.qlinear) Object.assign(h, t8.int8ChannelParams(e, h.scale, h.bias));
    if (!h.bias) delete h.bias;
    if (e.residual) {
      const rt = e.residualType ?? e.out;
      h.residual = rt === 'int8' ? i8(y) : new Uint8Array(fromF64(rt, [y], Array.from({ length: y }, () => rnd() * 4 - 2)).data.buffer);
    }
    return { h, ws, hc };
  }

  /** The CPU reference's output bytes: tsrt::QConv / QGemm with x_scale 0.02 and the case's w_scale. */
  function cpuReference(c, h, ws, hc) {
    const e = c.epi, K = c.op === 'conv' ? c.p.k : c.p.n;
    const f = (v) => ({ kind: 'float', value: v });
    const attrs = { x_scale: f(0.02), activation: { kind: 'string', value: { none: 'none', relu: 'Relu', clip: 'Clip' }[e.act ?? 'none'] } };
    if (e.actArgs) attrs.activation_params = { kind: 'floats', value: e.actArgs };
    if (e.residualAfterAct) attrs.residual_before_act = { kind: 'int', value: 0 };
    if (e.out === 'int8') attrs.y_scale = f(e.outScale); else attrs.out_dtype = { kind: 'int', value: e.out === 'float16' ? 10 : 1 };
    if (e.residual && (e.residualType ?? e.out) === 'int8') attrs.z_scale = f(e.residualScale);
    if (e.qlinear) attrs.qlinear = { kind: 'int', value: 1 };
    let x, w, yDims;
    if (c.op === 'conv') {
      const p = c.p;
      Object.assign(attrs, { layout: { kind: 'string', value: 'NHWC' }, strides: { kind: 'ints', value: [p.strideH, p.strideW] }, pads: { kind: 'ints', value: [p.padH, p.padW, p.padH, p.padW] } });
      x = makeTensor('int8', [p.n, p.h, p.w, p.c], h.x);
      const wk = new Int8Array(h.w.length);
      for (let ko = 0; ko < p.k; ko++) for (let ci = 0; ci < p.c; ci++) for (let ri = 0; ri < p.r; ri++) for (let si = 0; si < p.s; si++) {
        wk[((ko * p.c + ci) * p.r + ri) * p.s + si] = h.w[((ko * p.r + ri) * p.s + si) * p.c + ci];
      }
      w = makeTensor('int8', [p.k, p.c, p.r, p.s], wk);
      yDims = [p.n, p.p, p.q, p.k];
    } else {
      x = makeTensor('int8', [c.p.m, c.p.k], h.a); w = makeTensor('int8', [c.p.n, c.p.k], h.b); yDims = [c.p.m, c.p.n];
    }
    const rt = e.residualType ?? e.out;
    const z = e.residual ? (rt === 'int8' ? makeTensor('int8', yDims, h.residual) : makeTensor(rt, yDims, rt === 'float16' ? new Uint16Array(h.residual.buffer) : new Float32Array(h.residual.buffer))) : undefined;
    const node = { name: c.id, op: c.op === 'conv' ? 'QConv' : 'QGemm', domain: 'tsrt', inputs: ['x', 'w', 'ws', 'b', 'z'], outputs: ['y'], attrs };
    const ref = getOp(node.op, 'tsrt').cpu(node, [x, w, fromF64('float32', [K], Array.from(ws)), e.bias ? makeTensor(e.qlinear ? 'int32' : 'float32', [K], hc.bias) : undefined, z], { opset: 17, runGraph: () => [] })[0];
    return new Uint8Array(ref.data.buffer, ref.data.byteOffset, ref.data.byteLength);
  }

  const tops = (flops, ms) => (flops / (ms * 1e-3) / 1e12).toFixed(0);
  for (const c of INT8_CASES) {
    if (!wants(c.id)) continue;
    if (overBudget()) { log(`SKIP ${c.id}: time budget spent`); continue; }
    let dev = {};
    try {
      const { h, ws, hc } = buffers(c);
      // the lowering's exponent-trick conversions when these random weights bound every accumulator below 2^22
      // (the small-K cases), the conversion unit otherwise (lower_int8.ts accFitsSmall)
      const small = accFitsSmall(c.op === 'conv' ? h.w : h.b, c.op === 'conv' ? c.p.k : c.p.n);
      const epi = { ...c.epi, ...(small ? { smallAcc: true } : {}) };
      const emit = (cfg) => (c.op === 'conv' ? t8.emitConvInt8(c.p, epi, cfg) : t8.emitGemmInt8(c.p, epi, cfg));
      const mma = c.op === 'conv' ? t8.int8ConvConfigSpace(c.p) : t8.int8GemmConfigSpace(c.p);
      // (with the epilogue: persistent configs whose staging tiles of its types do not fit are left out, as lowering does)
      const wg = arch === 'sm_90a' ? (c.op === 'conv' ? t8.int8WgmmaConvSpace(c.p, c.epi) : t8.int8WgmmaGemmSpace(c.p, c.epi)) : [];
      let cfgs = [...mma, ...wg];
      if (!allConfigs) {
        // one per tile shape / bk (split or not) at its deepest pipeline; the odd cases take every wgmma config
        const pick = new Map();
        for (const x of cfgs) {
          // (each wgmma form of a tile: plain, se, ws, ws+se, persistent)
          const key = x.wgmma && c.all ? `all${pick.size}` : `${x.wgmma ? 'wg' : ''}${x.bm}x${x.bn}x${x.bk}x${x.warpsM}x${x.warpsN}x${(x.splitK ?? 1) > 1}${x.ws ? 'ws' : ''}${x.se ? 'se' : ''}${x.persistent ? 'p' : ''}`;
          pick.set(key, x);
        }
        cfgs = [...pick.values()];
      }
      // --configs=a,b: only the candidates whose config name contains one of these (the heuristic reference always runs)
      if (configs?.length) cfgs = cfgs.filter((x) => configs.some((f) => configName(x).includes(f)));
      const ref = emit();
      // a config the emitter refuses (none expected: the space is filtered by the epilogue's types) is listed, not run
      const emitted = cfgs.map((x) => { try { return emit(x); } catch (e) { log(`  (${c.id} ${configName(x)} not emitted: ${String(e?.message ?? e).split('\n')[0]})`); return undefined; } });
      const kernels = [ref, ...emitted.filter((k) => k && k.name !== ref.name)];
      const outName = c.op === 'conv' ? 'y' : 'c', outBytes = h[outName].byteLength;
      if (dry) {
        const t = performance.now();
        const cpu = c.cpu ? cpuReference(c, h, ws, hc) : undefined;
        report(cpu ? cpu.length === outBytes : true, `int8 ${c.id} (dry run)`, `${kernels.length - 1} candidates (${kernels.filter((k) => k.config.wgmma).length} wgmma) + ${ref.name}${cpu ? `; CPU reference ${(performance.now() - t).toFixed(0)} ms` : ''}`);
        continue;
      }
      const images = await gpu.compile(kernels);
      dev = gpu.upload(h);
      const refImg = images.get(ref.name);
      if (refImg instanceof Error) throw refImg;
      // unwritten outputs (0x7f bytes) differ from most results
      const run = (k, img) => gpu.run(k, img, dev, { out: outName, bytes: outBytes, fill: 0x7f, workspaceMax: 1 << 27 });
      const r0 = run(ref, refImg);
      if (c.cpu) {
        const d = diffCount(r0.out, cpuReference(c, h, ws, hc));
        report(d === 0, `int8 ${c.id} heuristic ${configName(ref.config)} vs CPU reference`, `${d} of ${outBytes} bytes differ`);
      }
      log(`---- ${c.id}${small ? ' (smallAcc)' : ''}: heuristic ${configName(ref.config)} ${r0.ms.toFixed(4)} ms ${tops(ref.flops, r0.ms)} TOP/s`);
      let best = { name: configName(ref.config), ms: r0.ms };
      for (const k of kernels.slice(1)) {
        try {
          const img = images.get(k.name);
          if (img instanceof Error) throw img;
          const x = run(k, img);
          const d = diffCount(x.out, r0.out);
          if (d === 0 && x.ms < best.ms) best = { name: configName(k.config), ms: x.ms };
          report(d === 0, `int8 ${c.id} ${configName(k.config)}`, `${d ? `${d} bytes differ; ` : ''}${x.ms.toFixed(4)} ms ${tops(k.flops, x.ms)} TOP/s (${(r0.ms / x.ms).toFixed(2)}x heuristic)`);
        } catch (e) {
          report(false, `int8 ${c.id} ${configName(k.config)}`, errText(e));
          if (!gpu.alive()) { log('CUDA context lost: stopping (rerun with --filter to skip this case)'); return; }
        }
      }
      log(`==== ${c.id}: best ${best.name} ${best.ms.toFixed(4)} ms (${(r0.ms / best.ms).toFixed(2)}x heuristic)`);
    } catch (e) {
      report(false, `int8 ${c.id}`, errText(e, 1));
      if (!dry && !gpu.alive()) { log('CUDA context lost: stopping'); return; }
    } finally {
      gpu?.free(dev);
    }
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { args, budgetMs } = parseArgs(process.argv.slice(2), { budgetS: 150 });
  const r = reporter();
  await int8KernelChecks({ report: r.report, filter: args.filter, configs: typeof args.configs === 'string' ? args.configs.split(',') : undefined, allConfigs: !!args['all-configs'], iters: Number(args.iters ?? 10), budgetMs, dry: !!args['dry-run'] });
  process.exit(r.summary());
}
