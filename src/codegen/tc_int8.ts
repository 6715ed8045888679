// INT8 tensor-core conv and GEMM: the fp16 skeleton of tc_gemm.ts with int8 operands (mma.sync m16n8k32 .s8,
// s32 accumulators). An int8 k32 fragment is byte for byte an fp16 k16 fragment, so tiles, swizzles, cp.async
// and ldmatrix are shared; what differs is the element size, the mma and the epilogue:
//   v = float(acc) * scale[n]          (scale = x_scale * w_scale[n], per output channel, fp32)
//   v += bias[n]; v += residual (before or after the activation); v = act(v)
//   y = int8: saturate(rint(v * (1 / y_scale)))  or  fp16 / fp32: v
// An int8 output with no activation or relu (residual before it) takes the folded form instead (int8Folded):
//   y = saturate(rint(act(fma(acc, scale'[n], fma(r, rs', bias'[n])))))   scale', bias', rs' = fp32(... * (1 / y_scale))
// The `qlinear` epilogue is ONNX QLinearConv / QLinearMatMul's instead: y = saturate(rint((acc + bias[n]) * scale[n]))
// with an int32 bias and scale = fp32(fp32(x_scale * w_scale[n]) / y_scale), the sum and product in float64 as
// the ONNX reference computes them (fp32 steps would round some products onto or off a .5 tie).
// Products go through __fmul_rn/__fadd_rn (and the folded form's explicit __fmaf_rn) so the compiler contracts
// nothing and the CPU reference (ops/qlinear.ts, with an exact fp32 FMA) reproduces every rounding step. Weights
// arrive pre-quantized per output channel.
import { TsrtError } from '../errors.js';
import type { ConvProblem } from './tc_conv.js';
import { convLoaders, isPointwise } from './tc_conv.js';
import {
  chooseTileConfig, configName, configProblems, estimateTime, flit, rowChunkLoader, smCountField, tcKernel, tileConfigSpace,
  type Epilogue, type TcKernelSource, type TcSpec, type TileConfig, type TileShape,
} from './tc_gemm.js';
import { tcLoaderThreads } from './wgmma_config.js';
import { WG_TILES } from './wgmma.js';
import { s8PersistentProblem, wgmmaS8Kernel, type S8Staged } from './wgmma_s8.js';

export type Int8Out = 'int8' | 'float16' | 'float32';

/** The fp16 epilogue's bias / residual / activation plus the int8 scales. `alpha` is not used (the
 * per-channel scale takes its place). */
export interface Int8Epilogue extends Omit<Epilogue, 'alpha'> {
  out: Int8Out;
  /** y_scale when `out` is int8. */
  outScale?: number;
  /** Storage of the residual (default: the output's); an int8 residual is dequantized with `residualScale`. */
  residualType?: Int8Out;
  residualScale?: number;
  /** ONNX QLinear requantize (see the header): int32 bias, float64 multiply, no activation or residual. */
  qlinear?: boolean;
  /** Every accumulator is below 2^22 in magnitude (the lowering's bound from the weights: max over n of
   * sum_k |w[n,k]| * 128), so the epilogue converts it to float without the conversion unit (smallIntToFloat). */
  smallAcc?: boolean;
}

/** The largest |accumulator| an exact exponent-trick conversion takes (smallIntToFloat, int8Bits): 2^22 - 1. */
export const SMALL_ACC_MAX = 2 ** 22 - 1;

// The epilogue's conversions without the conversion unit. I2F and F2I issue at 16 per clock on an SM (sm_80 and
// sm_90), an eighth of FADD's rate; an int8 epilogue converts 2-3 values per output (accumulator, int8 residual,
// requantized output) and, on the memory-bound ResNet-50 1x1 convs, took longer than the tile's loads and stores.
// Both tricks are exact: 0x4B400000 is the float 1.5 * 2^23, whose low 23 bits are the mantissa; for |x| < 2^22
// the bits 0x4B400000 + x are the float 1.5 * 2^23 + x exactly (same exponent), and subtracting 1.5 * 2^23 is exact.
// The other way, adding 1.5 * 2^23 to a float in [-128, 127] rounds it to the nearest integer, ties to even (the
// FADD's rounding, which is __float2int_rn's), and leaves that integer in the low bits.
/** float(x) for an int expression |x| < 2^22 (the int8 residual; accumulators when `smallAcc`). */
function smallIntToFloat(x: string): string { return `__fsub_rn(__int_as_float(0x4B400000 + (${x})), 12582912.0f)`; }
/** An int whose low byte is saturate(rint(v)) as int8: clamped to [lo, 127] first (NaN -> lo, as __float2int_rn's
 * 0x80000000 saturates to -128 and relu takes NaN to 0), then rounded by the FADD. */
