// The build pipeline end to end on the CPU: IR verifies after every pass, outputs stay equal to the original
// model's (after every single pass on a sample of the ONNX node tests, which names the pass that broke them; the light
// models after the whole pipeline are in pipeline-models.test.ts), and ResNet-50 compiles to at most 60 kernels in fp16 (issue target).
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { build } from '../src/runtime/engine.js';
import { loadModel, loadTensorFile } from '../src/onnx/import.js';
import { runModelCpu } from '../src/runtime/cpu_executor.js';
import { compareTensors } from '../src/cli/conformance.js';
import { readFileSync, readdirSync } from 'node:fs';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { newPassContext, runPasses, type Instrument } from '../src/passes/pass.js';
import { PIPELINE } from '../src/passes/pipeline.js';
import type { Model, Tensor } from '../src/ir/types.js';

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

  it('every pass keeps the CPU reference results of a sample of ONNX node tests (fp32, opt level 2)', () => {
    // every function-expanded test (decomposed Softmax/LayerNorm/GELU/attention: what recognition and fusion rewrite)
    // and every 6th other test; nondeterministic ops and tests the CPU reference itself cannot run are left out
    const rows = readFileSync(`${SHARED}MANIFEST.tsv`, 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t'));
    const random = /Random|Bernoulli|Multinomial|Dropout/;
    const sample = rows.filter((r, i) => (r[0].includes('_expanded') || i % 6 === 0) && !random.test(r[7] ?? ''));
    const broken: string[] = [];
    let checked = 0;
    for (const [name] of sample) {
      const dir = `${SHARED}node/${name}/`;
      let model: Model, feeds: Map<string, Tensor>, ref: Map<string, Tensor>;
      try {
        model = loadModel(dir + 'model.onnx');
        const files = readdirSync(dir + 'test_data_set_0');
        feeds = new Map(model.graph.inputs.filter((_, k) => files.includes(`input_${k}.pb`))
          .map((vi) => [vi.name, loadTensorFile(`${dir}test_data_set_0/input_${model.graph.inputs.indexOf(vi)}.pb`)]));
        ref = runGraph(model.graph, feeds);
      } catch { continue; } // unsupported or failing on the reference: the conformance suite reports those
      const check: Instrument = {
        after(pass, g) {
          const got = runGraph(g, feeds);
          for (const o of model.graph.outputs) {
            const why = compareTensors(got.get(o.name)!, ref.get(o.name)!, 1e-4, 1e-5);
            if (why) throw new Error(`after pass '${pass.name}', output '${o.name}': ${why}`);
          }
        },
      };
      const ctx = newPassContext({ optLevel: 2, shapes: Object.fromEntries([...feeds].map(([k, t]) => [k, t.dims])) });
      try {
        runPasses(model.graph, PIPELINE, ctx, [check]);
        checked++;
      } catch (e) {
        broken.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    console.log(`per-pass equality: ${checked} node tests of ${sample.length} sampled`);
    expect(broken).toEqual([]);
    expect(checked).toBeGreaterThan(100);
  }, 60_000);
});
