// CUDA scalar expressions for elementwise ops. Each entry turns argument expressions (already in their
// compute types, see kernel.ts computeType) into one expression of the output's compute type. Fusion
// chains these, so a Conv epilogue or a GELU subgraph becomes one kernel.
import { attrFloat, attrInt, attrString } from '../ops/attrs.js';
import type { DType, Node } from '../ir/types.js';
import { computeType } from './kernel.js';
import { TsrtError } from '../errors.js';

export interface EwCtx {
  node: Node;
  /** dtypes of the node's inputs ('' inputs are absent: undefined) */
  inDtypes: (DType | undefined)[];
  outDtype: DType;
}

type Emit = (a: string[], c: EwCtx) => string;

const isF = (c: EwCtx) => computeType(c.outDtype) === 'float' || computeType(c.outDtype) === 'double';
const f = (name: string) => (a: string[], c: EwCtx) => (computeType(c.outDtype) === 'double' ? `${name}(${a[0]})` : `${name}f(${a[0]})`);
const lit = (x: number) => {
  if (Number.isNaN(x)) return 'NAN';
  if (!Number.isFinite(x)) return x > 0 ? 'INFINITY' : '(-INFINITY)';
  const s = Math.fround(x).toPrecision(9);
  return `${s.includes('.') || s.includes('e') ? s : s + '.0'}f`;
};

export const EW_OPS: Record<string, Emit> = {
  Identity: (a) => a[0],
  Abs: (a) => `(${a[0]} < 0 ? -${a[0]} : ${a[0]})`,
  Neg: (a) => `(-${a[0]})`,
  Exp: f('exp'),
  Log: f('log'),
  Sqrt: f('sqrt'),
  Sin: f('sin'),
  Cos: f('cos'),
  Tan: f('tan'),
  Tanh: f('tanh'),
  Erf: f('erf'),
  Floor: (a, c) => (isF(c) ? f('floor')(a, c) : a[0]),
  Ceil: (a, c) => (isF(c) ? f('ceil')(a, c) : a[0]),
  Round: (a, c) => (isF(c) ? f('rint')(a, c) : a[0]),
  Reciprocal: (a) => `(1.0f / ${a[0]})`,
  Sign: (a) => `(${a[0]} > 0 ? 1 : (${a[0]} < 0 ? -1 : 0))`,
  Sigmoid: (a) => `(1.0f / (1.0f + expf(-${a[0]})))`,
  Relu: (a) => `(${a[0]} > 0 ? ${a[0]} : 0)`,
  Not: (a) => `(!${a[0]})`,
  IsNaN: (a) => `isnan(${a[0]})`,
  IsInf: (a, c) => {
    const pos = attrInt(c.node, 'detect_positive', 1), neg = attrInt(c.node, 'detect_negative', 1);
    return `(isinf(${a[0]}) && ((${a[0]} > 0 && ${pos}) || (${a[0]} < 0 && ${neg})))`;
  },
  Softplus: (a) => `(${a[0]} > 20.0f ? ${a[0]} : log1pf(expf(${a[0]})))`,
  Softsign: (a) => `(${a[0]} / (1.0f + fabsf(${a[0]})))`,
  LeakyRelu: (a, c) => `(${a[0]} >= 0 ? ${a[0]} : ${lit(attrFloat(c.node, 'alpha', 0.01))} * ${a[0]})`,
  Elu: (a, c) => `(${a[0]} >= 0 ? ${a[0]} : ${lit(attrFloat(c.node, 'alpha', 1))} * expm1f(${a[0]}))`,
  Celu: (a, c) => { const al = lit(attrFloat(c.node, 'alpha', 1)); return `fmaxf(0.0f, ${a[0]}) + fminf(0.0f, ${al} * expm1f(${a[0]} / ${al}))`; },
  Selu: (a, c) => `(${lit(attrFloat(c.node, 'gamma', 1.0507009873554805))} * (${a[0]} > 0 ? ${a[0]} : ${lit(attrFloat(c.node, 'alpha', 1.6732632423543772))} * expm1f(${a[0]})))`,
  ThresholdedRelu: (a, c) => `(${a[0]} > ${lit(attrFloat(c.node, 'alpha', 1))} ? ${a[0]} : 0.0f)`,
  HardSigmoid: (a, c) => `fmaxf(0.0f, fminf(1.0f, ${lit(attrFloat(c.node, 'alpha', 0.2))} * ${a[0]} + ${lit(attrFloat(c.node, 'beta', 0.5))}))`,
  HardSwish: (a) => `(${a[0]} * fmaxf(0.0f, fminf(1.0f, ${a[0]} * (1.0f / 6.0f) + 0.5f)))`,
  Mish: (a) => `(${a[0]} * tanhf(${a[0]} > 20.0f ? ${a[0]} : log1pf(expf(${a[0]}))))`,
  Gelu: (a, c) => attrString(c.node, 'approximate', 'none') === 'tanh'
    ? `(0.5f * ${a[0]} * (1.0f + tanhf(0.7978845608028654f * (${a[0]} + 0.044715f * ${a[0]} * ${a[0]} * ${a[0]}))))`
    : `(0.5f * ${a[0]} * (1.0f + erff(${a[0]} * 0.7071067811865476f)))`,
  Cast: (a, c) => castExpr(a[0], c.inDtypes[0]!, c.outDtype),
  CastLike: (a, c) => castExpr(a[0], c.inDtypes[0]!, c.outDtype),
  Dropout: (a) => a[0],
  Add: (a) => `(${a[0]} + ${a[1]})`,
  Sub: (a) => `(${a[0]} - ${a[1]})`,
  Mul: (a) => `(${a[0]} * ${a[1]})`,
  Div: (a, c) => (isF(c) ? `(${a[0]} / ${a[1]})` : `(${a[1]} == 0 ? 0 : ${a[0]} / ${a[1]})`),
  Pow: (a, c) => (isF(c) ? `powf(${a[0]}, (float)${a[1]})` : `(long long)llrint(pow((double)${a[0]}, (double)${a[1]}))`),
  Mod: (a, c) => {
    if (attrInt(c.node, 'fmod', 0) || isF(c)) return isF(c) ? `fmodf(${a[0]}, ${a[1]})` : `(${a[0]} % ${a[1]})`;
    return `(((${a[0]} % ${a[1]}) + ${a[1]}) % ${a[1]})`;
  },
  PRelu: (a) => `(${a[0]} < 0 ? ${a[1]} * ${a[0]} : ${a[0]})`,
  Equal: (a) => `(${a[0]} == ${a[1]})`,
  Less: (a) => `(${a[0]} < ${a[1]})`,
  LessOrEqual: (a) => `(${a[0]} <= ${a[1]})`,
  Greater: (a) => `(${a[0]} > ${a[1]})`,
  GreaterOrEqual: (a) => `(${a[0]} >= ${a[1]})`,
  And: (a) => `(${a[0]} && ${a[1]})`,
  Or: (a) => `(${a[0]} || ${a[1]})`,
  Xor: (a) => `((${a[0]} != 0) != (${a[1]} != 0))`,
  BitShift: (a, c) => (attrString(c.node, 'direction', 'LEFT') === 'LEFT' ? `(${a[0]} << ${a[1]})` : `(${a[0]} >> ${a[1]})`),
  Where: (a) => `(${a[0]} ? ${a[1]} : ${a[2]})`,
  Clip: (a) => {
    let e = a[0];
    if (a[1]) e = `(${e} < ${a[1]} ? ${a[1]} : ${e})`;
    if (a[2]) e = `(${e} > ${a[2]} ? ${a[2]} : ${e})`;
    return e;
  },
  Max: (a, c) => a.reduce((x, y) => (isF(c) ? `fmaxf_nan(${x}, ${y})` : `(${x} > ${y} ? ${x} : ${y})`)),
  Min: (a, c) => a.reduce((x, y) => (isF(c) ? `fminf_nan(${x}, ${y})` : `(${x} < ${y} ? ${x} : ${y})`)),
  Sum: (a) => `(${a.join(' + ')})`,
  Mean: (a) => `((${a.join(' + ')}) / ${a.length}.0f)`,
};

