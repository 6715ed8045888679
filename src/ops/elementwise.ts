// Elementwise ops: unary math and activations, binary arithmetic with numpy broadcasting, comparisons and logic,
// variadic Max/Min/Sum/Mean, Where, Clip, Cast/CastLike, Identity and Dropout.
// CPU kernels compute on plain numbers (BigInt for int64/uint64 so 64-bit integer arithmetic wraps exactly) and
// store each result straight into the output's typed array: the store rounds float32 and wraps integers like a
// C cast. float16/bfloat16 go through float64 and are rounded once at the end.
// One file for the whole family (over the usual ~600 lines): the kernels, op tables and legacy upgrades share
// the dtype and broadcast helpers below.
import { GraphError, UnsupportedError } from '../errors.js';
import type { DType, Dim, Node, Tensor, TensorType, TypedArray } from '../ir/types.js';
import { ONNX_DTYPE, allocData, fromF64, isFloat, isInt, isUnsigned, makeTensor, size, strides, toF64 } from '../ir/tensor.js';
import { attrFloat, attrInt, attrString, withoutAttrs } from './attrs.js';
import { register, type OpDef, type PrecisionPolicy, type UpgradeCtx } from './registry.js';
import { broadcastIndex, broadcastShapes, need } from './util.js';

// ---------------------------------------------------------------------------------------------------------
// dtype classes and number views

type NumArr = { [i: number]: number; readonly length: number };
type NumFn = (a: number, b: number) => number;
type BigFn = (a: bigint, b: bigint) => bigint | number;

const is64 = (d: DType) => d === 'int64' || d === 'uint64';
const isHalf = (d: DType) => d === 'float16' || d === 'bfloat16';
const INT_BITS: Partial<Record<DType, number>> = { int8: 8, uint8: 8, int16: 16, uint16: 16, int32: 32, uint32: 32, int64: 64, uint64: 64 };

/** Input type classes, with the word used in error messages. */
const T = {
  float: { ok: isFloat, what: 'float' },
  num: { ok: (d: DType) => isFloat(d) || isInt(d), what: 'numeric' },
  signed: { ok: (d: DType) => isFloat(d) || (isInt(d) && !isUnsigned(d)), what: 'float or signed integer' },
  uint: { ok: isUnsigned, what: 'unsigned integer' },
  bool: { ok: (d: DType) => d === 'bool', what: 'bool' },
  any: { ok: (_d: DType) => true, what: 'any' },
} as const;
type TypeClass = (typeof T)[keyof typeof T];

function checkType(node: Node, t: TensorType | undefined, cls: TypeClass, which = 'input'): void {
  if (t && !cls.ok(t.dtype)) {
    throw new GraphError(`${node.op} does not accept a ${t.dtype} ${which}; it takes ${cls.what} tensors`, node.name,
      `insert a Cast to a ${cls.what} type before this node`);
  }
}

function checkSameType(node: Node, ts: (TensorType | undefined)[]): void {
  const present = ts.filter((t): t is TensorType => !!t);
  const bad = present.find((t) => t.dtype !== present[0].dtype);
  if (bad) {
    throw new GraphError(`${node.op} inputs have different types (${present.map((t) => t.dtype).join(', ')})`, node.name,
      'insert a Cast so all inputs have the same element type');
  }
}

/** Element values as numbers: the typed array itself where it holds plain numbers, else a float64 copy. */
function numView(t: Tensor): NumArr {
  if (t.dtype === 'string') throw new GraphError('string tensors have no numeric value');
  if (isHalf(t.dtype) || is64(t.dtype)) return toF64(t);
  return t.data as unknown as NumArr;
}

/** Output buffer that numbers can be stored into for dtype: the final typed array, or float64 for half/64-bit. */
function numOut(dtype: DType, n: number): NumArr {
  if (isHalf(dtype) || is64(dtype)) return new Float64Array(n);
  return allocData(dtype, n) as unknown as NumArr;
}

function finish(dtype: DType, dims: number[], out: NumArr): Tensor {
  if (isHalf(dtype) || is64(dtype)) return fromF64(dtype, dims, out);
  return makeTensor(dtype, dims, out as unknown as TypedArray);
}

const sameDims = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Strides of `dims` as seen from a broadcast output of shape `outDims` (0 along broadcast dims). */
function bstrides(dims: readonly number[], outDims: readonly number[]): number[] {
  const rank = outDims.length, st = strides(dims), out = new Array<number>(rank).fill(0);
  for (let i = 0; i < dims.length; i++) if (dims[i] !== 1) out[i + rank - dims.length] = st[i];
  return out;
}

/** Scalar value of a 0-D or one-element tensor (Clip bounds, Dropout ratio). */
function scalarOf(node: Node, t: Tensor, what: string): number | bigint {
  if (t.data.length !== 1) {
    throw new GraphError(`${what} must be a scalar, got shape [${t.dims}]`, node.name, `pass a 0-D ${what} tensor`);
  }
  return is64(t.dtype) ? (t.data as BigInt64Array)[0] : numView(t)[0];
}

// ---------------------------------------------------------------------------------------------------------
// scalar math

/** erf to about 1e-15: its Taylor series near 0, the erfc continued fraction in the tails. */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  let r: number;
  if (ax < 2.5) {
    const x2 = ax * ax;
    let term = ax, sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * sum) break;
    }
    r = sum * 1.1283791670955126; // 2/sqrt(pi)
  } else if (ax < 6) {
    // erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))), evaluated from the tail
    let f = ax;
    for (let k = 80; k >= 1; k--) f = ax + k / 2 / f;
    r = 1 - Math.exp(-x * x) / 1.7724538509055159 / f;
  } else r = 1;
  return x < 0 ? -r : r;
}

/** Round half to even (ONNX Round, numpy.round). */
export function roundEven(x: number): number {
  const f = Math.floor(x), d = x - f;
  const r = d < 0.5 ? f : d > 0.5 ? f + 1 : f % 2 === 0 ? f : f + 1;
  return r === 0 && x < 0 ? -0 : r;
}

