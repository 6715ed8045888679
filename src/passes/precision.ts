// Reduced precision: run every node whose policy allows it in fp16 or bf16 (storage fp16/bf16, kernels accumulate
// in fp32), keep `never` ops in fp32, and insert Casts only at the boundaries. Graph inputs and outputs keep
// their declared types. Per-layer rules (precision_rules.ts) keep matched nodes fp32 or lift an earlier fp32 rule.
//
// Accumulation: the kernels of reductions (ReduceSum/Mean/..., codegen/reduce.ts), Softmax/LogSoftmax and
// LayerNormalization load fp16 and accumulate in fp32 (`computeType` of fp16 is float), conv/gemm accumulate in
// fp32 on the tensor cores, and fused elementwise groups compute in float: only the *stored* tensors are fp16.
// So what fp16 loses is range (|x| > 65504 becomes inf) and the rounding of stored tensors, which is what
// `--layer-precisions name:fp32` and the accuracy budget fix. bf16 (--bf16) is the same policy with the other
// 16-bit type: fp32's range (no overflow) but 8 mantissa bits instead of 11, so rounding costs ~18 dB of SQNR more.
import { TsrtError } from '../errors.js';
import { nameGenerator } from '../ir/graph.js';
import { f32ArrayToF16, fromF64, makeTensor, toF64 } from '../ir/tensor.js';
import type { DType, Graph, Node } from '../ir/types.js';
import { getOp } from '../ops/registry.js';
import type { Pass } from './pass.js';
import { PrecisionRules, fusedFrom, ruleText, type LayerPrecision, type PrecisionReport } from './precision_rules.js';

/** Inputs that are parameters of a fixed dtype by the ONNX spec and must not change type. */
const FIXED_INPUTS: Record<string, number[]> = {
  Resize: [1, 2], Upsample: [1], ConstantOfShape: [0], Reshape: [1], Expand: [1], Tile: [1], Slice: [1, 2, 3, 4],
  Pad: [1, 3], Range: [0, 1, 2], Gather: [1], Split: [1], Squeeze: [1], Unsqueeze: [1], ReduceSum: [1], ReduceMean: [1],
  ReduceMax: [1], ReduceMin: [1], ReduceProd: [1], ReduceL1: [1], ReduceL2: [1], ReduceLogSum: [1], ReduceLogSumExp: [1],
  ReduceSumSquare: [1], TopK: [1], Dropout: [1, 2],
  // BatchNorm statistics stay fp32: folding and the fused kernel read them in fp32
  BatchNormalization: [1, 2, 3, 4],
};

/** Ops whose output dtype is fixed by an attribute or that produce no float output. */
const KEEP_OUTPUT_TYPE = new Set(['Cast', 'Shape', 'Size', 'ArgMax', 'ArgMin', 'Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual',
  'Not', 'And', 'Or', 'Xor', 'IsNaN', 'IsInf', 'NonZero', 'QuantizeLinear', 'DynamicQuantizeLinear', 'ConstantOfShape', 'Constant']);

export function convertToFp16(g: Graph, lowDtype: DType = 'float16', rules = new PrecisionRules(),
  report: PrecisionReport = { low: [], kept: [], matched: [] }, aliases: (node: string) => string[] = () => []): Graph {
  const fresh = nameGenerator(g);
  const types = g.valueTypes;
  const dtypeOf = (x: string): DType | undefined => g.initializers.get(x)?.dtype ?? types.get(x)?.dtype ?? g.inputs.find((i) => i.name === x)?.type.dtype;
  const inits = new Map(g.initializers);
  const nodes: Node[] = [];
  /** Current low-precision name of a value, cached so each conversion happens once. */
  const lowName = new Map<string, string>();
  const highName = new Map<string, string>();
  /** Values whose storage now is `lowDtype` (originally float32). */
  const isLow = new Set<string>();
  const cast = (x: string, to: DType): string => {
    const cache = to === lowDtype ? lowName : highName;
    if (cache.has(x)) return cache.get(x)!;
    const c = inits.get(x);
    let name: string;
    if (c) {
      name = fresh(`${x}_${to}`);
      inits.set(name, c.dtype === 'float32' && to === 'float16' && c.data instanceof Float32Array
        ? makeTensor(to, c.dims, f32ArrayToF16(c.data)) : fromF64(to, c.dims, toF64(c)));
    } else {
      name = fresh(`${x}_${to}`);
      nodes.push({ name: fresh(`cast_${to}`), op: 'Cast', domain: '', inputs: [x], outputs: [name], attrs: { to: { kind: 'int', value: to === 'float16' ? 10 : to === 'bfloat16' ? 16 : 1 } } });
    }
    cache.set(x, name);
    if (to === lowDtype) isLow.add(name);
    return name;
  };
  for (const n of g.nodes) {
    const def = getOp(n.op, n.domain);
    const policy = def?.precision ?? 'never';
    const fixed = FIXED_INPUTS[n.op] ?? [];
    const control = Object.values(n.attrs).some((a) => a.kind === 'graph' || a.kind === 'graphs');
    const rule = rules.match(n, aliases(n.name));
    if (rule) report.matched.push({ node: n.name, precision: rule.precision, rule: ruleText(rule) });
    // a reduced-precision rule only lifts an earlier fp32 rule: it never overrides a `never` policy
    const runLow = policy !== 'never' && !control && rule?.precision !== 'fp32';
    const floatIn = n.inputs.some((x, i) => x && !fixed.includes(i) && (isLow.has(x) || dtypeOf(x) === 'float32'));
    if (!runLow && floatIn) {
      report.kept.push({ node: n.name, op: n.op, reason: control ? 'control flow (bodies stay fp32)' : policy === 'never' ? 'op policy: never' : `rule ${ruleText(rule!)}` });
    }
    const inputs = n.inputs.map((x, i) => {
      if (!x || fixed.includes(i)) return x;
      const cur = isLow.has(x) ? lowDtype : dtypeOf(x);
      if (runLow && cur === 'float32') return cast(x, lowDtype);
      if (!runLow && isLow.has(x)) return cast(x, 'float32');
      return x;
    });
    nodes.push({ ...n, inputs });
    if (runLow && !KEEP_OUTPUT_TYPE.has(n.op)) {
      // outputs that were float32 now hold lowDtype when any float input was converted
      const anyLow = inputs.some((x, i) => x && !fixed.includes(i) && (isLow.has(x) || dtypeOf(x) === lowDtype));
      if (anyLow) for (const o of n.outputs) if (o && types.get(o)?.dtype === 'float32') isLow.add(o);
      if (anyLow) report.low.push(n.name);
    }
  }
  // Graph outputs keep their declared dtype: the producer writes a low-precision twin, a Cast restores it.
  const finalNodes = [...nodes];
  for (const o of g.outputs) {
    if (!isLow.has(o.name)) continue;
    const low = fresh(`${o.name}_low`);
    // the producer writes `low`; a Cast restores the declared name and dtype
    for (const m of finalNodes) {
      m.outputs = m.outputs.map((x) => (x === o.name ? low : x));
      m.inputs = m.inputs.map((x) => (x === o.name ? low : x));
    }
    finalNodes.push({ name: fresh('cast_output'), op: 'Cast', domain: '', inputs: [low], outputs: [o.name], attrs: { to: { kind: 'int', value: 1 } } });
  }
  return { ...g, nodes: finalNodes, initializers: inits, valueTypes: new Map() };
}

