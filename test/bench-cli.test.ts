// tsrt bench helpers: latency statistics, argument parsing, and the batch sweep (CPU backend here; on the GPU the
// same code times with CUDA events).
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { batchDim, latencyStats, parseBatches, parseLatency, sweepBatch } from '../src/cli/bench.js';
import { loadModel } from '../src/onnx/import.js';
import { parseGraph } from '../src/ir/text.js';

describe('bench', () => {
  it('computes percentiles by rank', () => {
    const s = latencyStats(Array.from({ length: 100 }, (_, i) => 100 - i));
    expect(s).toMatchObject({ runs: 100, min: 1, median: 51, p90: 91, p99: 100, mean: 50.5 });
    expect(() => latencyStats([])).toThrow(/no timed runs/);
  });

  it('parses latency bounds and batch lists, refusing nonsense', () => {
    expect(parseLatency('10ms')).toBe(10);
    expect(parseLatency('0.5 ms')).toBe(0.5);
    expect(parseLatency('2s')).toBe(2000);
    expect(parseLatency('250us')).toBeCloseTo(0.25);
    expect(() => parseLatency('fast')).toThrow(/not a duration/);
    expect(parseBatches('1, 2,4')).toEqual([1, 2, 4]);
    expect(() => parseBatches('1,0')).toThrow(/positive integers/);
  });

  it('needs a symbolic batch dim to sweep', () => {
    const g = parseGraph('graph g(%x: float32[2,3]) -> (%y: float32[2,3]) opset 17 {\n  %y = Relu(%x) name="r"\n}');
    expect(() => batchDim({ graph: g } as never)).toThrow(/static batch[\s\S]*dynamic_axes/);
  });

  it('sweeps the batch, marks sizes over the bound and recommends the best within it', async () => {
    const model = loadModel(join(import.meta.dirname, 'fixtures/bert_tiny/model.onnx'));
    const shapes = { input: [1, 16] };
    const open = await sweepBatch(model, [1, 4], { device: 'cpu', compileKernels: false, shapes }, { iterations: 2, warmup: 1 });
    expect(open.dim).toBe('batch');
    expect(open.entries.map((e) => e.batch)).toEqual([1, 4]);
    expect(open.entries.every((e) => e.withinBound && e.throughput > 0 && e.clock === 'host')).toBe(true);
    expect(open.best).toBe(open.entries.reduce((a, e) => (e.throughput > a.throughput ? e : a)));
    const none = await sweepBatch(model, [1], { device: 'cpu', compileKernels: false, shapes }, { iterations: 1, warmup: 0, maxLatencyMs: 1e-6 });
    expect(none.entries[0].withinBound).toBe(false);
    expect(none.best).toBeUndefined();
  });
});
