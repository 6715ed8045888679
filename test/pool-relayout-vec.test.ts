// The vectorized channels-last pooling and Relayout kernels (issue 7: ResNet-50's maxpool and input relayout were
// memory-bound at about half of HBM bandwidth): every vector width gives the scalar kernel's bytes and the CPU
// reference under the CPU emulator (test/kernel_emu.ts; out-of-bounds accesses fault at guard pages), every variant
// compiles with NVRTC for sm_90, the lowering picks the 16-byte form for the ResNet-50 shapes and the scalar kernel
// when channels or alignment do not allow, and the kernel tuner sees both as tactic families.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { emitPool, poolHeuristic, poolVecProblems, type PoolProblem } from '../src/codegen/pool.js';
import { emitRelayout, relayoutHeuristic, relayoutVecProblems, type RelayoutProblem } from '../src/codegen/movement.js';
import { familyProblem, pickTactics } from '../src/codegen/kernel_tactics.js';
import { tacticLabel, tunableOf, type KernelTactic } from '../src/codegen/tactics.js';
import { packModules, type KernelSource } from '../src/codegen/kernel.js';
import { fromF64, makeTensor, size, strides } from '../src/ir/tensor.js';
import type { Attr, DType, Node, Tensor } from '../src/ir/types.js';
import { getOp } from '../src/ops/index.js';
import { loadModel } from '../src/onnx/import.js';
import { build } from '../src/runtime/engine.js';
import { PIPELINE } from '../src/passes/pipeline.js';
import { compileCuda } from '../src/runtime/nvrtc.js';
import { loadNvrtc } from '../src/runtime/libs.js';
import { emulateKernels, hasGxx } from './kernel_emu.js';
import { rng } from './helpers.js';

let nvrtc = true;
try { loadNvrtc(); } catch { nvrtc = false; }
if (!nvrtc) console.log('[pool-relayout-vec] NVRTC compile checks skipped: NVRTC is not installed');
if (!hasGxx) console.log('[pool-relayout-vec] emulator checks skipped: g++ is not installed');

const LIGHT = new URL('../../shared/onnx-tests/models/light/', import.meta.url).pathname;
const VECS = [2, 4, 8, 16];
const ints = (value: number[]): Attr => ({ kind: 'ints', value });
const bytesOf = (t: Tensor) => Buffer.from(t.data.buffer as ArrayBuffer, t.data.byteOffset, t.data.byteLength);

/** x transposed by `perm` (out axis i = in axis perm[i]), any element type. */
function transpose(t: Tensor, perm: number[]): Tensor {
  const dims = perm.map((p) => t.dims[p]), ist = strides(t.dims), n = size(dims);
  const src = t.data as ArrayLike<number> & { constructor: new (n: number) => ArrayLike<number> };
  const out = new src.constructor(n) as unknown as number[];
  const idx = new Array<number>(dims.length).fill(0);
  for (let i = 0; i < n; i++) {
    out[i] = src[perm.reduce((a, p, d) => a + idx[d] * ist[p], 0)];
    for (let d = dims.length - 1; d >= 0 && ++idx[d] === dims[d]; d--) idx[d] = 0;
  }
  return makeTensor(t.dtype, dims, out as never);
}

/** Random values on a coarse grid (ties for max, exact sums are not needed: the order is the same). */
function randomTensor(dtype: DType, dims: number[], seed: number, nan = false): Tensor {
  const r = rng(seed);
  const v = Array.from({ length: size(dims) }, () => (dtype === 'int8' ? Math.floor(r() * 256) - 128 : dtype === 'uint8' ? Math.floor(r() * 256) : Math.round((r() * 8 - 4) * 64) / 64 + r() * 1e-3));
  if (nan) for (let i = 0; i < v.length; i += 37) v[i] = i % 74 ? NaN : -Infinity;
  return fromF64(dtype, dims, v);
}

// ---- pooling -----------------------------------------------------------------------------------------------------

interface PoolCase { id: string; p: PoolProblem; nan?: boolean }

