// Tactic spaces of the memory-bound kernel families (issue 7 item 1): which launch geometries a LayerNorm,
// softmax, reduction or elementwise kernel may take, why a tactic is invalid for a problem (static pruning:
// thread-block limits, vector alignment, registers), which ones a level times, and the timing-cache key.
// The emitters (reduce.ts, elementwise.ts) own the code; the tuner (runtime/kernel_tuner.ts) owns timing.
import { DTYPE_SIZE } from '../ir/tensor.js';
import type { DType } from '../ir/types.js';
import { canonical } from '../runtime/timing_cache.js';
import { vectorInputs, EW_DEFAULT, emitElementwise, type EwProgram } from './elementwise.js';
import { shortHash, type KernelSource } from './kernel.js';
import {
  emitLayerNorm, emitReduce, emitSoftmax, isRowReduce, layerNormHeuristic, reduceHeuristic, softmaxHeuristic,
} from './reduce.js';
import { tacticLabel, type KernelFamily, type KernelTactic, type Tunable } from './tactics.js';
import { emitPool, poolHeuristic, poolVecProblems } from './pool.js';
import { emitRelayout, relayoutHeuristic, relayoutVecProblems } from './movement.js';

/** Where the kernel's buffers sit: the largest power of two (at most 16) dividing every pointer argument's byte
 * offset. Arena buffers and allocations are 256-byte aligned; a slice of a concat buffer may not be. */
export interface TacticContext { align: number }

export interface FamilyProblem {
  family: KernelFamily;
  /** The tactic the emitter takes without one (today's kernel). */
  heuristic: KernelTactic;
  /** The whole space for this problem's kernel shape, valid or not (pruning is separate so it can say why). */
  space: KernelTactic[];
  /** Why `t` cannot run this problem; empty when it can. */
  problems(t: KernelTactic): string[];
  emit(t: KernelTactic): KernelSource;
  /** Rough relative cost, only to rank candidates at levels 3 and 4 (timing decides). */
  estimate(t: KernelTactic): number;
  /** Timing-cache key: family, dtype, problem, alignment. */
  key: string;
}

export const ROW_TPR = [8, 16, 32, 64, 128, 256, 512, 1024];
export const ROW_RPB = [1, 2, 4, 8, 16, 32];
export const LN_VECS = [1, 2, 4, 8];
/** Row dtypes emitLayerNormVec packs (16-bit floats as 32-bit words, fp32 as float2/float4). */
const LN_VEC_DTYPES: DType[] = ['float16', 'bfloat16', 'float32'];
export const FLAT_BLOCKS = [64, 128, 256, 512, 1024];
export const EW_VECS = [1, 2, 4, 8];
export const EW_EPT = [1, 2, 4];

/** Threads one H100/H200 runs at once (132 SMs x 2048) and the blocks an SM holds (32): occupancy for estimate. */
const DEVICE_THREADS = 132 * 2048;
const capacity = (block: number) => 132 * Math.min(2048, 32 * block);

const rowSpace = (vecs: number[]) => ROW_TPR.flatMap((tpr) => ROW_RPB.flatMap((rpb) => vecs.map((vec) => ({ tpr, rpb, vec }))));

function blockProblems(block: number): string[] {
  if (block > 1024) return [`a block of ${block} threads exceeds the 1024-thread limit`];
  if (block < 32) return [`a block of ${block} threads is less than a warp`];
  if (block % 32) return [`a block of ${block} threads is not a whole number of warps`];
  return [];
}

/** Checks shared by every row kernel: tpr one of ROW_TPR, the block within limits, no idle threads past a warp. */
function rowProblems(t: KernelTactic, len: number): string[] {
  const tpr = t.tpr ?? 0, rpb = t.rpb ?? 1;
  if (t.block !== undefined || (t.ept ?? 1) !== 1) return ['block/ept are flat-kernel fields; a row kernel takes tpr, rpb, vec'];
  if (!ROW_TPR.includes(tpr)) return [`tpr ${tpr} is not one of ${ROW_TPR.join('/')}`];
  if (!Number.isInteger(rpb) || rpb < 1) return [`rpb ${rpb} is not a positive integer`];
  const out = blockProblems(tpr * rpb);
  if (tpr > 32 && tpr > len) out.push(`${tpr} threads per row for rows of ${len}: threads would idle`);
  return out;
}

