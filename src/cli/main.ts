// tsrt command line. Flag names follow trtexec / Polygraphy where they exist.
import { Command, Option } from 'commander';
import { existsSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TsrtError } from '../errors.js';
import { loadModel } from '../onnx/import.js';
import { build, buildForFeeds, type BuildOptions, type Engine } from '../runtime/engine.js';
import { runModelCpu } from '../runtime/cpu_executor.js';
import { familySummary } from '../runtime/autotune.js'; // [autotune]
import type { Model, Tensor } from '../ir/types.js';
import { compareTensors, runConformance, summarize } from './conformance.js';
import { accuracy, concreteShape, describe, parseDims, parseShapes, randomTensor, readTensor } from './io.js';
import { dumpInstrument, newPassContext } from '../passes/pass.js';
import { PIPELINE, optimize } from '../passes/pipeline.js';
import { printIr, toDot, writeEngineDumps } from './dumps.js';
import { registerBench } from './bench.js';
import { registerReport } from './report.js';
import { cpuReference, inspectPlan, openEngine, profilesFromFlags, saveForCli, withProfileOptions, type ProfileFlags } from './plan_cli.js';
import { registerCalibrate } from './calibrate.js';
import { precisionOptions, withPrecisionOptions, type PrecisionFlags } from './precision_flags.js';
import { registerCompare } from './compare.js';
import { buildWithBudgetCli, withBudgetOptions, type BudgetFlags } from './budget.js';
import { readCalibrationCache } from '../quant/cache.js';
import { describePrecisionTiming } from '../runtime/precision_timing.js';

const here = dirname(fileURLToPath(import.meta.url));
export const DEFAULT_MODEL = resolve(here, '../../models/ppocr_mobile_v2_cls/model.onnx');

export interface CommonOpts extends PrecisionFlags {
  fp16?: boolean; bf16?: boolean; shapes?: string; dims?: string; optLevel?: string; cacheDir?: string; device?: string;
  dumpDir?: string; cudaGraph?: boolean; pdl?: boolean; arch?: string;
  timingCache?: string | false; // [autotune]
  int8?: boolean; calibCache?: string;
}

export function withBuildOptions(c: Command): Command {
  return withPrecisionOptions(c
    .option('--fp16', 'fp16 storage and tensor cores (fp32 accumulation)')
    .option('--bf16', 'bf16 storage and tensor cores (fp32 accumulation; fp32\'s range, 8 mantissa bits); not with --fp16/--int8/--best')
    .option('--int8', 'int8 tensor cores where an activation scale is known (Q/DQ models, --calib-cache), fp16 elsewhere')
    .option('--calib-cache <file>', 'activation scales in TensorRT\'s calibration cache format (implies --int8)')
    .option('--shapes <spec>', 'concrete input shapes, e.g. input:32x3x224x224 (symbolic dims default to 1)')
    .option('--dims <spec>', 'sizes for named dims, e.g. batch=32')
    .option('--opt-level <n>', 'optimization level 0-5', '2')
    .option('--cache-dir <dir>', 'kernel cache folder')
    .option('--arch <sm>', 'NVRTC target (default: the GPU\'s, else sm_90)')
    .addOption(new Option('--device <d>', 'where to run').choices(['auto', 'cuda', 'cpu']).default('auto'))
    .option('--dump-dir <dir>', 'write the IR after each pass, every kernel (.cu) and the layer info here')
    .option('--no-cuda-graph', 'launch kernels one by one instead of replaying a CUDA graph')
    .option('--pdl', 'programmatic dependent launch (Hopper): each kernel launches while the previous one finishes (the default; TSRT_PDL=0 turns the default off)')
    .option('--no-pdl', 'plain launches: each kernel starts after the previous one ends')
    // [autotune]
    .option('--timing-cache <file>', 'autotuning results at --opt-level 3+ (default: <cache>/../timing-cache.json)')
    .option('--no-timing-cache', 'autotune without reading or writing a timing cache'));
}

