// Warp-specialized Hopper wgmma conv/GEMM kernel (TileConfig.ws): the `ws` variant of every wgmma tile, timed by
// the autotuner next to the all-threads-load kernel of wgmma.ts. Same kernel description (TcSpec), signature,
// grid order and results; it differs in who waits for what:
//  - Warpgroup 0 is the producer: its 128 threads issue the cp.async tile loads (the spec's loaders are built
//    for 128 threads, tcLoaderThreads) into S stages and never compute. Warpgroups 1..G are consumers that
//    only issue wgmma, so the tensor cores are fed while the loads of later stages are in flight, and no
//    __syncthreads stalls every warp once per k-tile as in wgmma.ts.
//  - Stage s has a `full` mbarrier (expected arrivals: the 128 producer threads) and an `empty` one (4*G: lane
//    0 of every consumer warp). A producer thread's `cp.async.mbarrier.arrive.noinc` makes its arrival on
//    full[s] wait for its own cp.asyncs of that stage (noinc: the arrival counts against the 128 expected, PTX
//    ISA "cp.async.mbarrier.arrive"), so full[s] completes exactly when the whole tile has landed. A consumer
//    waits on full[s] with the parity of the round (it / S) & 1, fences the generic-proxy writes for the async
//    proxy that wgmma reads through (fence.proxy.async.shared::cta, as in wgmma.ts), issues the k-tile, and keeps
//    one wgmma group in flight (wait_group 1): when tile it's group is committed, tile it-1's has retired, and
//    then its warps arrive on empty[(it-1) % S]. The producer refills stage s for k-tile kt >= S after waiting
//    on empty[s] with parity ((kt / S) - 1) & 1, i.e. after every consumer warp retired tile kt - S.
//  - setmaxnreg (2 consumer warpgroups): the CTA's register pool is 384 x 168 (the __launch_bounds__ limit,
//    which ptxas allocates when setmaxnreg is present; the compile test checks it). The producer gives back
//    down to 120 (at 96 the 3x3 conv's per-row im2col state of 256-row tiles spilled under nvcc 13), the
//    consumers take 184 each (128 accumulators + addressing): 120*128 + 184*256 = 62464 <= 64512, so
//    setmaxnreg.inc never waits on registers that do not exist.
//  - Epilogue through shared memory when spec.vecStores (N % 8 == 0): once every consumer's last wgmma has
//    retired (named barrier 1 over the consumers; all loads have landed because every full barrier was waited
//    on), each consumer warpgroup writes its fp32 accumulators into its own rows of a staging tile that reuses
//    the pipeline's shared memory (row stride bn + 8 floats: conflict-free float2 stores), syncs its own 128
//    threads (named barrier 2 + warpgroup), and each thread then applies the epilogue to 8 consecutive
//    columns: two 16-B shared loads, one 16-B residual load, one 16-B global store. Otherwise the fragment
//    stores of wgmma.ts.
// The grid is the same one-CTA-per-tile grid as wgmma.ts (a persistent grid is not used).
import type { KernelParam } from './kernel.js';
import { shortHash } from './kernel.js';
import { TsrtError } from '../errors.js';
import { configName, epilogueKey, epilogueStatements, SM_COUNT, specElem, type TcKernelSource, type TcSpec } from './tc_gemm.js';
import { WGMMA_ASM_HELPERS, wgmmaFragmentStores, wgmmaGeometry, wgmmaInstr, wgmmaPreamble, wgmmaStoreCode } from './wgmma.js';
import { stagedCopyOut, stagedDecl, stagedFragmentStore, stagedResidualPrefetch, stagingPlan, stagingTileBytes, type StagingPlan } from './wgmma_epilogue.js';
import { WGMMA_ALIGN_SLACK, wgmmaDynamicSmemMax, wgmmaStagingStride } from './wgmma_config.js';


/** setmaxnreg targets with 2 consumer warpgroups (see the header): producer, consumers. */
export const WS_PRODUCER_REGS = 120;
export const WS_CONSUMER_REGS = 184;

