/**
 * The emulated `bridge` of iproute2 6.1: `bridge fdb` (show/add/append/replace/del) and
 * `bridge link` (show), with -j/-p/-d/-s, printing what the real tool prints for the same kernel
 * state. The FDB dump follows rtnl_fdb_dump: device by device in ifindex order; for a bridge port
 * first its master's entries for it (br_fdb_dump, newest first), then the device's own (its
 * unicast and multicast address lists, or a VXLAN device's table, newest entry first).
 */
import { fdbAdd, fdbDel, linkSetHairpin, type FdbState } from '../kernel/netlink.ts';
import type { BridgeLink, FdbEntry, Link, VxlanFdbEntry } from '../kernel/objects.ts';
import {
  Args,
  Ctx,
  defaultOpts,
  duparg,
  getAddr,
  invarg,
  matches,
  nodev,
  runTool,
  talk,
  type Opts,
} from './iproute-common.ts';
import { ifFlags, portState, printLinkFlags, printNameAndLink } from './iproute-link.ts';
import { PRINT_ANY, PRINT_FP, PRINT_JSON, Printer } from './iproute-print.ts';
import type { Tool } from './types.ts';

export const BRIDGE_VERSION = 'bridge utility, 6.1.0';

const BRIDGE_USAGE =
  'Usage: bridge [ OPTIONS ] OBJECT { COMMAND | help }\n' +
  '       bridge [ -force ] -batch filename\n' +
  'where  OBJECT := { link | fdb | mdb | vlan | monitor }\n' +
  '       OPTIONS := { -V[ersion] | -s[tatistics] | -d[etails] |\n' +
  '                    -o[neline] | -t[imestamp] | -n[etns] name |\n' +
  '                    -c[ompressvlans] -color -p[retty] -j[son] }\n';

const FDB_USAGE =
  'Usage: bridge fdb { add | append | del | replace } ADDR dev DEV\n' +
  '              [ self ] [ master ] [ use ] [ router ] [ extern_learn ]\n' +
  '              [ sticky ] [ local | static | dynamic ] [ vlan VID ]\n' +
  '              { [ dst IPADDR ] [ port PORT] [ vni VNI ] | [ nhid NHID ] }\n' +
  '\t       [ via DEV ] [ src_vni VNI ]\n' +
  '       bridge fdb [ show [ br BRDEV ] [ brport DEV ] [ vlan VID ]\n' +
  '              [ state STATE ] [ dynamic ] ]\n' +
  '       bridge fdb get [ to ] LLADDR [ br BRDEV ] { brport | dev } DEV\n' +
  '              [ vlan VID ] [ vni VNI ] [ self ] [ master ] [ dynamic ]\n' +
  '       bridge fdb flush dev DEV [ brport DEV ] [ vlan VID ]\n' +
  '              [ self ] [ master ] [ [no]permanent | [no]static | [no]dynamic ]\n' +
  '              [ [no]added_by_user ] [ [no]extern_learn ] [ [no]sticky ]\n' +
  '              [ [no]offloaded ]\n';

function notEmulated(c: Ctx, what: string): never {
  c.p.eprintf('podwalk: "%s" is not emulated\n', what);
  return c.exit(2);
}

/* ------------------------------------------------------------------ the FDB dump */

const NUD_PERMANENT = 0x80;
const NUD_NOARP = 0x40;
const NUD_STALE = 0x04;
const NUD_REACHABLE = 0x02;

interface FdbMsg {
  mac: string;
  ifindex: number;
  ifname: string;
  dst?: string;
  vlan?: number;
  self: boolean;
  master?: string;
  state: number;
}

function stateN2a(p: Printer, s: number): string {
  if (s & NUD_PERMANENT) return 'permanent';
  if (s & NUD_NOARP) return 'static';
  if (s & NUD_STALE) return 'stale';
  if (s & NUD_REACHABLE) return '';
  return p.isJson() ? `0x${s.toString(16)}` : `state=0x${s.toString(16)}`;
}

