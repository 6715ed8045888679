// Calibration data: batches of model inputs, from a directory of tensor files or from the caller (an async or
// plain iterable of { inputName: Tensor }). Batches are read one at a time, so a large data set is never held
// in memory, and each is checked against the model's inputs before it runs.
//
// Directory rule (files are .pb TensorProto or .npy, taken in natural name order: 2 before 10):
//   - a model with one input: every tensor file is one batch of that input;
//   - several inputs: a file belongs to the input whose name (characters other than letters, digits, '.', '_'
//     and '-' written as '_') starts the file name, followed by '.', '_' or '-' (the longest such name wins:
//     'ids_0.npy' -> ids, 'ids_mask_0.npy' -> ids_mask); else `input_<k>_*` / `input_<k>.*` is the k-th
//     input (ONNX test-data naming). Batch b takes the b-th file of every input, so every input needs the same
//     number of files;
//   - a directory with no tensor files but subdirectories that have them (ONNX's test_data_set_0, _1, ...):
//     each subdirectory is one batch, with one file per input by the rule above; output_* files are skipped (also in
//     an ONNX test-data folder given directly: input_<k>.pb next to output_<k>.pb).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { InputError, TsrtError } from '../errors.js';
import { shapeStr } from '../ir/tensor.js';
import type { Tensor, ValueInfo } from '../ir/types.js';
import { readTensor } from '../cli/io.js';

export type CalibrationBatch = Record<string, Tensor> | Map<string, Tensor>;
export type CalibrationData = string | AsyncIterable<CalibrationBatch> | Iterable<CalibrationBatch>;

export interface BatchStream {
  /** Number of batches when known up front (a directory). */
  total?: number;
  batches: AsyncIterable<{ feeds: Map<string, Tensor>; source: string }>;
}

const TENSOR_FILE = /\.(pb|npy)$/i;
const natural = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });

const isDir = (p: string) => { try { return statSync(p).isDirectory(); } catch { return false; } };

/** Files of each batch, one per model input in input order. */
export function planDirectory(dir: string, inputs: readonly ValueInfo[]): string[][] {
  if (!existsSync(dir) || !isDir(dir)) {
    throw new TsrtError('USAGE', `calibration data '${dir}' is not a directory`, 'pass a directory of .pb/.npy tensors (--calib-data DIR)');
  }
  const names = readdirSync(dir).sort(natural);
  const all = names.filter((f) => TENSOR_FILE.test(f) && !isDir(join(dir, f)));
  // an ONNX test-data folder itself (input_<k>.pb next to output_<k>.pb): its outputs are not calibration inputs
  const testSet = all.some((f) => /^input_\d+\.pb$/.test(f));
  const files = testSet ? all.filter((f) => !/^output_\d+\.pb$/.test(f)) : all;
  if (files.length) return groupFiles(dir, files, inputs, false);
  const subdirs = names.filter((f) => isDir(join(dir, f)) && readdirSync(join(dir, f)).some((x) => TENSOR_FILE.test(x)));
  if (!subdirs.length) {
    throw new TsrtError('USAGE', `calibration data '${dir}' has no .pb or .npy files`, 'save one file per batch per input there (numpy.save or onnx TensorProto)');
  }
  return subdirs.map((sd) => {
    const inner = readdirSync(join(dir, sd)).filter((f) => TENSOR_FILE.test(f) && !/^output_/.test(f)).sort(natural);
    const groups = groupFiles(join(dir, sd), inner, inputs, true);
    return groups[0];
  });
}

const sanitize = (s: string) => s.replace(/[^A-Za-z0-9._-]/g, '_');

function inputOf(file: string, inputs: readonly ValueInfo[]): number {
  // ONNX test-data files (input_<k>.pb) are positional even when an input is named 'input'
  const exact = /^input_(\d+)\.(pb|npy)$/i.exec(file);
  if (exact && Number(exact[1]) < inputs.length) return Number(exact[1]);
  let best = -1, bestLen = -1;
  inputs.forEach((vi, k) => {
    const n = sanitize(vi.name);
    const next = file[n.length];
    if (file.startsWith(n) && (next === '.' || next === '_' || next === '-') && n.length > bestLen) { best = k; bestLen = n.length; }
  });
  if (best >= 0) return best;
  const m = /^input_(\d+)[._]/.exec(file);
  return m && Number(m[1]) < inputs.length ? Number(m[1]) : -1;
}

