/**
 * `conntrack` (conntrack-tools 1.4.7) on a namespace's connection tracking table: -L with the
 * tuple filters (-s -d -r -q, -p, ports, --state, --mark, --status, -f, -o extended), -C, -F,
 * and the tool's errors. Entries are listed in the order the model confirmed them (the kernel
 * walks its hash table, whose order depends on a per-boot random seed).
 */
import type { Conntrack, CtEntryData } from '../kernel/conntrack.ts';
import { inPrefix, parseIp4 } from '../wire/addr.ts';
import { formatCtEntry } from '../render/conntrack.ts';
import { ToolFailure, type Tool, type ToolResult } from './types.ts';

const PROG = 'conntrack v1.4.7 (conntrack-tools)';
const TRY = "Try `conntrack -h' or 'conntrack --help' for more information.\n";
const USAGE = `Command line interface for the connection tracking system. Version 1.4.7
Usage: conntrack [commands] [options]

Commands:
  -L [table] [options]\t\tList conntrack or expectation table
  -G [table] parameters\t\tGet conntrack or expectation
  -D [table] parameters\t\tDelete conntrack or expectation
  -I [table] parameters\t\tCreate a conntrack or expectation
  -U [table] parameters\t\tUpdate a conntrack
  -E [table] [options]\t\tShow events
  -F [table]\t\t\tFlush table
  -C [table]\t\t\tShow counter
  -S\t\t\t\tShow statistics

Tables: conntrack, expect, dying, unconfirmed

Conntrack parameters and options:
  -n, --src-nat ip\t\t\tsource NAT ip
  -g, --dst-nat ip\t\t\tdestination NAT ip
  -j, --any-nat ip\t\t\tsource or destination NAT ip
  -m, --mark mark\t\t\tSet mark
  -c, --secmark secmark\t\t\tSet selinux secmark
  -e, --event-mask eventmask\t\tEvent mask, eg. NEW,DESTROY
  -z, --zero \t\t\t\tZero counters while listing
  -o, --output type[,...]\t\tOutput format, eg. xml
  -l, --label label[,...]\t\tconntrack labels

Expectation parameters and options:
  --tuple-src ip\tSource address in expect tuple
  --tuple-dst ip\tDestination address in expect tuple

Updating parameters and options:
  --label-add label\tAdd label
  --label-del label\tDelete label

Common parameters and options:
  -s, --src, --orig-src ip\t\tSource address from original direction
  -d, --dst, --orig-dst ip\t\tDestination address from original direction
  -r, --reply-src ip\t\tSource addres from reply direction
  -q, --reply-dst ip\t\tDestination address from reply direction
  -p, --protonum proto\t\tLayer 4 Protocol, eg. 'tcp'
  -f, --family proto\t\tLayer 3 Protocol, eg. 'ipv6'
  -t, --timeout timeout\t\tSet timeout
  -u, --status status\t\tSet status, eg. ASSURED
  -w, --zone value\t\tSet conntrack zone
  --orig-zone value\t\tSet zone for original direction
  --reply-zone value\t\tSet zone for reply direction
  -b, --buffer-size\t\tNetlink socket buffer size
  --mask-src ip\t\t\tSource mask address
  --mask-dst ip\t\t\tDestination mask address

`;

const param = (msg: string) => new ToolFailure(2, `${PROG}: ${msg}\n${TRY}`);

/** the layer-4 protocols conntrack-tools has modules for */
const L4: Record<string, number> = {
  tcp: 6,
  udp: 17,
  udplite: 136,
  sctp: 132,
  dccp: 33,
  icmp: 1,
  icmpv6: 58,
  gre: 47,
};
const TCP_STATES = [
  'NONE',
  'SYN_SENT',
  'SYN_RECV',
  'ESTABLISHED',
  'FIN_WAIT',
  'CLOSE_WAIT',
  'LAST_ACK',
  'TIME_WAIT',
  'CLOSE',
  'LISTEN',
  'SYN_SENT2',
];
const STATUS = ['EXPECTED', 'ASSURED', 'SEEN_REPLY', 'FIXED_TIMEOUT', 'UNSET'];