/** fdb_to_nud */
function brEntryState(c: Ctx, br: BridgeLink, e: FdbEntry): number {
  if (e.state === 'local') return NUD_PERMANENT;
  if (e.state === 'static') return NUD_NOARP;
  return c.world.now - e.updated >= br.ageingTime * 1e6 ? NUD_STALE : NUD_REACHABLE;
}

/** the multicast list of a device: ff02::1 (even with IPv6 disabled); up, a bridge's router groups and 224.0.0.1 */
function mcList(l: Link): string[] {
  if (l.type === 'loopback' || l.type === 'ipip') return [];
  const out = ['33:33:00:00:00:01'];
  if (l.up) {
    if (l.type === 'bridge') out.push('01:00:5e:00:00:6a', '33:33:00:00:00:6a');
    out.push('01:00:5e:00:00:01');
  }
  return [...out, ...l.mc.filter((m) => !out.includes(m))];
}

function dfltDump(l: Link): FdbMsg[] {
  const msg = (mac: string): FdbMsg => ({
    mac,
    ifindex: l.ifindex,
    ifname: l.name,
    self: true,
    state: NUD_PERMANENT,
  });
  return [...l.uc.map(msg), ...mcList(l).map(msg)];
}

function vxlanState(e: VxlanFdbEntry): number {
  if (e.permanent) return NUD_PERMANENT | NUD_NOARP;
  return e.static ? NUD_NOARP | NUD_REACHABLE : NUD_REACHABLE;
}

/** vxlan_fdb_dump: entries newest first, each entry's remotes in the order they were added */
function vxlanDump(l: Link & { type: 'vxlan' }): FdbMsg[] {
  const macs: string[] = [];
  for (const e of l.fdb.list()) if (!macs.includes(e.mac)) macs.push(e.mac);
  return macs.reverse().flatMap((mac) =>
    l.fdb.getAll(mac).map((e) => ({
      mac,
      ifindex: l.ifindex,
      ifname: l.name,
      dst: e.dst,
      self: true,
      state: vxlanState(e),
    })),
  );
}

/** br_fdb_dump for one device: the entries pointing at a port, or the bridge's own (no port) */
function brDump(c: Ctx, br: BridgeLink, dev: Link): FdbMsg[] {
  return [...br.fdb.list()]
    .reverse()
    .filter((e) => e.port === dev.name)
    .map((e) => ({
      mac: e.mac,
      ifindex: dev.ifindex,
      ifname: dev.name,
      vlan: e.vlan,
      self: false,
      master: br.name,
      state: brEntryState(c, br, e),
    }));
}

function fdbDump(c: Ctx, brFilter?: Link): FdbMsg[] {
  const out: FdbMsg[] = [];
  for (const dev of c.links()) {
    const br = dev.master ? c.netns.link(dev.master) : undefined;
    if (brFilter && dev !== brFilter && br !== brFilter) continue;
    if (br?.type === 'bridge') out.push(...brDump(c, br, dev));
    if (dev.type === 'bridge') out.push(...dfltDump(dev), ...brDump(c, dev, dev));
    else if (dev.type === 'vxlan') out.push(...vxlanDump(dev));
    else out.push(...dfltDump(dev));
  }
  return out;
}

function printFdb(p: Printer, m: FdbMsg, filterIndex: number): void {
  p.openObject();
  p.string(PRINT_ANY, 'mac', '%s ', m.mac);
  if (!filterIndex) {
    p.string(PRINT_FP, undefined, 'dev ', undefined);
    p.string(PRINT_ANY, 'ifname', '%s ', m.ifname);
  }
  if (m.dst) {
    p.string(PRINT_FP, undefined, 'dst ', undefined);
    p.string(PRINT_ANY, 'dst', '%s ', m.dst);
  }
  if (m.vlan) p.num(PRINT_ANY, 'vlan', 'vlan %hu ', m.vlan);
  p.openArray(PRINT_JSON, p.isJson() ? 'flags' : '');
  if (m.self) p.string(PRINT_ANY, undefined, '%s ', 'self');
  p.closeArray(PRINT_JSON, undefined);
  if (m.master) p.string(PRINT_ANY, 'master', 'master %s ', m.master);
  p.string(PRINT_ANY, 'state', '%s\n', stateN2a(p, m.state));
  p.closeObject();
}

