// CUDA C++ source -> cubin (or PTX) with NVRTC. Compile errors name the kernel, keep the source on disk and carry
// NVRTC's log, so a bad generated kernel can be reproduced outside tsrt.
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TsrtError } from '../errors.js';
import { nvrtcApi } from './ffi.js';
import { findCudaInclude } from './libs.js';

export const DEFAULT_ARCH = 'sm_90';
/** No --use_fast_math: accuracy is checked against the CPU reference; callers opt in per kernel. */
export const DEFAULT_OPTIONS: readonly string[] = ['--std=c++17', '-default-device'];

export interface CompileOptions {
  /** Kernel (or module) name: used in messages, in the failed-source file name and as the NVRTC program name. */
  name: string;
  /** 'sm_90' (cubin, the default), 'sm_90a' (NVRTC 12+), or 'compute_90' (PTX, JIT-compiled by the driver). */
  arch?: string;
  /** Extra NVRTC options, appended after the defaults (e.g. '--use_fast_math', '-lineinfo', '-DTILE=64'). */
  options?: string[];
  /** Extra -I dirs, searched before the CUDA headers. */
  includeDirs?: string[];
  /** Also return the PTX when compiling to a cubin (for debug dumps). */
  wantPtx?: boolean;
  /** C++ names (e.g. 'gemm<64, 128>') whose mangled names should be returned in loweredNames. */
  nameExpressions?: string[];
}

export interface CompileResult {
  /** ELF cubin, present for sm_XX targets. */
  cubin?: Uint8Array;
  /** PTX text, present for compute_XX targets or when wantPtx was set. */
  ptx?: string;
  /** NVRTC's log (warnings); empty when clean. */
  log: string;
  /** NVRTC version [major, minor]. */
  version: [number, number];
  /** The full NVRTC option list used (arch, defaults, includes, caller options). */
  options: string[];
  loweredNames?: Record<string, string>;
}

let versionCache: [number, number] | undefined;

export function nvrtcVersion(): [number, number] {
  if (versionCache) return versionCache;
  const api = nvrtcApi();
  const major = new Int32Array(1), minor = new Int32Array(1);
  check(api.nvrtcVersion(major, minor), 'nvrtcVersion');
  versionCache = [major[0], minor[0]];
  return versionCache;
}

let archCache: number[] | undefined;

/** The SM numbers this NVRTC can target, e.g. [35, ..., 90]. */
export function supportedArchs(): number[] {
  if (archCache) return archCache;
  const api = nvrtcApi();
  const n = new Int32Array(1);
  check(api.nvrtcGetNumSupportedArchs(n), 'nvrtcGetNumSupportedArchs');
  const archs = new Int32Array(n[0]);
  check(api.nvrtcGetSupportedArchs(archs), 'nvrtcGetSupportedArchs');
  archCache = [...archs];
  return archCache;
}

/** Throws a clear TsrtError('NVRTC') when this NVRTC cannot target `arch`. */
export function checkArch(arch: string): void {
  const m = /^(sm|compute)_(\d+)([af]?)$/.exec(arch);
  if (!m) {
    throw new TsrtError('USAGE', `invalid GPU architecture '${arch}'`, `use a name like sm_90, sm_90a or compute_90`);
  }
  const sm = Number(m[2]), suffix = m[3];
  const [major, minor] = nvrtcVersion();
  const archs = supportedArchs();
  const where = `NVRTC ${major}.${minor} (${nvrtcApi().libraryPath})`;
  const list = `supported: ${archs.map((a) => `sm_${a}`).join(', ')}`;
  const best = archs.filter((a) => a <= sm).pop();
  const plain = best !== undefined ? `${m[1]}_${best}` : undefined;
  if (!archs.includes(sm)) {
    throw new TsrtError('NVRTC', `${where} cannot compile for ${arch}; ${list}`,
      plain ? `compile for ${plain}, or install a newer NVRTC (CUDA toolkit) that knows ${arch}` : `install an NVRTC that knows ${arch}`);
  }
  const need = suffix === 'a' ? [12, 0] : suffix === 'f' ? [12, 9] : undefined;
  if (need && (major < need[0] || (major === need[0] && minor < need[1]))) {
    throw new TsrtError('NVRTC', `${where} cannot compile for ${arch}: '${suffix}' targets need NVRTC ${need[0]}.${need[1]}+`,
      `compile for ${m[1]}_${sm} (mma.sync, ldmatrix and cp.async work there; wgmma and setmaxnreg need sm_90a), or install NVRTC 12+`);
  }
}

