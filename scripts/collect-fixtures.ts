/**
 * The recorded dump sets of test/fixtures/collect/ (recorded by scripts/record-collect-fixtures.ts
 * on the real kernel, imported by test/collect.test.ts without root): the seed cluster's lab in
 * each mode the lab supports, the same lab with one planted fault each, and the hand-made
 * topologies of scripts/handmade-topology.ts (Calico/Docker; a node's veth pair of its own).
 */
import { seedCluster } from '../src/cluster/seed.ts';
import type { ClusterSpec, CniMode } from '../src/cluster/spec.ts';

/**
 * the seed cluster under its own name, so that its lab (pw-collect-…) never meets another seed lab;
 * calico-bgp in the article's picture (cni0), as its dumps were recorded
 */
export function fixtureSpec(): ClusterSpec {
  return { ...seedCluster(), name: 'collect', calicoLayout: 'bridge' };
}

export interface FixtureSet {
  name: string;
  /** a lab of fixtureSpec() in this mode; absent: a hand-made topology */
  mode?: CniMode;
  /** which hand-made topology of scripts/handmade-topology.ts (without a mode) */
  handmade?: 'calico' | 'veth-pair';
  /** planted after lab up, as the real command on the node and as the same --run line for the model */
  fault?: { netns: string; command: string; run: string };
  /** ping pod-a → pod-c before collecting (neighbours, learned FDB entries, counters) */
  ping: boolean;
  /** the flow the fault is about (doctor must find it with the same evidence as on the model) */
  flow?: { from: string; to: string; proto: 'tcp' | 'udp' | 'icmp'; port?: number };
}

export const FIXTURE_DIR = new URL('../test/fixtures/collect/', import.meta.url);

export const FIXTURE_SETS: readonly FixtureSet[] = [
  { name: 'flannel-vxlan', mode: 'flannel-vxlan', ping: true },
  { name: 'flannel-host-gw', mode: 'flannel-host-gw', ping: true },
  { name: 'calico-bgp', mode: 'calico-bgp', ping: true },
  {
    name: 'fault-vxlan-fdb-deleted',
    mode: 'flannel-vxlan',
    ping: false,
    fault: {
      netns: 'node1',
      command: 'bridge fdb del 5a:2b:3c:4d:5e:6f dev flannel.1 dst 192.168.1.11',
      run: 'node1: bridge fdb del 5a:2b:3c:4d:5e:6f dev flannel.1 dst 192.168.1.11',
    },
    flow: { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 },
  },
  {
    name: 'fault-ip-forward-off',
    mode: 'flannel-vxlan',
    ping: false,
    fault: {
      netns: 'node2',
      command: 'sysctl -q -w net.ipv4.ip_forward=0',
      run: 'node2: sysctl -q -w net.ipv4.ip_forward=0',
    },
    flow: { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 },
  },
  {
    name: 'fault-mtu-mismatch',
    mode: 'flannel-vxlan',
    ping: false,
    fault: { netns: 'node2', command: 'ip link set eth0 mtu 1400', run: 'node2: ip link set eth0 mtu 1400' },
    flow: { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 },
  },
  { name: 'handmade-calico', handmade: 'calico', ping: false },
  { name: 'handmade-veth-pair', handmade: 'veth-pair', ping: false },
];