function stateA2n(arg: string): number | undefined {
  if (matches(arg, 'permanent')) return NUD_PERMANENT;
  if (matches(arg, 'static') || matches(arg, 'temp')) return NUD_NOARP;
  if (matches(arg, 'stale')) return NUD_STALE;
  if (matches(arg, 'reachable') || matches(arg, 'dynamic')) return NUD_REACHABLE;
  if (arg === 'all') return ~0;
  const n = Number(arg);
  return /^\d+$/.test(arg) ? n : undefined;
}

function fdbShow(c: Ctx, a: Args): number {
  // -s adds each entry's used/updated times (NDA_CACHEINFO): not emulated
  if (c.opts.stats) notEmulated(c, 'bridge -s fdb show');
  let filterDev: string | undefined;
  let br: string | undefined;
  let filterVlan = 0;
  let filterState = 0;
  let filterDynamic = false;
  for (; a.more; a.advance()) {
    const w = a.cur;
    if (w === 'brport' || w === 'dev') filterDev = a.next();
    else if (w === 'br') br = a.next();
    else if (w === 'vlan') {
      const arg = a.next();
      if (filterVlan) duparg(c, 'vlan', arg);
      filterVlan = parseInt(arg, 10) || 0;
    } else if (w === 'state') {
      const arg = a.next();
      const st = stateA2n(arg);
      if (st === undefined) invarg(c, 'invalid state', arg);
      filterState |= st;
    } else if (w === 'dynamic') filterDynamic = true;
    else if (matches(w, 'help')) {
      c.p.eprintf('%s', FDB_USAGE);
      c.exit(-1);
    }
  }
  let brLink: Link | undefined;
  if (br) {
    const idx = c.nameToIndex(br);
    if (!idx) {
      c.p.eprintf('Cannot find bridge device "%s"\n', br);
      return -1;
    }
    brLink = c.byIndex(idx);
  }
  let filterIndex = 0;
  if (filterDev) {
    filterIndex = c.nameToIndex(filterDev);
    if (!filterIndex) return nodev(c, filterDev);
  }
  c.p.newJsonObj();
  for (const m of fdbDump(c, brLink)) {
    if (filterIndex && filterIndex !== m.ifindex) continue;
    if (filterState && !(m.state & filterState)) continue;
    if (filterVlan && filterVlan !== (m.vlan ?? 0)) continue;
    if (filterDynamic && m.state & NUD_PERMANENT) continue;
    printFdb(c.p, m, filterIndex);
  }
  c.p.deleteJsonObj();
  return 0;
}

