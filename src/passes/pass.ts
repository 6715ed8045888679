// Pass infrastructure (TVM-style): a pass is a named Graph -> Graph function; a context carries build
// options and instruments that dump, time and verify around every pass.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Graph, Tensor } from '../ir/types.js';
import { GraphError } from '../errors.js';
import type { PrecisionReport, PrecisionRule } from './precision_rules.js';

export interface PassOptions {
  /** 0: only what correctness needs; 1: + folding and cleanup; 2 (default): + fusion and layout; 3+: + autotuning */
  optLevel: number;
  /** Reduced-precision float build (also set by int8 and bf16): tensors stored in float16, or bfloat16 with `bf16`. */
  fp16: boolean;
  /** With fp16: the reduced precision is bfloat16 (same kernels and policy, 8-bit mantissa, fp32's range). */
  bf16?: boolean;
  /** Concrete sizes for symbolic input dims, by input name. */
  shapes?: Record<string, number[]>;
  /** Sizes for named symbolic dims (e.g. { batch: 32 }). */
  dims?: Record<string, number>;
  /** Inputs whose values are fixed at build time (TensorRT's shape tensors: pads, target shapes, axes). */
  inputValues?: Record<string, Tensor>;
  /** Per-layer / per-op precision constraints (trtexec --layerPrecisions), applied in order by the fp16 pass. */
  layerPrecisions?: PrecisionRule[];
  /** Run Conv/Gemm/MatMul in int8 where their input activation has a scale in `int8Scales` (implies fp16). */
  int8?: boolean;
  /** Symmetric per-tensor activation scales (amax / 127) by tensor name, from calibration. */
  int8Scales?: Record<string, number>;
}

export interface FusionRecord {
  pass: string;
  kind: string;
  /** Name of the node that results. */
  into: string;
  /** Names of the original nodes merged. */
  nodes: string[];
}

export interface RejectedFusion {
  pass: string;
  kind: string;
  nodes: string[];
  reason: string;
}

export interface PassContext {
  options: PassOptions;
  /** Fusion report entries, filled by fusion passes. */
  fusions: FusionRecord[];
  rejected: RejectedFusion[];
  /** Timing of each pass in ms, in order. */
  timings: { pass: string; ms: number; nodes: number }[];
  log: (msg: string) => void;
  /** Set by the fp16 pass: which nodes run in reduced precision, which stay fp32 and why. */
  precision?: PrecisionReport;
}

export interface Pass {
  name: string;
  /** Lowest optimization level at which the pass runs. */
  level: number;
  run(g: Graph, ctx: PassContext): Graph;
}

export interface Instrument {
  after?(pass: Pass, g: Graph, index: number, ctx: PassContext): void;
}

export function newPassContext(options: Partial<PassOptions> = {}): PassContext {
  return {
    options: { optLevel: 2, fp16: false, ...options },
    fusions: [], rejected: [], timings: [],
    log: () => {},
  };
}

export function runPasses(g: Graph, passes: Pass[], ctx: PassContext, instruments: Instrument[] = []): Graph {
  let cur = g;
  let i = 0;
  for (const p of passes) {
    if (p.level > ctx.options.optLevel) continue;
    const t0 = performance.now();
    cur = p.run(cur, ctx);
    ctx.timings.push({ pass: p.name, ms: performance.now() - t0, nodes: cur.nodes.length });
    for (const ins of instruments) ins.after?.(p, cur, i, ctx);
    i++;
  }
  return cur;
}

/** Writes `NN-<pass>.ir` after each pass into `dir`, using the given printer. */
export function dumpInstrument(dir: string, print: (g: Graph) => string): Instrument {
  mkdirSync(dir, { recursive: true });
  return {
    after(pass, g, index) {
      writeFileSync(join(dir, `${String(index).padStart(2, '0')}-${pass.name}.ir`), print(g));
    },
  };
}

/** Verifies the IR after every pass (TSRT_DEBUG >= 2, or BuildOptions.verify) and names the pass that broke it. */
export function verifyInstrument(verify: (g: Graph) => string[]): Instrument {
  return {
    after(pass, g) {
      const problems = verify(g);
      if (problems.length) {
        throw new GraphError(`IR is invalid after pass '${pass.name}':\n  ${problems.slice(0, 20).join('\n  ')}`, undefined,
          'this is a tsrt bug: report it with the model and the --dump-dir output');
      }
    },
  };
}
