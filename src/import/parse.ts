/**
 * The files of one dump, read into typed records: iproute2's JSON (`ip -s -d -j link`, `ip -j
 * addr`, `ip -j route show table all`, `ip -j rule`, `ip -j neigh`, `bridge -j fdb`, `bridge -j
 * link`, `tc -j qdisc`, `nft -j list ruleset`), the text of iptables-save, ss, nstat, conntrack
 * and the sysctl list. The shapes are iproute2 6.1's, read off the real tools' output (the
 * recorded dumps in test/fixtures/collect/); fields podwalk does not use are not required.
 * Every error is `FILE: what is wrong`, with the entry it is in.
 */
import { z } from 'zod';
import { DumpError, type DumpFiles } from './dumps.ts';

/* ------------------------------------------------------------------ schemas */

const num = z.number().int();
const str = z.string();

const statsDir = z.looseObject({ bytes: num, packets: num, dropped: num });

const linkSchema = z.looseObject({
  ifindex: num.min(1),
  ifname: str.min(1).max(15),
  flags: z.array(str),
  mtu: num.min(0),
  link_type: str,
  address: str.optional(),
  master: str.optional(),
  link: str.nullable().optional(),
  link_index: num.optional(),
  link_netnsid: num.optional(),
  operstate: str.optional(),
  linkinfo: z
    .looseObject({
      info_kind: str.optional(),
      info_data: z.looseRecord(str, z.unknown()).optional(),
      info_slave_kind: str.optional(),
      info_slave_data: z.looseRecord(str, z.unknown()).optional(),
    })
    .optional(),
  stats64: z.looseObject({ rx: statsDir, tx: statsDir }).optional(),
  xdp: z.unknown().optional(),
});
export type LinkDump = z.infer<typeof linkSchema>;

const addrInfo = z.looseObject({
  family: str,
  local: str.optional(),
  prefixlen: num.min(0).max(128).optional(),
  scope: str.optional(),
  secondary: z.boolean().optional(),
  noprefixroute: z.boolean().optional(),
  address: str.optional(),
  label: str.optional(),
});
const addrSchema = z.looseObject({
  ifindex: num,
  ifname: str,
  addr_info: z.array(addrInfo),
});
export type AddrDump = z.infer<typeof addrSchema>;

const routeSchema = z.looseObject({
  type: str.optional(),
  dst: str,
  gateway: str.optional(),
  via: z.unknown().optional(),
  dev: str.optional(),
  protocol: str.optional(),
  scope: str.optional(),
  prefsrc: str.optional(),
  metric: num.optional(),
  table: str.optional(),
  flags: z.array(str).optional(),
  nexthops: z.unknown().optional(),
  nhid: z.unknown().optional(),
  metrics: z.unknown().optional(),
  encap: z.unknown().optional(),
});
export type RouteDump = z.infer<typeof routeSchema>;

const ruleSchema = z.looseObject({
  priority: num,
  src: str.optional(),
  dst: str.optional(),
  table: str.optional(),
  action: str.optional(),
  not: z.unknown().optional(),
});
export type RuleDump = z.infer<typeof ruleSchema>;

const neighSchema = z.looseObject({
  dst: str,
  dev: str.optional(),
  lladdr: str.optional(),
  router: z.unknown().optional(),
  proxy: z.unknown().optional(),
  state: z.array(str).optional(),
});
export type NeighDump = z.infer<typeof neighSchema>;

const fdbSchema = z.looseObject({
  mac: str,
  ifname: str,
  dst: str.optional(),
  vlan: num.optional(),
  master: str.optional(),
  flags: z.array(str).optional(),
  state: str.optional(),
  vni: num.optional(),
  port: num.optional(),
  src_vni: num.optional(),
});
export type FdbDump = z.infer<typeof fdbSchema>;

const bridgeLinkSchema = z.looseObject({
  ifindex: num,
  ifname: str,
  master: str.optional(),
  state: str.optional(),
  hairpin: z.boolean().optional(),
  proxy_arp: z.boolean().optional(),
  neigh_suppress: z.boolean().optional(),
  isolated: z.boolean().optional(),
});
export type BridgeLinkDump = z.infer<typeof bridgeLinkSchema>;

