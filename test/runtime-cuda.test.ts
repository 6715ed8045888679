// CUDA driver wrapper. The GPU tests skip (with a note) where there is no NVIDIA driver or GPU; KernelParams packing
// needs neither and always runs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TsrtError } from '../src/errors.js';
import { Cuda, CudaError, KernelParams, cudaAvailable, needsSharedOptIn, packParams, type CuModule, type CuFunction } from '../src/runtime/cuda.js';
import { compileCuda, supportedArchs } from '../src/runtime/nvrtc.js';

const avail = cudaAvailable();
if (!avail.ok) console.log(`[runtime-cuda] GPU tests skipped: no usable CUDA GPU here (${avail.reason})`);

describe('dynamic shared memory opt-in', () => {
  it('opts in from just under 48 KiB: the default limit covers the kernels\' static shared memory too', () => {
    expect(needsSharedOptIn(32 * 1024)).toBe(false);
    expect(needsSharedOptIn(47 * 1024)).toBe(false);
    // a split-K tile of exactly 48 KiB plus its static flag was refused on the H200 without the opt-in
    expect(needsSharedOptIn(48 * 1024)).toBe(true);
    expect(needsSharedOptIn(227 * 1024)).toBe(true);
  });
});

describe('KernelParams', () => {
  it('packs with C ABI alignment and points each kernelParams slot at its argument', () => {
    const p = packParams([
      { type: 'ptr', value: 0x1234_5678_9abcn },
      { type: 'i32', value: -7 },
      { type: 'ptr', value: 0xdead_beefn },
      { type: 'f32', value: 1.5 },
      { type: 'u32', value: 0xffff_fffe },
      { type: 'i64', value: -(2n ** 40n) },
    ]);
    expect(p.offsets).toEqual([0, 8, 16, 24, 28, 32]);
    expect(p.bytes).toBe(40);
    expect(p.count).toBe(6);
    expect(typeof p.ptr).toBe('bigint');
    expect(p.get(0)).toBe(0x1234_5678_9abcn);
    expect(p.get(1)).toBe(-7);
    expect(p.get(3)).toBe(1.5);
    expect(p.get(4)).toBe(0xffff_fffe);
    expect(p.get(5)).toBe(-(2n ** 40n));
    p.setPtr(2, 0x42n);
    expect(p.get(2)).toBe(0x42n);
    p.set(1, 123);
    expect(p.get(1)).toBe(123);
    p.dispose();
    expect(() => p.get(0)).toThrow(/after dispose/);
  });

  it('handles no arguments and rejects unknown types', () => {
    const empty = new KernelParams([]);
    expect(empty.bytes).toBe(0);
    empty.dispose();
    expect(() => new KernelParams(['f16' as never])).toThrow(TsrtError);
  });
});

const VECADD = `
extern "C" __global__ void vec_add(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ c, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}`;

// D(16x8,f32) = A(16x16,f16,row-major) * B(16x8,f16) with B given transposed (Bt 8x16 row-major), via cp.async + mma.sync.
const MMA = `
#include <cuda_fp16.h>
extern "C" __global__ void mma_16x8x16(const half* __restrict__ A, const half* __restrict__ Bt, float* __restrict__ D) {
  __shared__ __align__(16) half sA[16 * 16];
  __shared__ __align__(16) half sB[8 * 16];
  const int lane = threadIdx.x;
  unsigned dstA = (unsigned)__cvta_generic_to_shared(sA + lane * 8);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\\n" :: "r"(dstA), "l"(A + lane * 8));
  if (lane < 16) {
    unsigned dstB = (unsigned)__cvta_generic_to_shared(sB + lane * 8);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\\n" :: "r"(dstB), "l"(Bt + lane * 8));
  }
  asm volatile("cp.async.commit_group;\\n" ::);
  asm volatile("cp.async.wait_group 0;\\n" ::);
  __syncthreads();
  const int g = lane >> 2, t = lane & 3;
  const unsigned* a32 = reinterpret_cast<const unsigned*>(sA);
  const unsigned* b32 = reinterpret_cast<const unsigned*>(sB);
  unsigned a0 = a32[(g * 16 + t * 2) / 2], a1 = a32[((g + 8) * 16 + t * 2) / 2];
  unsigned a2 = a32[(g * 16 + t * 2 + 8) / 2], a3 = a32[((g + 8) * 16 + t * 2 + 8) / 2];
  unsigned b0 = b32[(g * 16 + t * 2) / 2], b1 = b32[(g * 16 + t * 2 + 8) / 2];
  float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\\n"
               : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  D[g * 8 + t * 2] = d0; D[g * 8 + t * 2 + 1] = d1;
  D[(g + 8) * 8 + t * 2] = d2; D[(g + 8) * 8 + t * 2 + 1] = d3;
}`;

