// LayerNorm emitter: rows that split into 16-byte vectors over a warp take the register-resident kernel (one load
// and one store of each element), other rows the scalar kernel; both compile for sm_90 without spills. The GPU
// suite checks them numerically (BERT-base's 768-wide fp32 and fp16 LayerNorms against PyTorch).
import { describe, expect, it } from 'vitest';
import { emitLayerNorm, type LayerNormProblem } from '../src/codegen/reduce.js';
import { compileCuda } from '../src/runtime/nvrtc.js';
import { loadNvrtc } from '../src/runtime/libs.js';

let nvrtc = true;
try { loadNvrtc(); } catch { nvrtc = false; }
if (!nvrtc) console.log('[codegen-layernorm] compile checks skipped: NVRTC is not installed');

const ln = (dtype: 'float16' | 'float32', cols: number, scaleDtype: 'float16' | 'float32' = 'float32'): LayerNormProblem =>
  ({ dtype, scaleDtype, rows: 4096, cols, eps: 1e-12, hasScale: true, hasBias: true });

describe('emitLayerNorm', () => {
  it('vectorizes rows that split evenly into 16-byte vectors per lane, up to 8 per lane', () => {
    expect(emitLayerNorm(ln('float16', 768)).name).toMatch(/^layernorm_v_/);   // 3 uint4 per lane
    expect(emitLayerNorm(ln('float32', 768)).name).toMatch(/^layernorm_v_/);   // 6 float4 per lane
    expect(emitLayerNorm(ln('float16', 2048)).name).toMatch(/^layernorm_v_/);  // 8 per lane
    expect(emitLayerNorm(ln('float16', 4096)).name).toMatch(/^layernorm_[0-9a-f]/); // 16 per lane: too many registers
    expect(emitLayerNorm(ln('float16', 100)).name).toMatch(/^layernorm_[0-9a-f]/);
    expect(emitLayerNorm(ln('float16', 64)).name).toMatch(/^layernorm_[0-9a-f]/);  // 64 < 32 lanes * 8
    const k = emitLayerNorm(ln('float16', 768));
    expect(k.source).toContain('reinterpret_cast<const uint4*>');
    expect(k.block).toEqual([256, 1, 1]);
    expect(k.grid[0]).toBe(4096 / 8);
  });

  it.skipIf(!nvrtc)('compiles both kernels for sm_90 without spills', () => {
    for (const p of [ln('float16', 768), ln('float32', 768, 'float32'), ln('float16', 1024, 'float16'), ln('float16', 100)]) {
      const k = emitLayerNorm(p);
      const r = compileCuda(k.source, { name: k.name, arch: 'sm_90', options: ['--ptxas-options=-v'] });
      expect(r.log, `${k.name}: register spills`).toMatch(/ 0 bytes spill stores, 0 bytes spill loads/);
    }
  });
});
