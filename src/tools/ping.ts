/**
 * `ping` (iputils 20221126) from a namespace of the model: ICMP echo requests on the simulated
 * clock (-c -i -W -w -s -M do|dont|want -t -I, -n accepted), what the socket receives
 * printed as iputils prints it (replies with icmp_seq/ttl/time, `From X icmp_seq=N …` for the
 * ICMP errors on the socket's error queue, `ping: local error: message too long, mtu=M`,
 * `ping: sendmsg: …`), then the statistics (`+N errors`, `pipe N`, rtt) and iputils' exit
 * status. The exchange runs in time: neighbours resolve and fail on their timers, the PMTU
 * cache fills, the ICMP rate limits count, and what is left behind (neighbour states, counters,
 * `ip route get`'s cache line) is what a real ping leaves. RTTs follow the model's latency
 * (src/trace/exchange.ts). Options and messages were recorded from the real ping on this
 * machine (test/golden/time/).
 */
import { isValidIp4 } from '../wire/addr.ts';
import type { Pmtudisc, PingEvent } from '../kernel/sockets.ts';
import { payload } from '../trace/walk.ts';
import { runUntil } from '../trace/exchange.ts';
import type { Tool, ToolResult } from './types.ts';

const USAGE = `
Usage
  ping [options] <destination>

Options:
  <destination>      dns name or ip address
  -a                 use audible ping
  -A                 use adaptive ping
  -B                 sticky source address
  -c <count>         stop after <count> replies
  -C                 call connect() syscall on socket creation
  -D                 print timestamps
  -d                 use SO_DEBUG socket option
  -e <identifier>    define identifier for ping session, default is random for
                     SOCK_RAW and kernel defined for SOCK_DGRAM
                     Imply using SOCK_RAW (for IPv4 only for identifier 0)
  -f                 flood ping
  -h                 print help and exit
  -I <interface>     either interface name or address
  -i <interval>      seconds between sending each packet
  -L                 suppress loopback of multicast packets
  -l <preload>       send <preload> number of packages while waiting replies
  -m <mark>          tag the packets going out
  -M <pmtud opt>     define mtu discovery, can be one of <do|dont|want>
  -n                 no dns name resolution
  -O                 report outstanding replies
  -p <pattern>       contents of padding byte
  -q                 quiet output
  -Q <tclass>        use quality of service <tclass> bits
  -s <size>          use <size> as number of data bytes to be sent
  -S <size>          use <size> as SO_SNDBUF socket option value
  -t <ttl>           define time to live
  -U                 print user-to-user latency
  -v                 verbose output
  -V                 print version and exit
  -w <deadline>      reply wait <deadline> in seconds
  -W <timeout>       time to wait for response

IPv4 options:
  -4                 use IPv4
  -b                 allow pinging broadcast
  -R                 record route
  -T <timestamp>     define timestamp, can be one of <tsonly|tsandaddr|tsprespec>

IPv6 options:
  -6                 use IPv6
  -F <flowlabel>     define flow label, default is random
  -N <nodeinfo opt>  use icmp6 node info query, try <help> as argument

For more details see ping(8).
`;

/** options taking an argument (getopt "…:") and those without */
const WITH_ARG = 'cIiMstwWeFlmpQSTN';
const FLAGS = 'aABCDdfhLnOqUvV46bR';
/** the ones the emulation follows; the others are refused by name */
const EMULATED = 'cIiMstwWn4';

interface Opts {
  count?: number;
  /** µs */
  interval: number;
  /** µs: -W, how long to wait for a reply after the last send */
  linger: number;
  /** µs: -w */
  deadline?: number;
  size: number;
  pmtudisc: Pmtudisc;
  ttl?: number;
  iface?: string;
}

class Usage extends Error {
  constructor(
    readonly text: string,
    readonly code: number,
  ) {
    super(text);
  }
}

/** strtod-like seconds, as iputils' parse of -i/-W/-w */
function seconds(v: string): number | undefined {
  if (!/^\d*\.?\d+$|^\d+\.$/.test(v)) return undefined;
  return Number(v);
}

