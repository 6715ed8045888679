// `tsrt report`: one self-contained HTML page about a build (inline CSS and SVG, no scripts, no external URLs),
// so it can be mailed, attached to an issue or opened offline: build summary, the graph before and after fusion,
// every fusion and every rejected candidate with its reason, the engine's layers, and per-layer GPU time.
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { loadModel } from '../onnx/import.js';
import { build, type BuildOptions, type Engine } from '../runtime/engine.js';
import type { Graph, Tensor } from '../ir/types.js';
import type { Instrument } from '../passes/pass.js';
import { FUSION_PASSES } from '../passes/fuse.js';
import { graphToSvg } from './svg_layout.js';
import { buildOptions, gatherInputs, testDataShapes, withBuildOptions, type CommonOpts } from './main.js';
import type { PrecisionTimingReport } from '../runtime/precision_timing.js';

export interface ReportOptions extends BuildOptions {
  /** Time every layer on the GPU (engine.profile); on the CPU backend the page says no timings were measured. */
  profile?: boolean;
  /** Inputs for the profile run (default: seeded random data shaped like the engine's inputs). */
  feeds?: Map<string, Tensor>;
}

export interface ReportData {
  model: string;
  engine: Engine;
  imported: Graph;
  beforeFusion: Graph;
  profile?: { layer: string; op: string; ms: number }[];
}

const esc = (s: unknown) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const mib = (b: number) => `${(b / 1048576).toFixed(2)} MiB`;
const ms = (x: number) => `${x.toFixed(x < 10 ? 2 : 0)} ms`;

/** Builds the model (capturing the graph that enters the fusion passes) and, when asked, profiles it. */
export async function collectReport(model: string, opts: ReportOptions = {}): Promise<ReportData> {
  const m = loadModel(model);
  const fusionNames = new Set(FUSION_PASSES.map((p) => p.name));
  let beforeFusion: Graph = m.graph;
  let fusing = false;
  const capture: Instrument = {
    after(pass, g) {
      if (fusionNames.has(pass.name)) fusing = true;
      if (!fusing) beforeFusion = g;
    },
  };
  const engine = await build(m, { ...opts, instruments: [...(opts.instruments ?? []), capture] });
  let profile: ReportData['profile'];
  if (opts.profile && engine.backend === 'cuda') {
    const feeds = opts.feeds ?? gatherInputs(engine, model);
    profile = await engine.profile(feeds);
  }
  return { model, engine, imported: m.graph, beforeFusion, profile };
}

export async function makeReport(model: string, opts: ReportOptions = {}): Promise<string> {
  const data = await collectReport(model, opts);
  try {
    return renderReport(data, opts);
  } finally {
    data.engine.dispose();
  }
}

