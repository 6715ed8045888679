// Regenerates src/onnx/onnx_pb.{js,d.ts} from the vendored src/onnx/onnx.proto3 (protobufjs static code).
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
const bin = (n) => new URL(`../node_modules/.bin/${n}`, import.meta.url).pathname;
const dir = new URL('../src/onnx/', import.meta.url).pathname;
execFileSync(bin('pbjs'), ['-t', 'static-module', '-w', 'es6', '--no-verify', '--no-convert', '--no-delimited',
  '--no-service', '--force-number', '-o', dir + 'onnx_pb.js', dir + 'onnx.proto3'], { stdio: 'inherit' });
// ESM under Node needs the explicit file extension.
const js = readFileSync(dir + 'onnx_pb.js', 'utf8').replace('"protobufjs/minimal"', '"protobufjs/minimal.js"');
writeFileSync(dir + 'onnx_pb.js', js);
execFileSync(bin('pbts'), ['-o', dir + 'onnx_pb.d.ts', dir + 'onnx_pb.js'], { stdio: 'inherit' });