function parse(argv: readonly string[]): { o: Opts; dest: string } {
  const o: Opts = { interval: 1_000_000, linger: 10_000_000, size: 56, pmtudisc: 'want' };
  let dest: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('-') || a === '-') {
      if (dest !== undefined)
        throw new Usage(`podwalk: ping with more than one destination is not emulated\n`, 2);
      dest = a;
      continue;
    }
    for (let j = 1; j < a.length; j++) {
      const f = a[j];
      if (!WITH_ARG.includes(f) && !FLAGS.includes(f))
        throw new Usage(`ping: invalid option -- '${f}'\n${USAGE}`, 2);
      if (f === 'h') throw new Usage(USAGE, 2);
      if (!EMULATED.includes(f)) throw new Usage(`podwalk: "ping -${f}" is not emulated\n`, 2);
      if (!WITH_ARG.includes(f)) continue;
      let v = a.slice(j + 1);
      if (!v) {
        if (i + 1 >= argv.length) throw new Usage(`ping: option requires an argument -- '${f}'\n${USAGE}`, 2);
        v = argv[++i];
      }
      j = a.length;
      option(o, f, v);
    }
  }
  if (dest === undefined) throw new Usage('ping: usage error: Destination address required\n', 1);
  return { o, dest };
}

function option(o: Opts, f: string, v: string): void {
  const int = (min: number, max: number): number => {
    if (!/^-?\d+$/.test(v)) throw new Usage(`ping: invalid argument: '${v}'\n`, 1);
    const n = Number(v);
    if (n < min || n > max)
      throw new Usage(`ping: invalid argument: '${v}': out of range: ${min} <= value <= ${max}\n`, 1);
    return n;
  };
  switch (f) {
    case 'c':
      o.count = int(1, Number.MAX_SAFE_INTEGER);
      return;
    case 's':
      o.size = int(0, 65507);
      return;
    case 't':
      o.ttl = int(0, 255);
      return;
    case 'i': {
      const s = seconds(v);
      if (s === undefined) throw new Usage(`ping: bad timing interval: ${v}\n`, 2);
      o.interval = Math.round(s * 1e6);
      return;
    }
    case 'W': {
      const s = seconds(v);
      if (s === undefined) throw new Usage(`ping: bad linger time: ${v}\n`, 2);
      o.linger = Math.round(s * 1e6);
      return;
    }
    case 'w': {
      const s = seconds(v);
      if (s === undefined) throw new Usage(`ping: bad wait time: ${v}\n`, 2);
      o.deadline = Math.round(s * 1e6);
      return;
    }
    case 'M':
      if (v !== 'do' && v !== 'dont' && v !== 'want') throw new Usage(`ping: invalid -M argument: ${v}\n`, 2);
      o.pmtudisc = v;
      return;
    case 'I':
      o.iface = v;
      return;
  }
}

/** iputils' %ld.%03ld-style times: µs as ms with 3, 2, 1 or 0 decimals by magnitude */
function tripTime(us: number): string {
  const ms = Math.floor(us / 1000);
  if (us >= 100_000) return `${ms}`;
  if (us >= 10_000) return `${ms}.${Math.floor((us % 1000) / 100)}`;
  if (us >= 1000) return `${ms}.${String(Math.floor((us % 1000) / 10)).padStart(2, '0')}`;
  return `${ms}.${String(us % 1000).padStart(3, '0')}`;
}

const ms3 = (us: number) => `${Math.floor(us / 1000)}.${String(us % 1000).padStart(3, '0')}`;

/** printf %g with 6 significant digits */
function g(x: number): string {
  return String(Number(x.toPrecision(6)));
}

