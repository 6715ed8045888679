// Hook a custom pass into the build: rewrite Div(x, constant) into Mul(x, 1/constant) (a multiply is cheaper on
// the GPU), run it right after constant folding, and check that the engine still computes the same thing.
//   node examples/02-custom-pass.mjs
import { build, parseGraph, PIPELINE, makeTensor, toF64 } from 'tsrt';

/** @type {import('tsrt').Pass} */
const divToMul = {
  name: 'div-to-mul',
  level: 1,
  run(g, ctx) {
    // passes never mutate their input: build new node and initializer lists
    const initializers = new Map(g.initializers);
    const nodes = g.nodes.map((n) => {
      const c = n.op === 'Div' ? g.initializers.get(n.inputs[1]) : undefined;
      if (!c || c.dtype !== 'float32') return n;
      const inv = `${n.inputs[1]}_reciprocal`;
      initializers.set(inv, makeTensor('float32', c.dims, Float32Array.from(c.data, (v) => 1 / v)));
      ctx.log(`div-to-mul: ${n.name}`);
      return { ...n, op: 'Mul', inputs: [n.inputs[0], inv] };
    });
    return { ...g, nodes, initializers };
  },
};

// A small model written in tsrt's text IR (parseGraph); an ONNX file works the same way.
const graph = parseGraph(`graph scale(%x: float32[2,4]) -> (%y: float32[2,4]) opset 17 {
  const %four: float32[] = [4]
  %h = Div(%x, %four) name="div"
  %y = Relu(%h) name="relu"
}`);
const model = { graph, irVersion: 8, producer: 'example', opsets: { '': 17 } };

const at = PIPELINE.findIndex((p) => p.name === 'fold-constants') + 1;
const passes = [...PIPELINE.slice(0, at), divToMul, ...PIPELINE.slice(at)];
const seen = [];
const engine = await build(model, { passes, log: (m) => seen.push(m) });
console.log(seen.join('\n'));
console.log('layers:', engine.layers().map((l) => `${l.op} ${l.name}`).join(', '));

const x = makeTensor('float32', [2, 4], Float32Array.from([-8, -4, 0, 2, 4, 6, 8, 12]));
const y = toF64((await engine.run({ x })).get('y'));
console.log('y =', Array.from(y).join(' '));
engine.dispose();
const want = [0, 0, 0, 0.5, 1, 1.5, 2, 3];
if (!seen.some((m) => m.includes('div-to-mul: div')) || want.some((v, i) => Math.abs(v - y[i]) > 1e-6)) process.exit(1);
