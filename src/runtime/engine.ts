// Engine: build (passes -> lowering -> NVRTC compile -> memory plan) and run (CUDA, with CUDA graph replay
// for static shapes; or the CPU reference where there is no GPU, after compiling every kernel anyway).
import { InputError, TsrtError } from '../errors.js';
import { DTYPE_SIZE, makeTensor, shapeStr, size } from '../ir/tensor.js';
import type { Graph, Model, Tensor, TypedArray, ValueInfo } from '../ir/types.js';
import { loadModel } from '../onnx/import.js';
import { newPassContext, verifyInstrument, type Instrument, type Pass, type PassContext } from '../passes/pass.js';
import { verifyGraph } from '../ir/verify.js';
import type { PrecisionRule } from '../passes/precision_rules.js';
import { optimize } from '../passes/pipeline.js';
import { lowerGraph, type Lowered, type Tactic } from '../codegen/lower.js';
import { configName, SM_COUNT } from '../codegen/tc_gemm.js';
import '../codegen/lowerings.js';
import '../codegen/lower_conv.js';
import '../codegen/attention.js';
import '../codegen/lower_int8.js';
import { packModules, type KernelSource } from '../codegen/kernel.js';
import { planMemory, type MemoryPlan } from './memory.js';
import { checkFeeds, runGraph } from './cpu_executor.js';
import { checkArrayFor, checkStaticShapes, checkTensorData } from './feed_check.js';
import { DeviceRunner, cudaAvailable, pdlDefault, sharedCuda } from './device_runner.js';
import { KernelCache } from './kernel_cache.js';
import { Autotuner, type TuningReport } from './autotune.js'; // [autotune]
import { engineArch } from '../codegen/wgmma.js';
import { nvrtcVersion } from './nvrtc.js';
import { buildProfiles, type Profile, type ProfileSet } from './profiles.js';
import { saveEngine } from './plan.js';
import { buildWithPrecisionTiming, precisionTimingApplies, type PrecisionTimingReport } from './precision_timing.js';