/** pr_icmph: the text iputils prints for an ICMP error */
export function icmpText(type: number, code: number, mtu?: number): string {
  if (type === 11) return code === 0 ? 'Time to live exceeded' : 'Frag reassembly time exceeded';
  if (type !== 3) return `Bad ICMP type: ${type}`;
  const texts = [
    'Destination Net Unreachable',
    'Destination Host Unreachable',
    'Destination Protocol Unreachable',
    'Destination Port Unreachable',
    `Frag needed and DF set (mtu = ${mtu ?? 0})`,
    'Source Route Failed',
    'Destination Net Unknown',
    'Destination Host Unknown',
    'Source Host Isolated',
    'Destination Net Prohibited',
    'Destination Host Prohibited',
    'Destination Net Unreachable for Type of Service',
    'Destination Host Unreachable for Type of Service',
    'Packet filtered',
    'Precedence Violation',
    'Precedence Cutoff',
  ];
  return texts[code] ?? `Dest Unreachable, Bad Code: ${code}`;
}

const ERRNO_TEXT: Record<string, string> = {
  ENETUNREACH: 'Network is unreachable',
  EHOSTUNREACH: 'No route to host',
  ENOBUFS: 'No buffer space available',
  EMSGSIZE: 'Message too long',
};

export const ping: Tool = (argv, { cluster: c, netns: ns }): ToolResult => {
  let o: Opts;
  let dest: string;
  try {
    ({ o, dest } = parse(argv));
  } catch (e) {
    if (e instanceof Usage) return { stdout: '', stderr: e.text, code: e.code };
    throw e;
  }
  if (!isValidIp4(dest))
    return {
      stdout: '',
      stderr: `podwalk: ping ${dest}: name resolution is not emulated: give an IPv4 address\n`,
      code: 2,
    };
  if (o.count === undefined && o.deadline === undefined)
    return {
      stdout: '',
      stderr: 'podwalk: ping without -c or -w runs until interrupted: give -c COUNT or -w SECONDS\n',
      code: 2,
    };
  if (o.ttl === 0)
    return { stdout: '', stderr: 'ping: cannot set unicast time-to-live: Invalid argument\n', code: 2 };
  let out = '';
  let err = '';
  // -I: a device (SO_BINDTODEVICE) or a source address
  let src: string | undefined;
  let device: string | undefined;
  if (o.iface !== undefined) {
    if (isValidIp4(o.iface)) {
      if (!ns.localAddress(o.iface))
        return { stdout: '', stderr: `ping: bind: Cannot assign requested address\n`, code: 2 };
      src = o.iface;
    } else {
      const dev = ns.link(o.iface);
      if (!dev) return { stdout: '', stderr: `ping: SO_BINDTODEVICE ${o.iface}: No such device\n`, code: 2 };
      device = dev.name;
    }
  }
  // the probe socket's connect(): the route and the source address, before anything is sent
  const rr = c.stack.routeOutput(ns, dest, device);
  if (!rr) return { stdout: '', stderr: 'ping: connect: Network is unreachable\n', code: 2 };
  const source = src ?? ('error' in rr ? dest : rr.src);
  out += `PING ${dest} (${dest}) `;
  if (o.iface !== undefined) out += `from ${source} ${device ?? ''}: `;
  out += `${o.size}(${o.size + 28}) bytes of data.\n`;

  const w = c.world;
  const id = w.derive('ping-id', ns.name, w.now) & 0xffff;
  const sock = c.sockets.openPing(ns, id);
  const start = w.now;
  const sent = new Map<number, number>();
  let transmitted = 0;
  let received = 0;
  let errors = 0;
  let pipe = 0;
  let lastSend = start;
  const rtts: number[] = [];
  const deadline = o.deadline !== undefined ? start + o.deadline : undefined;

  const acknowledge = (seq: number) => {
    pipe = Math.max(pipe, transmitted - seq + 1);
  };
  const drain = () => {
    for (const ev of sock.inbox.splice(0)) print(ev);
  };
  const print = (ev: PingEvent) => {
    if (ev.kind === 'reply') {
      const at = sent.get(ev.seq);
      if (at === undefined) return;
      const rtt = ev.time - at;
      received++;
      rtts.push(rtt);
      acknowledge(ev.seq);
      out += `${ev.bytes} bytes from ${ev.from}: icmp_seq=${ev.seq} ttl=${ev.ttl} time=${tripTime(rtt)} ms\n`;
      return;
    }
    errors++;
    acknowledge(ev.seq);
    out += `From ${ev.from} icmp_seq=${ev.seq} ${icmpText(ev.type, ev.code, ev.mtu)}\n`;
  };
  const answered = () => received + errors >= transmitted;

  // pinger(): a probe every interval. ENOBUFS (the device dropped it) is retried at the next
  // tick without counting the probe, until oom_count × min(interval/2, 500 ms) reaches the
  // linger time; then it is a hard local error: `ping: sendmsg: …`, counted as transmitted
  const nores = Math.min(Math.floor(o.interval / 2), 500_000);
  let oom = 0;
  let at = start;
  // main_loop's exit conditions, checked whenever it wakes: with a deadline (-w), the first error
  // ends it (`if (rts->deadline && rts->nerrors) break;`)
  const erred = () => deadline !== undefined && errors > 0;
  for (let seq = 1; o.count === undefined || seq <= o.count;) {
    if (deadline !== undefined && at >= deadline) break;
    if (erred()) break;
    runUntil(c, at, () => {
      if (deadline === undefined) return false;
      drain();
      return erred();
    });
    drain();
    if (erred()) break;
    const ok = c.sockets.sendEcho(ns, dest, id, seq, payload(o.size), o.pmtudisc === 'do', {
      pmtudisc: o.pmtudisc,
      ttl: o.ttl,
      src,
    });
    lastSend = w.now;
    at += o.interval;
    const e = ok ? undefined : c.sockets.lastError;
    if (e?.errno === 'ENOBUFS') {
      oom++;
      if (oom * nores < o.linger) continue;
    }
    if (ok) oom = 0;
    transmitted++;
    sent.set(seq, lastSend);
    if (e?.errno === 'EMSGSIZE') {
      // ip_local_error: the error queue has it, with the MTU; iputils counts it as an error
      errors++;
      err += `ping: local error: message too long, mtu=${e.mtu}\n`;
    } else if (e) err += `ping: sendmsg: ${ERRNO_TEXT[e.errno] ?? e.errno}\n`;
    seq++;
  }
  // the last answers: until every probe is answered, -W after the last send, or the deadline;
  // when they are all answered already (local errors), ping still sleeps until its next tick
  if (erred()) {
    // it has ended already
  } else if (answered()) runUntil(c, Math.min(lastSend + o.interval, deadline ?? Infinity));
  else
    runUntil(c, deadline ?? lastSend + o.linger, () => {
      drain();
      return answered() || erred();
    });
  drain();
  c.sockets.closePing(ns, sock);

  const loss = transmitted ? ((transmitted - received) * 100) / transmitted : 0;
  out += `\n--- ${dest} ping statistics ---\n`;
  out += `${transmitted} packets transmitted, ${received} received`;
  if (errors) out += `, +${errors} errors`;
  out += `, ${g(loss)}% packet loss, time ${Math.round((lastSend - start) / 1000)}ms\n`;
  let last = '';
  if (received) {
    const min = Math.min(...rtts);
    const max = Math.max(...rtts);
    const sum = rtts.reduce((a, b) => a + b, 0);
    const avg = Math.floor(sum / rtts.length);
    const sum2 = rtts.reduce((a, b) => a + b * b, 0);
    const mdev = Math.floor(Math.sqrt(Math.max(0, Math.floor(sum2 / rtts.length) - avg * avg)));
    last = `rtt min/avg/max/mdev = ${ms3(min)}/${ms3(avg)}/${ms3(max)}/${ms3(mdev)} ms`;
  }
  if (pipe > 1) last += `${last ? ', ' : ''}pipe ${pipe}`;
  out += `${last}\n`;
  const code = !received || (deadline !== undefined && o.count !== undefined && received < o.count) ? 1 : 0;
  return { stdout: out, stderr: err, code };
};
