#!/usr/bin/env node
// The comparison table of one device call: tsrt rows (bench.mjs --json) beside the PyTorch peers measured in the
// same call (.gpu/models.py peers --json: eager, torch.compile max-autotune), with ratios = peer ms / tsrt ms.
//   node bench/table.mjs DIR [--md FILE] [--json FILE] [--readme README.md] [--label TEXT]
// DIR holds the call's JSON files: tsrt*.json (bench.mjs rows) and peers*.json (models.py rows); others are ignored.
// A row's build is the cold build; a later row of the same engine (a rebuild from the timing cache) adds its build
// time. PDL marks engines with programmatic dependent launches.
// Writes the markdown table (stdout, and --md), the rows with ratios (--json), and with --readme replaces the block
// between `<!-- bench-table:begin -->` and `<!-- bench-table:end -->` (the markers must be there). Rows pair by
// model, batch and dtype (tsrt fp16 with peers fp16; a tsrt int8 row is compared with the fp16 peers and with tsrt
// fp16 of the same batch, as issue 6's target reads). Ratios only ever pair numbers of this one call.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Rows of the call in `dir`: { tsrt: bench.mjs rows, peers: models.py rows, gpu }. */
export function readCall(dir) {
  const tsrt = [], peers = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
    let rows;
    try { rows = JSON.parse(readFileSync(join(dir, f), 'utf8')); } catch (e) { throw new Error(`${join(dir, f)}: not JSON (${e.message})`); }
    if (!Array.isArray(rows)) rows = [rows];
    if (f.startsWith('tsrt')) tsrt.push(...rows.filter((r) => r && typeof r.median_ms === 'number' && r.model));
    else if (f.startsWith('peers')) peers.push(...rows.filter((r) => r && typeof r.ms === 'number' && r.mode && r.model));
  }
  if (!tsrt.length) throw new Error(`${dir}: no tsrt*.json rows (bench.mjs --json output)`);
  return { tsrt, peers, gpu: peers.find((p) => p.gpu)?.gpu };
}

const x = (peer, ms) => (peer && ms ? +(peer / ms).toFixed(2) : undefined);

/** One row per tsrt engine: its median, the peers' ms of the same model / batch (fp16) and the ratios. */
export function tableRows({ tsrt, peers }) {
  const peer = (model, batch, mode) => peers.find((p) => p.model === model && p.batch === batch && p.mode === mode && (p.dtype ?? 'fp16') === 'fp16')?.ms;
  // a later row of the same (model, prec, batch, launches) is a rebuild from the timing cache: the first row's
  // numbers stay, the rebuild's build time goes beside the cold one
  const seen = new Map(), rebuild = new Map();
  for (const r of tsrt) {
    const key = `${r.model}|${r.prec}|${r.batch}|${r.pdl ?? ''}`;
    if (seen.has(key)) rebuild.set(key, r.build_s); else seen.set(key, r);
  }
  return [...seen.entries()].map(([key, r]) => {
    const eager = peer(r.model, r.batch, 'eager'), compile = peer(r.model, r.batch, 'compile');
    const fp16 = r.prec.startsWith('int8') ? [...seen.values()].find((o) => o.model === r.model && o.batch === r.batch && o.prec === 'fp16')?.median_ms : undefined;
    return {
      model: r.model, prec: r.prec, batch: r.batch, pdl: !!r.pdl, tsrt_ms: r.median_ms, per_s: r.per_s, eager_ms: eager, compile_ms: compile,
      vs_eager: x(eager, r.median_ms), vs_compile: x(compile, r.median_ms), vs_tsrt_fp16: x(fp16, r.median_ms),
      cosine_vs_pytorch: r.vs_pytorch?.cosine, build_s: r.build_s, rebuild_s: rebuild.get(key),
    };
  });
}

export function markdown(rows, label) {
  const ms = (v) => (v === undefined ? '' : `${v} ms`);
  const ratio = (v) => (v === undefined ? '' : ` (${v}x)`);
  const lines = [
    ...(label ? [`${label}`, ''] : []),
    '| model | precision | batch | tsrt | PyTorch eager | torch.compile max-autotune | cosine vs PyTorch fp32 | build |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.model} | ${r.prec}${r.pdl ? ', PDL' : ''}${r.vs_tsrt_fp16 ? ` (${r.vs_tsrt_fp16}x tsrt fp16)` : ''} | ${r.batch} | ${r.tsrt_ms} ms | ${ms(r.eager_ms)}${ratio(r.vs_eager)} | ${ms(r.compile_ms)}${ratio(r.vs_compile)} | ${r.cosine_vs_pytorch ?? ''} | ${r.build_s === undefined ? '' : `${r.build_s} s`}${r.rebuild_s === undefined ? '' : ` (${r.rebuild_s} s cached)`} |`),
  ];
  return lines.join('\n') + '\n';
}

/** README text with the marked block replaced by `block`. */
export function replaceBlock(readme, block) {
  const begin = '<!-- bench-table:begin -->', end = '<!-- bench-table:end -->';
  const i = readme.indexOf(begin), j = readme.indexOf(end);
  if (i < 0 || j < i) throw new Error(`README has no ${begin} ... ${end} block to replace`);
  return `${readme.slice(0, i + begin.length)}\n${block}${readme.slice(j)}`;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const opt = (f) => { const i = args.indexOf(f); return i >= 0 ? args[i + 1] : undefined; };
  const dir = args[0];
  if (!dir || dir.startsWith('--')) { console.error('usage: node bench/table.mjs DIR [--md FILE] [--json FILE] [--readme README.md] [--label TEXT]'); process.exit(2); }
  try {
    const call = readCall(dir);
    const rows = tableRows(call);
    const md = markdown(rows, opt('--label') ?? (call.gpu ? `${call.gpu}, one device call` : undefined));
    process.stdout.write(md);
    if (opt('--md')) writeFileSync(opt('--md'), md);
    if (opt('--json')) writeFileSync(opt('--json'), JSON.stringify({ gpu: call.gpu, rows }, null, 1) + '\n');
    if (opt('--readme')) writeFileSync(opt('--readme'), replaceBlock(readFileSync(opt('--readme'), 'utf8'), md));
  } catch (e) {
    console.error(`bench/table.mjs: ${e.message}`);
    process.exit(1);
  }
}
