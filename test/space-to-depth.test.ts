// space-to-depth-conv (issue 7: the ResNet-50 stem's 3 channels padded to 8 wasted 5/8 of its math): a stride-2
// small-channel tensor-core conv becomes a Relayout with blocksize 2 + a stride-1 conv. Checked here: the CPU
// reference of the rewritten conv equals the original's (up to fp32 summation order, so within an fp16 rounding) on
// random weights, odd sizes, several kernels/pads, fused epilogues and a merged input Relayout; convs that must not
// qualify stay, with the reason in the fusion report; the blocked Relayout kernel gives the CPU reference's bits under
// the CPU emulator of the generated CUDA and compiles with NVRTC, as does a built stem; a ResNet-like stem and light
// ResNet-50 build with it and give the unrewritten engine's outputs.
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { build } from '../src/runtime/engine.js';
import { loadModel } from '../src/onnx/import.js';
import { PIPELINE } from '../src/passes/pipeline.js';
import { SPACE_TO_DEPTH, spaceToDepthConv } from '../src/passes/space_to_depth.js';
import { fuseRelayout } from '../src/passes/relayout.js';
import { newPassContext, runPasses } from '../src/passes/pass.js';
import { randomTensor } from '../src/cli/io.js';
import { compareTensors } from '../src/cli/conformance.js';
import { emitBlockedRelayout, type BlockedRelayout } from '../src/codegen/relayout_s2d.js';
import { compileCuda } from '../src/runtime/nvrtc.js';
import { loadNvrtc } from '../src/runtime/libs.js';
import { getOp } from '../src/ops/index.js';
import { DTYPE_ONNX, fromF64, toF64 } from '../src/ir/tensor.js';
import { TsrtError } from '../src/errors.js';
import type { Attr, DType, Graph, Model, Node, Tensor } from '../src/ir/types.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { inferShapes } from '../src/ir/infer.js';
import { verifyGraph } from '../src/ir/verify.js';
import { emulateKernels, hasGxx } from './kernel_emu.js';
import { convConfigSpace, type ConvProblem } from '../src/codegen/tc_conv.js';
import { emitConvTc, wgmmaConvSpace } from '../src/codegen/wgmma.js';
import { configName } from '../src/codegen/tc_gemm.js';
import { packModules } from '../src/codegen/kernel.js';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fusions, rejections } from './ir-cases.js';
import { rng } from './helpers.js';

const LIGHT = new URL('../../shared/onnx-tests/models/light/', import.meta.url).pathname;
let nvrtc = true;
try { loadNvrtc(); } catch { nvrtc = false; }

const ints = (value: number[]): Attr => ({ kind: 'ints', value });
const int = (value: number): Attr => ({ kind: 'int', value });
const rand = (dtype: DType, dims: number[], seed: number, scale = 1) => {
  const r = rng(seed);
  return fromF64(dtype, dims, Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => (r() * 2 - 1) * scale));
};

interface ConvCase {
  /** NCHW input dims (the NHWC graph input is their transpose) and the weight dims [K, C, kh, kw]. */
  x: number[]; w: number[];
  attrs?: Record<string, Attr>;
  dtype?: DType;
  bias?: boolean; residual?: boolean; act?: string;
}

/** One tsrt::FusedConv over an NHWC fp16/bf16 input, as the layout pass leaves the stem (weights random, seeded). */
function convGraph(c: ConvCase, seed = 1): Graph {
  const dtype = c.dtype ?? 'float16';
  const [n, ch, h, w] = c.x;
  const inits = new Map<string, Tensor>([['w', rand(dtype, c.w, seed, 1 / Math.sqrt(c.w[1] * c.w[2] * c.w[3]))]]);
  if (c.bias) inits.set('b', rand(dtype, [c.w[0]], seed + 1, 0.5));
  const node: Node = {
    name: 'stem', op: 'FusedConv', domain: 'tsrt', inputs: ['x', 'w', c.bias ? 'b' : '', ...(c.residual ? ['z'] : [])], outputs: ['y'],
    attrs: { layout: { kind: 'string', value: 'NHWC' }, strides: ints([2, 2]), ...(c.act ? { activation: { kind: 'string', value: c.act } } : {}), ...c.attrs },
  };
  const g0: Graph = {
    name: 'g', nodes: [{ ...node, inputs: node.inputs.slice(0, 3) }], initializers: inits, valueTypes: new Map(), opset: 17,
    inputs: [{ name: 'x', type: { dtype, shape: [n, h, w, ch] } }], outputs: [{ name: 'y', type: { dtype, shape: [] } }],
  };
  const y = inferShapes(g0).graph.valueTypes.get('y')!;
  const inputs = [...g0.inputs, ...(c.residual ? [{ name: 'z', type: y }] : [])];
  return inferShapes({ ...g0, nodes: [node], inputs, outputs: [{ name: 'y', type: y }] }).graph;
}

