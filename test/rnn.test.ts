// RNN, GRU and LSTM CPU references against ONNX Runtime over the attribute space (directions, sequence_lens,
// initial states, peepholes, clip, input_forget, layout, custom activations), plus shape inference.
import { describe, expect, it } from 'vitest';
import { compareWithOrt, diff, f32, i32, modelBytes, rand, runOrt, runTsrt, type AttrSpec, type GraphSpec } from './rnn-control.build.js';
import { transposeTensor } from '../src/ops/util.js';
import { parseModel } from '../src/onnx/import.js';
import { inferShapes } from '../src/ir/infer.js';
import { runModelCpu } from '../src/runtime/cpu_executor.js';
import { makeTensor, toF64 } from '../src/ir/tensor.js';
import type { Tensor } from '../src/ir/types.js';

const GATES = { RNN: 1, GRU: 3, LSTM: 4 } as const;

interface Case {
  op: keyof typeof GATES;
  S: number; B: number; I: number; H: number;
  direction?: 'forward' | 'reverse' | 'bidirectional';
  layout?: 0 | 1;
  bias?: boolean; lens?: number[]; h0?: boolean; c0?: boolean; peep?: boolean;
  attrs?: Record<string, AttrSpec>;
  outputs?: string[];
  opset?: number;
}

/** Builds the model (weights as initializers) and its feeds. */
function build(c: Case): { g: GraphSpec; feeds: Record<string, Tensor>; opset: number } {
  const D = c.direction === 'bidirectional' ? 2 : 1;
  const G = GATES[c.op];
  const layout = c.layout ?? 0;
  const inits: Record<string, Tensor> = {
    W: rand('float32', [D, G * c.H, c.I], 11, -0.6, 0.6),
    R: rand('float32', [D, G * c.H, c.H], 12, -0.6, 0.6),
  };
  const feeds: Record<string, Tensor> = { X: rand('float32', layout ? [c.B, c.S, c.I] : [c.S, c.B, c.I], 13, -2, 2) };
  const inputs = ['X', 'W', 'R', '', '', '', '', ''];
  if (c.bias) { inits.B = rand('float32', [D, 2 * G * c.H], 14, -0.5, 0.5); inputs[3] = 'B'; }
  if (c.lens) { feeds.L = i32([c.B], c.lens); inputs[4] = 'L'; }
  const state = layout ? [c.B, D, c.H] : [D, c.B, c.H];
  if (c.h0) { feeds.H0 = rand('float32', state, 15); inputs[5] = 'H0'; }
  if (c.c0) { feeds.C0 = rand('float32', state, 16); inputs[6] = 'C0'; }
  if (c.peep) { inits.P = rand('float32', [D, 3 * c.H], 17, -0.5, 0.5); inputs[7] = 'P'; }
  while (inputs[inputs.length - 1] === '') inputs.pop();
  const outputs = c.outputs ?? (c.op === 'LSTM' ? ['Y', 'Y_h', 'Y_c'] : ['Y', 'Y_h']);
  const graphIns: GraphSpec['inputs'] = Object.entries(feeds).map(([k, t]) => [k, t.dtype, t.dims]);
  const g: GraphSpec = {
    inputs: graphIns,
    outputs: outputs.filter((o) => o).map((o) => [o, 'float32']),
    inits,
    nodes: [{
      op: c.op, inputs, outputs,
      attrs: {
        hidden_size: { i: c.H },
        ...(c.direction ? { direction: { s: c.direction } } : {}),
        ...(c.layout ? { layout: { i: c.layout } } : {}),
        ...c.attrs,
      },
    }],
  };
  return { g, feeds, opset: c.opset ?? 14 };
}

const slice = (t: Tensor, at: number, n: number): Tensor => f32([n], Array.from(toF64(t)).slice(at, at + n));

/** Swaps the first two axes (seq <-> batch). */
const swap01 = (t: Tensor): Tensor => transposeTensor(t, [1, 0, ...t.dims.slice(2).map((_, i) => i + 2)]);

/** Differences between a layout-1 run and the layout-0 run of the same data. */
function layoutMismatch(c: Case): string[] {
  const base = build({ ...c, layout: 0 });
  const outs0 = runTsrt(modelBytes(base.g, base.opset), base.feeds);
  const b1 = build({ ...c, layout: 1 });
  const feeds1: Record<string, Tensor> = { ...base.feeds, X: swap01(base.feeds.X) };
  for (const k of ['H0', 'C0']) if (base.feeds[k]) feeds1[k] = swap01(base.feeds[k]);
  const outs1 = runTsrt(modelBytes(b1.g, b1.opset), feeds1);
  // Y: [S, D, B, H] -> [B, S, D, H]; states: [D, B, H] -> [B, D, H].
  const want = [transposeTensor(outs0[0], [2, 0, 1, 3]), ...outs0.slice(1).map(swap01)];
  return want.map((w, k) => diff(outs1[k], w, 0, 0)).filter((x): x is string => !!x);
}

