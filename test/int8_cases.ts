// Shared by test/int8.test.ts and test/int8-wgmma-emu.test.ts: int8 kernel cases, their inputs and the exact
// tsrt::QConv / tsrt::QGemm CPU reference, and a runner of generated CUDA under the CPU emulator (tc_emu.ts).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { getFloat16 } from '@petamoriken/float16';
import { DTYPE_ONNX, fromF64, makeTensor, toF64 } from '../src/ir/tensor.js';
import type { Attr, Node, Tensor } from '../src/ir/types.js';
import { getOp } from '../src/ops/registry.js';
import '../src/ops/index.js';
import { TC_HELPERS, TC_S8_HELPERS, type TcKernelSource, type TileConfig } from '../src/codegen/tc_gemm.js';
import { int8ChannelParams, int8Folded, type Int8Epilogue } from '../src/codegen/tc_int8.js';
import { int8FoldedNode } from '../src/ops/qlinear.js';
import type { ConvProblem } from '../src/codegen/tc_conv.js';
import { accFitsSmall } from '../src/codegen/lower_int8.js';
import { EMU_PRELUDE } from './tc_emu.js';

export interface KCase {
  id: string; kind: 'conv' | 'gemm'; conv?: ConvProblem; gemm?: { m: number; n: number; k: number };
  epi: Int8Epilogue; cfg?: TileConfig; act?: string;
}
export const conv = (n: number, h: number, c: number, k: number, r: number, stride: number, pad: number): ConvProblem => {
  const p = Math.floor((h + 2 * pad - r) / stride) + 1;
  return { n, h, w: h, c, k, r, s: r, strideH: stride, strideW: stride, padH: pad, padW: pad, dilH: 1, dilW: 1, p, q: p };
};
export const small = (bm: number, bn: number, wm: number, wn: number, stages: number, splitK?: number): TileConfig => ({ bm, bn, bk: 64, warpsM: wm, warpsN: wn, stages, splitK });

let seed = 7;
const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 2 ** 32; };
/** Deterministic int8 values; `from` restarts the sequence. */
export const randI8 = (n: number, from?: number) => { if (from !== undefined) seed = from; return Int8Array.from({ length: n }, () => Math.floor(rnd() * 256) - 128); };

