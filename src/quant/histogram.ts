// Activation statistics for INT8 post-training calibration: a histogram of |x| that grows with the data, and
// the three ways TensorRT turns statistics into a dynamic range (amax): entropy (EntropyCalibrator2), minmax
// and percentile. Scales are symmetric per tensor: scale = amax / 127, rounded to float32.

export type CalibrationMethod = 'entropy' | 'minmax' | 'percentile';

/** Bins of the first batch's range, and the quantized levels the entropy search merges them into. */
export const HISTOGRAM_BINS = 2048;
export const QUANT_LEVELS = 128;
/** Beyond this many bins (a later batch 64x the first's range) pairs of bins merge, doubling the width, so one
 * far outlier cannot make a tensor's histogram (and the O(bins * levels) entropy search) unbounded. */
export const MAX_BINS = 1 << 17;

/** Histogram of |x| over [0, bins * width): the first batch with a non-zero value sets width = max / 2048; a
 * later batch beyond the range appends bins of the same width, so earlier counts stay where they are. */
export class AbsHistogram {
  counts = new Float64Array(0);
  nbins = 0;
  width = 0;
  /** Largest finite |x| seen (the minmax range). */
  maxAbs = 0;
  /** Finite values counted. */
  total = 0;
  /** NaN and +-Inf values, left out of the statistics. */
  nonFinite = 0;
  /** Zeros seen before any non-zero value fixed the width; they belong in bin 0. */
  private pendingZeros = 0;

  add(data: ArrayLike<number>): void {
    let m = 0, finite = 0;
    for (let i = 0; i < data.length; i++) {
      const a = Math.abs(data[i]);
      if (a === Infinity || a !== a) continue;
      finite++;
      if (a > m) m = a;
    }
    this.nonFinite += data.length - finite;
    this.total += finite;
    if (m > this.maxAbs) this.maxAbs = m;
    if (this.width === 0) {
      if (m === 0) { this.pendingZeros += finite; return; }
      this.width = m / HISTOGRAM_BINS;
      this.nbins = HISTOGRAM_BINS;
      this.counts = new Float64Array(HISTOGRAM_BINS);
      this.counts[0] = this.pendingZeros;
      this.pendingZeros = 0;
    } else if (m > this.nbins * this.width) {
      this.grow(m);
    }
    const inv = 1 / this.width, last = this.nbins - 1, c = this.counts;
    for (let i = 0; i < data.length; i++) {
      const a = Math.abs(data[i]);
      if (a === Infinity || a !== a) continue;
      const k = Math.floor(a * inv);
      c[k < last ? k : last]++;
    }
  }

  /** The counts as a dense array of nbins (a copy). */
  histogram(): Float64Array {
    return this.counts.slice(0, this.nbins);
  }

  /** Dynamic range by the chosen method (0 for a tensor that was always zero). */
  amax(method: CalibrationMethod, percentile = 99.99): number {
    if (method === 'minmax' || this.maxAbs === 0) return this.maxAbs;
    const h = this.histogram();
    // a bin edge can pass the largest value by up to one bin (the top bin of a grown histogram, float rounding
    // of 2048 * (max / 2048)); no value lies beyond maxAbs, so that part of the range would only be wasted
    const edge = method === 'percentile' ? percentileAmax(h, this.width, percentile) : entropyThreshold(h).bin * this.width;
    return Math.min(edge, this.maxAbs);
  }

  private grow(m: number): void {
    let n = Math.ceil(m / this.width);
    while (n * this.width < m) n++;
    while (n > MAX_BINS) {
      const half = Math.ceil(this.nbins / 2);
      for (let j = 0; j < half; j++) this.counts[j] = this.counts[2 * j] + (2 * j + 1 < this.nbins ? this.counts[2 * j + 1] : 0);
      this.counts.fill(0, half, this.nbins);
      this.nbins = half;
      this.width *= 2;
      n = Math.ceil(m / this.width);
      while (n * this.width < m) n++;
    }
    if (n > this.counts.length) {
      const bigger = new Float64Array(Math.min(MAX_BINS, Math.max(n, 2 * this.counts.length)));
      bigger.set(this.counts.subarray(0, this.nbins));
      this.counts = bigger;
    }
    this.nbins = n;
  }
}

