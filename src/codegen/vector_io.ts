// Packed vector loads and stores of `vec` contiguous elements as 32-bit words (one 4-, 8- or 16-byte access), for
// the memory-bound kernels whose threads own a short contiguous run of elements (channels-last pooling, Relayout).
// The words are unpacked with bit casts, so each lane goes through the same load()/store() conversion as the scalar
// kernels and the results stay bit for bit the same; only the memory transactions change.
import { DTYPE_SIZE } from '../ir/tensor.js';
import type { DType } from '../ir/types.js';
import { load, store } from './kernel.js';
import type { LowerCtx } from './lower.js';

/** Element types with a packed form (their lane conversions are below). */
export const VEC_DTYPES: DType[] = ['float32', 'float16', 'bfloat16', 'int8', 'uint8'];

const WORD_TYPE: Record<number, string> = { 4: 'unsigned int', 8: 'uint2', 16: 'uint4' };
const FIELDS = ['x', 'y', 'z', 'w'];

/** Why `vec` elements of `dtype` cannot move as one packed access; empty when they can. */
export function vecAccessProblems(dtype: DType, vec: number): string[] {
  const bytes = vec * (DTYPE_SIZE[dtype] ?? 0);
  if (!VEC_DTYPES.includes(dtype)) return [`${dtype} has no packed vector form (${VEC_DTYPES.join('/')})`];
  if (!WORD_TYPE[bytes]) return [`a vector of ${vec} ${dtype} is ${bytes} bytes, not 4, 8 or 16`];
  return [];
}

/** The widest vector (elements) of `dtype`, at most 16 bytes, whose lanes divide `run` and whose bytes divide
 * `align`; 1 when none (the scalar kernel). */
export function widestVec(dtype: DType, run: number, align: number): number {
  for (let vec = 16 / (DTYPE_SIZE[dtype] ?? 16); vec >= 2; vec /= 2) {
    if (Number.isInteger(vec) && !vecAccessProblems(dtype, vec).length && run % vec === 0 && align % (vec * DTYPE_SIZE[dtype]) === 0) return vec;
  }
  return 1;
}

/** Byte alignment (a power of two, at most 16) of every buffer in `names`, from their storage offsets: arena
 * buffers and allocations are 256-byte aligned, a value placed inside another (concat in place) sits at its offset.
 * The same rule as the kernel tuner's (kernel_tuner.ts stepBuffers), so a lowered default matches its tactic. */
export function storageAlign(ctx: Pick<LowerCtx, 'storage'>, names: string[]): number {
  const lowBit = (n: number) => (n === 0 ? 16 : Math.min(16, n & -n));
  return Math.min(16, ...names.map((v) => lowBit(ctx.storage(v).offset)));
}

/** The word expression `k` of a packed value named `v` of `bytes` bytes. */
const word = (v: string, bytes: number, k: number) => (bytes === 4 ? v : `${v}.${FIELDS[k]}`);

/** Statement declaring `v` as the packed `vec` elements at pointer expression `ptr` (16-byte aligned for uint4). */
export function vecLoad(dtype: DType, vec: number, v: string, ptr: string): string {
  const W = WORD_TYPE[vec * DTYPE_SIZE[dtype]];
  return `const ${W} ${v} = *reinterpret_cast<const ${W}*>(${ptr});`;
}

/** Compute-type expression of lane `j` of packed `v`: the bits reinterpreted as the element, then load(). */
export function vecLane(dtype: DType, vec: number, v: string, j: number): string {
  const es = DTYPE_SIZE[dtype], per = 4 / es, w = word(v, vec * es, Math.floor(j / per)), sh = 8 * es * (j % per);
  const bits = sh ? `(${w} >> ${sh})` : w;
  switch (dtype) {
    case 'float32': return load(dtype, `__uint_as_float(${w})`);
    case 'float16': return load(dtype, `__ushort_as_half((unsigned short)${bits})`);
    case 'bfloat16': return load(dtype, `__ushort_as_bfloat16((unsigned short)${bits})`);
    case 'int8': return load(dtype, `(signed char)${bits}`);
    case 'uint8': return load(dtype, `(unsigned char)${bits}`);
    default: throw new Error(`vecLane: ${dtype} has no packed form`);
  }
}

/** The 32-bit words of a packed value `v` of `bytes` bytes (for code that works on the words themselves). */
export function vecWords(v: string, bytes: number): string[] { return Array.from({ length: bytes / 4 }, (_, k) => word(v, bytes, k)); }

/** Statement storing 32-bit word expressions as one packed access of 4, 8 or 16 bytes. */
export function vecStoreWords(ptr: string, words: string[]): string {
  const W = WORD_TYPE[words.length * 4];
  return `*reinterpret_cast<${W}*>(${ptr}) = ${words.length === 1 ? words[0] : `make_${W}(${words.join(', ')})`};`;
}

/** 32-bit unsigned bits of the stored element for compute-type expression `e`, placed at lane `j % per`. */
function laneBits(dtype: DType, e: string, j: number): string {
  const es = DTYPE_SIZE[dtype], sh = 8 * es * (j % (4 / es)), s = store(dtype, e);
  const bits = dtype === 'float32' ? `__float_as_uint(${s})`
    : dtype === 'float16' ? `(unsigned int)__half_as_ushort(${s})`
      : dtype === 'bfloat16' ? `(unsigned int)__bfloat16_as_ushort(${s})`
        : `(unsigned int)(unsigned char)(${s})`;
  return sh ? `(${bits} << ${sh})` : bits;
}

/** Statement storing lanes `es` (compute-type expressions, each converted with store()) as one packed access. */
export function vecStore(dtype: DType, ptr: string, lanes: string[]): string {
  const es = DTYPE_SIZE[dtype], per = 4 / es, bytes = lanes.length * es;
  return vecStoreWords(ptr, Array.from({ length: bytes / 4 }, (_, k) => lanes.slice(k * per, (k + 1) * per).map((e, j) => laneBits(dtype, e, j)).join(' | ')));
}
