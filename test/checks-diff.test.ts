/**
 * doctor's cluster-wide checks (src/diagnose/checks.ts, linear in the cluster) against the node-pair
 * versions they replaced (test/checks-reference.ts), on random clusters of every mode with faults
 * planted through the emulated tools as the CLI's --run plants them: routes deleted, replaced via
 * another node or a stranger, blackholes and more specific routes, neighbours deleted or pointing at
 * a stale VTEP MAC, FDB entries deleted, links down, MTUs changed, ip_forward off, BGP sessions
 * down, pods with one MAC or one address. Both run on clusters built alike, the new ones inside `podwalk doctor` (after its forward
 * probe, where doctor reads the state), the reference after the same forward walk; every finding
 * must be the same, in the same order, as JSON to the byte. PODWALK_CHECKS_SEED=S runs one seed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadCluster } from '../src/cluster/load.ts';
import { seedCluster } from '../src/cluster/seed.ts';
import { CNI_MODES, type ClusterSpec, type CniMode } from '../src/cluster/spec.ts';
import { buildCluster } from '../src/cni/build.ts';
import { MODE_INFO } from '../src/cni/modes.ts';
import { routePrefix } from '../src/kernel/fib.ts';
import { seededRandom } from '../src/kernel/world.ts';
import { doctor, doctorToJson, renderDoctor } from '../src/diagnose/doctor.ts';
import { prepareCluster, runCommand } from '../src/tools/index.ts';
import { walk } from '../src/trace/walk.ts';
import { CHANGED, referenceChecks } from './checks-reference.ts';

const SEEDS = process.env.PODWALK_CHECKS_SEED ? [Number(process.env.PODWALK_CHECKS_SEED)] : range(1, 70);

function range(a: number, b: number): number[] {
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
}

/** 2 to 5 nodes on one or two subnets, 1 or 2 pods each, some node and pod MTUs off, some BGP sessions down */
function randomSpec(rnd: () => number, mode: CniMode): ClusterSpec {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const subnets = rnd() < 0.5 ? 1 : 2;
  const nodes = 2 + Math.floor(rnd() * 4);
  const lines = [`name: diff`, `cni: ${mode}`, `mtu: 1500`];
  const podMtu = pick([undefined, undefined, 1500, 1450, 1440, 1480, 1410]);
  if (podMtu) lines.push(`podMtu: ${podMtu}`);
  lines.push('subnets:');
  for (let s = 0; s < subnets; s++)
    lines.push(`  - {name: lan${s}, cidr: 192.168.${s + 1}.0/24, gateway: 192.168.${s + 1}.1}`);
  lines.push('nodes:');
  const names: string[] = [];
  for (let i = 0; i < nodes; i++) {
    const s = i < subnets ? i : Math.floor(rnd() * subnets);
    const mtu = pick([undefined, undefined, undefined, 1400, 1450, 9000]);
    names.push(`node${i}`);
    lines.push(
      `  - {name: node${i}, ip: 192.168.${s + 1}.${10 + i}/24, podCIDR: 10.244.${i}.0/24${mtu ? `, mtu: ${mtu}` : ''}}`,
    );
  }
  lines.push('pods:');
  // some pods with a MAC or an address another pod has (on one node, or another)
  const dupMac = rnd() < 0.3 ? '02:00:00:00:00:42' : undefined;
  // (in flannel's bridge layout: Calico's per-pod /32 routes refuse a second pod of an address on a node)
  const dupIp = mode.startsWith('flannel') && rnd() < 0.3 ? Math.floor(rnd() * nodes) : undefined;
  for (let i = 0; i < nodes; i++)
    for (let j = 0; j < 1 + Math.floor(rnd() * 2); j++) {
      const mac = dupMac && rnd() < 0.5 ? `, mac: '${dupMac}'` : '';
      const ip = dupIp !== undefined && rnd() < 0.5 ? `, ip: 10.244.${dupIp}.77` : '';
      lines.push(`  - {name: p${i}-${j}, node: node${i}${mac}${ip}, listen: [tcp/8080]}`);
    }
  if (mode === 'calico-bgp' && rnd() < 0.5) {
    const a = Math.floor(rnd() * nodes);
    const b = (a + 1 + Math.floor(rnd() * (nodes - 1))) % nodes;
    lines.push('bgp:', `  - {nodes: [${names[a]}, ${names[b]}], state: down}`);
  }
  return loadCluster(lines.join('\n') + '\n', 'diff.yaml');
}