/**
 * KL(P || Q) for every threshold i in [levels, bins] (index i of the result; Infinity where Q is 0 on a bin
 * where P is not, and for i < levels). `hist` is used as given: entropyThreshold applies the bin-0 rule first.
 *
 * For threshold i (TensorRT's EntropyCalibrator2, as in Migacz, "8-bit Inference with TensorRT", GTC 2017):
 *   P = hist[0..i) with the outlier mass sum(hist[i..)) added to bin i-1;
 *   Q = hist[0..i) (without the outliers) merged into `levels` levels, bin k going to level floor(k*levels/i)
 *       (the level int8 quantization at this threshold maps it to; pytorch-quantization's np.digitize over
 *       linspace(0, i, levels+1) gives the same), each level's mass spread evenly over the level's bins where
 *       P is non-zero; both normalized to sum 1.
 * Q is merged from the bins *without* the outliers, as in the GTC slides (and MXNet's and ONNX Runtime's
 * entropy calibrators): merged from P itself, Q would equal P at i = levels (one bin per level), so KL would
 * be 0 there for every histogram and the search would always clip at the first candidate.
 *
 * Computed per level rather than per bin: within a level q is constant, so the level's share of
 * sum p*log(p/q) is sum(p log p) - mass(p) * log q, read from prefix sums. That makes a threshold cost
 * O(levels) instead of O(i), which keeps grown histograms (up to MAX_BINS) cheap.
 */
export function klDivergences(hist: Float64Array, levels = QUANT_LEVELS): Float64Array {
  const n = hist.length;
  const out = new Float64Array(n + 1).fill(Infinity);
  const mass = new Float64Array(n + 1), nonzero = new Float64Array(n + 1), plogp = new Float64Array(n + 1);
  for (let k = 0; k < n; k++) {
    const h = hist[k];
    mass[k + 1] = mass[k] + h;
    nonzero[k + 1] = nonzero[k] + (h > 0 ? 1 : 0);
    plogp[k + 1] = plogp[k] + (h > 0 ? h * Math.log(h) : 0);
  }
  const total = mass[n];
  if (total <= 0) return out;
  const logTotal = Math.log(total);
  for (let i = levels; i <= n; i++) {
    const outliers = total - mass[i];
    const sumQ = mass[i];
    if (sumQ <= 0) continue;
    const hLast = hist[i - 1], pLast = hLast + outliers;
    // bin i-1 of P differs from hist by the outliers: correct the last level's sums for it
    const lastLogFix = (pLast > 0 ? pLast * Math.log(pLast) : 0) - (hLast > 0 ? hLast * Math.log(hLast) : 0);
    const lastNonzeroFix = hLast === 0 && pLast > 0 ? 1 : 0;
    let acc = 0;
    for (let j = 0; j < levels; j++) {
      const a = Math.floor((j * i + levels - 1) / levels); // first bin k with floor(k*levels/i) = j
      const b = Math.floor(((j + 1) * i + levels - 1) / levels);
      if (b <= a) continue;
      const isLast = b === i;
      const raw = mass[b] - mass[a];
      const pMass = raw + (isLast ? outliers : 0);
      if (pMass <= 0) continue;
      if (raw <= 0) { acc = Infinity; break; }
      const nz = nonzero[b] - nonzero[a] + (isLast ? lastNonzeroFix : 0);
      acc += plogp[b] - plogp[a] + (isLast ? lastLogFix : 0) - pMass * Math.log(raw / nz);
    }
    out[i] = acc === Infinity ? Infinity : acc / total - logTotal + Math.log(sumQ);
  }
  return out;
}

/**
 * EntropyCalibrator2's threshold: bin 0 is set to bin 1's count (the |x| = 0 spike, ReLU zeros, would
 * otherwise dominate the distribution), then the i in [levels, bins] with the smallest KL(P || Q); among
 * thresholds equal up to rounding (relative 1e-12) the larger wins, so clipping is chosen only when it pays.
 * amax = bin * width. A histogram shorter than `levels` bins keeps its full range.
 */
export function entropyThreshold(hist: Float64Array, levels = QUANT_LEVELS): { bin: number; kl: number } {
  if (hist.length < Math.max(levels, 2)) return { bin: hist.length, kl: 0 };
  const h = hist.slice();
  h[0] = h[1];
  const kl = klDivergences(h, levels);
  let best = Infinity;
  for (let i = levels; i <= h.length; i++) if (kl[i] < best) best = kl[i];
  if (best === Infinity) return { bin: h.length, kl: Infinity };
  const tol = 1e-12 * Math.abs(best) + 1e-12;
  for (let i = h.length; i >= levels; i--) if (kl[i] <= best + tol) return { bin: i, kl: kl[i] };
  return { bin: h.length, kl: best };
}

/** The upper edge of the first bin where the cumulative count reaches `pct` percent of all values (the
 * amax below which that share of |x| falls, rounded up to the histogram's resolution). */
export function percentileAmax(hist: Float64Array, width: number, pct: number): number {
  let total = 0;
  for (let k = 0; k < hist.length; k++) total += hist[k];
  const target = (pct / 100) * total;
  let cum = 0;
  for (let k = 0; k < hist.length; k++) {
    cum += hist[k];
    if (cum >= target && cum > 0) return (k + 1) * width;
  }
  return hist.length * width;
}

/** Symmetric int8 scale of a dynamic range, as a float32 value (what TensorRT stores in its cache). */
export function scaleOf(amax: number): number {
  return Math.fround(amax / 127);
}
