/**
 * `sysctl` (procps-ng 4.0.2) on a namespace's sysctls: read (`KEY`, `-n`, `-N`, `-b`), write
 * (`-w KEY=VALUE`, or `KEY=VALUE`), `-q`, `-e`. Keys are the model's (Netns.sysctl) plus the
 * per-device ones the kernel keeps for every interface (net.ipv4.conf.DEV.{rp_filter,forwarding},
 * net.ipv4.neigh.DEV.gc_stale_time), so a write reaches the datapath. Values are validated the
 * way the kernel's proc handlers do; the kernel's aliasing of ip_forward and conf.all.forwarding
 * (one value, propagated to every device) is kept. Keys the model does not know answer like a
 * missing /proc/sys file. Directory listings (-a, a key naming a directory) are not modelled.
 */
import type { Netns } from '../kernel/objects.ts';
import type { Tool, ToolResult } from './types.ts';

const USAGE = `
Usage:
 sysctl [options] [variable[=value] ...]

Options:
  -a, --all            display all variables
  -A                   alias of -a
  -X                   alias of -a
      --deprecated     include deprecated parameters to listing
      --dry-run        Print the key and values but do not write
  -b, --binary         print value without new line
  -e, --ignore         ignore unknown variables errors
  -N, --names          print variable names without values
  -n, --values         print only values of the given variable(s)
  -p, --load[=<file>]  read values from file
  -f                   alias of -p
      --system         read values from all system directories
  -r, --pattern <expression>
                       select setting that match expression
  -q, --quiet          do not echo variable set
  -w, --write          enable writing a value to variable
  -o                   does nothing
  -x                   does nothing
  -d                   alias of -h

 -h, --help     display this help and exit
 -V, --version  output version information and exit

For more details see sysctl(8).
`;
const TRY = "Try `sysctl --help' for more information.\n";

/** value shape and range of the keys podwalk models, as their kernel proc handlers check them */
interface KeyType {
  /** number of integers (proc_dointvec vector) */
  n: number;
  min?: number;
  max?: number;
  /** br_netfilter: any non-zero value reads back as 1 */
  bool?: boolean;
  /** ip_local_port_range: low <= high */
  range?: boolean;
}
const TYPES: [RegExp, KeyType][] = [
  [/^net\.ipv4\.ip_default_ttl$/, { n: 1, min: 1, max: 255 }],
  [/^net\.ipv4\.ip_local_port_range$/, { n: 2, min: 1, max: 65535, range: true }],
  [/^net\.ipv4\.tcp_rmem$/, { n: 3, min: 1 }],
  [/^net\.ipv4\.tcp_timestamps$/, { n: 1, min: 0, max: 2 }],
  [/^net\.ipv4\.tcp_(sack|window_scaling)$/, { n: 1, min: 0, max: 1 }],
  [/^net\.netfilter\.nf_conntrack_tcp_loose$/, { n: 1, min: 0, max: 1 }],
  [/^net\.bridge\.bridge-nf-call-/, { n: 1, bool: true }],
  [/^net\.ipv4\.tcp_syn(ack)?_retries$/, { n: 1, min: 1, max: 127 }],
  [/^net\.ipv4\.tcp_syn_linear_timeouts$/, { n: 1, min: 0, max: 16 }],
  [/^net\.ipv4\.icmp_(ratelimit|ratemask|msgs_per_sec|msgs_burst)$/, { n: 1, min: 0 }],
  [
    /^net\.ipv4\.neigh\.[^.]+\.(mcast_solicit|ucast_solicit|app_solicit|mcast_resolicit|unres_qlen)$/,
    { n: 1, min: 0 },
  ],
  [
    /^net\.ipv4\.neigh\.[^.]+\.(base_reachable_time_ms|retrans_time_ms|delay_first_probe_time)$/,
    { n: 1, min: 0 },
  ],
  [/^net\.ipv4\.route\.(mtu_expires|min_pmtu)$/, { n: 1, min: 0 }],
];
const typeOf = (key: string): KeyType => TYPES.find(([re]) => re.test(key))?.[1] ?? { n: 1 };

