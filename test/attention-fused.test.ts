// tsrt::FusedAttention: the fuseAttention pass on BERT-like graphs built as text IR (structure after the pass, CPU
// outputs equal before and after, rejections leave the graph alone), the op's inference and checks, and the attention
// kernels: every variant compiles with NVRTC for sm_90 without spills (skipped without NVRTC), and small problems run
// under a CPU emulator of the generated CUDA (threads as fibers; ldmatrix, mma.sync, cp.async and shfl modelled from
// the PTX spec, as in codegen-tc.test.ts) against a float64 reference (skipped without g++).
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import { parseGraph, printGraph } from '../src/ir/text.js';
import { inferShapes } from '../src/ir/infer.js';
import { verifyGraph } from '../src/ir/verify.js';
import { makeTensor, toF64 } from '../src/ir/tensor.js';
import type { Graph, Node, Tensor } from '../src/ir/types.js';
import { getOp } from '../src/ops/index.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { upgradeGraph } from '../src/onnx/import.js';
import { newPassContext, runPasses, type Pass, type PassContext } from '../src/passes/pass.js';
import { FUSION_PASSES } from '../src/passes/fuse.js';
import { fuseAttention } from '../src/passes/attention.js';
import { PIPELINE } from '../src/passes/pipeline.js';
import { convertToFp16 } from '../src/passes/precision.js';
import { lowerGraph, type KernelStep } from '../src/codegen/lower.js';
import '../src/codegen/lowerings.js';
import '../src/codegen/lower_conv.js';
import { emitFlashAttention, type AttentionProblem } from '../src/codegen/attention.js';
import { NotLowerable } from '../src/codegen/lower.js';
import { TC_HELPERS } from '../src/codegen/tc_gemm.js';
import type { KernelSource } from '../src/codegen/kernel.js';
import { compileCuda } from '../src/runtime/nvrtc.js';
import { loadNvrtc } from '../src/runtime/libs.js';
import { rng } from './helpers.js';
import { EMU_PRELUDE } from './tc_emu.js';

// ---- graph helpers -----------------------------------------------------------------------------------------


/** `const %name: float32[dims] = [...]`, values in [-1, 1) seeded by the name. */
function c(name: string, dims: number[], scale = 1): string {
  let h = 2166136261;
  for (const ch of name) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  const r = rng(h);
  const n = dims.reduce((a, b) => a * b, 1);
  return `const %${name}: float32[${dims.join(',')}] = [${Array.from({ length: n }, () => String(Math.fround((2 * r() - 1) * scale))).join(', ')}]`;
}

const prep = (text: string): Graph => inferShapes(upgradeGraph(parseGraph(text))).graph;

function apply(g: Graph, passes: Pass[]): { after: Graph; ctx: PassContext } {
  const ctx = newPassContext({ optLevel: 2 });
  const before = printGraph(g, { inlineLimit: Infinity });
  const after = runPasses(g, passes, ctx);
  expect(printGraph(g, { inlineLimit: Infinity }), 'the pass mutated its input').toBe(before);
  expect(verifyGraph(after)).toEqual([]);
  return { after: inferShapes(after).graph, ctx };
}

const opsOf = (g: Graph) => g.nodes.map((n) => (n.domain ? `${n.domain}::${n.op}` : n.op));
const attr = (n: Node, name: string) => n.attrs[name]?.value;
const fusedNode = (g: Graph) => g.nodes.find((n) => n.op === 'FusedAttention')!;

function feedsFor(g: Graph, seed: number, custom: Record<string, (i: number) => number> = {}): Map<string, Tensor> {
  const r = rng(seed);
  const feeds = new Map<string, Tensor>();
  for (const i of g.inputs) {
    const t = makeTensor(i.type.dtype, i.type.shape as number[]);
    const data = t.data as Float32Array;
    for (let k = 0; k < data.length; k++) data[k] = custom[i.name] ? custom[i.name](k) : (r() * 2 - 1) * 2;
    feeds.set(i.name, t);
  }
  return feeds;
}

function expectSameOutputs(before: Graph, after: Graph, custom: Record<string, (i: number) => number> = {}, tol = 1e-5): void {
  for (const seed of [1, 2]) {
    const feeds = feedsFor(before, seed, custom);
    const want = runGraph(before, feeds), got = runGraph(after, feeds);
    for (const o of before.outputs) {
      const a = want.get(o.name)!, b = got.get(o.name)!;
      expect(b.dims, o.name).toEqual(a.dims);
      const x = toF64(a), y = toF64(b);
      for (let i = 0; i < x.length; i++) {
        if (!(Math.abs(x[i] - y[i]) <= tol + tol * Math.abs(x[i]))) expect.fail(`${o.name}[${i}]: ${x[i]} vs ${y[i]}`);
      }
    }
  }
}

/** 0 for kept keys, -10000 for the last key of batch 1 and the last two of batch 0 (as HF's extended mask). */
const padMask = (S: number) => (i: number) => ((i % S) >= S - 2 + Math.floor(i / S) ? -10000 : 0);

