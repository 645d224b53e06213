/**
 * A compiler for the pcap-filter language (libpcap 1.10.3), for the two link types podwalk captures:
 * Ethernet (LINKTYPE_ETHERNET) and raw IPv4 (LINKTYPE_RAW, the `tunl0` IPinIP device).
 *
 * It follows libpcap's grammar.y and scanner.l token by token (keywords are case-sensitive, numbers
 * may be hex `0x1f` or octal `010`, `host 10.0.0.1 or 10.0.0.2` inherits the qualifiers of the
 * previous primitive, `and` and `or` have the same precedence and associate to the left) and
 * gencode.c primitive by primitive, so that a filter selects exactly the packets libpcap selects:
 *
 * - only the outer headers are looked at (`host 10.244.1.5` does not match a VXLAN packet whose
 *   inner address it is, nor an IPinIP packet on eth0);
 * - `host`/`net` match IPv4 source/destination and the ARP (and RARP) sender/target protocol
 *   addresses; `port`/`portrange` match TCP, UDP and SCTP over IPv4 only in a packet whose fragment
 *   offset is 0 (so the first fragment of a datagram matches, later ones do not), or over IPv6;
 * - `tcp`, `udp`, `icmp` compare the IPv4 protocol field, so every fragment of a UDP datagram is `udp`.
 *
 * A filter compiles into a formula over comparisons of packet fields (each as libpcap's BPF code
 * loads it: offset, size, mask), evaluated with short-circuit as the BPF program runs, a load past
 * the end of the packet rejecting it. libpcap's optimizer reports "expression rejects all packets"
 * for a filter that cannot match; podwalk reports it when the formula is unsatisfiable, knowing
 * what the optimizer knows: the same comparison has the same result, and one field cannot equal
 * two different constants.
 *
 * Errors carry libpcap's message (tcpdump prints `tcpdump: ` before it). Constructs outside the
 * subset podwalk implements (arithmetic `tcp[13] & 2 != 0`, vlan, mpls, 802.11, ATM, …) still
 * parse as libpcap parses them, and then fail with a message that says podwalk does not support them.
 */
import { services, servicePort } from './services.ts';
import { getprotobyname } from '../wire/protocols.ts';

export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;

export class FilterError extends Error {
  override name = 'FilterError';
  /** a valid libpcap construct that podwalk's compiler does not implement (not a user error) */
  constructor(
    message: string,
    readonly notEmulated = false,
  ) {
    super(message);
  }
}

/* ------------------------------------------------------------------ formulas */

type Base = 'link' | 'pl' | 'tr' | 'tr6' | 'len';

export interface Atom {
  base: Base;
  off: number;
  size: 1 | 2 | 4;
  /** AND mask applied to the loaded value (0xffffffff: none) */
  mask: number;
  op: 'eq' | 'gt' | 'ge' | 'set';
  k: number;
}

export type Formula =
  | { t: 'true' }
  | { t: 'false' }
  | { t: 'atom'; a: Atom }
  | { t: 'and' | 'or'; l: Formula; r: Formula }
  | { t: 'not'; e: Formula };

const TRUE: Formula = { t: 'true' };
const FALSE: Formula = { t: 'false' };
const and = (l: Formula, r: Formula): Formula => ({ t: 'and', l, r });
const or = (l: Formula, r: Formula): Formula => ({ t: 'or', l, r });
const not = (e: Formula): Formula => ({ t: 'not', e });

function atom(
  base: Base,
  off: number,
  size: 1 | 2 | 4,
  k: number,
  op: Atom['op'] = 'eq',
  mask = 0xffffffff,
): Formula {
  return { t: 'atom', a: { base, off, size, mask: mask >>> 0, op, k: k >>> 0 } };
}

/** the value a comparison looks at, as libpcap's optimizer numbers values */
function valueKey(a: Atom): string {
  return `${a.base}@${a.off}:${a.size}&${a.mask}`;
}

function atomKey(a: Atom): string {
  return `${valueKey(a)} ${a.op} ${a.k}`;
}

/* ------------------------------------------------------------------ evaluation */

class Reject extends Error {}

export interface CompiledFilter {
  readonly expression: string;
  readonly linktype: number;
  /** the formula (for tests and debugging) */
  readonly formula: Formula;
  /** `wireLength` defaults to the captured length (podwalk captures whole frames) */
  matches(packet: Uint8Array, wireLength?: number): boolean;
}

function load(a: Atom, p: Uint8Array, linkpl: number, wireLen: number): number {
  if (a.base === 'len') return wireLen;
  let base = 0;
  if (a.base === 'pl') base = linkpl;
  else if (a.base === 'tr') {
    if (linkpl >= p.length) throw new Reject();
    base = linkpl + (p[linkpl] & 0x0f) * 4;
  } else if (a.base === 'tr6') base = linkpl + 40;
  const o = base + a.off;
  if (o + a.size > p.length) throw new Reject();
  let v: number;
  if (a.size === 1) v = p[o];
  else if (a.size === 2) v = (p[o] << 8) | p[o + 1];
  else v = ((p[o] << 24) | (p[o + 1] << 16) | (p[o + 2] << 8) | p[o + 3]) >>> 0;
  return (v & a.mask) >>> 0;
}

function evaluate(f: Formula, p: Uint8Array, linkpl: number, wireLen: number): boolean {
  switch (f.t) {
    case 'true':
      return true;
    case 'false':
      return false;
    case 'not':
      return !evaluate(f.e, p, linkpl, wireLen);
    case 'and':
      return evaluate(f.l, p, linkpl, wireLen) && evaluate(f.r, p, linkpl, wireLen);
    case 'or':
      return evaluate(f.l, p, linkpl, wireLen) || evaluate(f.r, p, linkpl, wireLen);
    case 'atom': {
      const v = load(f.a, p, linkpl, wireLen);
      switch (f.a.op) {
        case 'eq':
          return v === f.a.k;
        case 'gt':
          return v > f.a.k;
        case 'ge':
          return v >= f.a.k;
        case 'set':
          return (v & f.a.k) !== 0;
      }
    }
  }
}

/* ------------------------------------------------------------------ satisfiability */

/**
 * Whether some packet could match, as far as libpcap's optimizer can tell: atoms are free except
 * that equal comparisons agree and one value equals at most one constant.
 */
export function satisfiable(f: Formula): boolean {
  const atoms: Atom[] = [];
  const seen = new Map<string, number>();
  const collect = (g: Formula): void => {
    if (g.t === 'atom') {
      const k = atomKey(g.a);
      if (!seen.has(k)) {
        seen.set(k, atoms.length);
        atoms.push(g.a);
      }
    } else if (g.t === 'and' || g.t === 'or') {
      collect(g.l);
      collect(g.r);
    } else if (g.t === 'not') collect(g.e);
  };
  collect(f);
  const value: (boolean | undefined)[] = atoms.map(() => undefined);
  // three-valued evaluation under a partial assignment
  const ev = (g: Formula): boolean | undefined => {
    switch (g.t) {
      case 'true':
        return true;
      case 'false':
        return false;
      case 'atom':
        return value[seen.get(atomKey(g.a))!];
      case 'not': {
        const v = ev(g.e);
        return v === undefined ? undefined : !v;
      }
      case 'and': {
        const l = ev(g.l);
        if (l === false) return false;
        const r = ev(g.r);
        if (r === false) return false;
        return l === true && r === true ? true : undefined;
      }
      case 'or': {
        const l = ev(g.l);
        if (l === true) return true;
        const r = ev(g.r);
        if (r === true) return true;
        return l === false && r === false ? false : undefined;
      }
    }
  };
  const consistent = (i: number, v: boolean): boolean => {
    const a = atoms[i];
    if (a.op !== 'eq') return true;
    const vk = valueKey(a);
    for (let j = 0; j < atoms.length; j++) {
      const b = atoms[j];
      if (j === i || value[j] !== true || b.op !== 'eq' || valueKey(b) !== vk) continue;
      if (v && b.k !== a.k) return false;
    }
    return true;
  };
  const search = (i: number): boolean => {
    const r = ev(f);
    if (r !== undefined) return r;
    if (i >= atoms.length) return false;
    for (const v of [true, false]) {
      if (!consistent(i, v)) continue;
      value[i] = v;
      if (search(i + 1)) return true;
    }
    value[i] = undefined;
    return false;
  };
  return search(0);
}

