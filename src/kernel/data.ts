/**
 * Kernel state as JSON, generically: a value is written from its own fields, so a field added to a
 * kernel object travels without a change here. What JSON cannot carry is tagged:
 *
 *   {"$map": [[k, v], …]}   a Map, in insertion order     {"$set": [v, …]}       a Set
 *   {"$bytes": "0a1b…"}     a Uint8Array (hex)            {"$num": "Infinity"}   NaN or ±Infinity
 *   {"$undefined": true}    undefined in an array         {"$ref": "$.a.b[2]"}   an object met before
 *   {"$class": "Name", "fields": {…}}   an instance of a registered class (CLASSES)
 *
 * Plain objects are written with their keys sorted (one text for one state, whatever order the
 * fields were set in); a key that starts with "$" gets another "$" in front. An object reached
 * twice is written once and referred to by the path of its first place, so an index that shares
 * entries with a list (conntrack's tuple hash) comes back sharing them (NO_BYTES, the empty bytes
 * sockets share, excepted: it is written in full each time). Functions, symbols and
 * instances of classes that are not registered are refused with the path where they are.
 *
 * decodeData checks every tag and names the JSON path of what it refuses (DataError), so a
 * malformed file is one line of error, never a crash further on.
 */

/** a value as JSON has it */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** what a class must be to travel: constructible without arguments is not needed (Object.create) */
export type DataClass = abstract new (...args: never[]) => object;

export class DataError extends Error {}

/**
 * The empty byte string that sockets share between the segments and sockets that carry no bytes
 * (a SYN, an ACK, a socket with nothing left to send), instead of an empty array each: written
 * as `{"$bytes": ""}` wherever it is met, never as a `$ref` to where it was met first, which is
 * what the separate empty arrays it stands for gave. It has no byte to change.
 */
export const NO_BYTES = new Uint8Array(0);

