#!/usr/bin/env node
// GPU check and A/B timing of the vectorized channels-last pooling and Relayout kernels (issue 7: ResNet-50 fp16
// bs256 spent 0.253 ms in its maxpool and 0.272 ms in its input relayout). Run on the H100/H200 after a build:
//   node scripts/gpu-pool-relayout.mjs [--filter=SUBSTR] [--iters=N] [--dry-run]
// (TSRT_DIST=folder: a private `tsc --outDir` build instead of dist/; --dry-run: no GPU, emits and NVRTC-compiles
// every kernel and computes the CPU references.) Per case: the scalar kernel (one thread per element, the kernel
// before vectorization) is the reference; every vector width and block size of the case's tactic family must
// equal it bit for bit; on the small cases both are also checked against the CPU reference of the ONNX op. Prints
// the median CUDA-event time of each kernel, its effective bandwidth (bytes read once + written) and the speedup
// over the scalar kernel. Exit code 1 when anything failed.
// int8 cases (the int8 engine's input: fp32 NCHW quantized to int8 NHWC with 16 channels in one kernel, and the
// space-to-depth form of the int8 stem, `blocked`): the small ones have .5 ties, saturation, NaN and +-inf in their
// input, which must quantize as the CPU reference's ONNX QuantizeLinear does (NaN -> 0).
import { diffCount, errText, imp, lcg, NoGpuError, openDevice, parseArgs, reporter } from './gpu-kernel-harness.mjs';

const { args, wants } = parseArgs();
const iters = Number(args.iters ?? 20), dry = !!args['dry-run'];

const { emitPool } = await imp('codegen/pool.js');
const { emitRelayout } = await imp('codegen/movement.js');
const { emitBlockedRelayout, blockedRelayoutDims: blockedDims } = await imp('codegen/relayout_s2d.js');
const { familyProblem } = await imp('codegen/kernel_tactics.js');
const { tunableOf, tacticLabel } = await imp('codegen/tactics.js');
const { fromF64, makeTensor, DTYPE_SIZE, DTYPE_ONNX } = await imp('ir/tensor.js');
const { getOp } = await imp('ops/index.js');
const { packModules } = await imp('codegen/kernel.js');

const pool = (dtype, kind, n, c, hw, k, s, pad, extra = {}) => {
  const out = hw.map((x) => Math.floor((x + 2 * pad - k) / s) + 1);
  return { dtype, kind, layout: 'NHWC', n, c, inSpatial: hw, outSpatial: out, kernel: hw.map(() => k), strides: hw.map(() => s), padsBegin: hw.map(() => pad), padsEnd: hw.map(() => pad), dilations: hw.map(() => 1), countIncludePad: false, ...extra };
};
const stem = (to, n) => ({ from: 'float32', to, inDims: [n, 3, 224, 224], perm: [0, 2, 3, 1], pads: [0, 0, 0, 0, 0, 0, 0, 5] });
// int8: 3 -> 16 channels (one 16-byte chunk of the int8 conv); s2d: the 7x7/2 pad-3 stem as a 4x4/1 conv's input
const stemI8 = (n, scale) => ({ from: 'float32', to: 'int8', inDims: [n, 3, 224, 224], perm: [0, 2, 3, 1], pads: [0, 0, 0, 0, 0, 0, 0, 13], scale });
const s2dI8 = (n, scale) => ({ from: 'float32', to: 'int8', inDims: [n, 3, 224, 224], perm: [0, 2, 3, 1], pads: [0, 2, 2, 0, 0, 1, 1, 4], blocksize: 2, scale });
const CASES = [
  { id: 'rn50_bs256_maxpool_fp16', kind: 'pool', p: pool('float16', 'max', 256, 64, [112, 112], 3, 2, 1) },
  { id: 'rn50_bs256_maxpool_bf16', kind: 'pool', p: pool('bfloat16', 'max', 256, 64, [112, 112], 3, 2, 1) },
  { id: 'rn50_bs256_relayout_fp16', kind: 'relayout', p: stem('float16', 256) },
  { id: 'rn50_bs256_relayout_bf16', kind: 'relayout', p: stem('bfloat16', 256) },
  { id: 'rn50_bs1_maxpool_fp16', kind: 'pool', p: pool('float16', 'max', 1, 64, [112, 112], 3, 2, 1), cpu: true },
  { id: 'rn50_bs1_relayout_fp16', kind: 'relayout', p: stem('float16', 1), cpu: true },
  { id: 'avgpool_fp16_cip_c24', kind: 'pool', p: pool('float16', 'avg', 4, 24, [29, 31], 3, 2, 1, { countIncludePad: true }), cpu: true },
  { id: 'avgpool_fp32_c12', kind: 'pool', p: pool('float32', 'avg', 4, 12, [30, 30], 2, 2, 0), cpu: true },
  { id: 'maxpool_int8_c32', kind: 'pool', p: pool('int8', 'max', 4, 32, [27, 27], 3, 2, 1), cpu: true },
  { id: 'relayout_fp16_to_fp32_nhwc_c16', kind: 'relayout', p: { from: 'float16', to: 'float32', inDims: [8, 16, 33, 35], perm: [0, 2, 3, 1], pads: [0, 0, 0, 0, 0, 0, 0, 0] }, cpu: true },
  { id: 'rn50_bs256_relayout_int8', kind: 'relayout', p: stemI8(256, 0.0187) },
  { id: 'rn50_bs256_relayout_s2d_int8', kind: 'blocked', p: s2dI8(256, 0.0187) },
  { id: 'rn50_bs2_relayout_int8_ties', kind: 'relayout', p: stemI8(2, 1 / 32), cpu: true, special: true },
  { id: 'rn50_bs2_relayout_int8', kind: 'relayout', p: stemI8(2, 0.0123), cpu: true, special: true },
  { id: 'rn50_bs2_relayout_s2d_int8', kind: 'blocked', p: s2dI8(2, 0.0123), cpu: true, special: true },
  { id: 'relayout_s2d_int8_scalar_c12', kind: 'blocked', p: { ...s2dI8(2, 1 / 32), inDims: [2, 3, 31, 33], pads: [0, 1, 0, 0, 0, 0, 1, 0] }, cpu: true, special: true },
];

