// What an emitter produces: a fully specialized CUDA kernel (source + launch geometry + parameter list).
// The engine binds parameters to buffers; sources are deduplicated by hash, so identical kernels compile once.
import { createHash } from 'node:crypto';
import type { DType } from '../ir/types.js';
import { TsrtError } from '../errors.js';

export type ParamType = 'ptr' | 'i32' | 'u32' | 'f32' | 'i64';

export interface KernelParam { name: string; type: ParamType }

export interface KernelSource {
  /** Unique within the source; also the extern "C" symbol. */
  name: string;
  source: string;
  grid: [number, number, number];
  block: [number, number, number];
  sharedBytes: number;
  params: KernelParam[];
  /** A persistent kernel's work items (tiles), walked with a gridDim.x stride so any grid.x up to this is correct:
   * its grid.x is min(this, the target's SM count), and an engine file loaded on a GPU with another SM count
   * refits it (runtime/plan.ts). */
  persistentTiles?: number;
}

/** C type used to store each dtype in device memory. */
export function cType(d: DType): string {
  switch (d) {
    case 'float32': return 'float';
    case 'float16': return 'half';
    case 'bfloat16': return '__nv_bfloat16';
    case 'float64': return 'double';
    case 'int8': return 'signed char';
    case 'uint8': case 'bool': return 'unsigned char';
    case 'int16': return 'short';
    case 'uint16': return 'unsigned short';
    case 'int32': return 'int';
    case 'uint32': return 'unsigned int';
    case 'int64': return 'long long';
    case 'uint64': return 'unsigned long long';
    case 'string': throw new TsrtError('UNSUPPORTED', 'string tensors cannot live on the GPU', 'keep string processing outside the model');
  }
}

/** Type arithmetic happens in: fp16/bf16/fp32 compute in float (fp32 accumulation), float64 in double,
 * integers in 64-bit (wrapping is applied on store). */
export function computeType(d: DType): string {
  if (d === 'float16' || d === 'bfloat16' || d === 'float32') return 'float';
  if (d === 'float64') return 'double';
  if (d === 'uint64') return 'unsigned long long';
  return 'long long';
}

/** Expression converting a stored value `e` of dtype `d` to its compute type. */
export function load(d: DType, e: string): string {
  if (d === 'float16') return `__half2float(${e})`;
  if (d === 'bfloat16') return `__bfloat162float(${e})`;
  return `(${computeType(d)})(${e})`;
}

/** Expression converting a compute-type value `e` to stored dtype `d`. */
export function store(d: DType, e: string): string {
  if (d === 'float16') return `__float2half_rn(${e})`;
  if (d === 'bfloat16') return `__float2bfloat16_rn(${e})`;
  if (d === 'bool') return `(unsigned char)((${e}) != 0)`;
  return `(${cType(d)})(${e})`;
}

export const KERNEL_PRELUDE = `#include <cuda_fp16.h>
#include <cuda_bf16.h>
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
#ifndef NAN
#define NAN __int_as_float(0x7fffffff)
#endif
`;

/** Short stable hash for kernel names. */
export function shortHash(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 12);
}

/** Names the kernel after its content so identical kernels share one name and one compile. */
export function finalizeKernel(k: Omit<KernelSource, 'name' | 'source'> & { prefix: string; body: (name: string) => string }): KernelSource {
  const probe = k.body('KNAME');
  const name = `${k.prefix}_${shortHash(probe)}`;
  return { name, source: KERNEL_PRELUDE + k.body(name), grid: k.grid, block: k.block, sharedBytes: k.sharedBytes, params: k.params };
}

/** 1-D grid for n threads of `block` each, capped (kernels use grid-stride loops). */
export function grid1d(n: number, block = 256, maxBlocks = 132 * 32): [number, number, number] {
  return [Math.max(1, Math.min(maxBlocks, Math.ceil(n / block))), 1, 1];
}

export interface ModuleSource { name: string; source: string; kernels: string[] }

/** Packs kernels into a few translation units: NVRTC's per-program overhead (~0.5 s) dwarfs the time to compile
 * one small kernel, so an engine compiles in chunks. Each kernel keeps its own helpers inside a namespace of its
 * own (extern "C" kernels keep their unmangled names there); #include lines are hoisted and deduplicated. */
export function packModules(kernels: KernelSource[], perModule = 24): ModuleSource[] {
  const sorted = [...kernels].sort((a, b) => a.name.localeCompare(b.name));
  const out: ModuleSource[] = [];
  for (let i = 0; i < sorted.length; i += perModule) {
    const chunk = sorted.slice(i, i + perModule);
    const includes = new Set<string>();
    const bodies = chunk.map((k, j) => {
      const lines = k.source.split('\n');
      for (const l of lines) if (/^\s*#\s*include\b/.test(l)) includes.add(l.trim());
      const rest = lines.filter((l) => !/^\s*#\s*include\b/.test(l)).join('\n');
      return `namespace tsrt_k${j} {\n${rest}\n} // namespace tsrt_k${j}`;
    });
    const source = [...includes, ...bodies].join('\n');
    out.push({ name: `module_${shortHash(source)}`, source, kernels: chunk.map((k) => k.name) });
  }
  return out;
}