interface BertOpts {
  /** PyTorch SDPA's Where(IsNaN(P), 0, P) between the Softmax and P.V. */
  nanGuard?: boolean;
  /** 'div': Div(scores, sqrt(D)) (HF eager); 'sdpa': Mul(Q, s) and Mul(K^T, s) with s = sqrt(1/sqrt(D)) (torch SDPA export). */
  scaleForm?: 'div' | 'sdpa' | 'mul-after-mask';
  /** 'const': a causal [1,1,S,S] constant; 'zeros': HF's folded extended mask of an all-ones attention mask. */
  mask?: 'input' | 'const' | 'zeros' | 'none';
  /** K^T as one Transpose [0,2,3,1] or [0,2,1,3] then [0,1,3,2]. */
  kTwoStep?: boolean;
  /** Final reshape to [B*S, H*D] instead of [B, S, H*D]. */
  flatOut?: boolean;
  softmaxAxis?: number;
  probsOut?: boolean;
  /** K^T is also a graph output (a KV cache). */
  kOut?: boolean;
  dims?: { B: number; S: number; H: number; D: number };
  /** Scale of the random projection weights (smaller: a softer softmax). */
  wScale?: number;
  /** Blocks in a chain (sharing the weights and the mask). */
  layers?: number;
}

/** One BERT self-attention block (B=2, S=8, H=2, D=4 unless `dims` says) as torch.onnx exports it. */
function bert(o: BertOpts = {}): Graph {
  const { B, S, H, D } = o.dims ?? { B: 2, S: 8, H: 2, D: 4 };
  const HD = H * D;
  const scaleForm = o.scaleForm ?? 'div', mask = o.mask ?? 'input';
  const proj = (x: string) => [
    `%${x}0 = MatMul(%x, %w${x}) name="${x}_mm"`,
    `%${x}1 = Add(%${x}0, %b${x}) name="${x}_bias"`,
    `%${x}2 = Reshape(%${x}1, %split) name="${x}_split"`,
  ];
  const s = Math.sqrt(1 / Math.sqrt(D));
  const lines = [
    ...['q', 'k', 'v'].flatMap((x) => [c(`w${x}`, [HD, HD], o.wScale ?? 1), c(`b${x}`, [HD])]),
    `const %split: int64[4] = [0, 0, ${H}, ${D}]`,
    ...(o.nanGuard ? ['const %zero: float32[] = [0]'] : []),
    `const %merge: int64[${o.flatOut ? 2 : 3}] = ${o.flatOut ? `[${B * S}, ${HD}]` : `[0, 0, ${HD}]`}`,
    ...(scaleForm !== 'sdpa' ? [`const %sqrtd: float32[] = [${Math.sqrt(D)}]`] : []),
    ...(scaleForm === 'sdpa' ? [`const %sq: float32[] = [${s}]`] : []),
    ...(mask === 'const' ? [`const %cmask: float32[1,1,${S},${S}] = [${Array.from({ length: S * S }, (_, i) => (i % S > Math.floor(i / S) ? -1e4 : 0)).join(', ')}]`] : []),
    ...(mask === 'zeros' ? [`const %cmask: float32[${B},1,${S},${S}] = [${new Array(B * S * S).fill('-0').join(', ')}]`] : []),
    ...proj('q'), ...proj('k'), ...proj('v'),
    `%qt = Transpose(%q2) {perm=[0, 2, 1, 3]} name="q_t"`,
    ...(o.kTwoStep
      ? ['%kh = Transpose(%k2) {perm=[0, 2, 1, 3]} name="k_t1"', '%kt = Transpose(%kh) {perm=[0, 1, 3, 2]} name="k_t2"']
      : ['%kt = Transpose(%k2) {perm=[0, 2, 3, 1]} name="k_t"']),
    `%vt = Transpose(%v2) {perm=[0, 2, 1, 3]} name="v_t"`,
  ];
  const maskName = mask === 'input' ? '%mask' : '%cmask';
  if (scaleForm === 'sdpa') {
    lines.push('%qs = Mul(%qt, %sq) name="q_scale"', '%ks = Mul(%kt, %sq) name="k_scale"', '%s0 = MatMul(%qs, %ks) name="qk"');
    lines.push(mask === 'none' ? '%s2 = Identity(%s0) name="noop"' : `%s2 = Add(%s0, ${maskName}) name="add_mask"`);
  } else if (scaleForm === 'div') {
    lines.push('%s0 = MatMul(%qt, %kt) name="qk"', '%s1 = Div(%s0, %sqrtd) name="scale"');
    lines.push(mask === 'none' ? '%s2 = Identity(%s1) name="noop"' : `%s2 = Add(${maskName}, %s1) name="add_mask"`);
  } else {
    lines.push('%s0 = MatMul(%qt, %kt) name="qk"', `%s1 = Add(%s0, ${maskName}) name="add_mask"`, '%s2 = Div(%s1, %sqrtd) name="scale"');
  }
  lines.push(`%p = Softmax(%s2) {axis=${o.softmaxAxis ?? -1}} name="softmax"`);
  if (o.nanGuard) lines.push('%pn = IsNaN(%p) name="p_isnan"', '%pg = Where(%pn, %zero, %p) name="p_guard"');
  lines.push(
    `%o = MatMul(${o.nanGuard ? '%pg' : '%p'}, %vt) name="pv"`,
    '%ot = Transpose(%o) {perm=[0, 2, 1, 3]} name="o_t"',
    '%y = Reshape(%ot, %merge) name="o_merge"',
  );
  // more layers: copies of the block before this one (same weights and mask), values and nodes prefixed L<i>_
  const block = lines.filter((l) => !l.startsWith('const '));
  const produced = new Set(block.map((l) => /^%(\w+) =/.exec(l)![1]));
  const layers = o.layers ?? 1;
  const rename = (line: string, pfx: string, input: string) => line.replace(/%(\w+)/g, (m, x) => (x === 'x' ? input : produced.has(x) ? `%${pfx}${x}` : m));
  const copies = Array.from({ length: layers - 1 }, (_, l) => block.map((line) => rename(line, `L${l}_`, l ? `%L${l - 1}_y` : '%x').replace('name="', `name="L${l}_`)));
  const last = block.map((line) => (layers > 1 ? rename(line, '', `%L${layers - 2}_y`) : line));
  lines.splice(lines.indexOf(block[0]), block.length, ...copies.flat(), ...last);
  const inputs = [`%x: float32[${B},${S},${HD}]`, ...(mask === 'input' ? [`%mask: float32[${B},1,1,${S}]`] : [])];
  const outputs = [`%y: float32[${o.flatOut ? `${B * S},${HD}` : `${B},${S},${HD}`}]`, ...(o.probsOut ? [`%p: float32[${B},${H},${S},${S}]`] : []),
    ...(o.kOut ? [`%kt: float32[${B},${H},${D},${S}]`] : [])];
  const text = `graph bert(${inputs.join(', ')}) -> (${outputs.join(', ')}) opset 17 {\n  ${lines.join('\n  ')}\n}`;
  return removeIdentity(prep(text));
}

