// Build the bundled PaddleOCR text-direction classifier, run it on its test input and check the result
// against ONNX Runtime's reference output. Uses the GPU when there is one, else the CPU reference.
//   node examples/01-build-and-run.mjs
import { build, readTensor, accuracy } from 'tsrt';

const dir = new URL('../models/ppocr_mobile_v2_cls/', import.meta.url).pathname;
const x = readTensor(`${dir}test_data_set_0/input_0.pb`);
const expected = readTensor(`${dir}test_data_set_0/output_0.pb`);

const engine = await build(`${dir}model.onnx`, { shapes: { x: x.dims } });
console.log(`built: ${engine.graph.nodes.length} nodes, ${engine.report.kernels} kernel launches, backend ${engine.backend}`);

const outputs = await engine.run({ x });
const y = outputs.get(engine.outputs[0].name);
const probs = Array.from(y.data);
console.log(`text direction: ${probs[0] > probs[1] ? '0 degrees' : '180 degrees'} (p = ${probs.map((p) => p.toFixed(4)).join(', ')})`);

const acc = accuracy(y, expected);
console.log(`vs ONNX Runtime: max abs error ${acc.maxAbs.toExponential(2)}, argmax ${acc.argmaxMatch ? 'same' : 'DIFFERENT'}`);
engine.dispose();
if (!(acc.maxAbs <= 1e-3 * acc.range && acc.argmaxMatch)) process.exit(1);
