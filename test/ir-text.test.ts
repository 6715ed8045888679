// Text IR: print/parse round trips (hand-written graphs, every attribute kind and dtype, real models with nested
// subgraphs, the whole node-test suite), summaries for dumps, and parse errors with positions.
import { describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { parseGraph, printGraph } from '../src/ir/text.js';
import { loadModel } from '../src/onnx/import.js';
import { makeTensor } from '../src/ir/tensor.js';
import type { Graph } from '../src/ir/types.js';
import { GraphError } from '../src/errors.js';

const SHARED = new URL('../../shared/onnx-tests/', import.meta.url).pathname;

/** A graph with every tensor's data replaced by its array type and bytes: the same equality as toEqual on the
 * typed arrays (bit-exact, -0 and NaN payloads included), without comparing millions of elements one by one. */
function comparable(x: unknown): unknown {
  if (x instanceof Map) return new Map([...x].map(([k, v]) => [k, comparable(v)]));
  if (Array.isArray(x)) return x.map(comparable);
  if (ArrayBuffer.isView(x)) return `${x.constructor.name}:${Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('base64')}`;
  if (x && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, comparable(v)]));
  return x;
}

function roundTrip(g: Graph, checkCanonical = true): Graph {
  const text = printGraph(g, { inlineLimit: Infinity });
  const back = parseGraph(text);
  expect(comparable(back)).toEqual(comparable(g));
  // Maps compare without order in toEqual; keep initializer order too (it is the printed order).
  expect([...back.initializers.keys()]).toEqual([...g.initializers.keys()]);
  // Printing is canonical: a second round gives the same text.
  if (checkCanonical) expect(printGraph(back, { inlineLimit: Infinity })).toBe(text);
  return back;
}

const SAMPLE = `graph main(%x: float32[N,3,224,224]) -> (%y: float32[N,1000]) opset 17 {
  const %w: float32[2,2] = [1, 2.5, -0, 1e-7]
  const %b: int64[2] = [-9223372036854775808, 9223372036854775807]
  %h: float32[N,64,112,112] = Conv(%x, %w, _) {strides=[2, 2], pads=[3, 3, 3, 3], group=1} name="conv1"
  %y = Relu(%h)
}
`;

