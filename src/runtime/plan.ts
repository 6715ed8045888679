// Engine files (.plan): everything a built engine needs to run, so `tsrt run model.plan` loads in milliseconds
// instead of re-running the passes, the lowering and NVRTC.
//
// Layout (little-endian):
//   0   8  magic "TSRTPLAN"                      64  16  tsrt version (package.json), NUL-padded
//   8   4  format version (PLAN_FORMAT_VERSION)  80  16  target arch (sm_90, compute_90 ...), NUL-padded
//   12  4  header bytes = payload offset         96   8  NVRTC major, minor that compiled the cubins (0 = none)
//   16  8  payload bytes                        104   4  CUDA driver version at build (0 = no GPU)
//   24 32  SHA-256 of header (this field zeroed) + payload
//   56  4  section count   60 4 flags (1: cubins, 2: profiles)
//   128    section table: name (16, NUL-padded), offset in payload (u64), bytes (u64); then payload from `header bytes`.
// Sections: `build` (JSON: versions, device, model; for people and `tsrt inspect`), `index` (JSON: blob offsets),
// `engine` (JSON: graph, lowered steps, memory plan, kernel names/sources with cubin blob refs, report, options,
// tactics), `profiles` (JSON, profile engines only: profiles, the imported model, the other opt-shape engines), `data`
// (raw tensor and cubin bytes, 64-byte aligned, deduplicated; see plan_codec.ts).
//
// Loading refuses (TsrtError ENGINE_FILE, naming the file and `tsrt build ... -o` to rebuild): a bad magic, another
// format version, a truncated or over-long file, a checksum mismatch, a plan for another GPU arch, a plan without
// cubins on a GPU, and a driver older than the NVRTC that compiled the cubins (major version; for PTX plans also
// minor). It warns (LoadOptions.warn, else process.emitWarning) on: another tsrt version (the format version is what decides
// compatibility), a driver of the same major but older minor than NVRTC (CUDA minor-version compatibility runs such
// cubins), and another GPU model of the same arch (the tactics were tuned on the other one). A GPU with another SM
// count than the build's gets its persistent kernels' grids refit to min(tiles, its SMs) (fitPersistentGrids: they
// walk their tiles with a gridDim.x stride, so any grid is correct and one wave is the fast one); the other SM-count
// choices (split-K, tiles) stay as built, hence the warning. Without a GPU the plan runs on the CPU reference from
// its optimized graph.
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { TsrtError } from '../errors.js';
import type { Graph, Model, Tensor } from '../ir/types.js';
import type { KernelSource } from '../codegen/kernel.js';
import type { Lowered, Step } from '../codegen/lower.js';
import type { PassContext } from '../passes/pass.js';
import type { MemoryPlan } from './memory.js';
import { BLOB_ALIGN, BlobWriter, Decoder, encodeValue } from './plan_codec.js';
import { DeviceRunner, cudaAvailable, pdlDefault, sharedCuda } from './device_runner.js';
import { Engine, build, type BuildOptions, type BuildReport, type BuiltWith } from './engine.js';
import { ProfileSet, type Profile } from './profiles.js';
import { nvrtcVersion } from './nvrtc.js';

export const PLAN_MAGIC = 'TSRTPLAN';
export const PLAN_FORMAT_VERSION = 1;
const FIXED = 128;
const ENTRY = 32;
const FLAG_CUBINS = 1, FLAG_PROFILES = 2;

export interface PlanHeader {
  formatVersion: number;
  tsrtVersion: string;
  arch: string;
  /** NVRTC that compiled the cubins, e.g. [11, 8]; [0, 0] when the plan has none. */
  nvrtc: [number, number];
  /** cuDriverGetVersion at build (e.g. 12040); 0 when built without a GPU. */
  driver: number;
  hasCubins: boolean;
  hasProfiles: boolean;
  fileBytes: number;
  sections: { name: string; offset: number; bytes: number }[];
  /** The `build` section: versions, device name, model path, options summary. */
  build: Record<string, unknown>;
}

