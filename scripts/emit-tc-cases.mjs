// Emits the tensor-core and generic conv/GEMM kernels of src/codegen/tc_*.ts for a fixed list of cases
// (ResNet-50 and BERT-base layers, odd shapes, every activation, every tile config) into .gpu-cases/:
// one .cu file per kernel plus manifest.json, which scripts/gpu-tc-check.py runs and checks on a GPU.
//   node scripts/emit-tc-cases.mjs [outDir=.gpu-cases] [--filter=substring]
// The TypeScript sources are transpiled on the fly (typescript.transpileModule), so no build is needed.
// The case list is exported for test/codegen-tc.test.ts.
import { mkdirSync, readFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const conv = (n, h, w, c, k, r, s, stride, pad, dil = 1, extra = {}) => {
  const p = Math.floor((h + 2 * pad - dil * (r - 1) - 1) / stride) + 1;
  const q = Math.floor((w + 2 * pad - dil * (s - 1) - 1) / stride) + 1;
  return { n, h, w, c, k, r, s, strideH: stride, strideW: stride, padH: pad, padW: pad, dilH: dil, dilW: dil, p, q, ...extra };
};

/** ResNet-50 v1.5 conv shapes at batch n: [name, problem, epilogue, occurrences in the net]. */
function resnet50(n) {
  const br = { bias: true, act: 'relu' };
  const brr = { bias: true, residual: true, act: 'relu' };
  const b = { bias: true };
  return [
    ['conv1_7x7s2', conv(n, 224, 224, 8, 64, 7, 7, 2, 3), br, 1, 3],
    ['l1_1x1_64_64', conv(n, 56, 56, 64, 64, 1, 1, 1, 0), br, 1],
    ['l1_3x3_64', conv(n, 56, 56, 64, 64, 3, 3, 1, 1), br, 3],
    ['l1_1x1_64_256', conv(n, 56, 56, 64, 256, 1, 1, 1, 0), brr, 4],
    ['l1_1x1_256_64', conv(n, 56, 56, 256, 64, 1, 1, 1, 0), br, 2],
    ['l2_1x1_256_128', conv(n, 56, 56, 256, 128, 1, 1, 1, 0), br, 1],
    ['l2_3x3s2_128', conv(n, 56, 56, 128, 128, 3, 3, 2, 1), br, 1],
    ['l2_1x1_128_512', conv(n, 28, 28, 128, 512, 1, 1, 1, 0), brr, 4],
    ['l2_ds_1x1s2_256_512', conv(n, 56, 56, 256, 512, 1, 1, 2, 0), b, 1],
    ['l2_1x1_512_128', conv(n, 28, 28, 512, 128, 1, 1, 1, 0), br, 3],
    ['l2_3x3_128', conv(n, 28, 28, 128, 128, 3, 3, 1, 1), br, 3],
    ['l3_1x1_512_256', conv(n, 28, 28, 512, 256, 1, 1, 1, 0), br, 1],
    ['l3_3x3s2_256', conv(n, 28, 28, 256, 256, 3, 3, 2, 1), br, 1],
    ['l3_1x1_256_1024', conv(n, 14, 14, 256, 1024, 1, 1, 1, 0), brr, 6],
    ['l3_ds_1x1s2_512_1024', conv(n, 28, 28, 512, 1024, 1, 1, 2, 0), b, 1],
    ['l3_1x1_1024_256', conv(n, 14, 14, 1024, 256, 1, 1, 1, 0), br, 5],
    ['l3_3x3_256', conv(n, 14, 14, 256, 256, 3, 3, 1, 1), br, 5],
    ['l4_1x1_1024_512', conv(n, 14, 14, 1024, 512, 1, 1, 1, 0), br, 1],
    ['l4_3x3s2_512', conv(n, 14, 14, 512, 512, 3, 3, 2, 1), br, 1],
    ['l4_1x1_512_2048', conv(n, 7, 7, 512, 2048, 1, 1, 1, 0), brr, 3],
    ['l4_ds_1x1s2_1024_2048', conv(n, 14, 14, 1024, 2048, 1, 1, 2, 0), b, 1],
    ['l4_1x1_2048_512', conv(n, 7, 7, 2048, 512, 1, 1, 1, 0), br, 2],
    ['l4_3x3_512', conv(n, 7, 7, 512, 512, 3, 3, 1, 1), br, 2],
  ];
}

export const ACTIVATIONS = ['none', 'relu', 'relu6', 'clip', 'sigmoid', 'silu', 'gelu_erf', 'gelu_tanh', 'hardswish', 'hardsigmoid', 'leakyrelu'];
const ACT_ARGS = { clip: [-0.5, 0.75], leakyrelu: [0.1], hardsigmoid: [0.2, 0.5] };

/** Tile shapes exercised one by one (each config of the space must compute the same function). */
export const CONFIG_SWEEP = [
  [256, 128, 4, 2], [128, 256, 2, 4], [128, 128, 2, 2], [128, 128, 2, 4], [128, 128, 4, 2], [128, 64, 2, 2],
  [64, 128, 2, 2], [128, 64, 4, 1], [64, 64, 2, 2], [64, 64, 2, 1], [64, 64, 1, 2], [32, 64, 1, 2],
  [64, 32, 2, 1], [32, 32, 1, 2], [32, 128, 1, 4], [128, 32, 4, 1],
];

/**
 * Case descriptors. op: 'conv' | 'gemm'; impl: 'tc' | 'generic'. conv cases may carry cReal (< c): the
 * engine's channel padding, i.e. channels cReal..c-1 of x and w are zero. gemm cases may carry
 * offA/offB/offC: element offsets of the operand inside its buffer. `time`: measure it; `count`: how often
 * the layer occurs in its network (for the whole-net sum).
 */
export function buildCases() {
  const cases = [];
  for (const bs of [256, 1]) {
    for (const [name, p, epi, count, cReal] of resnet50(bs)) {
      cases.push({ id: `rn50_bs${bs}_${name}`, group: `resnet50_bs${bs}`, op: 'conv', impl: 'tc', problem: p, epi, time: true, count, cReal });
    }
  }
  const M = 128 * 32;
  const bert = [
    ['qkv', 2304, 768, { bias: true }, 1],
    ['attn_out', 768, 768, { bias: true, residual: true }, 1],
    ['ffn1', 3072, 768, { bias: true, act: 'gelu_erf' }, 1],
    ['ffn2', 768, 3072, { bias: true, residual: true }, 1],
  ];
  for (const [name, n, k, epi, count] of bert) {
    cases.push({ id: `bert_${name}_${M}x${n}x${k}`, group: 'bert_layer', op: 'gemm', impl: 'tc', problem: { m: M, n, k }, epi, time: true, count });
  }
  // attention inside a fused QKV buffer [B*S, 3*768]: Q at column h*64, K at 768 + h*64, V at 1536 + h*64
  cases.push({
    id: 'bert_attn_qkT_b32h12_128x128x64', group: 'bert_layer', op: 'gemm', impl: 'tc', time: true, count: 1,
    problem: { m: 128, n: 128, k: 64, bLayout: 'nk', lda: 2304, ldb: 2304, batch: [32, 12], strideA: [128 * 2304, 64], strideB: [128 * 2304, 64] },
    epi: { alpha: 0.125 }, offB: 768,
  });
  cases.push({
    id: 'bert_attn_pv_b32h12_128x64x128', group: 'bert_layer', op: 'gemm', impl: 'tc', time: true, count: 1,
    problem: { m: 128, n: 64, k: 128, bLayout: 'kn', ldb: 2304, ldc: 768, batch: [32, 12], strideA: [12 * 128 * 128, 128 * 128], strideB: [128 * 2304, 64], strideC: [128 * 768, 64] },
    epi: {}, offB: 1536,
  });
  cases.push({
    id: 'attn_qkT_h12_128x128x64', group: 'attention_bs1', op: 'gemm', impl: 'tc', time: true,
    problem: { m: 128, n: 128, k: 64, batch: [12] }, epi: { alpha: 0.125 },
  });
  cases.push({
    id: 'attn_pv_h12_128x64x128', group: 'attention_bs1', op: 'gemm', impl: 'tc', time: true,
    problem: { m: 128, n: 64, k: 128, bLayout: 'kn', batch: [12] }, epi: {},
  });
  cases.push({ id: 'gemm_big_8192', group: 'peak', op: 'gemm', impl: 'tc', problem: { m: 8192, n: 8192, k: 8192 }, epi: {}, time: true });

  // odd shapes: tails in M, N and K, padding, dilation, odd k (scalar stores), forced split-K
  const odd = [
    ['conv_tails_3x3', conv(3, 17, 17, 16, 24, 3, 3, 1, 1), { bias: true, act: 'relu' }],
    ['conv_dil2_s2', conv(2, 20, 21, 32, 40, 3, 3, 2, 2, 2), { bias: true, residual: true, act: 'silu' }],
    ['conv_1x3_k17', { ...conv(2, 9, 11, 8, 17, 1, 3, 1, 0), padW: 1, q: 11 }, { bias: true, residual: true, act: 'gelu_tanh' }],
    ['conv_5x5_splitk', conv(1, 9, 9, 24, 48, 5, 5, 1, 2), { bias: true, act: 'relu6' }, { bm: 32, bn: 32, bk: 32, warpsM: 1, warpsN: 2, stages: 3, splitK: 4 }],
    ['conv_1x1s2_tail', conv(3, 15, 15, 40, 72, 1, 1, 2, 0), { bias: true, residual: true, residualAfterAct: true, act: 'hardswish' }],
    ['conv_7x7s2_c3pad', conv(2, 30, 30, 8, 64, 7, 7, 2, 3), { bias: true, act: 'relu' }, undefined, 3],
    ['conv_3x3_bk64_s5', conv(2, 12, 12, 64, 96, 3, 3, 1, 1), { bias: true }, { bm: 64, bn: 64, bk: 64, warpsM: 2, warpsN: 2, stages: 5 }],
  ];
  for (const [id, p, epi, cfg, cReal] of odd) cases.push({ id, group: 'odd', op: 'conv', impl: 'tc', problem: p, epi, cfg, cReal });
  const oddG = [
    ['gemm_tails_splitk', { m: 200, n: 136, k: 264 }, { bias: true, act: 'gelu_tanh' }, { bm: 64, bn: 64, bk: 32, warpsM: 2, warpsN: 2, stages: 3, splitK: 4 }],
    ['gemm_kn_tails', { m: 100, n: 72, k: 40, bLayout: 'kn' }, { alpha: 0.5, bias: true }],
    ['gemm_kn_bshared', { m: 96, n: 80, k: 72, bLayout: 'kn', batch: [3], strideB: [0] }, { residual: true, act: 'relu' }],
    ['gemm_nk_2batch_ld', { m: 70, n: 48, k: 56, lda: 64, ldb: 72, ldc: 50, batch: [2, 3] }, { bias: true, act: 'sigmoid' }],
    ['gemm_odd_n', { m: 33, n: 45, k: 24 }, { bias: true, residual: true }],
  ];
  for (const [id, p, epi, cfg] of oddG) cases.push({ id, group: 'odd', op: 'gemm', impl: 'tc', problem: p, epi, cfg });
  for (const act of ACTIVATIONS) {
    cases.push({
      id: `act_${act}`, group: 'activations', op: 'gemm', impl: 'tc', problem: { m: 96, n: 64, k: 64 },
      epi: { bias: true, act, actArgs: ACT_ARGS[act] }, cfg: { bm: 64, bn: 64, bk: 32, warpsM: 2, warpsN: 2, stages: 2 },
    });
  }
  for (const [bm, bn, warpsM, warpsN] of CONFIG_SWEEP) {
    for (const [bk, stages] of [[32, 4], [64, 3]]) {
      const cfg = { bm, bn, bk, warpsM, warpsN, stages };
      const tag = `m${bm}n${bn}k${bk}w${warpsM}x${warpsN}`;
      cases.push({ id: `cfg_gemm_nk_${tag}`, group: 'configs', op: 'gemm', impl: 'tc', problem: { m: 300, n: 264, k: 328 }, epi: { bias: true }, cfg });
      if (bn >= 32) cases.push({ id: `cfg_gemm_kn_${tag}`, group: 'configs', op: 'gemm', impl: 'tc', problem: { m: 300, n: 264, k: 328, bLayout: 'kn' }, epi: {}, cfg });
      cases.push({ id: `cfg_conv_${tag}`, group: 'configs', op: 'conv', impl: 'tc', problem: conv(2, 19, 19, 40, 88, 3, 3, 1, 1), epi: { bias: true, act: 'relu' }, cfg });
    }
  }

  // alternative tile configs for key layers: measured data for the default heuristic (no torch baseline)
  const TUNE = [
    [128, 128, 32, 2, 2, 4], [128, 128, 64, 2, 2, 3], [128, 128, 32, 2, 4, 4], [128, 256, 32, 2, 4, 4],
    [256, 128, 32, 4, 2, 4], [256, 128, 64, 4, 2, 3], [128, 64, 32, 2, 2, 4], [64, 128, 32, 2, 2, 5],
  ];
  const tuneLayers = [
    ['rn50_bs256_l1_3x3_64', 'conv', conv(256, 56, 56, 64, 64, 3, 3, 1, 1)],
    ['rn50_bs256_l3_3x3_256', 'conv', conv(256, 14, 14, 256, 256, 3, 3, 1, 1)],
    ['rn50_bs256_l1_1x1_256_64', 'conv', conv(256, 56, 56, 256, 64, 1, 1, 1, 0)],
    ['rn50_bs256_l3_1x1_256_1024', 'conv', conv(256, 14, 14, 256, 1024, 1, 1, 1, 0)],
    ['bert_ffn1', 'gemm', { m: 4096, n: 3072, k: 768 }],
  ];
  for (const [name, op, problem] of tuneLayers) {
    for (const [bm, bn, bk, warpsM, warpsN, stages] of TUNE) {
      cases.push({
        id: `tune_${name}_m${bm}n${bn}k${bk}w${warpsM}x${warpsN}s${stages}`, group: `tune_${name}`, op, impl: 'tc', problem,
        epi: { bias: true, act: 'relu' }, cfg: { bm, bn, bk, warpsM, warpsN, stages }, time: true, noBaseline: true,
      });
    }
  }

  // generic fallbacks (fp32 must match an fp32 reference to 1e-3 of the output range)
  const gen = [
    ['gen_conv_f32_nchw_c3', conv(2, 56, 56, 3, 64, 3, 3, 1, 1), { bias: true, act: 'relu' }, { dtype: 'float32', layout: 'nchw' }],
    ['gen_conv_f32_nhwc_s2', conv(2, 28, 28, 64, 64, 3, 3, 2, 1), { bias: true, residual: true, act: 'relu' }, { dtype: 'float32', layout: 'nhwc' }],
    ['gen_conv_f16_nhwc_c3_7x7', conv(2, 64, 64, 3, 64, 7, 7, 2, 3), { bias: true, act: 'relu' }, { dtype: 'float16', layout: 'nhwc' }],
    ['gen_conv_f32_nchw_g4_dil2', conv(2, 21, 21, 32, 64, 3, 3, 1, 2, 2), { bias: true, act: 'silu' }, { dtype: 'float32', layout: 'nchw', groups: 4 }],
    ['gen_conv_f32_nchw_depthwise', conv(2, 30, 30, 32, 32, 3, 3, 2, 1), { bias: true, act: 'relu6' }, { dtype: 'float32', layout: 'nchw', groups: 32 }],
    ['gen_conv_f16_nhwc_g2', conv(2, 13, 13, 12, 20, 3, 3, 1, 1), { residual: true }, { dtype: 'float16', layout: 'nhwc', groups: 2 }],
  ];
  for (const [id, p, epi, opts] of gen) cases.push({ id, group: 'generic', op: 'conv', impl: 'generic', problem: p, epi, opts });
  const genG = [
    ['gen_gemm_f32_odd', { m: 1000, n: 1000, k: 999 }, { bias: true, act: 'gelu_erf' }, 'float32'],
    ['gen_gemm_f16_kn_odd', { m: 77, n: 33, k: 45, bLayout: 'kn' }, { bias: true, residual: true }, 'float16'],
    ['gen_gemm_f32_kn_bshared', { m: 65, n: 70, k: 130, bLayout: 'kn', batch: [3, 2], strideB: [0, 0] }, { alpha: 0.3 }, 'float32'],
    ['gen_gemm_f32_nk_ld', { m: 50, n: 60, k: 70, lda: 75, ldb: 71, ldc: 61, batch: [4] }, { residual: true, act: 'leakyrelu', actArgs: [0.2] }, 'float32'],
  ];
  for (const [id, p, epi, dtype] of genG) cases.push({ id, group: 'generic', op: 'gemm', impl: 'generic', problem: p, epi, dtype });
  cases.push({ id: 'gen_f32_bert_ffn1', group: 'generic_perf', op: 'gemm', impl: 'generic', problem: { m: 4096, n: 3072, k: 768 }, epi: { bias: true, act: 'gelu_erf' }, dtype: 'float32', time: true });
  cases.push({ id: 'gen_f32_rn50_bs32_3x3_256', group: 'generic_perf', op: 'conv', impl: 'generic', problem: conv(32, 14, 14, 256, 256, 3, 3, 1, 1), epi: { bias: true, act: 'relu' }, opts: { dtype: 'float32', layout: 'nchw' }, time: true });
  cases.push({ id: 'gen_f16_rn50_bs32_3x3_256', group: 'generic_perf', op: 'conv', impl: 'generic', problem: conv(32, 14, 14, 256, 256, 3, 3, 1, 1), epi: { bias: true, act: 'relu' }, opts: { dtype: 'float16', layout: 'nhwc' }, time: true });
  return cases;
}

/** Emits one case with the given API ({ emitConv, emitConvGeneric, emitGemm, emitGemmGeneric }). */
export function emitCase(c, api) {
  if (c.op === 'conv') return c.impl === 'tc' ? api.emitConv(c.problem, c.epi, c.cfg) : api.emitConvGeneric(c.problem, c.epi, c.opts);
  return c.impl === 'tc' ? api.emitGemm(c.problem, c.epi, c.cfg) : api.emitGemmGeneric(c.problem, c.epi, c.dtype);
}

/** Transpiles a TS module and its relative imports into `outDir`, returning the JS path of the entry. */
async function transpileTree(entries, outDir) {
  const ts = (await import('typescript')).default;
  const seen = new Set();
  const queue = entries.map((e) => resolve(ROOT, e));
  while (queue.length) {
    const file = queue.pop();
    if (seen.has(file)) continue;
    seen.add(file);
    const src = readFileSync(file, 'utf8');
    const out = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    const dest = join(outDir, file.slice(ROOT.length + 1).replace(/\.ts$/, '.js'));
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, out);
    for (const m of out.matchAll(/from\s+['"](\.{1,2}\/[^'"]+)\.js['"]/g)) queue.push(resolve(dirname(file), m[1] + '.ts'));
  }
}

