/**
 * A fast reader for the plain block YAML that cluster files are written in, used by the loader
 * before the `yaml` library's positioned document (which costs ~1 µs a byte: ~10 s for a 5,000-node
 * file of 150,000 pods). It reads a strict subset and gives up (undefined) on anything else; the
 * loader then reads the text with `yaml` as before. Whenever it returns a value, that value is
 * what `yaml`'s `parseDocument(text).toJS()` gives and that document has no errors
 * (test/plain-yaml.test.ts checks this on every YAML file of the repository, generated files and
 * random edits of them). Platform-free.
 *
 * The subset: one document (a first line `---` is allowed), LF line ends, printable ASCII and
 * spaces only (no tabs); block mappings and block sequences (`key:` followed by a deeper block or
 * by a sequence at the key's own indentation, `- ` items holding a scalar, a flow collection, a
 * compact mapping or a deeper block); keys plain names ([A-Za-z_][A-Za-z0-9_./-]*, not a value of
 * another type like `true`), each once per mapping; values on one line: plain scalars (resolved by
 * the `yaml` library's own core-schema tags), single- or double-quoted strings without escapes
 * other than `''`, flow sequences and mappings of those; comments. Given up on: anchors, aliases,
 * tags, block scalars, multi-line scalars or flow collections, explicit keys, directives, a second
 * document, and any plain scalar a YAML reader could take another way (`: `, indicators, flow
 * characters in block context).
 */
import { Schema } from 'yaml';
import type { ParseOptions } from 'yaml';

/** the tags `parseDocument` resolves a plain scalar with (YAML 1.2, core schema) */
const CORE = new Schema({});
interface ScalarTagLike {
  default?: boolean | 'key';
  test?: RegExp;
  collection?: string;
  resolve(value: string, onError: (message: string) => void, options: ParseOptions): unknown;
}
const TAGS = CORE.tags as unknown as ScalarTagLike[];
const OPTIONS: ParseOptions = { intAsBigInt: false };

/** thrown inside the reader: the text is outside the subset */
const OUTSIDE = Symbol('outside');

function outside(): never {
  throw OUTSIDE;
}

/**
 * plain scalars resolved lately, up to VALUES_KEPT of them (a file repeats values: a pod's node,
 * its listen entries); only primitives, which every use of the value may share
 */
const plainValues = new Map<string, unknown>();
const VALUES_KEPT = 10000;

/**
 * The tests of the core schema's scalar tags (yaml 2.x: null, bool, three ints, three floats). A
 * plain scalar starting with an ASCII letter other than n, N, t, T, f and F matches none of them
 * (each starts with `~`, n/N, t/T/f/F, a digit, a sign or a dot, or is empty): it is a string.
 */
const CORE_TESTS = [
  '^(?:~|[Nn]ull|NULL)?$',
  '^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$',
  '^0o[0-7]+$',
  '^[-+]?[0-9]+$',
  '^0x[0-9a-fA-F]+$',
  '^(?:[-+]?\\.(?:inf|Inf|INF)|\\.nan|\\.NaN|\\.NAN)$',
  '^[-+]?(?:\\.[0-9]+|[0-9]+(?:\\.[0-9]*)?)[eE][-+]?[0-9]+$',
  '^[-+]?(?:\\.[0-9]+|[0-9]+\\.[0-9]*)$',
];
/** whether the tags are those CORE_TESTS lists (else every scalar goes through them) */
const KNOWN_TAGS = (() => {
  const tests = TAGS.filter((t) => t.default === true && !t.collection && t.test).map((t) => t.test!.source);
  return tests.length === CORE_TESTS.length && tests.every((t, i) => t === CORE_TESTS[i]);
})();

/** a scalar no core tag resolves: its first character a letter none of their tests starts with */
function surelyString(s: string): boolean {
  const c = s.charCodeAt(0) | 0x20; // lower case of a letter
  return KNOWN_TAGS && c >= 0x61 && c <= 0x7a && c !== 0x6e && c !== 0x74 && c !== 0x66;
}

/** the value of a plain scalar as `yaml` resolves it: a string unless a core tag's test matches */
function plainValue(s: string): unknown {
  // a name (a pod's, mostly unique) is itself: no memo, no test
  if (surelyString(s)) return s;
  const known = plainValues.get(s);
  if (known !== undefined || plainValues.has(s)) return known;
  const v = resolvePlain(s);
  if (typeof v !== 'object' || v === null) {
    // a file's values that repeat mostly repeat close together (the pods of one node): a full memo starts again
    if (plainValues.size === VALUES_KEPT) plainValues.clear();
    plainValues.set(s, v);
  }
  return v;
}