const pool = (dtype: DType, kind: 'max' | 'avg', n: number, c: number, inSpatial: number[], kernel: number[], o: Partial<PoolProblem> = {}): PoolProblem => {
  const sd = inSpatial.length, strides_ = o.strides ?? kernel.map(() => 1), pb = o.padsBegin ?? kernel.map(() => 0), pe = o.padsEnd ?? pb;
  const dil = o.dilations ?? kernel.map(() => 1);
  const outSpatial = inSpatial.map((x, d) => Math.floor((x + pb[d] + pe[d] - ((kernel[d] - 1) * dil[d] + 1)) / strides_[d]) + 1);
  return { dtype, kind, layout: 'NHWC', n, c, inSpatial, outSpatial, kernel, strides: strides_, padsBegin: pb.slice(0, sd), padsEnd: pe.slice(0, sd), dilations: dil, countIncludePad: false, ...o };
};

const POOL_CASES: PoolCase[] = [
  { id: 'fp16 max 3x3/2 pad 1 (the ResNet-50 pool), C=64', p: pool('float16', 'max', 2, 64, [9, 11], [3, 3], { strides: [2, 2], padsBegin: [1, 1] }) },
  { id: 'fp16 max with NaN and -inf inputs, C=16', p: pool('float16', 'max', 1, 16, [7, 6], [3, 3], { strides: [2, 2], padsBegin: [1, 1] }), nan: true },
  { id: 'fp16 avg 3x3/1 pad 1 count_include_pad=0, C=16', p: pool('float16', 'avg', 2, 16, [6, 5], [3, 3], { padsBegin: [1, 1] }) },
  { id: 'fp16 avg 3x3/2 pads 1,0 / 2,1 count_include_pad=1, C=24', p: pool('float16', 'avg', 1, 24, [7, 8], [3, 3], { strides: [2, 2], padsBegin: [1, 0], padsEnd: [2, 1], countIncludePad: true }) },
  { id: 'fp16 C=12: 8-byte vectors only', p: pool('float16', 'max', 2, 12, [5, 5], [2, 2], { strides: [2, 2] }) },
  { id: 'bf16 max 3x3/2 pad 1, C=32', p: pool('bfloat16', 'max', 2, 32, [8, 7], [3, 3], { strides: [2, 2], padsBegin: [1, 1] }) },
  { id: 'bf16 avg 2x2/2 count_include_pad=1, C=16', p: pool('bfloat16', 'avg', 1, 16, [6, 6], [2, 2], { strides: [2, 2], countIncludePad: true }) },
  { id: 'fp32 avg 2x2/2, C=12', p: pool('float32', 'avg', 2, 12, [6, 7], [2, 2], { strides: [2, 2] }) },
  // (int8 / uint8 max: the packed-word path, no float conversions; a 2x2 window with pads 1 has corner windows of one tap)
  { id: 'int8 max 3x3/2 pad 1, C=32', p: pool('int8', 'max', 2, 32, [7, 7], [3, 3], { strides: [2, 2], padsBegin: [1, 1] }) },
  { id: 'uint8 max 2x2/1 pad 1, C=16', p: pool('uint8', 'max', 1, 16, [5, 4], [2, 2], { padsBegin: [1, 1] }) },
  { id: '1-D fp16 max, dilation 2, C=16', p: pool('float16', 'max', 2, 16, [13], [3], { strides: [2], padsBegin: [2], dilations: [2] }) },
  { id: '3-D fp16 avg 2x2x2 pads, C=8', p: pool('float16', 'avg', 1, 8, [4, 5, 3], [2, 2, 2], { padsBegin: [1, 0, 1], padsEnd: [0, 1, 1], countIncludePad: true }) },
];

/** Every packed width the case allows (16-byte aligned buffers). */
const poolVecs = (p: PoolProblem) => VECS.filter((v) => !poolVecProblems(p, v, 16).length);

