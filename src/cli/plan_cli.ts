// CLI side of engine files and optimization profiles: `tsrt build model.onnx -o model.plan` (with trtexec-style
// --min-shapes/--opt-shapes/--max-shapes, repeated once per profile), and `tsrt run|bench` taking a .plan where they
// take a model (recognized by its magic bytes, whatever the extension).
import type { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { loadModel } from '../onnx/import.js';
import type { Tensor } from '../ir/types.js';
import { build, type BuildOptions, type Engine } from '../runtime/engine.js';
import { runGraph, runModelCpu } from '../runtime/cpu_executor.js';
import { isPlanFile, loadEngine, readPlanHeader } from '../runtime/plan.js';
import { describeProfile, parseProfileFlags, type Profile } from '../runtime/profiles.js';
import { parseShapes } from './io.js';

export interface ProfileFlags { minShapes?: string[]; optShapes?: string[]; maxShapes?: string[] }

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function withProfileOptions(c: Command): Command {
  return c
    .option('--min-shapes <spec>', 'optimization profile: smallest shapes, e.g. x:1x3x48x192 (repeat min/opt/max once per profile)', collect, [])
    .option('--opt-shapes <spec>', 'optimization profile: the shapes built and tuned ahead (alone: min = max = opt)', collect, [])
    .option('--max-shapes <spec>', 'optimization profile: largest shapes; other shapes in [min, max] are specialized on first use', collect, []);
}

export function profilesFromFlags(o: ProfileFlags): Profile[] | undefined {
  return parseProfileFlags(o.minShapes, o.optShapes, o.maxShapes, parseShapes);
}

/** Writes the engine file and says what went in. */
export function saveForCli(engine: Engine, path: string): void {
  const t0 = performance.now();
  engine.save(path);
  const mib = statSync(path).size / 1048576;
  console.log(`  wrote ${path} (${mib.toFixed(1)} MiB) in ${(performance.now() - t0).toFixed(0)} ms; run it with: tsrt run ${path}`);
  for (const [i, p] of (engine.profileSet?.profiles ?? []).entries()) console.log(`  ${describeProfile(p, i)}`);
}

/** Loads `path` when it is an engine file, else builds it as an ONNX model (shapes from its test data if not given). */
export async function openEngine(path: string, bo: BuildOptions, hooks: {
  printBuild: (e: Engine, model: string) => void; testDataShapes: (model: string) => Record<string, number[]> | undefined;
}): Promise<{ engine: Engine; plan: boolean }> {
  if (!isPlanFile(path)) {
    if (!bo.shapes && !bo.dims && !bo.profiles) bo.shapes = hooks.testDataShapes(path);
    const engine = await build(path, bo);
    hooks.printBuild(engine, path);
    return { engine, plan: false };
  }
  const t0 = performance.now();
  const engine = await loadEngine(path, {
    device: bo.device, cacheDir: bo.cacheDir, cudaGraphs: bo.cudaGraphs, pdl: bo.pdl, log: bo.log,
    warn: (m) => process.stderr.write(`tsrt: warning: ${m}\n`),
  });
  const ms = performance.now() - t0;
  const r = engine.report;
  console.log(`loaded ${path} in ${ms.toFixed(0)} ms (no passes, no NVRTC): ${r.kernels} kernel launches (${r.uniqueKernels} unique kernels), ${r.hostSteps} host steps; built for ${engine.built.arch}${engine.built.options.fp16 ? ', fp16' : engine.built.options.bf16 ? ', bf16' : ''}${engine.built.model ? ` from ${engine.built.model}` : ''} in ${(r.buildMs / 1000).toFixed(2)} s`);
  for (const [i, p] of (engine.profileSet?.profiles ?? []).entries()) console.log(`  ${describeProfile(p, i)}`);
  console.log(`  backend: ${engine.backend}${engine.backend === 'cpu' ? ' (no GPU found: the plan\'s graph runs on the CPU reference)' : ''}`);
  return { engine, plan: true };
}

/** CPU reference outputs for --compare-cpu: the original model when it can be found (for a plan: the model it was
 * built from, kept in profile plans or still on disk), else the plan's optimized graph. */
export function cpuReference(engine: Engine, path: string, plan: boolean, feeds: Map<string, Tensor>): { label: string; outs: Tensor[] } {
  const model = !plan ? loadModel(path)
    : engine.profileSet?.model ?? (engine.built.model && existsSync(engine.built.model) ? loadModel(engine.built.model) : undefined);
  if (model) return { label: 'CPU reference of the original model', outs: runModelCpu(model, feeds) };
  const values = runGraph(engine.graph, feeds);
  return { label: 'CPU reference of the plan\'s optimized graph (original model not found)', outs: engine.outputs.map((o) => values.get(o.name)!) };
}

/** `tsrt inspect model.plan`: the header (versions, arch, sections), build report, tactics and layers as JSON.
 * Returns false when `path` is not an engine file. */
export async function inspectPlan(path: string): Promise<boolean> {
  if (!isPlanFile(path)) return false;
  const header = readPlanHeader(path);
  const engine = await loadEngine(path, { device: 'cpu' });
  console.log(JSON.stringify({
    header, profiles: engine.profileSet?.profiles, tactics: engine.built.tactics, report: engine.report, layers: engine.layers(),
  }, null, 1));
  engine.dispose();
  return true;
}