/** The PTX-only helpers of the ws kernels: mbarriers, cp.async completion on an mbarrier, named barriers,
 * setmaxnreg (the CPU emulator in test/codegen-wgmma-emu.test.ts replaces exactly this text). */
export const WGMMA_WS_ASM_HELPERS = `__device__ __forceinline__ void mbar_init(u32 bar, u32 count) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\\n" :: "r"(bar), "r"(count) : "memory"); }
__device__ __forceinline__ void mbar_arrive(u32 bar) { asm volatile("{\\n.reg .b64 st;\\nmbarrier.arrive.shared::cta.b64 st, [%0];\\n}\\n" :: "r"(bar) : "memory"); }
__device__ __forceinline__ bool mbar_try_wait(u32 bar, u32 parity) {
  u32 ok;
  asm volatile("{\\n.reg .pred p;\\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\\nselp.u32 %0, 1, 0, p;\\n}\\n" : "=r"(ok) : "r"(bar), "r"(parity) : "memory");
  return ok != 0;
}
__device__ __forceinline__ void mbar_wait(u32 bar, u32 parity) { while (!mbar_try_wait(bar, parity)) {} }
// the producer's wait is bounded: a pipeline whose empty barriers never complete traps (the launch fails)
// instead of hanging the GPU; each try_wait suspends for a while, so 2^24 tries is far beyond any legitimate
// wait. (The consumers' wait stays unbounded: under nvcc 13 the counter made 256x128 consumers spill.)
__device__ __forceinline__ void mbar_wait_bounded(u32 bar, u32 parity) {
  for (u32 n = 0; !mbar_try_wait(bar, parity);) if (++n == (1u << 24)) __trap();
}
// this thread's arrival on the barrier happens when all its earlier cp.asyncs have completed (noinc: counted)
__device__ __forceinline__ void cp_async_mbar_arrive(u32 bar) { asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\\n" :: "r"(bar) : "memory"); }
__device__ __forceinline__ void named_bar_sync(u32 id, u32 threads) { asm volatile("bar.sync %0, %1;\\n" :: "r"(id), "r"(threads) : "memory"); }
template <int N> __device__ __forceinline__ void setmaxnreg_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\\n" :: "n"(N)); }
template <int N> __device__ __forceinline__ void setmaxnreg_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\\n" :: "n"(N)); }
`;

/** The vectorized store of 8 outputs (m, n..n+7) from the staging row `row` (fp32, 16-B aligned). */
function vecStoreCode(s: TcSpec): string {
  const res = (e: number) => `${e % 2 ? 'hi' : 'lo'}_h2f(rv[${e >> 1}])`;
  const lanes = Array.from({ length: 8 }, (_, e) => `{ float& v = f[${e}]; ${epilogueStatements(s.epi, 'v', `(n + ${e})`, res(e))} }`);
  return `const idx_t off = ${s.outOffset};
        float f[8];
        *reinterpret_cast<float4*>(f) = *reinterpret_cast<const float4*>(row);
        *reinterpret_cast<float4*>(f + 4) = *reinterpret_cast<const float4*>(row + 4);
        ${s.epi.residual ? `u32 rv[4]; *reinterpret_cast<uint4*>(rv) = *reinterpret_cast<const uint4*>(residual + ${s.resOffset ? `(${s.resOffset})` : 'off'});` : ''}
        ${lanes.join('\n        ')}
        u32 o[4];
        #pragma unroll
        for (int e = 0; e < 4; ++e) o[e] = pack_h2(f[2 * e], f[2 * e + 1]);
        *reinterpret_cast<uint4*>(y + off) = *reinterpret_cast<const uint4*>(o);`;
}

/** The warp-specialized kernel for a kernel description with cfg.ws (called by wgmmaKernel, which has
 * validated the config). */
