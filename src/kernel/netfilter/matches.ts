/**
 * The match extensions podwalk models, one registry: each parses its options the way iptables
 * 1.8.9's extension does (libxt_tcp/udp, libipt_icmp, libxt_conntrack, state, comment, mark,
 * statistic, multiport, addrtype, recent, set, rpfilter), prints itself as iptables-save and `iptables -L` do,
 * and tests a packet the way the kernel's xt_* match does.
 */
import { intToIp4, ip4ToInt } from '../../wire/addr.ts';
import { IPSET_DIMENSION, ipsetHas } from '../ipset.ts';
import type { CtView, MatchExtension, OptionSpec, PacketView, PrintCtx } from './extension.ts';
import {
  fullRange,
  hex,
  netMask,
  parseAddress,
  parsePort,
  parsePortRange,
  quoteSave,
  RuleSyntaxError,
  strtoul0,
  strtouiFull,
} from './parse.ts';
import {
  ADDR_TYPES,
  CT_STATES,
  CT_STATUSES,
  type AddrtypeMatch,
  type CommentMatch,
  type ConntrackMatch,
  type CtState,
  type IcmpMatch,
  type Match,
  type MarkMatch,
  type MatchKind,
  type MultiportMatch,
  type Neg,
  type Net,
  type PortRange,
  type RecentMatch,
  type RpfilterMatch,
  type SetMatch,
  type StateMatch,
  type StatisticMatch,
  type TcpUdpMatch,
} from './types.ts';

const opt = (name: string, arg: boolean, more: Partial<OptionSpec> = {}): OptionSpec => ({
  name,
  arg,
  ...more,
});
const unmodelled = (name: string, arg = true): OptionSpec => opt(name, arg, { modelled: false });

/* ------------------------------------------------------------ shared */

/** `--ctstate`/`--state` lists: case-insensitive prefixes of the state names, as libxt_conntrack */
function parseStates(arg: string, allowed: readonly CtState[], what: 'ctstate' | 'state'): CtState[] {
  const bad = (rest: string) => new RuleSyntaxError(`Bad ${what} "${rest}"`);
  const found = new Set<CtState>();
  let rest = arg;
  for (;;) {
    const comma = rest.indexOf(',');
    const tok = comma < 0 ? rest : rest.slice(0, comma);
    if (!tok && comma < 0 && what === 'state')
      throw new RuleSyntaxError(
        '"--state" requires a list of states with no spaces, e.g. ESTABLISHED,RELATED',
      );
    const s = tok
      ? allowed.find((x) => x.slice(0, tok.length).toLowerCase() === tok.toLowerCase())
      : undefined;
    if (!s) throw bad(rest);
    found.add(s);
    if (comma < 0) break;
    rest = rest.slice(comma + 1);
  }
  return CT_STATES.filter((s) => found.has(s));
}

/** the states `-m state --state` knows */
const STATE_STATES: readonly CtState[] = ['INVALID', 'NEW', 'RELATED', 'ESTABLISHED', 'UNTRACKED'];

const inNet = (a: number, n: Net) => (a & netMask(n)) >>> 0 === n.net;
const neg = <T>(m: Neg<T> | undefined, ok: () => boolean) => !m || ok() !== m.neg;

/** xtables_ipaddr_to_numeric + xtables_ipmask_to_numeric: "a.b.c.d" for /32, else "/len" or "/dotted" */
function addrMask(n: Net): string {
  const mask = netMask(n);
  if (mask === 0xffffffff) return intToIp4(n.net);
  return `${intToIp4(n.net)}/${n.mask !== undefined ? intToIp4(n.mask) : n.len}`;
}

/** xtables_parse_mark_mask for XTTYPE_MARKMASK32: value[/mask], base 0 */
export function parseMarkMask(arg: string, ext: string, option: string): { value: number; mask: number } {
  const bad = () =>
    new RuleSyntaxError(`${ext}: bad integer value for option "--${option}", or out of range.\n`);
  const v = strtoul0(arg);
  if (!v || v.value > 0xffffffff) throw bad();
  let mask = 0xffffffff;
  let rest = v.rest;
  if (rest.startsWith('/')) {
    const m = strtoul0(rest.slice(1));
    if (!m || m.value > 0xffffffff) throw bad();
    mask = m.value;
    rest = m.rest;
  }
  if (rest !== '')
    throw new RuleSyntaxError(`${ext}: trailing garbage after value for option "--${option}".\n`);
  return { value: v.value, mask };
}

/** XTTYPE_UINT32 with a minimum */
export function parseUint32(arg: string, ext: string, option: string, min = 0): number {
  const n = strtouiFull(arg, 0xffffffff, min);
  if (n === undefined)
    throw new RuleSyntaxError(`${ext}: bad integer value for option "--${option}", or out of range.\n`);
  return n;
}

/* ------------------------------------------------------------ tcp / udp */

const fmtPorts = ([lo, hi]: PortRange) => (lo === hi ? String(lo) : `${lo}:${hi}`);