function isPlain(v: object): boolean {
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

const escapeKey = (k: string) => (k.startsWith('$') ? `$${k}` : k);
const unescapeKey = (k: string) => (k.startsWith('$$') ? k.slice(1) : k);

function hex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

/** `$.a.b[2]`: the JSON path of a key under `path` */
export function childPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

/** Write a value as JSON data; `classes` are the classes whose instances may appear. */
export function encodeData(v: unknown, classes: Record<string, DataClass>, path = '$'): Json {
  const seen = new Map<object, string>();
  const names = new Map<unknown, string>(Object.entries(classes).map(([n, c]) => [c.prototype, n]));
  const enc = (x: unknown, at: string): Json => {
    switch (typeof x) {
      case 'string':
      case 'boolean':
        return x;
      case 'number':
        return Number.isFinite(x) ? x : { $num: String(x) };
      case 'undefined':
        return { $undefined: true };
      case 'bigint':
      case 'function':
      case 'symbol':
        throw new DataError(`${at}: a ${typeof x} cannot be written as data`);
    }
    if (x === null) return null;
    const o = x as object;
    if (o === NO_BYTES) return { $bytes: '' };
    const first = seen.get(o);
    if (first !== undefined) return { $ref: first };
    seen.set(o, at);
    if (o instanceof Uint8Array) return { $bytes: hex(o) };
    if (Array.isArray(o)) return o.map((e, i) => enc(e, childPath(at, i)));
    if (o instanceof Map)
      return {
        $map: [...o].map(([k, e], i) => {
          const entry = childPath(childPath(at, '$map'), i);
          return [enc(k, childPath(entry, 0)), enc(e, childPath(entry, 1))];
        }),
      };
    if (o instanceof Set) return { $set: [...o].map((e, i) => enc(e, childPath(childPath(at, '$set'), i))) };
    const fields = (base: string): { [k: string]: Json } => {
      const out: { [k: string]: Json } = {};
      for (const k of Object.keys(o).sort()) {
        const e = (o as Record<string, unknown>)[k];
        if (e === undefined) continue;
        out[escapeKey(k)] = enc(e, childPath(base, escapeKey(k)));
      }
      return out;
    };
    if (isPlain(o)) return fields(at);
    const name = names.get(Object.getPrototypeOf(o));
    if (name === undefined)
      throw new DataError(
        `${at}: an instance of ${o.constructor?.name ?? 'an unknown class'} cannot be written as data (register its class)`,
      );
    return { $class: name, fields: fields(childPath(at, 'fields')) };
  };
  return enc(v, path);
}

const TAGS = ['$map', '$set', '$bytes', '$num', '$undefined', '$ref', '$class'];

/** Read data written by encodeData; every malformed part is a DataError naming its JSON path. */
export function decodeData(j: unknown, classes: Record<string, DataClass>, path = '$'): unknown {
  const byPath = new Map<string, unknown>();
  const fail = (at: string, what: string): never => {
    throw new DataError(`${at}: ${what}`);
  };
  const fieldsOf = (x: Record<string, unknown>, at: string, into: Record<string, unknown>) => {
    for (const [k, e] of Object.entries(x)) {
      if (k.startsWith('$') && !k.startsWith('$$')) fail(childPath(at, k), `unknown tag "${k}"`);
      if (k === '__proto__') fail(childPath(at, k), 'not a field name');
      into[unescapeKey(k)] = dec(e, childPath(at, k));
    }
    return into;
  };
  const dec = (x: unknown, at: string): unknown => {
    if (x === null || typeof x === 'string' || typeof x === 'boolean') return x;
    if (typeof x === 'number') return x;
    if (typeof x !== 'object') return fail(at, `not JSON data (${typeof x})`);
    if (Array.isArray(x)) {
      const out: unknown[] = [];
      byPath.set(at, out);
      x.forEach((e, i) => out.push(dec(e, childPath(at, i))));
      return out;
    }
    const r = x as Record<string, unknown>;
    const tag = Object.keys(r).find((k) => TAGS.includes(k));
    if (tag === undefined) {
      const out: Record<string, unknown> = {};
      byPath.set(at, out);
      return fieldsOf(r, at, out);
    }
    const extra = Object.keys(r).filter((k) => k !== tag && !(tag === '$class' && k === 'fields'));
    if (extra.length) fail(childPath(at, extra[0]), `unexpected beside "${tag}"`);
    const val = r[tag];
    switch (tag) {
      case '$undefined':
        return val === true ? undefined : fail(at, '"$undefined" must be true');
      case '$num':
        return val === 'NaN' || val === 'Infinity' || val === '-Infinity'
          ? Number(val)
          : fail(at, '"$num" must be "NaN", "Infinity" or "-Infinity"');
      case '$bytes': {
        if (typeof val !== 'string' || !/^([0-9a-f]{2})*$/.test(val)) return fail(at, '"$bytes" must be hex');
        const b = new Uint8Array(val.length / 2);
        for (let i = 0; i < b.length; i++) b[i] = parseInt(val.slice(2 * i, 2 * i + 2), 16);
        byPath.set(at, b);
        return b;
      }
      case '$ref': {
        if (typeof val !== 'string' || !byPath.has(val))
          return fail(at, `"$ref" to ${JSON.stringify(val)}, which is not an object met before`);
        return byPath.get(val);
      }
      case '$map': {
        if (!Array.isArray(val)) return fail(at, '"$map" must be a list of [key, value] pairs');
        const m = new Map<unknown, unknown>();
        byPath.set(at, m);
        val.forEach((pair, i) => {
          const entry = childPath(childPath(at, '$map'), i);
          if (!Array.isArray(pair) || pair.length !== 2) fail(entry, 'a map entry must be [key, value]');
          const k = dec(pair[0], childPath(entry, 0));
          m.set(k, dec(pair[1], childPath(entry, 1)));
        });
        return m;
      }
      case '$set': {
        if (!Array.isArray(val)) return fail(at, '"$set" must be a list');
        const s = new Set<unknown>();
        byPath.set(at, s);
        val.forEach((e, i) => s.add(dec(e, childPath(childPath(at, '$set'), i))));
        return s;
      }
      default: {
        const cls = typeof val === 'string' && Object.hasOwn(classes, val) ? classes[val] : undefined;
        if (!cls) return fail(at, `unknown class ${JSON.stringify(val)}`);
        const f = r.fields;
        if (typeof f !== 'object' || f === null || Array.isArray(f))
          return fail(childPath(at, 'fields'), 'must be an object');
        const o = Object.create(cls.prototype) as Record<string, unknown>;
        byPath.set(at, o);
        return fieldsOf(f as Record<string, unknown>, childPath(at, 'fields'), o);
      }
    }
  };
  return dec(j, path);
}
