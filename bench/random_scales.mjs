// int8 scales for speed measurements (bench.mjs, scripts/gpu-profile.mjs): symmetric minmax scales from 4 random
// batches (of 8 where the batch dim is free), calibrated on the GPU's fp32 engine and reused for every batch size. Random data gives random-data
// ranges, which is what a speed measurement needs; accuracy claims calibrate on real data (tsrt calibrate).
import { randomTensor } from '../dist/cli/io.js';

/** Random input of the model's first input at `shape` (token ids for int64 inputs), seeded. */
export const randomInput = (vi, shape, seed) => randomTensor(vi.type.dtype, shape, seed, vi.type.dtype === 'int64' ? 0 : -1, vi.type.dtype === 'int64' ? 30522 : 1);

export async function randomScales(m) {
  const { calibrate } = await import('../dist/quant/calibrate.js');
  const vi = m.graph.inputs[0];
  // batches of 8 where the batch dim is free (a fixed batch is kept), sequence length 128 for free text dims
  const shape = vi.type.shape.map((d, i) => (typeof d === 'number' ? d : i === 0 ? 8 : 128));
  const t = performance.now();
  const scales = (await calibrate(m, [1, 2, 3, 4].map((k) => ({ [vi.name]: randomInput(vi, shape, k) })), { method: 'minmax' })).scales;
  console.log(JSON.stringify({ calibrated: Object.keys(scales).length, s: +((performance.now() - t) / 1000).toFixed(1) }));
  return scales;
}
