// Fused elementwise kernels: any DAG of scalar expressions over views of input buffers, computed once per
// output element and written to one or more contiguous outputs. Transpose/Slice/Expand/broadcast inputs
// arrive as views (indexing.ts), so data movement fuses into the arithmetic.
import type { DType } from '../ir/types.js';
import { collapse, isContiguous, offsetExpr, type View } from './indexing.js';
import { EW_HELPERS } from './ew_ops.js';
import { cType, finalizeKernel, grid1d, load, store, type KernelParam, type KernelSource } from './kernel.js';
import { markTunable, type KernelTactic } from './tactics.js';
import { TsrtError } from '../errors.js';

export interface EwInput { dtype: DType; view: View }
export interface EwStep { name: string; ctype: string; expr: string }
export interface EwOutput { dtype: DType; value: string }

export interface EwProgram {
  dims: number[];
  /** Loaded as `a0`, `a1`, ... in their compute types. */
  inputs: EwInput[];
  /** Evaluated in order; expressions name inputs (a<k>) and earlier steps. */
  steps: EwStep[];
  outputs: EwOutput[];
}

const VEC = 1;

/** Default tactic: a thread per element, 256 per block. */
export const EW_DEFAULT: KernelTactic = { block: 256, vec: 1, ept: 1 };

/** Inputs read in output order from offset 0: the ones a vectorized tactic loads `vec` at a time. */
export function vectorInputs(p: EwProgram): boolean[] {
  return p.inputs.map((x) => isContiguous(p.dims, x.view));
}

/** `t`: block size, vec (consecutive elements per thread, loaded and stored as one vector where the buffer is
 * read in order) and ept (vectors per thread per loop trip). kernel_tactics.ts says which are valid. */
export function emitElementwise(p: EwProgram, prefix = 'ew', t: KernelTactic = EW_DEFAULT): KernelSource {
  const vec = t.vec ?? 1, ept = t.ept ?? 1, block = t.block ?? 256;
  const k = vec === 1 && ept === 1 ? emitPerElement(p, prefix, block) : emitVectorized(p, prefix, block, vec, ept);
  return markTunable(k, { family: 'elementwise', problem: p, prefix });
}

function signature(p: EwProgram): { params: KernelParam[]; sig: string } {
  return {
    params: [
      ...p.inputs.map((_, k) => ({ name: `in${k}`, type: 'ptr' as const })),
      ...p.outputs.map((_, k) => ({ name: `out${k}`, type: 'ptr' as const })),
    ],
    sig: [
      ...p.inputs.map((x, k) => `const ${cType(x.dtype)}* __restrict__ in${k}`),
      ...p.outputs.map((o, k) => `${cType(o.dtype)}* __restrict__ out${k}`),
    ].join(', '),
  };
}

function emitPerElement(p: EwProgram, prefix: string, block: number): KernelSource {
  const n = p.dims.reduce((a, b) => a * b, 1);
  const { dims, views } = collapse(p.dims, p.inputs.map((i) => i.view));
  const { params, sig } = signature(p);
  const loads = p.inputs.map((x, k) => `    const auto a${k} = ${load(x.dtype, `in${k}[${offsetExpr(dims, views[k], 'i')}]`)};`);
  const steps = p.steps.map((s) => `    const ${s.ctype} ${s.name} = ${s.expr};`);
  const stores = p.outputs.map((o, k) => `    out${k}[i] = ${store(o.dtype, o.value)};`);
  return finalizeKernel({
    prefix, grid: grid1d(Math.ceil(n / VEC), block), block: [block, 1, 1], sharedBytes: 0, params,
    body: (name) => `${EW_HELPERS}
extern "C" __global__ void __launch_bounds__(${block}) ${name}(${sig}) {
  const long long n = ${n}LL;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
${[...loads, ...steps, ...stores].join('\n')}
  }
}
`,
  });
}

/** Each thread takes `ept` chunks of `vec` consecutive elements per trip, a block's chunks adjacent (coalesced).
 * In-order inputs and the outputs move as one aligned vector per chunk (a struct the compiler loads with one
 * ld.global.v2/v4, PyTorch's aligned_vector); broadcast or permuted inputs are read element by element.
 * n must be a multiple of vec, so a chunk is wholly in range or wholly out. */
function emitVectorized(p: EwProgram, prefix: string, block: number, vec: number, ept: number): KernelSource {
  const n = p.dims.reduce((a, b) => a * b, 1);
  if (n % vec) throw new TsrtError('USAGE', `elementwise tactic vec ${vec}: ${n} elements are not a multiple of it`, 'use a vec that divides the element count');
  const { dims, views } = collapse(p.dims, p.inputs.map((i) => i.view));
  const { params, sig } = signature(p);
  const vin = vectorInputs(p);
  const V = (d: DType) => `tsrt_vec_<${cType(d)}, ${vec}>`;
  const vloads = p.inputs.map((x, k) => (vin[k] ? `        const ${V(x.dtype)} r${k} = *reinterpret_cast<const ${V(x.dtype)}*>(in${k} + i0);` : '')).filter(Boolean);
  const loads = p.inputs.map((x, k) => `          const auto a${k} = ${load(x.dtype, vin[k] ? `r${k}.v[e]` : `in${k}[${offsetExpr(dims, views[k], 'i')}]`)};`);
  const steps = p.steps.map((s) => `          const ${s.ctype} ${s.name} = ${s.expr};`);
  const stores = p.outputs.map((o, k) => `          w${k}.v[e] = ${store(o.dtype, o.value)};`);
  return finalizeKernel({
    prefix, grid: grid1d(Math.ceil(n / (vec * ept)), block), block: [block, 1, 1], sharedBytes: 0, params,
    body: (name) => `${EW_HELPERS}
template <typename T, int N> struct alignas(sizeof(T) * N) tsrt_vec_ { T v[N]; };
extern "C" __global__ void __launch_bounds__(${block}) ${name}(${sig}) {
  const long long n = ${n}LL;
  for (long long base = (blockIdx.x * (long long)blockDim.x * ${ept} + threadIdx.x) * ${vec}LL; base < n; base += (long long)gridDim.x * blockDim.x * ${vec * ept}) {
#pragma unroll
    for (int u = 0; u < ${ept}; ++u) {
      const long long i0 = base + (long long)u * blockDim.x * ${vec};
      if (i0 < n) {
${[...vloads, ...p.outputs.map((o, k) => `        ${V(o.dtype)} w${k};`)].join('\n')}
#pragma unroll
        for (int e = 0; e < ${vec}; ++e) {
          const long long i = i0 + e;
${[...loads, ...steps, ...stores].join('\n')}
        }
${p.outputs.map((o, k) => `        *reinterpret_cast<${V(o.dtype)}*>(out${k} + i0) = w${k};`).join('\n')}
      }
    }
  }
}
`,
  });
}
