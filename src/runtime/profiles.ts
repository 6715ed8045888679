// Optimization profiles (TensorRT's min/opt/max input shapes). tsrt's kernels are specialized to static shapes
// (grids, strides and tile configs are baked into each kernel), so a profile engine is honestly a set of specialized
// engines: each profile's opt shape is built (and autotuned) at build time; any other shape inside a profile's
// [min, max] is built the first time it is run (passes + lowering; NVRTC finds shape-independent kernels in the
// kernel cache, the autotuner its earlier choices in the timing cache) and kept in a small LRU. A shape outside
// every profile is refused with the list of profiles.
import { InputError, TsrtError } from '../errors.js';
import { shapeStr } from '../ir/tensor.js';
import type { Graph, Model, Tensor } from '../ir/types.js';
import type { BuildOptions, Engine } from './engine.js';

export interface Profile {
  min: Record<string, number[]>;
  opt: Record<string, number[]>;
  max: Record<string, number[]>;
}

export type BuildFn = (model: Model, opts: BuildOptions) => Promise<Engine>;

/** Engines built on demand for shapes other than the profiles' opt shapes (each holds device memory). */
export const PROFILE_CACHE_SIZE = 8;

const dimsText = (d: number[]) => (d.length ? d.join('x') : 'scalar');

/** One line per input: `x: min 1x3x48x192, opt 4x3x48x192, max 8x3x48x192`. */
export function describeProfile(p: Profile, index: number): string {
  return `profile ${index}: ${Object.keys(p.opt).map((k) => `${k} min ${dimsText(p.min[k])} opt ${dimsText(p.opt[k])} max ${dimsText(p.max[k])}`).join('; ')}`;
}

/** Parses repeated trtexec-style flags: the i-th --min-shapes, --opt-shapes and --max-shapes form profile i; a profile
 * with only --opt-shapes has min = max = opt (as trtexec). */
export function parseProfileFlags(min: string[] = [], opt: string[] = [], max: string[] = [],
  parse: (s: string) => Record<string, number[]> | undefined): Profile[] | undefined {
  if (!min.length && !opt.length && !max.length) return undefined;
  const n = opt.length;
  if (!n || (min.length && min.length !== n) || (max.length && max.length !== n)) {
    throw new TsrtError('USAGE', `got ${min.length} --min-shapes, ${opt.length} --opt-shapes and ${max.length} --max-shapes`,
      'give one --opt-shapes per profile, and as many --min-shapes and --max-shapes (or none, meaning min = max = opt); repeat the three flags for each profile');
  }
  const p = (s: string, flag: string) => {
    try { return parse(s) ?? {}; } catch (e) { throw new TsrtError('USAGE', `${flag} ${s}: ${(e as Error).message}`, 'write shapes as input:1x3x224x224,other:4x8'); }
  };
  return opt.map((o, i) => {
    const optShapes = p(o, '--opt-shapes');
    return { min: min.length ? p(min[i], '--min-shapes') : optShapes, opt: optShapes, max: max.length ? p(max[i], '--max-shapes') : optShapes };
  });
}

/** Checks every profile against the model's inputs; throws one USAGE error naming the profile and input. */
export function validateProfiles(g: Graph, profiles: Profile[], fixed: Record<string, unknown> = {}, source = 'model'): void {
  const inputs = g.inputs.filter((vi) => !(vi.name in fixed));
  const names = inputs.map((vi) => vi.name).join(', ');
  profiles.forEach((p, i) => {
    const bad = (msg: string, hint: string) => new TsrtError('USAGE', `${source}: optimization profile ${i}: ${msg}`, hint);
    const named = [...new Set([...Object.keys(p.min), ...Object.keys(p.opt), ...Object.keys(p.max)])];
    for (const k of named) if (!inputs.some((vi) => vi.name === k)) throw bad(`'${k}' is not an input of the model`, `inputs are: ${names}`);
    for (const k of named) {
      if (!(k in p.opt) || !(k in p.min) || !(k in p.max)) throw bad(`input '${k}' needs min, opt and max shapes`, 'name the same inputs in --min-shapes, --opt-shapes and --max-shapes');
    }
    if (!Object.keys(p.opt).length) throw bad('names no input', `give shapes for the dynamic inputs (${names})`);
    for (const k of Object.keys(p.opt)) {
      const declared = inputs.find((vi) => vi.name === k)!.type.shape;
      const [lo, mid, hi] = [p.min[k], p.opt[k], p.max[k]];
      for (const [what, d] of [['min', lo], ['opt', mid], ['max', hi]] as const) {
        if (d.length !== declared.length) throw bad(`${what} shape ${dimsText(d)} of '${k}' has rank ${d.length}, the input is ${shapeStr(declared)}`, `give ${declared.length} dims`);
        declared.forEach((s, j) => {
          if (typeof s === 'number' && d[j] !== s) throw bad(`${what} shape ${dimsText(d)} of '${k}' changes fixed dim ${j} = ${s}`, 'only symbolic (named) dims can vary');
        });
      }
      lo.forEach((_, j) => {
        if (!(lo[j] <= mid[j] && mid[j] <= hi[j])) {
          throw bad(`'${k}' dim ${j}: min ${lo[j]} <= opt ${mid[j]} <= max ${hi[j]} does not hold`, 'order the shapes min <= opt <= max in every dim');
        }
      });
    }
  });
}

