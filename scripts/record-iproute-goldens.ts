/**
 * Records the golden output of the real `ip` and `bridge` (iproute2) for the emulated ones to be
 * compared against (test/iproute.test.ts). Needs root, network namespaces and iproute2.
 *
 *   npx tsx scripts/record-iproute-goldens.ts            # every mode the lab supports
 *   npx tsx scripts/record-iproute-goldens.ts calico-bgp # one mode
 *
 * For each mode it brings up the lab of the built-in cluster (src/lab: the model's exact
 * namespaces, links, MACs, addresses, routes, neighbours and FDB in real network namespaces),
 * waits for the kernel's own start-up traffic to settle (bridges send IGMP reports), records the
 * counters (the baseline the test adds to the model's, which sends no IGMP), pings pod-a → pod-c
 * (the test walks the same ICMP exchange through the model), records every command of the list
 * below in several namespaces, then runs the mutation sequences step by step (exit status,
 * stderr, and the state after each step), and always takes the lab down again.
 *
 * Output: test/golden/iproute/<mode>/<netns>/<command-slug>.txt (stdout of the real tool) and
 * test/golden/iproute/manifest.json (every command with its exit status and stderr, the
 * baseline counters, each namespace's nsid table, the mutation steps).
 *
 * The lab runs under its own namespace prefix (pw-iproute-), so that it cannot collide with
 * another lab of the seed cluster (pw-seed-) that may be up at the same time; the cluster, its
 * names and MACs are the seed cluster's. The prefix shows in `link-netns` (the test strips it).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { seedCluster } from '../src/cluster/seed.ts';
import type { CniMode } from '../src/cluster/spec.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { labDown, labExec, labUp, run, type LabState } from '../src/lab/host.ts';
import { labPrefix } from '../src/lab/plan.ts';
import type {
  Manifest,
  ModeRecord,
  RecordedCommand as Recorded,
  RecordedMutation,
} from './iproute-manifest.ts';

export const LAB_NAME = 'iproute';
export const MODES: CniMode[] = ['flannel-vxlan', 'flannel-host-gw', 'calico-bgp'];
const OUT = new URL('../test/golden/iproute/', import.meta.url);

/* ------------------------------------------------------------------ the command lists */

type Cmd = string[];
const sh = (s: string): Cmd => s.split(' ');

/** recorded right after the ping, before any neighbour timer fires (DELAY→PROBE after 5 s) */
const DYNAMIC: Cmd[] = [
  'ip neigh',
  'ip -j neigh',
  'ip -j -p neigh',
  'ip -s link',
  'ip -s -j link',
  'ip -s -s link',
  'ip -s addr',
  'bridge fdb show',
  'bridge -j fdb show',
  'bridge -j -p fdb show',
].map(sh);

/** every namespace */
const COMMON: Cmd[] = [
  'ip link',
  'ip l',
  'ip link show',
  'ip -j link',
  'ip -j -p link',
  'ip -d link',
  'ip -d -j link',
  'ip -d -j -p link',
  'ip -br link',
  'ip -br -j link',
  'ip -o link',
  'ip -o -d link',
  'ip addr',
  'ip a',
  'ip address show',
  'ip -j addr',
  'ip -j -p addr',
  'ip -br addr',
  'ip -br -j addr',
  'ip -4 addr',
  'ip -o addr',
  'ip -d addr',
  'ip route',
  'ip r',
  'ip ro',
  'ip route show',
  'ip -j route',
  'ip -j -p route',
  'ip -d route',
  'ip route show table local',
  'ip route show table all',
  'ip neigh show nud all',
  'ip neigh show nud noarp',
  'ip -j route show table local',
  'bridge link',
  'bridge link show',
  'bridge -j link',
  'bridge -j -p link',
  'bridge -d link',
  'bridge -d -j link',
].map(sh);

