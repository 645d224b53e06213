/**
 * The output machinery of iproute2 6.1, ported so that podwalk's `ip` and `bridge` print byte
 * for byte what the real tools print: a C printf subset, lib/json_writer.c (compact and `-p`
 * pretty JSON) and lib/json_print.c (print_string/print_uint/... that write either the text or
 * the JSON form, depending on PRINT_FP/PRINT_JSON/PRINT_ANY and whether `-j` is on).
 */

/* ------------------------------------------------------------------ printf */

type Arg = string | number | bigint;

function pad(s: string, width: number, left: boolean, zero: boolean): string {
  if (s.length >= width) return s;
  if (left) return s + ' '.repeat(width - s.length);
  if (zero) {
    const sign = s[0] === '-' || s[0] === '+' ? s[0] : '';
    const body = sign ? s.slice(1) : s;
    const prefix = /^0[xX]/.test(body) ? body.slice(0, 2) : '';
    return sign + prefix + '0'.repeat(width - s.length) + body.slice(prefix.length);
  }
  return ' '.repeat(width - s.length) + s;
}

/** C printf for the conversions iproute2 uses: d i u x X o s c f g % with flags, width, precision (* too) */
export function sprintf(format: string, ...args: Arg[]): string {
  let out = '';
  let ai = 0;
  const next = (): Arg => args[ai++] ?? 0;
  const re = /%([-+ #0]*)(\*|\d+)?(?:\.(\*|\d*))?(hh|h|ll|l|z|j|t|L)?([diuxXoscfgeE%])/g;
  let last = 0;
  for (let m = re.exec(format); m; m = re.exec(format)) {
    out += format.slice(last, m.index);
    last = re.lastIndex;
    const [, flags, w, p, len, conv] = m;
    if (conv === '%') {
      out += '%';
      continue;
    }
    const left = flags.includes('-');
    const zero = flags.includes('0') && !left;
    const alt = flags.includes('#');
    const plus = flags.includes('+');
    let width = w === '*' ? Number(next()) : w ? Number(w) : 0;
    let leftAdj = left;
    if (width < 0) {
      leftAdj = true;
      width = -width;
    }
    const prec = p === undefined ? undefined : p === '*' ? Number(next()) : p === '' ? 0 : Number(p);
    const v = next();
    let s: string;
    switch (conv) {
      case 's':
        s = String(v);
        if (prec !== undefined) s = s.slice(0, prec);
        out += pad(s, width, leftAdj, false);
        continue;
      case 'c':
        out += pad(typeof v === 'number' ? String.fromCharCode(v) : String(v), width, leftAdj, false);
        continue;
      case 'd':
      case 'i': {
        let n = BigInt(typeof v === 'string' ? Number(v) : v);
        if (len === 'hh') n = BigInt.asIntN(8, n);
        else if (len === 'h') n = BigInt.asIntN(16, n);
        else if (!len) n = BigInt.asIntN(32, n);
        s = (n < 0n ? -n : n).toString();
        if (prec !== undefined) s = s.padStart(prec, '0');
        s = (n < 0n ? '-' : plus ? '+' : '') + s;
        out += pad(s, width, leftAdj, zero && prec === undefined);
        continue;
      }
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        let n = BigInt(typeof v === 'string' ? Number(v) : v);
        const bits =
          len === 'hh' ? 8 : len === 'h' ? 16 : len === 'l' || len === 'll' || len === 'j' ? 64 : 32;
        n = BigInt.asUintN(bits, n);
        s = n.toString(conv === 'u' ? 10 : conv === 'o' ? 8 : 16);
        if (conv === 'X') s = s.toUpperCase();
        if (prec !== undefined) s = s.padStart(prec, '0');
        if (alt && n !== 0n && (conv === 'x' || conv === 'X')) s = (conv === 'x' ? '0x' : '0X') + s;
        if (alt && conv === 'o' && !s.startsWith('0')) s = '0' + s;
        out += pad(s, width, leftAdj, zero && prec === undefined);
        continue;
      }
      case 'f':
        s = Number(v).toFixed(prec ?? 6);
        out += pad(s, width, leftAdj, zero);
        continue;
      case 'g':
      case 'e':
      case 'E': {
        const n = Number(v);
        if (conv === 'g') {
          const pr = prec === undefined ? 6 : prec === 0 ? 1 : prec;
          s = n === 0 ? '0' : Number(n.toPrecision(pr)).toString();
        } else s = n.toExponential(prec ?? 6);
        out += pad(s, width, leftAdj, zero);
        continue;
      }
    }
  }
  return out + format.slice(last);
}

/* ------------------------------------------------------------------ json_writer.c */

function jsonQuote(str: string): string {
  let s = '"';
  for (const ch of str) {
    switch (ch) {
      case '\t':
        s += '\\t';
        break;
      case '\n':
        s += '\\n';
        break;
      case '\r':
        s += '\\r';
        break;
      case '\f':
        s += '\\f';
        break;
      case '\b':
        s += '\\b';
        break;
      case '\\':
        s += '\\\\';
        break;
      case '"':
        s += '\\"';
        break;
      default:
        s += ch;
    }
  }
  return s + '"';
}

class JsonWriter {
  private depth = 0;
  private sep = '';

  constructor(
    private readonly put: (s: string) => void,
    private readonly pretty: boolean,
  ) {}

  private eol(): void {
    if (!this.pretty) return;
    this.put('\n' + '    '.repeat(this.depth));
  }

  private eor(): void {
    if (this.sep) this.put(this.sep);
    this.sep = ',';
  }

  private begin(c: string): void {
    this.eor();
    this.put(c);
    this.depth++;
    this.sep = '';
  }

  private end(c: string): void {
    this.depth--;
    if (this.sep) this.eol();
    this.put(c);
    this.sep = ',';
  }

  name(name: string): void {
    this.eor();
    this.eol();
    this.sep = '';
    this.put(jsonQuote(name) + ':');
    if (this.pretty) this.put(' ');
  }

  /** jsonw_printf: an already formatted value */
  raw(text: string): void {
    this.eor();
    this.put(text);
  }

  string(value: string): void {
    this.eor();
    this.put(jsonQuote(value));
  }

  startObject(): void {
    this.begin('{');
  }

  endObject(): void {
    this.end('}');
  }

  startArray(): void {
    this.begin('[');
    if (this.pretty) this.put(' ');
  }

  endArray(): void {
    if (this.pretty && this.sep) this.put(' ');
    this.sep = '';
    this.end(']');
  }

  destroy(): void {
    this.put('\n');
  }
}

/* ------------------------------------------------------------------ json_print.c */

export const PRINT_FP = 1;
export const PRINT_JSON = 2;
export const PRINT_ANY = 4;
export type OutType = typeof PRINT_FP | typeof PRINT_JSON | typeof PRINT_ANY;

/** What a tool writes: stdout, stderr, and the json_print.c state (the JSON writer while -j is on). */
export class Printer {
  stdout = '';
  stderr = '';
  private jw?: JsonWriter;
  private haveArray = false;

  constructor(
    readonly json: boolean,
    readonly pretty: boolean,
    /** _SL_: "\\" with -oneline, else "\n" */
    readonly sl = '\n',
  ) {}

  /** fprintf(stdout, ...) */
  printf(format: string, ...args: Arg[]): void {
    this.stdout += sprintf(format, ...args);
  }

  /** fprintf(stderr, ...) */
  eprintf(format: string, ...args: Arg[]): void {
    this.stderr += sprintf(format, ...args);
  }

  isJson(): boolean {
    return this.jw !== undefined;
  }

  private jsonCtx(t: OutType): boolean {
    return this.jw !== undefined && (t === PRINT_JSON || t === PRINT_ANY);
  }

  private fpCtx(t: OutType): boolean {
    return this.jw === undefined && (t === PRINT_FP || t === PRINT_ANY);
  }

  newJsonObj(haveArray = true): void {
    if (!this.json) return;
    this.jw = new JsonWriter((s) => (this.stdout += s), this.pretty);
    this.haveArray = haveArray;
    if (haveArray) this.jw.startArray();
  }

  deleteJsonObj(): void {
    if (!this.jw) return;
    if (this.haveArray) this.jw.endArray();
    this.jw.destroy();
    this.jw = undefined;
  }

  openObject(name?: string): void {
    if (!this.jw) return;
    if (name) this.jw.name(name);
    this.jw.startObject();
  }

  closeObject(): void {
    this.jw?.endObject();
  }

  openArray(t: OutType, str: string | undefined): void {
    if (this.jsonCtx(t)) {
      if (str) this.jw!.name(str);
      this.jw!.startArray();
    } else if (this.fpCtx(t)) this.stdout += str ?? '';
  }

  closeArray(t: OutType, str: string | undefined): void {
    if (this.jsonCtx(t)) this.jw!.endArray();
    else if (this.fpCtx(t)) this.stdout += str ?? '';
  }

  /** print_string / print_color_string */
  string(t: OutType, key: string | undefined, fmt: string | undefined, value: string | undefined): void {
    if (this.jsonCtx(t)) {
      if (key && value === undefined) this.jw!.name(key);
      else if (!key && value !== undefined) this.jw!.string(value);
      else {
        this.jw!.name(key!);
        this.jw!.string(value ?? '');
      }
    } else if (this.fpCtx(t)) this.stdout += sprintf(fmt ?? '', value ?? '(null)');
  }

  /** print_int, print_uint, print_u64, print_hu, print_lluint… (numbers as %d/%u in JSON) */
  num(t: OutType, key: string | undefined, fmt: string | undefined, value: number | bigint): void {
    if (this.jsonCtx(t)) {
      if (key) this.jw!.name(key);
      this.jw!.raw(String(value));
    } else if (this.fpCtx(t)) this.stdout += sprintf(fmt ?? '', value);
  }

  bool(t: OutType, key: string | undefined, fmt: string | undefined, value: boolean): void {
    if (this.jsonCtx(t)) {
      if (key) this.jw!.name(key);
      this.jw!.raw(value ? 'true' : 'false');
    } else if (this.fpCtx(t)) this.stdout += sprintf(fmt ?? '', value ? 'true' : 'false');
  }

  onOff(t: OutType, key: string | undefined, fmt: string, value: boolean): void {
    if (this.jsonCtx(t)) {
      if (key) this.jw!.name(key);
      this.jw!.raw(value ? 'true' : 'false');
    } else if (this.fpCtx(t)) this.stdout += sprintf(fmt, value ? 'on' : 'off');
  }

  null(t: OutType, key: string | undefined, fmt: string | undefined, value: string | undefined): void {
    if (this.jsonCtx(t)) {
      if (key) this.jw!.name(key);
      this.jw!.raw('null');
    } else if (this.fpCtx(t)) this.stdout += sprintf(fmt ?? '', value ?? '');
  }

  /** print_0xhex: "%#llx" as a JSON string */
  hex0x(t: OutType, key: string | undefined, fmt: string, value: number): void {
    if (this.jsonCtx(t)) this.string(PRINT_JSON, key, undefined, sprintf('%#llx', value));
    else if (this.fpCtx(t)) this.stdout += sprintf(fmt, value);
  }

  /** print_hex: "%x" as a JSON string */
  hex(t: OutType, key: string | undefined, fmt: string, value: number): void {
    if (this.jsonCtx(t)) {
      if (key) this.jw!.name(key);
      this.jw!.string(sprintf('%x', value));
    } else if (this.fpCtx(t)) this.stdout += sprintf(fmt, value);
  }

  /** jsonw_name + jsonw_printf: a value printed raw (timers print "%i.%.2i") */
  jsonRaw(key: string, text: string): void {
    this.jw?.name(key);
    this.jw?.raw(text);
  }

  /** jsonw_name + jsonw_start_array on the writer directly */
  jsonName(key: string): void {
    this.jw?.name(key);
  }

  jsonStartArray(): void {
    this.jw?.startArray();
  }

  jsonEndArray(): void {
    this.jw?.endArray();
  }

  jsonString(value: string): void {
    this.jw?.string(value);
  }

  /** print_nl: _SL_ outside JSON */
  nl(): void {
    if (!this.jw) this.stdout += this.sl;
  }
}

/** exit(code) of the C tool: unwinds to the tool's entry point */
export class ToolExit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}