function resolvePlain(s: string): unknown {
  const tag = TAGS.find((t) => t.default === true && !t.collection && t.test?.test(s));
  if (tag === undefined) return s;
  let failed = false;
  const v = tag.resolve(s, () => (failed = true), OPTIONS);
  if (failed) outside();
  // a tag may hand back a Scalar node (floats keep their format): its value is what toJS gives
  return typeof v === 'object' && v !== null && 'value' in v ? (v as { value: unknown }).value : v;
}

const KEY_RE = /^[A-Za-z_][A-Za-z0-9_./-]*$/;

/** keys found plain lately (a file repeats a few keys in every entry), up to KEYS_KEPT of them */
const plainKeys = new Set<string>();
const KEYS_KEPT = 1000;

/** a mapping key: a plain name that resolves to itself, at most 1,000 characters */
function key(s: string): string {
  if (plainKeys.has(s)) return s;
  if (s.length > 1000 || !KEY_RE.test(s) || s === '__proto__') outside();
  if (TAGS.some((t) => (t.default === true || t.default === 'key') && t.test?.test(s))) outside();
  if (plainKeys.size === KEYS_KEPT) plainKeys.clear();
  plainKeys.add(s);
  return s;
}

/** characters that may not start a plain scalar (YAML's indicators), or that a plain scalar of
 * the subset may not hold in block context */
