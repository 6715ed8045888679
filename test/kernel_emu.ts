// CPU emulator for the memory-bound kernels (LayerNorm, softmax, reductions, elementwise), built on the tensor-core
// emulator's fibers and barriers (tc_emu.ts): adds half and the CUDA vector types, warp shuffles through per-warp
// exchange slots, gridDim/blockDim, bfloat16 and bit casts, and buffers that end at a PROT_NONE page so a read or
// write past a buffer faults. A shuffle or __syncthreads that not every thread of the warp/block reaches never
// completes, so a non-uniform loop shows up as the run timing out. Used by test/autotune-tactics.test.ts and
// test/pool-relayout-vec.test.ts.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packModules, type KernelSource } from '../src/codegen/kernel.js';
import { EMU_PRELUDE } from './tc_emu.js';

export const hasGxx = (() => { try { execFileSync('g++', ['--version'], { stdio: 'pipe' }); return true; } catch { return false; } })();

const KERNEL_EMU = String.raw`
#include <sys/mman.h>
#include <unistd.h>
using std::isnan; using std::isinf; using std::isfinite;
struct half { unsigned short x; };
inline float __half2float(half h) { return h2f(h.x); }
inline half __float2half_rn(float f) { half r; r.x = f2h(f); return r; }
inline half __ushort_as_half(unsigned short u) { half r; r.x = u; return r; }
inline unsigned short __half_as_ushort(half h) { return h.x; }
// bfloat16 and 32-bit bit casts (the packed loads/stores of codegen/vector_io.ts); round to nearest even like
// __float2bfloat16_rn, NaN kept quiet
struct __nv_bfloat16 { unsigned short x; };
inline float __bfloat162float(__nv_bfloat16 h) { unsigned u = (unsigned)h.x << 16; float f; memcpy(&f, &u, 4); return f; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  unsigned u; memcpy(&u, &f, 4); __nv_bfloat16 r;
  r.x = std::isnan(f) ? (unsigned short)((u >> 16) | 0x40) : (unsigned short)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
  return r;
}
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { __nv_bfloat16 r; r.x = u; return r; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.x; }
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
// SIMD max of the two unsigned 16-bit halves (the int8 / uint8 max pool's packed path)
inline unsigned __vmaxu2(unsigned a, unsigned b) {
  const unsigned lo = std::max(a & 0xFFFFu, b & 0xFFFFu), hi = std::max(a >> 16, b >> 16);
  return lo | (hi << 16);
}
// IEEE fp32 division (the int8 Relayout's x / scale; volatile: the host compiler keeps it a single division)
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
static dim3_ blockDim; // gridDim: tc_emu.ts (run_grid sets it)
static unsigned char g_shfl[32][32][8];
template <class T> inline T __shfl_xor_sync(unsigned, T v, int off) {
  const int l = lane_(), w = warp_();
  memcpy(g_shfl[w][l], &v, sizeof(T)); warp_sync();
  T r; memcpy(&r, g_shfl[w][l ^ off], sizeof(T)); warp_sync();
  return r;
}
// n bytes (a multiple of 16) ending exactly at a PROT_NONE page
static unsigned char* guarded(size_t n) {
  const size_t pg = (size_t)sysconf(_SC_PAGESIZE), body = (n + pg - 1) / pg * pg;
  unsigned char* base = (unsigned char*)mmap(nullptr, body + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) { perror("mmap"); exit(2); }
  mprotect(base + body, pg, PROT_NONE);
  return base + body - n;
}
static unsigned char* load_guarded(const char* path, size_t n) {
  unsigned char* p = guarded(n);
  FILE* f = fopen(path, "rb"); if (!f) { perror(path); exit(2); }
  if (fread(p, 1, n, f) != n) { fprintf(stderr, "short read %s\n", path); exit(2); }
  fclose(f); return p;
}
static void run_kernel(unsigned gx, unsigned bx, const std::function<void()>& fn) {
  gridDim.x = gx; gridDim.y = 1; gridDim.z = 1; blockDim.x = bx; blockDim.y = 1; blockDim.z = 1;
  run_grid(gx, 1, bx, 0, fn);
}
`;

