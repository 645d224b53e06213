/**
 * `podwalk lab trace`: the same flow in the simulation and on the real kernel. Real traffic from
 * a real client in the source namespace, real tcpdump on every interface of the lab, and the
 * per-interface packet sequences compared with what the simulation put on the same interfaces.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cluster } from '../cni/build.ts';
import { readPcap } from '../wire/pcap.ts';
import { httpRequest, walk, type Walk, type WalkRequest } from '../trace/walk.ts';
import { compareSequences, completeChecksums, packetSummary, type InterfaceDiff } from './compare.ts';
import { labExec, LabError, run, type LabState } from './host.ts';

/** what a trace needs of a lab: model netns → real netns */
type LabNamespaces = Pick<LabState, 'namespaces'>;

export interface LabTraceResult {
  sim: Walk;
  diffs: InterfaceDiff[];
  agree: boolean;
  /** what the real client printed (exit status and output), for the report */
  client: { code: number; out: string };
  /** the kernel resent a SYN the simulation sent once (its counters then count each copy) */
  retransmitted: boolean;
}

/**
 * The interfaces of the given lab namespaces (all when not given), lo included: what a host sends
 * itself (the ICMP error for its own packet whose ARP failed) passes there, with an all-zero
 * Ethernet header.
 */
function interfaces(
  state: LabNamespaces,
  only?: Set<string>,
): { netns: string; dev: string; raw: boolean }[] {
  const out: { netns: string; dev: string; raw: boolean }[] = [];
  for (const [model, lab] of Object.entries(state.namespaces)) {
    if (only && !only.has(model)) continue;
    const r = run(['ip', '-n', lab, '-o', 'link', 'show']);
    for (const line of r.stdout.split('\n')) {
      const m = /^\d+: ([^:@]+)(?:@[^:]+)?: <([^>]*)>.*link\/(\S+)/.exec(line);
      // tcpdump cannot open a device that is down (and nothing passes through it)
      if (!m || !m[2].split(',').includes('UP')) continue;
      out.push({ netns: model, dev: m[1], raw: m[3] !== 'ether' && m[3] !== 'loopback' });
    }
  }
  return out;
}

function startCapture(state: LabNamespaces, netns: string, dev: string, file: string): Promise<ChildProcess> {
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      state.namespaces[netns],
      'tcpdump',
      '-i',
      dev,
      '-w',
      file,
      '-U',
      '-n',
      '--immediate-mode',
      '-s',
      '262144',
    ],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  return new Promise((resolve, reject) => {
    let err = '';
    // tcpdump on a loaded machine can take many seconds to say it listens: wait long, and kill
    // what never started instead of leaving it behind
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new LabError(
          `tcpdump on ${netns}/${dev} did not start within ${TCPDUMP_START_MS / 1000} s: ${err.trim() || 'it printed nothing (is the machine overloaded?)'}`,
        ),
      );
    }, TCPDUMP_START_MS);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('listening on')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (!err.includes('listening on'))
        reject(new LabError(`tcpdump on ${netns}/${dev} exited (${code}): ${err.trim()}`));
    });
  });
}

function stopCapture(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.on('exit', () => resolve());
    child.kill('SIGINT');
    setTimeout(() => child.kill('SIGKILL'), 3000).unref();
  });
}

const TCP_CLIENT = `
import socket, sys, time
dst, dport, sport, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
req = bytes.fromhex(n)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", sport)); s.settimeout(3)
try:
    s.connect((dst, dport))
except OSError as e:
    print("connect:", e); sys.exit(1)
s.sendall(req)
got = b""
while True:
    try:
        d = s.recv(65536)
    except OSError as e:
        print("recv:", e); sys.exit(1)
    if not d or b"ok\\n" in got + d:
        got += d
        break
    got += d
# longer than the longest delayed ACK (200 ms): the response's ACK leaves before the FIN, every time
time.sleep(0.25)
s.close()
print(len(got), "bytes")
`;

const UDP_CLIENT = `
import socket, sys
dst, dport, sport, n, df = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2 if df else 0)  # IP_MTU_DISCOVER: IP_PMTUDISC_DO / DONT
s.bind(("0.0.0.0", sport)); s.settimeout(1)
try:
    s.sendto(bytes((0x10 + i) & 0xff for i in range(n)), (dst, dport))
    d, a = s.recvfrom(65536)
    print(len(d), "bytes back")
except OSError as e:
    print("udp:", e); sys.exit(1)
`;

/** how long tcpdump may take to print "listening on" (seconds on a busy 2-core machine) */
const TCPDUMP_START_MS = 30_000;

/**
 * IGMP membership reports the kernel sends on its own when devices come up: the model has no
 * multicast, so they are left out of the comparison (the one normalisation of real traffic).
 */
function isIgmp(frame: Uint8Array, raw: boolean): boolean {
  const ip = raw ? 0 : 14;
  if (!raw && ((frame[12] << 8) | frame[13]) !== 0x0800) return false;
  return frame.length > ip + 9 && frame[ip + 9] === 2;
}