export function wgmmaWsKernel(s: TcSpec): TcKernelSource {
  const c = s.cfg;
  const { G, MI, S, mTiles, nTiles, kTiles, stageBytes, sharedBytes } = wgmmaGeometry(s);
  const threads = 128 * (G + 1); // a producer warpgroup besides the G consumers
  const rowsPerWg = MI * 64, ld = wgmmaStagingStride(c);
  // the 16-bit staged epilogue with residual prefetch (wgmma_epilogue.ts); the fp32 staging below stays for
  // residual tiles that do not fit beside the stages
  // (a persistent kernel cycles through all S stages across its tiles, whatever one tile's k-tile count)
  const pipelineBytes = (c.persistent ? S : Math.min(S, kTiles)) * stageBytes;
  const plan = stagingPlan(s, pipelineBytes);
  const scope = { rowBase: `cw * ${rowsPerWg}`, rows: rowsPerWg, threads: 128, tid: 'ctid' };
  const params: KernelParam[] = s.params.map((p) => ({ name: p.name, type: 'ptr' as const }));
  const fragmentStoresWith = (store: string) => wgmmaFragmentStores(MI, c.bn, 'float', store, 'cw');
  const fragmentStores = fragmentStoresWith(wgmmaStoreCode(s));
  const stagedStores = `  // every consumer's wgmmas have retired before any warpgroup overwrites pipeline stages with its staging rows
  named_bar_sync(1, ${128 * G});
  float* stg = reinterpret_cast<float*>(smemPtr) + cw * ${rowsPerWg * ld};
  #pragma unroll
  for (int mi = 0; mi < ${MI}; ++mi) {
    #pragma unroll
    for (int nj = 0; nj < ${c.bn / 8}; ++nj) {
      #pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = mi * 64 + (warp & 3) * 16 + (lane >> 2) + h * 8;
        *reinterpret_cast<float2*>(stg + r * ${ld} + nj * 8 + (lane & 3) * 2) = make_float2(acc[mi][nj * 4 + h * 2], acc[mi][nj * 4 + h * 2 + 1]);
      }
    }
  }
  named_bar_sync(2 + cw, 128);
  #pragma unroll 4
  for (int i = 0; i < ${(rowsPerWg * c.bn) / 8 / 128}; ++i) {
    const int chunk = ctid + i * 128, r = chunk / ${c.bn / 8}, cc = chunk % ${c.bn / 8};
    const int m = mBase + cw * ${rowsPerWg} + r, n = nBase + cc * 8;
    if (m < ${s.m} && n < ${s.n}) {
      const float* row = stg + r * ${ld} + cc * 8;
      ${vecStoreCode(s)}
    }
  }`;
  const staged16 = plan && `${plan.offset === 0 ? `  // the staging tile overlays the stages: every consumer's wgmmas retired first
  named_bar_sync(1, ${128 * G});
` : `  cp_async_wait<0>(); // this thread's residual chunks
  named_bar_sync(2 + cw, 128);
`}${stagedDecl(plan)}${fragmentStoresWith(stagedFragmentStore(s, plan))}
  named_bar_sync(2 + cw, 128);
${stagedCopyOut(s, plan, scope)}`;
  if (c.persistent) {
    if (!plan || s.batch !== 1) throw new TsrtError('USAGE', `persistent wgmma config ${configName(c)}: needs 16-B output rows, a staging tile beside the stages and batch 1`);
    return persistentKernel(s, plan, scope, staged16 as string);
  }
  const body = wsKernelBody(s, {
    title: `wgmma warp-specialized ${configName(c)} M=${s.m} N=${s.n} K=${s.k} batch=${s.batch}${plan ? ' staged epilogue' : ''}`,
    helpers: [WGMMA_ASM_HELPERS, WGMMA_WS_ASM_HELPERS], instr: wgmmaInstr(c.bn, specElem(s)), acc: 'float',
    prologue: plan ? stagedResidualPrefetch(s, plan, scope) : '',
    epilogue: staged16 || (s.vecStores ? stagedStores : fragmentStores),
  });
  const name = `${s.prefix}_${configName(c)}_${epilogueKey(s.epi)}_${shortHash(body('K'))}`;
  return {
    name, source: body(name),
    grid: [mTiles * nTiles, s.batch, 1], block: [threads, 1, 1],
    sharedBytes: plan ? plan.sharedBytes : sharedBytes, params, config: c,
    workspaceBytes: 0, workspaceZeroBytes: 0, flops: s.flops,
  };
}

