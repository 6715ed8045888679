// Core IR data types. Everything here is plain data with named fields; passes build new graphs
// instead of mutating these (see STYLE.md).

export type DType =
  | 'float32' | 'float16' | 'bfloat16' | 'float64'
  | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64'
  | 'bool' | 'string';

/** A dimension: a known size, or a symbol such as "batch" (ONNX dim_param) or "?" for unknown. */
export type Dim = number | string;

export interface TensorType {
  dtype: DType;
  shape: Dim[];
}

export type TypedArray =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

/** Host tensor. float16 and bfloat16 hold raw bits in a Uint16Array; bool holds 0/1 in a Uint8Array. */
export interface Tensor {
  dtype: DType;
  dims: number[];
  data: TypedArray | string[];
}

export type Attr =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'ints'; value: number[] }
  | { kind: 'floats'; value: number[] }
  | { kind: 'strings'; value: string[] }
  | { kind: 'tensor'; value: Tensor }
  | { kind: 'graph'; value: Graph }
  | { kind: 'graphs'; value: Graph[] };

export interface Node {
  /** Unique within its graph; the importer names unnamed nodes `<op>_<index>`. */
  name: string;
  op: string;
  /** '' is ai.onnx. */
  domain: string;
  /** Value names; '' marks an omitted optional input. */
  inputs: string[];
  outputs: string[];
  attrs: Record<string, Attr>;
}

export interface ValueInfo {
  name: string;
  type: TensorType;
}

export interface Graph {
  name: string;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  nodes: Node[];
  /** Constant tensors by value name (ONNX initializers, folded constants). */
  initializers: Map<string, Tensor>;
  /** Inferred or declared types of intermediate values. */
  valueTypes: Map<string, TensorType>;
  /** ai.onnx opset version the graph was written against. */
  opset: number;
}

export interface Model {
  graph: Graph;
  irVersion: number;
  producer: string;
  /** opset version by domain ('' = ai.onnx) */
  opsets: Record<string, number>;
  /** Path the model was loaded from, for error messages. */
  source?: string;
}
