// Cost model behind precision by timing (precision_timing.ts): the predicted GPU time of the int8 layers of an
// engine for a choice of which of them run int8 (the rest fp16), from their tuned kernel times and the bytes the
// int8/fp16 boundaries move. Pure: no GPU, no tuner.
//
// Boundaries follow quantize.ts (its rules are mirrored here, and test/precision-timing.test.ts checks the mirror
// against the pass for every choice on a branching graph):
//  - an int8 layer's output stays int8 (1 byte an element) when every reader is an int8 layer reading it as input
//    or residual, else it is written in its float type (fp16: 2 bytes) and each int8 reader's input is quantized
//    by a QuantizeLinear kernel (read the float tensor, write int8), once per tensor and scale;
//  - a MaxPool read only by such a layer, whose output only int8 layers read, runs on int8 (ResNet's stem).
// The tuned int8 kernel time was measured with the output and residual storage of the all-int8 engine; when a
// neighbour moves, that storage changes, and the difference in bytes is charged at the device bandwidth too.
//  - quantizing an fp32 graph input reads it directly; the fp16 Cast in front of it then runs no more when every
//    reader quantizes (charged as saved).
// Not modeled: kernel-launch gaps (the engine replays a CUDA graph) and L2 reuse between neighbouring kernels.
import { DTYPE_SIZE, size } from '../ir/tensor.js';
import type { Graph, Node } from '../ir/types.js';

/** An int8 layer as the quantize pass sees it: activation input, residual, output. */
export interface Site { name: string; x: string; z?: string; y: string }

export interface BoundaryGraph {
  /** The int8 layers the model chooses for (calibrated ones; explicit Q/DQ layers are not among them). */
  sites: Map<string, Site>;
  readers: Map<string, Node[]>;
  producers: Map<string, Node>;
  outputs: Set<string>;
  scaleOf(x: string): number | undefined;
  /** The tensor a quantization reads (an fp32 -> fp16 Cast in front of it is skipped, as quantize.ts does). */
  widest(x: string): string;
  elems(x: string): number;
  /** Bytes an element of `x` takes in the fp16 engine. */
  bytes(x: string): number;
}

/** The boundary graph of `pre`, the graph the quantize-int8 pass runs on (fused, fp16), for the int8 layers named
 * `layers`, with the calibration scales by tensor name. */
export function boundaryGraph(pre: Graph, layers: readonly string[], scales: Record<string, number>): BoundaryGraph {
  const producers = new Map<string, Node>();
  const readers = new Map<string, Node[]>();
  for (const n of pre.nodes) {
    for (const o of n.outputs) if (o) producers.set(o, n);
    for (const x of n.inputs) if (x) readers.set(x, [...(readers.get(x) ?? []), n]);
  }
  const type = (x: string) => pre.valueTypes.get(x) ?? pre.inputs.find((i) => i.name === x)?.type;
  const behindCasts = (x: string): string => {
    for (let p = producers.get(x); p && p.op === 'Cast' && p.domain === ''; p = producers.get(x)) x = p.inputs[0];
    return x;
  };
  const sites = new Map<string, Site>();
  const byName = new Map(pre.nodes.map((n) => [n.name, n]));
  for (const l of layers) {
    const n = byName.get(l);
    // Conv / FusedConv / Gemm / MatMul / FusedGemm: [x, w, bias, residual], as quantize.ts's candidate() reads them
    if (n) sites.set(l, { name: l, x: n.inputs[0], z: n.inputs[3] || undefined, y: n.outputs[0] });
  }
  return {
    sites, readers, producers, outputs: new Set(pre.outputs.map((o) => o.name)),
    scaleOf: (x) => scales[x] ?? scales[behindCasts(x)],
    widest: (x) => {
      const p = producers.get(x);
      if (!p || p.op !== 'Cast' || p.domain !== '' || type(x)?.dtype !== 'float16') return x;
      return type(p.inputs[0])?.dtype === 'float32' ? p.inputs[0] : x;
    },
    elems: (x) => {
      const s = type(x)?.shape;
      return s && s.every((d): d is number => typeof d === 'number') ? size(s) : 0;
    },
    bytes: (x) => DTYPE_SIZE[type(x)?.dtype ?? 'float16'] ?? 2,
  };
}