function flatProblems(t: KernelTactic): string[] {
  if (t.tpr !== undefined || t.rpb !== undefined) return ['tpr/rpb are row-kernel fields; this kernel takes a block size'];
  if ((t.vec ?? 1) !== 1 || (t.ept ?? 1) !== 1) return ['this kernel has no vector or multi-element form'];
  return blockProblems(t.block ?? 0);
}

/** Row kernel cost: per-thread serial work (loads, reduction steps, the cross-warp step) times the waves. */
function rowEstimate(t: KernelTactic, rows: number, len: number, passes: number): number {
  const tpr = t.tpr!, rpb = t.rpb ?? 1, vec = t.vec ?? 1;
  const perThread = Math.ceil(len / (tpr * vec)) * passes + 2 * Math.log2(Math.min(tpr, 32)) + (tpr > 32 ? 2 * (tpr / 32) + 20 : 0);
  return perThread * Math.max(1, (rows * tpr) / capacity(tpr * rpb));
}

const flatEstimate = (t: KernelTactic) => 1 + Math.abs(Math.log2((t.block ?? 256) / 256));

function layerNorm(u: Extract<Tunable, { family: 'layernorm' }>, ctx: TacticContext): Omit<FamilyProblem, 'key'> {
  const p = u.problem, es = DTYPE_SIZE[p.dtype];
  return {
    family: 'layernorm', heuristic: layerNormHeuristic(p), space: rowSpace(LN_VECS),
    problems: (t) => {
      const out = rowProblems(t, p.cols);
      const tpr = t.tpr ?? 0, vec = t.vec ?? 1;
      if (!LN_VECS.includes(vec)) return [...out, `vec ${vec} is not one of ${LN_VECS.join('/')}`];
      if (vec === 1 || out.length) return out;
      if (!LN_VEC_DTYPES.includes(p.dtype)) out.push(`vector loads are emitted for ${LN_VEC_DTYPES.join('/')} rows, not ${p.dtype}`);
      else if (vec * es > 16) out.push(`a vector of ${vec} ${p.dtype} is ${vec * es} bytes, more than 16`);
      else if (p.cols % (tpr * vec)) out.push(`cols ${p.cols} is not a multiple of tpr x vec = ${tpr * vec}`);
      else if (p.cols / tpr > 64) out.push(`${p.cols / tpr} values per thread: more than 64 registers of row`);
      if (ctx.align % (vec * es)) out.push(`x/y are only ${ctx.align}-byte aligned, the ${vec * es}-byte vectors need more`);
      if (p.rows >= 2 ** 31) out.push(`${p.rows} rows overflow the vector kernel's int row index`);
      return out;
    },
    emit: (t) => emitLayerNorm(p, t),
    estimate: (t) => rowEstimate(t, p.rows, p.cols, (t.vec ?? 1) > 1 ? 2 : 3),
  };
}

function softmax(u: Extract<Tunable, { family: 'softmax' }>): Omit<FamilyProblem, 'key'> {
  const p = u.problem, rows = p.inner === 1;
  return {
    family: 'softmax', heuristic: softmaxHeuristic(p),
    space: rows ? rowSpace([1]) : FLAT_BLOCKS.map((block) => ({ block })),
    problems: (t) => (rows ? [...rowProblems(t, p.axis), ...((t.vec ?? 1) !== 1 ? ['softmax rows have no vector form'] : [])] : flatProblems(t)),
    emit: (t) => emitSoftmax(p, t),
    estimate: (t) => (rows ? rowEstimate(t, p.outer, p.axis, 3) : flatEstimate(t)),
  };
}

