#!/usr/bin/env node
// GPU smoke test and launch-overhead benchmark for the runtime layer. Run after `npm run build` on a GPU machine:
//   node scripts/gpu-smoke.mjs [--compile-bench]
// Prints device info, NVRTC version and archs, checks vec_add and an mma.sync kernel, then times 1000 launches
// (host microseconds per launch) and 1000 graph replays. --compile-bench also compares serial, helper-process and
// worker-thread kernel compiles.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dist = new URL('../dist/runtime/', import.meta.url);
const { Cuda, cudaAvailable, packParams } = await import(new URL('cuda.js', dist).href);
const { compileCuda, nvrtcVersion, supportedArchs } = await import(new URL('nvrtc.js', dist).href);
const { nvrtcApi } = await import(new URL('ffi.js', dist).href);
const { KernelCache } = await import(new URL('kernel_cache.js', dist).href);
const { findCudaInclude } = await import(new URL('libs.js', dist).href);

const line = (k, v) => console.log(`${k.padEnd(28)} ${v}`);

const avail = cudaAvailable();
if (!avail.ok) { console.error(`no GPU: ${avail.reason}`); process.exit(1); }
const cu = new Cuda().init(0);
const info = cu.deviceInfo();
line('driver library', avail.libraryPath);
line('device', `${info.name} (${info.arch}), ${info.sms} SMs, ${(info.totalMem / 2 ** 30).toFixed(1)} GiB`);
line('driver CUDA version', `${Math.floor(info.driverVersion / 1000)}.${(info.driverVersion % 1000) / 10}`);
line('smem per block / optin / SM', `${info.maxSharedPerBlock} / ${info.maxSharedPerBlockOptin} / ${info.maxSharedPerSM}`);
line('L2', `${(info.l2Bytes / 2 ** 20).toFixed(0)} MiB`);
const [maj, min] = nvrtcVersion();
line('NVRTC', `${maj}.${min} (${nvrtcApi().libraryPath})`);
line('NVRTC archs', supportedArchs().map((a) => `sm_${a}`).join(' '));
line('CUDA include', JSON.stringify(findCudaInclude(nvrtcApi().libraryPath)));
const mem = cu.memInfo();
line('memory free/total', `${(mem.free / 2 ** 30).toFixed(1)} / ${(mem.total / 2 ** 30).toFixed(1)} GiB`);

const sm = info.ccMajor * 10 + info.ccMinor;
const arch = supportedArchs().includes(sm) ? info.arch : `compute_${Math.max(...supportedArchs())}`;
line('compile arch', arch);

// ---- vec_add correctness ----
const VECADD = `extern "C" __global__ void vec_add(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ c, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) c[i] = a[i] + b[i]; }`;
let t = performance.now();
const r = compileCuda(VECADD, { name: 'vec_add', arch });
line('compile vec_add', `${(performance.now() - t).toFixed(1)} ms, ${(r.cubin ?? r.ptx).length} bytes`);
const mod = cu.loadModule(r.cubin ?? r.ptx);
const fn = cu.getFunction(mod, 'vec_add');
line('vec_add attributes', JSON.stringify(cu.funcAttributes(fn)));
const N = 1 << 20, bytes = N * 4;
const ha = Float32Array.from({ length: N }, (_, i) => i % 1000), hb = Float32Array.from({ length: N }, (_, i) => (i % 7) * 0.5);
const [da, db, dc] = [cu.malloc(bytes), cu.malloc(bytes), cu.malloc(bytes)];
cu.memcpyHtoD(da, ha); cu.memcpyHtoD(db, hb);
const p = packParams([{ type: 'ptr', value: da }, { type: 'ptr', value: db }, { type: 'ptr', value: dc }, { type: 'i32', value: N }]);
cu.checkParams(fn, p);
const grid = [Math.ceil(N / 256), 1, 1], block = [256, 1, 1];
const stream = cu.createStream();
cu.launch(fn, grid, block, 0, stream, p);
cu.syncStream(stream);
const hc = new Float32Array(N);
cu.memcpyDtoH(hc, dc);
let bad = 0;
for (let i = 0; i < N; i++) if (hc[i] !== ha[i] + hb[i]) bad++;
line('vec_add check', bad ? `FAILED (${bad} wrong)` : 'ok');