/* ------------------------------------------------------------------ lexer (scanner.l) */

type Tok = {
  type: string;
  /** the text (ID, HID, HID6, EID, AID) */
  s?: string;
  /** NUM */
  n?: number;
  /** LEX_ERROR with a message set by the scanner (otherwise the parser reports a syntax error) */
  err?: string;
};

const KEYWORDS: Record<string, string> = {
  dst: 'DST',
  src: 'SRC',
  link: 'LINK',
  ether: 'LINK',
  ppp: 'LINK',
  slip: 'LINK',
  fddi: 'LINK',
  tr: 'LINK',
  wlan: 'LINK',
  arp: 'ARP',
  rarp: 'RARP',
  ip: 'IP',
  sctp: 'SCTP',
  tcp: 'TCP',
  udp: 'UDP',
  icmp: 'ICMP',
  igmp: 'IGMP',
  igrp: 'IGRP',
  pim: 'PIM',
  vrrp: 'VRRP',
  carp: 'CARP',
  radio: 'RADIO',
  ip6: 'IPV6',
  icmp6: 'ICMPV6',
  ah: 'AH',
  esp: 'ESP',
  atalk: 'ATALK',
  aarp: 'AARP',
  decnet: 'DECNET',
  lat: 'LAT',
  sca: 'SCA',
  moprc: 'MOPRC',
  mopdl: 'MOPDL',
  iso: 'ISO',
  esis: 'ESIS',
  'es-is': 'ESIS',
  isis: 'ISIS',
  'is-is': 'ISIS',
  l1: 'L1',
  l2: 'L2',
  iih: 'IIH',
  lsp: 'LSP',
  snp: 'SNP',
  csnp: 'CSNP',
  psnp: 'PSNP',
  clnp: 'CLNP',
  stp: 'STP',
  ipx: 'IPX',
  netbeui: 'NETBEUI',
  host: 'HOST',
  net: 'NET',
  mask: 'NETMASK',
  port: 'PORT',
  portrange: 'PORTRANGE',
  proto: 'PROTO',
  protochain: 'PROTOCHAIN',
  gateway: 'GATEWAY',
  type: 'TYPE',
  subtype: 'SUBTYPE',
  direction: 'DIR',
  dir: 'DIR',
  address1: 'ADDR1',
  addr1: 'ADDR1',
  address2: 'ADDR2',
  addr2: 'ADDR2',
  address3: 'ADDR3',
  addr3: 'ADDR3',
  address4: 'ADDR4',
  addr4: 'ADDR4',
  ra: 'RA',
  ta: 'TA',
  less: 'LESS',
  greater: 'GREATER',
  byte: 'CBYTE',
  broadcast: 'TK_BROADCAST',
  multicast: 'TK_MULTICAST',
  and: 'AND',
  or: 'OR',
  not: '!',
  len: 'LEN',
  length: 'LEN',
  inbound: 'INBOUND',
  outbound: 'OUTBOUND',
  ifindex: 'IFINDEX',
  vlan: 'VLAN',
  mpls: 'MPLS',
  pppoed: 'PPPOED',
  pppoes: 'PPPOES',
  geneve: 'GENEVE',
  lane: 'LANE',
  llc: 'LLC',
  metac: 'METAC',
  bcc: 'BCC',
  oam: 'OAM',
  oamf4: 'OAMF4',
  oamf4ec: 'OAMF4EC',
  oamf4sc: 'OAMF4SC',
  sc: 'SC',
  ilmic: 'ILMIC',
  vpi: 'VPI',
  vci: 'VCI',
  connectmsg: 'CONNECTMSG',
  metaconnect: 'METACONNECT',
  on: 'PF_IFNAME',
  ifname: 'PF_IFNAME',
  rset: 'PF_RSET',
  ruleset: 'PF_RSET',
  rnr: 'PF_RNR',
  rulenum: 'PF_RNR',
  srnr: 'PF_SRNR',
  subrulenum: 'PF_SRNR',
  reason: 'PF_REASON',
  action: 'PF_ACTION',
  fisu: 'FISU',
  lssu: 'LSSU',
  lsu: 'LSSU',
  msu: 'MSU',
  hfisu: 'HFISU',
  hlssu: 'HLSSU',
  hmsu: 'HMSU',
  sio: 'SIO',
  opc: 'OPC',
  dpc: 'DPC',
  sls: 'SLS',
  hsio: 'HSIO',
  hopc: 'HOPC',
  hdpc: 'HDPC',
  hsls: 'HSLS',
};

/** scanner.l's named numbers (icmp-echo, tcp-syn, …): NUM tokens */
const NAMED_NUMBERS: Record<string, number> = {
  icmptype: 0,
  icmpcode: 1,
  'icmp-echoreply': 0,
  'icmp-unreach': 3,
  'icmp-sourcequench': 4,
  'icmp-redirect': 5,
  'icmp-echo': 8,
  'icmp-routeradvert': 9,
  'icmp-routersolicit': 10,
  'icmp-timxceed': 11,
  'icmp-paramprob': 12,
  'icmp-tstamp': 13,
  'icmp-tstampreply': 14,
  'icmp-ireq': 15,
  'icmp-ireqreply': 16,
  'icmp-maskreq': 17,
  'icmp-maskreply': 18,
  icmp6type: 0,
  icmp6code: 1,
  'icmp6-destinationunreach': 1,
  'icmp6-packettoobig': 2,
  'icmp6-timeexceeded': 3,
  'icmp6-parameterproblem': 4,
  'icmp6-echo': 128,
  'icmp6-echoreply': 129,
  'icmp6-multicastlistenerquery': 130,
  'icmp6-multicastlistenerreportv1': 131,
  'icmp6-multicastlistenerdone': 132,
  'icmp6-routersolicit': 133,
  'icmp6-routeradvert': 134,
  'icmp6-neighborsolicit': 135,
  'icmp6-neighboradvert': 136,
  'icmp6-redirect': 137,
  'icmp6-routerrenum': 138,
  'icmp6-nodeinformationquery': 139,
  'icmp6-nodeinformationresponse': 140,
  'icmp6-ineighbordiscoverysolicit': 141,
  'icmp6-ineighbordiscoveryadvert': 142,
  'icmp6-multicastlistenerreportv2': 143,
  'icmp6-homeagentdiscoveryrequest': 144,
  'icmp6-homeagentdiscoveryreply': 145,
  'icmp6-mobileprefixsolicit': 146,
  'icmp6-mobileprefixadvert': 147,
  'icmp6-certpathsolicit': 148,
  'icmp6-certpathadvert': 149,
  'icmp6-multicastrouteradvert': 151,
  'icmp6-multicastroutersolicit': 152,
  'icmp6-multicastrouterterm': 153,
  tcpflags: 13,
  'tcp-fin': 0x01,
  'tcp-syn': 0x02,
  'tcp-rst': 0x04,
  'tcp-push': 0x08,
  'tcp-ack': 0x10,
  'tcp-urg': 0x20,
  'tcp-ece': 0x40,
  'tcp-cwr': 0x80,
};