/** Device helpers the expressions above rely on (NaN-propagating max/min as ONNX requires). */
// No include guard: kernels are packed into modules inside namespaces of their own (kernel.ts packModules).
export const EW_HELPERS = `
__device__ __forceinline__ float fmaxf_nan(float a, float b) { return (a != a || b != b) ? NAN : fmaxf(a, b); }
__device__ __forceinline__ float fminf_nan(float a, float b) { return (a != a || b != b) ? NAN : fminf(a, b); }
`;

function castExpr(x: string, from: DType, to: DType): string {
  const ct = computeType(to);
  if (to === 'bool') return `(${x} != 0)`;
  if (from === 'bool') return `(${ct})(${x} != 0)`;
  const fromFloat = computeType(from) === 'float' || computeType(from) === 'double';
  if (fromFloat && ct !== 'float' && ct !== 'double') {
    // float -> int: truncate; NaN/inf give 0 like the CPU reference
    return `(isfinite((double)${x}) ? (${ct})(${x}) : (${ct})0)`;
  }
  if (to === 'float16' && fromFloat) return `__half2float(__float2half_rn((float)${x}))`;
  if (to === 'bfloat16' && fromFloat) return `__bfloat162float(__float2bfloat16_rn((float)${x}))`;
  return `(${ct})(${x})`;
}

export function ewExpr(node: Node, args: string[], ctx: EwCtx): string {
  const e = EW_OPS[node.op];
  if (!e) throw new TsrtError('UNSUPPORTED', `node '${node.name}': no CUDA elementwise expression for ${node.op}`);
  return e(args, ctx);
}

export function isElementwiseOp(op: string): boolean {
  return op in EW_OPS;
}