/** The persistent form of the ws kernel (TileConfig.persistent, with se): gridDim.x CTAs (one per SM) walk the
 * tiles tile = blockIdx.x, blockIdx.x + gridDim.x, ... The producer keeps one global k-iteration count g over
 * all its tiles, so stage g % S and the barrier parities (g / S) & 1 continue across tiles, and it starts
 * loading the next tile as soon as stages are released, i.e. while the consumers run this tile's epilogue.
 * Consumers release a stage after its wgmma group retired (wait_group 1), and the tile's last stage after
 * wait_group 0. The staging tile never overlays the stages (stagingPlan), and each consumer warpgroup syncs
 * after its copy-out, before the next tile's residual prefetch overwrites its staging rows. The per-tile
 * part of the spec's setup (the conv loaders' per-row im2col state) re-runs per tile: only unbatched
 * problems get this variant, since batched setups advance pointers by the batch index. */
function persistentKernel(s: TcSpec, plan: StagingPlan, scope: { rowBase: string; rows: number; threads: number; tid: string }, staged16: string): TcKernelSource {
  const c = s.cfg;
  const { G, MI, mTiles, nTiles } = wgmmaGeometry(s);
  const numTiles = mTiles * nTiles;
  const params: KernelParam[] = s.params.map((p) => ({ name: p.name, type: 'ptr' as const }));
  // Double-buffered residual (when two staging tiles fit beside the stages): tile tl's residual was requested
  // during tile tl-1 (or before the loop), into buffer tl & 1, so its latency hides under the previous tile's
  // epilogue and this tile's mainloop instead of being waited for after it: the K=64..256 1x1 convs' mainloop
  // is one to four k-tiles. Every iteration commits exactly one cp.async group (empty after the last tile), so
  // wait_group 1 leaves only the next tile's in flight.
  const tileBytes = stagingTileBytes(s);
  const dbl = !!s.epi.residual && plan.offset + 2 * tileBytes + WGMMA_ALIGN_SLACK <= wgmmaDynamicSmemMax(c);
  const consumerEpilogue = dbl ? `    cp_async_wait<1>(); // this tile's residual chunks (the next tile's stay in flight)
    named_bar_sync(2 + cw, 128);
  ${stagedDecl(plan, `${plan.offset} + (tl & 1) * ${tileBytes}`)}${wgmmaFragmentStores(MI, c.bn, 'float', stagedFragmentStore(s, plan), 'cw')}
    named_bar_sync(2 + cw, 128);
${stagedCopyOut(s, plan, scope)}` : staged16;
  const body = persistentKernelBody(s, {
    title: `wgmma warp-specialized persistent ${configName(c)} M=${s.m} N=${s.n} K=${s.k} staged epilogue`,
    helpers: [WGMMA_ASM_HELPERS, WGMMA_WS_ASM_HELPERS], instr: wgmmaInstr(c.bn, specElem(s)), acc: 'float',
    dbl, prefetch: (buf) => stagedResidualPrefetch(s, plan, scope, buf === undefined ? undefined : `${plan.offset} + (${buf}) * ${tileBytes}`),
    epilogue: consumerEpilogue,
  });
  const name = `${s.prefix}_${configName(c)}_${epilogueKey(s.epi)}_${shortHash(body('K'))}`;
  return {
    name, source: body(name),
    grid: [Math.min(numTiles, s.smCount ?? SM_COUNT), 1, 1], persistentTiles: numTiles, block: [128 * (G + 1), 1, 1],
    sharedBytes: dbl ? plan.sharedBytes + tileBytes : plan.sharedBytes, params, config: c,
    workspaceBytes: 0, workspaceZeroBytes: 0, flops: s.flops,
  };
}

