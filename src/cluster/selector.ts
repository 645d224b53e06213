/**
 * A pod selector as `kubectl get pods -l` takes it (the grammar of k8s.io/apimachinery's
 * labels.Parse): requirements separated by commas, each one of
 *
 *   key            the label exists            !key           it does not
 *   key=value      key==value                  key!=value     (absent also matches !=)
 *   key in (a,b)   key notin (a,b)             (notin also matches when the label is absent)
 *
 * Three keys name a pod's fields instead of labels, as kubectl's field selectors spell them:
 * `metadata.name`, `metadata.namespace` and `spec.nodeName`. An empty selector selects every pod.
 * The result is a list of metav1.LabelSelectorRequirement, the form NetworkPolicy selectors have.
 */
import type { LabelSelectorSpec } from './spec.ts';

export type Requirement = NonNullable<LabelSelectorSpec['matchExpressions']>[number];

export interface PodSelector {
  /** as typed */
  text: string;
  requirements: Requirement[];
}

/** the pod fields a selector may name, by their kubectl field-selector names */
export const POD_FIELDS = ['metadata.name', 'metadata.namespace', 'spec.nodeName'] as const;

export class SelectorError extends Error {}

// a label key: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters
const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const PREFIX = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
// a label value: empty, or a name of at most 63 characters
const VALUE = NAME;

function checkKey(key: string): void {
  const slash = key.indexOf('/');
  const [prefix, name] = slash < 0 ? [undefined, key] : [key.slice(0, slash), key.slice(slash + 1)];
  if (prefix !== undefined && !PREFIX.test(prefix))
    throw new SelectorError(`"${key}": the prefix before '/' must be a DNS subdomain`);
  if (!NAME.test(name))
    throw new SelectorError(
      `"${key}" is not a label key: at most 63 characters of A-Z a-z 0-9 - _ ., starting and ending with a letter or digit`,
    );
}

function checkValue(key: string, v: string): void {
  if (v !== '' && !VALUE.test(v))
    throw new SelectorError(
      `"${v}" (for ${key}) is not a label value: at most 63 characters of A-Z a-z 0-9 - _ ., starting and ending with a letter or digit`,
    );
}

type Token = { kind: 'word'; text: string } | { kind: 'op'; text: string };

function tokenize(s: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < s.length) {
    const ch = s[i];
    if (/\s/.test(ch)) {
      i++;
      continue;
    }
    const two = s.slice(i, i + 2);
    if (two === '==' || two === '!=') {
      out.push({ kind: 'op', text: two });
      i += 2;
      continue;
    }
    if ('=!(),<>'.includes(ch)) {
      out.push({ kind: 'op', text: ch });
      i++;
      continue;
    }
    let j = i;
    while (j < s.length && !/\s/.test(s[j]) && !'=!(),<>'.includes(s[j])) j++;
    out.push({ kind: 'word', text: s.slice(i, j) });
    i = j;
  }
  return out;
}

/** Parse a selector; a bad one throws SelectorError with what is wrong (the caller names the option) */
export function parsePodSelector(text: string): PodSelector {
  const toks = tokenize(text);
  const requirements: Requirement[] = [];
  let i = 0;
  const peek = () => toks[i];
  const word = (what: string): string => {
    const t = toks[i];
    if (!t || t.kind !== 'word')
      throw new SelectorError(`expected ${what}${t ? ` at "${t.text}"` : ' at the end'}`);
    i++;
    return t.text;
  };
  const op = (text: string, what: string) => {
    const t = toks[i];
    if (!t || t.kind !== 'op' || t.text !== text)
      throw new SelectorError(`expected ${what}${t ? ` at "${t.text}"` : ' at the end'}`);
    i++;
  };
  while (i < toks.length) {
    if (peek().kind === 'op' && peek().text === '!') {
      i++;
      const key = word('a label key after "!"');
      checkKey(key);
      requirements.push({ key, operator: 'DoesNotExist' });
    } else {
      const key = word('a label key');
      checkKey(key);
      const t = peek();
      if (!t || (t.kind === 'op' && t.text === ',')) requirements.push({ key, operator: 'Exists' });
      else if (t.kind === 'op' && (t.text === '=' || t.text === '==' || t.text === '!=')) {
        i++;
        // `key=` selects the empty value, as in Kubernetes
        const n = peek();
        const value = n && n.kind === 'word' ? word('a value') : '';
        checkValue(key, value);
        requirements.push({ key, operator: t.text === '!=' ? 'NotIn' : 'In', values: [value] });
      } else if (t.kind === 'word' && (t.text === 'in' || t.text === 'notin')) {
        i++;
        op('(', `"(" after ${t.text}`);
        const close = peek();
        if (close?.kind === 'op' && close.text === ')')
          throw new SelectorError(`${key} ${t.text} (): the set of values is empty`);
        const values: string[] = [];
        for (;;) {
          const v = peek()?.kind === 'word' ? word('a value') : '';
          checkValue(key, v);
          values.push(v);
          const sep = peek();
          if (sep?.kind === 'op' && sep.text === ',') {
            i++;
            continue;
          }
          op(')', `"," or ")" in the values of ${key}`);
          break;
        }
        requirements.push({ key, operator: t.text === 'in' ? 'In' : 'NotIn', values });
      } else if (t.kind === 'op' && (t.text === '<' || t.text === '>'))
        throw new SelectorError(
          `${key} ${t.text}: the operators < and > are not supported (=, ==, !=, in, notin, !)`,
        );
      else throw new SelectorError(`expected =, ==, !=, in, notin or "," after ${key} at "${t.text}"`);
    }
    const t = peek();
    if (!t) break;
    op(',', `"," between requirements`);
    if (!peek()) throw new SelectorError('expected a requirement after ","');
  }
  return { text, requirements };
}

/** What a selector is matched against: the pod's labels, and its fields under their POD_FIELDS names */
export function selectorSubject(pod: {
  name: string;
  namespace: string;
  node: string;
  labels: Readonly<Record<string, string>>;
}): Record<string, string> {
  return {
    ...pod.labels,
    'metadata.name': pod.name,
    'metadata.namespace': pod.namespace,
    'spec.nodeName': pod.node,
  };
}