export interface BuildOptions {
  fp16?: boolean;
  /** bfloat16 storage and tensor cores (fp32 accumulation) instead of fp16: fp32's range, 8 mantissa bits. Not with
   * fp16 or int8 (whose fallback is fp16). */
  bf16?: boolean;
  /** Run Conv/Gemm/MatMul in int8 where `int8Scales` has their input's scale, fp16 elsewhere (implies fp16, as
   * TensorRT's --int8). Models with Q/DQ nodes build their int8 layers without it. */
  int8?: boolean;
  /** Activation scales (amax/127) by tensor name: a calibrator's result or readCalibrationCache(). */
  int8Scales?: Record<string, number>;
  /** Per-layer / per-op precision rules (trtexec --layerPrecisions), in order, later ones win; see passes/precision_rules.ts. */
  layerPrecisions?: PrecisionRule[];
  /** With int8 at optLevel >= 3 on a GPU: time each calibrated int8 layer against its fp16 twin (with the conversions
   * at int8/fp16 boundaries) and run the faster (runtime/precision_timing.ts; default true). false: every calibrated
   * layer int8. Precision rules win over timing. */
  precisionByTiming?: boolean;
  /** 0-5; default 2 */
  optLevel?: number;
  shapes?: Record<string, number[]>;
  dims?: Record<string, number>;
  /** Inputs whose values are fixed at build time (shape tensors); run() checks callers pass the same values. */
  inputValues?: Record<string, Tensor>;
  /** 'auto' (default): CUDA when a GPU is present, else the CPU reference after compiling the kernels. */
  device?: 'auto' | 'cuda' | 'cpu';
  /** Kernel cache folder (default: $TSRT_CACHE_DIR or ~/.cache/tsrt/kernels). */
  cacheDir?: string;
  /** Target arch for NVRTC; default from the GPU (sm_90a on Hopper with NVRTC 12+: the wgmma kernels), else sm_90. */
  arch?: string;
  /** SMs of the target GPU (split-K, tile heuristics, persistent grids); default the GPU's, else 132 (H100 SXM / H200). */
  smCount?: number;
  /** Compile kernels even without a GPU (default true). */
  compileKernels?: boolean;
  /** Replay the whole run as one CUDA graph when every step is a kernel (default true). */
  cudaGraphs?: boolean;
  /** Programmatic dependent launch on sm_90+ (each kernel launches while the previous one finishes and waits for it
   * itself; codegen/kernel.ts PDL_MARKER). Default: TSRT_PDL=1, else off until measured on the target GPU. */
  pdl?: boolean;
  /** Let nodes without a CUDA lowering run on the CPU (default true). */
  allowHost?: boolean;
  instruments?: Instrument[];
  /** The passes to run instead of the build pipeline (PIPELINE), e.g. `[...PIPELINE, myPass]` to hook a custom pass. */
  passes?: Pass[];
  /** [autotune] At optLevel >= 3 on a GPU, tile configs are timed and kept in this JSON file (default
   * <kernel cache>/../timing-cache.json); false: tune without reading or writing one. */
  timingCache?: string | false;
  /** [autotune] Stop starting new tuning compiles after this long (default by level: 120/300/600 s). */
  tuningBudgetMs?: number;
  /** Also return these tensors of the optimized graph ('all': every float tensor a node produces), as Polygraphy's
   * `--mark-outputs`. Marked after the passes, so fusion is unchanged: a tensor fused away inside a kernel cannot
   * be marked and is listed in `report.unmarked`. Marked tensors keep the engine's dtype and layout (fp16, NHWC). */
  markOutputs?: string[] | 'all';
  /** Verify the IR after every pass (default: when TSRT_DEBUG >= 2). */
  verify?: boolean;
  /** Optimization profiles (trtexec --min-shapes/--opt-shapes/--max-shapes): built and tuned at each opt shape; other
   * shapes inside a profile are specialized on first use (runtime/profiles.ts). */
  profiles?: Profile[];
  log?: (msg: string) => void;
}

export interface LayerInfo {
  name: string;
  op: string;
  kind: 'kernel' | 'alias' | 'host';
  kernel?: string;
  grid?: number[];
  block?: number[];
  reason?: string;
}

export interface BuildReport {
  passes: PassContext['timings'];
  kernels: number;
  uniqueKernels: number;
  compileMs: number;
  cacheHits: number;
  hostSteps: number;
  arenaBytes: number;
  naiveBytes: number;
  constBytes: number;
  buildMs: number;
  /** markOutputs names that do not exist in the optimized graph (fused away or never produced). */
  unmarked: string[];
  /** [autotune] Kernel signatures timed / taken from the timing cache at optLevel >= 3 (zeros otherwise). */
  tuning: TuningReport;
  /** Whether the kernels are launched programmatically (BuildOptions.pdl on a GPU and driver that have it). */
  programmaticLaunches?: boolean;
  /** int8 layers moved to fp16 because fp16 timed faster (precisionByTiming), with their times. */
  precisionTiming?: PrecisionTimingReport;
}

/** What build() decided that is not in the graph or the steps: kept in engine files (runtime/plan.ts). */
export interface BuiltWith {
  /** NVRTC target the kernels were compiled for. */
  arch: string;
  /** SMs the kernels were lowered for (absent in engine files from before it was recorded: 132). */
  smCount?: number;
  /** The build options, callbacks left out. */
  options: BuildOptions;
  /** [autotune] Tile config chosen per tensor-core kernel signature (configName), at optLevel >= 3. */
  tactics: Record<string, string>;
  /** The model file it was built from, when known (rebuild hints). */
  model?: string;
}

export class Engine {
  private runner?: DeviceRunner;
  built: BuiltWith = { arch: 'sm_90', options: {}, tactics: {} };
  /** Set when built with profiles: engines for the other shapes. */
  profileSet?: ProfileSet;

