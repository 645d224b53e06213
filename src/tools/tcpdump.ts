/**
 * Emulated `tcpdump` (4.99.3, libpcap 1.10.3, as Debian bookworm ships it) run in a namespace of
 * the model: it replays what the chosen device captured (both directions, in time order) as a live
 * capture that the user stops with Ctrl-C after the last packet, or that `-c N` stops:
 *
 *   stderr  tcpdump: verbose output suppressed, use -v[v]... for full protocol decode
 *           listening on eth0, link-type EN10MB (Ethernet), snapshot length 262144 bytes
 *   stdout  one line (or more, with -v) per packet, as tcpdump prints it
 *           an empty line: the newline tcpdump prints when Ctrl-C interrupts it (not with -c)
 *   stderr  N packets captured / N packets received by filter / 0 packets dropped by kernel
 *
 * Options: -i IF, -n/-nn, -e, -v/-vv/-vvv, -c N, -S, -q, -t/-tt/-ttt/-tttt/-ttttt, -s SNAPLEN,
 * -Q in|out|inout, -#/--number, -l, -p, -U, --immediate-mode, -h/--help, --version; flags may be
 * combined (`-nnev`) and option values attached (`-ieth0`, `-c5`); options may follow the
 * expression, as GNU getopt permutes them. The filter is the pcap-filter expression made of the
 * remaining words (see pcapfilter.ts). Valid tcpdump options outside this set (-w, -X, …), `-i any`
 * and filter constructs the compiler does not implement print `podwalk: … is not emulated` and
 * exit 2, podwalk's rule for every emulated tool; tcpdump's own errors keep tcpdump's text and 1.
 *
 * Names: podwalk has no DNS, so without -n addresses print as numbers, as tcpdump prints them
 * when a reverse lookup finds no name; ports then get their /etc/services names (8080 is
 * `http-alt`), MAC addresses (with -e) their OUI, as tcpdump does.
 * Timestamps are UTC (nodes and pods run with TZ unset).
 */
import type { Link } from '../kernel/objects.ts';
import { compileFilter, FilterError, LINKTYPE_RAW } from './pcapfilter.ts';
import { captureTimestamp } from './pcap-export.ts';
import { PacketPrinter } from './tcpdump-print.ts';
import { ToolFailure, type Tool, type ToolResult } from './types.ts';

const MAXIMUM_SNAPLEN = 262144;

const VERSION =
  'tcpdump version 4.99.3\nlibpcap version 1.10.3 (with TPACKET_V3)\nOpenSSL 3.0.19 27 Jan 2026\n';

const USAGE =
  VERSION +
  'Usage: tcpdump [-AbdDefhHIJKlLnNOpqStuUvxX#] [ -B size ] [ -c count ] [--count]\n' +
  '\t\t[ -C file_size ] [ -E algo:secret ] [ -F file ] [ -G seconds ]\n' +
  '\t\t[ -i interface ] [ --immediate-mode ] [ -j tstamptype ]\n' +
  '\t\t[ -M secret ] [ --number ] [ --print ] [ -Q in|out|inout ]\n' +
  '\t\t[ -r file ] [ -s snaplen ] [ -T type ] [ --version ]\n' +
  '\t\t[ -V file ] [ -w file ] [ -W filecount ] [ -y datalinktype ]\n' +
  '\t\t[ --time-stamp-precision precision ] [ --micro ] [ --nano ]\n' +
  '\t\t[ -z postrotate-command ] [ -Z user ] [ expression ]\n';

/** tcpdump's SHORTOPTS: letters, ':' after those taking a value */
const SHORTOPTS = 'aAbB:c:C:dDeE:fF:G:hHi:IjJKlLm:M:nNOpqQ:r:s:StT:uUvV:w:W:xXy:Yz:Z:#';
const LONGOPTS: Record<string, { arg: boolean; short: string }> = {
  'buffer-size': { arg: true, short: 'B' },
  'list-interfaces': { arg: false, short: 'D' },
  help: { arg: false, short: 'h' },
  interface: { arg: true, short: 'i' },
  'monitor-mode': { arg: false, short: 'I' },
  'time-stamp-type': { arg: true, short: 'j' },
  'list-time-stamp-types': { arg: false, short: 'J' },
  micro: { arg: false, short: 'micro' },
  nano: { arg: false, short: 'nano' },
  'time-stamp-precision': { arg: true, short: 'time-stamp-precision' },
  'dont-verify-checksums': { arg: false, short: 'K' },
  'list-data-link-types': { arg: false, short: 'L' },
  'no-optimize': { arg: false, short: 'O' },
  'no-promiscuous-mode': { arg: false, short: 'p' },
  direction: { arg: true, short: 'Q' },
  'snapshot-length': { arg: true, short: 's' },
  'absolute-tcp-sequence-numbers': { arg: false, short: 'S' },
  'packet-buffered': { arg: false, short: 'U' },
  linktype: { arg: true, short: 'y' },
  'immediate-mode': { arg: false, short: 'immediate-mode' },
  'debug-filter-parser': { arg: false, short: 'Y' },
  'relinquish-privileges': { arg: true, short: 'Z' },
  count: { arg: false, short: 'count' },
  'fp-type': { arg: false, short: 'fp-type' },
  number: { arg: false, short: '#' },
  print: { arg: false, short: 'print' },
  version: { arg: false, short: 'version' },
};

