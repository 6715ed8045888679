// Every native declaration of the runtime (CUDA driver API, NVRTC), and nothing else. Declarations are made the
// first time an API object is asked for, so importing this module never needs CUDA.
//
// Conventions, which callers rely on:
//  - Handles (CUcontext, CUmodule, CUfunction, CUstream, CUevent, CUgraph, CUgraphExec, nvrtcProgram) are bigint;
//    stream 0n is the legacy default stream.
//  - CUdeviceptr is a uint64 passed as bigint.
//  - Output parameters are typed arrays of one element (Int32Array for int*, BigUint64Array for handles, size_t*
//    and CUdeviceptr*, Float32Array for float*): koffi hands their backing store to C, so no JS objects are made.
//  - Host buffers are ArrayBufferViews or raw bigint addresses.
//  - Every function returns the CUresult / nvrtcResult as a number.
// Symbol names are the versioned ones cuda.h maps to (cuMemAlloc -> cuMemAlloc_v2 ...), because the unversioned
// names in libcuda are the old ABI kept for binaries built against CUDA 3.x.
import koffi from 'koffi';
import { loadDriver, loadNvrtc, type LibraryHandle } from './libs.js';

type Ptr = bigint | null;
type HostPtr = ArrayBufferView | bigint | null;
type Strs = string[] | null;

export interface CudaApi {
  libraryPath: string;
  cuInit(flags: number): number;
  cuDriverGetVersion(version: Int32Array): number;
  cuDeviceGet(device: Int32Array, ordinal: number): number;
  cuDeviceGetCount(count: Int32Array): number;
  cuDeviceGetName(name: Uint8Array, len: number, dev: number): number;
  cuDeviceGetAttribute(value: Int32Array, attrib: number, dev: number): number;
  cuDeviceTotalMem_v2(bytes: BigUint64Array, dev: number): number;
  cuDevicePrimaryCtxRetain(ctx: BigUint64Array, dev: number): number;
  cuDevicePrimaryCtxRelease_v2(dev: number): number;
  cuCtxSetCurrent(ctx: Ptr): number;
  cuCtxSynchronize(): number;
  cuModuleLoadData(module: BigUint64Array, image: HostPtr): number;
  cuModuleUnload(module: bigint): number;
  cuModuleGetFunction(fn: BigUint64Array, module: bigint, name: string): number;
  cuFuncSetAttribute(fn: bigint, attrib: number, value: number): number;
  cuFuncGetAttribute(value: Int32Array, attrib: number, fn: bigint): number;
  cuMemAlloc_v2(dptr: BigUint64Array, bytes: number): number;
  cuMemFree_v2(dptr: bigint): number;
  cuMemcpyHtoD_v2(dst: bigint, src: HostPtr, bytes: number): number;
  cuMemcpyDtoH_v2(dst: HostPtr, src: bigint, bytes: number): number;
  cuMemcpyDtoD_v2(dst: bigint, src: bigint, bytes: number): number;
  cuMemcpyHtoDAsync_v2(dst: bigint, src: HostPtr, bytes: number, stream: Ptr): number;
  cuMemcpyDtoHAsync_v2(dst: HostPtr, src: bigint, bytes: number, stream: Ptr): number;
  cuMemcpyDtoDAsync_v2(dst: bigint, src: bigint, bytes: number, stream: Ptr): number;
  cuMemsetD8_v2(dst: bigint, value: number, count: number): number;
  cuMemsetD8Async(dst: bigint, value: number, count: number, stream: Ptr): number;
  cuMemHostAlloc(ptr: BigUint64Array, bytes: number, flags: number): number;
  cuMemFreeHost(ptr: bigint): number;
  cuMemGetInfo_v2(free: BigUint64Array, total: BigUint64Array): number;
  cuStreamCreate(stream: BigUint64Array, flags: number): number;
  cuStreamDestroy_v2(stream: bigint): number;
  cuStreamSynchronize(stream: Ptr): number;
  cuStreamQuery(stream: Ptr): number;
  cuEventCreate(event: BigUint64Array, flags: number): number;
  cuEventRecord(event: bigint, stream: Ptr): number;
  cuEventSynchronize(event: bigint): number;
  /** cuEventElapsedTime_v2 (CUDA 12.8+) when the driver has it, else the original cuEventElapsedTime. */
  cuEventElapsedTime(ms: Float32Array, start: bigint, end: bigint): number;
  cuEventDestroy_v2(event: bigint): number;
  cuLaunchKernel(fn: bigint, gx: number, gy: number, gz: number, bx: number, by: number, bz: number,
    sharedBytes: number, stream: Ptr, kernelParams: Ptr, extra: Ptr): number;
  cuStreamBeginCapture_v2(stream: bigint, mode: number): number;
  cuStreamEndCapture(stream: bigint, graph: BigUint64Array): number;
  cuGraphInstantiateWithFlags(exec: BigUint64Array, graph: bigint, flags: number): number;
  cuGraphLaunch(exec: bigint, stream: Ptr): number;
  cuGraphExecDestroy(exec: bigint): number;
  cuGraphDestroy(graph: bigint): number;
  cuGetErrorName(code: number, str: [string | null]): number;
  cuGetErrorString(code: number, str: [string | null]): number;
  /** CUDA 11.8+ (programmatic dependent launch through its attributes); undefined on older drivers. */
  cuLaunchKernelEx?: (config: bigint, fn: bigint, kernelParams: Ptr, extra: Ptr) => number;
  cuModuleGetGlobal_v2(dptr: BigUint64Array, bytes: BigUint64Array, module: bigint, name: string): number;
  /** CUDA 12.4+ only; undefined on older drivers. */
  cuFuncGetParamInfo?: (fn: bigint, index: number, offset: BigUint64Array, size: BigUint64Array) => number;
}