const nsidSchema = z.looseObject({ nsid: num, name: str.optional() });

const qdiscSchema = z.looseObject({ kind: str, dev: str.optional(), handle: str.optional() });

const nftSchema = z.looseObject({ nftables: z.array(z.looseRecord(str, z.unknown())) });

/* ------------------------------------------------------------------ readers */

function describeEntry(v: unknown, i: number): string {
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    for (const k of ['ifname', 'dst', 'mac', 'priority', 'dev'])
      if (o[k] !== undefined) return `entry ${i} (${k} ${String(o[k])})`;
  }
  return `entry ${i}`;
}

function parseJson(file: string, text: string): unknown {
  if (text.trim() === '') throw new DumpError(file, 'empty (the command printed nothing; was it cut off?)');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DumpError(
      file,
      `not valid JSON, truncated or not iproute2's -j output (${(e as Error).message})`,
    );
  }
}

/** a JSON array whose entries must each fit `schema` */
function jsonArray<T>(file: string, text: string, schema: z.ZodType<T>): T[] {
  const v = parseJson(file, text);
  if (!Array.isArray(v)) throw new DumpError(file, 'expected a JSON array (iproute2 -j output)');
  return v.map((x, i) => {
    const r = schema.safeParse(x);
    if (r.success) return r.data;
    const issue = r.error.issues[0];
    const path = issue.path.length ? `${issue.path.join('.')}: ` : '';
    throw new DumpError(file, `${describeEntry(x, i)}: ${path}${issue.message}`);
  });
}

/* ------------------------------------------------------------------ manifest */

export interface Manifest {
  version: number;
  node: string;
  hostname: string;
  bootId?: string;
  kernel?: string;
  time?: string;
  /** inode of the namespace that was dumped (the node) */
  target: string;
  targetNetns?: string;
  tools: Record<string, string>;
  /** namespaces the collector could not enter */
  skipped: string[];
}

/** `key: value` lines */
function keyValues(file: string, text: string): [string, string][] {
  const out: [string, string][] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const m = /^([a-z][a-z0-9-]*): ?(.*)$/.exec(line);
    if (!m) throw new DumpError(`${file}:${i + 1}`, `expected "key: value", got "${line.slice(0, 60)}"`);
    out.push([m[1], m[2]]);
  });
  return out;
}

const TOOL_KEYS = ['ip', 'bridge', 'iptables', 'nft', 'tc', 'ss', 'nstat', 'conntrack'];

export function parseManifest(file: string, text: string): Manifest {
  const kv = keyValues(file, text);
  const get = (k: string) => kv.find(([x]) => x === k)?.[1];
  const version = get('podwalk-collect');
  if (version === undefined)
    throw new DumpError(file, 'not a podwalk collect manifest (no "podwalk-collect:" line)');
  if (version !== '1')
    throw new DumpError(file, `dump format version ${version}; this podwalk reads version 1`);
  const node = get('node');
  const target = get('target');
  if (!node) throw new DumpError(file, 'no "node:" line');
  if (!target || !/^\d+$/.test(target))
    throw new DumpError(file, 'no "target:" line with the namespace inode');
  return {
    version: 1,
    node,
    hostname: get('hostname') ?? node,
    bootId: get('boot-id') || undefined,
    kernel: get('kernel'),
    time: get('time'),
    target,
    targetNetns: get('target-netns'),
    tools: Object.fromEntries(kv.filter(([k]) => TOOL_KEYS.includes(k))),
    skipped: kv.filter(([k]) => k === 'skipped').map(([, v]) => v),
  };
}

export interface Where {
  inode: string;
  role: 'target' | 'peer';
  /** its /run/netns name */
  name?: string;
  pid?: string;
}

export function parseWhere(file: string, text: string): Where {
  const kv = keyValues(file, text);
  const get = (k: string) => kv.find(([x]) => x === k)?.[1];
  const inode = get('inode');
  const role = get('role');
  if (!inode || !/^\d+$/.test(inode)) throw new DumpError(file, 'no "inode:" line');
  if (role !== 'target' && role !== 'peer')
    throw new DumpError(file, `role "${role ?? ''}": expected target or peer`);
  return { inode, role, name: get('name'), pid: get('pid') };
}