function tcpUdp(kind: 'tcp' | 'udp'): MatchExtension<TcpUdpMatch> {
  const options: Record<string, OptionSpec> = {
    'source-port': opt('source-port', true),
    sport: opt('source-port', true),
    'destination-port': opt('destination-port', true),
    dport: opt('destination-port', true),
  };
  if (kind === 'tcp')
    Object.assign(options, {
      syn: unmodelled('syn', false),
      'tcp-flags': unmodelled('tcp-flags'),
      'tcp-option': unmodelled('tcp-option'),
    });
  const port = (p: number, ctx: PrintCtx) =>
    (ctx.numeric ? undefined : ctx.serviceName?.(p, kind)) ?? String(p);
  /** print_ports: " spt:N", " spts:A:B", "!" after the colon when inverted */
  const ports = (name: string, p: Neg<PortRange> | undefined, ctx: PrintCtx) => {
    if (!p || (fullRange(p.v) && !p.neg)) return '';
    const [lo, hi] = p.v;
    const inv = p.neg ? '!' : '';
    return lo === hi
      ? ` ${name}:${inv}${port(lo, ctx)}`
      : ` ${name}s:${inv}${port(lo, ctx)}:${port(hi, ctx)}`;
  };
  return {
    name: kind,
    options,
    oldStyle: true,
    init: () => ({ kind }),
    parse(m, o, arg, negate, env) {
      const key = o === 'source-port' ? 'sport' : 'dport';
      if (m[key]) throw new RuleSyntaxError(`Only one \`--${o}' allowed`);
      m[key] = { v: parsePortRange(arg!, kind, env.services), neg: negate };
    },
    final(_m, _seen, rule) {
      if (!rule.proto || rule.proto.v !== (kind === 'tcp' ? 6 : 17) || rule.proto.neg)
        throw new RuleSyntaxError(`${kind.toUpperCase()} match requires '-p ${kind}'`);
    },
    save(m) {
      let s = '';
      if (m.sport && !fullRange(m.sport.v)) s += ` ${m.sport.neg ? '! ' : ''}--sport ${fmtPorts(m.sport.v)}`;
      if (m.dport && !fullRange(m.dport.v)) s += ` ${m.dport.neg ? '! ' : ''}--dport ${fmtPorts(m.dport.v)}`;
      return s;
    },
    print: (m, ctx) => ` ${kind}${ports('spt', m.sport, ctx)}${ports('dpt', m.dport, ctx)}`,
    test(m, p) {
      const s = m.sport;
      if (s && (p.sport !== undefined && p.sport >= s.v[0] && p.sport <= s.v[1]) === s.neg) return false;
      const d = m.dport;
      return !d || (p.dport !== undefined && p.dport >= d.v[0] && p.dport <= d.v[1]) !== d.neg;
    },
  };
}

/* ------------------------------------------------------------ icmp */

/** libxtables' icmp names: name, type, code range (aliases included, in its order) */
export const ICMP_NAMES: readonly (readonly [string, number, number, number])[] = [
  ['any', 0xff, 0, 0xff],
  ['echo-reply', 0, 0, 0xff],
  ['pong', 0, 0, 0xff],
  ['destination-unreachable', 3, 0, 0xff],
  ['network-unreachable', 3, 0, 0],
  ['host-unreachable', 3, 1, 1],
  ['protocol-unreachable', 3, 2, 2],
  ['port-unreachable', 3, 3, 3],
  ['fragmentation-needed', 3, 4, 4],
  ['source-route-failed', 3, 5, 5],
  ['network-unknown', 3, 6, 6],
  ['host-unknown', 3, 7, 7],
  ['network-prohibited', 3, 9, 9],
  ['host-prohibited', 3, 10, 10],
  ['TOS-network-unreachable', 3, 11, 11],
  ['TOS-host-unreachable', 3, 12, 12],
  ['communication-prohibited', 3, 13, 13],
  ['host-precedence-violation', 3, 14, 14],
  ['precedence-cutoff', 3, 15, 15],
  ['source-quench', 4, 0, 0xff],
  ['redirect', 5, 0, 0xff],
  ['network-redirect', 5, 0, 0],
  ['host-redirect', 5, 1, 1],
  ['TOS-network-redirect', 5, 2, 2],
  ['TOS-host-redirect', 5, 3, 3],
  ['echo-request', 8, 0, 0xff],
  ['ping', 8, 0, 0xff],
  ['router-advertisement', 9, 0, 0xff],
  ['router-solicitation', 10, 0, 0xff],
  ['time-exceeded', 11, 0, 0xff],
  ['ttl-exceeded', 11, 0, 0xff],
  ['ttl-zero-during-transit', 11, 0, 0],
  ['ttl-zero-during-reassembly', 11, 1, 1],
  ['parameter-problem', 12, 0, 0xff],
  ['ip-header-bad', 12, 0, 0],
  ['required-option-missing', 12, 1, 1],
  ['timestamp-request', 13, 0, 0xff],
  ['timestamp-reply', 14, 0, 0xff],
  ['address-mask-request', 17, 0, 0xff],
  ['address-mask-reply', 18, 0, 0xff],
];

