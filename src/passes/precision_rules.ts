// Per-layer precision constraints, trtexec's `--layerPrecisions=spec` (`layerName:precision`, `*` wildcard, read
// left to right, later specs override earlier ones), plus `/regex/` names and per-op-type rules. The fp16 pass
// reads them (an fp32 rule keeps a node fp32; a reduced-precision rule lifts an earlier fp32 rule), the int8
// pass asks `forcedPrecision()` for its fused nodes, and the accuracy budget writes fp32 rules for the layers it
// moves back.
import { TsrtError } from '../errors.js';
import type { Node } from '../ir/types.js';
import type { FusionRecord } from './pass.js';

export type LayerPrecision = 'fp32' | 'fp16' | 'bf16' | 'int8';
const PRECISIONS: LayerPrecision[] = ['fp32', 'fp16', 'bf16', 'int8'];

export interface PrecisionRule {
  /** Node name (or op type with by: 'op'): exact, with `*` wildcards, or `/regex/`. */
  pattern: string;
  precision: LayerPrecision;
  /** 'layer' (default) matches node names, 'op' matches op types (`Softmax`, `tsrt::FusedConv`). */
  by?: 'layer' | 'op';
}

/** What the precision pass decided, for reports, the int8 pass and the accuracy budget. */
export interface PrecisionReport {
  /** Nodes (names at the time of the fp16 pass: ONNX node names) that run in reduced precision. */
  low: string[];
  /** Nodes with float data kept in fp32, and why. */
  kept: { node: string; op: string; reason: string }[];
  /** Nodes a rule matched, with the precision it asked for and the rule. */
  matched: { node: string; precision: LayerPrecision; rule: string }[];
}

/** Parses "name:fp32,conv*:fp16,/attn.*softmax/:fp32". Commas inside a /regex/ do not split. */
export function parsePrecisionSpec(spec: string, by: 'layer' | 'op' = 'layer', flag = by === 'op' ? '--op-precisions' : '--layer-precisions'): PrecisionRule[] {
  const parts: string[] = [];
  let cur = '', inRe = false;
  for (let i = 0; i < spec.length; i++) {
    const c = spec[i];
    if (c === '/' && (cur === '' || inRe)) inRe = !inRe;
    if (c === ',' && !inRe) { parts.push(cur); cur = ''; continue; }
    cur += c;
  }
  parts.push(cur);
  return parts.map((p) => p.trim()).filter(Boolean).map((p) => {
    const i = p.lastIndexOf(':');
    const pattern = i < 0 ? '' : p.slice(0, i).trim();
    const precision = (i < 0 ? '' : p.slice(i + 1).trim().toLowerCase()) as LayerPrecision;
    if (!pattern || !PRECISIONS.includes(precision)) {
      throw new TsrtError('USAGE', `bad ${flag} entry '${p}'`, `write name:precision with precision one of ${PRECISIONS.join('|')}, e.g. ${by === 'op' ? 'Softmax:fp32' : "'/encoder.*softmax/:fp32,conv1:fp32'"}`);
    }
    if (isRegex(pattern)) toRegExp(pattern, flag);
    return { pattern, precision, by };
  });
}

const isRegex = (p: string) => p.length > 2 && p.startsWith('/') && p.endsWith('/');
const isExact = (p: string) => !isRegex(p) && !p.includes('*');

function toRegExp(p: string, flag = '--layer-precisions'): RegExp {
  if (isRegex(p)) {
    try { return new RegExp(p.slice(1, -1)); } catch (e) {
      throw new TsrtError('USAGE', `bad regex ${p} in ${flag}: ${(e as Error).message}`, 'write a JavaScript regular expression between slashes');
    }
  }
  return new RegExp(`^${p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
}

export function ruleText(r: PrecisionRule): string { return `${r.by === 'op' ? 'op ' : ''}${r.pattern}:${r.precision}`; }

/** Compiled rules: op rules first, then layer rules, each in order, so the last matching layer rule wins. */
export class PrecisionRules {
  private compiled: { rule: PrecisionRule; re: RegExp; hits: number }[];
  constructor(rules: PrecisionRule[] = []) {
    const ordered = [...rules.filter((r) => r.by === 'op'), ...rules.filter((r) => r.by !== 'op')];
    this.compiled = ordered.map((rule) => ({ rule, re: toRegExp(rule.pattern), hits: 0 }));
  }
  get empty(): boolean { return this.compiled.length === 0; }

  /** The rule that decides this node's precision, if any. `aliases`: the ONNX names a node merged by an earlier
   * pass (BatchNorm folding, pattern recognition) was made from, so rules can name the model's nodes. */
  match(n: Pick<Node, 'name' | 'op' | 'domain'>, aliases: string[] = []): PrecisionRule | undefined {
    let found: { rule: PrecisionRule } | undefined;
    for (const c of this.compiled) {
      const subject = c.rule.by === 'op' ? [n.op, `${n.domain || 'ai.onnx'}::${n.op}`] : [n.name, ...aliases];
      // every matching rule counts as used (for the unmatched check), the last one decides
      if (subject.some((s) => c.re.test(s))) { found = c; c.hits++; }
    }
    return found?.rule;
  }

  /** Exact-name rules that matched no node: almost always a typo or a fused layer's name. */
  unmatchedExact(): PrecisionRule[] {
    return this.compiled.filter((c) => c.hits === 0 && isExact(c.rule.pattern)).map((c) => c.rule);
  }
  unmatchedPatterns(): PrecisionRule[] {
    return this.compiled.filter((c) => c.hits === 0 && !isExact(c.rule.pattern)).map((c) => c.rule);
  }
}

/** The ONNX nodes that a node of the optimized graph was fused from; with `all`, also the names of the
 * intermediate fused nodes (a Conv+BN folded before the fp16 pass has its own name there). */
export function fusedFrom(fusions: readonly FusionRecord[], name: string, all = false): string[] {
  const byInto = new Map<string, FusionRecord[]>();
  for (const f of fusions) byInto.set(f.into, [...(byInto.get(f.into) ?? []), f]);
  const out = new Set<string>();
  const seen = new Set<string>();
  const walk = (x: string) => {
    if (seen.has(x)) return;
    seen.add(x);
    const recs = byInto.get(x);
    if (!recs) { out.add(x); return; }
    if (all) out.add(x);
    for (const r of recs) for (const m of r.nodes) { if (m === x) out.add(x); else walk(m); }
  };
  walk(name);
  return [...out];
}

const STRICTNESS: Record<LayerPrecision, number> = { fp32: 3, bf16: 2, fp16: 2, int8: 1 };

/** The strictest precision the rules ask for any node a (possibly fused) node came from: the int8 pass leaves a
 * layer alone when this is fp32 or fp16. Undefined when no rule matched. */
export function forcedPrecision(report: PrecisionReport | undefined, fusions: readonly FusionRecord[], name: string): LayerPrecision | undefined {
  if (!report?.matched.length) return undefined;
  const byNode = new Map(report.matched.map((m) => [m.node, m.precision]));
  let best: LayerPrecision | undefined;
  for (const x of fusedFrom(fusions, name, true)) {
    const p = byNode.get(x);
    if (p && (!best || STRICTNESS[p] > STRICTNESS[best])) best = p;
  }
  return best;
}