function fdbModify(c: Ctx, a: Args, cmd: 'add' | 'append' | 'replace' | 'del'): number {
  let dev: string | undefined;
  let addr: string | undefined;
  let dst: string | undefined;
  let self = false;
  let master = false;
  let state = NUD_NOARP;
  for (; a.more; a.advance()) {
    const w = a.cur;
    if (w === 'dev') dev = a.next();
    else if (w === 'dst') {
      const arg = a.next();
      if (dst) {
        c.p.eprintf('Error: either "%s" is duplicate, or "%s" is a garbage.\n', 'dst', arg);
        c.exit(-1);
      }
      dst = getAddr(c, arg);
    } else if (['nhid', 'port', 'vni', 'src_vni', 'via'].includes(w))
      notEmulated(c, `bridge fdb ${cmd} ${w}`);
    else if (w === 'self') self = true;
    else if (matches(w, 'master')) master = true;
    else if (matches(w, 'router')) notEmulated(c, `bridge fdb ${cmd} router`);
    else if (matches(w, 'local') || matches(w, 'permanent')) state |= NUD_PERMANENT;
    else if (matches(w, 'temp') || matches(w, 'static')) state |= NUD_REACHABLE;
    else if (matches(w, 'dynamic')) {
      state |= NUD_REACHABLE;
      state &= ~NUD_NOARP;
    } else if (matches(w, 'vlan') || matches(w, 'use') || matches(w, 'extern_learn') || matches(w, 'sticky'))
      notEmulated(c, `bridge fdb ${cmd} ${w}`);
    else {
      let arg = w;
      if (arg === 'to') arg = a.next();
      if (matches(arg, 'help')) {
        c.p.eprintf('%s', FDB_USAGE);
        c.exit(-1);
      }
      if (addr) {
        c.p.eprintf('Error: either "%s" is duplicate, or "%s" is a garbage.\n', 'to', arg);
        c.exit(-1);
      }
      addr = arg;
    }
  }
  if (!dev || !addr) {
    c.p.eprintf('Device and address are required arguments.\n');
    return -1;
  }
  if (!self && !master) self = true;
  if (!(state & (NUD_PERMANENT | NUD_REACHABLE))) state |= NUD_PERMANENT;
  const m =
    /^([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})/.exec(
      addr,
    );
  if (!m) {
    c.p.eprintf('Invalid mac address %s\n', addr);
    return -1;
  }
  const mac = m
    .slice(1)
    .map((x) => x.toLowerCase().padStart(2, '0'))
    .join(':');
  if (!c.nameToIndex(dev)) return nodev(c, dev);
  const name = c.byIndex(c.nameToIndex(dev))!.name;
  const st: FdbState = {
    permanent: !!(state & NUD_PERMANENT),
    noarp: !!(state & NUD_NOARP),
    reachable: !!(state & NUD_REACHABLE),
  };
  const ok = talk(c, () => {
    if (cmd === 'del') fdbDel(c.netns, { mac, dev: name, self, master, dst });
    else
      fdbAdd(c.netns, c.world, {
        mac,
        dev: name,
        self,
        master,
        state: st,
        dst,
        nl: { create: true, excl: cmd === 'add', replace: cmd === 'replace', append: cmd === 'append' },
      });
  });
  return ok ? 0 : -1;
}

function doFdb(c: Ctx, argv: readonly string[]): number {
  const a = new Args(c, argv);
  if (!a.more) return fdbShow(c, a);
  const w = a.cur;
  a.advance();
  if (matches(w, 'add')) return fdbModify(c, a, 'add');
  if (matches(w, 'append')) return fdbModify(c, a, 'append');
  if (matches(w, 'replace')) return fdbModify(c, a, 'replace');
  if (matches(w, 'delete')) return fdbModify(c, a, 'del');
  if (matches(w, 'get')) notEmulated(c, 'bridge fdb get');
  if (matches(w, 'show') || matches(w, 'lst') || matches(w, 'list')) return fdbShow(c, a);
  if (w === 'flush') notEmulated(c, 'bridge fdb flush');
  if (matches(w, 'help')) {
    c.p.eprintf('%s', FDB_USAGE);
    c.exit(-1);
  }
  c.p.eprintf('Command "%s" is unknown, try "bridge fdb help".\n', w);
  return c.exit(-1);
}

/* ------------------------------------------------------------------ bridge link */