/* ------------------------------------------------------------------ one namespace */

export interface Listener {
  proto: 'tcp' | 'udp';
  addr: string;
  port: number;
}

export interface NsDump {
  /** "NODE/netns/INODE" */
  dir: string;
  where: Where;
  links: LinkDump[];
  addrs: AddrDump[];
  routes: RouteDump[];
  rules?: RuleDump[];
  neighs: NeighDump[];
  fdb: FdbDump[];
  bridgeLinks: BridgeLinkDump[];
  /** "net/ipv4/conf/eth0/rp_filter" → "0" */
  sysctls: Map<string, string>;
  /** `ipset save` (the sets iptables-save's rules name) */
  ipsetSave?: string;
  iptablesSave?: string;
  iptablesLegacySave?: string;
  /** the collector found legacy tables but no iptables-legacy-save */
  legacyMissing?: string;
  nft?: Record<string, unknown>[];
  qdiscs?: { kind: string; dev?: string }[];
  /** `tc filter show` per device and direction: "eth0 ingress" → its text */
  tcFilters: Map<string, string>;
  listeners?: Listener[];
  nstat?: Map<string, number>;
  conntrackEntries?: number;
  /** `ip -j netns list-id`: the namespace ids this namespace gave, with their ip netns names */
  nsids?: Map<number, string | undefined>;
  /** FILE.err files: a command that failed, with its message */
  failures: { file: string; message: string }[];
}

const REQUIRED = [
  'link.json',
  'addr.json',
  'route.json',
  'neigh.json',
  'fdb.json',
  'bridge-link.json',
  'sysctl.txt',
];

function parseSysctls(file: string, text: string): Map<string, string> {
  const m = new Map<string, string>();
  text.split('\n').forEach((line, i) => {
    if (line === '') return;
    const x = /^([A-Za-z0-9_./-]+) = (.*)$/.exec(line);
    if (!x || x[1].includes('..'))
      throw new DumpError(`${file}:${i + 1}`, `expected "PATH = VALUE", got "${line.slice(0, 60)}"`);
    m.set(x[1], x[2]);
  });
  return m;
}

/** ss -H -l -t -u -n: "tcp LISTEN 0 4096 0.0.0.0:8080 0.0.0.0:*" */
function parseSs(file: string, text: string): Listener[] {
  const out: Listener[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const cols = line.trim().split(/\s+/);
    if (cols.length < 5 || !/^(tcp|udp)$/.test(cols[0]))
      throw new DumpError(
        `${file}:${i + 1}`,
        `expected "tcp|udp STATE RECV-Q SEND-Q LOCAL PEER", got "${line.slice(0, 60)}"`,
      );
    const local = cols[4];
    const k = local.lastIndexOf(':');
    const port = Number(local.slice(k + 1));
    if (k < 0 || !Number.isInteger(port) || port < 0 || port > 65535)
      throw new DumpError(`${file}:${i + 1}`, `local address "${local}" has no port`);
    let addr = local.slice(0, k).replace(/%.*$/, '');
    if (addr === '*' || addr === '[::]' || addr === '0.0.0.0') addr = '0.0.0.0';
    else if (addr.startsWith('[::ffff:')) addr = addr.slice(8, -1);
    else if (addr.startsWith('[')) return; // an IPv6-only socket: nothing IPv4 reaches it
    if (cols[0] === 'tcp' && cols[1] !== 'LISTEN') return;
    out.push({ proto: cols[0] as 'tcp' | 'udp', addr, port });
  });
  return out;
}

/** nstat -a -s -z: "#kernel" then "NAME VALUE RATE" */
function parseNstat(file: string, text: string): Map<string, number> {
  const m = new Map<string, number>();
  text.split('\n').forEach((line, i) => {
    if (line === '' || line.startsWith('#')) return;
    const x = /^(\w+)\s+(\d+)\s+[\d.]+$/.exec(line.trim());
    if (!x)
      throw new DumpError(`${file}:${i + 1}`, `expected "COUNTER VALUE RATE", got "${line.slice(0, 60)}"`);
    m.set(x[1], Number(x[2]));
  });
  return m;
}

