// Importing this module registers every op family.
import './elementwise.js';
import './shape.js';
import './reduce.js';
import './norm.js';
import './conv.js';
import './pool.js';
import './gemm.js';
import './quant.js';
import './resize.js';
import './control.js';
import './rnn.js';
import './fused.js';
import './attention_fused.js';
import './qlinear.js';
import './layout.js';
import './concat_in_place.js';
import './relayout.js';

export { getOp, allOps, register } from './registry.js';
export type { OpDef, InferCtx, CpuCtx, UpgradeCtx, PrecisionPolicy } from './registry.js';
