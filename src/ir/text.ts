// Text form of the IR, for dumps (TSRT_DEBUG, --dump-dir) and for Before/After pass tests. It prints a Graph and
// parses it back exactly: parse(print(g)) deep-equals g when every initializer is printed inline.
//
//   graph main(%x: float32[N,3,224,224]) -> (%y: float32[N,1000]) opset 17 {
//     const %w: float32[2,2] = [1, 2, 3, 4]
//     type %t: float32[N,8]                          // a valueTypes entry that no node of this graph writes
//     %h: float32[N,64,112,112] = Conv(%x, %w, _) {strides=[2,2], pads=[3,3,3,3], group=1} name="conv1"
//     %y = com.microsoft::FastGelu(%h)
//   }
//
// Values are %name, or %"any string" when the name has other characters; `_` is an omitted input or output.
// Dims are numbers, symbols (N, "dim with spaces") or ?. The `: type` after an output records g.valueTypes. A node
// without `name=` is named <op>_<index>, which is also how the importer names unnamed nodes. Attribute floats are
// float32 as in ONNX: they print as the shortest text that rounds back to the same float32 (`1.0`, `1e-05`); a
// value that is not a float32 prints with a `d` suffix and stays a double. Tensor data is flat, row-major: numbers,
// true/false, "strings", or hex"..." (raw little-endian bytes) where decimal text cannot keep NaN payloads. Large
// tensors may print as a summary `(N bytes, sha256 "...")`, which the parser reads only with summaries: 'zeros'.
import { createHash } from 'node:crypto';
import { GraphError } from '../errors.js';
import { DTYPE_SIZE, allocData, bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, size } from './tensor.js';
import type { Attr, DType, Dim, Graph, Node, Tensor, TensorType, TypedArray, ValueInfo } from './types.js';

export interface PrintOptions {
  /** Tensors with more elements than this print as a summary; Infinity prints everything inline. Default 64. */
  inlineLimit?: number;
  /** Print the `: type` annotations from g.valueTypes (default true). */
  types?: boolean;
}

export interface ParseOptions {
  /** Tensor summaries: 'error' (default) rejects them, 'zeros' reads them as zero-filled tensors of the given shape
   * (pass tests that only look at structure). */
  summaries?: 'error' | 'zeros';
}

const DTYPES = new Set<string>(Object.keys(DTYPE_SIZE));
const BARE_VALUE = /^[A-Za-z0-9_./-]+$/;
const BARE_IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const BARE_DOTTED = /^[A-Za-z_][A-Za-z0-9_.]*$/;
const RESERVED = new Set(['nan', 'inf', 'true', 'false', '_', 'graph', 'hex']);

// ------------------------------------------------------------------ printing

const q = (s: string) => JSON.stringify(s);
const valueName = (s: string) => (s === '' ? '_' : `%${BARE_VALUE.test(s) ? s : q(s)}`);
const identOrStr = (s: string, re = BARE_IDENT) => (re.test(s) && !RESERVED.has(s) && !DTYPES.has(s) ? s : q(s));
const dimStr = (d: Dim) => (typeof d === 'number' ? String(d) : d === '?' ? '?' : identOrStr(d));
export const typeStr = (t: TensorType) => `${t.dtype}[${t.shape.map(dimStr).join(',')}]`;

/** `x` rounded to `p` significant digits, as text. Rounds the shortest double text (toExponential() is fast where
 * toPrecision(p) is not); a rare double-rounding miss only makes the result one digit longer. */
function roundDigits(neg: boolean, digits: string, exp: number, p: number): string {
  let d = digits.slice(0, p);
  if (digits.length > p && digits.charCodeAt(p) >= 53) {
    let k = d.length - 1;
    while (k >= 0 && d[k] === '9') k--;
    d = k < 0 ? '1' + '0'.repeat(d.length) : d.slice(0, k) + String.fromCharCode(d.charCodeAt(k) + 1) + '0'.repeat(d.length - k - 1);
    if (k < 0) exp++;
  }
  return `${neg ? '-' : ''}${d[0]}${d.length > 1 ? '.' + d.slice(1) : ''}e${exp}`;
}

/** Shortest decimal text of x that `back` maps to the same value `want`. Round-tripping is monotonic in the number
 * of digits; most float32 weights need 8 or 9, so the search starts at 8 and walks. */
