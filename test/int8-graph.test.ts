// The int8 graph around the layers (issue 6, item 4): a MaxPool between int8 layers runs on int8 (the layer
// before it requantizes to the pool output's scale; no fp16 tensor, no QuantizeLinear), and an fp32 graph
// input is quantized directly instead of through the fp16 pass's Cast, in the one Relayout kernel that also
// transposes and pads it. Checked on the optimized graph (nodes
// and types), the lowered kernels (count, int8 pool kernel) and the CPU reference against fp32.
import { describe, expect, it } from 'vitest';
import { lowerGraph } from '../src/codegen/lower.js';
import { parseGraph } from '../src/ir/text.js';
import { inferShapes } from '../src/ir/infer.js';
import { fromF64, toF64 } from '../src/ir/tensor.js';
import type { Graph, Tensor } from '../src/ir/types.js';
import { upgradeGraph } from '../src/onnx/import.js';
import { newPassContext } from '../src/passes/pass.js';
import { optimize } from '../src/passes/pipeline.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { metrics } from '../src/runtime/metrics.js';
import '../src/ops/index.js';
import '../src/codegen/lowerings.js';
import '../src/codegen/lower_conv.js';
import '../src/codegen/lower_int8.js';

let seed = 11;
const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 2 ** 32 - 0.5; };
const vals = (n: number, s: number) => Array.from({ length: n }, () => (rnd() * s).toFixed(4)).join(', ');

// ResNet's stem in small: conv 3x3 -> relu -> maxpool 3x3 s2 -> two convs reading the pool (main path and
// shortcut), added; the pool output is read only by int8 layers
const TEXT = `graph g(%x: float32[2,3,16,16]) -> (%y: float32[2,32,8,8]) opset 13 {
  const %w1: float32[32,3,3,3] = [${vals(32 * 27, 0.6)}]
  const %b1: float32[32] = [${vals(32, 0.2)}]
  const %w2: float32[32,32,1,1] = [${vals(32 * 32, 0.5)}]
  const %w3: float32[32,32,3,3] = [${vals(32 * 32 * 9, 0.15)}]
  %c1 = Conv(%x, %w1, %b1) {pads=[1, 1, 1, 1]} name="conv1"
  %r1 = Relu(%c1) name="relu1"
  %p = MaxPool(%r1) {kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]} name="pool"
  %c2 = Conv(%p, %w2) name="conv2"
  %c3 = Conv(%p, %w3) {pads=[1, 1, 1, 1]} name="conv3"
  %s = Add(%c2, %c3) name="add"
  %y = Relu(%s) name="relu2"
}`;

function model(): Graph { return inferShapes(upgradeGraph(parseGraph(TEXT))).graph; }
const input = (): Tensor => fromF64('float32', [2, 3, 16, 16], Array.from({ length: 2 * 3 * 256 }, () => rnd() * 4));

/** minmax scales of every float tensor over a few random inputs (CPU reference). */
function scales(g: Graph): Record<string, number> {
  const amax: Record<string, number> = {};
  for (let i = 0; i < 3; i++) {
    for (const [k, t] of runGraph(g, new Map([['x', input()]]), { keepAll: true })) {
      if (t.dtype !== 'float32') continue;
      amax[k] = Math.max(amax[k] ?? 0, ...Array.from(toF64(t), Math.abs));
    }
  }
  return Object.fromEntries(Object.entries(amax).filter(([, v]) => v > 0).map(([k, v]) => [k, v / 127]));
}