export const fp16Precision: Pass = {
  name: 'fp16', level: 0,
  run(g, ctx) {
    const rules = new PrecisionRules(ctx.options.layerPrecisions);
    if (rules.empty && !ctx.options.fp16) return g;
    // one reduced type per engine: ctx.options.fp16 means "reduced", bf16 picks bfloat16 for it
    const low: LayerPrecision = ctx.options.bf16 ? 'bf16' : 'fp16';
    const lowDtype: DType = ctx.options.bf16 ? 'bfloat16' : 'float16';
    const reduced = (ctx.options.layerPrecisions ?? []).filter((r) => r.precision === 'fp16' || r.precision === 'bf16');
    if (reduced.length && !ctx.options.fp16) {
      throw new TsrtError('USAGE', `precision rule ${ruleText(reduced[0])} asks for ${reduced[0].precision}, but the build is fp32`,
        `add --${reduced[0].precision} (BuildOptions.${reduced[0].precision}): rules constrain the precisions a build enables, like trtexec's --layerPrecisions`);
    }
    const other = reduced.find((r) => r.precision !== low);
    if (other) {
      throw new TsrtError('USAGE', `precision rule ${ruleText(other)} asks for ${other.precision}, but the build's reduced precision is ${low}`,
        `an engine has one 16-bit float type: write the rule as ${other.pattern}:${low}, or build with --${other.precision} instead of --${low}`);
    }
    const int8 = (ctx.options.layerPrecisions ?? []).find((r) => r.precision === 'int8');
    if (int8 && !ctx.options.int8) {
      throw new TsrtError('USAGE', `precision rule ${ruleText(int8)} asks for int8, but the build has no int8`, 'add --int8 with --calib-cache FILE (BuildOptions.int8 + int8Scales), or use a Q/DQ model');
    }
    const report: PrecisionReport = { low: [], kept: [], matched: [] };
    let out = g;
    // passes before this one (BatchNorm folding, pattern recognition) merged nodes: rules may name the originals
    const aliases = (name: string) => fusedFrom(ctx.fusions, name);
    if (ctx.options.fp16) out = convertToFp16(g, lowDtype, rules, report, aliases);
    else for (const n of g.nodes) rules.match(n, aliases(n.name)); // fp32 build: fp32 rules are no-ops, but names are still checked
    const missing = rules.unmatchedExact();
    if (missing.length) {
      throw new TsrtError('USAGE', `precision rule(s) ${missing.map(ruleText).join(', ')} match no node of the graph`,
        `rules name ONNX nodes (or op types with --op-precisions), as 'tsrt dump model.onnx' lists them, e.g. ${g.nodes.slice(0, 3).map((n) => n.name).join(', ')}; `
        + 'a fused layer of \'tsrt compare --per-layer\' lists its nodes in --json; use * or /regex/ for names that may be absent');
    }
    for (const r of rules.unmatchedPatterns()) ctx.log(`${low}: precision rule ${ruleText(r)} matches no node`);
    if (ctx.options.fp16) {
      ctx.precision = report;
      ctx.log(`${low}: ${report.low.length} nodes in ${low}, ${report.kept.length} kept fp32 (${report.matched.length} matched a rule)`);
    }
    return out;
  },
};
