// Executes a lowered graph on the GPU: allocates the planned arena, uploads constants, packs every launch's
// parameters once, and replays the launches (as one CUDA graph when there are no host steps).
import { DTYPE_SIZE, makeTensor, size } from '../ir/tensor.js';
import type { Graph, Tensor, TypedArray } from '../ir/types.js';
import type { Lowered, Step } from '../codegen/lower.js';
import { PDL_MARKER, type KernelSource } from '../codegen/kernel.js';
import { getOp } from '../ops/registry.js';
import { Cuda, cudaAvailable as probe, packParams, type CuFunction, type CuGraphExec, type CuStream, type KernelParams } from './cuda.js';
import { runGraph } from './cpu_executor.js';
import { locate, type MemoryPlan } from './memory.js';
import { TsrtError, atNode } from '../errors.js';

let available: boolean | undefined;
export function cudaAvailable(): boolean {
  if (available === undefined) available = probe().ok;
  return available;
}

/** `pdl`: the kernel waits for its predecessor itself (its module has codegen/kernel.ts's PDL_MARKER), so it may be
 * launched programmatically when it follows another kernel. */
interface Launch { fn: CuFunction; k: KernelSource; params: KernelParams; layer: string; op: string; pdl: boolean }
type Segment = { kind: 'launches'; launches: Launch[] } | { kind: 'host'; step: Extract<Step, { kind: 'host' }> };

const bytesOf = (t: { dtype: Tensor['dtype']; dims: number[] }) => Math.max(1, size(t.dims) * DTYPE_SIZE[t.dtype]);

/** Programmatic dependent launches when BuildOptions.pdl is not given: on unless TSRT_PDL=0. Measured on the H100
 * (bench.mjs --pdl-ab, each pair in one process): ResNet-50 fp16 bs1 0.3012 -> 0.2940 ms and 0.3006 -> 0.2969 in
 * two calls, BERT-base bs1 0.4714 -> 0.4563 ms, bs256 / bs32 within noise; outputs bit for bit the same
 * (scripts/test-gpu.mjs --filter pdl). */
export function pdlDefault(): boolean { return process.env.TSRT_PDL !== '0'; }

let shared: Cuda | undefined;

/** [autotune] The process's one CUDA context, shared by every runner and the autotuner. */
export function sharedCuda(): Cuda {
  shared ??= new Cuda().init();
  return shared;
}

export class DeviceRunner {
  private cu: Cuda;
  private stream: CuStream = 0n;
  private allocs: bigint[] = [];
  private ptrs = new Map<string, bigint>();
  private segments: Segment[] = [];
  private graph?: Graph;
  private lowered?: Lowered;
  private exec?: CuGraphExec;
  private modules: bigint[] = [];
  /** Programmatic dependent launches in use (LoadOptions.pdl on a GPU that has them). */
  private pdl = false;
  /** Why programmatic launches were asked for and not used (capture refused them), for the engine's report. */
  pdlNote?: string;

  constructor() {
    this.cu = sharedCuda(); // [autotune]
    this.cu.makeCurrent();
  }

  deviceName(): string { return this.cu.deviceInfo().name; }

