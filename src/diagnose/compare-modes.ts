/**
 * The per-mode comparison, measured rather than typed in: build the cluster in each CNI mode,
 * walk a cross-node TCP exchange, and read what the underlay segment saw.
 */
import { nodeBlocks } from '../cni/ipam.ts';
import type { ClusterSpec, CniMode } from '../cluster/spec.ts';
import { CNI_MODES } from '../cluster/spec.ts';
import { buildCluster } from '../cni/build.ts';
import { parseFrame } from '../wire/packet.ts';
import { walk } from '../trace/walk.ts';

export interface ModeRow {
  mode: CniMode;
  /** layers between the outer and the inner IP header on the underlay, e.g. "VXLAN (UDP 4789)" */
  encapsulation: string;
  /** underlay frame bytes minus the pod's frame bytes for the same packet */
  overhead: number;
  podMtu: number;
  underlayMtu: number;
  /** addresses the underlay had to forward on: what it must know */
  underlayAddresses: string[];
  underlayMustKnow: string;
  delivered: boolean;
}

/** Cross-node pair to measure with: the first pod and the first pod on another node */
function pair(spec: ClusterSpec): [string, string] | undefined {
  for (const a of spec.pods) {
    const b = spec.pods.find((p) => p.node !== a.node && p.listen.some((l) => l.proto === 'tcp'));
    if (b) return [a.name, b.name];
  }
  return undefined;
}

export function compareModes(spec: ClusterSpec, modes: readonly CniMode[] = CNI_MODES): ModeRow[] {
  const p = pair(spec);
  return modes.map((mode) => {
    const c = buildCluster(spec, mode);
    const row: ModeRow = {
      mode,
      encapsulation: 'none',
      overhead: 0,
      podMtu: c.podMtu,
      underlayMtu: spec.mtu,
      underlayAddresses: [],
      underlayMustKnow: '',
      delivered: false,
    };
    if (!p) {
      row.underlayMustKnow = 'no cross-node pod pair to measure';
      return row;
    }
    const w = walk(c, {
      from: p[0],
      to: p[1],
      proto: 'tcp',
      port: c.pods.find((x) => x.name === p[1])!.listen.find((l) => l.proto === 'tcp')!.port,
    });
    row.delivered = w.request.disposition.kind === 'delivered';
    const steps = w.request.steps.filter((s) => !s.aux && s.frame);
    const podFrame = steps.find((s) => s.netns === p[0] && s.kind === 'xmit');
    const segments = new Set(spec.subnets.map((s) => s.name));
    const wire = steps.find((s) => segments.has(s.netns) && s.kind === 'rx');
    if (podFrame?.frame && wire?.frame) {
      row.overhead = wire.frame.length - podFrame.frame.length;
      // what the underlay carried, read from the frame's structure
      const outer = parseFrame(wire.frame).payload;
      if (outer.kind === 'ipv4') {
        const l4 = outer.payload;
        if (l4.kind === 'udp' && l4.payload.kind === 'vxlan')
          row.encapsulation = `VXLAN (UDP ${l4.udp.dstPort})`;
        else if (l4.kind === 'ipip') row.encapsulation = 'IPinIP (IP protocol 4)';
        row.underlayAddresses = [...new Set([outer.ip.src, outer.ip.dst])];
      }
      // what routes the pods: the nodes' pod CIDRs, or in calico-node's layout their IPAM blocks
      const podNets = c.nodes.flatMap((n) => nodeBlocks(c, n.name));
      const seesPods = row.underlayAddresses.some((a) => c.pods.some((pp) => pp.ip === a));
      row.underlayMustKnow = seesPods
        ? `${c.layout === 'calico' ? 'IPAM blocks' : 'pod CIDRs'} (${podNets.join(', ')})`
        : `node IPs only (${row.underlayAddresses.join(', ')})`;
    }
    return row;
  });
}
