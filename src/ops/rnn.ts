// Recurrent ops: RNN, GRU, LSTM. One driver walks directions, batches and time steps (sequence_lens, reverse,
// layout 0/1); each op supplies only its cell. Math runs in float64 and rounds to X's dtype at the end.
import { GraphError } from '../errors.js';
import { fromF64, shapeStr, toF64 } from '../ir/tensor.js';
import type { Dim, Node, Tensor, TensorType } from '../ir/types.js';
import { attrFloat, attrFloats, attrInt, attrString, attrStrings } from './attrs.js';
import { register, type OpDef } from './registry.js';
import { need } from './util.js';

type Act = (x: number) => number;

/** RNN activation functions; alpha/beta defaults are those of the ONNX op of the same name. */
const ACTIVATIONS: Record<string, { alpha?: number; beta?: number; make: (a: number, b: number) => Act }> = {
  relu: { make: () => (x) => (x > 0 ? x : 0) },
  tanh: { make: () => Math.tanh },
  sigmoid: { make: () => (x) => 1 / (1 + Math.exp(-x)) },
  affine: { alpha: 1, beta: 0, make: (a, b) => (x) => a * x + b },
  leakyrelu: { alpha: 0.01, make: (a) => (x) => (x >= 0 ? x : a * x) },
  thresholdedrelu: { alpha: 1, make: (a) => (x) => (x > a ? x : 0) },
  scaledtanh: { alpha: 1, beta: 1, make: (a, b) => (x) => a * Math.tanh(b * x) },
  hardsigmoid: { alpha: 0.2, beta: 0.5, make: (a, b) => (x) => Math.max(0, Math.min(1, a * x + b)) },
  elu: { alpha: 1, make: (a) => (x) => (x >= 0 ? x : a * (Math.exp(x) - 1)) },
  softsign: { make: () => (x) => x / (1 + Math.abs(x)) },
  softplus: { make: () => (x) => (x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x))) },
};

interface Family {
  op: string;
  /** Gate blocks in W/R (LSTM 4: i o f c, GRU 3: z r h, RNN 1). */
  gates: number;
  /** Default activation list for one direction. */
  acts: string[];
  outputs: number;
}

const DIRECTIONS: Record<string, number> = { forward: 1, reverse: 1, bidirectional: 2 };

/** Activation names for all directions, or a reason they are not usable. */
function activationNames(node: Node, fam: Family, dirs: number): string[] | string {
  const given = attrStrings(node, 'activations');
  if (!given) return Array.from({ length: dirs }, () => fam.acts).flat();
  // A single direction's list for a bidirectional node is applied to both (as ONNX Runtime accepts).
  const names = given.length === fam.acts.length && dirs === 2 ? [...given, ...given] : given;
  if (names.length !== fam.acts.length * dirs) {
    return `activations has ${given.length} entries, expected ${fam.acts.length * dirs} (${fam.acts.length} per direction)`;
  }
  const bad = names.find((a) => !ACTIVATIONS[a.toLowerCase()]);
  if (bad) return `activation '${bad}' is not one of ${Object.keys(ACTIVATIONS).join(', ')} (case-insensitive)`;
  return names;
}

/** Activation functions per direction; alpha/beta lists are consumed in order by the functions that take them. */
function activations(node: Node, fam: Family, dirs: number): Act[][] {
  const names = activationNames(node, fam, dirs);
  if (typeof names === 'string') throw new GraphError(names, node.name);
  const alphas = attrFloats(node, 'activation_alpha', []), betas = attrFloats(node, 'activation_beta', []);
  let ai = 0, bi = 0;
  const fns = names.map((name) => {
    const spec = ACTIVATIONS[name.toLowerCase()];
    const a = spec.alpha === undefined ? 0 : ai < alphas.length ? alphas[ai++] : spec.alpha;
    const b = spec.beta === undefined ? 0 : bi < betas.length ? betas[bi++] : spec.beta;
    return spec.make(a, b);
  });
  return Array.from({ length: dirs }, (_, d) => fns.slice(d * fam.acts.length, (d + 1) * fam.acts.length));
}

