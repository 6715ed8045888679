#!/usr/bin/env node
// GPU check of QLinearConv / QLinearMatMul on the int8 kernels (passes/qlinear_int8.ts, the qlinear epilogue of
// codegen/tc_int8.ts). Run on the H100/H200 after a build:
//   node scripts/gpu-qlinear.mjs [--filter=SUBSTR] [--levels=2,3] [--dry-run]
// (TSRT_DIST=folder: a private `tsc --outDir` build instead of dist/; --dry-run: no GPU, the engine runs its CPU
// reference after compiling every kernel with NVRTC.) Per case, a symmetric int8 QLinear model (random int8 weights;
// power-of-two scales on half the channels put many results exactly on .5, so round-half-to-even is exercised) is
// built at each opt level (2: heuristic mma.sync tiles; 3: autotuned, mma.sync and on sm_90a int8 wgmma), with no
// host steps allowed; every QLinear node must have become an int8 layer and the engine's output must equal the CPU
// reference of the unoptimized model bit for bit. Prints PASS/FAIL per case and level; exit code 1 on a failure.
import { pathToFileURL } from 'node:url';
import { diffCount, errText, imp, lcg, parseArgs, reporter } from './gpu-kernel-harness.mjs';

const rnd = lcg(2024);
const i8 = (n) => Int8Array.from({ length: n }, () => Math.floor(rnd() * 256) - 128);
const list = (a) => Array.from(a).join(', ');

/** Weight scales per output channel: powers of two on even channels, arbitrary fp32 on odd ones, around `s`. */
const wScales = (m, s) => Array.from({ length: m }, (_, i) => (i % 2 ? Math.fround(s * (0.6 + 0.8 * rnd())) : 2 ** Math.round(Math.log2(s) + (i % 4) / 2 - 0.5)));
/** y_scale keeping most outputs inside int8: uniform int8 products have std ~74^2, sums of K of them ~74^2 sqrt(K). */
const yScaleFor = (xs, ws, K) => 2 ** Math.round(Math.log2((xs * ws * 74 * 74 * Math.sqrt(K) * 2.5) / 127));

/** Text IR of one QLinearConv reading %in, writing %out; returns [consts, node]. */
function convLayer(name, inp, out, c, m, k, stride, xs, ys, bias) {
  const w = i8(m * c * k * k), ws = wScales(m, 1e-3);
  const consts = [
    `const %${name}_w: int8[${m},${c},${k},${k}] = [${list(w)}]`,
    `const %${name}_ws: float32[${m}] = [${list(ws)}]`,
    `const %${name}_xs: float32[] = [${xs}]`, `const %${name}_ys: float32[] = [${ys}]`,
    ...(bias ? [`const %${name}_b: int32[${m}] = [${list(Array.from({ length: m }, () => Math.floor(rnd() * 20000) - 10000))}]`] : []),
  ];
  const pad = (k - 1) >> 1;
  const node = `%${out} = QLinearConv(%${inp}, %${name}_xs, %z, %${name}_w, %${name}_ws, %z, %${name}_ys, %z${bias ? `, %${name}_b` : ''}) {strides=[${stride}, ${stride}], pads=[${pad}, ${pad}, ${pad}, ${pad}]} name="${name}"`;
  return [consts, node];
}

/** A chain of QLinearConvs: [c_in, c_out, k, stride, bias] per layer, each one's y_scale the next one's x_scale. */
function convModel(n, c, h, layers) {
  const consts = ['const %z: int8[] = [0]'], nodes = [];
  let xs = 0.5, inp = 'x', ch = c, sp = h;
  layers.forEach(([ci, m, k, s, bias], i) => {
    const ys = yScaleFor(xs, 1e-3, ci * k * k);
    const [cs, node] = convLayer(`conv${i}`, inp, i === layers.length - 1 ? 'y' : `h${i}`, ci, m, k, s, xs, ys, bias);
    consts.push(...cs); nodes.push(node);
    xs = ys; inp = `h${i}`; ch = m; sp = Math.floor((sp + 2 * ((k - 1) >> 1) - k) / s) + 1;
  });
  return { text: `graph g(%x: int8[${n},${c},${h},${h}]) -> (%y: int8[${n},${ch},${sp},${sp}]) opset 13 {\n${[...consts, ...nodes].join('\n')}\n}`, input: [n, c, h, h], layers: layers.length };
}