/** The persistent ws kernel as a function of its name (see persistentKernel): CTAs walk the tiles; `prefetch(buf)`
 * issues the consumer warpgroup's residual prefetch of the tile whose mBase / nBase are in scope into residual
 * buffer `buf` (undefined: the single buffer; '' when there is no residual), one cp.async group; with `dbl` the
 * next tile's goes into the other buffer during this tile (the caller's `epilogue` waits with wait_group 1) and
 * every iteration commits one group. `epilogue` runs per tile after the accumulators are final; the skeleton syncs
 * each consumer warpgroup after it, before the next tile's prefetch may overwrite its staging rows. */
export function persistentKernelBody(s: TcSpec, o: WsKernelParts & { dbl: boolean; prefetch: (buf?: string) => string; epilogue: string }): (name: string) => string {
  const c = s.cfg;
  const { G, MI, S, mTiles, nTiles, kTiles, aBytes, stageBytes, NR } = wgmmaGeometry(s);
  const threads = 128 * (G + 1);
  const regs = G === 2;
  const numTiles = mTiles * nTiles;
  const tileIndexOf = (t: string) => `    const int mTile = ${s.nFastest ? `${t} / ${nTiles}` : `${t} % ${mTiles}`};
    const int nTile = ${s.nFastest ? `${t} % ${nTiles}` : `${t} / ${mTiles}`};
    const int mBase = mTile * ${c.bm}, nBase = nTile * ${c.bn};`;
  const tileIndex = tileIndexOf('tile');
  const dbl = o.dbl;
  const prefetchInto = (t: string, buf: string) => `    {
      const int pt = ${t};
${tileIndexOf('pt').replace(/^ {4}/gm, '      ')}
${o.prefetch(buf).replace(/^/gm, '    ')}    }
`;
  return (name: string) => `${wgmmaPreamble(s, { title: o.title, helpers: o.helpers, instr: o.instr, swizzleNote: o.swizzleNote })}
// the spec's setup runs in both roles' tile loops; each role leaves some of its variables unused
#pragma nv_diag_suppress 177, 550
extern "C" __global__ void __launch_bounds__(${threads}, 1) ${name}(${s.params.map((p) => p.decl).join(', ')}) {
  extern __shared__ __align__(1024) unsigned char tc_smem[];
  __shared__ __align__(8) unsigned long long wg_bars[${2 * S}]; // full[0..S), empty[S..2S)
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
  const int bz = blockIdx.y;
  (void)bz;
  const u32 smemBase = (smem_u32(tc_smem) + 1023u) & ~1023u;
${barrierInit(S, G)}  const int ktCount = ${kTiles};

  if (wg == 0) {
${regs ? `    setmaxnreg_dec<${WS_PRODUCER_REGS}>();\n` : ''}    int g = 0; // k-iterations issued over all this CTA's tiles
    for (int tile = blockIdx.x; tile < ${numTiles}; tile += gridDim.x) {
${tileIndex}
${s.setup}
${producerLoop(s, { S, stageBytes, aBytes, counter: 'g' }).replace(/^/gm, '  ')}    }
    cp_async_commit();
    cp_async_wait<0>();
    return;
  }
${regs ? `  setmaxnreg_inc<${WS_CONSUMER_REGS}>();\n` : ''}  const int cw = wg - 1, ctid = tid & 127; // consumer warpgroup, thread in it
  (void)ctid;
  int g = 0;
${dbl ? prefetchInto('blockIdx.x', '0') : ''}  for (int tile = blockIdx.x, tl = 0; tile < ${numTiles}; tile += gridDim.x, ++tl) {
${tileIndex}
${s.setup}
${dbl ? `    if (tile + (int)gridDim.x < ${numTiles}) {
${prefetchInto('tile + (int)gridDim.x', '(tl + 1) & 1').replace(/^/gm, '  ')}    } else {
      cp_async_commit();
    }
` : o.prefetch()}${consumerLoop({ MI, NR, S, stageBytes, aBytes, counter: 'g', acc: o.acc }).replace(/^/gm, '  ')}    wg_wait<0>();
    // the tile's last stage is free too: the producer may already be filling stages with the next tile
    if (lane == 0) mbar_arrive(emptyBar + 8 * ((g - 1) % ${S}));
    #pragma unroll
    for (int i = 0; i < ${MI}; ++i)
      #pragma unroll
      for (int j = 0; j < ${NR}; ++j) ${keepOf(o.acc)}(acc[i][j]);
${o.epilogue}
    named_bar_sync(2 + cw, 128); // copy-out read the staging rows: only now may a prefetch write into them
  }
}
`;
}