const N = '(?:0[Xx][0-9A-Fa-f]+|[0-9]+)';
const B = '[0-9A-Fa-f][0-9A-Fa-f]?';
const B2 = '[0-9A-Fa-f]{4}';
const W = '[0-9A-Fa-f]{1,4}';
const MAC = [
  `${B}:${B}:${B}:${B}:${B}:${B}`,
  `${B}-${B}-${B}-${B}-${B}-${B}`,
  `${B}\\.${B}\\.${B}\\.${B}\\.${B}\\.${B}`,
  `${B2}\\.${B2}\\.${B2}`,
  `${B2}${B2}${B2}`,
];
const V4TAIL = `${N}\\.${N}\\.${N}\\.${N}`;
/** scanner.l's IPv6 forms (V680 … V6004): 8 groups, or `::` for the others, optionally ending in a dotted quad */
function v6Patterns(): string[] {
  const alts: string[] = [`(?:${W}:){7}${W}`];
  for (let total = 7; total >= 0; total--) {
    // `total` explicit groups around one `::`
    for (let left = 0; left <= total; left++) {
      const right = total - left;
      const l = left ? `(?:${W}:){${left - 1}}${W}` : '';
      const r = right ? `${W}(?::${W}){${right - 1}}` : '';
      alts.push(`${l}::${r}`);
    }
  }
  alts.push(`(?:${W}:){6}${V4TAIL}`);
  for (let total = 5; total >= 0; total--)
    for (let left = 0; left <= total; left++) {
      const right = total - left;
      const l = left ? `(?:${W}:){${left - 1}}${W}` : '';
      const r = right ? `(?:${W}:){${right}}` : '';
      alts.push(`${l}::${r}${V4TAIL}`);
    }
  return alts;
}

interface Rule {
  /** flex takes the longest match: each alternative is tried */
  re: RegExp | RegExp[];
  make: (text: string) => Tok | null;
}

const RULES: Rule[] = [
  { re: /[ \r\n\t]+/y, make: () => null },
  { re: /(?:>=|<=|!=|==|<<|>>|&&|\|\|)/y, make: (t) => ({ type: TWO_CHAR[t] }) },
  { re: /[+\-*/%:[\]!<>()&|^=]/y, make: (t) => ({ type: t }) },
  { re: new RegExp(`\\$${B}`, 'y'), make: (t) => ({ type: 'AID', s: t }) },
  { re: MAC.map((p) => new RegExp(p, 'y')), make: (t) => ({ type: 'EID', s: t }) },
  { re: new RegExp(N, 'y'), make: (t) => stou(t) },
  { re: new RegExp(`${N}\\.${N}(?:\\.${N}(?:\\.${N})?)?`, 'y'), make: (t) => ({ type: 'HID', s: t }) },
  { re: v6Patterns().map((p) => new RegExp(p, 'y')), make: (t) => ({ type: 'HID6', s: t }) },
  {
    re: new RegExp(`${B}:+(?:${B}:+)+`, 'y'),
    make: (t) => ({ type: 'LEX_ERROR', err: `bogus ethernet address ${t}` }),
  },
  {
    re: /[A-Za-z0-9](?:[-_.A-Za-z0-9]*[.A-Za-z0-9])?/y,
    make: (t) => ({ type: 'ID', s: t }),
  },
  { re: /\\[^ !()\n\t]+/y, make: (t) => ({ type: 'ID', s: t.slice(1) }) },
];

const TWO_CHAR: Record<string, string> = {
  '>=': 'GEQ',
  '<=': 'LEQ',
  '!=': 'NEQ',
  '==': '=',
  '<<': 'LSH',
  '>>': 'RSH',
  '&&': 'AND',
  '||': 'OR',
};

/** scanner.l's stou(): decimal, 0x hex or 0 octal, 32 bits */
function stou(t: string): Tok {
  let n = 0;
  if (t[0] === '0' && (t[1] === 'x' || t[1] === 'X')) {
    for (const c of t.slice(2)) {
      if (n > 0xfffffff) return { type: 'LEX_ERROR', err: `number ${t} overflows 32 bits` };
      n = n * 16 + parseInt(c, 16);
    }
  } else if (t[0] === '0') {
    for (const c of t.slice(1)) {
      if (c > '7') return { type: 'LEX_ERROR', err: `number ${t} contains non-octal digit` };
      if (n > 0o3777777777) return { type: 'LEX_ERROR', err: `number ${t} overflows 32 bits` };
      n = n * 8 + Number(c);
    }
  } else {
    const cutoff = Math.floor(0xffffffff / 10);
    for (const c of t) {
      const d = Number(c);
      if (n > cutoff || (n === cutoff && d > 0xffffffff % 10))
        return { type: 'LEX_ERROR', err: `number ${t} overflows 32 bits` };
      n = n * 10 + d;
    }
  }
  return { type: 'NUM', n };
}

/** The longest match of any rule; on a tie the rule that comes first in scanner.l. */
function lexOne(src: string, pos: number): { tok: Tok | null; end: number } {
  let best: { len: number; order: number; make: () => Tok | null } | undefined;
  const offer = (len: number, order: number, make: () => Tok | null) => {
    if (len > 0 && (!best || len > best.len || (len === best.len && order < best.order)))
      best = { len, order, make };
  };
  // keywords come first in scanner.l, then whitespace and operators, …, named numbers, ID
  const word = /[A-Za-z0-9][-_.A-Za-z0-9]*/y;
  word.lastIndex = pos;
  const wm = word.exec(src);
  if (wm) {
    for (let len = wm[0].length; len > 0; len--) {
      const w = wm[0].slice(0, len);
      if (KEYWORDS[w] !== undefined) {
        offer(len, 0, () => ({ type: KEYWORDS[w] }));
        break;
      }
    }
  }
  RULES.forEach((r, i) => {
    const order = i < 9 ? 1 + i : 20 + i; // named numbers (order 15) sit between bogus-ether and ID
    for (const re of Array.isArray(r.re) ? r.re : [r.re]) {
      re.lastIndex = pos;
      const m = re.exec(src);
      if (!m) continue;
      const text = m[0];
      offer(text.length, order, () => r.make(text));
    }
  });
  if (wm) {
    for (let len = wm[0].length; len > 0; len--) {
      const w = wm[0].slice(0, len);
      if (NAMED_NUMBERS[w] !== undefined) {
        offer(len, 15, () => ({ type: 'NUM', n: NAMED_NUMBERS[w] }));
        break;
      }
    }
  }
  if (!best) return { tok: { type: 'LEX_ERROR' }, end: pos + 1 };
  return { tok: best.make(), end: pos + best.len };
}

class Lexer {
  private readonly toks: Tok[] = [];
  private pos = 0;
  private done = false;

  constructor(private readonly src: string) {}

  /** token i (lexing lazily, as flex does); EOF at the end */
  at(i: number): Tok {
    while (this.toks.length <= i && !this.done) {
      let tok: Tok | null = null;
      while (tok === null) {
        if (this.pos >= this.src.length) {
          this.done = true;
          break;
        }
        const r = lexOne(this.src, this.pos);
        this.pos = r.end;
        tok = r.tok;
      }
      if (tok) this.toks.push(tok);
    }
    return this.toks[i] ?? { type: 'EOF' };
  }
}

/* ------------------------------------------------------------------ qualifiers */

type Proto =
  | 'default'
  | 'link'
  | 'ip'
  | 'arp'
  | 'rarp'
  | 'sctp'
  | 'tcp'
  | 'udp'
  | 'icmp'
  | 'ip6'
  | 'icmp6'
  | 'other'
  | 'undef';
type Dir =
  'default' | 'src' | 'dst' | 'or' | 'and' | 'addr1' | 'addr2' | 'addr3' | 'addr4' | 'ra' | 'ta' | 'undef';
type Addr = 'default' | 'host' | 'net' | 'port' | 'portrange' | 'gateway' | 'proto' | 'protochain' | 'undef';

interface Qual {
  proto: Proto;
  /** the keyword, for messages about protocols podwalk does not implement */
  protoName?: string;
  dir: Dir;
  addr: Addr;
}