export interface EmuBuffer {
  /** The kernel parameter it binds to. */
  param: string;
  bytes: Buffer;
  /** Written by the kernels (prefilled with 0xff before each one and saved after). */
  output?: boolean;
}

const EMU_DIR = join(new URL('..', import.meta.url).pathname, '.cache', 'kernel-emu');
const pad16 = (n: number) => Math.ceil(n / 16) * 16;

export interface EmuRun {
  /** Kernels sharing one parameter list, run one after another on the same inputs. */
  kernels: KernelSource[];
  bufs: EmuBuffer[];
}

/** Runs each run's kernels under the emulator, all runs in one g++ build (its compile is most of the time);
 * returns per run, per kernel name, the output buffers by parameter name. */
export function emulateKernels(id: string, runs: EmuRun[]): Map<string, Record<string, Buffer>>[] {
  const dir = join(EMU_DIR, id);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(EMU_DIR, 'kernel_emu.h'), EMU_PRELUDE + KERNEL_EMU);
  const all = [...new Map(runs.flatMap((r) => r.kernels).map((k) => [k.name, k])).values()];
  const mod = packModules(all, all.length)[0];
  const body = mod.source.split('\n').filter((l) => !/^#include <cuda_(fp16|bf16)\.h>$/.test(l)).join('\n');
  const lines: string[] = [];
  const kernelsOf = runs.map((r) => [...new Map(r.kernels.map((k) => [k.name, k])).values()]);
  runs.forEach((run, r) => {
    const kernels = kernelsOf[r];
    lines.push('  {');
    for (const b of run.bufs) {
      // the guard page starts at the 16-byte boundary after the buffer (the granularity of the vector accesses)
      writeFileSync(join(dir, `r${r}_${b.param}.bin`), Buffer.concat([b.bytes, Buffer.alloc(pad16(b.bytes.length) - b.bytes.length)]));
      lines.push(`  unsigned char* ${b.param}_p = load_guarded("r${r}_${b.param}.bin", ${pad16(b.bytes.length)});`);
    }
    // each parameter's pointer type, from the first kernel's signature (all of a run's kernels share it)
    const head = kernels[0].source.slice(kernels[0].source.indexOf(`${kernels[0].name}(`));
    const types = new Map(/\(([^)]*)\)/.exec(head)![1].split(',').map((x) => {
      const m = /^(.*\*)\s*(?:__restrict__\s+)?(\w+)$/.exec(x.trim())!;
      return [m[2], m[1].replace('__restrict__', '').trim()] as const;
    }));
    kernels.forEach((k, i) => {
      const j = mod.kernels.indexOf(k.name);
      const args = k.params.map((p) => `(${types.get(p.name)})${p.name}_p`);
      for (const b of run.bufs.filter((x) => x.output)) lines.push(`    memset(${b.param}_p, 0xff, ${b.bytes.length});`);
      lines.push(`    run_kernel(${k.grid[0]}, ${k.block[0]}, [&] { tsrt_k${j}::${k.name}(${args.join(', ')}); });`);
      for (const b of run.bufs.filter((x) => x.output)) lines.push(`    save_file("r${r}_out${i}_${b.param}.bin", ${b.param}_p, ${b.bytes.length});`);
    });
    lines.push('  }');
  });
  const src = `#include "../kernel_emu.h"\n${body}\nint main() {\n${lines.join('\n')}\n  return 0;\n}\n`;
  writeFileSync(join(dir, 'k.cpp'), src);
  const exe = join(dir, `k_${createHash('sha1').update(src).update(EMU_PRELUDE + KERNEL_EMU).digest('hex').slice(0, 10)}`);
  // -O0: compiling hundreds of kernels dominates; the problems are small enough to run unoptimized
  if (!existsSync(exe)) execFileSync('g++', ['-std=c++20', '-O0', '-w', '-o', exe, 'k.cpp'], { cwd: dir, stdio: 'pipe' });
  execFileSync(exe, [], { cwd: dir, stdio: 'pipe', timeout: 240_000 });
  return runs.map((run, r) => new Map(kernelsOf[r].map((k, i) => [k.name,
    Object.fromEntries(run.bufs.filter((b) => b.output).map((b) => [b.param, readFileSync(join(dir, `r${r}_out${i}_${b.param}.bin`))]))])));
}
