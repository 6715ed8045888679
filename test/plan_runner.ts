// Runs lowered steps on the memory plan, and gives light models random weights (shared by test/concat-in-place.test.ts and test/concat-strided.test.ts):
// every node's CPU reference reads its inputs from and writes its outputs to the byte addresses the device runner
// would use (planned arena offsets, offset aliases, separate input/output/constant buffers), so a wrong offset, a
// slice that overlaps a live buffer, or a producer whose output is not in its slot changes the result.
import { DTYPE_SIZE, fromF64, makeTensor, size, toF64 } from '../src/ir/tensor.js';
import { randomFeeds } from './ir-cases.js';
import type { Graph, Tensor, TypedArray } from '../src/ir/types.js';
import { getOp } from '../src/ops/index.js';
import { attrInt, attrString } from '../src/ops/attrs.js';
import type { Lowered } from '../src/codegen/lower.js';
import { locate, type MemoryPlan } from '../src/runtime/memory.js';

/** Runs `l`'s steps with each node's CPU reference on one byte space laid out by `plan`; a node placed in a strided
 * concat slice writes output row i at its slot + i * y_row_stride elements (rows: its channels per pixel in NHWC,
 * per image in NCHW). */
export function runOnPlan(g: Graph, l: Lowered, plan: MemoryPlan, feeds: Map<string, Tensor>): Map<string, Tensor> {
  const bytesOf = (x: string) => { const t = l.types.get(x)!; return size(t.dims) * DTYPE_SIZE[t.dtype]; };
  const base = new Map<string, number>(plan.offsets);
  let top = Math.ceil(plan.arenaBytes / 256) * 256;
  for (const x of [...l.consts.keys(), ...g.inputs.map((i) => i.name), ...g.outputs.map((o) => o.name)]) {
    if (base.has(x) || locate(plan, x).root !== x) continue;
    base.set(x, top);
    top += Math.ceil(Math.max(1, bytesOf(x)) / 256) * 256;
  }
  const mem = new Uint8Array(top);
  const addr = (x: string): number => {
    const { root, offset } = locate(plan, x);
    const b = base.get(root);
    if (b === undefined) throw new Error(`'${x}' (storage '${root}') has no address`);
    return b + offset;
  };
  const raw = (t: Tensor) => { const d = t.data as TypedArray; return new Uint8Array(d.buffer, d.byteOffset, d.byteLength); };
  const write = (x: string, t: Tensor, rows?: { ld: number; len: number }) => {
    if (!rows) { mem.set(raw(t), addr(x)); return; }
    const es = DTYPE_SIZE[t.dtype], r = raw(t), at = addr(x);
    for (let i = 0; i * rows.len * es < r.length; i++) mem.set(r.subarray(i * rows.len * es, (i + 1) * rows.len * es), at + i * rows.ld * es);
  };
  const read = (x: string): Tensor => {
    const t = l.types.get(x)!;
    const out = makeTensor(t.dtype, t.dims);
    raw(out).set(mem.subarray(addr(x), addr(x) + bytesOf(x)));
    return out;
  };
  for (const [k, t] of l.consts) write(k, t);
  for (const [k, t] of feeds) write(k, t);
  const byName = new Map(g.nodes.map((n) => [n.name, n]));
  const done = new Set<string>();
  const ctx = { opset: g.opset, runGraph: () => { throw new Error('no subgraphs here'); } };
  for (const s of l.steps) {
    if (s.kind === 'alias') continue;
    const node = s.kind === 'host' ? s.node : byName.get(s.layer)!;
    if (done.has(node.name)) continue;
    done.add(node.name);
    const outs = getOp(node.op, node.domain)!.cpu(node, node.inputs.map((x) => (x ? read(x) : undefined)), ctx);
    // strided only when the lowering honoured the placement (it aliased the output into the concat)
    const placed = attrString(node, 'y_concat', '') && locate(plan, node.outputs[0]).root === locate(plan, attrString(node, 'y_concat', '')).root;
    node.outputs.forEach((o, k) => {
      if (!o || !outs[k]) return;
      const d = outs[k].dims;
      const nhwc = attrString(node, 'layout', 'NCHW') === 'NHWC';
      write(o, outs[k], placed && k === 0 ? { ld: attrInt(node, 'y_row_stride', 0), len: nhwc ? d[3] : size(d.slice(1)) } : undefined);
    });
  }
  return new Map(g.outputs.map((o) => [o.name, read(o.name)]));
}

/** The graph and its lowering with every float initializer of more than one element replaced by seeded random
 * values in [-1, 1) / 2 / sqrt(fan-in): the light models fill each weight with one constant, so all channels agree
 * and a row at the wrong place would go unseen (the lowering's own derived constants are not read by the CPU
 * references). */
export function randomWeights(g: Graph, l: Lowered): { g: Graph; l: Lowered } {
  const inits = new Map(g.initializers);
  let seed = 1;
  for (const [k, t] of g.initializers) {
    if (!/^float/.test(t.dtype) || size(t.dims) <= 1) continue;
    const fanIn = t.dims.length > 1 ? size(t.dims.slice(1)) : 1;
    const r = randomFeeds({ ...g, inputs: [{ name: k, type: { dtype: t.dtype, shape: t.dims } }] }, seed++).get(k)!;
    inits.set(k, fromF64(t.dtype, t.dims, Array.from(toF64(r), (v) => v / 2 / Math.sqrt(fanIn))));
  }
  return { g: { ...g, initializers: inits }, l: { ...l, consts: new Map([...l.consts].map(([k, t]) => [k, inits.get(k) ?? t])) } };
}
