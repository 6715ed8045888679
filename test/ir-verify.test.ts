// verifyGraph: each structural rule and the type check, on graphs written in the text IR.
import { describe, expect, it } from 'vitest';
import { verifyGraph } from '../src/ir/verify.js';
import { parseGraph } from '../src/ir/text.js';
import { GraphError } from '../src/errors.js';
import '../src/ops/index.js';

const problems = (text: string) => verifyGraph(parseGraph(text)).map((p) => `${p.graph}${p.node ? ` ${p.node}` : ''}: ${p.message}`);

describe('verifyGraph', () => {
  it('accepts a well-formed graph with consistent recorded types', () => {
    expect(problems(`graph main(%x: float32[N,3], %y: float32[3]) -> (%z: float32[N,3]) opset 17 {
      const %w: float32[3] = [1, 2, 3]
      %a: float32[N,3] = Add(%x, %y)
      %b: float32[N,3] = Mul(%a, %w)
      %z = Relu(%b)
    }`)).toEqual([]);
  });

  it('reports undefined inputs, use before definition, duplicates, missing outputs and unknown ops together', () => {
    const found = problems(`graph main(%x: float32[3]) -> (%z: float32[3], %gone: float32[3]) opset 17 {
      %b = Relu(%a)
      %a = Add(%x, %nowhere)
      %a = Relu(%x) name="again"
      %z = NoSuchOp(%b)
      %q = Relu(%x) name="again"
    }`);
    expect(found).toEqual([
      "main Relu_0: input 0 'a' is used before node 'Add_1' produces it (nodes must be in topological order)",
      "main Add_1: input 1 'nowhere' is not produced by any node and is not a graph input, initializer or outer-scope value",
      "main again: value 'a' is produced more than once (already an output of node 'Add_1')",
      'main NoSuchOp_3: op NoSuchOp is not registered',
      "main again: node name 'again' is used by more than one node",
      "main: graph output 'gone' is never produced",
    ]);
  });

  it('reports cycles', () => {
    const found = problems(`graph main(%x: float32[3]) -> (%b: float32[3]) opset 17 {
      %a = Add(%x, %b)
      %b = Add(%x, %a)
    }`);
    expect(found).toContain("main: graph 'main' has a cycle through node(s) Add_0, Add_1");
  });

  it('checks recorded value types and declared outputs against inference', () => {
    const found = problems(`graph main(%x: float32[N,3], %y: float32[3]) -> (%z: float32[N,4]) opset 17 {
      %a: float32[N,5] = Add(%x, %y)
      %b: int64[N,3] = Mul(%a, %y)
      %z: float32[M] = Relu(%b)
    }`);
    expect(found).toEqual([
      'main Add_0: recorded type of \'a\' is float32[N,5] but inference gives float32[N,3] (dim 1 differs)',
      'main Mul_1: recorded type of \'b\' is int64[N,3] but inference gives float32[N,3] (element types differ)',
      'main Relu_2: recorded type of \'z\' is float32[M] but inference gives float32[N,3] (ranks differ)',
      "main: graph output 'z' is declared float32[N,4] but inference gives float32[N,3] (dim 1 differs)",
    ]);
  });

  it('reports a failing inference as a problem naming the node', () => {
    expect(problems(`graph main(%x: float32[2], %y: float32[3]) -> (%z: float32[2]) opset 17 {
      %z = Add(%x, %y)
    }`)).toEqual(['main Add_0: type inference fails: node \'Add_0\': cannot broadcast shapes [2] and [3]']);
  });

  it('checks subgraphs with the outer scope visible at their node', () => {
    const found = problems(`graph main(%c: bool[], %x: float32[3]) -> (%o: float32[3]) opset 17 {
      %o = If(%c) {
        then_branch=graph t() -> (%t1: float32[3]) {
          %t1 = Add(%x, %late)
        },
        else_branch=graph e() -> (%e1: float32[3]) {
          %e1 = Relu(%ghost)
          %x = Relu(%o)
        }
      }
      %late = Relu(%x)
    }`);
    expect(found).toEqual([
      "main/If_0.then_branch Add_0: input 1 'late' is not produced by any node and is not a graph input, initializer or outer-scope value",
      "main/If_0.else_branch Relu_0: input 0 'ghost' is not produced by any node and is not a graph input, initializer or outer-scope value",
      "main/If_0.else_branch Relu_1: input 0 'o' is not produced by any node and is not a graph input, initializer or outer-scope value",
      "main/If_0.else_branch Relu_1: value 'x' shadows a value of an enclosing graph",
    ]);
  });

  it('infers subgraph types in their scope: a sound If verifies clean', () => {
    expect(problems(`graph main(%c: bool[], %x: float32[N,3]) -> (%o: float32[N,3]) opset 17 {
      %y: float32[N,3] = Relu(%x)
      %o: float32[N,3] = If(%c) {
        then_branch=graph t() -> (%t1: float32[N,3]) {
          %t1: float32[N,3] = Add(%x, %y)
        },
        else_branch=graph e() -> (%y: float32[N,3]) {
        }
      }
    }`)).toEqual([]);
  });

  it('throws one GraphError listing every problem when asked', () => {
    const g = parseGraph(`graph main(%x: float32[3]) -> (%z: float32[3]) opset 17 {
      %z = Relu(%missing)
      %w = Bogus(%x)
    }`);
    let err: unknown;
    try { verifyGraph(g, { throwOnError: true }); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(GraphError);
    expect((err as Error).message).toMatch(/2 problem\(s\)\):\n {2}- main node 'Relu_0': input 0 'missing'.*\n {2}- main node 'Bogus_1': op Bogus is not registered/s);
    expect((err as Error).message).toMatch(/fix: /);
  });
});
