// Layered (Sugiyama-style) drawing of a graph as inline SVG, for `tsrt report` (no Graphviz on most machines):
// longest-path layering, dummy nodes on edges that skip layers (so edges route between boxes, never through
// them), barycenter ordering sweeps to cut crossings, and a block-merging x placement that puts each node near
// the mean of its neighbours without overlaps. Layers stack vertically: a 200-node ResNet is tall, not wide.
import { shapeStr } from '../ir/tensor.js';
import type { Graph } from '../ir/types.js';

export interface SvgOptions {
  /** Extra CSS class per node name (e.g. 'host' for layers that fall back to the CPU). */
  classOf?: (nodeName: string) => string | undefined;
  /** Shown as the box's tooltip in addition to op and name. */
  titleOf?: (nodeName: string) => string | undefined;
  /** id prefix, so two drawings can share one HTML page. */
  id?: string;
}

interface LNode {
  key: string;
  kind: 'input' | 'op' | 'output' | 'dummy';
  lines: string[];
  title: string;
  cls: string;
  w: number;
  h: number;
  layer: number;
  order: number;
  x: number;
}

const CHAR_W = 6.6;       // 11px monospace advance width
const LINE_H = 13;
const MAX_CHARS = 34;
const ROW_GAP = 34;        // vertical room for edges between layers
const COL_GAP = 14;
const DUMMY_W = 4;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const clip = (s: string) => (s.length > MAX_CHARS ? s.slice(0, MAX_CHARS - 1) + '\u2026' : s);

/** Colour class by op family, so convs, matmuls, fused groups and data movement read apart at a glance. */
function family(op: string, domain: string): string {
  if (domain === 'tsrt') return 'fused';
  if (/Conv|Gemm|MatMul|Attention|Einsum/.test(op)) return 'mm';
  if (/Pool|Reduce|Softmax|Norm|ArgM/.test(op)) return 'red';
  if (/Reshape|Transpose|Concat|Slice|Split|Gather|Squeeze|Flatten|Shape|Expand|Pad|Tile|Identity|Cast|Resize/.test(op)) return 'mov';
  return 'ew';
}

function makeNode(key: string, kind: LNode['kind'], lines: string[], title: string, cls: string): LNode {
  const clipped = lines.map(clip);
  const w = kind === 'dummy' ? DUMMY_W : Math.max(70, Math.ceil(Math.max(...clipped.map((l) => l.length)) * CHAR_W) + 16);
  const h = kind === 'dummy' ? 0 : clipped.length * LINE_H + 10;
  return { key, kind, lines: clipped, title, cls, w, h, layer: 0, order: 0, x: 0 };
}

/** Draws `g` as an SVG element string: one `<g class="node ...">` per graph node, inputs and outputs as
 * rounded pills, edges as paths. Deterministic for a given graph. */