export function buildOptions(o: CommonOpts): BuildOptions {
  return {
    fp16: !!o.fp16, bf16: !!o.bf16, int8: !!o.int8 || !!o.calibCache, int8Scales: o.calibCache ? readCalibrationCache(o.calibCache).scales : undefined,
    shapes: parseShapes(o.shapes), dims: parseDims(o.dims), optLevel: Number(o.optLevel ?? 2),
    cacheDir: o.cacheDir, arch: o.arch, device: (o.device ?? 'auto') as BuildOptions['device'], cudaGraphs: o.cudaGraph !== false, pdl: o.pdl === undefined ? undefined : !!o.pdl,
    timingCache: o.timingCache, // [autotune]
    instruments: dumpDir(o) ? [dumpInstrument(join(dumpDir(o)!, 'ir'), printIr)] : [],
    log: (m) => { if (process.env.TSRT_DEBUG) process.stderr.write(m + '\n'); },
    ...precisionOptions(o), // --layer-precisions, --op-precisions, --best
  };
}

/** Shapes of the inputs in the model's test_data_set_0, when it has one (used when --shapes is not given). */
export function testDataShapes(model: string): Record<string, number[]> | undefined {
  const dir = join(dirname(model), 'test_data_set_0');
  if (!existsSync(join(dir, 'input_0.pb'))) return undefined;
  const m = loadModel(model, { allowUnsupported: true });
  const out: Record<string, number[]> = {};
  m.graph.inputs.forEach((vi, k) => {
    const f = join(dir, `input_${k}.pb`);
    if (existsSync(f)) out[vi.name] = readTensor(f).dims;
  });
  return out;
}

/** --dump-dir, or ./tsrt-debug when TSRT_DEBUG is set. */
function dumpDir(o: CommonOpts): string | undefined {
  return o.dumpDir ?? (process.env.TSRT_DEBUG ? 'tsrt-debug' : undefined);
}

function writeDumps(engine: Engine, dir: string): void {
  writeEngineDumps(engine, dir, process.argv.slice(2));
}

function printBuild(engine: Engine, model: string): void {
  const r = engine.report;
  const mb = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
  console.log(`built ${model}: ${engine.graph.nodes.length} nodes -> ${r.kernels} kernel launches (${r.uniqueKernels} unique kernels), ${r.hostSteps} host steps`);
  console.log(`  NVRTC: ${r.uniqueKernels} kernels compiled in ${(r.compileMs / 1000).toFixed(2)} s (${r.cacheHits} from cache)`);
  if (r.tuning.timed || r.tuning.cached) { // [autotune]
    console.log(`  autotune: ${r.tuning.timed} kernels timed, ${r.tuning.cached} from the timing cache, ${r.tuning.heuristic} heuristic, ${(r.tuning.ms / 1000).toFixed(1)} s`);
  }
  if (r.tuning.families) console.log(`  autotune kernel tactics: ${familySummary(r.tuning.families)}`); // [autotune]
  for (const w of r.tuning.warnings) console.log(`  autotune warning: ${w}`); // [autotune]
  if (r.precisionTiming) for (const l of describePrecisionTiming(r.precisionTiming)) console.log(`  ${l}`);
  console.log(`  memory: activations ${mb(r.arenaBytes)} planned (naive ${mb(r.naiveBytes)}), weights ${mb(r.constBytes)}`);
  console.log(`  backend: ${engine.backend}${engine.backend === 'cpu' ? ' (no GPU found: kernels compiled, run on the CPU reference)' : ''}; build ${(r.buildMs / 1000).toFixed(2)} s`);
}