const icmp: MatchExtension<IcmpMatch> = {
  name: 'icmp',
  options: { 'icmp-type': opt('icmp-type', true, { invert: true, mandatory: true }) },
  init: () => ({ kind: 'icmp', type: 0xff, code: [0, 0xff], neg: false }),
  parse(m, _o, arg, negate) {
    const a = arg!;
    const hits = ICMP_NAMES.filter(([n]) => n.slice(0, a.length).toLowerCase() === a.toLowerCase());
    m.neg = negate;
    if (hits.length > 1)
      throw new RuleSyntaxError(`Ambiguous ICMP type \`${a}': \`${hits[0][0]}' or \`${hits[1][0]}'?`);
    if (hits.length === 1) {
      [, m.type, m.code[0], m.code[1]] = hits[0];
      return;
    }
    const [t, c] = a.split('/');
    const type = strtouiFull(t, 255);
    if (type === undefined) throw new RuleSyntaxError(`Unknown ICMP type \`${a}'`);
    m.type = type;
    if (c === undefined) m.code = [0, 0xff];
    else {
      const code = strtouiFull(c, 255);
      if (code === undefined) throw new RuleSyntaxError(`Unknown ICMP code \`${a}'`);
      m.code = [code, code];
    }
  },
  save(m) {
    const inv = m.neg ? ' !' : '';
    if (m.type === 0xff) return `${inv} --icmp-type any`;
    return `${inv} --icmp-type ${m.type}${m.code[0] !== 0 || m.code[1] !== 0xff ? `/${m.code[0]}` : ''}`;
  },
  print(m, ctx) {
    if (!ctx.numeric) {
      const n = ICMP_NAMES.find(([, t, lo, hi]) => t === m.type && lo === m.code[0] && hi === m.code[1]);
      if (n) return ` icmp ${m.neg ? '!' : ''}${n[0]}`;
    }
    const codes =
      m.code[0] === m.code[1]
        ? ` code ${m.code[0]}`
        : m.code[0] !== 0 || m.code[1] !== 0xff
          ? ` codes ${m.code[0]}-${m.code[1]}`
          : '';
    return ` icmp${m.neg ? ' !' : ''}type ${m.type}${codes}`;
  },
  test: (m, p) =>
    (p.icmpType !== undefined &&
      (m.type === 0xff ||
        (p.icmpType === m.type && p.icmpCode! >= m.code[0] && p.icmpCode! <= m.code[1]))) !== m.neg,
};

/* ------------------------------------------------------------ conntrack / state */

const CT_ADDR = ['origsrc', 'origdst', 'replsrc', 'repldst'] as const;

const conntrack: MatchExtension<ConntrackMatch> = {
  name: 'conntrack',
  conntrack: true,
  options: {
    ctstate: opt('ctstate', true, { invert: true }),
    ctproto: unmodelled('ctproto'),
    ctorigsrc: opt('ctorigsrc', true, { invert: true }),
    ctorigdst: opt('ctorigdst', true, { invert: true }),
    ctreplsrc: opt('ctreplsrc', true, { invert: true }),
    ctrepldst: opt('ctrepldst', true, { invert: true }),
    ctstatus: opt('ctstatus', true, { invert: true }),
    ctexpire: unmodelled('ctexpire'),
    ctorigsrcport: unmodelled('ctorigsrcport'),
    ctorigdstport: unmodelled('ctorigdstport'),
    ctreplsrcport: unmodelled('ctreplsrcport'),
    ctrepldstport: unmodelled('ctrepldstport'),
    ctdir: opt('ctdir', true),
  },
  init: () => ({ kind: 'conntrack' }),
  parse(m, o, arg, negate) {
    const a = arg!;
    if (o === 'ctstate') m.state = { v: parseStates(a, CT_STATES, 'ctstate'), neg: negate };
    else if (o === 'ctstatus') {
      const found = new Set<string>();
      for (const tok of a.split(',')) {
        const s = CT_STATUSES.find((x) => tok && x.slice(0, tok.length).toLowerCase() === tok.toLowerCase());
        if (!s) throw new RuleSyntaxError(`Bad ctstatus "${tok}"`);
        found.add(s);
      }
      m.status = { v: CT_STATUSES.filter((s) => s !== 'NONE' && found.has(s)), neg: negate };
    } else if (o === 'ctdir') {
      const d = a.toUpperCase();
      if (d !== 'ORIGINAL' && d !== 'REPLY') throw new RuleSyntaxError(`Unknown --ctdir ${a}`);
      m.dir = d;
    } else m[o.slice(2) as (typeof CT_ADDR)[number]] = { v: parseAddress(a), neg: negate };
  },
  final(_m, seen) {
    if (seen.size === 0) throw new RuleSyntaxError('conntrack: At least one option is required');
  },
  save: (m) => ctDump(m, '--', { numeric: true }),
  print: (m, ctx) => ctDump(m, '', ctx),
  test(m, p) {
    const ct = p.ct;
    const e = ct?.entry;
    if (
      m.state &&
      (m.state.v.includes(p.ctstate) ||
        (!!e && ((e.snat && m.state.v.includes('SNAT')) || (e.dnat && m.state.v.includes('DNAT'))))) ===
        m.state.neg
    )
      return false;
    for (const k of CT_ADDR) {
      const a = m[k];
      if (a && (!!e && inNet(ctAddr(e, k), a.v)) === a.neg) return false;
    }
    if (m.status) {
      const any =
        m.status.v.length === 0
          ? !!e && !e.seenReply && !e.assured && !e.confirmed
          : m.status.v.some((s) => ctStatus(e, s));
      if (any === m.status.neg) return false;
    }
    return m.dir === undefined || (!!ct && (ct.dir === 'original' ? 'ORIGINAL' : 'REPLY') === m.dir);
  },
};