function matmulModel(aDims, N) {
  const K = aDims[aDims.length - 1];
  const bs = wScales(N, 1e-3), ys = yScaleFor(0.5, 1e-3, K);
  const text = `graph g(%x: int8[${aDims}]) -> (%y: int8[${[...aDims.slice(0, -1), N]}]) opset 13 {
    const %z: int8[] = [0]
    const %as: float32[] = [0.5]
    const %b: int8[${K},${N}] = [${list(i8(K * N))}]
    const %bs: float32[${N}] = [${list(bs)}]
    const %ys: float32[] = [${ys}]
    %y = QLinearMatMul(%x, %as, %z, %b, %bs, %z, %ys, %z) name="mm" }`;
  return { text, input: aDims, layers: 1 };
}

export const QLINEAR_CASES = [
  // ResNet-like stage: 3x3 with bias, 1x1 stride 2 without, 3x3 with bias (int8 passed between the layers)
  { id: 'conv_chain_n8_c64_28', model: () => convModel(8, 64, 28, [[64, 128, 3, 1, true], [128, 256, 1, 2, false], [256, 64, 3, 1, true]]) },
  // C=20 (padded to 32 in the kernel), N=40 (direct stores), stride 2, odd batch and size
  { id: 'conv_odd_n3_c20_17_k40_s2', model: () => convModel(3, 20, 17, [[20, 40, 3, 2, true]]) },
  { id: 'matmul_bert_ffn_4x77x768x3072', model: () => matmulModel([4, 77, 768], 3072) },
  { id: 'matmul_odd_333x320x200', model: () => matmulModel([333, 320], 200) },
];

export async function qlinearChecks({ report, filter, levels = [2, 3], dry = false, log = console.log }) {
  const { parseGraph } = await imp('ir/text.js');
  const { inferShapes } = await imp('ir/infer.js');
  const { upgradeGraph } = await imp('onnx/import.js');
  const { makeTensor } = await imp('ir/tensor.js');
  const { runGraph } = await imp('runtime/cpu_executor.js');
  const { build } = await imp('runtime/engine.js');
  await imp('ops/index.js');
  if (!dry) {
    const { cudaAvailable } = await imp('runtime/cuda.js');
    const avail = cudaAvailable();
    if (!avail.ok) { report(false, 'qlinear', `no GPU: ${avail.reason}`); return; }
  }
  const { wants } = parseArgs(filter ? [`--filter=${filter}`] : []);
  for (const c of QLINEAR_CASES) {
    if (!wants(c.id)) continue;
    try {
      const m = c.model();
      const graph = inferShapes(upgradeGraph(parseGraph(m.text))).graph;
      const model = { graph, irVersion: 8, producer: 'gpu-qlinear', opsets: { '': 13 }, source: `${c.id}.onnx` };
      const x = makeTensor('int8', m.input, i8(m.input.reduce((a, b) => a * b, 1)));
      let t = performance.now();
      const want = runGraph(graph, new Map([['x', x]])).get('y').data;
      log(`---- ${c.id}: CPU reference ${(performance.now() - t).toFixed(0)} ms; ${want.filter((v) => v === 127 || v === -128).length} of ${want.length} outputs saturate`);
      for (const optLevel of levels) {
        t = performance.now();
        const engine = await build(model, { device: dry ? 'cpu' : 'cuda', optLevel, allowHost: false, timingCache: false, log: () => {} });
        const buildMs = performance.now() - t;
        const q = engine.passContext.fusions.filter((f) => f.pass === 'qlinear-int8').length;
        // (a layer may own two kernels: the channel padding and the conv)
        const layers = engine.layers().filter((l) => l.op === 'QConv' || l.op === 'QGemm');
        const layerNames = new Set(layers.map((l) => l.name));
        const got = (await engine.run({ x })).get('y');
        const diff = diffCount(got.data, want);
        const ok = diff === 0 && got.dtype === 'int8' && q === m.layers && layerNames.size === m.layers && engine.report.hostSteps === 0;
        report(ok, `qlinear ${c.id} opt-level ${optLevel}${dry ? ' (dry run: CPU reference)' : ''}`,
          `${diff} of ${want.length} outputs differ; ${q}/${m.layers} QLinear nodes int8 (${layers.map((l) => l.kernel).join(', ')}); ${engine.report.hostSteps} host steps; build ${(buildMs / 1000).toFixed(1)} s`);
        engine.dispose?.();
      }
    } catch (e) {
      report(false, `qlinear ${c.id}`, errText(e, 3));
    }
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { args } = parseArgs();
  const r = reporter();
  await qlinearChecks({ report: r.report, filter: args.filter, levels: String(args.levels ?? '2,3').split(',').map(Number), dry: !!args['dry-run'] });
  process.exit(r.summary());
}
