// Strided concat placement (issue 5): at batch > 1 (and for channels-last concats at any batch) a Concat's inputs
// interleave in its output, and concat-in-place lets the convs among its producers store their rows straight there
// (y_concat / y_row_stride / y_offset, the conv kernels' ldY/yOffset). Checked here: the pass (Transposes sunk
// below Concats, which convs are placed and why the others are not), and the lowered steps run on the memory plan
// with every node's CPU reference reading from and writing to the device addresses (a placed conv writes its rows
// `y_row_stride` elements apart from its slot, as its kernel does), against the CPU reference of the graph, for
// the light models at batch 2; the fp16 engines' strided conv kernels compile with NVRTC. The kernels' strided
// stores themselves run under the CPU emulators (test/codegen-tc.test.ts, test/codegen-wgmma-emu.test.ts).
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { fromF64, size, toF64 } from '../src/ir/tensor.js';
import type { Model, Tensor } from '../src/ir/types.js';
import { attrInt, attrString } from '../src/ops/attrs.js';
import { concatInPlace } from '../src/passes/concat.js';
import type { KernelSource } from '../src/codegen/kernel.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { build, type Engine } from '../src/runtime/engine.js';
import { compileCuda, nvrtcVersion } from '../src/runtime/nvrtc.js';
import { loadModel, loadTensorFile } from '../src/onnx/import.js';
import { compareTensors } from '../src/cli/conformance.js';
import { checkPass, rejections } from './ir-cases.js';
import { randomWeights, runOnPlan } from './plan_runner.js';

const PASS = concatInPlace.name;
const LIGHT = new URL('../../shared/onnx-tests/models/light/', import.meta.url).pathname;
const hasNvrtc = (() => { try { nvrtcVersion(); return true; } catch { return false; } })();

/** The light model at batch `n`: a symbolic batch dim, and Reshape targets that fix batch 1 read -1 instead. */
function rebatch(name: string, n: number): { model: Model; feeds: Map<string, Tensor>; dims: number[] } {
  const model: Model = loadModel(`${LIGHT}${name}/model.onnx`);
  const g = model.graph;
  const inits = new Map(g.initializers);
  for (const nd of g.nodes) {
    const t = nd.op === 'Reshape' ? inits.get(nd.inputs[1]) : undefined;
    if (!t || t.data.length < 2 || Number(t.data[0]) !== 1) continue;
    const d = (t.data as BigInt64Array).slice();
    d[0] = -1n;
    inits.set(nd.inputs[1], { ...t, data: d });
  }
  const sym = <T extends { type: { shape: (number | string)[] } }>(v: T): T => ({ ...v, type: { ...v.type, shape: ['N', ...v.type.shape.slice(1)] } });
  model.graph = { ...g, initializers: inits, inputs: [sym(g.inputs[0]), ...g.inputs.slice(1)], outputs: g.outputs.map(sym), valueTypes: new Map() };
  const one = loadTensorFile(`${LIGHT}${name}/test_data_set_0/input_0.pb`);
  const dims = [n, ...one.dims.slice(1)];
  const x = toF64(one), all = new Float64Array(size(dims));
  for (let i = 0; i < n; i++) all.set(x.map((v) => v * (1 - 0.25 * i)), i * x.length); // images differ
  return { model, feeds: new Map([[g.inputs[0].name, fromF64(one.dtype, dims, all)]]), dims };
}


const placedConvs = (e: Engine) => e.graph.nodes.filter((n) => attrString(n, 'y_concat', '')).length;
const stridedAliases = (e: Engine) => e.lowered.steps.filter((s) => s.kind === 'alias' && /Conv/.test(s.op)).length;
const kernels = (e: Engine, re: RegExp) => e.lowered.steps.filter((s) => s.kind === 'kernel' && re.test(s.kernel.name)).length;
const inPlace = (e: Engine) => e.graph.nodes.filter((n) => n.op === 'ConcatInPlace').length;

