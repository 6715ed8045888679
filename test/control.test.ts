// If, Loop and Scan: CPU reference against ONNX Runtime (outer-scope capture, nesting, trip counts, scan outputs,
// directions and axes) and shape inference of the bodies.
import { describe, expect, it } from 'vitest';
import { bool, compareWithOrt, diff, f32, i64, modelBytes, rand, runTsrt, type AttrSpec, type GraphSpec, type NodeSpec } from './rnn-control.build.js';
import { loadModel, loadTensorFile, parseModel } from '../src/onnx/import.js';
import { runModelCpu } from '../src/runtime/cpu_executor.js';
import { verifyGraph } from '../src/ir/verify.js';
import { inferShapes } from '../src/ir/infer.js';
import type { Tensor } from '../src/ir/types.js';

const X = rand('float32', [2, 3], 1);
const Y = rand('float32', [2, 3], 2);

/** If(c) then x + y else x - y, both branches capturing x and y from the enclosing graph. */
function ifGraph(condDims: number[]): GraphSpec {
  return {
    inputs: [['c', 'bool', condDims], ['x', 'float32', [2, 3]], ['y', 'float32', [2, 3]]],
    outputs: [['out', 'float32', [2, 3]]],
    nodes: [{
      op: 'If', inputs: ['c'], outputs: ['out'], attrs: {
        then_branch: { g: { name: 'then', inputs: [], outputs: [['t', 'float32', [2, 3]]], nodes: [{ op: 'Add', inputs: ['x', 'y'], outputs: ['t'] }] } },
        else_branch: { g: { name: 'else', inputs: [], outputs: [['e', 'float32', [2, 3]]], nodes: [{ op: 'Sub', inputs: ['x', 'y'], outputs: ['e'] }] } },
      },
    }],
  };
}

describe('If', () => {
  for (const c of [true, false]) {
    it(`runs the ${c ? 'then' : 'else'} branch with outer-scope values`, async () => {
      expect(await compareWithOrt(ifGraph([]), 16, { c: bool([], [c]), x: X, y: Y })).toEqual([]);
    });
  }
  it('accepts a 1-element cond tensor', async () => {
    expect(await compareWithOrt(ifGraph([1]), 16, { c: bool([1], [false]), x: X, y: Y })).toEqual([]);
  });
  it('rejects a cond with more than one element, naming the node', () => {
    expect(() => runTsrt(modelBytes(ifGraph([2]), 16), { c: bool([2], [true, false]), x: X, y: Y }))
      .toThrow(/If_0.*cond must hold exactly one element/s);
  });
  it('runs nested If nodes that capture values two scopes up', async () => {
    const inner = (name: string, op: string): GraphSpec => ({
      name, inputs: [], outputs: [[`${name}_o`, 'float32', [2, 3]]], nodes: [{ op, inputs: ['x', 'y'], outputs: [`${name}_o`] }],
    });
    const g: GraphSpec = {
      inputs: [['a', 'bool', []], ['b', 'bool', []], ['x', 'float32', [2, 3]], ['y', 'float32', [2, 3]]],
      outputs: [['out', 'float32', [2, 3]]],
      nodes: [{
        op: 'If', inputs: ['a'], outputs: ['out'], attrs: {
          then_branch: { g: {
            name: 'outer_then', inputs: [], outputs: [['r', 'float32', [2, 3]]],
            nodes: [
              { op: 'If', inputs: ['b'], outputs: ['m'], attrs: { then_branch: { g: inner('tt', 'Mul') }, else_branch: { g: inner('te', 'Sub') } } },
              { op: 'Relu', inputs: ['m'], outputs: ['r'] },
            ],
          } },
          else_branch: { g: inner('e', 'Add') },
        },
      }],
    };
    for (const [a, b] of [[true, true], [true, false], [false, true]]) {
      expect(await compareWithOrt(g, 16, { a: bool([], [a]), b: bool([], [b]), x: X, y: Y })).toEqual([]);
    }
  });
  it('infers output types from the branches: equal dims kept, differing dims fresh, constant cond exact', () => {
    const branch = (name: string, inputs: string[]): GraphSpec => ({
      name, inputs: [], outputs: [[`${name}_o`, 'float32']], nodes: [{ op: 'Concat', inputs, outputs: [`${name}_o`], attrs: { axis: { i: 0 } } }],
    });
    const g: GraphSpec = {
      inputs: [['c', 'bool', []], ['x', 'float32', ['n', 3]]],
      outputs: [['out', 'float32']],
      nodes: [{ op: 'If', inputs: ['c'], outputs: ['out'], attrs: { then_branch: { g: branch('t', ['x']) }, else_branch: { g: branch('e', ['x', 'x']) } } }],
    };
    const m = parseModel(modelBytes(g, 16));
    const out = inferShapes(m.graph).graph.valueTypes.get('out')!;
    expect(out.dtype).toBe('float32');
    expect(out.shape[1]).toBe(3);
    expect(typeof out.shape[0]).toBe('string');
    expect(out.shape[0]).not.toBe('n');
    // Same model with the condition folded to a constant: the else branch's [2n, 3] has no symbol for 2n, but the
    // then branch's type comes through exactly.
    const constant = { ...m.graph, inputs: m.graph.inputs.filter((i) => i.name !== 'c'), initializers: new Map([['c', bool([], [true])]]) };
    expect(inferShapes(constant).graph.valueTypes.get('out')).toEqual({ dtype: 'float32', shape: ['n', 3] });
  });
});

