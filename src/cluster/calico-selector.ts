/**
 * Calico's selector language (libcalico-go lib/selector/parser), as a BGPPeer's nodeSelector and
 * peerSelector take it, over a node's labels:
 *
 *   all()                    every node                 has(k)       the label exists
 *   k == "v"    k != "v"     (!= also matches when k is absent)
 *   k in {"a", "b"}          k not in {"a", "b"}        (not in also matches when k is absent)
 *   k contains "s"           k starts with "s"          k ends with "s"
 *   !e          e && e       e || e                     ( e )
 *
 * Strings are quoted with ' or ". `&&` binds tighter than `||`, as in Calico's parser.
 */

export type CalicoSelector =
  | { kind: 'all' }
  | { kind: 'has'; key: string }
  | { kind: 'eq' | 'ne' | 'contains' | 'starts' | 'ends'; key: string; value: string }
  | { kind: 'in' | 'notin'; key: string; values: string[] }
  | { kind: 'not'; e: CalicoSelector }
  | { kind: 'and' | 'or'; a: CalicoSelector; b: CalicoSelector };

export class CalicoSelectorError extends Error {}

const KEY = /^[A-Za-z0-9_./-]+/;

/** Parses a selector; throws CalicoSelectorError naming what it expected. */
export function parseCalicoSelector(text: string): CalicoSelector {
  let i = 0;
  const ws = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const fail = (what: string): never => {
    throw new CalicoSelectorError(`selector ${JSON.stringify(text)}: expected ${what} at character ${i + 1}`);
  };
  const eat = (tok: string) => {
    ws();
    if (text.startsWith(tok, i)) {
      i += tok.length;
      return true;
    }
    return false;
  };
  const key = (): string => {
    ws();
    const m = KEY.exec(text.slice(i));
    if (!m) return fail('a label key');
    i += m[0].length;
    return m[0];
  };
  const str = (): string => {
    ws();
    const q = text[i];
    if (q !== '"' && q !== "'") return fail('a quoted string');
    const end = text.indexOf(q, i + 1);
    if (end < 0) return fail(`a closing ${q}`);
    const s = text.slice(i + 1, end);
    i = end + 1;
    return s;
  };
  const set = (): string[] => {
    if (!eat('{')) fail('{');
    const out: string[] = [];
    if (eat('}')) return out;
    for (;;) {
      out.push(str());
      if (eat('}')) return out;
      if (!eat(',')) fail(', or }');
    }
  };
  const unary = (): CalicoSelector => {
    if (eat('!')) return { kind: 'not', e: unary() };
    if (eat('(')) {
      const e = or();
      if (!eat(')')) fail(')');
      return e;
    }
    if (eat('all()')) return { kind: 'all' };
    if (eat('has(')) {
      const k = key();
      if (!eat(')')) fail(')');
      return { kind: 'has', key: k };
    }
    const k = key();
    if (eat('==')) return { kind: 'eq', key: k, value: str() };
    if (eat('!=')) return { kind: 'ne', key: k, value: str() };
    if (eat('not in')) return { kind: 'notin', key: k, values: set() };
    if (eat('in')) return { kind: 'in', key: k, values: set() };
    if (eat('contains')) return { kind: 'contains', key: k, value: str() };
    if (eat('starts with')) return { kind: 'starts', key: k, value: str() };
    if (eat('ends with')) return { kind: 'ends', key: k, value: str() };
    return fail('==, !=, in, not in, contains, starts with or ends with');
  };
  const and = (): CalicoSelector => {
    let a = unary();
    while (eat('&&')) a = { kind: 'and', a, b: unary() };
    return a;
  };
  const or = (): CalicoSelector => {
    let a = and();
    while (eat('||')) a = { kind: 'or', a, b: and() };
    return a;
  };
  const e = or();
  ws();
  if (i < text.length) fail('&&, || or the end');
  return e;
}

/** Whether labels match the selector. */
export function calicoSelects(s: CalicoSelector, labels: Readonly<Record<string, string>>): boolean {
  const v = 'key' in s ? labels[s.key] : undefined;
  switch (s.kind) {
    case 'all':
      return true;
    case 'has':
      return v !== undefined;
    case 'eq':
      return v === s.value;
    case 'ne':
      return v !== s.value;
    case 'in':
      return v !== undefined && s.values.includes(v);
    case 'notin':
      return v === undefined || !s.values.includes(v);
    case 'contains':
      return v !== undefined && v.includes(s.value);
    case 'starts':
      return v !== undefined && v.startsWith(s.value);
    case 'ends':
      return v !== undefined && v.endsWith(s.value);
    case 'not':
      return !calicoSelects(s.e, labels);
    case 'and':
      return calicoSelects(s.a, labels) && calicoSelects(s.b, labels);
    case 'or':
      return calicoSelects(s.a, labels) || calicoSelects(s.b, labels);
  }
}
