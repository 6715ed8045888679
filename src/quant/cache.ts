// INT8 calibration cache in TensorRT's text format, so caches move between tsrt, TensorRT and ONNX Runtime's
// TensorRT execution provider (trt_int8_calibration_table_name with use_native_calibration_table).
//
// The format, as TensorRT writes it (TensorRT developer guide's mnist CalibrationTable, and caches written by
// TensorRT 7.0 to 10.3 as they appear in public repositories):
//   TRT-<version>-<algorithm>            e.g. TRT-8601-EntropyCalibration2 (version 8601 = 8.6.1, 100300 = 10.3.0)
//   <tensor name>: <scale>               one line per tensor, each ending in '\n'
// where <scale> is the float32 scale (amax / 127) as the hex of its IEEE-754 bits, most significant digit
// first, lowercase, without leading zeros: 3c010a14, and a zero scale is written "0". Tensor names may contain
// ':' and spaces ("input_1:0", "(Unnamed Layer* 5) [Scale]_output"), so the scale is what follows the last
// ": ". ONNX Runtime's reader (ReadDynamicRange in tensorrt_execution_provider_utils.h) checks only that the
// first line contains "TRT-", then reads strtoul(hex, 16) as float bits and multiplies by 127.
// Algorithms: TensorRT's EntropyCalibration2, EntropyCalibration, MinMaxCalibration and LegacyCalibration;
// tsrt writes PercentileCalibration for its percentile calibrator (TensorRT has none; TensorRT reading such
// a cache through an IInt8Calibrator whose algorithm differs recalibrates, so use the values with
// setDynamicRange, or ONNX Runtime, which ignores the algorithm).
import { readFileSync, writeFileSync } from 'node:fs';
import { TsrtError } from '../errors.js';
import type { CalibrationMethod } from './histogram.js';

export const CACHE_ALGORITHMS: Record<CalibrationMethod, string> = {
  entropy: 'EntropyCalibration2', minmax: 'MinMaxCalibration', percentile: 'PercentileCalibration',
};

/** The TensorRT version tsrt puts in the header (8.6.1, the last release line with implicit-quantization
 * calibration not deprecated); readers in TensorRT and ONNX Runtime do not compare it. */
export const DEFAULT_TRT_VERSION = '8601';

export interface CalibrationCache {
  /** Header version digits (8601). */
  version: string;
  /** Header algorithm (EntropyCalibration2). */
  algorithm: string;
  /** The tsrt method the algorithm names, when it names one. */
  method?: CalibrationMethod;
  /** Tensor name -> scale, in file order (names like "371" would be reordered in a plain object). */
  entries: [string, number][];
  /** The same as a record, for BuildOptions.int8Scales. */
  scales: Record<string, number>;
  /** Line ending and final newline of the file read, so writing it back gives the same bytes. */
  eol?: '\n' | '\r\n';
  finalNewline?: boolean;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function scaleToHex(scale: number): string {
  f32[0] = scale;
  return u32[0].toString(16);
}

export function hexToScale(hex: string): number {
  u32[0] = parseInt(hex, 16) >>> 0;
  return f32[0];
}

export function formatCalibrationCache(c: Pick<CalibrationCache, 'version' | 'algorithm' | 'entries'> & Partial<CalibrationCache>): string {
  const eol = c.eol ?? '\n';
  const lines = [`TRT-${c.version}-${c.algorithm}`, ...c.entries.map(([name, s]) => `${name}: ${scaleToHex(checkScale(s, name))}`)];
  return lines.join(eol) + (c.finalNewline === false ? '' : eol);
}

function checkScale(s: number, name: string): number {
  if (/[\r\n]/.test(name) || !name) throw new TsrtError('USAGE', `tensor name ${JSON.stringify(name)} cannot be written to a calibration cache`, 'the text format holds one non-empty, single-line name per line');
  if (!(s >= 0 && s < Infinity)) {
    throw new TsrtError('USAGE', `calibration scale of tensor '${name}' is ${s}`, 'scales must be finite and >= 0 (amax / 127)');
  }
  return s;
}

/** Parses a cache; `file` names the source in errors, which give the line number and the fix. */
export function parseCalibrationCache(text: string, file = 'calibration cache'): CalibrationCache {
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const finalNewline = text.endsWith('\n');
  const lines = text.split(/\r?\n/);
  if (finalNewline) lines.pop();
  const bad = (line: number, msg: string, hint: string) => new TsrtError('USAGE', `${file}:${line}: ${msg}`, hint);
  const header = /^TRT-(\d+)-([A-Za-z0-9]+)$/.exec(lines[0] ?? '');
  if (!header) {
    throw bad(1, `expected a TensorRT calibration cache header like 'TRT-8601-EntropyCalibration2', found '${(lines[0] ?? '').slice(0, 60)}'`,
      'pass a cache written by tsrt calibrate, TensorRT or ONNX Runtime (not a timing cache or an engine)');
  }
  const algorithm = header[2];
  const method = (Object.keys(CACHE_ALGORITHMS) as CalibrationMethod[]).find((m) => CACHE_ALGORITHMS[m] === algorithm);
  const entries: [string, number][] = [];
  const scales: Record<string, number> = Object.create(null);
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const at = line.lastIndexOf(': ');
    if (at <= 0) throw bad(i + 1, `expected '<tensor name>: <hex scale>', found '${line.slice(0, 80)}'`, 'each line after the header is a tensor name, ": " and the float32 scale in hex');
    const name = line.slice(0, at), hex = line.slice(at + 2);
    if (!/^[0-9a-fA-F]{1,8}$/.test(hex)) throw bad(i + 1, `scale '${hex.slice(0, 20)}' of tensor '${name}' is not the hex of a float32 (1-8 hex digits)`, 'write scales as the IEEE-754 bits in hex, e.g. 3c010a14');
    const s = hexToScale(hex);
    if (!(s >= 0 && s < Infinity)) throw bad(i + 1, `scale ${hex} of tensor '${name}' is ${s}`, 'scales must be finite and >= 0');
    if (name in scales) throw bad(i + 1, `tensor '${name}' appears twice`, 'keep one line per tensor');
    scales[name] = s;
    entries.push([name, s]);
  }
  return { version: header[1], algorithm, method, entries, scales: { ...scales }, eol, finalNewline };
}

export function readCalibrationCache(path: string): CalibrationCache {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (e) {
    throw new TsrtError('USAGE', `${path}: cannot read the calibration cache (${(e as NodeJS.ErrnoException).code ?? e})`, 'check the --calib-cache path');
  }
  return parseCalibrationCache(text, path);
}

/** Writes scales (a calibrate() result or a cache read earlier) in TensorRT's format. Entries keep the order
 * given; a plain record is written in its key order. */
export function writeCalibrationCache(path: string, c: { method?: CalibrationMethod; scales: Record<string, number>; entries?: [string, number][]; version?: string; algorithm?: string; eol?: '\n' | '\r\n'; finalNewline?: boolean }): void {
  const algorithm = c.algorithm ?? (c.method ? CACHE_ALGORITHMS[c.method] : undefined);
  if (!algorithm) throw new TsrtError('USAGE', 'writeCalibrationCache: no calibration method or algorithm given', "pass { method: 'entropy' | 'minmax' | 'percentile', scales }");
  const text = formatCalibrationCache({ version: c.version ?? DEFAULT_TRT_VERSION, algorithm, entries: c.entries ?? Object.entries(c.scales), eol: c.eol, finalNewline: c.finalNewline });
  writeFileSync(path, text);
}