export interface NvrtcApi {
  libraryPath: string;
  nvrtcVersion(major: Int32Array, minor: Int32Array): number;
  nvrtcGetNumSupportedArchs(n: Int32Array): number;
  nvrtcGetSupportedArchs(archs: Int32Array): number;
  nvrtcCreateProgram(prog: BigUint64Array, src: string, name: string, numHeaders: number, headers: Strs, includeNames: Strs): number;
  nvrtcCompileProgram(prog: bigint, numOptions: number, options: Strs): number;
  nvrtcGetProgramLogSize(prog: bigint, size: BigUint64Array): number;
  nvrtcGetProgramLog(prog: bigint, log: Uint8Array): number;
  nvrtcGetPTXSize(prog: bigint, size: BigUint64Array): number;
  nvrtcGetPTX(prog: bigint, ptx: Uint8Array): number;
  nvrtcGetCUBINSize(prog: bigint, size: BigUint64Array): number;
  nvrtcGetCUBIN(prog: bigint, cubin: Uint8Array): number;
  nvrtcDestroyProgram(prog: BigUint64Array): number;
  nvrtcGetErrorString(code: number): string;
  nvrtcAddNameExpression?: (prog: bigint, nameExpression: string) => number;
  nvrtcGetLoweredName?: (prog: bigint, nameExpression: string, lowered: [string | null]) => number;
}

// Enum values from cuda.h (CUDA 13.0; all stable since their introduction).
export const CU = {
  DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: 1,
  DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: 8,
  DEVICE_ATTRIBUTE_WARP_SIZE: 10,
  DEVICE_ATTRIBUTE_CLOCK_RATE: 13,
  DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: 16,
  DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: 36,
  DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: 37,
  DEVICE_ATTRIBUTE_L2_CACHE_SIZE: 38,
  DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: 75,
  DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: 76,
  DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: 81,
  DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: 97,
  FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: 0,
  FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: 1,
  FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES: 3,
  FUNC_ATTRIBUTE_NUM_REGS: 4,
  FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: 8,
  STREAM_DEFAULT: 0,
  STREAM_NON_BLOCKING: 1,
  EVENT_DEFAULT: 0,
  EVENT_BLOCKING_SYNC: 1,
  EVENT_DISABLE_TIMING: 2,
  STREAM_CAPTURE_MODE_GLOBAL: 0,
  STREAM_CAPTURE_MODE_THREAD_LOCAL: 1,
  STREAM_CAPTURE_MODE_RELAXED: 2,
  MEMHOSTALLOC_PORTABLE: 1,
  MEMHOSTALLOC_DEVICEMAP: 2,
  MEMHOSTALLOC_WRITECOMBINED: 4,
} as const;

/** Declares `proto`, or returns undefined when the library lacks the symbol (koffi throws on a missing symbol). */
function optional(lib: LibraryHandle, proto: string): ((...a: any[]) => any) | undefined {
  try { return lib.func(proto); } catch { return undefined; }
}