/** The ONNX pool node's CPU reference on the NCHW form of x, back to NHWC. */
function poolReference(p: PoolProblem, x: Tensor): Tensor {
  const sd = p.inSpatial.length, toNchw = [0, sd + 1, ...p.inSpatial.map((_, d) => d + 1)];
  const node: Node = {
    name: 'pool', op: p.kind === 'max' ? 'MaxPool' : 'AveragePool', domain: '', inputs: ['x'], outputs: ['y'],
    attrs: {
      kernel_shape: ints(p.kernel), strides: ints(p.strides), pads: ints([...p.padsBegin, ...p.padsEnd]),
      ...(p.kind === 'max' ? { dilations: ints(p.dilations) } : { count_include_pad: { kind: 'int', value: p.countIncludePad ? 1 : 0 } }),
    },
  };
  const y = getOp(node.op)!.cpu!(node, [transpose(x, toNchw)], { opset: 19, runGraph: () => [] } as never)[0];
  return transpose(y, [0, ...p.inSpatial.map((_, d) => d + 2), 1]);
}

/** `k` launched on a grid of `blocks`, renamed so the emulator keeps it apart (the grid-stride loop then runs). */
function onGrid(k: KernelSource, blocks: number): KernelSource {
  const name = `${k.name}_g${blocks}`;
  return { ...k, name, source: k.source.replaceAll(k.name, name), grid: [blocks, 1, 1] };
}

// ---- Relayout ----------------------------------------------------------------------------------------------------

interface RelayoutCase { id: string; p: RelayoutProblem }

const RELAYOUT_CASES: RelayoutCase[] = [
  { id: 'stem fp32 NCHW -> fp16 NHWC, channels 3 -> 8', p: { from: 'float32', to: 'float16', inDims: [2, 3, 6, 10], perm: [0, 2, 3, 1], pads: [0, 0, 0, 0, 0, 0, 0, 5] } },
  { id: 'stem fp32 -> bf16, channels 3 -> 8', p: { from: 'float32', to: 'bfloat16', inDims: [1, 3, 5, 4], perm: [0, 2, 3, 1], pads: [0, 0, 0, 0, 0, 0, 0, 5] } },
  { id: 'fp16 NCHW -> fp32 NHWC, C=16 (4 runs of 4 per pixel)', p: { from: 'float16', to: 'float32', inDims: [2, 16, 3, 5], perm: [0, 2, 3, 1], pads: [0, 0, 0, 0, 0, 0, 0, 0] } },
  { id: 'inner axis 3 + 32 + 5 padded, outer pads too', p: { from: 'float32', to: 'float16', inDims: [2, 3, 5, 32], perm: [0, 2, 1, 3], pads: [0, 1, 0, 3, 0, 2, 1, 5] } },
  { id: 'transposed inner axis (lanes stride 3)', p: { from: 'float32', to: 'float16', inDims: [2, 8, 3], perm: [0, 2, 1], pads: [0, 0, 0, 0, 0, 0] } },
  { id: 'plain cast fp32 -> fp16', p: { from: 'float32', to: 'float16', inDims: [3, 24], perm: [0, 1], pads: [0, 0, 0, 0] } },
];

const relayoutVecs = (p: RelayoutProblem) => VECS.filter((v) => !relayoutVecProblems(p, v, 16).length);

function relayoutReference(p: RelayoutProblem, x: Tensor): Tensor {
  const node: Node = {
    name: 'r', op: 'Relayout', domain: 'tsrt', inputs: ['x'], outputs: ['y'],
    attrs: { perm: ints(p.perm), pads: ints(p.pads), to: { kind: 'int', value: { float32: 1, float16: 10, bfloat16: 16 }[p.to as 'float32'] } },
  };
  return getOp('Relayout', 'tsrt')!.cpu!(node, [x], { opset: 19, runGraph: () => [] } as never)[0];
}

// ---- emulation ---------------------------------------------------------------------------------------------------

