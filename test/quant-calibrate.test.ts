// INT8 calibration (issue 6): entropy/minmax/percentile ranges against hand-computed histograms, the growing
// histogram, the TensorRT calibration cache byte for byte, calibration data rules, and calibrate() end to end
// on the bundled PaddleOCR classifier on the CPU reference.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AbsHistogram, HISTOGRAM_BINS, entropyThreshold, klDivergences, percentileAmax, scaleOf } from '../src/quant/histogram.js';
import { formatCalibrationCache, hexToScale, parseCalibrationCache, readCalibrationCache, scaleToHex, writeCalibrationCache } from '../src/quant/cache.js';
import { calibrate } from '../src/quant/calibrate.js';
import { planDirectory } from '../src/quant/data.js';
import { perChannelWeightScales } from '../src/quant/weights.js';
import { randomTensor, writeNpy } from '../src/cli/io.js';
import { makeTensor } from '../src/ir/tensor.js';
import { loadModel } from '../src/onnx/import.js';
import { DEFAULT_MODEL } from '../src/cli/main.js';
import type { ValueInfo } from '../src/ir/types.js';
import { cudaAvailable } from '../src/runtime/device_runner.js';

/** KL(P||Q) at threshold i computed bin by bin, straight from the definition (the oracle for the per-level
 * prefix-sum version in histogram.ts). */
function klDirect(h: Float64Array, i: number, levels: number): number {
  let outliers = 0;
  for (let k = i; k < h.length; k++) outliers += h[k];
  const p = h.slice(0, i);
  p[i - 1] += outliers;
  const q = new Float64Array(i);
  const levelMass = new Float64Array(levels), levelNz = new Float64Array(levels);
  for (let k = 0; k < i; k++) {
    const j = Math.floor((k * levels) / i);
    levelMass[j] += h[k];
    if (p[k] > 0) levelNz[j]++;
  }
  for (let k = 0; k < i; k++) { const j = Math.floor((k * levels) / i); if (p[k] > 0) q[k] = levelMass[j] / levelNz[j]; }
  const sp = p.reduce((a, b) => a + b, 0), sq = q.reduce((a, b) => a + b, 0);
  let kl = 0;
  for (let k = 0; k < i; k++) {
    if (p[k] === 0) continue;
    if (q[k] === 0) return Infinity;
    kl += (p[k] / sp) * Math.log((p[k] / sp) / (q[k] / sq));
  }
  return kl;
}

