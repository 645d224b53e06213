/**
 * flanneld's masquerade rules (`--ip-masq`), as flannel v0.28.9 programs them in iptables mode
 * (pkg/trafficmngr/iptables/iptables.go masqRules; the kube-flannel.yml of that release passes
 * `--ip-masq --kube-subnet-mgr` and net-conf.json `"EnableNFTables": false`). Pure: the flannel
 * Network (the cluster's pod network) and the node's lease (its podCIDR) in, the nat rules out, in
 * flanneld's order: it appends them with one `iptables-restore --noflush` after clearing
 * FLANNEL-POSTRTG, before the FLANNEL-FWD rules (main.go: SetupAndEnsureMasqRules, then
 * SetupAndEnsureForwardRules).
 *
 * POSTROUTING jumps to FLANNEL-POSTRTG, which returns for what kube-proxy marked for its own
 * masquerade (KubeProxyMark 0x4000/0x4000), for the node's pods to the Network, for the Network
 * to the node's pods and for anything else to the node's pods (what arrives from outside keeps its
 * source); it masquerades the Network to anything but multicast (a pod leaving the cluster), and
 * anything outside the Network to it (the host reaching a pod by another node's route). iptables
 * 1.8.9 has `--random-fully` (go-iptables HasRandomFully) and kube-flannel.yml does not pass
 * `--ip-masq-random-fully-disable`, so both MASQUERADE rules carry it.
 */
import type { RuleOrigin } from '../kernel/netfilter.ts';

/** the mark kube-proxy sets on what it masquerades itself (trafficmngr.KubeProxyMark) */
const KUBE_PROXY_MARK = '0x4000/0x4000';
/** flanneld's comment on every rule of its masquerade */
const MASQ_COMMENT = '-m comment --comment "flanneld masq"';

/** a rule of flanneld's: its chain in the nat table, its spec as flanneld writes it, why it is there */
export interface FlanneldRule {
  chain: 'POSTROUTING' | 'FLANNEL-POSTRTG';
  spec: string;
  origin: RuleOrigin;
}

/** the nat rules of `flanneld --ip-masq` on a node whose lease is `podCidr`, in the Network `network` */
export function flannelMasqRules(network: string, podCidr: string): FlanneldRule[] {
  const o = (purpose: string): RuleOrigin => ({ kind: 'cni', component: 'flanneld', purpose });
  const r = (spec: string, purpose: string): FlanneldRule => ({
    chain: 'FLANNEL-POSTRTG',
    spec,
    origin: o(purpose),
  });
  return [
    { chain: 'POSTROUTING', spec: `${MASQ_COMMENT} -j FLANNEL-POSTRTG`, origin: o('jump to the masquerade') },
    r(`-m mark --mark ${KUBE_PROXY_MARK} ${MASQ_COMMENT} -j RETURN`, "leave kube-proxy's masquerade to it"),
    r(
      `-s ${podCidr} -d ${network} ${MASQ_COMMENT} -j RETURN`,
      "keep the node's pods' address inside the pod network",
    ),
    r(`-s ${network} -d ${podCidr} ${MASQ_COMMENT} -j RETURN`, "keep the pod network to the node's pods"),
    r(`! -s ${network} -d ${podCidr} ${MASQ_COMMENT} -j RETURN`, "keep an outside source to the node's pods"),
    r(
      `-s ${network} ! -d 224.0.0.0/4 ${MASQ_COMMENT} -j MASQUERADE --random-fully`,
      'masquerade the pod network leaving the cluster',
    ),
    r(
      `! -s ${network} -d ${network} ${MASQ_COMMENT} -j MASQUERADE --random-fully`,
      'masquerade the host to the pod network',
    ),
  ];
}