/** Loop body: acc' = acc + x (x from the outer scope); scan outputs acc' and the iteration number. */
function loopGraph(mInput: string, condInput: string, condOut: NodeSpec | undefined, extraInputs: GraphSpec['inputs'] = []): GraphSpec {
  const body: GraphSpec = {
    name: 'body',
    inputs: [['i', 'int64', []], ['cond_in', 'bool', []], ['acc', 'float32', [2, 3]]],
    outputs: [[condOut ? condOut.outputs[0] : 'cond_in', 'bool', []], ['acc2', 'float32', [2, 3]], ['acc2_scan', 'float32', [2, 3]], ['i_scan', 'int64', []]],
    nodes: [
      { op: 'Add', inputs: ['acc', 'x'], outputs: ['acc2'] },
      { op: 'Relu', inputs: ['acc2'], outputs: ['acc2_scan'] },
      { op: 'Add', inputs: ['i', 'one'], outputs: ['i_scan'] },
      ...(condOut ? [condOut] : []),
    ],
    inits: { one: i64([], [1]) },
  };
  return {
    inputs: [...extraInputs, ['x', 'float32', [2, 3]], ['acc0', 'float32', [2, 3]]],
    outputs: [['acc_final', 'float32', [2, 3]], ['scan_acc', 'float32'], ['scan_i', 'int64']],
    nodes: [{ op: 'Loop', inputs: [mInput, condInput, 'acc0'], outputs: ['acc_final', 'scan_acc', 'scan_i'], attrs: { body: { g: body } } }],
  };
}

describe('Loop', () => {
  it('runs M iterations, carries state and stacks scan outputs', async () => {
    const g = loopGraph('M', 'c', undefined, [['M', 'int64', []], ['c', 'bool', []]]);
    expect(await compareWithOrt(g, 16, { M: i64([], [4]), c: bool([], [true]), x: X, acc0: Y })).toEqual([]);
    const [acc, scanAcc, scanI] = runTsrt(modelBytes(g, 16), { M: i64([], [4]), c: bool([], [true]), x: X, acc0: Y });
    expect(acc.dims).toEqual([2, 3]);
    expect(scanAcc.dims).toEqual([4, 2, 3]);
    expect(Array.from(scanI.data as BigInt64Array)).toEqual([1n, 2n, 3n, 4n]);
  });
  it('runs M iterations when cond is omitted', async () => {
    const g = loopGraph('M', '', undefined, [['M', 'int64', []]]);
    expect(await compareWithOrt(g, 16, { M: i64([], [3]), x: X, acc0: Y })).toEqual([]);
  });
  it('stops when the body yields false (body cond computed from an outer-scope value)', async () => {
    const condOut: NodeSpec = { op: 'Squeeze', inputs: ['go', 'axis0'], outputs: ['cond_out'] };
    const g = loopGraph('M', 'c', condOut, [['M', 'int64', []], ['c', 'bool', []], ['go', 'bool', [1]]]);
    g.nodes.unshift({ op: 'Constant', inputs: [], outputs: ['axis0'], attrs: { value_ints: { ints: [0] } } });
    for (const go of [false, true]) {
      const feeds = { M: i64([], [5]), c: bool([], [true]), go: bool([1], [go]), x: X, acc0: Y };
      expect(runTsrt(modelBytes(g, 16), feeds)[1].dims).toEqual([go ? 5 : 1, 2, 3]);
      expect(await compareWithOrt(g, 16, feeds)).toEqual([]);
    }
  });
  it('runs zero iterations when cond is false', async () => {
    const g = loopGraph('', 'c', undefined, [['c', 'bool', []]]);
    const outs = runTsrt(modelBytes(g, 16), { c: bool([], [false]), x: X, acc0: Y });
    expect(outs[0].data).toEqual(Y.data);
    expect(outs.slice(1).map((t) => t.dims)).toEqual([[0, 2, 3], [0]]);
  });
  it('runs zero iterations for M = 0 and returns the initial values', async () => {
    const g = loopGraph('M', '', undefined, [['M', 'int64', []]]);
    const outs = runTsrt(modelBytes(g, 16), { M: i64([], [0]), x: X, acc0: Y });
    expect(outs[0].data).toEqual(Y.data);
    expect(outs.slice(1).map((t) => t.dims)).toEqual([[0, 2, 3], [0]]);
  });
  it('infers carried and scan output types; a constant M with a pass-through cond gives the trip count', () => {
    const g = loopGraph('M', '', undefined, []);
    g.inputs = [['x', 'float32', ['n', 3]], ['acc0', 'float32', ['n', 3]]];
    const m = parseModel(modelBytes(g, 16));
    const graph = { ...m.graph, initializers: new Map([['M', i64([], [7])]]) };
    const vt = inferShapes(graph).graph.valueTypes;
    expect(vt.get('acc_final')).toEqual({ dtype: 'float32', shape: ['n', 3] });
    expect(vt.get('scan_acc')).toEqual({ dtype: 'float32', shape: [7, 'n', 3] });
    expect(vt.get('scan_i')).toEqual({ dtype: 'int64', shape: [7] });
  });
});