let cuda: CudaApi | undefined;

export function cudaApi(): CudaApi {
  if (cuda) return cuda;
  const { lib, path } = loadDriver();
  const f = (proto: string) => lib.func(proto);
  const elapsed = optional(lib, 'int cuEventElapsedTime_v2(float *ms, void *start, void *end)')
    ?? f('int cuEventElapsedTime(float *ms, void *start, void *end)');
  cuda = {
    libraryPath: path,
    cuInit: f('int cuInit(unsigned int flags)'),
    cuDriverGetVersion: f('int cuDriverGetVersion(int *version)'),
    cuDeviceGet: f('int cuDeviceGet(int *device, int ordinal)'),
    cuDeviceGetCount: f('int cuDeviceGetCount(int *count)'),
    cuDeviceGetName: f('int cuDeviceGetName(uint8_t *name, int len, int dev)'),
    cuDeviceGetAttribute: f('int cuDeviceGetAttribute(int *value, int attrib, int dev)'),
    cuDeviceTotalMem_v2: f('int cuDeviceTotalMem_v2(size_t *bytes, int dev)'),
    cuDevicePrimaryCtxRetain: f('int cuDevicePrimaryCtxRetain(void **ctx, int dev)'),
    cuDevicePrimaryCtxRelease_v2: f('int cuDevicePrimaryCtxRelease_v2(int dev)'),
    cuCtxSetCurrent: f('int cuCtxSetCurrent(void *ctx)'),
    cuCtxSynchronize: f('int cuCtxSynchronize()'),
    cuModuleLoadData: f('int cuModuleLoadData(void **module, const void *image)'),
    cuModuleUnload: f('int cuModuleUnload(void *module)'),
    cuModuleGetFunction: f('int cuModuleGetFunction(void **fn, void *module, const char *name)'),
    cuFuncSetAttribute: f('int cuFuncSetAttribute(void *fn, int attrib, int value)'),
    cuFuncGetAttribute: f('int cuFuncGetAttribute(int *value, int attrib, void *fn)'),
    cuMemAlloc_v2: f('int cuMemAlloc_v2(uint64_t *dptr, size_t bytes)'),
    cuMemFree_v2: f('int cuMemFree_v2(uint64_t dptr)'),
    cuMemcpyHtoD_v2: f('int cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t bytes)'),
    cuMemcpyDtoH_v2: f('int cuMemcpyDtoH_v2(void *dst, uint64_t src, size_t bytes)'),
    cuMemcpyDtoD_v2: f('int cuMemcpyDtoD_v2(uint64_t dst, uint64_t src, size_t bytes)'),
    cuMemcpyHtoDAsync_v2: f('int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t bytes, void *stream)'),
    cuMemcpyDtoHAsync_v2: f('int cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t bytes, void *stream)'),
    cuMemcpyDtoDAsync_v2: f('int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void *stream)'),
    cuMemsetD8_v2: f('int cuMemsetD8_v2(uint64_t dst, unsigned char value, size_t count)'),
    cuMemsetD8Async: f('int cuMemsetD8Async(uint64_t dst, unsigned char value, size_t count, void *stream)'),
    cuMemHostAlloc: f('int cuMemHostAlloc(void **ptr, size_t bytes, unsigned int flags)'),
    cuMemFreeHost: f('int cuMemFreeHost(void *ptr)'),
    cuMemGetInfo_v2: f('int cuMemGetInfo_v2(size_t *free, size_t *total)'),
    cuStreamCreate: f('int cuStreamCreate(void **stream, unsigned int flags)'),
    cuStreamDestroy_v2: f('int cuStreamDestroy_v2(void *stream)'),
    cuStreamSynchronize: f('int cuStreamSynchronize(void *stream)'),
    cuStreamQuery: f('int cuStreamQuery(void *stream)'),
    cuEventCreate: f('int cuEventCreate(void **event, unsigned int flags)'),
    cuEventRecord: f('int cuEventRecord(void *event, void *stream)'),
    cuEventSynchronize: f('int cuEventSynchronize(void *event)'),
    cuEventElapsedTime: elapsed,
    cuEventDestroy_v2: f('int cuEventDestroy_v2(void *event)'),
    cuLaunchKernel: f('int cuLaunchKernel(void *fn, unsigned int gx, unsigned int gy, unsigned int gz, ' +
      'unsigned int bx, unsigned int by, unsigned int bz, unsigned int sharedBytes, void *stream, ' +
      'void *kernelParams, void *extra)'),
    cuStreamBeginCapture_v2: f('int cuStreamBeginCapture_v2(void *stream, int mode)'),
    cuStreamEndCapture: f('int cuStreamEndCapture(void *stream, void **graph)'),
    cuGraphInstantiateWithFlags: f('int cuGraphInstantiateWithFlags(void **exec, void *graph, uint64_t flags)'),
    cuGraphLaunch: f('int cuGraphLaunch(void *exec, void *stream)'),
    cuGraphExecDestroy: f('int cuGraphExecDestroy(void *exec)'),
    cuGraphDestroy: f('int cuGraphDestroy(void *graph)'),
    cuGetErrorName: f('int cuGetErrorName(int code, _Out_ const char **str)'),
    cuGetErrorString: f('int cuGetErrorString(int code, _Out_ const char **str)'),
    cuLaunchKernelEx: optional(lib, 'int cuLaunchKernelEx(void *config, void *fn, void *kernelParams, void *extra)'),
    cuModuleGetGlobal_v2: f('int cuModuleGetGlobal_v2(uint64_t *dptr, size_t *bytes, void *module, const char *name)'),
    cuFuncGetParamInfo: optional(lib, 'int cuFuncGetParamInfo(void *fn, size_t index, size_t *offset, size_t *size)'),
  };
  return cuda;
}