function shortest(x: number, back: (s: string) => number, want: number, maxDigits: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (Object.is(x, -0)) return '-0';
  const e = x.toExponential();
  const at = e.indexOf('e');
  const neg = x < 0;
  const digits = e.slice(neg ? 1 : 0, at).replace('.', '');
  const exp = Number(e.slice(at + 1));
  const top = Math.min(maxDigits, digits.length);
  const ok = (p: number) => back(roundDigits(neg, digits, exp, p)) === want;
  let p = Math.min(8, top);
  if (ok(p)) { while (p > 1 && ok(p - 1)) p--; } else { do p++; while (p <= top && !ok(p)); }
  return p > top ? String(x) : String(Number(roundDigits(neg, digits, exp, p)));
}

const numText = (s: string) => (s === 'nan' ? NaN : s === 'inf' ? Infinity : s === '-inf' ? -Infinity : Number(s));

const f32Text = (x: number) => shortest(x, (s) => Math.fround(Number(s)), x, 9);

/** Attribute float: float32 values print short, other doubles exactly with a `d` suffix. */
function floatAttr(x: number): string {
  if (Math.fround(x) !== x && !Number.isNaN(x)) return `${String(x)}d`;
  const s = f32Text(x);
  return /[.eni]/.test(s) ? s : `${s}.0`;
}

