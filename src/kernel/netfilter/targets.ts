/**
 * The target extensions podwalk models, one registry: REJECT, DNAT, SNAT, MASQUERADE (libxt_NAT
 * of iptables 1.8.9), MARK (rev 2), CT --notrack and NOTRACK. Each parses its options as the
 * extension does, prints itself as iptables-save and `iptables -L` do, and names the tables and
 * hooks the kernel accepts it in. ACCEPT, DROP, RETURN and jumps are no extensions.
 */
import { intToIp4, isValidIp4, ip4ToInt } from '../../wire/addr.ts';
import type { OptionSpec, TargetExtension } from './extension.ts';
import { parseMarkMask, parseUint32 } from './matches.ts';
import { hex, RuleSyntaxError, strtoul0, type ServiceLookup } from './parse.ts';
import type { NatRange, RejectWith, Target } from './types.ts';

const opt = (name: string, arg: boolean, more: Partial<OptionSpec> = {}): OptionSpec => ({
  name,
  arg,
  ...more,
});

type Of<K extends Target['kind']> = Extract<Target, { kind: K }>;

/* ------------------------------------------------------------ REJECT */

/** libipt_REJECT's table: canonical name, alias (case-insensitive prefixes match, first wins) */
export const REJECT_TYPES: readonly (readonly [RejectWith, string])[] = [
  ['icmp-net-unreachable', 'net-unreach'],
  ['icmp-host-unreachable', 'host-unreach'],
  ['icmp-proto-unreachable', 'proto-unreach'],
  ['icmp-port-unreachable', 'port-unreach'],
  ['icmp-net-prohibited', 'net-prohib'],
  ['icmp-host-prohibited', 'host-prohib'],
  ['tcp-reset', 'tcp-rst'],
  ['icmp-admin-prohibited', 'admin-prohib'],
];

const reject: TargetExtension<Of<'REJECT'>> = {
  name: 'REJECT',
  options: { 'reject-with': opt('reject-with', true) },
  hooks: ['INPUT', 'FORWARD', 'OUTPUT'],
  tables: ['filter'],
  init: () => ({ kind: 'REJECT', with: 'icmp-port-unreachable' }),
  parse(t, _o, arg) {
    const a = arg!.toLowerCase();
    const w = REJECT_TYPES.find(([n, alias]) => n.startsWith(a) || alias.startsWith(a));
    if (!w) throw new RuleSyntaxError(`unknown reject type "${arg}"`);
    t.with = w[0];
  },
  save: (t) => ` --reject-with ${t.with}`,
  print: (t) => ` reject-with ${t.with}`,
};

/* ------------------------------------------------------------ NAT */

const PORT_PROTOS = [6, 17, 132, 33, 1];

/** parse_ports of libxt_NAT */
function parseNatPorts(arg: string, portok: boolean, r: NatRange, services?: ServiceLookup): void {
  if (!portok) throw new RuleSyntaxError('Need TCP, UDP, SCTP or DCCP with port specification');
  const first = strtoul0(arg);
  let port: number;
  let rest: string;
  if (!first || first.value > 0xffff) {
    // xtables_service_to_port(arg, NULL): a service name, as a single port
    const byName = services?.(arg, 'tcp') ?? services?.(arg, 'udp');
    if (byName === undefined) throw new RuleSyntaxError(`Port \`${arg}' not valid`);
    port = byName;
    rest = '';
  } else {
    port = first.value;
    rest = first.rest;
  }
  if (rest === '') {
    r.minPort = r.maxPort = port;
    return;
  }
  if (rest[0] === ':') throw new RuleSyntaxError('Invalid port:port syntax - use dash');
  if (rest[0] !== '-') throw new RuleSyntaxError(`Garbage after port value: \`${rest}'`);
  const tail = rest.slice(1);
  const second = strtoul0(tail);
  if (!second || second.value > 0xffff) throw new RuleSyntaxError(`Port \`${tail}' not valid`);
  if (second.value < port) throw new RuleSyntaxError(`Port range \`${tail}' funky`);
  if (second.rest !== '') {
    if (second.rest[0] === '/') throw new RuleSyntaxError('podwalk does not model shifted port maps (/port)');
    throw new RuleSyntaxError(`Garbage after port range: \`${second.rest}'`);
  }
  r.minPort = port;
  r.maxPort = second.value;
}

