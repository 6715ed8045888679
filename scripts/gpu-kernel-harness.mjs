// The harness of the GPU kernel-check scripts (gpu-wgmma-check, gpu-bf16, gpu-int8-kernels, gpu-pool-relayout,
// gpu-qlinear, test-gpu-int8): the build to test, `--key=value` arguments (--filter=a,b, --budget-s=S), the device
// (context, NVRTC target, kernel cache, stream, events), compile / upload / launch with a deadline / download,
// float64 references of the tensor-core conv/GEMM kernels, comparisons (relative, bit for bit, sampled for big
// outputs) and the PASS/FAIL lines with the `N passed, N failed` summary that bench/*.sh grep.
// Without a GPU, openDevice throws NoGpuError ("no GPU: CUDA driver library (libcuda.so.1) not found ...").
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';

/** The build under test: TSRT_DIST=<folder> (a private `tsc --outDir`), else the repository's dist/. */
export const distUrl = process.env.TSRT_DIST ? pathToFileURL(process.env.TSRT_DIST.replace(/\/?$/, '/')) : new URL('../dist/', import.meta.url);
export const imp = (p) => import(new URL(p, distUrl).href);

/** `--key=value` and `--flag` arguments; `wants(id)`: --filter is comma-separated substrings; --budget-s stops new
 * cases after that many seconds (`defaults.budgetS` when absent). */
export function parseArgs(argv = process.argv.slice(2), defaults = {}) {
  const args = Object.fromEntries(argv.map((a) => { const s = a.replace(/^--/, ''), i = s.indexOf('='); return i < 0 ? [s, true] : [s.slice(0, i), s.slice(i + 1)]; }));
  const filters = args.filter && args.filter !== true ? String(args.filter).split(',') : [];
  const budgetMs = Number(args['budget-s'] ?? defaults.budgetS ?? Infinity) * 1000;
  const t0 = performance.now();
  return { args, budgetMs, wants: (id) => !filters.length || filters.some((f) => id.includes(f)), overBudget: () => performance.now() - t0 > budgetMs };
}

/** PASS/FAIL lines and the closing `N passed, N failed` line (bench/*.sh grep `^FAIL|passed, `). */
export function reporter(log = console.log) {
  const t0 = performance.now();
  let passed = 0, failed = 0;
  return {
    report(ok, name, detail = '') { if (ok) passed++; else failed++; log(`${ok ? 'PASS' : 'FAIL'} ${name}${detail ? ` ${detail}` : ''}`); },
    /** Counts without a line (a dry run's case). */
    tally(ok) { if (ok) passed++; else failed++; },
    get passed() { return passed; },
    get failed() { return failed; },
    /** Prints the summary; returns the exit code. `time`: append the seconds since the reporter was made. */
    summary({ time = false, blank = false } = {}) {
      log(`${blank ? '\n' : ''}${passed} passed, ${failed} failed${time ? `, ${((performance.now() - t0) / 1000).toFixed(1)} s` : ''}`);
      return failed ? 1 : 0;
    },
  };
}

export class NoGpuError extends Error {}
/** A launch that did not finish by its deadline: the kernel hangs and the context cannot be used again. */
export class LaunchTimeout extends Error {}

/** One line of an error for a FAIL line. */
export const errText = (e, lines = 4) => String(e?.message ?? e).split('\n').slice(0, lines).join(' | ');

/** The GPU: context, NVRTC target (engineArch: sm_90a on Hopper with NVRTC 12+, or `arch: 'device'` for the plain
 * device arch), kernel cache, a stream and 2*iters events. `timeoutS`: the deadline of each launch's wait. */
export async function openDevice({ iters = 10, arch = 'engine', timeoutS = 30 } = {}) {
  const { Cuda, cudaAvailable, packParams } = await imp('runtime/cuda.js');
  const avail = cudaAvailable();
  if (!avail.ok) throw new NoGpuError(`no GPU: ${avail.reason}`);
  const { nvrtcVersion } = await imp('runtime/nvrtc.js');
  const { KernelCache } = await imp('runtime/kernel_cache.js');
  const { engineArch } = await imp('codegen/wgmma.js');
  const cu = new Cuda().init(0);
  const info = cu.deviceInfo();
  const nvrtc = nvrtcVersion();
  const target = arch === 'device' ? info.arch : engineArch(info.arch, nvrtc);
  return new Device({ cu, info, nvrtc, arch: target, kc: new KernelCache({ dir: null, arch: target }), packParams, iters, timeoutMs: timeoutS * 1000 });
}

class Device {
  constructor(o) {
    Object.assign(this, o);
    this.stream = o.cu.createStream();
    this.ev = Array.from({ length: 2 * o.iters }, () => o.cu.createEvent());
    this.lost = false;
  }

  describe() { return `${this.info.name} (${this.info.arch}, ${this.info.sms} SMs), NVRTC ${this.nvrtc.join('.')}, compiling for ${this.arch}`; }

