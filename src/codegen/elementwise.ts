// Fused elementwise kernels: any DAG of scalar expressions over views of input buffers, computed once per
// output element and written to one or more contiguous outputs. Transpose/Slice/Expand/broadcast inputs
// arrive as views (indexing.ts), so data movement fuses into the arithmetic.
import type { DType } from '../ir/types.js';
import { collapse, offsetExpr, type View } from './indexing.js';
import { EW_HELPERS } from './ew_ops.js';
import { cType, finalizeKernel, grid1d, load, store, type KernelParam, type KernelSource } from './kernel.js';

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

export function emitElementwise(p: EwProgram, prefix = 'ew'): KernelSource {
  const n = p.dims.reduce((a, b) => a * b, 1);
  const { dims, views } = collapse(p.dims, p.inputs.map((i) => i.view));
  const params: KernelParam[] = [
    ...p.inputs.map((_, k) => ({ name: `in${k}`, type: 'ptr' as const })),
    ...p.outputs.map((_, k) => ({ name: `out${k}`, type: 'ptr' as const })),
  ];
  const block = 256;
  const sig = [
    ...p.inputs.map((x, k) => `const ${cType(x.dtype)}* __restrict__ in${k}`),
    ...p.outputs.map((o, k) => `${cType(o.dtype)}* __restrict__ out${k}`),
  ].join(', ');
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
