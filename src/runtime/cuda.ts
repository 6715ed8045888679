// Thin typed wrapper over the CUDA driver API: context, memory, modules, launches, streams, events, graphs.
// Handles are bigint (see ffi.ts). Every failing call becomes a CudaError naming the call and the CUDA error,
// with a hint. Launch arguments are packed once into stable native memory (KernelParams), so a launch allocates
// nothing in JS.
import { TsrtError } from '../errors.js';
import { CU, allocNative, cudaApi, freeNative, viewNative, type CudaApi } from './ffi.js';

export type DevicePtr = bigint;
/** 0n is the legacy default stream (which cannot be captured into a graph). */
export type CuStream = bigint;
export type CuModule = bigint;
export type CuFunction = bigint;
export type CuEvent = bigint;
export type CuGraph = bigint;
export type CuGraphExec = bigint;
export type Dim3 = readonly [number, number, number];
export type CaptureMode = 'global' | 'thread_local' | 'relaxed';

export interface DeviceInfo {
  ordinal: number;
  name: string;
  ccMajor: number;
  ccMinor: number;
  /** NVRTC target for this device, e.g. 'sm_90'. */
  arch: string;
  sms: number;
  totalMem: number;
  /** e.g. 13000 for CUDA 13.0. */
  driverVersion: number;
  maxThreadsPerBlock: number;
  warpSize: number;
  maxSharedPerBlock: number;
  /** Largest dynamic shared memory a kernel may opt into with setMaxDynamicShared (227 KiB on H100). */
  maxSharedPerBlockOptin: number;
  maxSharedPerSM: number;
  l2Bytes: number;
  clockKHz: number;
  memClockKHz: number;
  memBusWidth: number;
}

export interface FuncAttributes { numRegs: number; maxThreadsPerBlock: number; staticSharedBytes: number; localBytes: number }

/** Page-locked host memory: `buffer` views it (wrap it in a typed array); async copies from it are truly async. */
export interface PinnedBuffer { ptr: bigint; bytes: number; buffer: ArrayBuffer }

/** A failed driver call. `result` is the CUresult (e.g. 2 = out of memory, 700 = illegal address). */
/** Whether a kernel with `bytes` of dynamic shared memory must opt in (cuFuncSetAttribute) before launch: the 48 KiB
 * default covers dynamic plus static shared memory, and kernels have some static memory of their own (the split-K
 * tile flag, mbarriers), so exactly 48 KiB dynamic already needs it (an H200 refused such split-K launches). */
export function needsSharedOptIn(bytes: number): boolean { return bytes + 1024 > 48 * 1024; }