export interface Assignment {
  /** Tensors stored int8 (int8 layer outputs, int8 pools). */
  int8Values: Set<string>;
  /** Layers that requantize in their epilogue (int8 output). */
  int8Out: Set<string>;
  /** MaxPool nodes that run on int8. */
  int8Pools: Set<string>;
  /** QuantizeLinear kernels: key `tensor@scale` -> the tensor they read. */
  quantized: Map<string, string>;
  /** fp32 -> fp16 Casts (their outputs) left without readers: every reader quantizes the fp32 tensor instead. */
  deadCasts: Set<string>;
}

/** What quantize.ts makes of running exactly the layers in `S` int8. */
export function assign(b: BoundaryGraph, S: ReadonlySet<string>): Assignment {
  const readsAsInt8 = (v: string) => (r: Node) => {
    const s = S.has(r.name) ? b.sites.get(r.name) : undefined;
    return !!s && (s.x === v || s.z === v);
  };
  const allInt8Readers = (v: string) => {
    const rs = b.readers.get(v) ?? [];
    return b.scaleOf(v) !== undefined && !b.outputs.has(v) && rs.length > 0 && rs.every(readsAsInt8(v));
  };
  const int8Values = new Set<string>(), int8Out = new Set<string>(), int8Pools = new Set<string>();
  for (const l of S) {
    const s = b.sites.get(l);
    if (!s) continue;
    const rs = b.readers.get(s.y) ?? [];
    const pool = rs.length === 1 && !b.outputs.has(s.y) ? rs[0] : undefined;
    if (pool && pool.op === 'MaxPool' && pool.domain === '' && pool.outputs.length === 1 && pool.inputs[0] === s.y && allInt8Readers(pool.outputs[0])) {
      int8Values.add(s.y); int8Values.add(pool.outputs[0]); int8Out.add(l); int8Pools.add(pool.name);
    } else if (allInt8Readers(s.y)) {
      int8Values.add(s.y); int8Out.add(l);
    }
  }
  const quantized = new Map<string, string>();
  const skipped = new Set<string>();
  for (const l of S) {
    const s = b.sites.get(l);
    if (!s || int8Values.has(s.x)) continue;
    const w = b.widest(s.x);
    quantized.set(`${w}@${b.scaleOf(s.x)}`, w);
    if (w !== s.x) skipped.add(s.x);
  }
  const deadCasts = new Set([...skipped].filter((c) => !b.outputs.has(c) && (b.readers.get(c) ?? []).every((r) => {
    const s = S.has(r.name) ? b.sites.get(r.name) : undefined;
    return !!s && s.x === c && s.z !== c;
  })));
  return { int8Values, int8Out, int8Pools, quantized, deadCasts };
}

/** Bytes an int8 layer's output and residual take in its epilogue under `a`. */
function ioBytes(b: BoundaryGraph, s: Site, a: Assignment): number {
  const per = (v: string) => b.elems(v) * (a.int8Values.has(v) ? 1 : b.bytes(v));
  return per(s.y) + (s.z ? per(s.z) : 0);
}

/** Bytes of the pools next to int8 layers (a MaxPool reading a site's output): int8 or fp16 reads and writes. */
function poolBytes(b: BoundaryGraph, a: Assignment): number {
  let total = 0;
  for (const s of b.sites.values()) {
    const rs = b.readers.get(s.y) ?? [];
    if (rs.length !== 1 || rs[0].op !== 'MaxPool' || rs[0].domain !== '') continue;
    const p = rs[0].outputs[0];
    total += (b.elems(s.y) + b.elems(p)) * (a.int8Pools.has(rs[0].name) ? 1 : b.bytes(p));
  }
  return total;
}

export interface LayerTimes { int8Ms: number; fp16Ms: number }

