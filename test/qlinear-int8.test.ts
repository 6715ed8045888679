// QLinearConv / QLinearMatMul on the int8 kernels (issue 6, item 4; passes/qlinear_int8.ts):
//  - symmetric int8 graphs (per-tensor and per-channel weight scales, int32 bias, 1x1 and 3x3, strides, batched
//    MatMul) become tsrt::QConv / QGemm qlinear=1, and their CPU reference is bit-identical before and after;
//  - the full pipeline lowers them to int8 tensor-core kernels (no host step), every kernel compiles with NVRTC;
//  - the kernels' qlinear epilogue, run under the CPU emulator of the generated CUDA, equals the reference bit for bit,
//    on rounding ties and on products the fp32 epilogue of the Q/DQ path would round differently;
//  - asymmetric / uint8 / unsupported nodes stay on the host with the reason in the fusion report, and the official
//    ONNX node tests keep their expected outputs.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { lowerGraph } from '../src/codegen/lower.js';
import { emitConvInt8, emitGemmInt8, type Int8Epilogue } from '../src/codegen/tc_int8.js';
import { fromF64, makeTensor, toF64 } from '../src/ir/tensor.js';
import type { Graph, Node, Tensor } from '../src/ir/types.js';
import { loadModel, loadTensorFile } from '../src/onnx/import.js';
import { rint } from '../src/ops/quant.js';
import { getOp } from '../src/ops/registry.js';
import { newPassContext, runPasses } from '../src/passes/pass.js';
import { optimize } from '../src/passes/pipeline.js';
import { qlinearInt8 } from '../src/passes/qlinear_int8.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { build } from '../src/runtime/engine.js';
import { compileCuda } from '../src/runtime/nvrtc.js';
import { runConformance } from '../src/cli/conformance.js';
import '../src/ops/index.js';
import '../src/codegen/lowerings.js';
import '../src/codegen/lower_conv.js';
import '../src/codegen/lower_int8.js';
import { conv, diffCount, emulate, hasGxx, randI8, small } from './int8_cases.js';
import { prep } from './ir-cases.js';
import { rng } from './helpers.js';

const NODE_TESTS = new URL('../../shared/onnx-tests/node/', import.meta.url).pathname;
const hasNvrtc = existsSync('/usr/lib/x86_64-linux-gnu/libnvrtc.so.11.2') || !!process.env.TSRT_NVRTC;

const r = rng(3);
const list = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i)).join(', ');
const i8s = (n: number) => list(n, () => Math.floor(r() * 256) - 128);

interface ConvSpec { n: number; c: number; h: number; m: number; k: number; stride: number; pad: number; perChannel: boolean; bias: boolean }

/** One symmetric int8 QLinearConv. Scales are powers of two on even channels (the multiplier then puts many
 * results exactly on .5: round half to even decides) and arbitrary fp32 values on odd ones. */
function convText(s: ConvSpec, name = 'qconv'): string {
  const p = Math.floor((s.h + 2 * s.pad - s.k) / s.stride) + 1;
  const ws = s.perChannel ? `float32[${s.m}] = [${list(s.m, (i) => (i % 2 ? 0.0007 + 0.0003 * r() : 2 ** -(8 + (i % 4))))}]` : 'float32[] = [0.00125]';
  return `graph g(%x: int8[${s.n},${s.c},${s.h},${s.h}]) -> (%y: int8[${s.n},${s.m},${p},${p}]) opset 13 {
    const %xs: float32[] = [0.5]
    const %xz: int8[] = [0]
    const %w: int8[${s.m},${s.c},${s.k},${s.k}] = [${i8s(s.m * s.c * s.k * s.k)}]
    const %ws: ${ws}
    const %wz: int8[${s.perChannel ? s.m : 1}] = [${list(s.perChannel ? s.m : 1, () => 0)}]
    const %ys: float32[] = [0.25]
    const %yz: int8[] = [0]
    ${s.bias ? `const %b: int32[${s.m}] = [${list(s.m, () => Math.floor(r() * 4000) - 2000)}]` : ''}
    %y = QLinearConv(%x, %xs, %xz, %w, %ws, %wz, %ys, %yz${s.bias ? ', %b' : ''}) {strides=[${s.stride}, ${s.stride}], pads=[${s.pad}, ${s.pad}, ${s.pad}, ${s.pad}]} name="${name}" }`;
}

