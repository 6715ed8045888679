// Launch-geometry tactics of the memory-bound kernels (LayerNorm, softmax, reductions, elementwise): the pieces
// the emitters share, and the registry that lets the autotuner re-emit a lowered kernel with another tactic.
// Emitters register the problem behind each kernel they return (markTunable), so lowerings stay unaware of
// tuning: the tuner (runtime/kernel_tuner.ts) walks the lowered steps and asks tunableOf(kernel).
import type { KernelSource } from './kernel.js';
import type { EwProgram } from './elementwise.js';
import type { LayerNormProblem, ReduceProblem, SoftmaxProblem } from './reduce.js';
import type { PoolProblem } from './pool.js';
import type { RelayoutProblem } from './movement.js';

export type KernelFamily = 'layernorm' | 'softmax' | 'reduce' | 'elementwise' | 'pool' | 'relayout';
export const KERNEL_FAMILIES: KernelFamily[] = ['layernorm', 'softmax', 'reduce', 'elementwise', 'pool', 'relayout'];

/** One point of a family's tactic space. Row kernels (a group of threads per row: LayerNorm, softmax and
 * reductions over the last axis) use tpr (threads per row), rpb (rows per block) and vec (elements per vector
 * load, LayerNorm only; 1 = scalar loads, the row re-read from cache). Flat kernels (a thread per output element)
 * use block, vec and ept (vectors per thread per loop trip); pooling and Relayout use block and vec (contiguous
 * channels / output elements per thread). Absent fields are 1. */
export interface KernelTactic { tpr?: number; rpb?: number; block?: number; vec?: number; ept?: number }

export type Tunable =
  | { family: 'layernorm'; problem: LayerNormProblem }
  | { family: 'softmax'; problem: SoftmaxProblem }
  | { family: 'reduce'; problem: ReduceProblem }
  | { family: 'elementwise'; problem: EwProgram; prefix: string }
  | { family: 'pool'; problem: PoolProblem }
  | { family: 'relayout'; problem: RelayoutProblem };

/** Stable short name of a tactic, e.g. `t32.r8.v8` or `b256.v4.e2` (timing-cache candidates, logs, engine.built). */
export function tacticLabel(t: KernelTactic): string {
  if (t.tpr !== undefined) return `t${t.tpr}.r${t.rpb ?? 1}.v${t.vec ?? 1}`;
  return `b${t.block ?? 256}.v${t.vec ?? 1}.e${t.ept ?? 1}`;
}

// A WeakMap, not a field on KernelSource: engine files serialize kernels, and the problem is only needed while
// building.
const registry = new WeakMap<KernelSource, Tunable>();

export function markTunable(k: KernelSource, t: Tunable): KernelSource {
  registry.set(k, t);
  return k;
}

export function tunableOf(k: KernelSource): Tunable | undefined {
  return registry.get(k);
}

const log2 = (n: number) => Math.round(Math.log2(n));

/** Thread layout of a row kernel: `tpr` threads per row (a power of two, 8..1024), `rpb` rows per block.
 * tpr 32 is one warp per row and keeps the original kernels' text (rows loop per warp). Other widths loop over
 * rows block-uniformly, because narrower groups share a warp's full-mask shuffles and wider ones a block's
 * __syncthreads: a group past the last row recomputes that row (no out-of-bounds reads) and does not store. */
export function rowLayout(tpr: number, rpb: number) {
  const warp = tpr === 32, lg = log2(tpr), wpr = tpr / 32;
  return {
    block: tpr * rpb,
    lane: warp ? 'threadIdx.x & 31' : `threadIdx.x & ${tpr - 1}`,
    /** First shuffle distance of the in-warp tree. */
    off0: String(Math.min(tpr, 32) / 2),
    /** Prefix of the statements that store a row's results. */
    guard: warp ? '' : 'if (act) ',
    /** ` && act` for a condition that already guards the store. */
    andAct: warp ? '' : ' && act',
    /** The rows loop header (opening brace included) with `row` of type `int` or `long long`. */
    loop(rows: number, idx: 'int' | 'long long'): string {
      const L = idx === 'int' ? '' : 'LL', cast = idx === 'int' ? '' : '(long long)';
      if (warp) return `for (${idx} row = blockIdx.x * ${rpb}${L} + (threadIdx.x >> 5); row < ${rows}${L}; row += ${cast}gridDim.x * ${rpb}) {`;
      return `for (${idx} row0 = blockIdx.x * ${rpb}${L}; row0 < ${rows}${L}; row0 += ${cast}gridDim.x * ${rpb}) {
    const bool act = row0 + (threadIdx.x >> ${lg}) < ${rows}${L};
    const ${idx} row = act ? row0 + (threadIdx.x >> ${lg}) : ${rows - 1}${L};`;
    },
    /** Shared scratch for the cross-warp step (tpr > 32), declared at the top of the kernel. */
    shared(acc: string): string {
      return tpr > 32 ? `  __shared__ ${acc} red_[${(tpr * rpb) / 32}];\n` : '';
    },
    /** Completes a reduction of `v` over the row after the in-warp shuffles (tpr > 32: per-warp partials through
     * shared memory, combined in the same order by every thread of the row so they agree bit for bit). */
    cross(v: string, combine: (a: string, b: string) => string): string {
      if (tpr <= 32) return '';
      const first = `(threadIdx.x >> ${lg}) * ${wpr}`;
      return `
    if ((threadIdx.x & 31) == 0) red_[threadIdx.x >> 5] = ${v};
    __syncthreads();
    ${v} = red_[${first}];
    for (int w_ = 1; w_ < ${wpr}; ++w_) ${v} = ${combine(v, `red_[${first} + w_]`)};
    __syncthreads();`;
    },
  };
}
