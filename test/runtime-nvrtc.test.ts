// NVRTC compile, arch checks, error reporting and the kernel cache. Needs libnvrtc (11.2+) but no GPU.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TsrtError } from '../src/errors.js';
import { compileCuda, moduleImage, nvrtcVersion, resolveCompileOptions, supportedArchs } from '../src/runtime/nvrtc.js';
import { KernelCache, isValidImage } from '../src/runtime/kernel_cache.js';
import { findCudaInclude, nvrtcCandidates } from '../src/runtime/libs.js';

const isElf = (b: Uint8Array) => b[0] === 0x7f && b[1] === 0x45 && b[2] === 0x4c && b[3] === 0x46;

const VECADD = `
extern "C" __global__ void vec_add(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ c, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}`;

// One warp computes D(16x8,f32) = A(16x16,f16,row) * B(16x8,f16,col): tiles arrive by cp.async, then one
// mma.sync.m16n8k16. Bt is B stored transposed (8x16 row-major), i.e. column-major B.
const MMA = `
#include <cuda_fp16.h>
#include <mma.h>
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
  // Exercise the fp16 header API too.
  if (lane == 0) { half h = __float2half(1.5f); D[0] += __half2float(__hmul(h, h)) * 0.f; }
}`;

const scratch = mkdtempSync(join(tmpdir(), 'tsrt-nvrtc-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('nvrtc', () => {
  it('reports a version and sm_90 among the supported archs', () => {
    const [major, minor] = nvrtcVersion();
    expect(major).toBeGreaterThanOrEqual(11);
    expect(minor).toBeGreaterThanOrEqual(0);
    expect(supportedArchs()).toContain(90);
  });

  it('compiles a trivial kernel to an sm_90 cubin', () => {
    const r = compileCuda(VECADD, { name: 'vec_add', arch: 'sm_90' });
    expect(r.cubin).toBeDefined();
    expect(isElf(r.cubin!)).toBe(true);
    expect(isValidImage(r.cubin!, false)).toBe(true);
    expect(r.version).toEqual(nvrtcVersion());
    expect(r.options).toContain('--gpu-architecture=sm_90');
    expect(r.options).not.toContain('--use_fast_math');
  });

  it('compiles cuda_fp16.h + mma.h + mma.sync m16n8k16 + cp.async for sm_90', () => {
    const r = compileCuda(MMA, { name: 'mma_16x8x16', arch: 'sm_90', wantPtx: true });
    expect(isElf(r.cubin!)).toBe(true);
    expect(r.ptx).toMatch(/mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.f16\.f16\.f32/);
    expect(r.ptx).toMatch(/cp\.async\.cg\.shared\.global/);
    // The cubin names the kernel (extern "C", unmangled).
    expect(Buffer.from(r.cubin!).includes('mma_16x8x16')).toBe(true);
  });

  it('compiles to PTX for compute_90 and returns a NUL-terminated module image', () => {
    const r = compileCuda(VECADD, { name: 'vec_add', arch: 'compute_90' });
    expect(r.cubin).toBeUndefined();
    expect(r.ptx).toMatch(/\.target sm_90/);
    const img = moduleImage(r);
    expect(img[img.length - 1]).toBe(0);
    expect(isValidImage(img, true)).toBe(true);
  });

  it('adds --pre-include=nv/target only for NVRTC 11 with CUDA 12+ headers', () => {
    const opts = resolveCompileOptions({ arch: 'sm_90' });
    const inc = findCudaInclude();
    const needs = nvrtcVersion()[0] < 12 && (inc?.cudaVersion ?? 0) >= 12000;
    expect(opts.includes('--pre-include=nv/target')).toBe(needs);
    if (inc) expect(opts).toContain(`-I${inc.dirs[0]}`);
  });

  it('returns lowered names for templated kernels', () => {
    const src = 'template <int N> __global__ void scale(float* x) { x[threadIdx.x] *= N; }\n' +
      'template __global__ void scale<4>(float*);';
    const r = compileCuda(src, { name: 'scale', nameExpressions: ['scale<4>'] });
    expect(r.loweredNames?.['scale<4>']).toMatch(/^_Z/);
  });

  it('rejects an arch this NVRTC cannot target, suggesting the plain one', () => {
    const [major] = nvrtcVersion();
    if (major < 12) {
      const f = () => compileCuda(VECADD, { name: 'vec_add', arch: 'sm_90a' });
      expect(f).toThrow(TsrtError);
      expect(f).toThrow(/sm_90a/);
      expect(f).toThrow(/sm_90\b/);
    }
    const g = () => compileCuda(VECADD, { name: 'vec_add', arch: 'sm_999' });
    expect(g).toThrow(/cannot compile for sm_999/);
    expect(() => compileCuda(VECADD, { name: 'vec_add', arch: 'hopper' })).toThrow(/invalid GPU architecture/);
  });

  it('turns a compile error into TsrtError(NVRTC) naming the kernel, with the log and the saved source', () => {
    const bad = 'extern "C" __global__ void broken_kernel(float* x) {\n  x[0] = undefined_thing + 1;\n}\n';
    let err: unknown;
    try { compileCuda(bad, { name: 'broken_kernel' }); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(TsrtError);
    const e = err as TsrtError;
    expect(e.code).toBe('NVRTC');
    expect(e.message).toMatch(/kernel 'broken_kernel' failed to compile/);
    expect(e.message).toMatch(/undefined_thing/); // from NVRTC's log
    expect(e.message).toMatch(/broken_kernel\.cu\(2\)/); // log lines point into the saved file
    const path = /source: (\S+\.cu)/.exec(e.message)?.[1];
    expect(path).toBeDefined();
    expect(path!).toContain(join(tmpdir(), 'tsrt-failed', 'broken_kernel-'));
    expect(readFileSync(path!, 'utf8')).toBe(bad);
  });

  it('lists where it looked when NVRTC is missing', () => {
    const saved = process.env.TSRT_NVRTC_PATH;
    process.env.TSRT_NVRTC_PATH = '/nonexistent/libnvrtc.so.99';
    try {
      expect(nvrtcCandidates()[0]).toBe('/nonexistent/libnvrtc.so.99');
      expect(nvrtcCandidates()).toContain('/usr/local/cuda/lib64/libnvrtc.so.13');
    } finally {
      if (saved === undefined) delete process.env.TSRT_NVRTC_PATH; else process.env.TSRT_NVRTC_PATH = saved;
    }
  });
});

describe('kernel cache', () => {
  it('compiles once, then hits in memory and on disk; recompiles a corrupted file', () => {
    const dir = join(scratch, 'c1');
    const c1 = new KernelCache({ dir, arch: 'sm_90' });
    const first = c1.get(VECADD, 'vec_add');
    expect(first.hit).toBe(false);
    expect(isElf(first.cubin)).toBe(true);
    expect(existsSync(join(dir, `${first.key}.cubin`))).toBe(true);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);

    const again = c1.get(VECADD, 'vec_add_other_name');
    expect(again).toMatchObject({ hit: true, from: 'memory', key: first.key });

    const c2 = new KernelCache({ dir, arch: 'sm_90' });
    const fromDisk = c2.get(VECADD, 'vec_add');
    expect(fromDisk).toMatchObject({ hit: true, from: 'disk', key: first.key });
    expect(Buffer.from(fromDisk.cubin).equals(Buffer.from(first.cubin))).toBe(true);

    const file = join(dir, `${first.key}.cubin`);
    writeFileSync(file, first.cubin.subarray(0, first.cubin.length >> 1)); // truncated
    const c3 = new KernelCache({ dir, arch: 'sm_90' });
    const redone = c3.get(VECADD, 'vec_add');
    expect(redone).toMatchObject({ hit: false, from: 'compile' });
    expect(readFileSync(file).length).toBe(first.cubin.length);

    writeFileSync(file, new Uint8Array(0)); // empty
    expect(new KernelCache({ dir, arch: 'sm_90' }).get(VECADD, 'vec_add').hit).toBe(false);
  });

  it('keys differ when options, arch or source differ', () => {
    const base = new KernelCache({ dir: null, arch: 'sm_90' });
    const fast = new KernelCache({ dir: null, arch: 'sm_90', options: ['--use_fast_math'] });
    const ptx = new KernelCache({ dir: null, arch: 'compute_90' });
    const k = base.key(VECADD);
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    expect(base.key(VECADD)).toBe(k);
    expect(fast.key(VECADD)).not.toBe(k);
    expect(ptx.key(VECADD)).not.toBe(k);
    expect(base.key(VECADD + '\n')).not.toBe(k);
  });

  it('compileAll dedupes identical sources and reports every failure at once', async () => {
    const cache = new KernelCache({ dir: join(scratch, 'c2'), arch: 'sm_90' });
    const variant = (i: number) => VECADD.replace('a[i] + b[i]', `a[i] + b[i] * ${i}.0f`);
    const items = [0, 1, 2, 1, 0].map((i) => ({ source: variant(i), name: `k${i}` }));
    const out = await cache.compileAll(items, { parallel: 4 });
    expect(out.map((r) => r.hit)).toEqual([false, false, false, true, true]);
    expect(out[3].key).toBe(out[1].key);
    expect(cache.stats.compiled).toBe(3);

    const bad = [
      { source: 'extern "C" __global__ void bad1() { nope1(); }', name: 'bad1' },
      { source: VECADD, name: 'vec_add' },
      { source: 'extern "C" __global__ void bad2() { nope2(); }', name: 'bad2' },
    ];
    await expect(cache.compileAll(bad)).rejects.toThrow(/2 kernels failed to compile[\s\S]*bad1[\s\S]*bad2/);
  });
});