const QERR: Qual = { proto: 'undef', dir: 'undef', addr: 'undef' };

const PNAMES: Record<string, Proto> = {
  LINK: 'link',
  IP: 'ip',
  ARP: 'arp',
  RARP: 'rarp',
  SCTP: 'sctp',
  TCP: 'tcp',
  UDP: 'udp',
  ICMP: 'icmp',
  IPV6: 'ip6',
  ICMPV6: 'icmp6',
};
const OTHER_PNAMES = new Set([
  'IGMP',
  'IGRP',
  'PIM',
  'VRRP',
  'CARP',
  'ATALK',
  'AARP',
  'DECNET',
  'LAT',
  'SCA',
  'MOPDL',
  'MOPRC',
  'AH',
  'ESP',
  'ISO',
  'ESIS',
  'ISIS',
  'L1',
  'L2',
  'IIH',
  'LSP',
  'SNP',
  'PSNP',
  'CSNP',
  'CLNP',
  'STP',
  'IPX',
  'NETBEUI',
  'RADIO',
]);

interface Blk {
  b: Formula;
  q: Qual;
}

/* ------------------------------------------------------------------ services and protocols */

export { services };

const PROTO_UNDEF = -1;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_SCTP = 132;

/** pcap_nametoport(): the port of a service name, and TCP, UDP or both (PROTO_UNDEF) */
function nameToPort(name: string): { port: number; proto: number } | undefined {
  // getaddrinfo() also takes a decimal number as the service
  const numeric = /^[0-9]+$/.test(name) ? Number(name) : undefined;
  const tcp = numeric ?? servicePort(name, 'tcp');
  const udp = numeric ?? servicePort(name, 'udp');
  if (tcp !== undefined) return { port: tcp, proto: udp === tcp ? PROTO_UNDEF : IPPROTO_TCP };
  if (udp !== undefined) return { port: udp, proto: IPPROTO_UDP };
  return undefined;
}

/** pcap_nametoeproto(): libpcap's own table of Ethernet protocol names */
const EPROTOS: Record<string, number> = {
  aarp: 0x80f3,
  arp: 0x0806,
  atalk: 0x809b,
  decnet: 0x6003,
  ip: 0x0800,
  ip6: 0x86dd,
  lat: 0x6004,
  loopback: 0x9000,
  mopdl: 0x6001,
  moprc: 0x6002,
  rarp: 0x8035,
  sca: 0x6007,
};

/* ------------------------------------------------------------------ code generation (gencode.c) */

const ETHERTYPE_IP = 0x0800;
const ETHERTYPE_ARP = 0x0806;
const ETHERTYPE_REVARP = 0x8035;
const ETHERTYPE_IPV6 = 0x86dd;

class Gen {
  constructor(readonly linktype: number) {}

  private get ether(): boolean {
    return this.linktype === LINKTYPE_ETHERNET;
  }

  unsupported(what: string): never {
    throw new FilterError(`podwalk: ${what} in a filter is not emulated`, true);
  }

  linktypeIs(llProto: number): Formula {
    if (this.ether) {
      if (llProto <= 1500) this.unsupported('an 802.3/LLC protocol');
      return atom('link', 12, 2, llProto);
    }
    if (llProto === ETHERTYPE_IP) return atom('link', 0, 1, 0x40, 'eq', 0xf0);
    if (llProto === ETHERTYPE_IPV6) return atom('link', 0, 1, 0x60, 'eq', 0xf0);
    return FALSE;
  }

  private hostop(addr: number, mask: number, dir: Dir, ll: number, srcOff: number, dstOff: number): Formula {
    switch (dir) {
      case 'src':
      case 'dst':
        return and(
          this.linktypeIs(ll),
          atom('pl', dir === 'src' ? srcOff : dstOff, 4, addr & mask, 'eq', mask),
        );
      case 'and':
        return and(
          this.hostop(addr, mask, 'src', ll, srcOff, dstOff),
          this.hostop(addr, mask, 'dst', ll, srcOff, dstOff),
        );
      case 'default':
      case 'or':
        return or(
          this.hostop(addr, mask, 'src', ll, srcOff, dstOff),
          this.hostop(addr, mask, 'dst', ll, srcOff, dstOff),
        );
      default:
        throw new FilterError(addrQualError(dir, 'addresses other than 802.11 MAC addresses'));
    }
  }

  host(addr: number, mask: number, q: Qual, type: 'host' | 'net'): Formula {
    const { proto, dir } = q;
    switch (proto) {
      case 'default':
        return or(
          or(
            this.host(addr, mask, { ...q, proto: 'ip' }, type),
            this.host(addr, mask, { ...q, proto: 'arp' }, type),
          ),
          this.host(addr, mask, { ...q, proto: 'rarp' }, type),
        );
      case 'link':
        throw new FilterError(`link-layer modifier applied to ${type}`);
      case 'ip':
        return this.hostop(addr, mask, dir, ETHERTYPE_IP, 12, 16);
      case 'rarp':
        return this.hostop(addr, mask, dir, ETHERTYPE_REVARP, 14, 24);
      case 'arp':
        return this.hostop(addr, mask, dir, ETHERTYPE_ARP, 14, 24);
      case 'sctp':
      case 'tcp':
      case 'udp':
      case 'icmp':
      case 'icmp6':
        throw new FilterError(`'${proto}' modifier applied to ${type}`);
      case 'ip6':
        throw new FilterError(`'ip6' modifier applied to ip host`);
      default:
        return this.unsupported(`'${q.protoName ?? proto}' with an address`);
    }
  }

  private ipfrag(): Formula {
    return not(atom('pl', 6, 2, 0x1fff, 'set'));
  }

  private portAtoms(dir: Dir, cmp: (off: number) => Formula): Formula {
    switch (dir) {
      case 'src':
        return cmp(0);
      case 'dst':
        return cmp(2);
      case 'and':
        return and(cmp(0), cmp(2));
      case 'default':
      case 'or':
        return or(cmp(0), cmp(2));
      default:
        throw new FilterError(addrQualError(dir, 'ports'));
    }
  }

  private portOp(proto: number, dir: Dir, cmp: (off: number) => Formula, v6: boolean): Formula {
    if (v6) {
      return and(atom('pl', 6, 1, proto), this.portAtoms(dir, cmp));
    }
    return and(and(atom('pl', 9, 1, proto), this.ipfrag()), this.portAtoms(dir, cmp));
  }

  private ports(
    ipProto: number,
    dir: Dir,
    cmp4: (off: number) => Formula,
    cmp6: (off: number) => Formula,
  ): Formula {
    const build = (v6: boolean) => {
      const cmp = v6 ? cmp6 : cmp4;
      const b1 =
        ipProto === PROTO_UNDEF
          ? or(
              or(this.portOp(IPPROTO_TCP, dir, cmp, v6), this.portOp(IPPROTO_UDP, dir, cmp, v6)),
              this.portOp(IPPROTO_SCTP, dir, cmp, v6),
            )
          : this.portOp(ipProto, dir, cmp, v6);
      return and(this.linktypeIs(v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IP), b1);
    };
    return or(build(false), build(true));
  }

  port(port: number, ipProto: number, dir: Dir): Formula {
    return this.ports(
      ipProto,
      dir,
      (off) => atom('tr', off, 2, port),
      (off) => atom('tr6', off, 2, port),
    );
  }

  portrange(p1: number, p2: number, ipProto: number, dir: Dir): Formula {
    const [lo, hi] = p1 > p2 ? [p2, p1] : [p1, p2];
    const range = (base: 'tr' | 'tr6') => (off: number) =>
      and(atom(base, off, 2, lo, 'ge'), not(atom(base, off, 2, hi, 'gt')));
    return this.ports(ipProto, dir, range('tr'), range('tr6'));
  }

