/**
 * `podwalk lab trace`: the same flow in the simulation and on the real kernel. Real traffic from
 * a real client in the source namespace, captures on every interface of the lab (packet sockets, read as tcpdump reads them:
 * capture.ts), and the
 * per-interface packet sequences compared with what the simulation put on the same interfaces.
 */
import { readFileSync, rmSync } from 'node:fs';
import type { Cluster } from '../cni/build.ts';
import { readPcapHeader } from '../wire/pcap.ts';
import { httpRequest, walk, type Walk, type WalkRequest } from '../trace/walk.ts';
import { startCaptures, type Captures } from './capture.ts';
import { compareSequences, completeChecksums, packetSummary, type InterfaceDiff } from './compare.ts';
import {
  LabError,
  LabInterrupted,
  labExecAsync,
  labScratch,
  manyListeners,
  pause,
  PYTHON,
  promptly,
  type LabState,
  type RunResult,
} from './host.ts';

/** one model's walk against the lab's one real run */
export interface ModelComparison {
  sim: Walk;
  diffs: InterfaceDiff[];
  agree: boolean;
}

export interface LabTraceResult extends ModelComparison {
  /** the models of `opts.also`, each against the same real run */
  also: ModelComparison[];
  /** what the real client printed (exit status and output), for the report */
  client: { code: number; out: string };
  /** the kernel resent a SYN the simulation sent once (its counters then count each copy) */
  retransmitted: boolean;
}

export interface LabTraceOptions {
  /** abort (a signal): stop the captures and the client, throw LabInterrupted */
  signal?: AbortSignal;
  /**
   * more models of the same lab (with the same faults), judged against the same real run: one
   * kernel exchange checks the simulated World and the World imported from the lab alike
   */
  also?: Cluster[];
}

/** the records of a pcap file that tcpdump may still be writing: a record cut short ends it */
function pcapFrames(file: string): { raw: boolean; frames: Uint8Array[] } {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(file));
  } catch {
    return { raw: false, frames: [] };
  }
  if (bytes.length < 24) return { raw: false, frames: [] };
  const h = readPcapHeader(bytes);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frames: Uint8Array[] = [];
  for (let o = 24; o + 16 <= bytes.length;) {
    const incl = dv.getUint32(o + 8, h.littleEndian);
    if (o + 16 + incl > bytes.length) break;
    frames.push(bytes.slice(o + 16, o + 16 + incl));
    o += 16 + incl;
  }
  return { raw: h.linktype !== 1, frames };
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
 * A BGP segment (TCP port 179): the control plane's own traffic between a Calico lab's BIRDs (a
 * KEEPALIVE that falls into a capture), which the model's walks do not carry
 */
function isBgp(frame: Uint8Array, raw: boolean): boolean {
  const ip = raw ? 0 : 14;
  if (!raw && ((frame[12] << 8) | frame[13]) !== 0x0800) return false;
  if (frame.length < ip + 20 || frame[ip + 9] !== 6) return false;
  const l4 = ip + (frame[ip] & 0x0f) * 4;
  if (frame.length < l4 + 4) return false;
  const sport = (frame[l4] << 8) | frame[l4 + 1];
  const dport = (frame[l4 + 2] << 8) | frame[l4 + 3];
  return sport === 179 || dport === 179;
}

/**
 * A walk is one exchange: the clock does not run past it, so a SYN (or a SYN-ACK) that gets no
 * answer is sent once (the SYN and SYN-ACK timers run in time: curl, ping, --run, and the
 * over-time scenarios compare them with the kernel). The kernel sends it again after 1 s, 3 s…; a SYN or SYN-ACK identical to one already seen
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

/** what a capture holds so far, as compared: without IGMP, BGP and SYN retransmissions */
function realSequence(file: string): { seq: string[]; retransmitted: boolean } {
  const { raw, frames } = pcapFrames(file);
  const all = frames
    .filter((f) => !isIgmp(f, raw) && !isBgp(f, raw))
    .map((f) => packetSummary(completeChecksums(f, raw), raw));
  const seq = withoutRetransmissions(all);
  return { seq, retransmitted: seq.length !== all.length };
}

/**
 * Walk `req` in the simulation (on `sim`, a fresh model of the lab's cluster with the same faults)
 * and for real in the lab, then compare every interface.
 */