const sigmoid = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));
const softplus = (x: number) => (x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x)));
const sign = (x: number) => (x > 0 ? 1 : x < 0 ? -1 : x);
/** C pow: numpy gives 1 for 1**y and x**0 even with NaN; JS Math.pow does not for 1**NaN, (-1)**Inf. */
const powf = (a: number, b: number) => (a === 1 || b === 0 ? 1 : a === -1 && !Number.isFinite(b) && !Number.isNaN(b) ? 1 : Math.pow(a, b));
/** Max/Min propagate NaN like numpy.maximum/minimum. */
const maxf = (a: number, b: number) => (a !== a || a > b ? a : b);
const minf = (a: number, b: number) => (a !== a || a < b ? a : b);
/** numpy mod for integers (sign of the divisor); x mod 0 is 0 as in numpy. */
const pyMod = (a: number, b: number) => { if (b === 0) return 0; const r = a % b; return r !== 0 && (r < 0) !== (b < 0) ? r + b : r; };
const fmodf = (a: number, b: number) => a % b;
const fmodi = (a: number, b: number) => (b === 0 ? 0 : a % b);
const mul = (a: number, b: number) => a * b;
const div = (a: number, b: number) => a / b;
/** Integer division truncates toward zero; division by zero gives 0 (numpy's result) instead of a trap. */
const idiv = (a: number, b: number) => (b === 0 ? 0 : Math.trunc(a / b));
const powTrunc = (a: number, b: number) => Math.trunc(powf(a, b));
/** Unsigned shifts by width: left shifts wrap, shifting by the width or more gives 0. */
const SHL: Record<number, NumFn> = {
  8: (a, b) => (b >= 8 ? 0 : (a << b) & 0xff), 16: (a, b) => (b >= 16 ? 0 : (a << b) & 0xffff), 32: (a, b) => (b >= 32 ? 0 : (a << b) >>> 0),
};
const SHR: Record<number, NumFn> = {
  8: (a, b) => (b >= 8 ? 0 : a >>> b), 16: (a, b) => (b >= 16 ? 0 : a >>> b), 32: (a, b) => (b >= 32 ? 0 : a >>> b),
};

/** Integer power with wrap-around at the dtype's width; negative exponents truncate 1/x^n toward zero. */
function ipow(base: bigint, e: bigint, wrap: (v: bigint) => bigint): bigint {
  if (e < 0n) return base === 1n ? 1n : base === -1n ? (e % 2n ? -1n : 1n) : 0n;
  let r = 1n;
  let b = wrap(base);
  while (e > 0n) {
    if (e & 1n) r = wrap(r * b);
    b = wrap(b * b);
    e >>= 1n;
  }
  return r;
}

function wrapper(dt: DType): (v: bigint) => bigint {
  const bits = INT_BITS[dt] ?? 64;
  return isUnsigned(dt) ? (v) => BigInt.asUintN(bits, v) : (v) => BigInt.asIntN(bits, v);
}

// ---------------------------------------------------------------------------------------------------------
// per-op loop copies

type UnaryLoop = (fn: (x: number, p0: number, p1: number) => number, v: NumArr, out: NumArr, n: number, p0: number, p1: number) => void;
type RowLoop = (fn: NumFn, a: NumArr, ao: number, ia: number, b: NumArr, bo: number, ib: number, out: NumArr, oo: number, len: number) => void;

/** A fresh copy of a loop for one op. V8 keeps call-site feedback per function: one loop shared by every op
 * sees many `fn`s, cannot inline them and boxes each float result (5-20x slower on a 224x224 activation);
 * a copy per op keeps its call site monomorphic, so `fn` is inlined. The op name goes into the source because
 * V8 caches `new Function` by source text, and identical copies would share their feedback again. */
const loopCopy = <F>(op: string, params: string[], body: string): F => new Function(...params, `${body} // ${op}`) as F;
const unaryLoop = (op: string) => loopCopy<UnaryLoop>(op, ['fn', 'v', 'out', 'n', 'p0', 'p1'], 'for (let i = 0; i < n; i++) out[i] = fn(v[i], p0, p1);');
const rowLoop = (op: string) => loopCopy<RowLoop>(op, ['fn', 'a', 'ao', 'ia', 'b', 'bo', 'ib', 'out', 'oo', 'len'],
  'for (let i = 0; i < len; i++) out[oo + i] = fn(a[ao + i * ia], b[bo + i * ib]);');

// ---------------------------------------------------------------------------------------------------------
// broadcast kernels

// Codes for row loops that skip the per-element call (the ops whose JS expression is exact for the dtype).
const CALL = 0, ADD = 1, SUB = 2, MUL = 3, DIV = 4;

function row(code: number, fn: NumFn, call: RowLoop, a: NumArr, ao: number, ia: number, b: NumArr, bo: number, ib: number,
  out: NumArr, oo: number, len: number): void {
  switch (code) {
    case ADD: for (let i = 0; i < len; i++) out[oo + i] = a[ao + i * ia] + b[bo + i * ib]; return;
    case SUB: for (let i = 0; i < len; i++) out[oo + i] = a[ao + i * ia] - b[bo + i * ib]; return;
    case MUL: for (let i = 0; i < len; i++) out[oo + i] = a[ao + i * ia] * b[bo + i * ib]; return;
    case DIV: for (let i = 0; i < len; i++) out[oo + i] = a[ao + i * ia] / b[bo + i * ib]; return;
    default: call(fn, a, ao, ia, b, bo, ib, out, oo, len);
  }
}

/** out[i] = fn(a, b) over the numpy broadcast of a and b to outDims, one innermost row at a time. `call` is the
 * op's own row loop (see loopCopy); codes ADD..DIV skip the call. */
function binaryLoop(a: NumArr, aDims: number[], b: NumArr, bDims: number[], outDims: number[], out: NumArr,
  fn: NumFn, code: number, call: RowLoop): void {
  const n = out.length;
  if (!n) return;
  const aFull = sameDims(aDims, outDims), bFull = sameDims(bDims, outDims);
  if (aFull && bFull) return row(code, fn, call, a, 0, 1, b, 0, 1, out, 0, n);
  if (aFull && b.length === 1) return row(code, fn, call, a, 0, 1, b, 0, 0, out, 0, n);
  if (bFull && a.length === 1) return row(code, fn, call, a, 0, 0, b, 0, 1, out, 0, n);
  const rank = outDims.length, len = outDims[rank - 1];
  const sa = bstrides(aDims, outDims), sb = bstrides(bDims, outDims);
  const ctr = new Array<number>(rank).fill(0);
  let ao = 0, bo = 0;
  for (let o = 0; o < n; o += len) {
    row(code, fn, call, a, ao, sa[rank - 1], b, bo, sb[rank - 1], out, o, len);
    for (let d = rank - 2; d >= 0; d--) {
      ao += sa[d]; bo += sb[d];
      if (++ctr[d] < outDims[d]) break;
      ao -= sa[d] * ctr[d]; bo -= sb[d] * ctr[d]; ctr[d] = 0;
    }
  }
}