  proto(v: number, proto: Proto, dir: Dir, name?: string): Formula {
    if (dir !== 'default') throw new FilterError("direction applied to 'proto'");
    switch (proto) {
      case 'default':
        return or(this.proto(v, 'ip', dir), this.proto(v, 'ip6', dir));
      case 'link':
        return this.linktypeIs(v);
      case 'ip':
        return and(this.linktypeIs(ETHERTYPE_IP), atom('pl', 9, 1, v));
      case 'ip6':
        return and(
          this.linktypeIs(ETHERTYPE_IPV6),
          or(atom('pl', 6, 1, v), and(atom('pl', 6, 1, 44), atom('pl', 40, 1, v))),
        );
      case 'arp':
      case 'rarp':
        throw new FilterError(`${proto} does not encapsulate another protocol`);
      case 'sctp':
      case 'tcp':
      case 'udp':
      case 'icmp':
      case 'icmp6':
        throw new FilterError(`'${proto} proto' is bogus`);
      default:
        return this.unsupported(`'${name ?? proto} proto'`);
    }
  }

  protoAbbrev(p: Proto, name: string): Formula {
    switch (p) {
      case 'sctp':
        return this.proto(IPPROTO_SCTP, 'default', 'default');
      case 'tcp':
        return this.proto(IPPROTO_TCP, 'default', 'default');
      case 'udp':
        return this.proto(IPPROTO_UDP, 'default', 'default');
      case 'icmp':
        return this.proto(1, 'ip', 'default');
      case 'icmp6':
        return this.proto(58, 'ip6', 'default');
      case 'ip':
        return this.linktypeIs(ETHERTYPE_IP);
      case 'arp':
        return this.linktypeIs(ETHERTYPE_ARP);
      case 'rarp':
        return this.linktypeIs(ETHERTYPE_REVARP);
      case 'ip6':
        return this.linktypeIs(ETHERTYPE_IPV6);
      case 'link':
        throw new FilterError('link layer applied in wrong context');
      default:
        return this.unsupported(`'${name}'`);
    }
  }

  /** gen_bcmp: the 6 bytes at link offset `off`, compared as a word at off+2 and a halfword at off */
  private bcmp(off: number, mac: Uint8Array): Formula {
    const w = ((mac[2] << 24) | (mac[3] << 16) | (mac[4] << 8) | mac[5]) >>> 0;
    return and(atom('link', off + 2, 4, w), atom('link', off, 2, (mac[0] << 8) | mac[1]));
  }

  ehostop(mac: Uint8Array, dir: Dir): Formula {
    switch (dir) {
      case 'src':
        return this.bcmp(6, mac);
      case 'dst':
        return this.bcmp(0, mac);
      case 'and':
        return and(this.ehostop(mac, 'src'), this.ehostop(mac, 'dst'));
      case 'default':
      case 'or':
        return or(this.ehostop(mac, 'src'), this.ehostop(mac, 'dst'));
      default:
        throw new FilterError(
          dir === 'ra' || dir === 'ta'
            ? `'${dir}' is only supported on 802.11 with 802.11 headers`
            : `'addr${dir.slice(-1)}' and 'address${dir.slice(-1)}' are only supported on 802.11 with 802.11 headers`,
        );
    }
  }

  /* gen_scode / gen_ncode / gen_mcode / gen_ecode: the `id` of a primitive */

  scode(name: string, q: Qual): Formula {
    const { proto, dir } = q;
    switch (q.addr) {
      case 'net':
        // pcap_nametonetaddr(): /etc/networks has no names podwalk knows
        throw new FilterError(`unknown network '${name}'`);
      case 'default':
      case 'host':
        if (proto === 'link') {
          if (!this.ether)
            throw new FilterError(
              'only ethernet/FDDI/token ring/802.11/ATM LANE/Fibre Channel supports link-level host name',
            );
          // pcap_ether_hostton(): /etc/ethers is empty
          throw new FilterError(`unknown ether host '${name}'`);
        }
        // podwalk has no resolver: host names do not resolve
        throw new FilterError(`unknown host '${name}'`);
      case 'port': {
        if (proto !== 'default' && proto !== 'udp' && proto !== 'tcp' && proto !== 'sctp')
          throw new FilterError("illegal qualifier of 'port'");
        const r = nameToPort(name);
        if (!r) throw new FilterError(`unknown port '${name}'`);
        const real = this.realProto(proto, r.proto, `port '${name}'`);
        if (r.port > 65535) throw new FilterError(`illegal port number ${r.port} > 65535`);
        return this.port(r.port, real, dir);
      }
      case 'portrange': {
        if (proto !== 'default' && proto !== 'udp' && proto !== 'tcp' && proto !== 'sctp')
          throw new FilterError("illegal qualifier of 'portrange'");
        const r = nameToPortRange(name);
        if (!r) throw new FilterError(`unknown port in range '${name}'`);
        const real = this.realProto(proto, r.proto, `port in range '${name}'`);
        for (const p of [r.p1, r.p2]) {
          if (p < 0) throw new FilterError(`illegal port number ${p} < 0`);
          if (p > 65535) throw new FilterError(`illegal port number ${p} > 65535`);
        }
        return this.portrange(r.p1, r.p2, real, dir);
      }
      case 'gateway':
        throw new FilterError("'gateway' not supported in this configuration");
      case 'proto':
        return this.proto(this.lookupProto(name, proto), proto, dir, q.protoName);
      case 'protochain':
        return this.unsupported("'protochain'");
      case 'undef':
        throw new FilterError('syntax error in filter expression');
    }
  }

  private realProto(proto: Proto, real: number, what: string): number {
    const want =
      proto === 'udp' ? IPPROTO_UDP : proto === 'tcp' ? IPPROTO_TCP : proto === 'sctp' ? IPPROTO_SCTP : 0;
    if (!want) return real;
    const name = (p: number) => (p === IPPROTO_TCP ? 'tcp' : p === IPPROTO_UDP ? 'udp' : 'sctp');
    if (real !== PROTO_UNDEF && real !== want) throw new FilterError(`${what} is ${name(real)}`);
    return want;
  }

  private lookupProto(name: string, proto: Proto): number {
    switch (proto) {
      case 'default':
      case 'ip':
      case 'ip6': {
        const p = getprotobyname(name);
        if (!p) throw new FilterError(`unknown ip proto '${name}'`);
        return p.number;
      }
      case 'link': {
        const v = EPROTOS[name];
        if (v === undefined) throw new FilterError(`unknown ether proto '${name}'`);
        return v;
      }
      default:
        return PROTO_UNDEF;
    }
  }

  ncode(s: string | null, v: number, q: Qual): Formula {
    const { proto, dir } = q;
    let vlen = 32;
    if (s !== null) {
      const r = atoin(s);
      if (r === undefined) throw new FilterError(`invalid IPv4 address '${s}'`);
      v = r.addr;
      vlen = r.len;
    }
    switch (q.addr) {
      case 'default':
      case 'host':
      case 'net': {
        if (proto === 'link') throw new FilterError('illegal link layer address');
        let mask = 0xffffffff;
        if (s === null && q.addr === 'net') {
          while (v && (v & 0xff000000) === 0) {
            v = (v << 8) >>> 0;
            mask = (mask << 8) >>> 0;
          }
        } else {
          v = shl(v, 32 - vlen);
          mask = shl(mask, 32 - vlen);
        }
        return this.host(v, mask, q, q.addr === 'net' ? 'net' : 'host');
      }
      case 'port':
      case 'portrange': {
        const ipProto =
          proto === 'udp'
            ? IPPROTO_UDP
            : proto === 'tcp'
              ? IPPROTO_TCP
              : proto === 'sctp'
                ? IPPROTO_SCTP
                : proto === 'default'
                  ? PROTO_UNDEF
                  : undefined;
        if (ipProto === undefined) throw new FilterError(`illegal qualifier of '${q.addr}'`);
        if (v > 65535) throw new FilterError(`illegal port number ${v} > 65535`);
        return q.addr === 'port' ? this.port(v, ipProto, dir) : this.portrange(v, v, ipProto, dir);
      }
      case 'gateway':
        throw new FilterError("'gateway' requires a name");
      case 'proto':
        return this.proto(v, proto, dir, q.protoName);
      case 'protochain':
        return this.unsupported("'protochain'");
      case 'undef':
        throw new FilterError('syntax error in filter expression');
    }
  }

