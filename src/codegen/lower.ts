// Lowering: an optimized, fully static graph -> a list of steps (kernel launches, buffer aliases, and host
// fallbacks for ops without a CUDA emitter). Each op's lowering lives in lowerings.ts.
import { GraphError, TsrtError } from '../errors.js';
import { topoSort } from '../ir/graph.js';
import type { DType, Graph, Node, Tensor, TensorType } from '../ir/types.js';
import type { KernelSource } from './kernel.js';
import type { TileConfig } from './tc_gemm.js';

export type Arg =
  | { kind: 'value'; name: string }
  | { kind: 'null' }
  | { kind: 'i32' | 'u32' | 'f32' | 'i64'; value: number };

export interface KernelStep { kind: 'kernel'; layer: string; op: string; kernel: KernelSource; args: Arg[] }
/** `out` shares `src`'s storage (Reshape, Flatten, Squeeze, Identity ...); with `offset`, `out` is the slice of `src`
 * that starts `offset` bytes in (a Concat input placed in its output: tsrt::ConcatInPlace). */
export interface AliasStep { kind: 'alias'; layer: string; op: string; out: string; src: string; offset?: number }
/** The node runs on the CPU reference; its inputs are copied to the host and outputs back. */
export interface HostStep { kind: 'host'; layer: string; op: string; node: Node; reason: string }
export type Step = KernelStep | AliasStep | HostStep;

export interface Lowered {
  steps: Step[];
  /** Constants the device needs (initializers plus transformed weights). */
  consts: Map<string, Tensor>;
  /** Types of every value, temporaries included. */
  types: Map<string, { dtype: DType; dims: number[] }>;
}

export interface LowerCtx {
  node: Node;
  graph: Graph;
  /** dtype and static dims of a value. */
  t(name: string): { dtype: DType; dims: number[] };
  /** Constant value of an input (initializer), if it is one. */
  constOf(name: string): Tensor | undefined;
  /** Registers a derived constant (transformed weights) and returns its value name. */
  addConst(hint: string, t: Tensor): string;
  /** A temporary device buffer of the given type, live until the end of this node's steps. */
  temp(dtype: DType, dims: number[]): string;
  kernel(k: KernelSource, args: Arg[]): void;
  /** `out` lives in `src`'s storage, `byteOffset` bytes in (default 0). */
  alias(out: string, src: string, byteOffset?: number): void;
  /** The buffer a value's bytes live in, following the alias steps lowered so far, and the byte offset there. */
  storage(name: string): { root: string; offset: number };
  v(name: string): Arg;
  readonly fp16: boolean;
  /** [autotune] Picks a tile config for a tensor-core kernel (runtime/autotune.ts); undefined: the heuristic. */
  tactic?: Tactic;
  /** NVRTC target of the engine's kernels (engine.ts); 'sm_90a' lets tensor-core lowerings offer wgmma configs. */
  readonly arch?: string;
  /** SMs of the target GPU (engine.ts: the device's, else SM_COUNT): lowerings pass it on in their problems
   * (smCountField) for one-wave sizing: split-K, tile heuristics, persistent grids. Absent: SM_COUNT. */
  readonly smCount?: number;
}

/** [autotune] `key`: tacticSignature() of the kernel; `emit` builds the candidate kernel for a config. */
export type Tactic = (key: string, candidates: TileConfig[], emit: (cfg: TileConfig) => KernelSource) => TileConfig | undefined;

export type Lowering = (ctx: LowerCtx) => void;

/** Returns a reason when the lowering can't handle this node (then it runs on the host). */
export interface LoweringEntry { lower: Lowering; check?: (ctx: LowerCtx) => string | undefined }

const lowerings = new Map<string, LoweringEntry>();

export function registerLowering(op: string, entry: LoweringEntry | Lowering, domain = ''): void {
  lowerings.set(`${domain}::${op}`, typeof entry === 'function' ? { lower: entry } : entry);
}

export function hasLowering(op: string, domain = ''): boolean {
  return lowerings.has(`${domain}::${op}`);
}