async function check(c: Case): Promise<string[]> {
  const { g, feeds, opset } = build(c);
  return compareWithOrt(g, opset, feeds);
}

describe('LSTM', () => {
  it('forward with defaults (no bias, zero state)', async () => {
    expect(await check({ op: 'LSTM', S: 4, B: 2, I: 3, H: 5 })).toEqual([]);
  });
  it('forward with bias, initial_h/initial_c and omitted sequence_lens (silero form)', async () => {
    expect(await check({ op: 'LSTM', S: 1, B: 1, I: 8, H: 6, bias: true, h0: true, c0: true })).toEqual([]);
  });
  it('reverse with sequence_lens', async () => {
    expect(await check({ op: 'LSTM', S: 5, B: 3, I: 2, H: 4, direction: 'reverse', bias: true, lens: [5, 2, 3], h0: true, c0: true })).toEqual([]);
  });
  it('bidirectional with peepholes and sequence_lens', async () => {
    expect(await check({ op: 'LSTM', S: 4, B: 3, I: 3, H: 4, direction: 'bidirectional', bias: true, peep: true, lens: [4, 1, 3], h0: true, c0: true })).toEqual([]);
  });
  it('clip bounds gate pre-activations', async () => {
    expect(await check({ op: 'LSTM', S: 3, B: 2, I: 3, H: 4, bias: true, h0: true, attrs: { clip: { f: 0.4 } } })).toEqual([]);
  });
  it('input_forget couples the forget gate to the input gate', async () => {
    expect(await check({ op: 'LSTM', S: 3, B: 2, I: 3, H: 4, bias: true, peep: true, attrs: { input_forget: { i: 1 } } })).toEqual([]);
  });
  it('layout 1 (batch first) equals layout 0 on transposed data', () => {
    // ONNX Runtime rejects layout=1, so compare against tsrt's own layout-0 result, which matches ONNX Runtime above.
    expect(layoutMismatch({ op: 'LSTM', S: 3, B: 2, I: 3, H: 4, direction: 'bidirectional', bias: true, h0: true, c0: true, lens: [3, 2] })).toEqual([]);
  });
  it('custom activations consume activation_alpha/beta in order', async () => {
    const attrs = {
      activations: { strings: ['HardSigmoid', 'LeakyRelu', 'Tanh', 'Sigmoid', 'ScaledTanh', 'Softsign'] },
      activation_alpha: { floats: [0.3, 0.05, 1.5] }, activation_beta: { floats: [0.45, 0.7] },
    };
    expect(await check({ op: 'LSTM', S: 3, B: 2, I: 3, H: 4, direction: 'bidirectional', bias: true, attrs })).toEqual([]);
  });
  it('only Y_h requested (Y and Y_c omitted)', async () => {
    expect(await check({ op: 'LSTM', S: 3, B: 2, I: 3, H: 4, bias: true, outputs: ['', 'Y_h'] })).toEqual([]);
  });
  it('sequence_lens of 0 keeps the initial state (ONNX reference) and outputs zeros', async () => {
    // ONNX Runtime zeroes Y_h/Y_c for empty sequences; the ONNX reference implementation keeps the initial state,
    // which is what tsrt follows. Batch entry 1 (full length) must still match ONNX Runtime.
    const { g, feeds, opset } = build({ op: 'LSTM', S: 3, B: 2, I: 2, H: 3, bias: true, lens: [0, 3], h0: true, c0: true });
    const bytes = modelBytes(g, opset);
    const [y, yh, yc] = runTsrt(bytes, feeds);
    const [ey, eyh, eyc] = await runOrt(bytes, feeds);
    const f = (t: Tensor) => Array.from(toF64(t));
    // Y is [S, 1, B, H]: batch 0 rows are zero, batch 1 rows match.
    for (let t = 0; t < 3; t++) {
      expect(f(y).slice(t * 6, t * 6 + 3)).toEqual([0, 0, 0]);
      expect(diff(slice(y, t * 6 + 3, 3), slice(ey, t * 6 + 3, 3))).toBeUndefined();
    }
    expect(Array.from(toF64(yh)).slice(0, 3)).toEqual(f(feeds.H0).slice(0, 3));
    expect(Array.from(toF64(yc)).slice(0, 3)).toEqual(f(feeds.C0).slice(0, 3));
    expect(diff(slice(yh, 3, 3), slice(eyh, 3, 3))).toBeUndefined();
    expect(diff(slice(yc, 3, 3), slice(eyc, 3, 3))).toBeUndefined();
  });
});