/** The consumers' accumulator init and k-loop, up to (not including) the final wait_group 0. `counter`: the
 * k-iteration count the stage and barrier parity come from: `it` (this tile's) or `g` (the persistent kernel's
 * count over all its tiles, advanced with `it`). */
function consumerLoop(o: { MI: number; NR: number; S: number; stageBytes: number; aBytes: number; counter: 'it' | 'g'; acc: 'float' | 'int' }): string {
  const { MI, NR, S, stageBytes, aBytes, counter: k } = o;
  // int accumulators: each zero passes wg_keep_i, so it is its own register before wgmma.fence; from one shared
  // zero ptxas would move them into the wgmma registers after the fence and inject a warpgroup.arrive (C7519)
  return `  ${o.acc} acc[${MI}][${NR}];
  #pragma unroll
  for (int i = 0; i < ${MI}; ++i)
    #pragma unroll
    for (int j = 0; j < ${NR}; ++j) ${o.acc === 'float' ? 'acc[i][j] = 0.0f;' : '{ acc[i][j] = 0; wg_keep_i(acc[i][j]); }'}
  for (int it = 0; it < ktCount; ++it${k === 'g' ? ', ++g' : ''}) {
    const int stage = ${k} % ${S};
    mbar_wait(fullBar + 8 * stage, (${k} / ${S}) & 1);
    fence_proxy_async();
    const u32 sA = smemBase + stage * ${stageBytes} + cw * ${MI * 64 * 128};
    const u32 sB = smemBase + stage * ${stageBytes} + ${aBytes};
    wg_fence();
    #pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const u64 db = wg_desc(sB + kk * 32);
      #pragma unroll
      for (int mi = 0; mi < ${MI}; ++mi) ${o.acc === 'float' ? 'wg_mma' : 'wg_mma_s8'}(acc[mi], wg_desc(sA + mi * ${64 * 128} + kk * 32), db);
    }
    wg_commit();
    wg_wait<1>();
    // tile it-1's group has retired: its stage may be refilled
    if (it > 0 && lane == 0) mbar_arrive(emptyBar + 8 * ((${k} - 1) % ${S}));
  }
`;
}

/** The full/empty mbarriers of the S stages (full: the 128 producer threads arrive; empty: lane 0 of each of the 4*G
 * consumer warps), initialized by thread 0 before any thread uses them. */
function barrierInit(S: number, G: number): string {
  return `  const u32 fullBar = smem_u32(wg_bars), emptyBar = fullBar + ${8 * S};
  if (tid == 0) {
    for (int st = 0; st < ${S}; ++st) { mbar_init(fullBar + 8 * st, 128); mbar_init(emptyBar + 8 * st, ${4 * G}); }
  }
  __syncthreads();
`;
}

/** The producer's k-loop: refill stage `counter % S` once every consumer warp released its previous use, load the
 * A and B tiles, arrive on its full barrier when the copies land. `counter`: `kt` (this tile's k-iteration) or `g`
 * (the persistent kernel's count over all its tiles, advanced with kt). */
