// bench/table.mjs: one device call's tsrt rows beside the PyTorch peers of the same call, ratios = peer / tsrt.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { markdown, readCall, replaceBlock, tableRows } from '../bench/table.mjs';

const GPU = 'NVIDIA H100 80GB HBM3';
const tsrtRow = (model: string, prec: string, batch: number, ms: number, extra: object = {}) =>
  ({ model, prec, batch, pdl: false, median_ms: ms, per_s: (batch / ms) * 1000, vs_pytorch: { cosine: 0.9995 }, build_s: 20, ...extra });
const peerRow = (model: string, mode: string, batch: number, ms: number) => ({ model, mode, dtype: 'fp16', batch, ms, gpu: GPU });

function callDir(files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'tsrt-table-'));
  for (const [f, v] of Object.entries(files)) writeFileSync(join(dir, f), typeof v === 'string' ? v : JSON.stringify(v));
  return dir;
}

describe('bench/table.mjs', () => {
  it('pairs tsrt rows with the same call\'s peers by model and batch, int8 with tsrt fp16, rebuilds as cached builds', () => {
    const dir = callDir({
      'peers_r50_compile.json': [peerRow('resnet50', 'compile', 256, 10.3452)],
      'peers_r50_eager.json': [peerRow('resnet50', 'eager', 1, 3.266), peerRow('resnet50', 'eager', 256, 18.5234)],
      'tsrt_1.json': [tsrtRow('resnet50', 'fp16', 1, 0.294, { pdl: true }), tsrtRow('resnet50', 'fp16', 256, 7.5137)],
      'tsrt_2.json': [tsrtRow('resnet50', 'int8', 256, 4.8016)],
      'tsrt_3_cached.json': [tsrtRow('resnet50', 'fp16', 256, 7.53, { build_s: 1.3 })],
      'timing-cache.json': { version: 1, entries: {} },
    });
    const call = readCall(dir);
    expect(call.gpu).toBe(GPU);
    const rows = tableRows(call);
    expect(rows).toHaveLength(3);
    const [bs1, bs256, int8] = rows;
    expect(bs1).toMatchObject({ batch: 1, pdl: true, vs_eager: 11.11, vs_compile: undefined });
    expect(bs256).toMatchObject({ tsrt_ms: 7.5137, vs_eager: 2.47, vs_compile: 1.38, build_s: 20, rebuild_s: 1.3 });
    expect(int8).toMatchObject({ prec: 'int8', vs_tsrt_fp16: 1.56, vs_compile: 2.15 });
    const md = markdown(rows, 'H100, one call');
    expect(md).toContain('| resnet50 | fp16 | 256 | 7.5137 ms | 18.5234 ms (2.47x) | 10.3452 ms (1.38x) | 0.9995 | 20 s (1.3 s cached) |');
    expect(md).toContain('| resnet50 | int8 (1.56x tsrt fp16) | 256 | 4.8016 ms |');
    expect(md).toContain('| resnet50 | fp16, PDL | 1 | 0.294 ms | 3.266 ms (11.11x) |');
  });

  it('replaces only the README\'s marked block, and says what is missing', () => {
    const readme = 'intro\n<!-- bench-table:begin -->\nold table\n<!-- bench-table:end -->\noutro\n';
    expect(replaceBlock(readme, 'new table\n')).toBe('intro\n<!-- bench-table:begin -->\nnew table\n<!-- bench-table:end -->\noutro\n');
    expect(() => replaceBlock('no markers', 'x')).toThrow(/bench-table:begin/);
    expect(() => readCall(callDir({ 'peers_x.json': [peerRow('resnet50', 'eager', 1, 3)] }))).toThrow(/no tsrt\*\.json rows/);
    expect(() => readCall(callDir({ 'tsrt_x.json': '{ truncated' }))).toThrow(/tsrt_x\.json: not JSON/);
  });
});
