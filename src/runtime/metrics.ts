// Accuracy metrics of a tensor against a reference (Polygraphy-style): max/mean abs error, cosine similarity,
// SQNR in dB and top-1 agreement, accumulated over several samples; and the `cosine>=0.999` bounds that
// `tsrt compare --check` and `--accuracy-budget` read.
import { TsrtError } from '../errors.js';
import { toF64 } from '../ir/tensor.js';
import type { Tensor } from '../ir/types.js';

export interface Metrics {
  /** Elements compared (reference elements that are not finite are skipped and counted in refNonFinite). */
  count: number;
  maxAbs: number;
  meanAbs: number;
  /** dot(x, ref) / (|x| |ref|); 1 when both are zero, NaN when x has inf/NaN. */
  cosine: number;
  /** 10 log10(sum ref^2 / sum (ref - x)^2): +Infinity when equal, -Infinity when x overflowed. */
  sqnrDb: number;
  /** Fraction of rows (argmax over the last axis) whose argmax agrees. */
  top1: number;
  /** Elements of x that are inf/NaN where the reference is finite (fp16 overflow shows up here). */
  nonFinite: number;
  refNonFinite: number;
}

/** Sums over every sample, so metrics over a data set weigh every element once (not a mean of per-sample ratios). */
export class MetricAccumulator {
  private n = 0; private maxAbs = 0; private sumAbs = 0; private dot = 0; private nx = 0; private nr = 0;
  private sumErr2 = 0; private rows = 0; private agree = 0; private nonFinite = 0; private refNonFinite = 0;

  /** `rowLen`: size of the last axis, for top-1. */
  add(x: Float64Array, ref: Float64Array, rowLen: number): void {
    if (x.length !== ref.length) {
      throw new TsrtError('USAGE', `cannot compare tensors of ${x.length} and ${ref.length} elements`, 'compare tensors of the same shape');
    }
    for (let i = 0; i < ref.length; i++) {
      const r = ref[i], v = x[i];
      if (!Number.isFinite(r)) { this.refNonFinite++; continue; }
      if (!Number.isFinite(v)) this.nonFinite++;
      const e = Math.abs(v - r);
      this.n++;
      if (!(e <= this.maxAbs)) this.maxAbs = Number.isNaN(e) ? Infinity : e;
      this.sumAbs += Number.isNaN(e) ? Infinity : e;
      this.sumErr2 += Number.isNaN(e) ? Infinity : e * e;
      this.dot += v * r; this.nx += v * v; this.nr += r * r;
    }
    const row = Math.max(1, rowLen);
    for (let s = 0; s + row <= ref.length; s += row) {
      let ia = s, ib = s, bad = false;
      for (let i = s; i < s + row; i++) {
        if (Number.isNaN(x[i])) bad = true;
        if (x[i] > x[ia]) ia = i;
        if (ref[i] > ref[ib]) ib = i;
      }
      this.rows++;
      if (!bad && ia === ib) this.agree++;
    }
  }

  addTensors(x: Tensor, ref: Tensor): void {
    this.add(toF64(x), toF64(ref), ref.dims.length ? ref.dims[ref.dims.length - 1] : 1);
  }

  result(): Metrics {
    const { n, nx, nr, sumErr2 } = this;
    const cosine = nx === 0 && nr === 0 ? 1 : nx === 0 || nr === 0 ? 0 : this.dot / Math.sqrt(nx * nr);
    const sqnrDb = sumErr2 === 0 ? Infinity : nr === 0 ? -Infinity : 10 * Math.log10(nr / sumErr2);
    return {
      count: n, maxAbs: this.maxAbs, meanAbs: n ? this.sumAbs / n : 0, cosine, sqnrDb,
      top1: this.rows ? this.agree / this.rows : 1, nonFinite: this.nonFinite, refNonFinite: this.refNonFinite,
    };
  }
}

export function metrics(x: Tensor, ref: Tensor): Metrics {
  const acc = new MetricAccumulator();
  acc.addTensors(x, ref);
  return acc.result();
}

export type MetricName = 'cosine' | 'top1' | 'sqnr' | 'maxabs' | 'meanabs';
export interface Bound { metric: MetricName; op: '>=' | '<=' | '>' | '<'; value: number; text: string }

const METRIC_KEY: Record<MetricName, keyof Metrics> = { cosine: 'cosine', top1: 'top1', sqnr: 'sqnrDb', maxabs: 'maxAbs', meanabs: 'meanAbs' };

/** Parses "cosine>=0.999,top1>=0.99,sqnr>=30" (also maxabs<=X, meanabs<=X). */
export function parseBounds(spec: string, flag = '--accuracy-budget'): Bound[] {
  const out = spec.split(',').map((s) => s.trim()).filter(Boolean).map((text) => {
    const m = /^([a-z0-9_]+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)$/i.exec(text);
    const metric = m?.[1].toLowerCase().replace(/_/g, '') as MetricName | undefined;
    const value = Number(m?.[3]);
    if (!m || !metric || !(metric in METRIC_KEY) || !Number.isFinite(value)) {
      throw new TsrtError('USAGE', `bad ${flag} bound '${text}'`, `write metric>=value with metric one of ${Object.keys(METRIC_KEY).join(', ')}, e.g. cosine>=0.999,top1>=0.99,sqnr>=30`);
    }
    return { metric, op: m[2] as Bound['op'], value, text: `${metric}${m[2]}${value}` };
  });
  if (!out.length) throw new TsrtError('USAGE', `${flag} is empty`, 'e.g. cosine>=0.999');
  return out;
}

export function metricValue(m: Metrics, metric: MetricName): number { return m[METRIC_KEY[metric]] as number; }

/** The bounds a result breaks (NaN breaks every bound). */
export function failedBounds(m: Metrics, bounds: Bound[]): Bound[] {
  return bounds.filter((b) => {
    const v = metricValue(m, b.metric);
    return !(b.op === '>=' ? v >= b.value : b.op === '<=' ? v <= b.value : b.op === '>' ? v > b.value : v < b.value);
  });
}

/** Short number for tables: dB with one decimal, others 4 significant digits; inf/nan spelled out. */
export function fmt(v: number, kind: 'db' | 'num' | 'frac' = 'num'): string {
  if (Number.isNaN(v)) return 'nan';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  if (kind === 'db') return v.toFixed(1);
  if (kind === 'frac') return v === 1 ? '1' : v.toFixed(6);
  return v === 0 ? '0' : Math.abs(v) >= 1e-3 && Math.abs(v) < 1e4 ? v.toPrecision(4) : v.toExponential(2);
}

/** JSON.stringify replacer: inf/nan are not JSON, write them as strings. */
export function jsonNumbers(_k: string, v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? String(v) : v;
}