  load(graph: Graph, lowered: Lowered, memory: MemoryPlan, kernels: Map<string, { source: KernelSource; cubin?: Uint8Array }>, opts: { cudaGraphs: boolean; pdl?: boolean }): void {
    const cu = this.cu;
    this.graph = graph;
    this.lowered = lowered;
    this.stream = cu.createStream();
    const alloc = (bytes: number) => { const p = cu.malloc(bytes); this.allocs.push(p); return p; };
    const arena = memory.arenaBytes ? alloc(memory.arenaBytes) : 0n;
    for (const [name, t] of lowered.consts) {
      const p = alloc(bytesOf(t));
      if (size(t.dims)) cu.memcpyHtoD(p, t.data as TypedArray);
      this.ptrs.set(name, p);
    }
    const io = [...graph.inputs, ...graph.outputs];
    const ioNames = new Set(io.map((vi) => vi.name));
    for (const vi of io) {
      if (this.ptrs.has(vi.name)) continue;
      const root = this.root(memory, vi.name);
      // an output aliasing another buffer (a constant, the arena, or another input/output, whatever its order here)
      if (root !== vi.name && (this.ptrs.has(root) || memory.offsets.has(root) || ioNames.has(root))) continue;
      this.ptrs.set(vi.name, alloc(bytesOf(lowered.types.get(vi.name)!)));
    }
    for (const [v, off] of memory.offsets) this.ptrs.set(v, arena + BigInt(off));
    const ptr = (name: string): bigint => {
      const own = this.ptrs.get(name);
      if (own !== undefined) return own;
      // views share their root's buffer; a Concat input placed in its output (tsrt::ConcatInPlace) sits `offset` in
      const { root, offset } = locate(memory, name);
      const p = this.ptrs.get(root);
      if (p === undefined) throw new TsrtError('INVALID_GRAPH', `internal: value '${name}' has no device buffer`);
      return p + BigInt(offset);
    };
    const fns = new Map<string, CuFunction>();
    const waits = new Set<string>();
    const loaded = new Map<Uint8Array, bigint>();
    const marked = new Map<bigint, boolean>();
    this.pdl = !!opts.pdl && cu.supportsProgrammaticLaunch();
    for (const [name, k] of kernels) {
      if (!k.cubin) throw new TsrtError('NVRTC', `kernel ${name} was not compiled`, 'build with compileKernels enabled');
      let mod = loaded.get(k.cubin);
      if (mod === undefined) { mod = cu.loadModule(k.cubin); loaded.set(k.cubin, mod); this.modules.push(mod); }
      if (this.pdl && !marked.has(mod)) marked.set(mod, cu.moduleHasGlobal(mod, PDL_MARKER));
      if (marked.get(mod)) waits.add(name);
      const fn = cu.getFunction(mod, name);
      cu.setMaxDynamicShared(fn, k.source.sharedBytes);
      fns.set(name, fn);
    }
    let cur: Launch[] = [];
    for (const s of lowered.steps) {
      if (s.kind === 'alias') continue;
      if (s.kind === 'host') {
        if (cur.length) this.segments.push({ kind: 'launches', launches: cur });
        cur = [];
        this.segments.push({ kind: 'host', step: s });
        continue;
      }
      const params = packParams(s.kernel.params.map((p, i) => {
        const a = s.args[i];
        if (a.kind === 'value') return { type: 'ptr' as const, value: ptr(a.name) };
        if (a.kind === 'null') return { type: 'ptr' as const, value: 0n };
        return { type: a.kind, value: a.value };
      }));
      cur.push({ fn: fns.get(s.kernel.name)!, k: s.kernel, params, layer: s.layer, op: s.op, pdl: waits.has(s.kernel.name) });
    }
    if (cur.length) this.segments.push({ kind: 'launches', launches: cur });
    if (opts.cudaGraphs && this.segments.length === 1 && this.segments[0].kind === 'launches') {
      const launches = this.segments[0].launches;
      try {
        this.exec = this.capture(launches);
      } catch (e) {
        if (!this.pdl) throw e;
        // a driver that refuses programmatic edges in stream capture: the same graph with plain launches
        this.pdl = false;
        this.pdlNote = `programmatic launches off: graph capture refused them (${String((e as Error).message).split('\n')[0]})`;
        this.exec = this.capture(launches);
      }
    }
    this.ptr = ptr;
  }

  private ptr: (name: string) => bigint = () => 0n;

  private root(memory: MemoryPlan, x: string): string {
    while (memory.storageOf.has(x)) x = memory.storageOf.get(x)!;
    return x;
  }

  private capture(launches: Launch[]): CuGraphExec {
    const cu = this.cu;
    cu.beginCapture(this.stream);
    try {
      this.launchAll(launches, true);
    } catch (e) {
      try { cu.destroyGraph(cu.endCapture(this.stream)); } catch { /* the capture is already invalidated */ }
      throw e;
    }
    const g = cu.endCapture(this.stream);
    try { return cu.instantiate(g); } finally { cu.destroyGraph(g); }
  }

  /** Whether this runner launches kernels programmatically (LoadOptions.pdl, a GPU and driver with them, and a
   * graph capture that accepted them). */
  get programmaticLaunches(): boolean { return this.pdl; }

  /** The launches in stream order; with pdl, each kernel that follows another kernel and waits for it itself is
   * launched programmatically (its launch overlaps the previous kernel's tail; see codegen/kernel.ts PDL_MARKER). */
  private launchAll(ls: Launch[], capturing = false): void {
    for (let i = 0; i < ls.length; i++) {
      const l = ls[i];
      if (!(this.pdl && i > 0 && l.pdl)) { this.cu.launch(l.fn, l.k.grid, l.k.block, l.k.sharedBytes, this.stream, l.params); continue; }
      try {
        this.cu.launchProgrammatic(l.fn, l.k.grid, l.k.block, l.k.sharedBytes, this.stream, l.params);
      } catch (e) {
        if (capturing) throw e; // capture() retries the whole graph with plain launches
        // refused before it was queued (the driver rejects the attribute): plain launches from here on; an error
        // left by an earlier kernel fails the plain launch too and is reported there
        this.pdl = false;
        this.pdlNote = `programmatic launches off: ${String((e as Error).message).split('\n')[0]}`;
        this.cu.launch(l.fn, l.k.grid, l.k.block, l.k.sharedBytes, this.stream, l.params);
      }
    }
  }

  private upload(feeds: Map<string, Tensor>): void {
    for (const vi of this.graph!.inputs) {
      const t = feeds.get(vi.name)!;
      if (size(t.dims)) this.cu.memcpyHtoDAsync(this.ptr(vi.name), t.data as TypedArray, this.stream);
    }
  }