function groupFiles(dir: string, files: string[], inputs: readonly ValueInfo[], oneBatch: boolean): string[][] {
  const per: string[][] = inputs.map(() => []);
  if (inputs.length === 1) per[0] = files.map((f) => join(dir, f));
  else {
    for (const f of files) {
      const k = inputOf(f, inputs);
      if (k < 0) {
        throw new TsrtError('USAGE', `calibration file '${join(dir, f)}' matches no input of the model`,
          `with several inputs, name files <input name>_<n>.npy|.pb or input_<k>_<n>.pb; inputs: ${inputs.map((i, k) => `${k}: ${i.name}`).join(', ')}`);
      }
      per[k].push(join(dir, f));
    }
  }
  const counts = per.map((p) => p.length);
  if (oneBatch ? counts.some((c) => c !== 1) : counts.some((c) => c !== counts[0])) {
    throw new TsrtError('USAGE', `calibration data '${dir}': ${oneBatch ? 'a batch folder needs one file per input' : 'every input needs the same number of files'}, found ${inputs.map((vi, k) => `${vi.name}: ${counts[k]}`).join(', ')}`,
      'add or remove files so every input has one per batch (see the naming rule in tsrt calibrate --help)');
  }
  return counts[0] ? Array.from({ length: counts[0] }, (_, b) => per.map((p) => p[b])) : [];
}

/** Checks a batch against the model's inputs and the first batch: every input given with its dtype, rank and
 * fixed dims, and the same shape in every batch (the engine is built once, for the first batch's shapes). */
export function checkBatch(feeds: Map<string, Tensor>, inputs: readonly ValueInfo[], source: string, first?: Map<string, Tensor>): void {
  for (const vi of inputs) {
    const t = feeds.get(vi.name);
    if (!t) throw new InputError(`${source}: input '${vi.name}' is missing`, `every batch gives all inputs: ${inputs.map((i) => i.name).join(', ')}`);
    if (t.dtype !== vi.type.dtype) throw new InputError(`${source}: input '${vi.name}' is ${t.dtype}, the model expects ${vi.type.dtype}`, `save the data as ${vi.type.dtype}`);
    const want = vi.type.shape;
    if (want.length !== t.dims.length || want.some((d, i) => typeof d === 'number' && d !== t.dims[i])) {
      throw new InputError(`${source}: input '${vi.name}' has shape ${shapeStr(t.dims)}, the model expects ${shapeStr(want)}`, 'reshape the data (named dims may take any size)');
    }
    const f = first?.get(vi.name);
    if (f && f.dims.join() !== t.dims.join()) {
      throw new InputError(`${source}: input '${vi.name}' has shape ${shapeStr(t.dims)}, the first batch had ${shapeStr(f.dims)}`, 'give every calibration batch the same shape');
    }
  }
  for (const k of feeds.keys()) {
    if (!inputs.some((vi) => vi.name === k)) throw new InputError(`${source}: '${k}' is not an input of the model`, `inputs are: ${inputs.map((i) => i.name).join(', ')}`);
  }
}

/** Opens calibration data as a stream of checked batches. */
export function openCalibrationData(data: CalibrationData, inputs: readonly ValueInfo[]): BatchStream {
  if (typeof data === 'string') {
    const plan = planDirectory(data, inputs);
    return {
      total: plan.length,
      batches: (async function* () {
        let first: Map<string, Tensor> | undefined;
        for (const files of plan) {
          const feeds = new Map(inputs.map((vi, k) => [vi.name, readTensor(files[k])]));
          const source = files.length === 1 ? files[0] : `batch ${basename(files[0])}..`;
          checkBatch(feeds, inputs, source, first);
          first ??= feeds;
          yield { feeds, source };
        }
      })(),
    };
  }
  const iterable = data as AsyncIterable<CalibrationBatch> | Iterable<CalibrationBatch>;
  if (!iterable || (typeof (iterable as AsyncIterable<unknown>)[Symbol.asyncIterator] !== 'function' && typeof (iterable as Iterable<unknown>)[Symbol.iterator] !== 'function')) {
    throw new TsrtError('USAGE', 'calibration data must be a directory path or an (async) iterable of { inputName: Tensor } batches', 'pass a path, an array of batches or an async generator');
  }
  return {
    total: Array.isArray(iterable) ? iterable.length : undefined,
    batches: (async function* () {
      let first: Map<string, Tensor> | undefined;
      let b = 0;
      for await (const batch of iterable) {
        const feeds = batch instanceof Map ? batch : new Map(Object.entries(batch));
        const source = `calibration batch ${b++}`;
        checkBatch(feeds, inputs, source, first);
        first ??= feeds;
        yield { feeds, source };
      }
    })(),
  };
}
