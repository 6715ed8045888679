// Host tensors: allocation, dtype tables, conversion to and from float64 for the CPU reference.
import type { DType, Dim, Tensor, TypedArray } from './types.js';

export const DTYPE_SIZE: Record<DType, number> = {
  float32: 4, float16: 2, bfloat16: 2, float64: 8, int8: 1, uint8: 1, int16: 2, uint16: 2,
  int32: 4, uint32: 4, int64: 8, uint64: 8, bool: 1, string: 0,
};

/** ONNX TensorProto.DataType codes. */
export const ONNX_DTYPE: Record<number, DType> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string',
  9: 'bool', 10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 16: 'bfloat16',
};
export const DTYPE_ONNX: Record<DType, number> = Object.fromEntries(
  Object.entries(ONNX_DTYPE).map(([k, v]) => [v, Number(k)])) as Record<DType, number>;

export const isFloat = (d: DType) => d === 'float32' || d === 'float16' || d === 'bfloat16' || d === 'float64';
export const isInt = (d: DType) => !isFloat(d) && d !== 'bool' && d !== 'string';
export const isUnsigned = (d: DType) => d === 'uint8' || d === 'uint16' || d === 'uint32' || d === 'uint64';

export function size(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** Number of elements of a shape whose dims are all known; undefined otherwise. */
export function staticSize(shape: readonly Dim[]): number | undefined {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number') return undefined;
    n *= d;
  }
  return n;
}

export function strides(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length);
  let acc = 1;
  for (let i = dims.length - 1; i >= 0; i--) { s[i] = acc; acc *= dims[i]; }
  return s;
}

export function allocData(dtype: DType, n: number): TypedArray | string[] {
  switch (dtype) {
    case 'float32': return new Float32Array(n);
    case 'float64': return new Float64Array(n);
    case 'float16': case 'bfloat16': case 'uint16': return new Uint16Array(n);
    case 'int8': return new Int8Array(n);
    case 'uint8': case 'bool': return new Uint8Array(n);
    case 'int16': return new Int16Array(n);
    case 'int32': return new Int32Array(n);
    case 'uint32': return new Uint32Array(n);
    case 'int64': return new BigInt64Array(n);
    case 'uint64': return new BigUint64Array(n);
    case 'string': return new Array<string>(n).fill('');
  }
}

export function makeTensor(dtype: DType, dims: number[], data?: TypedArray | string[]): Tensor {
  const n = size(dims);
  const d = data ?? allocData(dtype, n);
  if (d.length !== n) throw new Error(`tensor data has ${d.length} elements, shape [${dims}] needs ${n}`);
  return { dtype, dims: [...dims], data: d };
}

// ---- float16 / bfloat16 bit conversion (round to nearest even) ----
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f32ToF16Bits(v: number): number {
  f32[0] = v;
  return f32BitsToF16Bits(u32[0]);
}

/** float32 -> float16 (round to nearest even) over a whole array, reading the float32 bits in place (no float64
 * round trip: the fp16 pass converts every weight of a model). */
export function f32ArrayToF16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16Bits(bits[i]);
  return out;
}

function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

/** All 65536 fp16 values as float32, built on first use: converting fp16 weights (ResNet-50: 25M) element by element
 * with pow() took seconds of every fp16 build. */
let F16_TABLE: Float32Array | undefined;

function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = f16BitsToF32Slow(h);
  }
  return F16_TABLE;
}

export function f16BitsToF32(h: number): number {
  return f16Table()[h & 0xffff];
}

function f16BitsToF32Slow(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function f32ToBf16Bits(v: number): number {
  f32[0] = v;
  const x = u32[0];
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff)) return (x >>> 16) | 0x40;
  const rounded = x + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

/** Element values as float64 (int64 beyond 2^53 loses precision; the CPU reference accepts that). */
export function toF64(t: Tensor): Float64Array {
  const d = t.data;
  const n = d.length;
  const out = new Float64Array(n);
  if (t.dtype === 'float16') { const tab = f16Table(); for (let i = 0; i < n; i++) out[i] = tab[(d as Uint16Array)[i]]; }
  else if (t.dtype === 'bfloat16') { for (let i = 0; i < n; i++) out[i] = bf16BitsToF32((d as Uint16Array)[i]); }
  else if (t.dtype === 'int64' || t.dtype === 'uint64') { for (let i = 0; i < n; i++) out[i] = Number((d as BigInt64Array)[i]); }
  else if (t.dtype === 'string') throw new Error('string tensors have no numeric value');
  else out.set(d as ArrayLike<number>);
  return out;
}

/** Float32 view of a float tensor; copies unless it already is float32. */
export function toF32(t: Tensor): Float32Array {
  if (t.dtype === 'float32') return t.data as Float32Array;
  return Float32Array.from(toF64(t));
}

function clampBig(v: number, lo: bigint, hi: bigint): bigint {
  if (Number.isNaN(v)) return 0n;
  if (v >= Number(hi)) return hi;
  if (v <= Number(lo)) return lo;
  return BigInt(Math.trunc(v));
}

/** Build a tensor of dtype from float64 values: floats round, integers truncate toward zero and wrap like C casts. */
export function fromF64(dtype: DType, dims: number[], v: ArrayLike<number>): Tensor {
  const n = v.length;
  const t = makeTensor(dtype, dims);
  const d = t.data;
  switch (dtype) {
    case 'float16': for (let i = 0; i < n; i++) (d as Uint16Array)[i] = f32ToF16Bits(v[i]); break;
    case 'bfloat16': for (let i = 0; i < n; i++) (d as Uint16Array)[i] = f32ToBf16Bits(v[i]); break;
    case 'int64': for (let i = 0; i < n; i++) (d as BigInt64Array)[i] = clampBig(v[i], -(2n ** 63n), 2n ** 63n - 1n); break;
    case 'uint64': for (let i = 0; i < n; i++) (d as BigUint64Array)[i] = clampBig(v[i], 0n, 2n ** 64n - 1n); break;
    case 'bool': for (let i = 0; i < n; i++) (d as Uint8Array)[i] = v[i] ? 1 : 0; break;
    case 'float32': case 'float64': (d as Float32Array).set(v); break;
    case 'string': throw new Error('cannot build a string tensor from numbers');
    default:
      // Integer typed arrays wrap modulo 2^k on assignment, but NaN/Inf become 0; truncate first.
      for (let i = 0; i < n; i++) { const x = v[i]; (d as Int32Array)[i] = Number.isFinite(x) ? Math.trunc(x) : 0; }
  }
  return t;
}

export function scalar(dtype: DType, value: number): Tensor {
  return fromF64(dtype, [], [value]);
}

/** Integer values of a 1-D (or scalar) int tensor, e.g. a shape or axes input. */
export function toInts(t: Tensor): number[] {
  return Array.from(toF64(t));
}

export function shapeStr(shape: readonly Dim[]): string {
  return `[${shape.join(',')}]`;
}

export function cloneTensor(t: Tensor): Tensor {
  const d = Array.isArray(t.data) ? [...t.data] : (t.data as TypedArray).slice();
  return { dtype: t.dtype, dims: [...t.dims], data: d };
}