export interface LoadOptions {
  /** 'auto' (default): the GPU when there is one, else the CPU reference. */
  device?: 'auto' | 'cuda' | 'cpu';
  /** Replay as one CUDA graph (default: as built). */
  cudaGraphs?: boolean;
  /** Programmatic dependent launches (BuildOptions.pdl); default: as the engine was built, else TSRT_PDL=1. */
  pdl?: boolean;
  /** Kernel cache for shapes a profile engine builds on demand. */
  cacheDir?: string;
  /** Version and device warnings (see the file comment); default: process.emitWarning. */
  warn?: (msg: string) => void;
  /** Build messages of shapes a profile engine builds on demand. */
  log?: (msg: string) => void;
}

let versionCache: string | undefined;
/** tsrt's version from package.json (src/runtime and dist/runtime are both two levels below it). */
export function tsrtVersion(): string {
  if (versionCache) return versionCache;
  try { versionCache = String(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version); } catch { versionCache = '0.0.0'; }
  return versionCache;
}

const rebuildHint = (path: string, model = 'MODEL.onnx') => `rebuild it: tsrt build ${model} -o ${path}`;
const fail = (path: string, msg: string, hint?: string) => new TsrtError('ENGINE_FILE', `${path}: ${msg}`, hint ?? rebuildHint(path));

// ---------------------------------------------------------------------------------------------------- saving

/** The plain-data state of one engine; kernel steps refer to their kernel by name. */
function engineState(e: Engine): Record<string, unknown> {
  return {
    graph: e.graph,
    lowered: {
      steps: e.lowered.steps.map((s) => (s.kind === 'kernel' ? { ...s, kernel: s.kernel.name } : s)),
      consts: e.lowered.consts, types: e.lowered.types,
    },
    memory: e.memory,
    kernels: [...e.kernels].map(([name, k]) => ({ name, source: k.source, cubin: k.cubin })),
    backend: e.backend,
    report: e.report,
    pass: { ...e.passContext, log: undefined },
    fixedInputs: e.fixedInputs,
    built: e.built,
  };
}

/** Build options that describe this machine, not the engine: left out of the file. */
function portableOptions(o: BuildOptions): BuildOptions {
  const { device: _d, cacheDir: _c, timingCache: _t, log: _l, instruments: _i, ...rest } = o;
  return rest;
}