/** long option → [short letter, takes an argument] */
const LONG: Record<string, [string, boolean]> = {
  dump: ['L', false],
  count: ['C', false],
  flush: ['F', false],
  version: ['V', false],
  help: ['h', false],
  get: ['G', false],
  delete: ['D', false],
  create: ['I', false],
  update: ['U', false],
  event: ['E', false],
  stats: ['S', false],
  src: ['s', true],
  'orig-src': ['s', true],
  dst: ['d', true],
  'orig-dst': ['d', true],
  'reply-src': ['r', true],
  'reply-dst': ['q', true],
  protonum: ['p', true],
  family: ['f', true],
  timeout: ['t', true],
  status: ['u', true],
  zone: ['w', true],
  mark: ['m', true],
  output: ['o', true],
  zero: ['z', false],
  'src-nat': ['n', false],
  'dst-nat': ['g', false],
  'any-nat': ['j', false],
  'orig-zone': ['orig-zone', true],
  'reply-zone': ['reply-zone', true],
  'mask-src': ['mask-src', true],
  'mask-dst': ['mask-dst', true],
};
const SHORT_ARG = new Set(['s', 'd', 'r', 'q', 'p', 'f', 't', 'u', 'w', 'm', 'o', 'c', 'e', 'l', 'b']);
/** the options the protocol modules add once -p names them */
const PROTO_OPTS: Record<string, string[]> = {
  tcp: ['sport', 'orig-port-src', 'dport', 'orig-port-dst', 'reply-port-src', 'reply-port-dst', 'state'],
  udp: ['sport', 'orig-port-src', 'dport', 'orig-port-dst', 'reply-port-src', 'reply-port-dst'],
};
/** the names conntrack uses in "Illegal option" */
const OPT_NAME: Record<string, string> = {
  s: '--orig-src',
  d: '--orig-dst',
  r: '--reply-src',
  q: '--reply-dst',
  p: '--protonum',
  f: '--family',
  t: '--timeout',
  u: '--status',
  w: '--zone',
  m: '--mark',
  o: '--output',
  z: '--zero',
  n: '--src-nat',
  g: '--dst-nat',
  j: '--any-nat',
};

interface Filter {
  test: (e: CtEntryData) => boolean;
}

function parseAddr(text: string): (ip: string) => boolean {
  const [a, l = '32'] = text.split('/');
  const net = parseIp4(a);
  const len = Number(l);
  if (net === undefined || !/^\d+$/.test(l) || len > 32) throw param(`Invalid IP address \`${text}'`);
  return (ip) => inPrefix(ip, net, len);
}

/** libnetfilter_conntrack's l4 "all" of a tuple side: the port, or for ICMP the id (source) and type|code<<8 (destination) */
function l4(t: CtEntryData['orig'], side: 'src' | 'dst'): number {
  if (t.proto === 1) return side === 'src' ? (t.icmpId ?? 0) : (t.icmpType ?? 0) | ((t.icmpCode ?? 0) << 8);
  if (t.proto === 6 || t.proto === 17) return side === 'src' ? t.sport : t.dport;
  return 0;
}

/**
 * filter_nat of conntrack-tools with libnetfilter_conntrack's IS_SNAT/IS_SPAT/IS_DNAT/IS_DPAT:
 * the NAT_DONE bit set and the reply's address (port) not the original's. For ICMP the "ports"
 * compare the id with type and code, so every ICMP entry of a namespace with NAT counts as both.
 */
function natFilter(
  e: CtEntryData,
  nat: Partial<Record<'n' | 'g' | 'j', { ip?: string; port?: number }>>,
): boolean {
  const side = (
    want: { ip?: string; port?: number } | undefined,
    isNat: boolean,
    isPat: boolean,
    ip: string,
    port: number,
  ) => {
    if (!want) return false;
    let has = false;
    if (want.ip !== undefined) has = isNat && want.ip === ip;
    if (want.port !== undefined) {
      const ok = isPat && want.port === port;
      if (want.ip !== undefined && has && !ok) has = false;
      if (want.ip === undefined && ok) has = true;
    }
    if (want.ip === undefined && want.port === undefined) has = isNat || isPat;
    return has;
  };
  const snat = e.snatDone && e.reply.dst !== e.orig.src;
  const spat = e.snatDone && l4(e.reply, 'dst') !== l4(e.orig, 'src');
  const dnat = e.dnatDone && e.reply.src !== e.orig.dst;
  const dpat = e.dnatDone && l4(e.reply, 'src') !== l4(e.orig, 'dst');
  const src = side(nat.n ?? nat.j, snat, spat, e.reply.dst, l4(e.reply, 'dst'));
  const dst = side(nat.g ?? nat.j, dnat, dpat, e.reply.src, l4(e.reply, 'src'));
  if (nat.j) return src || dst;
  if (nat.n && nat.g) return src && dst;
  return nat.n ? src : dst;
}