function printBrLink(c: Ctx, l: Link): void {
  const p = c.p;
  p.openObject();
  p.num(PRINT_ANY, 'ifindex', '%d: ', l.ifindex);
  const mflag = printNameAndLink(c, '%s: ', l, false);
  printLinkFlags(p, ifFlags(c, l), mflag);
  p.num(PRINT_ANY, 'mtu', 'mtu %u ', l.mtu);
  p.string(PRINT_ANY, 'master', 'master %s ', l.master!);
  p.string(PRINT_ANY, 'state', 'state %s ', portState(c, l));
  p.num(PRINT_ANY, 'priority', 'priority %u ', 32);
  p.num(PRINT_ANY, 'cost', 'cost %u ', 2);
  if (c.opts.details) {
    if (!p.isJson()) p.printf('%s    ', p.sl);
    const onoff = (k: string, v: boolean) => p.onOff(PRINT_ANY, k, `${k} %s `, v);
    onoff('hairpin', !!l.hairpin);
    onoff('guard', false);
    onoff('root_block', false);
    onoff('fastleave', false);
    onoff('learning', true);
    onoff('flood', true);
    onoff('mcast_flood', true);
    onoff('bcast_flood', true);
    p.num(PRINT_ANY, 'mcast_router', 'mcast_router %u ', 1);
    onoff('mcast_to_unicast', false);
    onoff('neigh_suppress', false);
    onoff('vlan_tunnel', false);
    onoff('isolated', false);
    onoff('locked', false);
  }
  p.string(PRINT_FP, undefined, '%s', '\n');
  p.closeObject();
}

/**
 * brlink_modify (`bridge link set dev PORT hairpin on|off`): the one port flag the model keeps.
 * parse_on_off's error, "Device is a required argument.", and the name looked up among bridge
 * ports' devices as the tool does; the kernel's answer for a device that is no port.
 */
function linkModify(c: Ctx, a: Args, verb: string): number {
  let dev: string | undefined;
  let hairpin: boolean | undefined;
  for (; a.more; a.advance()) {
    if (a.cur === 'dev') dev = a.next();
    else if (a.cur === 'hairpin') {
      const v = a.next();
      if (v !== 'on' && v !== 'off') {
        c.p.eprintf('Error: argument of "hairpin" must be one of "off", "on", not "%s"\n', v);
        return c.exit(-22);
      }
      hairpin = v === 'on';
    } else notEmulated(c, `bridge link ${verb} ${a.rest().join(' ')}`);
  }
  if (dev === undefined) {
    c.p.eprintf('Device is a required argument.\n');
    return c.exit(-1);
  }
  if (!c.nameToIndex(dev)) {
    c.p.eprintf('Cannot find bridge device "%s"\n', dev);
    return c.exit(-1);
  }
  const name = c.byIndex(c.nameToIndex(dev))!.name;
  if (hairpin === undefined) return 0;
  const on = hairpin;
  return talk(c, () => linkSetHairpin(c.netns, name, on)) ? 0 : c.exit(-1);
}

function doLink(c: Ctx, argv: readonly string[]): number {
  const a = new Args(c, argv);
  if (a.more) {
    const w = a.cur;
    a.advance();
    if (matches(w, 'set') || matches(w, 'change')) return linkModify(c, a, w);
    else if (!(matches(w, 'show') || matches(w, 'lst') || matches(w, 'list'))) {
      if (matches(w, 'help')) notEmulated(c, 'bridge link help');
      c.p.eprintf('Command "%s" is unknown, try "bridge link help".\n', w);
      return c.exit(-1);
    }
  }
  let filterDev: string | undefined;
  for (; a.more; a.advance())
    if (a.cur === 'dev') {
      const arg = a.next();
      if (filterDev) duparg(c, 'dev', arg);
      filterDev = arg;
    }
  let filterIndex = 0;
  if (filterDev) {
    filterIndex = c.nameToIndex(filterDev);
    if (!filterIndex) return nodev(c, filterDev);
  }
  c.p.newJsonObj();
  for (const l of c.links()) {
    if (!l.master || (filterIndex && l.ifindex !== filterIndex)) continue;
    printBrLink(c, l);
  }
  c.p.deleteJsonObj();
  return 0;
}

/* ------------------------------------------------------------------ main */