/** The `noop` Identity only keeps the text uniform; the pipeline's removeNoOps drops it before fusion. */
function removeIdentity(g: Graph): Graph {
  const id = g.nodes.find((n) => n.op === 'Identity');
  if (!id) return g;
  const nodes = g.nodes.filter((n) => n !== id).map((n) => ({ ...n, inputs: n.inputs.map((x) => (x === id.outputs[0] ? id.inputs[0] : x)) }));
  return inferShapes({ ...g, nodes }).graph;
}

const maskFeeds = { mask: padMask(8) };

// ---- the pass -------------------------------------------------------------------------------------------

describe('fuseAttention', () => {
  it('fuses the HF eager block (Div by sqrt(D), mask input) into one FusedAttention reading the projections', () => {
    const g = bert();
    const { after, ctx } = apply(g, [fuseAttention]);
    expect(opsOf(after)).toEqual(['MatMul', 'Add', 'MatMul', 'Add', 'MatMul', 'Add', 'tsrt::FusedAttention']);
    const f = fusedNode(after);
    expect(f.inputs).toEqual(['q1', 'k1', 'v1', 'mask']);
    expect(f.outputs).toEqual(['y']);
    expect([attr(f, 'num_heads'), attr(f, 'head_dim'), attr(f, 'scale'), attr(f, 'mask_kind')]).toEqual([2, 4, 0.5, 'add']);
    expect(after.valueTypes.get('y')?.shape).toEqual([2, 8, 8]);
    expect(ctx.fusions).toEqual([{
      pass: 'fuse-attention', kind: 'Attention', into: f.name,
      nodes: ['q_split', 'k_split', 'v_split', 'q_t', 'k_t', 'v_t', 'qk', 'scale', 'add_mask', 'softmax', 'pv', 'o_t', 'o_merge'],
    }]);
    expect(ctx.rejected).toEqual([]);
    expect([...after.initializers.keys()]).not.toContain('split');
    expectSameOutputs(g, after, maskFeeds);
  });

  it('matches after FUSION_PASSES: FusedGemm projections and the Div+Add as a tsrt::Fused group', () => {
    const g = bert();
    const mid = apply(g, FUSION_PASSES).after;
    expect(opsOf(mid)).toContain('tsrt::Fused');
    const { after, ctx } = apply(mid, [fuseAttention]);
    expect(opsOf(after)).toEqual(['tsrt::FusedGemm', 'tsrt::FusedGemm', 'tsrt::FusedGemm', 'tsrt::FusedAttention']);
    const f = fusedNode(after);
    expect(f.inputs[3]).toBe('mask');
    expect([attr(f, 'scale'), attr(f, 'mask_kind')]).toEqual([0.5, 'add']);
    expect(ctx.rejected).toEqual([]);
    expectSameOutputs(g, after, maskFeeds);
  });

  it('takes the SDPA export form: Q and K^T each scaled by sqrt(scale), K^T in two Transposes, no mask', () => {
    const g = bert({ scaleForm: 'sdpa', mask: 'none', kTwoStep: true });
    const { after } = apply(g, [fuseAttention]);
    expect(opsOf(after)).toEqual(['MatMul', 'Add', 'MatMul', 'Add', 'MatMul', 'Add', 'tsrt::FusedAttention']);
    const f = fusedNode(after);
    const s = Math.fround(Math.sqrt(0.5));
    expect(attr(f, 'scale')).toBe(Math.fround(s * s));
    expect([f.inputs.length, attr(f, 'mask_kind')]).toEqual([3, 'none']);
    expectSameOutputs(g, after);
  });

  it('takes the SDPA form after FUSION_PASSES and drops an all-zero constant mask', () => {
    const g = bert({ scaleForm: 'sdpa', mask: 'zeros' });
    const { after, ctx } = apply(g, [...FUSION_PASSES, fuseAttention]);
    expect(opsOf(after)).toEqual(['tsrt::FusedGemm', 'tsrt::FusedGemm', 'tsrt::FusedGemm', 'tsrt::FusedAttention']);
    const f = fusedNode(after);
    expect([f.inputs.length, attr(f, 'mask_kind')]).toEqual([3, 'none']);
    expect(after.initializers.has('cmask')).toBe(false);
    expect(ctx.fusions.find((x) => x.pass === 'fuse-attention')?.nodes).toEqual(expect.arrayContaining(['q_scale', 'k_scale', 'add_mask']));
    expectSameOutputs(g, after);
  });

  it('looks through the SDPA NaN guard Where(IsNaN(P), 0, P), as nodes or as a tsrt::Fused group', () => {
    for (const passes of [[fuseAttention], [...FUSION_PASSES, fuseAttention]]) {
      const g = bert({ scaleForm: 'sdpa', mask: 'zeros', nanGuard: true });
      const { after } = apply(g, passes);
      expect(opsOf(after).filter((op) => op === 'tsrt::FusedAttention').length).toBe(1);
      expect(opsOf(after).filter((op) => op === 'IsNaN' || op === 'Where' || op === 'tsrt::Fused')).toEqual([]);
      expectSameOutputs(g, after);
    }
  });

  it('keeps the NaN guard (and the block unfused) when a mask input may blank whole rows', () => {
    const g = bert({ mask: 'input', nanGuard: true });
    const { after, ctx } = apply(g, [fuseAttention]);
    expect(opsOf(after)).not.toContain('tsrt::FusedAttention');
    expect(ctx.rejected.map((r) => r.reason).join('\n')).toMatch(/NaN guard/);
  });

  it('fuses every layer of a chain that shares one mask', () => {
    const g = bert({ layers: 3 });
    const { after, ctx } = apply(g, [fuseAttention]);
    const fused = after.nodes.filter((n) => n.op === 'FusedAttention');
    expect(fused.map((n) => [n.inputs[3], n.outputs[0]])).toEqual([['mask', 'L0_y'], ['mask', 'L1_y'], ['mask', 'y']]);
    expect(ctx.fusions).toHaveLength(3);
    expectSameOutputs(g, after, maskFeeds);
  });

  it('keeps a constant mask as an input and reshapes its output to a 2-D merge', () => {
    const g = bert({ mask: 'const', flatOut: true });
    const { after } = apply(g, [fuseAttention]);
    expect(opsOf(after)).toEqual(['MatMul', 'Add', 'MatMul', 'Add', 'MatMul', 'Add', 'tsrt::FusedAttention', 'Reshape']);
    const f = fusedNode(after);
    expect(f.inputs[3]).toBe('cmask');
    expect(after.valueTypes.get(f.outputs[0])?.shape).toEqual([2, 8, 8]);
    expect(after.nodes[7].outputs).toEqual(['y']);
    expectSameOutputs(g, after);
  });

  it('leaves the graph unchanged and says why when the block does not match', () => {
    const cases: Array<[BertOpts, RegExp]> = [
      [{ probsOut: true }, /'p' is a graph output/],
      [{ scaleForm: 'mul-after-mask' }, /scaled after the mask Add 'add_mask'/],
      [{ softmaxAxis: 2 }, /Softmax axis 2 is not the key axis/],
      [{ kOut: true }, /K: 'kt' is a graph output/],
    ];
    for (const [opts, why] of cases) {
      const g = bert(opts);
      const { after, ctx } = apply(g, [fuseAttention]);
      expect(printGraph(after, { inlineLimit: Infinity }), JSON.stringify(opts)).toBe(printGraph(g, { inlineLimit: Infinity }));
      expect(ctx.fusions).toEqual([]);
      expect(ctx.rejected).toHaveLength(1);
      expect(ctx.rejected[0]).toMatchObject({ pass: 'fuse-attention', kind: 'Attention' });
      expect(ctx.rejected[0].reason).toMatch(why);
      expect(ctx.rejected[0].nodes).toEqual(expect.arrayContaining(['softmax', 'pv']));
    }
  });
});

