// One kernel prepares the input of an fp16 channels-last CNN (issue 7: the ResNet-50 bs1 stem was Cast, Transpose
// and channel Pad, three launches): fuse-relayout on light models, equal CPU outputs with and without it, the
// tsrt::Relayout op's checks, and every Relayout kernel form compiling with NVRTC for sm_90.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { build } from '../src/runtime/engine.js';
import { loadModel } from '../src/onnx/import.js';
import { PIPELINE } from '../src/passes/pipeline.js';
import { fuseRelayout } from '../src/passes/relayout.js';
import { spaceToDepthConv } from '../src/passes/space_to_depth.js';
import { randomTensor } from '../src/cli/io.js';
import { emitRelayout } from '../src/codegen/movement.js';
import { compileCuda } from '../src/runtime/nvrtc.js';
import { loadNvrtc } from '../src/runtime/libs.js';
import { getOp } from '../src/ops/index.js';
import { TsrtError } from '../src/errors.js';
import type { DType } from '../src/ir/types.js';

const LIGHT = new URL('../../shared/onnx-tests/models/light/', import.meta.url).pathname;
let nvrtc = true;
try { loadNvrtc(); } catch { nvrtc = false; }

// without space-to-depth-conv on both sides, which reshapes the stem input further (space-to-depth.test.ts)
const BASE = PIPELINE.filter((p) => p !== spaceToDepthConv);
const WITHOUT = BASE.filter((p) => p !== fuseRelayout);

async function engines(name: string, run: boolean) {
  const m = loadModel(`${LIGHT}${name}/model.onnx`);
  const vi = m.graph.inputs[0];
  const shape = vi.type.shape.map((d) => (typeof d === 'number' ? d : 1));
  const opts = { device: 'cpu' as const, compileKernels: false, fp16: true, shapes: { [vi.name]: shape } };
  const [a, b] = [await build(m, { ...opts, passes: WITHOUT }), await build(m, { ...opts, passes: BASE })];
  const kernels = (e: typeof a) => e.layers().filter((l) => l.kind === 'kernel');
  if (!run) return { before: kernels(a), after: kernels(b) };
  const x = randomTensor(vi.type.dtype, shape, 3, -1, 1);
  const [ya, yb] = [await a.run({ [vi.name]: x }), await b.run({ [vi.name]: x })];
  return { before: kernels(a), after: kernels(b), ya, yb };
}

describe.skipIf(!existsSync(LIGHT))('fuse-relayout on light CNNs (fp16, channels-last)', () => {
  it('ResNet-50: Cast + Transpose + channel Pad of the stem input become one Relayout kernel (2 launches fewer)', async () => {
    const { before, after } = await engines('light_resnet50', false);
    expect(after.length).toBe(before.length - 2);
    // before: ew Cast, copy Transpose, then the stem conv's own pad kernel and conv kernel
    expect(before.slice(0, 4).map((l) => l.kernel!.split('_')[0])).toEqual(['ew', 'copy', 'pad', 'conv']);
    expect(after.slice(0, 2).map((l) => l.op)).toEqual(['Relayout', 'FusedConv']);
    // the vector kernel: one thread per 16-byte pixel (8 fp16 channels) of the padded [1,224,224,8] NHWC image
    expect(after[0].kernel).toMatch(/^relayout_v8_/);
    expect(after[0].grid![0] * after[0].block![0]).toBeGreaterThanOrEqual(224 * 224);
    expect(after.filter((l) => l.kernel!.startsWith('pad_'))).toEqual([]);
  });

  it('SqueezeNet: the same, and the CPU outputs are equal bit for bit', async () => {
    const { before, after, ya, yb } = await engines('light_squeezenet', true);
    expect(after.length).toBe(before.length - 2);
    for (const [k, t] of ya!) expect(Array.from(yb!.get(k)!.data as Float32Array)).toEqual(Array.from(t.data as Float32Array));
  });
});

describe('tsrt::Relayout', () => {
  const node = (attrs: Record<string, unknown>) => ({ name: 'r', op: 'Relayout', domain: 'tsrt', inputs: ['x'], outputs: ['y'], attrs } as never);
  const infer = (attrs: Record<string, unknown>, dtype: DType = 'float32') => getOp('Relayout', 'tsrt')!.infer(node(attrs), [{ dtype, shape: [1, 3, 2, 2] }], {} as never);

  it('infers the transposed, padded, converted type', () => {
    expect(infer({ perm: { kind: 'ints', value: [0, 2, 3, 1] }, pads: { kind: 'ints', value: [0, 0, 0, 0, 0, 0, 0, 5] }, to: { kind: 'int', value: 10 } }))
      .toEqual([{ dtype: 'float16', shape: [1, 2, 2, 8] }]);
  });

  it('names a bad perm, bad pads and a non-float conversion in a TsrtError', () => {
    expect(() => infer({ perm: { kind: 'ints', value: [0, 1, 1, 3] } })).toThrow(TsrtError);
    expect(() => infer({ perm: { kind: 'ints', value: [0, 1, 1, 3] } })).toThrow(/not a permutation of 4 axes/);
    expect(() => infer({ pads: { kind: 'ints', value: [0, 0, 0, -1, 0, 0, 0, 0] } })).toThrow(/non-negative/);
    expect(() => infer({ to: { kind: 'int', value: 7 } })).toThrow(/only float32\/float16\/bfloat16/);
  });
});

describe.skipIf(!nvrtc)('Relayout kernels: NVRTC sm_90 compile', () => {
  const cases: [string, Parameters<typeof emitRelayout>[0]][] = [
    ['stem fp32 NCHW -> fp16 NHWC, 3 -> 8 channels', { from: 'float32', to: 'float16', inDims: [1, 3, 224, 224], perm: [0, 2, 3, 1], pads: [0, 0, 0, 0, 0, 0, 0, 5] }],
    ['stem fp32 -> bf16', { from: 'float32', to: 'bfloat16', inDims: [8, 3, 32, 32], perm: [0, 2, 3, 1], pads: [0, 0, 0, 0, 0, 0, 0, 5] }],
    ['output fp16 NHWC -> fp32 NCHW', { from: 'float16', to: 'float32', inDims: [2, 7, 7, 64], perm: [0, 3, 1, 2], pads: [0, 0, 0, 0, 0, 0, 0, 0] }],
    ['fp32 transpose with pads on two axes', { from: 'float32', to: 'float32', inDims: [2, 3, 5], perm: [2, 0, 1], pads: [1, 0, 2, 0, 3, 0] }],
  ];
  it.each(cases)('%s', (_id, p) => {
    const k = emitRelayout(p);
    const r = compileCuda(k.source, { name: k.name, arch: 'sm_90' });
    expect(r.cubin?.[0]).toBe(0x7f);
    expect(r.log.split('\n').filter((l) => /warning|error/i.test(l))).toEqual([]);
  });
});