describe.skipIf(!hasGxx)('vector kernels under the CPU emulator: the scalar kernel\'s bytes and the CPU reference', () => {
  it('every pooling and Relayout case, every vector width (one emulator build)', () => {
    const pools = POOL_CASES.map((c, i) => {
      const x = randomTensor(c.p.dtype, [c.p.n, ...c.p.inSpatial, c.p.c], 100 + i, c.nan);
      const packed = poolVecs(c.p).map((vec) => emitPool(c.p, { block: 256, vec }));
      // one width also at block 64 on 2 blocks: the grid-stride loop and a non-default block
      const kernels = [emitPool(c.p), ...packed, onGrid(emitPool(c.p, { block: 64, vec: poolVecs(c.p).at(-1) }), 2)];
      return { c, x, kernels, ref: c.nan ? undefined : poolReference(c.p, x), outBytes: c.p.n * size(c.p.outSpatial) * c.p.c * bytesOf(x).length / size(x.dims) };
    });
    const relayouts = RELAYOUT_CASES.map((c, i) => {
      const x = randomTensor(c.p.from, c.p.inDims, 200 + i);
      const vecs = relayoutVecs(c.p);
      const kernels = [emitRelayout(c.p), ...vecs.map((vec) => emitRelayout(c.p, { vec })), onGrid(emitRelayout(c.p, { block: 64, vec: vecs.at(-1) }), 1)];
      const ref = relayoutReference(c.p, x);
      return { c, x, kernels, ref, outBytes: bytesOf(ref).length };
    });
    for (const r of [...pools, ...relayouts]) expect(r.kernels.length, r.c.id).toBeGreaterThanOrEqual(3);
    const all = [...pools, ...relayouts];
    const outs = emulateKernels('pool-relayout-vec', all.map((r) => ({
      kernels: r.kernels,
      bufs: [{ param: 'x', bytes: bytesOf(r.x) }, { param: 'y', bytes: Buffer.alloc(r.outBytes), output: true }],
    })));
    let checked = 0;
    all.forEach((r, i) => {
      const scalar = outs[i].get(r.kernels[0].name)!.y;
      if (r.ref) expect(scalar.equals(bytesOf(r.ref)), `${r.c.id}: scalar kernel vs CPU reference`).toBe(true);
      for (const k of r.kernels.slice(1)) {
        const got = outs[i].get(k.name)!.y;
        const firstDiff = got.findIndex((b, j) => b !== scalar[j]);
        expect(firstDiff, `${r.c.id}: ${k.name} differs from the scalar kernel at byte ${firstDiff}`).toBe(-1);
        checked++;
      }
    });
    expect(checked).toBeGreaterThanOrEqual(40);
  }, 240_000);
});

// ---- NVRTC ---------------------------------------------------------------------------------------------------------

/** ResNet-50 fp16 batch 256: the maxpool after the stem and the input relayout of the profile in issue 7. */
const RN50_POOL = (dtype: DType): PoolProblem => pool(dtype, 'max', 256, 64, [112, 112], [3, 3], { strides: [2, 2], padsBegin: [1, 1] });
const RN50_STEM = (to: DType): RelayoutProblem => ({ from: 'float32', to, inDims: [256, 3, 224, 224], perm: [0, 2, 3, 1], pads: [0, 0, 0, 0, 0, 0, 0, 5] });

/** Every valid tactic of a kernel's family (block sizes x vector widths) at 16-byte alignment. */
function everyTactic(k: KernelSource): KernelSource[] {
  const f = familyProblem(tunableOf(k)!, { align: 16 });
  return f.space.filter((t) => !f.problems(t).length).map((t) => f.emit(t));
}

describe.skipIf(!nvrtc)('every variant compiles with NVRTC for sm_90', () => {
  it('the emulated cases at every width, and every tactic of the ResNet-50 bs256 shapes (fp16, bf16)', () => {
    const kernels = [
      ...POOL_CASES.flatMap((c) => [emitPool(c.p), ...poolVecs(c.p).map((vec) => emitPool(c.p, { vec }))]),
      ...RELAYOUT_CASES.flatMap((c) => [emitRelayout(c.p), ...relayoutVecs(c.p).map((vec) => emitRelayout(c.p, { vec }))]),
      ...everyTactic(emitPool(RN50_POOL('float16'))), ...everyTactic(emitPool(RN50_POOL('bfloat16'))),
      ...everyTactic(emitRelayout(RN50_STEM('float16'))), ...everyTactic(emitRelayout(RN50_STEM('bfloat16'))),
      // past 2^31 elements the vector kernels index in 64 bits
      emitPool(pool('float16', 'max', 4096, 64, [112, 112], [3, 3], { strides: [2, 2], padsBegin: [1, 1] }), { vec: 8 }),
      emitRelayout({ ...RN50_STEM('float16'), inDims: [8192, 3, 224, 224] }, { vec: 8 }),
    ];
    const unique = [...new Map(kernels.map((k) => [k.name, k])).values()];
    expect(unique.length).toBeGreaterThanOrEqual(100);
    expect(unique.filter((k) => k.source.includes('long long i =') && /_v\d+_/.test(k.name)).length).toBe(2);
    for (const m of packModules(unique, 64)) {
      const r = compileCuda(m.source, { name: m.name, arch: 'sm_90' });
      expect(r.cubin?.[0], m.name).toBe(0x7f);
      expect(r.log.split('\n').filter((l) => /warning|error/i.test(l)), m.name).toEqual([]);
    }
  }, 180_000);
});