export const conntrack: Tool = (argv, ctx): ToolResult => {
  const ct: Conntrack = ctx.netns.conntrack;
  const now = ctx.cluster.world.now;
  try {
    let command = '';
    let table = 'conntrack';
    let proto: string | undefined;
    let extended = false;
    let none = false;
    const filters: Filter[] = [];
    const given: string[] = [];
    /** --src-nat, --dst-nat, --any-nat and their optional address */
    const nat: Partial<Record<'n' | 'g' | 'j', { ip?: string; port?: number }>> = {};
    const setCommand = (c: string) => {
      if (command) throw param('Invalid commands combination');
      command = c;
    };
    for (let i = 0; i < argv.length; i++) {
      const a = argv[i];
      let c: string;
      let val: string | undefined;
      if (a.startsWith('--')) {
        const eq = a.indexOf('=');
        const name = a.slice(2, eq < 0 ? undefined : eq);
        const extra = proto ? (PROTO_OPTS[proto] ?? []) : [];
        if (extra.includes(name)) {
          c = name;
          val = eq < 0 ? argv[++i] : a.slice(eq + 1);
          if (val === undefined) throw param(`option \`${a}' requires an argument`);
        } else {
          const o = LONG[name];
          if (!o) throw param(`unknown option \`${a}'`);
          c = o[0];
          if (o[1]) {
            val = eq < 0 ? argv[++i] : a.slice(eq + 1);
            if (val === undefined) throw param(`option \`${a}' requires an argument`);
          }
        }
      } else if (a.startsWith('-') && a.length === 2) {
        c = a[1];
        if (!'LCFVhGDIUESsdrqpftuwmozngjcelb'.includes(c)) throw param(`unknown option \`${a}'`);
        if (SHORT_ARG.has(c)) {
          val = argv[++i];
          if (val === undefined) throw param(`option \`${a}' requires an argument`);
        }
      } else throw param(`unknown option \`${a}'`);
      switch (c) {
        case 'L':
        case 'C':
        case 'F': {
          setCommand(c);
          const next = argv[i + 1];
          if (next !== undefined && !next.startsWith('-')) {
            if (!['conntrack', 'expect', 'dying', 'unconfirmed'].includes(next))
              throw param(`unknown type \`${next}'`);
            table = next;
            i++;
          }
          break;
        }
        case 'h':
          return { stdout: USAGE, stderr: '', code: 0 };
        case 'V':
          return { stdout: `${PROG}\n`, stderr: '', code: 0 };
        case 'G':
        case 'D':
        case 'I':
        case 'U':
        case 'E':
        case 'S':
          throw new ToolFailure(
            2,
            `podwalk: conntrack: -${c} is not modelled (the emulated conntrack lists, counts and flushes)\n`,
          );
        case 's':
        case 'd':
        case 'r':
        case 'q': {
          const m = parseAddr(val!);
          const pick: Record<string, (e: CtEntryData) => string> = {
            s: (e) => e.orig.src,
            d: (e) => e.orig.dst,
            r: (e) => e.reply.src,
            q: (e) => e.reply.dst,
          };
          filters.push({ test: (e) => m(pick[c](e)) });
          given.push(c);
          break;
        }
        case 'p': {
          const p = val!.toLowerCase();
          const n = L4[p] ?? (/^\d+$/.test(p) && Number(p) <= 255 ? Number(p) : undefined);
          if (n === undefined) throw param(`\`${val}' unsupported protocol`);
          proto = Object.keys(L4).find((k) => L4[k] === n);
          filters.push({ test: (e) => e.orig.proto === n });
          given.push(c);
          break;
        }
        case 'f':
          if (val !== 'ipv4' && val !== 'ipv6') throw param(`\`${val}' unsupported protocol`);
          if (val === 'ipv6') none = true;
          given.push(c);
          break;
        case 'sport':
        case 'orig-port-src':
        case 'dport':
        case 'orig-port-dst':
        case 'reply-port-src':
        case 'reply-port-dst': {
          const port = (parseInt(val!, 10) || 0) & 0xffff;
          const pick = (e: CtEntryData): number =>
            c === 'sport' || c === 'orig-port-src'
              ? e.orig.sport
              : c === 'dport' || c === 'orig-port-dst'
                ? e.orig.dport
                : c === 'reply-port-src'
                  ? e.reply.sport
                  : e.reply.dport;
          filters.push({ test: (e) => pick(e) === port });
          given.push('p');
          break;
        }
        case 'state': {
          const s = val!.toUpperCase();
          if (!TCP_STATES.includes(s)) throw param(`unknown TCP state \`${val}'`);
          filters.push({ test: (e) => e.tcpState === s });
          break;
        }
        case 'u': {
          const bits = val!.split(',');
          for (const b of bits) if (!STATUS.includes(b)) throw param(`Bad parameter \`${b}'`);
          filters.push({
            test: (e) =>
              bits.every((b) => (b === 'ASSURED' ? e.assured : b === 'SEEN_REPLY' ? e.seenReply : false)),
          });
          given.push(c);
          break;
        }
        case 'm': {
          const [v, mk] = val!.split('/');
          const value = Number(v);
          const mask = mk === undefined ? 0xffffffff : Number(mk);
          filters.push({ test: (e) => (e.mark & mask) >>> 0 === value });
          given.push(c);
          break;
        }
        case 'w':
          if (Number(val) !== 0) none = true;
          given.push(c);
          break;
        case 'o':
          for (const o of val!.split(',')) {
            if (!['xml', 'extended', 'timestamp', 'id', 'ktimestamp', 'labels', 'userspace'].includes(o))
              throw param(`Bad parameter \`${o}'`);
            if (o !== 'extended')
              throw new ToolFailure(2, `podwalk: conntrack: -o ${o} is not modelled (only -o extended is)\n`);
          }
          extended = true;
          given.push(c);
          break;
        case 'n':
        case 'g':
        case 'j': {
          // an optional IP[:PORT]: the next word when it is no option
          const next = argv[i + 1];
          let ip: string | undefined;
          let port: number | undefined;
          if (next !== undefined && !next.startsWith('-') && !next.startsWith('!')) {
            i++;
            const [a, pt] = next.split(':');
            parseAddr(a);
            ip = a;
            if (pt !== undefined) port = (parseInt(pt, 10) || 0) & 0xffff;
          }
          nat[c] = { ip, port };
          given.push(c);
          break;
        }
        case 'mask-src':
          if (!given.includes('s')) throw param("Can't use --mask-src without --src");
          break;
        case 'mask-dst':
          if (!given.includes('d')) throw param("Can't use --mask-dst without --dst");
          break;
        default:
          given.push(c);
      }
    }
    if (!command) return { stdout: USAGE, stderr: '', code: 0 };
    ct.expire(now);
    if (command === 'C' || command === 'F') {
      const bad = given.find((g) => OPT_NAME[g]);
      if (bad) throw param(`Illegal option \`${OPT_NAME[bad]}' with this command`);
    }
    const entries = table === 'conntrack' ? ct.entries : [];
    if (command === 'C') return { stdout: `${entries.length}\n`, stderr: '', code: 0 };
    if (command === 'F') {
      // every entry expires at once: the table's public way to drop them all
      if (table === 'conntrack') ct.expire(Infinity);
      const what = table === 'expect' ? 'expectation' : 'connection tracking';
      return { stdout: '', stderr: `${PROG}: ${what} table has been emptied.\n`, code: 0 };
    }
    if (table === 'expect')
      return { stdout: '', stderr: `${PROG}: 0 expectations have been shown.\n`, code: 0 };
    if (nat.n || nat.g || nat.j) filters.push({ test: (e) => natFilter(e, nat) });
    const shown = none ? [] : entries.filter((e) => filters.every((f) => f.test(e)));
    const stdout = shown.map((e) => `${extended ? 'ipv4     2 ' : ''}${formatCtEntry(e, now)}\n`).join('');
    return { stdout, stderr: `${PROG}: ${shown.length} flow entries have been shown.\n`, code: 0 };
  } catch (e) {
    if (e instanceof ToolFailure) return { stdout: '', stderr: e.stderr, code: e.code };
    throw e;
  }
};