let nvrtc: NvrtcApi | undefined;

export function nvrtcApi(): NvrtcApi {
  if (nvrtc) return nvrtc;
  const { lib, path } = loadNvrtc();
  const f = (proto: string) => lib.func(proto);
  nvrtc = {
    libraryPath: path,
    nvrtcVersion: f('int nvrtcVersion(int *major, int *minor)'),
    nvrtcGetNumSupportedArchs: f('int nvrtcGetNumSupportedArchs(int *n)'),
    nvrtcGetSupportedArchs: f('int nvrtcGetSupportedArchs(int *archs)'),
    nvrtcCreateProgram: f('int nvrtcCreateProgram(void **prog, const char *src, const char *name, int numHeaders, ' +
      'const char **headers, const char **includeNames)'),
    nvrtcCompileProgram: f('int nvrtcCompileProgram(void *prog, int numOptions, const char **options)'),
    nvrtcGetProgramLogSize: f('int nvrtcGetProgramLogSize(void *prog, size_t *size)'),
    nvrtcGetProgramLog: f('int nvrtcGetProgramLog(void *prog, uint8_t *log)'),
    nvrtcGetPTXSize: f('int nvrtcGetPTXSize(void *prog, size_t *size)'),
    nvrtcGetPTX: f('int nvrtcGetPTX(void *prog, uint8_t *ptx)'),
    nvrtcGetCUBINSize: f('int nvrtcGetCUBINSize(void *prog, size_t *size)'),
    nvrtcGetCUBIN: f('int nvrtcGetCUBIN(void *prog, uint8_t *cubin)'),
    nvrtcDestroyProgram: f('int nvrtcDestroyProgram(void **prog)'),
    nvrtcGetErrorString: f('const char *nvrtcGetErrorString(int code)'),
    nvrtcAddNameExpression: optional(lib, 'int nvrtcAddNameExpression(void *prog, const char *nameExpression)'),
    nvrtcGetLoweredName: optional(lib, 'int nvrtcGetLoweredName(void *prog, const char *nameExpression, _Out_ const char **lowered)'),
  };
  return nvrtc;
}

/** Stable native memory (malloc'd by koffi) and a view of it. The address never moves, unlike a JS typed array's. */
export interface NativeBlock { ptr: bigint; bytes: number; buffer: ArrayBuffer }

export function allocNative(bytes: number): NativeBlock {
  const n = Math.max(8, bytes);
  const ptr = koffi.alloc('uint8_t', n) as bigint;
  return { ptr, bytes: n, buffer: koffi.view(ptr, n) };
}

export function freeNative(ptr: bigint): void { koffi.free(ptr); }

/** An ArrayBuffer over native memory owned elsewhere (pinned host memory). */
export function viewNative(ptr: bigint, bytes: number): ArrayBuffer { return koffi.view(ptr, bytes); }

/** The address of a typed array's bytes (valid only until the next allocation may move it; for diagnostics). */
export function addressOf(v: ArrayBufferView): bigint { return koffi.address(v); }