const rnd = lcg(7);
const size = (d) => d.reduce((a, b) => a * b, 1);

function input(c) {
  const dims = c.kind === 'pool' ? [c.p.n, ...c.p.inSpatial, c.p.c] : c.p.inDims;
  const dtype = c.kind === 'pool' ? c.p.dtype : c.p.from;
  const n = size(dims);
  // bytes straight from a PRNG for the big cases (every bit pattern, NaNs included: the kernels must agree anyway)
  if (!c.cpu) { const b = new Uint8Array(n * DTYPE_SIZE[dtype]); for (let i = 0; i < b.length; i += 4) { const v = (rnd() * 2 ** 32) >>> 0; b[i] = v; b[i + 1] = v >> 8; b[i + 2] = v >> 16; b[i + 3] = v >> 24; } return { dims, dtype, bytes: b }; }
  // special: every other value on the 1/64 grid (with scale 1/32: exact .5 ties and |x / scale| past 127), NaN and
  // +-inf now and then
  const special = (i) => (i % 211 === 0 ? NaN : i % 307 === 0 ? (i % 2 ? Infinity : -Infinity) : i % 2 ? Math.round((rnd() - 0.5) * 1024) / 64 : rnd() * 12 - 6);
  const t = fromF64(dtype, dims, Array.from({ length: n }, (_, i) => (dtype === 'int8' ? Math.floor(rnd() * 256) - 128 : c.special ? special(i) : rnd() * 8 - 4)));
  return { dims, dtype, tensor: t, bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
}

function transpose(t, perm) {
  const dims = perm.map((p) => t.dims[p]), st = t.dims.map((_, i) => size(t.dims.slice(i + 1))), n = size(dims);
  const out = new t.data.constructor(n), idx = new Array(dims.length).fill(0);
  for (let i = 0; i < n; i++) {
    out[i] = t.data[perm.reduce((a, p, d) => a + idx[d] * st[p], 0)];
    for (let d = dims.length - 1; d >= 0 && ++idx[d] === dims[d]; d--) idx[d] = 0;
  }
  return makeTensor(t.dtype, dims, out);
}

function cpuReference(c, x) {
  const ints = (value) => ({ kind: 'ints', value });
  const ctx = { opset: 19, runGraph: () => [] };
  let y;
  if (c.kind === 'pool') {
    const p = c.p, sd = p.inSpatial.length;
    const node = { name: c.id, op: p.kind === 'max' ? 'MaxPool' : 'AveragePool', domain: '', inputs: ['x'], outputs: ['y'], attrs: { kernel_shape: ints(p.kernel), strides: ints(p.strides), pads: ints([...p.padsBegin, ...p.padsEnd]), ...(p.kind === 'avg' ? { count_include_pad: { kind: 'int', value: p.countIncludePad ? 1 : 0 } } : {}) } };
    y = getOp(node.op).cpu(node, [transpose(x, [0, sd + 1, ...p.inSpatial.map((_, d) => d + 1)])], ctx)[0];
    y = transpose(y, [0, ...p.inSpatial.map((_, d) => d + 2), 1]);
  } else {
    const attrs = { perm: ints(c.p.perm), pads: ints(c.p.pads), to: { kind: 'int', value: DTYPE_ONNX[c.p.to] } };
    if (c.p.scale !== undefined) attrs.scale = { kind: 'float', value: c.p.scale };
    if (c.p.blocksize) attrs.blocksize = { kind: 'int', value: c.p.blocksize };
    const node = { name: c.id, op: 'Relayout', domain: 'tsrt', inputs: ['x'], outputs: ['y'], attrs };
    y = getOp('Relayout', 'tsrt').cpu(node, [x], ctx)[0];
  }
  return new Uint8Array(y.data.buffer, y.data.byteOffset, y.data.byteLength);
}

const { report, summary } = reporter();

let gpu;
if (!dry) {
  try { gpu = await openDevice({ iters, arch: 'device' }); } catch (e) {
    if (!(e instanceof NoGpuError)) throw e;
    console.error(`${e.message} (--dry-run checks everything but the GPU)`); process.exit(2);
  }
  console.log(`pool/relayout kernels on ${gpu.describe()}`);
}
const { compileCuda } = await imp('runtime/nvrtc.js');

for (const c of CASES) {
  if (!wants(c.id)) continue;
  const emit = c.kind === 'pool' ? emitPool : c.kind === 'blocked' ? emitBlockedRelayout : emitRelayout;
  const scalar = emit(c.p);
  // (the space-to-depth kernel has no tactic family: its one form is checked against the CPU reference and timed)
  const f = c.kind === 'blocked' ? { space: [], heuristic: {} } : familyProblem(tunableOf(scalar), { align: 16 });
  const tactics = f.space.filter((t) => !f.problems(t).length && (t.vec ?? 1) > 1);
  const kernels = [scalar, ...tactics.map((t) => f.emit(t))];
  const label = (k, i) => (i === 0 ? (c.kind === 'blocked' ? k.name.split('_').slice(0, 2).join('_') : 'scalar b256') : `${tacticLabel(tactics[i - 1])}${tacticLabel(tactics[i - 1]) === tacticLabel(f.heuristic) ? ' (default)' : ''}`);
  const x = input(c);
  const outEl = c.kind === 'pool' ? c.p.n * size(c.p.outSpatial) * c.p.c : c.kind === 'blocked' ? size(blockedDims(c.p))
    : size(c.p.perm.map((q, i) => c.p.inDims[q] + c.p.pads[i] + c.p.pads[i + c.p.inDims.length]));
  const outBytes = outEl * DTYPE_SIZE[c.kind === 'pool' ? c.p.dtype : c.p.to];
  const moved = x.bytes.byteLength + outBytes;
  const ref = c.cpu ? cpuReference(c, x.tensor) : undefined;
  if (dry) {
    for (const m of packModules(kernels, 64)) { const r = compileCuda(m.source, { name: m.name, arch: 'sm_90' }); if (!r.cubin?.length) throw new Error(`${m.name} did not compile`); }
    report(!ref || ref.length === outBytes, `${c.id} (dry run)`, `${kernels.length} kernels compile (default ${c.kind === 'blocked' ? label(scalar, 0) : tacticLabel(f.heuristic)})${ref ? `, CPU reference ${ref.length} bytes` : ''}`);
    continue;
  }
  let dev = {};
  try {
    dev = gpu.upload({ x: x.bytes, y: new Uint8Array(outBytes) });
    const images = await gpu.compile(kernels);
    const run = (k) => {
      const img = images.get(k.name);
      if (img instanceof Error) throw img;
      return gpu.run(k, img, dev, { out: 'y', bytes: outBytes, fill: 0x7f, warmup: 3, params: [{ type: 'ptr', value: dev.x }, { type: 'ptr', value: dev.y }] });
    };
    const r0 = run(scalar);
    if (ref) { const d = diffCount(r0.out, ref); report(d === 0, `${c.id} ${label(scalar, 0)} vs CPU reference`, `${d} of ${outBytes} bytes differ`); }
    const gbs = (ms) => (moved / (ms * 1e-3) / 1e9).toFixed(0);
    console.log(`---- ${c.id}: scalar ${r0.ms.toFixed(4)} ms (${gbs(r0.ms)} GB/s of ${(moved / 1e6).toFixed(0)} MB)`);
    let best = { name: 'scalar', ms: r0.ms };
    kernels.slice(1).forEach((k, j) => {
      const r = run(k);
      const d = diffCount(r.out, r0.out);
      if (d === 0 && r.ms < best.ms) best = { name: label(k, j + 1), ms: r.ms };
      report(d === 0, `${c.id} ${label(k, j + 1)}`, `${d ? `${d} bytes differ from the scalar kernel; ` : ''}${r.ms.toFixed(4)} ms ${gbs(r.ms)} GB/s (${(r0.ms / r.ms).toFixed(2)}x scalar)`);
    });
    console.log(`==== ${c.id}: best ${best.name} ${best.ms.toFixed(4)} ms (${(r0.ms / best.ms).toFixed(2)}x scalar)`);
  } catch (e) {
    report(false, c.id, errText(e, 1));
    if (!gpu.alive()) { console.log('CUDA context lost: stopping'); break; }
  } finally { gpu?.free(dev); }
}
process.exit(summary());
