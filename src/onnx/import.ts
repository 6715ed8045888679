// ONNX importer: ModelProto bytes -> IR Model. Decoding uses protobufjs static code generated from the vendored
// onnx.proto3 (scripts/gen-proto.mjs). Legacy attribute forms are upgraded through the op registry, and a
// support check reports every unsupported node at once.
import { readFileSync, existsSync, openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { dirname, resolve, isAbsolute, normalize } from 'node:path';
import { onnx } from './onnx_pb.js';
import { GraphError, ModelLoadError, UnsupportedError, type UnsupportedItem } from '../errors.js';
import type { Attr, DType, Dim, Graph, Model, Node, Tensor, TensorType, TypedArray, ValueInfo } from '../ir/types.js';
import { DTYPE_SIZE, ONNX_DTYPE, allocData, size } from '../ir/tensor.js';
import { getOp } from '../ops/registry.js';
import '../ops/index.js';

export const MIN_OPSET = 6;
export const MAX_OPSET = 25;

type Longish = number | { toNumber(): number; low: number; high: number; unsigned?: boolean } | null | undefined;

const num = (x: Longish): number => (x == null ? 0 : typeof x === 'number' ? x : x.toNumber());
const big = (x: Longish, unsigned = false): bigint => {
  if (x == null) return 0n;
  if (typeof x === 'number') return BigInt(x);
  const v = (BigInt(x.high >>> 0) << 32n) | BigInt(x.low >>> 0);
  return unsigned ? v : BigInt.asIntN(64, v);
};

export interface ImportOptions {
  /** Skip the support check (dumping or inspecting a model the backend can't run yet). */
  allowUnsupported?: boolean;
}

interface Ctx {
  file: string;
  baseDir: string;
  opset: number;
  names: Set<string>;
  counter: number;
}

export function loadModel(path: string, opts: ImportOptions = {}): Model {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new ModelLoadError(path, `cannot read model file (${(e as NodeJS.ErrnoException).code ?? e})`,
      'check the path; tsrt takes an .onnx file');
  }
  return parseModel(bytes, { ...opts, file: path, baseDir: dirname(resolve(path)) });
}

export function parseModel(bytes: Uint8Array, opts: ImportOptions & { file?: string; baseDir?: string } = {}): Model {
  const file = opts.file ?? '<memory>';
  if (bytes.length === 0) throw new ModelLoadError(file, 'file is empty', 'export the model again');
  let mp: onnx.ModelProto;
  try {
    mp = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new ModelLoadError(file, `not a valid ONNX protobuf (${(e as Error).message})`,
      'the file is truncated or not an ONNX model; re-export or re-download it');
  }
  if (!mp.graph) throw new ModelLoadError(file, 'model has no graph', 'the file is not an ONNX model or is truncated');
  const opsets: Record<string, number> = {};
  for (const o of mp.opsetImport ?? []) opsets[o.domain === 'ai.onnx' ? '' : (o.domain ?? '')] = num(o.version as Longish);
  const opset = opsets[''] ?? (num(mp.irVersion as Longish) <= 3 ? 8 : 0);
  if (!opset) throw new ModelLoadError(file, 'model imports no ai.onnx opset', 'export it with an ai.onnx opset between 7 and 25');
  if (opset < MIN_OPSET || opset > MAX_OPSET) {
    throw new UnsupportedError([{ node: '<model>', op: '<opset>', domain: '', opset,
      reason: `ai.onnx opset ${opset} is outside the supported range ${MIN_OPSET}-${MAX_OPSET}; convert it with onnx.version_converter` }], file);
  }
  const ctx: Ctx = { file, baseDir: opts.baseDir ?? process.cwd(), opset, names: new Set(), counter: 0 };
  let graph = convertGraph(mp.graph, ctx);
  graph = upgradeGraph(graph);
  const model: Model = { graph, irVersion: num(mp.irVersion as Longish), producer: mp.producerName ?? '', opsets, source: file };
  if (!opts.allowUnsupported) checkSupport(model);
  return model;
}

