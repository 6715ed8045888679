// Debug dumps (--dump-dir / TSRT_DEBUG): IR after each pass, every generated kernel, the fusion report,
// engine layer info and a command that reproduces the build. Also the graph printers behind `tsrt dump`.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { printGraph } from '../ir/text.js';
import type { Graph } from '../ir/types.js';
import type { PassContext } from '../passes/pass.js';
import type { Engine } from '../runtime/engine.js';

export function writeFusionReport(dir: string, ctx: PassContext): void {
  const lines = ['# Fusion report', '', `${ctx.fusions.length} fusions, ${ctx.rejected.length} candidates not fused.`, '', '## Fused', '',
    '| pass | kind | result | merged nodes |', '| --- | --- | --- | --- |',
    ...ctx.fusions.map((f) => `| ${f.pass} | ${f.kind} | ${f.into} | ${f.nodes.join(', ')} |`),
    '', '## Not fused', '', '| pass | kind | nodes | reason |', '| --- | --- | --- | --- |',
    ...ctx.rejected.map((r) => `| ${r.pass} | ${r.kind} | ${r.nodes.join(', ')} | ${r.reason} |`), ''];
  writeFileSync(join(dir, 'fusion.md'), lines.join('\n'));
  writeFileSync(join(dir, 'fusion.json'), JSON.stringify({ fusions: ctx.fusions, rejected: ctx.rejected }, null, 1));
}

export function writeEngineDumps(engine: Engine, dir: string, argv: string[]): void {
  mkdirSync(join(dir, 'kernels'), { recursive: true });
  for (const [name, k] of engine.kernels) writeFileSync(join(dir, 'kernels', `${name}.cu`), k.source.source);
  const layers = engine.layers().map((l) => {
    const step = engine.lowered.steps.find((s) => s.layer === l.name);
    const outs = step?.kind === 'host' ? step.node.outputs : engine.graph.nodes.find((n) => n.name === l.name)?.outputs ?? [];
    return { ...l, outputs: outs.filter(Boolean).map((o) => ({ name: o, ...engine.lowered.types.get(o) })) };
  });
  writeFileSync(join(dir, 'layers.json'), JSON.stringify(layers, null, 1));
  writeFileSync(join(dir, 'report.json'), JSON.stringify(engine.report, null, 1));
  writeFusionReport(dir, engine.passContext);
  writeFileSync(join(dir, 'repro.sh'), `#!/bin/sh\n# reproduces this build\nnpx tsrt ${argv.map((a) => (/^[\w./:=,-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ')}\n`);
}

/** Graphviz dot of a graph: one box per node, edges labelled with value shapes. */
export function toDot(g: Graph): string {
  const esc = (s: string) => s.replace(/"/g, '\\"');
  const producer = new Map<string, string>();
  g.nodes.forEach((n, i) => n.outputs.forEach((o) => producer.set(o, `n${i}`)));
  const lines = ['digraph tsrt {', '  rankdir=TB; node [shape=box, fontname="Helvetica", fontsize=10]; edge [fontsize=8];'];
  g.inputs.forEach((vi, i) => { lines.push(`  in${i} [label="${esc(vi.name)}\\n${vi.type.dtype}[${vi.type.shape}]", shape=ellipse];`); producer.set(vi.name, `in${i}`); });
  g.nodes.forEach((n, i) => lines.push(`  n${i} [label="${esc(n.domain ? n.domain + '::' : '')}${esc(n.op)}\\n${esc(n.name)}"];`));
  g.outputs.forEach((o, i) => lines.push(`  out${i} [label="${esc(o.name)}", shape=ellipse];`));
  const edge = (from: string | undefined, to: string, v: string) => {
    if (!from) return;
    const t = g.valueTypes.get(v);
    lines.push(`  ${from} -> ${to} [label="${t ? `${t.dtype}[${t.shape}]` : ''}"];`);
  };
  g.nodes.forEach((n, i) => n.inputs.forEach((x) => x && edge(producer.get(x), `n${i}`, x)));
  g.outputs.forEach((o, i) => edge(producer.get(o.name), `out${i}`, o.name));
  lines.push('}');
  return lines.join('\n') + '\n';
}

export function printIr(g: Graph): string {
  return printGraph(g, { inlineLimit: 16 });
}
