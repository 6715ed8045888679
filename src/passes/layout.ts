// Layout: run 2-D convolutions (and the pooling / batch-norm between them) channels-last, the layout the
// tensor-core implicit-GEMM kernels read, with as few transposes as possible. Each converted node gets a
// Transpose to NHWC on its activation inputs and one back to NCHW on its output; `cancelTransposes` then
// removes every back-and-forth pair, so a ResNet keeps one transpose at the input and one at the head.
import { nameGenerator } from '../ir/graph.js';
import type { Graph, Node } from '../ir/types.js';
import { attrInts } from '../ops/attrs.js';
import { CHANNELS_LAST_OPS, toChannelsFirst, toChannelsLast } from '../ops/layout.js';
import { eliminateDeadCode } from './basic.js';
import { ELEMENTWISE_OPS } from './fuse.js';
import type { Pass } from './pass.js';

const CONV_OPS = new Set(['Conv', 'FusedConv', 'QConv']);
/** Activation inputs of each conv op (X, and the residual Z of the fused forms). */
const CONV_ACT_INPUTS: Record<string, number[]> = { Conv: [0], FusedConv: [0, 3], QConv: [0, 4] };
const isQConv = (n: Node) => n.op === 'QConv' && n.domain === 'tsrt';
/** Per-tensor QuantizeLinear/DequantizeLinear commute with a Transpose like any elementwise op. */
const isPerTensorQdq = (g: Graph, n: Node) => n.domain === '' && (n.op === 'QuantizeLinear' || n.op === 'DequantizeLinear')
  && n.inputs.slice(1).every((x) => !x || g.initializers.get(x)?.data.length === 1);

function rank4(g: Graph, v: string): boolean {
  // graph inputs have no valueTypes entry: a conv reading an fp16 model input directly is a conv too
  return (g.valueTypes.get(v) ?? g.inputs.find((i) => i.name === v)?.type)?.shape.length === 4;
}

export const channelsLast: Pass = {
  name: 'layout-nhwc', level: 2,
  run(g, ctx) {
    // fp32 convs run the SIMT kernels, which are as fast in NCHW; int8 convs (explicit QDQ models need no --fp16)
    // run only channels-last
    const int8Only = !ctx.options.fp16;
    if (int8Only && !g.nodes.some(isQConv)) return g;
    const fresh = nameGenerator(g);
    const nodes: Node[] = [];
    const transpose = (x: string, perm: number[], hint: string): [Node, string] => {
      const out = fresh(`${hint}_${perm.join('')}`);
      return [{ name: fresh(`transpose_${hint}`), op: 'Transpose', domain: '', inputs: [x], outputs: [out], attrs: { perm: { kind: 'ints', value: perm } } }, out];
    };
    let converted = 0;
    for (const n of g.nodes) {
      const isConv = CONV_OPS.has(n.op) && (n.domain === '' || n.domain === 'tsrt') && rank4(g, n.inputs[0])
        && !(n.attrs.layout?.kind === 'string' && n.attrs.layout.value === 'NHWC') && g.initializers.has(n.inputs[1]);
      const isOther = !int8Only && n.domain === '' && CHANNELS_LAST_OPS.includes(n.op) && rank4(g, n.inputs[0]) && n.outputs.filter(Boolean).length === 1;
      if ((!isConv || (int8Only && !isQConv(n))) && !isOther) { nodes.push(n); continue; }
      // activation inputs: X (and the residual Z of FusedConv)
      const act = isConv ? CONV_ACT_INPUTS[n.op] : [0];
      const inputs = [...n.inputs];
      for (const i of act) {
        if (!inputs[i]) continue;
        const [t, out] = transpose(inputs[i], toChannelsLast(4), `${n.name}_in${i}`);
        nodes.push(t);
        inputs[i] = out;
      }
      const y = fresh(`${n.outputs[0]}_nhwc`);
      // plain Conv becomes FusedConv (no epilogue), the conv op that knows about layouts
      nodes.push({
        ...n, op: n.op === 'Conv' ? 'FusedConv' : n.op, domain: 'tsrt', inputs, outputs: [y, ...n.outputs.slice(1)],
        attrs: { ...n.attrs, layout: { kind: 'string', value: 'NHWC' } },
      });
      const [back] = transpose(y, toChannelsFirst(4), `${n.name}_out`);
      nodes.push({ ...back, outputs: [n.outputs[0]] });
      converted++;
    }
    ctx.log(`layout-nhwc: ${converted} nodes channels-last`);
    let cur = cancelTransposes({ ...g, nodes });
    for (let i = 0; i < 64; i++) {
      const next = sinkTransposes(cur);
      if (next === cur) break;
      cur = cancelTransposes(next);
    }
    return cur;
  },
};

