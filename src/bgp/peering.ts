/**
 * Who peers with whom in Calico v3.27: the one place that decides it. The model's sessions
 * (cni/modes.ts), the real BIRD's configuration of the lab (lab/bird.ts), birdc and calicoctl all
 * take this list.
 *
 * As calico-node's confd computes it: its client (confd/pkg/backends/calico/client.go,
 * updatePeersV1) turns the BGPPeer objects into v1 peerings, global ones first (a BGPPeer with
 * neither `node` nor `nodeSelector`: /global/peer_v4/IP), then node-specific ones
 * (/host/NODE/peer_v4/IP for each node `node` or `nodeSelector` picks; skipped where a global
 * peering to that IP exists), then the reverse peerings that make selector peerings symmetric (the
 * nodes the peer side names, peering back with the nodes of the local side, or every node); the
 * first peering written for a key wins. A peer named by peerSelector carries its node's
 * routeReflectorClusterID; one named by peerIP carries none (nodeAsBGPPeers is not used for it).
 * Then bird.cfg.template writes, in this order: the node-to-node mesh (when
 * nodeToNodeMeshEnabled and the node is no route reflector: every other node that is no route
 * reflector, `Mesh_<ip>`, `passive on` toward a higher address compared as strings), the global
 * peers (`Global_<ip>`), the node's own (`Node_<ip>`), each list in key order, skipping the node's
 * own address. A peer of the node's AS gets `rr client; rr cluster id C` when the node is a route
 * reflector with cluster ID C and the peer's cluster ID differs (a client, or a reflector of
 * another cluster).
 *
 * The ASes (bird.cfg.template: `local as` the node's /host/NODE/as_num, else /global/as_num): a
 * node's own AS is its spec.bgp.asNumber, else the BGPConfiguration's asNumber, else 64512. A mesh
 * peer's AS is the other node's; a peer named by peerSelector has its node's AS (nodeAsBGPPeers);
 * one named by peerIP the BGPPeer's asNumber (here: the global AS when absent), and the node at
 * that address peers back only when its own AS is that one (nodesWithIPPortAndAS). A peer of
 * another AS than the node's is an eBGP session. The mesh's protocols have no `multihop` (v3.27:
 * neither the template nor the mesh writes it: an eBGP mesh session is BIRD's default, direct),
 * the BGPPeers' have `ttl security off; multihop;`. Only IPv4 and no ports are modelled.
 */
import { calicoSelects, parseCalicoSelector } from '../cluster/calico-selector.ts';
import type { BgpConfigurationSpec, BgpPeerSpec } from '../cluster/spec.ts';

/** Calico's AS when the BGPConfiguration names none (confd's default /global/as_num) */
export const CALICO_DEFAULT_AS = 64512;

export interface PeeringNode {
  name: string;
  /** its IPv4 address (BIRD's router id and source address) */
  addr: string;
  labels?: Record<string, string>;
  routeReflectorClusterID?: string;
  /** Calico's Node spec.bgp.asNumber */
  asNumber?: number;
}

/** calicoctl node status's PEER TYPE, from the protocol name's prefix (status.go bgpTypeMap) */
export type PeerType = 'node-to-node mesh' | 'global' | 'node specific';

/** one BGP protocol of one node's BIRD */
export interface Peering {
  /** BIRD's protocol name: Mesh_192_168_1_11, Global_…, Node_… */
  proto: string;
  type: PeerType;
  /** the neighbour's node */
  peerNode: string;
  peerIp: string;
  /** `passive on` (the mesh toward a higher address) */
  passive: boolean;
  /** `rr client; rr cluster id C`: C, when this node reflects routes to the peer */
  rrClusterId?: string;
  /** `local as`: the node's AS */
  localAs: number;
  /** `neighbor IP as N`: the peer's AS (another than localAs: eBGP) */
  peerAs: number;
  /** `multihop` (the BGPPeers' sessions); without it an eBGP session is direct (TTL 1, on-link peer) */
  multihop: boolean;
}

const PREFIX: Record<PeerType, string> = {
  'node-to-node mesh': 'Mesh',
  global: 'Global',
  'node specific': 'Node',
};

export function protocolName(type: PeerType, ip: string): string {
  return `${PREFIX[type]}_${ip.split('.').join('_')}`;
}

/** the protocol's peer type, as calicoctl reads it back from BIRD's name (undefined: not a BGP peer of Calico's) */
export function peerTypeOf(proto: string): PeerType | undefined {
  const prefix = proto.slice(0, proto.indexOf('_'));
  return (Object.keys(PREFIX) as PeerType[]).find((t) => PREFIX[t] === prefix);
}