describe('concat-in-place: strided slices', () => {
  it('channels-last: NHWC->NCHW Transposes sink below the Concat, which then places both convs on axis 3', () => {
    const conv = (i: number, k: number) => `%c${i} = tsrt::FusedConv(%xh, %w${i}) {layout="NHWC"}\n  %t${i} = Transpose(%c${i}) {perm=[0, 3, 1, 2]}`;
    const before = `graph g(%x: float32[2,4,3,3]) -> (%y: float32[2,5,3,3]) opset 17 {
  const %w1: float32[2,4,1,1] = [1, -1, 0.5, 2, 0, 1, 1, -2]
  const %w2: float32[3,4,1,1] = [-0.5, 1, 1, 0.25, 1, 0, -1, 1, 2, 0, 1, 0.5]
  %xh = Transpose(%x) {perm=[0, 2, 3, 1]}
  ${conv(1, 2)}
  ${conv(2, 3)}
  %cat = Concat(%t1, %t2) {axis=1}
  %h = Transpose(%cat) {perm=[0, 2, 3, 1]}
  %r = Relu(%h)
  %y = Transpose(%r) {perm=[0, 3, 1, 2]}
}`;
    const after = `graph g(%x: float32[2,4,3,3]) -> (%y: float32[2,5,3,3]) opset 17 {
  const %w1: float32[2,4,1,1] = [1, -1, 0.5, 2, 0, 1, 1, -2]
  const %w2: float32[3,4,1,1] = [-0.5, 1, 1, 0.25, 1, 0, -1, 1, 2, 0, 1, 0.5]
  %xh = Transpose(%x) {perm=[0, 2, 3, 1]}
  %c1 = tsrt::FusedConv(%xh, %w1) {layout="NHWC", y_concat="cat_0312_0", y_row_stride=5, y_offset=0}
  %c2 = tsrt::FusedConv(%xh, %w2) {layout="NHWC", y_concat="cat_0312_0", y_row_stride=5, y_offset=2}
  %cat_0312_0 = tsrt::ConcatInPlace(%c1, %c2) {axis=3}
  %r = Relu(%cat_0312_0)
  %y = Transpose(%r) {perm=[0, 3, 1, 2]}
}`;
    const { ctx } = checkPass({ pass: concatInPlace, before, after });
    expect(ctx.fusions.filter((f) => f.pass === PASS).map((f) => f.kind)).toEqual([
      'Transpose sunk below Concat (2 inputs, now on axis 3)', 'Concat(FusedConv,FusedConv): 2 convs store strided rows']);
    expect(rejections(ctx, PASS)).toEqual([]);
  });

  it('a conv output read by anything besides the Concat, or a depthwise conv, keeps its buffer (copied), with the reason', () => {
    const before = `graph g(%x: float32[2,2,4,4]) -> (%y: float32[2,6,4,4], %z: float32[2,2,4,4]) opset 17 {
  const %w1: float32[2,2,1,1] = [1, -1, 0.5, 2]
  const %w2: float32[2,1,3,3] = [1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1]
  const %w3: float32[2,2,1,1] = [-0.5, 1, 1, 0.25]
  %a = Conv(%x, %w1)
  %b = Conv(%x, %w2) {group=2, pads=[1, 1, 1, 1]}
  %c = Conv(%x, %w3)
  %z = Sigmoid(%a)
  %y = Concat(%a, %b, %c) {axis=1}
}`;
    const after = before.replace('%y = Concat(', '%y = tsrt::ConcatInPlace(')
      .replace('%c = Conv(%x, %w3)', '%c = tsrt::FusedConv(%x, %w3) {y_concat="y", y_row_stride=96, y_offset=64}');
    const { ctx } = checkPass({ pass: concatInPlace, before, after });
    expect(rejections(ctx, PASS)).toEqual([
      "Concat input: input 'a' (Conv Conv_0) is also read by Sigmoid Sigmoid_3, which could not read its strided rows: copied into its slot",
      "Concat input: input 'b' comes from a depthwise conv (Conv_1), whose kernel stores dense rows only: copied into its slot"]);
  });
});