describe('fuseAttention in the build pipeline', () => {
  it('runs after FUSION_PASSES in fp16 and lowers to the tensor-core kernel reading the packed QKV projection', () => {
    const g = bert({ scaleForm: 'sdpa', dims: { B: 2, S: 16, H: 2, D: 32 }, wScale: 0.2 });
    const at = PIPELINE.indexOf(FUSION_PASSES[FUSION_PASSES.length - 1]) + 1;
    const passes = [...PIPELINE.slice(0, at), fuseAttention, ...PIPELINE.slice(at)];
    const ctx = newPassContext({ optLevel: 2, fp16: true });
    const opt = runPasses(g, passes, ctx);
    expect(verifyGraph(opt)).toEqual([]);
    const f = fusedNode(opt);
    expect(f, opsOf(opt).join(' ')).toBeDefined();
    expect(opt.valueTypes.get(f.inputs[0])?.dtype).toBe('float16');
    expect(opsOf(opt).filter((o) => !o.startsWith('tsrt::') && o !== 'Cast')).toEqual([]);
    const low = lowerGraph(opt, { fp16: true, allowHost: false });
    const step = low.steps.find((x): x is KernelStep => x.kind === 'kernel' && x.op === 'FusedAttention');
    expect(step?.kernel.name).toMatch(/^flash_attn_f16_d32_m64_mask_/);
    // the pipeline's fuse-qkv merged the three projections: q, k and v are one packed buffer, passed three times
    expect(attr(f, 'packed')).toBe(1);
    expect(f.inputs.slice(1, 3)).toEqual(['', '']);
    expect(step?.args).toEqual([f.inputs[0], f.inputs[0], f.inputs[0], f.inputs[3], f.outputs[0]].map((name) => ({ kind: 'value', name })));
    expect(step?.kernel.grid).toEqual([1, 2, 2]);
    expect(opsOf(opt)).toContain('tsrt::Fused'); // the mask's Cast to fp16, moved out of the scores' group
    expectSameOutputs(g, opt, { mask: padMask(16) }, 1e-2);
  });

  it('lowers fp32 and fp16 head sizes without a tensor-core kernel to the SIMT kernel', () => {
    const fused = apply(bert(), [fuseAttention]).after;
    const kernelOf = (g: Graph) => lowerGraph(g, { fp16: false, allowHost: false }).steps
      .find((x): x is KernelStep => x.kind === 'kernel' && x.op === 'FusedAttention')!.kernel;
    expect(kernelOf(fused).name).toMatch(/^attn_simt_f32_d4_mask_/);
    expect(kernelOf(inferShapes(convertToFp16(fused)).graph).name).toMatch(/^attn_simt_f16_d4_mask_/);
  });
});