/** Inputs, the reference output (QConv/QGemm CPU) and the kernel's buffers for one case. */
export function setup(c: KCase) {
  const e = c.epi;
  const K = c.kind === 'conv' ? c.conv!.k : c.gemm!.n;
  const xDims = c.kind === 'conv' ? [c.conv!.n, c.conv!.h, c.conv!.w, c.conv!.c] : [c.gemm!.m, c.gemm!.k];
  const wDims = c.kind === 'conv' ? [K, c.conv!.c, c.conv!.r, c.conv!.s] : [K, c.gemm!.k];
  const yDims = c.kind === 'conv' ? [c.conv!.n, c.conv!.p, c.conv!.q, K] : [c.gemm!.m, K];
  const x = makeTensor('int8', xDims, randI8(xDims.reduce((a, b) => a * b)));
  const w = makeTensor('int8', wDims, randI8(wDims.reduce((a, b) => a * b)));
  // smallAcc is only true to a kernel when the weights bound every accumulator below 2^22 (the lowering's check)
  if (e.smallAcc && !accFitsSmall(w.data as Int8Array, K)) throw new Error(`${c.id}: smallAcc set but the weights allow accumulators of 2^22 or more`);
  const xs = 0.02, ws = Float64Array.from({ length: K }, () => Math.fround(1e-3 * (0.5 + rnd())));
  // (qlinear: ONNX QLinearConv's int32 bias)
  const bias = !e.bias ? undefined : e.qlinear ? makeTensor('int32', [K], Int32Array.from({ length: K }, () => Math.floor(rnd() * 40000) - 20000))
    : fromF64('float32', [K], Array.from({ length: K }, () => rnd() * 4 - 2));
  const yN = yDims.reduce((a, b) => a * b);
  const z = e.residual ? (e.residualType === 'int8' ? makeTensor('int8', yDims, randI8(yN)) : fromF64(e.residualType!, yDims, Array.from({ length: yN }, () => rnd() * 4 - 2))) : undefined;
  const f = (v: number): Attr => ({ kind: 'float', value: v });
  const attrs: Record<string, Attr> = { x_scale: f(xs), activation: { kind: 'string', value: c.act ?? 'none' } };
  if (e.actArgs) attrs.activation_params = { kind: 'floats', value: e.actArgs };
  if (e.residualAfterAct) attrs.residual_before_act = { kind: 'int', value: 0 };
  if (e.out === 'int8') attrs.y_scale = f(e.outScale!); else attrs.out_dtype = { kind: 'int', value: DTYPE_ONNX[e.out] };
  if (e.residualType === 'int8') attrs.z_scale = f(e.residualScale!);
  if (e.qlinear) attrs.qlinear = { kind: 'int', value: 1 };
  if (c.kind === 'conv') {
    const p = c.conv!;
    Object.assign(attrs, { layout: { kind: 'string', value: 'NHWC' }, strides: { kind: 'ints', value: [p.strideH, p.strideW] }, pads: { kind: 'ints', value: [p.padH, p.padW, p.padH, p.padW] } });
  }
  const node: Node = { name: c.id, op: c.kind === 'conv' ? 'QConv' : 'QGemm', domain: 'tsrt', inputs: ['x', 'w', 'ws', 'b', 'z'], outputs: ['y'], attrs };
  // the kernel and the CPU reference must agree on the requantize form
  if (int8Folded(e) !== int8FoldedNode(node)) throw new Error(`${c.id}: int8Folded ${int8Folded(e)} but the node's rule says ${int8FoldedNode(node)}`);
  const ref = getOp(node.op, 'tsrt')!.cpu(node, [x, w, fromF64('float32', [K], ws), bias, z], { opset: 17, runGraph: () => [] })[0];
  // kernel operands: weights [K][R][S][C], scale = fp32(x_scale * w_scale) as the lowering computes it (qlinear:
  // divided by y_scale in fp32)
  let wk = w.data as Int8Array;
  if (c.kind === 'conv') {
    const p = c.conv!;
    wk = new Int8Array(wk.length);
    for (let ko = 0; ko < K; ko++) for (let ci = 0; ci < p.c; ci++) for (let ri = 0; ri < p.r; ri++) for (let si = 0; si < p.s; si++) {
      wk[((ko * p.r + ri) * p.s + si) * p.c + ci] = (w.data as Int8Array)[((ko * p.c + ci) * p.r + ri) * p.s + si];
    }
  }
  const buf = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const fr = Math.fround;
  // (the folded requantize takes scale and bias times 1 / y_scale: int8ChannelParams, as the lowering)
  const ch = e.qlinear ? { scale: Float32Array.from(ws, (s) => fr(fr(fr(xs) * s) / fr(e.outScale!))), bias: undefined }
    : int8ChannelParams(e, Array.from(ws, (s) => fr(fr(xs) * s)), bias && (bias.data as Float32Array));
  const [xn, wn] = c.kind === 'conv' ? ['x', 'w'] : ['a', 'b'];
  const bufs: Record<string, Buffer> = { [xn]: buf(x.data as Int8Array), [wn]: buf(wk), scale: buf(ch.scale) };
  if (bias) bufs.bias = buf(ch.bias ?? (bias.data as Float32Array | Int32Array));
  if (z) bufs.residual = buf(z.data as ArrayBufferView as Int8Array);
  return { ref, bufs, outBytes: yN * (e.out === 'int8' ? 1 : e.out === 'float16' ? 2 : 4) };
}

const EMU_DIR = join(new URL('..', import.meta.url).pathname, '.cache', 'int8-emu');
export const hasGxx = (() => { try { execFileSync('g++', ['--version'], { stdio: 'pipe' }); return true; } catch { return false; } })();

/** Runs a kernel under the emulator (twice with a split-K workspace: its counters must reset) and returns the output bytes. */
/** `adapt` (the wgmma kernels): rewrites the source after the mma.sync substitutions, adds shared bytes (the
 * kernel's window may start unaligned) and g++ flags (-DEMU_EARLY: cp.async lands at issue); `grid`: CTAs to
 * launch instead of the kernel's grid (persistent kernels walk the tiles with any grid). */