/** a --ctstatus bit of the entry */
function ctStatus(e: CtView['entry'] | undefined, s: string): boolean {
  if (!e) return false;
  return s === 'SEEN_REPLY'
    ? e.seenReply
    : s === 'ASSURED'
      ? e.assured
      : s === 'CONFIRMED'
        ? e.confirmed
        : false;
}

/** the address a --ctorigsrc/--ctorigdst/--ctreplsrc/--ctrepldst option compares */
function ctAddr(e: CtView['entry'], k: (typeof CT_ADDR)[number]): number {
  return ip4ToInt(
    k === 'origsrc' ? e.orig.src : k === 'origdst' ? e.orig.dst : k === 'replsrc' ? e.reply.src : e.reply.dst,
  );
}

/** conntrack_dump of libxt_conntrack: the options in the kernel struct's order */
function ctDump(m: ConntrackMatch, prefix: string, ctx: PrintCtx): string {
  let s = '';
  if (m.state) s += `${m.state.neg ? ' !' : ''} ${prefix}ctstate ${m.state.v.join(',')}`;
  for (const k of CT_ADDR) {
    const a = m[k];
    if (!a) continue;
    const text = !ctx.numeric && a.v.net === 0 ? 'anywhere' : addrMask(a.v);
    s += `${a.neg ? ' !' : ''} ${prefix}ct${k} ${text}`;
  }
  if (m.status)
    s += `${m.status.neg ? ' !' : ''} ${prefix}ctstatus ${m.status.v.length ? m.status.v.join(',') : 'NONE'}`;
  if (m.dir) s += ` ${prefix}ctdir ${m.dir}`;
  return s;
}

const state: MatchExtension<StateMatch> = {
  name: 'state',
  conntrack: true,
  options: { state: opt('state', true, { invert: true, mandatory: true }) },
  init: () => ({ kind: 'state', state: { v: [], neg: false } }),
  parse(m, _o, arg, negate) {
    m.state = { v: parseStates(arg!, STATE_STATES, 'state'), neg: negate };
  },
  save: (m) => `${m.state.neg ? ' !' : ''} --state ${m.state.v.join(',')}`,
  print: (m) => `${m.state.neg ? ' !' : ''} state ${m.state.v.join(',')}`,
  test: (m, p) => m.state.v.includes(p.ctstate) !== m.state.neg,
};

/* ------------------------------------------------------------ comment, mark */

const comment: MatchExtension<CommentMatch> = {
  name: 'comment',
  options: { comment: opt('comment', true, { mandatory: true }) },
  init: () => ({ kind: 'comment', text: '' }),
  parse(m, _o, arg) {
    m.text = arg!;
  },
  save: (m) => ` --comment ${quoteSave(m.text)}`,
  print: (m) => ` /* ${m.text} */`,
  test: () => true,
};

const mark: MatchExtension<MarkMatch> = {
  name: 'mark',
  options: { mark: opt('mark', true, { invert: true, mandatory: true }) },
  init: () => ({ kind: 'mark', value: 0, mask: 0xffffffff, neg: false }),
  parse(m, _o, arg, negate) {
    Object.assign(m, parseMarkMask(arg!, 'mark', 'mark'), { neg: negate });
  },
  save: (m) => ` ${m.neg ? '! ' : ''}--mark ${hex(m.value)}${m.mask === 0xffffffff ? '' : `/${hex(m.mask)}`}`,
  print: (m) =>
    ` mark match ${m.neg ? '! ' : ''}${hex(m.value)}${m.mask === 0xffffffff ? '' : `/${hex(m.mask)}`}`,
  test: (m, p) => ((p.mark & m.mask) >>> 0 === m.value) !== m.neg,
};

/* ------------------------------------------------------------ statistic */

/** printf("%.11f", u / 2^31), exactly (round half to even on the exact binary value) */
export function probabilityText(u: number): string {
  // u / 2^31 = u * 5^31 / 10^31: an exact decimal with 31 places
  const exact = BigInt(u) * 5n ** 31n;
  const unit = 10n ** 20n;
  let q = exact / unit;
  const r = exact % unit;
  if (r * 2n > unit || (r * 2n === unit && q % 2n === 1n)) q += 1n;
  const s = q.toString().padStart(12, '0');
  return `${s.slice(0, -11)}.${s.slice(-11)}`;
}

