/**
 * `sysctl` (procps-ng 4.0.2) on a namespace's sysctls: read (`KEY`, `-n`, `-N`, `-b`), write
 * (`-w KEY=VALUE`, or `KEY=VALUE`), `-q`, `-e`. Keys are the model's (Netns.sysctl) plus the
 * per-device ones the kernel keeps for every interface (net.ipv4.conf.DEV.{rp_filter,forwarding},
 * net.ipv4.neigh.DEV.gc_stale_time), so a write reaches the datapath. Values are validated the
 * way the kernel's proc handlers do; the kernel's aliasing of ip_forward and conf.all.forwarding
 * (one value, propagated to every device) is kept. Every other key a fresh namespace of this
 * kernel has (src/kernel/sysctl-recorded.ts, recorded from the real one by
 * scripts/record-sysctl.ts) reads as it reads there: the namespace's own, and the per-device
 * ones for each device of the namespace; writing one of those is refused as not emulated (exit
 * 2: nothing in the model would follow it). `-a` and a directory list them in /proc/sys order.
 * A global key (outside net.*, or a net.* key only the initial namespace has) says it is not
 * emulated; only a key Linux does not have answers like a missing /proc/sys file.
 */
import type { Netns } from '../kernel/objects.ts';
import {
  DEPRECATED_DEVICE_SYSCTLS,
  DEVICE_SYSCTLS,
  GLOBAL_SYSCTLS,
  INIT_NET_ONLY_SYSCTLS,
  LOOPBACK_SYSCTLS,
  NETNS_SYSCTLS,
  READ_ONLY_SYSCTLS,
  UNREADABLE_SYSCTLS,
} from '../kernel/sysctl-recorded.ts';
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

type Family = keyof typeof DEVICE_SYSCTLS;
const FAMILIES = Object.keys(DEVICE_SYSCTLS) as Family[];
/** a per-device key as sysctl prints it (a device's dots as slashes) */
const DEVICE_KEY = /^net\.(ipv4|ipv6)\.(conf|neigh)\.([^.]+)\.([^.]+)$/;

/**
 * The value a key reads in the namespace: the model's own (readSysctl), else what a fresh
 * namespace of the recorded kernel reads: the namespace's keys, and for a device of the
 * namespace its per-device keys (net.ipv6.conf.DEV.mtu is the device's MTU, the loopback has a
 * few of its own). undefined when the namespace has no such key.
 */
