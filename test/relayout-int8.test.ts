// The int8 engine's input in one kernel (issue 6's closing note: quantize, transpose and channel pad were three):
// tsrt::Relayout with an int8 output quantizes the fp32 NCHW image as ONNX QuantizeLinear does and writes it NHWC,
// padded to the 16 channels of the int8 tensor-core conv, or in the space-to-depth layout of the rewritten int8 stem.
//  - light ResNet-50 --int8 on the CPU reference: two kernels fewer, outputs equal bit for bit with and without;
//  - a small int8 stem graph: the same, with the Relayout's scale the calibrated one;
//  - every int8 Relayout kernel form (scalar, 4/8/16 per thread, space-to-depth packed and scalar, fp16 input,
//    int8 -> int8 movement) under the CPU emulator equals the op's CPU reference bit for bit, ties and saturation
//    included; they and the ResNet-50 bs256 stem kernels compile with NVRTC for sm_90;
//  - the op's checks name a missing or misplaced scale.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { build } from '../src/runtime/engine.js';
import { loadModel, upgradeGraph } from '../src/onnx/import.js';
import { PIPELINE } from '../src/passes/pipeline.js';
import { fuseRelayout } from '../src/passes/relayout.js';
import { spaceToDepthConv } from '../src/passes/space_to_depth.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { randomTensor } from '../src/cli/io.js';
import { emitRelayout, relayoutHeuristic, type RelayoutProblem } from '../src/codegen/movement.js';
import { emitBlockedRelayout, type BlockedRelayout } from '../src/codegen/relayout_s2d.js';
import { packModules, type KernelSource } from '../src/codegen/kernel.js';
import { compileCuda } from '../src/runtime/nvrtc.js';
import { loadNvrtc } from '../src/runtime/libs.js';
import { getOp } from '../src/ops/index.js';
import { parseGraph } from '../src/ir/text.js';
import { inferShapes } from '../src/ir/infer.js';
import { DTYPE_ONNX, fromF64, size, toF64 } from '../src/ir/tensor.js';
import type { Attr, DType, Graph, Model, Node, Tensor } from '../src/ir/types.js';
import { TsrtError } from '../src/errors.js';
import { emulateKernels, hasGxx } from './kernel_emu.js';
import { rng } from './helpers.js';

const LIGHT = new URL('../../shared/onnx-tests/models/light/', import.meta.url).pathname;
let nvrtc = true;
try { loadNvrtc(); } catch { nvrtc = false; }

const WITHOUT = PIPELINE.filter((p) => p !== fuseRelayout && p !== spaceToDepthConv);
const NO_S2D = PIPELINE.filter((p) => p !== spaceToDepthConv);
const bytesOf = (t: Tensor) => Buffer.from(t.data.buffer as ArrayBuffer, t.data.byteOffset, t.data.byteLength);

/** minmax scales (amax / 127) of every fp32 tensor over one input, on the CPU reference. */
function minmaxScales(g: Graph, feeds: Map<string, Tensor>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, t] of runGraph(g, feeds, { keepAll: true })) {
    if (t.dtype !== 'float32') continue;
    let m = 0;
    for (const v of toF64(t)) m = Math.max(m, Math.abs(v));
    if (m > 0) out[k] = m / 127;
  }
  return out;
}

/** The model built --int8 without fuse-relayout/space-to-depth, without space-to-depth, and with the whole
 * pipeline; their kernel steps and CPU outputs on one input. */
async function threeEngines(model: Model, seed: number) {
  const vi = model.graph.inputs[0];
  const shape = vi.type.shape.map((d) => (typeof d === 'number' ? d : 1));
  const x = randomTensor('float32', shape, seed, -1, 1);
  const int8Scales = minmaxScales(model.graph, new Map([[vi.name, x]]));
  const opts = { device: 'cpu' as const, compileKernels: false, fp16: true, int8: true, int8Scales, shapes: { [vi.name]: shape } };
  const out = [];
  for (const passes of [WITHOUT, NO_S2D, PIPELINE]) {
    const e = await build(model, { ...opts, passes });
    out.push({ e, kernels: e.layers().filter((l) => l.kind === 'kernel'), y: await e.run({ [vi.name]: x }) });
  }
  return { engines: out, scale: int8Scales[vi.name] };
}

function expectSameBits(a: Map<string, Tensor>, b: Map<string, Tensor>): void {
  expect([...b.keys()]).toEqual([...a.keys()]);
  for (const [k, t] of a) expect(bytesOf(b.get(k)!).equals(bytesOf(t)), `output ${k}`).toBe(true);
}

const short = (name: string) => name.replace(/_[0-9a-f]{12}$/, '').replace(/_m\d+n\d+k\d+_.*$/, '');