function int8Bits(v: string, lo: string): string { return `__float_as_int(__fadd_rn(fminf(fmaxf(${v}, ${lo}), 127.0f), 12582912.0f))`; }

/** M x N x K GEMM with A [M,K] int8 row-major and B [N,K] int8 (weights, pre-transposed). */
export interface Int8GemmProblem { m: number; n: number; k: number; /** SMs of the target GPU (absent: SM_COUNT) */ smCount?: number }

const ELEM: Record<Int8Out, string> = { int8: 'signed char', float16: 'tc_half', float32: 'float' };
const OUT_BYTES: Record<Int8Out, number> = { int8: 1, float16: 2, float32: 4 };

/** An int8 tile config is an fp16 one with bk doubled (same bytes per row): bk 64 or 128. The autotuner ranks
 * int8 candidates as these fp16 twins (same bytes moved, same mma count per k-tile). */
export const asHalf = (c: TileConfig): TileConfig => ({ ...c, bk: c.bk / 2 });
export const asInt8 = (c: TileConfig): TileConfig => ({ ...c, bk: c.bk * 2 });
export const halfShape = (s: TileShape): TileShape => ({ ...s, k: Math.ceil(s.k / 2) });

/** Reasons an int8 tile config is invalid: its fp16 twin's (same stage bytes and accumulator registers: MI * bn/2
 * s32 a thread, at most 128; bn 64, 128, 192 or 256 with bk 128 = one 128-B swizzle row of int8; the same ws / se /
 * persistent rules, the ws kernels' 1 KiB static mbarrier block off the shared-memory maximum). Given the epilogue,
 * a persistent config is also checked with its staging tiles sized by the real output and residual types (an fp32
 * output tile of 128x256 is 130 KiB), exactly as the emitter lays them out (wgmma_s8.ts); without it only the fp16
 * twin's 16-bit staging tile is. The se form of the one-CTA-per-tile kernels never fails here: whatever does not
 * fit beside the stages keeps the spec's stores (as fp16's stagingPlan). */
export function int8ConfigProblems(c: TileConfig, epi?: Pick<Int8Epilogue, 'out' | 'residual' | 'residualType'>): string[] {
  if (c.bk % 2) return ['bk must be 64 or 128'];
  const r = configProblems(asHalf(c)).map((x) => x.replace('bk must be 32 or 64', 'bk must be 64 or 128')
    .replace('bk must be 64 (one 128-B swizzle row of fp16)', 'bk must be 128 (one 128-B swizzle row of int8)'));
  if (!r.length && epi && c.wgmma) {
    const why = s8PersistentProblem(c, OUT_BYTES[epi.out], epi.residual ? OUT_BYTES[epi.residualType ?? epi.out] : 0);
    if (why) r.push(why);
  }
  return r;
}
export function int8ConfigSpace(s: TileShape): TileConfig[] { return tileConfigSpace(halfShape(s)).filter((c) => !c.wgmma).map(asInt8); }

/** Int8 wgmma configs (wgmma_s8.ts, sm_90a) for a problem: offered to the autotuner next to the mma.sync ones.
 * fp16's tiles (WG_TILES, in its order: 128x256 first, 128x192 / 64x192 last) in the forms of wgmmaConfigSpace,
 * in its order (the autotuner's level-3 pick takes a tile's first five): persistent ws (with se), ws + se, ws, se,
 * all-threads. `se` (residual prefetched into a staging tile under the mainloop) needs 16-B output and residual
 * rows: N % 16 == 0 (any output type). With the epilogue, persistent configs whose staging tiles do not fit beside
 * their stages are left out (int8ConfigProblems). TSRT_WGMMA_WS=0 / TSRT_WGMMA_SE=0 / TSRT_WGMMA_PERSISTENT=0
 * leave those forms out, as for fp16. */