// ---- the op -----------------------------------------------------------------------------------------------

describe('tsrt::FusedAttention', () => {
  const def = getOp('FusedAttention', 'tsrt')!;
  const node = (attrs: Partial<Record<'num_heads' | 'head_dim' | 'scale' | 'mask_kind', number | string>>, inputs = ['q', 'k', 'v']): Node => ({
    name: 'attn', op: 'FusedAttention', domain: 'tsrt', inputs, outputs: ['y'],
    attrs: Object.fromEntries(Object.entries({ num_heads: 2, head_dim: 4, scale: 0.5, mask_kind: 'none', ...attrs }).map(([k, v]) => [k,
      typeof v === 'string' ? { kind: 'string' as const, value: v } : k === 'scale' ? { kind: 'float' as const, value: v } : { kind: 'int' as const, value: v }])),
  });
  const ctx = { opset: 17, consts: [], shapeValues: [], freshDim: () => '?' };
  const t = (shape: (number | string)[], dtype: 'float32' | 'float16' = 'float32') => ({ dtype, shape });

  it('infers [B, Sq, H*D] with symbolic dims and checks heads, batches and the mask', () => {
    expect(def.infer(node({}), [t(['N', 5, 8]), t(['N', 7, 8]), t(['N', 7, 8])], ctx)).toEqual([t(['N', 5, 8])]);
    expect(def.infer(node({ mask_kind: 'add' }, ['q', 'k', 'v', 'm']), [t([2, 5, 8]), t([2, 7, 8]), t([2, 7, 8]), t([2, 1, 1, 7])], ctx)).toEqual([t([2, 5, 8])]);
    expect(() => def.infer(node({ head_dim: 3 }), [t([2, 5, 8]), t([2, 7, 8]), t([2, 7, 8])], ctx)).toThrow(/num_heads\*head_dim is 6/);
    expect(() => def.infer(node({}), [t([2, 5, 8]), t([2, 7, 8]), t([2, 6, 8])], ctx)).toThrow(/different sequence lengths/);
    expect(() => def.infer(node({ mask_kind: 'add' }, ['q', 'k', 'v', 'm']), [t([2, 5, 8]), t([2, 7, 8]), t([2, 7, 8]), t([3, 1, 1, 7])], ctx)).toThrow(/broadcast/);
    expect(() => def.infer(node({}), [t([2, 5, 8]), t([2, 7, 8], 'float16'), t([2, 7, 8])], ctx)).toThrow(/K is float16/);
  });

  it('supports() names a bad mask_kind and a mask input that does not match it', () => {
    expect(def.supports!(node({ mask_kind: 'causal' }), 17)).toMatch(/mask_kind 'causal'/);
    expect(def.supports!(node({ mask_kind: 'add' }), 17)).toMatch(/without a mask input/);
    expect(def.supports!(node({}, ['q', 'k', 'v', 'm']), 17)).toMatch(/with a mask input/);
    expect(def.supports!(node({}), 17)).toBeUndefined();
  });

  it('computes fp16 like the unfused ops (within fp16 rounding)', () => {
    const g = bert();
    const { after } = apply(g, [fuseAttention]);
    const f = fusedNode(after);
    const vals = runGraph(g, feedsFor(g, 3, maskFeeds), { keepAll: true });
    const h = (x: Tensor): Tensor => getOp('Cast')!.cpu({ name: 'c', op: 'Cast', domain: '', inputs: ['x'], outputs: ['y'], attrs: { to: { kind: 'int', value: 10 } } }, [x], { opset: 17, runGraph: () => [] })[0];
    const ins = f.inputs.map((x) => h(vals.get(x)!));
    const y = def.cpu(f, ins, { opset: 17, runGraph: () => [] })[0];
    expect(y.dtype).toBe('float16');
    const want = toF64(vals.get('y')!), got = toF64(y);
    for (let i = 0; i < want.length; i++) expect(Math.abs(want[i] - got[i])).toBeLessThan(2e-2);
  });
});