function feeds(g: Graph, seed = 3): Map<string, Tensor> {
  return new Map(g.inputs.map((i, k) => [i.name, randomTensor(i.type.dtype, i.type.shape as number[], seed + k)]));
}

function rewrite(g: Graph) {
  const ctx = newPassContext({ fp16: true });
  const after = runPasses(g, [spaceToDepthConv], ctx);
  expect(verifyGraph(after)).toEqual([]);
  return { after, ctx };
}

/** Outputs of `before` and `after` on the same random feeds agree within half an fp16 ulp of the output's scale. */
function expectSame(before: Graph, after: Graph, tol = 2e-3): void {
  const f = feeds(before);
  const [a, b] = [runGraph(before, f), runGraph(after, f)];
  for (const o of before.outputs) expect(compareTensors(b.get(o.name)!, a.get(o.name)!, tol, tol), o.name).toBeUndefined();
}

const pads = (p: number[]) => ({ pads: ints(p) });

describe('space-to-depth-conv: CPU reference of the rewritten conv equals the original', () => {
  const QUALIFY: [string, ConvCase, string][] = [
    ['ResNet stem 7x7 pad 3, 2x3x32x32', { x: [2, 3, 32, 32], w: [8, 3, 7, 7], attrs: pads([3, 3, 3, 3]), bias: true, act: 'Relu' }, '7x7s2 -> 4x4s1, K 392 -> 256'],
    ['odd sizes 1x3x33x31', { x: [1, 3, 33, 31], w: [6, 3, 7, 7], attrs: pads([3, 3, 3, 3]) }, '7x7s2 -> 4x4s1, K 392 -> 256'],
    ['3x3 pad 1, 17x20, residual + ReLU', { x: [1, 3, 17, 20], w: [5, 3, 3, 3], attrs: pads([1, 1, 1, 1]), bias: true, residual: true, act: 'Relu' }, '3x3s2 -> 2x2s1, K 72 -> 64'],
    ['3x3 pad 0', { x: [2, 2, 15, 16], w: [4, 2, 3, 3] }, '3x3s2 -> 2x2s1, K 72 -> 32'],
    ['5x5 pad 2 on one channel', { x: [1, 1, 16, 15], w: [4, 1, 5, 5], attrs: pads([2, 2, 2, 2]) }, '5x5s2 -> 3x3s1, K 200 -> 72'],
    ['asymmetric pads [0,1,1,0], 4 channels', { x: [1, 4, 16, 16], w: [3, 4, 3, 3], attrs: pads([0, 1, 1, 0]) }, '3x3s2 -> 2x2s1, K 72 -> 64'],
    ['5x3 kernel, pads [2,1,2,1]', { x: [1, 2, 19, 18], w: [4, 2, 5, 3], attrs: pads([2, 1, 2, 1]) }, '5x3s2 -> 3x2s1, K 120 -> 48'],
    ['auto_pad SAME_UPPER 7x7', { x: [1, 3, 16, 17], w: [4, 3, 7, 7], attrs: { auto_pad: { kind: 'string', value: 'SAME_UPPER' } } }, '7x7s2 -> 4x4s1, K 392 -> 256'],
    ['bf16 stem', { x: [1, 3, 20, 20], w: [4, 3, 7, 7], attrs: pads([3, 3, 3, 3]), dtype: 'bfloat16', bias: true }, '7x7s2 -> 4x4s1, K 392 -> 256'],
  ];
  it.each(QUALIFY)('%s', (_id, c, kind) => {
    const g = convGraph(c);
    const { after, ctx } = rewrite(g);
    expect(fusions(ctx, SPACE_TO_DEPTH)).toEqual([`SpaceToDepthConv(${kind}) [stem]`]);
    const [r, conv] = after.nodes;
    expect([r.op, r.attrs.blocksize, conv.attrs.strides]).toEqual(['Relayout', int(2), ints([1, 1])]);
    expect(after.nodes).toHaveLength(2);
    expect(conv.attrs.auto_pad).toBeUndefined();
    expectSame(g, after, c.dtype === 'bfloat16' ? 1.6e-2 : 2e-3);
  });

  const REJECT: [string, ConvCase, string | undefined][] = [
    ['stride 1', { x: [1, 3, 16, 16], w: [4, 3, 3, 3], attrs: { strides: ints([1, 1]), ...pads([1, 1, 1, 1]) } }, 'strides [1,1]: only stride 2 folds into a 2x2 space-to-depth'],
    ['2x2 kernel', { x: [1, 3, 16, 16], w: [4, 3, 2, 2] }, 'kernel 2x2: below 3x3 the taps do not shrink'],
    ['dilation 2', { x: [1, 3, 16, 16], w: [4, 3, 3, 3], attrs: { dilations: ints([2, 2]) } }, 'dilations [2,2]'],
    ['group 2', { x: [1, 4, 16, 16], w: [4, 2, 3, 3], attrs: { group: int(2) } }, 'group 2: only dense convs'],
    ['4x4 pad 1: K grows', { x: [1, 3, 16, 16], w: [4, 3, 4, 4], attrs: pads([1, 1, 1, 1]) }, 'K 128 -> 144 (3x3x16) is no reduction'],
    ['5 channels: not a candidate', { x: [1, 5, 16, 16], w: [4, 5, 7, 7], attrs: pads([3, 3, 3, 3]) }, undefined],
    ['fp32: no tensor cores', { x: [1, 3, 16, 16], w: [4, 3, 7, 7], attrs: pads([3, 3, 3, 3]), dtype: 'float32' }, undefined],
    ['a crop would be needed (3x3, left pad 1 and right 0 on 15 columns)', { x: [1, 3, 16, 15], w: [4, 3, 3, 3], attrs: pads([0, 1, 1, 0]) }, 'the space-to-depth input would be cropped (the conv skips its last input rows/columns)'],
  ];
  it.each(REJECT)('%s stays, with the reason in the fusion report', (_id, c, reason) => {
    const g = convGraph(c);
    const { after, ctx } = rewrite(g);
    expect(after.nodes.map((n) => n.op)).toEqual(['FusedConv']);
    expect(after.nodes[0]).toEqual(g.nodes[0]);
    expect(rejections(ctx, SPACE_TO_DEPTH)).toEqual(reason ? [`SpaceToDepthConv: ${reason}`] : []);
  });

  afterEach(() => { delete process.env.TSRT_SPACE_TO_DEPTH; });
  it('TSRT_SPACE_TO_DEPTH=0 turns it off and says so', () => {
    process.env.TSRT_SPACE_TO_DEPTH = '0';
    const g = convGraph(QUALIFY[0][1]);
    const { after, ctx } = rewrite(g);
    expect(after.nodes.map((n) => n.op)).toEqual(['FusedConv']);
    expect(rejections(ctx, SPACE_TO_DEPTH)).toEqual(['SpaceToDepthConv: TSRT_SPACE_TO_DEPTH=0']);
  });

  /** fp32 NCHW input -> Relayout(cast, transpose, pads) -> conv over the padded channels, as fuse-relayout leaves it;
   * junk (nonzero) weights on the zero channels: they multiply zeros before and are dropped after. */
  function mergedGraph(relayoutPads: number[], convPads: number[]): Graph {
    const cw = 3 + relayoutPads[3] + relayoutPads[7];
    const g0: Graph = {
      name: 'g', opset: 17, valueTypes: new Map(),
      initializers: new Map([['w', rand('float16', [6, cw, 7, 7], 5, 0.1)]]),
      inputs: [{ name: 'x', type: { dtype: 'float32', shape: [2, 3, 21, 24] } }],
      outputs: [{ name: 'y', type: { dtype: 'float16', shape: [] } }],
      nodes: [
        { name: 'prep', op: 'Relayout', domain: 'tsrt', inputs: ['x'], outputs: ['t'], attrs: { perm: ints([0, 2, 3, 1]), pads: ints(relayoutPads), to: int(DTYPE_ONNX.float16) } },
        { name: 'stem', op: 'FusedConv', domain: 'tsrt', inputs: ['t', 'w'], outputs: ['y'], attrs: { layout: { kind: 'string', value: 'NHWC' }, strides: ints([2, 2]), pads: ints(convPads) } },
      ],
    };
    const y = inferShapes(g0).graph.valueTypes.get('y')!;
    return inferShapes({ ...g0, outputs: [{ name: 'y', type: y }] }).graph;
  }

  it('merges into the input Relayout (Cast + NCHW->NHWC + 3->8 channel pad): one Relayout, 12 -> 16 channels', () => {
    const g = mergedGraph([0, 0, 0, 0, 0, 0, 0, 5], [3, 3, 3, 3]);
    const { after, ctx } = rewrite(g);
    expect(fusions(ctx, SPACE_TO_DEPTH)).toEqual(['SpaceToDepthConv(7x7s2 -> 4x4s1, K 392 -> 256) [prep, stem]']);
    expect(after.nodes.map((n) => n.op)).toEqual(['Relayout', 'FusedConv']);
    const r = after.nodes[0];
    expect(r.inputs).toEqual(['x']);
    // 2 zero pixels before, 1 after (11x12 pixels of 2x2 -> 14x15), 4 zero channels
    expect([r.attrs.perm, r.attrs.pads, r.attrs.to, r.attrs.blocksize]).toEqual([ints([0, 2, 3, 1]), ints([0, 2, 2, 0, 0, 1, 1, 4]), int(DTYPE_ONNX.float16), int(2)]);
    expect(after.valueTypes.get(r.outputs[0])).toEqual({ dtype: 'float16', shape: [2, 14, 15, 16] });
    expectSame(g, after);
  });

  it('a merged Relayout that also pads the image (and puts a zero channel first) folds its border into the new one', () => {
    const g = mergedGraph([0, 1, 2, 1, 0, 0, 1, 4], [2, 3, 3, 2]);
    const { after, ctx } = rewrite(g);
    expect(fusions(ctx, SPACE_TO_DEPTH)).toHaveLength(1);
    expectSame(g, after);
  });
});