async function main() {
  const args = process.argv.slice(2);
  const outDir = resolve(args.find((a) => !a.startsWith('--')) ?? join(ROOT, '.gpu-cases'));
  const filter = args.find((a) => a.startsWith('--filter='))?.slice(9);
  const jsDir = join(ROOT, '.cache', 'tc-js');
  rmSync(jsDir, { recursive: true, force: true });
  await transpileTree(['src/codegen/tc_conv.ts', 'src/codegen/tc_gemm.ts'], jsDir);
  const convMod = await import(pathToFileURL(join(jsDir, 'src/codegen/tc_conv.js')).href);
  const gemmMod = await import(pathToFileURL(join(jsDir, 'src/codegen/tc_gemm.js')).href);
  const api = { ...convMod, ...gemmMod };
  if (existsSync(outDir)) rmSync(outDir, { recursive: true });
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, '.gitignore'), '*\n'); // generated; keeps the folder out of git without touching the root .gitignore
  const manifest = [];
  for (const c of buildCases()) {
    if (filter && !c.id.includes(filter)) continue;
    const k = emitCase(c, api);
    writeFileSync(join(outDir, `${c.id}.cu`), k.source);
    manifest.push({
      ...c, file: `${c.id}.cu`, name: k.name, grid: k.grid, block: k.block, sharedBytes: k.sharedBytes,
      params: k.params, workspaceBytes: k.workspaceBytes, workspaceZeroBytes: k.workspaceZeroBytes, flops: k.flops,
      config: k.config,
    });
  }
  writeFileSync(join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 1));
  console.log(`wrote ${manifest.length} kernels to ${outDir}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((e) => { console.error(e); process.exit(1); });
}