// ---- kernels: NVRTC ---------------------------------------------------------------------------------------

let nvrtc = true;
try { loadNvrtc(); } catch { nvrtc = false; }

const base = { b: 2, h: 3, sq: 70, sk: 100, scale: 0.3 };
const KERNEL_CASES: Array<[string, AttentionProblem]> = [
  ['bert_b32_d64_mask', { dtype: 'float16', b: 32, h: 12, sq: 128, sk: 128, d: 64, scale: 0.125, mask: { dims: [32, 1, 1, 128] } }],
  ['bert_b1_d64_nomask', { dtype: 'float16', b: 1, h: 12, sq: 128, sk: 128, d: 64, scale: 0.125, mask: 'none' }],
  ...([32, 64, 128] as const).flatMap((d) => ([64, 128] as const).map((bm): [string, AttentionProblem] =>
    [`tc_d${d}_m${bm}_causal_tails`, { ...base, dtype: 'float16', d, blockM: bm, mask: { dims: [70, 100] } }])),
  ['tc_d64_full_mask', { ...base, dtype: 'float16', d: 64, mask: { dims: [2, 3, 70, 100] } }],
  ['tc_d64_fused_qkv_ld', { ...base, dtype: 'float16', d: 64, mask: 'none', ldq: 3 * 3 * 64, ldk: 3 * 3 * 64, ldv: 3 * 3 * 64 }],
  ['simt_f32_d64_mask', { ...base, dtype: 'float32', d: 64, mask: { dims: [2, 1, 1, 100] } }],
  ['simt_f32_d4', { ...base, dtype: 'float32', d: 4, mask: 'none' }],
  ['simt_f16_d80', { ...base, dtype: 'float16', d: 80, mask: { dims: [1, 3, 1, 100] }, impl: 'simt' }],
];

describe('attention emitter: API', () => {
  it('takes q, k, v, [mask,] y and launches one CTA per (query block, head, batch)', () => {
    const k = emitFlashAttention(KERNEL_CASES[0][1]);
    expect(k.params.map((p) => p.name)).toEqual(['q', 'k', 'v', 'mask', 'y']);
    expect(k.params.every((p) => p.type === 'ptr')).toBe(true);
    expect(k.name).toMatch(/^flash_attn_f16_d64_m128_mask_[0-9a-f]{12}$/);
    expect([k.grid, k.block, k.sharedBytes]).toEqual([[1, 12, 32], [256, 1, 1], 128 * 128 + 4 * 64 * 128]);
    expect(k.source).not.toMatch(/#include/);
    const small = emitFlashAttention(KERNEL_CASES[1][1]);
    expect(small.params.map((p) => p.name)).toEqual(['q', 'k', 'v', 'y']);
    expect([small.grid, small.block]).toEqual([[2, 12, 1], [128, 1, 1]]);
    const simt = emitFlashAttention({ ...base, dtype: 'float32', d: 64, mask: 'none' });
    expect(simt.name).toMatch(/^attn_simt_f32_d64_[0-9a-f]{12}$/);
    expect([simt.grid, simt.block, simt.sharedBytes]).toEqual([[Math.ceil((2 * 3 * 70) / 4), 1, 1], [128, 1, 1], 0]);
  });

  it('refuses what the tensor-core kernel cannot do with NotLowerable', () => {
    expect(() => emitFlashAttention({ ...base, dtype: 'float16', d: 80, mask: 'none' })).toThrow(NotLowerable);
    expect(() => emitFlashAttention({ ...base, dtype: 'float16', d: 80, mask: 'none' })).toThrow(/head size 80/);
    expect(() => emitFlashAttention({ ...base, dtype: 'float32', d: 64, mask: 'none', impl: 'tc' })).toThrow(/fp16\/bf16 only/);
    expect(() => emitFlashAttention({ ...base, dtype: 'float16', d: 64, mask: 'none', ldq: 196 })).toThrow(/multiple of 8/);
    expect(() => emitFlashAttention({ ...base, dtype: 'float16', d: 64, mask: { dims: [3, 1, 1, 100] } })).toThrow(/does not broadcast/);
    expect(() => emitFlashAttention({ ...base, sk: 0, dtype: 'float16', d: 64, mask: 'none' })).toThrow(NotLowerable);
  });

  it('switches to 64-bit indexing only for tensors past 2^31 elements', () => {
    expect(emitFlashAttention(KERNEL_CASES[0][1]).source).toContain('typedef int idx_t;');
    expect(emitFlashAttention({ dtype: 'float16', b: 4096, h: 16, sq: 512, sk: 512, d: 64, scale: 1, mask: 'none' }).source).toContain('typedef long long idx_t;');
  });
});

describe.skipIf(!nvrtc)('attention emitter: NVRTC sm_90 compile', () => {
  it.each(KERNEL_CASES)('%s', (_id, p) => {
    const k = emitFlashAttention(p);
    const r = compileCuda(k.source, { name: k.name, arch: 'sm_90', options: ['--ptxas-options=-v'] });
    expect(r.cubin?.[0]).toBe(0x7f);
    expect(r.log.split('\n').filter((l) => /warning|error/i.test(l))).toEqual([]);
    // The tc kernels for D <= 64 are capped at 128 registers (two 8-warp CTAs per SM); some mask layouts then spill
    // a few bytes to L1. The BERT shapes must not spill at all.
    const spill = Number(/ (\d+) bytes spill stores/.exec(r.log)?.[1]);
    expect(spill, r.log).toBeLessThanOrEqual(_id.startsWith('bert') || p.impl === 'simt' || p.dtype === 'float32' ? 0 : 32);
    const regs = Number(/Used (\d+) registers/.exec(r.log)?.[1]);
    expect(regs).toBeLessThanOrEqual(p.dtype === 'float16' && p.impl !== 'simt' && p.d <= 64 ? 128 : 255);
  });
});

// ---- kernels: CPU emulation (test/tc_emu.ts: fibers per CUDA thread, 3-D grids, shared-memory and source checks) ---

let hasGxx = true;
try { execFileSync('g++', ['--version'], { stdio: 'pipe' }); } catch { hasGxx = false; }
const EMU_DIR = join(new URL('..', import.meta.url).pathname, '.cache', 'attention-emu');

const dv2 = new DataView(new ArrayBuffer(2));
const f16 = (x: number) => { setFloat16(dv2, 0, x, true); return getFloat16(dv2, 0, true); };

/** Host buffer of n elements (fp16 or fp32 storage) and the values it holds. */
function hostBuf(n: number, f32: boolean, gen: (i: number) => number): { buf: Buffer; vals: Float64Array } {
  const buf = Buffer.alloc(Math.ceil((n * (f32 ? 4 : 2)) / 16) * 16 + 16);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  const vals = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (f32) { vals[i] = Math.fround(gen(i)); dv.setFloat32(i * 4, vals[i], true); } else { vals[i] = f16(gen(i)); setFloat16(dv, i * 2, vals[i], true); }
  }
  return { buf, vals };
}