/** A [batch.., M, K] x [K, N] QLinearMatMul, per-column (or per-tensor) b_scale. */
function matmulText(aDims: number[], n: number, perColumn: boolean): string {
  const k = aDims[aDims.length - 1];
  const bs = perColumn ? `float32[${n}] = [${list(n, (i) => (i % 2 ? 0.0004 + 0.0002 * r() : 2 ** -(7 + (i % 3))))}]` : 'float32[] = [0.001953125]';
  return `graph g(%a: int8[${aDims}]) -> (%y: int8[${[...aDims.slice(0, -1), n]}]) opset 13 {
    const %as: float32[] = [0.5]
    const %az: int8[] = [0]
    const %b: int8[${k},${n}] = [${i8s(k * n)}]
    const %bs: ${bs}
    const %ys: float32[] = [0.5]
    %y = QLinearMatMul(%a, %as, %az, %b, %bs, %az, %ys, %az) name="qmm" }`;
}

/** Full-range int8 feeds (ir-cases' randomFeeds draws integers from [0, 3), too few to reach saturation). */
function feeds(g: Graph, seed = 5): Map<string, Tensor> {
  const rr = rng(seed);
  return new Map(g.inputs.map((i) => {
    const dims = i.type.shape as number[];
    return [i.name, makeTensor('int8', dims, Int8Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => Math.floor(rr() * 256) - 128))];
  }));
}

/** Output bytes of the CPU reference of `after` equal those of `before`; returns how many outputs saturate. */
function expectBitIdentical(before: Graph, after: Graph): number {
  const f = feeds(before);
  const want = runGraph(before, f).get('y')!, got = runGraph(after, f).get('y')!;
  expect(got.dtype).toBe('int8');
  expect(got.dims).toEqual(want.dims);
  const a = got.data as Int8Array, b = want.data as Int8Array;
  let diff = 0, sat = 0;
  for (let i = 0; i < b.length; i++) { if (a[i] !== b[i]) diff++; if (b[i] === 127 || b[i] === -128) sat++; }
  expect(diff, `${diff} of ${b.length} outputs differ`).toBe(0);
  return sat / b.length;
}

const CONVS: [string, ConvSpec][] = [
  ['3x3 s1, per-channel, bias', { n: 2, c: 16, h: 7, m: 24, k: 3, stride: 1, pad: 1, perChannel: true, bias: true }],
  ['3x3 s2, per-channel, bias, C=20 (padded to 32 in the kernel)', { n: 1, c: 20, h: 9, m: 16, k: 3, stride: 2, pad: 1, perChannel: true, bias: true }],
  ['1x1 s1, per-tensor, no bias', { n: 2, c: 32, h: 5, m: 40, k: 1, stride: 1, pad: 0, perChannel: false, bias: false }],
  ['1x1 s2, per-channel, bias', { n: 1, c: 48, h: 8, m: 32, k: 1, stride: 2, pad: 0, perChannel: true, bias: true }],
];
const MATMULS: [string, number[], number, boolean][] = [
  ['2-D, per-column b_scale', [5, 32], 24, true],
  ['3-D A (batched rows), per-tensor b_scale', [2, 3, 48], 16, false],
];