/**
 * Faults for a built cluster, read off its tables (so each names a route, neighbour or FDB entry
 * it has), and kept only where the emulated tool accepts them in turn
 */
function faults(spec: ClusterSpec, mode: CniMode, rnd: () => number): string[] {
  const c = buildCluster(spec, mode);
  const pick = <T>(xs: readonly T[]): T | undefined => xs[Math.floor(rnd() * xs.length)];
  const tunnel = MODE_INFO[mode].device;
  const candidates: string[] = [];
  const count = 1 + Math.floor(rnd() * 4);
  for (let k = 0; k < count; k++) {
    const n = pick(c.nodes)!;
    const other = pick(c.nodes.filter((x) => x !== n))!;
    const ns = c.world.ns(n.name);
    const routes = ns.fib.list().filter((r) => r.len > 0 && r.len < 32);
    const r = pick(routes);
    const vx = tunnel ? ns.link(tunnel) : undefined;
    const neigh = vx ? pick(ns.neigh.list().filter((e) => e.dev === vx.name)) : undefined;
    const fdb = vx?.type === 'vxlan' ? pick(vx.fdb.list()) : undefined;
    const pod = pick(c.pods.filter((p) => p.node === n.name));
    const sameSubnet = c.nodes.find((x) => x !== n && x.subnet === n.subnet);
    const at = `${n.name}: `;
    const prefix = `10.244.${c.nodes.indexOf(other)}`;
    const options: (string | undefined)[] = [
      r && `${at}ip route del ${routePrefix(r)}`,
      r && `${at}ip route replace blackhole ${routePrefix(r)}`,
      r && sameSubnet && `${at}ip route replace ${routePrefix(r)} via ${sameSubnet.addr} dev eth0`,
      r && `${at}ip route replace ${routePrefix(r)} via ${n.addr.replace(/\.\d+$/, '.99')} dev eth0`,
      `${at}ip route add unreachable ${prefix}.0/32`,
      `${at}ip route add ${prefix}.1/32 via ${(sameSubnet ?? other).addr} dev eth0 onlink`,
      `${at}ip route add ${prefix}.0/25 via ${other.addr} dev eth0 onlink`,
      neigh && `${at}ip neigh del ${neigh.ip} dev ${neigh.dev}`,
      neigh && `${at}ip neigh replace ${neigh.ip} lladdr 02:00:00:00:de:ad dev ${neigh.dev} nud permanent`,
      fdb && vx && `${at}bridge fdb del ${fdb.mac} dev ${vx.name}`,
      tunnel && `${at}ip link set ${tunnel} down`,
      tunnel && `${at}ip link set ${tunnel} mtu 1500`,
      `${at}ip link set eth0 mtu 1400`,
      `${spec.subnets.find((s) => s.name === n.subnet)?.name}: ip link set ${n.name} mtu 1300`,
      `${at}ip link set cni0 down`,
      pod && `${at}ip link set ${pod.hostVeth} down`,
      pod && `${pod.name}: ip link set eth0 mtu 1500`,
      `${at}sysctl -w net.ipv4.ip_forward=0`,
    ];
    const f = pick(options.filter((x): x is string => !!x));
    if (f) candidates.push(f);
  }
  // in turn, as --run applies them: a command the tool refuses is left out
  return candidates.filter((l) => {
    const i = l.indexOf(': ');
    return runCommand(c, l.slice(0, i), l.slice(i + 2)).code === 0;
  });
}