/**
 * The simulation has no TCP retransmission timer: a SYN (or a SYN-ACK) that gets no answer is sent
 * once. The kernel sends it again after 1 s, 3 s…; a SYN or SYN-ACK identical to one already seen
 * on the same interface is such a retransmission and is left out (the second normalisation of
 * real traffic). So is what the retransmission caused downstream: once one has been left out on an
 * interface, an ICMP error identical to one already seen there is the answer to the copy (a router
 * with no route answers the first SYN-ACK and its copies alike; lab NAT scenario 1007). Only these:
 * other segments look alike in this summary (no sequence numbers) without being resent.
 */
function withoutRetransmissions(seq: string[]): string[] {
  const seen = new Set<string>();
  let resent = false;
  return seq.filter((l) => {
    const syn = / tcp \d+>\d+ \[S\.?\] /.test(l);
    if (!syn && !/ icmp (3|11|12)\/\d+ /.test(l)) return true;
    if (seen.has(l) && (syn || resent)) {
      if (syn) resent = true;
      return false;
    }
    seen.add(l);
    return true;
  });
}

function hex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * Walk `req` in the simulation (on `sim`, a fresh model of the lab's cluster with the same faults,
 * or the World imported from it) and for real in the namespaces `state` names (a lab's, or any
 * made by hand), then compare every interface.
 */
export async function labTrace(
  state: LabNamespaces,
  sim: Cluster,
  req: WalkRequest,
): Promise<LabTraceResult> {
  const w = walk(sim, req, { exchange: true });
  const f = w.request.flow;
  const dir = mkdtempSync(join(tmpdir(), 'podwalk-lab-'));
  // every interface of every namespace the simulated packets touched (a real packet that strays
  // elsewhere still shows on the interface it left by); all of them in small clusters
  const touched = new Set(sim.world.captures.map((c) => c.netns));
  const ifs = interfaces(state, Object.keys(state.namespaces).length > 12 ? touched : undefined);
  const captures: { netns: string; dev: string; raw: boolean; file: string; child: ChildProcess }[] = [];
  try {
    const started = await Promise.allSettled(
      ifs.map(async (i) => {
        const file = join(dir, `${i.netns}-${i.dev}.pcap`);
        const child = await startCapture(state, i.netns, i.dev, file);
        captures.push({ ...i, file, child });
      }),
    );
    const failed = started.find((p) => p.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    captures.sort((a, b) => (a.netns + '/' + a.dev < b.netns + '/' + b.dev ? -1 : 1));
    let client: { code: number; stdout: string; stderr: string };
    if (f.proto === 'tcp') {
      const reqBytes = httpRequest(f.dst, f.dport!, req.size);
      client = labExec(
        state,
        f.from,
        ['python3', '-c', TCP_CLIENT, f.dst, String(f.dport), String(f.sport), hex(reqBytes)],
        undefined,
        10_000,
      );
    } else if (f.proto === 'udp') {
      const n = req.size !== undefined ? req.size - 28 : 32;
      client = labExec(
        state,
        f.from,
        ['python3', '-c', UDP_CLIENT, f.dst, String(f.dport), String(f.sport), String(n), f.df ? '1' : '0'],
        undefined,
        10_000,
      );
    } else {
      const n = req.size !== undefined ? req.size - 28 : 56;
      client = labExec(
        state,
        f.from,
        ['ping', '-n', '-c', '1', '-W', '1', '-M', f.df ? 'do' : 'dont', '-s', String(n), f.dst],
        undefined,
        10_000,
      );
    }
    // let the last packets (FIN/ACK, late ICMP) land before the captures stop; an ARP resolution
    // that fails takes the kernel 3 probes, 1 s apart, before it answers with ICMP host unreachable
    const arpFails = w.traces.some(
      (t) => t.disposition.kind === 'dropped' && t.disposition.reason === 'neighbour-failed',
    );
    await new Promise((r) => setTimeout(r, arpFails ? 3500 : 600));
    await Promise.all(captures.map((c) => stopCapture(c.child)));
    const simBy = new Map<string, string[]>();
    for (const c of sim.world.captures) {
      const key = `${c.netns}/${c.dev}`;
      const raw = sim.world.ns(c.netns).link(c.dev)?.type === 'ipip';
      (simBy.get(key) ?? simBy.set(key, []).get(key)!).push(packetSummary(c.frame, raw));
    }
    const diffs: InterfaceDiff[] = [];
    let retransmitted = false;
    for (const c of captures) {
      let real: string[] = [];
      try {
        real = readPcap(new Uint8Array(readFileSync(c.file)))
          .filter((r) => !isIgmp(r.frame, c.raw))
          .map((r) => packetSummary(completeChecksums(r.frame, c.raw), c.raw));
      } catch {
        real = [];
      }
      const once = withoutRetransmissions(real);
      if (once.length !== real.length) retransmitted = true;
      diffs.push(compareSequences(c.netns, c.dev, simBy.get(`${c.netns}/${c.dev}`) ?? [], once));
      simBy.delete(`${c.netns}/${c.dev}`);
    }
    // packets the simulation put on interfaces the lab does not have
    for (const [key, seq] of simBy) {
      const [netns, dev] = key.split('/');
      diffs.push(compareSequences(netns, dev, seq, []));
    }
    return {
      sim: w,
      diffs,
      agree: diffs.every((d) => d.first === -1),
      client: { code: client.code, out: (client.stdout + client.stderr).trim() },
      retransmitted,
    };
  } finally {
    await Promise.all(captures.map((c) => stopCapture(c.child)));
    rmSync(dir, { recursive: true, force: true });
  }
}