const NODE: Cmd[] = [
  'ip route show proto kernel',
  'ip route show proto boot',
  'ip route show proto bird',
  'ip route show table main',
  'ip r show dev eth0',
  'ip r show table main dev eth0',
  'ip route show dev cni0',
  'ip route show scope link',
  'ip route show type unicast',
  'ip route show 10.244.1.0/24',
  'ip route show match 10.244.1.5',
  'ip route show root 10.244.0.0/16',
  'ip route show default',
  'ip route show via 192.168.1.1',
  'ip route show src 192.168.1.10',
  'ip route show metric 0',
  'ip -j route show dev eth0',
  'ip a show dev eth0',
  'ip addr show eth0',
  'ip addr show dev cni0',
  'ip addr show up',
  'ip addr show scope host',
  'ip -j addr show scope host',
  'ip addr show type veth',
  'ip addr show master cni0',
  'ip link show eth0',
  'ip link show dev eth0',
  'ip link show cni0',
  'ip link show up',
  'ip link show type bridge',
  'ip link show type veth',
  'ip link show master cni0',
  'ip -j link show eth0',
  'ip -d link show eth0',
  'ip -d link show cni0',
  'ip -d -j link show cni0',
  'ip -d -j -p link show cni0',
  'ip -d link show flannel.1',
  'ip -d -j link show flannel.1',
  'ip -d -j -p link show flannel.1',
  'ip -d link show lo',
  'ip -s link show eth0',
  'ip neigh show dev eth0',
  'ip neigh show dev cni0',
  'ip neigh show dev flannel.1',
  'ip neigh show nud permanent',
  'ip neigh show 10.244.1.0',
  'ip neigh show 10.244.0.0/16',
  'bridge fdb show br cni0',
  'bridge fdb show dev eth0',
  'bridge fdb show dev cni0',
  'bridge fdb show dev flannel.1',
  'bridge -j fdb show dev flannel.1',
  'bridge fdb show state permanent',
  'bridge fdb show dynamic',
  'bridge link show dev veth-pod-a',
  'ip route get 10.244.1.5',
  'ip route get 10.244.2.5',
  'ip route get 10.244.0.5',
  'ip route get 10.244.0.6',
  'ip route get 10.244.0.1',
  'ip route get 10.244.0.0',
  'ip route get 192.168.1.10',
  'ip route get 192.168.1.11',
  'ip route get 192.168.1.255',
  'ip route get 10.244.0.255',
  'ip route get 127.0.0.1',
  'ip route get 8.8.8.8',
  'ip route get to 8.8.8.8',
  'ip route get 10.244.1.5 from 10.244.0.5 iif cni0',
  'ip route get 8.8.8.8 from 10.244.0.5 iif cni0',
  'ip route get 10.244.0.6 from 10.244.0.5 iif cni0',
  'ip route get 10.244.0.1 from 10.244.0.5 iif cni0',
  'ip route get 192.168.1.10 from 192.168.1.20 iif eth0',
  'ip route get 10.244.0.5 from 192.168.1.11 iif eth0',
  'ip route get 10.244.1.5 from 10.244.0.1',
  'ip route get 10.244.1.5 from 1.2.3.4',
  'ip route get 10.244.1.5 oif eth0',
  'ip route get 8.8.8.8 oif cni0',
  'ip route get fibmatch 10.244.1.5',
  'ip route get fibmatch 192.168.1.10',
  'ip route get 10.244.1.5/24',
  'ip -j route get 10.244.1.5',
  'ip -j -p route get 10.244.1.5',
  'ip -j route get 192.168.1.10',
  'ip -j route get 10.244.1.5 from 10.244.0.5 iif cni0',
].map(sh);

const POD: Cmd[] = [
  'ip route get 10.244.1.5',
  'ip route get 10.244.0.6',
  'ip route get 10.244.0.5',
  'ip route get 1.1.1.1',
  'ip -d link show eth0',
  'ip -d -j -p link show eth0',
  'ip -s link show eth0',
  'ip neigh show dev eth0',
].map(sh);