/** options the emulation implements (others are valid tcpdump options it refuses explicitly) */
const IMPLEMENTED = new Set([
  'c',
  'e',
  'h',
  'i',
  'l',
  'n',
  'p',
  'q',
  'Q',
  's',
  'S',
  't',
  'U',
  'v',
  '#',
  'immediate-mode',
  'version',
]);

interface Options {
  iface?: string;
  count?: number;
  n: number;
  e: boolean;
  v: number;
  S: boolean;
  q: boolean;
  t: number;
  snaplen: number;
  direction: 'in' | 'out' | 'inout';
  number: boolean;
  /** -p: the device is not put in promiscuous mode */
  noPromisc: boolean;
  help: boolean;
  version: boolean;
  words: string[];
}

const fail = (msg: string): never => {
  throw new ToolFailure(1, `tcpdump: ${msg}\n`);
};
/** a valid tcpdump usage the emulation does not implement: podwalk's rule, exit 2 */
const notEmulated = (what: string, hint = ''): never => {
  throw new ToolFailure(2, `podwalk: ${what} is not emulated${hint && `; ${hint}`}\n`);
};
const usageError = (msg: string): never => {
  throw new ToolFailure(1, `tcpdump: ${msg}\n${USAGE}`);
};

/** C atoi(): leading blanks, a sign, digits */
function atoi(s: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)/.exec(s);
  return m ? Number(m[1]) : 0;
}

/** C strtol(s, &end, 0) accepting the whole string, or undefined */
function strtol0(s: string): number | undefined {
  const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (!m) return undefined;
  const body = m[2];
  const v = /^0[xX]/.test(body)
    ? parseInt(body.slice(2), 16)
    : body.length > 1 && body[0] === '0'
      ? parseInt(body, 8)
      : Number(body);
  return m[1] === '-' ? -v : v;
}

/** getopt_long with GNU argument permutation */
function parseArgs(argv: readonly string[]): Options {
  const o: Options = {
    n: 0,
    e: false,
    v: 0,
    S: false,
    q: false,
    t: 0,
    snaplen: MAXIMUM_SNAPLEN,
    direction: 'inout',
    number: false,
    noPromisc: false,
    help: false,
    version: false,
    words: [],
  };
  const apply = (opt: string, val: string | undefined): void => {
    if (!IMPLEMENTED.has(opt)) {
      const flag = opt.length === 1 ? '-' + opt : '--' + opt;
      notEmulated(
        `"tcpdump ${flag}"`,
        opt === 'w' ? '`podwalk trace … --pcap DIR` writes a pcap file per interface' : '',
      );
    }
    switch (opt) {
      case 'c': {
        const n = atoi(val!);
        if (n <= 0) fail(`invalid packet count ${val}`);
        o.count = n;
        break;
      }
      case 'e':
        o.e = true;
        break;
      case 'h':
        o.help = true;
        break;
      case 'version':
        o.version = true;
        break;
      case 'i':
        o.iface = val;
        break;
      case 'n':
        o.n++;
        break;
      case 'q':
        o.q = true;
        break;
      case 'Q':
        if (/^(in|out|inout)$/i.test(val!)) o.direction = val!.toLowerCase() as Options['direction'];
        else fail(`unknown capture direction \`${val}'`);
        break;
      case 's': {
        const n = strtol0(val!);
        if (n === undefined || n < 0 || n > MAXIMUM_SNAPLEN)
          fail(`invalid snaplen ${val} (must be >= 0 and <= ${MAXIMUM_SNAPLEN})`);
        o.snaplen = n === 0 ? MAXIMUM_SNAPLEN : n!;
        break;
      }
      case 'S':
        o.S = true;
        break;
      case 'p':
        o.noPromisc = true;
        break;
      case 't':
        o.t++;
        break;
      case 'v':
        o.v++;
        break;
      case '#':
        o.number = true;
        break;
      default:
        // -l, -p, -U, --immediate-mode: no visible effect on a replayed capture
        break;
    }
  };
  let i = 0;
  while (i < argv.length) {
    const a = argv[i++];
    if (a === '--') {
      o.words.push(...argv.slice(i));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const matches = Object.keys(LONGOPTS).filter((k) => k.startsWith(name));
      const exact = LONGOPTS[name] ? name : matches.length === 1 ? matches[0] : undefined;
      if (!exact) {
        if (matches.length > 1) usageError(`option '${a}' is ambiguous`);
        usageError(`unrecognized option '${a}'`);
      }
      const spec = LONGOPTS[exact!];
      let val: string | undefined;
      if (spec.arg) {
        if (eq >= 0) val = a.slice(eq + 1);
        else if (i < argv.length) val = argv[i++];
        else usageError(`option '--${exact}' requires an argument`);
      } else if (eq >= 0) usageError(`option '--${exact}' doesn't allow an argument`);
      apply(spec.short, val);
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j];
        const at = SHORTOPTS.indexOf(c);
        if (at < 0 || c === ':') usageError(`invalid option -- '${c}'`);
        if (SHORTOPTS[at + 1] === ':') {
          let val: string;
          if (j + 1 < a.length) val = a.slice(j + 1);
          else if (i < argv.length) val = argv[i++];
          else return usageError(`option requires an argument -- '${c}'`);
          apply(c, val);
          break;
        }
        apply(c, undefined);
      }
      continue;
    }
    o.words.push(a);
  }
  return o;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