export function kernelSysctl(ns: Netns, key: string): string | undefined {
  const own = readSysctl(ns, key);
  if (own !== undefined) return own;
  // inet_forward_change: turning forwarding on turns conf.all.accept_redirects off, and back
  if (key === 'net.ipv4.conf.all.accept_redirects')
    return ns.sysctl.get('net.ipv4.ip_forward') === '0' ? '1' : '0';
  const fresh = NETNS_SYSCTLS[key];
  if (fresh !== undefined) return fresh;
  const m = DEVICE_KEY.exec(key);
  const dev = m && ns.link(m[3].replace(/\//g, '.'));
  if (!m || !dev) return undefined;
  const fam = `${m[1]}.${m[2]}` as Family;
  if (fam === 'ipv6.conf' && m[4] === 'mtu') return String(dev.mtu);
  if (dev.type === 'loopback' && LOOPBACK_SYSCTLS[fam]?.[m[4]] !== undefined)
    return LOOPBACK_SYSCTLS[fam][m[4]];
  return DEVICE_SYSCTLS[fam][m[4]] ?? DEPRECATED_DEVICE_SYSCTLS[fam]?.[m[4]];
}

/**
 * Every key the namespace has, in the order `sysctl -a` lists them (procfs keeps each
 * directory's entries sorted by name), as sysctl prints them; `deprecated`: with the keys only
 * --deprecated lists.
 */
export function sysctlKeys(ns: Netns, deprecated = false): string[] {
  const paths: string[][] = Object.keys(NETNS_SYSCTLS).map((k) => k.split('.'));
  for (const dev of ns.links.keys())
    for (const fam of FAMILIES) {
      const [v, dir] = fam.split('.');
      const names = Object.keys(DEVICE_SYSCTLS[fam]);
      if (fam === 'ipv6.conf') names.push('mtu');
      if (deprecated) names.push(...Object.keys(DEPRECATED_DEVICE_SYSCTLS[fam] ?? {}));
      for (const name of names) paths.push(['net', v, dir, dev, name]);
    }
  paths.sort((a, b) => {
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
    return a.length - b.length;
  });
  return paths.map((p) => p.map((c) => c.replace(/\./g, '/')).join('.'));
}

/** an existing key that reads nothing (write-only, or unreadable until set): sysctl's exit status */
function unreadable(ns: Netns, key: string): number | undefined {
  const direct = UNREADABLE_SYSCTLS[key];
  if (direct !== undefined) return direct;
  const m = DEVICE_KEY.exec(key);
  if (!m || !ns.link(m[3].replace(/\//g, '.'))) return undefined;
  return UNREADABLE_SYSCTLS[`net.${m[1]}.${m[2]}.%.${m[4]}`];
}

/** why a key Linux has is not emulated, or undefined */
function notEmulated(key: string): string | undefined {
  const under = (k: string) => k === key || k.startsWith(key + '.');
  if (INIT_NET_ONLY_SYSCTLS.some(under))
    return `only the initial network namespace has it; podwalk's namespaces are not the host's`;
  if (GLOBAL_SYSCTLS.some(under))
    return `a global key, the host's own and the same in every namespace; podwalk has the network namespace only`;
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
  } else ns.setSysctl(modelKey(key), text);
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
  const flags = { n: false, N: false, b: false, q: false, e: false, w: false, a: false, D: false };
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
    if ('rpfSR'.includes(c))
      return {
        stdout: '',
        stderr: `podwalk: sysctl: patterns and loading (-r, -p, --system, --dry-run) are not modelled; name the keys\n`,
        code: 2,
      };
    if ('aAX'.includes(c)) flags.a = true;
    if (c === 'D') flags.D = true;
    if (c === 'n') flags.n = true;
    if (c === 'N') flags.N = true;
    if (c === 'b') flags.b = true;
    if (c === 'q') flags.q = true;
    if (c === 'e') flags.e = true;
    if (c === 'w') flags.w = true;
  }
  if (!argv.length) return { stdout: '', stderr: USAGE, code: 1 };
  const show = (key: string, value: string) => {
    if (flags.N) stdout += `${key}\n`;
    else if (flags.n) stdout += flags.b ? value : `${value}\n`;
    else stdout += flags.b ? value : `${key} = ${value}\n`;
  };
  if (flags.a) {
    for (const key of sysctlKeys(ns, flags.D)) show(key, kernelSysctl(ns, key)!);
    return { stdout, stderr, code };
  }
  if (!words.length) return { stdout: '', stderr: `sysctl: no variables specified\n${TRY}`, code: 1 };
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
    const value = kernelSysctl(ns, key);
    const why = value === undefined ? notEmulated(key) : undefined;
    const dir = value === undefined && !why ? sysctlKeys(ns).filter((k) => k.startsWith(key + '.')) : [];
    if (why) {
      stderr += `podwalk: sysctl: ${key} is not emulated (${why})\n`;
      code = 2;
      continue;
    }
    if (eq < 0 && dir.length) {
      for (const k of dir) show(k, kernelSysctl(ns, k)!);
      continue;
    }
    const silent = value === undefined ? unreadable(ns, key) : undefined;
    if (silent !== undefined && eq < 0) {
      code = Math.max(code, silent);
      continue;
    }
    if (value === undefined && silent === undefined) {
      if (!flags.e) {
        const proc = `/proc/sys/${path}`;
        stderr += dir.length
          ? `podwalk: sysctl: ${key} is a directory; writing it is not modelled, name its keys\n`
          : `sysctl: cannot stat ${proc}: No such file or directory\n`;
        code = dir.length ? 2 : 1;
      }
      continue;
    }
    if (eq < 0) {
      show(key, value!);
      continue;
    }
    if (READ_ONLY_SYSCTLS.includes(key)) {
      // the real sysctl (procps-ng 4.0.2) warns and exits 0 here
      stderr += `sysctl: setting key "${key}": Invalid argument\n`;
      continue;
    }
    if (readSysctl(ns, key) === undefined) {
      stderr += `podwalk: sysctl: writing ${key} is not emulated (nothing in the model follows it; it reads as a fresh namespace has it)\n`;
      code = 2;
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