/** Inputs from --input name=file, the model's test_data_set_0, or seeded random data. */
export function gatherInputs(engine: Engine, model: string, specs: string[] = [], shapes?: Record<string, number[]>): Map<string, Tensor> {
  const feeds = new Map<string, Tensor>();
  for (const s of specs) {
    const i = s.indexOf('=');
    const [name, file] = i < 0 ? [engine.inputs[0]?.name, s] : [s.slice(0, i), s.slice(i + 1)];
    feeds.set(name, readTensor(file));
  }
  const testDir = join(dirname(model), 'test_data_set_0');
  engine.inputs.forEach((vi, k) => {
    if (feeds.has(vi.name)) return;
    const pb = join(testDir, `input_${k}.pb`);
    if (!specs.length && existsSync(pb)) {
      const t = readTensor(pb);
      // a profile engine takes other shapes too (and refuses those outside its profiles)
      if (t.dims.join() === (vi.type.shape as number[]).join() || engine.profileSet) { feeds.set(vi.name, t); return; }
    }
    feeds.set(vi.name, randomTensor(vi.type.dtype, concreteShape(vi, shapes), k + 1));
  });
  return feeds;
}

export function makeProgram(): Command {
  const program = new Command('tsrt')
    .description('tsrt: an ONNX -> CUDA inference compiler (TensorRT-class) in TypeScript')
    .showHelpAfterError()
    .addHelpText('after', `
Examples:
  tsrt run                                   build and run the bundled default model
  tsrt build model.onnx --fp16 --shapes input:32x3x224x224 --dump-dir dump/
  tsrt build model.onnx -o model.plan --min-shapes x:1x3x48x192 --opt-shapes x:4x3x48x192 --max-shapes x:8x3x48x192
  tsrt run model.plan --input x=batch3.npy     load the engine file (no rebuild); any batch 1-8
  tsrt run model.onnx --input input=x.npy --compare-cpu
  tsrt bench model.onnx --fp16 --iterations 200
  tsrt conformance ../shared/onnx-tests/node --backend cpu`);

  withBudgetOptions(withProfileOptions(withBuildOptions(program.command('build').argument('<model>', 'ONNX model file'))))
    .description('optimize a model, generate and compile its kernels, plan memory; -o writes an engine file')
    .option('-o, --output <file>', 'write the engine file (.plan) here; tsrt run/bench load it without rebuilding')
    .action(async (model: string, o: CommonOpts & ProfileFlags & BudgetFlags & { output?: string }) => {
      const bo = { ...buildOptions(o), profiles: profilesFromFlags(o) };
      const engine = o.accuracyBudget ? await buildWithBudgetCli(model, bo, o) : await build(model, bo);
      printBuild(engine, model);
      if (o.output) saveForCli(engine, o.output);
      const dd = dumpDir(o);
      if (dd) { writeDumps(engine, dd); console.log(`  dumps in ${dd}: ir/NN-<pass>.ir, kernels/*.cu, fusion.md, layers.json, report.json, repro.sh`); }
      engine.dispose();
    });

  withBuildOptions(program.command('run').argument('[model]', 'ONNX model or engine file (.plan: build options are ignored, --shapes picks random input shapes); default: the bundled PaddleOCR classifier'))
    .description('build and run a model; compare with the CPU reference of the original model')
    .option('--input <name=file...>', 'input data (.pb TensorProto or .npy); default: the model\'s test_data_set_0 or seeded random')
    .option('--compare-cpu', 'also run the unoptimized model on the CPU reference and compare')
    .option('--rtol <r>', 'relative tolerance for --compare-cpu', '1e-3')
    .option('--atol <a>', 'absolute tolerance for --compare-cpu', '1e-4')
    .action(async (modelArg: string | undefined, o: CommonOpts & { input?: string[]; compareCpu?: boolean; rtol: string; atol: string }) => {
      const model = modelArg ?? DEFAULT_MODEL;
      const isDefault = !modelArg;
      const bo = buildOptions(o);
      const { engine, plan } = await openEngine(model, bo, { printBuild, testDataShapes });
      if (dumpDir(o)) writeDumps(engine, dumpDir(o)!);
      const feeds = gatherInputs(engine, model, o.input, plan ? bo.shapes : undefined);
      const t0 = performance.now();
      const outs = await engine.run(feeds);
      console.log(`ran in ${(performance.now() - t0).toFixed(1)} ms (${engine.backend})`);
      for (const [k, v] of outs) console.log(`  ${k}: ${describe(v)}`);
      let failed = false;
      if (o.compareCpu || isDefault) {
        const ref = cpuReference(engine, model, plan, feeds);
        engine.outputs.forEach((vi, k) => {
          const why = compareTensors(outs.get(vi.name)!, ref.outs[k], Number(o.rtol), Number(o.atol) * (o.bf16 || engine.built.options.bf16 ? 800 : o.fp16 || engine.built.options.fp16 ? 100 : 1));
          console.log(`  vs ${ref.label}, ${vi.name}: ${why ?? 'match'}`);
          if (why) failed = true;
        });
      }
      // Reference outputs shipped with the model (ONNX test layout): report accuracy like Polygraphy does.
      for (const [k, vi] of engine.outputs.entries()) {
        const exp = join(dirname(model), 'test_data_set_0', `output_${k}.pb`);
        if (!existsSync(exp) || o.input?.length) continue;
        const acc = accuracy(outs.get(vi.name)!, readTensor(exp));
        console.log(`  vs reference ${basename(exp)}: max abs ${acc.maxAbs.toExponential(3)} (${(acc.maxAbs / acc.range).toExponential(2)} of range), cosine ${acc.cosine.toFixed(6)}, argmax ${acc.argmaxMatch ? 'same' : 'DIFFERENT'}`);
        // bf16 keeps 8 mantissa bits to fp16's 11: its outputs sit ~8x further from fp32
        const ok = o.bf16 ? acc.cosine >= 0.995 && acc.argmaxMatch : o.fp16 ? acc.cosine >= 0.999 && acc.argmaxMatch : acc.maxAbs <= 1e-3 * acc.range;
        if (!ok) { failed = true; console.log(`  accuracy check FAILED (${o.bf16 ? 'bf16: cosine >= 0.995 and same argmax' : o.fp16 ? 'fp16: cosine >= 0.999 and same argmax' : 'fp32: max abs <= 1e-3 of the output range'})`); }
      }
      engine.dispose();
      if (failed) process.exitCode = 1;
    });

  registerBench(program, printBuild);

  program.command('conformance').argument('<dir>', 'folder of ONNX backend tests (model.onnx + test_data_set_*)')
    .description('run ONNX backend conformance tests; prints PASS|FAIL|UNSUPPORTED per test and a count line')
    .addOption(new Option('--backend <b>', 'cpu reference or cuda engine').choices(['cpu', 'cuda']).default('cpu'))
    .option('--rtol <r>', 'relative tolerance', '1e-3')
    .option('--atol <a>', 'absolute tolerance', '1e-7')
    .option('--filter <re>', 'only tests whose name matches')
    .option('--fp16', 'cuda backend in fp16 (use with looser tolerances)')
    .action(async (dir: string, o: { backend: string; rtol: string; atol: string; filter?: string; fp16?: boolean }) => {
      const backend = o.backend === 'cuda'
        ? async (model: Model, feeds: Map<string, Tensor>) => {
          const engine = await buildForFeeds(model, feeds, { device: 'cuda', fp16: !!o.fp16, allowHost: true });
          try {
            const outs = await engine.run(feeds);
            return engine.outputs.map((vi) => outs.get(vi.name)!);
          } finally { engine.dispose(); }
        }
        : undefined;
      const results = await runConformance(dir, {
        rtol: Number(o.rtol), atol: Number(o.atol), filter: o.filter ? new RegExp(o.filter) : undefined, backend,
        onResult: (r) => console.log(`${r.status} ${r.name}${r.reason ? ' ' + r.reason : ''}`),
      });
      console.log(summarize(results));
      if (results.some((r) => r.status === 'FAIL')) process.exitCode = 1;
    });

  withBuildOptions(program.command('dump').argument('<model>', 'ONNX model file'))
    .description('print the graph as imported, or after a pass of the build pipeline')
    .addOption(new Option('--format <f>', 'output format').choices(['text', 'json', 'dot']).default('text'))
    .option('--after <pass>', `stop after this pass (${[...new Set(PIPELINE.map((p) => p.name))].join(', ')}); default: as imported`)
    .option('-o, --output <file>', 'write to a file; with --format dot and an .svg name, render with Graphviz')
    .action(async (model: string, o: CommonOpts & { format: string; after?: string; output?: string }) => {
      const m = loadModel(model, { allowUnsupported: true });
      let g = m.graph;
      if (o.after) {
        const names = PIPELINE.map((p) => p.name);
        const idx = names.lastIndexOf(o.after);
        if (idx < 0) throw new TsrtError('USAGE', `no pass named '${o.after}'`, `passes: ${[...new Set(names)].join(', ')}`);
        const bo = buildOptions(o);
        const ctx = newPassContext({ optLevel: bo.optLevel, fp16: bo.fp16, shapes: bo.shapes ?? testDataShapes(model), dims: bo.dims });
        g = optimize(g, ctx, [], PIPELINE.slice(0, idx + 1));
      }
      const text = o.format === 'dot' ? toDot(g) : o.format === 'json' ? JSON.stringify(graphJson(g), null, 1) + '\n' : printIr(g);
      if (!o.output) { process.stdout.write(text); return; }
      if (o.output.endsWith('.svg') && o.format === 'dot') {
        const r = spawnSync('dot', ['-Tsvg', '-o', o.output], { input: text });
        if (r.error || r.status !== 0) throw new TsrtError('USAGE', 'Graphviz `dot` is not installed or failed', 'apt-get install graphviz, or write a .dot file');
      } else writeFileSync(o.output, text);
      console.log(`wrote ${o.output}`);
    });

  withBuildOptions(program.command('inspect').argument('<model>', 'ONNX model or engine file (.plan: also its header)'))
    .description('print the engine\'s layers (kernels, grids, host fallbacks) as JSON')
    .action(async (model: string, o: CommonOpts) => {
      if (await inspectPlan(model)) return;
      const engine = await build(model, { ...buildOptions(o), compileKernels: false, device: 'cpu' });
      console.log(JSON.stringify({ report: engine.report, layers: engine.layers() }, null, 1));
    });

  registerReport(program);
  registerCalibrate(program);
  registerCompare(program);
  return program;
}