export function int8WgmmaConfigSpace(s: TileShape, epi?: Int8Epilogue): TileConfig[] {
  const out: TileConfig[] = [];
  const wsToo = process.env.TSRT_WGMMA_WS !== '0', seToo = process.env.TSRT_WGMMA_SE !== '0', pToo = process.env.TSRT_WGMMA_PERSISTENT !== '0';
  for (const [bm, bn, warpsM] of WG_TILES) {
    if (bm > 2 * Math.max(16, s.m) + 64 || bn > 2 * Math.max(16, s.n) + 64) continue;
    for (const stages of [3, 4, 5]) {
      for (const ws of wsToo ? [true, false] : [false]) {
        for (const se of s.n % 16 === 0 && seToo ? [true, false] : [false]) {
          for (const persistent of ws && se && pToo ? [true, false] : [false]) {
            const c: TileConfig = { bm, bn, bk: 128, warpsM, warpsN: 1, stages, wgmma: true, ...(ws ? { ws } : {}), ...(se ? { se } : {}), ...(persistent ? { persistent } : {}) };
            if (!int8ConfigProblems(c, epi).length) out.push(c);
          }
        }
      }
    }
  }
  return out;
}
/** The heuristic (untimed) int8 config: the fp16 heuristic's twin, kept on mma.sync (the int8 wgmma kernels are
 * only offered to the autotuner); should the fp16 heuristic pick wgmma, the best mma.sync twin by the model. */
export function chooseInt8Config(s: TileShape): TileConfig {
  const h = chooseTileConfig(halfShape(s));
  if (!h.wgmma) return asInt8(h);
  const space = int8ConfigSpace(s);
  if (!space.length) throw new TsrtError('USAGE', `no int8 tile config fits ${JSON.stringify(s)}`);
  const t = (c: TileConfig) => estimateTime(halfShape(s), asHalf(c));
  return space.reduce((a, b) => (t(b) < t(a) ? b : a));
}

function epiKey(e: Int8Epilogue): string {
  let s = e.out === 'int8' ? 'q' : e.out === 'float16' ? 'h' : 'f';
  if (e.qlinear) s += 'l';
  if (e.bias) s += 'b';
  if (e.residual) s += `${e.residualAfterAct ? 'Ra' : 'r'}${(e.residualType ?? e.out) === 'int8' ? 'q' : ''}`;
  return s;
}

function checkEpilogue(e: Int8Epilogue): void {
  const pos = (x: number | undefined, what: string) => {
    if (!(x !== undefined && Number.isFinite(x) && x > 0)) throw new TsrtError('USAGE', `int8 epilogue: ${what} must be a positive finite number, got ${x}`);
  };
  if (e.out === 'int8') pos(e.outScale, 'outScale (y_scale)');
  if (e.residual && (e.residualType ?? e.out) === 'int8') pos(e.residualScale, 'residualScale');
  if (e.qlinear && (e.out !== 'int8' || e.residual || (e.act ?? 'none') !== 'none')) {
    throw new TsrtError('USAGE', 'int8 epilogue: qlinear requantize writes int8 and has no residual or activation');
  }
}

/** Whether the epilogue requantizes in the folded form: int8 output, activation none or relu, the residual (if
 * any) added before it, not qlinear. The output scale then goes into the channel scale and bias (the kernel's
 * `scale` and `bias` buffers hold s * inv and b * inv: int8ChannelParams) and into the residual scale at build time,
 * so an element is two FMAs, the clamp (relu's max folded in) and the rounding FADD:
 *   y = saturate(rint(act(fma(acc, s*inv, fma(r, rs*inv, b*inv)))))      (inv = 1 / y_scale; each product fp32)
 * relu commutes with the positive scale. The unfolded form (acc*s, +b, +r*rs, act, *inv: five roundings, twice the
 * instructions) left the int8 1x1 convs of ResNet-50 instruction-bound on the H100 (Nsight Compute: SM throughput
 * 78%, 0.79 warps issued per scheduler, DRAM 34%). The CPU reference (ops/qlinear.ts, int8FoldedNode: the same rule
 * on the node's attributes) computes the same formula with an exact fp32 FMA. */