  mcode(s1: string, s2: string | null, masklen: number, q: Qual): Formula {
    const a = atoin(s1);
    if (a === undefined) throw new FilterError(`invalid IPv4 address '${s1}'`);
    const n = shl(a.addr, 32 - a.len);
    let m: number;
    if (s2 !== null) {
      const b = atoin(s2);
      if (b === undefined) throw new FilterError(`invalid IPv4 address '${s2}'`);
      m = shl(b.addr, 32 - b.len);
      if ((n & ~m) !== 0) throw new FilterError(`non-network bits set in "${s1} mask ${s2}"`);
    } else {
      if (masklen > 32) throw new FilterError('mask length must be <= 32');
      m = masklen === 0 ? 0 : (0xffffffff << (32 - masklen)) >>> 0;
      if ((n & ~m) !== 0) throw new FilterError(`non-network bits set in "${s1}/${masklen}"`);
    }
    if (q.addr === 'net') return this.host(n, m, q, 'net');
    throw new FilterError('Mask syntax for networks only');
  }

  mcode6(s: string, masklen: number, q: Qual): Formula {
    if (!isIpv6(s)) throw new FilterError(`invalid ip6 address ${s}`);
    if (masklen > 128) throw new FilterError('mask length must be <= 128');
    if ((q.addr === 'default' || q.addr === 'host') && masklen !== 128)
      throw new FilterError('Mask syntax for networks only');
    if (q.addr !== 'default' && q.addr !== 'host' && q.addr !== 'net')
      throw new FilterError('invalid qualifier against IPv6 address');
    // podwalk's packets are IPv4: an IPv6 address test is an IPv6 packet test and more
    return this.unsupported('an IPv6 address');
  }

  ecode(s: string, q: Qual): Formula {
    if ((q.addr === 'host' || q.addr === 'default') && q.proto === 'link') {
      if (!this.ether)
        throw new FilterError(
          'ethernet addresses supported only on ethernet/FDDI/token ring/802.11/ATM LANE/Fibre Channel',
        );
      return this.ehostop(etherAton(s), q.dir);
    }
    throw new FilterError('ethernet address used in non-ether expression');
  }

  broadcast(proto: Proto): Formula {
    if (proto === 'default' || proto === 'link') {
      if (!this.ether) throw new FilterError('not a broadcast link');
      return this.ehostop(new Uint8Array([255, 255, 255, 255, 255, 255]), 'dst');
    }
    if (proto === 'ip') return this.unsupported("'ip broadcast' (it needs the interface netmask)");
    throw new FilterError('only link-layer/IP broadcast filters supported');
  }

  multicast(proto: Proto): Formula {
    if (proto === 'default' || proto === 'link') {
      if (!this.ether)
        throw new FilterError(
          'link-layer multicast filters supported only on ethernet/FDDI/token ring/ARCNET/802.11/ATM LANE/Fibre Channel',
        );
      return atom('link', 0, 1, 1, 'set');
    }
    if (proto === 'ip') return and(this.linktypeIs(ETHERTYPE_IP), atom('pl', 16, 1, 224, 'ge'));
    return this.unsupported(`'${proto} multicast'`);
  }
}

function addrQualError(dir: Dir, what: string): string {
  if (dir === 'ra') return `'ra' is not a valid qualifier for ${what}`;
  if (dir === 'ta') return `'ta' is not a valid qualifier for ${what}`;
  const n = dir.slice(-1);
  return `'addr${n}' and 'address${n}' are not valid qualifiers for ${what}`;
}

function shl(v: number, n: number): number {
  return n >= 32 ? 0 : (v << n) >>> 0;
}

/** __pcap_atoin(): a dotted quad of 1 to 4 parts; returns the value and its length in bits */
function atoin(s: string): { addr: number; len: number } | undefined {
  let addr = 0;
  let len = 0;
  let i = 0;
  for (;;) {
    let n = 0;
    while (i < s.length && s[i] !== '.') {
      if (n > 25) return undefined;
      n = n * 10 + s.charCodeAt(i++) - 48;
    }
    if (n > 255) return undefined;
    addr = ((addr << 8) | (n & 0xff)) >>> 0;
    len += 8;
    if (i >= s.length) return { addr, len };
    i++;
  }
}

/** pcap_ether_aton(): hex digit pairs separated by ':', '.' or '-' (or none) */
function etherAton(s: string): Uint8Array {
  const out = new Uint8Array(6);
  let i = 0;
  let o = 0;
  const hex = (c: string) => parseInt(c, 16);
  while (i < s.length && o < 6) {
    if (s[i] === ':' || s[i] === '.' || s[i] === '-') i++;
    let d = hex(s[i++]);
    if (i < s.length && /[0-9A-Fa-f]/.test(s[i])) d = (d << 4) | hex(s[i++]);
    out[o++] = d;
  }
  return out;
}

function isIpv6(s: string): boolean {
  const parts = s.split('::');
  if (parts.length > 2) return false;
  const groups = (p: string) => (p === '' ? [] : p.split(':'));
  const all = parts.flatMap(groups);
  let n = 0;
  for (const [i, g] of all.entries()) {
    if (/^[0-9A-Fa-f]{1,4}$/.test(g)) n++;
    else if (i === all.length - 1 && /^\d+\.\d+\.\d+\.\d+$/.test(g)) n += 2;
    else return false;
  }
  return parts.length === 2 ? n < 8 : n === 8;
}

/** pcap_nametoportrange(): "P1-P2" with numbers (sscanf %d-%d) or service names */
function nameToPortRange(name: string): { p1: number; p2: number; proto: number } | undefined {
  const m = /^\s*([+-]?\d+)-([+-]?\d+)/.exec(name);
  if (m) return { p1: Number(m[1]), p2: Number(m[2]), proto: PROTO_UNDEF };
  const dash = name.indexOf('-');
  if (dash < 0) return undefined;
  const a = nameToPort(name.slice(0, dash));
  if (!a) return undefined;
  const b = nameToPort(name.slice(dash + 1));
  if (!b) return undefined;
  return { p1: a.port, p2: b.port, proto: a.proto === b.proto ? b.proto : PROTO_UNDEF };
}

/* ------------------------------------------------------------------ parser (grammar.y) */

class SyntaxFail extends Error {}

const RELOPS = new Set(['>', 'GEQ', '=', 'LEQ', '<', 'NEQ']);
const ARITH_OPS = new Set(['+', '-', '*', '/', '%', '&', '|', '^', 'LSH', 'RSH']);

class Parser {
  private i = 0;
  /** dry run: syntax only (no code generation, no semantic errors) */
  private dry = false;

  constructor(
    private readonly lx: Lexer,
    private readonly gen: Gen,
  ) {}

  private peek(k = 0): Tok {
    return this.lx.at(this.i + k);
  }

  private next(): Tok {
    return this.lx.at(this.i++);
  }

  private fail(): never {
    const t = this.peek();
    if (!this.dry && t.type === 'LEX_ERROR' && t.err) throw new FilterError(t.err);
    if (this.dry) throw new SyntaxFail();
    throw new FilterError("can't parse filter expression: syntax error");
  }

  private expect(type: string): Tok {
    if (this.peek().type !== type) this.fail();
    return this.next();
  }

  /** run a code generator unless this is a dry run */
  private g(f: () => Formula): Formula {
    return this.dry ? TRUE : f();
  }

