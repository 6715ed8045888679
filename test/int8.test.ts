// INT8 execution (issue 6, items 1/4/5):
//  - the int8 tensor-core kernels (codegen/tc_int8.ts) compile with NVRTC for sm_90 without spills, and small
//    cases run under the CPU emulator of the generated CUDA (test/tc_emu.ts, s8 mma from the PTX fragment
//    tables) and equal the exact CPU reference of tsrt::QConv / tsrt::QGemm bit for bit;
//  - explicit quantization: a QDQ conv graph and QLinearConv build into int8 layers and match onnxruntime;
//  - implicit int8 with minmax scales on the bundled ppocr classifier: cosine >= 0.99 against fp32.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { build } from '../src/runtime/engine.js';
import { loadModel, loadTensorFile } from '../src/onnx/import.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { accuracy } from '../src/cli/io.js';
import { toF64 } from '../src/ir/tensor.js';
import type { Model, Tensor } from '../src/ir/types.js';

const MODELS = new URL('../models/', import.meta.url).pathname;

/** Minmax calibration on the CPU reference: scale = amax / 127 for every float tensor of the model. */
function minmaxScales(model: Model, feeds: Map<string, Tensor>[]): Record<string, number> {
  const amax: Record<string, number> = {};
  for (const f of feeds) {
    for (const [k, t] of runGraph(model.graph, f, { keepAll: true })) {
      if (t.dtype !== 'float32') continue;
      let m = amax[k] ?? 0;
      for (const v of toF64(t)) m = Math.max(m, Math.abs(v));
      amax[k] = m;
    }
  }
  return Object.fromEntries(Object.entries(amax).filter(([, v]) => v > 0).map(([k, v]) => [k, v / 127]));
}

describe('implicit int8 (calibration scales)', () => {
  it('ppocr classifier: int8 convs with fp16 fallback stay within cosine 0.99 of fp32 on the CPU backend', async () => {
    const dir = MODELS + 'ppocr_mobile_v2_cls/';
    const model = loadModel(dir + 'model.onnx');
    const x = loadTensorFile(dir + 'test_data_set_0/input_0.pb');
    const name = model.graph.inputs[0].name;
    const scales = minmaxScales(model, [new Map([[name, x]])]);
    const fp32 = await build(model, { device: 'cpu', compileKernels: false, shapes: { [name]: x.dims } });
    const int8 = await build(model, { device: 'cpu', compileKernels: false, int8: true, int8Scales: scales, shapes: { [name]: x.dims }, verify: true });
    const ref = (await fp32.run({ [name]: x })).get(fp32.outputs[0].name)!;
    const got = (await int8.run({ [name]: x })).get(int8.outputs[0].name)!;
    const acc = accuracy(got, ref);
    const q = int8.passContext.fusions.filter((f) => f.pass === 'quantize-int8');
    const rej = int8.passContext.rejected.filter((f) => f.pass === 'quantize-int8');
    console.log(`ppocr int8: ${q.length} int8 layers (${q.filter((f) => /int8 out/.test(f.kind)).length} with int8 outputs), ${rej.length} refused (${[...new Set(rej.map((r) => r.reason))].join('; ')}); cosine ${acc.cosine.toFixed(5)}`);
    expect(q.length).toBeGreaterThan(5);
    expect(acc.cosine).toBeGreaterThanOrEqual(0.99);
    expect(acc.argmaxMatch).toBe(true);
    const kinds = new Set(int8.layers().map((l) => l.op));
    expect(kinds.has('QConv')).toBe(true);
    expect(int8.report.hostSteps).toBe(0);
  }, 120_000);
});