export function int8Folded(e: Int8Epilogue): boolean {
  const act = e.act ?? 'none';
  return e.out === 'int8' && !e.qlinear && (act === 'none' || act === 'relu') && !(e.residual && e.residualAfterAct && act !== 'none');
}

/** The kernel's channel scale and bias buffers from scale[n] = fp32(x_scale * w_scale[n]) and the float bias:
 * unchanged, or multiplied by fp32(1 / y_scale) in fp32 for the folded form (int8Folded). */
export function int8ChannelParams(e: Int8Epilogue, scale: ArrayLike<number>, bias?: ArrayLike<number>): { scale: Float32Array; bias?: Float32Array } {
  if (!int8Folded(e)) return { scale: Float32Array.from(scale), bias: bias && Float32Array.from(bias) };
  const inv = Math.fround(1 / e.outScale!);
  return { scale: Float32Array.from(scale, (v) => Math.fround(v * inv)), bias: bias && Float32Array.from(bias, (v) => Math.fround(v * inv)) };
}

/** The residual element j as float, unscaled: an int8 value exactly (exponent trick), fp16 widened, or fp32. */
function residualRaw(e: Int8Epilogue, j: number, rsp?: string): string {
  const rt = e.residualType ?? e.out;
  if (rsp === undefined) {
    return rt === 'int8' ? smallIntToFloat(`(int)residual[off + ${j}]`) : rt === 'float16' ? `h2f(residual[off + ${j}])` : `residual[off + ${j}]`;
  }
  // the pair code's residual word rv (int8: two bytes, fp16: two halves) or the fp32 pair at rsp
  return rt === 'int8' ? smallIntToFloat(`(int)(signed char)(rv >> ${8 * j})`) : rt === 'float16' ? (j ? 'hi_h2f(rv)' : 'lo_h2f(rv)')
    : rsp === 'global' ? `residual[off + ${j}]` : `reinterpret_cast<const float*>(${rsp})[${j}]`;
}

/** Epilogue statements for element (m, n + j) reading accumulator t[j] into v{j}; `rsp` says where the pair code
 * reads its residual (see residualRaw; undefined: the element's own global load), `ch` (the pair code's float2
 * loads) names the channel's scale and bias. */
function elementCode(e: Int8Epilogue, j: number, rsp?: string, ch?: { scale: string; bias: string }): string {
  const n = j ? `(n + ${j})` : 'n';
  if (e.qlinear) {
    const acc = e.bias ? `__dadd_rn((double)t[${j}], (double)bias[${n}])` : `(double)t[${j}]`;
    return `const double v${j} = __dmul_rn(${acc}, (double)scale[${n}]);`;
  }
  const acc = e.smallAcc ? smallIntToFloat(`t[${j}]`) : `(float)t[${j}]`;
  const sc = ch?.scale ?? `scale[${n}]`, bi = ch?.bias ?? `bias[${n}]`;
  const raw = e.residual ? residualRaw(e, j, rsp) : '';
  if (int8Folded(e)) {
    const inv = Math.fround(1 / e.outScale!);
    // (z_scale as the fp32 the CPU reference and the unfolded kernel take, then the fp32 product)
    const rs = !e.residual ? '' : flit((e.residualType ?? e.out) === 'int8' ? Math.fround(Math.fround(e.residualScale!) * inv) : inv);
    const t = e.bias ? (e.residual ? `__fmaf_rn(${raw}, ${rs}, ${bi})` : bi) : e.residual ? `__fmul_rn(${raw}, ${rs})` : '';
    return `const float v${j} = ${t ? `__fmaf_rn(${acc}, ${sc}, ${t})` : `__fmul_rn(${acc}, ${sc})`};`;
  }
  const res = !e.residual ? '' : (e.residualType ?? e.out) === 'int8' ? `__fmul_rn(${raw}, ${flit(e.residualScale!)})` : raw;
  const s: string[] = [`float v${j} = __fmul_rn(${acc}, ${sc});`];
  if (e.bias) s.push(`v${j} = __fadd_rn(v${j}, ${bi});`);
  if (e.residual && !e.residualAfterAct) s.push(`v${j} = __fadd_rn(v${j}, ${res});`);
  if ((e.act ?? 'none') !== 'none') s.push(`v${j} = tc_act(v${j});`);
  if (e.residual && e.residualAfterAct) s.push(`v${j} = __fadd_rn(v${j}, ${res});`);
  return s.join(' ');
}

