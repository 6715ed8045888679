// `tsrt report`: the HTML page has every section, one SVG box per graph node before and after fusion, no
// external references, and every fused layer; when Debian's chromium is installed, it renders to a PNG that is
// neither blank nor clipped to nothing (size from IHDR, colours from the inflated IDAT).
import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { inflateSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectReport, renderReport } from '../src/cli/report.js';
import { graphToSvg } from '../src/cli/svg_layout.js';
import { parseGraph } from '../src/ir/text.js';

const MODEL = new URL('../models/ppocr_mobile_v2_cls/model.onnx', import.meta.url).pathname;
const CHROMIUM = '/usr/bin/chromium';

const section = (html: string, id: string) => {
  const m = new RegExp(`<section id="${id}">([\\s\\S]*?)</section>`).exec(html);
  expect(m, `section #${id}`).not.toBeNull();
  return m![1];
};
const boxes = (svg: string) => [...svg.matchAll(/<g class="node[^"]*" data-name="([^"]*)"/g)].map((m) => m[1]);

/** Width, height and number of distinct RGB colours of an 8-bit RGB/RGBA, non-interlaced PNG. */
function pngStats(png: Buffer): { width: number; height: number; colors: number } {
  expect(png.subarray(1, 4).toString()).toBe('PNG');
  const width = png.readUInt32BE(16), height = png.readUInt32BE(20), depth = png[24], type = png[25];
  expect(depth).toBe(8);
  const bpp = type === 6 ? 4 : type === 2 ? 3 : 0;
  expect(bpp).toBeGreaterThan(0);
  const idat: Buffer[] = [];
  for (let o = 8; o < png.length;) {
    const len = png.readUInt32BE(o), kind = png.toString('latin1', o + 4, o + 8);
    if (kind === 'IDAT') idat.push(png.subarray(o + 8, o + 8 + len));
    o += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * bpp, colors = new Set<number>();
  let prev = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)), cur = new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? cur[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
      const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const pred = f === 0 ? 0 : f === 1 ? a : f === 2 ? b : f === 3 ? (a + b) >> 1 : pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      cur[i] = (line[i] + pred) & 255;
    }
    for (let i = 0; i < stride; i += bpp * 7) colors.add(cur[i] << 16 | cur[i + 1] << 8 | cur[i + 2]);
    prev = cur;
  }
  return { width, height, colors: colors.size };
}