function convertGraph(g: onnx.IGraphProto, ctx: Ctx): Graph {
  const initializers = new Map<string, Tensor>();
  for (const t of g.initializer ?? []) initializers.set(t.name ?? '', convertTensor(t, ctx));
  for (const st of g.sparseInitializer ?? []) {
    throw new ModelLoadError(ctx.file, `sparse initializer '${st.values?.name}' is not supported`, 'densify sparse initializers before import');
  }
  const inputs: ValueInfo[] = [];
  for (const vi of g.input ?? []) {
    if (initializers.has(vi.name ?? '')) continue; // pre-IR-4 models list initializers as inputs too
    inputs.push(convertValueInfo(vi, ctx));
  }
  const outputs = (g.output ?? []).map((vi) => convertValueInfo(vi, ctx));
  const valueTypes = new Map<string, TensorType>();
  for (const vi of g.valueInfo ?? []) {
    const v = convertValueInfo(vi, ctx);
    valueTypes.set(v.name, v.type);
  }
  const nodes: Node[] = [];
  const used = new Set<string>();
  // ONNX graphs are in SSA form; a second producer of one value would make passes disagree about its value
  const defined = new Set([...initializers.keys(), ...inputs.map((vi) => vi.name)]);
  for (const [i, n] of (g.node ?? []).entries()) {
    let name = n.name || `${n.opType}_${i}`;
    while (used.has(name)) name = `${name}_${i}`;
    used.add(name);
    for (const o of n.output ?? []) {
      if (!o) continue;
      if (defined.has(o)) {
        throw new GraphError(`value '${o}' is produced twice (by this node and by an earlier node, a graph input or an initializer)`, name,
          'each value must have one producer (ONNX SSA rule); the model file is corrupt or was edited by hand: run onnx.checker on it');
      }
      defined.add(o);
    }
    const attrs: Record<string, Attr> = {};
    for (const a of n.attribute ?? []) attrs[a.name ?? ''] = convertAttr(a, ctx, name);
    nodes.push({
      name, op: n.opType ?? '', domain: n.domain === 'ai.onnx' ? '' : (n.domain ?? ''),
      inputs: [...(n.input ?? [])], outputs: [...(n.output ?? [])], attrs,
    });
  }
  return { name: g.name || 'main', inputs, outputs, nodes, initializers, valueTypes, opset: ctx.opset };
}

function convertValueInfo(vi: onnx.IValueInfoProto, ctx: Ctx): ValueInfo {
  const name = vi.name ?? '';
  const tt = vi.type?.tensorType;
  if (!tt) {
    if (vi.type?.sequenceType || vi.type?.optionalType || vi.type?.mapType) {
      throw new UnsupportedError([{ node: name, op: '<value>', domain: '', opset: ctx.opset,
        reason: 'sequence, map and optional values are not supported (tensors only)' }], ctx.file);
    }
    return { name, type: { dtype: 'float32', shape: [] } }; // type left to inference
  }
  const dtype = ONNX_DTYPE[tt.elemType ?? 0];
  if (!dtype) {
    throw new UnsupportedError([{ node: name, op: '<value>', domain: '', opset: ctx.opset,
      reason: `element type ${tt.elemType} (${onnx.TensorProto.DataType[tt.elemType ?? 0] ?? '?'}) is not supported` }], ctx.file);
  }
  const shape: Dim[] = (tt.shape?.dim ?? []).map((d) => {
    if (d.value !== 'dimValue') return d.value === 'dimParam' && d.dimParam ? d.dimParam : '?';
    const v = num(d.dimValue as Longish);
    if (!Number.isSafeInteger(v)) {
      throw new ModelLoadError(ctx.file, `value '${name}' has an invalid dim ${v}`, 'the model file is corrupt; re-export it');
    }
    // some exporters write -1 for a dynamic dim; a negative size would otherwise reach memory planning
    return v < 0 ? '?' : v;
  });
  return { name, type: { dtype, shape } };
}

function convertAttr(a: onnx.IAttributeProto, ctx: Ctx, nodeName: string): Attr {
  const T = onnx.AttributeProto.AttributeType;
  const dec = new TextDecoder();
  const missing = (field: string): never => {
    throw new ModelLoadError(ctx.file, `node '${nodeName}': attribute '${a.name}' has type ${T[a.type ?? 0] ?? a.type} but no '${field}' value`,
      'the model file is corrupt; re-export it');
  };
  switch (a.type) {
    case T.INT: return { kind: 'int', value: num(a.i as Longish) };
    case T.FLOAT: return { kind: 'float', value: a.f ?? 0 };
    case T.STRING: return { kind: 'string', value: dec.decode(a.s ?? new Uint8Array()) };
    case T.INTS: return { kind: 'ints', value: (a.ints ?? []).map((x) => num(x as Longish)) };
    case T.FLOATS: return { kind: 'floats', value: [...(a.floats ?? [])] };
    case T.STRINGS: return { kind: 'strings', value: (a.strings ?? []).map((s) => dec.decode(s)) };
    case T.TENSOR: return { kind: 'tensor', value: convertTensor(a.t ?? missing('t'), ctx) };
    case T.GRAPH: return { kind: 'graph', value: convertGraph(a.g ?? missing('g'), ctx) };
    case T.GRAPHS: return { kind: 'graphs', value: (a.graphs ?? []).map((g) => convertGraph(g, ctx)) };
    default: {
      // Older writers leave `type` unset; infer it from which field is filled.
      if (a.g) return { kind: 'graph', value: convertGraph(a.g, ctx) };
      if (a.t) return { kind: 'tensor', value: convertTensor(a.t, ctx) };
      if (a.ints?.length) return { kind: 'ints', value: a.ints.map((x) => num(x as Longish)) };
      if (a.floats?.length) return { kind: 'floats', value: [...a.floats] };
      if (a.strings?.length) return { kind: 'strings', value: a.strings.map((s) => dec.decode(s)) };
      if (a.s?.length) return { kind: 'string', value: dec.decode(a.s) };
      if (a.f) return { kind: 'float', value: a.f };
      if (a.i != null) return { kind: 'int', value: num(a.i as Longish) };
      throw new ModelLoadError(ctx.file, `node '${nodeName}': attribute '${a.name}' has unsupported type ${a.type}`,
        'sparse-tensor and type-proto attributes are not supported');
    }
  }
}

