// Typed attribute access with defaults. Errors name the node and the attribute.
import { GraphError } from '../errors.js';
import type { Attr, Graph, Node, Tensor } from '../ir/types.js';

function get<K extends Attr['kind']>(node: Node, name: string, kinds: K[]): Extract<Attr, { kind: K }> | undefined {
  const a = node.attrs[name];
  if (!a) return undefined;
  if (!kinds.includes(a.kind as K)) {
    throw new GraphError(`attribute '${name}' is ${a.kind}, expected ${kinds.join(' or ')}`, node.name);
  }
  return a as Extract<Attr, { kind: K }>;
}

export function attrInt(node: Node, name: string, def: number): number;
export function attrInt(node: Node, name: string): number | undefined;
export function attrInt(node: Node, name: string, def?: number): number | undefined {
  return get(node, name, ['int'])?.value ?? def;
}

export function attrFloat(node: Node, name: string, def: number): number;
export function attrFloat(node: Node, name: string): number | undefined;
export function attrFloat(node: Node, name: string, def?: number): number | undefined {
  const a = get(node, name, ['float', 'int']);
  return a ? a.value : def;
}

export function attrString(node: Node, name: string, def: string): string;
export function attrString(node: Node, name: string): string | undefined;
export function attrString(node: Node, name: string, def?: string): string | undefined {
  return get(node, name, ['string'])?.value ?? def;
}

export function attrInts(node: Node, name: string, def: number[]): number[];
export function attrInts(node: Node, name: string): number[] | undefined;
export function attrInts(node: Node, name: string, def?: number[]): number[] | undefined {
  const a = get(node, name, ['ints', 'int']);
  if (!a) return def;
  return a.kind === 'int' ? [a.value] : a.value;
}

export function attrFloats(node: Node, name: string, def: number[]): number[];
export function attrFloats(node: Node, name: string): number[] | undefined;
export function attrFloats(node: Node, name: string, def?: number[]): number[] | undefined {
  const a = get(node, name, ['floats', 'float']);
  if (!a) return def;
  return a.kind === 'float' ? [a.value] : a.value;
}

export function attrStrings(node: Node, name: string): string[] | undefined {
  return get(node, name, ['strings'])?.value;
}

export function attrTensor(node: Node, name: string): Tensor | undefined {
  return get(node, name, ['tensor'])?.value;
}

export function attrGraph(node: Node, name: string): Graph | undefined {
  return get(node, name, ['graph'])?.value;
}

/** Copy of a node without the named attributes (used by legacy upgrades). */
export function withoutAttrs(node: Node, names: string[]): Node {
  const attrs = { ...node.attrs };
  for (const n of names) delete attrs[n];
  return { ...node, attrs };
}