/** errors and odd arguments: stderr and exit status matter */
const MISC: Cmd[] = [
  'ip foo',
  'ip route foo',
  'ip link foo',
  'ip addr foo',
  'ip neigh foo',
  'ip link show nosuch',
  'ip addr show dev nosuch',
  'ip route show dev nosuch',
  'ip neigh show dev nosuch',
  'ip route show table nosuch',
  'ip route show table 100',
  'ip route show proto nosuch',
  'ip route show metric x',
  'ip link show eth0 foo',
  'ip -x link',
  'ip --json link show lo',
  'ip -json -pretty link show lo',
  'ip -n nosuch link',
  'ip -V',
  'ip -4 route',
  'ip -6 route',
  'ip -6 addr',
  'ip -6 neigh',
  'ip -6 link',
  'ip -0 addr',
  'ip -f inet addr',
  'ip -f link addr',
  'ip -family bogus addr',
  'ip',
  'ip help',
  'ip route get',
  'ip route get foo',
  'ip route get 10.0.0.1 iif nosuch',
  'ip route get 10.0.0.1 oif nosuch',
  'ip route add',
  'bridge',
  'bridge -V',
  'bridge foo',
  'bridge -x fdb',
  'bridge fdb foo',
  'bridge link foo',
  'bridge fdb show dev nosuch',
  'bridge fdb show br nosuch',
  'bridge link show dev nosuch',
].map(sh);

/* ------------------------------------------------------------------ mutation sequences */

export interface MutationStep {
  netns: string;
  argv: string[];
  /** commands whose output shows the state after the step: [netns, argv] */
  after: [string, string[]][];
  /** wait for linkwatch (operstate) before looking */
  settle?: boolean;
}

function steps(netns: string, cmds: string[], after: [string, string][], settle = false): MutationStep[] {
  return cmds.map((c) => ({ netns, argv: sh(c), after: after.map(([n, a]) => [n, sh(a)]), settle }));
}