describe('entropy calibration math', () => {
  // Worked by hand with 2 levels instead of 128 (the algorithm is the same; thresholds i = 2..8):
  // raw |x| histogram [2, 6, 2, 0, 0, 0, 0, 1]; bin 0 := bin 1 -> h = [6, 6, 2, 0, 0, 0, 0, 1], total 15.
  //  i=2: P = [6, 6+3] /15 = [.4, .6]; Q = merge [6, 6] -> [6, 6] /12 = [.5, .5];
  //       KL = .4 ln(.8) + .6 ln(1.2) = 0.020136
  //  i=3: P = [6, 6, 2+1] /15; bins 0,1 -> level 0, bin 2 -> level 1 (floor(2k/3)); Q = [6, 6, 2] /14;
  //       KL = .8 ln(.4*14/6) + .2 ln(.2*7) = 0.012100            <- smallest
  //  i=4: P = [6, 6, 2, 0+1] /15; level 1 = bins 2,3 with raw mass 2 spread over P's non-zero bins 2 and 3:
  //       Q = [6, 6, 1, 1] /14; KL = .8 ln(.4*14/6) + (2/15) ln(28/15) + (1/15) ln(14/15) = 0.023427
  //  i=5,6,7: level 1 holds raw mass 0 but P's outlier bin -> Q = 0 where P > 0 -> KL = infinity
  //  i=8: no outliers; Q = [14/3, 14/3, 14/3, 0, 0, 0, 0, 1] /15; KL = (12 ln(9/7) + 2 ln(3/7)) / 15 = 0.088079
  // so the threshold is bin 3: amax = 3 bin widths.
  const raw = Float64Array.from([2, 6, 2, 0, 0, 0, 0, 1]);

  it('matches the hand-computed divergences and picks the minimum', () => {
    const h = raw.slice(); h[0] = h[1];
    const kl = klDivergences(h, 2);
    expect(kl[2]).toBeCloseTo(0.020136, 5);
    expect(kl[3]).toBeCloseTo(0.012100, 5);
    expect(kl[4]).toBeCloseTo(0.023427, 5);
    expect([kl[5], kl[6], kl[7]]).toEqual([Infinity, Infinity, Infinity]);
    expect(kl[8]).toBeCloseTo(0.088079, 5);
    expect(entropyThreshold(raw, 2)).toEqual({ bin: 3, kl: kl[3] });
  });

  it('sets bin 0 to bin 1 before searching', () => {
    // a huge zero spike (ReLU) would otherwise change the answer; with the rule it is ignored
    const spiky = raw.slice(); spiky[0] = 1e6;
    expect(entropyThreshold(spiky, 2).bin).toBe(3);
    const h = spiky.slice();
    expect(klDivergences(h, 2)[3]).not.toBeCloseTo(0.0121, 3);
  });

  it('breaks ties toward the larger threshold', () => {
    // [3, 3, 0, 0]: P = Q at every i (no outliers, each level's mass spread over its one or two non-zero bins)
    const kl = klDivergences(Float64Array.from([3, 3, 0, 0]), 2);
    expect([kl[2], kl[3], kl[4]]).toEqual([0, 0, 0]);
    expect(entropyThreshold(Float64Array.from([3, 3, 0, 0]), 2).bin).toBe(4);
    // [4, 4, 1, 1]: i=4 reproduces P exactly (KL 0), i=2 and i=3 clip
    expect(entropyThreshold(Float64Array.from([4, 4, 1, 1]), 2)).toEqual({ bin: 4, kl: 0 });
  });

  it('agrees with the bin-by-bin definition on random 2048-bin histograms', () => {
    let seed = 7;
    const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
    for (let trial = 0; trial < 3; trial++) {
      const h = new Float64Array(HISTOGRAM_BINS);
      // a bell-ish shape with holes and a sparse tail, like a post-ReLU activation
      for (let k = 0; k < h.length; k++) h[k] = rnd() < 0.2 ? 0 : Math.floor(1000 * Math.exp(-k / (150 + 100 * trial)) * rnd());
      for (let k = 1500; k < h.length; k += 97) h[k] = 1;
      const kl = klDivergences(h);
      for (const i of [128, 129, 200, 255, 256, 777, 1024, 1500, 1501, 2047, 2048]) {
        const d = klDirect(h, i, 128);
        if (d === Infinity) expect(kl[i]).toBe(Infinity);
        else expect(Math.abs(kl[i] - d)).toBeLessThan(1e-9 * Math.max(1, d));
      }
    }
  });
});

