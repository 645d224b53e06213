/**
 * Calico IPAM (calico-ipam, Calico v3.27, libcalico-go lib/ipam), as far as the datapath sees it:
 * the pool is cut into blocks of `blockSize` (the IPPool's, default /26); a node claims a block
 * (block affinity) when it needs an address and has no free one in the blocks it holds, and an
 * address is the lowest free ordinal of the block (ordinal 0, the block's first address, included:
 * Calico hands it out). With IPIP or VXLAN, calico-node allocates the tunnel address (tunl0's,
 * vxlan.calico's: `calico-node -allocate-tunnel-addrs`) first, at start-up, before any pod. When
 * a node finds no unclaimed block left, it borrows an address from another node's block
 * (strictAffinity off, Calico's default); that pod's /32 is then announced by the node it runs on
 * (calico-vxlan: routed by felix from the block's allocation), and the block's owner keeps its
 * `blackhole` for the rest.
 *
 * podwalk's one simplification: a node's blocks are carved from its podCIDR in order (real Calico
 * picks free blocks anywhere in the pool and ignores node.spec.podCIDR), so that a cluster file's
 * addresses mean the same in every mode. An address given in the cluster file claims the block it
 * falls in for the node whose podCIDR holds it (borrowed when the pod runs elsewhere); an address
 * outside every podCIDR is in no block.
 *
 * {@link nodeBlocks} is the one answer to "which prefixes does this node's BIRD originate as its
 * own" (its static protocol's `route <block> blackhole;`, confd's bird_aggr.cfg.template) for the
 * CNI's programming and for the BGP side.
 */
import { DEFAULT_IPAM_BLOCK_SIZE, type ClusterSpec, type CniMode } from '../cluster/spec.ts';
import type { Cluster } from './build.ts';
import { formatCidr, inPrefix, intToIp4, ip4ToInt, prefixMask } from '../wire/addr.ts';

/** a node as IPAM needs it: its name and its share of the pool */
export interface IpamNode {
  name: string;
  podNet: string;
  podLen: number;
  podCIDR: string;
}

export interface IpamResult {
  blockLen: number;
  /** node → the blocks it holds (affinity), in the order it claimed them */
  blocks: Map<string, string[]>;
  /** pod → its address */
  podIps: Map<string, string>;
  /** node → its tunnel address (IPIP's tunl0, VXLAN's vxlan.calico) */
  tunnel: Map<string, string>;
  /** pods whose address is in another node's block: pod → the block's node */
  borrowed: Map<string, string>;
}

export class IpamError extends Error {
  constructor(
    message: string,
    readonly pod?: string,
  ) {
    super(message);
  }
}

interface Block {
  net: number;
  owner: string;
  used: Set<number>;
  /** every ordinal below is used (ordinals are only ever taken): where the search for a free one starts */
  low: number;
}

/** Allocates every pod's address (and the tunnel addresses when `tunnel`) as calico-ipam would. */
export function calicoIpam(spec: ClusterSpec, nodes: readonly IpamNode[], tunnel: boolean): IpamResult {
  const blockLen = spec.ipamBlockSize ?? DEFAULT_IPAM_BLOCK_SIZE;
  const size = 2 ** (32 - blockLen);
  for (const n of nodes)
    if (blockLen < n.podLen)
      throw new IpamError(
        `ipamBlockSize ${blockLen}: a /${blockLen} block does not fit in ${n.name}'s podCIDR ${n.podCIDR}`,
      );
  const blocks = new Map<number, Block>();
  const held = new Map<string, Block[]>(nodes.map((n) => [n.name, []]));
  const claim = (owner: string, net: number): Block => {
    let b = blocks.get(net);
    if (!b) {
      b = { net, owner, used: new Set(), low: 0 };
      blocks.set(net, b);
      held.get(owner)!.push(b);
    }
    return b;
  };
  const blockOf = (ip: number) => (ip & prefixMask(blockLen)) >>> 0;
  // the lowest free ordinal, searched from the block's `low` (a block's k-th pod had cost k lookups)
  const free = (b: Block): number | undefined => {
    for (let i = b.low; i < size; i++)
      if (!b.used.has(i)) {
        b.low = i;
        return i;
      }
    b.low = size;
    return undefined;
  };
  const take = (b: Block, ord: number) => (b.used.add(ord), intToIp4(b.net + ord));

  const podIps = new Map<string, string>();
  const borrowed = new Map<string, string>();
  // addresses given in the cluster file are there before anything is allocated
  for (const p of spec.pods) {
    if (!p.ip) continue;
    podIps.set(p.name, p.ip);
    const ip = ip4ToInt(p.ip);
    const owner = nodes.find((n) => inPrefix(ip, n.podNet, n.podLen));
    if (!owner) continue;
    const b = claim(owner.name, blockOf(ip));
    b.used.add(ip - b.net);
    if (b.owner !== p.node) borrowed.set(p.name, b.owner);
  }
  const allocate = (node: IpamNode): { ip: string; owner: string } | undefined => {
    for (const b of held.get(node.name)!) {
      const ord = free(b);
      if (ord !== undefined) return { ip: take(b, ord), owner: node.name };
    }
    const base = ip4ToInt(node.podNet);
    for (let net = base; net < base + 2 ** (32 - node.podLen); net += size)
      if (!blocks.has(net)) return { ip: take(claim(node.name, net), 0), owner: node.name };
    // no unclaimed block left in its share: borrow from another node's block
    for (const n of nodes)
      for (const b of held.get(n.name)!) {
        const ord = free(b);
        if (ord !== undefined) return { ip: take(b, ord), owner: n.name };
      }
    return undefined;
  };
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const tunnels = new Map<string, string>();
  if (tunnel)
    for (const n of nodes) {
      const a = allocate(n);
      if (!a) throw new IpamError(`${n.name}: no free address left in the pool for tunl0`);
      tunnels.set(n.name, a.ip);
    }
  for (const p of spec.pods) {
    if (p.ip) continue;
    const a = allocate(byName.get(p.node)!);
    if (!a) throw new IpamError(`pod ${p.name}: no free address left in any IPAM block of the pool`, p.name);
    podIps.set(p.name, a.ip);
    if (a.owner !== p.node) borrowed.set(p.name, a.owner);
  }
  return {
    blockLen,
    blocks: new Map([...held].map(([n, bs]) => [n, bs.map((b) => formatCidr(b.net, blockLen))])),
    podIps,
    tunnel: tunnels,
    borrowed,
  };
}

/**
 * The prefixes a node's BIRD originates as its own: in the `calico` layout its IPAM blocks (the
 * static protocol's `route <block> blackhole;`), in the `bridge` layout (and flannel) its pod CIDR.
 * A borrowed address's /32 is not here: BIRD learns it from the kernel (`<ip> dev cali…`) and
 * exports it through calico_aggr (src/bgp/krt.ts calicoExport).
 */
export function nodeBlocks(c: Cluster, node: string): string[] {
  if (c.ipam) return [...(c.ipam.blocks.get(node) ?? [])];
  const n = c.nodes.find((x) => x.name === node);
  return n ? [n.podCIDR] : [];
}

/** calico-node's layout (no bridge, cali* veths, proxy ARP, blocks) for this cluster and mode */
export function usesCalicoLayout(spec: ClusterSpec, mode: CniMode): boolean {
  return mode.startsWith('calico') && (spec.calicoLayout ?? 'calico') === 'calico';
}
