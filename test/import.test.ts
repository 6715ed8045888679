import { describe, expect, it } from 'vitest';
import { parseModel, loadModel } from '../src/onnx/import.js';
import { TsrtError } from '../src/errors.js';
import { readFileSync } from 'node:fs';

const NODE = new URL('../../shared/onnx-tests/node/', import.meta.url).pathname;

describe('importer', () => {
  it('imports a node test model', () => {
    const m = loadModel(NODE + 'test_add/model.onnx');
    expect(m.graph.nodes.map((n) => n.op)).toEqual(['Add']);
    expect(m.graph.inputs.map((i) => i.type.shape)).toEqual([[3, 4, 5], [3, 4, 5]]);
  });
  it('rejects a truncated model with a typed error naming the file', () => {
    const bytes = readFileSync(NODE + 'test_conv_with_strides_padding/model.onnx');
    const f = () => parseModel(bytes.subarray(0, bytes.length - 7), { file: 'cut.onnx' });
    expect(f).toThrow(TsrtError);
    expect(f).toThrow(/cut\.onnx/);
  });
  it('rejects garbage', () => {
    expect(() => parseModel(new Uint8Array([1, 2, 3, 4, 255, 255]), { file: 'junk.onnx' })).toThrow(/junk\.onnx/);
  });
  it('rejects an empty file', () => {
    expect(() => parseModel(new Uint8Array(), { file: 'empty.onnx' })).toThrow(/empty/);
  });
});