function supportsRnn(fam: Family) {
  return (node: Node): string | undefined => {
    const dir = attrString(node, 'direction', 'forward');
    if (!(dir in DIRECTIONS)) return `direction '${dir}' is not forward, reverse or bidirectional`;
    const layout = attrInt(node, 'layout', 0);
    if (layout !== 0 && layout !== 1) return `layout ${layout} is not 0 or 1`;
    const names = activationNames(node, fam, DIRECTIONS[dir]);
    return typeof names === 'string' ? names : undefined;
  };
}

function inferRnn(fam: Family) {
  return (node: Node, ins: (TensorType | undefined)[]): TensorType[] => {
    const x = need(node, ins, 0);
    if (x.shape.length !== 3) throw new GraphError(`X has shape ${shapeStr(x.shape)}, expected rank 3`, node.name);
    const layout = attrInt(node, 'layout', 0);
    const dirs = DIRECTIONS[attrString(node, 'direction', 'forward')] ?? 1;
    const r = ins[2];
    const hidden: Dim = attrInt(node, 'hidden_size') ?? r?.shape[2] ?? '?';
    const [seq, batch] = layout ? [x.shape[1], x.shape[0]] : [x.shape[0], x.shape[1]];
    const y: Dim[] = layout ? [batch, seq, dirs, hidden] : [seq, dirs, batch, hidden];
    const state: Dim[] = layout ? [batch, dirs, hidden] : [dirs, batch, hidden];
    return [{ dtype: x.dtype, shape: y }, ...Array.from({ length: fam.outputs - 1 }, () => ({ dtype: x.dtype, shape: [...state] }))];
  };
}

/** One time step of a cell: reads gate pre-activations (x W^T + Wb, already summed), the previous state and the
 * direction's recurrent weights; writes the new hidden (and cell) state. */
type Cell = (gx: Float64Array, h: Float64Array, c: Float64Array, d: number, nh: Float64Array, nc: Float64Array) => void;

interface RnnInputs {
  node: Node; H: number; dirs: number; gates: number;
  R: Float64Array; Rb: Float64Array; P?: Float64Array; acts: Act[][]; clip?: number;
}