function tensorBytes(t: Tensor): Uint8Array {
  const d = t.data as TypedArray;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/** Element texts, or undefined when decimal text would not restore the exact bits (NaN payloads). */
function elementTexts(t: Tensor): string[] | undefined {
  const out: string[] = [];
  const d = t.data;
  const n = d.length;
  switch (t.dtype) {
    case 'string': return (d as string[]).map(q);
    case 'bool': for (let i = 0; i < n; i++) out.push((d as Uint8Array)[i] ? 'true' : 'false'); return (d as Uint8Array).every((v) => v <= 1) ? out : undefined;
    case 'float32': {
      const bits = new Uint32Array((d as Float32Array).buffer, (d as Float32Array).byteOffset, n);
      for (let i = 0; i < n; i++) {
        const x = (d as Float32Array)[i];
        if (Number.isNaN(x) && bits[i] !== 0x7fc00000) return undefined;
        out.push(f32Text(x));
      }
      return out;
    }
    case 'float64': {
      const f = d as Float64Array;
      const bits = new BigUint64Array(f.buffer, f.byteOffset, n);
      for (let i = 0; i < n; i++) {
        if (Number.isNaN(f[i]) && bits[i] !== 0x7ff8000000000000n) return undefined;
        out.push(Object.is(f[i], -0) ? '-0' : Number.isFinite(f[i]) ? String(f[i]) : shortest(f[i], Number, f[i], 17));
      }
      return out;
    }
    case 'float16': case 'bfloat16': {
      const [toF, toBits] = t.dtype === 'float16' ? [f16BitsToF32, f32ToF16Bits] : [bf16BitsToF32, f32ToBf16Bits];
      for (let i = 0; i < n; i++) {
        const b = (d as Uint16Array)[i];
        const s = shortest(toF(b), (x) => toBits(Number(x)), b, 9);
        if (toBits(numText(s)) !== b) return undefined;
        out.push(s);
      }
      return out;
    }
    default:
      for (let i = 0; i < n; i++) out.push(String((d as Int32Array)[i]));
      return out;
  }
}

function tensorData(t: Tensor, limit: number): string {
  if (t.data.length > limit) {
    const hash = createHash('sha256');
    if (t.dtype === 'string') hash.update(JSON.stringify(t.data)); else hash.update(tensorBytes(t));
    const amount = t.dtype === 'string' ? `${t.data.length} strings` : `${tensorBytes(t).length} bytes`;
    return `(${amount}, sha256 ${q(hash.digest('hex').slice(0, 16))})`;
  }
  const els = elementTexts(t);
  if (els) return `[${els.join(', ')}]`;
  return `hex${q(Buffer.from(tensorBytes(t)).toString('hex'))}`;
}

class Printer {
  private readonly lines: string[] = [];
  constructor(private readonly opts: Required<PrintOptions>) {}

  graph(g: Graph, indent: string, parentOpset?: number): string {
    const params = (vs: ValueInfo[]) => vs.map((v) => `${valueName(v.name)}: ${typeStr(v.type)}`).join(', ');
    const opset = g.opset === parentOpset ? '' : ` opset ${g.opset}`;
    const head = `graph ${identOrStr(g.name)}(${params(g.inputs)}) -> (${params(g.outputs)})${opset} {`;
    const inner = indent + '  ';
    const body: string[] = [];
    for (const [name, t] of g.initializers) {
      body.push(`${inner}const ${valueName(name)}: ${typeStr({ dtype: t.dtype, shape: t.dims })} = ${tensorData(t, this.opts.inlineLimit)}`);
    }
    const written = new Set(g.nodes.flatMap((n) => n.outputs));
    if (this.opts.types) {
      for (const [name, t] of g.valueTypes) if (!written.has(name)) body.push(`${inner}type ${valueName(name)}: ${typeStr(t)}`);
    }
    g.nodes.forEach((n, i) => body.push(inner + this.node(n, i, inner, g)));
    return [head, ...body, `${indent}}`].join('\n');
  }

  private node(n: Node, index: number, indent: string, g: Graph): string {
    const outs = n.outputs.map((o) => {
      const t = o && this.opts.types ? g.valueTypes.get(o) : undefined;
      return t ? `${valueName(o)}: ${typeStr(t)}` : valueName(o);
    });
    const op = n.domain ? `${identOrStr(n.domain, BARE_DOTTED)}::${identOrStr(n.op)}` : identOrStr(n.op, BARE_IDENT);
    let s = `${outs.length ? outs.join(', ') + ' = ' : ''}${op}(${n.inputs.map(valueName).join(', ')})`;
    const attrs = Object.entries(n.attrs);
    if (attrs.length) {
      const multi = attrs.some(([, a]) => a.kind === 'graph' || a.kind === 'graphs');
      const items = attrs.map(([k, a]) => `${identOrStr(k)}=${this.attr(a, indent + '  ', g.opset)}`);
      s += multi ? ` {\n${items.map((x) => indent + '  ' + x).join(',\n')}\n${indent}}` : ` {${items.join(', ')}}`;
    }
    if (n.name !== `${n.op}_${index}`) s += ` name=${q(n.name)}`;
    return s;
  }

  private attr(a: Attr, indent: string, opset: number): string {
    switch (a.kind) {
      case 'int': return String(a.value);
      case 'float': return floatAttr(a.value);
      case 'string': return q(a.value);
      case 'ints': return a.value.length ? `[${a.value.join(', ')}]` : 'ints[]';
      case 'floats': return a.value.length ? `[${a.value.map(floatAttr).join(', ')}]` : 'floats[]';
      case 'strings': return a.value.length ? `[${a.value.map(q).join(', ')}]` : 'strings[]';
      case 'tensor': return `${typeStr({ dtype: a.value.dtype, shape: a.value.dims })} ${tensorData(a.value, this.opts.inlineLimit)}`;
      case 'graph': return this.graph(a.value, indent, opset);
      case 'graphs': return a.value.length ? `[${a.value.map((g) => this.graph(g, indent, opset)).join(', ')}]` : 'graphs[]';
    }
  }
}

export function printGraph(g: Graph, opts: PrintOptions = {}): string {
  return new Printer({ inlineLimit: opts.inlineLimit ?? 64, types: opts.types ?? true }).graph(g, '') + '\n';
}

// ------------------------------------------------------------------ parsing

type TokKind = 'punct' | 'value' | 'ident' | 'num' | 'str' | 'eof';
interface Tok { kind: TokKind; text: string; line: number; col: number }

const VALUE_RE = /[A-Za-z0-9_./-]+/y;
const NUM_RE = /-?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|inf\b)d?/y;
const IDENT_RE = /[A-Za-z_][A-Za-z0-9_.]*/y;

