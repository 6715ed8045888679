// Value codec for engine files: turns engine state (graphs, lowered steps, memory plans, options: plain data with
// Maps and typed arrays) into JSON plus one blob area of raw little-endian bytes, and back. Typed arrays go to the
// blob area (a 50 MB weight tensor must not become a JSON number array or base64), deduplicated by identity and by
// content, so weights shared between the optimized graph, the lowered constants and other profiles' engines are
// stored once. Decoded typed arrays are views into the file's buffer (no copy), one object per (blob, type), so
// identity-based sharing (kernels of one module share one cubin) survives the round trip.
import { createHash } from 'node:crypto';
import { TsrtError } from '../errors.js';

/** Blob offsets are aligned to this within the blob area, which is itself aligned in the file: any typed array view
 * (BigInt64Array needs 8) can be made on the loaded buffer without copying. */
export const BLOB_ALIGN = 64;

const TYPED = {
  Float32Array, Float64Array, Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
  BigInt64Array, BigUint64Array,
} as const;
type TypedName = keyof typeof TYPED;

/** Collects typed arrays into one aligned byte area. */
export class BlobWriter {
  /** [offset, byteLength] of every blob, in the blob area. */
  readonly index: [number, number][] = [];
  private parts: Uint8Array[] = [];
  private length = 0;
  private byObject = new Map<ArrayBufferView, number>();
  private byHash = new Map<string, number>();

  add(view: ArrayBufferView): number {
    const known = this.byObject.get(view);
    if (known !== undefined) return known;
    const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    // Small blobs are not worth hashing; big ones often repeat (the same weights in several specialized engines).
    const hash = bytes.length >= 4096 ? createHash('sha256').update(bytes).digest('hex') : undefined;
    const same = hash === undefined ? undefined : this.byHash.get(hash);
    if (same !== undefined) { this.byObject.set(view, same); return same; }
    const pad = (BLOB_ALIGN - (this.length % BLOB_ALIGN)) % BLOB_ALIGN;
    if (pad) { this.parts.push(new Uint8Array(pad)); this.length += pad; }
    const id = this.index.length;
    this.index.push([this.length, bytes.length]);
    this.parts.push(bytes);
    this.length += bytes.length;
    this.byObject.set(view, id);
    if (hash) this.byHash.set(hash, id);
    return id;
  }

  get byteLength(): number { return this.length; }
  chunks(): Uint8Array[] { return this.parts; }
}

const isPlain = (v: object) => { const p = Object.getPrototypeOf(v); return p === Object.prototype || p === null; };

/** JSON-safe form of `v`: non-finite numbers, -0, bigints, Maps, Sets and typed arrays become `$`-tagged objects;
 * functions are dropped (callbacks such as `log` are not state). */
export function encodeValue(v: unknown, blobs: BlobWriter, path = '$'): unknown {
  switch (typeof v) {
    case 'undefined': return { $u: 1 };
    case 'boolean': case 'string': return v;
    case 'number': return Number.isFinite(v) && !Object.is(v, -0) ? v : { $n: Object.is(v, -0) ? '-0' : String(v) };
    case 'bigint': return { $big: v.toString() };
    case 'function': return undefined;
    case 'symbol': throw new TsrtError('ENGINE_FILE', `internal: cannot store a symbol at ${path}`);
  }
  if (v === null) return null;
  if (ArrayBuffer.isView(v)) {
    // subclasses (Node's Buffer, from the kernel cache) are stored as their typed array class
    const name = (Object.keys(TYPED) as TypedName[]).find((n) => v instanceof TYPED[n]) ?? v.constructor.name;
    if (!(name in TYPED)) throw new TsrtError('ENGINE_FILE', `internal: cannot store a ${name} at ${path}`);
    return { $typed: name, blob: blobs.add(v), length: (v as unknown as { length: number }).length };
  }
  if (Array.isArray(v)) return v.map((x, i) => encodeValue(x, blobs, `${path}[${i}]`) ?? { $u: 1 });
  if (v instanceof Map) return { $map: [...v].map(([k, x], i) => [encodeValue(k, blobs, `${path}<key ${i}>`), encodeValue(x, blobs, `${path}.${String(k)}`) ?? { $u: 1 }]) };
  if (v instanceof Set) return { $set: [...v].map((x, i) => encodeValue(x, blobs, `${path}{${i}}`)) };
  if (!isPlain(v as object)) {
    throw new TsrtError('ENGINE_FILE', `internal: cannot store an instance of ${(v as object).constructor?.name} at ${path}`,
      'engine state must be plain data (objects, arrays, Maps, typed arrays)');
  }
  const out: Record<string, unknown> = {};
  let tagged = false;
  for (const [k, x] of Object.entries(v as object)) {
    const e = encodeValue(x, blobs, `${path}.${k}`);
    if (e === undefined || (typeof x === 'undefined')) continue;
    if (k.startsWith('$')) tagged = true;
    out[k] = e;
  }
  // A real key starting with '$' would read back as a tag: wrap such objects.
  return tagged ? { $obj: Object.entries(out) } : out;
}

/** Reads values written by encodeValue; `blob(i)` gives blob i's bytes (a view into the file). */
export class Decoder {
  private cache = new Map<string, ArrayBufferView>();

  constructor(private readonly file: string, private readonly blob: (i: number) => Uint8Array | undefined) {}

  decode(v: unknown): unknown {
    if (v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) return v.map((x) => this.decode(x));
    const o = v as Record<string, unknown>;
    if ('$u' in o) return undefined;
    if ('$n' in o) return o.$n === '-0' ? -0 : Number(o.$n);
    if ('$big' in o) return BigInt(String(o.$big));
    if ('$typed' in o) return this.typed(String(o.$typed), Number(o.blob), Number(o.length));
    if ('$map' in o) return new Map((this.list(o.$map) as [unknown, unknown][]).map(([k, x]) => [this.decode(k), this.decode(x)]));
    if ('$set' in o) return new Set(this.list(o.$set).map((x) => this.decode(x)));
    if ('$obj' in o) return Object.fromEntries((this.list(o.$obj) as [string, unknown][]).map(([k, x]) => [k, this.decode(x)]));
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(o)) out[k] = this.decode(x);
    return out;
  }

  private list(x: unknown): unknown[] {
    if (!Array.isArray(x)) throw this.bad('a tagged list is not an array');
    return x;
  }

  private typed(name: string, id: number, length: number): ArrayBufferView {
    const key = `${id}:${name}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const Ctor = TYPED[name as TypedName];
    const bytes = this.blob(id);
    if (!Ctor || !bytes) throw this.bad(`blob ${id} (${name}) does not exist`);
    const per = Ctor.BYTES_PER_ELEMENT;
    if (length * per !== bytes.byteLength || bytes.byteOffset % per) throw this.bad(`blob ${id} does not hold ${length} ${name} elements`);
    const view = new Ctor(bytes.buffer as ArrayBuffer, bytes.byteOffset, length);
    this.cache.set(key, view);
    return view;
  }

  private bad(why: string): TsrtError {
    return new TsrtError('ENGINE_FILE', `${this.file}: malformed engine data: ${why}`, `rebuild the engine (tsrt build MODEL.onnx -o ${this.file})`);
  }
}
