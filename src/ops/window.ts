// Sliding-window geometry shared by Conv, ConvTranspose and the pooling ops: attribute parsing with defaults,
// auto_pad resolution, output sizes (static and symbolic), and per-tap index tables that let the CPU kernels
// handle 1-D, 2-D and 3-D windows with one code path.
import { GraphError } from '../errors.js';
import type { Dim, Node } from '../ir/types.js';
import { attrInt, attrInts, attrString } from './attrs.js';

export type AutoPad = 'NOTSET' | 'SAME_UPPER' | 'SAME_LOWER' | 'VALID';

export interface WindowAttrs {
  kernel: number[];
  strides: number[];
  dilations: number[];
  /** [x1_begin, x2_begin, ..., x1_end, x2_end, ...] as in ONNX; only used when autoPad is NOTSET. */
  pads: number[];
  autoPad: AutoPad;
  ceilMode: boolean;
}

/** Resolved geometry of one window op on concrete input sizes. */
export interface Window {
  inSp: number[];
  outSp: number[];
  kernel: number[];
  strides: number[];
  dilations: number[];
  padsBegin: number[];
  padsEnd: number[];
}

const AUTO_PADS: AutoPad[] = ['NOTSET', 'SAME_UPPER', 'SAME_LOWER', 'VALID'];

/** Reads kernel_shape/strides/dilations/pads/auto_pad/ceil_mode with ONNX defaults for `n` spatial dims. */
export function readWindowAttrs(node: Node, n: number, kernelFromWeight?: number[]): WindowAttrs {
  const kernel = attrInts(node, 'kernel_shape') ?? kernelFromWeight;
  if (!kernel) {
    throw new GraphError(`${node.op} needs kernel_shape`, node.name, 'set the kernel_shape attribute (one size per spatial axis)');
  }
  const list = (name: string, v: number[], len: number, min: number) => {
    if (v.length !== len) {
      throw new GraphError(`attribute '${name}' has ${v.length} values, expected ${len} for ${n} spatial dims`, node.name,
        `give one ${name} value per spatial axis${name === 'pads' ? ' at the beginning and one at the end' : ''}`);
    }
    if (v.some((x) => !Number.isInteger(x) || x < min)) {
      throw new GraphError(`attribute '${name}' [${v}] must hold integers >= ${min}`, node.name);
    }
    return v;
  };
  list('kernel_shape', kernel, n, 1);
  const strides = list('strides', attrInts(node, 'strides', new Array(n).fill(1)), n, 1);
  const dilations = list('dilations', attrInts(node, 'dilations', new Array(n).fill(1)), n, 1);
  const pads = list('pads', attrInts(node, 'pads', new Array(2 * n).fill(0)), 2 * n, 0);
  const autoPad = readAutoPad(node);
  return { kernel, strides, dilations, pads, autoPad, ceilMode: attrInt(node, 'ceil_mode', 0) !== 0 };
}

export function readAutoPad(node: Node): AutoPad {
  const a = attrString(node, 'auto_pad', 'NOTSET');
  // Some exporters write an empty string for the default.
  const v = (a === '' ? 'NOTSET' : a) as AutoPad;
  if (!AUTO_PADS.includes(v)) {
    throw new GraphError(`auto_pad '${a}' is not one of ${AUTO_PADS.join(', ')}`, node.name, 'use NOTSET with explicit pads');
  }
  return v;
}

/** Output size and begin/end padding of one spatial axis of a forward window (Conv and pooling). */
export function windowAxis(a: WindowAttrs, i: number, inSize: number): { out: number; begin: number; end: number } {
  const n = a.kernel.length;
  const s = a.strides[i];
  const keff = (a.kernel[i] - 1) * a.dilations[i] + 1;
  switch (a.autoPad) {
    case 'VALID':
      return { out: Math.floor((inSize - keff) / s) + 1, begin: 0, end: 0 };
    case 'SAME_UPPER':
    case 'SAME_LOWER': {
      const out = Math.ceil(inSize / s);
      const total = Math.max(0, (out - 1) * s + keff - inSize);
      const small = Math.floor(total / 2);
      return a.autoPad === 'SAME_UPPER' ? { out, begin: small, end: total - small } : { out, begin: total - small, end: small };
    }
    default: {
      const begin = a.pads[i], end = a.pads[i + n];
      const span = inSize + begin + end - keff;
      if (!a.ceilMode) return { out: Math.floor(span / s) + 1, begin, end };
      let out = Math.ceil(span / s) + 1;
      // A window that would start in the end padding is dropped (PyTorch and ONNX agree).
      if ((out - 1) * s >= inSize + begin) out--;
      return { out, begin, end };
    }
  }
}

