// Programmatic dependent launch (codegen/kernel.ts PDL_MARKER, runtime/cuda.ts LaunchConfig, device_runner.ts):
//  - every kernel of a packed module starts with griddepcontrol.wait before any global memory access (nvcc -ptx of
//    a ResNet-50 and a BERT-style module; skipped with the reason when nvcc is missing), and the module defines the
//    marker the runtime looks for only when every kernel got the wait;
//  - the launch config the runtime hands cuLaunchKernelEx has cuda.h's layout (offsets printed by a C program
//    compiled against the image's cuda.h; skipped without gcc or the header);
//  - on a GPU: an engine launched programmatically gives the same bits as one launched plainly, graph and no graph.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PDL_MARKER, packModules, withPdlEnter } from '../src/codegen/kernel.js';
import { LaunchConfig, cudaAvailable } from '../src/runtime/cuda.js';
import { build } from '../src/runtime/engine.js';
import { randomTensor } from '../src/cli/io.js';

const MODEL = new URL('../../shared/onnx-tests/models/light/light_resnet50/model.onnx', import.meta.url).pathname;
const NVCC = process.env.NVCC ?? (existsSync('/usr/local/cuda-13.0/bin/nvcc') ? '/usr/local/cuda-13.0/bin/nvcc' : 'nvcc');
const CUDA_H = '/usr/local/cuda-13.0/include/cuda.h';
const hasNvcc = spawnSync(NVCC, ['--version']).status === 0;
const hasGcc = spawnSync('gcc', ['--version']).status === 0;

