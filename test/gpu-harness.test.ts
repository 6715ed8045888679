// scripts/gpu-kernel-harness.mjs: the shared harness of the GPU kernel-check scripts. Without a GPU (CI) opening the
// device must fail with the clear "no GPU: ... driver ..." error; its arguments, comparisons and references are
// checked on the CPU (the harness loads the build under test from TSRT_DIST: here the TypeScript sources).
import { describe, expect, it } from 'vitest';
import { cudaAvailable } from '../src/runtime/cuda.js';

process.env.TSRT_DIST = new URL('../src/', import.meta.url).pathname;
// (a plain .mjs script without type declarations)
const h = await import('../scripts/gpu-kernel-harness.mjs');

describe('GPU kernel-check harness', () => {
  it.skipIf(cudaAvailable().ok)('without a GPU, openDevice fails with the reason (no CUDA driver), not a crash', async () => {
    const err = await h.openDevice().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(h.NoGpuError);
    expect((err as Error).message).toMatch(/^no GPU: .*(libcuda|driver|device)/);
  });

  it('parses --key=value / --flag arguments, comma-separated filters and the budget', () => {
    const a = h.parseArgs(['--filter=odd,bert', '--iters=5', '--dry-run', '--x=a=b'], { budgetS: 0 });
    expect(a.args).toEqual({ filter: 'odd,bert', iters: '5', 'dry-run': true, x: 'a=b' });
    expect(['odd_gemm', 'bert_ffn1', 'rn50'].map(a.wants)).toEqual([true, true, false]);
    expect(h.parseArgs([]).wants('anything')).toBe(true);
    expect(a.overBudget()).toBe(true);
    expect(h.parseArgs([], { budgetS: 1000 }).overBudget()).toBe(false);
  });

  it('prints PASS/FAIL lines and the summary bench scripts grep', () => {
    const lines: string[] = [];
    const r = h.reporter((l: string) => lines.push(l));
    r.report(true, 'a', 'ok'); r.report(false, 'b'); r.tally(true);
    expect(r.summary()).toBe(1);
    expect(lines).toEqual(['PASS a ok', 'FAIL b', '2 passed, 1 failed']);
    expect(lines.filter((l) => /^FAIL|passed, /.test(l))).toHaveLength(2);
  });

  it('compares relatively, bit for bit and sampled', async () => {
    expect(h.relDiff([1, 2.02], [1, 2])).toBeCloseTo(0.01, 12);
    expect(h.relDiff([NaN, 2], [1, 2])).toBe(Infinity);
    expect(h.diffCount(new Uint8Array([1, 2, 3]), new Uint8Array([1, 0, 3]))).toBe(1);
    const half = await h.decodeTable('float16');
    expect([half[0x3c00], half[0xc000], half[0x7c00]]).toEqual([1, -2, Infinity]);
    const bytes = new Uint8Array(new Uint16Array([0x3c00, 0x4000, 0x4200, 0x4400, 0x4500]).buffer);
    expect(Array.from(h.halfToF64(bytes, half, 2))).toEqual([1, 3, 5]);
    expect(h.sampleStride(2 ** 24 + 2)).toBe(7);
  });

  it('float64 reference of a tensor-core GEMM case (B [K,N], batch, epilogue)', async () => {
    const c = { op: 'gemm', p: { m: 2, n: 3, k: 4, bLayout: 'kn', batch: [2], dtype: 'bfloat16' }, epi: { alpha: 0.5, bias: true, residual: true, act: 'relu' } };
    const host = await h.tcBuffers(c, h.lcg(3));
    const table = await h.decodeTable('bfloat16');
    const got = h.tcReference(c, host, table);
    const [a, b, res] = ['a', 'b', 'residual'].map((k) => h.halfToF64(host[k], table));
    for (let bi = 0; bi < 2; bi++) for (let m = 0; m < 2; m++) for (let n = 0; n < 3; n++) {
      let s = 0;
      for (let k = 0; k < 4; k++) s += a[(bi * 2 + m) * 4 + k] * b[bi * 12 + k * 3 + n];
      const o = (bi * 2 + m) * 3 + n;
      expect(got[o]).toBeCloseTo(Math.max(0, 0.5 * s + host.bias[n] + res[o]), 12);
    }
  });
});