  /** whether `parse` succeeds from the current token (syntax only); the position is restored */
  private tryDry(parse: () => void): boolean {
    const save = this.i;
    const wasDry = this.dry;
    this.dry = true;
    try {
      parse();
      return true;
    } catch (e) {
      if (e instanceof SyntaxFail) return false;
      throw e;
    } finally {
      this.dry = wasDry;
      this.i = save;
    }
  }

  prog(): Formula | undefined {
    if (this.peek().type === 'EOF') return undefined;
    const e = this.expr(QERR);
    if (this.peek().type !== 'EOF') this.fail();
    return e.b;
  }

  /** expr: term | expr and term | expr and id | expr or term | expr or id */
  private expr(inh: Qual): Blk {
    let left = this.term(inh);
    for (;;) {
      const t = this.peek().type;
      if (t !== 'AND' && t !== 'OR') return left;
      this.next();
      const right = this.termOrId(left.q);
      left = { b: this.g(() => (t === 'AND' ? and(left.b, right.b) : or(left.b, right.b))), q: right.q };
    }
  }

  /** after `and`/`or`: a term, or an id that inherits the qualifiers `inh` */
  private termOrId(inh: Qual): Blk {
    const t = this.peek();
    switch (t.type) {
      case '!': {
        this.next();
        const r = this.termOrId(inh);
        return { b: this.g(() => not(r.b)), q: r.q };
      }
      case 'ID':
      case 'HID':
      case 'HID6':
      case 'EID':
      case 'AID':
        return this.nid(inh);
      case 'NUM':
        if (RELOPS.has(this.peek(1).type) || ARITH_OPS.has(this.peek(1).type)) return this.term(inh);
        return this.id(inh);
      case '(':
        if (
          this.tryDry(() => {
            this.parenPid(inh);
            if (RELOPS.has(this.peek().type) || ARITH_OPS.has(this.peek().type)) this.fail();
          })
        )
          return this.parenPid(inh);
        return this.term(inh);
      default:
        return this.term(inh);
    }
  }

  /** term: rterm | not term */
  private term(inh: Qual): Blk {
    if (this.peek().type === '!') {
      this.next();
      const r = this.term(inh);
      return { b: this.g(() => not(r.b)), q: r.q };
    }
    return this.rterm(inh);
  }

  private rterm(inh: Qual): Blk {
    const t = this.peek();
    if (t.type === '(') {
      if (
        this.tryDry(() => {
          this.next();
          this.expr(inh);
          this.expect(')');
          if (RELOPS.has(this.peek().type) || ARITH_OPS.has(this.peek().type)) this.fail();
        })
      ) {
        this.next();
        const e = this.expr(inh);
        this.expect(')');
        return { b: e.b, q: inh };
      }
      return this.relation();
    }
    if (t.type === 'NUM' || t.type === '-' || t.type === 'LEN') return this.relation();
    // head: pqual dqual aqual | pqual dqual | pqual aqual | pqual PROTO | pqual PROTOCHAIN | pqual GATEWAY
    let proto: Proto = 'default';
    let protoName: string | undefined;
    const pnameTok = PNAMES[t.type] !== undefined || OTHER_PNAMES.has(t.type) ? t : undefined;
    if (pnameTok) {
      proto = PNAMES[pnameTok.type] ?? 'other';
      protoName = pnameTok.type.toLowerCase();
      this.next();
    }
    const after = this.peek().type;
    if (pnameTok) {
      if (after === '[') {
        this.i--;
        return this.relation();
      }
      if (after === 'TK_BROADCAST' || after === 'TK_MULTICAST') {
        this.next();
        return {
          b: this.g(() => (after === 'TK_BROADCAST' ? this.gen.broadcast(proto) : this.gen.multicast(proto))),
          q: QERR,
        };
      }
      if (after === 'TYPE' || after === 'SUBTYPE' || after === 'DIR')
        return this.unsupportedOther('802.11 filters');
      if (
        !isDqual(after) &&
        !isAqual(after) &&
        after !== 'PROTO' &&
        after !== 'PROTOCHAIN' &&
        after !== 'GATEWAY'
      ) {
        const name = pnameTok.type;
        return { b: this.g(() => this.gen.protoAbbrev(proto, name.toLowerCase())), q: QERR };
      }
    } else if (after === 'TK_BROADCAST' || after === 'TK_MULTICAST') {
      this.next();
      return {
        b: this.g(() =>
          after === 'TK_BROADCAST' ? this.gen.broadcast('default') : this.gen.multicast('default'),
        ),
        q: QERR,
      };
    } else if (after === 'TYPE' || after === 'SUBTYPE' || after === 'DIR') {
      return this.unsupportedOther('802.11 filters');
    }
    let dir: Dir = 'default';
    let addr: Addr = 'default';
    const d = this.peek().type;
    if (isDqual(d)) {
      this.next();
      dir = DQUAL[d];
      if ((d === 'SRC' || d === 'DST') && (this.peek().type === 'OR' || this.peek().type === 'AND')) {
        const conj = this.next().type;
        this.expect(d === 'SRC' ? 'DST' : 'SRC');
        dir = conj === 'OR' ? 'or' : 'and';
      }
      const a = this.peek().type;
      if (isAqual(a)) {
        this.next();
        addr = AQUAL[a];
      }
    } else if (isAqual(d)) {
      this.next();
      addr = AQUAL[d];
    } else if (d === 'PROTO') {
      this.next();
      addr = 'proto';
    } else if (d === 'PROTOCHAIN') {
      this.next();
      addr = 'protochain';
    } else if (d === 'GATEWAY') {
      this.next();
      addr = 'gateway';
    } else if (!pnameTok) {
      return this.other();
    }
    const q: Qual = { proto, dir, addr };
    if (protoName) q.protoName = protoName;
    return this.id(q);
  }

  /** other: less/greater and the primitives podwalk does not implement */
  private other(): Blk {
    const t = this.next();
    switch (t.type) {
      case 'LESS':
      case 'GREATER': {
        const n = this.expect('NUM').n!;
        return {
          b: this.g(() => (t.type === 'LESS' ? not(atom('len', 0, 4, n, 'gt')) : atom('len', 0, 4, n, 'ge'))),
          q: QERR,
        };
      }
      case 'CBYTE':
        this.expect('NUM');
        if (!['&', '|', '<', '>', '='].includes(this.peek().type)) this.fail();
        this.next();
        this.expect('NUM');
        return this.unsupportedBlk("'byte'");
      case 'INBOUND':
      case 'OUTBOUND':
        return this.unsupportedBlk(`'${t.type.toLowerCase()}'`);
      case 'IFINDEX':
        this.expect('NUM');
        return this.unsupportedBlk("'ifindex'");
      case 'VLAN':
      case 'MPLS':
      case 'PPPOES':
      case 'GENEVE':
        if (this.peek().type === 'NUM' || this.peek().type === '(') this.pnum();
        return this.unsupportedBlk(`'${t.type.toLowerCase()}'`);
      case 'PPPOED':
        return this.unsupportedBlk("'pppoed'");
      case 'PF_IFNAME':
      case 'PF_RSET':
        this.expect('ID');
        return this.unsupportedBlk('pf filters');
      case 'PF_RNR':
      case 'PF_SRNR':
        this.expect('NUM');
        return this.unsupportedBlk('pf filters');
      case 'PF_REASON':
        if (this.peek().type !== 'NUM' && this.peek().type !== 'ID') this.fail();
        this.next();
        return this.unsupportedBlk('pf filters');
      case 'PF_ACTION':
        this.expect('ID');
        return this.unsupportedBlk('pf filters');
      case 'LLC':
        if (this.peek().type === 'ID' || this.peek().type === 'PF_RNR') this.next();
        return this.unsupportedBlk("'llc'");
      case 'LANE':
      case 'METAC':
      case 'BCC':
      case 'OAMF4EC':
      case 'OAMF4SC':
      case 'SC':
      case 'ILMIC':
      case 'OAM':
      case 'OAMF4':
      case 'CONNECTMSG':
      case 'METACONNECT':
        return this.unsupportedBlk('ATM filters');
      case 'FISU':
      case 'LSSU':
      case 'MSU':
      case 'HFISU':
      case 'HLSSU':
      case 'HMSU':
        return this.unsupportedBlk('MTP2 filters');
      case 'VPI':
      case 'VCI':
      case 'SIO':
      case 'OPC':
      case 'DPC':
      case 'SLS':
      case 'HSIO':
      case 'HOPC':
      case 'HDPC':
      case 'HSLS':
        this.fieldValue();
        return this.unsupportedBlk(t.type === 'VPI' || t.type === 'VCI' ? 'ATM filters' : 'MTP3 filters');
      default:
        this.i--;
        return this.fail();
    }
  }