describe('AbsHistogram', () => {
  it('sets 2048 bins over the first batch and grows by bins of the same width', () => {
    const h = new AbsHistogram();
    h.add(Float32Array.from([0, -0.5, 1, 2]));
    expect(h.nbins).toBe(2048);
    expect(h.width).toBe(2 / 2048);
    const first = h.histogram();
    expect([first[0], first[512], first[1024], first[2047]]).toEqual([1, 1, 1, 1]);
    h.add(Float32Array.from([3, -1]));
    expect(h.width).toBe(2 / 2048); // width kept
    expect(h.nbins).toBe(3072);
    const grown = h.histogram();
    expect(Array.from(grown.subarray(0, 2048))).toEqual(Array.from(first.subarray(0, 2048)).map((c, k) => c + (k === 1024 ? 1 : 0)));
    expect(grown[3071]).toBe(1);
    expect(grown.reduce((a, b) => a + b, 0)).toBe(6);
    expect(h.maxAbs).toBe(3);
    expect(h.total).toBe(6);
  });

  it('keeps zeros seen before the first non-zero value, and skips NaN/Inf', () => {
    const h = new AbsHistogram();
    h.add(new Float32Array(5));
    expect(h.nbins).toBe(0);
    expect(h.amax('entropy')).toBe(0);
    h.add(Float32Array.from([NaN, Infinity, 4]));
    expect(h.histogram()[0]).toBe(5);
    expect(h.nonFinite).toBe(2);
    expect(h.maxAbs).toBe(4);
  });

  it('merges bin pairs only past MAX_BINS', () => {
    const h = new AbsHistogram();
    h.add(Float32Array.from([1]));
    h.add(Float32Array.from([1000])); // 2048000 bins of the first width: halved until <= 2^17
    expect(h.nbins).toBeLessThanOrEqual(1 << 17);
    expect(h.nbins * h.width).toBeGreaterThanOrEqual(1000);
    expect(h.histogram().reduce((a, b) => a + b, 0)).toBe(2);
    expect(h.amax('minmax')).toBe(1000);
  });

  it('minmax and percentile on known data', () => {
    // |x| = 1..10000 (/10000): minmax = 1; 99.99% of values are <= 0.9999, the bin edge just above
    const h = new AbsHistogram();
    const v = Float32Array.from({ length: 10000 }, (_, k) => ((k % 2 ? -1 : 1) * (k + 1)) / 10000);
    h.add(v);
    expect(h.amax('minmax')).toBe(Math.fround(1));
    const p = h.amax('percentile', 99.99);
    expect(p).toBeGreaterThanOrEqual(0.9999);
    expect(p).toBeLessThanOrEqual(0.9999 + h.width);
    expect(h.amax('percentile', 50)).toBeCloseTo(0.5, 3);
    expect(percentileAmax(Float64Array.from([5, 3, 2]), 0.5, 50)).toBe(0.5);
    expect(percentileAmax(Float64Array.from([5, 3, 2]), 0.5, 51)).toBe(1);
    expect(percentileAmax(Float64Array.from([5, 3, 2]), 0.5, 100)).toBe(1.5);
  });

  it('entropy clips a Gaussian\'s tail and keeps a uniform range', () => {
    // KL is blind to the resolution lost inside a uniform level, so a uniform bulk keeps its full range
    const dense = new AbsHistogram();
    dense.add(Float32Array.from({ length: 50000 }, (_, k) => (k % 1000) / 1000));
    expect(dense.amax('entropy') / dense.maxAbs).toBeGreaterThan(0.95);
    // N(0, 1), 200k samples: max |x| ~4.8; EntropyCalibrator2 clips near 3 sigma
    let s = 1;
    const rnd = () => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648; };
    const g = Float32Array.from({ length: 200000 }, () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd()));
    const h = new AbsHistogram();
    h.add(g);
    expect(h.maxAbs).toBeGreaterThan(4.3);
    expect(h.amax('entropy')).toBeGreaterThan(2.5);
    expect(h.amax('entropy')).toBeLessThan(3.8);
    expect(h.amax('percentile', 99)).toBeCloseTo(2.576, 1); // the normal's two-sided 99% point
    expect(scaleOf(h.amax('entropy'))).toBe(Math.fround(h.amax('entropy') / 127));
  });
});

describe('per-channel weight scales', () => {
  it('max |w| per output channel / 127', () => {
    const w = makeTensor('float32', [2, 1, 1, 3], Float32Array.from([1, -2.54, 0.5, 0, 0, 0]));
    expect(Array.from(perChannelWeightScales(w))).toEqual([Math.fround(2.54 / 127), 0]);
    expect(Array.from(perChannelWeightScales(w, 3))).toEqual([1, 2.54, 0.5].map((a) => Math.fround(a / 127)));
    expect(() => perChannelWeightScales(w, 4)).toThrow(/axis 4 is out of range/);
  });
});

// A cache in TensorRT's exact format: names with ':' and spaces, numeric names (which a plain object would
// reorder), a zero scale written "0" as TensorRT writes it.
const TRT_CACHE = [
  'TRT-8601-EntropyCalibration2',
  'input: 3c010a14',
  '371: 3caa54fc',
  '(Unnamed Layer* 64) [Shuffle]_output: 0',
  '366: 3d5c11b5',
  'input_1:0: 3c88edfc',
  'conv1/convolution:0: 3d0b7086',
  '',
].join('\n');