/** Scan: running sum over rows of xs (state s), scan output the running sums. */
function scanGraph(attrs: Record<string, AttrSpec>, xsDims: (number | string)[], sDims: number[]): GraphSpec {
  const body: GraphSpec = {
    name: 'body',
    inputs: [['s', 'float32', sDims], ['row', 'float32', sDims]],
    outputs: [['s2', 'float32', sDims], ['s2_out', 'float32', sDims]],
    nodes: [{ op: 'Add', inputs: ['s', 'row'], outputs: ['s2'] }, { op: 'Relu', inputs: ['s2'], outputs: ['s2_out'] }],
  };
  return {
    inputs: [['s0', 'float32', sDims], ['xs', 'float32', xsDims]],
    outputs: [['s_final', 'float32'], ['sums', 'float32']],
    nodes: [{ op: 'Scan', inputs: ['s0', 'xs'], outputs: ['s_final', 'sums'], attrs: { body: { g: body }, num_scan_inputs: { i: 1 }, ...attrs } }],
  };
}

describe('Scan', () => {
  const cases: [string, Record<string, AttrSpec>, number[]][] = [
    ['forward along axis 0', {}, [4, 3]],
    ['reversed input', { scan_input_directions: { ints: [1] } }, [4, 3]],
    ['reversed output', { scan_output_directions: { ints: [1] } }, [4, 3]],
    ['input axis 1, output axis 1', { scan_input_axes: { ints: [1] }, scan_output_axes: { ints: [1] } }, [3, 4]],
    ['negative axes', { scan_input_axes: { ints: [-1] }, scan_output_axes: { ints: [-1] } }, [3, 4]],
  ];
  for (const [name, attrs, dims] of cases) {
    it(name, async () => {
      const g = scanGraph(attrs, dims, [3]);
      expect(await compareWithOrt(g, 16, { s0: rand('float32', [3], 5), xs: rand('float32', dims, 6) })).toEqual([]);
    });
  }
  it('infers state and scan output shapes', () => {
    const g = scanGraph({ scan_input_axes: { ints: [1] }, scan_output_axes: { ints: [-1] } }, [3, 'len'], [3]);
    const vt = inferShapes(parseModel(modelBytes(g, 16)).graph).graph.valueTypes;
    expect(vt.get('s_final')).toEqual({ dtype: 'float32', shape: [3] });
    expect(vt.get('sums')).toEqual({ dtype: 'float32', shape: [3, 'len'] });
  });
  it('rejects scan inputs of different lengths', () => {
    const g = scanGraph({}, [4, 3], [3]);
    g.inputs.push(['xs2', 'float32', [5, 3]]);
    g.nodes[0].inputs.push('xs2');
    g.nodes[0].attrs!.num_scan_inputs = { i: 2 };
    const body = (g.nodes[0].attrs!.body as { g: GraphSpec }).g;
    body.inputs.push(['row2', 'float32', [3]]);
    const feeds: Record<string, Tensor> = { s0: f32([3], [0, 0, 0]), xs: rand('float32', [4, 3], 1), xs2: rand('float32', [5, 3], 2) };
    expect(() => runTsrt(modelBytes(g, 16), feeds)).toThrow(/Scan_0.*scan input 1 has length 5/s);
  });
});