describe('GRU', () => {
  it('forward, linear_before_reset=0', async () => {
    expect(await check({ op: 'GRU', S: 4, B: 2, I: 3, H: 5, bias: true, h0: true })).toEqual([]);
  });
  it('linear_before_reset=1, bidirectional, sequence_lens', async () => {
    expect(await check({ op: 'GRU', S: 4, B: 3, I: 3, H: 4, direction: 'bidirectional', bias: true, h0: true, lens: [2, 4, 1], attrs: { linear_before_reset: { i: 1 } } })).toEqual([]);
  });
  it('reverse, clip, custom activations', async () => {
    const attrs = { clip: { f: 0.8 }, activations: { strings: ['HardSigmoid', 'Softsign'] } };
    expect(await check({ op: 'GRU', S: 3, B: 2, I: 3, H: 4, direction: 'reverse', bias: true, h0: true, attrs })).toEqual([]);
  });
  it('layout 1 equals layout 0 on transposed data', () => {
    expect(layoutMismatch({ op: 'GRU', S: 4, B: 3, I: 2, H: 3, direction: 'bidirectional', bias: true, h0: true, attrs: { linear_before_reset: { i: 1 } } })).toEqual([]);
  });
});

describe('RNN', () => {
  it('forward Tanh with bias and initial_h', async () => {
    expect(await check({ op: 'RNN', S: 4, B: 2, I: 3, H: 5, bias: true, h0: true })).toEqual([]);
  });
  it('bidirectional Relu with sequence_lens', async () => {
    const attrs = { activations: { strings: ['Relu', 'Relu'] } };
    expect(await check({ op: 'RNN', S: 4, B: 3, I: 3, H: 4, direction: 'bidirectional', bias: true, lens: [4, 2, 3], attrs })).toEqual([]);
  });
});

describe('RNN family inference and errors', () => {
  it('infers Y, Y_h, Y_c shapes with symbolic dims for both layouts', () => {
    for (const layout of [0, 1] as const) {
      const { g } = build({ op: 'LSTM', S: 3, B: 2, I: 3, H: 4, layout, direction: 'bidirectional' });
      g.inputs = [['X', 'float32', layout ? ['batch', 'seq', 3] : ['seq', 'batch', 3]]];
      const m = parseModel(modelBytes(g, 14));
      const r = inferShapes(m.graph).graph;
      const want = layout ? [['batch', 'seq', 2, 4], ['batch', 2, 4]] : [['seq', 2, 'batch', 4], [2, 'batch', 4]];
      expect(r.valueTypes.get('Y')?.shape).toEqual(want[0]);
      expect(r.valueTypes.get('Y_h')?.shape).toEqual(want[1]);
      expect(r.valueTypes.get('Y_c')?.shape).toEqual(want[1]);
    }
  });
  it('rejects a W whose shape disagrees with hidden_size, naming the node', () => {
    const { g, feeds } = build({ op: 'GRU', S: 2, B: 1, I: 3, H: 4 });
    g.nodes[0].attrs!.hidden_size = { i: 5 };
    const m = parseModel(modelBytes(g, 14));
    expect(() => runModelCpu(m, new Map(Object.entries(feeds)))).toThrow(/GRU_0.*W has shape \[1,12,3\], expected \[1,15,3\]/s);
  });
  it('reports an unknown activation as unsupported at import', () => {
    const { g } = build({ op: 'RNN', S: 2, B: 1, I: 3, H: 4, attrs: { activations: { strings: ['Swish'] } } });
    expect(() => parseModel(modelBytes(g, 14))).toThrow(/activation 'Swish'/);
  });
  it('zero-length batch gives empty outputs', () => {
    const { g } = build({ op: 'LSTM', S: 2, B: 0, I: 3, H: 4 });
    const m = parseModel(modelBytes(g, 14));
    const outs = runModelCpu(m, new Map([['X', makeTensor('float32', [2, 0, 3])]]));
    expect(outs.map((t) => t.dims)).toEqual([[2, 1, 0, 4], [1, 0, 4], [1, 0, 4]]);
  });
});