describe('calibration cache', () => {
  it('reads TensorRT\'s format and writes the same bytes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-cache-'));
    const src = join(dir, 'trt.cache');
    writeFileSync(src, TRT_CACHE);
    const c = readCalibrationCache(src);
    expect(c.version).toBe('8601');
    expect(c.method).toBe('entropy');
    expect(c.entries.map(([n]) => n)).toEqual(['input', '371', '(Unnamed Layer* 64) [Shuffle]_output', '366', 'input_1:0', 'conv1/convolution:0']);
    // 0x3c010a14: exponent 0x78 = 2^-7, mantissa 1 + 0x010a14 / 2^23 = 1.0081 -> 0.0078759 (amax 1.00024)
    expect(c.scales.input).toBe(hexToScale('3c010a14'));
    expect(c.scales.input).toBeCloseTo(0.0078759, 7);
    expect(c.scales['(Unnamed Layer* 64) [Shuffle]_output']).toBe(0);
    const out = join(dir, 'out.cache');
    writeCalibrationCache(out, c);
    expect(readFileSync(out)).toEqual(readFileSync(src));
    // scales survive bit for bit
    expect(Object.entries(readCalibrationCache(out).scales)).toEqual(Object.entries(c.scales));
    expect(formatCalibrationCache({ ...c, eol: '\r\n' })).toBe(TRT_CACHE.replace(/\n/g, '\r\n'));
  });

  it('writes a calibrate()-style result with the method\'s header and float32 bits', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-cache-'));
    const scales = { a: scaleOf(1), b: scaleOf(6.5), 'c:0': scaleOf(0.001) };
    for (const [method, alg] of [['entropy', 'EntropyCalibration2'], ['minmax', 'MinMaxCalibration'], ['percentile', 'PercentileCalibration']] as const) {
      const p = join(dir, `${method}.cache`);
      writeCalibrationCache(p, { method, scales });
      const text = readFileSync(p, 'utf8');
      expect(text.split('\n')[0]).toBe(`TRT-8601-${alg}`);
      expect(text).toContain(`a: ${scaleToHex(scaleOf(1))}\n`);
      expect(scaleToHex(scaleOf(1))).toBe('3c010204'); // 1/127 in float32
      const back = readCalibrationCache(p);
      expect(back.method).toBe(method);
      for (const [k, v] of Object.entries(scales)) expect(back.scales[k]).toBe(v);
    }
  });

  it('refuses malformed caches with the file and line', () => {
    const cases: [string, RegExp][] = [
      ['', /x\.cache:1: expected a TensorRT calibration cache header/],
      ['TRT-8601-EntropyCalibration2 extra\n', /x\.cache:1:/],
      ['{"not": "a cache"}\n', /x\.cache:1:/],
      ['TRT-8601-EntropyCalibration2\ninput 3c010a14\n', /x\.cache:2: expected '<tensor name>: <hex scale>'/],
      ['TRT-8601-EntropyCalibration2\na: 3c010a14\nb: 0.0078\n', /x\.cache:3: scale '0.0078'/],
      ['TRT-8601-EntropyCalibration2\na: 3c010a14\nb: 3c010a14ff\n', /x\.cache:3:/],
      ['TRT-8601-EntropyCalibration2\na: 7fc00000\n', /x\.cache:2: scale 7fc00000 of tensor 'a' is NaN/],
      ['TRT-8601-EntropyCalibration2\na: bc010a14\n', /x\.cache:2: .* is -0\.007875/],
      ['TRT-8601-EntropyCalibration2\na: 3c010a14\na: 3c010a14\n', /x\.cache:3: tensor 'a' appears twice/],
      ['TRT-8601-EntropyCalibration2\n\n', /x\.cache:2:/],
    ];
    for (const [text, re] of cases) expect(() => parseCalibrationCache(text, 'x.cache'), JSON.stringify(text)).toThrow(re);
    expect(() => readCalibrationCache('/nonexistent/x.cache')).toThrow(/cannot read the calibration cache/);
    expect(() => writeCalibrationCache(join(tmpdir(), 'bad.cache'), { method: 'entropy', scales: { a: NaN } })).toThrow(/scale of tensor 'a' is NaN/);
  });
});