describe.skipIf(!existsSync(LIGHT))('light ResNet-50 --int8: the input is one kernel', () => {
  it('quantize + transpose + pad -> one Relayout (2 launches fewer), then the space-to-depth stem (K 784 -> 256); CPU outputs equal bit for bit', async () => {
    const { engines: [before, fused, s2d], scale } = await threeEngines(loadModel(`${LIGHT}light_resnet50/model.onnx`), 5);
    expect(before.kernels.slice(0, 4).map((l) => short(l.kernel!))).toEqual(['quantize', 'copy_transpose', 'pad', 'conv_i8_7x7s2_qb']);
    expect(fused.kernels.length).toBe(before.kernels.length - 2);
    expect(s2d.kernels.length).toBe(before.kernels.length - 2);
    // fp32 NCHW in, int8 NHWC with 16 channels out: one thread per 16-byte pixel
    expect(fused.kernels.slice(0, 2).map((l) => short(l.kernel!))).toEqual(['relayout_v16', 'conv_i8_7x7s2_qb']);
    expect(fused.kernels[0].grid![0] * fused.kernels[0].block![0]).toBeGreaterThanOrEqual(224 * 224);
    expect(s2d.kernels.slice(0, 2).map((l) => short(l.kernel!))).toEqual(['relayout_s2d', 'conv_i8_4x4s1_qb']);
    for (const { e } of [fused, s2d]) {
      const r = e.graph.nodes.find((n) => n.op === 'Relayout' && n.attrs.to?.kind === 'int' && n.attrs.to.value === DTYPE_ONNX.int8)!;
      expect(r.attrs.scale).toEqual({ kind: 'float', value: Math.fround(scale) });
    }
    const fusions = s2d.e.passContext.fusions.filter((f) => f.pass === 'fuse-relayout' || f.pass === 'space-to-depth-conv').map((f) => f.kind);
    expect(fusions).toEqual(['QuantizeLinear+Transpose+ChannelPad', 'SpaceToDepthConv(7x7s2 -> 4x4s1, K 784 -> 256)']);
    expectSameBits(before.y, fused.y);
    expectSameBits(before.y, s2d.y);
  }, 120_000);
});

// a ResNet-style stem in small: 7x7/2 conv over 3 channels, relu, a 3x3 conv, an odd image size
let seed = 3;
const vals = (n: number, s: number) => { const r = rng(seed++); return Array.from({ length: n }, () => ((r() - 0.5) * s).toFixed(4)).join(', '); };
const STEM = `graph g(%x: float32[2,3,19,21]) -> (%y: float32[2,16,10,11]) opset 13 {
  const %w1: float32[16,3,7,7] = [${vals(16 * 3 * 49, 0.4)}]
  const %b1: float32[16] = [${vals(16, 0.2)}]
  const %w2: float32[16,16,3,3] = [${vals(16 * 16 * 9, 0.3)}]
  %c1 = Conv(%x, %w1, %b1) {strides=[2, 2], pads=[3, 3, 3, 3]} name="stem"
  %r1 = Relu(%c1) name="relu1"
  %y = Conv(%r1, %w2) {pads=[1, 1, 1, 1]} name="conv2"
}`;

describe('a small int8 stem graph', () => {
  it('same kernel saving and the same bits; the Relayout quantizes with the calibrated input scale', async () => {
    const model: Model = { graph: inferShapes(upgradeGraph(parseGraph(STEM))).graph } as Model;
    const { engines: [before, fused, s2d], scale } = await threeEngines(model, 9);
    // (the output's NHWC -> NCHW transpose and fp32 cast were one Relayout already: 7 -> 4 kernels)
    expect(before.kernels.map((l) => short(l.kernel!))).toEqual(['quantize', 'copy_transpose', 'pad', 'conv_i8_7x7s2_qb', 'conv_i8_3x3s1_h', 'copy_transpose', 'ew_cast']);
    expect(fused.kernels.map((l) => short(l.kernel!))).toEqual(['relayout_v16', 'conv_i8_7x7s2_qb', 'conv_i8_3x3s1_h', 'relayout']);
    expect(s2d.kernels.map((l) => short(l.kernel!))).toEqual(['relayout_s2d', 'conv_i8_4x4s1_qb', 'conv_i8_3x3s1_h', 'relayout']);
    const r = s2d.e.graph.nodes.find((n) => n.op === 'Relayout')!;
    expect(r.attrs.scale).toEqual({ kind: 'float', value: Math.fround(scale) });
    expect(r.attrs.blocksize).toEqual({ kind: 'int', value: 2 });
    expectSameBits(before.y, fused.y);
    expectSameBits(before.y, s2d.y);
  }, 60_000);
});

// ---- the kernels -----------------------------------------------------------------------------------------------------

const ints = (value: number[]): Attr => ({ kind: 'ints', value });