const FORWARDING = ['net.ipv4.ip_forward', 'net.ipv4.conf.all.forwarding'];

/** the model's name of a key: device names keep their dots (net.ipv4.conf.flannel.1.rp_filter) */
const modelKey = (key: string) => key.replace(/\//g, '.');

/**
 * The value of a key (as sysctl prints it: a device's dots as slashes) the way /proc/sys shows
 * it, or undefined when there is no such file.
 */
export function readSysctl(ns: Netns, key: string): string | undefined {
  const own = ns.sysctl.get(modelKey(key));
  if (own !== undefined) return own;
  const ipForward = ns.sysctl.get('net.ipv4.ip_forward') ?? '0';
  if (key === 'net.ipv4.conf.default.forwarding') return ipForward;
  const m =
    /^net\.ipv4\.(conf|neigh)\.([^.]+)\.(rp_filter|forwarding|gc_stale_time|base_reachable_time_ms|delay_first_probe_time|retrans_time_ms|mcast_solicit|ucast_solicit|app_solicit|mcast_resolicit|unres_qlen|unres_qlen_bytes)$/.exec(
      key,
    );
  if (!m) return undefined;
  const dev = m[2].replace(/\//g, '.');
  if (!ns.links.has(dev)) return undefined;
  // a device's settings start as a copy of "default" (forwarding follows ip_forward)
  if (m[1] === 'conf' && m[3] === 'rp_filter') return ns.sysctl.get('net.ipv4.conf.default.rp_filter') ?? '0';
  if (m[1] === 'conf' && m[3] === 'forwarding') return ipForward;
  if (m[1] === 'neigh') return ns.sysctl.get(`net.ipv4.neigh.default.${m[3]}`);
  return undefined;
}

/** proc_dointvec's parser: integers separated by white space; undefined = EINVAL */
function parseInts(text: string): number[] | undefined {
  const words = text.trim().split(/\s+/);
  if (!text.trim()) return undefined;
  const out: number[] = [];
  for (const w of words) {
    if (!/^-?\d+$/.test(w)) return undefined;
    out.push(Number(w));
  }
  return out;
}

/** write a value the way the kernel stores it; false = EINVAL */
function writeSysctl(ns: Netns, key: string, value: string): boolean {
  const t = typeOf(key);
  const ints = parseInts(value);
  if (!ints || ints.length > t.n) return false;
  const old = (readSysctl(ns, key) ?? '').split('\t').map(Number);
  const v = [...ints, ...old.slice(ints.length)].slice(0, t.n);
  if (v.some((x) => (t.min !== undefined && x < t.min) || (t.max !== undefined && x > t.max))) return false;
  if (t.range && v[0] > v[1]) return false;
  if (t.bool) v[0] = v[0] ? 1 : 0;
  const text = v.join('\t');
  if (FORWARDING.includes(key)) {
    // one value in the kernel, copied to "default" and every device
    for (const k of FORWARDING) ns.sysctl.set(k, text);
    for (const k of [...ns.sysctl.keys()])
      if (/^net\.ipv4\.conf\.[^.]+\.forwarding$/.test(k) && !FORWARDING.includes(k)) ns.sysctl.delete(k);
  } else ns.sysctl.set(modelKey(key), text);
  return true;
}

/** procps' slashdot: unless the first separator already is `to`, swap every . and / */
function slashdot(s: string, from: string, to: string): string {
  const i = s.search(/[./]/);
  if (i < 0 || s[i] === to) return s;
  return s.replace(/[./]/g, (c) => (c === from ? to : from));
}

export const sysctl: Tool = (argv, ctx): ToolResult => {
  const ns = ctx.netns;
  let stdout = '';
  let stderr = '';
  let code = 0;
  const flags = { n: false, N: false, b: false, q: false, e: false, w: false };
  const words: string[] = [];
  const LONG: Record<string, string> = {
    all: 'a',
    binary: 'b',
    ignore: 'e',
    names: 'N',
    values: 'n',
    load: 'p',
    pattern: 'r',
    quiet: 'q',
    write: 'w',
    help: 'h',
    version: 'V',
    system: 'S',
    deprecated: 'D',
    'dry-run': 'R',
  };
  const opts: string[] = [];
  // getopt permutes: all options first, whatever their place
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      words.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const name = a.slice(2).split('=')[0];
      const hits = Object.keys(LONG).filter((k) => k.startsWith(name));
      const hit = hits.includes(name) ? name : hits.length === 1 ? hits[0] : undefined;
      if (!hit || !name) return { stdout: USAGE, stderr: `sysctl: unrecognized option '${a}'\n`, code: 0 };
      opts.push(LONG[hit]);
      if (hit === 'pattern' && !a.includes('=')) i++;
    } else if (a.startsWith('-') && a.length > 1) {
      for (let k = 1; k < a.length; k++) {
        const c = a[k];
        if (!'abeNnpfqwhVAXoxdr'.includes(c))
          return { stdout: USAGE, stderr: `sysctl: invalid option -- '${c}'\n`, code: 0 };
        opts.push(c);
        if (c === 'r') {
          if (k + 1 === a.length) i++;
          break;
        }
      }
    } else words.push(a);
  }
  for (const c of opts) {
    if (c === 'h' || c === 'd') return { stdout: USAGE, stderr: '', code: 0 };
    if (c === 'V') return { stdout: 'sysctl from procps-ng 4.0.2\n', stderr: '', code: 0 };
    if ('aAXrpfSDR'.includes(c))
      return {
        stdout: '',
        stderr: `podwalk: sysctl: listing and loading (-a, -r, -p, --system) are not modelled; name the keys\n`,
        code: 2,
      };
    if (c === 'n') flags.n = true;
    if (c === 'N') flags.N = true;
    if (c === 'b') flags.b = true;
    if (c === 'q') flags.q = true;
    if (c === 'e') flags.e = true;
    if (c === 'w') flags.w = true;
  }
  if (!argv.length) return { stdout: '', stderr: USAGE, code: 1 };
  if (!words.length) return { stdout: '', stderr: `sysctl: no variables specified\n${TRY}`, code: 1 };
  const show = (key: string, value: string) => {
    if (flags.N) stdout += `${key}\n`;
    else if (flags.n) stdout += flags.b ? value : `${value}\n`;
    else stdout += flags.b ? value : `${key} = ${value}\n`;
  };
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq < 0 && flags.w) {
      stderr += `sysctl: command line(0): invalid syntax, continuing...\n`;
      code = 1;
      continue;
    }
    const name = eq < 0 ? w : w.slice(0, eq).trim();
    // the path under /proc/sys, and the key as sysctl prints it
    const path = slashdot(name, '.', '/');
    const key = slashdot(name, '/', '.');
    const value = readSysctl(ns, key);
    if (value === undefined) {
      if (!flags.e) {
        const proc = `/proc/sys/${path}`;
        stderr += isDirectory(ns, key)
          ? `podwalk: sysctl: ${key} is a directory; listing it is not modelled, name its keys\n`
          : `sysctl: cannot stat ${proc}: No such file or directory\n`;
        code = isDirectory(ns, key) ? 2 : 1;
      }
      continue;
    }
    if (eq < 0) {
      show(key, value);
      continue;
    }
    const newValue = w.slice(eq + 1).trim();
    if (!writeSysctl(ns, key, newValue)) {
      stderr += `sysctl: setting key "${key}": Invalid argument\n`;
      code = 1;
      continue;
    }
    if (!flags.q) show(key, newValue);
  }
  return { stdout, stderr, code };
};

/** a prefix of keys that exist: a /proc/sys directory */
function isDirectory(ns: Netns, key: string): boolean {
  const dirs = [
    'net',
    'net.ipv4',
    'net.ipv4.conf',
    'net.ipv4.neigh',
    'net.core',
    'net.bridge',
    'net.netfilter',
  ];
  if (dirs.includes(key)) return true;
  const m = /^net\.ipv4\.(conf|neigh)\.([^.]+)$/.exec(key);
  return !!m && (m[2] === 'all' || m[2] === 'default' || ns.links.has(m[2].replace(/\//g, '.')));
}