  constructor(
    readonly graph: Graph,
    readonly lowered: Lowered,
    readonly memory: MemoryPlan,
    readonly backend: 'cuda' | 'cpu',
    readonly report: BuildReport,
    readonly passContext: PassContext,
    readonly kernels: Map<string, { source: KernelSource; cubin?: Uint8Array }>,
    runner?: DeviceRunner,
  ) { this.runner = runner; }

  get inputs(): ValueInfo[] { return this.graph.inputs; }
  get outputs(): ValueInfo[] { return this.graph.outputs; }

  layers(): LayerInfo[] {
    return this.lowered.steps.map((s) => s.kind === 'kernel'
      ? { name: s.layer, op: s.op, kind: 'kernel', kernel: s.kernel.name, grid: s.kernel.grid, block: s.kernel.block }
      : s.kind === 'host' ? { name: s.layer, op: s.op, kind: 'host', reason: s.reason } : { name: s.layer, op: s.op, kind: 'alias' });
  }

  /** Runs the engine; inputs by name (Tensor, or a typed array shaped like the input). */
  async run(feeds: Record<string, Tensor | TypedArray> | Map<string, Tensor>): Promise<Map<string, Tensor>> {
    const m = this.normalizeFeeds(feeds);
    const e = await this.route(m);
    if (e !== this) return e.run(m);
    this.checkFixedInputs(m);
    checkFeeds(this.graph, m, 'engine');
    checkStaticShapes(this.graph.inputs, m);
    if (this.backend === 'cpu' || !this.runner) {
      const values = runGraph(this.graph, m);
      return new Map(this.graph.outputs.map((o) => [o.name, values.get(o.name)!]));
    }
    return this.runner.run(m);
  }

  /** Device addresses of the input and output buffers (CUDA backend), for zero-copy use with runOnDevice(). */
  deviceBuffers(): { inputs: Record<string, bigint>; outputs: Record<string, bigint> } {
    if (!this.runner) throw new TsrtError('USAGE', 'deviceBuffers() needs the CUDA backend', 'build on a machine with a GPU (device: "cuda")');
    const r = this.runner;
    return {
      inputs: Object.fromEntries(this.graph.inputs.map((i) => [i.name, r.bufferOf(i.name)])),
      outputs: Object.fromEntries(this.graph.outputs.map((o) => [o.name, r.bufferOf(o.name)])),
    };
  }

  /** Runs on the data already in the device input buffers; results stay in the device output buffers. */
  async runOnDevice(): Promise<void> {
    if (!this.runner) throw new TsrtError('USAGE', 'runOnDevice() needs the CUDA backend', 'use run() on the CPU backend');
    await this.runner.runInPlace();
  }

  /** GPU time of one run in ms (CUDA events), or undefined on the CPU backend. */
  async time(feeds: Record<string, Tensor | TypedArray> | Map<string, Tensor>, iters = 20, warmup = 3): Promise<number[] | undefined> {
    if (!this.runner) return undefined;
    const m = this.normalizeFeeds(feeds);
    const e = await this.route(m);
    if (e !== this) return e.time(m, iters, warmup);
    checkFeeds(this.graph, m, 'engine');
    checkStaticShapes(this.graph.inputs, m);
    return this.runner.time(m, iters, warmup);
  }

  /** Per-step GPU times (ms), for --dump-profile. */
  async profile(feeds: Record<string, Tensor | TypedArray> | Map<string, Tensor>, iters = 10): Promise<{ layer: string; op: string; ms: number }[] | undefined> {
    if (!this.runner) return undefined;
    const m = this.normalizeFeeds(feeds);
    const e = await this.route(m);
    if (e !== this) return e.profile(m, iters);
    checkFeeds(this.graph, m, 'engine');
    checkStaticShapes(this.graph.inputs, m);
    return this.runner.profile(m, iters);
  }

  /** Writes the engine to a file (runtime/plan.ts); loadEngine() reads it back without rebuilding. */
  save(path: string): void { saveEngine(this, path); }

  dispose(): void { this.runner?.dispose(); this.runner = undefined; this.profileSet?.dispose(); }