/** The full NVRTC option list for a compile; kernel cache keys hash this, so any change recompiles. */
export function resolveCompileOptions(opts: { arch?: string; options?: string[]; includeDirs?: string[] }): string[] {
  const arch = opts.arch ?? DEFAULT_ARCH;
  const out = [`--gpu-architecture=${arch}`, ...DEFAULT_OPTIONS];
  for (const d of opts.includeDirs ?? []) out.push(`-I${d}`);
  const inc = findCudaInclude(nvrtcApi().libraryPath);
  if (inc) {
    for (const d of inc.dirs) out.push(`-I${d}`);
    // CUDA 12+ headers use NV_IF_TARGET from <nv/target> without including it under NVRTC; NVRTC 12+ predefines
    // it, NVRTC 11 does not.
    if (nvrtcVersion()[0] < 12 && (inc.cudaVersion ?? 0) >= 12000) out.push('--pre-include=nv/target');
  }
  out.push(...(opts.options ?? []));
  return out;
}

const NVRTC_ERROR_COMPILATION = 6;
const NVRTC_ERROR_BUILTIN_OPERATION_FAILURE = 7;

export function compileCuda(source: string, opts: CompileOptions): CompileResult {
  const arch = opts.arch ?? DEFAULT_ARCH;
  checkArch(arch);
  const api = nvrtcApi();
  const options = resolveCompileOptions({ ...opts, arch });
  const progOut = new BigUint64Array(1);
  check(api.nvrtcCreateProgram(progOut, source, `${opts.name}.cu`, 0, null, null), 'nvrtcCreateProgram', opts.name);
  const prog = progOut[0];
  try {
    const names = opts.nameExpressions ?? [];
    if (names.length && !api.nvrtcAddNameExpression) {
      throw new TsrtError('NVRTC', `this NVRTC has no nvrtcAddNameExpression`, 'use extern "C" kernels');
    }
    for (const n of names) check(api.nvrtcAddNameExpression!(prog, n), `nvrtcAddNameExpression('${n}')`, opts.name);
    const rc = api.nvrtcCompileProgram(prog, options.length, options);
    const log = programLog(prog);
    if (rc !== 0) throw compileError(rc, source, opts.name, options, log);
    const result: CompileResult = { log, version: nvrtcVersion(), options };
    if (arch.startsWith('sm_')) result.cubin = readOutput(prog, 'CUBIN', opts.name);
    if (arch.startsWith('compute_') || opts.wantPtx) {
      const ptx = readOutput(prog, 'PTX', opts.name);
      result.ptx = Buffer.from(ptx.buffer, ptx.byteOffset, cstrLength(ptx)).toString('utf8');
    }
    if (names.length) {
      result.loweredNames = {};
      for (const n of names) {
        const out: [string | null] = [null];
        check(api.nvrtcGetLoweredName!(prog, n, out), `nvrtcGetLoweredName('${n}')`, opts.name);
        result.loweredNames[n] = out[0] ?? '';
      }
    }
    return result;
  } finally {
    api.nvrtcDestroyProgram(progOut);
  }
}

