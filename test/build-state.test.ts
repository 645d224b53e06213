/**
 * The kernel state a build makes does not change when the build is made faster or the tables
 * more compact: `worldToData` of the built world (every namespace's links with their carrier bits
 * and counters, addresses, routes in order, neighbours, FDBs, sysctls, netfilter, conntrack) is
 * hashed (SHA-256 of its JSON text) and compared with the hash the same build gave before.
 *
 * Where the recorded hashes come from: main's code at 24d98b2 (before the build and table
 * changes of issue 16's scale work); the calico modes' (and the calico scenarios') re-recorded
 * after the merge of Calico's own layout (cali* veths, IPAM blocks), which changes their built
 * state by design, checked against the kernel by its goldens, and again when felix's filter
 * chains replaced the firewall plugin's and podwalk's policy chains in that layout (issue 14,
 * test/golden/felix); calico-vxlan's recorded when the mode came (session 6, its state checked
 * against the kernel by test/golden/calico-vxlan and the calico-vxlan differential seeds), with
 * felix's chains; policy-blocks-dns's (the one scenario with a NetworkPolicy) when felix's selectors
 * became IP sets (session 7: its rules name cali40s:/cali40n: sets, checked against the real
 * iptables and ipset by test/golden/felix); the BGP modes' (calico-bgp, calico-ipip, calico-ipip-crosssubnet
 * and their scenarios) when each host got its own CPU in the exchange loop (session 8: the sessions
 * come up a few hundred µs sooner, so the clock, the BGP timers' deadlines, TCP timestamps and
 * establishedAt differ; routes, neighbours, counters and rules do not); the calico-layout modes'
 * (and policy-blocks-dns's) when felix's raw, mangle and nat tables and the masquerade manager's
 * IP sets came (session 9, checked against the real iptables-save and ipset by test/golden/felix);
 * those with BGP timers (the calico BGP modes and their scenarios) when the saved world came to list
 * the timers in the order they fall due instead of the heap's layout (session 21: the same hashes
 * as main's code with only that order changed; nothing else in the state differs);
 * run as `PODWALK_RECORD_BUILD_HASHES=1 node --import tsx
 * --test test/build-state.test.ts`, which prints the table below instead of checking it. The
 * clusters: the built-in seed cluster and a synthetic one (two subnets behind a router, 12 nodes
 * × 3 pods, one BGP session down, a Service), each in all six CNI modes, and every shipped
 * scenario (with its `run:` commands, which go through the same netlink API) in its own mode.
 *
 * A change that means to change the built state (a kernel behaviour found wrong against the real
 * kernel) re-records the table and says why in its commit message.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { loadCluster } from '../src/cluster/load.ts';
import { seedCluster } from '../src/cluster/seed.ts';
import { CNI_MODES, type ClusterSpec, type CniMode } from '../src/cluster/spec.ts';
import { worldToData } from '../src/kernel/snapshot.ts';
import { prepareCluster } from '../src/tools/index.ts';

/** two /24 underlay subnets behind the router, N nodes alternating between them, P pods each */
function twoSubnets(nodes: number, pods: number): ClusterSpec {
  return {
    name: 'build-state',
    cni: 'flannel-vxlan',
    mtu: 1500,
    subnets: [
      { name: 'lan0', cidr: '10.0.1.0/24', gateway: '10.0.1.1' },
      { name: 'lan1', cidr: '10.0.2.0/24', gateway: '10.0.2.1' },
    ],
    nodes: Array.from({ length: nodes }, (_, i) => ({
      name: `n${i}`,
      ip: `10.0.${1 + (i % 2)}.${10 + i}/24`,
      podCIDR: `10.244.${i}.0/24`,
    })),
    pods: Array.from({ length: nodes * pods }, (_, k) => ({
      name: `p${Math.floor(k / pods)}-${k % pods}`,
      node: `n${Math.floor(k / pods)}`,
      listen: [{ proto: 'tcp' as const, port: 8080 }],
      labels: { app: `a${k % 2}` },
    })),
    bgp: [{ nodes: ['n1', 'n4'], state: 'down' }],
    run: [],
    services: [
      {
        name: 'web',
        namespace: 'default',
        type: 'ClusterIP',
        selector: { app: 'a0' },
        ports: [{ name: '', protocol: 'TCP', port: 80, targetPort: 8080 }],
        externalTrafficPolicy: 'Cluster',
        loadBalancerIPs: [],
      },
    ],
  };
}