function reduce(u: Extract<Tunable, { family: 'reduce' }>): Omit<FamilyProblem, 'key'> {
  const p = u.problem, rows = isRowReduce(p);
  return {
    family: 'reduce', heuristic: reduceHeuristic(p),
    space: rows ? rowSpace([1]) : FLAT_BLOCKS.map((block) => ({ block })),
    problems: (t) => (rows ? [...rowProblems(t, p.r), ...((t.vec ?? 1) !== 1 ? ['reductions have no vector form'] : [])] : flatProblems(t)),
    emit: (t) => emitReduce(p, t),
    estimate: (t) => (rows ? rowEstimate(t, p.outer, p.r, 1) : flatEstimate(t)),
  };
}

function elementwise(u: Extract<Tunable, { family: 'elementwise' }>, ctx: TacticContext): Omit<FamilyProblem, 'key'> {
  const p = u.problem, n = p.dims.reduce((a, b) => a * b, 1), vin = vectorInputs(p);
  // the buffers moved as vectors: in-order inputs and every output
  const vecTypes: DType[] = [...p.inputs.filter((_, k) => vin[k]).map((x) => x.dtype), ...p.outputs.map((o) => o.dtype)];
  const widest = Math.max(...vecTypes.map((d) => DTYPE_SIZE[d]));
  return {
    family: 'elementwise', heuristic: EW_DEFAULT,
    space: FLAT_BLOCKS.flatMap((block) => EW_VECS.flatMap((vec) => EW_EPT.map((ept) => ({ block, vec, ept })))),
    problems: (t) => {
      if (t.tpr !== undefined || t.rpb !== undefined) return ['tpr/rpb are row-kernel fields; elementwise takes block, vec, ept'];
      const vec = t.vec ?? 1, ept = t.ept ?? 1;
      const out = blockProblems(t.block ?? 0);
      if (!EW_VECS.includes(vec)) out.push(`vec ${vec} is not one of ${EW_VECS.join('/')}`);
      if (!EW_EPT.includes(ept)) out.push(`ept ${ept} is not one of ${EW_EPT.join('/')}`);
      if (out.length || vec === 1) return out;
      if (n % vec) out.push(`${n} elements are not a multiple of vec ${vec}`);
      if (vec * widest > 16) out.push(`a vector of ${vec} elements of ${widest} bytes is more than 16 bytes`);
      const need = Math.max(...vecTypes.map((d) => vec * DTYPE_SIZE[d]));
      if (ctx.align % need) out.push(`buffers are only ${ctx.align}-byte aligned, the ${need}-byte vectors need more`);
      return out;
    },
    emit: (t) => emitElementwise(p, u.prefix, t),
    estimate: (t) => {
      const vec = t.vec ?? 1, ept = t.ept ?? 1, block = t.block ?? 256;
      const threads = Math.ceil(n / (vec * ept)), live = Math.min(threads, 132 * 32 * block);
      const memOps = vin.filter(Boolean).length + p.outputs.length + vec * vin.filter((v) => !v).length;
      return Math.ceil(threads / live) * ept * memOps * Math.max(1, live / capacity(block));
    },
  };
}

export const MOVE_VECS = [1, 2, 4, 8, 16];

/** Pooling and Relayout: a thread per output element (vec 1) or per `vec` contiguous ones (packed accesses), any
 * block size; `vecProblems` says which widths the channels / innermost axis and the alignment allow. */