/** The bytes cuModuleLoadData takes: the cubin, or the PTX with its terminating NUL. */
export function moduleImage(r: CompileResult): Uint8Array {
  if (r.cubin) return r.cubin;
  if (r.ptx !== undefined) return new TextEncoder().encode(r.ptx + '\0'); // own ArrayBuffer: transferable
  throw new TsrtError('NVRTC', 'compile result holds neither a cubin nor PTX');
}

function programLog(prog: bigint): string {
  const api = nvrtcApi();
  const size = new BigUint64Array(1);
  if (api.nvrtcGetProgramLogSize(prog, size) !== 0 || size[0] <= 1n) return '';
  const buf = new Uint8Array(Number(size[0]));
  if (api.nvrtcGetProgramLog(prog, buf) !== 0) return '';
  return Buffer.from(buf.buffer, buf.byteOffset, cstrLength(buf)).toString('utf8').trimEnd();
}

function readOutput(prog: bigint, kind: 'CUBIN' | 'PTX', name: string): Uint8Array {
  const api = nvrtcApi();
  const size = new BigUint64Array(1);
  const [getSize, get] = kind === 'CUBIN' ? [api.nvrtcGetCUBINSize, api.nvrtcGetCUBIN] : [api.nvrtcGetPTXSize, api.nvrtcGetPTX];
  check(getSize(prog, size), `nvrtcGet${kind}Size`, name);
  if (size[0] === 0n) throw new TsrtError('NVRTC', `kernel '${name}': NVRTC produced an empty ${kind}`);
  const out = new Uint8Array(Number(size[0]));
  check(get(prog, out), `nvrtcGet${kind}`, name);
  return out;
}

function cstrLength(b: Uint8Array): number {
  const i = b.indexOf(0);
  return i < 0 ? b.length : i;
}

/** Where a failed kernel's source is kept: <tmp>/tsrt-failed/<name>-<hash>.cu. */
export function failedSourcePath(name: string, source: string): string {
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 12);
  const safe = name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 80) || 'kernel';
  return join(tmpdir(), 'tsrt-failed', `${safe}-${hash}.cu`);
}

function compileError(rc: number, source: string, name: string, options: string[], log: string): TsrtError {
  const path = failedSourcePath(name, source);
  let saved = path;
  try {
    mkdirSync(join(tmpdir(), 'tsrt-failed'), { recursive: true });
    writeFileSync(path, source);
  } catch (e) {
    saved = `(could not write ${path}: ${e instanceof Error ? e.message : e})`;
  }
  const what = errorString(rc);
  const head = `kernel '${name}' failed to compile: ${what} (${rc})\n  source: ${saved}\n  options: ${options.join(' ')}`;
  const body = log ? `\n  log:\n${log.split('\n').map((l) => '    ' + l).join('\n')}` : '';
  const hint = rc === NVRTC_ERROR_COMPILATION
    ? 'fix the CUDA source (a generated kernel failing here is a tsrt code generation bug: report it with the saved .cu file)'
    : rc === NVRTC_ERROR_BUILTIN_OPERATION_FAILURE
      ? 'NVRTC could not load libnvrtc-builtins.so next to libnvrtc; install it (Debian: libnvrtc-builtins11.8) or add its folder to LD_LIBRARY_PATH'
      : 'check the NVRTC options above';
  return new TsrtError('NVRTC', head + body, hint);
}

function errorString(rc: number): string {
  try { return nvrtcApi().nvrtcGetErrorString(rc) ?? `NVRTC error ${rc}`; } catch { return `NVRTC error ${rc}`; }
}

function check(rc: number, call: string, name?: string): void {
  if (rc === 0) return;
  const where = name ? ` for kernel '${name}'` : '';
  throw new TsrtError('NVRTC', `${call}${where} failed: ${errorString(rc)} (${rc})`,
    rc === NVRTC_ERROR_BUILTIN_OPERATION_FAILURE
      ? 'NVRTC could not load libnvrtc-builtins.so; add its folder to LD_LIBRARY_PATH'
      : undefined);
}