/** parse_to of libxt_NAT: [ip[-ip]][:port[-port]] */
function parseNatTo(arg: string, portok: boolean, r: NatRange, services?: ServiceLookup): void {
  let colon = arg.indexOf(':');
  if (colon >= 0 && arg.indexOf(':', colon + 1) >= 0) colon = -1;
  let addr = arg;
  if (colon >= 0) {
    parseNatPorts(arg.slice(colon + 1), portok, r, services);
    if (colon === 0) return;
    addr = arg.slice(0, colon);
  }
  const dash = addr.indexOf('-');
  const lo = dash < 0 ? addr : addr.slice(0, dash);
  if (!isValidIp4(lo)) throw new RuleSyntaxError(`Bad IP address "${lo}"`);
  r.minIp = r.maxIp = ip4ToInt(lo);
  if (dash >= 0) {
    const hi = addr.slice(dash + 1);
    if (!isValidIp4(hi)) throw new RuleSyntaxError(`Bad IP address "${hi}"`);
    r.maxIp = ip4ToInt(hi);
  }
}

/** sprint_range + the flags, as __NAT_print does for -L ("to:", "masq ports: ") and save */
export function natRangeText(r: NatRange, rangeopt: string, flagPrefix: string, skipColon: boolean): string {
  let s = '';
  if (r.minIp !== undefined) {
    s += intToIp4(r.minIp);
    if (r.maxIp !== r.minIp) s += `-${intToIp4(r.maxIp!)}`;
  }
  if (r.minPort !== undefined) {
    s += `:${r.minPort}`;
    if (r.maxPort !== r.minPort) s += `-${r.maxPort}`;
  }
  let out = '';
  if (s) out += ` ${rangeopt}${s[0] === ':' && skipColon ? s.slice(1) : s}`;
  if (r.random) out += ` ${flagPrefix}random`;
  if (r.randomFully) out += ` ${flagPrefix}random-fully`;
  if (r.persistent) out += ` ${flagPrefix}persistent`;
  return out;
}

type NatTarget = Of<'DNAT'> | Of<'SNAT'> | Of<'MASQUERADE'>;

function nat(
  kind: NatTarget['kind'],
  rangeOpt: string,
  hooks: TargetExtension<NatTarget>['hooks'],
): TargetExtension<NatTarget> {
  const options: Record<string, OptionSpec> =
    kind === 'MASQUERADE'
      ? { 'to-ports': opt('to-ports', true) }
      : { [rangeOpt]: opt(rangeOpt, true, { mandatory: true }) };
  options.random = opt('random', false);
  if (kind !== 'DNAT') options['random-fully'] = opt('random-fully', false);
  if (kind !== 'MASQUERADE') options.persistent = opt('persistent', false);
  const masq = kind === 'MASQUERADE';
  return {
    name: kind,
    options,
    tables: ['nat'],
    hooks,
    conntrack: true,
    init: () => ({ kind, range: {} }),
    parse(t, o, arg, _neg, env) {
      const p = env.rule.proto;
      const portok = !!p && !p.neg && PORT_PROTOS.includes(p.v);
      if (o === 'random') t.range.random = true;
      else if (o === 'random-fully') t.range.randomFully = true;
      else if (o === 'persistent') t.range.persistent = true;
      else if (o === 'to-ports') parseNatPorts(arg!, portok, t.range, env.services);
      else parseNatTo(arg!, portok, t.range, env.services);
    },
    save: (t) => natRangeText(t.range, masq ? '--to-ports ' : `--${rangeOpt} `, '--', masq),
    print: (t) => natRangeText(t.range, masq ? 'masq ports: ' : 'to:', '', masq),
  };
}

/* ------------------------------------------------------------ MARK, CT, NOTRACK */

const MARK_OPS = ['set-xmark', 'set-mark', 'and-mark', 'or-mark', 'xor-mark'];