  /** cubin (or the Error) by kernel name: one parallel NVRTC batch; on failure kernel by kernel, so one bad kernel is named. */
  async compile(kernels) {
    const out = new Map();
    try {
      const r = await this.kc.compileAll(kernels.map((k) => ({ source: k.source, name: k.name })), { parallel: Math.min(16, availableParallelism()) });
      r.forEach((x, i) => out.set(kernels[i].name, x.cubin));
    } catch {
      for (const k of kernels) { try { out.set(k.name, this.kc.get(k.source, k.name).cubin); } catch (e) { out.set(k.name, e); } }
    }
    return out;
  }

  /** Device copies of host buffers by name (256 bytes of slack past each). */
  upload(host) {
    const dev = {};
    for (const [name, buf] of Object.entries(host)) { dev[name] = this.cu.malloc(buf.byteLength + 256); this.cu.memcpyHtoD(dev[name], buf); }
    return dev;
  }

  /** Frees device buffers (not after a hung launch: freeing waits for it). */
  free(dev) {
    if (this.lost) return;
    for (const p of Object.values(dev)) { try { this.cu.free(p); } catch { /* context gone */ } }
  }

  /** Waits for the stream until the deadline; a hung kernel throws LaunchTimeout naming `what`. */
  wait(what) {
    const deadline = performance.now() + this.timeoutMs, nap = new Int32Array(new SharedArrayBuffer(4));
    for (let ms = 0.02; !this.cu.streamDone(this.stream); ms = Math.min(2 * ms, 5)) {
      if (performance.now() > deadline) {
        this.lost = true;
        throw new LaunchTimeout(`${what} did not finish within ${this.timeoutMs / 1000} s (a hung kernel, e.g. a deadlocked mbarrier pipeline); the CUDA context is unusable`);
      }
      Atomics.wait(nap, 0, 0, ms);
    }
  }

  /** Whether the context still works after a failure. */
  alive() {
    if (this.lost) return false;
    try { this.cu.synchronize(); return true; } catch { return false; }
  }

  /** Launches `k` (cubin `image`) on device buffers `dev` by parameter name (or `params`): output `out` pre-filled
   * with `fill` bytes (unwritten outputs then fail the compare), one checked launch, `warmup` more, then `iters`
   * timed ones between CUDA events. Returns the output bytes and the median ms. A workspace of up to
   * `workspaceMax` bytes is allocated into dev.workspace and zeroed. */
  run(k, image, dev, { out, bytes, fill = 0xff, warmup = 2, params, workspaceMax = 1 << 26 }) {
    const cu = this.cu, mod = cu.loadModule(image);
    try {
      const fn = cu.getFunction(mod, k.name);
      cu.setMaxDynamicShared(fn, k.sharedBytes); // a no-op below the 48 KiB default (Cuda.setMaxDynamicShared)
      if (k.workspaceBytes) {
        if (k.workspaceBytes > workspaceMax) throw new Error('workspace too large');
        dev.workspace ??= cu.malloc(workspaceMax);
        cu.memsetD8Async(dev.workspace, 0, k.workspaceBytes, this.stream);
      }
      const p = this.packParams(params ?? k.params.map((x) => ({ type: 'ptr', value: dev[x.name] ?? 0n })));
      try {
        const launch = () => cu.launch(fn, k.grid, k.block, k.sharedBytes, this.stream, p);
        cu.memsetD8Async(dev[out], fill, bytes, this.stream);
        launch();
        this.wait(k.name);
        const result = new Uint8Array(bytes);
        cu.memcpyDtoH(result, dev[out]);
        for (let i = 0; i < warmup; i++) launch();
        for (let i = 0; i < this.iters; i++) { cu.record(this.ev[2 * i], this.stream); launch(); cu.record(this.ev[2 * i + 1], this.stream); }
        this.wait(`${k.name} (timed launches)`);
        const ts = Array.from({ length: this.iters }, (_, i) => cu.elapsedMs(this.ev[2 * i], this.ev[2 * i + 1])).sort((a, b) => a - b);
        return { out: result, ms: ts[this.iters >> 1] };
      } finally { p.dispose(); }
    } finally { if (!this.lost) try { cu.unloadModule(mod); } catch { /* context may be gone */ } }
  }
}

// ---- host data and comparisons -----------------------------------------------------------------------------

/** The scripts' LCG: uniform in [0, 1), the same sequence for a seed as before the harness. */
export function lcg(seed) {
  let s = seed;
  return () => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s / 2 ** 32; };
}

/** float64 value of every bit pattern of a 16-bit float type, through the project's own codec (ir/tensor.js). */
export async function decodeTable(dtype) {
  const { makeTensor, toF64 } = await imp('ir/tensor.js');
  return toF64(makeTensor(dtype, [65536], Uint16Array.from({ length: 65536 }, (_, i) => i)));
}