describe('calibration data directories', () => {
  const vi = (name: string): ValueInfo => ({ name, type: { dtype: 'float32', shape: [1, 4] } });
  const t = () => randomTensor('float32', [1, 4], 1);

  it('pairs files to inputs by name, input_<k>, and batch subfolders', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-data-'));
    for (const f of ['ids_2.npy', 'ids_10.npy', 'ids_mask_2.npy', 'ids_mask_10.npy', 'input_2_2.npy', 'input_2_10.npy']) writeNpy(join(dir, f), t());
    const plan = planDirectory(dir, [vi('ids'), vi('ids_mask'), vi('x')]);
    expect(plan.map((b) => b.map((f) => f.slice(dir.length + 1)))).toEqual([
      ['ids_2.npy', 'ids_mask_2.npy', 'input_2_2.npy'], ['ids_10.npy', 'ids_mask_10.npy', 'input_2_10.npy']]);
    const one = mkdtempSync(join(tmpdir(), 'tsrt-data-'));
    for (const d of ['test_data_set_0', 'test_data_set_1']) {
      mkdirSync(join(one, d));
      writeNpy(join(one, d, 'input_0.npy'), t());
      writeNpy(join(one, d, 'output_0.npy'), t());
    }
    expect(planDirectory(one, [vi('x')]).length).toBe(2);
    // an ONNX test-data folder given directly (the bundled model's, the shared real models'): outputs are skipped
    const ppocr = join(dirname(DEFAULT_MODEL), 'test_data_set_0');
    expect(planDirectory(ppocr, [vi('x')]).map((b) => b.map((f) => f.slice(ppocr.length + 1)))).toEqual([['input_0.pb']]);
    const silero = join(import.meta.dirname, '../../shared/onnx-tests/models/real/silero_vad_v5/test_data_set_0');
    if (existsSync(silero)) {
      expect(planDirectory(silero, [vi('input'), vi('state'), vi('sr')]).map((b) => b.map((f) => f.slice(silero.length + 1))))
        .toEqual([['input_0.pb', 'input_1.pb', 'input_2.pb']]);
    }
  });

  it('refuses unmatched files, uneven counts, empty folders', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-data-'));
    writeNpy(join(dir, 'a_0.npy'), t());
    writeNpy(join(dir, 'a_1.npy'), t());
    writeNpy(join(dir, 'b_0.npy'), t());
    expect(() => planDirectory(dir, [vi('a'), vi('b')])).toThrow(/every input needs the same number of files, found a: 2, b: 1/);
    writeNpy(join(dir, 'zzz.npy'), t());
    expect(() => planDirectory(dir, [vi('a'), vi('b')])).toThrow(/zzz\.npy' matches no input/);
    expect(() => planDirectory(mkdtempSync(join(tmpdir(), 'tsrt-data-')), [vi('a')])).toThrow(/has no \.pb or \.npy files/);
    expect(() => planDirectory('/nonexistent-dir', [vi('a')])).toThrow(/is not a directory/);
  });
});

