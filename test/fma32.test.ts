// fma32 (ops/qlinear.ts): the CPU reference's fp32 fused multiply-add for the folded int8 requantize, which must
// round as CUDA's __fmaf_rn (one rounding) for the kernels to equal it bit for bit. Checked against the host C
// library's fmaf (correctly rounded) on crafted float64-midpoint cases and random triples.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fma32 } from '../src/ops/qlinear.js';
import { hasGxx } from './int8_cases.js';

const f = Math.fround;

describe('fma32', () => {
  it('rounds once where the float64 sum lands on an fp32 midpoint', () => {
    // (1 + 2^-23)(1 - 2^-23) = 1 - 2^-46; + (2^24 + 2): the float64 sum is 2^24 + 3 exactly, a tie that rounds to
    // even (2^24 + 4), but the exact value is just below it: 2^24 + 2
    const a = f(1 + 2 ** -23), b = f(1 - 2 ** -23), c = 2 ** 24 + 2;
    expect(f(a * b + c)).toBe(2 ** 24 + 4);
    expect(fma32(a, b, c)).toBe(2 ** 24 + 2);
    expect(fma32(a, -b, -c)).toBe(-(2 ** 24 + 2));
    expect(fma32(3, 5, 0.25)).toBe(15.25);
    expect(fma32(0, 5, -0)).toBe(0);
  });

  it.skipIf(!hasGxx)('equals the C library fmaf on 20000 random and near-cancelling triples', () => {
    let seed = 99;
    const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 2 ** 32; };
    const rf = () => f((rnd() - 0.5) * 2 ** Math.floor(rnd() * 40 - 20));
    const triples: number[][] = [];
    for (let i = 0; i < 20000; i++) {
      if (i % 3 === 2) {
        // (1 + k 2^-23)(1 - k 2^-23) 2^e = (1 - k^2 2^-46) 2^e plus (2^24 + 2j) 2^e: the float64 sum is the fp32
        // midpoint (2^24 + 2j + 1) 2^e (the k^2 2^-46 tail is below its last bit), the exact value just under it
        const k = 1 + Math.floor(rnd() * 100), e = 2 ** Math.floor(rnd() * 20 - 10), j = Math.floor(rnd() * 1000), sg = rnd() < 0.5 ? -1 : 1;
        triples.push([f((1 + k * 2 ** -23) * e * sg), f(1 - k * 2 ** -23), f((2 ** 24 + 2 * j) * e * sg)]);
        continue;
      }
      const a = rf(), b = rf();
      // or c nearly cancelling a * b
      const c = i % 3 === 0 ? rf() : f(-a * b * (1 + (rnd() - 0.5) * 2 ** -20));
      triples.push([a, b, c]);
    }
    const dir = join(new URL('..', import.meta.url).pathname, '.cache', 'fma32');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'in.bin'), Buffer.from(Float32Array.from(triples.flat()).buffer));
    writeFileSync(join(dir, 'fma.cpp'), `#include <cmath>
#include <cstdio>
int main() { float t[3]; FILE* in = fopen("in.bin", "rb"); FILE* out = fopen("out.bin", "wb");
  while (fread(t, 4, 3, in) == 3) { float r = std::fmaf(t[0], t[1], t[2]); fwrite(&r, 4, 1, out); }
  fclose(out); return 0; }
`);
    execFileSync('g++', ['-O0', '-o', 'fma', 'fma.cpp'], { cwd: dir });
    execFileSync('./fma', { cwd: dir });
    const want = new Float32Array(new Uint8Array(execFileSync('cat', ['out.bin'], { cwd: dir })).buffer);
    let bad = 0, naiveBad = 0;
    triples.forEach(([a, b, c], i) => {
      if (!Object.is(fma32(a, b, c), want[i]) && !(fma32(a, b, c) === 0 && want[i] === 0)) bad++;
      if (f(a * b + c) !== want[i]) naiveBad++;
    });
    expect(bad).toBe(0);
    expect(naiveBad).toBeGreaterThan(0); // the cases reach the double-rounding ties fround alone gets wrong
  });
});