/** Random 16-bit float bytes: `n` values of `rnd() * scale` rounded to `dtype` by the project's codec. */
export async function randomHalfBytes(dtype, n, rnd, scale = 1) {
  const { fromF64 } = await imp('ir/tensor.js');
  const t = fromF64(dtype, [n], Float64Array.from({ length: n }, () => rnd() * scale));
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Outputs over 16 MiB are compared on every 7th element: a Float64Array of all of them (ResNet-50 bs256's 205M)
 * does not fit node's heap. */
export const sampleStride = (bytes) => (bytes > 2 ** 24 ? 7 : 1);

/** 16-bit float bytes as float64 through `table`, every `stride`-th element. */
export function halfToF64(buf, table, stride = 1) {
  const u = new Uint16Array(buf.buffer, buf.byteOffset, buf.byteLength >> 1);
  const out = new Float64Array(Math.ceil(u.length / stride));
  for (let i = 0, j = 0; i < u.length; i += stride, j++) out[j] = table[u[i]];
  return out;
}

/** max |out - ref| / max |ref| (a non-finite output anywhere: Infinity). */
export function relDiff(out, ref) {
  let md = 0, mr = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(out[i])) return Infinity;
    md = Math.max(md, Math.abs(out[i] - ref[i]));
    mr = Math.max(mr, Math.abs(ref[i]));
  }
  return md / (mr || 1);
}

/** Elements of `b` that `a` differs from (bytes for byte arrays). */
export function diffCount(a, b) { let d = 0; for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) d++; return d; }

export const tflops = (flops, ms, digits = 1) => (flops / (ms * 1e-3) / 1e12).toFixed(digits);

// ---- tensor-core conv/GEMM cases (gpu-wgmma-check, gpu-bf16, gpu-int8-kernels) ----------------------------------

/** Square conv problem with `same` padding: n images of h x h x c, k filters of r x r, stride. */
export function convProblem(n, h, c, k, r, stride, extra = {}) {
  const pad = (r - 1) >> 1, p = Math.floor((h + 2 * pad - r) / stride) + 1;
  return { n, h, w: h, c, k, r, s: r, strideH: stride, strideW: stride, padH: pad, padW: pad, dilH: 1, dilW: 1, p, q: p, ...extra };
}

export const batchOf = (p) => (p.batch ?? []).reduce((a, b) => a * b, 1);
/** The implicit-GEMM shape of a case (tc_conv's convShape for convs). */
export const caseShape = (c, convShape) => (c.op === 'conv' ? convShape(c.p) : { m: c.p.m, n: c.p.n, k: c.p.k, batch: batchOf(c.p) });

/** Host buffers by kernel parameter name of a 16-bit conv (x, w, bias, residual, y) or GEMM (a, b, bias, residual,
 * c) case, random in the problem's dtype; weights scaled by 2/sqrt(K). */
export async function tcBuffers(c, rnd) {
  const dt = c.p.dtype ?? 'float16', half = (n, scale) => randomHalfBytes(dt, n, rnd, scale);
  if (c.op === 'conv') {
    const p = c.p, K = p.r * p.s * p.c, y = p.n * p.p * p.q * p.k;
    return { x: await half(p.n * p.h * p.w * p.c), w: await half(p.k * K, 2 / Math.sqrt(K)), bias: new Float32Array(p.k).map(() => rnd() * 0.5), residual: await half(y), y: new Uint8Array(y * 2) };
  }
  const p = c.p, b = batchOf(p);
  return { a: await half(b * p.m * p.k), b: await half(b * p.n * p.k, 2 / Math.sqrt(p.k)), bias: new Float32Array(p.n).map(() => rnd() * 0.5), residual: await half(b * p.m * p.n), c: new Uint8Array(b * p.m * p.n * 2) };
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

/** float64 reference of a tensor-core case on the 16-bit values of `host` (tcBuffers; dense batches, B [N,K] or
 * [K,N]); `table`: decodeTable of the case's dtype. Small cases only. */
export function tcReference(c, host, table) {
  const h = Object.fromEntries(Object.entries(host).map(([k, v]) => [k, k === 'bias' ? v : halfToF64(v, table)]));
  const e = c.epi;
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
  const p = c.p, nb = batchOf(p), kn = p.bLayout === 'kn', out = new Float64Array(nb * p.m * p.n);
  for (let b = 0; b < nb; b++) for (let m = 0; m < p.m; m++) for (let n = 0; n < p.n; n++) {
    let s = 0;
    for (let k = 0; k < p.k; k++) s += h.a[(b * p.m + m) * p.k + k] * h.b[b * p.n * p.k + (kn ? k * p.n + n : n * p.k + k)];
    const o = (b * p.m + m) * p.n + n;
    out[o] = epilogue(s, e, h.bias[n], h.residual[o]);
  }
  return out;
}
