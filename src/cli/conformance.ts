// Conformance runner: runs every ONNX backend test folder (model.onnx + test_data_set_*/input_K.pb, output_K.pb)
// below a directory and compares like the upstream ONNX runner: same shape, same dtype, allclose.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { TsrtError, UnsupportedError } from '../errors.js';
import { loadModel, loadTensorFile } from '../onnx/import.js';
import type { Model, Tensor } from '../ir/types.js';
import { toF64, shapeStr } from '../ir/tensor.js';
import { runModelCpu } from '../runtime/cpu_executor.js';

export type Backend = (model: Model, feeds: Map<string, Tensor>) => Tensor[] | Promise<Tensor[]>;

export interface CaseResult {
  name: string;
  status: 'PASS' | 'FAIL' | 'UNSUPPORTED';
  reason: string;
  ms: number;
}

export interface ConformanceOptions {
  rtol?: number;
  atol?: number;
  filter?: RegExp;
  backend?: Backend;
  onResult?: (r: CaseResult) => void;
}

/** Every folder below `dir` (or `dir` itself) that holds a model.onnx and a test_data_set_*. */
export function findTestDirs(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    if (existsSync(join(d, 'model.onnx'))) { out.push(d); return; }
    for (const e of readdirSync(d).sort()) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

/** Compares like numpy.testing.assert_allclose (NaN equal to NaN); returns a reason or undefined. */
export function compareTensors(actual: Tensor, expected: Tensor, rtol: number, atol: number): string | undefined {
  if (actual.dtype !== expected.dtype) return `dtype ${actual.dtype}, expected ${expected.dtype}`;
  if (actual.dims.length !== expected.dims.length || actual.dims.some((d, i) => d !== expected.dims[i])) {
    return `shape ${shapeStr(actual.dims)}, expected ${shapeStr(expected.dims)}`;
  }
  if (expected.dtype === 'string') {
    const i = (expected.data as string[]).findIndex((s, k) => s !== (actual.data as string[])[k]);
    return i >= 0 ? `string mismatch at ${i}` : undefined;
  }
  const a = toF64(actual), e = toF64(expected);
  let bad = 0, worst = -1, worstErr = 0;
  for (let i = 0; i < e.length; i++) {
    const x = a[i], y = e[i];
    if (Number.isNaN(x) || Number.isNaN(y)) { if (Number.isNaN(x) !== Number.isNaN(y)) { bad++; if (worst < 0) worst = i; } continue; }
    if (x === y) continue;
    const err = Math.abs(x - y);
    if (!(err <= atol + rtol * Math.abs(y))) {
      bad++;
      if (err > worstErr || worst < 0) { worstErr = err; worst = i; }
    }
  }
  if (!bad) return undefined;
  return `${bad}/${e.length} elements differ; worst at ${worst}: got ${a[worst]}, expected ${e[worst]}`;
}

export async function runCase(dir: string, name: string, opts: ConformanceOptions): Promise<CaseResult> {
  const t0 = performance.now();
  const rtol = opts.rtol ?? 1e-3, atol = opts.atol ?? 1e-7;
  const result = (status: CaseResult['status'], reason: string): CaseResult => ({ name, status, reason, ms: performance.now() - t0 });
  let model: Model;
  try {
    model = loadModel(join(dir, 'model.onnx'));
  } catch (e) {
    if (e instanceof UnsupportedError) return result('UNSUPPORTED', e.items.map((i) => `${i.op}: ${i.reason}`).join('; '));
    return result('FAIL', `import: ${(e as Error).message.split('\n')[0]}`);
  }
  const sets = readdirSync(dir).filter((d) => d.startsWith('test_data_set_')).sort();
  if (!sets.length) return result('FAIL', 'no test_data_set_* folder');
  for (const set of sets) {
    const sd = join(dir, set);
    const files = readdirSync(sd);
    const feeds = new Map<string, Tensor>();
    model.graph.inputs.forEach((vi, k) => {
      if (files.includes(`input_${k}.pb`)) feeds.set(vi.name, loadTensorFile(join(sd, `input_${k}.pb`)));
    });
    let outs: Tensor[];
    try {
      outs = await (opts.backend ?? runModelCpu)(model, feeds);
    } catch (e) {
      if (e instanceof UnsupportedError) return result('UNSUPPORTED', e.message.split('\n').slice(1).join(' ').trim());
      const msg = e instanceof TsrtError ? e.message.split('\n')[0] : `${(e as Error).message}`;
      return result('FAIL', `run: ${msg}`);
    }
    for (let k = 0; files.includes(`output_${k}.pb`); k++) {
      const expected = loadTensorFile(join(sd, `output_${k}.pb`));
      const got = outs[k];
      if (!got) return result('FAIL', `output ${k} missing`);
      const why = compareTensors(got, expected, rtol, atol);
      if (why) return result('FAIL', `${set} output ${k}: ${why}`);
    }
  }
  return result('PASS', '');
}

export async function runConformance(root: string, opts: ConformanceOptions = {}): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const dir of findTestDirs(root)) {
    const name = relative(root, dir) || dir;
    if (opts.filter && !opts.filter.test(name)) continue;
    let r: CaseResult;
    try {
      r = await runCase(dir, name, opts);
    } catch (e) {
      r = { name, status: 'FAIL', reason: `crash: ${(e as Error).message.split('\n')[0]}`, ms: 0 };
    }
    results.push(r);
    opts.onResult?.(r);
  }
  return results;
}

export function summarize(results: CaseResult[]): string {
  const n = (s: CaseResult['status']) => results.filter((r) => r.status === s).length;
  return `${n('PASS')} passed, ${n('FAIL')} failed, ${n('UNSUPPORTED')} skipped`;
}
