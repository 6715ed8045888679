// BuildOptions.markOutputs (Polygraphy's --mark-outputs): intermediate tensors come back from Engine.run
// without changing what the passes fused.
import { describe, expect, it } from 'vitest';
import { build } from '../src/runtime/engine.js';
import { loadModel } from '../src/onnx/import.js';
import { runGraph } from '../src/runtime/cpu_executor.js';
import { randomTensor } from '../src/cli/io.js';
import { DEFAULT_MODEL } from '../src/cli/main.js';

describe('markOutputs', () => {
  it('returns every surviving tensor, keeps the kernel count, and lists fused-away names', async () => {
    const model = loadModel(DEFAULT_MODEL);
    const shapes = { x: [1, 3, 48, 192] };
    const opts = { device: 'cpu' as const, compileKernels: false, shapes };
    const plain = await build(model, opts);
    const marked = await build(model, { ...opts, markOutputs: 'all' });
    expect(marked.report.kernels).toBe(plain.report.kernels);
    expect(marked.outputs.length).toBeGreaterThan(20);
    const feeds = new Map([[model.graph.inputs[0].name, randomTensor('float32', shapes.x, 3)]]);
    const outs = await marked.run(feeds);
    expect(outs.size).toBe(marked.outputs.length);
    // the marked tensors equal the same names in the unoptimized model, where they exist unfused
    const all = runGraph(model.graph, feeds, { keepAll: true });
    let compared = 0;
    for (const [name, t] of outs) {
      const ref = all.get(name);
      if (!ref || ref.dims.join() !== t.dims.join()) continue;
      compared++;
      const d = Array.from(t.data as Float32Array).reduce((a, v, i) => Math.max(a, Math.abs(v - (ref.data as Float32Array)[i])), 0);
      expect(d, name).toBeLessThan(1e-3);
    }
    expect(compared).toBeGreaterThan(10);
    const some = await build(model, { ...opts, markOutputs: ['no_such_tensor'] });
    expect(some.report.unmarked).toEqual(['no_such_tensor']);
  });
});