/** An int whose low byte is the int8 output of v (elementCode's value): folded, v is already in output units and
 * relu is the clamp's lower bound; unfolded, v * (1 / y_scale). */
function outBits(e: Int8Epilogue, v: string): string {
  if (int8Folded(e)) return int8Bits(v, e.act === 'relu' ? '0.0f' : '-128.0f');
  return int8Bits(`__fmul_rn(${v}, ${flit(1 / e.outScale!)})`, '-128.0f');
}

function storeExpr(e: Int8Epilogue, v: string): string {
  if (e.qlinear) return `(signed char)max(-128, min(127, __double2int_rn(${v})))`;
  if (e.out === 'int8') return `(signed char)${outBits(e, v)}`;
  return e.out === 'float16' ? `f2h(${v})` : v;
}

/** Store code for tcKernel: both columns when the pair is in range, one at the right edge. */
function storeCode(e: Int8Epilogue, mTotal: number, nTotal: number, outOffset: string): string {
  return `if (m < ${mTotal}) {
          const idx_t off = ${outOffset};
          if (n < ${nTotal}) { ${elementCode(e, 0)} y[off] = ${storeExpr(e, 'v0')}; }
          if (n + 1 < ${nTotal}) { ${elementCode(e, 1)} y[off + 1] = ${storeExpr(e, 'v1')}; }
        }`;
}

/** Bytes per row of the shared-memory output tile when the epilogue stages it (16 bytes of padding keep the
 * fragment writes of one warp on distinct banks), or undefined for direct stores: rows of y must start 16-byte
 * aligned (N * element size % 16 == 0) and the tile must fit in the pipeline's shared memory it reuses. */
export function int8StagingRowBytes(c: TileConfig, nTotal: number, out: Int8Out): number | undefined {
  const ob = OUT_BYTES[out];
  if ((nTotal * ob) % 16 || (c.bn * ob) % 16) return undefined;
  const rowBytes = c.bn * ob + 16;
  return c.bm * rowBytes <= c.stages * (c.bm + c.bn) * c.bk ? rowBytes : undefined;
}

/** Staged epilogue (CUTLASS's shared-memory epilogue): each thread finishes its accumulator pairs (residual read
 * two elements at a time) into the smem tile, then the CTA writes the tile back in coalesced 16-byte stores.
 * A one-byte int8 store per element used a store instruction per byte; this uses one per 16. */
/** The epilogue of accumulator pair t[0..1] at (m, n) (both in range) written to the output tile at `sp` (declared
 * by `spDecl` when given); the residual pair is read at `rsp` (a staging tile) or, without it, from global memory
 * at `off`. */
function pairToTile(e: Int8Epilogue, rsp?: string, spDecl = '', hoisted = false): string {
  const rt = e.residualType ?? e.out;
  // n is even and N % 16 == 0 here, so a pair never straddles the edge and its residual pair is aligned
  const at = rsp ?? 'residual + off';
  const resLoad = !e.residual ? '' : rt === 'int8' ? `const unsigned short rv = *reinterpret_cast<const unsigned short*>(${at});`
    : rt === 'float16' ? `const u32 rv = *reinterpret_cast<const u32*>(${at});` : '';
  // two int8 outputs into one 16-bit store: byte 0 of each word (PRMT)
  const put = e.out === 'int8'
    ? `*reinterpret_cast<unsigned short*>(sp) = (unsigned short)__byte_perm(${e.qlinear ? `(int)${storeExpr(e, 'v0')}` : outBits(e, 'v0')}, ${e.qlinear ? `(int)${storeExpr(e, 'v1')}` : outBits(e, 'v1')}, 0x0040);`
    : e.out === 'float16' ? '*reinterpret_cast<u32*>(sp) = pack_h2(v0, v1);'
      : 'reinterpret_cast<float*>(sp)[0] = v0; reinterpret_cast<float*>(sp)[1] = v1;';
  // the pair's channel scales and biases in one 8-byte load each (n is even; the tensors are 16-B aligned), or
  // those the column code loaded once for both rows (hoisted: channelLoads)
  const ch = !e.qlinear;
  const chLoad = ch && !hoisted ? channelLoads(e, 'true') : '';
  const chOf = (j: number) => (ch ? { scale: `sc2.${j ? 'y' : 'x'}`, bias: `bi2.${j ? 'y' : 'x'}` } : undefined);
  const where = rsp ?? 'global';
  return `${resLoad} ${chLoad}
          ${elementCode(e, 0, where, chOf(0))} ${elementCode(e, 1, where, chOf(1))}
          ${spDecl}${put}`;
}