const sameShapes = (a: Record<string, number[]>, b: Record<string, number[]>) =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([k, d]) => b[k]?.join() === d.join());

const inputShapes = (e: Engine): Record<string, number[]> => Object.fromEntries(e.inputs.map((vi) => [vi.name, vi.type.shape as number[]]));

export class ProfileSet {
  private cache = new Map<string, Promise<Engine>>();

  /**
   * @param model the imported model before any pass: every pass from specialize-shapes on depends on the shapes
   * @param options the build options, without profiles and shapes of the profile inputs
   * @param pinned engines built at the other profiles' opt shapes (never evicted)
   */
  constructor(readonly model: Model, readonly profiles: Profile[], readonly options: BuildOptions, private readonly buildFn: BuildFn,
    readonly pinned: Engine[] = [], readonly capacity = PROFILE_CACHE_SIZE) {}

  /** The engine for the feeds' shapes: `root` when they are its shapes, else a pinned or cached one, else a new one. */
  engineFor(feeds: Map<string, Tensor>, root: Engine): Promise<Engine> {
    const shapes: Record<string, number[]> = {};
    for (const vi of root.inputs) {
      const t = feeds.get(vi.name);
      if (!t) return Promise.resolve(root); // root's input check names what is missing
      shapes[vi.name] = t.dims;
    }
    return this.engineForShapes(shapes, root);
  }

  /** Also for warming a shape up ahead of time. */
  engineForShapes(shapes: Record<string, number[]>, root: Engine): Promise<Engine> {
    if (sameShapes(shapes, inputShapes(root))) return Promise.resolve(root);
    const pin = this.pinned.find((e) => sameShapes(shapes, inputShapes(e)));
    if (pin) return Promise.resolve(pin);
    const key = JSON.stringify(Object.entries(shapes).sort(([a], [b]) => a.localeCompare(b)));
    const hit = this.cache.get(key);
    if (hit) { this.cache.delete(key); this.cache.set(key, hit); return hit; }
    if (!this.profiles.some((p) => inProfile(p, shapes, inputShapes(root)))) {
      throw new InputError(`input shapes ${Object.entries(shapes).map(([k, d]) => `${k}:${dimsText(d)}`).join(',')} are outside every optimization profile of the engine:\n  `
        + this.profiles.map(describeProfile).join('\n  '),
      'run with shapes inside a profile, or rebuild with a profile that covers them (--min-shapes/--opt-shapes/--max-shapes)');
    }
    const made = this.buildFn(this.model, {
      ...this.options, profiles: undefined, device: root.backend, shapes: { ...this.options.shapes, ...shapes },
    });
    this.cache.set(key, made);
    made.catch(() => { if (this.cache.get(key) === made) this.cache.delete(key); });
    while (this.cache.size > this.capacity) {
      const [oldKey, old] = this.cache.entries().next().value as [string, Promise<Engine>];
      this.cache.delete(oldKey);
      old.then((e) => e.dispose(), () => {});
    }
    return made;
  }

  /** Shapes built on demand so far, most recently used last. */
  cachedShapes(): string[] { return [...this.cache.keys()]; }

  dispose(): void {
    for (const e of this.pinned) e.dispose();
    for (const p of this.cache.values()) p.then((e) => e.dispose(), () => {});
    this.cache.clear();
  }
}

/** Inputs a profile names must lie in [min, max]; the others must keep the root engine's (static) shapes. */
function inProfile(p: Profile, shapes: Record<string, number[]>, rootShapes: Record<string, number[]>): boolean {
  return Object.entries(shapes).every(([k, d]) => {
    if (!(k in p.opt)) return d.join() === rootShapes[k]?.join();
    const [lo, hi] = [p.min[k], p.max[k]];
    return d.length === lo.length && d.every((x, j) => lo[j] <= x && x <= hi[j]);
  });
}

/** build() with BuildOptions.profiles: the engine of profile 0's opt shape, holding the other profiles' opt-shape
 * engines and building other shapes on demand. */
export async function buildProfiles(model: Model, opts: BuildOptions, buildFn: BuildFn): Promise<Engine> {
  const profiles = opts.profiles!;
  validateProfiles(model.graph, profiles, opts.inputValues, model.source);
  const base: BuildOptions = { ...opts, profiles: undefined };
  const root = await buildFn(model, { ...base, shapes: { ...opts.shapes, ...profiles[0].opt } });
  const pinned: Engine[] = [];
  try {
    for (const p of profiles.slice(1)) {
      const shapes = { ...opts.shapes, ...p.opt };
      if ([root, ...pinned].some((e) => sameShapes(pick(shapes, e), inputShapes(e)))) continue;
      pinned.push(await buildFn(model, { ...base, shapes, device: root.backend }));
    }
  } catch (e) {
    root.dispose();
    for (const x of pinned) x.dispose();
    throw e;
  }
  root.profileSet = new ProfileSet(model, profiles, base, buildFn, pinned);
  return root;
}

const pick = (shapes: Record<string, number[]>, e: Engine) => Object.fromEntries(e.inputs.map((vi) => [vi.name, shapes[vi.name] ?? (vi.type.shape as number[])]));