const statistic: MatchExtension<StatisticMatch> = {
  name: 'statistic',
  options: {
    mode: opt('mode', true, { mandatory: true }),
    probability: opt('probability', true, { invert: true, also: ['mode'] }),
    every: opt('every', true, { invert: true, also: ['mode', 'packet'] }),
    packet: opt('packet', true, { also: ['mode', 'every'] }),
  },
  init: () => ({
    kind: 'statistic',
    mode: 'random',
    neg: false,
    probability: 0,
    every: 0,
    packet: 0,
    count: 0,
  }),
  parse(m, o, arg, negate) {
    if (negate) m.neg = true;
    const a = arg!;
    if (o === 'mode') {
      if (a !== 'random' && a !== 'nth') throw new RuleSyntaxError(`Bad mode "${a}"`);
      m.mode = a;
    } else if (o === 'probability') {
      const p = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(a) ? Number(a) : NaN;
      if (!(p >= 0 && p <= 1))
        throw new RuleSyntaxError(
          'statistic: bad value for option "--probability", or out of range (0-1).\n',
        );
      m.probability = Math.round(0x80000000 * p);
    } else if (o === 'every') m.every = parseUint32(a, 'statistic', o, 1) - 1;
    else m.packet = parseUint32(a, 'statistic', o);
  },
  final(m, seen) {
    if (m.mode === 'random' && !seen.has('probability'))
      throw new RuleSyntaxError('--probability must be specified when using random mode');
    if (m.mode === 'nth' && !seen.has('every') && !seen.has('packet'))
      throw new RuleSyntaxError('--every and --packet must be specified when using nth mode');
    if (m.packet > m.every) throw new RuleSyntaxError('the --packet p must be 0 <= p <= n-1');
    m.count = m.every - m.packet;
  },
  save: (m) => statisticText(m, '--'),
  print: (m) => ` statistic${statisticText(m, '')}`,
  test(m, _p, env) {
    if (m.mode === 'random') return (env.random('statistic') & 0x7fffffff) < m.probability !== m.neg;
    env.stateful();
    m.count = m.count === m.every ? 0 : m.count + 1;
    return (m.count === 0) !== m.neg;
  },
};

function statisticText(m: StatisticMatch, prefix: string): string {
  const inv = m.neg ? ' !' : '';
  if (m.mode === 'random')
    return ` ${prefix}mode random${inv} ${prefix}probability ${probabilityText(m.probability)}`;
  const packet = m.packet || prefix ? ` ${prefix}packet ${m.packet}` : '';
  return ` ${prefix}mode nth${inv} ${prefix}every ${m.every + 1}${packet}`;
}

/* ------------------------------------------------------------ multiport */

const MULTIPORT_FLAG = { 'source-ports': 'src', 'destination-ports': 'dst', ports: 'any' } as const;

const multiport: MatchExtension<MultiportMatch> = {
  name: 'multiport',
  options: {
    'source-ports': opt('source-ports', true, { invert: true, excl: ['destination-ports', 'ports'] }),
    sports: opt('source-ports', true, { invert: true, excl: ['destination-ports', 'ports'] }),
    'destination-ports': opt('destination-ports', true, { invert: true, excl: ['source-ports', 'ports'] }),
    dports: opt('destination-ports', true, { invert: true, excl: ['source-ports', 'ports'] }),
    ports: opt('ports', true, { invert: true, excl: ['source-ports', 'destination-ports'] }),
  },
  init: () => ({ kind: 'multiport', flags: 'dst', ports: [], neg: false }),
  parse(m, o, arg, negate, env) {
    const p = env.rule.proto;
    if (p?.neg) throw new RuleSyntaxError('multiport only works with TCP, UDP, UDPLITE, SCTP and DCCP');
    if (!p || p.v === 0)
      throw new RuleSyntaxError("multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'");
    if (p.v !== 6 && p.v !== 17) {
      if ([33, 132, 136].includes(p.v))
        throw new RuleSyntaxError('podwalk models multiport for tcp and udp only');
      throw new RuleSyntaxError('multiport only works with TCP, UDP, UDPLITE, SCTP and DCCP');
    }
    const proto = p.v === 6 ? 'tcp' : 'udp';
    const ports: PortRange[] = [];
    let count = 0;
    for (const item of arg!.split(',')) {
      const colon = item.indexOf(':');
      const lo = parsePort(colon < 0 ? item : item.slice(0, colon), proto, env.services);
      const hi = colon < 0 ? lo : parsePort(item.slice(colon + 1), proto, env.services);
      if (colon >= 0 && lo >= hi) throw new RuleSyntaxError('invalid portrange specified');
      count += colon < 0 ? 1 : 2;
      if (count > 15) throw new RuleSyntaxError('too many ports specified');
      ports.push([lo, hi]);
    }
    m.ports = ports;
    m.flags = MULTIPORT_FLAG[o as keyof typeof MULTIPORT_FLAG];
    m.neg = negate;
  },
  save(m) {
    const name = m.flags === 'src' ? 'sports' : m.flags === 'dst' ? 'dports' : 'ports';
    return `${m.neg ? ' !' : ''} --${name} ${m.ports.map(fmtPorts).join(',')}`;
  },
  print(m, ctx) {
    const name = m.flags === 'src' ? 'sports' : m.flags === 'dst' ? 'dports' : 'ports';
    const proto = ctx.proto === 17 ? 'udp' : 'tcp';
    const port = (n: number) => (ctx.numeric ? undefined : ctx.serviceName?.(n, proto)) ?? String(n);
    const list = m.ports.map(([lo, hi]) => (lo === hi ? port(lo) : `${port(lo)}:${port(hi)}`)).join(',');
    return ` multiport ${name} ${m.neg ? ' !' : ''}${list}`;
  },
  test(m, p) {
    const ok =
      m.flags === 'src'
        ? inPorts(m.ports, p.sport)
        : m.flags === 'dst'
          ? inPorts(m.ports, p.dport)
          : inPorts(m.ports, p.sport) || inPorts(m.ports, p.dport);
    return ok !== m.neg;
  },
};

