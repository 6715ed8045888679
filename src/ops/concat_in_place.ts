// tsrt::ConcatInPlace: a Concat whose inputs are written by their producers straight into their slices of the
// output buffer (the concat-in-place pass picks them; the lowering places each input inside the output with an
// offset alias, so no copy kernel runs). For inference and the CPU reference it is exactly ONNX Concat.
import type { Node } from '../ir/types.js';
import { getOp, register } from './registry.js';

const onnx = () => getOp('Concat')!;
const plain = (n: Node): Node => ({ ...n, domain: '', op: 'Concat' });

register({
  op: 'ConcatInPlace', domain: 'tsrt', since: 1, precision: 'follow',
  infer: (node, ins, ctx) => onnx().infer(plain(node), ins, ctx),
  propagate: (node, values, ins) => onnx().propagate!(plain(node), values, ins),
  cpu: (node, ins, ctx) => onnx().cpu(plain(node), ins, ctx),
});
