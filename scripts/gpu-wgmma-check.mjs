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
import { availableParallelism } from 'node:os';
import { getFloat16, setFloat16 } from '@petamoriken/float16';

import { pathToFileURL } from 'node:url';

// TSRT_DIST: another build folder (e.g. a private `tsc --outDir`)
const dist = process.env.TSRT_DIST ? pathToFileURL(process.env.TSRT_DIST.replace(/\/?$/, '/')) : new URL('../dist/', import.meta.url);
const imp = (p) => import(new URL(p, dist).href);
const { Cuda, cudaAvailable, packParams } = await imp('runtime/cuda.js');
const { nvrtcVersion } = await imp('runtime/nvrtc.js');
const { KernelCache } = await imp('runtime/kernel_cache.js');
const { emitConv } = await imp('codegen/tc_conv.js');
const { emitGemm, configName, estimateTime, tileConfigSpace } = await imp('codegen/tc_gemm.js');
const { convShape } = await imp('codegen/tc_conv.js');
const { emitConvTc, emitGemmTc, engineArch, wgmmaConvSpace, wgmmaGemmSpace } = await imp('codegen/wgmma.js');

const args = Object.fromEntries(process.argv.slice(2).map((a) => { const [k, v] = a.replace(/^--/, '').split('='); return [k, v ?? true]; }));
const ITERS = Number(args.iters ?? 10);
const BUDGET_MS = Number(args['budget-s'] ?? 190) * 1000;
const t0 = performance.now();

const DRY = !!args['dry-run'];
let cu, kc, stream, ev;
if (!DRY) {
  const avail = cudaAvailable();
  if (!avail.ok) { console.error(`no GPU: ${avail.reason} (--dry-run checks the kernels' emission without one)`); process.exit(1); }
  cu = new Cuda().init(0);
  const info = cu.deviceInfo();
  const nv = nvrtcVersion();
  const arch = engineArch(`sm_${info.ccMajor}${info.ccMinor}`, nv);
  console.log(`device ${info.name} (sm_${info.ccMajor}${info.ccMinor}), NVRTC ${nv.join('.')}, compiling for ${arch}`);
  if (arch !== 'sm_90a') { console.error('wgmma needs an sm_90 GPU and NVRTC 12+: nothing to check'); process.exit(1); }
  kc = new KernelCache({ dir: null, arch });
  stream = cu.createStream();
  ev = Array.from({ length: 2 * ITERS }, () => cu.createEvent());
}

// ---- problems ----------------------------------------------------------------------------------------

const conv = (n, h, c, k, r, stride, extra = {}) => {
  const pad = (r - 1) >> 1;
  const p = Math.floor((h + 2 * pad - r) / stride) + 1;
  return { n, h, w: h, c, k, r, s: r, strideH: stride, strideW: stride, padH: pad, padW: pad, dilH: 1, dilW: 1, p, q: p, ...extra };
};
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

let seed = 12345;
const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return (seed / 2 ** 32) * 2 - 1; };
function halfBuf(n, scale = 1) {
  const buf = new Uint8Array(n * 2);
  const dv = new DataView(buf.buffer);
  for (let i = 0; i < n; i++) setFloat16(dv, i * 2, rnd() * scale, true);
  return buf;
}
const HALF = (() => { const dv = new DataView(new ArrayBuffer(2)); return Float64Array.from({ length: 65536 }, (_, i) => { dv.setUint16(0, i, true); return getFloat16(dv, 0, true); }); })();
// outputs of the big memory-bound cases (205M elements) are compared on every 7th element: a Float64Array of all
// of them does not fit node's heap
const sampleStride = (bytes) => (bytes > 2 ** 24 ? 7 : 1);
const asF64 = (buf) => {
  const u = new Uint16Array(buf.buffer, buf.byteOffset, buf.byteLength >> 1), st = sampleStride(buf.byteLength);
  const out = new Float64Array(Math.ceil(u.length / st));
  for (let i = 0, j = 0; i < u.length; i += st, j++) out[j] = HALF[u[i]];
  return out;
};

