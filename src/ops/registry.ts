// The op registry: one entry per ONNX op holds everything the compiler needs to know about it, so generic
// passes (shape inference, constant folding, precision assignment, code generation) never switch on op names.
import type { Dim, Graph, Node, Tensor, TensorType } from '../ir/types.js';

/** Reduced-precision policy (TVM's mixed-precision attribute): `always` runs in fp16/bf16 when allowed,
 * `follow` takes the precision of its inputs, `never` stays fp32 (reductions, exp/log-heavy ops). */
export type PrecisionPolicy = 'always' | 'follow' | 'never';

export interface InferCtx {
  opset: number;
  /** Constant values of the inputs, where known (initializers, folded constants). */
  consts: (Tensor | undefined)[];
  /** Values of small 1-D/0-D integer inputs as dims, where known: constants as numbers, and shape
   * computations on symbolic inputs (Shape(x) of [batch,3,224,224]) with symbols kept. */
  shapeValues: (Dim[] | undefined)[];
  /** Fresh symbol for a dimension that depends on data (NonZero, Range with dynamic bounds). */
  freshDim(): string;
  /** Types and known constant values of every name visible at this node (this graph and enclosing ones), so
   * ops with subgraphs (If, Loop, Scan) can infer bodies that capture outer-scope values by name. */
  scope?: { types: ReadonlyMap<string, TensorType>; consts: ReadonlyMap<string, Tensor> };
}

export interface CpuCtx {
  opset: number;
  /** Runs a nested graph (If/Loop branches); outer-scope names resolve through `outer`. */
  runGraph(g: Graph, feeds: Map<string, Tensor>): Tensor[];
}

export interface UpgradeCtx {
  opset: number;
  /** Adds a constant initializer and returns its value name. */
  addConst(hint: string, t: Tensor): string;
  /** A fresh value name for intermediate outputs of an expansion. */
  freshName(hint: string): string;
  /** Declared type of a value (initializer, graph input or value_info), where the model states it. Legacy
   * broadcasting (opset < 7 `axis`) needs operand ranks to rewrite into numpy form. */
  typeOf?(name: string): TensorType | undefined;
  /** Initializer value by name, where the value is one (lets an upgrade reshape a constant in place). */
  constOf?(name: string): Tensor | undefined;
}

export interface OpDef {
  op: string;
  /** '' for ai.onnx. */
  domain?: string;
  /** Lowest ai.onnx opset this entry handles (older forms are upgraded first). */
  since: number;
  precision: PrecisionPolicy;
  /** Rewrites legacy attribute forms (Clip min/max attrs, Slice starts attrs, Squeeze axes attr, ...) into the
   * newest form. Called once at import; may expand into several nodes. */
  upgrade?(node: Node, ctx: UpgradeCtx): Node[];
  /** Returns why this node cannot be handled, or undefined if it can. */
  supports?(node: Node, opset: number): string | undefined;
  /** Output types from input types. */
  infer(node: Node, inputs: (TensorType | undefined)[], ctx: InferCtx): TensorType[];
  /** Optional propagation of shape values (see InferCtx.shapeValues) through shape arithmetic. */
  propagate?(node: Node, values: (Dim[] | undefined)[], inputs: (TensorType | undefined)[]): (Dim[] | undefined)[];
  /** CPU reference implementation. Inputs omitted in the model ('') are undefined. */
  cpu(node: Node, inputs: (Tensor | undefined)[], ctx: CpuCtx): Tensor[];
}

const registry = new Map<string, OpDef>();

const key = (domain: string, op: string) => `${domain === 'ai.onnx' ? '' : domain}::${op}`;

export function register(...defs: OpDef[]): void {
  for (const d of defs) registry.set(key(d.domain ?? '', d.op), d);
}

export function getOp(op: string, domain = ''): OpDef | undefined {
  return registry.get(key(domain, op));
}

export function allOps(): OpDef[] {
  return [...registry.values()];
}
