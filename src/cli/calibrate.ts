// `tsrt calibrate`: INT8 post-training calibration from the command line, writing a TensorRT-format cache
// that the int8 build (BuildOptions.int8Scales, fed from the cache), TensorRT and ONNX Runtime's TensorRT provider read.
import { basename } from 'node:path';
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { TsrtError } from '../errors.js';
import { shapeStr } from '../ir/tensor.js';
import type { Tensor } from '../ir/types.js';
import { loadModel } from '../onnx/import.js';
import { calibrate } from '../quant/calibrate.js';
import { CACHE_ALGORITHMS, DEFAULT_TRT_VERSION, writeCalibrationCache } from '../quant/cache.js';
import { openCalibrationData } from '../quant/data.js';
import type { CalibrationMethod } from '../quant/histogram.js';
import { parseDims, parseShapes } from './io.js';

interface CalibrateCliOptions {
  calibData: string; calibrator: CalibrationMethod; percentile: string; calibCache?: string;
  shapes?: string; dims?: string; device: 'auto' | 'cuda' | 'cpu'; cacheDir?: string; arch?: string; progress: boolean;
}

export function registerCalibrate(program: Command): void {
  program.command('calibrate').argument('<model>', 'ONNX model file (fp32)')
    .description('INT8 calibration: run the fp32 model over calibration data, write per-tensor scales as a TensorRT calibration cache')
    .requiredOption('--calib-data <dir>', 'directory of .pb (TensorProto) or .npy tensors: one file per batch per input (see below)')
    .addOption(new Option('--calibrator <m>', 'range from the activation histograms').choices(['entropy', 'minmax', 'percentile']).default('entropy'))
    .option('--percentile <p>', 'for --calibrator percentile: the share of |x| kept, in percent', '99.99')
    .option('--calib-cache <file>', 'cache to write (default: <model name>.calib.cache in the current folder)')
    .option('--shapes <spec>', 'expected input shapes, e.g. x:32x3x224x224 (the data must have them)')
    .option('--dims <spec>', 'sizes for named dims, e.g. batch=32 (used by the passes on the CPU path)')
    .addOption(new Option('--device <d>', 'where the fp32 model runs').choices(['auto', 'cuda', 'cpu']).default('auto'))
    .option('--cache-dir <dir>', 'kernel cache folder (GPU path)')
    .option('--arch <sm>', 'NVRTC target (GPU path)')
    .option('--no-progress', 'no progress bar')
    .addHelpText('after', `
Calibration data (--calib-data DIR), files taken in natural order (x_2 before x_10):
  one input:       every .pb/.npy file is one batch, e.g. batch_000.npy, batch_001.npy, ...
  several inputs:  <input name>_<n>.npy|.pb (the longest matching input name wins) or input_<k>_<n>.pb;
                   batch n takes the n-th file of every input
  subfolders:      DIR/test_data_set_0/input_0.pb, ... (ONNX test layout): one batch per subfolder
Every batch must have the same shapes; they fix the engine's shapes. Scales are amax/127 per tensor; the
cache header is TRT-${DEFAULT_TRT_VERSION}-${CACHE_ALGORITHMS.entropy} (or ${CACHE_ALGORITHMS.minmax}, ${CACHE_ALGORITHMS.percentile}).`)
    .action(async (modelPath: string, o: CalibrateCliOptions) => {
      const pct = Number(o.percentile);
      const model = loadModel(modelPath);
      const shapes = parseShapes(o.shapes);
      const stream = openCalibrationData(o.calibData, model.graph.inputs);
      const out = o.calibCache ?? `${basename(modelPath).replace(/\.onnx$/i, '')}.calib.cache`;
      const bar = o.progress && process.stderr.isTTY
        ? new cliProgress.SingleBar({ format: 'calibrating |{bar}| {value}/{total} batches', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
        : undefined;
      bar?.start(stream.total ?? 0, 0);
      const t0 = performance.now();
      let result;
      try {
        result = await calibrate(model, checkShapes(stream.batches, shapes), {
          method: o.calibrator, percentile: pct, device: o.device,
          build: { cacheDir: o.cacheDir, arch: o.arch, dims: parseDims(o.dims) },
          onProgress: (done) => bar?.update(done),
        });
      } finally {
        bar?.stop();
      }
      writeCalibrationCache(out, result);
      const ranges = Object.entries(result.scales).map(([k, s]) => [k, s * 127] as const).sort((a, b) => b[1] - a[1]);
      const how = o.calibrator === 'percentile' ? `percentile ${pct}` : o.calibrator;
      console.log(`calibrated ${modelPath} (${how}) on ${result.batches} batches on ${result.device === 'cuda' ? 'the GPU' : 'the CPU reference'} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      console.log(`  ${ranges.length} tensors; largest ranges (amax):`);
      for (const [k, a] of ranges.slice(0, 5)) console.log(`    ${a.toPrecision(5).padStart(12)}  ${k}`);
      const zero = ranges.filter(([, a]) => a === 0).length;
      if (zero) console.log(`  ${zero} tensors were zero on all batches (scale 0)`);
      for (const [k, n] of Object.entries(result.nonFinite)) console.log(`  warning: ${k} had ${n} NaN/Inf values, left out of its range`);
      console.log(`  wrote ${out}`);
    });
}

/** --shapes with calibrate only checks the data against what the user expects (the data fixes the shapes). */
async function* checkShapes(batches: AsyncIterable<{ feeds: Map<string, Tensor>; source: string }>, shapes?: Record<string, number[]>): AsyncIterable<Map<string, Tensor>> {
  for await (const { feeds, source } of batches) {
    for (const [name, dims] of Object.entries(shapes ?? {})) {
      const t = feeds.get(name);
      if (!t) throw new TsrtError('USAGE', `--shapes names '${name}', which is not an input of the model`, `inputs: ${[...feeds.keys()].join(', ')}`);
      if (t.dims.join() !== dims.join()) {
        throw new TsrtError('INPUT', `${source}: input '${name}' has shape ${shapeStr(t.dims)}, --shapes says ${shapeStr(dims)}`, 'save the calibration data with the shapes the engine will run, or drop --shapes');
      }
    }
    yield feeds;
  }
}