describe('calibrate() on the bundled PaddleOCR classifier (CPU reference)', () => {
  const model = loadModel(DEFAULT_MODEL);
  const batches = [1, 2, 3].map((s) => ({ x: randomTensor('float32', [2, 3, 48, 192], s) }));

  it('gives every conv input a positive scale, entropy within minmax', async () => {
    const progress: number[] = [];
    const ent = await calibrate(model, batches, { method: 'entropy', device: 'cpu', onProgress: (d) => progress.push(d) });
    const mm = await calibrate(model, batches, { method: 'minmax', device: 'cpu' });
    expect(ent.batches).toBe(3);
    expect(progress).toEqual([1, 2, 3]);
    const convInputs = model.graph.nodes.filter((n) => n.op === 'Conv').map((n) => n.inputs[0]);
    expect(convInputs.length).toBeGreaterThan(10);
    for (const name of convInputs) {
      expect(ent.scales[name], name).toBeGreaterThan(0);
      expect(Number.isFinite(ent.scales[name]), name).toBe(true);
      expect(ent.scales[name], name).toBeLessThanOrEqual(mm.scales[name]);
    }
    // minmax of the input is its max |x| (random uniform in [-1, 1))
    const maxX = batches.reduce((m, b) => (b.x.data as Float32Array).reduce((a, v) => Math.max(a, Math.abs(v)), m), 0);
    expect(mm.scales.x).toBe(Math.fround(maxX / 127));
    // names are tensors of the model, every scale is a float32 value
    const names = new Set([...model.graph.nodes.flatMap((n) => n.outputs), 'x']);
    for (const [k, v] of Object.entries(ent.scales)) { expect(names.has(k), k).toBe(true); expect(Math.fround(v)).toBe(v); }
    // round trip through a cache file
    const p = join(mkdtempSync(join(tmpdir(), 'tsrt-cal-')), 'ppocr.cache');
    writeCalibrationCache(p, ent);
    expect(readCalibrationCache(p).scales).toEqual(ent.scales);
  });

  it('reads a directory of .npy batches and refuses a batch of another shape', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrt-cal-'));
    batches.slice(0, 2).forEach((b, k) => writeNpy(join(dir, `x_${k}.npy`), b.x));
    const r = await calibrate(model, dir, { method: 'percentile', device: 'cpu' });
    expect(r.batches).toBe(2);
    expect(r.scales.x).toBeGreaterThan(0);
    writeNpy(join(dir, 'x_2.npy'), randomTensor('float32', [1, 3, 48, 192], 9));
    await expect(calibrate(model, dir, { device: 'cpu' })).rejects.toThrow(/x_2\.npy: input 'x' has shape \[1,3,48,192\], the first batch had \[2,3,48,192\]/);
    await expect(calibrate(model, [{ x: randomTensor('float64', [1, 3, 48, 192], 1) }], { device: 'cpu' })).rejects.toThrow(/input 'x' is float64, the model expects float32/);
    await expect(calibrate(model, [], { device: 'cpu' })).rejects.toThrow(/no batches/);
    // the model's own folder: test_data_set_0/input_0.pb (TensorProto) is one batch, output_0.pb is skipped
    const own = await calibrate(model, join(DEFAULT_MODEL, '..'), { method: 'minmax', device: 'cpu' });
    expect(own.batches).toBe(1);
    expect(own.scales.x).toBeGreaterThan(0);
  });
});

describe.skipIf(!cudaAvailable())('calibrate() on the GPU (fp32 engine, markOutputs: all)', () => {
  it('sees the fused graph\'s tensors with the CPU reference\'s ranges', async () => {
    const model = loadModel(DEFAULT_MODEL);
    const batches = [1, 2].map((s) => ({ x: randomTensor('float32', [2, 3, 48, 192], s) }));
    const gpu = await calibrate(model, batches, { method: 'minmax', device: 'cuda' });
    const cpu = await calibrate(model, batches, { method: 'minmax', device: 'cpu' });
    expect(gpu.device).toBe('cuda');
    // every conv input survives fusion as some kernel's output (a fused conv's output keeps the last node's name)
    const missing = model.graph.nodes.filter((n) => n.op === 'Conv').map((n) => n.inputs[0]).filter((x) => !(x in gpu.scales));
    expect(missing).toEqual([]);
    let common = 0;
    for (const [k, s] of Object.entries(gpu.scales)) {
      if (!(k in cpu.scales)) continue;
      common++;
      expect(Math.abs(s - cpu.scales[k]), k).toBeLessThanOrEqual(1e-4 * cpu.scales[k] + 1e-9);
    }
    expect(common).toBeGreaterThan(20);
    const ent = await calibrate(model, batches, { method: 'entropy', device: 'cuda' });
    for (const k of Object.keys(ent.scales)) expect(ent.scales[k], k).toBeLessThanOrEqual(gpu.scales[k]);
  });
});
