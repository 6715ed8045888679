// Deterministic protobuf-aware mutations of ONNX model bytes for the importer fuzz test (test/fuzz.test.ts):
// raw byte flips and truncation, plus edits that keep the wire format valid so decoding succeeds and the
// importer's own checks are exercised: varints set to extreme values (dims of 2^40, negative counts), length
// prefixes corrupted, fields duplicated, deleted or moved, nested deep inside the message tree.

/** mulberry32 (test/helpers.ts): small, fast, and the same sequence on every machine. */
export { rng as prng } from '../helpers.js';

interface Field { tag: number; wire: number; varint?: bigint; bytes?: Uint8Array }

function readVarint(b: Uint8Array, pos: number): [bigint, number] | undefined {
  let v = 0n, shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos >= b.length) return undefined;
    const x = b[pos++];
    v |= BigInt(x & 0x7f) << shift;
    if (!(x & 0x80)) return [v, pos];
    shift += 7n;
  }
  return undefined;
}

function writeVarint(out: number[], v: bigint): void {
  v = BigInt.asUintN(64, v);
  do {
    let x = Number(v & 0x7fn);
    v >>= 7n;
    if (v) x |= 0x80;
    out.push(x);
  } while (v);
}

/** Splits a message into fields; undefined when the bytes are not a well-formed message. */
export function parseFields(b: Uint8Array): Field[] | undefined {
  const fields: Field[] = [];
  let pos = 0;
  while (pos < b.length) {
    const k = readVarint(b, pos);
    if (!k) return undefined;
    const key = k[0]; pos = k[1];
    const tag = Number(key >> 3n), wire = Number(key & 7n);
    if (tag === 0) return undefined;
    if (wire === 0) {
      const v = readVarint(b, pos);
      if (!v) return undefined;
      fields.push({ tag, wire, varint: v[0] }); pos = v[1];
    } else if (wire === 2) {
      const l = readVarint(b, pos);
      if (!l || l[1] + Number(l[0]) > b.length) return undefined;
      pos = l[1];
      fields.push({ tag, wire, bytes: b.subarray(pos, pos + Number(l[0])) });
      pos += Number(l[0]);
    } else if (wire === 5 || wire === 1) {
      const n = wire === 5 ? 4 : 8;
      if (pos + n > b.length) return undefined;
      fields.push({ tag, wire, bytes: b.subarray(pos, pos + n) }); pos += n;
    } else return undefined;
  }
  return fields;
}

/** Concatenates header bytes and payloads (payloads can be megabytes: no argument spreading). */
function concat(parts: (number[] | Uint8Array)[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/** Encodes fields; `lengthOf` may lie about a length prefix (the 'length' mutation). */
export function encodeFields(fields: Field[], lengthOf: (f: Field) => bigint = (f) => BigInt(f.bytes!.length)): Uint8Array {
  const parts: (number[] | Uint8Array)[] = [];
  for (const f of fields) {
    const head: number[] = [];
    writeVarint(head, BigInt(f.tag) << 3n | BigInt(f.wire));
    if (f.wire === 0) writeVarint(head, f.varint!);
    else if (f.wire === 2) writeVarint(head, lengthOf(f));
    parts.push(head);
    if (f.wire !== 0) parts.push(f.bytes!);
  }
  return concat(parts);
}

const EXTREME = [0n, 1n, 2n, 7n, 16n, 255n, 1n << 31n, (1n << 32n) - 1n, 1n << 40n, (1n << 63n) - 1n, -1n, -2n, -(1n << 40n)];

export const MUTATIONS = ['flip', 'truncate', 'varint', 'length', 'duplicate', 'delete', 'move', 'splice'] as const;
export type Mutation = typeof MUTATIONS[number];

/** Applies one mutation of the given kind (structural kinds pick a random message in the tree). */
export function mutate(src: Uint8Array, kind: Mutation, rnd: () => number): Uint8Array {
  const int = (n: number) => Math.floor(rnd() * n);
  switch (kind) {
    case 'flip': {
      const b = Uint8Array.from(src);
      const n = 1 + int(8);
      for (let i = 0; i < n; i++) b[int(b.length)] = rnd() < 0.5 ? b[int(b.length)] ^ (1 << int(8)) : int(256);
      return b;
    }
    case 'truncate': return src.slice(0, int(src.length));
    case 'splice': {
      // a copy of one region pasted over another: plausible-looking garbage
      const b = Uint8Array.from(src);
      const len = 1 + int(Math.min(64, b.length));
      b.set(src.subarray(int(b.length - len + 1)).subarray(0, len), int(b.length - len + 1));
      return b;
    }
    default: return mutateTree(src, kind, rnd, 0) ?? src.slice(0, int(src.length));
  }
}

function mutateTree(b: Uint8Array, kind: Mutation, rnd: () => number, depth: number): Uint8Array | undefined {
  const fields = parseFields(b);
  if (!fields || !fields.length) return undefined;
  const int = (n: number) => Math.floor(rnd() * n);
  // descend into a nested message most of the time, so deep fields (dims, attributes, subgraphs) get hit
  const nested = fields.map((f, i) => [f, i] as const).filter(([f]) => f.wire === 2 && f.bytes!.length > 1 && parseFields(f.bytes!));
  if (nested.length && rnd() < 0.7 && depth < 12) {
    const [f, i] = nested[int(nested.length)];
    const inner = mutateTree(f.bytes!, kind, rnd, depth + 1);
    if (inner) { fields[i] = { ...f, bytes: inner }; return encodeFields(fields); }
  }
  const i = int(fields.length);
  switch (kind) {
    case 'varint': {
      const vs = fields.map((f, k) => [f, k] as const).filter(([f]) => f.wire === 0);
      if (!vs.length) return undefined;
      const [f, k] = vs[int(vs.length)];
      fields[k] = { ...f, varint: EXTREME[int(EXTREME.length)] };
      return encodeFields(fields);
    }
    case 'length': {
      // re-encode, then overwrite one length prefix so it overruns or underruns its message
      const ls = fields.filter((f) => f.wire === 2);
      if (!ls.length) return undefined;
      const target = ls[int(ls.length)];
      const lie = [0n, 1n, BigInt(target.bytes!.length + 1 + int(100)), 1n << 40n][int(4)];
      return encodeFields(fields, (f) => (f === target ? lie : BigInt(f.bytes!.length)));
    }
    case 'duplicate': fields.splice(i, 0, fields[i]); return encodeFields(fields);
    case 'delete': fields.splice(i, 1); return encodeFields(fields);
    case 'move': { const [f] = fields.splice(i, 1); fields.splice(int(fields.length + 1), 0, f); return encodeFields(fields); }
    default: return undefined;
  }
}