/** The op's CPU reference for one kernel problem. */
function reference(p: RelayoutProblem & { blocksize?: number }, x: Tensor): Tensor {
  const node: Node = {
    name: 'r', op: 'Relayout', domain: 'tsrt', inputs: ['x'], outputs: ['y'],
    attrs: {
      perm: ints(p.perm), pads: ints(p.pads), to: { kind: 'int', value: DTYPE_ONNX[p.to] },
      ...(p.scale !== undefined ? { scale: { kind: 'float', value: p.scale } } : {}),
      ...(p.blocksize ? { blocksize: { kind: 'int', value: p.blocksize } } : {}),
    },
  };
  return getOp('Relayout', 'tsrt')!.cpu!(node, [x], { opset: 19, runGraph: () => [] } as never)[0];
}

/** Inputs that reach every rounding case: half of them on the 1/64 grid (with scale 1/32: exact .5 ties, both
 * parities, and |x / scale| up to 256, past the int8 range), half anywhere in (-6, 6). */
function inputs(dtype: DType, dims: number[], s: number): Tensor {
  const r = rng(s);
  if (dtype === 'int8') return fromF64('int8', dims, Array.from({ length: size(dims) }, () => Math.floor(r() * 256) - 128));
  return fromF64(dtype, dims, Array.from({ length: size(dims) }, (_, i) => (i % 2 ? Math.round((r() - 0.5) * 1024) / 64 : (r() - 0.5) * 12)));
}

interface KCase { id: string; p: RelayoutProblem; blocked?: BlockedRelayout; kernels: KernelSource[] }

const STEM_P = (scale: number, from: DType = 'float32'): RelayoutProblem => ({ from, to: 'int8', inDims: [2, 3, 5, 6], perm: [0, 2, 3, 1], pads: [0, 0, 0, 0, 0, 0, 0, 13], scale });
const flat = (p: RelayoutProblem, vecs: number[]): KernelSource[] => [emitRelayout(p), ...vecs.map((vec) => emitRelayout(p, { vec })), emitRelayout(p, { block: 64, vec: vecs.at(-1) })];
const blocked = (b: BlockedRelayout): KCase => ({ id: '', p: b, blocked: b, kernels: [emitBlockedRelayout(b)] });

const KCASES: KCase[] = [
  { id: 'stem fp32 NCHW -> int8 NHWC 3 -> 16 channels, scale 1/32 (ties, saturation)', p: STEM_P(1 / 32), kernels: flat(STEM_P(1 / 32), [4, 8, 16]) },
  { id: 'stem, scale 0.0123 (inexact divisions)', p: STEM_P(0.0123), kernels: flat(STEM_P(0.0123), [16]) },
  { id: 'stem fp16 input', p: STEM_P(0.05, 'float16'), kernels: flat(STEM_P(0.05, 'float16'), [16]) },
  (() => {
    const p: RelayoutProblem = { from: 'float32', to: 'int8', inDims: [2, 5, 3, 8], perm: [0, 2, 1, 3], pads: [0, 1, 0, 0, 0, 0, 1, 0], scale: 0.03 };
    return { id: 'transpose of an inner-contiguous axis with outer pads', p, kernels: flat(p, [4, 8]) };
  })(),
  (() => {
    const p: RelayoutProblem = { from: 'int8', to: 'int8', inDims: [2, 3, 4, 4], perm: [0, 2, 3, 1], pads: [0, 0, 0, 0, 0, 0, 0, 13] };
    return { id: 'int8 -> int8 movement (no scale)', p, kernels: flat(p, [16]) };
  })(),
  { ...blocked({ from: 'float32', to: 'int8', inDims: [2, 3, 9, 11], perm: [0, 2, 3, 1], pads: [0, 2, 2, 0, 0, 1, 0, 4], blocksize: 2, scale: 1 / 32 }), id: 's2d int8, 12 -> 16 channels (16-byte stores), odd edges' },
  { ...blocked({ from: 'float32', to: 'int8', inDims: [1, 3, 6, 7], perm: [0, 2, 3, 1], pads: [0, 1, 0, 0, 0, 0, 1, 0], blocksize: 2, scale: 0.0123 }), id: 's2d int8, 12 channels (scalar)' },
];