/** Shared driver: walks each direction over each batch entry's valid steps and assembles Y, Y_h (and Y_c). */
function runRnn(fam: Family, node: Node, ins: (Tensor | undefined)[], makeCell: (p: RnnInputs) => Cell): Tensor[] {
  const X = need(node, ins, 0), Wt = need(node, ins, 1), Rt = need(node, ins, 2);
  const layout = attrInt(node, 'layout', 0);
  const direction = attrString(node, 'direction', 'forward');
  const dirs = DIRECTIONS[direction];
  if (!dirs) throw new GraphError(`direction '${direction}' is not forward, reverse or bidirectional`, node.name);
  if (X.dims.length !== 3) throw new GraphError(`X has shape ${shapeStr(X.dims)}, expected rank 3`, node.name);
  const [S, B, I] = layout ? [X.dims[1], X.dims[0], X.dims[2]] : X.dims;
  const G = fam.gates;
  const H = attrInt(node, 'hidden_size') ?? Rt.dims[2];
  const expect = (t: Tensor | undefined, name: string, dims: number[]) => {
    if (t && (t.dims.length !== dims.length || t.dims.some((d, i) => d !== dims[i]))) {
      throw new GraphError(`${name} has shape ${shapeStr(t.dims)}, expected ${shapeStr(dims)}`, node.name,
        `check hidden_size (${H}), direction (${direction}) and layout (${layout})`);
    }
  };
  expect(Wt, 'W', [dirs, G * H, I]);
  expect(Rt, 'R', [dirs, G * H, H]);
  expect(ins[3], 'B', [dirs, 2 * G * H]);
  expect(ins[4], 'sequence_lens', [B]);
  const stateDims = layout ? [B, dirs, H] : [dirs, B, H];
  expect(ins[5], 'initial_h', stateDims);
  if (fam.op === 'LSTM') { expect(ins[6], 'initial_c', stateDims); expect(ins[7], 'P', [dirs, 3 * H]); }

  const x = toF64(X), W = toF64(Wt), R = toF64(Rt);
  const bias = ins[3] ? toF64(ins[3]) : new Float64Array(dirs * 2 * G * H);
  const lens = ins[4] ? Array.from(toF64(ins[4])) : new Array<number>(B).fill(S);
  lens.forEach((l, b) => {
    if (l < 0 || l > S) throw new GraphError(`sequence_lens[${b}] = ${l} is outside 0..${S}`, node.name);
  });
  const h0 = ins[5] ? toF64(ins[5]) : undefined;
  const c0 = fam.op === 'LSTM' && ins[6] ? toF64(ins[6]) : undefined;
  const P = fam.op === 'LSTM' && ins[7] ? toF64(ins[7]) : undefined;
  const clip = attrFloat(node, 'clip');
  const acts = activations(node, fam, dirs);
  const Rb = new Float64Array(dirs * G * H);
  for (let d = 0; d < dirs; d++) Rb.set(bias.subarray((2 * d + 1) * G * H, (2 * d + 2) * G * H), d * G * H);
  const cell = makeCell({ node, H, dirs, gates: G, R, Rb, P, acts, clip });

  const Y = new Float64Array(S * dirs * B * H);
  const Yh = new Float64Array(dirs * B * H), Yc = new Float64Array(dirs * B * H);
  const yAt = (t: number, d: number, b: number) => (layout ? ((b * S + t) * dirs + d) * H : ((t * dirs + d) * B + b) * H);
  const stateAt = (d: number, b: number) => (layout ? (b * dirs + d) * H : (d * B + b) * H);
  const gx = new Float64Array(G * H);
  let h = new Float64Array(H), c = new Float64Array(H), nh = new Float64Array(H), nc = new Float64Array(H);
  for (let d = 0; d < dirs; d++) {
    const reverse = direction === 'reverse' || d === 1;
    const Wd = W.subarray(d * G * H * I, (d + 1) * G * H * I);
    const Wb = bias.subarray(2 * d * G * H, (2 * d + 1) * G * H);
    for (let b = 0; b < B; b++) {
      const s0 = stateAt(d, b);
      if (h0) h.set(h0.subarray(s0, s0 + H)); else h.fill(0);
      if (c0) c.set(c0.subarray(s0, s0 + H)); else c.fill(0);
      for (let k = 0; k < lens[b]; k++) {
        const t = reverse ? lens[b] - 1 - k : k;
        const xo = layout ? (b * S + t) * I : (t * B + b) * I;
        for (let r = 0; r < G * H; r++) {
          let acc = Wb[r];
          const wo = r * I;
          for (let i = 0; i < I; i++) acc += x[xo + i] * Wd[wo + i];
          gx[r] = acc;
        }
        cell(gx, h, c, d, nh, nc);
        [h, nh] = [nh, h];
        [c, nc] = [nc, c];
        Y.set(h, yAt(t, d, b));
      }
      Yh.set(h, s0);
      Yc.set(c, s0);
    }
  }
  const yDims = layout ? [B, S, dirs, H] : [S, dirs, B, H];
  const outs = [fromF64(X.dtype, yDims, Y), fromF64(X.dtype, stateDims, Yh)];
  if (fam.op === 'LSTM') outs.push(fromF64(X.dtype, stateDims, Yc));
  return outs;
}

/** acc[r] += sum_k h[k] * R[d][r][k] for rows r of gate block `g`. */
function recur(out: Float64Array, p: RnnInputs, d: number, g: number, h: Float64Array): void {
  const { H, gates, R } = p;
  for (let j = 0; j < H; j++) {
    const row = (d * gates * H + g * H + j) * H;
    let acc = 0;
    for (let k = 0; k < H; k++) acc += h[k] * R[row + k];
    out[j] = acc;
  }
}

const clipper = (clip: number | undefined) => (clip === undefined ? (v: number) => v : (v: number) => Math.max(-clip, Math.min(clip, v)));