/** Buffers by kernel parameter name (sizes as the kernels read them). */
function buffers(c) {
  if (c.op === 'conv') {
    const p = c.p, K = p.r * p.s * p.c, y = p.n * p.p * p.q * p.k;
    return { x: halfBuf(p.n * p.h * p.w * p.c), w: halfBuf(p.k * K, 2 / Math.sqrt(K)), bias: new Float32Array(p.k).map(() => rnd() * 0.5), residual: halfBuf(y), y: new Uint8Array(y * 2) };
  }
  const p = c.p, b = (p.batch ?? []).reduce((x, y) => x * y, 1);
  return { a: halfBuf(b * p.m * p.k), b: halfBuf(b * p.n * p.k, 2 / Math.sqrt(p.k)), bias: new Float32Array(p.n).map(() => rnd() * 0.5), residual: halfBuf(b * p.m * p.n), c: new Uint8Array(b * p.m * p.n * 2) };
}

const ACT = {
  relu: (v) => Math.max(v, 0), silu: (v) => v / (1 + Math.exp(-v)),
  gelu_tanh: (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
};
function epilogue(acc, e, bias, res) {
  let v = acc * (e.alpha ?? 1);
  if (e.bias) v += bias;
  if (e.residual && !e.residualAfterAct) v += res;
  if (e.act && e.act !== 'none') v = ACT[e.act](v);
  if (e.residual && e.residualAfterAct) v += res;
  return v;
}

/** float64 reference (small cases only). */
function cpuReference(c, hb) {
  const e = c.epi;
  const h = Object.fromEntries(Object.entries(hb).map(([k, v]) => [k, k === 'bias' ? v : asF64(v)]));
  if (c.op === 'conv') {
    const p = c.p, out = new Float64Array(p.n * p.p * p.q * p.k);
    for (let b = 0; b < p.n; b++) for (let oh = 0; oh < p.p; oh++) for (let ow = 0; ow < p.q; ow++) for (let ko = 0; ko < p.k; ko++) {
      let s = 0;
      for (let ri = 0; ri < p.r; ri++) for (let si = 0; si < p.s; si++) {
        const ih = oh * p.strideH - p.padH + ri, iw = ow * p.strideW - p.padW + si;
        if (ih < 0 || ih >= p.h || iw < 0 || iw >= p.w) continue;
        for (let ci = 0; ci < p.c; ci++) s += h.x[((b * p.h + ih) * p.w + iw) * p.c + ci] * h.w[((ko * p.r + ri) * p.s + si) * p.c + ci];
      }
      const o = ((b * p.p + oh) * p.q + ow) * p.k + ko;
      out[o] = epilogue(s, e, h.bias[ko], h.residual[o]);
    }
    return out;
  }
  const p = c.p, nb = (p.batch ?? []).reduce((x, y) => x * y, 1), out = new Float64Array(nb * p.m * p.n);
  for (let b = 0; b < nb; b++) for (let m = 0; m < p.m; m++) for (let n = 0; n < p.n; n++) {
    let s = 0;
    for (let k = 0; k < p.k; k++) s += h.a[(b * p.m + m) * p.k + k] * h.b[(b * p.n + n) * p.k + k];
    const o = (b * p.m + m) * p.n + n;
    out[o] = epilogue(s, e, h.bias[n], h.residual[o]);
  }
  return out;
}

/** max |a - b| / max |b| over the output (NaN anywhere fails). */
function relDiff(outBytes, ref) {
  const out = asF64(outBytes);
  let md = 0, mr = 0;
  for (let i = 0; i < ref.length; i++) {
    const a = out[i], b = ref[i];
    if (!Number.isFinite(a)) return Infinity;
    md = Math.max(md, Math.abs(a - b));
    mr = Math.max(mr, Math.abs(b));
  }
  return md / (mr || 1);
}
const TOL = 4e-3; // fp32 accumulation in another order plus one fp16 rounding of the output

// ---- GPU ----------------------------------------------------------------------------------------------

function contextAlive() { try { cu.synchronize(); return true; } catch { return false; } }

/** Runs kernel `k` on device buffers `d` (by parameter name); returns the output bytes and the median ms. */
function run(k, image, d, outName, outBytes) {
  const mod = cu.loadModule(image);
  try {
    const fn = cu.getFunction(mod, k.name);
    cu.setMaxDynamicShared(fn, k.sharedBytes); // a no-op below the 48 KiB default (Cuda.setMaxDynamicShared)
    if (k.workspaceBytes) {
      d.workspace ??= cu.malloc(1 << 26);
      if (k.workspaceBytes > 1 << 26) throw new Error('workspace too large');
      cu.memsetD8Async(d.workspace, 0, k.workspaceBytes, stream);
    }
    const params = packParams(k.params.map((p) => ({ type: 'ptr', value: d[p.name] ?? 0n })));
    try {
      cu.memsetD8Async(d[outName], 0xff, outBytes, stream); // NaN pattern: unwritten outputs fail
      cu.launch(fn, k.grid, k.block, k.sharedBytes, stream, params);
      cu.syncStream(stream);
      const out = new Uint8Array(outBytes);
      cu.memcpyDtoH(out, d[outName]);
      for (let i = 0; i < 2; i++) cu.launch(fn, k.grid, k.block, k.sharedBytes, stream, params);
      for (let i = 0; i < ITERS; i++) {
        cu.record(ev[2 * i], stream);
        cu.launch(fn, k.grid, k.block, k.sharedBytes, stream, params);
        cu.record(ev[2 * i + 1], stream);
      }
      cu.syncStream(stream);
      const ts = Array.from({ length: ITERS }, (_, i) => cu.elapsedMs(ev[2 * i], ev[2 * i + 1])).sort((a, b) => a - b);
      return { out, ms: ts[ITERS >> 1] };
    } finally { params.dispose(); }
  } finally { try { cu.unloadModule(mod); } catch { /* context may be gone */ } }
}

/** cubin per kernel name: one parallel NVRTC batch; on failure, kernel by kernel so one bad kernel is named. */
async function compile(kernels) {
  const out = new Map();
  const items = kernels.map((k) => ({ source: k.source, name: k.name }));
  try {
    const r = await kc.compileAll(items, { parallel: Math.min(16, availableParallelism()) });
    r.forEach((x, i) => out.set(kernels[i].name, x.cubin));
  } catch {
    for (const k of kernels) { try { out.set(k.name, kc.get(k.source, k.name).cubin); } catch (e) { out.set(k.name, e); } }
  }
  return out;
}

const tflops = (flops, ms) => (flops / (ms * 1e-3) / 1e12).toFixed(1);
let failures = 0, passes = 0;
const summary = [];

for (const c of CASES) {
  if (args.filter && !String(args.filter).split(',').some((f) => c.id.includes(f))) continue;
  if (performance.now() - t0 > BUDGET_MS) { console.log(`SKIP ${c.id}: time budget spent`); continue; }
  const dev = {};
  try {
    const emitRef = () => (c.op === 'conv' ? emitConv(c.p, c.epi) : emitGemm(c.p, c.epi));
    const emitWg = (cfg) => (c.op === 'conv' ? emitConvTc(c.p, c.epi, cfg) : emitGemmTc(c.p, c.epi, cfg));
    const space = c.op === 'conv' ? wgmmaConvSpace(c.p) : wgmmaGemmSpace(c.p);
    let cfgs = args['no-ws'] ? space.filter((x) => !x.ws) : space;
    if (!c.all && !args['all-configs']) {
      const deepest = new Map();
      for (const x of space) if (!x.ws) deepest.set(`${x.bm}x${x.bn}x${x.warpsM}`, x);
      const shape = c.op === 'conv' ? convShape(c.p) : { m: c.p.m, n: c.p.n, k: c.p.k, batch: (c.p.batch ?? []).reduce((a, b) => a * b, 1) };
      const ranked = [...deepest.entries()].sort((a, b) => estimateTime(shape, a[1]) - estimateTime(shape, b[1]));
      const keep = new Set([...ranked.slice(0, 3).map(([k]) => k), '128x256x8', '256x128x8', '256x64x8']);
      cfgs = [...ranked.filter(([k]) => keep.has(k)).map(([, x]) => x), ...(args['no-ws'] ? [] : space.filter((x) => x.ws))];
    }
    const ref = emitRef();
    const shapeOf = () => (c.op === 'conv' ? convShape(c.p) : { m: c.p.m, n: c.p.n, k: c.p.k, batch: (c.p.batch ?? []).reduce((a, b) => a * b, 1) });
    // the two usual pipelines of each mma.sync tile (every one with --all-configs)
    const mmaCfgs = args.mma ? tileConfigSpace(shapeOf()).filter((x) => configName(x) !== configName(ref.config) && (args['all-configs'] || ['32/4', '64/3'].includes(`${x.bk}/${x.stages}`))) : [];
    const kernels = [ref, ...cfgs.map(emitWg), ...mmaCfgs.map((x) => (c.op === 'conv' ? emitConv(c.p, c.epi, x) : emitGemm(c.p, c.epi, x)))];
    const timed = [{ name: configName(ref.config), ms: 0, flops: ref.flops, bytes: 0 }];
    if (DRY) {
      const t = performance.now();
      const cpu = c.cpu ? cpuReference(c, buffers(c)) : undefined;
      console.log(`DRY ${c.id}: ${kernels.length - 1} wgmma kernels (${cfgs.filter((x) => x.ws).length} ws) + ${ref.name}${cpu ? `, float64 reference of ${cpu.length} outputs in ${(performance.now() - t).toFixed(0)} ms` : ''}`);
      passes++;
      continue;
    }
    const images = await compile(kernels);
    const h = buffers(c);
    for (const [name, buf] of Object.entries(h)) {
      dev[name] = cu.malloc(buf.byteLength + 256);
      cu.memcpyHtoD(dev[name], buf);
    }
    const outName = c.op === 'conv' ? 'y' : 'c', outBytes = h[outName].byteLength;
    const refImg = images.get(ref.name);
    if (refImg instanceof Error) throw refImg;
    const r0 = run(ref, refImg, dev, outName, outBytes);
    const cpu = c.cpu ? cpuReference(c, h) : undefined;
    const base = cpu ?? asF64(r0.out);
    if (cpu) {
      const d = relDiff(r0.out, cpu);
      console.log(`${d <= TOL ? 'PASS' : 'FAIL'} ${c.id} mma.sync ${configName(ref.config)} vs float64: rel diff ${d.toExponential(2)}`);
      if (d > TOL) failures++; else passes++;
    }
    console.log(`---- ${c.id}: mma.sync ${configName(ref.config)} ${r0.ms.toFixed(4)} ms ${tflops(ref.flops, r0.ms)} TFLOP/s`);
    timed[0].ms = r0.ms;
    let best, bestWs;
    for (const k of kernels.slice(1)) {
      const img = images.get(k.name);
      try {
        if (img instanceof Error) throw img;
        const r = run(k, img, dev, outName, outBytes);
        const d = relDiff(r.out, base);
        const ok = d <= TOL;
        timed.push({ name: configName(k.config), ms: r.ms, flops: k.flops, smem: k.sharedBytes });
        if (ok) {
          passes++;
          if (!k.config.wgmma) { /* mma.sync sweep (--mma): only in the top list */ } else if (k.config.ws) { if (!bestWs || r.ms < bestWs.ms) bestWs = { k, ms: r.ms }; } else if (!best || r.ms < best.ms) best = { k, ms: r.ms };
        } else failures++;
        console.log(`${ok ? 'PASS' : 'FAIL'} ${c.id} ${configName(k.config)} rel diff ${d.toExponential(2)}  ${r.ms.toFixed(4)} ms ${tflops(k.flops, r.ms)} TFLOP/s (${(r0.ms / r.ms).toFixed(2)}x mma.sync)`);
      } catch (e) {
        failures++;
        console.log(`FAIL ${c.id} ${configName(k.config)}: ${String(e.message ?? e).split('\n').slice(0, 6).join(' | ')}`);
        if (!contextAlive()) {
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
    failures++;
    console.log(`FAIL ${c.id}: ${String(e.message ?? e).split('\n').slice(0, 6).join(' | ')}`);
    if (!contextAlive()) { console.log('CUDA context lost; stopping'); process.exit(1); }
  } finally {
    for (const p of Object.values(dev)) { try { cu.free(p); } catch { /* context gone */ } }
  }
}

console.log('\n==== summary (median of', ITERS, 'launches, warm L2) ====');
for (const s of summary) console.log(s);
console.log(`\n${passes} passed, ${failures} failed, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
process.exit(failures ? 1 : 0);