export const bridge: Tool = (argv, ctx) => {
  const opts: Opts = defaultOpts();
  let netns = ctx.netns;
  let i = 0;
  for (; i < argv.length; i++) {
    let opt = argv[i];
    if (opt === '--') {
      i++;
      break;
    }
    if (opt[0] !== '-') break;
    if (opt[1] === '-') opt = opt.slice(1);
    const m = (x: string) => matches(opt, x);
    if (m('-help')) return { stdout: '', stderr: BRIDGE_USAGE, code: 255 };
    else if (m('-Version')) return { stdout: BRIDGE_VERSION + '\n', stderr: '', code: 0 };
    else if (m('-stats') || m('-statistics')) opts.stats++;
    else if (m('-details')) opts.details++;
    else if (m('-oneline')) opts.oneline = true;
    else if (m('-timestamp')) continue;
    else if (m('-family')) {
      i++;
      const fam = argv[i];
      if (fam === undefined || fam === 'help') return { stdout: '', stderr: BRIDGE_USAGE, code: 255 };
      if (fam !== 'inet' && fam !== 'inet6')
        return {
          stdout: '',
          stderr: `Error: argument "${fam}" is wrong: invalid protocol family\n`,
          code: 255,
        };
    } else if (opt === '-4' || opt === '-6') continue;
    else if (m('-netns')) {
      i++;
      if (i >= argv.length)
        return { stdout: '', stderr: 'Command line is not complete. Try option "help"\n', code: 255 };
      const target = ctx.cluster.world.netns.get(argv[i]);
      if (!target)
        return {
          stdout: '',
          stderr: `Cannot open network namespace "${argv[i]}": No such file or directory\n`,
          code: 255,
        };
      netns = target;
    } else if (opt === '-c' || m('-color') || opt.startsWith('-color=')) continue;
    else if (m('-compressvlans') || m('-force')) continue;
    else if (m('-json')) opts.json = true;
    else if (m('-pretty')) opts.pretty = true;
    else if (m('-batch'))
      return { stdout: '', stderr: 'podwalk: "bridge -batch" is not emulated\n', code: 2 };
    else return { stdout: '', stderr: `Option "${opt}" is unknown, try "bridge help".\n`, code: 255 };
  }
  if (opts.pretty && !opts.json) opts.pretty = false;
  const c = new Ctx(ctx.cluster, netns, opts);
  return runTool(c, () => {
    const rest = argv.slice(i);
    if (!rest.length) {
      c.p.eprintf('%s', BRIDGE_USAGE);
      return c.exit(-1);
    }
    const [obj, ...args] = rest;
    const cmds: [string, ((c: Ctx, argv: readonly string[]) => number) | undefined][] = [
      ['link', doLink],
      ['fdb', doFdb],
      ['mdb', undefined],
      ['vlan', undefined],
      ['vni', undefined],
      ['monitor', undefined],
      ['help', undefined],
    ];
    for (const [name, fn] of cmds)
      if (matches(obj, name)) {
        if (name === 'help') {
          c.p.eprintf('%s', BRIDGE_USAGE);
          return c.exit(-1);
        }
        if (!fn) notEmulated(c, `bridge ${name}`);
        return fn(c, args);
      }
    c.p.eprintf('Object "%s" is unknown, try "bridge help".\n', obj);
    return -1;
  });
};

/**
 * One entry of a bridge's FDB as `bridge fdb show` prints it (without the newline), for trace
 * steps: a port's entry, or the bridge's own when `port` is the bridge.
 */
export function fdbEntryText(
  bridge: string,
  e: { mac: string; port: string; state: FdbEntry['state'] },
): string {
  const p = new Printer(false, false);
  const state = e.state === 'local' ? NUD_PERMANENT : e.state === 'static' ? NUD_NOARP : NUD_REACHABLE;
  printFdb(p, { mac: e.mac, ifindex: 0, ifname: e.port, self: false, master: bridge, state }, 0);
  return p.stdout.replace(/ ?\n$/, '');
}