function producerLoop(s: TcSpec, o: { S: number; stageBytes: number; aBytes: number; counter: 'kt' | 'g' }): string {
  const { S, stageBytes, aBytes, counter: k } = o;
  return `    for (int kt = 0; kt < ktCount; ++kt${k === 'g' ? ', ++g' : ''}) {
      const int stage = ${k} % ${S};
      if (${k} >= ${S}) mbar_wait_bounded(emptyBar + 8 * stage, ((${k} / ${S}) - 1) & 1);
      const u32 sA = smemBase + stage * ${stageBytes};
      const u32 sB = sA + ${aBytes};
${s.loadA}
${s.loadB}
      cp_async_mbar_arrive(fullBar + 8 * stage);
    }
`;
}

/** What a ws kernel's emitter (this file's fp16/bf16 kernels, wgmma_s8.ts's int8 ones) puts around the shared
 * producer/consumer skeleton: the accumulator type picks the wgmma wrapper (`wg_mma` on f32, `wg_mma_s8` on s32)
 * and the accumulator fence; `helpers` and `instr` must define them. */
export interface WsKernelParts {
  title: string; helpers: string[]; instr: string; swizzleNote?: string;
  acc: 'float' | 'int';
}

/** The one-CTA-per-tile ws kernel (header) as a function of its name: producer warpgroup, consumer warpgroups
 * running `prologue` before their k-loop and `epilogue` (reading acc[MI][NR], with cw / ctid in scope) after it. */
export function wsKernelBody(s: TcSpec, o: WsKernelParts & { prologue: string; epilogue: string }): (name: string) => string {
  const c = s.cfg;
  const { G, MI, S, mTiles, nTiles, kTiles, aBytes, stageBytes, NR } = wgmmaGeometry(s);
  const threads = 128 * (G + 1);
  const regs = G === 2;
  return (name: string) => `${wgmmaPreamble(s, { title: o.title, helpers: o.helpers, instr: o.instr, swizzleNote: o.swizzleNote })}
extern "C" __global__ void __launch_bounds__(${threads}, 1) ${name}(${s.params.map((p) => p.decl).join(', ')}) {
  extern __shared__ __align__(1024) unsigned char tc_smem[];
  __shared__ __align__(8) unsigned long long wg_bars[${2 * S}]; // full[0..S), empty[S..2S)
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
  const int mTile = ${s.nFastest ? `blockIdx.x / ${nTiles}` : `blockIdx.x % ${mTiles}`};
  const int nTile = ${s.nFastest ? `blockIdx.x % ${nTiles}` : `blockIdx.x / ${mTiles}`};
  const int bz = blockIdx.y;
  const int mBase = mTile * ${c.bm}, nBase = nTile * ${c.bn};
  (void)bz;
  const u32 smemBase = (smem_u32(tc_smem) + 1023u) & ~1023u;
  unsigned char* smemPtr = tc_smem + (smemBase - smem_u32(tc_smem));
  (void)smemPtr;
${barrierInit(S, G)}${s.setup}
  const int ktCount = ${kTiles};

  if (wg == 0) {
    // producer: its threads are tid 0..127, the thread ids the loaders were built for
${regs ? `    setmaxnreg_dec<${WS_PRODUCER_REGS}>();\n` : ''}${producerLoop(s, { S, stageBytes, aBytes, counter: 'kt' })}    // no thread leaves with copies in flight (they are all tracked by full barriers already)
    cp_async_commit();
    cp_async_wait<0>();
    return;
  }
${regs ? `  setmaxnreg_inc<${WS_CONSUMER_REGS}>();\n` : ''}  const int cw = wg - 1, ctid = tid & 127; // consumer warpgroup, thread in it
  (void)ctid;
${o.prologue}${consumerLoop({ MI, NR, S, stageBytes, aBytes, counter: 'it', acc: o.acc })}  wg_wait<0>();
  #pragma unroll
  for (int i = 0; i < ${MI}; ++i)
    #pragma unroll
    for (int j = 0; j < ${NR}; ++j) ${keepOf(o.acc)}(acc[i][j]);
${o.epilogue}
}
`;
}

const keepOf = (acc: 'float' | 'int') => (acc === 'float' ? 'wg_keep' : 'wg_keep_i');
