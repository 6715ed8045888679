// ONNX backend conformance on the CPU reference. Every test not listed in the expectations file must pass;
// every listed test must still fail (so the list stays honest), and at least 95% of the node tests pass.
import { describe, expect, it } from 'vitest';
import { readFileSync, existsSync } from 'node:fs';
import { runConformance, type CaseResult } from '../src/cli/conformance.js';

const SHARED = new URL('../../shared/onnx-tests/', import.meta.url).pathname;
const EXPECT = new URL('./conformance/cpu-expected.tsv', import.meta.url).pathname;

function expectations(): Map<string, string> {
  const m = new Map<string, string>();
  if (!existsSync(EXPECT)) return m;
  for (const line of readFileSync(EXPECT, 'utf8').split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const [name, status] = line.split('\t');
    m.set(name, status);
  }
  return m;
}

function check(results: CaseResult[], prefix: string) {
  const exp = expectations();
  const unexpected = results.filter((r) => r.status !== 'PASS' && !exp.has(prefix + r.name)).map((r) => `${r.name}: ${r.status} ${r.reason}`);
  const nowPassing = results.filter((r) => r.status === 'PASS' && exp.has(prefix + r.name)).map((r) => r.name);
  expect(unexpected, 'tests failing that are not listed in test/conformance/cpu-expected.tsv').toEqual([]);
  expect(nowPassing, 'tests listed as failing in cpu-expected.tsv now pass: remove them from the list').toEqual([]);
}

describe.skipIf(!existsSync(SHARED))('ONNX conformance (CPU reference)', () => {
  it('node tests', async () => {
    const results = await runConformance(SHARED + 'node');
    const passed = results.filter((r) => r.status === 'PASS').length;
    console.log(`node: ${passed}/${results.length} pass`);
    expect(results.length).toBe(517);
    expect(passed / results.length).toBeGreaterThanOrEqual(0.95);
    check(results, 'node/');
  }, 600_000);
  it('extra tests', async () => {
    check(await runConformance(SHARED + 'extra'), 'extra/');
  }, 600_000);
  it('real-weight models', async () => {
    check(await runConformance(SHARED + 'models/real'), 'models/real/');
  }, 600_000);
  it('light models', async () => {
    check(await runConformance(SHARED + 'models/light', { rtol: 2e-3 }), 'models/light/');
  }, 1_200_000);
});