describe('programmatic dependent launch', () => {
  it('inserts the wait as the first statement of every kernel, and refuses text it cannot place it in', () => {
    const src = `// helpers
__device__ int f(int x) { return x + 1; }
extern "C" __global__ void __launch_bounds__(256, 1) k_a(const float* __restrict__ x, float* y) {
  y[threadIdx.x] = x[threadIdx.x];
}
extern "C" __global__ void k_b(float* y) { if (threadIdx.x == 0) { y[0] = 1.f; } }
`;
    const out = withPdlEnter(src)!;
    expect(out.match(/TSRT_PDL_ENTER\(\);/g)).toHaveLength(2);
    expect(out).toContain('k_a(const float* __restrict__ x, float* y) { TSRT_PDL_ENTER();\n  y[threadIdx.x]');
    expect(out).toContain('k_b(float* y) { TSRT_PDL_ENTER(); if (threadIdx.x == 0) {');
    expect(out.replace(/ TSRT_PDL_ENTER\(\);/g, '')).toBe(src);
    // a declaration (no body) before the next brace, or a brace that does not follow a parameter list
    expect(withPdlEnter('extern "C" __global__ void k(float* y);\nstruct S { int a; };')).toBeUndefined();
    expect(withPdlEnter('extern "C" __global__ struct { int a; } x;')).toBeUndefined();
  });

  it('leaves a module unmarked when a kernel is spelled other than the pattern (it would get no wait)', () => {
    const waits = 'extern "C" __global__ void k_a(float* y) { y[0] = 0.f; }\n';
    for (const other of [
      'extern "C" __global__\nvoid k_b(float* y) { y[1] = 1.f; }\n',
      'extern "C"  __global__ void k_b(float* y) { y[1] = 1.f; }\n',
      'extern "C" { __global__ void k_b(float* y) { y[1] = 1.f; } }\n',
    ]) {
      expect(withPdlEnter(waits + other), JSON.stringify(other)).toBeUndefined();
      const k = (name: string, source: string) => ({ name, source, grid: [1, 1, 1] as [number, number, number], block: [32, 1, 1] as [number, number, number], sharedBytes: 0, params: [] });
      expect(packModules([k('k_a', waits), k('k_b', other)])[0].source).not.toContain(PDL_MARKER);
    }
  });

  it('marks a module only when every kernel waits', () => {
    const ok = { name: 'k_ok', source: 'extern "C" __global__ void k_ok(float* y) { y[0] = 0.f; }\n', grid: [1, 1, 1] as [number, number, number], block: [32, 1, 1] as [number, number, number], sharedBytes: 0, params: [] };
    const odd = { ...ok, name: 'k_odd', source: 'extern "C" __global__ void k_odd(float* y);\nstruct T { int a; };\n' };
    const [m1] = packModules([ok]);
    expect(m1.source).toContain(`__device__ int ${PDL_MARKER} = 1;`);
    expect(m1.source).toContain('TSRT_PDL_ENTER();');
    const [m2] = packModules([ok, odd]);
    expect(m2.source).not.toContain(PDL_MARKER);
    // the macro stays defined, so the kernels that did get the wait still compile
    expect(m2.source).toContain('#define TSRT_PDL_ENTER()');
  });

  it.skipIf(!hasNvcc || !existsSync(MODEL))('every kernel of the ResNet-50 modules waits before its first global memory access (nvcc -ptx sm_90)', { timeout: 240_000 }, async () => {
    const e = await build(MODEL, { fp16: true, device: 'cpu', compileKernels: false });
    const kernels = [...e.kernels.values()].map((k) => k.source);
    e.dispose();
    const modules = packModules(kernels, 64);
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-pdl-'));
    let entries = 0;
    for (const [i, m] of modules.entries()) {
      expect(m.source).toContain(PDL_MARKER);
      const cu = join(dir, `m${i}.cu`), ptx = join(dir, `m${i}.ptx`);
      writeFileSync(cu, m.source);
      execFileSync(NVCC, ['-ptx', '-arch=sm_90', '-std=c++17', '-w', cu, '-o', ptx], { stdio: 'pipe' });
      const text = readFileSync(ptx, 'utf8');
      expect(text).toMatch(new RegExp(`\\.global \\.align 4 \\.u32 ${PDL_MARKER} = 1;`));
      for (const body of text.split(/\.visible \.entry /).slice(1)) {
        entries++;
        const name = body.slice(0, body.indexOf('('));
        const wait = body.indexOf('griddepcontrol.wait');
        const trigger = body.indexOf('griddepcontrol.launch_dependents');
        const mem = body.search(/\b(ld\.global|st\.global|cp\.async|atom\.|red\.|ld\.shared|st\.shared|ldmatrix|mbarrier)/);
        expect(wait, `${name}: no griddepcontrol.wait`).toBeGreaterThan(0);
        expect(trigger, `${name}: the trigger must follow the wait`).toBeGreaterThan(wait);
        if (mem >= 0) expect(mem, `${name}: memory access before the wait`).toBeGreaterThan(wait);
      }
    }
    expect(entries).toBe(kernels.length);
  });

  it.skipIf(!hasGcc || !existsSync(CUDA_H))('hands cuLaunchKernelEx a config with cuda.h\'s layout', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-pdl-h-'));
    writeFileSync(join(dir, 'l.c'), `#include <cuda.h>
#include <stdio.h>
#include <stddef.h>
int main(void) {
  printf("%zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %d\\n", sizeof(CUlaunchConfig), offsetof(CUlaunchConfig, gridDimY),
    offsetof(CUlaunchConfig, blockDimX), offsetof(CUlaunchConfig, sharedMemBytes), offsetof(CUlaunchConfig, hStream),
    offsetof(CUlaunchConfig, attrs), offsetof(CUlaunchConfig, numAttrs), sizeof(CUlaunchAttribute),
    offsetof(CUlaunchAttribute, value), sizeof(CUlaunchAttributeValue), (int)CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION);
  return 0;
}
`);
    execFileSync('gcc', [`-I${join(CUDA_H, '..')}`, join(dir, 'l.c'), '-o', join(dir, 'l')]);
    const [cfg, gy, bx, shm, stream, attrs, num, attr, value, valueBytes, pss] = execFileSync(join(dir, 'l'), { encoding: 'utf8' }).trim().split(' ').map(Number);
    expect([cfg, gy, bx, shm, stream, attrs, num]).toEqual([LaunchConfig.CONFIG_BYTES, 4, 12, 24, 32, 40, 48]);
    expect([attr, value, valueBytes + value]).toEqual([LaunchConfig.ATTR_BYTES, 8, LaunchConfig.ATTR_BYTES]);
    expect(pss).toBe(LaunchConfig.PROGRAMMATIC_STREAM_SERIALIZATION);
    // what fill() writes where
    const lc = new LaunchConfig();
    lc.fill([7, 8, 9], [128, 2, 1], 200704, 0x1234_5678_9abcn);
    const dv = new DataView(lc.bytes().buffer);
    expect([0, 4, 8, 12, 16, 20, 24].map((o) => dv.getUint32(o, true))).toEqual([7, 8, 9, 128, 2, 1, 200704]);
    expect(dv.getBigUint64(32, true)).toBe(0x1234_5678_9abcn);
    expect(dv.getBigUint64(40, true)).toBe(lc.ptr + BigInt(cfg));
    expect(dv.getUint32(48, true)).toBe(1);
    expect(dv.getUint32(cfg, true)).toBe(pss);
    expect(dv.getInt32(cfg + value, true)).toBe(1);
  });

  it.skipIf(!cudaAvailable().ok || !existsSync(MODEL))('on a GPU: programmatic launches give the same bits as plain ones, graph and no graph', { timeout: 240_000 }, async () => {
    const base = { fp16: true, optLevel: 2 } as const;
    const plain = await build(MODEL, { ...base, pdl: false });
    const vi = plain.graph.inputs[0];
    const x = randomTensor(vi.type.dtype, vi.type.shape.map((d) => (typeof d === 'number' ? d : 1)), 3, -1, 1);
    const ref = await plain.run({ [vi.name]: x });
    plain.dispose();
    for (const cudaGraphs of [true, false]) {
      const e = await build(MODEL, { ...base, pdl: true, cudaGraphs });
      expect(e.report.programmaticLaunches, 'sm_90+ with cuLaunchKernelEx').toBe(true);
      const out = await e.run({ [vi.name]: x });
      for (const [k, t] of ref) expect(Buffer.from((out.get(k)!.data as Float32Array).buffer).equals(Buffer.from((t.data as Float32Array).buffer)), k).toBe(true);
      e.dispose();
    }
  });
});
