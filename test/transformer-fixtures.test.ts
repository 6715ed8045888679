// The small-config exports of the benchmark transformers (test/fixtures, made by bench/export-fixtures.py on the GPU
// machine: HF BertModel and torchvision ViT exported by torch.onnx opset 17, PyTorch fp32 outputs): the whole
// pipeline against PyTorch on the CPU backend, and the kernel budget per encoder layer (issue 5: <= 8).
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { build } from '../src/runtime/engine.js';
import { loadModel, loadTensorFile } from '../src/onnx/import.js';
import { accuracy } from '../src/cli/io.js';
import { makeTensor, size } from '../src/ir/tensor.js';
import type { Tensor } from '../src/ir/types.js';

const dir = (name: string) => join(import.meta.dirname, 'fixtures', name);

async function against(name: string, fp16: boolean) {
  const model = loadModel(join(dir(name), 'model.onnx'));
  const x = loadTensorFile(join(dir(name), 'test_data_set_0/input_0.pb'));
  const want = loadTensorFile(join(dir(name), 'test_data_set_0/output_0.pb'));
  const engine = await build(model, { device: 'cpu', compileKernels: false, fp16, shapes: { input: x.dims } });
  const got = (await engine.run({ input: x })).get('output')!;
  return { engine, acc: accuracy(got, want) };
}

describe('BERT (HF BertModel export, 2 layers)', () => {
  it('fp32 matches PyTorch', async () => {
    const { acc } = await against('bert_tiny', false);
    expect(acc.maxAbs / acc.range).toBeLessThan(1e-5);
  });

  it('fp16 matches PyTorch and runs each encoder layer in 7 kernels (QKV merged, GELU in the GEMM)', async () => {
    const { engine, acc } = await against('bert_tiny', true);
    expect(acc.cosine).toBeGreaterThan(0.9999);
    const layers = engine.layers().filter((l) => l.kind === 'kernel');
    const perLayer = [0, 1].map((i) => layers.filter((l) => l.name.includes(`/layer.${i}/`)).map((l) => l.op));
    for (const ops of perLayer) {
      expect(ops).toEqual(['FusedGemm', 'FusedAttention', 'FusedGemm', 'LayerNormalization', 'FusedGemm', 'FusedGemm', 'LayerNormalization']);
    }
    const qkv = engine.passContext.fusions.filter((f) => f.kind === 'QKV');
    expect(qkv).toHaveLength(2);
    expect(qkv[0].nodes.map((n) => n.split('/').slice(-2, -1)[0])).toEqual(['query', 'key', 'value']);
    expect(engine.passContext.fusions.some((f) => f.kind === 'GeluErf')).toBe(true);
  });
});

describe('ViT (torchvision VisionTransformer export, 2 layers)', () => {
  // nn.MultiheadAttention, sequence first: the packed in-proj is read in place by the attention kernel (no head split
  // copies), and the out-projection takes the residual once its rows are turned back to [B,S] (gemm-row-order)
  const perLayer = (engine: Awaited<ReturnType<typeof against>>['engine']) => {
    const layers = engine.layers().filter((l) => l.kind === 'kernel');
    return [0, 1].map((i) => layers.filter((l) => l.name.includes(`/encoder_layer_${i}/`)).map((l) => l.op));
  };
  const LAYER = ['LayerNormalization', 'FusedGemm', 'FusedAttention', 'FusedGemm', 'LayerNormalization', 'FusedGemm', 'FusedGemm'];

  it('fp32 matches PyTorch, with each encoder layer in 7 kernels', async () => {
    const { engine, acc } = await against('vit_tiny', false);
    expect(acc.maxAbs).toBeLessThan(1e-4);
    expect(perLayer(engine)).toEqual([LAYER, LAYER]);
  });

  it('fp16 matches PyTorch, with each encoder layer in 7 kernels and the QKV projection packed', async () => {
    const { engine, acc } = await against('vit_tiny', true);
    expect(acc.cosine).toBeGreaterThan(0.999);
    expect(perLayer(engine)).toEqual([LAYER, LAYER]);
    const attn = engine.passContext.fusions.filter((f) => f.kind === 'Attention(packed QKV)');
    expect(attn).toHaveLength(2);
    expect(engine.passContext.fusions.filter((f) => f.kind === 'GemmRowOrder')).toHaveLength(2);
    expect(engine.passContext.rejected.filter((r) => r.pass === 'fuse-attention')).toEqual([]);
  });

  it('batch 1 (the sequence-first transposes are of a size-1 axis) fuses the same and matches PyTorch', async () => {
    const model = loadModel(join(dir('vit_tiny'), 'model.onnx'));
    const x = loadTensorFile(join(dir('vit_tiny'), 'test_data_set_0/input_0.pb'));
    const want = loadTensorFile(join(dir('vit_tiny'), 'test_data_set_0/output_0.pb'));
    const first = (t: Tensor) => makeTensor(t.dtype, [1, ...t.dims.slice(1)], t.data.slice(0, size(t.dims) / t.dims[0]) as Float32Array);
    const engine = await build(model, { device: 'cpu', compileKernels: false, shapes: { input: [1, 3, 32, 32] } });
    const got = (await engine.run({ input: first(x) })).get('output')!;
    expect(accuracy(got, first(want)).maxAbs).toBeLessThan(1e-4);
    expect(perLayer(engine)).toEqual([LAYER, LAYER]);
  });
});
