// Finds and opens the native CUDA libraries (driver, NVRTC) and the CUDA headers NVRTC needs.
// Nothing is opened at import time, so machines without CUDA can still import the runtime.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import koffi from 'koffi';
import { TsrtError } from '../errors.js';

export type LibraryHandle = ReturnType<typeof koffi.load>;

export interface LoadedLibrary {
  /** What was passed to dlopen: a bare soname (resolved by the loader's search path) or an absolute path. */
  path: string;
  lib: LibraryHandle;
}

const NVRTC_NAMES = ['libnvrtc.so.13', 'libnvrtc.so.12', 'libnvrtc.so.11.2', 'libnvrtc.so'];
const DRIVER_NAMES = ['libcuda.so.1', 'libcuda.so'];

/** Directories searched after the dynamic loader's own search path (LD_LIBRARY_PATH, ld.so.cache). */
export function libraryDirs(): string[] {
  const dirs: string[] = [];
  const home = process.env.CUDA_HOME ?? process.env.CUDA_PATH;
  if (home) dirs.push(join(home, 'lib64'), join(home, 'targets/x86_64-linux/lib'));
  dirs.push('/usr/local/cuda/lib64', '/usr/local/cuda/targets/x86_64-linux/lib', '/usr/lib/x86_64-linux-gnu');
  return [...new Set(dirs)];
}

/** Every path NVRTC is looked for at, in order. Newest major first, so a CUDA 13 toolkit wins over a distro 11.x. */
export function nvrtcCandidates(): string[] {
  const env = process.env.TSRT_NVRTC_PATH;
  const out = env ? [env] : [];
  for (const name of NVRTC_NAMES) out.push(name, ...libraryDirs().map((d) => join(d, name)));
  return out;
}

/** libcuda ships with the driver, never with the toolkit (the toolkit's lib64/stubs/libcuda.so is a stub).
 * TSRT_CUDA_DRIVER_PATH overrides (a non-standard driver install, or a mock driver for FFI tests). */
export function driverCandidates(): string[] {
  const env = process.env.TSRT_CUDA_DRIVER_PATH;
  if (env) return [env];
  return DRIVER_NAMES.flatMap((name) => [name, join('/usr/lib/x86_64-linux-gnu', name), join('/usr/lib64', name)]);
}

function tryLoad(candidates: string[]): { loaded?: LoadedLibrary; errors: string[] } {
  const errors: string[] = [];
  for (const path of candidates) {
    if (path.startsWith('/') && !existsSync(path)) { errors.push(`${path}: not found`); continue; }
    try {
      return { loaded: { path, lib: koffi.load(path) }, errors };
    } catch (e) {
      errors.push(`${path}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return { errors };
}

let nvrtcLib: LoadedLibrary | undefined;
let driverLib: LoadedLibrary | undefined;

/** Opens NVRTC once per process (per worker thread). Throws TsrtError('LIBRARY') naming every place it looked. */
export function loadNvrtc(): LoadedLibrary {
  if (nvrtcLib) return nvrtcLib;
  const { loaded, errors } = tryLoad(nvrtcCandidates());
  if (!loaded) {
    throw new TsrtError('LIBRARY', `NVRTC (libnvrtc) not found; looked at:\n    ${errors.join('\n    ')}`,
      'install the CUDA toolkit (libnvrtc.so.13/12 under /usr/local/cuda/lib64), or on Debian ' +
      '`apt-get install libnvrtc11.2 libnvrtc-builtins11.8` from the non-free component; ' +
      'or point TSRT_NVRTC_PATH at libnvrtc.so.*');
  }
  nvrtcLib = loaded;
  return loaded;
}

/** Opens the CUDA driver library once per process. Throws TsrtError('LIBRARY') when there is no NVIDIA driver. */
export function loadDriver(): LoadedLibrary {
  if (driverLib) return driverLib;
  const { loaded, errors } = tryLoad(driverCandidates());
  if (!loaded) {
    throw new TsrtError('LIBRARY', `CUDA driver library (libcuda.so.1) not found; looked at:\n    ${errors.join('\n    ')}`,
      'install the NVIDIA driver (it provides libcuda.so.1; nvidia-smi should work), or in a container run with ' +
      'the NVIDIA container toolkit (--gpus all)');
  }
  driverLib = loaded;
  return loaded;
}

/** CUDA_VERSION from <dir>/cuda.h (e.g. 13000), or undefined when the dir has no cuda.h. */
export function headerCudaVersion(includeDir: string): number | undefined {
  const h = join(includeDir, 'cuda.h');
  if (!existsSync(h)) return undefined;
  const m = /#define\s+CUDA_VERSION\s+(\d+)/.exec(readFileSync(h, 'utf8'));
  return m ? Number(m[1]) : undefined;
}

export interface CudaInclude {
  /** Directories to pass as -I, the main include dir first (then its cccl/ subdir on CUDA 13). */
  dirs: string[];
  /** CUDA_VERSION of the headers, when cuda.h is there. */
  cudaVersion?: number;
}

/** Include dirs worth trying for cuda_fp16.h / mma.h, best first. The toolkit next to the loaded NVRTC comes first
 * because headers from another CUDA version may use features that NVRTC does not know. */
export function includeCandidates(nvrtcPath?: string): string[] {
  const out: string[] = [];
  if (process.env.TSRT_CUDA_INCLUDE) out.push(process.env.TSRT_CUDA_INCLUDE);
  if (nvrtcPath?.startsWith('/')) {
    const libDir = dirname(nvrtcPath);
    out.push(join(libDir, '../include'), join(libDir, '../../include')); // lib64/ and targets/x86_64-linux/lib/
  }
  const home = process.env.CUDA_HOME ?? process.env.CUDA_PATH;
  if (home) out.push(join(home, 'include'));
  out.push('/usr/local/cuda/include', '/usr/local/cuda-13.0/include');
  return [...new Set(out)];
}

const includeCache = new Map<string, CudaInclude | null>();

/** Finds the CUDA headers (the first candidate holding cuda_fp16.h), or undefined when none is installed. */
export function findCudaInclude(nvrtcPath?: string): CudaInclude | undefined {
  const cacheKey = `${process.env.TSRT_CUDA_INCLUDE ?? ''}\0${nvrtcPath ?? ''}`;
  const cached = includeCache.get(cacheKey);
  if (cached !== undefined) return cached ?? undefined;
  let found: CudaInclude | null = null;
  const explicit = process.env.TSRT_CUDA_INCLUDE;
  for (const dir of includeCandidates(nvrtcPath)) {
    // An explicit TSRT_CUDA_INCLUDE is taken as given; guessed dirs must hold the header we need.
    if (dir !== explicit && !existsSync(join(dir, 'cuda_fp16.h'))) continue;
    const dirs = [dir];
    if (existsSync(join(dir, 'cccl'))) dirs.push(join(dir, 'cccl'));
    found = { dirs, cudaVersion: headerCudaVersion(dir) };
    break;
  }
  includeCache.set(cacheKey, found);
  return found ?? undefined;
}