export function mutations(mode: CniMode): MutationStep[] {
  const vxlan = mode === 'flannel-vxlan';
  const out: MutationStep[] = [];
  // routes
  out.push(
    ...steps(
      'node1',
      [
        'ip route add 10.9.0.0/16 via 192.168.1.20',
        'ip route add 10.9.0.0/16 via 192.168.1.20',
        'ip route add 10.9.0.1/16 via 192.168.1.20',
        'ip route add 10.8.0.0/16 via 172.16.0.1',
        'ip route add 10.8.0.0/16 via 172.16.0.1 dev eth0',
        'ip route add 10.8.0.0/16 via 172.16.0.1 dev eth0 onlink',
        'ip route add 10.7.0.0/16 dev nosuch',
        'ip route add 10.7.0.0/16 dev eth0 metric 100',
        'ip route add 10.7.0.0/16 dev cni0 metric 100',
        'ip route replace 10.7.0.0/16 dev cni0 metric 100',
        'ip route append 10.7.0.0/16 dev eth0 metric 100',
        'ip route append 10.7.0.0/16 dev eth0 metric 100',
        'ip route add 10.6.0.0/16',
        'ip route add blackhole 10.5.0.0/16',
        'ip route add unreachable 10.5.1.0/24',
        'ip route add blackhole 10.5.2.0/24 dev eth0',
        'ip route add 10.4.0.0/16 dev eth0 proto static src 192.168.1.10',
        'ip route add 10.4.1.0/24 dev eth0 src 1.2.3.4',
        'ip route add 10.3.0.0/16 via 192.168.1.10',
        'ip route add 10.3.1.0/24 via 10.244.1.5',
        'ip route add 10.3.2.0/24 dev eth0 onlink',
        'ip route add 10.3.3.0/24 via 192.168.1.30 scope link',
        'ip route add 10.3.4.0/24 via 192.168.1.30 dev eth0 scope link onlink',
        'ip route add 10.3.5.0/24 via 192.168.1.10 dev eth0 onlink',
        'ip route add 10.3.6.0/24 via 192.168.1.255',
        'ip route change 10.2.0.0/16 dev eth0',
        'ip route add 10.2.0.0/16 via 192.168.1.1 dev cni0',
        'ip route add 10.2.1.0/24 via 10.244.0.0 dev cni0',
        'ip route add 10.2.2.0/24 dev eth0 scope host',
        'ip route add 10.1.0.0/33 dev eth0',
        'ip route add 10.1.0.0/16 dev eth0 metric x',
        'ip route add 10.1.0.0/16 dev eth0 bogus',
        'ip route add 10.1.0.0/16 via',
        'ip route add foo',
        'ip route get 10.5.0.1',
        'ip route get 10.5.1.1',
        'ip route get 10.7.0.1',
        'ip route get 10.4.0.1',
        'ip route del 10.3.9.0/24',
        'ip route del 10.9.0.0/16 via 192.168.1.21',
        'ip route del 10.9.0.0/16 dev cni0',
        'ip route del 10.9.0.0/16',
        'ip route del 10.7.0.0/16',
        'ip route del 10.7.0.0/16 metric 100',
        'ip route del 10.7.0.0/16 metric 0',
        'ip route del blackhole 10.5.0.0/16',
        'ip route del 10.5.1.0/24 proto static',
        'ip route del 10.5.1.0/24',
        'ip route del default',
        'ip route get 8.8.8.8',
        'ip route add default via 192.168.1.1',
        'ip route del 10.4.0.0/16 dev eth0 proto static',
        'ip route add 10.10.0.0/16 dev eth0 metric 50',
        'ip route del 10.10.0.0/16 metric 0',
        'ip route add 10.11.0.0/16 dev cni0',
        'ip route add 10.11.0.0/16 dev eth0 metric 5',
        'ip route show 10.11.0.0/16',
        'ip route del 10.11.0.0/16 dev eth0',
        'ip route del 10.11.0.0/16',
        'ip route prepend 10.12.0.0/16 dev eth0',
        'ip route test 10.12.0.0/16 dev eth0',
        'ip route flush 10.12.0.0/16',
      ],
      [['node1', 'ip route']],
    ),
  );
  // addresses
  out.push(
    ...steps(
      'node1',
      [
        'ip addr add 10.50.0.1/24 dev eth0',
        'ip addr add 10.50.0.1/24 dev eth0',
        'ip addr add 10.50.0.2/24 dev eth0',
        'ip addr add 10.50.0.3 dev eth0',
        'ip addr add 10.50.0.1/16 dev eth0',
        'ip addr add 10.50.1.1/24 dev eth0',
        'ip addr add 10.60.0.1/24 dev nosuch',
        'ip addr add 10.60.0.1/24',
        'ip addr add foo dev eth0',
        'ip addr add 10.60.0.1/24 dev eth0 scope link',
        'ip addr add 10.60.0.2/24 dev eth0',
        'ip route add 10.52.0.0/16 dev eth0 src 10.50.1.1',
        'ip addr del 10.50.0.9/24 dev eth0',
        'ip addr del 10.50.0.1/24 dev eth0',
        'ip addr del 10.50.0.3 dev eth0',
        'ip addr del 10.50.0.1 dev eth0',
        'ip addr del 10.50.1.1/24 dev eth0',
        'ip addr del 10.60.0.1/24 dev eth0',
        'ip addr add 10.61.0.1/24 dev cni0',
        'ip addr del 10.61.0.1/24 dev cni0',
      ],
      [
        ['node1', 'ip addr show dev eth0'],
        ['node1', 'ip route'],
        ['node1', 'ip route show table local'],
      ],
    ),
  );
  // neighbours
  out.push(
    ...steps(
      'node1',
      [
        'ip neigh add 192.168.1.50 lladdr 02:00:00:00:00:50 dev eth0',
        'ip neigh add 192.168.1.50 lladdr 02:00:00:00:00:50 dev eth0',
        'ip neigh replace 192.168.1.50 lladdr 02:00:00:00:00:51 dev eth0 nud reachable',
        'ip neigh add 192.168.1.51 lladdr 02:00:00:00:00:51 dev eth0 nud stale',
        'ip neigh add 192.168.1.52 dev eth0',
        'ip neigh add 192.168.1.53 lladdr zz dev eth0',
        'ip neigh add 192.168.1.54 lladdr 02:00:00:00:00:54',
        'ip neigh add 192.168.1.54 lladdr 02:00:00:00:00:54 dev nosuch',
        'ip neigh add 192.168.1.55 lladdr 02:00:00:00:00:55 dev eth0 nud bogus',
        'ip neigh add 192.168.1.56 lladdr 02:00:00:00:00:56 dev eth0 nud noarp',
        'ip neigh change 192.168.1.57 lladdr 02:00:00:00:00:57 dev eth0',
        'ip neigh change 192.168.1.51 lladdr 02:00:00:00:00:58 dev eth0',
        'ip neigh replace 192.168.1.51 dev eth0 nud permanent',
        'ip neigh del 192.168.1.50 dev eth0',
        'ip neigh del 192.168.1.50 dev eth0',
        'ip neigh del 192.168.1.99',
        'ip neigh flush dev eth0',
        'ip neigh flush',
      ],
      [
        ['node1', 'ip neigh show dev eth0'],
        ['node1', 'ip neigh show nud noarp dev eth0'],
      ],
    ),
  );
  // FDB
  out.push(
    ...steps(
      'node1',
      [
        'bridge fdb add 02:00:00:00:00:aa dev veth-pod-a master static',
        'bridge fdb add 02:00:00:00:00:aa dev veth-pod-a master static',
        'bridge fdb add 02:00:00:00:00:ab dev veth-pod-a master',
        'bridge fdb add 02:00:00:00:00:ac dev veth-pod-a',
        'bridge fdb add 02:00:00:00:00:ad dev veth-pod-a master permanent',
        'bridge fdb add 02:00:00:00:00:ae dev cni0',
        'bridge fdb add 02:00:00:00:00:af dev cni0 master',
        'bridge fdb add 02:00:00:00:00:b0 dev cni0 self static',
        'bridge fdb add 02:00:00:00:00:b1 dev veth-pod-a master dynamic',
        'bridge fdb replace 02:00:00:00:00:ab dev veth-pod-b master static',
        'bridge fdb add 02:00:00:00:00:b2 dev eth0',
        'bridge fdb add 02:00:00:00:00:b3 dev eth0 static',
        'bridge fdb add 01:00:5e:00:00:42 dev eth0',
        'bridge fdb add zz dev cni0',
        'bridge fdb add 02:00:00:00:00:c3 dev nosuch',
        'bridge fdb add 02:00:00:00:00:c3',
        'bridge fdb add 02:00:00:00:00:c4 dev lo',
        'bridge fdb del 02:00:00:00:00:aa dev veth-pod-a master',
        'bridge fdb del 02:00:00:00:00:aa dev veth-pod-a master',
        'bridge fdb del 02:00:00:00:00:ac dev veth-pod-a',
        'bridge fdb del 02:00:00:00:00:ae dev cni0',
        'bridge fdb del 02:00:00:00:00:b2 dev eth0',
        'bridge fdb del 02:00:00:00:00:b2 dev eth0',
      ],
      [['node1', 'bridge fdb show']],
    ),
  );
  if (vxlan)
    out.push(
      ...steps(
        'node1',
        [
          'bridge fdb add 00:00:00:00:00:00 dev flannel.1 dst 192.168.1.99',
          'bridge fdb append 00:00:00:00:00:00 dev flannel.1 dst 192.168.1.98',
          'bridge fdb append 00:00:00:00:00:00 dev flannel.1 dst 192.168.1.98',
          'bridge fdb add 00:00:00:00:00:00 dev flannel.1 dst 192.168.1.97',
          'bridge fdb replace 00:00:00:00:00:00 dev flannel.1 dst 192.168.1.96',
          'bridge fdb add 02:00:00:00:00:c0 dev flannel.1 dst 192.168.1.96 self permanent',
          'bridge fdb add 02:00:00:00:00:c5 dev flannel.1 dst 192.168.1.95 static',
          'bridge fdb add 02:00:00:00:00:c6 dev flannel.1 dst 192.168.1.94 dynamic',
          'bridge fdb add 02:00:00:00:00:c1 dev flannel.1 dst 192.168.1.95 master',
          'bridge fdb add 02:00:00:00:00:c2 dev flannel.1',
          'bridge fdb append 5a:2b:3c:4d:5e:6f dev flannel.1 dst 192.168.1.77',
          'bridge fdb replace 5a:2b:3c:4d:5e:6f dev flannel.1 dst 192.168.1.78',
          'bridge fdb replace 5a:2b:3c:4d:5e:6f dev flannel.1 dst 192.168.1.11',
          'bridge fdb del 00:00:00:00:00:00 dev flannel.1 dst 192.168.1.99',
          'bridge fdb del 00:00:00:00:00:00 dev flannel.1 dst 192.168.1.99',
          'bridge fdb del 02:00:00:00:00:c0 dev flannel.1',
          'bridge fdb del 02:00:00:00:00:ff dev flannel.1',
          'bridge fdb del 00:00:00:00:00:00 dev flannel.1',
        ],
        [['node1', 'bridge fdb show dev flannel.1']],
      ),
    );
  // links: MTU
  out.push(
    ...steps(
      'node1',
      [
        'ip link set eth0 mtu 10',
        'ip link set eth0 mtu 65536',
        'ip link set eth0 mtu abc',
        'ip link set eth0 mtu',
        'ip link set eth0 mtu 9000',
        ...(vxlan ? ['ip link set flannel.1 mtu 8951', 'ip link set flannel.1 mtu 8950'] : []),
        'ip link set eth0 mtu 1500',
        ...(vxlan ? ['ip link set flannel.1 mtu 1451', 'ip link set flannel.1 mtu 1450'] : []),
        'ip link set veth-pod-a mtu 1400',
        'ip link set veth-pod-a mtu 1450',
        'ip link set cni0 mtu 1500',
        'ip link set veth-pod-b mtu 1400',
        'ip link set veth-pod-b mtu 1450',
        'ip link set cni0 mtu 1450',
        'ip link set lo mtu 70000',
        'ip link set lo mtu 65536',
        'ip link set nosuch up',
        'ip link set',
        'ip link set eth0 foo',
        'ip link set dev eth0 mtu 1400 up',
        'ip link set dev eth0 mtu 1500',
      ],
      [['node1', 'ip link']],
    ),
  );
  // links: up/down, carrier, the flushes around them
  const carrierView: [string, string][] = [
    ['node1', 'ip link'],
    ['node1', 'ip route'],
    ['node1', 'ip neigh'],
    ['node1', 'bridge link'],
    ['node1', 'bridge fdb show br cni0'],
    ['pod-b', 'ip link'],
    ['pod-b', 'ip route'],
    ['pod-b', 'ip neigh'],
  ];
  out.push(
    ...steps(
      'node1',
      [
        'ip link set veth-pod-b down',
        'ip link set veth-pod-b up',
        'ip link set veth-pod-a down',
        'ip link set veth-pod-b down',
        'ip link set veth-pod-a up',
        'ip link set veth-pod-b up',
        'ip link set cni0 down',
        'ip link set cni0 up',
        'ip link set eth0 up down',
        'ip route add 10.2.3.0/24 dev eth0',
        'ip route add 10.2.4.0/24 via 192.168.1.40 dev eth0 onlink',
        'ip route add 10.2.5.0/24 via 192.168.1.40',
        'ip addr add 10.2.6.1/24 dev eth0',
        'ip route show table local',
        'ip route get 10.2.6.1',
        'ip route get 192.168.1.10',
        'ip link set eth0 up',
      ],
      carrierView,
      true,
    ),
  );
  out.push(...steps('pod-b', ['ip link set eth0 down', 'ip link set eth0 up'], carrierView, true));
  if (vxlan)
    out.push(
      ...steps(
        'node1',
        ['ip link set flannel.1 down', 'ip link set flannel.1 up'],
        [
          ['node1', 'ip link show flannel.1'],
          ['node1', 'ip route'],
          ['node1', 'ip neigh'],
          ['node1', 'ip neigh show nud permanent'],
          ['node1', 'bridge fdb show dev flannel.1'],
        ],
        true,
      ),
    );
  return out;
}

