// Bad input gets a typed error that names the file or node and the fix: external data (present, missing,
// truncated), unknown ops (all reported at once), unsupported opsets, wrong run-time input shapes and dtypes.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onnx } from '../src/onnx/onnx_pb.js';
import { loadModel, parseModel } from '../src/onnx/import.js';
import { runModelCpu } from '../src/runtime/cpu_executor.js';
import { build } from '../src/runtime/engine.js';
import { InputError, ModelLoadError, TsrtError, UnsupportedError } from '../src/errors.js';
import { makeTensor } from '../src/ir/tensor.js';
import { modelBytes } from './rnn-control.build.js';

const f32 = (dims: number[], v: number[]) => makeTensor('float32', dims, Float32Array.from(v));

/** y = x + w with w stored in an external file `w.bin`. */
function externalModel(dir: string, bytes = 16): string {
  const model = onnx.ModelProto.encode({
    irVersion: 8, opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'g',
      input: [{ name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 4 }] } } } }],
      output: [{ name: 'y', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 4 }] } } } }],
      initializer: [{
        name: 'w', dims: [4], dataType: 1, dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [{ key: 'location', value: 'w.bin' }, { key: 'offset', value: '0' }, { key: 'length', value: String(bytes) }],
      }],
      node: [{ name: 'add', opType: 'Add', input: ['x', 'w'], output: ['y'] }],
    },
  }).finish();
  const path = join(dir, 'model.onnx');
  writeFileSync(path, model);
  return path;
}

describe('external data', () => {
  it('loads initializers from a file beside the model', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-ext-'));
    writeFileSync(join(dir, 'w.bin'), Buffer.from(new Float32Array([1, 2, 3, 4]).buffer));
    const m = loadModel(externalModel(dir));
    const [y] = runModelCpu(m, new Map([['x', f32([4], [10, 20, 30, 40])]]));
    expect(Array.from(y.data as Float32Array)).toEqual([11, 22, 33, 44]);
  });
  it('a missing external file names the tensor and the folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-ext-'));
    const f = () => loadModel(externalModel(dir));
    expect(f).toThrow(ModelLoadError);
    expect(f).toThrow(/w\.bin.*tensor 'w'.*missing/);
  });
  it('a truncated external file is refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-ext-'));
    writeFileSync(join(dir, 'w.bin'), Buffer.alloc(8));
    expect(() => loadModel(externalModel(dir))).toThrow(/truncated/);
  });
});

describe('unsupported models', () => {
  it('reports every unsupported node at once, with op and opset', () => {
    const bytes = modelBytes({
      inputs: [['x', 'float32', [2]]], outputs: [['z', 'float32', [2]]],
      nodes: [
        { op: 'FancyOp', inputs: ['x'], outputs: ['y'] },
        { op: 'Relu', inputs: ['y'], outputs: ['r'] },
        { op: 'OtherOp', inputs: ['r'], outputs: ['z'] },
      ],
    }, 17);
    try {
      parseModel(bytes, { file: 'm.onnx' });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(UnsupportedError);
      const u = e as UnsupportedError;
      expect(u.items.map((i) => i.op)).toEqual(['FancyOp', 'OtherOp']);
      expect(u.message).toMatch(/FancyOp_0.*opset 17/s);
      expect(u.message).toMatch(/fix:/);
    }
  });
  it('an opset newer than supported is refused with the range', () => {
    const bytes = modelBytes({ inputs: [['x', 'float32', [2]]], outputs: [['y', 'float32', [2]]], nodes: [{ op: 'Relu', inputs: ['x'], outputs: ['y'] }] }, 99);
    expect(() => parseModel(bytes, { file: 'new.onnx' })).toThrow(/opset 99 is outside the supported range/);
  });
});

describe('run-time inputs', () => {
  const bytes = modelBytes({ inputs: [['x', 'float32', ['batch', 3]]], outputs: [['y', 'float32', ['batch', 3]]], nodes: [{ op: 'Relu', inputs: ['x'], outputs: ['y'] }] }, 17);
  const model = parseModel(bytes, { file: 'relu.onnx' });
  it('wrong dtype names the input and the expected type', () => {
    const f = () => runModelCpu(model, new Map([['x', makeTensor('int32', [1, 3], new Int32Array(3))]]));
    expect(f).toThrow(InputError);
    expect(f).toThrow(/'x' is int32, the model expects float32/);
  });
  it('wrong rank or fixed dim names the expected shape', () => {
    expect(() => runModelCpu(model, new Map([['x', f32([1, 4], [1, 2, 3, 4])]]))).toThrow(/shape \[1,4\].*\[batch,3\]/);
  });
  it('a missing input lists the inputs', () => {
    expect(() => runModelCpu(model, new Map())).toThrow(/'x' was not given/);
  });
  it('an engine refuses a shape other than the one it was built for', async () => {
    const engine = await build(model, { device: 'cpu', compileKernels: false, shapes: { x: [2, 3] } });
    await expect(engine.run({ x: f32([1, 3], [1, 2, 3]) })).rejects.toThrow(TsrtError);
    const out = await engine.run({ x: f32([2, 3], [-1, 2, -3, 4, -5, 6]) });
    expect(Array.from(out.get('y')!.data as Float32Array)).toEqual([0, 2, 0, 4, 0, 6]);
  });
});

// Feeds whose array type, length or shape disagree with the engine: on the GPU these would be copied past the end
// of (or short of) the input's device buffer, so every one is refused before a byte moves (runtime/feed_check.ts).
describe('run-time inputs that would overrun device buffers', () => {
  const scalarBytes = modelBytes({ inputs: [['s', 'float32', []], ['x', 'float32', [4]]], outputs: [['y', 'float32', [4]]], nodes: [{ op: 'Mul', inputs: ['x', 's'], outputs: ['y'] }] }, 17);
  const engineP = build(parseModel(scalarBytes, { file: 'mul.onnx' }), { device: 'cpu', compileKernels: false });
  const x = f32([4], [1, 2, 3, 4]);
  it('a tensor for a scalar input must be a scalar', async () => {
    const engine = await engineP;
    await expect(engine.run({ s: f32([4], [1, 1, 1, 1]), x })).rejects.toThrow(/input 's' has shape \[4\], the engine was built for \[\]/);
    const y = (await engine.run({ s: f32([], [2]), x })).get('y')!;
    expect(Array.from(y.data as Float32Array)).toEqual([2, 4, 6, 8]);
  });
  it('a Tensor whose data length or array type does not match its dims and dtype', async () => {
    const engine = await engineP;
    await expect(engine.run({ s: f32([], [2]), x: { dtype: 'float32', dims: [4], data: new Float32Array(64) } })).rejects.toThrow(/has 64 values but dims \[4\] need 4/);
    await expect(engine.run({ s: f32([], [2]), x: { dtype: 'float32', dims: [4], data: new Float64Array(4) } })).rejects.toThrow(/float32 but its data is a Float64Array/);
    await expect(engine.run({ s: f32([], [2]), x: { dtype: 'float32', dims: [-4], data: new Float32Array(4) } })).rejects.toThrow(InputError);
  });
  it('a plain typed array of the wrong element type', async () => {
    const engine = await engineP;
    await expect(engine.run({ s: new Float32Array([2]), x: new Float64Array(4) })).rejects.toThrow(/'x' is float32, but a Float64Array was passed/);
    await expect(engine.run({ s: new Float32Array([2]), x: new Float32Array([1, 2, 3, 4]) })).resolves.toBeInstanceOf(Map);
  });
});
