/**
 * The emulated `ip` of iproute2 6.1: `ip [OPTIONS] OBJECT COMMAND` for the objects link,
 * address, route and neigh, printing what the real tool prints for the same kernel state
 * (text, -j, -j -p, -d, -s, -br, -o, -4) and refusing what it refuses, with its messages and
 * exit codes. State comes from, and mutations go to, the model (kernel/netlink.ts).
 */
import {
  addressAdd,
  addressDel,
  linkAdd,
  linkDel,
  linkSetMtu,
  linkSetUp,
  neighAdd,
  neighDel,
  NetlinkError,
} from '../kernel/netlink.ts';
import { NUD_STATES, type Link, type NeighEntry, type Netns, type NudState } from '../kernel/objects.ts';
import { derivedMac } from '../kernel/world.ts';
import { inPrefix } from '../wire/addr.ts';
import {
  Args,
  Ctx,
  defaultOpts,
  duparg,
  duparg2,
  getAddr,
  getPrefix,
  getUnsigned,
  invarg,
  matches,
  nodev,
  parseLladdr,
  runTool,
  strtoul,
  talk,
  type Opts,
  type Prefix,
} from './iproute-common.ts';
import {
  addrList,
  ifFlags,
  IFF,
  printAddrinfo,
  printLinkinfo,
  printStats64,
  stats64,
} from './iproute-link.ts';
import { PRINT_ANY, PRINT_FP, PRINT_JSON, Printer } from './iproute-print.ts';
import { doIproute, scopeA2n, scopeFilter } from './iproute-route.ts';
import type { Tool } from './types.ts';

export const IP_VERSION = 'ip utility, iproute2-6.1.0, libbpf 1.1.2';

const IP_USAGE =
  'Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }\n' +
  '       ip [ -force ] -batch filename\n' +
  'where  OBJECT := { address | addrlabel | amt | fou | help | ila | ioam | l2tp |\n' +
  '                   link | macsec | maddress | monitor | mptcp | mroute | mrule |\n' +
  '                   neighbor | neighbour | netconf | netns | nexthop | ntable |\n' +
  '                   ntbl | route | rule | sr | tap | tcpmetrics |\n' +
  '                   token | tunnel | tuntap | vrf | xfrm }\n' +
  '       OPTIONS := { -V[ersion] | -s[tatistics] | -d[etails] | -r[esolve] |\n' +
  '                    -h[uman-readable] | -iec | -j[son] | -p[retty] |\n' +
  '                    -f[amily] { inet | inet6 | mpls | bridge | link } |\n' +
  '                    -4 | -6 | -M | -B | -0 |\n' +
  '                    -l[oops] { maximum-addr-flush-attempts } | -br[ief] |\n' +
  '                    -o[neline] | -t[imestamp] | -ts[hort] | -b[atch] [filename] |\n' +
  '                    -rc[vbuf] [size] | -n[etns] name | -N[umeric] | -a[ll] |\n' +
  '                    -c[olor]}\n';

function notEmulated(c: Ctx, what: string): never {
  c.p.eprintf('podwalk: "%s" is not emulated\n', what);
  return c.exit(2);
}

/* ================================================================== ip address / ip link show */

interface AddrFilter {
  ifindex: number;
  up: boolean;
  scope: number;
  scopemask: number;
  flags: number;
  flagmask: number;
  label?: string;
  pfx?: Prefix;
  master: number;
  kind?: string;
  slaveKind?: string;
  family: Opts['family'];
}

const IFA_F_SECONDARY = 0x01;
const IFA_F_PERMANENT = 0x80;
const IFA_FLAG_NAMES: Record<string, number> = {
  secondary: IFA_F_SECONDARY,
  temporary: IFA_F_SECONDARY,
  nodad: 0x02,
  optimistic: 0x04,
  dadfailed: 0x08,
  home: 0x10,
  deprecated: 0x20,
  tentative: 0x40,
  permanent: IFA_F_PERMANENT,
  mngtmpaddr: 0x100,
  noprefixroute: 0x200,
  autojoin: 0x400,
  'stable-privacy': 0x800,
};

/** get_filter(): a FLAG of `ip addr show`; false when the word is not one */
function getFlagFilter(f: AddrFilter, word: string): boolean {
  let arg = word;
  let inv = false;
  if (arg.startsWith('-')) {
    inv = true;
    arg = arg.slice(1);
  }
  if (arg === 'dynamic') {
    inv = !inv;
    arg = 'permanent';
  } else if (arg === 'primary') {
    inv = !inv;
    arg = 'secondary';
  }
  const mask = IFA_FLAG_NAMES[arg];
  if (mask === undefined) return false;
  if (inv) f.flags &= ~mask;
  else f.flags |= mask;
  f.flagmask |= mask;
  return true;
}

const SCOPE_NUM = { global: 0, link: 253, host: 254 } as const;