export function saveEngine(engine: Engine, path: string): void {
  const blobs = new BlobWriter();
  const enc = (v: unknown) => Buffer.from(JSON.stringify(encodeValue(v, blobs)), 'utf8');
  const root = { ...engineState(engine), built: { ...engine.built, options: portableOptions(engine.built.options) } };
  const ps = engine.profileSet;
  const sections: [string, Uint8Array[]][] = [];
  const engineJson = enc(root);
  const profilesJson = ps && enc({
    profiles: ps.profiles, model: ps.model, options: portableOptions(ps.options),
    pinned: ps.pinned.map((e) => ({ ...engineState(e), built: { ...e.built, options: portableOptions(e.built.options) } })),
  });
  const all = [engine, ...(ps?.pinned ?? [])];
  const hasCubins = all.every((e) => e.kernels.size > 0 && [...e.kernels.values()].every((k) => k.cubin));
  let nvrtc: [number, number] = [0, 0];
  if (hasCubins) try { nvrtc = nvrtcVersion(); } catch { /* cubins from the disk cache without NVRTC loaded: unknown */ }
  const device = engine.backend === 'cuda' ? sharedCuda().deviceInfo() : undefined;
  const info = {
    tsrt: tsrtVersion(), format: PLAN_FORMAT_VERSION, created: new Date().toISOString(), arch: engine.built.arch,
    nvrtc: nvrtc.join('.'), driver: device?.driverVersion ?? 0, device: device?.name ?? null, sms: engine.built.smCount ?? null, backend: engine.backend,
    model: engine.built.model ?? ps?.model.source ?? null, fp16: !!engine.built.options.fp16, optLevel: engine.built.options.optLevel ?? 2,
    profiles: ps?.profiles.length ?? 0, kernels: engine.kernels.size, constBytes: engine.report.constBytes,
  };
  sections.push(['build', [Buffer.from(JSON.stringify(info, null, 1), 'utf8')]]);
  sections.push(['index', [Buffer.from(JSON.stringify(blobs.index), 'utf8')]]);
  sections.push(['engine', [engineJson]]);
  if (profilesJson) sections.push(['profiles', [profilesJson]]);
  sections.push(['data', blobs.chunks()]);

  const headerBytes = align(FIXED + ENTRY * sections.length, BLOB_ALIGN);
  const header = Buffer.alloc(headerBytes);
  const table: { name: string; offset: number; bytes: number; pad: number }[] = [];
  let off = 0;
  for (const [name, parts] of sections) {
    // the data section starts aligned so blob views need no copy
    const pad = name === 'data' ? align(off, BLOB_ALIGN) - off : 0;
    off += pad;
    const bytes = parts.reduce((a, p) => a + p.byteLength, 0);
    table.push({ name, offset: off, bytes, pad });
    off += bytes;
  }
  header.write(PLAN_MAGIC, 0, 'latin1');
  header.writeUInt32LE(PLAN_FORMAT_VERSION, 8);
  header.writeUInt32LE(headerBytes, 12);
  header.writeBigUInt64LE(BigInt(off), 16);
  header.writeUInt32LE(sections.length, 56);
  header.writeUInt32LE((hasCubins ? FLAG_CUBINS : 0) | (ps ? FLAG_PROFILES : 0), 60);
  writeField(header, 64, tsrtVersion());
  writeField(header, 80, engine.built.arch);
  header.writeUInt32LE(nvrtc[0], 96);
  header.writeUInt32LE(nvrtc[1], 100);
  header.writeUInt32LE(info.driver, 104);
  table.forEach((t, i) => {
    writeField(header, FIXED + i * ENTRY, t.name);
    header.writeBigUInt64LE(BigInt(t.offset), FIXED + i * ENTRY + 16);
    header.writeBigUInt64LE(BigInt(t.bytes), FIXED + i * ENTRY + 24);
  });
  const body: Uint8Array[] = [];
  sections.forEach(([, parts], i) => { if (table[i].pad) body.push(new Uint8Array(table[i].pad)); body.push(...parts); });
  const hash = createHash('sha256').update(header);
  for (const p of body) hash.update(p);
  hash.digest().copy(header, 24);

  // write next to the target and rename, so a crash never leaves a half-written plan under the real name
  const tmp = `${path}.tmp-${process.pid}`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'w');
    writeSync(fd, header);
    for (const p of body) writeSync(fd, p);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw new TsrtError('ENGINE_FILE', `${path}: cannot write the engine file: ${(e as Error).message}`, 'check the folder exists and is writable');
  }
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;

function writeField(b: Buffer, at: number, s: string): void {
  const bytes = Buffer.from(s, 'utf8');
  if (bytes.length > 16) throw new TsrtError('ENGINE_FILE', `internal: '${s}' does not fit a 16-byte header field`);
  bytes.copy(b, at);
}

const readField = (b: Uint8Array, at: number) => {
  const f = b.subarray(at, at + 16);
  const end = f.indexOf(0);
  return Buffer.from(f.subarray(0, end < 0 ? 16 : end)).toString('utf8');
};

// ---------------------------------------------------------------------------------------------------- loading

/** True when the file starts with the plan magic (so the CLI can take a .plan or an .onnx in the same argument). */
export function isPlanFile(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const b = Buffer.alloc(8);
    return readSync(fd, b, 0, 8, 0) === 8 && b.toString('latin1') === PLAN_MAGIC;
  } catch { return false; } finally { if (fd !== undefined) closeSync(fd); }
}


interface ParsedPlan { header: PlanHeader; section(name: string): Uint8Array | undefined }