  /** The engine for these feeds' shapes: this one, or (with profiles) one specialized for them. */
  private route(m: Map<string, Tensor>): Promise<Engine> {
    return this.profileSet ? this.profileSet.engineFor(m, this) : Promise.resolve(this);
  }

  /** Inputs fixed at build time may be passed again, but only with the same values. */
  private checkFixedInputs(m: Map<string, Tensor>): void {
    for (const [k, t] of m) {
      const fixed = this.fixedInputs?.[k];
      if (!fixed) continue;
      const same = fixed.dtype === t.dtype && fixed.dims.join() === t.dims.join() && (fixed.data as ArrayLike<unknown>).length === t.data.length
        && Array.prototype.every.call(fixed.data, (v: unknown, i: number) => v === (t.data as ArrayLike<unknown>)[i]);
      if (!same) throw new InputError(`input '${k}' was fixed at build time to other values`, 'rebuild the engine with the new values (inputValues)');
      m.delete(k);
    }
  }

  fixedInputs?: Record<string, Tensor>;

  private normalizeFeeds(feeds: Record<string, Tensor | TypedArray> | Map<string, Tensor>): Map<string, Tensor> {
    const m = new Map<string, Tensor>();
    const entries = feeds instanceof Map ? [...feeds] : Object.entries(feeds);
    for (const [k, v] of entries) {
      if ('dims' in v && 'dtype' in v) { checkTensorData(k, v as Tensor); m.set(k, v as Tensor); continue; }
      const vi = this.graph.inputs.find((i) => i.name === k);
      if (!vi) throw new InputError(`'${k}' is not an input of the engine`, `inputs are: ${this.graph.inputs.map((i) => i.name).join(', ')}`);
      const dims = vi.type.shape as number[];
      const arr = v as TypedArray;
      checkArrayFor(vi, arr);
      if (arr.length !== size(dims)) {
        throw new InputError(`input '${k}' has ${arr.length} elements, the engine expects ${shapeStr(dims)} = ${size(dims)}`,
          'pass a Tensor with dims, or build the engine for this shape');
      }
      m.set(k, makeTensor(vi.type.dtype, dims, arr));
    }
    return m;
  }
}

/** One reduced float type per engine: --fp16 and --bf16 exclude each other, and int8's fallback is fp16. */
function checkPrecisionFlags(opts: BuildOptions): void {
  if (!opts.bf16) return;
  if (opts.fp16) throw new TsrtError('USAGE', '--fp16 and --bf16 (BuildOptions.fp16 / bf16) ask for two reduced precisions', 'pick one: an engine stores its reduced-precision tensors in one type (--best means fp16)');
  if (opts.int8) throw new TsrtError('USAGE', '--int8 with --bf16: int8 layers fall back to fp16, not bf16', 'drop --bf16 (int8 builds are int8 + fp16), or drop --int8 for a bf16 engine');
}

/** The pass options of a build (precision_timing.ts optimizes the same way). */
export function passOptions(opts: BuildOptions): Parameters<typeof newPassContext>[0] {
  return { optLevel: opts.optLevel ?? 2, fp16: !!opts.fp16 || !!opts.int8 || !!opts.bf16, bf16: !!opts.bf16, shapes: opts.shapes, dims: opts.dims, inputValues: opts.inputValues, layerPrecisions: opts.layerPrecisions, int8: !!opts.int8, int8Scales: opts.int8Scales };
}

/** The target a build lowers for: the NVRTC arch and SM count (BuildOptions.arch / smCount, else the GPU's when
 * `gpu`, else sm_90 and 132). precision_timing.ts times with the same target, so its kernel signatures are the final
 * build's. */
