// Every kernel the CUDA backend generates for the ONNX conformance tests and the shared models compiles with
// NVRTC for sm_90 (fp32, and fp16 for the models). This runs without a GPU: CI installs NVRTC 11.8.
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildForFeeds } from '../src/runtime/engine.js';
import type { Tensor } from '../src/ir/types.js';
import { loadModel, loadTensorFile } from '../src/onnx/import.js';
import { findTestDirs } from '../src/cli/conformance.js';
import { packModules, type KernelSource } from '../src/codegen/kernel.js';
import { KernelCache } from '../src/runtime/kernel_cache.js';
import { UnsupportedError } from '../src/errors.js';
import { loadNvrtc } from '../src/runtime/libs.js';

const SHARED = new URL('../../shared/onnx-tests/', import.meta.url).pathname;
let nvrtc = true;
try { loadNvrtc(); } catch { nvrtc = false; }
if (!nvrtc) console.log('[kernels-compile] skipped: NVRTC is not installed (apt-get install libnvrtc11.2 libnvrtc-builtins11.8)');

async function kernelsOf(dir: string, fp16: boolean): Promise<KernelSource[] | string> {
  let model;
  try { model = loadModel(join(dir, 'model.onnx')); } catch (e) { return e instanceof UnsupportedError ? 'unsupported' : `import: ${(e as Error).message}`; }
  const data = join(dir, 'test_data_set_0');
  const files = existsSync(data) ? readdirSync(data) : [];
  const feeds = new Map<string, Tensor>();
  model.graph.inputs.forEach((vi, k) => { if (files.includes(`input_${k}.pb`)) feeds.set(vi.name, loadTensorFile(join(data, `input_${k}.pb`))); });
  try {
    const e = await buildForFeeds(model, feeds, { device: 'cpu', compileKernels: false, fp16 });
    return [...e.kernels.values()].map((k) => k.source);
  } catch (e) {
    return `build: ${(e as Error).message.split('\n')[0]}`;
  }
}

describe.skipIf(!nvrtc || !existsSync(SHARED))('generated kernels compile with NVRTC (sm_90)', () => {
  it('conformance tests and shared models', async () => {
    const all = new Map<string, KernelSource>();
    const problems: string[] = [];
    const dirs = [...findTestDirs(SHARED + 'node'), ...findTestDirs(SHARED + 'models')];
    for (const dir of dirs) {
      const variants = dir.includes('/models/') ? [false, true] : [false];
      for (const fp16 of variants) {
        const ks = await kernelsOf(dir, fp16);
        if (typeof ks === 'string') { if (ks !== 'unsupported') problems.push(`${dir}: ${ks}`); continue; }
        for (const k of ks) all.set(k.name, k);
      }
    }
    expect(problems).toEqual([]);
    const modules = packModules([...all.values()], 48);
    console.log(`[kernels-compile] ${all.size} unique kernels from ${dirs.length} models in ${modules.length} modules`);
    const cache = new KernelCache({ dir: null, arch: 'sm_90' });
    const compiled = await cache.compileAll(modules.map((m) => ({ source: m.source, name: m.name })));
    expect(compiled.length).toBe(modules.length);
    for (const c of compiled) expect(c.cubin[0]).toBe(0x7f); // ELF
  }, 2_400_000);
});
