// Small builders shared by the op tests: a node with inputs in0.. and outputs out0.., and tensor values as numbers.
import { toF64 } from '../src/ir/tensor.js';
import type { Attr, Node, Tensor } from '../src/ir/types.js';

export function opNode(op: string, nIn: number, attrs: Record<string, Attr> = {}, nOut = 1, name = `${op}_t`): Node {
  return {
    name, op, domain: '', attrs,
    inputs: Array.from({ length: nIn }, (_, i) => `in${i}`),
    outputs: Array.from({ length: nOut }, (_, i) => `out${i}`),
  };
}

export const vals = (x: Tensor): number[] => Array.from(toF64(x));

/** mulberry32: a small seeded PRNG in [0, 1), the same sequence on every machine. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