describe('tsrt::Relayout blocksize', () => {
  const node = (attrs: Record<string, Attr>): Node => ({ name: 'r', op: 'Relayout', domain: 'tsrt', inputs: ['x'], outputs: ['y'], attrs });
  const infer = (attrs: Record<string, Attr>, shape: number[]) => getOp('Relayout', 'tsrt')!.infer(node(attrs), [{ dtype: 'float32', shape }], { freshDim: () => 'd' } as never);

  it('infers [N, ceil(H/b), ceil(W/b), b*b*C] plus pads', () => {
    expect(infer({ perm: ints([0, 2, 3, 1]), blocksize: int(2), pads: ints([0, 2, 2, 0, 0, 1, 1, 4]), to: int(10) }, [2, 3, 224, 224]))
      .toEqual([{ dtype: 'float16', shape: [2, 115, 115, 16] }]);
    expect(infer({ blocksize: int(3) }, [1, 7, 8, 2])).toEqual([{ dtype: 'float32', shape: [1, 3, 3, 18] }]);
  });

  it('names a bad blocksize and a blocked tensor of the wrong rank in a TsrtError', () => {
    expect(() => infer({ blocksize: int(0) }, [1, 2, 2, 3])).toThrow(TsrtError);
    expect(() => infer({ blocksize: int(0) }, [1, 2, 2, 3])).toThrow(/blocksize 0 must be a positive integer/);
    expect(() => infer({ blocksize: int(2) }, [2, 2, 3])).toThrow(/needs a rank-4 channels-last tensor/);
  });
});