/** Runs the kernel for `p` under the emulator; returns the largest error relative to max |reference|, and the count of
 * output elements the kernel left unwritten or wrote outside the (b, sq, head) slots it owns. */
function emulate(id: string, p: AttentionProblem, maskGen: (b: number, h: number, q: number, k: number) => number): { rel: number; unwritten: number; stray: number } {
  const k: KernelSource = emitFlashAttention(p);
  const f32 = p.dtype === 'float32';
  const hd = p.h * p.d;
  const ld = { q: p.ldq ?? hd, k: p.ldk ?? hd, v: p.ldv ?? hd, y: p.ldo ?? hd };
  const r = rng(7);
  const q = hostBuf(p.b * p.sq * ld.q, f32, () => 2 * r() - 1);
  const kk = hostBuf(p.b * p.sk * ld.k, f32, () => 2 * r() - 1);
  const v = hostBuf(p.b * p.sk * ld.v, f32, () => 2 * r() - 1);
  const md = p.mask === 'none' ? undefined : [...new Array<number>(4 - p.mask.dims.length).fill(1), ...p.mask.dims];
  const mN = md ? md.reduce((a, x) => a * x, 1) : 0;
  const mask = md ? hostBuf(mN, f32, (i) => {
    const idx = [0, 0, 0, 0];
    let rest = i;
    for (let a = 3; a >= 0; a--) { idx[a] = rest % md[a]; rest = Math.floor(rest / md[a]); }
    return maskGen(idx[0], idx[1], idx[2], idx[3]);
  }) : undefined;
  const mval = (b: number, h: number, i: number, j: number) => {
    if (!md || !mask) return 0;
    const ix = [b, h, i, j].map((x, a) => (md[a] === 1 ? 0 : x));
    return mask.vals[((ix[0] * md[1] + ix[1]) * md[2] + ix[2]) * md[3] + ix[3]];
  };
  const outN = p.b * p.sq * ld.y;
  const ref = new Float64Array(outN).fill(NaN);
  for (let b = 0; b < p.b; b++) for (let h = 0; h < p.h; h++) for (let i = 0; i < p.sq; i++) {
    const s = new Float64Array(p.sk);
    for (let j = 0; j < p.sk; j++) {
      let dot = 0;
      for (let d = 0; d < p.d; d++) dot += q.vals[(b * p.sq + i) * ld.q + h * p.d + d] * kk.vals[(b * p.sk + j) * ld.k + h * p.d + d];
      s[j] = dot * p.scale + mval(b, h, i, j);
    }
    const mx = Math.max(...s);
    const e = s.map((x) => Math.exp(x - mx));
    const sum = e.reduce((a, x) => a + x, 0);
    for (let d = 0; d < p.d; d++) {
      let o = 0;
      for (let j = 0; j < p.sk; j++) o += e[j] * v.vals[(b * p.sk + j) * ld.v + h * p.d + d];
      ref[(b * p.sq + i) * ld.y + h * p.d + d] = o / sum;
    }
  }
  const dir = join(EMU_DIR, id);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(EMU_DIR, 'emu_prelude.h'), EMU_PRELUDE);
  const bufs: Record<string, Buffer> = { q: q.buf, k: kk.buf, v: v.buf, ...(mask ? { mask: mask.buf } : {}) };
  const es = f32 ? 4 : 2, T = f32 ? 'float' : 'tc_half';
  const lines = Object.entries(bufs).map(([nm, b]) => { writeFileSync(join(dir, `${nm}.bin`), b); return `  unsigned char* ${nm}_p = load_file("${nm}.bin", ${b.length});`; });
  lines.push(`  unsigned char* y_p = (unsigned char*)aligned_alloc(256, ${Math.ceil((outN * es) / 256) * 256 + 256}); g_bufs.push_back(Buf{y_p, ${outN * es}});`);
  lines.push(`  memset(y_p, 0xff, ${outN * es});`);
  const args = k.params.map((x) => `(${T}*)${x.name}_p`);
  expect(k.source).toContain(TC_HELPERS);
  const src = k.source.replace(TC_HELPERS, '#include "../emu_prelude.h"\n').replace('extern __shared__ __align__(128) unsigned char tc_smem[];', '')
    + `\nint main() {\n${lines.join('\n')}\n  run_grid3(${k.grid.join(', ')}, ${k.block[0]}, ${k.sharedBytes}, [&] { ${k.name}(${args.join(', ')}); });\n`
    + `  save_file("out.bin", y_p, ${outN * es});\n  return 0;\n}\n`;
  writeFileSync(join(dir, 'k.cpp'), src);
  const exe = join(dir, `k_${createHash('sha1').update(src).update(EMU_PRELUDE).digest('hex').slice(0, 10)}`);
  if (!existsSync(exe)) execFileSync('g++', ['-std=c++20', '-O1', '-w', '-o', exe, 'k.cpp'], { cwd: dir, stdio: 'pipe' });
  execFileSync(exe, [], { cwd: dir, stdio: 'pipe' });
  const ob = readFileSync(join(dir, 'out.bin'));
  const dv = new DataView(ob.buffer, ob.byteOffset, ob.length);
  let maxErr = 0, maxRef = 0, unwritten = 0, stray = 0;
  for (let i = 0; i < outN; i++) {
    const y = f32 ? dv.getFloat32(i * 4, true) : getFloat16(dv, i * 2, true);
    if (Number.isNaN(ref[i])) { if (!Number.isNaN(y)) stray++; continue; }
    if (Number.isNaN(y)) { unwritten++; continue; }
    maxErr = Math.max(maxErr, Math.abs(y - ref[i]));
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
  }
  return { rel: maxErr / (maxRef || 1), unwritten, stray };
}