/** A broadcasting binary op: per-dtype kernels and the input type class. */
interface Binary {
  op: string;
  since: number;
  precision: PrecisionPolicy;
  types: TypeClass;
  /** Comparisons and logic produce bool. */
  bool?: boolean;
  num(dt: DType, node: Node): { fn: NumFn; code?: number };
  /** Exact kernel for int64/uint64 (otherwise they go through float64). */
  big?(dt: DType, node: Node): BigFn;
  /** String kernel (Equal). */
  str?(a: string, b: string): number;
  check?(node: Node, dt: DType): void;
  supports?(node: Node): string | undefined;
  /** This op's row loop, made on first use. */
  loop?: RowLoop;
}

function binaryCompute(spec: Binary, node: Node, x: Tensor, y: Tensor): Tensor {
  const dims = broadcastShapes([x.dims, y.dims], node) as number[];
  const dt = x.dtype, outDt: DType = spec.bool ? 'bool' : dt;
  if (y.dtype !== dt) checkSameType(node, [{ dtype: dt, shape: [] }, { dtype: y.dtype, shape: [] }]);
  spec.check?.(node, dt);
  const n = size(dims);
  if (dt === 'string' || (is64(dt) && spec.big)) {
    const ia = broadcastIndex(x.dims, dims), ib = broadcastIndex(y.dims, dims);
    const out = allocData(outDt, n) as unknown as (bigint | number)[];
    const xa = x.data as unknown as ArrayLike<never>, ya = y.data as unknown as ArrayLike<never>;
    const fn = (dt === 'string' ? spec.str : spec.big?.(dt, node)) as ((a: unknown, b: unknown) => bigint | number) | undefined;
    if (!fn) throw new GraphError(`${node.op} does not accept string inputs`, node.name);
    for (let i = 0; i < n; i++) out[i] = fn(xa[ia[i]], ya[ib[i]]);
    return makeTensor(outDt, dims, out as unknown as TypedArray);
  }
  const { fn, code } = spec.num(dt, node);
  const out = numOut(outDt, n);
  binaryLoop(numView(x), x.dims, numView(y), y.dims, dims, out, fn, code ?? CALL, spec.loop ??= rowLoop(spec.op));
  return finish(outDt, dims, out);
}

function inferBinary(spec: Binary, node: Node, ins: (TensorType | undefined)[]): TensorType[] {
  const a = need(node, ins, 0), b = need(node, ins, 1);
  checkType(node, a, spec.types);
  checkSameType(node, [a, b]);
  spec.check?.(node, a.dtype);
  return [{ dtype: spec.bool ? 'bool' : a.dtype, shape: broadcastShapes([a.shape, b.shape], node) }];
}

function binaryDef(spec: Binary): OpDef {
  return {
    op: spec.op, since: spec.since, precision: spec.precision,
    upgrade: legacyBroadcastUpgrade,
    supports: spec.supports,
    infer: (node, ins) => inferBinary(spec, node, ins),
    propagate: PROPAGATE[spec.op],
    cpu: (node, ins) => [binaryCompute(spec, node, need(node, ins, 0), need(node, ins, 1))],
  };
}

const arith = (op: string, code: number, fn: NumFn, big: BigFn): Binary => ({
  op, since: 7, precision: 'follow', types: T.num,
  num: () => ({ fn, code }), big: () => big,
});

const cmp = (op: string, fn: NumFn, big: BigFn, types: TypeClass = T.num, since = 7): Binary => ({
  op, since, precision: 'follow', types, bool: true, num: () => ({ fn }), big: () => big,
});

const BINARY: Binary[] = [
  arith('Add', ADD, (a, b) => a + b, (a, b) => a + b),
  arith('Sub', SUB, (a, b) => a - b, (a, b) => a - b),
  {
    ...arith('Mul', MUL, (a, b) => a * b, (a, b) => a * b),
    // int32 products need all 64 bits before the wrap; Math.imul keeps the low 32 exactly.
    num: (dt) => (dt === 'int32' || dt === 'uint32' ? { fn: Math.imul } : { fn: mul, code: MUL }),
  },
  {
    ...arith('Div', DIV, (a, b) => a / b, (a, b) => (b === 0n ? 0n : a / b)),
    num: (dt) => (isFloat(dt) ? { fn: div, code: DIV } : { fn: idiv }),
  },
  {
    op: 'Mod', since: 10, precision: 'follow', types: T.num,
    check: (node, dt) => {
      if (isFloat(dt) && !attrInt(node, 'fmod', 0)) {
        throw new GraphError('Mod of floating-point inputs requires fmod=1', node.name, 'set the fmod attribute to 1');
      }
    },
    num: (dt, node) => ({ fn: attrInt(node, 'fmod', 0) ? (isFloat(dt) ? fmodf : fmodi) : pyMod }),
    big: (_dt, node) => {
      const fmod = attrInt(node, 'fmod', 0);
      return (a, b) => {
        if (b === 0n) return 0n;
        const r = a % b;
        return !fmod && r !== 0n && (r < 0n) !== (b < 0n) ? r + b : r;
      };
    },
  },
  {
    op: 'BitShift', since: 11, precision: 'follow', types: T.uint,
    supports: (node) => {
      const d = attrString(node, 'direction', '');
      return d === 'LEFT' || d === 'RIGHT' ? undefined : `BitShift direction must be LEFT or RIGHT, got '${d}'`;
    },
    num: (dt, node) => ({ fn: attrString(node, 'direction', '') === 'LEFT' ? SHL[INT_BITS[dt]!] : SHR[INT_BITS[dt]!] }),
    big: (_dt, node) => (attrString(node, 'direction', '') === 'LEFT'
      ? (a, b) => (b >= 64n ? 0n : a << b)
      : (a, b) => (b >= 64n ? 0n : a >> b)),
  },
  cmp('Equal', (a, b) => (a === b ? 1 : 0), (a, b) => (a === b ? 1 : 0), T.any),
  cmp('Less', (a, b) => (a < b ? 1 : 0), (a, b) => (a < b ? 1 : 0)),
  cmp('LessOrEqual', (a, b) => (a <= b ? 1 : 0), (a, b) => (a <= b ? 1 : 0), T.num, 12),
  cmp('Greater', (a, b) => (a > b ? 1 : 0), (a, b) => (a > b ? 1 : 0)),
  cmp('GreaterOrEqual', (a, b) => (a >= b ? 1 : 0), (a, b) => (a >= b ? 1 : 0), T.num, 12),
  cmp('And', (a, b) => a & b, (a, b) => Number(a & b), T.bool),
  cmp('Or', (a, b) => a | b, (a, b) => Number(a | b), T.bool),
  cmp('Xor', (a, b) => a ^ b, (a, b) => Number(a ^ b), T.bool),
];
BINARY.find((b) => b.op === 'Equal')!.str = (a, b) => (a === b ? 1 : 0);
const BIN = Object.fromEntries(BINARY.map((b) => [b.op, b])) as Record<string, Binary>;