/** sc2 / bi2: the channel pair (n, n + 1)'s scale and bias (zeros where `ok` is false: columns past N). */
function channelLoads(e: Int8Epilogue, ok: string): string {
  const ld = (a: string) => (ok === 'true' ? `*reinterpret_cast<const float2*>(${a} + n)` : `${ok} ? *reinterpret_cast<const float2*>(${a} + n) : make_float2(0.f, 0.f)`);
  return `const float2 sc2 = ${ld('scale')};${e.bias ? ` const float2 bi2 = ${ld('bias')};` : ''}`;
}

/** The int8 wgmma kernels' `se` epilogue parts (wgmma_s8.ts): element sizes and the pair code, or undefined when
 * output or residual rows are not 16-B aligned (those kernels keep the spec's stores). */
function s8Staged(e: Int8Epilogue, nTotal: number): S8Staged | undefined {
  const ob = OUT_BYTES[e.out], rb = e.residual ? OUT_BYTES[e.residualType ?? e.out] : 0;
  if ((nTotal * ob) % 16 || (nTotal * rb) % 16) return undefined;
  // the channel loads once per column pair, for both of its rows
  if (e.qlinear) return { ob, rb, pair: pairToTile(e, e.residual ? 'rsp' : undefined) };
  return { ob, rb, pair: pairToTile(e, e.residual ? 'rsp' : undefined, '', true), column: (ok) => channelLoads(e, ok) };
}

function stagedStore(e: Int8Epilogue, c: TileConfig, mTotal: number, nTotal: number, outOffset: string, rowBytes: number, threads: number) {
  const ob = OUT_BYTES[e.out];
  const chunks = (c.bn * ob) / 16;
  // the warp-specialized kernels (wgmma_s8.ts): the producer warpgroup has left, so the consumers sync among
  // themselves (named barrier 1) and copy the tile out; everyone else syncs the CTA
  const sync = c.ws ? `named_bar_sync(1, ${threads});` : '__syncthreads();';
  return {
    storeBegin: `  // staged epilogue: the pipeline's shared memory becomes the output tile once every warp is done reading it
  struct __align__(16) tc_v16 { unsigned a, b, c, d; };
  ${sync}`,
    store: `if (m < ${mTotal} && n < ${nTotal}) {
          ${e.residual ? `const idx_t off = ${outOffset};` : ''}
          ${pairToTile(e, undefined, `unsigned char* sp = tc_smem + (m - mBase) * ${rowBytes} + (n - nBase) * ${ob};\n          `)}
        }`,
    storeEnd: `  ${sync}
  for (int i = ${c.ws ? 'tid - 128' : 'tid'}; i < ${c.bm * chunks}; i += ${threads}) {
    const int r = i / ${chunks}, ch = i % ${chunks};
    const int m = mBase + r, n = nBase + ch * ${16 / ob};
    if (m < ${mTotal} && n < ${nTotal}) {
      const idx_t off = ${outOffset};
      *reinterpret_cast<tc_v16*>(y + off) = *reinterpret_cast<const tc_v16*>(tc_smem + r * ${rowBytes} + ch * 16);
    }
  }`,
  };
}

