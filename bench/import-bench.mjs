// Import speed: parse + convert a ~100 MB ONNX model (default: a synthetic ResNet-50-sized model of 161
// initializers totalling 100 MB; or pass a real one, e.g. the ResNet-50 export from .gpu/models.py).
//   node bench/import-bench.mjs [model.onnx]
import { writeFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onnx } from '../dist/onnx/onnx_pb.js';
import { loadModel } from '../dist/onnx/import.js';

let path = process.argv[2];
if (!path) {
  path = join(tmpdir(), 'tsrt-import-bench-100mb.onnx');
  if (!existsSync(path)) {
    const inits = [], nodes = [];
    let prev = 'x', total = 0;
    for (let i = 0; total < 100e6; i++) {
      const n = 155_000; // ~620 KB fp32 each, like ResNet-50's average conv weight
      const data = new Float32Array(n).map((_, j) => Math.sin(i + j));
      inits.push({ name: `w${i}`, dims: [n], dataType: 1, rawData: new Uint8Array(data.buffer) });
      nodes.push({ name: `add${i}`, opType: 'Add', input: [prev, `w${i}`], output: [`y${i}`] });
      prev = `y${i}`; total += n * 4;
    }
    const vi = (name) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 155000 }] } } } });
    const bytes = onnx.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }],
      graph: { name: 'g', input: [vi('x')], output: [vi(prev)], initializer: inits, node: nodes } }).finish();
    writeFileSync(path, bytes);
  }
}
const mb = statSync(path).size / 1e6;
const times = [];
for (let i = 0; i < 5; i++) {
  const t0 = performance.now();
  const m = loadModel(path);
  times.push(performance.now() - t0);
  if (i === 0) console.log(`${path}: ${mb.toFixed(1)} MB, ${m.graph.nodes.length} nodes, ${m.graph.initializers.size} initializers`);
}
times.sort((a, b) => a - b);
console.log(JSON.stringify({ model: path, mb: +mb.toFixed(1), import_ms_median: +times[2].toFixed(1), import_ms_min: +times[0].toFixed(1) }));