export function graphToSvg(g: Graph, opts: SvgOptions = {}): string {
  const nodes: LNode[] = [];
  const byKey = new Map<string, LNode>();
  const add = (n: LNode) => { nodes.push(n); byKey.set(n.key, n); return n; };
  const typeOf = (v: string) => g.valueTypes.get(v) ?? g.inputs.find((i) => i.name === v)?.type ?? g.outputs.find((o) => o.name === v)?.type;
  const producer = new Map<string, string>();

  for (const vi of g.inputs) {
    add(makeNode(`in:${vi.name}`, 'input', [vi.name, `${vi.type.dtype}${shapeStr(vi.type.shape)}`], `input ${vi.name}`, 'io'));
    producer.set(vi.name, `in:${vi.name}`);
  }
  for (const n of g.nodes) {
    const op = n.domain ? `${n.domain}::${n.op}` : n.op;
    const act = n.attrs.activation?.kind === 'string' ? ` +${n.attrs.activation.value}` : '';
    const t = n.outputs[0] ? typeOf(n.outputs[0]) : undefined;
    const lines = [op + act, n.name];
    if (t) lines.push(`${t.dtype}${shapeStr(t.shape)}`);
    const extra = opts.titleOf?.(n.name);
    const cls = ['node', family(n.op, n.domain), opts.classOf?.(n.name)].filter(Boolean).join(' ');
    add(makeNode(`n:${n.name}`, 'op', lines, `${op} ${n.name}${t ? ' -> ' + lines[2] : ''}${extra ? '\n' + extra : ''}`, cls));
    for (const o of n.outputs) if (o) producer.set(o, `n:${n.name}`);
  }
  for (const vi of g.outputs) add(makeNode(`out:${vi.name}`, 'output', [vi.name], `output ${vi.name}`, 'io'));

  // Edges between real nodes (constants are not drawn: they would double the box count for nothing).
  const edges: [string, string][] = [];
  const seen = new Set<string>();
  const edge = (a: string | undefined, b: string) => {
    if (!a || seen.has(`${a}>${b}`)) return;
    seen.add(`${a}>${b}`);
    edges.push([a, b]);
  };
  for (const n of g.nodes) for (const x of n.inputs) if (x) edge(producer.get(x), `n:${n.name}`);
  for (const vi of g.outputs) edge(producer.get(vi.name), `out:${vi.name}`);

  // Longest-path layering over a topological order (Kahn); nodes left on a cycle (a malformed graph) go last.
  const succ = new Map<string, string[]>(nodes.map((n) => [n.key, []]));
  const indeg = new Map<string, number>(nodes.map((n) => [n.key, 0]));
  for (const [a, b] of edges) { succ.get(a)!.push(b); indeg.set(b, indeg.get(b)! + 1); }
  const queue = nodes.filter((n) => indeg.get(n.key) === 0).map((n) => n.key);
  const topo = new Set<string>();
  while (queue.length) {
    const k = queue.shift()!;
    topo.add(k);
    for (const s of succ.get(k)!) {
      byKey.get(s)!.layer = Math.max(byKey.get(s)!.layer, byKey.get(k)!.layer + 1);
      indeg.set(s, indeg.get(s)! - 1);
      if (indeg.get(s) === 0) queue.push(s);
    }
  }
  const maxLayer = Math.max(0, ...nodes.map((n) => n.layer));
  for (const n of nodes) if (!topo.has(n.key)) n.layer = maxLayer + 1;

  // Split long edges into unit-length chains through dummy nodes.
  const chains: string[][] = [];
  let dummies = 0;
  for (const [a, b] of edges) {
    const la = byKey.get(a)!.layer, lb = byKey.get(b)!.layer;
    const chain = [a];
    for (let l = la + 1; l < lb; l++) {
      const d = add(makeNode(`d:${dummies++}`, 'dummy', [], '', ''));
      d.layer = l;
      chain.push(d.key);
    }
    chain.push(b);
    if (lb > la) chains.push(chain);
  }
  const up = new Map<string, string[]>(nodes.map((n) => [n.key, []]));
  const down = new Map<string, string[]>(nodes.map((n) => [n.key, []]));
  for (const c of chains) for (let i = 0; i + 1 < c.length; i++) { down.get(c[i])!.push(c[i + 1]); up.get(c[i + 1])!.push(c[i]); }

  const layers: LNode[][] = [];
  for (const n of nodes) (layers[n.layer] ??= []).push(n);
  for (let l = 0; l < layers.length; l++) layers[l] ??= [];
  layers.forEach((row) => row.forEach((n, i) => { n.order = i; }));

  // Barycenter sweeps: order each layer by the mean position of its neighbours in the layer just fixed.
  const sortBy = (row: LNode[], nbrs: Map<string, string[]>) => {
    const bc = new Map(row.map((n) => {
      const ns = nbrs.get(n.key)!;
      return [n.key, ns.length ? ns.reduce((a, k) => a + byKey.get(k)!.order, 0) / ns.length : n.order] as const;
    }));
    row.sort((a, b) => bc.get(a.key)! - bc.get(b.key)! || a.order - b.order);
    row.forEach((n, i) => { n.order = i; });
  };
  for (let it = 0; it < 6; it++) {
    for (let l = 1; l < layers.length; l++) sortBy(layers[l], up);
    for (let l = layers.length - 2; l >= 0; l--) sortBy(layers[l], down);
  }

  // x placement: start packed, then alternately pull each layer toward its neighbours' centres.
  for (const row of layers) { let x = 0; for (const n of row) { n.x = x + n.w / 2; x += n.w + COL_GAP; } }
  const place = (row: LNode[], nbrs: Map<string, string[]>) => {
    const want = row.map((n) => {
      const ns = nbrs.get(n.key)!;
      return ns.length ? ns.reduce((a, k) => a + byKey.get(k)!.x, 0) / ns.length : n.x;
    });
    placeRow(row, want);
  };
  for (let it = 0; it < 8; it++) {
    for (let l = 1; l < layers.length; l++) place(layers[l], up);
    for (let l = layers.length - 2; l >= 0; l--) place(layers[l], down);
  }
  const minX = Math.min(...nodes.map((n) => n.x - n.w / 2));
  const margin = 12;
  for (const n of nodes) n.x += margin - minX;
  const width = Math.ceil(Math.max(...nodes.map((n) => n.x + n.w / 2)) + margin);

  // y: each layer is as tall as its tallest box.
  const rowTop: number[] = [];
  const rowH = layers.map((row) => Math.max(LINE_H, ...row.map((n) => n.h)));
  let y = margin;
  for (let l = 0; l < layers.length; l++) { rowTop[l] = y; y += rowH[l] + ROW_GAP; }
  const height = Math.ceil(y - ROW_GAP + margin);
  const top = (n: LNode) => rowTop[n.layer] + (rowH[n.layer] - n.h) / 2;

  const id = opts.id ?? 'g';
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" class="graph" id="${esc(id)}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`);
  out.push(`<defs><marker id="${esc(id)}-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" class="arrowhead"/></marker></defs>`);
  out.push('<g class="edges">');
  for (const c of chains) {
    const pts: [number, number][] = [];
    c.forEach((k, i) => {
      const n = byKey.get(k)!;
      if (n.kind === 'dummy') { pts.push([n.x, rowTop[n.layer]], [n.x, rowTop[n.layer] + rowH[n.layer]]); return; }
      pts.push([n.x, i === 0 ? top(n) + n.h : top(n)]);
    });
    let d = `M${pts[0][0].toFixed(1)},${pts[0][1].toFixed(1)}`;
    for (let i = 1; i < pts.length; i++) {
      const [x0, y0] = pts[i - 1], [x1, y1] = pts[i];
      if (x0 === x1) { d += ` L${x1.toFixed(1)},${y1.toFixed(1)}`; continue; }
      const ym = (y0 + y1) / 2;
      d += ` C${x0.toFixed(1)},${ym.toFixed(1)} ${x1.toFixed(1)},${ym.toFixed(1)} ${x1.toFixed(1)},${y1.toFixed(1)}`;
    }
    out.push(`<path d="${d}" marker-end="url(#${esc(id)}-arrow)"/>`);
  }
  out.push('</g>');
  for (const n of nodes) {
    if (n.kind === 'dummy') continue;
    const x = n.x - n.w / 2, t = top(n);
    const cls = n.kind === 'op' ? n.cls : `node io ${n.kind}`;
    const rx = n.kind === 'op' ? 4 : n.h / 2;
    out.push(`<g class="${cls}" data-name="${esc(n.key.slice(n.key.indexOf(':') + 1))}"><title>${esc(n.title)}</title>`
      + `<rect x="${x.toFixed(1)}" y="${t.toFixed(1)}" width="${n.w}" height="${n.h}" rx="${rx}"/>`
      + n.lines.map((l, i) => `<text x="${n.x.toFixed(1)}" y="${(t + 5 + LINE_H * (i + 1) - 3).toFixed(1)}"${i === 0 ? ' class="op"' : ''}>${esc(l)}</text>`).join('')
      + '</g>');
  }
  out.push('</svg>');
  return out.join('\n');
}

/** Places a layer's boxes in their given order as close as possible (least squares) to the wanted centres without
 * overlap: boxes that would collide merge into a block centred on the mean of their wishes (pool adjacent
 * violators), which keeps chains straight and centres a parent over its children. */
function placeRow(row: LNode[], want: number[]): void {
  interface Block { first: number; last: number; width: number; sum: number; count: number; pos: number }
  const blocks: Block[] = [];
  row.forEach((n, i) => {
    // offset of box i's centre from its block's left edge is fixed once merged; track wish - offset
    let b: Block = { first: i, last: i, width: n.w, sum: want[i] - n.w / 2, count: 1, pos: 0 };
    b.pos = b.sum / b.count;
    while (blocks.length) {
      const p = blocks[blocks.length - 1];
      if (p.pos + p.width + COL_GAP <= b.pos) break;
      blocks.pop();
      const shift = p.width + COL_GAP; // b's boxes sit this far right of p's left edge
      b = { first: p.first, last: b.last, width: p.width + COL_GAP + b.width, sum: p.sum + b.sum - shift * b.count, count: p.count + b.count, pos: 0 };
      b.pos = b.sum / b.count;
    }
    blocks.push(b);
  });
  for (const b of blocks) {
    let x = b.pos;
    for (let i = b.first; i <= b.last; i++) { row[i].x = x + row[i].w / 2; x += row[i].w + COL_GAP; }
  }
}
