// Before/After text-IR tests, one or more per pass of the build pipeline (src/passes/pipeline.ts) and per fusion pass:
// each runs just that pass, compares the result with the Expected IR structurally (test/ir-cases.ts: names other than
// graph inputs/outputs are normalized) and checks the CPU reference gives the same outputs before and after.
// Negative cases assert the graph is left alone and the reason lands in ctx.rejected (the fusion report).
// tsrt::FusedAttention has its own, larger suite (attention-fused.test.ts); concat-in-place is in concat-in-place.test.ts.
import { describe, expect, it } from 'vitest';
import { TsrtError } from '../src/errors.js';
import { fromF64 } from '../src/ir/tensor.js';
import { deadCode, foldConstants, inferTypes, removeNoOps, specializeShapes } from '../src/passes/basic.js';
import { fp16Precision } from '../src/passes/precision.js';
import { FUSION_PASSES, cse, foldBatchNorm, fuseConvEpilogue, fuseElementwise, fuseGemmEpilogue, recognizePatterns, transposeFold } from '../src/passes/fuse.js';
import { fuseAttention } from '../src/passes/attention.js';
import { channelsLast } from '../src/passes/layout.js';
import { concatInPlace } from '../src/passes/concat.js';
import { PIPELINE } from '../src/passes/pipeline.js';
import { fuseQkv } from '../src/passes/horizontal.js';
import { gemmRowOrder } from '../src/passes/row_order.js';
import { fuseRelayout } from '../src/passes/relayout.js';
import { spaceToDepthConv } from '../src/passes/space_to_depth.js';
import { quantizeInt8, recordQdqWeights } from '../src/passes/quantize.js';
import { qlinearInt8 } from '../src/passes/qlinear_int8.js';
import { checkPass, fusions, prep, rejections } from './ir-cases.js';
import { newPassContext, runPasses } from '../src/passes/pass.js';

/** Passes with a case in this file (registered where the case is declared). */
const COVERED = new Set<string>();
const cover = (...names: string[]) => names.forEach((n) => COVERED.add(n));

