/**
 * The built-in cluster: the three-node flannel-VXLAN cluster of the article the walkthroughs
 * follow, with the addresses and MACs it shows, so that podwalk's output can be read side by side
 * with it.
 */

import { loadCluster } from './load.ts';
import type { ClusterSpec } from './spec.ts';

export const SEED_YAML = `# podwalk's built-in cluster: three nodes on one LAN, flannel in VXLAN mode.
name: seed
cni: flannel-vxlan
mtu: 1500                    # underlay (eth0); flannel.1 and the pods get 1450

subnets:
  - name: lan0
    cidr: 192.168.1.0/24
    gateway: 192.168.1.1      # the LAN's router, default route of every node

nodes:
  - name: node1
    ip: 192.168.1.10/24
    podCIDR: 10.244.0.0/24
    bridgeMac: 8a:1b:2c:3d:4e:5f   # cni0, the pods' gateway 10.244.0.1 (its lladdr in the article)
  - name: node2
    ip: 192.168.1.11/24
    podCIDR: 10.244.1.0/24
    vtepMac: 5a:2b:3c:4d:5e:6f     # flannel.1: node1's neighbour entry for 10.244.1.0
  - name: node3
    ip: 192.168.1.12/24
    podCIDR: 10.244.2.0/24
    vtepMac: 7a:8b:9c:0d:1e:2f     # flannel.1: node1's neighbour entry for 10.244.2.0

pods:
  - name: pod-a                    # the client: no listeners
    node: node1
    ip: 10.244.0.5
    hostVeth: veth-pod-a
  - name: pod-b                    # same node as pod-a: bridged through cni0
    node: node1
    ip: 10.244.0.6
    mac: 62:a1:b2:c3:d4:e6
    hostVeth: veth-pod-b
    listen: [tcp/8080, udp/8080]
  - name: pod-c                    # another node: routed into flannel.1, VXLAN over lan0
    node: node2
    ip: 10.244.1.5
    hostVeth: veth-pod-c
    listen: [tcp/8080, udp/8080]
  - name: pod-d
    node: node3
    ip: 10.244.2.5
    hostVeth: veth-pod-d
    listen: [tcp/8080, udp/53]
`;

/** The built-in cluster, parsed and validated. */
export function seedCluster(): ClusterSpec {
  return loadCluster(SEED_YAML, '<seed>');
}