describe('int8 graph: MaxPool on int8, input quantized from fp32', () => {
  const g0 = model();
  const sc = scales(g0);
  const ctx = newPassContext({ optLevel: 2, fp16: true, int8: true, int8Scales: sc });
  const g = optimize(g0, ctx);
  const typed = inferShapes(g).graph;
  const dtype = (v: string) => typed.valueTypes.get(v)?.dtype ?? typed.inputs.find((i) => i.name === v)?.type.dtype;

  it('keeps the stem int8 from the first quantize to the last layer', () => {
    const ops = g.nodes.map((n) => n.op);
    const pool = g.nodes.find((n) => n.op === 'MaxPool')!;
    expect(dtype(pool.inputs[0])).toBe('int8');
    expect(dtype(pool.outputs[0])).toBe('int8');
    // the input quantized once, from the fp32 graph input (no fp16 Cast in front of it), inside the Relayout that
    // also makes it NHWC and pads it to 16 channels (fuse-relayout)
    expect(g.nodes.filter((n) => n.op === 'QuantizeLinear')).toEqual([]);
    const qs = g.nodes.filter((n) => n.op === 'Relayout' && dtype(n.outputs[0]) === 'int8');
    expect(qs.length).toBe(1);
    expect(qs[0].inputs[0]).toBe('x');
    expect(qs[0].attrs.scale).toEqual({ kind: 'float', value: Math.fround(sc.x) });
    expect(ops.filter((o) => o === 'QConv').length).toBe(3);
    const conv1 = g.nodes.find((n) => n.op === 'QConv' && n.outputs[0] === pool.inputs[0])!;
    // conv1 requantizes to the pool output's scale, which the readers of the pool take as x_scale
    expect(conv1.attrs.y_scale).toEqual({ kind: 'float', value: sc.p });
    for (const r of g.nodes.filter((n) => n.inputs[0] === pool.outputs[0])) expect(r.attrs.x_scale).toEqual({ kind: 'float', value: sc.p });
    expect(ctx.fusions.some((f) => f.kind === 'int8 MaxPool' && f.into === pool.name)).toBe(true);
  });

  it('lowers to an int8 pool kernel and no conversion kernels between the layers', () => {
    const l = lowerGraph(g, { fp16: true, allowHost: false, arch: 'sm_90' });
    const ks = l.steps.flatMap((s) => (s.kind === 'kernel' ? [s.kernel] : []));
    const pool = ks.find((k) => k.name.startsWith('maxpool'))!;
    expect(pool.source).toMatch(/const signed char\* __restrict__ x/);
    // quantize + NHWC + channel padding to 16 (one fuse-relayout kernel, 16 int8 channels a thread), conv1 (int8
    // out), int8 pool, conv3 (int8 out), conv2 + residual + relu (fp16 out), back to NCHW and fp32 for the graph
    // output (one fuse-relayout kernel, 4 channels a thread; the int8 pool takes 16 channels a thread): nothing
    // converts between the layers
    expect(ks.map((k) => k.name.replace(/_[0-9a-f]{12}$/, '').replace(/_m\d+n\d+k\d+_.*$/, ''))).toEqual([
      'relayout_v16', 'conv_i8_3x3s1_qb', 'maxpool_v16', 'conv_i8_3x3s1_q', 'conv_i8_1x1_hrq', 'relayout_v4',
    ]);
  });

  it('stays within cosine 0.99 of fp32 on the CPU reference', () => {
    const x = input();
    const want = runGraph(g0, new Map([['x', x]])).get('y')!;
    const got = runGraph(g, new Map([['x', x]])).get('y')!;
    const m = metrics(fromF64('float32', got.dims, toF64(got)), want);
    expect(m.cosine).toBeGreaterThanOrEqual(0.99);
  });

  it('leaves a pool in float when a reader of its output is not an int8 layer', () => {
    const g1 = model();
    const text2 = TEXT.replace('-> (%y: float32[2,32,8,8])', '-> (%y: float32[2,32,8,8], %p: float32[2,32,8,8])');
    const g2 = inferShapes(upgradeGraph(parseGraph(text2))).graph;
    const o = optimize(g2, newPassContext({ optLevel: 2, fp16: true, int8: true, int8Scales: scales(g1) }));
    const t = inferShapes(o).graph;
    const pool = o.nodes.find((n) => n.op === 'MaxPool')!;
    expect(t.valueTypes.get(pool.inputs[0])?.dtype).not.toBe('int8');
  });
});