/** doctor's report and the reference's findings on clusters built alike; the findings of each changed check, counted */
function compare(
  spec: ClusterSpec,
  mode: CniMode,
  run: string[],
  what: string,
  found: Map<string, number>,
): void {
  const pods = spec.pods.map((p) => p.name);
  const from = pods[0];
  const to = pods[pods.length - 1];
  const report = doctor(prepareCluster(spec, mode, run), { from, to, proto: 'tcp', port: 8080 });
  // the reference reads the state doctor's checks read: after the forward probe
  const c = prepareCluster(spec, mode, run);
  walk(c, { from, to, proto: 'tcp', port: 8080, size: undefined, sport: undefined }, { exchange: true });
  const ref = referenceChecks(c);
  for (const k of CHANGED) {
    const mine = report.checks.find((x) => x.check === k)!.findings;
    assert.equal(JSON.stringify(mine), JSON.stringify(ref.get(k)), `${what}: ${k}`);
    found.set(k, (found.get(k) ?? 0) + mine.length);
  }
  // the whole report, as text and JSON, with the reference's findings in place of the new ones
  const checks = report.checks.map((x) => (ref.has(x.check) ? { ...x, findings: ref.get(x.check)! } : x));
  const old = { ...report, checks };
  assert.equal(renderDoctor(report), renderDoctor(old), what);
  assert.equal(JSON.stringify(doctorToJson(report)), JSON.stringify(doctorToJson(old)), what);
}

test('the linear cluster checks find what the node-pair checks found, in every mode, faults planted', () => {
  const found = new Map<string, number>(CHANGED.map((k) => [k, 0]));
  for (const seed of SEEDS) {
    const mode = CNI_MODES[seed % CNI_MODES.length];
    const rnd = seededRandom(seed);
    const spec = randomSpec(rnd, mode);
    const run = faults(spec, mode, rnd);
    compare(spec, mode, run, `seed ${seed} ${mode} ${JSON.stringify(run)}`, found);
  }
  // the random faults reach every check compared (a run of every seed: one seed may find nothing)
  if (SEEDS.length > 1)
    for (const [k, n] of found)
      assert.ok(n > 0, `no case planted a fault ${k} finds (${SEEDS.length} cases)`);
});

test("flannel-vxlan's shared lease segment: a node's own routes and removed leases, each a finding or not", () => {
  const found = new Map<string, number>();
  const cases: [string[], number][] = [
    // more specific than the lease: a /32 over the probe, via another node, unreachable, or via a stranger
    [['node1: ip route add 10.244.1.1/32 via 192.168.1.12 dev eth0 onlink'], 1],
    [['node1: ip route add unreachable 10.244.2.1/32'], 1],
    [['node2: ip route add 10.244.0.0/25 via 192.168.1.99 dev eth0 onlink'], 1],
    // as long as the lease: replaced (the segment's row gone, an own one in its place)
    [['node1: ip route replace 10.244.1.0/24 via 192.168.1.12 dev eth0'], 1],
    [['node3: ip route replace blackhole 10.244.1.0/24'], 1],
    // shorter than the lease, or beside the probe: no finding
    [['node2: ip route add blackhole 10.244.0.0/23'], 0],
    [['node2: ip route add blackhole 10.244.0.128/25'], 0],
    // removed: no route left but the default
    [['node3: ip route del 10.244.0.0/24'], 1],
    // the lease's device down: every lease unusable on that node
    [['node2: ip link set flannel.1 down'], 2],
  ];
  for (const [run, n] of cases) {
    const before = found.get('missing-pod-route') ?? 0;
    const wrong = found.get('pod-route-wrong-node') ?? 0;
    compare(seedCluster(), 'flannel-vxlan', run, JSON.stringify(run), found);
    const now =
      (found.get('missing-pod-route') ?? 0) - before + (found.get('pod-route-wrong-node') ?? 0) - wrong;
    assert.equal(now, n, `${JSON.stringify(run)}: route findings`);
  }
});