export function buildTarget(opts: BuildOptions, gpu: boolean): { arch: string; smCount: number } {
  const info = gpu ? sharedCuda().deviceInfo() : undefined;
  const arch = opts.arch ?? (info ? engineArch(info.arch, nvrtcVersion()) : 'sm_90');
  const smCount = opts.smCount ?? info?.sms ?? SM_COUNT;
  if (!Number.isInteger(smCount) || smCount < 1 || smCount > 1024) {
    throw new TsrtError('USAGE', `smCount ${smCount} is not a multiprocessor count (1..1024)`, 'leave BuildOptions.smCount out to use the GPU\'s, or give its CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT (e.g. 132 on an H100 SXM, 114 on an H100 PCIe)');
  }
  return { arch, smCount };
}

/** [autotune] The build's tuner (opt level >= 3 on a GPU), with its timing cache and budget. */
export function openBuildTuner(opts: BuildOptions, arch: string, log: (msg: string) => void): Autotuner {
  return Autotuner.open({ arch, level: opts.optLevel ?? 2, timingCache: opts.timingCache, budgetMs: opts.tuningBudgetMs, cacheDir: opts.cacheDir, log });
}

export async function build(model: Model | string, opts: BuildOptions = {}): Promise<Engine> {
  const t0 = performance.now();
  const m = typeof model === 'string' ? loadModel(model) : model;
  if (opts.profiles?.length) return buildProfiles(m, opts, build);
  const log = opts.log ?? (() => {});
  checkPrecisionFlags(opts);
  if (precisionTimingApplies(opts)) return buildWithPrecisionTiming(m, opts, build);
  const ctx = newPassContext(passOptions(opts));
  ctx.log = log;
  const verify = opts.verify ?? Number(process.env.TSRT_DEBUG ?? 0) >= 2;
  const instruments = [...(opts.instruments ?? []), ...(verify ? [verifyInstrument((g) => verifyGraph(g).map((p) => `${p.graph}${p.node ? ` node '${p.node}'` : ''}: ${p.message}`))] : [])];
  const marked = markOutputs(optimize(m.graph, ctx, instruments, opts.passes), opts.markOutputs);
  const graph = marked.graph;
  const gpu = opts.device === 'cpu' ? false : cudaAvailable();
  if (opts.device === 'cuda' && !gpu) {
    throw new TsrtError('CUDA', 'no CUDA device found (libcuda.so.1 missing or no GPU)', 'run on a machine with an NVIDIA GPU and driver, or use --device cpu');
  }
  // [autotune] the runner (and the CUDA context) first, so lowering can time tile configs on the GPU
  const runner = gpu ? new DeviceRunner() : undefined;
  const { arch, smCount } = buildTarget(opts, !!runner);
  const optLevel = opts.optLevel ?? 2;
  const tuner = runner && optLevel >= 3 && opts.compileKernels !== false ? openBuildTuner(opts, arch, log) : undefined;
  const lowerOpts = { fp16: !!opts.fp16 || !!opts.int8 || !!opts.bf16, allowHost: opts.allowHost ?? true, arch, smCount };
  let lowered: Lowered;
  let tuning: TuningReport = { timed: 0, cached: 0, heuristic: 0, ms: 0, warnings: [] };
  const tactics: Record<string, string> = {};
  try {
    if (tuner) await tuner.precompile(() => lowerGraph(graph, { ...lowerOpts, tactic: tuner.collect }));
    const choose: Tactic | undefined = tuner && ((key, candidates, emit) => {
      const pick = tuner.choose(key, candidates, emit);
      if (pick) tactics[key] = configName(pick);
      return pick;
    });
    lowered = lowerGraph(graph, { ...lowerOpts, tactic: choose });
    if (tuner) lowered = await tuner.tuneKernels(lowered, tactics); // [autotune] LayerNorm/softmax/reduce/elementwise tactics
  } finally {
    if (tuner) tuning = tuner.finish();
  }
  // [/autotune]
  const external = new Set([...graph.inputs.map((i) => i.name), ...graph.outputs.map((o) => o.name)]);
  const memory = planMemory(lowered, external, graph.outputs.map((o) => o.name));
  const kernels = new Map<string, { source: KernelSource; cubin?: Uint8Array }>();
  for (const s of lowered.steps) if (s.kind === 'kernel') kernels.set(s.kernel.name, { source: s.kernel });
  let compileMs = 0, cacheHits = 0;
  if (opts.compileKernels !== false && kernels.size) {
    const t1 = performance.now();
    const cache = new KernelCache({ dir: opts.cacheDir, arch });
    const modules = packModules([...kernels.values()].map((k) => k.source));
    const compiled = await cache.compileAll(modules.map((m) => ({ source: m.source, name: m.name })));
    compiled.forEach((c, i) => {
      for (const k of modules[i].kernels) kernels.get(k)!.cubin = c.cubin;
      if (c.hit) cacheHits += modules[i].kernels.length;
    });
    compileMs = performance.now() - t1;
  }
  const constBytes = [...lowered.consts.values()].reduce((a, t) => a + size(t.dims) * DTYPE_SIZE[t.dtype], 0);
  const report: BuildReport = {
    passes: ctx.timings,
    kernels: lowered.steps.filter((s) => s.kind === 'kernel').length,
    uniqueKernels: kernels.size,
    compileMs, cacheHits,
    hostSteps: lowered.steps.filter((s) => s.kind === 'host').length,
    arenaBytes: memory.arenaBytes, naiveBytes: memory.naiveBytes, constBytes,
    buildMs: 0,
    unmarked: marked.unmarked,
    tuning, // [autotune]
  };
  if (runner) {
    runner.load(graph, lowered, memory, kernels, { cudaGraphs: opts.cudaGraphs ?? true, pdl: opts.pdl ?? pdlDefault() });
    report.programmaticLaunches = runner.programmaticLaunches;
    if (runner.pdlNote) log(runner.pdlNote);
  }
  report.buildMs = performance.now() - t0;
  const engine = new Engine(graph, lowered, memory, runner ? 'cuda' : 'cpu', report, ctx, kernels, runner);
  engine.fixedInputs = opts.inputValues;
  const { log: _log, instruments: _instruments, ...options } = opts;
  engine.built = { arch, smCount, options, tactics, model: m.source };
  return engine;
}