  private download(name: string): Tensor {
    const t = this.lowered!.types.get(name)!;
    const out = makeTensor(t.dtype, t.dims);
    if (size(t.dims)) this.cu.memcpyDtoHAsync(out.data as TypedArray, this.ptr(name), this.stream);
    return out;
  }

  /** Enqueues one whole inference (inputs must already be uploaded). */
  private execute(): void {
    if (this.exec !== undefined) { this.cu.graphLaunch(this.exec, this.stream); return; }
    for (const seg of this.segments) {
      if (seg.kind === 'launches') { this.launchAll(seg.launches); continue; }
      this.runHost(seg.step);
    }
  }

  private runHost(step: Extract<Step, { kind: 'host' }>): void {
    const node = step.node;
    this.cu.syncStream(this.stream);
    const cache = new Map<string, Tensor>();
    const fetch = (name: string): Tensor | undefined => {
      if (!name || !this.lowered!.types.has(name)) return undefined;
      if (!cache.has(name)) { const t = this.download(name); this.cu.syncStream(this.stream); cache.set(name, t); }
      return cache.get(name);
    };
    const def = getOp(node.op, node.domain)!;
    let outs: Tensor[];
    try {
      outs = def.cpu(node, node.inputs.map((x) => (x ? fetch(x) : undefined)), {
        opset: this.graph!.opset,
        runGraph: (g, feeds) => {
          const r = runGraph(g, feeds, {}, (n) => fetch(n));
          return g.outputs.map((o) => r.get(o.name)!);
        },
      });
    } catch (e) { throw atNode(node.name, node.op, e); }
    node.outputs.forEach((o, k) => {
      if (!o || !outs[k]) return;
      if (size(outs[k].dims)) this.cu.memcpyHtoD(this.ptr(o), outs[k].data as TypedArray);
    });
  }

  /** Device address of a graph input or output buffer (for callers that manage data on the GPU themselves). */
  bufferOf(name: string): bigint { return this.ptr(name); }

  /** Runs on whatever the input buffers hold and leaves results in the output buffers: no host copies. */
  async runInPlace(): Promise<void> {
    this.cu.makeCurrent();
    this.execute();
    this.cu.syncStream(this.stream);
  }

  async run(feeds: Map<string, Tensor>): Promise<Map<string, Tensor>> {
    this.cu.makeCurrent();
    this.upload(feeds);
    this.execute();
    const outs = new Map(this.graph!.outputs.map((o) => [o.name, this.download(o.name)]));
    this.cu.syncStream(this.stream);
    return outs;
  }

  async time(feeds: Map<string, Tensor>, iters: number, warmup: number): Promise<number[]> {
    this.cu.makeCurrent();
    this.upload(feeds);
    for (let i = 0; i < warmup; i++) this.execute();
    this.cu.syncStream(this.stream);
    const a = this.cu.createEvent(), b = this.cu.createEvent();
    const times: number[] = [];
    for (let i = 0; i < iters; i++) {
      this.cu.record(a, this.stream);
      this.execute();
      this.cu.record(b, this.stream);
      times.push(this.cu.elapsedMs(a, b));
    }
    this.cu.destroyEvent(a); this.cu.destroyEvent(b);
    return times;
  }

  async profile(feeds: Map<string, Tensor>, iters: number): Promise<{ layer: string; op: string; ms: number }[]> {
    this.cu.makeCurrent();
    this.upload(feeds);
    const launches = this.segments.flatMap((s) => (s.kind === 'launches' ? s.launches : []));
    const evs = launches.map(() => [this.cu.createEvent(), this.cu.createEvent()] as const);
    const acc = new Float64Array(launches.length);
    for (let it = 0; it < iters + 1; it++) {
      for (const seg of this.segments) {
        if (seg.kind === 'host') { this.runHost(seg.step); continue; }
        for (const l of seg.launches) {
          const i = launches.indexOf(l);
          this.cu.record(evs[i][0], this.stream);
          this.cu.launch(l.fn, l.k.grid, l.k.block, l.k.sharedBytes, this.stream, l.params);
          this.cu.record(evs[i][1], this.stream);
        }
      }
      this.cu.syncStream(this.stream);
      if (it > 0) launches.forEach((_, i) => { acc[i] += this.cu.elapsedMs(evs[i][0], evs[i][1]); });
    }
    for (const [x, y] of evs) { this.cu.destroyEvent(x); this.cu.destroyEvent(y); }
    return launches.map((l, i) => ({ layer: l.layer, op: l.op, ms: acc[i] / iters }));
  }

  dispose(): void {
    try { this.cu.syncStream(this.stream); } catch { /* already broken; free what we can */ }
    if (this.exec !== undefined) this.cu.destroyGraphExec(this.exec);
    for (const seg of this.segments) if (seg.kind === 'launches') for (const l of seg.launches) l.params.dispose();
    for (const p of this.allocs) this.cu.free(p);
    for (const m of this.modules) this.cu.unloadModule(m);
    if (this.stream) this.cu.destroyStream(this.stream);
    this.allocs = []; this.segments = []; this.modules = [];
  }
}
