// Reading and writing tensors for the CLI: ONNX TensorProto (.pb), NumPy (.npy), and seeded random data.
import { readFileSync, writeFileSync } from 'node:fs';
import { ModelLoadError } from '../errors.js';
import { loadTensorFile } from '../onnx/import.js';
import { DTYPE_SIZE, fromF64, size, toF64 } from '../ir/tensor.js';
import type { DType, Tensor, ValueInfo } from '../ir/types.js';

const NPY_DTYPES: Record<string, DType> = {
  '<f4': 'float32', '<f2': 'float16', '<f8': 'float64', '|i1': 'int8', '|u1': 'uint8', '<i2': 'int16', '<u2': 'uint16',
  '<i4': 'int32', '<u4': 'uint32', '<i8': 'int64', '<u8': 'uint64', '|b1': 'bool',
};

export function readNpy(path: string): Tensor {
  const b = readFileSync(path);
  if (b.length < 10 || b.toString('latin1', 1, 6) !== 'NUMPY') throw new ModelLoadError(path, 'not a .npy file (bad magic)', 'save arrays with numpy.save');
  const major = b[6];
  const hstart = major >= 2 ? 12 : 10;
  if (b.length < hstart) throw new ModelLoadError(path, '.npy header is truncated', 'the file is truncated');
  const hlen = major >= 2 ? b.readUInt32LE(8) : b.readUInt16LE(8);
  const header = b.toString('latin1', hstart, hstart + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? '').split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const dtype = descr ? NPY_DTYPES[descr] : undefined;
  if (!dtype) throw new ModelLoadError(path, `unsupported .npy dtype ${descr}`, 'use little-endian float32/16/64 or (u)int8-64/bool');
  if (fortran) throw new ModelLoadError(path, 'Fortran-order arrays are not supported', 'save with np.ascontiguousarray');
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new ModelLoadError(path, `.npy header has an invalid shape (${shape})`, 'the file is corrupt');
  const start = hstart + hlen;
  const bytes = b.subarray(start);
  // check against the bytes present before allocating: a corrupt header can claim any size
  const need = size(shape) * DTYPE_SIZE[dtype];
  if (bytes.length < need) throw new ModelLoadError(path, `.npy data has ${bytes.length} bytes, shape [${shape}] needs ${need}`, 'the file is truncated');
  const t = fromF64(dtype, shape, new Float64Array(size(shape)));
  const dst = new Uint8Array((t.data as Uint8Array).buffer);
  dst.set(bytes.subarray(0, dst.length));
  return t;
}

export function writeNpy(path: string, t: Tensor): void {
  const descr = Object.entries(NPY_DTYPES).find(([, d]) => d === t.dtype)?.[0];
  if (!descr || t.dtype === 'bfloat16') throw new Error(`cannot write ${t.dtype} as .npy`);
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${t.dims.join(', ')}${t.dims.length === 1 ? ',' : ''}), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const h = Buffer.alloc(10);
  h.write('\x93NUMPY', 0, 'latin1'); h[6] = 1; h[7] = 0; h.writeUInt16LE(header.length, 8);
  const data = t.data as Uint8Array;
  writeFileSync(path, Buffer.concat([h, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

export function readTensor(path: string): Tensor {
  return path.endsWith('.npy') ? readNpy(path) : loadTensorFile(path);
}

/** Deterministic pseudo-random data (mulberry32) for an input of the given concrete shape. */
export function randomTensor(dtype: DType, dims: number[], seed = 1, lo = -1, hi = 1): Tensor {
  let a = seed >>> 0;
  const rnd = () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  const n = size(dims);
  const v = new Float64Array(n);
  const isInt = !dtype.startsWith('float') && dtype !== 'bfloat16';
  for (let i = 0; i < n; i++) v[i] = isInt ? Math.floor(rnd() * Math.max(1, hi)) : lo + (hi - lo) * rnd();
  return fromF64(dtype, dims, v);
}

/** Parses "name:1x3x224x224,other:4x8" (trtexec's --shapes form). */
export function parseShapes(s?: string): Record<string, number[]> | undefined {
  if (!s) return undefined;
  const out: Record<string, number[]> = {};
  for (const part of s.split(',')) {
    const i = part.lastIndexOf(':');
    if (i < 0) throw new Error(`bad --shapes entry '${part}': expected name:1x3x224x224`);
    out[part.slice(0, i)] = part.slice(i + 1).split('x').map((d) => {
      const n = Number(d);
      if (!Number.isInteger(n) || n < 0) throw new Error(`bad dim '${d}' in --shapes entry '${part}'`);
      return n;
    });
  }
  return out;
}

export function parseDims(s?: string): Record<string, number> | undefined {
  if (!s) return undefined;
  return Object.fromEntries(s.split(',').map((p) => {
    const [k, v] = p.split('=');
    if (!k || !Number.isInteger(Number(v))) throw new Error(`bad --dims entry '${p}': expected name=N`);
    return [k, Number(v)];
  }));
}

/** Concrete shape of an input after --shapes/--dims (symbolic dims default to 1). */
export function concreteShape(vi: ValueInfo, shapes?: Record<string, number[]>, dims?: Record<string, number>): number[] {
  return shapes?.[vi.name] ?? vi.type.shape.map((d) => (typeof d === 'number' ? d : dims?.[d] ?? 1));
}

export function describe(t: Tensor, k = 6): string {
  const v = toF64(t);
  const head = Array.from(v.slice(0, k)).map((x) => (Number.isInteger(x) ? String(x) : x.toPrecision(5))).join(', ');
  let arg = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[arg]) arg = i;
  return `${t.dtype}[${t.dims.join(',')}] [${head}${v.length > k ? ', ...' : ''}]${v.length > 1 ? ` argmax=${arg}` : ''}`;
}

/** Accuracy of `got` against `ref`: max abs error, output range, cosine similarity, argmax agreement per row. */
export function accuracy(got: Tensor, ref: Tensor): { maxAbs: number; range: number; cosine: number; argmaxMatch: boolean } {
  const a = toF64(got), b = toF64(ref);
  let maxAbs = 0, lo = Infinity, hi = -Infinity, dot = 0, na = 0, nb = 0;
  for (let i = 0; i < b.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
    lo = Math.min(lo, b[i]); hi = Math.max(hi, b[i]);
    dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i];
  }
  const row = ref.dims.length ? ref.dims[ref.dims.length - 1] : 1;
  let argmaxMatch = a.length === b.length;
  for (let r = 0; argmaxMatch && r < b.length; r += row) {
    let ia = r, ib = r;
    for (let i = r; i < r + row; i++) { if (a[i] > a[ia]) ia = i; if (b[i] > b[ib]) ib = i; }
    argmaxMatch = ia === ib;
  }
  return { maxAbs, range: Math.max(hi - lo, 1e-30), cosine: dot / Math.sqrt(na * nb || 1e-30), argmaxMatch };
}