/** Adds tensors of the optimized graph to its outputs (BuildOptions.markOutputs). */
export function markOutputs(g: Graph, names: string[] | 'all' | undefined): { graph: Graph; unmarked: string[] } {
  if (!names) return { graph: g, unmarked: [] };
  const produced = new Set(g.nodes.flatMap((n) => n.outputs.filter(Boolean)));
  const have = new Set([...g.inputs, ...g.outputs].map((v) => v.name));
  const wanted = names === 'all'
    ? [...produced].filter((x) => { const t = g.valueTypes.get(x); return t && /^(float|bfloat)/.test(t.dtype); })
    : names;
  const extra: ValueInfo[] = [];
  const unmarked: string[] = [];
  for (const x of wanted) {
    if (have.has(x)) continue;
    const t = g.valueTypes.get(x);
    if (!produced.has(x) || !t) { unmarked.push(x); continue; }
    have.add(x);
    extra.push({ name: x, type: t });
  }
  return { graph: { ...g, outputs: [...g.outputs, ...extra] }, unmarked };
}

/** Builds an engine for concrete feeds (conformance runners, tests). When an output shape depends on input
 * values (Resize scales, Pad pads, Expand shapes given as inputs), the small inputs are fixed at build time as
 * shape tensors, as TensorRT does, and run() then checks callers pass the same values. */
export async function buildForFeeds(model: Model, feeds: Map<string, Tensor>, opts: BuildOptions = {}): Promise<Engine> {
  const shapes = Object.fromEntries([...feeds].map(([k, v]) => [k, v.dims]));
  try {
    return await build(model, { ...opts, shapes });
  } catch (e) {
    if (!(e instanceof TsrtError && /symbolic shape/.test(e.message))) throw e;
    const inputValues = Object.fromEntries([...feeds].filter(([, v]) => v.data.length <= 64 && v.dtype !== 'string'));
    return build(model, { ...opts, shapes, inputValues });
  }
}
