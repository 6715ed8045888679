// Look at the IR after a pass of the build pipeline: an instrument sees the graph after every pass; this one
// prints the graph after Conv+BatchNorm folding and counts nodes per pass, like `tsrt dump --after`.
//   node examples/03-dump-ir.mjs [pass-name]
import { build, printGraph } from 'tsrt';

const model = new URL('../models/ppocr_mobile_v2_cls/model.onnx', import.meta.url).pathname;
const want = process.argv[2] ?? 'fold-batchnorm';

let dumped = '';
/** @type {import('tsrt').Instrument} */
const instrument = {
  after(pass, g, index) {
    console.log(`${String(index).padStart(2)} ${pass.name.padEnd(20)} ${g.nodes.length} nodes`);
    if (pass.name === want && !dumped) dumped = printGraph(g, { inlineLimit: 4 });
  },
};
// the model's input has symbolic height and width: give the size the classifier was trained on
const engine = await build(model, { shapes: { x: [1, 3, 48, 192] }, instruments: [instrument], compileKernels: false, device: 'cpu' });
engine.dispose();

if (!dumped) { console.error(`no pass named '${want}' ran`); process.exit(1); }
const lines = dumped.split('\n').filter((l) => !/^\s*(const|type) /.test(l));
console.log(`\nIR after ${want} (first 12 node lines of ${lines.length - 2}):`);
console.log(lines.slice(0, 13).join('\n'));