/** Decodes a TensorProto (raw_data, typed fields or external data). */
export function convertTensor(t: onnx.ITensorProto, ctx: { file: string; baseDir: string }): Tensor {
  const name = t.name ?? '';
  const dtype = ONNX_DTYPE[t.dataType ?? 0];
  if (!dtype) {
    throw new ModelLoadError(ctx.file, `tensor '${name}' has unsupported element type ${t.dataType} (${onnx.TensorProto.DataType[t.dataType ?? 0] ?? '?'})`,
      'tsrt supports float32/16, bfloat16, float64, (u)int8/16/32/64 and bool tensors');
  }
  const dims = (t.dims ?? []).map((d) => num(d as Longish));
  if (dims.some((d) => d < 0 || !Number.isSafeInteger(d))) throw new ModelLoadError(ctx.file, `tensor '${name}' has invalid dims [${dims}]`);
  const n = size(dims);
  if (!Number.isSafeInteger(n * Math.max(1, DTYPE_SIZE[dtype]))) {
    throw new ModelLoadError(ctx.file, `tensor '${name}' has dims [${dims}]: ${n} elements is more than any file can hold`, 'the model file is corrupt');
  }
  let raw: Uint8Array | undefined = t.rawData && t.rawData.length ? t.rawData : undefined;
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) raw = readExternal(t, ctx, dtype, n);
  if (dtype === 'string') {
    const dec = new TextDecoder();
    const s = (t.stringData ?? []).map((b) => dec.decode(b));
    if (s.length !== n) throw new ModelLoadError(ctx.file, `tensor '${name}' has ${s.length} strings, shape [${dims}] needs ${n}`);
    return { dtype, dims, data: s };
  }
  // Sizes are checked against the data present before allocating, so memory is bounded by the file's size.
  if (raw) {
    const need = n * DTYPE_SIZE[dtype];
    if (raw.length !== need) {
      throw new ModelLoadError(ctx.file, `tensor '${name}' has ${raw.length} bytes of data, shape [${dims}] of ${dtype} needs ${need}`,
        'the model file is truncated or corrupt');
    }
    const data = allocData(dtype, n) as TypedArray;
    // Copy so the typed array is aligned and independent of the file buffer.
    new Uint8Array(data.buffer, data.byteOffset, need).set(raw);
    return { dtype, dims, data };
  }
  let data: TypedArray;
  const fill = (src: ArrayLike<unknown>, conv: (x: unknown) => number | bigint) => {
    if (src.length !== n) {
      throw new ModelLoadError(ctx.file, `tensor '${name}' has ${src.length} values, shape [${dims}] needs ${n}`, 'the model file is corrupt');
    }
    data = allocData(dtype, n) as TypedArray;
    for (let i = 0; i < n; i++) (data as unknown as (number | bigint)[])[i] = conv(src[i]) as never;
  };
  switch (dtype) {
    case 'float32': fill(t.floatData ?? [], (x) => x as number); break;
    case 'float64': fill(t.doubleData ?? [], (x) => x as number); break;
    case 'int64': fill(t.int64Data ?? [], (x) => big(x as Longish)); break;
    case 'uint64': fill(t.uint64Data ?? [], (x) => big(x as Longish, true)); break;
    case 'uint32': fill(t.uint64Data ?? [], (x) => num(x as Longish)); break;
    // int32_data holds int8/16, uint8/16, bool and the raw bits of float16/bfloat16
    default: fill(t.int32Data ?? [], (x) => x as number);
  }
  return { dtype, dims, data: data! };
}

