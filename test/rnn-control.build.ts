// Test helper for the control-flow and RNN tests: builds small ONNX models as bytes, runs them on ONNX Runtime
// (the reference the real-model data was made with) and on the tsrt CPU reference, and compares.
import * as ort from 'onnxruntime-node';
import { onnx } from '../src/onnx/onnx_pb.js';
import { parseModel } from '../src/onnx/import.js';
import { runModelCpu } from '../src/runtime/cpu_executor.js';
import { DTYPE_ONNX, makeTensor, toF64 } from '../src/ir/tensor.js';
import type { DType, Tensor, TypedArray } from '../src/ir/types.js';

export type AttrSpec =
  | { i: number } | { f: number } | { s: string } | { ints: number[] } | { floats: number[] } | { strings: string[] }
  | { g: GraphSpec };

export interface NodeSpec { op: string; inputs: string[]; outputs: string[]; attrs?: Record<string, AttrSpec> }

export interface GraphSpec {
  name?: string;
  /** [name, dtype, dims]; dims undefined = no shape. */
  inputs: [string, DType, (number | string)[]?][];
  outputs: [string, DType, (number | string)[]?][];
  nodes: NodeSpec[];
  inits?: Record<string, Tensor>;
}

const T = onnx.AttributeProto.AttributeType;

function valueInfo([name, dtype, dims]: [string, DType, (number | string)[]?]): onnx.IValueInfoProto {
  const shape = dims ? { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } : undefined;
  return { name, type: { tensorType: { elemType: DTYPE_ONNX[dtype], shape } } };
}

export function tensorProto(name: string, t: Tensor): onnx.ITensorProto {
  const d = t.data as TypedArray;
  return { name, dims: t.dims, dataType: DTYPE_ONNX[t.dtype], rawData: new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice() };
}

function attrProto(name: string, a: AttrSpec): onnx.IAttributeProto {
  const enc = new TextEncoder();
  if ('i' in a) return { name, type: T.INT, i: a.i };
  if ('f' in a) return { name, type: T.FLOAT, f: a.f };
  if ('s' in a) return { name, type: T.STRING, s: enc.encode(a.s) };
  if ('ints' in a) return { name, type: T.INTS, ints: a.ints };
  if ('floats' in a) return { name, type: T.FLOATS, floats: a.floats };
  if ('strings' in a) return { name, type: T.STRINGS, strings: a.strings.map((s) => enc.encode(s)) };
  return { name, type: T.GRAPH, g: graphProto(a.g) };
}

function graphProto(g: GraphSpec): onnx.IGraphProto {
  return {
    name: g.name ?? 'g',
    input: g.inputs.map(valueInfo),
    output: g.outputs.map(valueInfo),
    initializer: Object.entries(g.inits ?? {}).map(([k, t]) => tensorProto(k, t)),
    node: g.nodes.map((n, i) => ({
      name: `${n.op}_${i}`, opType: n.op, input: n.inputs, output: n.outputs,
      attribute: Object.entries(n.attrs ?? {}).map(([k, a]) => attrProto(k, a)),
    })),
  };
}

export function modelBytes(g: GraphSpec, opset: number): Uint8Array {
  return onnx.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: '', version: opset }], producerName: 'tsrt-test', graph: graphProto(g) }).finish();
}

/** Deterministic values in [lo, hi). */
export function rand(dtype: DType, dims: number[], seed: number, lo = -1, hi = 1): Tensor {
  let s = seed >>> 0;
  const next = () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  const t = makeTensor(dtype, dims);
  const d = t.data as Float32Array;
  for (let i = 0; i < d.length; i++) d[i] = lo + (hi - lo) * next();
  return t;
}

export const f32 = (dims: number[], v: number[]): Tensor => makeTensor('float32', dims, Float32Array.from(v));
export const i64 = (dims: number[], v: number[]): Tensor => makeTensor('int64', dims, BigInt64Array.from(v.map(BigInt)));
export const i32 = (dims: number[], v: number[]): Tensor => makeTensor('int32', dims, Int32Array.from(v));
export const bool = (dims: number[], v: boolean[]): Tensor => makeTensor('bool', dims, Uint8Array.from(v.map(Number)));

const ORT_TYPE: Partial<Record<DType, string>> = { float32: 'float32', float64: 'float64', int64: 'int64', int32: 'int32', bool: 'bool', float16: 'float16' };

export async function runOrt(bytes: Uint8Array, feeds: Record<string, Tensor>): Promise<Tensor[]> {
  const sess = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const inputs: Record<string, ort.Tensor> = {};
  for (const [k, t] of Object.entries(feeds)) inputs[k] = new ort.Tensor(ORT_TYPE[t.dtype] as 'float32', t.data as Float32Array, t.dims);
  const out = await sess.run(inputs);
  return sess.outputNames.map((n) => {
    const o = out[n];
    const dtype = (Object.entries(ORT_TYPE).find(([, v]) => v === o.type)?.[0] ?? 'float32') as DType;
    return makeTensor(dtype, [...o.dims], o.data as TypedArray);
  });
}

export function runTsrt(bytes: Uint8Array, feeds: Record<string, Tensor>): Tensor[] {
  const model = parseModel(bytes, { file: 'test.onnx' });
  return runModelCpu(model, new Map(Object.entries(feeds)));
}

/** Reason the tensors differ (shape, dtype, allclose), or undefined. */
export function diff(a: Tensor, e: Tensor, rtol = 1e-4, atol = 1e-5): string | undefined {
  if (a.dtype !== e.dtype) return `dtype ${a.dtype} vs ${e.dtype}`;
  if (a.dims.join() !== e.dims.join()) return `shape [${a.dims}] vs [${e.dims}]`;
  const x = toF64(a), y = toF64(e);
  for (let i = 0; i < y.length; i++) {
    if (!(Math.abs(x[i] - y[i]) <= atol + rtol * Math.abs(y[i]))) return `element ${i}: ${x[i]} vs ${y[i]}`;
  }
  return undefined;
}

/** Runs a model on both and returns a list of differences per output (empty when they agree). */
export async function compareWithOrt(g: GraphSpec, opset: number, feeds: Record<string, Tensor>, tol?: { rtol?: number; atol?: number }): Promise<string[]> {
  const bytes = modelBytes(g, opset);
  const want = await runOrt(bytes, feeds);
  const got = runTsrt(bytes, feeds);
  const problems: string[] = [];
  if (got.length !== want.length) problems.push(`${got.length} outputs vs ${want.length}`);
  want.forEach((w, k) => {
    const why = got[k] ? diff(got[k], w, tol?.rtol, tol?.atol) : 'missing';
    if (why) problems.push(`output ${k}: ${why}`);
  });
  return problems;
}
