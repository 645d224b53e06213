/**
 * One carrier rule (links.ts carrierOk over the bit netlink.ts keeps), as a 6.18 kernel showed it
 * in a namespace of its own (`ip link` flags and state, /sys/class/net/DEV/carrier_changes, and
 * whether traffic out of the bridge is sent or dropped):
 *  - a new bridge without ports, set up: LOWER_UP, state UNKNOWN, carrier_changes 0; a ping out of
 *    it sends its ARP requests (TX packets rise, nothing dropped) and the neighbour fails;
 *  - a port joining (even a down one) makes the bridge follow its ports: NO-CARRIER, state DOWN,
 *    until a port forwards; a port whose veth peer goes down takes it away again, and then the
 *    bridge drops what it sends (TX dropped rises);
 *  - the last port leaving keeps it NO-CARRIER, also across down/up;
 *  - carrier_changes: 0 → 1 (a down port joins) → 2 (it forwards) → 3 (its peer goes down), and
 *    2 for a down bridge that gets a forwarding port and then comes up.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { seedCluster } from '../src/cluster/seed.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { carrierOk } from '../src/kernel/links.ts';
import { linkAdd, linkSetMaster, linkSetUp, netnsAdd } from '../src/kernel/netlink.ts';
import { World } from '../src/kernel/world.ts';
import { runCommand } from '../src/tools/index.ts';
import { walk } from '../src/trace/walk.ts';
import { dropText } from '../src/render/step.ts';

/** `ip link show DEV`'s first line, without the ifindex */
function linkLine(c: Cluster, netns: string, dev: string): string {
  const r = runCommand(c, netns, `ip link show ${dev}`);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n')[0].replace(/^\d+: /, '');
}

/** walk UDP to `to`, which must end with ARP failing on cni0 of `node` */
function arpFailsOnCni0(c: Cluster, to: string, node: string, ip: string): void {
  const w = walk(c, { from: 'pod-a', to, proto: 'udp', port: 53 });
  const d = w.request.disposition;
  assert.deepEqual(d.kind === 'dropped' && d.drop, {
    reason: 'neighbour-failed',
    site: 'neigh_resolve_output',
    nexthop: ip,
    probes: 3,
    netns: node,
    device: 'cni0',
    counters: [{ netns: node, name: 'res_failed', table: 'arp_cache' }],
  });
  assert.equal(d.kind === 'dropped' && dropText(d.drop), `no ARP reply for ${ip} on cni0 after 3 probes`);
}

function txCounters(c: Cluster, netns: string, dev: string): { packets: number; dropped: number } {
  const s = c.world.ns(netns).link(dev)!.stats;
  return { packets: s.txPackets, dropped: s.txDropped };
}

describe('carrier: one rule for ip link and the datapath', () => {
  test('a node without pods: cni0 never had a port, has carrier and sends (ARP fails, nothing dropped)', () => {
    const spec = seedCluster();
    spec.nodes.push({ name: 'node4', ip: '192.168.1.13/24', podCIDR: '10.244.3.0/24' });
    const c = buildCluster(spec, 'flannel-vxlan');
    assert.equal(
      linkLine(c, 'node4', 'cni0'),
      'cni0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000',
    );
    assert.equal(c.world.ns('node4').link('cni0')!.carrierChanges, 0);
    arpFailsOnCni0(c, '10.244.3.5', 'node4', '10.244.3.5');
    // the three ARP probes left through cni0 (to no port), none was dropped at its qdisc
    assert.deepEqual(txCounters(c, 'node4', 'cni0'), { packets: 3, dropped: 0 });
  });

  test('a node whose only pod is cut off: cni0 is NO-CARRIER, state DOWN, and drops what it sends', () => {
    const c = buildCluster(seedCluster(), 'flannel-vxlan');
    assert.equal(runCommand(c, 'node3', 'ip link set veth-pod-d down').code, 0);
    assert.equal(
      linkLine(c, 'node3', 'cni0'),
      'cni0: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1450 qdisc noqueue state DOWN mode DEFAULT group default qlen 1000',
    );
    arpFailsOnCni0(c, 'pod-d', 'node3', '10.244.2.5');
    // the three ARP probes were dropped at cni0's qdisc: none left
    assert.deepEqual(txCounters(c, 'node3', 'cni0'), { packets: 0, dropped: 3 });
  });

  test('the bridge carrier bit and carrier_changes follow the kernel step by step', () => {
    const w = new World('t');
    const ns = netnsAdd(w, 'n', 'node');
    /** a veth pair in ns; MACs 02:00:00:00:00:NN and NN+1 */
    const veth = (a: string, b: string, nn: string) => {
      const mac = (x: number) => `02:00:00:00:00:${x.toString(16).padStart(2, '0')}`;
      const n = parseInt(nn, 16);
      linkAdd(w, ns, {
        type: 'veth',
        name: a,
        mac: mac(n),
        mtu: 1500,
        peer: { netns: ns, name: b, mac: mac(n + 1), mtu: 1500 },
      });
    };
    const br = linkAdd(w, ns, { type: 'bridge', name: 'br0', mac: '02:00:00:00:00:01', mtu: 1500 });
    const state = () => ({ lowerUp: carrierOk(br), changes: br.carrierChanges });
    assert.deepEqual(state(), { lowerUp: false, changes: 0 });
    linkSetUp(w, ns, 'br0', true);
    assert.deepEqual(state(), { lowerUp: true, changes: 0 }, 'new bridge without ports, up');
    veth('vp', 'vq', '02');
    linkSetMaster(w, ns, 'vp', 'br0');
    assert.deepEqual(state(), { lowerUp: false, changes: 1 }, 'a down port joined');
    linkSetUp(w, ns, 'vp', true);
    assert.deepEqual(state(), { lowerUp: false, changes: 1 }, 'the port is up, its peer down');
    linkSetUp(w, ns, 'vq', true);
    assert.deepEqual(state(), { lowerUp: true, changes: 2 }, 'the port forwards');
    linkSetUp(w, ns, 'vq', false);
    assert.deepEqual(state(), { lowerUp: false, changes: 3 }, 'the peer went down');
    linkSetMaster(w, ns, 'vp', undefined);
    assert.deepEqual(state(), { lowerUp: false, changes: 3 }, 'the last port left');
    linkSetUp(w, ns, 'br0', false);
    linkSetUp(w, ns, 'br0', true);
    assert.deepEqual(state(), { lowerUp: false, changes: 3 }, 'down and up without ports');

    // a down bridge that gets a forwarding port, then comes up
    const br1 = linkAdd(w, ns, { type: 'bridge', name: 'br1', mac: '02:00:00:00:00:11', mtu: 1500 });
    veth('wp', 'wq', '12');
    linkSetUp(w, ns, 'wp', true);
    linkSetUp(w, ns, 'wq', true);
    linkSetMaster(w, ns, 'wp', 'br1');
    linkSetUp(w, ns, 'br1', true);
    assert.deepEqual({ lowerUp: carrierOk(br1), changes: br1.carrierChanges }, { lowerUp: true, changes: 2 });

    // an up bridge that gets an up port whose peer is down
    const br2 = linkAdd(w, ns, { type: 'bridge', name: 'br2', mac: '02:00:00:00:00:21', mtu: 1500 });
    linkSetUp(w, ns, 'br2', true);
    veth('yp', 'yq', '22');
    linkSetUp(w, ns, 'yp', true);
    linkSetMaster(w, ns, 'yp', 'br2');
    assert.deepEqual(
      { lowerUp: carrierOk(br2), changes: br2.carrierChanges },
      { lowerUp: false, changes: 1 },
    );
  });
});
