// INT8 post-training calibration: run the fp32 model over the calibration data, stream every float activation
// into its |x| histogram, and turn each histogram into a symmetric per-tensor scale (amax / 127).
//
// Where the numbers come from: on a GPU, the fp32 engine built with markOutputs: 'all', so the tensors are
// exactly those of the optimized graph the int8 build will see (a fused conv's output keeps the name of the
// last fused node's output; tensors fused away inside a kernel have no scale and need none). Without a GPU,
// the CPU reference runs the model after the cleanup passes (shapes, constant folding, no-op removal), which
// gives the same tensors before fusion: a superset of the names, with the same values.
import { TsrtError } from '../errors.js';
import { toF64 } from '../ir/tensor.js';
import type { Graph, Model, Tensor } from '../ir/types.js';
import { loadModel } from '../onnx/import.js';
import { deadCode, foldConstants, inferTypes, removeNoOps, specializeShapes } from '../passes/basic.js';
import { newPassContext, runPasses } from '../passes/pass.js';
import { runGraph } from '../runtime/cpu_executor.js';
import { cudaAvailable } from '../runtime/device_runner.js';
import { build, type BuildOptions } from '../runtime/engine.js';
import { AbsHistogram, scaleOf, type CalibrationMethod } from './histogram.js';
import { openCalibrationData, type CalibrationData } from './data.js';

export interface CalibrateOptions {
  /** 'entropy' (default, TensorRT's EntropyCalibrator2), 'minmax' or 'percentile'. */
  method?: CalibrationMethod;
  /** For 'percentile': the share of |x| below amax, in percent (default 99.99). */
  percentile?: number;
  /** 'auto' (default): the GPU when there is one, else the CPU reference. */
  device?: 'auto' | 'cuda' | 'cpu';
  /** Called after each batch; `total` is known for a directory or an array. */
  onProgress?: (done: number, total?: number) => void;
  /** Extra build options for the GPU engine (kernel cache, arch, log); precision and outputs are fixed here. */
  build?: Pick<BuildOptions, 'cacheDir' | 'arch' | 'optLevel' | 'log' | 'dims'>;
}

export interface CalibrationResult {
  method: CalibrationMethod;
  /** Tensor name -> scale (amax / 127, float32), for BuildOptions.int8Scales and the calibration cache. */
  scales: Record<string, number>;
  batches: number;
  /** Where the activations were computed. */
  device: 'cuda' | 'cpu';
  /** Tensors that held NaN or Inf values (left out of their statistics), with how many. */
  nonFinite: Record<string, number>;
}

const isFloatTensor = (t: Tensor) => /^(float|bfloat)/.test(t.dtype);
const values = (t: Tensor): ArrayLike<number> => (t.dtype === 'float32' || t.dtype === 'float64' ? t.data as Float32Array : toF64(t));

/** The passes the CPU collector runs first: only those that keep tensor names and values. */
const CLEANUP = [specializeShapes, inferTypes, foldConstants, removeNoOps, deadCode, inferTypes];

export async function calibrate(model: Model | string, data: CalibrationData, opts: CalibrateOptions = {}): Promise<CalibrationResult> {
  const method = opts.method ?? 'entropy';
  if (!['entropy', 'minmax', 'percentile'].includes(method)) {
    throw new TsrtError('USAGE', `unknown calibration method '${method}'`, "use 'entropy', 'minmax' or 'percentile'");
  }
  const pct = opts.percentile ?? 99.99;
  if (!(pct > 0 && pct <= 100)) throw new TsrtError('USAGE', `percentile ${pct} is out of range`, 'give a percentile in (0, 100], e.g. 99.99');
  const m = typeof model === 'string' ? loadModel(model) : model;
  const device = opts.device === 'cpu' ? 'cpu' : opts.device === 'cuda' || cudaAvailable() ? 'cuda' : 'cpu';
  if (opts.device === 'cuda' && !cudaAvailable()) {
    throw new TsrtError('CUDA', 'calibration on the GPU was asked for but no CUDA device was found', "use device: 'cpu' (the CPU reference) or run on a machine with an NVIDIA GPU");
  }
  const stream = openCalibrationData(data, m.graph.inputs);
  const hists = new Map<string, AbsHistogram>();
  const observe = (name: string, t: Tensor | undefined) => {
    if (!name || !t || !isFloatTensor(t)) return;
    let h = hists.get(name);
    if (!h) hists.set(name, (h = new AbsHistogram()));
    h.add(values(t));
  };

  // Built on the first batch, whose shapes fix the engine's (checkBatch holds later batches to them).
  let run: ((feeds: Map<string, Tensor>) => Promise<void>) | undefined;
  let dispose = () => {};
  let batches = 0;
  try {
    for await (const { feeds } of stream.batches) {
      if (!run) {
        const shapes = Object.fromEntries([...feeds].map(([k, t]) => [k, t.dims]));
        if (device === 'cuda') {
          const engine = await build(m, { ...opts.build, shapes, device: 'cuda', fp16: false, markOutputs: 'all' });
          dispose = () => engine.dispose();
          run = async (f) => { for (const [name, t] of await engine.run(f)) observe(name, t); };
        } else {
          const g = cleanGraph(m.graph, shapes, opts.build?.dims);
          run = async (f) => { runGraph(g, f, { onNode: (node, outs) => node.outputs.forEach((name, k) => observe(name, outs[k])) }); };
        }
      }
      for (const [name, t] of feeds) observe(name, t);
      await run(feeds);
      batches++;
      opts.onProgress?.(batches, stream.total);
    }
  } finally {
    dispose();
  }
  if (!batches) throw new TsrtError('USAGE', 'the calibration data has no batches', 'give at least one batch (TensorRT uses ~500 images for ImageNet models)');
  const scales: Record<string, number> = {};
  const nonFinite: Record<string, number> = {};
  for (const [name, h] of hists) {
    scales[name] = scaleOf(h.amax(method, pct));
    if (h.nonFinite) nonFinite[name] = h.nonFinite;
  }
  return { method, scales, batches, device, nonFinite };
}

function cleanGraph(g: Graph, shapes: Record<string, number[]>, dims?: Record<string, number>): Graph {
  const ctx = newPassContext({ optLevel: 1, shapes, dims });
  return runPasses(g, CLEANUP, ctx);
}
