// Hopper wgmma family for the int8 conv/GEMM kernels (tc_int8.ts): wgmma.mma_async m64nNk32 .s32.s8.s8, both
// operands K-major from 128-B-swizzled shared memory through matrix descriptors, s32 accumulators, the int8
// epilogue (per-channel scale, bias, residual, activation, requantize; staged 16-byte stores) of the mma.sync
// kernels. The kernel description (loaders, setup, epilogue code) is the one tc_int8.ts builds for tcKernel,
// so lowering swaps families by tile config (TileConfig.wgmma) as the fp16 path does. Needs sm_90a.
//
// Rules taken from the PTX ISA (wgmma.mma_async, integer variant) and why the kernel matches wgmma.ts:
//  - Syntax: `wgmma.mma_async.sync.aligned.m64nNk32.s32.s8.s8 d, a-desc, b-desc, scale-d;` - no imm-scale
//    (negation is floating-point only) and no imm-trans: integer operands must be K-major, which is what the
//    loaders write (A [M,K] rows, B [N,K] rows). N is one of 8..224 in the integer shape list (no n256), so
//    int8 wgmma tiles use bn 64 or 128.
//  - An s8 k32 step reads 32 bytes of each row, as an f16 k16 step does: one 128-B swizzle row holds 128 int8
//    elements, so bk = 128 and the four k-steps of a tile start at +32*kk bytes, with the same descriptor
//    (WGMMA_DESC: LBO 1, SBO 1024, 128-B swizzle, 1024-B aligned atoms) and the same cp.async swizzle.
//  - The s32 D fragment is laid out as the f32 one (warp w: rows 16w + lane/4 (+8), columns 8j + 2(lane%4)
//    (+1)), so the epilogue sees the accumulator pairs it sees in the mma.sync kernels.
//  - Pipeline, proxy fence, wait_group discipline and the accumulator fence after the last wait are those of
//    wgmma.ts (see there); the accumulator fence uses "+r" since the registers hold integers.
import { TsrtError } from '../errors.js';
import { shortHash, type KernelParam } from './kernel.js';
import { configName, type TcKernelSource, type TcSpec } from './tc_gemm.js';
import { WGMMA_ASM_HELPERS, wgmmaFragmentStores, wgmmaGeometry, wgmmaInstr, wgmmaMainloop, wgmmaPreamble } from './wgmma.js';


/** The int-accumulator fence (the CPU emulator in test/int8-wgmma-emu.test.ts replaces exactly this text). */
export const WGMMA_S8_KEEP = `// compiler-only: ties an int accumulator to this point, so no read moves above the last wgmma.wait_group
__device__ __forceinline__ void wg_keep_i(int& x) { asm volatile("" : "+r"(x) :: "memory"); }
`;

/** Assembles the int8 wgmma kernel from a tc_int8.ts kernel description (`mma: 's8'`, `store` with `t` as two
 * int accumulators, optional `storeBegin` / `storeEnd`). Config validity is int8ConfigProblems' (tc_int8.ts). */
export function wgmmaS8Kernel(s: TcSpec): TcKernelSource {
  const c = s.cfg;
  if (!c.wgmma || s.mma !== 's8') throw new TsrtError('USAGE', `wgmmaS8Kernel: ${configName(c)} is not an int8 wgmma kernel description`);
  if ((c as { ws?: boolean }).ws) throw new TsrtError('USAGE', `int8 wgmma: warp-specialized config ${configName(c)} is not supported`);
  if (c.bk !== 128 || (c.bn !== 64 && c.bn !== 128) || (c.splitK ?? 1) !== 1 || s.bKN || !s.store) {
    throw new TsrtError('USAGE', `int8 wgmma: config ${configName(c)} needs bk 128, bn 64/128, no split-K, B [N,K] and int8 store code`);
  }
  if (s.batch !== 1) throw new TsrtError('USAGE', 'int8 wgmma kernels are not batched');
  const { G, MI, S, mTiles, nTiles, kTiles, aBytes, stageBytes, NR } = wgmmaGeometry(s);
  const threads = 128 * G;
  const params: KernelParam[] = s.params.map((p) => ({ name: p.name, type: 'ptr' as const }));
  const body = (name: string) => `${wgmmaPreamble(s, {
    title: `wgmma s8 ${configName(c)} M=${s.m} N=${s.n} K=${s.k}`, helpers: [WGMMA_ASM_HELPERS, WGMMA_S8_KEEP], instr: wgmmaInstr(c.bn, 's8'),
    swizzleNote: 'rows are 128 B = 128 int8',
  })}
${wgmmaMainloop({ s, name, threads, mTiles, nTiles, kTiles, MI, NR, S, stageBytes, aBytes, acc: 'int', batchIndex: false })}${s.storeBegin ?? ''}
${wgmmaFragmentStores(MI, c.bn, 'int', s.store!)}
${s.storeEnd ?? ''}
}
`;
  const name = `${s.prefix}_${configName(c)}_${shortHash(body('K'))}`;
  return {
    name, source: body(name),
    grid: [mTiles * nTiles, 1, 1], block: [threads, 1, 1],
    sharedBytes: S * stageBytes + 1024, params, config: c,
    workspaceBytes: 0, workspaceZeroBytes: 0, flops: s.flops,
  };
}