function hms(sec: number, usec: number): string {
  const d = new Date(sec * 1000);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(usec, 6)}`;
}

/** the device tcpdump opens without -i: the first up, non-loopback device (pcap_findalldevs order) */
function defaultDevice(links: Iterable<Link>): Link | undefined {
  const all = [...links].sort((a, b) => a.ifindex - b.ifindex);
  return all.find((l) => l.up && l.type !== 'loopback') ?? all.find((l) => l.type !== 'loopback') ?? all[0];
}

export const tcpdump: Tool = (argv, ctx): ToolResult => {
  let stdout = '';
  let stderr = '';
  try {
    const o = parseArgs(argv);
    if (o.help || o.version) return { stdout: o.help ? USAGE : VERSION, stderr: '', code: 0 };
    const ns = ctx.netns;
    let dev: Link | undefined;
    if (o.iface === undefined) {
      dev = defaultDevice(ns.links.values());
      if (!dev) fail('no suitable device found');
    } else {
      if (o.iface === 'any') notEmulated('"tcpdump -i any"', 'capture one interface at a time with -i DEV');
      dev = ns.link(o.iface);
      if (!dev) fail(`${o.iface}: No such device exists\n(No such device exists)`);
    }
    if (!dev!.up) fail(`${dev!.name}: That device is not up`);
    const raw = dev!.type === 'ipip';
    const linktype = raw ? LINKTYPE_RAW : 1;
    let filter: ReturnType<typeof compileFilter>;
    try {
      filter = compileFilter(o.words.join(' '), linktype);
    } catch (e) {
      if (e instanceof FilterError)
        throw e.notEmulated
          ? new ToolFailure(2, `${e.message}\n`)
          : new ToolFailure(1, `tcpdump: ${e.message}\n`);
      throw e;
    }
    stderr += o.v
      ? 'tcpdump: '
      : 'tcpdump: verbose output suppressed, use -v[v]... for full protocol decode\n';
    stderr += `listening on ${dev!.name}, link-type ${raw ? 'RAW (Raw IP)' : 'EN10MB (Ethernet)'}, snapshot length ${o.snaplen} bytes\n`;

    const printer = new PacketPrinter({ v: o.v, e: o.e, n: o.n > 0, S: o.S, q: o.q });
    const caps = ctx.cluster.world.captures
      .filter((c) => c.netns === ns.name && c.dev === dev!.name)
      .filter((c) => o.direction === 'inout' || c.dir === o.direction)
      // -p: a bridge left out of promiscuous mode passes up only what is for the host
      .filter((c) => !o.noPromisc || !c.promisc)
      .sort((a, b) => a.time - b.time);
    const lines: string[] = [];
    let captured = 0;
    let ref: number | undefined;
    let prev: number | undefined;
    for (const c of caps) {
      const data = c.frame.length > o.snaplen ? c.frame.subarray(0, o.snaplen) : c.frame;
      if (!filter.matches(data, c.frame.length)) continue;
      captured++;
      const { tsSec, tsUsec } = captureTimestamp(c.time);
      let ts = '';
      const us = tsSec * 1e6 + tsUsec;
      switch (o.t) {
        case 0:
          ts = hms(tsSec, tsUsec) + ' ';
          break;
        case 1:
          break;
        case 2:
          ts = `${tsSec}.${pad(tsUsec, 6)} `;
          break;
        case 3:
        case 5: {
          ref ??= us;
          const base = o.t === 3 ? (prev ?? us) : ref;
          const d = us - base;
          ts = ' ' + hms(Math.floor(d / 1e6), d % 1e6) + ' ';
          prev = us;
          break;
        }
        default: {
          const day = new Date(tsSec * 1000).toISOString().slice(0, 10);
          ts = `${day} ${hms(tsSec, tsUsec)} `;
        }
      }
      const num = o.number ? String(captured).padStart(5) + '  ' : '';
      lines.push(num + ts + printer.print(raw ? 'raw' : 'ether', data, c.frame.length) + '\n');
      if (o.count !== undefined && captured >= o.count) break;
    }
    stdout = lines.join('');
    const interrupted = o.count === undefined || captured < o.count;
    if (interrupted) stdout += '\n';
    const plural = (n: number) => (n === 1 ? '' : 's');
    stderr += `${captured} packet${plural(captured)} captured\n`;
    stderr += `${captured} packet${plural(captured)} received by filter\n`;
    stderr += '0 packets dropped by kernel\n';
    return { stdout, stderr, code: 0 };
  } catch (e) {
    if (e instanceof ToolFailure) return { stdout, stderr: stderr + e.stderr, code: e.code };
    throw e;
  }
};