describe('qlinear-int8: QLinear nodes become int8 layers with a bit-identical CPU reference', () => {
  it.each(CONVS)('QLinearConv %s', (_id, s) => {
    const g = prep(convText(s));
    const ctx = newPassContext({ optLevel: 2 });
    const after = runPasses(g, [qlinearInt8], ctx);
    const q = after.nodes.find((n) => n.op === 'QConv')!;
    expect(after.nodes.map((n) => `${n.domain}::${n.op}`)).toEqual(['tsrt::QConv']);
    expect(q.attrs.qlinear).toEqual({ kind: 'int', value: 1 });
    expect(q.inputs.length).toBe(s.bias ? 4 : 3);
    expect(ctx.fusions.map((f) => `${f.pass}: ${f.kind} [${f.nodes}]`)).toEqual(['qlinear-int8: int8 conv [qlinear] [qconv]']);
    // scales, zero points: dropped with the QLinear node; only the weights, the channel scales and the bias stay
    expect(after.initializers.size).toBe(s.bias ? 3 : 2);
    const sat = expectBitIdentical(g, after);
    expect(sat).toBeLessThan(0.5); // the scales keep most outputs inside the int8 range (the test means something)
  });

  it.each(MATMULS)('QLinearMatMul %s', (_id, aDims, n, perColumn) => {
    const g = prep(matmulText(aDims, n, perColumn));
    const after = runPasses(g, [qlinearInt8], newPassContext({ optLevel: 2 }));
    expect(after.nodes.map((x) => x.op)).toEqual(['QGemm']);
    const w = after.initializers.get(after.nodes[0].inputs[1])!;
    expect(w.dims).toEqual([n, aDims[aDims.length - 1]]); // B [K, N] transposed to the kernel's [N, K]
    expect(expectBitIdentical(g, after)).toBeLessThan(0.5);
  });

  it('the QConv qlinear reference is ONNX QLinearConv on ties: round half to even, not half away from zero', () => {
    // x_scale 0.5, w_scale 1, y_scale 1: y = rint(acc / 2) for odd acc sits exactly on .5
    const node: Node = { name: 'q', op: 'QConv', domain: 'tsrt', inputs: ['x', 'w', 's'], outputs: ['y'], attrs: { x_scale: { kind: 'float', value: 0.5 }, y_scale: { kind: 'float', value: 1 }, qlinear: { kind: 'int', value: 1 } } };
    const x = makeTensor('int8', [1, 1, 1, 6], Int8Array.of(1, 3, 5, -1, -3, 7));
    const y = getOp('QConv', 'tsrt')!.cpu(node, [x, makeTensor('int8', [1, 1, 1, 1], Int8Array.of(1)), fromF64('float32', [1], [1])], { opset: 17, runGraph: () => [] })[0];
    expect(Array.from(y.data as Int8Array)).toEqual([0, 2, 2, 0, -2, 4]);
  });
});