  /** atmvalue / mtp3value: NUM | relop NUM | irelop NUM | ( NUM or NUM … ) */
  private fieldValue(): void {
    const t = this.peek().type;
    if (t === 'NUM') this.next();
    else if (RELOPS.has(t)) {
      this.next();
      this.expect('NUM');
    } else if (t === '(') {
      this.next();
      this.expect('NUM');
      while (this.peek().type === 'OR') {
        this.next();
        this.expect('NUM');
      }
      this.expect(')');
    } else this.fail();
  }

  private unsupportedOther(what: string): Blk {
    return this.unsupportedBlk(what);
  }

  private unsupportedBlk(what: string): Blk {
    if (this.dry) return { b: TRUE, q: QERR };
    return this.gen.unsupported(what);
  }

  /** arth relop arth | arth irelop arth (parsed as libpcap parses it; podwalk does not evaluate it) */
  private relation(): Blk {
    this.arth(0);
    if (!RELOPS.has(this.peek().type)) this.fail();
    this.next();
    this.arth(0);
    return this.unsupportedBlk('packet data arithmetic (expr relop expr)');
  }

  /** arithmetic with yacc's precedences: | < & < << >> < + - < * / % (^ and % bind as '*' here) */
  private arth(minPrec: number): void {
    this.arthUnary();
    for (;;) {
      const op = this.peek().type;
      const p = ARITH_PREC[op];
      if (p === undefined || p < minPrec) return;
      this.next();
      this.arth(p + 1);
    }
  }

  private arthUnary(): void {
    const t = this.peek();
    if (t.type === '-') {
      this.next();
      this.arthUnary();
      return;
    }
    if (t.type === 'NUM' || t.type === 'LEN') {
      this.next();
      return;
    }
    if (t.type === '(') {
      this.next();
      this.arth(0);
      this.expect(')');
      return;
    }
    if (PNAMES[t.type] !== undefined || OTHER_PNAMES.has(t.type)) {
      this.next();
      this.expect('[');
      this.arth(0);
      if (this.peek().type === ':') {
        this.next();
        this.expect('NUM');
      }
      this.expect(']');
      return;
    }
    this.fail();
  }

  private pnum(): number {
    if (this.peek().type === '(') {
      this.next();
      const n = this.pnum();
      this.expect(')');
      return n;
    }
    return this.expect('NUM').n!;
  }

  /** id: nid | pnum | paren pid ')' */
  private id(q: Qual): Blk {
    const t = this.peek().type;
    if (t === 'NUM') {
      const n = this.next().n!;
      return { b: this.g(() => this.gen.ncode(null, n, q)), q };
    }
    if (t === '(') return this.parenPid(q);
    return this.nid(q);
  }

  /** paren pid ')' (a parenthesised pnum is the same) */
  private parenPid(q: Qual): Blk {
    this.expect('(');
    const r = this.pid(q);
    this.expect(')');
    return r;
  }

  /** pid: nid | qid and id | qid or id; qid: pnum | pid */
  private pid(q: Qual): Blk {
    let left: Blk;
    const t = this.peek().type;
    if (t === 'NUM' || t === '(') {
      const n = this.pnum();
      left = { b: this.g(() => this.gen.ncode(null, n, q)), q };
    } else left = this.nid(q);
    for (;;) {
      const op = this.peek().type;
      if (op !== 'AND' && op !== 'OR') return left;
      this.next();
      const right = this.id(left.q);
      left = { b: this.g(() => (op === 'AND' ? and(left.b, right.b) : or(left.b, right.b))), q: right.q };
    }
  }

  private nid(q: Qual): Blk {
    const t = this.next();
    switch (t.type) {
      case 'ID':
        return { b: this.g(() => this.gen.scode(t.s!, q)), q };
      case 'HID': {
        if (this.peek().type === '/') {
          this.next();
          const n = this.expect('NUM').n!;
          return { b: this.g(() => this.gen.mcode(t.s!, null, n, q)), q };
        }
        if (this.peek().type === 'NETMASK') {
          this.next();
          const m = this.expect('HID').s!;
          return { b: this.g(() => this.gen.mcode(t.s!, m, 0, q)), q };
        }
        return {
          b: this.g(() => {
            for (const a of ['port', 'portrange', 'proto', 'protochain'] as const)
              if (q.addr === a) throw new FilterError(`'${a}' modifier applied to ip host`);
            return this.gen.ncode(t.s!, 0, q);
          }),
          q,
        };
      }
      case 'HID6': {
        let len = 128;
        if (this.peek().type === '/') {
          this.next();
          len = this.expect('NUM').n!;
        }
        return { b: this.g(() => this.gen.mcode6(t.s!, len, q)), q };
      }
      case 'EID':
        return { b: this.g(() => this.gen.ecode(t.s!, q)), q };
      case 'AID':
        return { b: this.g(() => this.gen.unsupported('an ARCnet address')), q };
      case '!': {
        const r = this.id(q);
        return { b: this.g(() => not(r.b)), q: r.q };
      }
      default:
        this.i--;
        return this.fail();
    }
  }
}

const ARITH_PREC: Record<string, number> = {
  '|': 1,
  '&': 2,
  LSH: 3,
  RSH: 3,
  '+': 4,
  '-': 4,
  '*': 5,
  '/': 5,
  '%': 5,
  '^': 5,
};

const DQUAL: Record<string, Dir> = {
  SRC: 'src',
  DST: 'dst',
  ADDR1: 'addr1',
  ADDR2: 'addr2',
  ADDR3: 'addr3',
  ADDR4: 'addr4',
  RA: 'ra',
  TA: 'ta',
};
const AQUAL: Record<string, Addr> = { HOST: 'host', NET: 'net', PORT: 'port', PORTRANGE: 'portrange' };
const isDqual = (t: string) => DQUAL[t] !== undefined;
const isAqual = (t: string) => AQUAL[t] !== undefined;

/* ------------------------------------------------------------------ API */

/**
 * Compiles `expression` for a link type (LINKTYPE_ETHERNET or LINKTYPE_RAW). Throws FilterError
 * with libpcap's message (without the `tcpdump: ` prefix). An empty expression matches everything.
 */
export function compileFilter(expression: string, linktype: number = LINKTYPE_ETHERNET): CompiledFilter {
  if (linktype !== LINKTYPE_ETHERNET && linktype !== LINKTYPE_RAW)
    throw new FilterError(`podwalk: link type ${linktype} in a filter is not emulated`, true);
  const parser = new Parser(new Lexer(expression), new Gen(linktype));
  const formula = parser.prog() ?? TRUE;
  if (!satisfiable(formula)) throw new FilterError('expression rejects all packets');
  const linkpl = linktype === LINKTYPE_ETHERNET ? 14 : 0;
  return {
    expression,
    linktype,
    formula,
    matches(packet: Uint8Array, wireLength = packet.length): boolean {
      try {
        return evaluate(formula, packet, linkpl, wireLength);
      } catch (e) {
        if (e instanceof Reject) return false;
        throw e;
      }
    },
  };
}
