// Typed errors. Each names what failed (file, node, kernel) and says how to fix it, so that the CLI can
// print one clear line and exit with a meaningful code instead of a stack trace.

export type ErrorCode =
  | 'MODEL_LOAD'       // unreadable, truncated or malformed model file
  | 'UNSUPPORTED'      // op, opset, dtype or attribute the compiler does not handle
  | 'INVALID_GRAPH'    // graph that breaks the ONNX rules (dangling input, shape mismatch)
  | 'INPUT'            // wrong run-time input name, shape or dtype
  | 'CUDA'             // CUDA driver error
  | 'NVRTC'            // kernel compile error
  | 'LIBRARY'          // a native library (libcuda, libnvrtc) is missing
  | 'ENGINE_FILE'      // corrupt, truncated or foreign engine file
  | 'USAGE';           // bad CLI or API arguments

export class TsrtError extends Error {
  constructor(readonly code: ErrorCode, message: string, readonly hint?: string) {
    super(hint ? `${message}\n  fix: ${hint}` : message);
    this.name = `TsrtError[${code}]`;
  }
}

export class ModelLoadError extends TsrtError {
  constructor(readonly file: string, message: string, hint?: string) {
    super('MODEL_LOAD', `${file}: ${message}`, hint);
  }
}

export interface UnsupportedItem { node: string; op: string; domain: string; opset: number; reason: string }

export class UnsupportedError extends TsrtError {
  constructor(readonly items: UnsupportedItem[], source?: string) {
    const lines = items.map((i) => `  - node '${i.node}' (${i.domain || 'ai.onnx'}::${i.op}, opset ${i.opset}): ${i.reason}`);
    super('UNSUPPORTED', `${source ? source + ': ' : ''}${items.length} unsupported node(s):\n${lines.join('\n')}`,
      'rewrite these nodes with supported ops (onnx-simplifier or a different export opset), or file an issue naming the op');
  }
}

export class GraphError extends TsrtError {
  constructor(message: string, readonly node?: string, hint?: string) {
    super('INVALID_GRAPH', node ? `node '${node}': ${message}` : message, hint);
  }
}

export class InputError extends TsrtError {
  constructor(message: string, hint?: string) { super('INPUT', message, hint); }
}

/** Re-throw errors from a node's computation with the node named, keeping typed errors as they are. */
export function atNode(nodeName: string, op: string, e: unknown): Error {
  if (e instanceof TsrtError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new GraphError(`${op} failed: ${msg}`, nodeName);
}