// counts at batch 2, fp32 (NCHW SIMT convs: a row is an image) and fp16 (channels-last tensor-core convs: a row is a
// pixel). DenseNet's concats each take the previous concat, which its BatchNorm also reads: that input is copied,
// the new conv is placed.
const MODELS = [
  { name: 'light_squeezenet', concats: 8, convs: 16, run: true },
  { name: 'light_inception_v1', concats: 9, convs: 36, run: true },
  { name: 'light_densenet121', concats: 58, convs: 58, run: false }, // 121 layers twice on the CPU: counts only
];

describe.skipIf(!existsSync(LIGHT))('light models at batch 2: strided concats placed', () => {
  it.each(MODELS)('$name fp32: concats in place, the lowered steps on the memory plan equal the CPU reference', async ({ name, concats, convs, run }) => {
    const { model, feeds, dims } = rebatch(name, 2);
    const engine = await build(model, { device: 'cpu', compileKernels: false, shapes: { [model.graph.inputs[0].name]: dims } });
    const copied = engine.passContext.rejected.filter((r) => r.pass === PASS && r.kind === 'Concat input');
    console.log(`${name} fp32 batch 2: ${inPlace(engine)} concats in place, ${placedConvs(engine)} convs store strided rows, ${copied.length} inputs copied${copied.length ? ` (e.g. ${copied[0].reason})` : ''}`);
    expect(inPlace(engine)).toBe(concats);
    expect(placedConvs(engine)).toBe(convs);
    expect(stridedAliases(engine)).toBe(convs); // every placed conv's lowering honoured it
    expect(kernels(engine, /_ldy_/)).toBe(convs);
    if (!run) return;
    const { g, l } = randomWeights(engine.graph, engine.lowered);
    const out = engine.outputs[0].name;
    const got = runOnPlan(g, l, engine.memory, feeds);
    expect(compareTensors(got.get(out)!, runGraph(g, feeds).get(out)!, 0, 0)).toBeUndefined();
  }, 60_000);

  it.each(MODELS)('$name fp16: channels-last concats, no Concat/Transpose copies between the convs', async ({ name, concats, convs }) => {
    const { model, dims } = rebatch(name, 2);
    const engine = await build(model, { device: 'cpu', compileKernels: false, fp16: true, shapes: { [model.graph.inputs[0].name]: dims } });
    expect(inPlace(engine)).toBe(concats);
    expect(engine.graph.nodes.filter((n) => n.op === 'ConcatInPlace').every((n) => attrInt(n, 'axis', 0) === 3)).toBe(true);
    expect(placedConvs(engine)).toBe(convs);
    expect(kernels(engine, /^conv_tc_.*_ldy_/)).toBe(convs);
    // no transpose is left before a concat (at most one after, where an NCHW op reads it: SqueezeNet's last Dropout),
    // and only DenseNet's copies of the previous concat remain
    const prod = new Map(engine.graph.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
    const cats = engine.graph.nodes.filter((n) => n.op === 'ConcatInPlace');
    expect(cats.flatMap((n) => n.inputs.map((x) => prod.get(x)?.op)).filter((op) => op === 'Transpose')).toEqual([]);
    expect(engine.graph.nodes.filter((n) => n.op === 'Transpose' && cats.some((c) => c.outputs[0] === n.inputs[0])).length).toBeLessThanOrEqual(1);
    expect(kernels(engine, /^concat/)).toBe(name === 'light_densenet121' ? concats : 0);
    if (!hasNvrtc || name !== 'light_inception_v1') return;
    // one strided kernel per conv shape family (1x1/3x3/5x5, 16-B and narrower slices) compiles for sm_90
    const seen = new Map<string, KernelSource>();
    for (const s of engine.lowered.steps) if (s.kind === 'kernel' && /_ldy_/.test(s.kernel.name)) seen.set(s.kernel.name.replace(/_[0-9a-f]{12}$/, ''), s.kernel);
    for (const k of [...seen.values()].slice(0, 4)) {
      const r = compileCuda(k.source, { name: k.name, arch: 'sm_90' });
      expect(r.cubin?.length, k.name).toBeGreaterThan(0);
    }
  }, 60_000);
});