function inPorts(ports: readonly PortRange[], x: number | undefined): boolean {
  return x !== undefined && ports.some(([lo, hi]) => x >= lo && x <= hi);
}

/* ------------------------------------------------------------ addrtype */

function parseAddrTypes(arg: string): AddrtypeMatch['src'] & object {
  const found = new Set<string>();
  for (const tok of arg.split(',')) {
    const t = ADDR_TYPES.find((x) => tok && x.slice(0, tok.length).toLowerCase() === tok.toLowerCase());
    if (!t) throw new RuleSyntaxError(`addrtype: bad type "${tok}"`);
    found.add(t);
  }
  return { v: ADDR_TYPES.filter((t) => found.has(t)), neg: false };
}

const addrtype: MatchExtension<AddrtypeMatch> = {
  name: 'addrtype',
  options: {
    'src-type': opt('src-type', true, { invert: true }),
    'dst-type': opt('dst-type', true, { invert: true }),
    'limit-iface-in': opt('limit-iface-in', false, { excl: ['limit-iface-out'] }),
    'limit-iface-out': opt('limit-iface-out', false, { excl: ['limit-iface-in'] }),
  },
  init: () => ({ kind: 'addrtype', limitIn: false, limitOut: false }),
  parse(m, o, arg, negate) {
    if (o === 'limit-iface-in') m.limitIn = true;
    else if (o === 'limit-iface-out') m.limitOut = true;
    else m[o === 'src-type' ? 'src' : 'dst'] = { v: parseAddrTypes(arg!).v, neg: negate };
  },
  final(m) {
    if (!m.src && !m.dst) throw new RuleSyntaxError('addrtype: you must specify --src-type or --dst-type');
  },
  save(m) {
    let s = '';
    if (m.src) s += `${m.src.neg ? ' !' : ''} --src-type ${m.src.v.join(',')}`;
    if (m.dst) s += `${m.dst.neg ? ' !' : ''} --dst-type ${m.dst.v.join(',')}`;
    if (m.limitIn) s += ' --limit-iface-in';
    if (m.limitOut) s += ' --limit-iface-out';
    return s;
  },
  print(m) {
    let s = ' ADDRTYPE match';
    if (m.src) s += ` src-type ${m.src.neg ? '!' : ''}${m.src.v.join(',')}`;
    if (m.dst) s += ` dst-type ${m.dst.neg ? '!' : ''}${m.dst.v.join(',')}`;
    if (m.limitIn) s += ' limit-in';
    if (m.limitOut) s += ' limit-out';
    return s;
  },
  test(m, p, env) {
    const dev = m.limitIn ? p.in : m.limitOut ? p.out : undefined;
    return (
      neg(m.src, () => m.src!.v.includes(env.addrType(p.src, dev))) &&
      neg(m.dst, () => m.dst!.v.includes(env.addrType(p.dst, dev)))
    );
  },
};

/* ------------------------------------------------------------ recent */

/** ip_pkt_list_tot: stamps kept per address */
const RECENT_STAMPS = 20;

