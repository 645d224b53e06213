/**
 * Records what the real tools print on calico-node's own layout (Calico v3.27: cali* veths,
 * proxy ARP, /32 routes, IPAM blocks), for test/calico-golden.test.ts to compare the emulated
 * tools with. Needs root, network namespaces and iproute2; run it under the lab lock:
 *
 *   flock /tmp/podwalk-lab.lock npx tsx scripts/record-calico-goldens.ts
 *
 *   flock /tmp/podwalk-lab.lock npx tsx scripts/record-calico-goldens.ts calico-vxlan
 *
 * It brings up the lab of the seed cluster in calico-bgp, or in the mode named (the model's namespaces, cali veths with
 * ee:ee:ee:ee:ee:ee, the CNI plugin's sysctls, routes with their blackholes, as src/lab/plan.ts
 * reads them from the model), pings pod-a → pod-c and pod-a → pod-b once each (the test walks the
 * same ICMP exchanges through the model: the pods' ARP for 169.254.1.1 answered by proxy ARP),
 * records the commands below at once (before any neighbour timer fires: DELAY → PROBE takes 5 s),
 * and takes the lab down again.
 *
 * In calico-vxlan the nodes also record felix's device and its FDB (`ip -d link show vxlan.calico`,
 * `bridge fdb show dev vxlan.calico`); their routes and neighbours are in the common commands.
 *
 * Output: test/golden/<dir>/<netns>/<command-slug>.txt and test/golden/<dir>/manifest.json, <dir>
 * `calico` (calico-bgp) or `calico-vxlan`.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { seedCluster } from '../src/cluster/seed.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { labDown, labExec, labUp, run } from '../src/lab/host.ts';
import { labPrefix } from '../src/lab/plan.ts';
import { CALICO_VXLAN_DEVICE } from '../src/cni/modes.ts';

/** each mode's lab name and golden directory (under test/golden/) */
export const GOLDEN_SETS = {
  'calico-bgp': { lab: 'calicogold', dir: 'calico' },
  'calico-vxlan': { lab: 'cvxgold', dir: 'calico-vxlan' },
} as const;
export type GoldenMode = keyof typeof GOLDEN_SETS;

/** the pings, in order: [from, to address] (pod-c, then pod-b) */
export const PINGS: [string, string][] = [
  ['pod-a', '10.244.1.5'],
  ['pod-a', '10.244.0.6'],
];

const COMMON = ['ip neigh', 'ip route', 'ip -d route', 'ip -d link', 'ip addr', 'ip route show table local'];

/** what is recorded where: the nodes of the pings and their pods */
export function commandsFor(c: Cluster, netns: string): string[][] {
  const a = c.pods.find((p) => p.name === 'pod-a')!;
  const out = [...COMMON];
  if (c.world.netns.get(netns)?.link(CALICO_VXLAN_DEVICE))
    out.push(`ip -d link show ${CALICO_VXLAN_DEVICE}`, `bridge fdb show dev ${CALICO_VXLAN_DEVICE}`);
  if (netns === 'node1')
    out.push(
      `ip route get 169.254.1.1 from ${a.ip} iif ${a.hostVeth}`,
      `sysctl net.ipv4.conf.${a.hostVeth}.proxy_arp net.ipv4.neigh.${a.hostVeth}.proxy_delay net.ipv4.conf.${a.hostVeth}.route_localnet net.ipv4.conf.${a.hostVeth}.forwarding`,
    );
  return out.map((s) => s.split(' '));
}

export const NETNS = ['node1', 'node2', 'pod-a', 'pod-b', 'pod-c'];

export function calicoGoldenCluster(mode: GoldenMode = 'calico-bgp'): Cluster {
  const model = buildCluster(seedCluster(), mode);
  return { ...model, spec: { ...model.spec, name: GOLDEN_SETS[mode].lab } };
}

export function slug(argv: readonly string[]): string {
  return argv.join('_').replace(/[^A-Za-z0-9._-]+/g, '-') || 'empty';
}

async function main(mode: GoldenMode) {
  const OUT = new URL(`../test/golden/${GOLDEN_SETS[mode].dir}/`, import.meta.url);
  const c = calicoGoldenCluster(mode);
  rmSync(OUT, { recursive: true, force: true });
  labDown(c);
  const state = await labUp(c, { listeners: false });
  const recorded: { netns: string; argv: string[]; file: string; code: number; stderr: string }[] = [];
  const pings: string[] = [];
  try {
    // linkwatch: operstates settle
    run(['sleep', '2']);
    for (const [from, to] of PINGS) {
      const r = labExec(state, from, ['ping', '-c1', '-W2', to]);
      if (r.code !== 0) throw new Error(`ping ${from} → ${to} failed: ${r.stdout}${r.stderr}`);
      pings.push(r.stdout);
    }
    const t0 = Date.now();
    for (const ns of NETNS)
      for (const argv of commandsFor(c, ns)) {
        const r = labExec(state, ns, argv);
        const file = `${ns}/${slug(argv)}.txt`;
        mkdirSync(new URL(`${ns}/`, OUT), { recursive: true });
        writeFileSync(new URL(file, OUT), r.stdout);
        recorded.push({ netns: ns, argv, file, code: r.code, stderr: r.stderr });
      }
    const ms = Date.now() - t0;
    if (ms > 4000)
      throw new Error(`the snapshot took ${ms} ms (> 4 s): neighbour timers may have fired; retry`);
  } finally {
    labDown(c);
  }
  const manifest = {
    recorded: new Date().toISOString(),
    kernel: run(['uname', '-r']).stdout.trim(),
    ip: run(['ip', '-V']).stdout.trim(),
    mode,
    labPrefix: labPrefix(GOLDEN_SETS[mode].lab),
    pings,
    commands: recorded,
  };
  writeFileSync(new URL('manifest.json', OUT), JSON.stringify(manifest, null, 1) + '\n');
  process.stdout.write(`${recorded.length} commands recorded\n`);
}

if (process.argv[1]?.endsWith('record-calico-goldens.ts')) {
  const mode = process.argv[2] ?? 'calico-bgp';
  if (!(mode in GOLDEN_SETS)) {
    process.stderr.write(
      `record-calico-goldens: ${mode}: not a mode with goldens (${Object.keys(GOLDEN_SETS).join(', ')})\n`,
    );
    process.exit(2);
  }
  await main(mode as GoldenMode);
}
