// The library's public surface (`import { build } from 'tsrt'`). Everything a user builds on is re-exported
// here, so internal module paths can move without breaking callers. docs/api.md documents it.

// Importing and building
export { loadModel, parseModel, loadTensorFile, checkSupport, MIN_OPSET, MAX_OPSET, type ImportOptions } from './onnx/import.js';
export { build, buildForFeeds, markOutputs, Engine, type BuildOptions, type BuildReport, type LayerInfo } from './runtime/engine.js';
export { cudaAvailable } from './runtime/device_runner.js';
export { saveEngine, loadEngine, readPlanHeader, isPlanFile, type PlanHeader, type LoadOptions } from './runtime/plan.js';
export { ProfileSet, PROFILE_CACHE_SIZE, type Profile } from './runtime/profiles.js';
export { compareModel, type CompareOptions, type CompareResult, type LayerRow, type OutputRow } from './runtime/compare.js';
export { buildWithBudget, type BudgetOptions, type BudgetResult, type BudgetMove } from './runtime/budget.js';
export { metrics, MetricAccumulator, parseBounds, failedBounds, type Metrics, type Bound } from './runtime/metrics.js';
export { parsePrecisionSpec, forcedPrecision, type PrecisionRule, type PrecisionReport, type LayerPrecision } from './passes/precision_rules.js';

export { runGraph, runModelCpu, checkFeeds, type CpuRunOptions } from './runtime/cpu_executor.js';

// Errors: every failure a user can cause is a TsrtError with a code and a fix
export {
  TsrtError, ModelLoadError, UnsupportedError, GraphError, InputError,
  type ErrorCode, type UnsupportedItem,
} from './errors.js';

// IR data and tensors
export type { Attr, DType, Dim, Graph, Model, Node, Tensor, TensorType, TypedArray, ValueInfo } from './ir/types.js';
export {
  makeTensor, allocData, size, toF64, toF32, fromF64, scalar, f32ToF16Bits, f16BitsToF32, DTYPE_SIZE,
} from './ir/tensor.js';
export { readNpy, writeNpy, readTensor, randomTensor, accuracy } from './cli/io.js';
export { printGraph, parseGraph, type PrintOptions, type ParseOptions } from './ir/text.js';
export { verifyGraph, type Problem } from './ir/verify.js';
export { inferShapes } from './ir/infer.js';

// Pass manager: hook custom passes and instruments into the build
export {
  newPassContext, runPasses, dumpInstrument, verifyInstrument,
  type Pass, type PassContext, type PassOptions, type Instrument, type FusionRecord, type RejectedFusion,
} from './passes/pass.js';
export { PIPELINE, optimize } from './passes/pipeline.js';

// Op registry: custom ops get an OpDef (shape inference + CPU reference; lowering decides GPU support)
export {
  register, getOp, allOps,
  type OpDef, type InferCtx, type CpuCtx, type UpgradeCtx, type PrecisionPolicy,
} from './ops/registry.js';

// INT8 calibration: per-tensor activation scales (amax / 127) for BuildOptions.int8Scales, TensorRT-format caches
export { calibrate, type CalibrateOptions, type CalibrationResult } from './quant/calibrate.js';
export {
  readCalibrationCache, writeCalibrationCache, parseCalibrationCache, formatCalibrationCache,
  CACHE_ALGORITHMS, DEFAULT_TRT_VERSION, type CalibrationCache,
} from './quant/cache.js';
export { AbsHistogram, entropyThreshold, klDivergences, percentileAmax, scaleOf, type CalibrationMethod } from './quant/histogram.js';
export { perChannelWeightScales } from './quant/weights.js';
export { openCalibrationData, type CalibrationBatch, type CalibrationData } from './quant/data.js';