function lex(src: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0, line = 1, lineStart = 0;
  const fail = (msg: string): never => { throw new GraphError(`text IR ${line}:${i - lineStart + 1}: ${msg}`); };
  const match = (re: RegExp): string | undefined => {
    re.lastIndex = i;
    const m = re.exec(src);
    return m ? m[0] : undefined;
  };
  const readString = (): string => {
    const start = i;
    i++;
    while (i < src.length && src[i] !== '"') { if (src[i] === '\\') i++; if (src[i] === '\n') fail('newline in string'); i++; }
    if (i >= src.length) fail('unterminated string');
    i++;
    return JSON.parse(src.slice(start, i)) as string;
  };
  while (i < src.length) {
    const c = src[i];
    if (c === '\n') { i++; line++; lineStart = i; continue; }
    if (c === ' ' || c === '\t' || c === '\r') { i++; continue; }
    if (c === '#' || (c === '/' && src[i + 1] === '/')) { while (i < src.length && src[i] !== '\n') i++; continue; }
    const tok = (kind: TokKind, text: string, start: number): Tok => ({ kind, text, line, col: start - lineStart + 1 });
    const start = i;
    if (c === '%') {
      i++;
      if (src[i] === '"') { toks.push(tok('value', readString(), start)); continue; }
      const m = match(VALUE_RE) ?? fail('expected a value name after %');
      i += m.length;
      toks.push(tok('value', m, start));
      continue;
    }
    if (c === '"') { toks.push(tok('str', readString(), start)); continue; }
    if ((c === '-' && src[i + 1] === '>') || (c === ':' && src[i + 1] === ':')) { i += 2; toks.push(tok('punct', c + src[i - 1], start)); continue; }
    if ((c >= '0' && c <= '9') || c === '-' || c === 'i') {
      const num = match(NUM_RE);
      if (num) { i += num.length; toks.push(tok('num', num, start)); continue; }
    }
    if ('()[]{},:=?'.includes(c)) { i++; toks.push(tok('punct', c, start)); continue; }
    const id = match(IDENT_RE);
    if (id) { i += id.length; toks.push(tok('ident', id, start)); continue; }
    fail(`unexpected character ${JSON.stringify(c)}`);
  }
  toks.push({ kind: 'eof', text: '', line, col: i - lineStart + 1 });
  return toks;
}

const isFloatText = (s: string) => /[.eEn]|d$/.test(s);

class Parser {
  private pos = 0;
  constructor(private readonly toks: Tok[], private readonly opts: ParseOptions) {}

  private peek(k = 0): Tok { return this.toks[Math.min(this.pos + k, this.toks.length - 1)]; }
  private next(): Tok { return this.toks[this.pos++]; }
  private is(kind: TokKind, text?: string, k = 0): boolean {
    const t = this.peek(k);
    return t.kind === kind && (text === undefined || t.text === text);
  }
  private accept(kind: TokKind, text?: string): boolean {
    if (!this.is(kind, text)) return false;
    this.pos++;
    return true;
  }
  fail(msg: string, t = this.peek()): never {
    throw new GraphError(`text IR ${t.line}:${t.col}: ${msg} (at ${t.kind === 'eof' ? 'end of input' : JSON.stringify(t.text)})`, undefined,
      'see the grammar at the top of src/ir/text.ts');
  }
  private expect(kind: TokKind, text?: string): Tok {
    if (!this.is(kind, text)) this.fail(`expected ${text ? JSON.stringify(text) : kind}`);
    return this.next();
  }
  private name(): string {
    if (this.is('ident') || this.is('str')) return this.next().text;
    return this.fail('expected a name');
  }
  atEnd(): boolean { return this.is('eof'); }

  graph(parentOpset?: number): Graph {
    this.expect('ident', 'graph');
    const name = this.name();
    const inputs = this.params();
    this.expect('punct', '->');
    const outputs = this.params();
    let opset = parentOpset;
    if (this.accept('ident', 'opset')) opset = this.int(this.expect('num'));
    if (opset === undefined) this.fail('the top-level graph needs `opset N` after its outputs');
    const g: Graph = { name, inputs, outputs, nodes: [], initializers: new Map(), valueTypes: new Map(), opset: opset! };
    this.expect('punct', '{');
    while (!this.accept('punct', '}')) this.statement(g);
    return g;
  }

  private params(): ValueInfo[] {
    this.expect('punct', '(');
    const out: ValueInfo[] = [];
    if (this.accept('punct', ')')) return out;
    do {
      const name = this.expect('value').text;
      this.expect('punct', ':');
      out.push({ name, type: this.type() });
    } while (this.accept('punct', ','));
    this.expect('punct', ')');
    return out;
  }