// ---- which kernel the lowering and the tuner take -------------------------------------------------------------------

describe('the vector path is chosen where it applies', () => {
  it('ResNet-50 shapes: 16-byte vectors (8 fp16/bf16 channels, 8 padded stem channels), one thread per vector', () => {
    for (const dtype of ['float16', 'bfloat16'] as DType[]) {
      expect(poolHeuristic(RN50_POOL(dtype), 16)).toEqual({ block: 256, vec: 8 });
      expect(relayoutHeuristic(RN50_STEM(dtype), 16)).toEqual({ block: 256, vec: 8 });
    }
    expect(poolHeuristic(RN50_POOL('float32'), 16).vec).toBe(4);
    expect(poolHeuristic(RN50_POOL('int8'), 16).vec).toBe(16);
    const k = emitPool(RN50_POOL('float16'), poolHeuristic(RN50_POOL('float16'), 16));
    expect(k.name).toMatch(/^maxpool_v8_/);
    expect(k.source).toContain('uint4');
    const r = emitRelayout(RN50_STEM('float16'), relayoutHeuristic(RN50_STEM('float16'), 16));
    expect(r.name).toMatch(/^relayout_v8_/);
    // the 3 real channels are read, the 5 pad lanes are constant zeros: no per-lane bounds checks
    expect(r.source.match(/xb\[/g)?.length).toBe(3);
    expect(r.source).not.toContain('inside');
  });

  it('misaligned buffers, channel counts that are not a vector multiple and channels-first take narrower or scalar kernels, with the reason', () => {
    const p = RN50_POOL('float16');
    expect(poolHeuristic(p, 8).vec).toBe(4);
    expect(poolHeuristic(p, 2).vec).toBe(1);
    expect(poolVecProblems(p, 8, 8)).toEqual(['x/y are only 8-byte aligned, the 16-byte vectors need more']);
    const c3 = { ...p, c: 3 }, c12 = { ...p, c: 12 };
    expect(poolHeuristic(c3, 16).vec).toBe(1);
    expect(poolVecProblems(c3, 8, 16)).toEqual(['3 channels are not a multiple of vec 8']);
    expect(poolHeuristic(c12, 16).vec).toBe(4);
    expect(poolHeuristic({ ...p, layout: 'NCHW' }, 16).vec).toBe(1);
    expect(poolVecProblems({ ...p, layout: 'NCHW' }, 8, 16)[0]).toMatch(/channels-first/);
    expect(poolVecProblems({ ...p, dtype: 'float64' }, 2, 16)[0]).toMatch(/float64 has no packed vector form/);
    expect(emitPool(c3, poolHeuristic(c3, 16)).name).toMatch(/^maxpool_[0-9a-f]+$/);
    expect(() => emitPool(c3, { vec: 8 })).toThrow(/3 channels are not a multiple of vec 8/);
    const s = RN50_STEM('float16');
    expect(relayoutHeuristic(s, 4).vec).toBe(2);
    expect(relayoutHeuristic({ ...s, pads: [0, 0, 0, 0, 0, 0, 0, 0] }, 16).vec).toBe(1); // 3 channels: 6 bytes a pixel
    expect(relayoutVecProblems({ ...s, pads: [0, 0, 0, 0, 0, 0, 0, 0] }, 2, 16)).toEqual(['the innermost output axis (3) is not a multiple of vec 2']);
    expect(emitRelayout({ from: 'float16', to: 'float32', inDims: [2, 7, 7, 64], perm: [0, 3, 1, 2], pads: [0, 0, 0, 0, 0, 0, 0, 0] }, relayoutHeuristic({ from: 'float16', to: 'float32', inDims: [2, 7, 7, 64], perm: [0, 3, 1, 2], pads: [0, 0, 0, 0, 0, 0, 0, 0] }, 16)).name).toMatch(/^relayout_[0-9a-f]+$/);
  });

  it('the tuner sees pool and relayout families: default = the lowered kernel, every width x block size, pruned with reasons', () => {
    const k = emitPool(RN50_POOL('float16'), poolHeuristic(RN50_POOL('float16'), 16));
    const f = familyProblem(tunableOf(k)!, { align: 16 });
    expect(f.family).toBe('pool');
    expect(f.key.startsWith('pool float16 ')).toBe(true);
    expect(f.emit(f.heuristic).name).toBe(k.name);
    const valid = f.space.filter((t) => !f.problems(t).length).map(tacticLabel);
    expect(valid).toHaveLength(5 * 4); // blocks 64..1024 x vec 1, 2, 4, 8
    expect(f.problems({ block: 256, vec: 16 })).toEqual(['a vector of 16 float16 is 32 bytes, not 4, 8 or 16']);
    expect(f.problems({ tpr: 32 })).toEqual(['pool takes block and vec only']);
    const picks = pickTactics(f, 3);
    expect(picks[0]).toEqual(f.heuristic);
    expect(picks).toHaveLength(5);
    expect(new Set(picks.map((t) => f.emit(t).name)).size).toBe(5);
    // an 8-byte aligned buffer: the tuner's default is what the lowering would take there
    const f8 = familyProblem(tunableOf(k)!, { align: 8 });
    expect(f8.heuristic).toEqual({ block: 256, vec: 4 });
    expect(f8.problems({ block: 256, vec: 8 })).toEqual(['x/y are only 8-byte aligned, the 16-byte vectors need more']);
    const r = familyProblem(tunableOf(emitRelayout(RN50_STEM('float16')))!, { align: 16 });
    expect(r.family).toBe('relayout');
    expect(r.heuristic).toEqual({ block: 256, vec: 8 });
    expect(r.key.startsWith('relayout float16 ')).toBe(true);
    const tactics: KernelTactic[] = r.space.filter((t) => !r.problems(t).length);
    expect(tactics.map((t) => t.vec ?? 1).sort((a, b) => a - b).filter((v, i, a) => a.indexOf(v) === i)).toEqual([1, 2, 4, 8]);
  });

  it.skipIf(!existsSync(LIGHT))('light ResNet-50 fp16 lowers its maxpool and padded-channel stem relayout to the 16-byte kernels', async () => {
    const m = loadModel(`${LIGHT}light_resnet50/model.onnx`);
    const vi = m.graph.inputs[0];
    // the generic Relayout stem (a space-to-depth stem, where that pass runs, has a kernel of its own)
    const passes = PIPELINE.filter((p) => !/space.to.depth/.test(p.name));
    const e = await build(m, { device: 'cpu', compileKernels: false, fp16: true, shapes: { [vi.name]: [1, 3, 224, 224] }, passes });
    const kernels = e.lowered.steps.flatMap((s) => (s.kind === 'kernel' ? [s] : []));
    const prefix = (op: string) => kernels.filter((s) => s.op === op).map((s) => s.kernel.name.split('_').slice(0, 2).join('_'));
    expect(prefix('MaxPool')).toEqual(['maxpool_v8']);
    expect(prefix('Relayout')[0]).toBe('relayout_v8');
    // one thread per 8 channels of the [1,56,56,64] pool output and per 16-byte pixel of the [1,224,224,8] image
    expect(kernels.find((s) => s.op === 'MaxPool')!.kernel.grid[0]).toBe(Math.ceil((56 * 56 * 8) / 256));
    expect(kernels.find((s) => s.op === 'Relayout')!.kernel.grid[0]).toBe(Math.ceil((224 * 224) / 256));
  }, 120_000);
});
