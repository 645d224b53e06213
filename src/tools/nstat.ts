/**
 * `nstat` (iproute2 6.1) on the SNMP counters the model keeps (Netns.mib): the counters of the
 * drop paths and ICMP output. Only `-a` (absolute: podwalk keeps no history file) with named
 * counters is emulated, because printing a counter the model does not keep would be invented;
 * a name podwalk does not count is an error, not a 0.
 *
 * The format is nstat's: "#kernel", then `%-32s%-16llu%6.1f` per counter (the rate is 0.0 without
 * a history), in the kernel's order (/proc/net/snmp, then /proc/net/netstat); `-z` adds counters
 * at zero, but IcmpMsg counters exist only once non-zero, as in /proc/net/snmp. `-j` prints
 * {"kernel":{…}}. Checked against the real nstat in the lab (lab-diff compares it).
 */
import type { Netns } from '../kernel/objects.ts';
import type { Tool, ToolResult } from './types.ts';

/** the counters the model keeps, in the kernel's order (IcmpMsg types go after the Icmp ones) */
export const NSTAT_COUNTERS = [
  'IpInHdrErrors',
  'IpInAddrErrors',
  'IpOutDiscards',
  'IpOutNoRoutes',
  'IpFragFails',
  'IcmpInMsgs',
  'IcmpInDestUnreachs',
  'IcmpInTimeExcds',
  'IcmpInEchos',
  'IcmpInEchoReps',
  'IcmpOutMsgs',
  'IcmpOutRateLimitGlobal',
  'IcmpOutRateLimitHost',
  'IcmpOutDestUnreachs',
  'IcmpOutTimeExcds',
  'IcmpOutEchos',
  'IcmpOutEchoReps',
  'IcmpMsgInType*',
  'IcmpMsgOutType*',
  'TcpActiveOpens',
  'TcpPassiveOpens',
  'TcpAttemptFails',
  'TcpInSegs',
  'TcpOutSegs',
  'TcpRetransSegs',
  'TcpOutRsts',
  'UdpNoPorts',
  // /proc/net/netstat's order (snmp4_net_list): TCPAbortOnTimeout comes before IPReversePathFilter
  'TcpExtTCPAbortOnTimeout',
  'TcpExtIPReversePathFilter',
  'TcpExtTCPSynRetrans',
  'IpExtInNoRoutes',
] as const;

const USAGE = `Usage: nstat [OPTION] [ PATTERN [ PATTERN ] ]
   -h, --help          this message
   -a, --ignore        ignore history
   -d, --scan=SECS     sample every statistics every SECS
   -j, --json          format output in JSON
   -n, --nooutput      do history only
   -p, --pretty        pretty print
   -r, --reset         reset history
   -s, --noupdate      don't update history
   -t, --interval=SECS report average over the last SECS
   -V, --version       output version information
   -z, --zeros         show entries with zero activity
`;

/** the counters of a namespace in nstat's order, IcmpMsg types expanded */
function ordered(ns: Netns): { name: string; value: number; dynamic: boolean }[] {
  const out: { name: string; value: number; dynamic: boolean }[] = [];
  for (const n of NSTAT_COUNTERS) {
    if (!n.endsWith('*')) {
      out.push({ name: n, value: ns.mib.get(n) ?? 0, dynamic: false });
      continue;
    }
    const prefix = n.slice(0, -1);
    const types = [...ns.mib.keys()]
      .filter((k) => k.startsWith(prefix) && /^\d+$/.test(k.slice(prefix.length)))
      .map((k) => Number(k.slice(prefix.length)))
      .sort((a, b) => a - b);
    for (const t of types)
      out.push({ name: `${prefix}${t}`, value: ns.mib.get(`${prefix}${t}`) ?? 0, dynamic: true });
  }
  return out;
}

function known(name: string): boolean {
  return (
    /^IcmpMsg(In|Out)Type\d+$/i.test(name) ||
    NSTAT_COUNTERS.some((n) => n.toLowerCase() === name.toLowerCase())
  );
}

export const nstat: Tool = (argv, { netns }): ToolResult => {
  const err = (msg: string, code = 2): ToolResult => ({ stdout: '', stderr: msg, code });
  let absolute = false;
  let zeros = false;
  let json = false;
  const patterns: string[] = [];
  for (const a of argv) {
    if (a === '--help' || a === '-h') return { stdout: '', stderr: USAGE, code: 0 };
    if (a.startsWith('--')) {
      const long: Record<string, string> = {
        '--ignore': 'a',
        '--noupdate': 's',
        '--zeros': 'z',
        '--json': 'j',
      };
      const f = long[a];
      if (!f) return err(`podwalk: "nstat ${a}" is not emulated\n`);
      if (f === 'a') absolute = true;
      if (f === 'z') zeros = true;
      if (f === 'j') json = true;
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (const f of a.slice(1)) {
        if (f === 'a') absolute = true;
        else if (f === 's') continue;
        else if (f === 'z') zeros = true;
        else if (f === 'j') json = true;
        else if ('dnprtV'.includes(f)) return err(`podwalk: "nstat -${f}" is not emulated\n`);
        else return err(`nstat: invalid option -- '${f}'\n${USAGE}`, 255);
      }
      continue;
    }
    patterns.push(a);
  }
  if (!absolute)
    return err('podwalk: nstat without -a is not emulated: podwalk keeps no history file (use nstat -a)\n');
  if (patterns.length === 0)
    return err(
      `podwalk: nstat with no counter named is not emulated; podwalk counts ${NSTAT_COUNTERS.join(', ')}\n`,
    );
  for (const p of patterns) {
    if (/[*?[]/.test(p)) return err(`podwalk: nstat patterns (${p}) are not emulated: name the counters\n`);
    if (!known(p))
      return err(`podwalk: nstat: ${p} is not a counter podwalk keeps (${NSTAT_COUNTERS.join(', ')})\n`);
  }
  const wanted = new Set(patterns.map((p) => p.toLowerCase()));
  const rows = ordered(netns).filter((r) => wanted.has(r.name.toLowerCase()) && (r.value !== 0 || zeros));
  if (json) {
    const body = rows.map((r) => `"${r.name}":${r.value}`).join(',');
    return { stdout: `{"kernel":{${body}}}\n`, stderr: '', code: 0 };
  }
  const lines = rows.map((r) => `${r.name.padEnd(32)}${String(r.value).padEnd(16)}${'0.0'.padStart(6)}`);
  return { stdout: ['#kernel', ...lines].join('\n') + '\n', stderr: '', code: 0 };
};