// ---- mma.sync + cp.async correctness ----
if (info.ccMajor >= 8) {
  const MMA = `#include <cuda_fp16.h>
extern "C" __global__ void mma_16x8x16(const half* __restrict__ A, const half* __restrict__ Bt, float* __restrict__ D) {
  __shared__ __align__(16) half sA[256]; __shared__ __align__(16) half sB[128];
  const int lane = threadIdx.x;
  unsigned dA = (unsigned)__cvta_generic_to_shared(sA + lane * 8);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\\n" :: "r"(dA), "l"(A + lane * 8));
  if (lane < 16) { unsigned dB = (unsigned)__cvta_generic_to_shared(sB + lane * 8);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\\n" :: "r"(dB), "l"(Bt + lane * 8)); }
  asm volatile("cp.async.commit_group;\\n" ::); asm volatile("cp.async.wait_group 0;\\n" ::); __syncthreads();
  const int g = lane >> 2, t = lane & 3;
  const unsigned* a32 = reinterpret_cast<const unsigned*>(sA); const unsigned* b32 = reinterpret_cast<const unsigned*>(sB);
  unsigned a0 = a32[(g*16 + t*2)/2], a1 = a32[((g+8)*16 + t*2)/2], a2 = a32[(g*16 + t*2 + 8)/2], a3 = a32[((g+8)*16 + t*2 + 8)/2];
  unsigned b0 = b32[(g*16 + t*2)/2], b1 = b32[(g*16 + t*2 + 8)/2];
  float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\\n"
    : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3) : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  D[g*8 + t*2] = d0; D[g*8 + t*2 + 1] = d1; D[(g+8)*8 + t*2] = d2; D[(g+8)*8 + t*2 + 1] = d3; }`;
  const half = (x) => { const u = new Uint32Array(new Float32Array([x]).buffer)[0]; return x === 0 ? 0 : ((u >>> 16) & 0x8000) | ((((u >>> 23) & 0xff) - 112) << 10) | ((u >>> 13) & 0x3ff); };
  const m = compileCuda(MMA, { name: 'mma_16x8x16', arch });
  const mm = cu.loadModule(m.cubin ?? m.ptx);
  const f2 = cu.getFunction(mm, 'mma_16x8x16');
  const A = Array.from({ length: 256 }, (_, i) => ((i * 7) % 5) - 2), Bt = Array.from({ length: 128 }, (_, i) => ((i * 3) % 7) - 3);
  const [x, y, z] = [cu.malloc(512), cu.malloc(256), cu.malloc(512)];
  cu.memcpyHtoD(x, Uint16Array.from(A, half)); cu.memcpyHtoD(y, Uint16Array.from(Bt, half));
  const pm = packParams([{ type: 'ptr', value: x }, { type: 'ptr', value: y }, { type: 'ptr', value: z }]);
  cu.launch(f2, [1, 1, 1], [32, 1, 1], 0, stream, pm);
  cu.syncStream(stream);
  const D = new Float32Array(128);
  cu.memcpyDtoH(D, z);
  let wrong = 0;
  for (let i = 0; i < 16; i++) for (let j = 0; j < 8; j++) {
    let s = 0; for (let k = 0; k < 16; k++) s += A[i * 16 + k] * Bt[j * 16 + k];
    if (D[i * 8 + j] !== s) wrong++;
  }
  line('mma.sync m16n8k16 check', wrong ? `FAILED (${wrong}/128 wrong)` : 'ok');
  pm.dispose(); [x, y, z].forEach((q) => cu.free(q)); cu.unloadModule(mm);
}