/** The epilogue fields of a TcSpec: staged when int8StagingRowBytes allows, direct stores otherwise. */
function epilogueSpec(e: Int8Epilogue, c: TileConfig, mTotal: number, nTotal: number, outOffset: string) {
  const rowBytes = int8StagingRowBytes(c, nTotal, e.out);
  if (rowBytes === undefined) return { store: storeCode(e, mTotal, nTotal, outOffset) };
  return stagedStore(e, c, mTotal, nTotal, outOffset, rowBytes, 32 * c.warpsM * c.warpsN); // (ws: the consumers)
}

function params(e: Int8Epilogue, a: string, b: string, y: string) {
  return [
    { name: a, decl: `const signed char* __restrict__ ${a}` },
    { name: b, decl: `const signed char* __restrict__ ${b}` },
    { name: 'scale', decl: 'const float* __restrict__ scale' },
    { name: 'bias', decl: `const ${e.qlinear ? 'int' : 'float'}* __restrict__ bias` },
    { name: 'residual', decl: `const ${ELEM[e.residualType ?? e.out]}* __restrict__ residual` },
    { name: y, decl: `${ELEM[e.out]}* __restrict__ ${y}` },
  ];
}

// ---------------------------------------------------------------------------------------------------
// Conv

/** Reasons the int8 conv kernel cannot run this problem (empty: it can). The engine pads C with zeros to a
 * multiple of 16 (one 16-byte cp.async chunk); groups and NCHW are not supported (those layers stay fp16). */
export function int8ConvPreconditions(p: ConvProblem): string[] {
  const out: string[] = [];
  if (p.c % 16) out.push(`c=${p.c} must be a multiple of 16 (pad channels with zeros)`);
  const x = p.n * p.h * p.w * p.c, y = p.n * p.p * p.q * p.k;
  if (Math.max(x, y, p.k * p.r * p.s * p.c) >= 2 ** 31) out.push('tensors over 2^31 elements');
  return out;
}

export function int8ConvShape(p: ConvProblem): TileShape { return { m: p.n * p.p * p.q, n: p.k, k: p.r * p.s * p.c, batch: 1, ...smCountField(p.smCount) }; }
export function int8ConvConfigSpace(p: ConvProblem): TileConfig[] { return int8ConfigSpace(int8ConvShape(p)); }
export function int8WgmmaConvSpace(p: ConvProblem, epi?: Int8Epilogue): TileConfig[] { return int8WgmmaConfigSpace(int8ConvShape(p), epi); }

/** Int8 implicit-GEMM conv, NHWC. x int8 [n,h,w,c], w int8 [k][r][s][c], scale fp32 [k] (x_scale*w_scale),
 * bias fp32 [k], residual and y [n,p,q,k] in their epilogue dtypes. Kernel signature:
 * (x, w, scale, bias, residual, y[, workspace]); bias/residual may be null when unused. */
export function emitConvInt8(p: ConvProblem, epi: Int8Epilogue, cfg?: TileConfig): TcKernelSource {
  const pre = int8ConvPreconditions(p);
  if (pre.length) throw new TsrtError('UNSUPPORTED', `int8 conv: ${pre.join('; ')}`, 'run the layer in fp16');
  checkEpilogue(epi);
  const shape = int8ConvShape(p);
  const c = cfg ?? chooseInt8Config(shape);
  const bad = int8ConfigProblems(c, epi);
  if (bad.length) throw new TsrtError('USAGE', `int8 tile config ${configName(c)}: ${bad.join('; ')}`);
  const threads = tcLoaderThreads(c); // the loaders' threads: all, or the ws kernels' producer warpgroup
  const M = shape.m, K = shape.k;
  const pw = isPointwise(p);
  const { setup, loadA, loadB } = convLoaders(p, c, { threads, chunkElems: 16, elem: 'signed char', M, K });
  const kind = pw ? (p.strideH === 1 && p.strideW === 1 ? '1x1' : `1x1s${p.strideH}`) : `${p.r}x${p.s}s${p.strideH}`;
  return (c.wgmma ? (x: TcSpec) => wgmmaS8Kernel(x, s8Staged(epi, p.k)) : tcKernel)({
    prefix: `conv_i8_${kind}_${epiKey(epi)}`, cfg: c, m: M, n: p.k, k: K, batch: 1, bKN: false, mma: 's8',
    params: params(epi, 'x', 'w', 'y'),
    setup, loadA, loadB,
    outOffset: `(idx_t)m * ${p.k} + n`, pairStores: false, epi: { act: epi.act, actArgs: epi.actArgs },
    ...epilogueSpec(epi, c, M, p.k, `(idx_t)m * ${p.k} + n`),
    nFastest: p.k * K <= p.n * p.h * p.w * p.c, flops: 2 * M * p.k * K, bigIndex: false, ...smCountField(p.smCount),
  });
}