const recent: MatchExtension<RecentMatch> = {
  name: 'recent',
  options: {
    set: opt('set', false, { invert: true, excl: ['rcheck', 'update', 'remove'] }),
    rcheck: opt('rcheck', false, { invert: true, excl: ['set', 'update', 'remove'] }),
    update: opt('update', false, { invert: true, excl: ['set', 'rcheck', 'remove'] }),
    remove: opt('remove', false, { invert: true, excl: ['set', 'rcheck', 'update'] }),
    seconds: opt('seconds', true),
    reap: opt('reap', false, { also: ['seconds'] }),
    hitcount: opt('hitcount', true),
    rttl: unmodelled('rttl', false),
    name: opt('name', true),
    rsource: opt('rsource', false),
    rdest: opt('rdest', false),
    mask: opt('mask', true),
  },
  init: () => ({
    kind: 'recent',
    command: 'set',
    neg: false,
    name: 'DEFAULT',
    seconds: 0,
    reap: false,
    hitcount: 0,
    side: 'source',
    mask: 0xffffffff,
  }),
  parse(m, o, arg, negate) {
    switch (o) {
      case 'set':
      case 'rcheck':
      case 'update':
      case 'remove':
        m.command = o;
        m.neg = negate;
        return;
      case 'seconds':
        m.seconds = parseUint32(arg!, 'recent', o, 1);
        return;
      case 'hitcount':
        m.hitcount = parseUint32(arg!, 'recent', o);
        return;
      case 'reap':
        m.reap = true;
        return;
      case 'name':
        m.name = arg!;
        return;
      case 'rsource':
      case 'rdest':
        m.side = o === 'rsource' ? 'source' : 'dest';
        return;
      case 'mask': {
        const n = parseAddress(arg!);
        m.mask = n.net;
        return;
      }
    }
  },
  final(_m, seen) {
    if (!['set', 'rcheck', 'update', 'remove'].some((c) => seen.has(c)))
      throw new RuleSyntaxError(
        "recent: you must specify one of `--set', `--rcheck' `--update' or `--remove'",
      );
  },
  save(m) {
    let s = `${m.neg ? ' !' : ''} --${m.command}`;
    if (m.seconds) s += ` --seconds ${m.seconds}`;
    if (m.reap) s += ' --reap';
    if (m.hitcount) s += ` --hitcount ${m.hitcount}`;
    return `${s} --name ${m.name} --mask ${intToIp4(m.mask)} --${m.side === 'source' ? 'rsource' : 'rdest'}`;
  },
  print(m) {
    const cmd = { set: 'SET', rcheck: 'CHECK', update: 'UPDATE', remove: 'REMOVE' }[m.command];
    let s = `${m.neg ? ' !' : ''} recent: ${cmd}`;
    if (m.seconds) s += ` seconds: ${m.seconds}`;
    if (m.reap) s += ' reap';
    if (m.hitcount) s += ` hit_count: ${m.hitcount}`;
    return `${s} name: ${m.name} side: ${m.side} mask: ${intToIp4(m.mask)}`;
  },
  test(m, p, env) {
    const addr = ((m.side === 'source' ? p.src : p.dst) & m.mask) >>> 0;
    let list = env.recent.get(m.name);
    if (!list) {
      list = [];
      env.recent.set(m.name, list);
    }
    let ret = m.neg;
    const i = list.findIndex((e) => e.addr === addr);
    const stamp = (e: { stamps: number[]; ttl: number }) => {
      e.stamps.push(env.now);
      if (e.stamps.length > RECENT_STAMPS) e.stamps.shift();
      e.ttl = p.ttl;
    };
    if (i < 0) {
      if (m.command !== 'set') return ret;
      const e = { addr, ttl: p.ttl, stamps: [] as number[] };
      stamp(e);
      list.push(e);
      return !ret;
    }
    const e = list[i];
    if (m.command === 'set') ret = !ret;
    else if (m.command === 'remove') {
      list.splice(i, 1);
      return !ret;
    } else {
      const since = env.now - m.seconds * 1e6;
      let hits = 0;
      for (const s of e.stamps) {
        if (m.seconds && s < since) continue;
        if (!m.hitcount || ++hits >= m.hitcount) {
          ret = !ret;
          break;
        }
      }
      if (m.reap) e.stamps = e.stamps.filter((s) => s >= since);
    }
    if (m.command === 'set' || (m.command === 'update' && ret)) stamp(e);
    return ret;
  },
};

/* ------------------------------------------------------------ set */

/** IPSET_DIM_MAX */
const SET_DIM_MAX = 6;

/** libxt_set revision 4: `--match-set NAME src|dst[,…]`, the set looked up by name while parsing */
const set: MatchExtension<SetMatch> = {
  name: 'set',
  options: {
    'match-set': opt('match-set', true, { invert: true }),
    set: unmodelled('set'),
    'return-nomatch': unmodelled('return-nomatch', false),
    'update-counters': unmodelled('update-counters', false),
    'update-subcounters': unmodelled('update-subcounters', false),
    'packets-eq': unmodelled('packets-eq'),
    'packets-lt': unmodelled('packets-lt'),
    'packets-gt': unmodelled('packets-gt'),
    'bytes-eq': unmodelled('bytes-eq'),
    'bytes-lt': unmodelled('bytes-lt'),
    'bytes-gt': unmodelled('bytes-gt'),
  },
  init: () => ({ kind: 'set', name: '', flags: [], neg: false }),
  parse(m, _o, arg, negate, env) {
    const dirs = env.nextArg?.();
    if (dirs === undefined || dirs[0] === '-' || dirs[0] === '!')
      throw new RuleSyntaxError('--match-set requires two args.');
    if (arg!.length > 31) throw new RuleSyntaxError(`setname \`${arg}' too long, max 31 characters.`);
    if (env.ipset && !env.ipset(arg!)) throw new RuleSyntaxError(`Set ${arg} doesn't exist.\n`);
    const flags: ('src' | 'dst')[] = [];
    for (const d of dirs.split(',')) {
      if (flags.length === SET_DIM_MAX)
        throw new RuleSyntaxError(`Can't be more src/dst options than ${SET_DIM_MAX}.`);
      // (libxt_set's message, its typo included)
      if (d !== 'src' && d !== 'dst')
        throw new RuleSyntaxError("You must spefify (the comma separated list of) 'src' or 'dst'.");
      flags.push(d);
    }
    Object.assign(m, { name: arg!, flags, neg: negate });
  },
  final(_m, seen) {
    if (!seen.has('match-set'))
      throw new RuleSyntaxError("You must specify `--match-set' with proper arguments");
  },
  save: (m) => `${m.neg ? ' !' : ''} --match-set ${m.name} ${m.flags.join(',')}`,
  print: (m) => ` ${m.neg ? '! ' : ''}match-set ${m.name} ${m.flags.join(',')}`,
  /** set_match_v4 → ip_set_test: a set of more dimensions than the rule gives never matches */
  test(m, p, env) {
    const s = env.ipset(m.name);
    if (!s || m.flags.length < IPSET_DIMENSION[s.type]) return m.neg;
    const ip = m.flags[0] === 'src' ? p.src : p.dst;
    let proto = 0;
    let port = 0;
    if (s.type === 'hash:ip,port') {
      // ip_set_get_ip4_port: tcp/udp ports, ICMP type and code, other protocols port 0
      proto = p.proto;
      if (p.icmpType !== undefined) port = (p.icmpType << 8) | (p.icmpCode ?? 0);
      else port = (m.flags[1] === 'src' ? p.sport : p.dport) ?? 0;
    }
    return ipsetHas(s, { ip, cidr: 32, proto, port }) !== m.neg;
  },
};