describe('text IR', () => {
  it('parses the documented example and prints it back unchanged', () => {
    const g = parseGraph(SAMPLE);
    expect(g.inputs).toEqual([{ name: 'x', type: { dtype: 'float32', shape: ['N', 3, 224, 224] } }]);
    expect(g.opset).toBe(17);
    expect(g.nodes.map((n) => [n.name, n.op, n.inputs])).toEqual([['conv1', 'Conv', ['x', 'w', '']], ['Relu_1', 'Relu', ['h']]]);
    expect(g.nodes[0].attrs).toEqual({ strides: { kind: 'ints', value: [2, 2] }, pads: { kind: 'ints', value: [3, 3, 3, 3] }, group: { kind: 'int', value: 1 } });
    expect(Array.from(g.initializers.get('w')!.data as Float32Array)).toEqual([1, 2.5, -0, Math.fround(1e-7)]);
    expect(g.initializers.get('b')!.data).toEqual(BigInt64Array.of(-(2n ** 63n), 2n ** 63n - 1n));
    expect(g.valueTypes.get('h')).toEqual({ dtype: 'float32', shape: ['N', 64, 112, 112] });
    expect(printGraph(g)).toBe(SAMPLE);
    roundTrip(g);
  });

  it('round-trips every attribute kind, dtype and naming corner', () => {
    const sub = (name: string, out: string): Graph => ({
      name, inputs: [], outputs: [{ name: out, type: { dtype: 'float32', shape: ['?'] } }],
      nodes: [{ name: 'inner', op: 'Identity', domain: '', inputs: ['weird name: 1'], outputs: [out], attrs: {} }],
      initializers: new Map(), valueTypes: new Map(), opset: 13,
    });
    const f16 = makeTensor('float16', [5], Uint16Array.of(0x3c00, 0x8000, 0x7c00, 0x7e00, 0x0001));
    const f16Payload = makeTensor('float16', [2], Uint16Array.of(0x7d01, 0x3c00));
    const f32Payload = makeTensor('float32', [1], new Float32Array(Uint32Array.of(0xffc00001).buffer));
    const g: Graph = {
      name: 'torch-jit-export',
      inputs: [
        { name: 'weird name: 1', type: { dtype: 'float32', shape: ['batch size', '?', 3, 'N'] } },
        { name: 'onnx::Conv_0', type: { dtype: 'bool', shape: [] } },
      ],
      outputs: [{ name: 'out/0', type: { dtype: 'float32', shape: ['?'] } }],
      initializers: new Map<string, Graph['initializers'] extends Map<string, infer T> ? T : never>([
        ['f16', f16], ['f16nan', f16Payload], ['f32nan', f32Payload],
        ['bf16', makeTensor('bfloat16', [3], Uint16Array.of(0x3f80, 0xc2f7, 0x0000))],
        ['f64', makeTensor('float64', [3], Float64Array.of(0.1, -1e-300, Infinity))],
        ['u64', makeTensor('uint64', [2], BigUint64Array.of(0n, 2n ** 64n - 1n))],
        ['i8', makeTensor('int8', [3], Int8Array.of(-128, 0, 127))],
        ['u32', makeTensor('uint32', [1], Uint32Array.of(4294967295))],
        ['b', makeTensor('bool', [2, 1], Uint8Array.of(1, 0))],
        ['s', makeTensor('string', [2], ['a "quoted"\nline', ''])],
        ['empty', makeTensor('float32', [0, 3])],
        ['scalar', makeTensor('int32', [], Int32Array.of(-7))],
      ]),
      valueTypes: new Map([
        ['mid', { dtype: 'float32' as const, shape: [1, 'N'] }],
        ['not_written_here', { dtype: 'int64' as const, shape: [] }],
      ]),
      opset: 17,
      nodes: [
        {
          name: 'n0', op: 'Custom', domain: 'com.example', inputs: ['weird name: 1', '', 'onnx::Conv_0'], outputs: ['mid', ''],
          attrs: {
            i: { kind: 'int', value: -3 }, big: { kind: 'int', value: 9223372036854775807 },
            f: { kind: 'float', value: Math.fround(0.1) }, one: { kind: 'float', value: 1 }, dbl: { kind: 'float', value: 0.1 },
            nan: { kind: 'float', value: NaN }, ninf: { kind: 'float', value: -Infinity }, negz: { kind: 'float', value: -0 },
            s: { kind: 'string', value: 'tab\there' }, ints: { kind: 'ints', value: [] }, floats: { kind: 'floats', value: [1, Math.fround(2.2), -0.5] },
            nofloats: { kind: 'floats', value: [] }, strings: { kind: 'strings', value: ['x', 'y z'] }, nostrings: { kind: 'strings', value: [] },
            t: { kind: 'tensor', value: makeTensor('int64', [2], BigInt64Array.of(1n, -1n)) },
            g: { kind: 'graph', value: sub('then', 'o1') },
            gs: { kind: 'graphs', value: [sub('a', 'o2'), sub('b', 'o3')] }, nogs: { kind: 'graphs', value: [] },
            'odd key': { kind: 'int', value: 1 },
          },
        },
        { name: 'Print_1', op: 'Print', domain: '', inputs: ['mid'], outputs: [], attrs: {} },
        { name: 'n2', op: 'Identity', domain: '', inputs: ['mid'], outputs: ['out/0'], attrs: {} },
      ],
    };
    const back = roundTrip(g);
    // NaN payloads survive through the hex form; ordinary values print as decimals.
    const text = printGraph(g, { inlineLimit: Infinity });
    expect(text).toContain('const %f16nan: float16[2] = hex"017d003c"');
    expect(text).toContain('const %f16: float16[5] = [1, -0, inf, nan, 6e-8]');
    expect(text).toContain('f=0.1,\n    one=1.0,\n    dbl=0.1d,\n    "nan"=nan,\n    ninf=-inf,\n    negz=-0.0,');
    expect(text).toContain('%mid: float32[1,N], _ = com.example::Custom(%"weird name: 1", _, %"onnx::Conv_0") {');
    expect(text).toContain('const %f32nan: float32[1] = hex"0100c0ff"');
    expect(text).toContain('type %not_written_here: int64[]');
    expect(text).toContain('graph "torch-jit-export"(%"weird name: 1": float32["batch size",?,3,N]');
    expect(text).toContain('  Print(%mid)\n');
    expect(back.nodes[0].attrs.dbl).toEqual({ kind: 'float', value: 0.1 });
  });

  it('round-trips the real models with nested If subgraphs and large weights', () => {
    for (const m of ['silero_vad_v5']) {
      roundTrip(loadModel(`${SHARED}models/real/${m}/model.onnx`, { allowUnsupported: true }).graph, false);
    }
  });

  it('round-trips every ONNX node-test model', () => {
    const dirs = readdirSync(`${SHARED}node`);
    expect(dirs.length).toBeGreaterThan(400);
    for (const d of dirs) roundTrip(loadModel(`${SHARED}node/${d}/model.onnx`, { allowUnsupported: true }).graph);
  });

  it('summarizes large tensors for dumps; the parser reads summaries only when asked', () => {
    const g = parseGraph(SAMPLE.replace('[1, 2.5, -0, 1e-7]', '[1, 2, 3, 4]'));
    const text = printGraph(g, { inlineLimit: 3 });
    expect(text).toMatch(/const %w: float32\[2,2\] = \(16 bytes, sha256 "[0-9a-f]{16}"\)/);
    expect(text).toContain('const %b: int64[2] = [');
    expect(() => parseGraph(text)).toThrow(/2:28: tensor w is a summary/);
    const zeros = parseGraph(text, { summaries: 'zeros' });
    expect(zeros.initializers.get('w')).toEqual(makeTensor('float32', [2, 2]));
    // Same data, same hash; different data, different hash.
    expect(printGraph(g, { inlineLimit: 3 })).toBe(text);
    const other = parseGraph(SAMPLE.replace('[1, 2.5, -0, 1e-7]', '[1, 2, 3, 5]'));
    expect(printGraph(other, { inlineLimit: 3 })).not.toBe(text);
  });

  it('reports parse errors with line and column', () => {
    const bad = (text: string, re: RegExp) => {
      expect(() => parseGraph(text)).toThrow(GraphError);
      expect(() => parseGraph(text)).toThrow(re);
    };
    bad('graph g() -> () {\n}', /1:17: the top-level graph needs `opset N`/);
    bad('graph g(%x: float33[1]) -> () opset 13 {}', /1:13: unknown element type float33/);
    bad('graph g() -> () opset 13 {\n  const %w: float32[3] = [1, 2]\n}', /2:26: tensor w has 2 values, shape \[3\] needs 3/);
    bad('graph g() -> () opset 13 {\n  %y = Relu(%x) {a=[]}\n}', /2:20: an empty list needs its kind/);
    bad('graph g() -> () opset 13 {\n  %y = Relu(%x) {a=1, a=2}\n}', /attribute a given twice/);
    bad('graph g() -> () opset 13 {\n  %y = Relu(%x) $\n}', /2:17: unexpected character "\$"/);
    bad('graph g() -> () opset 13 {}\ngraph h() -> () opset 13 {}', /2:1: text after the graph/);
  });

  it('accepts comments and free layout; subgraphs inherit the opset', () => {
    const g = parseGraph(`# a comment
      graph g(%c: bool[]) -> (%o: float32[]) opset 11 {   // trailing comment
        %o = If(%c) {then_branch=graph t() -> (%a: float32[]) { const %a: float32[] = [1] },
                      else_branch=graph e() -> (%b: float32[]) opset 13 { const %b: float32[] = [2] }}
      }`);
    expect((g.nodes[0].attrs.then_branch as { value: Graph }).value.opset).toBe(11);
    expect((g.nodes[0].attrs.else_branch as { value: Graph }).value.opset).toBe(13);
    roundTrip(g);
  });
});