// ---- launch overhead ----
const small = packParams([{ type: 'ptr', value: da }, { type: 'ptr', value: db }, { type: 'ptr', value: dc }, { type: 'i32', value: 1024 }]);
const sgrid = [4, 1, 1];
const e0 = cu.createEvent(), e1 = cu.createEvent();
for (let i = 0; i < 200; i++) cu.launch(fn, sgrid, block, 0, stream, small); // warm up
cu.syncStream(stream);
const LAUNCHES = 1000;
cu.record(e0, stream);
t = performance.now();
for (let i = 0; i < LAUNCHES; i++) cu.launch(fn, sgrid, block, 0, stream, small);
const hostUs = ((performance.now() - t) * 1000) / LAUNCHES;
cu.record(e1, stream);
const gpuMs = cu.elapsedMs(e0, e1);
line('launch (host)', `${hostUs.toFixed(2)} us per cuLaunchKernel (${LAUNCHES} launches, n=1024)`);
line('launch (stream)', `${((gpuMs * 1000) / LAUNCHES).toFixed(2)} us per kernel on the stream`);

// ---- graph replay ----
for (const perGraph of [1, 100]) {
  cu.beginCapture(stream);
  for (let i = 0; i < perGraph; i++) cu.launch(fn, sgrid, block, 0, stream, small);
  const g = cu.endCapture(stream);
  const exec = cu.instantiate(g);
  for (let i = 0; i < 20; i++) cu.graphLaunch(exec, stream);
  cu.syncStream(stream);
  const REPLAYS = 1000;
  cu.record(e0, stream);
  t = performance.now();
  for (let i = 0; i < REPLAYS; i++) cu.graphLaunch(exec, stream);
  const hostGraphUs = ((performance.now() - t) * 1000) / REPLAYS;
  cu.record(e1, stream);
  const ms = cu.elapsedMs(e0, e1);
  line(`graph of ${perGraph} (host)`, `${hostGraphUs.toFixed(2)} us per cuGraphLaunch`);
  line(`graph of ${perGraph} (stream)`, `${((ms * 1000) / REPLAYS).toFixed(2)} us per replay, ${((ms * 1000) / REPLAYS / perGraph).toFixed(2)} us per kernel`);
  cu.destroyGraphExec(exec); cu.destroyGraph(g);
}

// ---- copy bandwidth ----
{
  const MB = 64, nbytes = MB << 20;
  const d = cu.malloc(nbytes);
  const pageable = new Uint8Array(nbytes);
  const pinned = cu.allocPinned(nbytes);
  const pview = new Uint8Array(pinned.buffer);
  const bw = (label, f) => {
    f(); cu.syncStream(stream);
    const s = performance.now();
    for (let i = 0; i < 5; i++) f();
    cu.syncStream(stream);
    line(label, `${((5 * nbytes) / ((performance.now() - s) / 1000) / 1e9).toFixed(1)} GB/s`);
  };
  bw('HtoD pageable', () => cu.memcpyHtoD(d, pageable));
  bw('HtoD pinned async', () => cu.memcpyHtoDAsync(d, pview, stream));
  bw('DtoH pageable', () => cu.memcpyDtoH(pageable, d));
  bw('DtoH pinned async', () => cu.memcpyDtoHAsync(pview, d, stream));
  cu.freePinned(pinned); cu.free(d);
}

// ---- kernel compile parallelism ----
if (process.argv.includes('--compile-bench')) {
  const src = (i, salt) => `#include <cuda_fp16.h>
extern "C" __global__ void k${i}(half* a, int n) { int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < n) a[j] = __hadd(a[j], __float2half(${i}.0f + ${salt}.0f)); }`;
  const K = 32;
  for (const [label, opts] of [['serial', { parallel: 1 }], ['processes x8', { parallel: 8, mode: 'processes' }], ['threads x8', { parallel: 8, mode: 'threads' }]]) {
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-smoke-cache-'));
    const cache = new KernelCache({ dir, arch });
    const salt = Math.floor(Math.random() * 1e9);
    const items = Array.from({ length: K }, (_, i) => ({ source: src(i, salt), name: `k${i}` }));
    const s = performance.now();
    await cache.compileAll(items, opts);
    line(`compile ${K} kernels, ${label}`, `${(performance.now() - s).toFixed(0)} ms`);
    rmSync(dir, { recursive: true, force: true });
  }
}

[e0, e1].forEach((e) => cu.destroyEvent(e));
p.dispose(); small.dispose();
[da, db, dc].forEach((q) => cu.free(q));
cu.destroyStream(stream);
cu.unloadModule(mod);
console.log('gpu-smoke: done');
