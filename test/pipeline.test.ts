// The build pipeline end to end on the CPU: IR verifies after every pass, outputs stay equal to the original
// model's, and ResNet-50 compiles to at most 60 kernels in fp16 (issue target).
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { build } from '../src/runtime/engine.js';
import { loadModel, loadTensorFile } from '../src/onnx/import.js';
import { runModelCpu } from '../src/runtime/cpu_executor.js';
import { compareTensors } from '../src/cli/conformance.js';

const SHARED = new URL('../../shared/onnx-tests/', import.meta.url).pathname;
const real = (m: string) => `${SHARED}models/real/${m}/`;

describe.skipIf(!existsSync(SHARED))('build pipeline', () => {
  it('ppocr: every pass leaves valid IR, fp32 engine output equals the original model on the CPU', async () => {
    const dir = real('ppocr_mobile_v2_cls');
    const model = loadModel(dir + 'model.onnx');
    const x = loadTensorFile(dir + 'test_data_set_0/input_0.pb');
    const engine = await build(model, { device: 'cpu', compileKernels: false, verify: true, shapes: { x: x.dims } });
    const got = (await engine.run({ x })).get(engine.outputs[0].name)!;
    const [ref] = runModelCpu(model, new Map([['x', x]]));
    expect(compareTensors(got, ref, 1e-4, 1e-6)).toBeUndefined();
    expect(engine.report.hostSteps).toBe(0);
  });
  it('light ResNet-50 in fp16: one kernel per conv (BN, bias, residual and ReLU fused), channels-last', async () => {
    const model = loadModel(`${SHARED}models/light/light_resnet50/model.onnx`);
    const convs = model.graph.nodes.filter((n) => n.op === 'Conv').length;
    const engine = await build(model, { device: 'cpu', compileKernels: false, fp16: true, verify: true });
    const layers = engine.layers().filter((l) => l.kind === 'kernel');
    const ops = layers.map((l) => l.op);
    console.log(`light_resnet50 fp16: ${layers.length} kernels for ${convs} convs`);
    // one layer per conv (the first conv also pads its 3 input channels to 8 for the tensor cores)
    expect(new Set(layers.filter((l) => l.op === 'FusedConv').map((l) => l.name)).size).toBe(convs);
    expect(ops.filter((o) => ['Add', 'Sum', 'Relu', 'BatchNormalization', 'Fused', 'Mul'].includes(o))).toEqual([]);
    expect(ops.filter((o) => o === 'Transpose').length).toBeLessThanOrEqual(1);
    // the rest: input cast + transpose + channel pad, max/avg pool, gemm, softmax, output cast
    expect(layers.length).toBeLessThanOrEqual(convs + 8);
  });
});