/** Concrete geometry; throws when the window does not fit the (padded) input. */
export function resolveWindow(node: Node, a: WindowAttrs, inSp: number[]): Window {
  const w: Window = { inSp, outSp: [], kernel: a.kernel, strides: a.strides, dilations: a.dilations, padsBegin: [], padsEnd: [] };
  inSp.forEach((size, i) => {
    const r = windowAxis(a, i, size);
    if (r.out < 0 || (r.out === 0 && size > 0)) {
      throw new GraphError(`window of size ${a.kernel[i]} (dilation ${a.dilations[i]}) does not fit spatial axis ${i} of size ${size}` +
        ` with pads ${r.begin}+${r.end}`, node.name, 'check kernel_shape, pads and the input size');
    }
    w.outSp.push(Math.max(0, r.out));
    w.padsBegin.push(r.begin);
    w.padsEnd.push(r.end);
  });
  return w;
}

/** Symbolic output sizes: computed where the input size is known, kept when the window preserves size. */
export function windowOutDims(node: Node, a: WindowAttrs, inSp: Dim[], fresh: () => string): Dim[] {
  return inSp.map((d, i) => {
    if (typeof d === 'number') {
      const r = windowAxis(a, i, d);
      if (r.out < 0 || (r.out === 0 && d > 0)) {
        throw new GraphError(`window of size ${a.kernel[i]} does not fit spatial axis ${i} of size ${d}`, node.name,
          'check kernel_shape, pads and the input size');
      }
      return r.out;
    }
    const keff = (a.kernel[i] - 1) * a.dilations[i] + 1;
    const n = a.kernel.length;
    const same = a.autoPad === 'SAME_UPPER' || a.autoPad === 'SAME_LOWER' ||
      (a.autoPad === 'NOTSET' && a.pads[i] + a.pads[i + n] === keff - 1) || (a.autoPad === 'VALID' && keff === 1);
    return same && a.strides[i] === 1 ? d : fresh();
  });
}

/**
 * For one kernel tap (multi-index `tap`), the offset inside one input plane read by each output position in
 * [n0, n0 + count), or -1 where the tap falls into padding. `idx` receives `count` entries.
 */
export function tapOffsets(w: Window, tap: number[], n0: number, count: number, idx: Int32Array): void {
  const r = w.inSp.length;
  const inStr = new Array<number>(r);
  let acc = 1;
  for (let d = r - 1; d >= 0; d--) { inStr[d] = acc; acc *= w.inSp[d]; }
  // Output multi-index of n0.
  const ctr = new Array<number>(r).fill(0);
  let rem = n0;
  for (let d = r - 1; d >= 0; d--) { ctr[d] = rem % w.outSp[d]; rem = Math.floor(rem / w.outSp[d]); }
  const shift = tap.map((t, d) => t * w.dilations[d] - w.padsBegin[d]);
  const last = r - 1;
  const sLast = w.strides[last], inLast = w.inSp[last], outLast = w.outSp[last];
  let j = 0;
  while (j < count) {
    // Offset of the outer coordinates, or -1 if any of them is in padding.
    let base = 0;
    for (let d = 0; d < last; d++) {
      const c = ctr[d] * w.strides[d] + shift[d];
      if (c < 0 || c >= w.inSp[d]) { base = -1; break; }
      base += c * inStr[d];
    }
    const run = Math.min(outLast - ctr[last], count - j);
    let c = ctr[last] * sLast + shift[last];
    if (base < 0) {
      idx.fill(-1, j, j + run);
    } else {
      for (let k = 0; k < run; k++, c += sLast) idx[j + k] = c >= 0 && c < inLast ? base + c : -1;
    }
    j += run;
    ctr[last] = 0;
    for (let d = last - 1; d >= 0; d--) {
      if (++ctr[d] < w.outSp[d]) break;
      ctr[d] = 0;
    }
  }
}

/** Multi-index of every kernel tap, row-major over the kernel shape (the weight layout). */
export function kernelTaps(kernel: number[]): number[][] {
  const taps: number[][] = [];
  const t = new Array<number>(kernel.length).fill(0);
  const total = kernel.reduce((x, y) => x * y, 1);
  for (let k = 0; k < total; k++) {
    taps.push([...t]);
    for (let d = kernel.length - 1; d >= 0; d--) {
      if (++t[d] < kernel[d]) break;
      t[d] = 0;
    }
  }
  return taps;
}