export function staticType(name: string, t: TensorType | undefined, node?: string): { dtype: DType; dims: number[] } {
  if (!t) throw new GraphError(`value '${name}' has no inferred type`, node);
  if (t.shape.some((d) => typeof d !== 'number')) {
    throw new GraphError(`value '${name}' has a symbolic shape [${t.shape}] at build time`, node,
      'give concrete input shapes (--shapes input:1x3x224x224) or a dims binding (--dims batch=1)');
  }
  return { dtype: t.dtype, dims: t.shape as number[] };
}

export function lowerGraph(g: Graph, opts: { fp16: boolean; allowHost: boolean; tactic?: Tactic /* [autotune] */; arch?: string; smCount?: number }): Lowered {
  const steps: Step[] = [];
  const consts = new Map(g.initializers);
  const types = new Map<string, { dtype: DType; dims: number[] }>();
  for (const [k, v] of g.initializers) types.set(k, { dtype: v.dtype, dims: v.dims });
  for (const i of g.inputs) types.set(i.name, staticType(i.name, i.type));
  let tmp = 0;
  const aliasOf = new Map<string, { src: string; offset: number }>();
  const storage = (name: string) => {
    let root = name, offset = 0;
    for (let a = aliasOf.get(root); a; a = aliasOf.get(root)) { root = a.src; offset += a.offset; }
    return { root, offset };
  };
  for (const node of topoSort(g)) {
    for (const o of node.outputs) if (o) types.set(o, staticType(o, g.valueTypes.get(o), node.name));
    const entry = lowerings.get(`${node.domain}::${node.op}`);
    const pending: Step[] = [];
    const ctx: LowerCtx = {
      node, graph: g, fp16: opts.fp16, tactic: opts.tactic, // [autotune]
      arch: opts.arch, smCount: opts.smCount,
      t: (name) => {
        const t = types.get(name);
        if (!t) throw new GraphError(`value '${name}' has no type`, node.name);
        return t;
      },
      constOf: (name) => consts.get(name),
      addConst: (hint, t) => {
        const name = `${node.name}/${hint}`;
        consts.set(name, t);
        types.set(name, { dtype: t.dtype, dims: t.dims });
        return name;
      },
      temp: (dtype, dims) => {
        const name = `${node.name}/tmp${tmp++}`;
        types.set(name, { dtype, dims });
        return name;
      },
      kernel: (k, args) => {
        if (args.length !== k.params.length) {
          throw new TsrtError('INVALID_GRAPH', `internal: kernel ${k.name} for node '${node.name}' takes ${k.params.length} params, got ${args.length}`);
        }
        pending.push({ kind: 'kernel', layer: node.name, op: node.op, kernel: k, args });
      },
      alias: (out, src, byteOffset) => pending.push({ kind: 'alias', layer: node.name, op: node.op, out, src, ...(byteOffset ? { offset: byteOffset } : {}) }),
      storage,
      v: (name) => (name ? { kind: 'value', name } : { kind: 'null' }),
    };
    let reason = entry ? entry.check?.(ctx) : `no CUDA lowering for ${node.domain ? node.domain + '::' : ''}${node.op}`;
    if (entry && !reason) {
      try {
        entry.lower(ctx);
      } catch (e) {
        if (!(e instanceof NotLowerable)) throw e;
        reason = e.message;
        pending.length = 0;
      }
    }
    if (reason) {
      if (!opts.allowHost) throw new TsrtError('UNSUPPORTED', `node '${node.name}' (${node.op}): ${reason}`, 'build with host fallback allowed, or rewrite the op');
      steps.push({ kind: 'host', layer: node.name, op: node.op, node, reason });
    } else {
      steps.push(...pending);
      for (const s of pending) if (s.kind === 'alias') aliasOf.set(s.out, { src: s.src, offset: s.offset ?? 0 });
    }
  }
  return { steps, consts, types };
}

/** Thrown by a lowering to send its node to the host fallback with a reason. */
export class NotLowerable extends Error {}