export function renderReport(d: ReportData, opts: ReportOptions = {}): string {
  const e = d.engine, r = e.report, ctx = e.passContext;
  const layers = e.layers();
  const kindOf = new Map(layers.map((l) => [l.name, l.kind]));
  const fusedInto = new Map(ctx.fusions.map((f) => [f.into, f]));
  // Fusions chain (Conv+BN, then +Relu): expand a result into the original nodes it replaced.
  const originals = (n: string, depth = 0): string[] => {
    const f = fusedInto.get(n);
    return f && depth < 64 ? f.nodes.flatMap((x) => originals(x, depth + 1)) : [n];
  };
  const precision = opts.int8 ? 'int8 where scales are known, fp16 elsewhere' : opts.fp16 ? 'fp16 storage, fp32 accumulation' : opts.bf16 ? 'bf16 storage, fp32 accumulation' : 'fp32';
  const summary: [string, string][] = [
    ['model', d.model],
    ['nodes', `${d.imported.nodes.length} imported, ${d.beforeFusion.nodes.length} before fusion, ${e.graph.nodes.length} after`],
    ['kernels', `${r.kernels} launches, ${r.uniqueKernels} unique kernels, ${r.hostSteps} host steps`],
    ['fusions', `${ctx.fusions.length} fused, ${ctx.rejected.length} candidates not fused`],
    ['precision', precision],
    ['backend', e.backend === 'cuda' ? 'cuda' : 'cpu (no GPU: kernels compiled, run on the CPU reference)'],
    ['activations', `${mib(r.arenaBytes)} arena (${mib(r.naiveBytes)} without reuse)`],
    ['weights', mib(r.constBytes)],
    ['build time', `${ms(r.buildMs)} (NVRTC ${ms(r.compileMs)}, ${r.cacheHits} kernels from cache)`],
    ['optimization level', String(opts.optLevel ?? 2)],
    ...(r.precisionTiming ? [['precision by timing', `${r.precisionTiming.moved.length} of ${r.precisionTiming.layers.length} int8 layers moved to fp16, predicted saving ${r.precisionTiming.predicted.savingMs.toFixed(4)} ms`] as [string, string]] : []),
  ];
  const passRows = r.passes.map((p) => `<tr><td>${esc(p.pass)}</td><td class="num">${p.ms.toFixed(2)}</td><td class="num">${p.nodes}</td></tr>`);

  const beforeSvg = graphToSvg(d.beforeFusion, {
    id: 'before',
    classOf: (n) => (ctx.fusions.some((f) => f.nodes.includes(n)) ? 'merged' : undefined),
  });
  const afterSvg = graphToSvg(e.graph, {
    id: 'after',
    classOf: (n) => kindOf.get(n) === 'host' ? 'host' : kindOf.get(n) === 'alias' ? 'alias' : undefined,
    titleOf: (n) => { const f = fusedInto.get(n); return f ? `fused by ${f.pass} (${f.kind}) from ${originals(n).join(', ')}` : undefined; },
  });

  const fusionRows = ctx.fusions.map((f) => `<tr><td>${esc(f.pass)}</td><td>${esc(f.kind)}</td><td class="name">${esc(f.into)}</td><td>${f.nodes.map((n) => `<code>${esc(n)}</code>`).join(' ')}</td></tr>`);
  const rejectedRows = ctx.rejected.map((f) => `<tr><td>${esc(f.pass)}</td><td>${esc(f.kind)}</td><td>${f.nodes.map((n) => `<code>${esc(n)}</code>`).join(' ')}</td><td>${esc(f.reason)}</td></tr>`);

  const stepOut = (name: string) => {
    const node = e.graph.nodes.find((n) => n.name === name);
    const o = node?.outputs.find(Boolean);
    const t = o ? e.lowered.types.get(o) : undefined;
    return t ? `${t.dtype}[${t.dims.join(',')}]` : '';
  };
  const layerRows = layers.map((l, i) => `<tr class="${l.kind}"><td class="num">${i}</td><td class="name">${esc(l.name)}</td><td>${esc(l.op)}</td><td>${l.kind}</td>`
    + `<td><code>${esc(l.kernel ?? '')}</code></td><td>${l.grid ? l.grid.join('&times;') : ''}</td><td>${l.block ? l.block.join('&times;') : ''}</td>`
    + `<td>${esc(stepOut(l.name))}</td><td>${esc(l.reason ?? (fusedInto.has(l.name) ? `fused: ${originals(l.name).join(', ')}` : ''))}</td></tr>`);

  const profileHtml = d.profile ? profileChart(d.profile)
    : opts.profile ? '<p class="note">no GPU: timings not measured (the engine ran on the CPU reference; run <code>tsrt report --profile</code> on a machine with an NVIDIA GPU).</p>'
      : '<p class="note">not profiled: pass <code>--profile</code> (needs a GPU) for per-layer GPU times.</p>';

  const title = `tsrt report: ${d.model}`;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>${CSS}</style></head>
<body>
<h1>${esc(title)}</h1>
<section id="summary"><h2>Build summary</h2>
<table class="kv">${summary.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>
<details><summary>pass timings (${r.passes.length} passes)</summary><table><tr><th>pass</th><th>ms</th><th>nodes after</th></tr>${passRows.join('')}</table></details>
</section>
<section id="graphs"><h2>Graph before and after fusion</h2>
<p class="legend"><span class="sw mm"></span>conv / matmul <span class="sw fused"></span>tsrt fused <span class="sw ew"></span>elementwise <span class="sw red"></span>reduce / norm / pool <span class="sw mov"></span>data movement <span class="sw hostsw"></span>host (CPU) step; dashed boxes before fusion were merged. Hover a box for details.</p>
<div class="pair">
<div class="panel" id="graph-before" style="flex-basis: ${svgWidth(beforeSvg)}px"><h3>before fusion: ${d.beforeFusion.nodes.length} nodes</h3><div class="scroll">${beforeSvg}</div></div>
<div class="panel" id="graph-after" style="flex-basis: ${svgWidth(afterSvg)}px"><h3>after fusion: ${e.graph.nodes.length} nodes</h3><div class="scroll">${afterSvg}</div></div>
</div></section>
<section id="fusions"><h2>Fusions (${ctx.fusions.length})</h2>
<table><tr><th>pass</th><th>kind</th><th>result</th><th>merged nodes</th></tr>${fusionRows.join('') || '<tr><td colspan="4">none</td></tr>'}</table>
<h3 id="rejected">Candidates not fused (${ctx.rejected.length})</h3>
<table><tr><th>pass</th><th>kind</th><th>nodes</th><th>reason</th></tr>${rejectedRows.join('') || '<tr><td colspan="4">none</td></tr>'}</table>
</section>
${r.precisionTiming ? precisionTimingSection(r.precisionTiming) : ''}
<section id="layers"><h2>Layers (${layers.length})</h2>
<table><tr><th>#</th><th>layer</th><th>op</th><th>kind</th><th>kernel</th><th>grid</th><th>block</th><th>output</th><th>note</th></tr>${layerRows.join('')}</table>
</section>
<section id="profile"><h2>Per-layer GPU time</h2>${profileHtml}</section>
<footer>generated by tsrt on ${esc(new Date().toISOString())}</footer>
</body></html>
`;
}

/** int8 layers against their fp16 twins (precision by timing): tuned kernel times, conversions, the choice. */
function precisionTimingSection(t: PrecisionTimingReport): string {
  const f = (x: number) => x.toFixed(4);
  const rows = t.layers.map((l) => `<tr><td class="name">${esc(l.layer)}</td><td>${l.nodes.map((n) => `<code>${esc(n)}</code>`).join(' ')}</td>`
    + `<td class="num">${f(l.int8Ms)}</td><td class="num">${f(l.fp16Ms)}</td><td class="num">${l.boundaryMs >= 0 ? '+' : ''}${f(l.boundaryMs)}</td><td><b>${l.precision}</b></td></tr>`);
  const other = [
    ...t.pinned.map((l) => `<li><code>${esc(l)}</code>: left to the precision rules</li>`),
    ...t.untimed.map((u) => `<li><code>${esc(u.layer)}</code>: stays int8, not compared (${esc(u.reason)})</li>`),
    ...t.notes.map((n) => `<li>${esc(n)}</li>`),
  ];
  return `<section id="precision-timing"><h2>Precision by timing (${t.moved.length} of ${t.layers.length} int8 layers moved to fp16)</h2>
<p>Best tuned kernel per precision; conversions: what running the layer fp16 adds at int8/fp16 boundaries given the others' choices, at ${t.bandwidth.gbPerS.toFixed(0)} GB/s (${t.bandwidth.source}). Predicted ${f(t.predicted.allInt8Ms)} ms all-int8 &rarr; ${f(t.predicted.chosenMs)} ms as chosen.</p>
<table><tr><th>layer</th><th>ONNX nodes</th><th>int8 ms</th><th>fp16 ms</th><th>conversions ms</th><th>runs</th></tr>${rows.join('') || '<tr><td colspan="6">none compared</td></tr>'}</table>
${other.length ? `<ul>${other.join('')}</ul>` : ''}</section>`;
}

/** A panel starts as wide as its drawing, so two narrow graphs sit side by side and wide ones wrap to full width. */
const svgWidth = (svg: string) => Number(/width="(\d+)"/.exec(svg)?.[1] ?? 400) + 14;

/** Horizontal bars in execution order, plus the share of total time; one row per kernel launch. */
function profileChart(p: { layer: string; op: string; ms: number }[]): string {
  const total = p.reduce((a, x) => a + x.ms, 0);
  const max = Math.max(1e-9, ...p.map((x) => x.ms));
  const rowH = 16, labelW = 330, barW = 560, w = labelW + barW + 150;
  const rows = p.map((x, i) => {
    const y = i * rowH;
    const bw = Math.max(1, (x.ms / max) * barW);
    const label = `${x.layer} (${x.op})`;
    return `<g class="bar"><title>${esc(label)}: ${x.ms.toFixed(4)} ms</title>`
      + `<text x="${labelW - 6}" y="${y + 12}" class="lbl">${esc(label.length > 48 ? label.slice(0, 47) + '\u2026' : label)}</text>`
      + `<rect x="${labelW}" y="${y + 2}" width="${bw.toFixed(1)}" height="${rowH - 4}"/>`
      + `<text x="${(labelW + bw + 6).toFixed(1)}" y="${y + 12}">${x.ms.toFixed(4)} ms ${(100 * x.ms / (total || 1)).toFixed(1)}%</text></g>`;
  });
  const byOp = new Map<string, { ms: number; n: number }>();
  for (const x of p) { const o = byOp.get(x.op) ?? { ms: 0, n: 0 }; o.ms += x.ms; o.n++; byOp.set(x.op, o); }
  const opRows = [...byOp].sort((a, b) => b[1].ms - a[1].ms)
    .map(([op, o]) => `<tr><td>${esc(op)}</td><td class="num">${o.n}</td><td class="num">${o.ms.toFixed(4)}</td><td class="num">${(100 * o.ms / (total || 1)).toFixed(1)}%</td></tr>`);
  return `<p>${p.length} kernel launches, ${total.toFixed(4)} ms in total (CUDA events around each launch, mean of 10 runs).</p>
<table class="byop"><tr><th>op</th><th>launches</th><th>ms</th><th>share</th></tr>${opRows.join('')}</table>
<div class="scroll"><svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${w}" height="${p.length * rowH + 4}" viewBox="0 0 ${w} ${p.length * rowH + 4}">${rows.join('\n')}</svg></div>`;
}

const CSS = `
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 20px 28px; color: #1d2330; background: #fff; }
h1 { font-size: 20px; margin: 0 0 12px; word-break: break-all; }
h2 { font-size: 17px; border-bottom: 1px solid #d6dae3; padding-bottom: 4px; margin-top: 28px; }
h3 { font-size: 14px; margin: 6px 0; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0; }
th, td { border: 1px solid #d6dae3; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f1f3f7; }
table.kv th { width: 150px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.name, code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 11.5px; word-break: break-all; }
tr.host td { background: #fdecea; }
tr.alias td { color: #777; }
.note { color: #8a4b00; background: #fff6e5; padding: 6px 10px; border-left: 3px solid #f0a020; }
.pair { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.panel { flex: 1 1 400px; min-width: 0; max-width: 100%; box-sizing: border-box; border: 1px solid #d6dae3; border-radius: 4px; padding: 6px; }
.scroll { overflow: auto; max-height: 1800px; }
svg.graph text { font: 11px "DejaVu Sans Mono", Menlo, Consolas, monospace; text-anchor: middle; fill: #1d2330; }
svg.graph text.op { font-weight: bold; }
svg.graph .edges path { fill: none; stroke: #8a93a6; stroke-width: 1.2; }
svg.graph .arrowhead { fill: #8a93a6; }
svg.graph rect { stroke: #5d6778; stroke-width: 1; fill: #eef1f6; }
svg.graph .mm rect { fill: #d7e6fb; stroke: #3b6fb6; }
svg.graph .fused rect { fill: #ffe3c2; stroke: #c46a00; }
svg.graph .ew rect { fill: #dcf2dc; stroke: #3d8a3d; }
svg.graph .red rect { fill: #efe0f7; stroke: #7b4a99; }
svg.graph .mov rect { fill: #eceff3; stroke: #77808f; }
svg.graph .io rect { fill: #fff; stroke: #1d2330; }
svg.graph .host rect { fill: #fbd3ce; stroke: #c0392b; stroke-width: 2; }
svg.graph .alias rect { stroke-dasharray: 2 2; }
svg.graph .merged rect { stroke-dasharray: 5 3; }
.legend { font-size: 12.5px; }
.sw { display: inline-block; width: 12px; height: 12px; border: 1px solid #5d6778; margin: 0 3px 0 10px; vertical-align: -2px; }
.sw.mm { background: #d7e6fb; } .sw.fused { background: #ffe3c2; } .sw.ew { background: #dcf2dc; }
.sw.red { background: #efe0f7; } .sw.mov { background: #eceff3; } .sw.hostsw { background: #fbd3ce; }
svg.chart text { font: 11px "DejaVu Sans Mono", Menlo, Consolas, monospace; fill: #1d2330; }
svg.chart text.lbl { text-anchor: end; }
svg.chart rect { fill: #3b6fb6; }
footer { margin-top: 30px; color: #888; font-size: 12px; }
`;

export function registerReport(program: Command): void {
  withBuildOptions(program.command('report').argument('<model>', 'ONNX model file'))
    .description('write one self-contained HTML page: build summary, graph before/after fusion, fusions, layers, GPU profile')
    .option('-o, --output <file>', 'HTML file to write', 'report.html')
    .option('--profile', 'time every layer on the GPU (CUDA events) and draw a bar chart')
    .addHelpText('after', '\nExample:\n  tsrt report model.onnx -o report.html --fp16 --profile')
    .action(async (model: string, o: CommonOpts & { output: string; profile?: boolean }) => {
      const bo = buildOptions(o);
      if (!bo.shapes && !bo.dims) bo.shapes = testDataShapes(model);
      const html = await makeReport(model, { ...bo, profile: !!o.profile });
      writeFileSync(o.output, html);
      console.log(`wrote ${o.output} (${(html.length / 1024).toFixed(0)} KiB)`);
    });
}