describe('basic passes', () => {
  cover(specializeShapes.name);
  it('specialize-shapes: symbolic input dims take --dims sizes (others 1); fixed inputs become initializers', () => {
    checkPass({
      pass: specializeShapes, options: { dims: { N: 2 } },
      before: `graph g(%x: float32[N,3], %y: float32[B,3]) -> (%z: float32[N,3]) opset 17 { %z = Add(%x, %y) }`,
      after: `graph g(%x: float32[2,3], %y: float32[1,3]) -> (%z: float32[N,3]) opset 17 { %z = Add(%x, %y) }`,
    });
    checkPass({
      pass: specializeShapes, numeric: false,
      options: { shapes: { x: [4, 2] }, inputValues: { s: fromF64('int64', [2], [2, 4]) } },
      before: `graph g(%x: float32[N,2], %s: int64[2]) -> (%z: float32[2,4]) opset 17 { %z = Reshape(%x, %s) }`,
      after: `graph g(%x: float32[4,2]) -> (%z: float32[2,4]) opset 17 { const %s: int64[2] = [2, 4]  %z = Reshape(%x, %s) }`,
    });
  });

  it('specialize-shapes: a shape of the wrong rank or against a fixed dim is a TsrtError naming the input', () => {
    const g = prep(`graph g(%x: float32[N,3]) -> (%z: float32[N,3]) opset 17 { %z = Relu(%x) }`);
    const run = (shapes: Record<string, number[]>) => () => runPasses(g, [specializeShapes], newPassContext({ shapes }));
    expect(run({ x: [2] })).toThrow(TsrtError);
    expect(run({ x: [2] })).toThrow(/input 'x' has rank 1/);
    expect(run({ x: [2, 4] })).toThrow(/conflicts with the model's fixed dim 1 = 3/);
  });

  cover(inferTypes.name);
  it('infer-shapes: every node output gets its type', () => {
    checkPass({
      pass: inferTypes, types: true,
      before: `graph g(%x: float32[2,3]) -> (%y: float32[2,4]) opset 17 {
        const %w: float32[3,4] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        %h = MatMul(%x, %w)
        %y = Relu(%h) }`,
      after: `graph g(%x: float32[2,3]) -> (%y: float32[2,4]) opset 17 {
        const %w: float32[3,4] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        %h: float32[2,4] = MatMul(%x, %w)
        %y: float32[2,4] = Relu(%h) }`,
    });
  });

  cover(foldConstants.name);
  it('fold-constants: constant arithmetic and static shape subgraphs (Shape -> Gather -> Concat -> Reshape) fold', () => {
    checkPass({
      pass: foldConstants,
      before: `graph g(%x: float32[2,3]) -> (%y: float32[3,2]) opset 17 {
        const %a: float32[2] = [1, 2]
        const %i: int64[1] = [0]
        const %m: int64[1] = [-1]
        %b = Add(%a, %a)
        %s = Shape(%x)
        %d = Gather(%s, %i)
        %t = Concat(%m, %d) {axis=0}
        %r = Reshape(%x, %t)
        %y = Mul(%r, %b) }`,
      after: `graph g(%x: float32[2,3]) -> (%y: float32[3,2]) opset 17 {
        const %b: float32[2] = [2, 4]
        const %t: int64[2] = [-1, 2]
        %r = Reshape(%x, %t)
        %y = Mul(%r, %b) }`,
    });
  });

  cover(removeNoOps.name);
  it('remove-noops: Identity, inference Dropout and same-type Cast go, unless they write a graph output', () => {
    checkPass({
      pass: removeNoOps,
      before: `graph g(%x: float32[4]) -> (%y: float32[4], %o: float32[4]) opset 17 {
        %a = Identity(%x)
        %b = Dropout(%a)
        %c = Cast(%b) {to=1}
        %y = Relu(%c)
        %o = Identity(%y) }`,
      after: `graph g(%x: float32[4]) -> (%y: float32[4], %o: float32[4]) opset 17 {
        %y = Relu(%x)
        %o = Identity(%y) }`,
    });
  });

  cover(deadCode.name);
  it('dead-code: nodes and initializers no output needs are dropped', () => {
    checkPass({
      pass: deadCode,
      before: `graph g(%x: float32[4]) -> (%y: float32[4]) opset 17 {
        const %k: float32[1] = [3]
        %u = Mul(%x, %k)
        %v = Exp(%u)
        %y = Relu(%x) }`,
      after: `graph g(%x: float32[4]) -> (%y: float32[4]) opset 17 { %y = Relu(%x) }`,
    });
  });
});

describe('precision', () => {
  cover(fp16Precision.name);
  it('fp16: nodes run in float16 with Casts only at the boundaries; weights convert once; `never` ops stay fp32', () => {
    checkPass({
      pass: fp16Precision, options: { fp16: true }, tol: { rtol: 2e-2, atol: 2e-2 },
      before: `graph g(%x: float32[2,2]) -> (%y: float32[2,1]) opset 17 {
        const %w: float32[2,2] = [1, 0.5, -2, 0.25]
        %h = MatMul(%x, %w)
        %r = Relu(%h)
        const %ax: int64[1] = [1]
        %y = ReduceLogSumExp(%r, %ax) {keepdims=1} }`,
      after: `graph g(%x: float32[2,2]) -> (%y: float32[2,1]) opset 17 {
        const %w16: float16[2,2] = [1, 0.5, -2, 0.25]
        const %w: float32[2,2] = [1, 0.5, -2, 0.25]     # now unused: dead-code at the end of the pipeline drops it
        %x16 = Cast(%x) {to=10}
        %h = MatMul(%x16, %w16)
        %r = Relu(%h)
        %r32 = Cast(%r) {to=1}
        const %ax: int64[1] = [1]
        %y = ReduceLogSumExp(%r32, %ax) {keepdims=1} }`,
    });
    // without --fp16 the pass is the identity
    checkPass({ pass: fp16Precision, before: `graph g(%x: float32[2]) -> (%y: float32[2]) opset 17 { %y = Relu(%x) }` });
  });
});

describe('fusion passes', () => {
  cover(cse.name);
  it('cse: a repeated node reads the first copy; graph outputs keep their own nodes', () => {
    checkPass({
      pass: cse,
      before: `graph g(%x: float32[4]) -> (%y: float32[4]) opset 17 {
        %a = Relu(%x)
        %b = Relu(%x)
        %y = Add(%a, %b) }`,
      after: `graph g(%x: float32[4]) -> (%y: float32[4]) opset 17 {
        %a = Relu(%x)
        %y = Add(%a, %a) }`,
    });
    checkPass({ pass: cse, before: `graph g(%x: float32[4]) -> (%a: float32[4], %b: float32[4]) opset 17 { %a = Relu(%x)  %b = Relu(%x) }` });
  });

  cover(transposeFold.name);
  it('transpose-fold: Transpose chains compose (or cancel, an Identity where a graph output needs it); Reshape chains fold', () => {
    const { ctx } = checkPass({
      pass: transposeFold,
      before: `graph g(%x: float32[2,3,4]) -> (%y: float32[4,3,2], %z: float32[2,3,4], %r: float32[6,4]) opset 17 {
        const %s1: int64[2] = [3, 8]
        const %s2: int64[2] = [6, 4]
        %t1 = Transpose(%x) {perm=[1, 0, 2]}
        %y = Transpose(%t1) {perm=[2, 0, 1]}
        %t2 = Transpose(%x) {perm=[0, 2, 1]}
        %z = Transpose(%t2) {perm=[0, 2, 1]}
        %q = Reshape(%x, %s1)
        %r = Reshape(%q, %s2) }`,
      after: `graph g(%x: float32[2,3,4]) -> (%y: float32[4,3,2], %z: float32[2,3,4], %r: float32[6,4]) opset 17 {
        const %s: int64[2] = [6, 4]
        %y = Transpose(%x) {perm=[2, 1, 0]}
        %z = Identity(%x)
        %r = Reshape(%x, %s) }`,
    });
    // (unnamed nodes are <op>_<index among the nodes>)
    expect(fusions(ctx, transposeFold.name)).toEqual(['Transpose+Transpose [Transpose_0, Transpose_1]', 'Transpose+Transpose [Transpose_2, Transpose_3]', 'Reshape+Reshape [Reshape_4, Reshape_5]']);
  });

  cover(recognizePatterns.name);
  it('recognize-patterns: decomposed Softmax (with max subtraction) and erf GELU become single ops', () => {
    const { ctx } = checkPass({
      pass: recognizePatterns,
      before: `graph g(%x: float32[2,5]) -> (%y: float32[2,5], %z: float32[2,5]) opset 17 {
        const %ax: int64[1] = [1]
        const %r2: float32[] = [1.4142135]
        const %one: float32[] = [1]
        const %half: float32[] = [0.5]
        %m = ReduceMax(%x) {axes=[1], keepdims=1}
        %d = Sub(%x, %m)
        %e = Exp(%d)
        %s = ReduceSum(%e, %ax) {keepdims=1}
        %y = Div(%e, %s)
        %g0 = Div(%x, %r2)
        %g1 = Erf(%g0)
        %g2 = Add(%g1, %one)
        %g3 = Mul(%x, %g2)
        %z = Mul(%g3, %half) }`,
      after: `graph g(%x: float32[2,5]) -> (%y: float32[2,5], %z: float32[2,5]) opset 17 {
        %y = Softmax(%x) {axis=1}
        %z = Gelu(%x) }`,
    });
    expect(fusions(ctx, recognizePatterns.name).map((f) => f.split(' ')[0])).toEqual(['Softmax', 'GeluErf']);
    // a ReduceSum over two axes is no Softmax: left alone, with the reason
    const neg = checkPass({
      pass: recognizePatterns,
      before: `graph g(%x: float32[2,5]) -> (%y: float32[2,5]) opset 17 {
        const %ax: int64[2] = [0, 1]
        %e = Exp(%x)
        %s = ReduceSum(%e, %ax) {keepdims=1}
        %y = Div(%e, %s) }`,
    });
    expect(rejections(neg.ctx, recognizePatterns.name)).toEqual(['Softmax: ReduceSum is not over a single constant axis with keepdims']);
  });

  cover(foldBatchNorm.name);
  it('fold-batchnorm: BatchNormalization folds into the Conv weights and bias; after a graph input it stays, with the reason', () => {
    // a = scale / sqrt(var + eps) = [0.5, 4]; W' = W * a; B' = beta - mean * a
    const { ctx } = checkPass({
      pass: foldBatchNorm,
      before: `graph g(%x: float32[1,1,2,2]) -> (%y: float32[1,2,2,2]) opset 17 {
        const %w: float32[2,1,1,1] = [1, 2]
        const %sc: float32[2] = [1, 2]
        const %b: float32[2] = [0.5, -1]
        const %mu: float32[2] = [1, 0]
        const %var: float32[2] = [4, 0.25]
        %c = Conv(%x, %w)
        %y = BatchNormalization(%c, %sc, %b, %mu, %var) {epsilon=0.0} }`,
      after: `graph g(%x: float32[1,1,2,2]) -> (%y: float32[1,2,2,2]) opset 17 {
        const %w: float32[2,1,1,1] = [0.5, 8]
        const %b: float32[2] = [0, -1]
        %y = Conv(%x, %w, %b) }`,
    });
    expect(fusions(ctx, foldBatchNorm.name)).toEqual(['Conv+BatchNormalization [Conv_0, BatchNormalization_1]']);
    const neg = checkPass({
      pass: foldBatchNorm,
      before: `graph g(%x: float32[1,2,2,2]) -> (%y: float32[1,2,2,2]) opset 17 {
        const %sc: float32[2] = [1, 2]
        const %b: float32[2] = [0.5, -1]
        const %mu: float32[2] = [1, 0]
        const %var: float32[2] = [4, 0.25]
        %y = BatchNormalization(%x, %sc, %b, %mu, %var) }`,
    });
    expect(rejections(neg.ctx, foldBatchNorm.name)).toEqual([
      'BatchNormalization: input is produced by no node (graph input), not Conv/Gemm/MatMul with constant weights (BatchNormalization stays standalone)']);
  });

  cover(fuseConvEpilogue.name);
  it('fuse-conv-epilogue: Conv + Relu => tsrt::FusedConv; a Conv output with 2 consumers is not fused, and the report says so', () => {
    const conv = `const %w: float32[2,1,1,1] = [1, -2]
        const %b: float32[2] = [0.5, 0.25]`;
    const { ctx } = checkPass({
      pass: fuseConvEpilogue,
      before: `graph g(%x: float32[1,1,3,3]) -> (%y: float32[1,2,3,3]) opset 17 { ${conv}
        %c = Conv(%x, %w, %b) {pads=[0, 0, 0, 0]}
        %y = Relu(%c) }`,
      after: `graph g(%x: float32[1,1,3,3]) -> (%y: float32[1,2,3,3]) opset 17 { ${conv}
        %y = tsrt::FusedConv(%x, %w, %b) {pads=[0, 0, 0, 0], activation="Relu"} }`,
    });
    expect(fusions(ctx, fuseConvEpilogue.name)).toEqual(['Conv+Relu [Conv_0, Relu_1]']);
    const neg = checkPass({
      pass: fuseConvEpilogue,
      before: `graph g(%x: float32[1,1,3,3]) -> (%y: float32[1,2,3,3], %z: float32[1,2,3,3]) opset 17 { ${conv}
        %c = Conv(%x, %w, %b)
        %y = Relu(%c)
        %z = Sigmoid(%c) }`,
    });
    expect(rejections(neg.ctx, fuseConvEpilogue.name)).toEqual(["Conv+Relu+Sigmoid: output 'c' has 2 consumers"]);
  });

  cover(fuseGemmEpilogue.name);
  it('fuse-gemm-epilogue: MatMul + bias Add + Relu => tsrt::FusedGemm; non-constant weights stay, with the reason', () => {
    const { ctx } = checkPass({
      pass: fuseGemmEpilogue,
      before: `graph g(%x: float32[2,3]) -> (%y: float32[2,2]) opset 17 {
        const %w: float32[3,2] = [1, -1, 0.5, 2, -0.25, 1]
        const %b: float32[2] = [0.5, -0.5]
        %m = MatMul(%x, %w)
        %a = Add(%m, %b)
        %y = Relu(%a) }`,
      after: `graph g(%x: float32[2,3]) -> (%y: float32[2,2]) opset 17 {
        const %w: float32[3,2] = [1, -1, 0.5, 2, -0.25, 1]
        const %b: float32[2] = [0.5, -0.5]
        %y = tsrt::FusedGemm(%x, %w, %b) {activation="Relu"} }`,
    });
    expect(fusions(ctx, fuseGemmEpilogue.name)).toEqual(['MatMul+Add+Relu [MatMul_0, Add_1, Relu_2]']);
    const neg = checkPass({
      pass: fuseGemmEpilogue,
      before: `graph g(%x: float32[2,3], %w: float32[3,2]) -> (%y: float32[2,2]) opset 17 { %m = MatMul(%x, %w)  %y = Relu(%m) }`,
    });
    expect(rejections(neg.ctx, fuseGemmEpilogue.name)).toEqual(['MatMul+Relu: weights are not constant']);
  });

  cover(fuseElementwise.name);
  it('fuse-elementwise: an elementwise chain => one tsrt::Fused whose body holds the nodes and small constants', () => {
    checkPass({
      pass: fuseElementwise,
      before: `graph g(%x: float32[2,3], %b: float32[2,3]) -> (%y: float32[2,3]) opset 17 {
        const %k: float32[1] = [0.5]
        %a = Add(%x, %b)
        %m = Mul(%a, %k)
        %y = Sigmoid(%m) }`,
      after: `graph g(%x: float32[2,3], %b: float32[2,3]) -> (%y: float32[2,3]) opset 17 {
        %y = tsrt::Fused(%x, %b) {
          body=graph body(%x: float32[2,3], %b: float32[2,3]) -> (%y: float32[2,3]) {
            const %k: float32[1] = [0.5]
            %a = Add(%x, %b)
            %m = Mul(%a, %k)
            %y = Sigmoid(%m)
          }
        } }`,
    });
    // a value also read outside the chain ends the group (its consumers read it from memory)
    checkPass({
      pass: fuseElementwise,
      before: `graph g(%x: float32[2,3]) -> (%y: float32[2,3], %z: float32[2,3]) opset 17 {
        %a = Exp(%x)
        %y = Relu(%a)
        %z = Sigmoid(%a) }`,
    });
  });
});

describe('attention and layout', () => {
  cover(fuseQkv.name);
  it('fuse-qkv: three projections of one input feeding one attention => one GEMM over concatenated weights, attention packed', () => {
    const attn = 'num_heads=1, head_dim=2, scale=0.5, mask_kind="none"';
    const { ctx } = checkPass({
      pass: fuseQkv,
      before: `graph g(%x: float32[1,3,2]) -> (%y: float32[1,3,2]) opset 17 {
        const %wq: float32[2,2] = [1, 2, 3, 4]
        const %wk: float32[2,2] = [-1, 0.5, 0.25, 1]
        const %wv: float32[2,2] = [0, 1, 1, 0]
        %q = tsrt::FusedGemm(%x, %wq)
        %k = tsrt::FusedGemm(%x, %wk)
        %v = tsrt::FusedGemm(%x, %wv)
        %y = tsrt::FusedAttention(%q, %k, %v) {${attn}} }`,
      // weights concatenated along N: row r of W' is [wq row r, wk row r, wv row r]
      after: `graph g(%x: float32[1,3,2]) -> (%y: float32[1,3,2]) opset 17 {
        const %w: float32[2,6] = [1, 2, -1, 0.5, 0, 1, 3, 4, 0.25, 1, 1, 0]
        %qkv = tsrt::FusedGemm(%x, %w)
        %y = tsrt::FusedAttention(%qkv, _, _) {${attn}, packed=1} }`,
    });
    expect(fusions(ctx, fuseQkv.name)).toEqual(['QKV [FusedGemm_0, FusedGemm_1, FusedGemm_2]']);
    const neg = checkPass({
      pass: fuseQkv,
      before: `graph g(%x: float32[1,3,2], %m: float32[1,3,2]) -> (%y: float32[1,3,2]) opset 17 {
        const %wq: float32[2,2] = [1, 2, 3, 4]
        const %wk: float32[2,2] = [-1, 0.5, 0.25, 1]
        %q = tsrt::FusedGemm(%x, %wq)
        %k = tsrt::FusedGemm(%m, %wk)
        %v = tsrt::FusedGemm(%m, %wk)
        %y = tsrt::FusedAttention(%q, %k, %v) {${attn}} }`,
    });
    expect(rejections(neg.ctx, fuseQkv.name)).toEqual(['QKV: Q, K and V project different inputs (cross-attention)']);
  });

  cover(fuseAttention.name);
  it('fuse-attention: head split .. softmax .. head merge => tsrt::FusedAttention', () => {
    const { ctx } = checkPass({
      pass: fuseAttention, tol: { rtol: 1e-5, atol: 1e-6 },
      before: `graph g(%q: float32[1,3,4], %k: float32[1,3,4], %v: float32[1,3,4]) -> (%y: float32[1,3,4]) opset 17 {
        const %split: int64[4] = [0, 0, 2, 2]
        const %merge: int64[3] = [0, 0, 4]
        const %s: float32[] = [0.5]
        %q1 = Reshape(%q, %split)
        %k1 = Reshape(%k, %split)
        %v1 = Reshape(%v, %split)
        %qt = Transpose(%q1) {perm=[0, 2, 1, 3]}
        %kt = Transpose(%k1) {perm=[0, 2, 3, 1]}
        %vt = Transpose(%v1) {perm=[0, 2, 1, 3]}
        %s0 = MatMul(%qt, %kt)
        %s1 = Mul(%s0, %s)
        %p = Softmax(%s1) {axis=-1}
        %o = MatMul(%p, %vt)
        %ot = Transpose(%o) {perm=[0, 2, 1, 3]}
        %y = Reshape(%ot, %merge) }`,
      after: `graph g(%q: float32[1,3,4], %k: float32[1,3,4], %v: float32[1,3,4]) -> (%y: float32[1,3,4]) opset 17 {
        %y = tsrt::FusedAttention(%q, %k, %v) {num_heads=2, head_dim=2, scale=0.5, mask_kind="none"} }`,
    });
    expect(fusions(ctx, fuseAttention.name)).toHaveLength(1);
  });

  cover(channelsLast.name);
  it('layout-nhwc (fp16 builds): Conv and MaxPool run channels-last; the transposes between them cancel', () => {
    const before = `graph g(%x: float32[1,2,4,4]) -> (%y: float32[1,2,2,2]) opset 17 {
        const %w: float32[2,2,1,1] = [1, -1, 0.5, 2]
        %c = Conv(%x, %w)
        %p = MaxPool(%c) {kernel_shape=[2, 2], strides=[2, 2]}
        %y = Relu(%p) }`;
    checkPass({
      pass: channelsLast, options: { fp16: true }, before,
      after: `graph g(%x: float32[1,2,4,4]) -> (%y: float32[1,2,2,2]) opset 17 {
        const %w: float32[2,2,1,1] = [1, -1, 0.5, 2]
        %xt = Transpose(%x) {perm=[0, 2, 3, 1]}
        %ct = tsrt::FusedConv(%xt, %w) {layout="NHWC"}
        %pt = tsrt::MaxPool(%ct) {kernel_shape=[2, 2], strides=[2, 2], layout="NHWC"}
        %p = Transpose(%pt) {perm=[0, 3, 1, 2]}
        %y = Relu(%p) }`,
    });
    // fp32 builds keep NCHW (the SIMT conv kernels are as fast there)
    checkPass({ pass: channelsLast, before });
  });
});

describe('int8 bookkeeping', () => {
  cover(recordQdqWeights.name);
  it('record-qdq-weights: only remembers the int8 weights behind DequantizeLinear for the quantize pass; the graph is unchanged', () => {
    checkPass({
      pass: recordQdqWeights,
      before: `graph g(%x: float32[2]) -> (%y: float32[2]) opset 17 {
        const %q: int8[2] = [-127, 64]
        const %s: float32[] = [0.5]
        %w = DequantizeLinear(%q, %s)
        %y = Mul(%x, %w) }`,
    });
  });
});

describe('int8 quantization', () => {
  // a 1x1 conv, 16 -> 2 channels; int8 weights q (channel 1 reaches 127) as ONNX int8 and as float q/16
  const q = Array.from({ length: 32 }, (_, i) => (i === 17 ? 127 : ((i * 37) % 255) - 127));
  const wf = q.map((v) => v / 16);
  cover(quantizeInt8.name);
  it('quantize-int8 (explicit Q/DQ): DQ(x), DQ(w) -> Conv -> Q becomes one QConv with the model scales and an int8 output', () => {
    checkPass({
      // the pipeline's order: the int8 weights are recorded before folding turns DequantizeLinear(w) into floats
      pass: [recordQdqWeights, foldConstants, quantizeInt8, deadCode], tol: { rtol: 0, atol: 0.75 * 1.0001 },
      before: `graph g(%x: float32[1,16,2,2]) -> (%y: float32[1,2,2,2]) opset 13 {
        const %s: float32[] = [0.5]
        const %z: int8[] = [0]
        const %wq: int8[2,16,1,1] = [${q}]
        const %ws: float32[] = [0.25]
        const %ys: float32[] = [0.75]
        %xq = QuantizeLinear(%x, %s, %z)
        %xd = DequantizeLinear(%xq, %s, %z)
        %w = DequantizeLinear(%wq, %ws, %z)
        %c = Conv(%xd, %w)
        %cq = QuantizeLinear(%c, %ys, %z)
        %y = DequantizeLinear(%cq, %ys, %z) }`,
      after: `graph g(%x: float32[1,16,2,2]) -> (%y: float32[1,2,2,2]) opset 13 {
        const %s: float32[] = [0.5]
        const %z: int8[] = [0]
        const %ys: float32[] = [0.75]
        const %w8: int8[2,16,1,1] = [${q}]
        const %wsc: float32[2] = [0.25, 0.25]
        %xq = QuantizeLinear(%x, %s, %z)
        %cq = tsrt::QConv(%xq, %w8, %wsc) {x_scale=0.5, y_scale=0.75}
        %y = DequantizeLinear(%cq, %ys, %z) }`,
    });
  });
  it('quantize-int8 (calibrated): a Conv with an input scale quantizes its input and its weights per channel; no scale, no int8', () => {
    const before = `graph g(%x: float32[1,16,2,2]) -> (%y: float32[1,2,2,2]) opset 13 {
        const %w: float32[2,16,1,1] = [${wf}]
        %y = Conv(%x, %w) name="conv" }`;
    const { ctx } = checkPass({
      // (deadCode: the float weights the pass leaves for the pipeline's last dead-code pass)
      pass: [quantizeInt8, deadCode], options: { int8: true, int8Scales: { x: 0.015625 } }, tol: { rtol: 0.05, atol: 0.05 }, before,
      // amax per channel: 127/16 -> scale 1/16 exactly, so the int8 weights are q
      after: `graph g(%x: float32[1,16,2,2]) -> (%y: float32[1,2,2,2]) opset 13 {
        const %xs: float32[] = [0.015625]
        const %xz: int8[] = [0]
        const %w8: int8[2,16,1,1] = [${q}]
        const %wsc: float32[2] = [0.0625, 0.0625]
        %xq = QuantizeLinear(%x, %xs, %xz)
        %y = tsrt::QConv(%xq, %w8, %wsc) {x_scale=0.015625, out_dtype=1} }`,
    });
    expect(fusions(ctx, quantizeInt8.name)).toEqual(['int8 conv [conv]']);
    const { ctx: none } = checkPass({ pass: quantizeInt8, options: { int8: true, int8Scales: {} }, before });
    expect(rejections(none, quantizeInt8.name)).toEqual(["int8: no int8 scale for input 'x'"]);
  });

  cover(qlinearInt8.name);
  it('qlinear-int8: symmetric int8 QLinearConv / QLinearMatMul become qlinear QConv / QGemm (B transposed to [N, K]); uint8 stays', () => {
    const conv = (xType: string, zp: string) => `graph g(%x: ${xType}[1,16,2,2]) -> (%y: ${xType}[1,2,2,2]) opset 13 {
        const %s: float32[] = [0.5]
        const %z: ${xType}[] = [${zp}]
        const %w: int8[2,16,1,1] = [${q}]
        const %wz: int8[] = [0]
        const %ws: float32[2] = [0.25, 0.125]
        const %b: int32[2] = [-7, 300]
        %y = QLinearConv(%x, %s, %z, %w, %ws, %wz, %s, %z, %b) name="qc" }`;
    const { ctx } = checkPass({
      pass: qlinearInt8, before: conv('int8', '0'),
      after: `graph g(%x: int8[1,16,2,2]) -> (%y: int8[1,2,2,2]) opset 13 {
        const %w: int8[2,16,1,1] = [${q}]
        const %ws: float32[2] = [0.25, 0.125]
        const %b: int32[2] = [-7, 300]
        %y = tsrt::QConv(%x, %w, %ws, %b) {x_scale=0.5, y_scale=0.5, qlinear=1} }`,
    });
    expect(fusions(ctx, qlinearInt8.name)).toEqual(['int8 conv [qlinear] [qc]']);
    const { ctx: u8 } = checkPass({ pass: qlinearInt8, before: conv('uint8', '128') });
    expect(rejections(u8, qlinearInt8.name)).toEqual(['int8: zero point 128 (uint8) on input x: int8 kernels are symmetric (int8, zero point 0); runs its CPU reference on the host']);
    // MatMul: B [K=16, N=2] is q read as [16, 2]; the kernel takes its transpose
    const t = Array.from({ length: 32 }, (_, i) => q[(i % 16) * 2 + Math.floor(i / 16)]);
    checkPass({
      pass: qlinearInt8,
      before: `graph g(%a: int8[3,16]) -> (%y: int8[3,2]) opset 13 {
        const %s: float32[] = [0.5]
        const %z: int8[] = [0]
        const %b: int8[16,2] = [${q}]
        const %bs: float32[] = [0.0625]
        %y = QLinearMatMul(%a, %s, %z, %b, %bs, %z, %s, %z) }`,
      after: `graph g(%a: int8[3,16]) -> (%y: int8[3,2]) opset 13 {
        const %w: int8[2,16] = [${t}]
        const %ws: float32[2] = [0.0625, 0.0625]
        %y = tsrt::QGemm(%a, %w, %ws) {x_scale=0.5, y_scale=0.5, qlinear=1} }`,
    });
  });
});

describe('sequence-first attention (nn.MultiheadAttention as torchvision ViT exports it)', () => {
  cover(gemmRowOrder.name);
  it('gemm-row-order: a Gemm whose rows are transposed back afterwards reads its input rows in that order instead', () => {
    const { ctx } = checkPass({
      pass: gemmRowOrder,
      before: `graph g(%x: float32[2,3,2]) -> (%y: float32[2,3,2]) opset 17 {
        const %rows: int64[2] = [6, 2]
        const %back: int64[3] = [3, 2, 2]
        const %w: float32[2,2] = [1, 2, -3, 0.5]
        const %b: float32[2] = [0.25, -1]
        %t = Transpose(%x) {perm=[1, 0, 2]}
        %a = Reshape(%t, %rows)
        %r = Gemm(%a, %w, %b) {transB=1}
        %r3 = Reshape(%r, %back)
        %y = Transpose(%r3) {perm=[1, 0, 2]} }`,
      // the two row transposes cancel: a MatMul of x itself (weight transposed once, at build time) and the bias
      after: `graph g(%x: float32[2,3,2]) -> (%y: float32[2,3,2]) opset 17 {
        const %wt: float32[2,2] = [1, -3, 2, 0.5]
        const %b: float32[2] = [0.25, -1]
        %m = MatMul(%x, %wt)
        %y = Add(%m, %b) }`,
    });
    expect(fusions(ctx, gemmRowOrder.name)).toHaveLength(1);
    // the input is no data movement: moving the transpose there would only move the copy
    const neg = checkPass({
      pass: gemmRowOrder,
      before: `graph g(%x: float32[3,2,2]) -> (%y: float32[2,3,2]) opset 17 {
        const %w: float32[2,2] = [1, 2, -3, 0.5]
        %r = MatMul(%x, %w)
        %y = Transpose(%r) {perm=[1, 0, 2]} }`,
    });
    expect(rejections(neg.ctx, gemmRowOrder.name)).toHaveLength(1);
    expect(rejections(neg.ctx, gemmRowOrder.name)[0]).toMatch(/^GemmRowOrder: the input 'x' is not data movement read only by '.*': reordering it adds a copy$/);
  });

  // x [B=2,S=3,E=4], 2 heads of 2: the in-projection runs on Transpose(x) ([S,B,E]) and Q, K, V are Gathers of it
  const w = Array.from({ length: 48 }, (_, i) => (((i * 7) % 11) - 5) / 8).join(', ');
  const bias = Array.from({ length: 12 }, (_, i) => ((i % 5) - 2) / 4).join(', ');
  const mha = (order: number[]) => `graph g(%x: float32[2,3,4]) -> (%y: float32[2,3,4]) opset 17 {
        const %w: float32[4,12] = [${w}]
        const %b: float32[12] = [${bias}]
        const %s5: int64[4] = [3, 2, 3, 4]
        const %ax0: int64[1] = [0]
        const %ax3: int64[1] = [3]
        const %i0: int64[] = [${order[0]}]
        const %i1: int64[] = [${order[1]}]
        const %i2: int64[] = [${order[2]}]
        const %heads: int64[3] = [3, 4, 2]
        const %bhsd: int64[4] = [2, 2, 3, 2]
        const %merge: int64[3] = [2, 3, 4]
        const %s: float32[] = [0.5]
        %t = Transpose(%x) {perm=[1, 0, 2]}
        %p = tsrt::FusedGemm(%t, %w, %b)
        %p5 = Reshape(%p, %s5)
        %pu = Unsqueeze(%p5, %ax0)
        %pt = Transpose(%pu) {perm=[3, 1, 2, 0, 4]}
        %ps = Squeeze(%pt, %ax3)
        %q0 = Gather(%ps, %i0) {axis=0}
        %k0 = Gather(%ps, %i1) {axis=0}
        %v0 = Gather(%ps, %i2) {axis=0}
        %q1 = Reshape(%q0, %heads)
        %k1 = Reshape(%k0, %heads)
        %v1 = Reshape(%v0, %heads)
        %q2 = Transpose(%q1) {perm=[1, 0, 2]}
        %k2 = Transpose(%k1) {perm=[1, 0, 2]}
        %v2 = Transpose(%v1) {perm=[1, 0, 2]}
        %q3 = Reshape(%q2, %bhsd)
        %k3 = Reshape(%k2, %bhsd)
        %v3 = Reshape(%v2, %bhsd)
        %kt = Transpose(%k3) {perm=[0, 1, 3, 2]}
        %qs = Mul(%q3, %s)
        %ks = Mul(%kt, %s)
        %sc = MatMul(%qs, %ks)
        %pr = Softmax(%sc) {axis=-1}
        %o = MatMul(%pr, %v3)
        %ot = Transpose(%o) {perm=[0, 2, 1, 3]}
        %y = Reshape(%ot, %merge) }`;

  it('fuse-attention: Q, K, V gathered out of one sequence-first in-projection => packed tsrt::FusedAttention on the projection of x', () => {
    const { ctx } = checkPass({
      pass: fuseAttention, tol: { rtol: 1e-5, atol: 1e-6 },
      before: mha([0, 1, 2]),
      // the projection reads x: its rows come out [B,S], which the packed kernel reads in place
      after: `graph g(%x: float32[2,3,4]) -> (%y: float32[2,3,4]) opset 17 {
        const %w: float32[4,12] = [${w}]
        const %b: float32[12] = [${bias}]
        %qkv = tsrt::FusedGemm(%x, %w, %b)
        %y = tsrt::FusedAttention(%qkv, _, _) {num_heads=2, head_dim=2, scale=0.25, mask_kind="none", packed=1} }`,
    });
    expect(fusions(ctx, fuseAttention.name)).toHaveLength(1);
    expect(ctx.fusions[0].kind).toBe('Attention(packed QKV)');
  });

  it('fuse-attention: K taken first out of the packed projection is no packed Q/K/V, with the reason', () => {
    const { ctx } = checkPass({ pass: fuseAttention, before: mha([1, 0, 2]) });
    expect(rejections(ctx, fuseAttention.name)).toHaveLength(1);
    expect(rejections(ctx, fuseAttention.name)[0]).toMatch(/as views of the projections: Q is not part 0 of a \[B,S,3\*H\*D\] view of '.*'/);
  });
});

describe('input and output preparation', () => {
  cover(fuseRelayout.name);
  it('fuse-relayout: Cast -> NCHW->NHWC Transpose -> tensor-core conv of 3 channels => one Relayout that also pads to 8 channels (zero weights)', () => {
    const { ctx } = checkPass({
      pass: fuseRelayout, tol: { rtol: 1e-3, atol: 1e-3 },
      before: `graph g(%x: float32[1,3,2,2]) -> (%y: float16[1,2,2,2]) opset 17 {
        const %w: float16[2,3,1,1] = [1, -1, 0.5, 2, 0.25, 1]
        %h = Cast(%x) {to=10}
        %t = Transpose(%h) {perm=[0, 2, 3, 1]}
        %y = tsrt::FusedConv(%t, %w) {layout="NHWC"} }`,
      after: `graph g(%x: float32[1,3,2,2]) -> (%y: float16[1,2,2,2]) opset 17 {
        const %w8: float16[2,8,1,1] = [1, -1, 0.5, 0, 0, 0, 0, 0, 2, 0.25, 1, 0, 0, 0, 0, 0]
        %p = tsrt::Relayout(%x) {perm=[0, 2, 3, 1], pads=[0, 0, 0, 0, 0, 0, 0, 5], to=10}
        %y = tsrt::FusedConv(%p, %w8) {layout="NHWC"} }`,
    });
    expect(fusions(ctx, fuseRelayout.name)).toEqual(['Cast+Transpose+ChannelPad [Cast_0, Transpose_1]']);
  });

  it('fuse-relayout: NHWC->NCHW Transpose and the Cast back to fp32 at an output => one Relayout; a Transpose alone stays', () => {
    checkPass({
      pass: fuseRelayout,
      before: `graph g(%x: float16[1,2,2,3]) -> (%y: float32[1,3,2,2], %z: float16[1,3,2,2]) opset 17 {
        %t = Transpose(%x) {perm=[0, 3, 1, 2]}
        %y = Cast(%t) {to=1}
        %z = Transpose(%x) {perm=[0, 3, 1, 2]} }`,
      after: `graph g(%x: float16[1,2,2,3]) -> (%y: float32[1,3,2,2], %z: float16[1,3,2,2]) opset 17 {
        %y = tsrt::Relayout(%x) {perm=[0, 3, 1, 2], to=1}
        %z = Transpose(%x) {perm=[0, 3, 1, 2]} }`,
    });
  });

  it('fuse-relayout (int8): QuantizeLinear -> NCHW->NHWC Transpose -> int8 QConv of 3 channels => one quantizing Relayout that pads to 16 channels (zero int8 weights)', () => {
    // 1/32 makes x / scale exact: 0.25 -> 8, -0.5 -> -16, ties like 0.046875 (1.5) round to even
    const { ctx } = checkPass({
      pass: fuseRelayout,
      before: `graph g(%x: float32[1,3,2,2]) -> (%y: float32[1,2,2,2]) opset 17 {
        const %s: float32[] = [0.03125]
        const %z: int8[] = [0]
        const %w: int8[2,3,1,1] = [1, -1, 2, 3, 4, -5]
        const %ws: float32[2] = [0.5, 0.25]
        %q = QuantizeLinear(%x, %s, %z)
        %t = Transpose(%q) {perm=[0, 2, 3, 1]}
        %y = tsrt::QConv(%t, %w, %ws) {layout="NHWC", x_scale=0.03125, out_dtype=1} }`,
      after: `graph g(%x: float32[1,3,2,2]) -> (%y: float32[1,2,2,2]) opset 17 {
        const %w16: int8[2,16,1,1] = [1, -1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 4, -5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        const %ws: float32[2] = [0.5, 0.25]
        %p = tsrt::Relayout(%x) {perm=[0, 2, 3, 1], pads=[0, 0, 0, 0, 0, 0, 0, 13], to=3, scale=0.03125}
        %y = tsrt::QConv(%p, %w16, %ws) {layout="NHWC", x_scale=0.03125, out_dtype=1} }`,
    });
    expect(fusions(ctx, fuseRelayout.name)).toEqual(['QuantizeLinear+Transpose+ChannelPad [QuantizeLinear_0, Transpose_1]']);
  });

  it('fuse-relayout (int8): a uint8 or asymmetric QuantizeLinear is no Relayout conversion (the Transpose stays too), with the reason', () => {
    const before = (zp: string) => `graph g(%x: float32[1,3,2,2]) -> (%y: ${zp.split('[')[0]}[1,2,2,3]) opset 17 {
        const %s: float32[] = [0.03125]
        const %z: ${zp}
        %q = QuantizeLinear(%x, %s, %z)
        %y = Transpose(%q) {perm=[0, 2, 3, 1]} }`;
    const { ctx } = checkPass({ pass: fuseRelayout, before: before('uint8[] = [0]') });
    expect(rejections(ctx, fuseRelayout.name)).toEqual(['QuantizeLinear+Transpose: quantizes to uint8: the Relayout writes int8 only']);
    const { ctx: asym } = checkPass({ pass: fuseRelayout, before: before('int8[] = [3]') });
    expect(rejections(asym, fuseRelayout.name)).toEqual(['QuantizeLinear+Transpose: zero point is not a constant 0 (asymmetric)']);
  });
});

describe('space-to-depth stem', () => {
  cover(spaceToDepthConv.name);
  it('space-to-depth-conv: 3x3 stride-2 pad-1 conv over 1 channel => Relayout blocksize 2 (zero border 1 before) + 2x2 stride-1 conv, K 72 -> 32', () => {
    // W' is W shifted by one zero row/column (pad 1 is odd); channel bh*2+bw, tap (a, b) holds W'[2a+bh][2b+bw]
    const { ctx } = checkPass({
      pass: spaceToDepthConv, tol: { rtol: 1e-3, atol: 1e-3 },
      before: `graph g(%x: float16[1,6,6,1]) -> (%y: float16[1,3,3,2]) opset 17 {
        const %w: float16[2,1,3,3] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
        %y = tsrt::FusedConv(%x, %w) {layout="NHWC", strides=[2, 2], pads=[1, 1, 1, 1]} }`,
      after: `graph g(%x: float16[1,6,6,1]) -> (%y: float16[1,3,3,2]) opset 17 {
        const %w2: float16[2,8,2,2] = [0, 0, 0, 5, 0, 0, 4, 6, 0, 2, 0, 8, 1, 3, 7, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
          0, 0, 0, 14, 0, 0, 13, 15, 0, 11, 0, 17, 10, 12, 16, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        %s = tsrt::Relayout(%x) {pads=[0, 1, 1, 0, 0, 0, 0, 4], blocksize=2}
        %y = tsrt::FusedConv(%s, %w2) {layout="NHWC", strides=[1, 1], pads=[0, 0, 0, 0], kernel_shape=[2, 2], dilations=[1, 1]} }`,
    });
    expect(fusions(ctx, spaceToDepthConv.name)).toEqual(['SpaceToDepthConv(3x3s2 -> 2x2s1, K 72 -> 32) [FusedConv_0]']);
  });

  it('space-to-depth-conv (int8): a QConv reading a quantizing Relayout => the Relayout quantizes into the space-to-depth layout, 16-channel chunks, K 144 -> 64', () => {
    const ch0 = (k: number) => [...Array.from({ length: 9 }, (_, i) => 9 * k + i + 1), ...new Array(15 * 9).fill(0)].join(', ');
    const { ctx } = checkPass({
      pass: spaceToDepthConv,
      before: `graph g(%x: float32[1,1,6,6]) -> (%y: float32[1,3,3,2]) opset 17 {
        const %w: int8[2,16,3,3] = [${ch0(0)}, ${ch0(1)}]
        const %ws: float32[2] = [0.5, 0.25]
        %p = tsrt::Relayout(%x) {perm=[0, 2, 3, 1], pads=[0, 0, 0, 0, 0, 0, 0, 15], to=3, scale=0.03125}
        %y = tsrt::QConv(%p, %w, %ws) {layout="NHWC", strides=[2, 2], pads=[1, 1, 1, 1], x_scale=0.03125, out_dtype=1} }`,
      // the fp16 case's weights (above) with 16 channels a tap instead of 8
      after: `graph g(%x: float32[1,1,6,6]) -> (%y: float32[1,3,3,2]) opset 17 {
        const %w2: int8[2,16,2,2] = [0, 0, 0, 5, 0, 0, 4, 6, 0, 2, 0, 8, 1, 3, 7, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
          0, 0, 0, 14, 0, 0, 13, 15, 0, 11, 0, 17, 10, 12, 16, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        const %ws: float32[2] = [0.5, 0.25]
        %s = tsrt::Relayout(%x) {perm=[0, 2, 3, 1], pads=[0, 1, 1, 0, 0, 0, 0, 12], to=3, scale=0.03125, blocksize=2}
        %y = tsrt::QConv(%s, %w2, %ws) {layout="NHWC", strides=[1, 1], pads=[0, 0, 0, 0], x_scale=0.03125, out_dtype=1, kernel_shape=[2, 2], dilations=[1, 1]} }`,
    });
    expect(fusions(ctx, spaceToDepthConv.name)).toEqual(['SpaceToDepthConv(3x3s2 -> 2x2s1, K 144 -> 64) [Relayout_0, QConv_1]']);
  });
});

/** Passes whose Before/After cases live in another file (cover() there would need that file loaded here). */
const ELSEWHERE: Record<string, string> = {
  [concatInPlace.name]: 'concat-in-place.test.ts',
};

describe('coverage', () => {
  it('every pass of the pipeline and every fusion pass has a Before/After case', () => {
    // (cover() runs where the cases are declared, so this holds under -t filters too)
    const names = new Set([...PIPELINE, ...FUSION_PASSES].map((p) => p.name));
    expect([...names].filter((n) => !COVERED.has(n) && !ELSEWHERE[n])).toEqual([]);
  });
});
