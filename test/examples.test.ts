// The examples/ scripts run as a user runs them: `import ... from 'tsrt'` resolved through package.json's
// `exports` to dist/index.js. The test bundles the sources into a private package folder (never the shared
// dist/), copies the examples beside it and runs each one with node; they use the CPU backend without a GPU.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// inside node_modules so the package's own dependencies (protobufjs, koffi) resolve to the repo's
const pkg = join(root, 'node_modules', '.cache', `tsrt-examples-${process.pid}`);
const examples = readdirSync(join(root, 'examples')).filter((f) => f.endsWith('.mjs')).sort();

beforeAll(async () => {
  rmSync(pkg, { recursive: true, force: true });
  mkdirSync(pkg, { recursive: true });
  // One ESM bundle of src/index.ts as dist/index.js (rolldown, which vite ships: ~1 s, where tsc takes a minute
  // on a loaded 2-core CI machine); package dependencies stay external, as in the published package.
  const { build } = await import('rolldown');
  await build({
    input: join(root, 'src/index.ts'), platform: 'node', logLevel: 'silent',
    external: (id: string) => !id.startsWith('.') && !id.startsWith('/'),
    output: { file: join(pkg, 'dist/index.js'), format: 'esm' },
  });
  copyFileSync(join(root, 'package.json'), join(pkg, 'package.json'));
  symlinkSync(join(root, 'models'), join(pkg, 'models'));
  cpSync(join(root, 'examples'), join(pkg, 'examples'), { recursive: true });
}, 180_000);
afterAll(() => rmSync(pkg, { recursive: true, force: true }));

function runExample(name: string, args: string[] = []): string {
  const r = spawnSync(process.execPath, [join(pkg, 'examples', name), ...args], { encoding: 'utf8', timeout: 120_000, cwd: pkg });
  const out = `${r.stdout}${r.stderr}`;
  if (r.status !== 0) throw new Error(`${name} exited with ${r.status ?? r.signal}:\n${out}`);
  return out;
}

describe('examples', () => {
  it('every example is covered here', () => {
    expect(examples).toEqual(['01-build-and-run.mjs', '02-custom-pass.mjs', '03-dump-ir.mjs', '04-profile.mjs']);
  });

  it('the package resolves by name to the compiled entry point', () => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', "const m = await import('tsrt'); console.log(typeof m.build, typeof m.Engine, typeof m.PIPELINE.length)"], { cwd: pkg, encoding: 'utf8' });
    expect(r.stdout.trim()).toBe('function function number');
    expect(JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')).exports['.'].default).toBe('./dist/index.js');
  });

  it('01 builds and runs the bundled model and matches ONNX Runtime', () => {
    const out = runExample('01-build-and-run.mjs');
    expect(out).toMatch(/built: \d+ nodes, \d+ kernel launches, backend (cpu|cuda)/);
    expect(out).toMatch(/argmax same/);
  });

  it('02 runs a custom pass inside the pipeline and keeps the results', () => {
    const out = runExample('02-custom-pass.mjs');
    expect(out).toMatch(/div-to-mul: div/);
    expect(out).toMatch(/Mul\+Relu \[div, relu\]/); // the Div is now a Mul, which fusion then merges with the Relu
    expect(out).toContain('y = 0 0 0 0.5 1 1.5 2 3');
  });

  it('03 dumps the IR after a named pass', () => {
    const out = runExample('03-dump-ir.mjs', ['fold-batchnorm']);
    expect(out).toMatch(/fold-batchnorm\s+\d+ nodes/);
    expect(out).toMatch(/IR after fold-batchnorm/);
    expect(out).toMatch(/= Conv\(/);
    expect(() => runExample('03-dump-ir.mjs', ['no-such-pass'])).toThrow(/no pass named 'no-such-pass'/);
  });

  it('04 lists layers and profiles them on a GPU', () => {
    const out = runExample('04-profile.mjs');
    expect(out).toMatch(/\d+ layers: \d+ kernel/);
    expect(out).toMatch(/no GPU: per-layer times are not measured|GPU time [\d.]+ ms over \d+ kernels/);
  });
});