describe('svg layout', () => {
  it('draws one box per node, inputs and outputs, and an edge per dependency', () => {
    const g = parseGraph(`graph g(%x: float32[1,4]) -> (%y: float32[1,4], %z: float32[1,4]) opset 17 {
      %a = Relu(%x) name="a"
      %b = Sigmoid(%x) name="b"
      %c = Add(%a, %b) name="c"
      %y = Mul(%c, %x) name="d"
      %z = Neg(%a) name="e"
    }`);
    const svg = graphToSvg(g);
    expect(boxes(svg).sort()).toEqual(['a', 'b', 'c', 'd', 'e', 'x', 'y', 'z']);
    // x->a, x->b, x->d (long edge, routed through a dummy), a->c, b->c, c->d, a->e, d->y, e->z
    expect([...svg.matchAll(/<path d="M[^"]*" marker-end/g)].length).toBe(9);
    // no two boxes overlap
    const rects = [...svg.matchAll(/<rect x="([\d.]+)" y="([\d.]+)" width="(\d+)" height="(\d+)"/g)].map((m) => m.slice(1).map(Number));
    for (const [i, [x1, y1, w1, h1]] of rects.entries()) {
      for (const [x2, y2, w2, h2] of rects.slice(i + 1)) expect(x1 + w1 <= x2 || x2 + w2 <= x1 || y1 + h1 <= y2 || y2 + h2 <= y1).toBe(true);
    }
  });
});

describe('tsrt report', () => {
  it('writes one self-contained page with every section', async () => {
    const data = await collectReport(MODEL, { device: 'cpu', compileKernels: false, shapes: { x: [1, 3, 48, 192] }, profile: true });
    const html = renderReport(data, { profile: true });
    data.engine.dispose();
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    // self-contained: no scripts, no links, no URLs other than the SVG namespace
    expect(html).not.toMatch(/<script|<link|<img|@import|url\((?!#)/i);
    expect([...html.matchAll(/(?:https?:)?\/\/[\w.-]+/g)].map((m) => m[0]).filter((u) => u !== 'http://www.w3.org')).toEqual([]);

    const summary = section(html, 'summary');
    expect(summary).toContain(`${data.engine.report.kernels} launches`);
    expect(summary).toMatch(/build time/);

    const graphs = section(html, 'graphs');
    const [before, after] = [...graphs.matchAll(/<svg[\s\S]*?<\/svg>/g)].map((m) => m[0]);
    const ioNames = (g: typeof data.beforeFusion) => [...g.inputs, ...g.outputs].map((v) => v.name);
    expect(boxes(before).sort()).toEqual([...data.beforeFusion.nodes.map((n) => n.name), ...ioNames(data.beforeFusion)].sort());
    expect(boxes(after).sort()).toEqual([...data.engine.graph.nodes.map((n) => n.name), ...ioNames(data.engine.graph)].sort());
    expect(data.engine.graph.nodes.length).toBeLessThan(data.beforeFusion.nodes.length);

    // every fusion, and every fused layer of the engine, is named in the fusion and layer tables
    const fusions = section(html, 'fusions'), layers = section(html, 'layers');
    expect(data.engine.passContext.fusions.length).toBeGreaterThan(10);
    for (const f of data.engine.passContext.fusions) expect(fusions).toContain(`>${f.into}<`);
    for (const l of data.engine.layers()) expect(layers).toContain(`>${l.name}<`);
    expect(layers).toMatch(/fused: p2o\.Conv\.0, p2o\.BatchNormalization\.0/);

    expect(section(html, 'profile')).toMatch(data.engine.backend === 'cuda' ? /kernel launches, [\d.]+ ms in total/ : /no GPU: timings not measured/);
  });

  it('draws one bar per profiled kernel launch, scaled to the slowest, and a per-op summary', async () => {
    const data = await collectReport(MODEL, { device: 'cpu', compileKernels: false, shapes: { x: [1, 3, 48, 192] } });
    data.engine.dispose();
    const kernels = data.engine.layers().filter((l) => l.kind === 'kernel');
    // the GPU's numbers, made up: the chart is pure rendering
    data.profile = kernels.map((l, i) => ({ layer: l.name, op: l.op, ms: (i % 5) * 0.01 + 0.001 }));
    const prof = section(renderReport(data, { profile: true }), 'profile');
    const bars = [...prof.matchAll(/<rect x="\d+" y="[\d.]+" width="([\d.]+)"/g)].map((m) => Number(m[1]));
    expect(bars.length).toBe(kernels.length);
    expect(Math.max(...bars)).toBe(560);
    const total = data.profile.reduce((a, x) => a + x.ms, 0);
    expect(prof).toContain(`${kernels.length} kernel launches, ${total.toFixed(4)} ms in total`);
    expect(prof).toMatch(/<td>FusedConv<\/td><td class="num">\d+<\/td>/);
  });

  it('tsrt report writes the page from the command line', async () => {
    const { makeProgram } = await import('../src/cli/main.js');
    const out = join(mkdtempSync(join(tmpdir(), 'tsrt-report-cli-')), 'r.html');
    const log = console.log;
    const lines: string[] = [];
    console.log = (m: string) => lines.push(m);
    try {
      await makeProgram().parseAsync(['node', 'tsrt', 'report', MODEL, '-o', out, '--device', 'cpu', '--profile']);
    } finally { console.log = log; }
    expect(lines.join('\n')).toMatch(/wrote .*r\.html/);
    const html = readFileSync(out, 'utf8');
    for (const id of ['summary', 'graphs', 'fusions', 'layers', 'profile']) expect(html).toContain(`<section id="${id}">`);
    // shapes come from the model's test_data_set_0 when --shapes is not given
    expect(html).toContain('float32[1,3,48,192]');
  });

  it('renders in headless chromium to a non-blank PNG', { timeout: 240_000 }, async (ctx) => {
    if (!existsSync(CHROMIUM)) {
      console.log(`skipped: ${CHROMIUM} is not installed (apt-get install chromium)`);
      ctx.skip();
    }
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-report-'));
    const data = await collectReport(MODEL, { device: 'cpu', compileKernels: false, shapes: { x: [1, 3, 48, 192] } });
    writeFileSync(join(dir, 'r.html'), renderReport(data));
    data.engine.dispose();
    // Container-safe flags: its own profile, no /dev/shm (small in containers) and no first-run work.
    // One retry: under CI load (kernel compiles on every core) a first start has timed out without a PNG.
    const png = join(dir, 'r.png');
    const shoot = () => spawnSync(CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
      '--no-first-run', '--disable-extensions', `--user-data-dir=${join(dir, 'profile')}`, '--hide-scrollbars',
      `--screenshot=${png}`, '--window-size=1200,1600', `file://${join(dir, 'r.html')}`], { timeout: 90_000, encoding: 'utf8' });
    let r = shoot();
    if (!existsSync(png)) r = shoot();
    const why = `chromium status ${r.status} signal ${r.signal} ${r.error ?? ''}\n` +
      (r.stderr ?? '').split('\n').filter((l) => !l.includes('dbus')).join('\n');
    expect(existsSync(png), why).toBe(true);
    const s = pngStats(readFileSync(png));
    expect([s.width, s.height]).toEqual([1200, 1600]);
    // white page, dark text, and the op-family fills of the graph boxes
    expect(s.colors).toBeGreaterThan(20);
  });
});