/** Checks magic, format version, length and checksum, and reads the section table. */
function parsePlan(path: string, bytes: Uint8Array): ParsedPlan {
  const text = (a: number, b: number) => Buffer.from(bytes.subarray(a, b)).toString('latin1');
  if (bytes.length < 8 && PLAN_MAGIC.startsWith(text(0, bytes.length))) throw fail(path, `truncated: ${bytes.length} bytes, shorter than the ${FIXED}-byte header`);
  if (bytes.length < 8 || text(0, 8) !== PLAN_MAGIC) {
    const what = bytes.length >= 8 && bytes[0] === 0x08 ? ' (it looks like an ONNX model: run that with tsrt run directly)' : '';
    throw fail(path, `not a tsrt engine file: it does not start with '${PLAN_MAGIC}'${what}`, `build an engine file with: tsrt build MODEL.onnx -o ${path}`);
  }
  if (bytes.length < FIXED) throw fail(path, `truncated: ${bytes.length} bytes, shorter than the ${FIXED}-byte header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  const writer = readField(bytes, 64);
  if (version !== PLAN_FORMAT_VERSION) {
    throw fail(path, `engine file format ${version} (written by tsrt ${writer}); this tsrt ${tsrtVersion()} reads format ${PLAN_FORMAT_VERSION}`,
      `rebuild it with this tsrt: tsrt build MODEL.onnx -o ${path}`);
  }
  const headerBytes = dv.getUint32(12, true);
  const payload = Number(dv.getBigUint64(16, true));
  const count = dv.getUint32(56, true);
  if (count > 64 || headerBytes < FIXED + ENTRY * count || headerBytes % BLOB_ALIGN) {
    throw fail(path, `corrupt header: a section table of ${count} entries in ${headerBytes} header bytes`);
  }
  const expected = headerBytes + payload;
  if (bytes.length < expected) throw fail(path, `truncated: ${bytes.length} bytes of ${expected} (the write, copy or download was cut short)`);
  if (bytes.length > expected) throw fail(path, `${bytes.length - expected} unexpected bytes after the end of the engine data (the header says ${expected} bytes)`);
  const hash = createHash('sha256').update(bytes.subarray(0, 24)).update(new Uint8Array(32)).update(bytes.subarray(56)).digest();
  if (!hash.equals(bytes.subarray(24, 56))) {
    throw fail(path, 'checksum mismatch: the file is corrupted (the SHA-256 of its contents differs from the one stored when it was written)');
  }
  const sections: PlanHeader['sections'] = [];
  for (let i = 0; i < count; i++) {
    const at = FIXED + i * ENTRY;
    const s = { name: readField(bytes, at), offset: Number(dv.getBigUint64(at + 16, true)), bytes: Number(dv.getBigUint64(at + 24, true)) };
    if (s.offset + s.bytes > payload) throw fail(path, `corrupt section table: section '${s.name}' ends past the payload`);
    sections.push(s);
  }
  const section = (name: string) => {
    const s = sections.find((x) => x.name === name);
    return s && bytes.subarray(headerBytes + s.offset, headerBytes + s.offset + s.bytes);
  };
  const flags = dv.getUint32(60, true);
  const header: PlanHeader = {
    formatVersion: version, tsrtVersion: writer, arch: readField(bytes, 80),
    nvrtc: [dv.getUint32(96, true), dv.getUint32(100, true)], driver: dv.getUint32(104, true),
    hasCubins: !!(flags & FLAG_CUBINS), hasProfiles: !!(flags & FLAG_PROFILES), fileBytes: bytes.length, sections,
    build: jsonSection(path, section, 'build') as Record<string, unknown>,
  };
  return { header, section };
}

function jsonSection(path: string, section: ParsedPlan['section'], name: string, optional = false): unknown {
  const s = section(name);
  if (!s) {
    if (optional) return undefined;
    throw fail(path, `the '${name}' section is missing`);
  }
  try { return JSON.parse(Buffer.from(s).toString('utf8')); } catch (e) { throw fail(path, `the '${name}' section is not valid JSON: ${(e as Error).message}`); }
}

function readPlanBytes(path: string): Uint8Array {
  let buf: Buffer;
  try { buf = readFileSync(path); } catch (e) {
    throw new TsrtError('ENGINE_FILE', `${path}: cannot read the engine file: ${(e as Error).message}`, 'check the path, or build one: tsrt build MODEL.onnx -o ' + path);
  }
  if (buf.byteOffset % BLOB_ALIGN === 0) return buf;
  const copy = new Uint8Array(buf.length); // small files share Node's pool; blob views need alignment
  copy.set(buf);
  return copy;
}

/** Header and build info of an engine file (checked like loadEngine, without loading the engine). */
export function readPlanHeader(path: string): PlanHeader {
  return parsePlan(path, readPlanBytes(path)).header;
}

interface EngineState {
  graph: Graph;
  lowered: { steps: (Exclude<Step, { kind: 'kernel' }> | (Omit<Extract<Step, { kind: 'kernel' }>, 'kernel'> & { kernel: string }))[]; consts: Lowered['consts']; types: Lowered['types'] };
  memory: MemoryPlan;
  kernels: { name: string; source: KernelSource; cubin?: Uint8Array }[];
  report: BuildReport;
  pass: PassContext;
  fixedInputs?: Record<string, Tensor>;
  built: BuiltWith;
}

/** Loads an engine file: on the GPU with the stored cubins (no passes, no NVRTC), or on the CPU reference. */
export async function loadEngine(path: string, opts: LoadOptions = {}): Promise<Engine> {
  const { header: h, section } = parsePlan(path, readPlanBytes(path));
  const model = typeof h.build.model === 'string' ? h.build.model : 'MODEL.onnx';
  const warn = opts.warn ?? ((m: string) => process.emitWarning(m, { code: 'TSRT_ENGINE_FILE' }));
  const gpu = opts.device === 'cpu' ? false : cudaAvailable();
  if (opts.device === 'cuda' && !gpu) {
    throw new TsrtError('CUDA', 'no CUDA device found (libcuda.so.1 missing or no GPU)', 'run on a machine with an NVIDIA GPU and driver, or use --device cpu');
  }
  if (h.tsrtVersion !== tsrtVersion()) warn(`${path} was written by tsrt ${h.tsrtVersion}, this is tsrt ${tsrtVersion()} (same engine file format ${h.formatVersion}: loading it)`);
  if (gpu) checkPlanDevice(path, h, sharedCuda().deviceInfo(), warn);
  const index = jsonSection(path, section, 'index');
  const data = section('data') ?? new Uint8Array(0);
  if (!Array.isArray(index)) throw fail(path, 'the blob index is not a list');
  const decoder = new Decoder(path, (i) => {
    const e = index[i] as [number, number] | undefined;
    return e && e[0] + e[1] <= data.length ? data.subarray(e[0], e[0] + e[1]) : undefined;
  });
  const loaded: Engine[] = [];
  const restore = (raw: unknown) => {
    const e = restoreEngine(path, decoder.decode(raw) as EngineState, gpu, opts);
    loaded.push(e);
    return e;
  };
  try {
    const root = restore(jsonSection(path, section, 'engine'));
    const p = h.hasProfiles ? decoder.decode(jsonSection(path, section, 'profiles')) as { profiles: Profile[]; model: Model; options: BuildOptions; pinned: unknown[] } : undefined;
    if (p) {
      const pinned = p.pinned.map((x) => restoreEngine(path, x as EngineState, gpu, opts));
      loaded.push(...pinned);
      root.profileSet = new ProfileSet(p.model, p.profiles, { ...p.options, cacheDir: opts.cacheDir, log: opts.log }, build, pinned);
    }
    return root;
  } catch (e) {
    for (const x of loaded) x.dispose();
    if (e instanceof TsrtError) throw e;
    throw fail(path, `malformed engine data: ${(e as Error).message}`, rebuildHint(path, model));
  }
}

/** Kernels with their persistent grids refit to a GPU of `smCount` SMs (KernelSource.persistentTiles); others as they are. */
export function fitPersistentGrids<K extends { source: KernelSource }>(kernels: K[], smCount: number): K[] {
  return kernels.map((k) => {
    const tiles = k.source.persistentTiles;
    if (!tiles) return k;
    const [, y, z] = k.source.grid;
    return { ...k, source: { ...k.source, grid: [Math.min(tiles, smCount), y, z] } };
  });
}

function restoreEngine(path: string, s: EngineState, gpu: boolean, opts: LoadOptions): Engine {
  const stored = gpu ? fitPersistentGrids(s.kernels, sharedCuda().deviceInfo().sms) : s.kernels;
  const kernels = new Map(stored.map((k) => [k.name, { source: k.source, cubin: k.cubin }]));
  const steps: Step[] = s.lowered.steps.map((x) => {
    if (x.kind !== 'kernel') return x;
    const k = kernels.get(x.kernel);
    if (!k) throw fail(path, `malformed engine data: step '${x.layer}' launches unknown kernel '${x.kernel}'`);
    return { ...x, kernel: k.source };
  });
  const lowered: Lowered = { steps, consts: s.lowered.consts, types: s.lowered.types };
  const pass: PassContext = { ...s.pass, log: opts.log ?? (() => {}) };
  let runner: DeviceRunner | undefined;
  if (gpu) {
    runner = new DeviceRunner();
    try {
      runner.load(s.graph, lowered, s.memory, kernels, { cudaGraphs: opts.cudaGraphs ?? s.built.options.cudaGraphs ?? true, pdl: opts.pdl ?? s.built.options.pdl ?? pdlDefault() });
    } catch (e) { runner.dispose(); throw e; }
  }
  const engine = new Engine(s.graph, lowered, s.memory, gpu ? 'cuda' : 'cpu', s.report, pass, kernels, runner);
  engine.fixedInputs = s.fixedInputs;
  engine.built = s.built;
  return engine;
}

/** Refuses a plan this GPU cannot run (see the file comment for what refuses and what warns). */
export function checkPlanDevice(path: string, h: PlanHeader, info: { name: string; ccMajor: number; ccMinor: number; driverVersion: number; sms?: number },
  warn: (m: string) => void): void {
  const model = typeof h.build.model === 'string' ? h.build.model : 'MODEL.onnx';
  const sm = info.ccMajor * 10 + info.ccMinor;
  const gpuArch = `sm_${sm}`;
  const m = /^(sm|compute)_(\d+)([af]?)$/.exec(h.arch);
  if (!m) throw fail(path, `unknown target arch '${h.arch}' in the header`, rebuildHint(path, model));
  const planSm = Number(m[2]);
  // cubins (SASS) run on exactly their SM version; PTX (compute_XX) is compiled by the driver for any newer GPU
  if (m[1] === 'sm' ? planSm !== sm : planSm > sm) {
    throw fail(path, `built for ${h.arch}${h.build.device ? ` (${h.build.device})` : ''}, but this GPU (${info.name}) is ${gpuArch}`,
      `rebuild it on this machine: tsrt build ${model} -o ${path} (or with --arch ${gpuArch} elsewhere), or run it on the CPU reference with --device cpu`);
  }
  if (!h.hasCubins) throw fail(path, 'holds no compiled kernels (it was built with compileKernels: false), so it cannot run on a GPU', rebuildHint(path, model));
  const [dMajor, dMinor] = [Math.floor(info.driverVersion / 1000), Math.floor((info.driverVersion % 1000) / 10)];
  const [nMajor, nMinor] = h.nvrtc;
  const driver = `${dMajor}.${dMinor}`, nvrtc = `${nMajor}.${nMinor}`;
  const older = dMajor < nMajor || (dMajor === nMajor && dMinor < nMinor);
  if (nMajor && (dMajor < nMajor || (older && m[1] === 'compute'))) {
    throw fail(path, `its kernels were compiled by NVRTC ${nvrtc}, this driver supports CUDA ${driver} and cannot load them`,
      `update the NVIDIA driver to one for CUDA ${nvrtc}+, or rebuild with this machine's NVRTC: tsrt build ${model} -o ${path}`);
  }
  if (older) warn(`${path}: kernels compiled by NVRTC ${nvrtc} on a CUDA ${driver} driver (CUDA minor-version compatibility; rebuild if loading fails)`);
  // plans from before the SM count was recorded were lowered for 132
  const planSms = typeof h.build.sms === 'number' ? h.build.sms : 132;
  const smNote = info.sms !== undefined && info.sms !== planSms
    ? ` and lowered for ${planSms} SMs, this one has ${info.sms} (persistent grids are refit; split-K and tiles stay as built)` : '';
  if ((h.build.device && h.build.device !== info.name) || smNote) {
    warn(`${path} was built and tuned on ${String(h.build.device ?? 'another GPU')}${smNote}; this GPU is ${info.name} (same ${gpuArch}): it runs, but rebuild for the best tactics`);
  }
}