/** float -> IEEE half bits, for small integers (exact). */
function toHalfBits(x: number): number {
  const f = new Float32Array([x]), u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000, exp = ((u >>> 23) & 0xff) - 127 + 15, mant = (u >>> 13) & 0x3ff;
  return x === 0 ? 0 : sign | (exp << 10) | mant;
}

describe.skipIf(!avail.ok)('CUDA driver (GPU)', () => {
  let cu: Cuda;
  let arch: string;
  let mod: CuModule;
  let vecAdd: CuFunction;
  const N = 10_000;
  const bytes = N * 4;
  const ha = Float32Array.from({ length: N }, (_, i) => i);
  const hb = Float32Array.from({ length: N }, (_, i) => 2 * i + 0.5);

  beforeAll(() => {
    cu = new Cuda().init(0);
    const info = cu.deviceInfo();
    const sm = info.ccMajor * 10 + info.ccMinor;
    // A GPU newer than this NVRTC gets PTX for the newest arch NVRTC knows, which the driver JIT-compiles.
    arch = supportedArchs().includes(sm) ? info.arch : `compute_${Math.max(...supportedArchs())}`;
    const r = compileCuda(VECADD, { name: 'vec_add', arch });
    mod = cu.loadModule(r.cubin ?? r.ptx!);
    vecAdd = cu.getFunction(mod, 'vec_add');
  });

  afterAll(() => {
    if (mod) cu.unloadModule(mod);
  });

  it('reports device info', () => {
    const info = cu.deviceInfo();
    console.log(`[runtime-cuda] ${info.name} ${info.arch}, ${info.sms} SMs, ${(info.totalMem / 2 ** 30).toFixed(1)} GiB, ` +
      `driver ${info.driverVersion}, optin smem ${info.maxSharedPerBlockOptin}; compiling for ${arch}`);
    expect(info.name.length).toBeGreaterThan(0);
    expect(info.sms).toBeGreaterThan(0);
    expect(info.totalMem).toBeGreaterThan(0);
    expect(info.driverVersion).toBeGreaterThanOrEqual(11000);
    expect(info.maxSharedPerBlockOptin).toBeGreaterThanOrEqual(info.maxSharedPerBlock);
    const m = cu.memInfo();
    expect(m.free).toBeGreaterThan(0);
    expect(m.total).toBeGreaterThanOrEqual(m.free);
  });

  it('round-trips host -> device -> device -> host, and memsets', () => {
    const d1 = cu.malloc(bytes), d2 = cu.malloc(bytes);
    try {
      cu.memcpyHtoD(d1, ha);
      cu.memcpyDtoD(d2, d1, bytes);
      const back = new Float32Array(N);
      cu.memcpyDtoH(back, d2);
      expect(back).toEqual(ha);
      // Offsets into device buffers are pointer arithmetic on the bigint; host subarrays work as they are.
      const part = new Float32Array(10);
      cu.memcpyDtoH(part, d2 + 100n * 4n);
      expect(Array.from(part)).toEqual(Array.from(ha.subarray(100, 110)));
      cu.memsetD8(d2, 0, bytes);
      cu.memcpyDtoH(back, d2);
      expect(back.every((x) => x === 0)).toBe(true);
      expect(() => cu.memcpyDtoH(new Float32Array(1), d2, 8)).toThrow(/host buffer holds 4/);
    } finally {
      cu.free(d1); cu.free(d2);
    }
  });

  it('launches vec_add with packed params, rebinds a pointer slot, and checks the parameter layout', () => {
    const [da, db, dc] = [cu.malloc(bytes), cu.malloc(bytes), cu.malloc(bytes)];
    try {
      cu.memcpyHtoD(da, ha); cu.memcpyHtoD(db, hb);
      const p = packParams([{ type: 'ptr', value: da }, { type: 'ptr', value: db }, { type: 'ptr', value: dc }, { type: 'i32', value: N }]);
      cu.checkParams(vecAdd, p);
      const grid = [Math.ceil(N / 256), 1, 1] as const, block = [256, 1, 1] as const;
      cu.launch(vecAdd, grid, block, 0, 0n, p);
      const hc = new Float32Array(N);
      cu.memcpyDtoH(hc, dc);
      for (let i = 0; i < N; i++) if (hc[i] !== ha[i] + hb[i]) throw new Error(`c[${i}] = ${hc[i]}, want ${ha[i] + hb[i]}`);
      p.setPtr(1, da); // c = a + a
      cu.launch(vecAdd, grid, block, 0, 0n, p);
      cu.memcpyDtoH(hc, dc);
      expect(hc[1234]).toBe(2 * ha[1234]);
      const wrong = packParams([{ type: 'ptr', value: da }, { type: 'ptr', value: db }, { type: 'ptr', value: dc }]);
      if (cu['api'].cuFuncGetParamInfo) expect(() => cu.checkParams(vecAdd, wrong)).toThrow(/do not match/);
      p.dispose(); wrong.dispose();
      expect(cu.funcAttributes(vecAdd).numRegs).toBeGreaterThan(0);
    } finally {
      cu.free(da); cu.free(db); cu.free(dc);
    }
  });

  it('times launches with events', () => {
    const [da, db, dc] = [cu.malloc(bytes), cu.malloc(bytes), cu.malloc(bytes)];
    const stream = cu.createStream();
    const start = cu.createEvent(), end = cu.createEvent();
    try {
      const p = packParams([{ type: 'ptr', value: da }, { type: 'ptr', value: db }, { type: 'ptr', value: dc }, { type: 'i32', value: N }]);
      cu.record(start, stream);
      for (let i = 0; i < 100; i++) cu.launch(vecAdd, [Math.ceil(N / 256), 1, 1], [256, 1, 1], 0, stream, p);
      cu.record(end, stream);
      const ms = cu.elapsedMs(start, end);
      expect(ms).toBeGreaterThan(0);
      expect(ms).toBeLessThan(1000);
      cu.syncStream(stream);
      p.dispose();
    } finally {
      cu.destroyEvent(start); cu.destroyEvent(end); cu.destroyStream(stream);
      cu.free(da); cu.free(db); cu.free(dc);
    }
  });

  it('captures 3 launches into a graph that replays with fresh inputs', () => {
    const buf = Array.from({ length: 5 }, () => cu.malloc(bytes)); // a, b, c, d, e
    const [a, b, c, d, e] = buf;
    const stream = cu.createStream();
    try {
      const args = (x: bigint, y: bigint, z: bigint) =>
        packParams([{ type: 'ptr', value: x }, { type: 'ptr', value: y }, { type: 'ptr', value: z }, { type: 'i32', value: N }]);
      const p1 = args(a, b, c), p2 = args(c, b, d), p3 = args(d, a, e); // e = (a + b + b) + a
      const grid = [Math.ceil(N / 256), 1, 1] as const, block = [256, 1, 1] as const;
      cu.beginCapture(stream);
      cu.launch(vecAdd, grid, block, 0, stream, p1);
      cu.launch(vecAdd, grid, block, 0, stream, p2);
      cu.launch(vecAdd, grid, block, 0, stream, p3);
      const graph = cu.endCapture(stream);
      const exec = cu.instantiate(graph);
      // Arguments were copied at capture: rewriting a slot now must not change the graph.
      p3.setPtr(2, a);
      const out = new Float32Array(N);
      for (const scale of [1, 3]) {
        const xa = ha.map((v) => v * scale);
        cu.memcpyHtoD(a, xa); cu.memcpyHtoD(b, hb);
        cu.memsetD8(e, 0, bytes);
        cu.graphLaunch(exec, stream);
        cu.syncStream(stream);
        cu.memcpyDtoH(out, e);
        for (let i = 0; i < N; i += 97) expect(out[i]).toBe(Math.fround(Math.fround(Math.fround(xa[i] + hb[i]) + hb[i]) + xa[i]));
      }
      cu.destroyGraphExec(exec); cu.destroyGraph(graph);
      [p1, p2, p3].forEach((p) => p.dispose());
    } finally {
      cu.destroyStream(stream);
      buf.forEach((x) => cu.free(x));
    }
  });

  it('refuses to capture the legacy default stream', () => {
    expect(() => cu.beginCapture(0n)).toThrow(/default stream/);
  });

  it('copies asynchronously through pinned memory', () => {
    const pin = cu.allocPinned(bytes);
    const d = cu.malloc(bytes);
    const stream = cu.createStream();
    try {
      const view = new Float32Array(pin.buffer);
      view.set(hb);
      cu.memcpyHtoDAsync(d, view, stream);
      const back = cu.allocPinned(bytes);
      const bview = new Float32Array(back.buffer);
      cu.memcpyDtoHAsync(bview, d, stream);
      cu.syncStream(stream);
      expect(bview[777]).toBe(hb[777]);
      cu.freePinned(back);
    } finally {
      cu.destroyStream(stream); cu.free(d); cu.freePinned(pin);
    }
  });

  it('runs an mma.sync m16n8k16 tensor-core kernel fed by cp.async (sm_80+)', () => {
    const info = cu.deviceInfo();
    if (info.ccMajor < 8) return;
    const r = compileCuda(MMA, { name: 'mma_16x8x16', arch });
    const m = cu.loadModule(r.cubin ?? r.ptx!);
    const fn = cu.getFunction(m, 'mma_16x8x16');
    const A = Array.from({ length: 16 * 16 }, (_, i) => ((i * 7) % 5) - 2);
    const Bt = Array.from({ length: 8 * 16 }, (_, i) => ((i * 3) % 7) - 3);
    const dA = cu.malloc(512), dB = cu.malloc(256), dD = cu.malloc(16 * 8 * 4);
    try {
      cu.memcpyHtoD(dA, Uint16Array.from(A, toHalfBits));
      cu.memcpyHtoD(dB, Uint16Array.from(Bt, toHalfBits));
      const p = packParams([{ type: 'ptr', value: dA }, { type: 'ptr', value: dB }, { type: 'ptr', value: dD }]);
      cu.launch(fn, [1, 1, 1], [32, 1, 1], 0, 0n, p);
      const D = new Float32Array(16 * 8);
      cu.memcpyDtoH(D, dD);
      for (let i = 0; i < 16; i++) {
        for (let j = 0; j < 8; j++) {
          let want = 0;
          for (let k = 0; k < 16; k++) want += A[i * 16 + k] * Bt[j * 16 + k];
          expect(D[i * 8 + j]).toBe(want);
        }
      }
      p.dispose();
    } finally {
      cu.free(dA); cu.free(dB); cu.free(dD); cu.unloadModule(m);
    }
  });

  it('turns driver errors into CudaError naming the call and kernel', () => {
    let err: unknown;
    try { cu.getFunction(mod, 'no_such_kernel'); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(CudaError);
    expect((err as CudaError).code).toBe('CUDA');
    expect((err as CudaError).result).toBe(500);
    expect((err as Error).message).toMatch(/cuModuleGetFunction \('no_such_kernel'\) failed: CUDA_ERROR_NOT_FOUND \(500\)/);
    expect((err as Error).message).toMatch(/extern "C"/);
    const p = packParams([{ type: 'ptr', value: 0n }, { type: 'ptr', value: 0n }, { type: 'ptr', value: 0n }, { type: 'i32', value: 0 }]);
    expect(() => cu.launch(vecAdd, [1, 1, 1], [2048, 1, 1], 0, 0n, p)).toThrow(/cuLaunchKernel \(kernel 'vec_add' grid \[1,1,1\] block \[2048,1,1\]/);
    p.dispose();
    expect(() => cu.loadModule(new Uint8Array([1, 2, 3, 4, 0]))).toThrow(CudaError);
  });
});