describe('If inference picks branches like a run would', () => {
  const branches = (thenNodes: NodeSpec[], thenOut: string, elseNodes: NodeSpec[], elseOut: string) => ({
    then_branch: { g: { name: 't', inputs: [], outputs: [[thenOut, 'float32']], nodes: thenNodes } as GraphSpec },
    else_branch: { g: { name: 'e', inputs: [], outputs: [[elseOut, 'float32']], nodes: elseNodes } as GraphSpec },
  });

  it('folds a rank test (Size(Shape(x)) == 2, as exporters write it) and takes that branch exactly', () => {
    // x is [n, 4]: rank 2, so cond is true and the then branch (Unsqueeze to [1, n, 4]) is the output type even
    // though the else branch has another rank and n is unknown.
    const g: GraphSpec = {
      inputs: [['x', 'float32', ['n', 4]]],
      outputs: [['out', 'float32']],
      inits: { two: i64([], [2]), axes: i64([1], [0]) },
      nodes: [
        { op: 'Shape', inputs: ['x'], outputs: ['s'] },
        { op: 'Size', inputs: ['s'], outputs: ['rank'] },
        { op: 'Equal', inputs: ['rank', 'two'], outputs: ['c'] },
        { op: 'If', inputs: ['c'], outputs: ['out'], attrs: branches(
          [{ op: 'Unsqueeze', inputs: ['x', 'axes'], outputs: ['u'] }], 'u',
          [{ op: 'Flatten', inputs: ['x'], outputs: ['f'], attrs: { axis: { i: 0 } } }], 'f') },
      ],
    };
    expect(inferShapes(parseModel(modelBytes(g, 16)).graph).graph.valueTypes.get('out')).toEqual({ dtype: 'float32', shape: [1, 'n', 4] });
  });

  it('uses the only branch that can be inferred, and fails when neither can', () => {
    const g: GraphSpec = {
      inputs: [['c', 'bool', []], ['x', 'float32', [2, 3]], ['y', 'float32', [4]]],
      outputs: [['out', 'float32']],
      nodes: [{ op: 'If', inputs: ['c'], outputs: ['out'], attrs: branches(
        [{ op: 'Relu', inputs: ['x'], outputs: ['r'] }], 'r',
        [{ op: 'Add', inputs: ['x', 'y'], outputs: ['bad'] }], 'bad') }],
    };
    const graph = parseModel(modelBytes(g, 16)).graph;
    expect(inferShapes(graph).graph.valueTypes.get('out')).toEqual({ dtype: 'float32', shape: [2, 3] });
    const ifNode = graph.nodes[0];
    const elseOnly = { ...graph, nodes: [{ ...ifNode, attrs: { ...ifNode.attrs, then_branch: ifNode.attrs.else_branch } }] };
    expect(() => inferShapes(elseOnly)).toThrow(/cannot broadcast/);
  });
});

describe('silero_vad_v5 (nested If, LSTM)', () => {
  const dir = new URL('../../shared/onnx-tests/models/real/silero_vad_v5/', import.meta.url).pathname;

  it('matches the ONNX Runtime reference outputs on the CPU reference', () => {
    const model = loadModel(dir + 'model.onnx');
    const feeds = new Map(model.graph.inputs.map((vi, k) => [vi.name, loadTensorFile(`${dir}test_data_set_0/input_${k}.pb`)]));
    const outs = runModelCpu(model, feeds);
    outs.forEach((t, k) => expect(diff(t, loadTensorFile(`${dir}test_data_set_0/output_${k}.pb`), 1e-3, 1e-7)).toBeUndefined());
  });

  it('infers exact output shapes for a 16 kHz chunk and verifies clean, symbolic or static', () => {
    const g = loadModel(dir + 'model.onnx').graph;
    expect(verifyGraph(g)).toEqual([]);
    const fixed = { ...g, inputs: g.inputs.map((vi) => (vi.name === 'input' ? { name: 'input', type: { dtype: 'float32' as const, shape: [1, 512] } }
      : vi.name === 'state' ? { name: 'state', type: { dtype: 'float32' as const, shape: [2, 1, 128] } } : vi)) };
    expect(inferShapes(fixed).graph.outputs.map((o) => o.type.shape)).toEqual([[1, 1], [2, 1, 128]]);
    expect(verifyGraph(fixed)).toEqual([]);
  });
});

describe('control-flow support checks', () => {
  it('reports If without else_branch and Scan-8 at import', () => {
    const g = ifGraph([]);
    delete g.nodes[0].attrs!.else_branch;
    expect(() => parseModel(modelBytes(g, 16))).toThrow(/If needs the graph attribute\(s\) else_branch/);
    const s = scanGraph({}, [4, 3], [3]);
    expect(() => parseModel(modelBytes(s, 8))).toThrow(/Scan-8 .* is not supported/);
  });
});