/* ------------------------------------------------------------ rpfilter */

/** libxt_rpfilter's flags in the order it prints them */
const RPF_FLAGS = [
  ['loose', 'loose'],
  ['validmark', 'validmark'],
  ['accept-local', 'acceptLocal'],
  ['invert', 'invert'],
] as const;

/** ipv4_is_lbcast, ipv4_is_local_multicast (224.0.0.0/24) */
const isLbcast = (a: number) => a === 0xffffffff;
const isLocalMulticast = (a: number) => a >>> 8 === 0xe00000;

/**
 * xt_rpfilter (IPv4): a reverse route lookup of the source (rpfilter_mt): a packet in on the
 * loopback device passes, as does a DHCP-like 0.0.0.0 source to a broadcast or local multicast
 * address; otherwise the route to the source must be unicast (local only with --accept-local) and
 * leave by the ingress device (any device with --loose). --invert matches the failures.
 */
const rpfilter: MatchExtension<RpfilterMatch> = {
  name: 'rpfilter',
  options: {
    loose: opt('loose', false),
    validmark: opt('validmark', false),
    'accept-local': opt('accept-local', false),
    invert: opt('invert', false),
  },
  init: () => ({ kind: 'rpfilter', loose: false, validmark: false, acceptLocal: false, invert: false }),
  parse(m, o) {
    const f = RPF_FLAGS.find(([name]) => name === o);
    if (f) m[f[1]] = true;
  },
  save: (m) =>
    RPF_FLAGS.filter(([, k]) => m[k])
      .map(([name]) => ` --${name}`)
      .join(''),
  print: (m) =>
    ' rpfilter' +
    RPF_FLAGS.filter(([, k]) => m[k])
      .map(([name]) => ` ${name}`)
      .join(''),
  test(m, p, env) {
    if (p.in === 'lo') return !m.invert;
    if (p.src === 0 && (isLbcast(p.dst) || isLocalMulticast(p.dst))) return !m.invert;
    return env.rpfilter(p.src, p.in ?? '', m.loose, m.acceptLocal) !== m.invert;
  },
};

/* ------------------------------------------------------------ the registry */

export const MATCHES: { readonly [K in MatchKind]: MatchExtension<Match & { kind: K }> } = {
  tcp: tcpUdp('tcp') as MatchExtension<TcpUdpMatch & { kind: 'tcp' }>,
  udp: tcpUdp('udp') as MatchExtension<TcpUdpMatch & { kind: 'udp' }>,
  icmp,
  conntrack,
  state,
  comment,
  mark,
  statistic,
  multiport,
  addrtype,
  recent,
  set,
  rpfilter,
};

/** the extension of a match record */
export function matchExt(m: Match): MatchExtension<Match> {
  return MATCHES[m.kind] as unknown as MatchExtension<Match>;
}

/** every match extension iptables 1.8.9 ships (libxt_*, libipt_*): `-m` of one podwalk does not model is "not modelled", of anything else "Couldn't load" */
export const IPTABLES_MATCHES = (
  'ah icmp realm ttl addrtype bpf cgroup cluster comment connbytes connlabel connlimit connmark ' +
  'conntrack cpu dccp devgroup dscp ecn esp hashlimit helper ipcomp iprange ipvs length limit mac ' +
  'mark multiport nfacct osf owner physdev pkttype policy quota rateest recent rpfilter sctp set ' +
  'socket state statistic string tcp tcpmss time tos u32 udp'
).split(' ');

export function isMatchKind(name: string): name is MatchKind {
  return Object.prototype.hasOwnProperty.call(MATCHES, name);
}

export type { PacketView };