  private dtype(): DType {
    const t = this.expect('ident');
    if (!DTYPES.has(t.text)) this.fail(`unknown element type ${t.text}`, t);
    return t.text as DType;
  }

  private type(): TensorType {
    const dtype = this.dtype();
    this.expect('punct', '[');
    const shape: Dim[] = [];
    if (!this.accept('punct', ']')) {
      do {
        const t = this.next();
        if (t.kind === 'num' && /^\d+$/.test(t.text)) shape.push(Number(t.text));
        else if (t.kind === 'ident' || t.kind === 'str') shape.push(t.text);
        else if (t.kind === 'punct' && t.text === '?') shape.push('?');
        else this.fail('expected a dim (number, symbol or ?)', t);
      } while (this.accept('punct', ','));
      this.expect('punct', ']');
    }
    return { dtype, shape };
  }

  private int(t: Tok): number {
    if (t.kind !== 'num' || isFloatText(t.text)) this.fail('expected an integer', t);
    return Number(t.text);
  }

  private statement(g: Graph): void {
    if (this.is('ident', 'const') && this.is('value', undefined, 1)) {
      this.next();
      const name = this.next().text;
      this.expect('punct', ':');
      const type = this.type();
      this.expect('punct', '=');
      g.initializers.set(name, this.tensor(type, name));
      return;
    }
    if (this.is('ident', 'type') && this.is('value', undefined, 1)) {
      this.next();
      const name = this.next().text;
      this.expect('punct', ':');
      g.valueTypes.set(name, this.type());
      return;
    }
    const outputs: string[] = [];
    if (this.is('value') || this.is('ident', '_')) {
      do {
        const t = this.next();
        if (t.kind === 'ident' && t.text === '_') { outputs.push(''); continue; }
        if (t.kind !== 'value') this.fail('expected an output value or _', t);
        outputs.push(t.text);
        if (this.accept('punct', ':')) g.valueTypes.set(t.text, this.type());
      } while (this.accept('punct', ','));
      this.expect('punct', '=');
    }
    let domain = '';
    let op = this.name();
    if (this.accept('punct', '::')) { domain = op; op = this.name(); }
    this.expect('punct', '(');
    const inputs: string[] = [];
    if (!this.accept('punct', ')')) {
      do {
        if (this.accept('ident', '_')) inputs.push('');
        else inputs.push(this.expect('value').text);
      } while (this.accept('punct', ','));
      this.expect('punct', ')');
    }
    const attrs: Record<string, Attr> = {};
    if (this.accept('punct', '{') && !this.accept('punct', '}')) {
      do {
        const key = this.name();
        if (key in attrs) this.fail(`attribute ${key} given twice`);
        this.expect('punct', '=');
        attrs[key] = this.attr(g.opset);
      } while (this.accept('punct', ','));
      this.expect('punct', '}');
    }
    let name = `${op}_${g.nodes.length}`;
    if (this.accept('ident', 'name')) { this.expect('punct', '='); name = this.expect('str').text; }
    g.nodes.push({ name, op, domain, inputs, outputs, attrs });
  }

  private attr(opset: number): Attr {
    const t = this.peek();
    if (t.kind === 'str') return { kind: 'string', value: this.next().text };
    if (t.kind === 'num' || (t.kind === 'ident' && (t.text === 'nan' || t.text === 'inf'))) {
      this.next();
      return isFloatText(t.text) ? { kind: 'float', value: this.float(t) } : { kind: 'int', value: Number(t.text) };
    }
    if (t.kind === 'ident' && t.text === 'graph') return { kind: 'graph', value: this.graph(opset) };
    if (t.kind === 'ident' && DTYPES.has(t.text)) {
      const type = this.type();
      return { kind: 'tensor', value: this.tensor(type, 'attribute tensor') };
    }
    let kind: 'ints' | 'floats' | 'strings' | 'graphs' | undefined;
    if (t.kind === 'ident' && ['ints', 'floats', 'strings', 'graphs'].includes(t.text)) { kind = t.text as typeof kind; this.next(); }
    const open = this.expect('punct', '[');
    const items: Tok[] = [];
    const graphs: Graph[] = [];
    if (!this.accept('punct', ']')) {
      do {
        if (this.is('ident', 'graph')) graphs.push(this.graph(opset));
        else items.push(this.next());
      } while (this.accept('punct', ','));
      this.expect('punct', ']');
    }
    if (graphs.length || kind === 'graphs') {
      if (items.length) this.fail('a list mixes graphs and other values', items[0]);
      return { kind: 'graphs', value: graphs };
    }
    kind ??= items.length === 0 ? this.fail('an empty list needs its kind: ints[], floats[], strings[] or graphs[]', open)
      : items[0].kind === 'str' ? 'strings' : items.some((x) => isFloatText(x.text) || x.kind === 'ident') ? 'floats' : 'ints';
    switch (kind) {
      case 'strings': return { kind, value: items.map((x) => (x.kind === 'str' ? x.text : this.fail('expected a string', x))) };
      case 'floats': return { kind, value: items.map((x) => this.float(x)) };
      case 'ints': return { kind, value: items.map((x) => this.int(x)) };
    }
  }

