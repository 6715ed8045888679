// Problems behind autotuning signatures (autotune.ts): the tile shape, the heuristic config and scratch buffer
// sizes the GPU timer launches candidates on, for the fp16 tensor-core kernels (tc_conv.ts / tc_gemm.ts, wgmma)
// and the int8 ones (tc_int8.ts, wgmma_s8.ts). Pure functions of the signature: no GPU, no tuner state.
import { TsrtError } from '../errors.js';
import { chooseConvConfig, convShape, type ConvProblem } from '../codegen/tc_conv.js';
import { chooseGemmConfig, smCountField, type Epilogue, type GemmProblem, type TileConfig, type TileShape } from '../codegen/tc_gemm.js';
import { chooseInt8Config, int8ConvShape } from '../codegen/tc_int8.js';
import type { ParsedSignature } from './timing_cache.js';

export interface ProblemInfo {
  shape: TileShape;
  /** B stored [K,N] (changes which configs are valid). */
  bKN: boolean;
  heuristic?: TileConfig;
  /** [int8] tc_int8.ts kernels: int8 configs (bk 64/128), validated and ranked as their fp16 twins. */
  int8?: boolean;
  /** Scratch bytes per pointer parameter for timing launches (workspace excluded; bias/residual only when the
   * epilogue reads them, as the engine binds them). */
  buffers: Record<string, number>;
}

const pad256 = (bytes: number) => Math.ceil((bytes + 256) / 256) * 256;

function positiveInts(o: Record<string, unknown>, fields: string[], what: string): void {
  for (const f of fields) {
    const v = o[f];
    if (!Number.isInteger(v) || (v as number) < 1) throw new TsrtError('USAGE', `${what}: ${f}=${String(v)} is not a positive integer`);
  }
}

/** Tile shape, heuristic config and scratch sizes of a signature's problem (fp16 storage, fp32 bias). */
export function problemInfo(sig: ParsedSignature): ProblemInfo {
  // the target GPU's SM count, in problems lowered for other than SM_COUNT SMs
  if ((sig.problem as { smCount?: unknown }).smCount !== undefined) positiveInts(sig.problem as unknown as Record<string, unknown>, ['smCount'], `${sig.kind} problem`);
  if (sig.dtype === 'int8') return int8ProblemInfo(sig);
  // bf16 kernels are the fp16 ones with another 16-bit type: same tiles, same buffer sizes
  if (sig.dtype !== 'float16' && sig.dtype !== 'bfloat16') throw new TsrtError('USAGE', `autotuning covers fp16, bf16 and int8 tensor-core kernels, not ${sig.dtype}`);
  const epi = sig.epi;
  if (sig.kind === 'conv') {
    const p = sig.problem as ConvProblem;
    const buffers = convBuffers(p, epi, { operand: 2, out: 2, residual: 2 });
    return {
      shape: convShape(p), bKN: false,
      heuristic: tryHeuristic(() => chooseConvConfig(p)), buffers,
    };
  }
  const p = sig.problem as GemmProblem;
  positiveInts(p as unknown as Record<string, unknown>, ['m', 'n', 'k'], 'gemm problem');
  const kn = (p.bLayout ?? 'nk') === 'kn';
  const batch = p.batch ?? [];
  const lda = p.lda ?? p.k, ldb = p.ldb ?? (kn ? p.n : p.k), ldc = p.ldc ?? p.n;
  // same defaults as tc_gemm's resolveGemm: dense batches
  const inner = (i: number) => batch.slice(i + 1).reduce((a, b) => a * b, 1);
  const strides = (s: number[] | undefined, per: number) => s ?? batch.map((_, i) => per * inner(i));
  const sA = strides(p.strideA, p.m * lda), sB = strides(p.strideB, kn ? p.k * ldb : p.n * ldb), sC = strides(p.strideC, p.m * ldc);
  const reach = (s: number[]) => batch.reduce((acc, b, i) => acc + (b - 1) * Math.abs(s[i] ?? 0), 0);
  const aElems = reach(sA) + (p.m - 1) * lda + p.k;
  const bElems = reach(sB) + (kn ? (p.k - 1) * ldb + p.n : (p.n - 1) * ldb + p.k);
  const cElems = reach(sC) + (p.m - 1) * ldc + p.n;
  for (const [nm, v] of [['A', aElems], ['B', bElems], ['C', cElems]] as const) {
    if (!Number.isFinite(v) || v < 1) throw new TsrtError('USAGE', `gemm problem: ${nm} extent ${v} is not positive`);
  }
  const buffers: Record<string, number> = { a: pad256(2 * aElems), b: pad256(2 * bElems), c: pad256(2 * cElems) };
  if (epi.bias) buffers.bias = pad256(4 * p.n);
  if (epi.residual) buffers.residual = pad256(2 * cElems);
  return {
    shape: { m: p.m, n: p.n, k: p.k, batch: batch.reduce((a, b) => a * b, 1), ...smCountField(p.smCount) }, bKN: kn,
    heuristic: tryHeuristic(() => chooseGemmConfig(p)), buffers,
  };
}