describe.skipIf(!hasGxx)('int8 Relayout kernels under the CPU emulator', () => {
  it('equal the CPU reference (ONNX QuantizeLinear after the movement) bit for bit, every form', () => {
    const runs = KCASES.map((c, i) => {
      const x = inputs(c.p.from, c.p.inDims, 40 + i);
      const ref = reference({ ...c.p, blocksize: c.blocked?.blocksize }, x);
      return { c, x, ref };
    });
    // the cases reach ties, both signs of saturation and zeros from the padding
    const q = Array.from(runs[0].ref.data as Int8Array);
    expect(q.includes(127) && q.includes(-128) && q.includes(0)).toBe(true);
    expect(Array.from(toF64(runs[0].x)).some((v) => Math.abs(v * 32 % 1) === 0.5)).toBe(true);
    const outs = emulateKernels('relayout-int8', runs.map((r) => ({
      kernels: r.c.kernels,
      bufs: [{ param: 'x', bytes: bytesOf(r.x) }, { param: 'y', bytes: Buffer.alloc(bytesOf(r.ref).length), output: true }],
    })));
    let checked = 0;
    runs.forEach((r, i) => {
      for (const k of r.c.kernels) {
        const got = outs[i].get(k.name)!.y;
        const at = got.findIndex((b, j) => b !== bytesOf(r.ref)[j]);
        expect(at, `${r.c.id}: ${k.name} differs from the CPU reference at byte ${at}`).toBe(-1);
        checked++;
      }
    });
    expect(checked).toBe(KCASES.reduce((a, c) => a + c.kernels.length, 0));
    expect(KCASES[5].kernels[0].source).toContain('uint4');
    expect(KCASES[6].kernels[0].source).not.toContain('uint4');
  }, 240_000);
});

describe.skipIf(!nvrtc)('int8 Relayout kernels: NVRTC sm_90', () => {
  it('every emulated form and the ResNet-50 bs256 stem (plain and space-to-depth) compile without warnings', () => {
    const rn50: RelayoutProblem = { from: 'float32', to: 'int8', inDims: [256, 3, 224, 224], perm: [0, 2, 3, 1], pads: [0, 0, 0, 0, 0, 0, 0, 13], scale: 0.0187 };
    expect(relayoutHeuristic(rn50, 16)).toEqual({ block: 256, vec: 16 });
    const kernels = [
      ...KCASES.flatMap((c) => c.kernels), emitRelayout(rn50, relayoutHeuristic(rn50, 16)),
      emitBlockedRelayout({ from: 'float32', to: 'int8', inDims: [256, 3, 224, 224], perm: [0, 2, 3, 1], pads: [0, 2, 2, 0, 0, 1, 1, 4], blocksize: 2, scale: 0.0187 }),
    ];
    const unique = [...new Map(kernels.map((k) => [k.name, k])).values()];
    for (const m of packModules(unique, 64)) {
      const r = compileCuda(m.source, { name: m.name, arch: 'sm_90' });
      expect(r.cubin?.[0], m.name).toBe(0x7f);
      expect(r.log.split('\n').filter((l) => /warning|error/i.test(l)), m.name).toEqual([]);
    }
  }, 120_000);
});

describe('tsrt::Relayout int8 attributes', () => {
  const node = (attrs: Record<string, Attr>) => ({ name: 'r', op: 'Relayout', domain: 'tsrt', inputs: ['x'], outputs: ['y'], attrs }) as Node;
  const infer = (attrs: Record<string, Attr>, dtype: DType = 'float32') => getOp('Relayout', 'tsrt')!.infer(node(attrs), [{ dtype, shape: [1, 3, 2, 2] }], {} as never);
  const to8: Attr = { kind: 'int', value: DTYPE_ONNX.int8 };

  it('infers int8 NHWC with the padded channels', () => {
    expect(infer({ perm: ints([0, 2, 3, 1]), pads: ints([0, 0, 0, 0, 0, 0, 0, 13]), to: to8, scale: { kind: 'float', value: 0.5 } }))
      .toEqual([{ dtype: 'int8', shape: [1, 2, 2, 16] }]);
    expect(infer({ perm: ints([0, 2, 3, 1]) }, 'int8')).toEqual([{ dtype: 'int8', shape: [1, 2, 2, 3] }]);
  });

  it('names a quantization without a positive scale, and a scale on a float conversion, in a TsrtError', () => {
    expect(() => infer({ to: to8 })).toThrow(TsrtError);
    expect(() => infer({ to: to8 })).toThrow(/quantizes float32 to int8 without a positive finite scale/);
    expect(() => infer({ to: to8, scale: { kind: 'float', value: 0 } })).toThrow(/without a positive finite scale \(got 0\)/);
    expect(() => infer({ to: { kind: 'int', value: DTYPE_ONNX.float16 }, scale: { kind: 'float', value: 0.5 } })).toThrow(/scale 0.5 is only for a float -> int8 quantization, not float32 -> float16/);
    expect(() => infer({ to: { kind: 'int', value: DTYPE_ONNX.float32 } }, 'int8')).toThrow(/converts int8 to float32/);
    expect(getOp('Relayout', 'tsrt')!.supports!(node({ scale: { kind: 'float', value: -1 } }), {} as never)).toMatch(/scale must be a positive finite float/);
  });
});
