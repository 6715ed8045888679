// The whole build pipeline keeps the outputs of the shared light models (CPU reference before and after, fp32, opt
// level 2). Its per-pass form on the ONNX node tests is in pipeline.test.ts.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { loadModel, loadTensorFile } from '../src/onnx/import.js';
import { compareTensors } from '../src/cli/conformance.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { newPassContext, runPasses } from '../src/passes/pass.js';
import { optimize } from '../src/passes/pipeline.js';
import { deadCode, foldConstants, inferTypes, specializeShapes } from '../src/passes/basic.js';
import { fromF64, size, toF64 } from '../src/ir/tensor.js';
import type { Graph } from '../src/ir/types.js';

const SHARED = new URL('../../shared/onnx-tests/', import.meta.url).pathname;

describe.skipIf(!existsSync(`${SHARED}models/light`))('pipeline on the light models', () => {
  it('light models: the whole pipeline keeps the outputs (random conv/gemm weights, fp32)', () => {
    // light models fill every weight with one constant, which hides channel mix-ups (a wrong transpose, a concat slot
    // in the wrong place); after folding, conv/gemm weights and biases get seeded random values scaled by fan-in.
    // (the others are too slow on the CPU reference for this file: DenseNet's concats are checked on the memory plan in
    // concat-in-place.test.ts, ResNet-50's fusion above, ppocr's pipeline with its real weights above.)
    for (const name of ['light_squeezenet', 'light_inception_v1', 'light_shufflenet']) {
      const dir = `${SHARED}models/light/${name}/`;
      const model = loadModel(dir + 'model.onnx');
      const x = loadTensorFile(dir + 'test_data_set_0/input_0.pb');
      const feeds = new Map([[model.graph.inputs[0].name, x]]);
      const ctx = newPassContext({ optLevel: 2, shapes: { [model.graph.inputs[0].name]: x.dims } });
      const folded = randomWeights(runPasses(model.graph, [specializeShapes, inferTypes, foldConstants, deadCode], ctx));
      const after = optimize(folded, ctx);
      const out = model.graph.outputs[0].name;
      const why = compareTensors(runGraph(after, feeds).get(out)!, runGraph(folded, feeds).get(out)!, 1e-4, 1e-6);
      expect(why, name).toBeUndefined();
    }
  }, 60_000);
});

/** Conv/Gemm/MatMul weights and biases replaced by seeded values in [-1, 1) / sqrt(fan-in). */
function randomWeights(g: Graph): Graph {
  const inits = new Map(g.initializers);
  let s = 12345;
  const rnd = () => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return (s / 2 ** 32) * 2 - 1; };
  for (const n of g.nodes) {
    const W = inits.get(n.inputs[1] ?? '');
    if (!['Conv', 'Gemm', 'MatMul'].includes(n.op) || !W || !/^float/.test(W.dtype)) continue;
    const transB = n.op === 'Gemm' && n.attrs.transB?.kind === 'int' && n.attrs.transB.value !== 0;
    const fanIn = n.op === 'Conv' ? size(W.dims.slice(1)) : W.dims[transB ? 1 : 0] ?? 1;
    for (const x of n.inputs.slice(1, 3)) {
      const t = x ? inits.get(x) : undefined;
      if (t && /^float/.test(t.dtype)) inits.set(x, fromF64(t.dtype, t.dims, Array.from(toF64(t), () => rnd() / Math.sqrt(fanIn))));
    }
  }
  return { ...g, initializers: inits };
}
