// GPU timing of candidate kernels for the autotuner (autotune.ts, kernel_tuner.ts): scratch buffers filled with a
// harmless byte pattern, warm-up launches, then the median of CUDA-event-timed launches, each after an L2 flush.
import { TsrtError } from '../errors.js';
import type { KernelSource } from '../codegen/kernel.js';
import { packParams, type Cuda, type CuEvent, type CuModule, type CuStream, type DevicePtr } from './cuda.js';

export function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

export function firstLine(e: unknown): string {
  return asError(e).message.split('\n')[0];
}

function workspaceOf(k: KernelSource): number {
  const w = (k as KernelSource & { workspaceBytes?: number }).workspaceBytes;
  return typeof w === 'number' && w > 0 ? w : 0;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** The CUDA context died while timing (a sticky kernel fault): nothing after this can run. */
export class ContextLost extends TsrtError {}

// ---- GPU timing -----------------------------------------------------------------------------------------------

/** Byte pattern of the timing inputs: fp16 0x2020 (~0.008), int8 32, and a tiny fp32 bias/scale, so no sum
 * overflows (int8: 32 * 32 * K stays far inside int32). */
const FILL = 0x20;
const NULLABLE = new Set(['bias', 'residual']);

export class GpuTimer {
  private stream: CuStream = 0n;
  private events: CuEvent[] = [];
  private flushPtr: DevicePtr = 0n;
  private flushBytes = 0;

  constructor(private readonly cu: Cuda, private readonly o: { iterations: number; warmup: number; flushL2: boolean }) {}

  /** Median ms of each kernel over `iterations` launches on scratch buffers sized from the problem. */
  time(buffers: Record<string, number>, items: { k: KernelSource; image: Uint8Array }[]): Map<string, number | Error> {
    const cu = this.cu;
    cu.makeCurrent();
    this.setup();
    const s = this.stream;
    const out = new Map<string, number | Error>();
    const allocs: DevicePtr[] = [];
    const modules = new Map<Uint8Array, CuModule>();
    try {
      const ptrs = new Map<string, DevicePtr>();
      for (const [name, bytes] of Object.entries(buffers)) {
        const p = cu.malloc(bytes);
        allocs.push(p);
        ptrs.set(name, p);
        cu.memsetD8Async(p, FILL, bytes, s);
      }
      const wsBytes = Math.max(0, ...items.map((i) => workspaceOf(i.k)));
      let ws: DevicePtr = 0n;
      if (wsBytes > 0) { ws = cu.malloc(wsBytes); allocs.push(ws); }
      for (const { k, image } of items) {
        try {
          out.set(k.name, this.timeOne(k, image, ptrs, ws, modules));
        } catch (e) {
          out.set(k.name, asError(e));
          if (!this.alive()) {
            throw new ContextLost('CUDA', `autotuning: candidate kernel ${k.name} left the CUDA context unusable: ${firstLine(e)}`,
              'rebuild with --opt-level 2 (no autotuning), and report the kernel and its tile config');
          }
        }
      }
      return out;
    } finally {
      quiet(() => cu.syncStream(s));
      for (const m of modules.values()) quiet(() => cu.unloadModule(m));
      for (const p of allocs) quiet(() => cu.free(p));
    }
  }

  dispose(): void {
    const cu = this.cu;
    if (this.stream) quiet(() => cu.syncStream(this.stream));
    for (const e of this.events) quiet(() => cu.destroyEvent(e));
    if (this.flushPtr) quiet(() => cu.free(this.flushPtr));
    if (this.stream) quiet(() => cu.destroyStream(this.stream));
    this.events = [];
    this.flushPtr = 0n;
    this.stream = 0n;
  }

  private setup(): void {
    if (this.stream) return;
    const cu = this.cu;
    this.stream = cu.createStream();
    for (let i = 0; i < 2 * this.o.iterations; i++) this.events.push(cu.createEvent());
    if (this.o.flushL2) {
      this.flushBytes = Math.max(64 << 20, 2 * (cu.deviceInfo().l2Bytes || 0));
      this.flushPtr = cu.malloc(this.flushBytes);
    }
  }

  private alive(): boolean {
    try { this.cu.synchronize(); return true; } catch { return false; }
  }

  private timeOne(k: KernelSource, image: Uint8Array, ptrs: Map<string, DevicePtr>, ws: DevicePtr, modules: Map<Uint8Array, CuModule>): number {
    const cu = this.cu, s = this.stream;
    const spec = k.params.map((p) => {
      if (p.type !== 'ptr') throw new TsrtError('USAGE', `kernel ${k.name}: parameter '${p.name}' is not a pointer`);
      if (p.name === 'workspace') {
        if (!workspaceOf(k) || !ws) throw new TsrtError('USAGE', `kernel ${k.name} takes a workspace but declares no size`);
        return { type: 'ptr' as const, value: ws };
      }
      const v = ptrs.get(p.name) ?? (NULLABLE.has(p.name) ? 0n : undefined);
      if (v === undefined) throw new TsrtError('USAGE', `kernel ${k.name}: no scratch buffer for parameter '${p.name}'`);
      return { type: 'ptr' as const, value: v };
    });
    let mod = modules.get(image);
    if (mod === undefined) { mod = cu.loadModule(image); modules.set(image, mod); }
    const fn = cu.getFunction(mod, k.name);
    cu.setMaxDynamicShared(fn, k.sharedBytes);
    // split-K tile counters start at zero; the kernel resets them after each use
    if (workspaceOf(k)) cu.memsetD8Async(ws, 0, workspaceOf(k), s);
    const params = packParams(spec);
    try {
      for (let i = 0; i < this.o.warmup; i++) cu.launch(fn, k.grid, k.block, k.sharedBytes, s, params);
      cu.syncStream(s);
      for (let i = 0; i < this.o.iterations; i++) {
        if (this.flushPtr) cu.memsetD8Async(this.flushPtr, i & 0xff, this.flushBytes, s);
        cu.record(this.events[2 * i], s);
        cu.launch(fn, k.grid, k.block, k.sharedBytes, s, params);
        cu.record(this.events[2 * i + 1], s);
      }
      cu.syncStream(s);
      const times: number[] = [];
      for (let i = 0; i < this.o.iterations; i++) times.push(cu.elapsedMs(this.events[2 * i], this.events[2 * i + 1]));
      return median(times);
    } finally {
      params.dispose();
    }
  }
}

function quiet(f: () => void): void {
  try { f(); } catch { /* cleanup after a failure: the first error is the one reported */ }
}