export interface CostModel {
  b: BoundaryGraph;
  /** Tuned kernel times of the layers that may move. */
  times: Map<string, LayerTimes>;
  /** Bytes per ms the boundary tensors move at. */
  bytesPerMs: number;
}

/** Conversion bytes under `S` beyond what the measured int8 kernels already moved (they were timed with the
 * storage of the all-int8 engine `S0`). */
export function conversionBytes(m: CostModel, S: ReadonlySet<string>, base: Assignment): number {
  const a = assign(m.b, S);
  let bytes = 0;
  for (const l of S) {
    const s = m.b.sites.get(l);
    if (s) bytes += ioBytes(m.b, s, a) - ioBytes(m.b, s, base);
  }
  for (const x of a.quantized.values()) bytes += m.b.elems(x) * (m.b.bytes(x) + 1);
  // a graph input's fp16 Cast that no reader needs any more is not run (the fp16 engine runs it)
  for (const c of a.deadCasts) bytes -= m.b.elems(c) * (m.b.bytes(m.b.widest(c)) + m.b.bytes(c));
  return bytes + poolBytes(m.b, a);
}

/** Predicted ms of the movable layers' kernels plus the boundary conversions, when exactly `S` runs int8. */
export function predictMs(m: CostModel, S: ReadonlySet<string>, base: Assignment): { kernelMs: number; conversionMs: number } {
  let kernelMs = 0;
  for (const [l, t] of m.times) kernelMs += S.has(l) ? t.int8Ms : t.fp16Ms;
  return { kernelMs, conversionMs: conversionBytes(m, S, base) / m.bytesPerMs };
}

const EPS = 1e-9;

/** The int8 set with the lowest predicted time: steepest-descent single-layer flips of the movable layers, from
 * all-int8 and from each layer's faster kernel alone; the better end wins (all-int8's on a tie). Layers of the
 * model without times always stay int8. */
export function choosePrecisions(m: CostModel): { S: Set<string>; base: Assignment; initialMs: number; finalMs: number } {
  const all = new Set(m.b.sites.keys());
  const base = assign(m.b, all);
  const total = (S: ReadonlySet<string>) => { const p = predictMs(m, S, base); return p.kernelMs + p.conversionMs; };
  const movable = [...m.b.sites.keys()].filter((l) => m.times.has(l));
  const flip = (S: ReadonlySet<string>, l: string) => { const T = new Set(S); if (T.has(l)) T.delete(l); else T.add(l); return T; };
  const descend = (start: Set<string>): { S: Set<string>; ms: number } => {
    let S = start, cur = total(S);
    // each flip lowers the total, so this ends; the bound only guards against float ping-pong
    for (let it = 0; it < 4 * movable.length + 4; it++) {
      let best: { l: string; ms: number } | undefined;
      for (const l of movable) {
        const t = total(flip(S, l));
        if (t < cur - EPS && (!best || t < best.ms - EPS)) best = { l, ms: t };
      }
      if (!best) break;
      S = flip(S, best.l);
      cur = best.ms;
    }
    return { S, ms: cur };
  };
  const fromInt8 = descend(all);
  const kernelWise = new Set([...all].filter((l) => { const t = m.times.get(l); return !t || t.int8Ms <= t.fp16Ms; }));
  const fromKernels = descend(kernelWise);
  const best = fromKernels.ms < fromInt8.ms - EPS ? fromKernels : fromInt8;
  return { S: best.S, base, initialMs: total(all), finalMs: best.ms };
}

/** What moving `l` alone (in or out of `S`) changes in conversion time, ms: the boundary cost of that layer's
 * precision given the others'. Positive: running `l` fp16 costs that much more in conversions than int8. */
export function boundaryMsOf(m: CostModel, S: ReadonlySet<string>, base: Assignment, l: string): number {
  const withL = new Set(S); withL.add(l);
  const without = new Set(S); without.delete(l);
  return (conversionBytes(m, without, base) - conversionBytes(m, withL, base)) / m.bytesPerMs;
}