function parseTcFilters(text: string): Map<string, string> {
  const m = new Map<string, string>();
  let key: string | undefined;
  for (const line of text.split('\n')) {
    const h = /^dev (\S+) (ingress|egress)$/.exec(line);
    if (h) {
      key = `${h[1]} ${h[2]}`;
      m.set(key, '');
    } else if (key && line.trim()) m.set(key, m.get(key) + line + '\n');
  }
  return m;
}

/** `errs`: the names of the namespace's FILE.err files (the failed commands) */
export function parseNamespace(files: DumpFiles, dir: string, errs: readonly string[]): NsDump {
  const at = (name: string) => `${dir}/${name}`;
  const read = (name: string) => files.get(at(name));
  const need = (name: string) => {
    const t = read(name);
    if (t === undefined) {
      const err = read(`${name}.err`);
      throw new DumpError(
        at(name),
        err !== undefined
          ? `the command failed on the node: ${err.trim().split('\n')[0]}`
          : 'missing from the dump',
      );
    }
    return t;
  };
  const whereText = read('where.txt');
  if (whereText === undefined) throw new DumpError(at('where.txt'), 'missing from the dump');
  const where = parseWhere(at('where.txt'), whereText);
  for (const f of REQUIRED) need(f);
  const failures: NsDump['failures'] = [];
  for (const name of errs) {
    const t = files.get(at(name))!;
    if (!REQUIRED.includes(name.slice(0, -4)) && !/flow entries have been shown/.test(t))
      failures.push({ file: at(name.slice(0, -4)), message: t.trim().split('\n')[0] ?? '' });
  }
  const optional = <T>(name: string, f: (file: string, text: string) => T): T | undefined => {
    const t = read(name);
    if (t === undefined || read(`${name}.err`) !== undefined) return undefined;
    return f(at(name), t);
  };
  const rulesText = read('rule.json');
  // conntrack -L exits 1 when it lists nothing ("0 flow entries have been shown")
  const count = (name: string) => {
    const t = read(name);
    const err = read(`${name}.err`);
    if (t === undefined || (err !== undefined && !/flow entries have been shown/.test(err))) return undefined;
    return t.split('\n').filter((l) => l.trim()).length;
  };
  const nft = optional('nft.json', (f, t) => {
    const r = nftSchema.safeParse(parseJson(f, t));
    if (!r.success) throw new DumpError(f, `not nft -j output: ${r.error.issues[0].message}`);
    return r.data.nftables;
  });
  return {
    dir,
    where,
    links: jsonArray(at('link.json'), need('link.json'), linkSchema),
    addrs: jsonArray(at('addr.json'), need('addr.json'), addrSchema),
    routes: jsonArray(at('route.json'), need('route.json'), routeSchema),
    rules:
      rulesText !== undefined && read('rule.json.err') === undefined
        ? jsonArray(at('rule.json'), rulesText, ruleSchema)
        : undefined,
    neighs: jsonArray(at('neigh.json'), need('neigh.json'), neighSchema),
    fdb: jsonArray(at('fdb.json'), need('fdb.json'), fdbSchema),
    bridgeLinks: jsonArray(at('bridge-link.json'), need('bridge-link.json'), bridgeLinkSchema),
    sysctls: parseSysctls(at('sysctl.txt'), need('sysctl.txt')),
    ipsetSave: optional('ipset-save.txt', (_f, t) => t),
    iptablesSave: optional('iptables-save.txt', (_f, t) => t),
    iptablesLegacySave: optional('iptables-legacy-save.txt', (_f, t) => t),
    legacyMissing: read('iptables-legacy-save.txt.missing')?.trim(),
    nft,
    qdiscs: optional('tc-qdisc.json', (f, t) => jsonArray(f, t, qdiscSchema)),
    tcFilters: parseTcFilters(read('tc-filter.txt') ?? ''),
    listeners: optional('ss.txt', parseSs),
    nstat: optional('nstat.txt', parseNstat),
    nsids: optional('nsid.json', (f, t) => new Map(jsonArray(f, t, nsidSchema).map((x) => [x.nsid, x.name]))),
    conntrackEntries: count('conntrack.txt'),
    failures,
  };
}
