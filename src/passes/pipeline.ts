// The build pipeline: one flat list of named passes, read top to bottom. The optimization level of the
// build decides which run (each pass's `level`).
import type { Graph } from '../ir/types.js';
import { deadCode, foldConstants, inferTypes, removeNoOps, specializeShapes } from './basic.js';
import { fp16Precision } from './precision.js';
import { FUSION_PASSES, foldBatchNorm } from './fuse.js';
import { recognizePatterns } from './patterns.js';
import { channelsLast } from './layout.js';
import { fuseAttention } from './attention.js';
import { quantizeInt8, recordQdqWeights } from './quantize.js';
import { qlinearInt8 } from './qlinear_int8.js';
import { concatInPlace } from './concat.js';
import { fuseQkv } from './horizontal.js';
import { gemmRowOrder } from './row_order.js';
import { fuseRelayout } from './relayout.js';
import { spaceToDepthConv } from './space_to_depth.js';
import { runPasses, type Instrument, type Pass, type PassContext } from './pass.js';

export const PIPELINE: Pass[] = [
  specializeShapes,
  inferTypes,
  // before folding turns DequantizeLinear(int8 weights) into floats: the explicit int8 path needs the integers
  recordQdqWeights,
  foldConstants,
  removeNoOps,
  deadCode,
  inferTypes,
  // decomposed LayerNorm/GELU/Softmax are recognized on the fp32 graph: their constants rounded to fp16 no longer
  // evaluate to the reference function within the recognizer's tolerance (1/sqrt(2) -> 1.4140625), and the single
  // ops then get their own precision policy (LayerNorm accumulates in fp32)
  recognizePatterns,
  // BatchNorm folds into fp32 weights, which are then rounded to fp16 once (folding after the cast rounded twice)
  foldBatchNorm,
  // precision before fusion, so fusion sees the final dtypes and Casts fuse like any elementwise op
  fp16Precision,
  inferTypes,
  // before the epilogue fusions: a GEMM that writes its rows in the order they are read can take the residual Add
  gemmRowOrder,
  ...FUSION_PASSES,
  fuseAttention,
  fuseQkv,
  inferTypes,
  // QLinearConv/QLinearMatMul onto the int8 kernels with ONNX's requantize (their own scales; no calibration),
  // before layout, which makes QConv channels-last
  qlinearInt8,
  // after the epilogue fusions (int8 kernels fuse them too) and before layout (which makes QConv channels-last)
  quantizeInt8,
  inferTypes,
  channelsLast,
  inferTypes,
  // after layout, which adds the NCHW -> NHWC transposes it merges with the input Cast and the stem's channel pad
  fuseRelayout,
  // after fuse-relayout: a stride-2 stem over 3 channels takes the prepared input as a 2x2 space-to-depth
  spaceToDepthConv,
  // last: it needs the final layout (which axis is concatenated) and every producer in place
  concatInPlace,
  deadCode,
];

export function optimize(g: Graph, ctx: PassContext, instruments: Instrument[] = [], passes: Pass[] = PIPELINE): Graph {
  return runPasses(g, passes, ctx, instruments);
}