export interface EmuAdapt { source: (src: string) => string; smemExtra?: number; flags?: string[]; grid?: number }

export function emulate(k: TcKernelSource, id: string, bufs: Record<string, Buffer>, outBytes: number, adapt?: EmuAdapt): Buffer {
  const dir = join(EMU_DIR, id);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(EMU_DIR, 'emu_prelude.h'), EMU_PRELUDE);
  const lines: string[] = [];
  for (const [nm, b] of Object.entries(bufs)) {
    writeFileSync(join(dir, `${nm}.bin`), Buffer.concat([b, Buffer.alloc(16)]));
    lines.push(`  unsigned char* ${nm}_p = load_file("${nm}.bin", ${b.length + 16});`);
  }
  lines.push(`  unsigned char* out_p = (unsigned char*)aligned_alloc(256, ${Math.ceil(outBytes / 256) * 256 + 256}); g_bufs.push_back(Buf{out_p, ${outBytes}});`);
  if (k.workspaceBytes) lines.push(`  unsigned char* ws_p = (unsigned char*)calloc(1, ${k.workspaceBytes});`);
  const outName = k.params.some((p) => p.name === 'y') ? 'y' : 'c';
  const args = k.params.map((p) => (p.name === 'workspace' ? 'ws_p' : p.name === outName ? 'out_p' : bufs[p.name] ? `${p.name}_p` : 'nullptr'));
  const call = `${k.name}(${k.params.map((p, i) => `(${paramType(k, p.name)})(${args[i]})`).join(', ')})`;
  const base = k.source.replace(TC_HELPERS, '#include "../emu_prelude.h"\n').replace(TC_S8_HELPERS, '')
    .replace('extern __shared__ __align__(128) unsigned char tc_smem[];', '');
  const src = (adapt ? adapt.source(base) : base)
    + `\nint main() {\n${lines.join('\n')}\n  for (int rep = 0; rep < ${k.workspaceBytes ? 2 : 1}; ++rep) {\n    memset(out_p, 0x7f, ${outBytes});\n`
    + `    run_grid(${adapt?.grid ?? k.grid[0]}, ${k.grid[1]}, ${k.block[0]}, ${k.sharedBytes + (adapt?.smemExtra ?? 0)}, [&] { ${call}; });\n  }\n`
    + `  save_file("out.bin", out_p, ${outBytes});\n  return 0;\n}\n`;
  writeFileSync(join(dir, 'k.cpp'), src);
  const flags = adapt?.flags ?? [];
  const exe = join(dir, `k_${createHash('sha1').update(src).update(EMU_PRELUDE).update(flags.join(' ')).digest('hex').slice(0, 10)}`);
  if (!existsSync(exe)) execFileSync('g++', ['-std=c++20', '-O1', '-w', ...flags, '-o', exe, 'k.cpp'], { cwd: dir, stdio: 'pipe' });
  execFileSync(exe, [], { cwd: dir, stdio: 'pipe' });
  return readFileSync(join(dir, 'out.bin'));
}

/** C type of a kernel parameter, read from its declaration in the source. */
function paramType(k: TcKernelSource, name: string): string {
  const m = new RegExp(`(const )?([a-z_ ]+?)\\* __restrict__ ${name}\\b`).exec(k.source);
  return m ? `${m[1] ?? ''}${m[2]}*` : 'unsigned char*';
}

/** Elements of an emulator output that differ from the reference (bit for bit: int8, fp16 and fp32 values). */
export function diffCount(e: Int8Epilogue, out: Buffer, ref: Tensor, outBytes: number): number {
  const got = e.out === 'int8' ? Array.from(new Int8Array(out.buffer, out.byteOffset, outBytes))
    : e.out === 'float16' ? Array.from({ length: outBytes / 2 }, (_, i) => getFloat16(new DataView(out.buffer, out.byteOffset), i * 2, true))
      : Array.from(new Float32Array(out.buffer.slice(out.byteOffset, out.byteOffset + outBytes)));
  const want = Array.from(toF64(ref));
  let diff = 0;
  for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) diff++;
  return diff;
}