const causal = (_b: number, _h: number, q: number, k: number) => (k > q + 30 ? -Infinity : 0);
const padding = (b: number, _h: number, _q: number, k: number) => (k >= 90 + 5 * b ? -10000 : 0);
const noise = (b: number, h: number, q: number, k: number) => Math.sin(b * 7 + h * 3 + q * 0.37 + k * 0.11) * 2;
const rowMask = (b: number, h: number, q: number) => (q % 7 === 3 ? -3 : 0.5 * b - 0.25 * h);
const small = { b: 2, h: 2, sq: 70, sk: 100, scale: 0.35 };
/** The SIMT kernel is slow to emulate (a warp-wide shuffle per key): fewer rows and keys. */
const tiny = { b: 2, h: 2, sq: 9, sk: 37, scale: 0.35 };
const EMU_CASES: Array<[string, AttentionProblem, typeof causal, number]> = [
  ['tc_d64_m64_padmask', { ...small, dtype: 'float16', d: 64, blockM: 64, mask: { dims: [2, 1, 1, 100] } }, padding, 2e-3],
  ['tc_d64_m128_causal', { ...small, dtype: 'float16', d: 64, blockM: 128, mask: { dims: [70, 100] } }, causal, 2e-3],
  ['tc_d64_m64_oddsk_rowmask', { ...small, sk: 99, dtype: 'float16', d: 64, blockM: 64, mask: { dims: [2, 1, 70, 1] } }, rowMask, 2e-3],
  ['tc_d32_m64_nomask_exact_tiles_sharp', { ...small, sq: 64, sk: 128, scale: 1.5, dtype: 'float16', d: 32, blockM: 64, mask: 'none' }, noise, 2e-3],
  ['tc_d128_m64_fullmask', { ...small, dtype: 'float16', d: 128, blockM: 64, mask: { dims: [2, 2, 70, 100] } }, noise, 2e-3],
  ['tc_d64_fused_qkv_ld', { ...small, dtype: 'float16', d: 64, mask: 'none', ldq: 3 * 128, ldk: 3 * 128, ldv: 3 * 128, ldo: 136 }, noise, 2e-3],
  ['simt_f32_d64_padmask', { ...tiny, dtype: 'float32', d: 64, mask: { dims: [2, 1, 1, 37] } }, (b, h, q, k) => padding(b, h, q, k + 63), 1e-5],
  ['simt_f32_d40_causal', { ...tiny, dtype: 'float32', d: 40, mask: { dims: [9, 37] } }, causal, 1e-5],
  ['simt_f16_d80', { ...tiny, dtype: 'float16', d: 80, mask: { dims: [1, 2, 1, 37] }, impl: 'simt' }, noise, 2e-3],
];

describe.skipIf(!hasGxx)('attention emitter: generated CUDA under the CPU emulator', () => {
  it.each(EMU_CASES)('%s matches the float64 reference', (id, p, maskGen, tol) => {
    const r = emulate(id, p, maskGen);
    expect(r.unwritten).toBe(0);
    expect(r.stray).toBe(0);
    expect(r.rel).toBeLessThan(tol);
  }, 600_000);
});