function globMatch(pattern: string, s: string): boolean {
  const re = new RegExp(
    '^' +
      pattern
        .split('')
        .map((ch) => (ch === '*' ? '.*' : ch === '?' ? '.' : ch.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
        .join('') +
      '$',
  );
  return re.test(s);
}

function addrPasses(
  f: AddrFilter,
  dev: Link,
  a: { ip: string; len: number; scope: keyof typeof SCOPE_NUM },
  secondary: boolean,
): boolean {
  if (f.family !== 'unspec' && f.family !== 'inet') return false;
  if ((f.scope ^ SCOPE_NUM[a.scope]) & f.scopemask) return false;
  const flags = (secondary ? IFA_F_SECONDARY : 0) | IFA_F_PERMANENT;
  if ((f.flags ^ flags) & f.flagmask) return false;
  if (f.label && !globMatch(f.label, dev.name)) return false;
  if (f.pfx && f.pfx.addr && f.pfx.bitlen > 0 && !inPrefix(a.ip, f.pfx.addr, f.pfx.bitlen)) return false;
  return true;
}

function linkPasses(c: Ctx, f: AddrFilter, l: Link): boolean {
  if (f.ifindex && l.ifindex !== f.ifindex) return false;
  if (f.up && !(ifFlags(c, l) & IFF.UP)) return false;
  if (f.master > 0 && (!l.master || c.nameToIndex(l.master) !== f.master)) return false;
  if (f.kind && l.type !== f.kind && !(f.kind === 'ipip' && l.type === 'ipip')) return false;
  if (f.slaveKind && !(f.slaveKind === 'bridge' && l.master)) return false;
  return true;
}

function ipaddrList(c: Ctx, argv: readonly string[], doLink: boolean, flush: boolean): number {
  const o = c.opts;
  const f: AddrFilter = {
    ifindex: 0,
    up: false,
    scope: 0,
    scopemask: 0,
    flags: 0,
    flagmask: 0,
    master: 0,
    family: doLink ? 'link' : o.family,
  };
  if (flush) {
    if (!argv.length) {
      c.p.eprintf('Flush requires arguments.\n');
      return -1;
    }
    if (f.family === 'link') {
      c.p.eprintf('Cannot flush link addresses.\n');
      return -1;
    }
  }
  let filterDev: string | undefined;
  const a = new Args(c, argv);
  for (; a.more; a.advance()) {
    const w = a.cur;
    if (w === 'to') {
      const arg = a.next();
      if (f.family === 'link') {
        c.p.eprintf('Error: "%s" may be inet prefix, but it is not allowed in this context.\n', arg);
        return c.exit(1);
      }
      f.pfx = getPrefix(c, arg);
      if (f.family === 'unspec') f.family = 'inet';
    } else if (w === 'scope') scopeFilter(c, f, a.next());
    else if (w === 'up') f.up = true;
    else if (getFlagFilter(f, w)) continue;
    else if (w === 'label') f.label = a.next();
    else if (w === 'group') {
      const arg = a.next();
      if (arg !== 'default' && arg !== '0') invarg(c, 'Invalid "group" value\n', arg);
    } else if (w === 'master') {
      const arg = a.next();
      const idx = c.nameToIndex(arg);
      if (!idx) invarg(c, 'Device does not exist\n', arg);
      f.master = idx;
    } else if (w === 'vrf') {
      const arg = a.next();
      if (!c.nameToIndex(arg)) invarg(c, 'Not a valid VRF name\n', arg);
      invarg(c, 'Not a valid VRF name\n', arg);
    } else if (w === 'nomaster') f.master = -1;
    else if (w === 'type') {
      const arg = a.next();
      if (arg.endsWith('_slave')) f.slaveKind = arg.slice(0, -'_slave'.length);
      else f.kind = arg;
    } else {
      let arg = w;
      if (arg === 'dev') arg = a.next();
      else if (matches(arg, 'help')) notEmulated(c, 'ip address help');
      if (filterDev) duparg2(c, 'dev', arg);
      filterDev = arg;
    }
  }
  if (filterDev) {
    f.ifindex = c.nameToIndex(filterDev);
    if (f.ifindex <= 0) {
      c.p.eprintf('Device "%s" does not exist.\n', filterDev);
      return -1;
    }
  }
  const p = c.p;
  if (flush) {
    for (const l of c.links())
      for (const { a: ad, secondary } of addrList(l))
        if ((!f.ifindex || l.ifindex === f.ifindex) && addrPasses(f, l, ad, secondary))
          talk(c, () => {
            try {
              addressDel(c.netns, l.name, ad.ip, ad.len);
            } catch (e) {
              // deleting a primary took its secondaries with it: EADDRNOTAVAIL is ignored
              if (!(e instanceof NetlinkError && e.code === 'EADDRNOTAVAIL')) throw e;
            }
          });
    return 0;
  }
  p.newJsonObj();
  if (filterDev && doLink) {
    const l = c.byIndex(f.ifindex)!;
    p.openObject();
    printLinkinfo(c, l, { doLink: true, family: 'link' });
    p.closeObject();
    p.deleteJsonObj();
    return 0;
  }
  let links = f.ifindex ? [c.byIndex(f.ifindex)!] : c.links();
  // the kernel filters the dump by master and kind (iplink_filter_req)
  if (!f.ifindex) {
    if (f.master > 0) links = links.filter((l) => l.master && c.nameToIndex(l.master) === f.master);
    if (f.kind) links = links.filter((l) => l.type === f.kind);
  }
  if (f.family !== 'link') {
    // ipaddr_filter: keep links with a matching address, and address-less links when no family is asked
    links = links.filter((l) => {
      const list = addrList(l);
      if (!list.length) return f.family === 'unspec';
      return list.some(({ a: ad, secondary }) => addrPasses(f, l, ad, secondary));
    });
  }
  const noLink = o.oneline && f.family !== 'link';
  for (const l of links) {
    p.openObject();
    let res = 0;
    if (o.brief || !noLink) res = linkPasses(c, f, l) ? (o.brief ? 0 : 1) : -1;
    if (res >= 0 && (o.brief || !noLink))
      printLinkinfo(c, l, {
        doLink,
        family: f.family === 'link' ? 'link' : f.family === 'inet' ? 'inet' : 'unspec',
      });
    if (res >= 0 && f.family !== 'link') {
      p.openArray(PRINT_JSON, 'addr_info');
      for (const { a: ad, secondary } of addrList(l)) {
        if (f.up && !l.up) continue;
        p.openObject();
        if (addrPasses(f, l, ad, secondary)) printAddrinfo(c, l, ad, secondary);
        p.closeObject();
      }
      p.closeArray(PRINT_JSON, undefined);
      if (o.brief) p.string(PRINT_FP, undefined, '%s', '\n');
    }
    if (res > 0 && !doLink && o.stats) {
      printStats64(c, stats64(c, l), 'stats64');
      p.nl();
    }
    p.closeObject();
  }
  p.deleteJsonObj();
  return 0;
}

function ipaddrModify(c: Ctx, argv: readonly string[], del: boolean): number {
  let d: string | undefined;
  let lcl: Prefix | undefined;
  let lclArg = '';
  let scope: number | undefined;
  const a = new Args(c, argv);
  for (; a.more; a.advance()) {
    const w = a.cur;
    if (w === 'peer' || w === 'remote' || matches(w, 'broadcast') || w === 'brd' || w === 'anycast')
      notEmulated(c, `ip address ${del ? 'del' : 'add'} ${w}`);
    else if (w === 'scope') {
      const arg = a.next();
      scope = scopeA2n(arg);
      if (scope === undefined) invarg(c, 'invalid scope value.', arg);
    } else if (w === 'dev') d = a.next();
    else if (w === 'label') notEmulated(c, 'ip address label');
    else if (matches(w, 'metric') || matches(w, 'priority') || matches(w, 'preference'))
      notEmulated(c, `ip address ${w}`);
    else if (matches(w, 'valid_lft') || matches(w, 'preferred_lft')) {
      const arg = a.next();
      if (arg !== 'forever') notEmulated(c, `ip address ${w} ${arg}`);
    } else if (w in IFA_FLAG_NAMES) notEmulated(c, `ip address ${w}`);
    else {
      let arg = w;
      if (arg === 'local') arg = a.next();
      if (matches(arg, 'help')) notEmulated(c, 'ip address help');
      if (lcl) duparg2(c, 'local', arg);
      lclArg = arg;
      lcl = getPrefix(c, arg);
    }
  }
  if (!d) {
    c.p.eprintf('Not enough information: "dev" argument is required.\n');
    return -1;
  }
  if (lcl && del && !lcl.lenGiven)
    c.p.eprintf(
      'Warning: Executing wildcard deletion to stay compatible with old scripts.\n' +
        '         Explicitly specify the prefix length (%s/%d) to avoid this warning.\n' +
        '         This special behaviour is likely to disappear in further releases,\n' +
        '         fix your scripts!\n',
      lclArg,
      32,
    );
  if (!c.nameToIndex(d)) return nodev(c, d);
  if (!lcl || !lcl.addr) {
    if (del) {
      // a delete without an address deletes the device's first address
      const l = c.netns.link(d)!;
      if (!l.addrs.length) {
        c.p.eprintf('Error: ipv4: Address not found.\n');
        return -2;
      }
      return talk(c, () => addressDel(c.netns, d!, l.addrs[0].ip)) ? 0 : -2;
    }
    notEmulated(c, 'ip address add without an IPv4 address');
  }
  const scopeName =
    scope === undefined
      ? undefined
      : (Object.entries(SCOPE_NUM).find(([, n]) => n === scope)?.[0] as keyof typeof SCOPE_NUM | undefined);
  if (scope !== undefined && !scopeName) notEmulated(c, `scope ${scope}`);
  const ok = talk(c, () => {
    if (del) addressDel(c.netns, d!, lcl!.addr!, lcl!.lenGiven ? lcl!.bitlen : undefined);
    else addressAdd(c.netns, d!, lcl!.addr!, lcl!.bitlen, scopeName);
  });
  return ok ? 0 : -2;
}

function doIpaddr(c: Ctx, argv: readonly string[]): number {
  if (!argv.length) return ipaddrList(c, [], false, false);
  const [w, ...rest] = argv;
  if (matches(w, 'add')) return ipaddrModify(c, rest, false);
  if (matches(w, 'change') || w === 'chg' || matches(w, 'replace')) return ipaddrModifyReplace(c, rest);
  if (matches(w, 'delete')) return ipaddrModify(c, rest, true);
  if (matches(w, 'list') || matches(w, 'show') || matches(w, 'lst')) return ipaddrList(c, rest, false, false);
  if (matches(w, 'flush')) return ipaddrList(c, rest, false, true);
  if (matches(w, 'save') || matches(w, 'showdump') || matches(w, 'restore') || matches(w, 'help'))
    notEmulated(c, `ip address ${w}`);
  c.p.eprintf('Command "%s" is unknown, try "ip address help".\n', w);
  return c.exit(-1);
}

/** `ip addr replace`: like add, but an address that is already there is not an error */
function ipaddrModifyReplace(c: Ctx, argv: readonly string[]): number {
  const before = c.p.stderr;
  const r = ipaddrModify(c, argv, false);
  if (r === -2 && c.p.stderr.slice(before.length) === 'Error: ipv4: Address already assigned.\n') {
    c.p.stderr = before;
    return 0;
  }
  return r;
}

/* ================================================================== ip link */

function iplinkSet(c: Ctx, argv: readonly string[]): number {
  let dev: string | undefined;
  let up: boolean | undefined;
  let mtu: number | undefined;
  const a = new Args(c, argv);
  for (; a.more; a.advance()) {
    const w = a.cur;
    if (w === 'up') up = true;
    else if (w === 'down') up = false;
    else if (w === 'mtu') {
      const arg = a.next();
      if (mtu !== undefined) duparg(c, 'mtu', arg);
      const { value, used } = strtoul(arg, 0);
      if (!arg || used !== arg.length || value > 2147483647 || value < -2147483648)
        invarg(c, 'Invalid "mtu" value\n', arg);
      mtu = value;
    } else if (
      [
        'name',
        'index',
        'netns',
        'multicast',
        'allmulticast',
        'promisc',
        'trailers',
        'arp',
        'carrier',
        'vf',
        'vrf',
      ].includes(w) ||
      [
        'xdpgeneric',
        'xdpdrv',
        'xdpoffload',
        'xdp',
        'group',
        'mode',
        'state',
        'protodown',
        'protodown_reason',
      ].includes(w) ||
      ['gso_max_size', 'gso_max_segs', 'gro_max_size', 'parentdev'].includes(w) ||
      [
        'link',
        'address',
        'broadcast',
        'txqueuelen',
        'txqlen',
        'master',
        'nomaster',
        'dynamic',
        'type',
        'alias',
      ].some((x) => matches(w, x)) ||
      w === 'brd' ||
      w === 'qlen' ||
      ['numtxqueues', 'numrxqueues', 'addrgenmode', 'link-netns', 'link-netnsid'].some((x) => matches(w, x))
    )
      notEmulated(c, `ip link set ${w}`);
    else {
      let arg = w;
      if (matches(arg, 'help')) notEmulated(c, 'ip link help');
      if (arg === 'dev') arg = a.next();
      if (dev !== undefined) duparg2(c, 'dev', arg);
      dev = arg;
    }
  }
  if (!dev) {
    c.p.eprintf('Not enough information: "dev" argument is required.\n');
    return c.exit(-1);
  }
  if (!c.nameToIndex(dev)) return nodev(c, dev);
  const name = c.byIndex(c.nameToIndex(dev))!.name;
  // do_setlink: the MTU first, then the flags; an error leaves the rest undone
  const ok = talk(c, () => {
    if (mtu !== undefined) linkSetMtu(c.netns, name, mtu);
    if (up !== undefined) linkSetUp(c.world, c.netns, name, up);
  });
  return ok ? 0 : -2;
}

const VXLAN_USAGE = `Usage: ... vxlan id VNI
		[ { group | remote } IP_ADDRESS ]
		[ local ADDR ]
		[ ttl TTL ]
		[ tos TOS ]
		[ df DF ]
		[ flowlabel LABEL ]
		[ dev PHYS_DEV ]
		[ dstport PORT ]
		[ srcport MIN MAX ]
		[ [no]learning ]
		[ [no]proxy ]
		[ [no]rsc ]
		[ [no]l2miss ]
		[ [no]l3miss ]
		[ ageing SECONDS ]
		[ maxaddress NUMBER ]
		[ [no]udpcsum ]
		[ [no]udp6zerocsumtx ]
		[ [no]udp6zerocsumrx ]
		[ [no]remcsumtx ] [ [no]remcsumrx ]
		[ [no]external ] [ gbp ] [ gpe ]
		[ [no]vnifilter ]

Where:	VNI	:= 0-16777215
	ADDR	:= { IP_ADDRESS | any }
	TOS	:= { NUMBER | inherit }
	TTL	:= { 1..255 | auto | inherit }
	DF	:= { unset | set | inherit }
	LABEL := 0-1048575
`;

/** iplink_parse's device part: [name] NAME [address LLADDR] [mtu MTU] [index IDX], up to `type` */
interface LinkSpec {
  name?: string;
  mac?: string;
  mtu?: number;
  index?: number;
}

function parseLinkSpec(c: Ctx, a: Args, what: string, stopAtType: boolean): LinkSpec {
  const o: LinkSpec = {};
  for (; a.more; a.advance()) {
    const w = a.cur;
    if (stopAtType && w === 'type') break;
    if (w === 'mtu') {
      const arg = a.next();
      if (o.mtu !== undefined) duparg(c, 'mtu', arg);
      const v = getUnsigned(arg, 0);
      if (v === undefined || v > 2147483647) invarg(c, 'Invalid "mtu" value\n', arg);
      o.mtu = v;
    } else if (matches(w, 'address')) {
      const arg = a.next();
      const mac = parseLladdr(c, arg);
      if (mac === undefined) return c.exit(-1);
      o.mac = mac;
    } else if (w === 'index') {
      const arg = a.next();
      const v = getUnsigned(arg, 0);
      if (v === undefined || v > 2147483647) invarg(c, 'Invalid "index" value', arg);
      o.index = v;
    } else if (
      [
        'txqueuelen',
        'txqlen',
        'qlen',
        'broadcast',
        'brd',
        'link',
        'netns',
        'group',
        'alias',
        'numtxqueues',
      ].some((x) => w === x) ||
      [
        'numrxqueues',
        'gso_max_size',
        'gso_max_segs',
        'gro_max_size',
        'addrgenmode',
        'master',
        'vrf',
      ].includes(w)
    )
      notEmulated(c, `${what} ${w}`);
    else {
      let arg = w;
      if (arg === 'name' || arg === 'dev') arg = a.next();
      if (o.name !== undefined) duparg2(c, 'name', arg);
      o.name = arg;
    }
  }
  return o;
}

/** the first free name of a pattern the kernel fills in (dev_alloc_name: "veth%d") */
function allocName(ns: Netns, pattern: string): string {
  for (let i = 0; ; i++)
    if (!ns.links.has(pattern.replace('%d', String(i)))) return pattern.replace('%d', String(i));
}

/**
 * `ip link add [name] NAME [address LLADDR] [mtu MTU] [index IDX] type veth|bridge|vxlan …`
 * (iplink_modify with NLM_F_CREATE|NLM_F_EXCL): veth with `peer [name] P [address] [mtu]`,
 * bridge, and vxlan with `id`, `dev`, `local`, `dstport` (without it, iproute2's warning and the
 * kernel's default 8472), `[no]learning`, `[no]udpcsum`. The kernel's checks come from the
 * netlink API: a name in use is EEXIST (`RTNETLINK answers: File exists`), one VXLAN device per
 * VNI and port, an MTU out of the device's range; a VXLAN device over `dev` is clamped to its MTU
 * less 50 (vxlan_config_apply; `ip link set … mtu` above it is EINVAL). Addresses the kernel
 * would draw at random are derived from the names.
 */
function iplinkAdd(c: Ctx, argv: readonly string[]): number {
  const a = new Args(c, argv);
  const spec = parseLinkSpec(c, a, 'ip link add', true);
  if (!a.more) {
    c.p.eprintf('Not enough information: "type" argument is required\n');
    return c.exit(-1);
  }
  const type = a.next();
  a.advance();
  const ns = c.netns;
  const w = c.world;
  const mac = (name: string, m?: string) => m ?? derivedMac(`${w.seed}|${ns.name}|${name}`);
  if (type === 'bridge') {
    if (a.more) notEmulated(c, `ip link add type bridge ${a.cur}`);
    const name = spec.name ?? allocName(ns, 'bridge%d');
    return talk(c, () => {
      linkAdd(w, ns, {
        type: 'bridge',
        name,
        mac: mac(name, spec.mac),
        mtu: spec.mtu ?? 1500,
        ifindex: spec.index,
      });
    })
      ? 0
      : -2;
  }
  if (type === 'veth') {
    let peer: LinkSpec = {};
    if (a.more) {
      if (a.cur !== 'peer') notEmulated(c, `ip link add type veth ${a.cur}`);
      a.advance();
      peer = parseLinkSpec(c, a, 'ip link add type veth peer', false);
    }
    const name = spec.name ?? allocName(ns, 'veth%d');
    const peerName =
      peer.name ??
      allocName({ links: new Map([...ns.links, [name, undefined]]) } as unknown as Netns, 'veth%d');
    return talk(c, () => {
      linkAdd(w, ns, {
        type: 'veth',
        name,
        mac: mac(name, spec.mac),
        mtu: spec.mtu ?? 1500,
        ifindex: spec.index,
        peer: {
          netns: ns,
          name: peerName,
          mac: mac(peerName, peer.mac),
          mtu: peer.mtu ?? 1500,
          ifindex: peer.index,
        },
      });
    })
      ? 0
      : -2;
  }
  if (type === 'vxlan') {
    let vni: number | undefined;
    let dev = '';
    let local = '';
    let dstport: number | undefined;
    let learning = true;
    let udpcsum = true;
    for (; a.more; a.advance()) {
      const x = a.cur;
      if (x === 'id' || x === 'vni') {
        const arg = a.next();
        const v = getUnsigned(arg, 0);
        if (v === undefined || v >= 1 << 24) invarg(c, 'invalid id', arg);
        vni = v;
      } else if (x === 'dev') {
        const arg = a.next();
        if (!c.nameToIndex(arg)) c.exit(nodev(c, arg));
        dev = arg;
      } else if (x === 'local') {
        const arg = a.next();
        local = getAddr(c, arg);
      } else if (x === 'dstport' || x === 'port') {
        const arg = a.next();
        const v = getUnsigned(arg, 0);
        if (v === undefined || v > 0xffff) invarg(c, 'dstport', arg);
        dstport = v;
      } else if (x === 'learning') learning = true;
      else if (x === 'nolearning') learning = false;
      else if (x === 'udpcsum') udpcsum = true;
      else if (x === 'noudpcsum') udpcsum = false;
      else if (
        [
          'remote',
          'group',
          'ttl',
          'tos',
          'df',
          'flowlabel',
          'srcport',
          'ageing',
          'maxaddress',
          'proxy',
          'noproxy',
          'rsc',
          'norsc',
          'l2miss',
          'nol2miss',
          'l3miss',
          'nol3miss',
          'external',
          'noexternal',
          'gbp',
          'gpe',
          'vnifilter',
          'novnifilter',
        ].includes(x)
      )
        notEmulated(c, `ip link add type vxlan ${x}`);
      else {
        c.p.eprintf('vxlan: unknown command "%s"?\n', x);
        c.p.stderr += VXLAN_USAGE;
        return -1;
      }
    }
    if (vni === undefined) {
      c.p.eprintf('vxlan: missing virtual network identifier\n');
      return -1;
    }
    if (dstport === undefined)
      c.p.stderr +=
        'vxlan: destination port not specified\nWill use Linux kernel default (non-standard value)\n' +
        "Use 'dstport 4789' to get the IANA assigned value\nUse 'dstport 0' to get default and quiet this message\n";
    const name = spec.name ?? allocName(ns, 'vxlan%d');
    return talk(c, () => {
      linkAdd(w, ns, {
        type: 'vxlan',
        name,
        mac: mac(name, spec.mac),
        mtu: spec.mtu ?? 1500,
        ifindex: spec.index,
        vni: vni!,
        local,
        dev,
        // vxlan_nl2conf: no port given (or 0) is IANA's predecessor, 8472
        dstport: dstport || 8472,
        learning,
        udpcsum,
      });
    })
      ? 0
      : -2;
  }
  notEmulated(c, `ip link add type ${type}`);
}

/** `ip link del [dev] NAME` (iplink_modify without NLM_F_CREATE): the netlink API's linkDel */
function iplinkDel(c: Ctx, argv: readonly string[]): number {
  const a = new Args(c, argv);
  const spec = parseLinkSpec(c, a, 'ip link del', true);
  if (a.more) notEmulated(c, 'ip link del type');
  if (!spec.name) {
    c.p.eprintf('Not enough information: "dev" argument is required.\n');
    return c.exit(-1);
  }
  if (spec.mtu !== undefined || spec.mac !== undefined || spec.index !== undefined)
    notEmulated(c, 'ip link del with attributes');
  if (!c.nameToIndex(spec.name)) return nodev(c, spec.name);
  const name = c.byIndex(c.nameToIndex(spec.name))!.name;
  return talk(c, () => linkDel(c.world, c.netns, name)) ? 0 : -2;
}

function doIplink(c: Ctx, argv: readonly string[]): number {
  if (!argv.length) return ipaddrList(c, [], true, false);
  const [w, ...rest] = argv;
  if (matches(w, 'add')) return iplinkAdd(c, rest);
  if (matches(w, 'delete')) return iplinkDel(c, rest);
  if (matches(w, 'replace')) notEmulated(c, `ip link ${w}`);
  if (matches(w, 'set') || matches(w, 'change')) return iplinkSet(c, rest);
  if (matches(w, 'show') || matches(w, 'lst') || matches(w, 'list')) return ipaddrList(c, rest, true, false);
  if (matches(w, 'xstats') || matches(w, 'afstats') || matches(w, 'property') || matches(w, 'help'))
    notEmulated(c, `ip link ${w}`);
  c.p.eprintf('Command "%s" is unknown, try "ip link help".\n', w);
  return c.exit(-1);
}

/* ================================================================== ip neigh */

const NUD: Record<NudState, number> = {
  INCOMPLETE: 0x01,
  REACHABLE: 0x02,
  STALE: 0x04,
  DELAY: 0x08,
  PROBE: 0x10,
  FAILED: 0x20,
  NOARP: 0x40,
  PERMANENT: 0x80,
};

/** nud_state_a2n: a state bit; 0 for "none" */
function nudA2n(arg: string): number | undefined {
  if (matches(arg, 'permanent')) return NUD.PERMANENT;
  if (matches(arg, 'reachable')) return NUD.REACHABLE;
  if (arg === 'noarp') return NUD.NOARP;
  if (arg === 'none') return 0;
  if (arg === 'stale') return NUD.STALE;
  if (arg === 'incomplete') return NUD.INCOMPLETE;
  if (arg === 'delay') return NUD.DELAY;
  if (arg === 'probe') return NUD.PROBE;
  if (matches(arg, 'failed')) return NUD.FAILED;
  const v = getUnsigned(arg, 0);
  if (v === undefined || v >= 0x100 || (v & (v - 1)) !== 0) return undefined;
  return v;
}

interface NeighFilter {
  state: number;
  index: number;
  pfx?: Prefix;
}

function printNeigh(c: Ctx, f: NeighFilter, n: NeighEntry): void {
  const p = c.p;
  const dev = c.netns.link(n.dev);
  if (!dev) return;
  const state = NUD[n.state] ?? 0;
  if (f.index && f.index !== dev.ifindex) return;
  if (!(f.state & state) && (state || !(f.state & 0x100))) return;
  if (f.pfx?.addr && f.pfx.bitlen > 0 && !inPrefix(n.ip, f.pfx.addr, f.pfx.bitlen)) return;
  printNeighEntry(p, n, !f.index);
}

/** print_neigh's body for one entry; `showDev` unless the dump was filtered to one device */
function printNeighEntry(p: Printer, n: NeighEntry, showDev: boolean): void {
  const state = NUD[n.state] ?? 0;
  p.openObject();
  p.string(PRINT_ANY, 'dst', '%s ', n.ip);
  if (showDev) {
    if (!p.isJson()) p.printf('dev ');
    p.string(PRINT_ANY, 'dev', '%s ', n.dev);
  }
  // NDA_LLADDR is only sent while the entry is NUD_VALID
  if (n.lladdr && state & (NUD.PERMANENT | NUD.NOARP | NUD.REACHABLE | NUD.PROBE | NUD.STALE | NUD.DELAY)) {
    if (!p.isJson()) p.printf('lladdr ');
    p.string(PRINT_ANY, 'lladdr', '%s ', n.lladdr);
  }
  if (n.router) p.null(PRINT_ANY, 'router', '%s ', 'router');
  if (state) {
    p.openArray(PRINT_JSON, p.isJson() ? 'state' : '');
    for (const s of NUD_STATES) if (state & NUD[s]) p.string(PRINT_ANY, undefined, '%s ', s);
    p.closeArray(PRINT_JSON, undefined);
  }
  p.string(PRINT_FP, undefined, '\n', '');
  p.closeObject();
}

/** one neighbour entry as `ip neigh show` prints it (without the newline), for trace steps */
export function neighEntryText(n: NeighEntry): string {
  const p = new Printer(false, false);
  printNeighEntry(p, n, true);
  return p.stdout.replace(/ ?\n$/, '');
}

function neighShow(c: Ctx, argv: readonly string[], flush: boolean): number {
  // -s adds the cache timers and probe counts (used/confirmed/updated, probes), which the model does not keep
  if (c.opts.stats && !flush) notEmulated(c, 'ip -s neigh');
  const f: NeighFilter = { state: flush ? ~(NUD.PERMANENT | NUD.NOARP) : 0xff & ~NUD.NOARP, index: 0 };
  if (flush && !argv.length) {
    c.p.eprintf('Flush requires arguments.\n');
    return -1;
  }
  let filterDev: string | undefined;
  let stateGiven = false;
  const a = new Args(c, argv);
  for (; a.more; a.advance()) {
    const w = a.cur;
    if (w === 'dev') {
      const arg = a.next();
      if (filterDev) duparg(c, 'dev', arg);
      filterDev = arg;
    } else if (
      w === 'master' ||
      w === 'vrf' ||
      w === 'nomaster' ||
      w === 'unused' ||
      w === 'proxy' ||
      matches(w, 'protocol')
    )
      notEmulated(c, `ip neigh show ${w}`);
    else if (w === 'nud') {
      const arg = a.next();
      if (!stateGiven) {
        stateGiven = true;
        f.state = 0;
      }
      let st = nudA2n(arg);
      if (st === undefined) {
        if (arg !== 'all') invarg(c, 'nud state is bad', arg);
        st = ~0;
        if (flush) st &= ~NUD.NOARP;
      }
      if (st === 0) st = 0x100;
      f.state |= st;
    } else {
      let arg = w;
      if (arg === 'to') arg = a.next();
      if (matches(arg, 'help')) notEmulated(c, 'ip neigh help');
      f.pfx = getPrefix(c, arg);
    }
  }
  if (filterDev) {
    f.index = c.nameToIndex(filterDev);
    if (!f.index) return nodev(c, filterDev);
  }
  // the model is IPv4 only (ARP): another family lists nothing
  const ipv4 = c.opts.family === 'unspec' || c.opts.family === 'inet';
  const entries = ipv4 ? [...c.netns.neigh.list(), ...igmpNeighbours(c)] : [];
  if (flush) {
    for (const n of entries) {
      const dev = c.netns.link(n.dev);
      if (!dev || (f.index && f.index !== dev.ifindex) || !(f.state & NUD[n.state])) continue;
      if (f.pfx?.addr && f.pfx.bitlen > 0 && !inPrefix(n.ip, f.pfx.addr, f.pfx.bitlen)) continue;
      c.netns.neigh.remove(n);
    }
    return 0;
  }
  c.p.newJsonObj();
  for (const n of entries) printNeigh(c, f, n);
  c.p.deleteJsonObj();
  return 0;
}

/**
 * A bridge that is up joins the multicast-router groups (mcast_snooping) and reports them with
 * IGMPv3 to 224.0.0.22: sending them made the kernel a NOARP neighbour for that group on the
 * bridge, which `ip neigh show nud all` lists. The model sends no IGMP; the entry is derived.
 */
function igmpNeighbours(c: Ctx): NeighEntry[] {
  return c
    .links()
    .filter((l) => l.type === 'bridge' && l.up && !c.netns.neighbour('224.0.0.22', l.name))
    .map((l) => ({
      ip: '224.0.0.22',
      dev: l.name,
      lladdr: '01:00:5e:00:00:16',
      state: 'NOARP',
      router: false,
      updated: 0,
    }));
}

const NUD_NAME: Record<number, NudState> = Object.fromEntries(
  Object.entries(NUD).map(([k, v]) => [v, k as NudState]),
);

function neighModify(c: Ctx, argv: readonly string[], kind: 'add' | 'change' | 'replace' | 'del'): number {
  let state = NUD.PERMANENT;
  let dev: string | undefined;
  let dst: string | undefined;
  let lla: string | undefined;
  const a = new Args(c, argv);
  for (; a.more; a.advance()) {
    const w = a.cur;
    if (matches(w, 'lladdr')) {
      const arg = a.next();
      if (lla !== undefined) duparg(c, 'lladdr', arg);
      lla = arg;
    } else if (w === 'nud') {
      const arg = a.next();
      const st = nudA2n(arg);
      if (st === undefined) invarg(c, 'nud state is bad', arg);
      state = st;
    } else if (
      matches(w, 'proxy') ||
      w === 'router' ||
      w === 'use' ||
      w === 'managed' ||
      matches(w, 'extern_learn')
    )
      notEmulated(c, `ip neigh ${kind} ${w}`);
    else if (w === 'dev') dev = a.next();
    else if (matches(w, 'protocol')) notEmulated(c, `ip neigh ${kind} protocol`);
    else {
      let arg = w;
      if (arg === 'to') arg = a.next();
      if (matches(arg, 'help')) arg = a.next();
      if (dst !== undefined) duparg2(c, 'to', arg);
      dst = getAddr(c, arg);
    }
  }
  if (!dev || !dst) {
    c.p.eprintf('Device and destination are required arguments.\n');
    return c.exit(-1);
  }
  let mac: string | undefined;
  if (lla !== undefined && lla !== 'null') {
    mac = parseLladdr(c, lla);
    if (mac === undefined) return -1;
  }
  if (!c.nameToIndex(dev)) return nodev(c, dev);
  const name = c.byIndex(c.nameToIndex(dev))!.name;
  if (kind !== 'del' && state === 0) notEmulated(c, 'ip neigh nud none');
  const ok = talk(c, () => {
    if (kind === 'del') neighDel(c.netns, dst!, name);
    else
      neighAdd(c.netns, c.world, {
        ip: dst!,
        dev: name,
        lladdr: mac,
        state: NUD_NAME[state],
        nl: {
          create: kind !== 'change',
          excl: kind === 'add',
          replace: kind !== 'add',
        },
      });
  });
  if (!ok) c.exit(2);
  return 0;
}

function doIpneigh(c: Ctx, argv: readonly string[]): number {
  if (!argv.length) return neighShow(c, [], false);
  const [w, ...rest] = argv;
  if (matches(w, 'add')) return neighModify(c, rest, 'add');
  if (matches(w, 'change') || w === 'chg') return neighModify(c, rest, 'change');
  if (matches(w, 'replace')) return neighModify(c, rest, 'replace');
  if (matches(w, 'delete')) return neighModify(c, rest, 'del');
  if (matches(w, 'get')) notEmulated(c, 'ip neigh get');
  if (matches(w, 'show') || matches(w, 'lst') || matches(w, 'list')) return neighShow(c, rest, false);
  if (matches(w, 'flush')) return neighShow(c, rest, true);
  if (matches(w, 'help')) notEmulated(c, 'ip neigh help');
  c.p.eprintf('Command "%s" is unknown, try "ip neigh help".\n', w);
  return c.exit(-1);
}

/* ================================================================== rule */

/**
 * `ip rule [show]`: the model has no policy routing, so a namespace holds the three rules every
 * new namespace starts with (fib_default_rules_init), printed as iprule.c prints them.
 */
const DEFAULT_RULES: [number, string][] = [
  [0, 'local'],
  [32766, 'main'],
  [32767, 'default'],
];

function doIprule(c: Ctx, argv: readonly string[]): number {
  const [w, ...rest] = argv;
  if (w !== undefined && !(matches(w, 'list') || matches(w, 'show') || matches(w, 'lst')))
    notEmulated(c, `ip rule ${w}`);
  if (rest.length) notEmulated(c, 'ip rule show with a selector');
  // the model is IPv4 only: another family has no rules to list
  if (c.opts.family !== 'unspec' && c.opts.family !== 'inet') {
    c.p.newJsonObj();
    c.p.deleteJsonObj();
    return 0;
  }
  c.p.newJsonObj();
  for (const [prio, table] of DEFAULT_RULES) {
    c.p.openObject();
    c.p.num(PRINT_ANY, 'priority', '%u:\t', prio);
    c.p.string(PRINT_FP, undefined, 'from ', undefined);
    c.p.string(PRINT_ANY, 'src', '%s ', 'all');
    c.p.string(PRINT_FP, undefined, 'lookup ', undefined);
    c.p.string(PRINT_ANY, 'table', '%s', table);
    c.p.string(PRINT_FP, undefined, '%s', '\n');
    c.p.closeObject();
  }
  c.p.deleteJsonObj();
  return 0;
}

/* ================================================================== main */

const OBJECTS: [string, ((c: Ctx, argv: readonly string[]) => number) | undefined][] = [
  ['address', doIpaddr],
  ['addrlabel', undefined],
  ['maddress', undefined],
  ['route', doIproute],
  ['rule', doIprule],
  ['neighbor', doIpneigh],
  ['neighbour', doIpneigh],
  ['ntable', undefined],
  ['ntbl', undefined],
  ['link', doIplink],
  ['l2tp', undefined],
  ['fou', undefined],
  ['ila', undefined],
  ['macsec', undefined],
  ['tunnel', undefined],
  ['tunl', undefined],
  ['tuntap', undefined],
  ['tap', undefined],
  ['token', undefined],
  ['tcpmetrics', undefined],
  ['tcp_metrics', undefined],
  ['monitor', undefined],
  ['xfrm', undefined],
  ['mroute', undefined],
  ['mrule', undefined],
  ['netns', undefined],
  ['netconf', undefined],
  ['vrf', undefined],
  ['sr', undefined],
  ['nexthop', undefined],
  ['mptcp', undefined],
  ['ioam', undefined],
  ['help', undefined],
  ['stats', undefined],
];

export const ip: Tool = (argv, ctx) => {
  const opts: Opts = defaultOpts();
  // options are parsed before the output exists: collect, then build the context
  let i = 0;
  let netns = ctx.netns;
  const early: { out?: string; err?: string; code?: number } = {};
  for (; i < argv.length; i++) {
    let opt = argv[i];
    if (opt === '--') {
      i++;
      break;
    }
    if (opt[0] !== '-') break;
    if (opt[1] === '-') opt = opt.slice(1);
    const m = (x: string) => matches(opt, x);
    if (m('-loops')) {
      i++;
      if (i >= argv.length) {
        early.err = IP_USAGE;
        early.code = 255;
        break;
      }
    } else if (m('-family')) {
      i++;
      const fam = argv[i];
      if (fam === undefined || fam === 'help') {
        early.err = IP_USAGE;
        early.code = 255;
        break;
      }
      if (fam === 'inet') opts.family = 'inet';
      else if (fam === 'link') opts.family = 'link';
      else if (fam === 'inet6' || fam === 'bridge' || fam === 'mpls') opts.family = fam;
      else {
        early.err = `Error: argument "${fam}" is wrong: invalid protocol family\n`;
        early.code = 255;
        break;
      }
    } else if (opt === '-4') opts.family = 'inet';
    else if (opt === '-6') opts.family = 'inet6';
    else if (opt === '-0') opts.family = 'link';
    else if (opt === '-M') opts.family = 'mpls';
    else if (opt === '-B') opts.family = 'bridge';
    else if (m('-human') || m('-human-readable') || m('-iec')) continue;
    else if (m('-stats') || m('-statistics')) opts.stats++;
    else if (m('-details')) opts.details++;
    else if (m('-resolve') || m('-timestamp') || m('-tshort')) continue;
    else if (m('-oneline')) opts.oneline = true;
    else if (m('-Version')) {
      early.out = IP_VERSION + '\n';
      early.code = 0;
      break;
    } else if (m('-force')) continue;
    else if (m('-batch')) {
      early.err = 'podwalk: "ip -batch" is not emulated\n';
      early.code = 2;
      break;
    } else if (m('-brief')) opts.brief = true;
    else if (m('-json')) opts.json = true;
    else if (m('-pretty')) opts.pretty = true;
    else if (m('-rcvbuf')) {
      i++;
      if (i >= argv.length || getUnsigned(argv[i], 0) === undefined) {
        early.err = i >= argv.length ? IP_USAGE : `Invalid rcvbuf size '${argv[i]}'\n`;
        early.code = 255;
        break;
      }
    } else if (opt === '-c' || m('-color') || opt.startsWith('-color=')) continue;
    else if (m('-help')) {
      early.err = IP_USAGE;
      early.code = 255;
      break;
    } else if (m('-netns')) {
      i++;
      if (i >= argv.length) {
        early.err = 'Command line is not complete. Try option "help"\n';
        early.code = 255;
        break;
      }
      const target = ctx.cluster.world.netns.get(argv[i]);
      if (!target) {
        early.err = `Cannot open network namespace "${argv[i]}": No such file or directory\n`;
        early.code = 255;
        break;
      }
      netns = target;
    } else if (m('-Numeric') || m('-all')) continue;
    else if (opt === '-echo') continue;
    else {
      early.err = `Option "${opt}" is unknown, try "ip -help".\n`;
      early.code = 255;
      break;
    }
  }
  if (early.code !== undefined) return { stdout: early.out ?? '', stderr: early.err ?? '', code: early.code };
  // brief output goes with the link family for `ip link`; -j disables -p only when absent
  if (opts.pretty && !opts.json) opts.pretty = false;
  const c = new Ctx(ctx.cluster, netns, opts);
  return runTool(c, () => {
    const rest = argv.slice(i);
    if (!rest.length) {
      c.p.eprintf('%s', IP_USAGE);
      return c.exit(-1);
    }
    const [obj, ...args] = rest;
    for (const [name, fn] of OBJECTS)
      if (matches(obj, name)) {
        if (name === 'help') {
          c.p.eprintf('%s', IP_USAGE);
          return c.exit(-1);
        }
        if (!fn) notEmulated(c, `ip ${name}`);
        return -fn(c, args);
      }
    c.p.eprintf('Object "%s" is unknown, try "ip help".\n', obj);
    return 1;
  });
};