/** Transpose(p2)(Transpose(p1)(x)) with p1∘p2 = identity reads x directly; then dead transposes go. */
export function cancelTransposes(g: Graph): Graph {
  const producer = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) producer.set(o, n);
  const rename = new Map<string, string>();
  const outputs = new Set(g.outputs.map((o) => o.name));
  for (const n of g.nodes) {
    if (n.op !== 'Transpose' || n.domain !== '') continue;
    const p = producer.get(n.inputs[0]);
    if (!p || p.op !== 'Transpose' || p.domain !== '') continue;
    const p1 = attrInts(p, 'perm'), p2 = attrInts(n, 'perm');
    if (!p1 || !p2 || p1.length !== p2.length) continue;
    if (p2.every((v, i) => p1[v] === i) && !outputs.has(n.outputs[0])) rename.set(n.outputs[0], p.inputs[0]);
  }
  if (!rename.size) return g;
  const r = (x: string) => rename.get(x) ?? x;
  return eliminateDeadCode({ ...g, nodes: g.nodes.map((n) => ({ ...n, inputs: n.inputs.map(r) })) });
}

/** Moves a Transpose below an elementwise node whose every tensor input is transposed the same way (scalar
 * constants aside): op(T(a), T(b)) = T(op(a, b)). Repeated, this carries NHWC through residual adds so the
 * next conv's NCHW->NHWC transpose cancels. Returns `g` itself when nothing moved. */
export function sinkTransposes(g: Graph): Graph {
  const producer = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) producer.set(o, n);
  const outputs = new Set(g.outputs.map((o) => o.name));
  const fresh = nameGenerator(g);
  const isScalarConst = (x: string) => { const c = g.initializers.get(x); return !!c && c.data.length === 1; };
  for (let idx = 0; idx < g.nodes.length; idx++) {
    const n = g.nodes[idx];
    const ew = (n.domain === '' && ELEMENTWISE_OPS.has(n.op)) || (n.domain === 'tsrt' && n.op === 'Fused') || isPerTensorQdq(g, n);
    if (!ew || n.outputs.some((o) => outputs.has(o))) continue;
    let perm: number[] | undefined;
    let ok = true;
    const srcs = n.inputs.map((x) => {
      if (!x || isScalarConst(x)) return x;
      const p = producer.get(x);
      const pp = p && p.op === 'Transpose' && p.domain === '' ? attrInts(p, 'perm') : undefined;
      if (!pp || (perm && pp.join() !== perm.join()) || g.valueTypes.get(x)?.shape.length !== pp.length) { ok = false; return x; }
      perm = pp;
      return p!.inputs[0];
    });
    if (!ok || !perm || srcs.every((x, i) => x === n.inputs[i])) continue;
    // all tensor inputs must have the full output shape (no broadcasting across the permuted dims)
    const outShape = g.valueTypes.get(n.outputs[0])?.shape.join();
    if (n.inputs.some((x) => x && !isScalarConst(x) && g.valueTypes.get(x)?.shape.join() !== outShape)) continue;
    const inner = n.outputs.map((o) => fresh(`${o}_pre`));
    const moved: Node = { ...n, inputs: srcs, outputs: inner };
    const back: Node[] = n.outputs.map((o, k) => ({ name: fresh(`transpose_${n.name}_${k}`), op: 'Transpose', domain: '', inputs: [inner[k]], outputs: [o], attrs: { perm: { kind: 'ints', value: perm! } } }));
    const nodes = [...g.nodes.slice(0, idx), moved, ...back, ...g.nodes.slice(idx + 1)];
    const valueTypes = new Map(g.valueTypes);
    const src = srcs.find((x) => x && !isScalarConst(x))!;
    const srcShape = g.valueTypes.get(src)?.shape ?? g.initializers.get(src)?.dims;
    inner.forEach((v, k) => valueTypes.set(v, { dtype: g.valueTypes.get(n.outputs[k])!.dtype, shape: [...(srcShape ?? [])] }));
    return eliminateDeadCode({ ...g, nodes, valueTypes });
  }
  return g;
}