function movement(family: 'pool' | 'relayout', n: number, heuristic: KernelTactic, vecProblems: (vec: number) => string[],
  emit: (t: KernelTactic) => KernelSource): Omit<FamilyProblem, 'key'> {
  return {
    family, heuristic, emit,
    space: FLAT_BLOCKS.flatMap((block) => MOVE_VECS.map((vec) => ({ block, vec }))),
    problems: (t) => {
      if (t.tpr !== undefined || t.rpb !== undefined || (t.ept ?? 1) !== 1) return [`${family} takes block and vec only`];
      const vec = t.vec ?? 1;
      if (!MOVE_VECS.includes(vec)) return [`vec ${vec} is not one of ${MOVE_VECS.join('/')}`];
      return [...blockProblems(t.block ?? 0), ...vecProblems(vec)];
    },
    // memory transactions per element (a packed access moves vec), then the block size's distance from 256
    estimate: (t) => Math.ceil(n / (t.vec ?? 1)) / n + flatEstimate(t) / 8,
  };
}

/** The family view of a tunable kernel: space, pruning, emitter and timing-cache key. */
export function familyProblem(u: Tunable, ctx: TacticContext): FamilyProblem {
  const f = u.family === 'layernorm' ? layerNorm(u, ctx) : u.family === 'softmax' ? softmax(u)
    : u.family === 'reduce' ? reduce(u)
      : u.family === 'pool' ? movement('pool', u.problem.n * u.problem.c * u.problem.outSpatial.reduce((a, b) => a * b, 1),
        poolHeuristic(u.problem, ctx.align), (v) => poolVecProblems(u.problem, v, ctx.align), (t) => emitPool(u.problem, t))
        : u.family === 'relayout' ? movement('relayout', u.problem.inDims.reduce((a, b) => a * b, 1),
          relayoutHeuristic(u.problem, ctx.align), (v) => relayoutVecProblems(u.problem, v, ctx.align), (t) => emitRelayout(u.problem, t))
          : elementwise(u, ctx);
  return { ...f, key: kernelTacticSignature(u, ctx) };
}

/** Timing-cache key, e.g. `layernorm float16 {"align":16,"family":"layernorm","problem":{"cols":768,...}}`. The
 * family comes first (timing_cache.ts isKernelTacticKey). An elementwise program is named by its prefix, shape,
 * dtypes and a hash of the whole program (its expressions and views), not spelled out. */
export function kernelTacticSignature(u: Tunable, ctx: TacticContext): string {
  let dtype: DType, problem: unknown;
  if (u.family === 'elementwise') {
    const p = u.problem;
    dtype = p.outputs[0]?.dtype ?? p.inputs[0]?.dtype ?? 'float32';
    problem = {
      prefix: u.prefix, dims: p.dims, inputs: p.inputs.map((x) => x.dtype), outputs: p.outputs.map((o) => o.dtype),
      program: shortHash(JSON.stringify(canonical(p))),
    };
  } else {
    dtype = u.family === 'reduce' ? u.problem.inDtype : u.family === 'relayout' ? u.problem.to : u.problem.dtype;
    problem = u.problem;
  }
  return `${u.family} ${dtype} ${JSON.stringify(canonical({ family: u.family, align: ctx.align, problem }))}`;
}

/** How many candidates a level times besides the heuristic (autotune.ts candidatesForLevel has the same counts
 * for tile configs): 0 below level 3, 4 at 3, 12 at 4, every valid tactic at 5. */
export function tacticsForLevel(level: number): number {
  return level >= 5 ? Infinity : level === 4 ? 12 : level === 3 ? 4 : 0;
}

/** The valid tactics a level times, best estimate first, the heuristic always included (so tuning never picks
 * worse than the default, up to timing noise); none below level 3. */
export function pickTactics(f: FamilyProblem, level: number): KernelTactic[] {
  const n = tacticsForLevel(level);
  if (n === 0) return [];
  const valid = f.space.filter((t) => !f.problems(t).length);
  const ranked = valid.map((t, i) => ({ t, i, e: f.estimate(t) })).sort((a, b) => (a.e - b.e) || (a.i - b.i)).map((x) => x.t);
  const h = tacticLabel(f.heuristic);
  const out = ranked.filter((t) => tacticLabel(t) !== h).slice(0, n === Infinity ? undefined : n);
  return [f.heuristic, ...out];
}