function hashOf(spec: ClusterSpec, mode: CniMode): string {
  const c = prepareCluster(spec, mode);
  return createHash('sha256')
    .update(JSON.stringify(worldToData(c.world)))
    .digest('hex')
    .slice(0, 16);
}

function cases(): { name: string; spec: ClusterSpec; mode: CniMode }[] {
  const out: { name: string; spec: ClusterSpec; mode: CniMode }[] = [];
  for (const mode of CNI_MODES) out.push({ name: `seed ${mode}`, spec: seedCluster(), mode });
  for (const mode of CNI_MODES) out.push({ name: `two-subnets ${mode}`, spec: twoSubnets(12, 3), mode });
  const dir = new URL('../scenarios/', import.meta.url);
  for (const f of readdirSync(dir).sort()) {
    const spec = loadCluster(readFileSync(new URL(f, dir), 'utf8'), f);
    out.push({ name: `scenario ${f}`, spec, mode: spec.cni });
  }
  return out;
}

/** recorded on main 24d98b2 (see the header) */
const RECORDED: Record<string, string> = {
  'seed flannel-vxlan': '6a1b49c08adf107a',
  'seed flannel-host-gw': 'd8d24be8c0c2112c',
  'seed calico-bgp': '8430af0d4d7772f1',
  'seed calico-ipip': '4d1c150e88871a66',
  'seed calico-ipip-crosssubnet': '94c7104c18bf0e82',
  'seed calico-vxlan': '9e87493f8303675f',
  'seed calico-vxlan-crosssubnet': 'fdec9728618f75f1',
  'two-subnets flannel-vxlan': '1c77d5dc7260b32a',
  'two-subnets flannel-host-gw': '940427c3143bd934',
  'two-subnets calico-bgp': 'd5041ff473604642',
  'two-subnets calico-ipip': 'df18bb93e1abb11e',
  'two-subnets calico-ipip-crosssubnet': 'c27b4b295c46a004',
  'two-subnets calico-vxlan': 'a698909cc95a0556',
  'two-subnets calico-vxlan-crosssubnet': '6625dfcb973a1bea',
  'scenario asymmetric-return.yaml': '3c7f0d03624cc3be',
  'scenario bgp-peer-down.yaml': 'c6ae7f49e1abfb2c',
  'scenario flanneld-missed-node.yaml': 'cab93c366ff20bd1',
  'scenario host-gw-across-subnets.yaml': '2190d6770023e554',
  'scenario ip-forward-off.yaml': '8c7ac9271de18755',
  'scenario no-listener.yaml': '410e0f254fcb41e6',
  'scenario pod-veth-down.yaml': 'ab2ce71f38b404e1',
  'scenario policy-blocks-dns.yaml': '9608360106ab2b9b',
  'scenario routing-loop.yaml': 'e751d19fe14356fa',
  'scenario rp-filter-strict.yaml': '349bc7d764aa2fa7',
  'scenario stale-host-gw-route.yaml': 'bcf04c28f233c760',
  'scenario vxlan-fdb-missing.yaml': '9e84cad9255cd604',
  'scenario vxlan-pod-mtu.yaml': 'ff4b6cfc5cd40489',
  'scenario vxlan-port-blocked.yaml': '936594b28eeeb427',
};

if (process.env.PODWALK_RECORD_BUILD_HASHES) {
  test('record', () => {
    const lines = cases().map((c) => `  '${c.name}': '${hashOf(c.spec, c.mode)}',`);
    process.stdout.write(`const RECORDED: Record<string, string> = {\n${lines.join('\n')}\n};\n`);
  });
} else {
  for (const c of cases())
    test(`the built state of ${c.name} hashes as recorded`, () => {
      assert.ok(RECORDED[c.name], `no hash recorded for ${c.name}`);
      assert.equal(hashOf(c.spec, c.mode), RECORDED[c.name]);
    });
}