const INT8_OUT_BYTES: Record<string, number> = { int8: 1, float16: 2, float32: 4 };

/** The heuristic config, or none when the problem has no valid one (the tuner then times candidates only). */
function tryHeuristic(f: () => TileConfig): TileConfig | undefined { try { return f(); } catch { return undefined; } }

/** Buffer bytes a conv kernel reads and writes: x, w (`operand` bytes an element), y and the residual in their
 * storage, fp32 bias, and for int8 the fp32 per-channel scale. */
function convBuffers(p: ConvProblem, epi: Epilogue, b: { operand: number; out: number; residual: number; scale?: boolean }): Record<string, number> {
  positiveInts(p as unknown as Record<string, unknown>, ['n', 'h', 'w', 'c', 'k', 'r', 's', 'p', 'q'], 'conv problem');
  const y = p.n * p.p * p.q * p.k;
  const buffers: Record<string, number> = {
    x: pad256(b.operand * p.n * p.h * p.w * p.c), w: pad256(b.operand * p.k * p.r * p.s * p.c),
    ...(b.scale ? { scale: pad256(4 * p.k) } : {}), y: pad256(b.out * y),
  };
  if (epi.bias) buffers.bias = pad256(4 * p.k);
  if (epi.residual) buffers.residual = pad256(b.residual * y);
  return buffers;
}

/** [int8] QConv / QGemm kernels (tc_int8.ts): int8 operands, an fp32 per-channel scale, fp32 bias, output and
 * residual in the epilogue's storage types. */
function int8ProblemInfo(sig: ParsedSignature): ProblemInfo {
  const epi = sig.epi as Epilogue & { out?: string; residualType?: string };
  const ob = INT8_OUT_BYTES[epi.out ?? ''];
  if (!ob) throw new TsrtError('USAGE', `int8 signature: output type '${String(epi.out)}' is not int8, float16 or float32`);
  const rb = INT8_OUT_BYTES[epi.residualType ?? epi.out!] ?? ob;
  if (sig.kind === 'conv') {
    const p = sig.problem as ConvProblem;
    const buffers = convBuffers(p, epi, { operand: 1, out: ob, residual: rb, scale: true });
    const shape = int8ConvShape(p);
    return { shape, bKN: false, int8: true, heuristic: tryHeuristic(() => chooseInt8Config(shape)), buffers };
  }
  const p = sig.problem as GemmProblem;
  positiveInts(p as unknown as Record<string, unknown>, ['m', 'n', 'k'], 'gemm problem');
  const buffers: Record<string, number> = {
    a: pad256(p.m * p.k), b: pad256(p.n * p.k), scale: pad256(4 * p.n), c: pad256(ob * p.m * p.n),
  };
  if (epi.bias) buffers.bias = pad256(4 * p.n);
  if (epi.residual) buffers.residual = pad256(rb * p.m * p.n);
  const shape = { m: p.m, n: p.n, k: p.k, batch: 1, ...smCountField(p.smCount) };
  return { shape, bKN: false, int8: true, heuristic: tryHeuristic(() => chooseInt8Config(shape)), buffers };
}
