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

/** Programmatic dependent launch (Hopper, sm_90+). Every kernel of a module starts with TSRT_PDL_ENTER():
 *  - `griddepcontrol.wait` blocks until the grids this launch depends on have completed and their memory is
 *    visible. It comes before any global memory access, so a kernel launched early (runtime: cuLaunchKernelEx with
 *    CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION) reads its inputs and overwrites reused arena bytes only
 *    after its predecessor finished, exactly as with stream order; launched normally it returns at once.
 *  - `griddepcontrol.launch_dependents` then lets the next kernel launch once every CTA of this grid has started (or
 *    exited): its CTAs are scheduled onto SMs this grid's last wave frees and wait there, so the launch latency and
 *    CTA rasterization between two kernels overlap the tail of the first instead of following it.
 * Waiting first, then triggering, keeps the chain one deep: a kernel that has not passed its wait cannot let a
 * third launch. The module defines PDL_MARKER only when the instructions are compiled in (sm_90+), and the runtime
 * launches a module's kernels programmatically only when it finds the marker, so cubins from before (engine files,
 * the kernel cache) or for older GPUs keep plain launches. */
export const PDL_MARKER = 'tsrt_pdl_v1';
/** A module's PDL prelude: TSRT_PDL_ENTER() on sm_90+ (nothing below), with the marker when `marked`. */
const pdlHelpers = (marked: boolean) => `#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
${marked ? `extern "C" { __device__ int ${PDL_MARKER} = 1; }\n` : ''}#define TSRT_PDL_ENTER() asm volatile("griddepcontrol.wait;\\n\\tgriddepcontrol.launch_dependents;" ::: "memory")
#else
#define TSRT_PDL_ENTER() do { } while (0)
#endif`;

/** `src` with TSRT_PDL_ENTER(); as the first statement of every extern "C" __global__ function, or undefined when
 * a kernel's opening brace is not where expected (no parameter list right before it), or when some `__global__` is
 * not written as the pattern expects (another spacing, no extern "C"): such a kernel would get no wait, and a marked
 * module launched programmatically would let it read its inputs before its predecessor finished. The module then
 * gets no marker and its kernels launch plainly. */
export function withPdlEnter(src: string): string | undefined {
  const head = /extern "C" __global__ /g;
  if ((src.match(head) ?? []).length !== (src.match(/\b__global__\b/g) ?? []).length) return undefined;
  let out = '', last = 0;
  for (let m = head.exec(src); m; m = head.exec(src)) {
    const brace = src.indexOf('{', m.index);
    if (brace < 0 || !/\)\s*$/.test(src.slice(m.index, brace)) || src.slice(m.index, brace).includes(';')) return undefined;
    out += src.slice(last, brace + 1) + ' TSRT_PDL_ENTER();';
    last = brace + 1;
  }
  return out + src.slice(last);
}

/** Packs kernels into a few translation units: NVRTC's per-program overhead (~0.5 s) dwarfs the time to compile
 * one small kernel, so an engine compiles in chunks. Each kernel keeps its own helpers inside a namespace of its
 * own (extern "C" kernels keep their unmangled names there); #include lines are hoisted and deduplicated. */
export function packModules(kernels: KernelSource[], perModule = 24): ModuleSource[] {
  const sorted = [...kernels].sort((a, b) => a.name.localeCompare(b.name));
  const out: ModuleSource[] = [];
  for (let i = 0; i < sorted.length; i += perModule) {
    const chunk = sorted.slice(i, i + perModule);
    const includes = new Set<string>();
    let pdl = true;
    const bodies = chunk.map((k, j) => {
      const lines = k.source.split('\n');
      for (const l of lines) if (/^\s*#\s*include\b/.test(l)) includes.add(l.trim());
      const plain = lines.filter((l) => !/^\s*#\s*include\b/.test(l)).join('\n');
      const entered = withPdlEnter(plain);
      if (entered === undefined) pdl = false;
      return `namespace tsrt_k${j} {\n${entered ?? plain}\n} // namespace tsrt_k${j}`;
    });
    // the marker only where every kernel of the module waits (see PDL_MARKER)
    const source = [...includes, pdlHelpers(pdl), ...bodies].join('\n');
    out.push({ name: `module_${shortHash(source)}`, source, kernels: chunk.map((k) => k.name) });
  }
  return out;
}
