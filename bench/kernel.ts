/**
 * The simulation against the real kernel, measured in one run (needs root and network
 * namespaces; otherwise the section says why it was skipped):
 *  - bringing the seed cluster up: buildCluster() vs `podwalk lab up` (namespaces, links, routes…);
 *  - the seed cross-node VXLAN path pod-a → pod-c: UDP datagrams per second the kernel delivers
 *    (counted on node2's veth-pod-c) vs datagrams per second the simulation walks; also per second
 *    of CPU time (the sender's user + system time, which carries the kernel's whole path: veth,
 *    bridge, VXLAN, the underlay and back up run in its send() calls; the simulation's
 *    process.cpuUsage()), since on a shared machine wall time measures the other work too.
 */
import { seedCluster } from '../src/cluster/seed.ts';
import { buildCluster } from '../src/cni/build.ts';
import { labDown, labExec, labUnavailable, labUp, run } from '../src/lab/host.ts';
import { walk } from '../src/trace/walk.ts';

export interface KernelBench {
  skipped?: string;
  simBuildMs: number;
  labUpMs: number;
  labDownMs: number;
  kernelPps: number;
  kernelSent: number;
  kernelDelivered: number;
  simDatagramsPerSec: number;
  simWalks: number;
  /** datagrams per second of CPU time: the simulation's, and the kernel's (the sender's user + system time) */
  simDatagramsPerCpuSec: number;
  kernelPpsCpu: number;
}

/** sends 64-byte UDP datagrams for `seconds` as fast as one Python loop can */
const SENDER = `
import os, socket, sys, time
dst, seconds = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((dst, 9))
payload = bytes(36)
n = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    for _ in range(256):
        try:
            s.send(payload)
            n += 1
        except OSError:
            pass
t = os.times()
print(n, t.user + t.system)
`;

function txPackets(ns: string, dev: string): number {
  const r = run(['ip', '-n', ns, '-s', '-j', 'link', 'show', dev]);
  const j = JSON.parse(r.stdout) as { stats64: { tx: { packets: number } } }[];
  return j[0].stats64.tx.packets;
}

export async function kernelBench(measureMs: number): Promise<KernelBench> {
  const spec = seedCluster();
  const out: KernelBench = {
    simBuildMs: 0,
    labUpMs: 0,
    labDownMs: 0,
    kernelPps: 0,
    kernelSent: 0,
    kernelDelivered: 0,
    simDatagramsPerSec: 0,
    simWalks: 0,
    simDatagramsPerCpuSec: 0,
    kernelPpsCpu: 0,
  };
  // simulated build: the mean of repeated builds
  let t = performance.now();
  let builds = 0;
  while (performance.now() - t < measureMs) {
    buildCluster(spec, 'flannel-vxlan');
    builds++;
  }
  out.simBuildMs = (performance.now() - t) / builds;

  // simulated datagrams over the same path (request + the echo back: two datagrams per walk)
  const c = buildCluster(spec, 'flannel-vxlan');
  // the first walk resolves the neighbours; the next ones warm the JIT up
  for (let i = 0; i < 500; i++)
    walk(c, { from: 'pod-a', to: 'pod-c', proto: 'udp', port: 8080, sport: 50000 + i });
  t = performance.now();
  const cpu = process.cpuUsage();
  let walks = 0;
  while (performance.now() - t < measureMs) {
    walk(c, { from: 'pod-a', to: 'pod-c', proto: 'udp', port: 8080, sport: 30001 + (walks % 20000) });
    walks++;
  }
  out.simWalks = walks;
  out.simDatagramsPerSec = (2 * walks * 1000) / (performance.now() - t);
  const used = process.cpuUsage(cpu);
  out.simDatagramsPerCpuSec = (2 * walks * 1e6) / (used.user + used.system);

  const why = labUnavailable();
  if (why) {
    out.skipped = why;
    return out;
  }
  // a lab of its own name, so that a user's `lab up` of the seed cluster is left alone
  const labSpec = { ...spec, name: `${spec.name}-bench` };
  const labCluster = buildCluster(labSpec, 'flannel-vxlan');
  labDown(labCluster);
  t = performance.now();
  const st = await labUp(labCluster);
  out.labUpMs = performance.now() - t;
  try {
    const node2 = st.namespaces['node2'];
    const veth = buildCluster(labSpec, 'flannel-vxlan').pods.find((p) => p.name === 'pod-c')!.hostVeth;
    // resolve neighbours first
    labExec(st, 'pod-a', ['ping', '-c', '1', '-W', '1', '10.244.1.5']);
    const before = txPackets(node2, veth);
    const t0 = performance.now();
    const r = labExec(
      st,
      'pod-a',
      ['python3', '-c', SENDER, '10.244.1.5', String(measureMs / 1000)],
      undefined,
      measureMs + 20_000,
    );
    const secs = (performance.now() - t0) / 1000;
    const delivered = txPackets(node2, veth) - before;
    const [sent, cpuSecs] = r.stdout.trim().split(/\s+/).map(Number);
    out.kernelSent = sent;
    out.kernelDelivered = delivered;
    out.kernelPps = delivered / secs;
    out.kernelPpsCpu = delivered / cpuSecs;
  } finally {
    t = performance.now();
    labDown(labCluster);
    out.labDownMs = performance.now() - t;
  }
  return out;
}