/** Blocked Relayout kernels: the stem's (fp32 NCHW -> fp16, 16-byte chunks), odd sizes, fp32 out (float4), bf16,
 * and a channel count that does not split into 16-byte chunks (one element per thread). */
const KERNELS: [string, BlockedRelayout][] = [
  ['stem fp32 NCHW -> fp16 16 ch', { from: 'float32', to: 'float16', inDims: [2, 3, 13, 11], perm: [0, 2, 3, 1], pads: [0, 2, 2, 0, 0, 1, 1, 4], blocksize: 2 }],
  ['fp16 NHWC 2 ch -> 8, pads on both sides', { from: 'float16', to: 'float16', inDims: [1, 9, 10, 2], perm: [0, 1, 2, 3], pads: [0, 1, 0, 0, 0, 2, 1, 0], blocksize: 2 }],
  ['fp32 -> fp32, 4 ch -> 16', { from: 'float32', to: 'float32', inDims: [1, 4, 7, 6], perm: [0, 2, 3, 1], pads: [0, 0, 1, 0, 0, 1, 0, 0], blocksize: 2 }],
  ['12 fp16 channels, no channel pad: scalar', { from: 'float32', to: 'float16', inDims: [1, 3, 5, 6], perm: [0, 2, 3, 1], pads: [0, 1, 1, 0, 0, 0, 0, 0], blocksize: 2 }],
  ['blocksize 3', { from: 'float16', to: 'float16', inDims: [1, 7, 8, 1], perm: [0, 1, 2, 3], pads: [0, 0, 0, 0, 0, 0, 0, 7], blocksize: 3 }],
];