export async function main(argv = process.argv): Promise<void> {
  try {
    await makeProgram().parseAsync(argv);
  } catch (e) {
    if (e instanceof TsrtError) {
      console.error(`tsrt: error[${e.code}]: ${e.message}`);
      process.exitCode = e.code === 'USAGE' || e.code === 'INPUT' ? 2 : e.code === 'UNSUPPORTED' ? 3 : 1;
    } else {
      console.error(`tsrt: ${(e as Error).stack ?? e}`);
      process.exitCode = 1;
    }
  }
}

function graphJson(g: import('../ir/types.js').Graph): unknown {
  return {
    name: g.name, opset: g.opset,
    inputs: g.inputs, outputs: g.outputs,
    initializers: [...g.initializers].map(([name, t]) => ({ name, dtype: t.dtype, dims: t.dims })),
    nodes: g.nodes.map((n) => ({ name: n.name, op: n.op, domain: n.domain, inputs: n.inputs, outputs: n.outputs,
      attrs: Object.fromEntries(Object.entries(n.attrs).map(([k, a]) => [k, a.kind === 'tensor' ? { dtype: a.value.dtype, dims: a.value.dims } : a.kind === 'graph' ? `<graph ${a.value.name}>` : a.kind === 'graphs' ? '<graphs>' : a.value])),
      types: n.outputs.map((o) => g.valueTypes.get(o) ?? null) })),
  };
}
