// Device memory planning: every intermediate gets an offset in one arena; buffers whose lifetimes don't
// overlap share bytes (greedy by size, as in TFLite's arena planner). Aliases (Reshape & co.) extend the
// lifetime of the storage they view; an alias with a byte offset places a value inside another one (the inputs of a
// tsrt::ConcatInPlace live in their slices of its output), so only storage roots get arena offsets.
import { DTYPE_SIZE, size } from '../ir/tensor.js';
import type { Lowered } from '../codegen/lower.js';
import { implicitInputs } from '../ir/graph.js';
import { TsrtError } from '../errors.js';

export interface MemoryPlan {
  /** value name -> byte offset into the arena (for planned values) */
  offsets: Map<string, number>;
  /** value name -> the value whose storage it shares (one step of the chain; see locate()) */
  storageOf: Map<string, string>;
  /** value name -> its byte offset inside storageOf's value, where not 0 */
  byteOffsetOf: Map<string, number>;
  arenaBytes: number;
  /** Sum of all planned buffers without reuse, for the report. */
  naiveBytes: number;
}

const ALIGN = 256;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/** Plans arena offsets for every value that is not a constant, a graph input or a graph output. */
export function planMemory(l: Lowered, external: Set<string>, outputs: string[]): MemoryPlan {
  const storageOf = new Map<string, string>();
  const byteOffsetOf = new Map<string, number>();
  // Aliases first: a Concat input placed in its output is written (by its producer) before the alias step that
  // places it, so its lifetime must count for the output's storage from that first write on.
  for (const s of l.steps) {
    if (s.kind !== 'alias') continue;
    if (storageOf.has(s.out)) throw new TsrtError('INVALID_GRAPH', `internal: value '${s.out}' is aliased twice (layer '${s.layer}')`);
    storageOf.set(s.out, s.src);
    if (s.offset) byteOffsetOf.set(s.out, s.offset);
  }
  const root = (x: string): string => {
    for (let k = 0; storageOf.has(x); k++) {
      if (k > storageOf.size) throw new TsrtError('INVALID_GRAPH', `internal: alias cycle through '${x}'`);
      x = storageOf.get(x)!;
    }
    return x;
  };
  const first = new Map<string, number>(), last = new Map<string, number>();
  const touch = (x: string, i: number) => {
    const r = root(x);
    if (!first.has(r)) first.set(r, i);
    last.set(r, Math.max(last.get(r) ?? i, i));
  };
  l.steps.forEach((s, i) => {
    if (s.kind === 'alias') { touch(s.src, i); return; }
    if (s.kind === 'kernel') for (const a of s.args) if (a.kind === 'value') touch(a.name, i);
    if (s.kind === 'host') {
      for (const x of s.node.inputs) if (x) touch(x, i);
      for (const x of s.node.outputs) if (x) touch(x, i);
      for (const x of implicitInputs(s.node)) touch(x, i);
    }
  });
  // Outputs reached through an alias keep their storage alive to the end.
  for (const o of outputs) touch(o, l.steps.length);
  const items = [...first.keys()]
    .filter((v) => !l.consts.has(v) && !external.has(v))
    .map((v) => ({ v, start: first.get(v)!, end: last.get(v)!, bytes: align(Math.max(1, size(l.types.get(v)!.dims) * DTYPE_SIZE[l.types.get(v)!.dtype])) }))
    .sort((a, b) => b.bytes - a.bytes || a.start - b.start);
  const placed: { off: number; bytes: number; start: number; end: number }[] = [];
  const offsets = new Map<string, number>();
  let arena = 0, naive = 0;
  for (const it of items) {
    naive += it.bytes;
    const conflicts = placed.filter((p) => p.start <= it.end && it.start <= p.end).sort((a, b) => a.off - b.off);
    let off = 0;
    for (const p of conflicts) {
      if (off + it.bytes <= p.off) break;
      off = Math.max(off, p.off + p.bytes);
    }
    placed.push({ off, bytes: it.bytes, start: it.start, end: it.end });
    offsets.set(it.v, off);
    arena = Math.max(arena, off + it.bytes);
  }
  return { offsets, storageOf, byteOffsetOf, arenaBytes: arena, naiveBytes: naive };
}

/** The storage root of a value (an arena value, a constant, a graph input or output) and its byte offset there.
 * (Engine files written before offset aliases existed have no byteOffsetOf: every offset is 0 there.) */
export function locate(plan: Pick<MemoryPlan, 'storageOf'> & { byteOffsetOf?: Map<string, number> }, name: string): { root: string; offset: number } {
  let root = name, offset = 0;
  while (plan.storageOf.has(root)) { offset += plan.byteOffsetOf?.get(root) ?? 0; root = plan.storageOf.get(root)!; }
  return { root, offset };
}