// ---------------------------------------------------------------------------------------------------------
// unary ops

/** Element function of a unary op: one fixed function per op (so its loop can inline it), with the node's
 * numeric attributes passed as p0/p1. */
type ElemFn = (x: number, p0: number, p1: number) => number;

interface Unary {
  op: string;
  since: number;
  precision: PrecisionPolicy;
  types: TypeClass;
  out?: DType;
  fn: ElemFn;
  /** The node's attributes as fn's p0, p1. */
  params?(node: Node): [number, number?];
  big?: (x: bigint) => bigint;
  supports?(node: Node): string | undefined;
}

function unaryCompute(x: Tensor, outDt: DType, fn: ElemFn, loop: UnaryLoop, p0 = 0, p1 = 0): Tensor {
  const v = numView(x), n = v.length, out = numOut(outDt, n);
  loop(fn, v, out, n, p0, p1);
  return finish(outDt, x.dims, out);
}

function unaryDef(u: Unary): OpDef {
  const loop = unaryLoop(u.op);
  return {
    op: u.op, since: u.since, precision: u.precision,
    upgrade: dropConsumedInputs,
    supports: u.supports,
    infer: (node, ins) => {
      const x = need(node, ins, 0);
      checkType(node, x, u.types);
      return [{ dtype: u.out ?? x.dtype, shape: [...x.shape] }];
    },
    cpu: (node, ins) => {
      const x = need(node, ins, 0);
      if (u.big && is64(x.dtype)) {
        const src = x.data as BigInt64Array, out = allocData(x.dtype, src.length) as BigInt64Array;
        for (let i = 0; i < src.length; i++) out[i] = u.big(src[i]);
        return [makeTensor(x.dtype, x.dims, out)];
      }
      const [p0, p1] = u.params?.(node) ?? [0, 0];
      return [unaryCompute(x, u.out ?? x.dtype, u.fn, loop, p0, p1 ?? 0)];
    },
  };
}

/** A float-only op: math with a fixed function, or an activation whose attributes arrive as p0/p1. */
const math = (op: string, fn: ElemFn, since = 6, precision: PrecisionPolicy = 'follow', params?: Unary['params']): Unary =>
  ({ op, since, precision, types: T.float, fn, params });
const act = (op: string, since: number, params: Unary['params'], fn: ElemFn): Unary => math(op, fn, since, 'follow', params);

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const relu = (x: number) => (x > 0 ? x : x === x ? 0 : x);
const gelu: ElemFn = (x, tanh) => (tanh
  ? 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
  : 0.5 * x * (1 + erf(x / Math.SQRT2)));

const UNARY: Unary[] = [
  { op: 'Abs', since: 6, precision: 'follow', types: T.num, fn: Math.abs, big: (x) => (x < 0n ? -x : x) },
  { op: 'Neg', since: 6, precision: 'follow', types: T.signed, fn: (x) => -x, big: (x) => -x },
  { op: 'Sign', since: 9, precision: 'follow', types: T.num, fn: sign, big: (x) => (x > 0n ? 1n : x < 0n ? -1n : 0n) },
  { op: 'Relu', since: 6, precision: 'follow', types: T.signed, fn: relu, big: (x) => (x > 0n ? x : 0n) },
  math('Exp', Math.exp, 6, 'never'),
  math('Log', Math.log, 6, 'never'),
  math('Sqrt', Math.sqrt),
  math('Reciprocal', (x) => 1 / x),
  math('Tanh', Math.tanh),
  math('Sigmoid', sigmoid),
  math('Erf', erf, 9),
  math('Floor', Math.floor),
  math('Ceil', Math.ceil),
  math('Round', roundEven, 11),
  math('Sin', Math.sin, 7), math('Cos', Math.cos, 7), math('Tan', Math.tan, 7),
  math('Asin', Math.asin, 7), math('Acos', Math.acos, 7), math('Atan', Math.atan, 7),
  math('Sinh', Math.sinh, 9), math('Cosh', Math.cosh, 9),
  math('Asinh', Math.asinh, 9), math('Acosh', Math.acosh, 9), math('Atanh', Math.atanh, 9),
  math('Softplus', softplus, 1),
  math('Softsign', (x) => x / (1 + Math.abs(x)), 1),
  math('Mish', (x) => x * Math.tanh(softplus(x)), 18),
  math('HardSwish', (x) => x * Math.max(0, Math.min(1, x / 6 + 0.5)), 14),
  act('LeakyRelu', 6, (n) => [attrFloat(n, 'alpha', 0.01)], (x, a) => (x < 0 ? a * x : x)),
  act('Elu', 6, (n) => [attrFloat(n, 'alpha', 1)], (x, a) => (x < 0 ? a * Math.expm1(x) : x)),
  act('Selu', 6, (n) => [attrFloat(n, 'alpha', 1.67326319217681884765625), attrFloat(n, 'gamma', 1.05070102214813232421875)],
    (x, a, g) => (x <= 0 ? g * (a * Math.exp(x) - a) : g * x)),
  act('Celu', 12, (n) => [attrFloat(n, 'alpha', 1)], (x, a) => Math.max(0, x) + Math.min(0, a * Math.expm1(x / a))),
  act('HardSigmoid', 6, (n) => [attrFloat(n, 'alpha', 0.2), attrFloat(n, 'beta', 0.5)], (x, a, b) => Math.max(0, Math.min(1, a * x + b))),
  act('ThresholdedRelu', 10, (n) => [attrFloat(n, 'alpha', 1)], (x, a) => (x > a ? x : 0)),
  {
    ...act('Gelu', 20, (n) => [attrString(n, 'approximate', 'none') === 'tanh' ? 1 : 0], gelu),
    supports: (n) => {
      const a = attrString(n, 'approximate', 'none');
      return a === 'none' || a === 'tanh' ? undefined : `Gelu approximate='${a}' is not supported (none or tanh)`;
    },
  },
  {
    op: 'Shrink', since: 9, precision: 'follow', types: T.num,
    params: (n) => [attrFloat(n, 'bias', 0), attrFloat(n, 'lambd', 0.5)],
    fn: (x, bias, l) => (x < -l ? x + bias : x > l ? x - bias : 0),
  },
  { op: 'IsNaN', since: 9, precision: 'follow', types: T.float, out: 'bool', fn: (x) => (x !== x ? 1 : 0) },
  {
    op: 'IsInf', since: 10, precision: 'follow', types: T.float, out: 'bool',
    params: (n) => [attrInt(n, 'detect_positive', 1), attrInt(n, 'detect_negative', 1)],
    fn: (x, pos, neg) => ((x === Infinity && pos) || (x === -Infinity && neg) ? 1 : 0),
  },
  { op: 'Not', since: 1, precision: 'follow', types: T.bool, fn: (x) => (x ? 0 : 1) },
];