/** the node's own AS: its spec.bgp.asNumber, else the BGPConfiguration's, else 64512 */
export function calicoNodeAs(
  n: Pick<PeeringNode, 'asNumber'>,
  config: BgpConfigurationSpec | undefined,
): number {
  return n.asNumber ?? config?.asNumber ?? CALICO_DEFAULT_AS;
}

interface V1Peer {
  ip: string;
  /** the peer node's cluster ID ('' when none, or when named by peerIP) */
  rrClusterId: string;
  /** its AS (as_num) */
  as: number;
}

/** Each node's BIRD protocols toward its peers, in the order bird.cfg lists them. */
export function calicoPeerings(
  nodes: readonly PeeringNode[],
  config: BgpConfigurationSpec | undefined,
  bgpPeers: readonly BgpPeerSpec[] = [],
): Map<string, Peering[]> {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const byIp = new Map(nodes.map((n) => [n.addr, n]));
  const matching = (sel: string) => {
    const s = parseCalicoSelector(sel);
    return nodes.filter((n) => calicoSelects(s, n.labels ?? {}));
  };
  const globalAs = config?.asNumber ?? CALICO_DEFAULT_AS;
  const asOf = (n: PeeringNode) => calicoNodeAs(n, config);
  const asPeer = (n: PeeringNode): V1Peer => ({
    ip: n.addr,
    rrClusterId: n.routeReflectorClusterID ?? '',
    as: asOf(n),
  });
  const global = new Map<string, V1Peer>();
  const perNode = new Map<string, Map<string, V1Peer>>(nodes.map((n) => [n.name, new Map()]));
  const emitNode = (local: string, p: V1Peer) => {
    const m = perNode.get(local);
    if (!m || m.has(p.ip) || global.has(p.ip)) return;
    m.set(p.ip, p);
  };
  const peers = [...bgpPeers].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const globalPass of [true, false])
    for (const bp of peers) {
      const isGlobal = bp.node === undefined && bp.nodeSelector === undefined;
      if (globalPass !== isGlobal) continue;
      const locals = bp.nodeSelector
        ? matching(bp.nodeSelector).map((n) => n.name)
        : bp.node !== undefined
          ? [bp.node]
          : [];
      const remote: V1Peer[] = bp.peerSelector
        ? matching(bp.peerSelector).map(asPeer)
        : bp.peerIP
          ? [{ ip: bp.peerIP, rrClusterId: '', as: bp.asNumber ?? globalAs }]
          : [];
      for (const p of remote)
        if (globalPass) {
          if (!global.has(p.ip)) global.set(p.ip, p);
        } else for (const l of locals) emitNode(l, p);
    }
  // the reverse peerings: the peer side's nodes peer back with the local side's (or every node)
  for (const bp of peers) {
    const locals = bp.peerSelector
      ? matching(bp.peerSelector)
      : bp.peerIP && byIp.has(bp.peerIP) && asOf(byIp.get(bp.peerIP)!) === (bp.asNumber ?? globalAs)
        ? [byIp.get(bp.peerIP)!]
        : [];
    if (!locals.length) continue;
    const remote = bp.nodeSelector
      ? matching(bp.nodeSelector)
      : bp.node !== undefined
        ? [byName.get(bp.node)].filter((n): n is PeeringNode => !!n)
        : nodes;
    for (const p of remote) for (const l of locals) emitNode(l.name, asPeer(p));
  }

  const meshOn = config?.nodeToNodeMeshEnabled ?? true;
  const byKey = (a: V1Peer, b: V1Peer) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0);
  const out = new Map<string, Peering[]>();
  for (const me of nodes) {
    const cid = me.routeReflectorClusterID ?? '';
    const localAs = asOf(me);
    const list: Peering[] = [];
    const side = (type: PeerType, p: V1Peer): Peering => ({
      proto: protocolName(type, p.ip),
      type,
      peerNode: byIp.get(p.ip)!.name,
      peerIp: p.ip,
      passive: false,
      ...(cid && p.rrClusterId !== cid && p.as === localAs ? { rrClusterId: cid } : {}),
      localAs,
      peerAs: p.as,
      multihop: true,
    });
    if (!cid && meshOn)
      for (const o of nodes) {
        if (o === me || o.routeReflectorClusterID) continue;
        list.push({
          proto: protocolName('node-to-node mesh', o.addr),
          type: 'node-to-node mesh',
          peerNode: o.name,
          peerIp: o.addr,
          passive: o.addr > me.addr,
          localAs,
          peerAs: asOf(o),
          multihop: false,
        });
      }
    for (const p of [...global.values()].sort(byKey)) if (p.ip !== me.addr) list.push(side('global', p));
    for (const p of [...perNode.get(me.name)!.values()].sort(byKey))
      if (p.ip !== me.addr) list.push(side('node specific', p));
    out.set(me.name, list);
  }
  return out;
}