function relayoutRef(p: BlockedRelayout, x: Tensor): Tensor {
  const attrs = { perm: ints(p.perm), pads: ints(p.pads), to: int(DTYPE_ONNX[p.to]), blocksize: int(p.blocksize) };
  return getOp('Relayout', 'tsrt')!.cpu({ name: 'r', op: 'Relayout', domain: 'tsrt', inputs: ['x'], outputs: ['y'], attrs }, [x], { opset: 17, runGraph: () => [] })[0];
}

const bytes = (t: Tensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

describe.skipIf(!hasGxx)('blocked Relayout kernel under the CPU emulator', () => {
  it('gives the CPU reference bit for bit (padding, odd edges, every dtype path)', () => {
    const cases = KERNELS.filter(([, p]) => p.to !== 'bfloat16').map(([id, p], i) => {
      const x = randomTensor(p.from, p.inDims, 11 + i);
      const ref = relayoutRef(p, x);
      return { id, ref, k: emitBlockedRelayout(p), x };
    });
    const outs = emulateKernels('relayout-s2d', cases.map((c) => ({
      kernels: [c.k], bufs: [{ param: 'x', bytes: bytes(c.x) }, { param: 'y', bytes: Buffer.alloc(bytes(c.ref).length), output: true }],
    })));
    cases.forEach((c, i) => expect(outs[i].get(c.k.name)!.y.equals(bytes(c.ref)), c.id).toBe(true));
  }, 120_000);
});

describe.skipIf(!nvrtc)('blocked Relayout kernels: NVRTC sm_90 compile', () => {
  it.each([...KERNELS, ['bf16 out', { ...KERNELS[0][1], to: 'bfloat16' }] as [string, BlockedRelayout]])('%s', (_id, p) => {
    const k = emitBlockedRelayout(p);
    const r = compileCuda(k.source, { name: k.name, arch: 'sm_90' });
    expect(r.cubin?.[0]).toBe(0x7f);
    expect(r.log.split('\n').filter((l) => /warning|error/i.test(l))).toEqual([]);
  });
});

/** The rewritten ResNet-50 bs256 stem: [256,115,115,16] -> 4x4/1 -> [256,112,112,64], bias + ReLU. */
const STEM256: ConvProblem = { n: 256, h: 115, w: 115, c: 16, k: 64, r: 4, s: 4, strideH: 1, strideW: 1, padH: 0, padW: 0, dilH: 1, dilW: 1, p: 112, q: 112 };
const STEM_EPI = { bias: true, act: 'relu' as const };
const nvcc = (() => { try { execFileSync('nvcc', ['--version'], { stdio: 'pipe' }); return true; } catch { return false; } })();

describe('the rewritten bs256 stem conv compiles in every tile config the tuner may time', () => {
  it.skipIf(!nvrtc)('mma.sync configs (default and a spread): NVRTC sm_90', () => {
    // the heuristic's pick and a spread of the rest (all of them take 30 s on 2 cores)
    const space = convConfigSpace(STEM256);
    const ks = [undefined, ...space.filter((_, i) => i % Math.ceil(space.length / 5) === 0)].map((c) => emitConvTc(STEM256, STEM_EPI, c));
    expect(ks.length).toBeGreaterThan(3);
    const mod = packModules(ks, ks.length)[0];
    const r = compileCuda(mod.source, { name: mod.name, arch: 'sm_90' });
    expect(r.cubin?.[0]).toBe(0x7f);
    expect(r.log.split('\n').filter((l) => /warning|error/i.test(l))).toEqual([]);
  }, 180_000);

  it.skipIf(!nvcc)('wgmma configs (one per tile shape): nvcc sm_90a, no spills', () => {
    const tiles = new Map(wgmmaConvSpace(STEM256).map((c) => [`${c.bm}x${c.bn}${c.ws ? 'ws' : ''}`, c]));
    const ks = [...tiles.values()].slice(0, 4).map((c) => emitConvTc({ ...STEM256 }, STEM_EPI, c));
    expect(ks.length).toBeGreaterThan(0);
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-s2d-'));
    const mod = packModules(ks, ks.length)[0];
    writeFileSync(join(dir, 'm.cu'), mod.source);
    const r = spawnSync('nvcc', ['-cubin', '-arch=sm_90a', '-std=c++17', '-Xptxas', '-v', '-o', join(dir, 'm.cubin'), join(dir, 'm.cu')], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const log = r.stdout + r.stderr;
    expect(log).not.toMatch(/serialized|warning/i);
    for (const k of ks) {
      const at = log.indexOf(`Compiling entry function '${k.name}'`);
      expect(at, configName(k.config!)).toBeGreaterThanOrEqual(0);
      expect(log.slice(at, at + 600), configName(k.config!)).toMatch(/ 0 bytes spill stores, 0 bytes spill loads/);
    }
  }, 240_000);
});

/** A ResNet stem as exported: Conv 7x7/2 pad 3 + BatchNorm + ReLU + MaxPool 3x3/2, fp32 NCHW, seeded weights. */
function stemModel(shape: number[]): Model {
  const r = rng(9);
  const inits = new Map<string, Tensor>();
  const param = (name: string, dims: number[], scale: number, offset = 0) => {
    inits.set(name, fromF64('float32', dims, Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => offset + (r() * 2 - 1) * scale)));
    return name;
  };
  const nodes: Node[] = [
    { name: 'conv1', op: 'Conv', domain: '', inputs: ['x', param('w', [16, 3, 7, 7], 0.15), param('b', [16], 0.1)], outputs: ['c'], attrs: { kernel_shape: ints([7, 7]), strides: ints([2, 2]), pads: ints([3, 3, 3, 3]) } },
    { name: 'bn1', op: 'BatchNormalization', domain: '', inputs: ['c', param('s', [16], 0.2, 1), param('o', [16], 0.1), param('m', [16], 0.1), param('v', [16], 0.2, 1)], outputs: ['n'], attrs: {} },
    { name: 'relu', op: 'Relu', domain: '', inputs: ['n'], outputs: ['a'], attrs: {} },
    { name: 'pool', op: 'MaxPool', domain: '', inputs: ['a'], outputs: ['y'], attrs: { kernel_shape: ints([3, 3]), strides: ints([2, 2]), pads: ints([1, 1, 1, 1]) } },
  ];
  const out = [shape[0], 16, Math.ceil(shape[2] / 4), Math.ceil(shape[3] / 4)];
  const graph: Graph = { name: 'stem', nodes, initializers: inits, valueTypes: new Map(), opset: 17, inputs: [{ name: 'x', type: { dtype: 'float32', shape } }], outputs: [{ name: 'y', type: { dtype: 'float32', shape: out } }] };
  return { graph, irVersion: 8, producer: 'space-to-depth.test', opsets: { '': 17 } };
}

const WITHOUT = PIPELINE.filter((p) => p !== spaceToDepthConv);

describe('ResNet-like stem and light ResNet-50, fp16', () => {
  it('stem 2x3x64x64: one Relayout (blocksize 2) + the 4x4 conv, its kernels compile with NVRTC, outputs equal the unrewritten engine', async () => {
    const m = stemModel([2, 3, 64, 64]);
    const opts = { device: 'cpu' as const, compileKernels: nvrtc, fp16: true, verify: true };
    const [a, b] = [await build(m, { ...opts, passes: WITHOUT }), await build(m, opts)];
    const kernels = (e: typeof a) => e.layers().filter((l) => l.kind === 'kernel');
    expect(kernels(b).slice(0, 2).map((l) => l.op)).toEqual(['Relayout', 'FusedConv']);
    expect(kernels(b)[0].kernel).toMatch(/^relayout_s2d_/);
    expect(kernels(b).length).toBe(kernels(a).length);
    expect(fusions(b.passContext, SPACE_TO_DEPTH)).toHaveLength(1);
    expect(b.lowered.steps.map((s) => (s.kind === 'kernel' ? s.kernel.name : '')).join()).toMatch(/conv/);
    if (nvrtc) for (const [name, k] of b.kernels) expect(k.cubin?.[0], name).toBe(0x7f);
    const x = randomTensor('float32', [2, 3, 64, 64], 4);
    const [ya, yb] = [(await a.run({ x })).get('y')!, (await b.run({ x })).get('y')!];
    expect(compareTensors(yb, ya, 2e-3, 2e-3)).toBeUndefined();
  }, 120_000);

  it.skipIf(!existsSync(LIGHT))('light ResNet-50: the stem is rewritten (K 392 -> 256), the rest unchanged; the stem output equals the unrewritten engine', async () => {
    const m = loadModel(`${LIGHT}light_resnet50/model.onnx`);
    const vi = m.graph.inputs[0];
    const shape = vi.type.shape.map((d) => (typeof d === 'number' ? d : 1));
    const opts = { device: 'cpu' as const, compileKernels: false, fp16: true, shapes: { [vi.name]: shape } };
    const [a, b] = [await build(m, { ...opts, passes: WITHOUT }), await build(m, opts)];
    expect(fusions(b.passContext, SPACE_TO_DEPTH)).toHaveLength(1);
    expect(fusions(b.passContext, SPACE_TO_DEPTH)[0]).toMatch(/^SpaceToDepthConv\(7x7s2 -> 4x4s1, K 392 -> 256\)/);
    expect(b.layers().length).toBe(a.layers().length);
    // everything after the stem is the same graph
    const rest = (g: Graph) => g.nodes.slice(2).map((n) => `${n.op}(${n.inputs})->${n.outputs}`);
    expect(rest(b.graph)).toEqual(rest(a.graph));
    expect(b.graph.nodes[0].attrs.blocksize).toEqual(int(2));
    // (the light model's constant weights overflow fp16 further down, NaN with or without the pass: compare the stem)
    const stem = b.graph.nodes[1].outputs[0];
    const upTo = (g: Graph): Graph => ({ ...g, nodes: g.nodes.slice(0, 2), outputs: [{ name: stem, type: g.valueTypes.get(stem)! }] });
    const f = new Map([[vi.name, randomTensor(vi.type.dtype, shape, 3, -1, 1)]]);
    const [ya, yb] = [runGraph(upTo(a.graph), f).get(stem)!, runGraph(upTo(b.graph), f).get(stem)!];
    expect(toF64(ya).some((v) => v !== 0)).toBe(true);
    expect(compareTensors(yb, ya, 2e-3, 2e-3)).toBeUndefined();
  }, 120_000);
});

// fuse-relayout runs first in the pipeline; the pass also takes the input Relayout fuse-relayout made
it('pipeline order: space-to-depth-conv follows fuse-relayout', () => {
  expect(PIPELINE.indexOf(spaceToDepthConv)).toBe(PIPELINE.indexOf(fuseRelayout) + 1);
});