describe('qlinear-int8: the full pipeline lowers to int8 kernels that compile', () => {
  /** Two QLinearConvs in a row (the first one's int8 output feeds the second directly) and a QLinearMatMul. */
  const chain = `graph g(%x: int8[2,16,8,8]) -> (%y: int8[2,32,4,4]) opset 13 {
    const %s1: float32[] = [0.5]
    const %z: int8[] = [0]
    const %w1: int8[32,16,3,3] = [${i8s(32 * 16 * 9)}]
    const %ws1: float32[32] = [${list(32, () => 0.0005 + 0.001 * r())}]
    const %b1: int32[32] = [${list(32, () => Math.floor(r() * 2000) - 1000)}]
    const %s2: float32[] = [0.25]
    const %w2: int8[32,32,1,1] = [${i8s(32 * 32)}]
    const %ws2: float32[] = [0.0078125]
    %h = QLinearConv(%x, %s1, %z, %w1, %ws1, %z, %s2, %z, %b1) {pads=[1, 1, 1, 1], strides=[2, 2]} name="c1"
    %y = QLinearConv(%h, %s2, %z, %w2, %ws2, %z, %s1, %z) name="c2" }`;

  it('auto_pad SAME_UPPER with dilation 2 and 1-D convs: the first lowers to an int8 kernel, the second stays on the host', () => {
    const same = prep(convText({ n: 1, c: 16, h: 9, m: 16, k: 3, stride: 2, pad: 0, perChannel: true, bias: true })
      .replace('int8[1,16,4,4]', 'int8[1,16,5,5]').replace(/pads=\[0, 0, 0, 0\]/, 'auto_pad="SAME_UPPER", dilations=[2, 2]'));
    const g = optimize(same, newPassContext({ optLevel: 2 }));
    expect(g.nodes.filter((n) => n.op === 'QConv').length).toBe(1);
    expectBitIdentical(same, g);
    const ks = lowerGraph(g, { fp16: false, allowHost: false, arch: 'sm_90' }).steps.flatMap((x) => (x.kind === 'kernel' ? [x.kernel.name] : []));
    expect(ks.filter((k) => k.startsWith('conv_i8_3x3s2_qlb'))).toHaveLength(1);
    const oneD = prep(`graph g(%x: int8[1,16,8]) -> (%y: int8[1,4,8]) opset 13 {
      const %s: float32[] = [0.5]
      const %z: int8[] = [0]
      const %w: int8[4,16,3] = [${i8s(4 * 16 * 3)}]
      %y = QLinearConv(%x, %s, %z, %w, %s, %z, %s, %z) {pads=[1, 1]} name="c1d" }`);
    const ctx = newPassContext({ optLevel: 2 });
    expect(runPasses(oneD, [qlinearInt8], ctx)).toBe(oneD);
    expect(ctx.rejected.map((x) => x.reason)).toEqual(['1-D convolution: the int8 kernels are 2-D; runs its CPU reference on the host']);
  }, 60_000);

  it.each([['conv chain', chain], ['matmul', matmulText([8, 64], 48, true)]])('%s: int8 layers, no host step, same bits as the unoptimized graph', (_id, text) => {
    const g0 = prep(text);
    const ctx = newPassContext({ optLevel: 2 });
    const g = optimize(g0, ctx);
    expect(g.nodes.filter((n) => n.domain === '' && n.op.startsWith('QLinear'))).toEqual([]);
    expect(ctx.rejected.filter((x) => x.pass === 'qlinear-int8')).toEqual([]);
    expectBitIdentical(g0, g);
    const l = lowerGraph(g, { fp16: false, allowHost: false, arch: 'sm_90' });
    const ks = l.steps.flatMap((s) => (s.kind === 'kernel' ? [s.kernel] : []));
    const layers = ks.filter((k) => /^(conv|gemm)_i8_/.test(k.name));
    expect(layers.length).toBe(text === chain ? 2 : 1);
    // the qlinear epilogue (kernel name 'ql': int8 out, qlinear; 'b': its int32 bias)
    for (const k of layers) {
      expect(k.name).toMatch(/_i8_(.+_)?qlb?_/);
      expect(k.source).toContain('__double2int_rn');
    }
    expect(layers.every((k) => k.source.includes('const int* __restrict__ bias'))).toBe(true);
    if (text === chain) expect(layers.map((k) => /_qlb_/.test(k.name))).toEqual([true, false]); // c1 has B, c2 none
    if (!hasNvrtc) return;
    for (const k of ks) {
      const c = compileCuda(k.source, { name: k.name, arch: 'sm_90' });
      expect(c.log.split('\n').filter((x) => /error/i.test(x)), k.name).toEqual([]);
    }
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------------
// The kernels' qlinear epilogue under the CPU emulator of the generated CUDA (test/int8_cases.ts)

const buf = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const epi = (bias: boolean): Int8Epilogue => ({ out: 'int8', outScale: 1, qlinear: true, bias });

/** QConv / QGemm qlinear reference with x_scale = y_scale = 1, so the kernel's multiplier is w_scale itself. */
function reference(op: 'QConv' | 'QGemm', x: Tensor, w: Tensor, mult: Float32Array, bias: Int32Array | undefined, attrs: Node['attrs'] = {}): Tensor {
  const node: Node = {
    name: 'ref', op, domain: 'tsrt', inputs: ['x', 'w', 's', bias ? 'b' : ''], outputs: ['y'],
    attrs: { ...attrs, x_scale: { kind: 'float', value: 1 }, y_scale: { kind: 'float', value: 1 }, qlinear: { kind: 'int', value: 1 } },
  };
  const b = bias ? makeTensor('int32', [bias.length], bias) : undefined;
  return getOp(op, 'tsrt')!.cpu(node, [x, w, makeTensor('float32', [mult.length], mult), b], { opset: 17, runGraph: () => [] })[0];
}

/** (acc, multiplier) pairs whose product rounds differently through fp32 (the Q/DQ epilogue's
 * rint(fp32(fp32(acc) * m))) than through float64 (ONNX's rint(acc * m)): fp32 lands them on or off a .5 tie. */
function fp32Disagreements(count: number): { acc: number; mult: number }[] {
  const out: { acc: number; mult: number }[] = [];
  const f = Math.fround;
  for (let acc = 3; out.length < count && acc < 128; acc += 2) {
    for (let t = 0; t < 40 && out.length < count; t++) {
      const target = t + 0.5;
      // the fp32 neighbours of target / acc: their products straddle the tie by less than an fp32 ulp
      for (const m0 of [f(target / acc), f(f(target / acc) * (1 + 2 ** -23)), f(f(target / acc) * (1 - 2 ** -23))]) {
        if (rint(f(f(acc) * m0)) !== rint(acc * m0) && !out.some((o) => o.mult === m0)) { out.push({ acc, mult: m0 }); break; }
      }
    }
  }
  return out;
}

describe.skipIf(!hasGxx)('qlinear epilogue: generated CUDA under the CPU emulator equals the reference bit for bit', () => {
  it('GEMM on products where an fp32 epilogue would round the other way, and on exact ties', () => {
    const bad = fp32Disagreements(16);
    expect(bad.length).toBe(16);
    // row m holds acc_m in column 0 (weight row n = e_0), so output (m, n) = rint(acc_m * mult_n): the diagonal is
    // the disagreeing pairs; the other rows (powers of two) put odd sums exactly on .5
    const M = 24, N = 16, K = 32;
    const a = new Int8Array(M * K), w = new Int8Array(N * K);
    for (let m = 0; m < M; m++) a[m * K] = m < N ? bad[m].acc : 2 * (m - N) - 7;
    for (let n = 0; n < N; n++) w[n * K] = 1;
    const mult = Float32Array.from({ length: N }, (_, n) => bad[n].mult);
    mult[N - 1] = 0.5;
    const ref = reference('QGemm', makeTensor('int8', [M, K], a), makeTensor('int8', [N, K], w), mult, undefined);
    const k = emitGemmInt8({ m: M, n: N, k: K }, epi(false), small(32, 32, 1, 2, 2));
    const out = emulate(k, 'qlinear_gemm_ties', { a: buf(a), b: buf(w), scale: buf(mult) }, M * N);
    expect(diffCount(epi(false), out, ref, M * N)).toBe(0);
    // the fp32 epilogue of the Q/DQ path would have differed on the diagonal: this case can tell them apart
    const y = ref.data as Int8Array;
    const viaFp32 = bad.filter((p, m) => rint(Math.fround(Math.fround(p.acc) * mult[m])) !== y[m * N + m]).length;
    expect(viaFp32).toBe(bad.length - 1); // all but column N - 1, whose multiplier was replaced by 0.5
  }, 300_000);

  const cases: [string, ReturnType<typeof conv>, boolean, ReturnType<typeof small>][] = [
    ['conv 3x3 s1 bias (direct stores, N=24)', conv(2, 6, 32, 24, 3, 1, 1), true, small(32, 32, 1, 2, 3)],
    ['conv 3x3 s2 bias split-K (staged stores, N=32)', conv(1, 7, 64, 32, 3, 2, 1), true, small(32, 32, 1, 2, 4, 3)],
    ['conv 1x1 no bias (staged, N=64)', conv(2, 5, 48, 64, 1, 1, 0), false, small(64, 32, 2, 1, 2)],
  ];
  it.each(cases)('%s', (id, p, bias, cfg) => {
    const x = makeTensor('int8', [p.n, p.h, p.w, p.c], randI8(p.n * p.h * p.w * p.c, 99));
    const wk = randI8(p.k * p.r * p.s * p.c); // the kernel's [K][R][S][C]
    const wkcrs = new Int8Array(wk.length);
    for (let ko = 0; ko < p.k; ko++) for (let ci = 0; ci < p.c; ci++) for (let ri = 0; ri < p.r; ri++) for (let si = 0; si < p.s; si++) {
      wkcrs[((ko * p.c + ci) * p.r + ri) * p.s + si] = wk[((ko * p.r + ri) * p.s + si) * p.c + ci];
    }
    const mult = Float32Array.from({ length: p.k }, (_, i) => (i % 3 ? Math.fround(0.0005 + 0.002 * r()) : 2 ** -(9 + (i % 4))));
    const b = bias ? Int32Array.from({ length: p.k }, () => Math.floor(r() * 40000) - 20000) : undefined;
    const attrs: Node['attrs'] = {
      layout: { kind: 'string', value: 'NHWC' }, strides: { kind: 'ints', value: [p.strideH, p.strideW] },
      pads: { kind: 'ints', value: [p.padH, p.padW, p.padH, p.padW] },
    };
    const ref = reference('QConv', x, makeTensor('int8', [p.k, p.c, p.r, p.s], wkcrs), mult, b, attrs);
    const bufs: Record<string, Buffer> = { x: buf(x.data as Int8Array), w: buf(wk), scale: buf(mult) };
    if (b) bufs.bias = buf(b);
    const n = ref.data.length;
    const out = emulate(emitConvInt8(p, epi(bias), cfg), `qlinear_${id.replace(/\W+/g, '_')}`, bufs, n);
    expect(diffCount(epi(bias), out, ref, n), `of ${n}`).toBe(0);
    const y = Array.from(ref.data as Int8Array);
    expect(y.filter((v) => v === 127 || v === -128).length).toBeLessThan(n / 2);
  }, 300_000);
});

// ---------------------------------------------------------------------------------------------------
// What stays on the host, and the official node tests

describe('qlinear-int8: nodes the kernels cannot compute exactly stay on the host, with the reason', () => {
  const base: ConvSpec = { n: 1, c: 16, h: 6, m: 16, k: 3, stride: 1, pad: 1, perChannel: false, bias: true };
  const reason = (text: string) => {
    const g = prep(text);
    const ctx = newPassContext({ optLevel: 2 });
    const after = runPasses(g, [qlinearInt8], ctx);
    expect(after).toBe(g); // nothing converted: the graph itself comes back
    return ctx.rejected.filter((x) => x.pass === 'qlinear-int8').map((x) => `${x.nodes}: ${x.reason}`);
  };
  it.each([
    ['x zero point 3', (t: string) => t.replace('const %xz: int8[] = [0]', 'const %xz: int8[] = [3]'), 'qconv: zero point 3 (int8) on input x: int8 kernels are symmetric (int8, zero point 0); runs its CPU reference on the host'],
    ['a per-channel weight zero point', (t: string) => t.replace('const %wz: int8[1] = [0]', 'const %wz: int8[1] = [-1]'), 'qconv: zero point -1 (int8) on input w: int8 kernels are symmetric (int8, zero point 0); runs its CPU reference on the host'],
    ['uint8 data with zero point 128', (t: string) => t.replace('%x: int8', '%x: uint8').replace('const %xz: int8[] = [0]', 'const %xz: uint8[] = [128]'), 'qconv: zero point 128 (uint8) on input x: int8 kernels are symmetric (int8, zero point 0); runs its CPU reference on the host'],
    ['grouped conv', (t: string) => t.replace('int8[16,16,3,3]', 'int8[16,8,3,3]').replace('strides=', 'group=2, strides='), 'qconv: group 2: the int8 conv kernels need group 1; runs its CPU reference on the host'],
    ['a float16 y_scale', (t: string) => t.replace('const %ys: float32[] = [0.25]', 'const %ys: float16[] = [0.25]'), 'qconv: float16 y_scale (the kernels\' requantize is fp32); runs its CPU reference on the host'],
  ])('%s', (_id, edit, want) => {
    let text = edit(convText(base));
    if (_id === 'grouped conv') text = text.replace(/(const %w: int8\[16,8,3,3\] = \[)[^\]]*\]/, `$1${i8s(16 * 8 * 9)}]`);
    expect(reason(text)).toEqual([want]);
  });
  it('QLinearMatMul: activations on both sides, and K % 16', () => {
    const two = `graph g(%a: int8[4,16], %b: int8[16,8]) -> (%y: int8[4,8]) opset 13 {
      const %s: float32[] = [0.5]
      const %z: int8[] = [0]
      %y = QLinearMatMul(%a, %s, %z, %b, %s, %z, %s, %z) name="mm" }`;
    expect(reason(two)).toEqual(['mm: b is not a constant (the int8 GEMM takes constant weights); runs its CPU reference on the host']);
    expect(reason(matmulText([4, 24], 8, false))).toEqual(['qmm: K=24 is not a multiple of 16 (the int8 GEMM loads 16-byte rows); runs its CPU reference on the host']);
  });
});

describe.skipIf(!existsSync(NODE_TESTS))('official ONNX node tests test_qlinearconv*, test_qlinearmatmul*', () => {
  it('still pass on the CPU reference (conformance runner)', async () => {
    const res = await runConformance(NODE_TESTS, { filter: /^test_qlinear(conv|matmul)/ });
    expect(res.length).toBeGreaterThanOrEqual(7);
    expect(res.filter((x) => x.status !== 'PASS').map((x) => `${x.name}: ${x.reason}`)).toEqual([]);
  }, 60_000);

  it('built through the whole pipeline (scales, zero points, weights fixed at build time): same output, host reason in the report', async () => {
    const res = await runConformance(NODE_TESTS, { filter: /^test_qlinear(conv|matmul)/ });
    for (const { name } of res) {
      const dir = `${NODE_TESTS}${name}/`;
      const model = loadModel(`${dir}model.onnx`);
      const inputs = model.graph.inputs.map((vi, k) => [vi.name, loadTensorFile(`${dir}test_data_set_0/input_${k}.pb`)] as const);
      const engine = await build(model, {
        device: 'cpu', compileKernels: false, shapes: Object.fromEntries(inputs.map(([k, t]) => [k, t.dims])),
        inputValues: Object.fromEntries(inputs.slice(1)),
      });
      const got = (await engine.run(Object.fromEntries(inputs))).get(engine.outputs[0].name)!;
      const want = loadTensorFile(`${dir}test_data_set_0/output_0.pb`);
      expect(Array.from(toF64(got)), name).toEqual(Array.from(toF64(want)));
      // every one of them has a non-zero zero point (uint8, or int8 with -14 / -9): they stay on the host
      const why = engine.passContext.rejected.filter((x) => x.pass === 'qlinear-int8').map((x) => x.reason);
      expect(why, name).toHaveLength(1);
      expect(why[0], name).toMatch(/^zero point -?\d+ \((u?int8)\) on input [ax]: int8 kernels are symmetric/);
      expect(engine.report.hostSteps, name).toBe(1);
    }
  }, 60_000);
});