// ---------------------------------------------------------------------------------------------------------
// variadic Max/Min/Sum/Mean

interface Variadic { op: string; types: TypeClass; pair: Binary; mean?: boolean }

const VARIADIC: Variadic[] = [
  { op: 'Max', types: T.num, pair: { ...cmp('Max', maxf, (a, b) => (a > b ? a : b)), bool: false, types: T.num } },
  { op: 'Min', types: T.num, pair: { ...cmp('Min', minf, (a, b) => (a < b ? a : b)), bool: false, types: T.num } },
  { op: 'Sum', types: T.float, pair: BIN.Add },
  { op: 'Mean', types: T.float, pair: BIN.Add, mean: true },
];

function variadicDef(v: Variadic): OpDef {
  return {
    op: v.op, since: 8, precision: 'follow',
    upgrade: dropConsumedInputs,
    propagate: PROPAGATE[v.op] && ((node, vals, ins) => PROPAGATE[v.op]!(node, vals, ins)),
    infer: (node, ins) => {
      const present = ins.filter((t): t is TensorType => !!t);
      if (!present.length) throw new GraphError(`${v.op} needs at least one input`, node.name);
      present.forEach((t) => checkType(node, t, v.types));
      checkSameType(node, present);
      return [{ dtype: present[0].dtype, shape: broadcastShapes(present.map((t) => t.shape), node) }];
    },
    cpu: (node, ins) => {
      const xs = ins.filter((t): t is Tensor => !!t);
      if (!xs.length) throw new GraphError(`${v.op} needs at least one input`, node.name);
      // Half-precision inputs accumulate in float32 so that Sum/Mean round once, at the end.
      const half = isHalf(xs[0].dtype);
      let acc = half ? castTensor(xs[0], 'float32') : xs[0];
      for (let i = 1; i < xs.length; i++) acc = binaryCompute(v.pair, node, acc, half ? castTensor(xs[i], 'float32') : xs[i]);
      if (v.mean) acc = binaryCompute(BIN.Div, node, acc, castTensor(fromF64('float64', [], [xs.length]), acc.dtype));
      return [half ? castTensor(acc, xs[0].dtype) : acc === xs[0] ? { ...acc, dims: [...acc.dims] } : acc];
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Cast, CastLike

/** Numeric cast with C semantics: floats round to nearest, float -> int truncates toward zero, integers wrap,
 * x -> bool is x != 0 (NaN counts as true, as in numpy). */
export function castTensor(x: Tensor, to: DType, node?: Node): Tensor {
  if (x.dtype === to) return x;
  if (x.dtype === 'string' || to === 'string') throw stringCast(node, x.dtype, to);
  const n = x.data.length;
  if (to === 'bool') {
    const out = new Uint8Array(n);
    if (is64(x.dtype)) { const s = x.data as BigInt64Array; for (let i = 0; i < n; i++) out[i] = s[i] !== 0n ? 1 : 0; }
    else { const s = numView(x); for (let i = 0; i < n; i++) out[i] = s[i] !== 0 ? 1 : 0; }
    return makeTensor('bool', x.dims, out);
  }
  if (is64(x.dtype) && isInt(to)) {
    const s = x.data as BigInt64Array, out = allocData(to, n) as unknown as (bigint | number)[];
    // BigInt64Array/BigUint64Array stores wrap to 64 bits; narrower targets take the low 32 bits, then the store wraps.
    if (is64(to)) for (let i = 0; i < n; i++) out[i] = s[i];
    else for (let i = 0; i < n; i++) out[i] = Number(BigInt.asUintN(32, s[i]));
    return makeTensor(to, x.dims, out as unknown as TypedArray);
  }
  if (is64(to)) {
    const s = numView(x), out = allocData(to, n) as BigInt64Array;
    if (isInt(x.dtype) || x.dtype === 'bool') for (let i = 0; i < n; i++) out[i] = BigInt(s[i]);
    // Float -> 64-bit int as x86 converts (numpy, onnxruntime): truncate, negatives wrap into uint64, and NaN or
    // out-of-range values give the 'integer indefinite' 0x8000000000000000.
    else for (let i = 0; i < n; i++) out[i] = Math.abs(s[i]) < 2 ** 63 ? BigInt(Math.trunc(s[i])) : -(2n ** 63n);
    return makeTensor(to, x.dims, out);
  }
  return fromF64(to, x.dims, numView(x));
}

function stringCast(node: Node | undefined, from: DType, to: DType): UnsupportedError {
  return new UnsupportedError([{ node: node?.name ?? '?', op: node?.op ?? 'Cast', domain: '', opset: 0,
    reason: `casts from or to string are not supported (${from} -> ${to}); convert strings outside the model` }]);
}

function castTarget(node: Node): DType {
  const code = attrInt(node, 'to');
  if (code === undefined) throw new GraphError("Cast has no 'to' attribute", node.name, "set 'to' to an ONNX TensorProto.DataType code");
  const dt = ONNX_DTYPE[code];
  if (!dt) throw new GraphError(`Cast to data type ${code} is not supported`, node.name, 'cast to a float, integer or bool type');
  return dt;
}

/** Opset 1-5 Cast named its target as a string ("FLOAT"). */
const CAST_NAMES: Record<string, number> = {
  FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, STRING: 8, BOOL: 9, FLOAT16: 10, DOUBLE: 11,
  UINT32: 12, UINT64: 13, BFLOAT16: 16,
};

const castDef: OpDef = {
  op: 'Cast', since: 6, precision: 'follow',
  upgrade: (node) => {
    const a = node.attrs.to;
    if (a?.kind !== 'string') return [node];
    return [{ ...node, attrs: { ...node.attrs, to: { kind: 'int', value: CAST_NAMES[a.value.toUpperCase()] ?? -1 } } }];
  },
  supports: (node) => {
    const code = attrInt(node, 'to');
    const dt = code === undefined ? undefined : ONNX_DTYPE[code];
    if (!dt) return `Cast to data type ${code} (float8, float4, int4, int2 or unknown) is not supported`;
    if (dt === 'string') return 'Cast to string is not supported';
    return undefined;
  },
  infer: (node, ins) => {
    const x = need(node, ins, 0);
    const to = castTarget(node);
    if (x.dtype === 'string' && to !== 'string') throw stringCast(node, x.dtype, to);
    return [{ dtype: to, shape: [...x.shape] }];
  },
  propagate: (node, vals) => [isInt(castTarget(node)) ? vals[0] : undefined],
  cpu: (node, ins) => [castTensor(need(node, ins, 0), castTarget(node), node)],
};

const castLikeDef: OpDef = {
  op: 'CastLike', since: 15, precision: 'follow',
  infer: (node, ins) => [{ dtype: need(node, ins, 1).dtype, shape: [...need(node, ins, 0).shape] }],
  propagate: (_node, vals, ins) => [ins[1] && isInt(ins[1].dtype) ? vals[0] : undefined],
  cpu: (node, ins) => [castTensor(need(node, ins, 0), need(node, ins, 1).dtype, node)],
};

// ---------------------------------------------------------------------------------------------------------
// Clip, Where, PRelu, Pow, Identity, Dropout

const clipDef: OpDef = {
  op: 'Clip', since: 11, precision: 'follow',
  upgrade: (node, ctx) => {
    const n = withoutAttrs(node, ['consumed_inputs']);
    if (ctx.opset >= 11) return [n];
    // Opset 6-10 bounds are attributes; the newest form takes them as scalar inputs of X's type.
    const lo = attrFloat(node, 'min'), hi = attrFloat(node, 'max');
    const xt = ctx.typeOf?.(node.inputs[0])?.dtype;
    const dt: DType = xt && isFloat(xt) ? xt : 'float32';
    const inputs = [node.inputs[0],
      lo === undefined ? '' : ctx.addConst(`${node.name}_min`, fromF64(dt, [], [lo])),
      hi === undefined ? '' : ctx.addConst(`${node.name}_max`, fromF64(dt, [], [hi]))];
    while (inputs.length > 1 && !inputs[inputs.length - 1]) inputs.pop();
    return [{ ...withoutAttrs(n, ['min', 'max']), inputs }];
  },
  infer: (node, ins) => {
    const x = need(node, ins, 0);
    checkType(node, x, T.num);
    for (const b of [ins[1], ins[2]]) {
      if (b && b.shape.length > 1) throw new GraphError(`Clip bounds must be scalars, got shape [${b.shape}]`, node.name, 'pass 0-D min/max tensors');
    }
    // A legacy (opset < 11) Clip on a value of unknown type got float32 bounds; any float bound suits a float X.
    if (!(isFloat(x.dtype) && [ins[1], ins[2]].every((b) => !b || isFloat(b.dtype)))) checkSameType(node, ins);
    return [{ dtype: x.dtype, shape: [...x.shape] }];
  },
  cpu: (node, [x0, lo, hi]) => {
    const x = need(node, [x0], 0);
    if (is64(x.dtype)) {
      const l = lo ? BigInt(scalarOf(node, lo, 'Clip min')) : undefined, h = hi ? BigInt(scalarOf(node, hi, 'Clip max')) : undefined;
      const s = x.data as BigInt64Array, out = allocData(x.dtype, s.length) as BigInt64Array;
      for (let i = 0; i < s.length; i++) {
        let v = s[i];
        if (l !== undefined && v < l) v = l;
        if (h !== undefined && v > h) v = h;
        out[i] = v;
      }
      return [makeTensor(x.dtype, x.dims, out)];
    }
    const l = lo ? Number(scalarOf(node, lo, 'Clip min')) : -Infinity, h = hi ? Number(scalarOf(node, hi, 'Clip max')) : Infinity;
    const v = numView(x), n = v.length, out = numOut(x.dtype, n);
    // max then min, as numpy.clip: min > max gives max everywhere; NaN passes through.
    for (let i = 0; i < n; i++) { const a = v[i] < l ? l : v[i]; out[i] = a > h ? h : a; }
    return [finish(x.dtype, x.dims, out)];
  },
};

const whereDef: OpDef = {
  op: 'Where', since: 9, precision: 'follow',
  propagate: (node, vals, ins) => PROPAGATE.Where!(node, vals, ins),
  infer: (node, ins) => {
    const c = need(node, ins, 0), x = need(node, ins, 1), y = need(node, ins, 2);
    checkType(node, c, T.bool, 'condition');
    checkSameType(node, [x, y]);
    return [{ dtype: x.dtype, shape: broadcastShapes([c.shape, x.shape, y.shape], node) }];
  },
  cpu: (node, ins) => {
    const c = need(node, ins, 0), x = need(node, ins, 1), y = need(node, ins, 2);
    if (x.dtype !== y.dtype) checkSameType(node, [{ dtype: x.dtype, shape: [] }, { dtype: y.dtype, shape: [] }]);
    const dims = broadcastShapes([c.dims, x.dims, y.dims], node) as number[];
    const out = makeTensor(x.dtype, dims);
    const cd = c.data as Uint8Array, xd = x.data as unknown as ArrayLike<unknown>, yd = y.data as unknown as ArrayLike<unknown>;
    const od = out.data as unknown as unknown[];
    if (sameDims(c.dims, dims) && sameDims(x.dims, dims) && sameDims(y.dims, dims)) {
      for (let i = 0; i < od.length; i++) od[i] = cd[i] ? xd[i] : yd[i];
      return [out];
    }
    const ic = broadcastIndex(c.dims, dims), ix = broadcastIndex(x.dims, dims), iy = broadcastIndex(y.dims, dims);
    for (let i = 0; i < od.length; i++) od[i] = cd[ic[i]] ? xd[ix[i]] : yd[iy[i]];
    return [out];
  },
};

const preluSpec: Binary = {
  op: 'PRelu', since: 7, precision: 'follow', types: T.num,
  num: () => ({ fn: (x, s) => (x < 0 ? x * s : x) }),
  big: () => (x, s) => (x < 0n ? x * s : x),
};

const preluDef: OpDef = {
  op: 'PRelu', since: 7, precision: 'follow',
  upgrade: (node, ctx) => {
    const n = withoutAttrs(node, ['consumed_inputs']);
    if (ctx.opset >= 7) return [n];
    // Opset 6 applied a 1-D slope per channel (axis 1); numpy broadcasting needs it shaped [C,1,...,1].
    const { nodes, name } = alignLegacy(node.inputs[0], node.inputs[1], 1, ctx, node.name);
    return [...nodes, { ...n, inputs: [node.inputs[0], name] }];
  },
  infer: (node, ins) => {
    const x = need(node, ins, 0), s = need(node, ins, 1);
    checkType(node, x, T.num);
    checkSameType(node, [x, s]);
    unidirectional(node, s.shape, x.shape);
    return [{ dtype: x.dtype, shape: [...x.shape] }];
  },
  cpu: (node, ins) => {
    const x = need(node, ins, 0), s = need(node, ins, 1);
    unidirectional(node, s.dims, x.dims);
    return [binaryCompute(preluSpec, node, x, s)];
  },
};

/** PRelu's slope must broadcast to X without changing X's shape. */
function unidirectional(node: Node, from: Dim[], to: Dim[]): void {
  let b: Dim[] | undefined;
  try { b = broadcastShapes([from, to], node); } catch { b = undefined; }
  if (!b || b.length !== to.length || b.some((d, i) => typeof d === 'number' && typeof to[i] === 'number' && d !== to[i])) {
    throw new GraphError(`slope shape [${from}] does not broadcast to X shape [${to}]`, node.name,
      'reshape the slope to [C,1,...,1] for a per-channel slope (numpy broadcasting aligns trailing dims)');
  }
}

const powLoop = rowLoop('Pow');

const powDef: OpDef = {
  op: 'Pow', since: 7, precision: 'never',
  upgrade: legacyBroadcastUpgrade,
  infer: (node, ins) => {
    const a = need(node, ins, 0), b = need(node, ins, 1);
    checkType(node, a, T.num, 'base');
    checkType(node, b, T.num, 'exponent');
    return [{ dtype: a.dtype, shape: broadcastShapes([a.shape, b.shape], node) }];
  },
  cpu: (node, ins) => {
    const a = need(node, ins, 0), b = need(node, ins, 1);
    const dims = broadcastShapes([a.dims, b.dims], node) as number[];
    if (isFloat(a.dtype) || !isInt(b.dtype)) {
      // Float result (or int base with a float exponent): the store truncates toward zero like numpy's astype.
      const out = numOut(a.dtype, size(dims));
      const fn = isFloat(a.dtype) ? powf : powTrunc;
      binaryLoop(numView(a), a.dims, numView(b), b.dims, dims, out, fn, CALL, powLoop);
      return [finish(a.dtype, dims, out)];
    }
    // Integer base and exponent: exact power, wrapped to the base's width.
    const ia = broadcastIndex(a.dims, dims), ib = broadcastIndex(b.dims, dims);
    const wrap = wrapper(a.dtype), n = ia.length;
    const av = a.data as unknown as ArrayLike<number | bigint>, bv = b.data as unknown as ArrayLike<number | bigint>;
    const out = allocData(a.dtype, n) as unknown as (number | bigint)[];
    const big = is64(a.dtype);
    for (let i = 0; i < n; i++) {
      const r = ipow(BigInt(av[ia[i]]), BigInt(bv[ib[i]]), wrap);
      out[i] = big ? r : Number(r);
    }
    return [makeTensor(a.dtype, dims, out as unknown as TypedArray)];
  },
};

const identityDef: OpDef = {
  op: 'Identity', since: 1, precision: 'follow',
  infer: (node, ins) => { const x = need(node, ins, 0); return [{ dtype: x.dtype, shape: [...x.shape] }]; },
  propagate: (_node, vals) => [vals[0]],
  cpu: (node, ins) => [need(node, ins, 0)],
};

/** Dropout at inference is the identity; the optional mask is all ones (bool from opset 10, the input type before). */
const dropoutDef: OpDef = {
  op: 'Dropout', since: 12, precision: 'follow',
  upgrade: (node, ctx) => {
    if (ctx.opset >= 12) return [node];
    // Opset 6 is_test and the ratio attribute carry nothing at inference; ratio moves to its input slot.
    const ratio = attrFloat(node, 'ratio');
    const n = withoutAttrs(node, ['is_test', 'ratio', 'consumed_inputs']);
    return [ratio === undefined ? n : { ...n, inputs: [node.inputs[0], ctx.addConst(`${node.name}_ratio`, fromF64('float32', [], [ratio]))] }];
  },
  infer: (node, ins, ctx) => {
    const x = need(node, ins, 0);
    checkType(node, x, T.float);
    const training = ctx.consts[2];
    if (training && training.data.length && (training.data as Uint8Array)[0]) throw trainingError(node, ctx.opset);
    const out: TensorType[] = [{ dtype: x.dtype, shape: [...x.shape] }];
    if (node.outputs[1]) out.push({ dtype: ctx.opset >= 10 ? 'bool' : x.dtype, shape: [...x.shape] });
    return out;
  },
  cpu: (node, ins, ctx) => {
    const x = need(node, ins, 0), training = ins[2];
    if (training && training.data.length && (training.data as Uint8Array)[0]) throw trainingError(node, ctx.opset);
    const outs = [x];
    if (node.outputs[1]) {
      const n = x.data.length;
      outs.push(ctx.opset >= 10 ? makeTensor('bool', x.dims, new Uint8Array(n).fill(1)) : fromF64(x.dtype, x.dims, new Float64Array(n).fill(1)));
    }
    return outs;
  },
};

function trainingError(node: Node, opset: number): UnsupportedError {
  return new UnsupportedError([{ node: node.name, op: 'Dropout', domain: '', opset,
    reason: 'training_mode=true (random dropout) is not supported; export the model in eval mode' }]);
}

// ---------------------------------------------------------------------------------------------------------
// legacy forms

function dropConsumedInputs(node: Node): Node[] {
  return ['consumed_inputs'].some((a) => a in node.attrs) ? [withoutAttrs(node, ['consumed_inputs'])] : [node];
}

/** Opset < 7 binary ops broadcast B onto A only with broadcast=1, aligning B's dims at `axis` of A (suffix
 * alignment without axis). Numpy broadcasting gives the same result once B has trailing 1-dims appended. */
function legacyBroadcastUpgrade(node: Node, ctx: UpgradeCtx): Node[] {
  if (ctx.opset >= 7) return [node];
  const base = withoutAttrs(node, ['broadcast', 'axis', 'consumed_inputs']);
  const axis = attrInt(node, 'axis');
  if (!attrInt(node, 'broadcast', 0) || axis === undefined || node.inputs.length < 2) return [base];
  const { nodes, name } = alignLegacy(node.inputs[0], node.inputs[1], axis, ctx, node.name);
  return [...nodes, { ...base, inputs: [node.inputs[0], name] }];
}

const int64s = (v: number[]) => fromF64('int64', [v.length], v);

/** Value name of `b` reshaped to b.dims + [1] * (rank(a) - axis - rank(b)), with the nodes that compute it. */
function alignLegacy(a: string, b: string, axis: number, ctx: UpgradeCtx, hint: string): { nodes: Node[]; name: string } {
  const ta = ctx.typeOf?.(a), tb = ctx.typeOf?.(b), cb = ctx.constOf?.(b);
  const rb = tb?.shape.length;
  // A declared rank of 0 can also mean "shape not stated"; a broadcast axis on a scalar A is meaningless anyway.
  const ra = ta && ta.shape.length > 0 ? ta.shape.length : undefined;
  let k: number | undefined;
  if (rb !== undefined && axis < 0) k = -axis - rb;
  else if (rb !== undefined && ra !== undefined) k = ra - axis - rb;
  if (k !== undefined) {
    if (k <= 0) return { nodes: [], name: b };
    const ones = new Array<number>(k).fill(1);
    if (cb) return { nodes: [], name: ctx.addConst(`${b}_aligned`, { ...cb, dims: [...cb.dims, ...ones] }) };
    const out = ctx.freshName(`${b}_aligned`);
    const shape = ctx.addConst(`${hint}_align_shape`, int64s([...new Array<number>(rb!).fill(0), ...ones]));
    return { nodes: [{ name: ctx.freshName(`${hint}_align`), op: 'Reshape', domain: '', inputs: [b, shape], outputs: [out], attrs: {} }], name: out };
  }
  // Ranks unknown until run time: shape(b) ++ ones(max(rank(a) - axis - rank(b), 0)).
  const nodes: Node[] = [];
  const mk = (op: string, inputs: string[], attrs: Node['attrs'] = {}) => {
    const out = ctx.freshName(`${hint}_align`);
    nodes.push({ name: ctx.freshName(`${hint}_align_${op}`), op, domain: '', inputs, outputs: [out], attrs });
    return out;
  };
  const sa = mk('Shape', [a]), sb = mk('Shape', [b]);
  const ra1 = mk('Shape', [sa]), rb1 = mk('Shape', [sb]);
  const kk = mk('Sub', [mk('Sub', [ra1, ctx.addConst(`${hint}_axis`, int64s([axis]))]), rb1]);
  const k0 = mk('Max', [kk, ctx.addConst(`${hint}_zero`, int64s([0]))]);
  const ones = mk('ConstantOfShape', [k0], { value: { kind: 'tensor', value: int64s([1]) } });
  const shape = mk('Concat', [sb, ones], { axis: { kind: 'int', value: 0 } });
  return { nodes, name: mk('Reshape', [b, shape]) };
}

// ---------------------------------------------------------------------------------------------------------
// shape-value propagation (Shape -> Gather -> Mul -> Reshape with symbolic dims)

type DimOp = (...xs: Dim[]) => Dim | undefined;
const num2 = (a: Dim, b: Dim): [number, number] | undefined => (typeof a === 'number' && typeof b === 'number' ? [a, b] : undefined);

// Symbols stand for dims, so they are never negative; 'a*b' strings keep products recognisable for a later Div.
const SYM_OPS: Record<string, DimOp> = {
  Add: (a, b) => (num2(a, b) ? (a as number) + (b as number) : a === 0 ? b : b === 0 ? a : `${a}+${b}`),
  Sub: (a, b) => (num2(a, b) ? (a as number) - (b as number) : b === 0 ? a : a === b ? 0 : `${a}-${b}`),
  Mul: (a, b) => {
    if (num2(a, b)) return (a as number) * (b as number);
    if (a === 1) return b;
    if (b === 1) return a;
    if (a === 0 || b === 0) return 0;
    return typeof a === 'number' ? `${b}*${a}` : typeof b === 'number' ? `${a}*${b}` : [a, b].sort().join('*');
  },
  Div: (a, b) => {
    const n = num2(a, b);
    if (n) return n[1] === 0 ? undefined : Math.trunc(n[0] / n[1]);
    if (b === 1) return a;
    if (a === b) return 1;
    const m = typeof a === 'string' ? /^(.+)\*(\d+)$/.exec(a) : null;
    if (m && Number(m[2]) === b) return m[1];
    return `${a}/${b}`;
  },
  // Expand/Reshape shape subgraphs: Where(Equal(shape, -1), ones, shape).
  Equal: (a, b) => (a === b ? 1 : num2(a, b) || (typeof a === 'number' && a < 0) || (typeof b === 'number' && b < 0) ? 0 : undefined),
  Where: (c, x, y) => (typeof c === 'number' ? (c ? x : y) : x === y ? x : undefined),
  Max: (...xs) => (xs.every((x) => typeof x === 'number') ? Math.max(...(xs as number[])) : undefined),
  Min: (...xs) => (xs.every((x) => typeof x === 'number') ? Math.min(...(xs as number[])) : undefined),
};

/** Elementwise op over shape values (1-D, broadcast by length); undefined where any element is unknown. */
function propagateSym(f: DimOp): NonNullable<OpDef['propagate']> {
  return (_node, vals) => {
    if (!vals.length || vals.some((v) => !v)) return [undefined];
    const vs = vals as Dim[][];
    const n = Math.max(...vs.map((v) => v.length));
    if (vs.some((v) => v.length !== n && v.length !== 1)) return [undefined];
    const out: Dim[] = [];
    for (let i = 0; i < n; i++) {
      const r = f(...vs.map((v) => v[v.length === 1 ? 0 : i]));
      if (r === undefined) return [undefined];
      out.push(r);
    }
    return [out];
  };
}

const PROPAGATE: Record<string, OpDef['propagate']> = Object.fromEntries(Object.entries(SYM_OPS).map(([op, f]) => [op, propagateSym(f)]));

register(
  ...BINARY.map(binaryDef),
  ...UNARY.map(unaryDef),
  ...VARIADIC.map(variadicDef),
  castDef, castLikeDef, clipDef, whereDef, preluDef, powDef, identityDef, dropoutDef,
);