const markTarget: TargetExtension<Of<'MARK'>> = {
  name: 'MARK',
  options: Object.fromEntries(
    MARK_OPS.map((o) => [o, opt(o, true, { excl: MARK_OPS.filter((x) => x !== o) })]),
  ),
  init: () => ({ kind: 'MARK', value: 0, mask: 0 }),
  parse(t, o, arg) {
    const a = arg!;
    if (o === 'set-xmark' || o === 'set-mark') {
      const { value, mask } = parseMarkMask(a, 'MARK', o);
      t.value = value;
      t.mask = o === 'set-xmark' ? mask : (mask | value) >>> 0;
      return;
    }
    const v = parseUint32(a, 'MARK', o);
    if (o === 'and-mark') Object.assign(t, { value: 0, mask: ~v >>> 0 });
    else if (o === 'or-mark') Object.assign(t, { value: v, mask: v });
    else Object.assign(t, { value: v, mask: 0 });
  },
  final(_t, seen) {
    if (seen.size === 0)
      throw new RuleSyntaxError('MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required');
  },
  save: (t) => ` --set-xmark ${hex(t.value)}/${hex(t.mask)}`,
  print(t) {
    if (t.value === 0) return ` MARK and ${hex(~t.mask >>> 0)}`;
    if (t.value === t.mask) return ` MARK or ${hex(t.value)}`;
    if (t.mask === 0) return ` MARK xor ${hex(t.value)}`;
    if (t.mask === 0xffffffff) return ` MARK set ${hex(t.value)}`;
    return ` MARK xset ${hex(t.value)}/${hex(t.mask)}`;
  },
};

const unmodelled = (name: string, arg = true): OptionSpec => opt(name, arg, { modelled: false });

const ct: TargetExtension<Of<'CT'>> = {
  name: 'CT',
  options: {
    notrack: opt('notrack', false),
    helper: unmodelled('helper'),
    ctevents: unmodelled('ctevents'),
    expevents: unmodelled('expevents'),
    zone: unmodelled('zone'),
    'zone-orig': unmodelled('zone-orig'),
    'zone-reply': unmodelled('zone-reply'),
    timeout: unmodelled('timeout'),
  },
  tables: ['raw'],
  conntrack: true,
  init: () => ({ kind: 'CT', notrack: false }),
  parse(t) {
    t.notrack = true;
  },
  final(t) {
    if (!t.notrack) throw new RuleSyntaxError('podwalk models CT only with --notrack');
  },
  save: () => ' --notrack',
  print: () => ' CT notrack',
};

const notrack: TargetExtension<Of<'CT'>> = {
  name: 'NOTRACK',
  options: {},
  tables: ['raw'],
  conntrack: true,
  listName: 'CT',
  init: () => ({ kind: 'CT', notrack: true, alias: 'NOTRACK' }),
  parse() {},
  save: () => '',
  print: () => ' NOTRACK',
};

/* ------------------------------------------------------------ the registry */

/** target extensions by the name `-j` takes */
export const TARGETS: Readonly<Record<string, TargetExtension<Target>>> = {
  REJECT: reject,
  DNAT: nat('DNAT', 'to-destination', ['PREROUTING', 'OUTPUT']),
  SNAT: nat('SNAT', 'to-source', ['POSTROUTING', 'INPUT']),
  MASQUERADE: nat('MASQUERADE', 'to-ports', ['POSTROUTING']),
  MARK: markTarget,
  CT: ct,
  NOTRACK: notrack,
} as unknown as Record<string, TargetExtension<Target>>;

export const STANDARD_TARGETS = ['ACCEPT', 'DROP', 'RETURN'] as const;

/** the extension of a target record (undefined for ACCEPT, DROP, RETURN, jumps) */
export function targetExt(t: Target): TargetExtension<Target> | undefined {
  if (t.kind === 'CT' && t.alias === 'NOTRACK') return TARGETS.NOTRACK;
  return Object.prototype.hasOwnProperty.call(TARGETS, t.kind) ? TARGETS[t.kind] : undefined;
}

/** the name after -j (or -g) */
export function targetName(t: Target): string {
  if (t.kind === 'jump' || t.kind === 'goto') return t.chain;
  if (t.kind === 'CT' && t.alias) return t.alias;
  return t.kind;
}

/** every target extension iptables 1.8.9 ships: a chain may not take one of these names */
export const IPTABLES_TARGETS = (
  'CLUSTERIP ECN NETMAP REJECT TTL ULOG AUDIT CHECKSUM CLASSIFY CONNMARK CONNSECMARK CT DNAT DSCP ' +
  'HMARK IDLETIMER LED LOG MARK MASQUERADE NFLOG NFQUEUE NOTRACK RATEEST REDIRECT SECMARK SET SNAT ' +
  'SYNPROXY TCPMSS TCPOPTSTRIP TEE TOS TPROXY TRACE'
).split(' ');