const INDICATOR = new Set([...'-?:,[]{}#&*!|>\'"%@`']);
const BLOCK_PLAIN_BAD = /[,[\]{}'"]|: |:$| #/;
const FLOW_PLAIN_BAD = /[[\]{},:#'"]/;

/** a quoted scalar starting at s[i]; returns the string and the index after the closing quote */
function quoted(s: string, i: number): [string, number] {
  const q = s[i];
  if (q === '"') {
    const end = s.indexOf('"', i + 1);
    if (end < 0) outside();
    const body = s.slice(i + 1, end);
    if (body.includes('\\')) outside();
    return [body, end + 1];
  }
  let out = '';
  let j = i + 1;
  for (;;) {
    const end = s.indexOf("'", j);
    if (end < 0) outside();
    out += s.slice(j, end);
    if (s[end + 1] === "'") {
      out += "'";
      j = end + 2;
    } else return [out, end + 1];
  }
}

/** a flow collection or scalar starting at s[i] (spaces skipped); returns it and the index after */
function flowNode(s: string, i: number, depth: number): [unknown, number] {
  while (s[i] === ' ') i++;
  const c = s[i];
  if (c === '[' || c === '{') {
    if (depth > 20) outside();
    const seq = c === '[';
    const close = seq ? ']' : '}';
    const items: unknown[] = [];
    const map: Record<string, unknown> = {};
    i++;
    while (s[i] === ' ') i++;
    if (s[i] === close) return [seq ? items : map, i + 1];
    for (;;) {
      if (seq) {
        const [v, j] = flowNode(s, i, depth + 1);
        items.push(v);
        i = j;
      } else {
        while (s[i] === ' ') i++;
        const colon = s.indexOf(': ', i);
        if (colon < 0) outside();
        const k = key(s.slice(i, colon));
        if (Object.hasOwn(map, k)) outside();
        const [v, j] = flowNode(s, colon + 2, depth + 1);
        map[k] = v;
        i = j;
      }
      while (s[i] === ' ') i++;
      if (s[i] === close) return [seq ? items : map, i + 1];
      if (s[i] !== ',') outside();
      i++;
      while (s[i] === ' ') i++;
      // a trailing comma, or an empty entry
      if (s[i] === close || s[i] === ',') outside();
    }
  }
  if (c === '"' || c === "'") return quoted(s, i);
  let j = i;
  while (j < s.length && s[j] !== ',' && s[j] !== ']' && s[j] !== '}') j++;
  const text = s.slice(i, j).trimEnd();
  if (text === '' || INDICATOR.has(text[0]) || FLOW_PLAIN_BAD.test(text)) outside();
  return [plainValue(text), j];
}

/** what follows `key: ` or `- ` on a line: a scalar or a flow collection, then at most a comment */
function inlineValue(s: string): unknown {
  const c = s[0];
  let v: unknown;
  let rest: string;
  if (c === '[' || c === '{' || c === '"' || c === "'") {
    const [value, j] = c === '[' || c === '{' ? flowNode(s, 0, 0) : quoted(s, 0);
    v = value;
    rest = s.slice(j);
  } else {
    const hash = s.indexOf(' #');
    const text = (hash < 0 ? s : s.slice(0, hash)).trimEnd();
    if (INDICATOR.has(text[0]) || BLOCK_PLAIN_BAD.test(text)) outside();
    return plainValue(text);
  }
  const t = rest.trimStart();
  if (t !== '' && (t[0] !== '#' || t.length === rest.length)) outside();
  return v;
}

interface Line {
  indent: number;
  /** the line without its indentation and trailing spaces */
  text: string;
}

/**
 * The text's lines read one ahead (no list of them: a 1,000-node file has 130,000), blank lines
 * and comments skipped; a document marker other than a first `---` is outside the subset. The
 * next line is one object, rewritten by each read: read its fields before `take`.
 */
class Reader {
  private readonly line: Line = { indent: -1, text: '' };
  private ahead = false;
  private pos = 0;
  private first = true;

  constructor(private readonly src: string) {}

  /** the next line, undefined at the end */
  peek(): Line | undefined {
    if (!this.ahead) {
      this.read();
      this.ahead = true;
    }
    return this.line.indent < 0 ? undefined : this.line;
  }

  private read(): void {
    const text = this.src;
    while (this.pos <= text.length) {
      const start = this.pos;
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      let indent = 0;
      while (text.charCodeAt(start + indent) === 32) indent++;
      const t = text.slice(start + indent, end).trimEnd();
      this.pos = end + 1;
      if (t === '' || t[0] === '#') continue;
      if (indent === 0 && (t.startsWith('---') || t.startsWith('...') || t[0] === '%')) {
        if (this.first && t === '---') {
          this.first = false;
          continue;
        }
        outside();
      }
      this.first = false;
      this.line.indent = indent;
      this.line.text = t;
      return;
    }
    this.line.indent = -1;
  }

  /** the block whose first line is the next one, at that line's indentation */
  block(): unknown {
    const first = this.peek()!;
    return isItem(first.text) ? this.sequence(first.indent) : this.mapping(first.indent, undefined);
  }

  /** the value of `key:` or `-` at `indent` with nothing after it on the line: a deeper block, or
   * (`seqHere`, a mapping's key) a sequence at the key's own indentation, or null */
  private nested(indent: number, seqHere: boolean): unknown {
    const next = this.peek();
    if (next === undefined || next.indent < indent) return null;
    if (next.indent > indent) return this.block();
    return seqHere && isItem(next.text) ? this.sequence(indent) : null;
  }

  /** a block mapping at `indent`; `first` is its first entry when it started after `- ` */
  mapping(indent: number, first: string | undefined): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    let text = first;
    if (text === undefined) text = this.take(indent);
    for (;;) {
      const colon = text.indexOf(': ');
      const bare = colon < 0 && text.endsWith(':');
      if (colon < 0 && !bare) outside();
      const k = key(bare ? text.slice(0, -1) : text.slice(0, colon));
      if (Object.hasOwn(out, k)) outside();
      const rest = bare ? '' : text.slice(colon + 2).trimStart();
      out[k] = rest === '' || rest[0] === '#' ? this.nested(indent, true) : inlineValue(rest);
      const next = this.peek();
      if (next === undefined || next.indent < indent) return out;
      if (next.indent > indent) outside();
      text = this.take(indent);
    }
  }

  /** a block sequence at `indent` */
  sequence(indent: number): unknown[] {
    const out: unknown[] = [];
    for (;;) {
      const text = this.take(indent);
      if (text === '-') out.push(this.nested(indent, false));
      else {
        let i = 1;
        while (text[i] === ' ') i++;
        const rest = text.slice(i);
        if (rest[0] === '#') out.push(this.nested(indent, false));
        else if (isItem(rest)) outside();
        else if (/^[A-Za-z_][A-Za-z0-9_./-]*:( |$)/.test(rest)) out.push(this.mapping(indent + i, rest));
        else out.push(inlineValue(rest));
      }
      const next = this.peek();
      if (next === undefined || next.indent < indent) return out;
      if (next.indent > indent || !isItem(next.text)) {
        // the parent mapping's next key at this indentation ends a sequence that is its value
        if (next.indent === indent) return out;
        outside();
      }
    }
  }

  /** the next line's text, which must be at `indent` */
  private take(indent: number): string {
    const l = this.peek();
    if (l === undefined || l.indent !== indent) outside();
    this.ahead = false;
    return l.text;
  }

  done(): boolean {
    return this.peek() === undefined;
  }
}

function isItem(text: string): boolean {
  return text === '-' || text.startsWith('- ');
}

/** printable ASCII, spaces and line feeds only */
const OUTSIDE_CHARS = /[^\x20-\x7e\n]/;

/**
 * The document `text` holds, when it is inside the subset this reader knows; undefined when it is
 * not (the caller reads it with the `yaml` library then).
 */
export function readPlainYaml(text: string): unknown {
  if (OUTSIDE_CHARS.test(text)) return undefined;
  try {
    const r = new Reader(text);
    if (r.peek()?.indent !== 0) return undefined;
    const v = r.block();
    return r.done() ? v : undefined;
  } catch (e) {
    if (e === OUTSIDE) return undefined;
    throw e;
  }
}