  /** Float attribute text: float32 unless suffixed `d`. */
  private float(t: Tok): number {
    const s = t.text;
    if (t.kind !== 'num' && !(t.kind === 'ident' && s === 'nan')) this.fail('expected a number', t);
    if (s.endsWith('d')) return numText(s.slice(0, -1));
    return Math.fround(numText(s));
  }

  private tensor(type: TensorType, what: string): Tensor {
    const dims = type.shape.map((d) => (typeof d === 'number' ? d : this.fail(`tensor ${what} needs a static shape`)));
    const n = size(dims);
    const t: Tensor = { dtype: type.dtype, dims, data: allocData(type.dtype, n) };
    if (this.accept('ident', 'hex')) {
      const hex = this.expect('str').text;
      const bytes = Buffer.from(hex, 'hex');
      const want = n * DTYPE_SIZE[type.dtype];
      if (type.dtype === 'string' || bytes.length !== want || hex.length !== 2 * want) this.fail(`hex data of ${what} has ${bytes.length} bytes, expected ${want}`);
      new Uint8Array((t.data as TypedArray).buffer).set(bytes);
      return t;
    }
    const start = this.peek();
    if (this.accept('punct', '(')) {
      this.expect('num'); this.expect('ident'); this.expect('punct', ','); this.expect('ident', 'sha256'); this.expect('str'); this.expect('punct', ')');
      if (this.opts.summaries !== 'zeros') {
        this.fail(`tensor ${what} is a summary, not data`, start);
      }
      return t;
    }
    this.expect('punct', '[');
    const els: Tok[] = [];
    if (!this.accept('punct', ']')) {
      do els.push(this.next()); while (this.accept('punct', ','));
      this.expect('punct', ']');
    }
    if (els.length !== n) this.fail(`tensor ${what} has ${els.length} values, shape [${dims}] needs ${n}`, start);
    const d = t.data;
    els.forEach((x, i) => {
      const s = x.text;
      const num = () => (x.kind === 'num' || (x.kind === 'ident' && s === 'nan') ? numText(s) : this.fail('expected a number', x));
      switch (type.dtype) {
        case 'string': (d as string[])[i] = x.kind === 'str' ? s : this.fail('expected a string', x); break;
        case 'bool': (d as Uint8Array)[i] = s === 'true' || s === '1' ? 1 : s === 'false' || s === '0' ? 0 : this.fail('expected true or false', x); break;
        case 'int64': case 'uint64': (d as BigInt64Array)[i] = x.kind === 'num' && /^-?\d+$/.test(s) ? BigInt(s) : this.fail('expected an integer', x); break;
        case 'float16': (d as Uint16Array)[i] = f32ToF16Bits(num()); break;
        case 'bfloat16': (d as Uint16Array)[i] = f32ToBf16Bits(num()); break;
        case 'float32': case 'float64': (d as Float64Array)[i] = num(); break;
        default: (d as Int32Array)[i] = x.kind === 'num' && /^-?\d+$/.test(s) ? Number(s) : this.fail('expected an integer', x);
      }
    });
    return t;
  }
}

export function parseGraph(text: string, opts: ParseOptions = {}): Graph {
  const p = new Parser(lex(text), opts);
  const g = p.graph();
  if (!p.atEnd()) p.fail('text after the graph');
  return g;
}
