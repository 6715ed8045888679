// Elementwise ops: unary math and activations, binary arithmetic with broadcasting, comparisons and logic.
import { register, type OpDef } from './registry.js';
import { elementwise, inferBroadcast, inferSame, need } from './util.js';

/** A float unary op computed in float64 and rounded to the input dtype. */
function unary(op: string, fn: (x: number) => number, since = 6, precision: OpDef['precision'] = 'follow'): OpDef {
  return {
    op, since, precision,
    infer: inferSame,
    cpu: (node, [x]) => [elementwise([need(node, [x], 0)], x!.dtype, fn)],
  };
}

/** A broadcasting binary op whose result has the dtype of its inputs. */
function binary(op: string, fn: (a: number, b: number) => number, since = 7): OpDef {
  return {
    op, since, precision: 'follow',
    infer: (node, ins) => inferBroadcast(node, ins),
    cpu: (node, ins) => [elementwise([need(node, ins, 0), need(node, ins, 1)], ins[0]!.dtype, fn)],
  };
}

register(
  unary('Relu', (x) => (x > 0 ? x : 0)),
  binary('Add', (a, b) => a + b),
  binary('Sub', (a, b) => a - b),
  binary('Mul', (a, b) => a * b),
);
