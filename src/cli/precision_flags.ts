// Precision flags shared by every command that builds: per-layer / per-op rules (trtexec's --layerPrecisions
// spelling, kebab-cased like the other flags) and --best.
import type { Command } from 'commander';
import type { BuildOptions } from '../runtime/engine.js';
import { parsePrecisionSpec, type PrecisionRule } from '../passes/precision_rules.js';

export interface PrecisionFlags {
  layerPrecisions?: string; opPrecisions?: string; best?: boolean; int8?: boolean; calibCache?: string;
  /** false with --no-precision-timing (commander's default for a --no- flag is true). */
  precisionTiming?: boolean;
}

export function withPrecisionOptions(c: Command): Command {
  return c
    .option('--layer-precisions <spec>', 'per-layer precision, trtexec style: name:fp32|fp16|bf16|int8, comma-separated, * wildcards or /regex/ names, later entries win (e.g. \'/attn.*softmax/:fp32,conv1:fp32\')')
    .option('--op-precisions <spec>', 'per-op-type precision, e.g. Softmax:fp32,LayerNormalization:fp32 (--layer-precisions entries win over these)')
    .option('--best', 'fastest precisions allowed: fp16, plus int8 where calibration scales are given (--calib-cache)')
    .option('--no-precision-timing', 'with --int8 at --opt-level 3+: keep every calibrated layer int8 instead of moving the layers that time faster in fp16 (conversions included) to fp16');
}

/** Build options from the precision flags; only keys that are set, so they can be spread over the others. */
export function precisionOptions(o: PrecisionFlags, say: (msg: string) => void = (m) => process.stderr.write(m + '\n')): Partial<BuildOptions> {
  const rules: PrecisionRule[] = [
    ...(o.opPrecisions ? parsePrecisionSpec(o.opPrecisions, 'op') : []),
    ...(o.layerPrecisions ? parsePrecisionSpec(o.layerPrecisions, 'layer') : []),
  ];
  const out: Partial<BuildOptions> = rules.length ? { layerPrecisions: rules } : {};
  if (o.precisionTiming === false) out.precisionByTiming = false;
  if (o.best) {
    out.fp16 = true;
    // as trtexec --best: int8 wherever it has scales; without a calibration cache there are none to use
    if (o.calibCache) out.int8 = true;
    else if (!o.int8) say('tsrt: --best without calibration scales (--calib-cache FILE): building fp16; run `tsrt calibrate` for int8');
  }
  return out;
}
