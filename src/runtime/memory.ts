// Device memory planning: every intermediate gets an offset in one arena; buffers whose lifetimes don't
// overlap share bytes (greedy by size, as in TFLite's arena planner). Aliases (Reshape & co.) extend the
// lifetime of the storage they view.
import { DTYPE_SIZE, size } from '../ir/tensor.js';
import type { Lowered } from '../codegen/lower.js';
import { implicitInputs } from '../ir/graph.js';

export interface MemoryPlan {
  /** value name -> byte offset into the arena (for planned values) */
  offsets: Map<string, number>;
  /** value name -> the value whose storage it shares */
  storageOf: Map<string, string>;
  arenaBytes: number;
  /** Sum of all planned buffers without reuse, for the report. */
  naiveBytes: number;
}

const ALIGN = 256;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/** Plans arena offsets for every value that is not a constant, a graph input or a graph output. */
export function planMemory(l: Lowered, external: Set<string>, outputs: string[]): MemoryPlan {
  const storageOf = new Map<string, string>();
  const root = (x: string): string => { while (storageOf.has(x)) x = storageOf.get(x)!; return x; };
  const first = new Map<string, number>(), last = new Map<string, number>();
  const touch = (x: string, i: number) => {
    const r = root(x);
    if (!first.has(r)) first.set(r, i);
    last.set(r, Math.max(last.get(r) ?? i, i));
  };
  l.steps.forEach((s, i) => {
    if (s.kind === 'alias') { storageOf.set(s.out, root(s.src)); touch(s.src, i); return; }
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
  return { offsets, storageOf, arenaBytes: arena, naiveBytes: naive };
}