// ---------------------------------------------------------------------------------------------------
// GEMM

export function int8GemmPreconditions(p: Int8GemmProblem): string[] {
  const out: string[] = [];
  if (p.k % 16) out.push(`K=${p.k} must be a multiple of 16`);
  if (Math.max(p.m * p.k, p.n * p.k, p.m * p.n) >= 2 ** 31) out.push('tensors over 2^31 elements');
  return out;
}

function gemmShape(p: Int8GemmProblem): TileShape { return { m: p.m, n: p.n, k: p.k, batch: 1, ...smCountField(p.smCount) }; }
export function int8GemmConfigSpace(p: Int8GemmProblem): TileConfig[] { return int8ConfigSpace(gemmShape(p)); }
export function int8WgmmaGemmSpace(p: Int8GemmProblem, epi?: Int8Epilogue): TileConfig[] { return int8WgmmaConfigSpace(gemmShape(p), epi); }

/** Int8 GEMM: a int8 [M,K], b int8 [N,K], scale fp32 [N], bias fp32 [N], residual and c [M,N].
 * Kernel signature: (a, b, scale, bias, residual, c[, workspace]). */
export function emitGemmInt8(p: Int8GemmProblem, epi: Int8Epilogue, cfg?: TileConfig): TcKernelSource {
  const pre = int8GemmPreconditions(p);
  if (pre.length) throw new TsrtError('UNSUPPORTED', `int8 gemm: ${pre.join('; ')}`, 'run the layer in fp16');
  checkEpilogue(epi);
  const c = cfg ?? chooseInt8Config(gemmShape(p));
  const bad = int8ConfigProblems(c, epi);
  if (bad.length) throw new TsrtError('USAGE', `int8 tile config ${configName(c)}: ${bad.join('; ')}`);
  const threads = tcLoaderThreads(c); // the loaders' threads: all, or the ws kernels' producer warpgroup
  const kcol = `      const int kcol = kt * ${c.bk} + ch * 16;`;
  const loadA = rowChunkLoader({
    smem: 'sA', rows: c.bm, rowChunks: c.bk / 16, threads, perKtile: kcol,
    chunk: (_j, row) => ({ ok: `kcol < ${p.k} && mBase + ${row} < ${p.m}`, src: `a + (idx_t)(mBase + ${row}) * ${p.k} + kcol` }),
  });
  const loadB = rowChunkLoader({
    smem: 'sB', rows: c.bn, rowChunks: c.bk / 16, threads, perKtile: kcol,
    chunk: (_j, row) => ({ ok: `kcol < ${p.k} && nBase + ${row} < ${p.n}`, src: `b + (idx_t)(nBase + ${row}) * ${p.k} + kcol` }),
  });
  return (c.wgmma ? (x: TcSpec) => wgmmaS8Kernel(x, s8Staged(epi, p.n)) : tcKernel)({
    prefix: `gemm_i8_${epiKey(epi)}`, cfg: c, m: p.m, n: p.n, k: p.k, batch: 1, bKN: false, mma: 's8',
    params: params(epi, 'a', 'b', 'c'),
    setup: '  const signed char* tc_dummy = a;\n  auto* __restrict__ y = c;', loadA, loadB,
    outOffset: `(idx_t)m * ${p.n} + n`, pairStores: false, epi: { act: epi.act, actArgs: epi.actArgs },
    ...epilogueSpec(epi, c, p.m, p.n, `(idx_t)m * ${p.n} + n`),
    nFastest: p.n <= p.m, flops: 2 * p.m * p.n * p.k, bigIndex: false, ...smCountField(p.smCount),
  });
}