/* ------------------------------------------------------------------ recording */

export function slug(argv: readonly string[]): string {
  return argv.join('_').replace(/[^A-Za-z0-9._-]+/g, '-') || 'empty';
}

/** counters and neighbour states: what the kernel's neighbour timers change (the first probe fires 5 s after the ping) */
function timerSensitive(argv: Cmd): boolean {
  const words = argv.filter((a) => !a.startsWith('-'));
  return (
    argv.includes('-s') ||
    (words[0] === 'ip' && !!words[1] && words[1][0] === 'n' && 'neighbour'.startsWith(words[1]))
  );
}

function commandsFor(netns: string, c: Cluster): { dynamic: Cmd[]; rest: Cmd[] } {
  const role = c.world.ns(netns).role;
  const list = [...COMMON];
  if (role === 'node') list.push(...NODE);
  if (role === 'pod') list.push(...POD);
  if (netns === 'node1') list.push(...MISC);
  return {
    dynamic: [...DYNAMIC, ...list.filter(timerSensitive)],
    rest: list.filter((a) => !timerSensitive(a)),
  };
}

function quote(a: string): string {
  return `'${a.replace(/'/g, `'\\''`)}'`;
}

/** run a list of commands in one shell inside the namespace (fast: neighbour timers are running) */
function batch(
  state: LabState,
  netns: string,
  cmds: Cmd[],
): { stdout: string; stderr: string; code: number }[] {
  const dir = mkdtempSync(join(tmpdir(), 'pw-iproute-'));
  try {
    const script = cmds
      .map(
        (argv, i) =>
          `${argv.map(quote).join(' ')} >${dir}/${i}.out 2>${dir}/${i}.err; echo $? >${dir}/${i}.rc`,
      )
      .join('\n');
    const r = labExec(state, netns, ['sh', '-c', script], undefined, 60_000);
    if (r.code !== 0) throw new Error(`${netns}: batch failed: ${r.stderr}`);
    return cmds.map((_, i) => ({
      stdout: readFileSync(`${dir}/${i}.out`, 'utf8'),
      stderr: readFileSync(`${dir}/${i}.err`, 'utf8'),
      code: Number(readFileSync(`${dir}/${i}.rc`, 'utf8').trim()),
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * iproute2 resolves nsids to names by asking the kernel about every namespace in /run/netns; when
 * another process deletes one meanwhile (another lab), that question fails and `ip` prints this
 * on stderr. It says nothing about the lab: such runs are repeated.
 */
const FOREIGN_NETNS_NOISE = 'Error: Peer netns reference is invalid.';

class NoiseError extends Error {}

function sleep(s: number): void {
  run(['sleep', String(s)]);
}

/** nsid → model namespace name, from `ip netns list-id` inside the namespace */
function nsidTable(state: LabState, netns: string, prefix: string): Record<string, string> {
  const r = labExec(state, netns, ['ip', 'netns', 'list-id']);
  const out: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^nsid (\d+) \(iproute2 netns name: (\S+)\)/.exec(line);
    if (m) out[m[1]] = m[2].startsWith(prefix) ? m[2].slice(prefix.length) : m[2];
  }
  return out;
}

async function recordMode(mode: CniMode): Promise<ModeRecord> {
  // the article's picture (cni0 in calico-bgp too): test/calico-layout.test.ts has calico-node's own layout
  const model = buildCluster({ ...seedCluster(), calicoLayout: 'bridge' }, mode);
  const c: Cluster = { ...model, spec: { ...model.spec, name: LAB_NAME } };
  const prefix = labPrefix(LAB_NAME);
  const netnsList = [...model.world.netns.keys()];
  const dir = new URL(`${mode}/`, OUT);
  rmSync(dir, { recursive: true, force: true });
  labDown(c);
  const state = await labUp(c, { listeners: false });
  try {
    // the kernel's own start-up traffic (IGMP reports of the bridges, repeated once) and linkwatch
    sleep(4);
    const baseline: ModeRecord['baseline'] = {};
    for (const ns of netnsList)
      baseline[ns] = JSON.parse(labExec(state, ns, ['ip', '-s', '-j', 'link']).stdout);
    const ping = labExec(state, 'pod-a', ['ping', '-c1', '-W2', '10.244.1.5']);
    const pingAt = Date.now();
    if (ping.code !== 0) throw new Error(`ping pod-a → pod-c failed: ${ping.stdout}${ping.stderr}`);
    const recorded: Recorded[] = [];
    const save = (
      ns: string,
      argv: string[],
      r: { stdout: string; stderr: string; code: number },
      phase: Recorded['phase'],
    ) => {
      const file = `${ns}/${slug(argv)}.txt`;
      mkdirSync(new URL(`${ns}/`, dir), { recursive: true });
      writeFileSync(new URL(file, dir), r.stdout);
      recorded.push({ netns: ns, argv, file, code: r.code, stderr: r.stderr, phase });
    };
    const t0 = Date.now();
    for (const ns of netnsList) {
      const cmds = commandsFor(ns, model).dynamic;
      batch(state, ns, cmds).forEach((r, i) => {
        if (r.stderr.includes(FOREIGN_NETNS_NOISE)) throw new NoiseError(`${ns}: ${cmds[i].join(' ')}`);
        save(ns, cmds[i], r, 'dynamic');
      });
    }
    const dynamicMs = Date.now() - t0;
    if (dynamicMs > 4000)
      throw new Error(`the neighbour/counter snapshot took ${dynamicMs} ms (> 4 s): retry`);
    for (const ns of netnsList) {
      const cmds = commandsFor(ns, model).rest;
      batch(state, ns, cmds).forEach((r, i) => {
        for (let tries = 0; r.stderr.includes(FOREIGN_NETNS_NOISE) && tries < 10; tries++)
          r = labExec(state, ns, cmds[i]);
        save(ns, cmds[i], r, 'static');
      });
    }
    const nsids: ModeRecord['nsids'] = {};
    for (const ns of netnsList) nsids[ns] = nsidTable(state, ns, prefix);
    // mutations, step by step, once the neighbours the ping left in DELAY have been probed
    // (delay_first_probe_time 5 s): no timer creates or removes entries after that
    const wait = pingAt + 10_000 - Date.now();
    if (wait > 0) sleep(wait / 1000);
    const mutationLog = mutations(mode).map((s): RecordedMutation => {
      const r = labExec(state, s.netns, s.argv);
      if (r.stderr.includes(FOREIGN_NETNS_NOISE)) throw new NoiseError(`${s.netns}: ${s.argv.join(' ')}`);
      if (s.settle) sleep(1.5);
      return {
        netns: s.netns,
        argv: s.argv,
        code: r.code,
        stdout: r.stdout,
        stderr: r.stderr,
        after: s.after.map(([ns, argv]) => {
          let a = labExec(state, ns, argv);
          for (let tries = 0; a.stderr.includes(FOREIGN_NETNS_NOISE) && tries < 10; tries++)
            a = labExec(state, ns, argv);
          return { netns: ns, argv, stdout: a.stdout };
        }),
      };
    });
    return { ping: ping.stdout, dynamicMs, baseline, nsids, commands: recorded, mutations: mutationLog };
  } finally {
    labDown(c);
  }
}

async function main() {
  const wanted = process.argv.slice(2);
  const modes = wanted.length ? (wanted as CniMode[]) : MODES;
  const manifestUrl = new URL('manifest.json', OUT);
  mkdirSync(OUT, { recursive: true });
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(manifestUrl, 'utf8'));
  } catch {
    manifest = { recorded: '', kernel: '', ip: '', bridge: '', labPrefix: '', modes: {} };
  }
  manifest.kernel = run(['uname', '-r']).stdout.trim();
  manifest.ip = run(['ip', '-V']).stdout.trim();
  manifest.bridge = run(['bridge', '-V']).stdout.trim();
  manifest.labPrefix = labPrefix(LAB_NAME);
  for (const mode of modes) {
    process.stdout.write(`${mode}: recording… `);
    let m: ModeRecord | undefined;
    for (let attempt = 1; !m; attempt++) {
      try {
        m = await recordMode(mode);
      } catch (e) {
        if (!(e instanceof NoiseError) || attempt === 3) throw e;
        process.stdout.write(`(another namespace vanished during ${e.message}: again) `);
      }
    }
    manifest.modes[mode] = m;
    process.stdout.write(
      `${m.commands.length} commands, ${m.mutations.length} mutation steps (snapshot ${m.dynamicMs} ms)\n`,
    );
  }
  manifest.recorded = new Date().toISOString();
  writeFileSync(manifestUrl, JSON.stringify(manifest, null, 1) + '\n');
  const left = run(['ip', 'netns', 'list'])
    .stdout.split('\n')
    .filter((l) => l.startsWith('pw-iproute-'));
  if (left.length) throw new Error(`lab namespaces left behind: ${left.join(', ')}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