function readExternal(t: onnx.ITensorProto, ctx: { file: string; baseDir: string }, dtype: DType, n: number): Uint8Array {
  const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const loc = kv.get('location');
  const name = t.name ?? '';
  if (!loc) throw new ModelLoadError(ctx.file, `tensor '${name}' is external but names no location`);
  if (isAbsolute(loc) || normalize(loc).startsWith('..')) {
    throw new ModelLoadError(ctx.file, `tensor '${name}' external data location '${loc}' leaves the model's folder`,
      'external data must sit beside the model (relative path, no ..)');
  }
  const path = resolve(ctx.baseDir, loc);
  if (!existsSync(path)) {
    throw new ModelLoadError(ctx.file, `external data file '${loc}' for tensor '${name}' is missing (looked in ${ctx.baseDir})`,
      'keep the external data file next to the .onnx file');
  }
  const offset = Number(kv.get('offset') ?? 0);
  const need = n * DTYPE_SIZE[dtype];
  const length = kv.has('length') ? Number(kv.get('length')) : need;
  const fd = openSync(path, 'r');
  try {
    const fileSize = fstatSync(fd).size;
    if (offset + length > fileSize) {
      throw new ModelLoadError(ctx.file, `external data for tensor '${name}' needs bytes ${offset}..${offset + length} of '${loc}', which has ${fileSize}`,
        'the external data file is truncated');
    }
    const buf = new Uint8Array(length);
    readSync(fd, buf, 0, length, offset);
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** Rewrites legacy op forms into the newest form through each op's `upgrade` hook (recursing into subgraphs). */
export function upgradeGraph(g: Graph): Graph {
  const initializers = new Map(g.initializers);
  let k = 0;
  const taken = new Set<string>([...initializers.keys(), ...g.nodes.flatMap((n) => n.outputs), ...g.inputs.map((i) => i.name)]);
  const fresh = (hint: string) => {
    let name: string;
    do name = `${hint}__u${k++}`; while (taken.has(name));
    taken.add(name);
    return name;
  };
  const ctx = {
    opset: g.opset,
    addConst: (hint: string, t: Tensor) => { const n = fresh(hint); initializers.set(n, t); return n; },
    freshName: fresh,
    typeOf: (name: string): TensorType | undefined => {
      const t = initializers.get(name);
      if (t) return { dtype: t.dtype, shape: [...t.dims] };
      return g.inputs.find((i) => i.name === name)?.type ?? g.valueTypes.get(name);
    },
    constOf: (name: string) => initializers.get(name),
  };
  const nodes: Node[] = [];
  for (const n0 of g.nodes) {
    const attrs: Record<string, Attr> = {};
    for (const [name, a] of Object.entries(n0.attrs)) {
      if (a.kind === 'graph') attrs[name] = { kind: 'graph', value: upgradeGraph(a.value) };
      else if (a.kind === 'graphs') attrs[name] = { kind: 'graphs', value: a.value.map(upgradeGraph) };
      else attrs[name] = a;
    }
    const n = { ...n0, attrs };
    const def = getOp(n.op, n.domain);
    if (def?.upgrade) nodes.push(...def.upgrade(n, ctx));
    else nodes.push(n);
  }
  return { ...g, nodes, initializers };
}

/** Walks all nodes (subgraphs included) and throws one error listing every unsupported node. */
export function checkSupport(model: Model): void {
  const items: UnsupportedItem[] = [];
  const walk = (g: Graph) => {
    for (const n of g.nodes) {
      const def = getOp(n.op, n.domain);
      if (!def) {
        const reason = n.domain && n.domain !== 'ai.onnx' ? `domain '${n.domain}' is not supported` : `op '${n.op}' is not implemented`;
        items.push({ node: n.name, op: n.op, domain: n.domain, opset: g.opset, reason });
      } else {
        const why = def.supports?.(n, g.opset);
        if (why) items.push({ node: n.name, op: n.op, domain: n.domain, opset: g.opset, reason: why });
      }
      for (const a of Object.values(n.attrs)) {
        if (a.kind === 'graph') walk(a.value);
        if (a.kind === 'graphs') a.value.forEach(walk);
      }
    }
  };
  walk(model.graph);
  if (items.length) throw new UnsupportedError(items, model.source);
}

/** Reads a TensorProto file (.pb), as in the ONNX test data sets. */
export function loadTensorFile(path: string): Tensor {
  let bytes: Uint8Array;
  try { bytes = readFileSync(path); } catch (e) {
    throw new ModelLoadError(path, `cannot read tensor file (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  let tp: onnx.TensorProto;
  try { tp = onnx.TensorProto.decode(bytes); } catch (e) {
    throw new ModelLoadError(path, `not a valid TensorProto (${(e as Error).message})`, 'the file is truncated or not a .pb tensor');
  }
  return convertTensor(tp, { file: path, baseDir: dirname(resolve(path)) });
}
