// Max / average pooling, 1-3 spatial dims, NCHW or NHWC, one thread per output element.
import type { DType } from '../ir/types.js';
import { cType, finalizeKernel, grid1d, load, store, type KernelSource } from './kernel.js';

export interface PoolProblem {
  dtype: DType;
  kind: 'max' | 'avg';
  layout: 'NCHW' | 'NHWC';
  n: number;
  c: number;
  inSpatial: number[];
  outSpatial: number[];
  kernel: number[];
  strides: number[];
  padsBegin: number[];
  padsEnd: number[];
  dilations: number[];
  countIncludePad: boolean;
}

export function emitPool(p: PoolProblem): KernelSource {
  const sd = p.inSpatial.length;
  const T = cType(p.dtype);
  const outSp = p.outSpatial.reduce((a, b) => a * b, 1);
  const inSp = p.inSpatial.reduce((a, b) => a * b, 1);
  const n = p.n * p.c * outSp;
  const lines: string[] = [];
  // decompose output index
  if (p.layout === 'NCHW') {
    lines.push(`    long long r = i;`);
    for (let d = sd - 1; d >= 0; d--) lines.push(`    const long long o${d} = r % ${p.outSpatial[d]}LL; r /= ${p.outSpatial[d]}LL;`);
    lines.push(`    const long long c = r % ${p.c}LL, b = r / ${p.c}LL;`);
    lines.push(`    const ${T}* xb = x + (b * ${p.c}LL + c) * ${inSp}LL;`);
  } else {
    lines.push(`    const long long c = i % ${p.c}LL; long long r = i / ${p.c}LL;`);
    for (let d = sd - 1; d >= 0; d--) lines.push(`    const long long o${d} = r % ${p.outSpatial[d]}LL; r /= ${p.outSpatial[d]}LL;`);
    lines.push(`    const long long b = r;`);
    lines.push(`    const ${T}* xb = x + b * ${inSp * p.c}LL + c;`);
  }
  const chanStride = p.layout === 'NCHW' ? 1 : p.c;
  lines.push(p.kind === 'max' ? '    float acc = -INFINITY;' : '    float acc = 0.f; int cnt = 0;');
  let indent = '    ';
  const spStr: number[] = [];
  let acc = 1;
  for (let d = sd - 1; d >= 0; d--) { spStr[d] = acc; acc *= p.inSpatial[d]; }
  for (let d = 0; d < sd; d++) {
    lines.push(`${indent}for (int k${d} = 0; k${d} < ${p.kernel[d]}; k${d}++) {`);
    indent += '  ';
    lines.push(`${indent}const long long s${d} = o${d} * ${p.strides[d]} - ${p.padsBegin[d]} + k${d} * ${p.dilations[d]};`);
    lines.push(`${indent}if (s${d} < 0 || s${d} >= ${p.inSpatial[d]}LL) continue;`);
  }
  const off = Array.from({ length: sd }, (_, d) => `s${d} * ${spStr[d] * chanStride}LL`).join(' + ');
  lines.push(`${indent}const float v = ${load(p.dtype, `xb[${off}]`)};`);
  lines.push(p.kind === 'max' ? `${indent}acc = (v > acc || v != v) ? v : acc;` : `${indent}acc += v; cnt++;`);
  for (let d = sd - 1; d >= 0; d--) { indent = indent.slice(2); lines.push(`${indent}}`); }
  let result = 'acc';
  if (p.kind === 'avg') {
    if (p.countIncludePad) {
      // divisor = window clipped to the padded extent [-padBegin, in - 1 + padEnd] (ONNX semantics)
      const terms = Array.from({ length: sd }, (_, d) => {
        const start = `(o${d} * ${p.strides[d]}LL - ${p.padsBegin[d]}LL)`;
        return `((min(${start} + ${(p.kernel[d] - 1) * p.dilations[d]}LL, ${p.inSpatial[d] - 1 + p.padsEnd[d]}LL) - ${start}) / ${p.dilations[d]}LL + 1)`;
      });
      result = `acc / (float)(${terms.join(' * ')})`;
    } else result = 'acc / (float)(cnt > 0 ? cnt : 1)';
  }
  const body = lines.join('\n');
  return finalizeKernel({
    prefix: `${p.kind}pool`, grid: grid1d(n), block: [256, 1, 1], sharedBytes: 0,
    params: [{ name: 'x', type: 'ptr' }, { name: 'y', type: 'ptr' }],
    body: (name) => `
extern "C" __global__ void ${name}(const ${T}* __restrict__ x, ${T}* __restrict__ y) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < ${n}LL; i += (long long)gridDim.x * blockDim.x) {
${body}
    y[i] = ${store(p.dtype, result)};
  }
}
`,
  });
}