export async function labTrace(
  state: Pick<LabState, 'namespaces' | 'prefix'>,
  sim: Cluster,
  req: WalkRequest,
  opts: LabTraceOptions = {},
): Promise<LabTraceResult> {
  const signal = opts.signal;
  manyListeners(signal);
  const models = [sim, ...(opts.also ?? [])].map((c) => {
    const w = walk(c, req, { exchange: true });
    const by = new Map<string, string[]>();
    for (const cap of c.world.captures) {
      const key = `${cap.netns}/${cap.dev}`;
      const raw = c.world.ns(cap.netns).link(cap.dev)?.type === 'ipip';
      (by.get(key) ?? by.set(key, []).get(key)!).push(packetSummary(cap.frame, raw));
    }
    return { c, w, by };
  });
  const w = models[0].w;
  const f = w.request.flow;
  const dir = labScratch(state);
  // every interface of every namespace the simulated packets touched (a real packet that strays
  // elsewhere still shows on the interface it left by); all of them in small clusters
  const touched = new Set(models.flatMap((m) => m.c.world.captures.map((c) => c.netns)));
  // (the source's among them: a packet the model never sent, the kernel may send)
  touched.add(f.from);
  const names = Object.keys(state.namespaces).filter(
    (n) => Object.keys(state.namespaces).length <= 12 || touched.has(n),
  );
  let capture: Captures | undefined;
  try {
    capture = await startCaptures(state, names, dir, signal);
    if (signal?.aborted) throw new LabInterrupted(String(signal.reason));
    const captures = [...capture.list].sort((a, b) =>
      a.netns + '/' + a.dev < b.netns + '/' + b.dev ? -1 : 1,
    );
    let client: RunResult;
    const exec = (argv: string[]) =>
      labExecAsync(state, f.from, promptly(argv), { timeoutMs: 10_000, signal });
    if (f.proto === 'tcp') {
      const reqBytes = httpRequest(f.dst, f.dport!, req.size);
      client = await exec([PYTHON, '-c', TCP_CLIENT, f.dst, String(f.dport), String(f.sport), hex(reqBytes)]);
    } else if (f.proto === 'udp') {
      const n = req.size !== undefined ? req.size - 28 : 32;
      client = await exec([
        ...[PYTHON, '-c', UDP_CLIENT, f.dst, String(f.dport), String(f.sport), String(n)],
        f.df ? '1' : '0',
      ]);
    } else {
      const n = req.size !== undefined ? req.size - 28 : 56;
      client = await exec([
        'ping',
        '-n',
        '-c',
        '1',
        '-W',
        '1',
        '-M',
        f.df ? 'do' : 'dont',
        '-s',
        String(n),
        f.dst,
      ]);
    }
    // let the last packets (FIN/ACK, late ICMP) land before the captures stop; an ARP resolution
    // that fails takes the kernel 3 probes, 1 s apart, before it answers with ICMP host unreachable
    const arpFails = w.traces.some(
      (t) => t.disposition.kind === 'dropped' && t.disposition.reason === 'neighbour-failed',
    );
    await pause(arpFails ? 3500 : 600, signal);
    // on a loaded machine tcpdump may lag behind the kernel: wait a little longer for captures that
    // hold fewer packets than the simulation put on their interface (not long: after ~5 s the
    // kernel's neighbour timers send probes of their own)
    for (const until = Date.now() + 1500; Date.now() < until && !signal?.aborted; await pause(100, signal))
      if (
        captures.every(
          (c) =>
            realSequence(c.file).seq.length >=
            Math.max(...models.map((m) => m.by.get(`${c.netns}/${c.dev}`)?.length ?? 0)),
        )
      )
        break;
    if (signal?.aborted) throw new LabInterrupted(String(signal.reason));
    const lost = await capture.stop();
    if (lost.length) throw new LabError(`the captures are incomplete: ${lost.join('; ')}`);
    let retransmitted = false;
    const real = captures.map((c) => {
      const r = realSequence(c.file);
      retransmitted ||= r.retransmitted;
      return { ...c, seq: r.seq };
    });
    const [first, ...also] = models.map((m): ModelComparison => {
      const diffs: InterfaceDiff[] = [];
      const simBy = new Map(m.by);
      for (const c of real) {
        diffs.push(compareSequences(c.netns, c.dev, simBy.get(`${c.netns}/${c.dev}`) ?? [], c.seq));
        simBy.delete(`${c.netns}/${c.dev}`);
      }
      // packets the model put on interfaces the lab does not have
      for (const [key, seq] of simBy) {
        const [netns, dev] = key.split('/');
        diffs.push(compareSequences(netns, dev, seq, []));
      }
      return { sim: m.w, diffs, agree: diffs.every((d) => d.first === -1) };
    });
    return {
      ...first,
      also,
      client: { code: client.code, out: (client.stdout + client.stderr).trim() },
      retransmitted,
    };
  } finally {
    await capture?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