export class CudaError extends TsrtError {
  constructor(readonly call: string, readonly result: number, readonly errorName: string, message: string, hint?: string) {
    super('CUDA', message, hint);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Kernel parameters

export type ParamType = 'ptr' | 'i32' | 'u32' | 'f32' | 'i64' | 'u64' | 'f64';
export interface ParamSpec { type: ParamType; value: number | bigint }

const PARAM_SIZE: Record<ParamType, number> = { ptr: 8, i32: 4, u32: 4, f32: 4, i64: 8, u64: 8, f64: 8 };

const paramMemory = new FinalizationRegistry<bigint>((ptr) => freeNative(ptr));

/**
 * One launch's arguments, packed with C ABI alignment into native memory whose address never moves, plus the
 * void*[] that cuLaunchKernel's kernelParams wants (each entry points at one packed argument). The driver copies
 * the values at launch (and at graph capture), so slots may be rewritten between launches, e.g. to bind run-time
 * input buffers.
 */
export class KernelParams {
  readonly types: readonly ParamType[];
  /** Byte offset of each argument in the packed payload (what a kernel with these parameters expects). */
  readonly offsets: readonly number[];
  /** Size of the packed payload in bytes. */
  readonly bytes: number;
  /** Address of the void*[count] array to pass as kernelParams. */
  readonly ptr: bigint;
  private dv: DataView | null;
  private readonly base: number; // payload offset in the block

  constructor(types: readonly ParamType[]) {
    this.types = [...types];
    const offsets: number[] = [];
    let off = 0;
    for (const t of types) {
      const size = PARAM_SIZE[t];
      if (size === undefined) throw new TsrtError('USAGE', `unknown kernel parameter type '${t}'`, `use one of ${Object.keys(PARAM_SIZE).join(', ')}`);
      off = Math.ceil(off / size) * size;
      offsets.push(off);
      off += size;
    }
    this.offsets = offsets;
    this.bytes = off;
    this.base = types.length * 8;
    const block = allocNative(this.base + this.bytes);
    this.ptr = block.ptr;
    this.dv = new DataView(block.buffer);
    for (let i = 0; i < types.length; i++) this.dv.setBigUint64(i * 8, block.ptr + BigInt(this.base + offsets[i]), true);
    paramMemory.register(this, block.ptr, this);
  }

  get count(): number { return this.types.length; }

  /** Sets argument i from a number or bigint, converted to its declared type. */
  set(i: number, value: number | bigint): void {
    const dv = this.view(), off = this.base + this.offsets[i];
    switch (this.types[i]) {
      case 'ptr': case 'u64': dv.setBigUint64(off, BigInt.asUintN(64, BigInt(value)), true); break;
      case 'i64': dv.setBigInt64(off, BigInt.asIntN(64, BigInt(value)), true); break;
      case 'i32': dv.setInt32(off, Number(value), true); break;
      case 'u32': dv.setUint32(off, Number(value), true); break;
      case 'f32': dv.setFloat32(off, Number(value), true); break;
      case 'f64': dv.setFloat64(off, Number(value), true); break;
    }
  }

  /** Fast path for rebinding a pointer argument (a run-time input or output buffer). */
  setPtr(i: number, value: DevicePtr): void { this.view().setBigUint64(this.base + this.offsets[i], value, true); }

  get(i: number): number | bigint {
    const dv = this.view(), off = this.base + this.offsets[i];
    switch (this.types[i]) {
      case 'ptr': case 'u64': return dv.getBigUint64(off, true);
      case 'i64': return dv.getBigInt64(off, true);
      case 'i32': return dv.getInt32(off, true);
      case 'u32': return dv.getUint32(off, true);
      case 'f32': return dv.getFloat32(off, true);
      case 'f64': return dv.getFloat64(off, true);
    }
  }

  /** Frees the native memory now (it is also freed when this object is garbage collected). */
  dispose(): void {
    if (!this.dv) return;
    this.dv = null;
    paramMemory.unregister(this);
    freeNative(this.ptr);
  }

  private view(): DataView {
    if (!this.dv) throw new TsrtError('USAGE', 'KernelParams used after dispose()');
    return this.dv;
  }
}

/** Packs a launch's arguments once, e.g. at engine build time: packParams([{type:'ptr', value: a}, {type:'i32', value: n}]). */
export function packParams(spec: readonly ParamSpec[]): KernelParams {
  const p = new KernelParams(spec.map((s) => s.type));
  spec.forEach((s, i) => p.set(i, s.value));
  return p;
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

const HINTS: Record<number, string> = {
  1: 'an argument is out of range: launch dims (block <= 1024 threads, grid.y/z <= 65535), dynamic shared memory ' +
    'above the kernel limit (call setMaxDynamicShared for > 48 KiB), a copy size, or a null/freed pointer',
  2: 'device memory is exhausted: memInfo() shows free/total; reduce the batch size or workspace',
  3: 'call Cuda.init() before any other CUDA call',
  34: 'the libcuda.so that was loaded is the CUDA toolkit stub; remove .../lib64/stubs from LD_LIBRARY_PATH so the driver\'s libcuda.so.1 loads',
  36: 'the NVIDIA driver is older than this call needs; update the driver',
  46: 'the GPU is busy or in exclusive-process mode (nvidia-smi -q -d COMPUTE shows the mode)',
  100: 'no CUDA GPU is visible: check nvidia-smi and CUDA_VISIBLE_DEVICES',
  101: 'the device ordinal is out of range (see cuDeviceGetCount / CUDA_VISIBLE_DEVICES)',
  200: 'the module image is not a valid cubin or PTX; delete the kernel cache folder and rebuild',
  201: 'no CUDA context is current on this thread: call init() on this thread first',
  209: 'the cubin was compiled for another GPU; compile for deviceInfo().arch, or ship PTX (compute_XX) for the driver to JIT',
  218: 'the driver rejected the PTX; compile to a cubin (sm_XX) instead',
  222: 'the PTX is newer than this driver understands (NVRTC newer than the driver); compile to a cubin (sm_XX) or update the driver',
  400: 'a handle was used after it was destroyed/unloaded, or belongs to another context',
  500: 'no kernel with that name in the module: declare it extern "C" __global__ so its name is not mangled',
  700: 'a kernel read or wrote out of bounds; the context is now unusable (restart the process). Find the kernel with ' +
    'CUDA_LAUNCH_BLOCKING=1 or compute-sanitizer',
  701: 'too many registers x threads for one block: lower the block size or add __launch_bounds__',
  715: 'a kernel executed an illegal instruction (often an arch-specific instruction on the wrong GPU); the context is now unusable',
  716: 'misaligned access: vector loads (float4, half2, 16-byte cp.async) need pointers and offsets aligned to their size; ' +
    'the context is now unusable',
  719: 'a kernel crashed; the context is now unusable (restart the process). Find it with CUDA_LAUNCH_BLOCKING=1 or compute-sanitizer',
  900: 'an operation that is not allowed during graph capture was issued (synchronize, malloc, synchronous memcpy/memset, ' +
    'copies from pageable memory): use the *Async variants on the capturing stream',
  901: 'the graph capture was invalidated by an operation not allowed during capture (see CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED)',
  906: 'the legacy default stream (0n) cannot be captured; capture on a stream from createStream()',
};

// 7xx errors come from a kernel that already ran; they are sticky and reported by whichever call comes next.
const ASYNC_HINT = 'kernel errors surface at a later call; rerun with CUDA_LAUNCH_BLOCKING=1 to find the failing launch';

function errorText(api: CudaApi, code: number): { name: string; text: string } {
  const name: [string | null] = [null], text: [string | null] = [null];
  try { api.cuGetErrorName(code, name); api.cuGetErrorString(code, text); } catch { /* keep defaults */ }
  return { name: name[0] ?? `CUDA_ERROR_${code}`, text: text[0] ?? 'unknown error' };
}

function cudaError(api: CudaApi, call: string, code: number, context?: string, hint?: string): CudaError {
  const { name, text } = errorText(api, code);
  const what = context ? `${call} (${context})` : call;
  let fix = hint ?? HINTS[code];
  if (code >= 700 && code < 800) fix = fix ? `${fix}. ${ASYNC_HINT}` : ASYNC_HINT;
  return new CudaError(call, code, name, `${what} failed: ${name} (${code}): ${text}`, fix);
}

/** Whether a usable GPU is present, without throwing: for tests and `tsrt doctor`-style checks. */
export function cudaAvailable(): { ok: true; deviceCount: number; libraryPath: string } | { ok: false; reason: string } {
  let api: CudaApi;
  try {
    api = cudaApi();
  } catch (e) {
    const first = (e instanceof Error ? e.message : String(e)).split('\n')[0].replace(/; looked at:$/, '');
    return { ok: false, reason: `${first} (is an NVIDIA driver installed?)` };
  }
  const rc = api.cuInit(0);
  if (rc !== 0) return { ok: false, reason: cudaError(api, 'cuInit', rc).message };
  const n = new Int32Array(1);
  const rc2 = api.cuDeviceGetCount(n);
  if (rc2 !== 0) return { ok: false, reason: cudaError(api, 'cuDeviceGetCount', rc2).message };
  if (n[0] === 0) return { ok: false, reason: 'the CUDA driver reports no devices' };
  return { ok: true, deviceCount: n[0], libraryPath: api.libraryPath };
}

// ---------------------------------------------------------------------------------------------------------------

const CAPTURE_MODE: Record<CaptureMode, number> = {
  global: CU.STREAM_CAPTURE_MODE_GLOBAL,
  thread_local: CU.STREAM_CAPTURE_MODE_THREAD_LOCAL,
  relaxed: CU.STREAM_CAPTURE_MODE_RELAXED,
};

/**
 * One device's primary context, current on the calling thread. Typical use:
 *   const cu = new Cuda().init();
 *   const mod = cu.loadModule(cubin); const fn = cu.getFunction(mod, 'vec_add');
 *   const p = packParams([...]); cu.launch(fn, grid, block, 0, stream, p);
 */
const CU_ERROR_NOT_FOUND = 500;

/** A CUlaunchConfig with one CUlaunchAttribute, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 1, in native
 * memory reused by every launch (the driver reads it during the call). Layout of cuda.h (x86-64, checked against
 * the header by test/pdl.test.ts): config 56 bytes = gridDim x,y,z, blockDim x,y,z, sharedMemBytes (u32 at 0..24),
 * hStream at 32, attrs at 40, numAttrs (u32) at 48; then the attribute, 72 bytes = id (u32) at 0, value (a 64-byte
 * union, here the int programmaticStreamSerializationAllowed) at 8. */
export class LaunchConfig {
  static readonly CONFIG_BYTES = 56;
  static readonly ATTR_BYTES = 72;
  static readonly PROGRAMMATIC_STREAM_SERIALIZATION = 6;
  readonly ptr: bigint;
  private readonly dv: DataView;

  constructor() {
    const block = allocNative(LaunchConfig.CONFIG_BYTES + LaunchConfig.ATTR_BYTES);
    this.ptr = block.ptr;
    this.dv = new DataView(block.buffer);
    new Uint8Array(block.buffer).fill(0);
    this.dv.setBigUint64(40, block.ptr + BigInt(LaunchConfig.CONFIG_BYTES), true);
    this.dv.setUint32(48, 1, true);
    this.dv.setUint32(LaunchConfig.CONFIG_BYTES, LaunchConfig.PROGRAMMATIC_STREAM_SERIALIZATION, true);
    this.dv.setInt32(LaunchConfig.CONFIG_BYTES + 8, 1, true);
    paramMemory.register(this, block.ptr);
  }

  /** Writes one launch's geometry and stream; returns the config's address. */
  fill(grid: Dim3, block: Dim3, sharedBytes: number, stream: CuStream): bigint {
    const dv = this.dv;
    for (let i = 0; i < 3; i++) { dv.setUint32(4 * i, grid[i], true); dv.setUint32(12 + 4 * i, block[i], true); }
    dv.setUint32(24, sharedBytes, true);
    dv.setBigUint64(32, BigInt(stream), true);
    return this.ptr;
  }

  /** The bytes as the driver reads them (for tests). */
  bytes(): Uint8Array { return new Uint8Array(this.dv.buffer.slice(0, LaunchConfig.CONFIG_BYTES + LaunchConfig.ATTR_BYTES)); }
}

export class Cuda {
  private readonly api: CudaApi;
  private dev = -1;
  private ctx = 0n;
  private readonly u64 = new BigUint64Array(2);
  private readonly i32 = new Int32Array(1);
  private readonly f32 = new Float32Array(1);
  private readonly fnNames = new Map<CuFunction, string>();
  private info?: DeviceInfo;
  private launchConfig?: LaunchConfig;

  constructor() { this.api = cudaApi(); }

  /** cuInit, retains the device's primary context and makes it current on this thread. */
  init(deviceOrdinal = 0): this {
    const api = this.api;
    this.check(api.cuInit(0), 'cuInit');
    this.check(api.cuDeviceGetCount(this.i32), 'cuDeviceGetCount');
    if (deviceOrdinal < 0 || deviceOrdinal >= this.i32[0]) {
      throw new TsrtError('USAGE', `CUDA device ${deviceOrdinal} does not exist (${this.i32[0]} visible)`,
        'pick a device below the count, or check CUDA_VISIBLE_DEVICES');
    }
    this.check(api.cuDeviceGet(this.i32, deviceOrdinal), 'cuDeviceGet');
    const dev = this.i32[0];
    this.check(api.cuDevicePrimaryCtxRetain(this.u64, dev), 'cuDevicePrimaryCtxRetain');
    this.ctx = this.u64[0];
    this.dev = dev;
    this.info = undefined;
    this.check(api.cuCtxSetCurrent(this.ctx), 'cuCtxSetCurrent');
    return this;
  }

  /** Makes this context current on the calling thread (contexts are per thread). */
  makeCurrent(): void { this.check(this.api.cuCtxSetCurrent(this.ctx), 'cuCtxSetCurrent'); }

  /** Releases the primary context (after which this object is unusable). */
  close(): void {
    if (this.dev < 0) return;
    this.check(this.api.cuDevicePrimaryCtxRelease_v2(this.dev), 'cuDevicePrimaryCtxRelease');
    this.dev = -1;
    this.ctx = 0n;
    this.info = undefined;
  }

  /** Static device properties (cached after the first call). */
  deviceInfo(): DeviceInfo {
    if (this.info) return this.info;
    const api = this.api, dev = this.device();
    const name = new Uint8Array(256);
    this.check(api.cuDeviceGetName(name, name.length, dev), 'cuDeviceGetName');
    const nul = name.indexOf(0);
    const attr = (a: number) => { this.check(api.cuDeviceGetAttribute(this.i32, a, dev), 'cuDeviceGetAttribute', `attribute ${a}`); return this.i32[0]; };
    // Informational attributes that a future driver might retire: 0 rather than an error.
    const soft = (a: number) => (api.cuDeviceGetAttribute(this.i32, a, dev) === 0 ? this.i32[0] : 0);
    this.check(api.cuDeviceTotalMem_v2(this.u64, dev), 'cuDeviceTotalMem');
    const totalMem = Number(this.u64[0]);
    this.check(api.cuDriverGetVersion(this.i32), 'cuDriverGetVersion');
    const driverVersion = this.i32[0];
    const ccMajor = attr(CU.DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR), ccMinor = attr(CU.DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
    this.info = {
      ordinal: dev,
      name: Buffer.from(name.subarray(0, nul < 0 ? name.length : nul)).toString('utf8'),
      ccMajor, ccMinor, arch: `sm_${ccMajor}${ccMinor}`,
      sms: attr(CU.DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
      totalMem, driverVersion,
      maxThreadsPerBlock: attr(CU.DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK),
      warpSize: attr(CU.DEVICE_ATTRIBUTE_WARP_SIZE),
      maxSharedPerBlock: attr(CU.DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK),
      maxSharedPerBlockOptin: attr(CU.DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
      maxSharedPerSM: attr(CU.DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR),
      l2Bytes: soft(CU.DEVICE_ATTRIBUTE_L2_CACHE_SIZE),
      clockKHz: soft(CU.DEVICE_ATTRIBUTE_CLOCK_RATE),
      memClockKHz: soft(CU.DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE),
      memBusWidth: soft(CU.DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH),
    };
    return this.info;
  }

  memInfo(): { free: number; total: number } {
    const free = new BigUint64Array(1), total = new BigUint64Array(1);
    this.check(this.api.cuMemGetInfo_v2(free, total), 'cuMemGetInfo');
    return { free: Number(free[0]), total: Number(total[0]) };
  }

  // ---- memory ----

  malloc(bytes: number): DevicePtr {
    if (!(bytes > 0)) throw new TsrtError('USAGE', `malloc(${bytes}): size must be positive`);
    this.check(this.api.cuMemAlloc_v2(this.u64, bytes), 'cuMemAlloc', `${bytes} bytes`);
    return this.u64[0];
  }

  free(ptr: DevicePtr): void { if (ptr) this.check(this.api.cuMemFree_v2(ptr), 'cuMemFree'); }

  memcpyHtoD(dst: DevicePtr, src: ArrayBufferView, bytes = src.byteLength): void {
    if (bytes === 0) return;
    hostFits('memcpyHtoD', src, bytes);
    this.check(this.api.cuMemcpyHtoD_v2(dst, src, bytes), 'cuMemcpyHtoD', `${bytes} bytes`);
  }

  memcpyDtoH(dst: ArrayBufferView, src: DevicePtr, bytes = dst.byteLength): void {
    if (bytes === 0) return;
    hostFits('memcpyDtoH', dst, bytes);
    this.check(this.api.cuMemcpyDtoH_v2(dst, src, bytes), 'cuMemcpyDtoH', `${bytes} bytes`);
  }

  memcpyDtoD(dst: DevicePtr, src: DevicePtr, bytes: number): void {
    if (bytes === 0) return;
    this.check(this.api.cuMemcpyDtoD_v2(dst, src, bytes), 'cuMemcpyDtoD', `${bytes} bytes`);
  }

  /** Asynchronous only from pinned memory (a view of allocPinned's buffer); from ordinary JS memory the driver
   * stages the bytes before returning, and graph capture rejects it. */
  memcpyHtoDAsync(dst: DevicePtr, src: ArrayBufferView, stream: CuStream, bytes = src.byteLength): void {
    if (bytes === 0) return;
    hostFits('memcpyHtoDAsync', src, bytes);
    this.check(this.api.cuMemcpyHtoDAsync_v2(dst, src, bytes, stream), 'cuMemcpyHtoDAsync', `${bytes} bytes`);
  }

  /** `dst` must stay alive until the stream is synchronized; into pinned memory this is truly asynchronous. */
  memcpyDtoHAsync(dst: ArrayBufferView, src: DevicePtr, stream: CuStream, bytes = dst.byteLength): void {
    if (bytes === 0) return;
    hostFits('memcpyDtoHAsync', dst, bytes);
    this.check(this.api.cuMemcpyDtoHAsync_v2(dst, src, bytes, stream), 'cuMemcpyDtoHAsync', `${bytes} bytes`);
  }

  /** Capturable device-to-device copy (Identity, Concat slices, ...). */
  memcpyDtoDAsync(dst: DevicePtr, src: DevicePtr, bytes: number, stream: CuStream): void {
    if (bytes === 0) return;
    this.check(this.api.cuMemcpyDtoDAsync_v2(dst, src, bytes, stream), 'cuMemcpyDtoDAsync', `${bytes} bytes`);
  }

  memsetD8(dst: DevicePtr, value: number, bytes: number): void {
    if (bytes === 0) return;
    this.check(this.api.cuMemsetD8_v2(dst, value & 0xff, bytes), 'cuMemsetD8', `${bytes} bytes`);
  }

  /** Capturable memset. */
  memsetD8Async(dst: DevicePtr, value: number, bytes: number, stream: CuStream): void {
    if (bytes === 0) return;
    this.check(this.api.cuMemsetD8Async(dst, value & 0xff, bytes, stream), 'cuMemsetD8Async', `${bytes} bytes`);
  }

  /** Page-locked host memory. Views of `buffer` dangle after freePinned: drop them first. */
  allocPinned(bytes: number, flags = 0): PinnedBuffer {
    if (!(bytes > 0)) throw new TsrtError('USAGE', `allocPinned(${bytes}): size must be positive`);
    this.check(this.api.cuMemHostAlloc(this.u64, bytes, flags), 'cuMemHostAlloc', `${bytes} bytes`);
    const ptr = this.u64[0];
    return { ptr, bytes, buffer: viewNative(ptr, bytes) };
  }

  freePinned(p: PinnedBuffer): void { this.check(this.api.cuMemFreeHost(p.ptr), 'cuMemFreeHost'); }

  // ---- modules and kernels ----

  /** Loads a cubin (ELF bytes) or PTX (string, or bytes ending in NUL). */
  loadModule(image: Uint8Array | string): CuModule {
    const bytes = typeof image === 'string' ? Buffer.from(image + '\0', 'utf8') : image;
    this.check(this.api.cuModuleLoadData(this.u64, bytes), 'cuModuleLoadData', `${bytes.length} bytes`);
    return this.u64[0];
  }

  unloadModule(mod: CuModule): void { this.check(this.api.cuModuleUnload(mod), 'cuModuleUnload'); }

  /** Whether the module defines the global variable `name` (cuModuleGetGlobal: CUDA_ERROR_NOT_FOUND when not). */
  moduleHasGlobal(mod: CuModule, name: string): boolean {
    const rc = this.api.cuModuleGetGlobal_v2(this.u64, new BigUint64Array(1), mod, name);
    if (rc === CU_ERROR_NOT_FOUND) return false;
    this.check(rc, 'cuModuleGetGlobal', `'${name}'`);
    return true;
  }

  getFunction(mod: CuModule, name: string): CuFunction {
    this.check(this.api.cuModuleGetFunction(this.u64, mod, name), 'cuModuleGetFunction', `'${name}'`);
    const fn = this.u64[0];
    this.fnNames.set(fn, name);
    return fn;
  }

  funcAttributes(fn: CuFunction): FuncAttributes {
    const get = (a: number) => { this.check(this.api.cuFuncGetAttribute(this.i32, a, fn), 'cuFuncGetAttribute', this.fnName(fn)); return this.i32[0]; };
    return {
      numRegs: get(CU.FUNC_ATTRIBUTE_NUM_REGS),
      maxThreadsPerBlock: get(CU.FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK),
      staticSharedBytes: get(CU.FUNC_ATTRIBUTE_SHARED_SIZE_BYTES),
      localBytes: get(CU.FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES),
    };
  }

  /** Required before launching with more than 48 KiB of dynamic shared memory (up to maxSharedPerBlockOptin). */
  setMaxDynamicShared(fn: CuFunction, bytes: number): void {
    if (!needsSharedOptIn(bytes)) return;
    const rc = this.api.cuFuncSetAttribute(fn, CU.FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes);
    if (rc !== 0) {
      throw cudaError(this.api, 'cuFuncSetAttribute', rc, `${this.fnName(fn)}: max dynamic shared = ${bytes}`,
        rc === 1 ? 'the request exceeds deviceInfo().maxSharedPerBlockOptin minus the kernel\'s static shared memory' : undefined);
    }
  }

  /**
   * Checks `params` against the kernel's real parameter list (count, sizes, offsets) with cuFuncGetParamInfo
   * (driver 12.4+; a no-op on older drivers). A mismatch would otherwise launch with garbage arguments. Meant for
   * engine build time / debug, not per launch.
   */
  checkParams(fn: CuFunction, params: KernelParams): void {
    const info = this.api.cuFuncGetParamInfo;
    if (!info) return;
    const off = new BigUint64Array(1), size = new BigUint64Array(1);
    const actual: string[] = [];
    for (let i = 0; i < 4096; i++) {
      if (info(fn, i, off, size) !== 0) break;
      actual.push(`${off[0]}:${size[0]}`);
    }
    const packed = params.types.map((t, i) => `${params.offsets[i]}:${PARAM_SIZE[t]}`);
    if (actual.join(',') !== packed.join(',')) {
      throw new TsrtError('USAGE', `kernel '${this.fnName(fn)}' parameters do not match the packed arguments: ` +
        `kernel (offset:size) [${actual.join(', ')}], packed [${packed.join(', ')}] (${params.types.join(', ')})`,
        'make the KernelParams types follow the kernel signature (pointers and 64-bit ints are 8 bytes, int/float 4)');
    }
  }

  /** The hot path: one FFI call, no JS allocation. */
  launch(fn: CuFunction, grid: Dim3, block: Dim3, sharedBytes: number, stream: CuStream, params: KernelParams): void {
    const rc = this.api.cuLaunchKernel(fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], sharedBytes, stream, params.ptr, null);
    if (rc !== 0) {
      throw this.error('cuLaunchKernel', rc, `${this.fnName(fn)} grid [${grid}] block [${block}] shared ${sharedBytes}`);
    }
  }

  /** Whether kernels can be launched programmatically (launchProgrammatic): a driver with cuLaunchKernelEx and an
   * sm_90+ GPU (griddepcontrol). */
  supportsProgrammaticLaunch(): boolean { return !!this.api.cuLaunchKernelEx && this.deviceInfo().ccMajor >= 9; }

  /** launch() with programmatic stream serialization (Hopper's programmatic dependent launch): the kernel may start
   * before the previous kernel on the stream has finished, and must itself wait (griddepcontrol.wait, codegen/kernel.ts
   * PDL_MARKER) before touching memory. Captured into a CUDA graph it becomes a programmatic edge. */
  launchProgrammatic(fn: CuFunction, grid: Dim3, block: Dim3, sharedBytes: number, stream: CuStream, params: KernelParams): void {
    const ex = this.api.cuLaunchKernelEx;
    if (!ex) throw new TsrtError('CUDA', 'this CUDA driver has no cuLaunchKernelEx (CUDA 11.8+)', 'update the NVIDIA driver, or build without programmatic launches (pdl: false)');
    this.launchConfig ??= new LaunchConfig();
    const rc = ex(this.launchConfig.fill(grid, block, sharedBytes, stream), fn, params.ptr, null);
    if (rc !== 0) {
      throw this.error('cuLaunchKernelEx', rc, `${this.fnName(fn)} grid [${grid}] block [${block}] shared ${sharedBytes} (programmatic stream serialization)`);
    }
  }

  // ---- streams, events ----

  /** Non-blocking by default: it does not synchronize with the legacy default stream. */
  createStream(nonBlocking = true): CuStream {
    this.check(this.api.cuStreamCreate(this.u64, nonBlocking ? CU.STREAM_NON_BLOCKING : CU.STREAM_DEFAULT), 'cuStreamCreate');
    return this.u64[0];
  }

  syncStream(stream: CuStream): void { this.check(this.api.cuStreamSynchronize(stream), 'cuStreamSynchronize'); }

  /** Whether all work queued on `stream` has finished, without blocking (cuStreamQuery: CUDA_ERROR_NOT_READY is
   * false; an error of the work itself throws): lets a caller wait with a deadline for a kernel that may hang. */
  streamDone(stream: CuStream): boolean {
    const rc = this.api.cuStreamQuery(stream);
    if (rc === 600) return false; // CUDA_ERROR_NOT_READY
    this.check(rc, 'cuStreamQuery');
    return true;
  }

  destroyStream(stream: CuStream): void { this.check(this.api.cuStreamDestroy_v2(stream), 'cuStreamDestroy'); }

  createEvent(flags: number = CU.EVENT_DEFAULT): CuEvent {
    this.check(this.api.cuEventCreate(this.u64, flags), 'cuEventCreate');
    return this.u64[0];
  }

  record(event: CuEvent, stream: CuStream): void { this.check(this.api.cuEventRecord(event, stream), 'cuEventRecord'); }

  syncEvent(event: CuEvent): void { this.check(this.api.cuEventSynchronize(event), 'cuEventSynchronize'); }

  /** Milliseconds between two recorded events (waits for `end` first). */
  elapsedMs(start: CuEvent, end: CuEvent): number {
    this.syncEvent(end);
    this.check(this.api.cuEventElapsedTime(this.f32, start, end), 'cuEventElapsedTime');
    return this.f32[0];
  }

  destroyEvent(event: CuEvent): void { this.check(this.api.cuEventDestroy_v2(event), 'cuEventDestroy'); }

  /** Waits for all work on the device (this context). */
  synchronize(): void { this.check(this.api.cuCtxSynchronize(), 'cuCtxSynchronize'); }

  // ---- graphs ----

  /** Starts recording `stream` (not 0n) into a graph. Between begin and end, only async calls on it are allowed. */
  beginCapture(stream: CuStream, mode: CaptureMode = 'global'): void {
    if (stream === 0n) throw new TsrtError('USAGE', 'cannot capture the legacy default stream (0n)', 'capture on a stream from createStream()');
    this.check(this.api.cuStreamBeginCapture_v2(stream, CAPTURE_MODE[mode]), 'cuStreamBeginCapture');
  }

  endCapture(stream: CuStream): CuGraph {
    this.check(this.api.cuStreamEndCapture(stream, this.u64), 'cuStreamEndCapture');
    return this.u64[0];
  }

  instantiate(graph: CuGraph, flags = 0): CuGraphExec {
    this.check(this.api.cuGraphInstantiateWithFlags(this.u64, graph, flags), 'cuGraphInstantiateWithFlags');
    return this.u64[0];
  }

  graphLaunch(exec: CuGraphExec, stream: CuStream): void {
    const rc = this.api.cuGraphLaunch(exec, stream);
    if (rc !== 0) throw this.error('cuGraphLaunch', rc);
  }

  destroyGraph(graph: CuGraph): void { this.check(this.api.cuGraphDestroy(graph), 'cuGraphDestroy'); }

  destroyGraphExec(exec: CuGraphExec): void { this.check(this.api.cuGraphExecDestroy(exec), 'cuGraphExecDestroy'); }

  // ---- internals ----

  private device(): number {
    if (this.dev < 0) throw new TsrtError('USAGE', 'CUDA is not initialized', 'call init() first');
    return this.dev;
  }

  private fnName(fn: CuFunction): string { return `kernel '${this.fnNames.get(fn) ?? `0x${fn.toString(16)}`}'`; }

  private error(call: string, rc: number, context?: string): CudaError { return cudaError(this.api, call, rc, context); }

  /** `hint` replaces the generic hint for the error code. */
  private check(rc: number, call: string, context?: string, hint?: string): void {
    if (rc !== 0) throw cudaError(this.api, call, rc, context, hint);
  }
}

function hostFits(call: string, v: ArrayBufferView, bytes: number): void {
  if (bytes > v.byteLength || bytes < 0 || !Number.isInteger(bytes)) {
    throw new TsrtError('USAGE', `${call}: ${bytes} bytes requested but the host buffer holds ${v.byteLength}`);
  }
}
