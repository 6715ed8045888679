// The build pipeline: one flat list of named passes, read top to bottom. The optimization level of the
// build decides which run (each pass's `level`).
import type { Graph } from '../ir/types.js';
import { deadCode, foldConstants, inferTypes, removeNoOps, specializeShapes } from './basic.js';
import { fp16Precision } from './precision.js';
import { FUSION_PASSES } from './fuse.js';
import { channelsLast } from './layout.js';
import { fuseAttention } from './attention.js';
import { runPasses, type Instrument, type Pass, type PassContext } from './pass.js';

export const PIPELINE: Pass[] = [
  specializeShapes,
  inferTypes,
  foldConstants,
  removeNoOps,
  deadCode,
  inferTypes,
  // precision first, so fusion sees the final dtypes and Casts fuse like any elementwise op
  fp16Precision,
  inferTypes,
  ...FUSION_PASSES,
  fuseAttention,
  inferTypes,
  channelsLast,
  inferTypes,
  deadCode,
];

export function optimize(g: Graph, ctx: PassContext, instruments: Instrument[] = [], passes: Pass[] = PIPELINE): Graph {
  return runPasses(g, passes, ctx, instruments);
}