const RNN_FAMILY: Family = { op: 'RNN', gates: 1, acts: ['Tanh'], outputs: 2 };
const GRU_FAMILY: Family = { op: 'GRU', gates: 3, acts: ['Sigmoid', 'Tanh'], outputs: 2 };
const LSTM_FAMILY: Family = { op: 'LSTM', gates: 4, acts: ['Sigmoid', 'Tanh', 'Tanh'], outputs: 3 };

function rnnCell(p: RnnInputs): Cell {
  const { H, Rb, acts } = p;
  const cl = clipper(p.clip);
  const hr = new Float64Array(H);
  return (gx, h, _c, d, nh) => {
    const [f] = acts[d];
    recur(hr, p, d, 0, h);
    for (let j = 0; j < H; j++) nh[j] = f(cl(gx[j] + hr[j] + Rb[d * H + j]));
  };
}

function gruCell(p: RnnInputs): Cell {
  const { H, Rb, acts } = p;
  const cl = clipper(p.clip);
  const linearBeforeReset = attrInt(p.node, 'linear_before_reset', 0) !== 0;
  const hz = new Float64Array(H), hr = new Float64Array(H), hh = new Float64Array(H), rh = new Float64Array(H);
  const z = new Float64Array(H), r = new Float64Array(H);
  return (gx, h, _c, d, nh) => {
    const [f, g] = acts[d];
    const rb = d * 3 * H;
    recur(hz, p, d, 0, h);
    recur(hr, p, d, 1, h);
    for (let j = 0; j < H; j++) {
      z[j] = f(cl(gx[j] + hz[j] + Rb[rb + j]));
      r[j] = f(cl(gx[H + j] + hr[j] + Rb[rb + H + j]));
    }
    if (linearBeforeReset) {
      recur(hh, p, d, 2, h);
      for (let j = 0; j < H; j++) hh[j] = r[j] * (hh[j] + Rb[rb + 2 * H + j]);
    } else {
      for (let j = 0; j < H; j++) rh[j] = r[j] * h[j];
      recur(hh, p, d, 2, rh);
      for (let j = 0; j < H; j++) hh[j] += Rb[rb + 2 * H + j];
    }
    for (let j = 0; j < H; j++) {
      const cand = g(cl(gx[2 * H + j] + hh[j]));
      nh[j] = (1 - z[j]) * cand + z[j] * h[j];
    }
  };
}

function lstmCell(p: RnnInputs): Cell {
  const { H, Rb, acts, P } = p;
  const cl = clipper(p.clip);
  const inputForget = attrInt(p.node, 'input_forget', 0) !== 0;
  const hg = [0, 1, 2, 3].map(() => new Float64Array(H));
  return (gx, h, c, d, nh, nc) => {
    const [f, g, hAct] = acts[d];
    for (let k = 0; k < 4; k++) recur(hg[k], p, d, k, h);
    const rb = d * 4 * H, pb = d * 3 * H;
    // Gate blocks in W, R and B are ordered i, o, f, c; peepholes in P are ordered i, o, f.
    for (let j = 0; j < H; j++) {
      const pre = (k: number) => gx[k * H + j] + hg[k][j] + Rb[rb + k * H + j];
      const i = f(cl(pre(0) + (P ? P[pb + j] * c[j] : 0)));
      const fg = inputForget ? 1 - i : f(cl(pre(2) + (P ? P[pb + 2 * H + j] * c[j] : 0)));
      const cand = g(cl(pre(3)));
      nc[j] = fg * c[j] + i * cand;
      const o = f(cl(pre(1) + (P ? P[pb + H + j] * nc[j] : 0)));
      nh[j] = o * hAct(nc[j]);
    }
  };
}

function rnnOp(fam: Family, makeCell: (p: RnnInputs) => Cell): OpDef {
  return {
    op: fam.op, since: 1, precision: 'follow',
    supports: supportsRnn(fam),
    infer: inferRnn(fam),
    cpu: (node, ins) => runRnn(fam, node, ins, makeCell),
  };
}

register(
  rnnOp(RNN_FAMILY, rnnCell),
  rnnOp(GRU_FAMILY, gruCell),
  rnnOp(LSTM_FAMILY, lstmCell),
);
