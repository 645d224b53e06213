/**
 * Kubernetes NetworkPolicy in the datapath: a table of cases, each walked for real through the
 * calico modes' iptables. Every expected outcome is written by hand from the Kubernetes
 * NetworkPolicy documentation (concepts/services-networking/network-policies, "The two sorts of
 * pod isolation", "Behavior of to and from selectors", "Default policies", "Targeting a range of
 * ports") and the networking.k8s.io/v1 API reference; the comment of each case names the rule.
 */
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { ClusterError, loadCluster, loadPolicies } from '../src/cluster/load.ts';
import type { CniMode } from '../src/cluster/spec.ts';
import { buildCluster } from '../src/cni/build.ts';
import { subtractCidrs } from '../src/cni/policy.ts';
import { runCommand } from '../src/tools/index.ts';
import { dropText } from '../src/render/step.ts';
import { walk } from '../src/trace/walk.ts';
import type { Proto } from '../src/trace/types.ts';

const CLUSTER_FILE = new URL('./fixtures/policy-cluster.yaml', import.meta.url);
const CLUSTER = readFileSync(CLUSTER_FILE, 'utf8');

// The cluster (test/fixtures/policy-cluster.yaml):
//   namespaces prod {env: prod}, dev {env: dev}, default (no labels but kubernetes.io/metadata.name)
//   node1 (192.168.1.10): web     prod {app: web, tier: front} 10.244.0.10 tcp/8080 http, tcp/9090 metrics, udp/5353 mdns
//                         client  prod {app: client}           10.244.0.11 tcp/8080
//                         devclient dev {app: client}          10.244.0.12 tcp/8080
//   node2 (192.168.1.11): db      prod {app: db}               10.244.1.10 tcp/5432 pg, tcp/8080
//                         api     dev  {app: api}              10.244.1.11 tcp/8080 http
//                         tool    default {app: tool}          10.244.1.12 tcp/8080, udp/53
//   node3 (192.168.1.12): no pods

type Obj = Record<string, unknown>;

/** a NetworkPolicy manifest */
const np = (name: string, spec: Obj, namespace = 'prod'): Obj => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, namespace },
  spec,
});
const sel = (matchLabels: Record<string, string>) => ({ matchLabels });
const pods = (matchLabels: Record<string, string>) => ({ podSelector: sel(matchLabels) });
const nss = (matchLabels: Record<string, string>) => ({ namespaceSelector: sel(matchLabels) });

const DENY_IN = np('deny-ingress', { podSelector: {} });
const DENY_OUT = np('deny-egress', { podSelector: {}, policyTypes: ['Egress'] });

interface Case {
  name: string;
  policies: Obj[];
  from: string;
  to: string;
  proto?: Proto;
  port?: number;
  /** delivered (and answered), or what the dropping rule's origin says (the pod, direction and selecting policies) */
  expect: 'delivered' | RegExp;
  /** the namespace where the drop happens */
  dropIn?: string;
  /**
   * Only in these modes. In calico-ipip a node reaches a remote pod through tunl0 with the tunnel
   * address (its podCIDR's .0) as source, so an ipBlock of node addresses does not match it: the
   * packet's address is what ipBlock sees.
   */
  modes?: CniMode[];
}

const noPolicySel = (pod: string, dir: 'ingress' | 'egress', by: string) =>
  new RegExp(`no policy selecting ${pod} allows this ${dir} \\(selected by: ${by}\\)`);

// policies that several cases share
const FROM_CLIENT = np('from-client', {
  podSelector: sel({ app: 'web' }),
  ingress: [{ from: [pods({ app: 'client' })] }],
});
const FROM_DEV = np('from-dev', {
  podSelector: sel({ app: 'web' }),
  ingress: [{ from: [nss({ env: 'dev' })] }],
});
const FROM_PODS = np('from-pods', {
  podSelector: sel({ app: 'web' }),
  ingress: [{ from: [{ namespaceSelector: {} }] }],
});
const AND = np('and', {
  podSelector: sel({ app: 'web' }),
  ingress: [{ from: [{ ...nss({ env: 'dev' }), ...pods({ app: 'client' }) }] }],
});
const OR = np('or', {
  podSelector: sel({ app: 'web' }),
  ingress: [{ from: [nss({ env: 'dev' }), pods({ app: 'client' })] }],
});
const TIERED = np('tiered', { podSelector: { matchExpressions: [{ key: 'tier', operator: 'Exists' }] } });
const NO_ENV = np('no-env', {
  podSelector: sel({ app: 'web' }),
  ingress: [
    { from: [{ namespaceSelector: { matchExpressions: [{ key: 'env', operator: 'DoesNotExist' }] } }] },
  ],
});
const LAN = np('lan', {
  podSelector: sel({ app: 'web' }),
  ingress: [{ from: [{ ipBlock: { cidr: '192.168.1.0/24', except: ['192.168.1.11/32'] } }] }],
});
const PODS = np('pods', {
  podSelector: sel({ app: 'web' }),
  ingress: [{ from: [{ ipBlock: { cidr: '10.244.0.0/16', except: ['10.244.1.0/24'] } }] }],
});
const TO_NODE2 = np('to-node2', {
  podSelector: sel({ app: 'client' }),
  policyTypes: ['Egress'],
  egress: [{ to: [{ ipBlock: { cidr: '10.244.1.0/24' } }] }],
});
const P8080 = np('p8080', { podSelector: sel({ app: 'web' }), ingress: [{ ports: [{ port: 8080 }] }] });
const MDNS = np('mdns', {
  podSelector: sel({ app: 'web' }),
  ingress: [{ ports: [{ protocol: 'UDP', port: 5353 }] }],
});
const TCP = np('tcp', { podSelector: sel({ app: 'web' }), ingress: [{ ports: [{ protocol: 'TCP' }] }] });
const RANGE = np('range', {
  podSelector: sel({ app: 'web' }),
  ingress: [{ ports: [{ port: 9000, endPort: 9100 }] }],
});
const TO_DB = np('to-db', {
  podSelector: sel({ app: 'client' }),
  egress: [{ to: [pods({ app: 'db' })], ports: [{ port: 'pg' }] }],
});
const HTTP_OUT = np('http-out', {
  podSelector: sel({ app: 'client' }),
  policyTypes: ['Egress'],
  egress: [{ ports: [{ port: 'http' }] }],
});
const EGRESS_ONLY = np('egress-only', {
  podSelector: sel({ app: 'client' }),
  egress: [{ to: [pods({ app: 'db' })] }],
});
const CLIENT_OUT_WEB = np('client-out', {
  podSelector: sel({ app: 'client' }),
  policyTypes: ['Egress'],
  egress: [{ to: [pods({ app: 'web' })] }],
});
const WEB_IN = np('web-in', {
  podSelector: sel({ app: 'web' }),
  ingress: [{ from: [pods({ app: 'client' })] }],
});
const CLIENT_OUT_DB = np('client-out', {
  podSelector: sel({ app: 'client' }),
  policyTypes: ['Egress'],
  egress: [{ to: [pods({ app: 'db' })] }],
});
const A = np('a', {
  podSelector: sel({ app: 'web' }),
  ingress: [{ from: [pods({ app: 'client' })], ports: [{ port: 8080 }] }],
});
const B = np('b', {
  podSelector: sel({ app: 'web' }),
  ingress: [{ from: [nss({ env: 'dev' })], ports: [{ port: 9090 }] }],
});

const CASES: Case[] = [
  // ---- no policy: "By default, a pod is non-isolated for egress/ingress; all connections are allowed"
  { name: 'no policies: allowed', policies: [], from: 'client', to: 'web', expect: 'delivered' },

  // ---- default deny ingress ("Default deny all ingress traffic": podSelector {}, no ingress rules)
  {
    name: 'deny-ingress isolates every pod of its namespace (same node)',
    policies: [DENY_IN],
    from: 'client',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/deny-ingress'),
    dropIn: 'node1',
  },
  {
    name: 'deny-ingress: cross-node from another namespace is denied at the destination node',
    policies: [DENY_IN],
    from: 'devclient',
    to: 'db',
    port: 5432,
    expect: noPolicySel('prod/db', 'ingress', 'prod/deny-ingress'),
    dropIn: 'node2',
  },
  {
    // a policy only selects pods of its own namespace
    name: 'deny-ingress in prod does not isolate pods in dev',
    policies: [DENY_IN],
    from: 'web',
    to: 'api',
    expect: 'delivered',
  },
  {
    // "the only allowed connections into the pod are those from the pod's node and those allowed by …"
    name: "deny-ingress: the pod's own node may connect (kubelet probes)",
    policies: [DENY_IN],
    from: 'node1',
    to: 'web',
    expect: 'delivered',
  },
  {
    name: 'deny-ingress: another node is not exempt',
    policies: [DENY_IN],
    from: 'node2',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/deny-ingress'),
    dropIn: 'node1',
  },
  {
    // the same policy in namespace dev isolates dev only
    name: 'a deny-all in dev leaves prod alone',
    policies: [np('deny-ingress', { podSelector: {} }, 'dev')],
    from: 'client',
    to: 'web',
    expect: 'delivered',
  },
  {
    // explicit `ingress: []` with Ingress in policyTypes: isolated, nothing allowed
    name: 'ingress: [] denies all ingress',
    policies: [np('empty', { podSelector: sel({ app: 'web' }), ingress: [] })],
    from: 'client',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/empty'),
  },

  // ---- allow all ("Allow all ingress traffic": ingress: [{}]); policies are additive (union)
  {
    name: 'allow-all ingress alongside deny-all: the union allows',
    policies: [DENY_IN, np('allow-all', { podSelector: sel({ app: 'web' }), ingress: [{}] })],
    from: 'devclient',
    to: 'web',
    expect: 'delivered',
  },
  {
    name: 'allow-all ingress alone admits another node too',
    policies: [np('allow-all', { podSelector: {}, ingress: [{}] })],
    from: 'node3',
    to: 'web',
    expect: 'delivered',
  },

  // ---- default deny egress ("Default deny all egress traffic")
  {
    name: 'deny-egress isolates the source: cross-node to another namespace denied at the source node',
    policies: [DENY_OUT],
    from: 'client',
    to: 'tool',
    expect: noPolicySel('prod/client', 'egress', 'prod/deny-egress'),
    dropIn: 'node1',
  },
  {
    // prod's egress policy does not isolate dev's pods, and web is not isolated for ingress
    name: 'deny-egress in prod does not stop traffic into prod',
    policies: [DENY_OUT],
    from: 'devclient',
    to: 'web',
    expect: 'delivered',
  },
  {
    // egress isolation has no exemption for the pod's own node (only ingress has)
    name: "deny-egress: the pod's own node is denied too",
    policies: [DENY_OUT],
    from: 'client',
    to: 'node1',
    proto: 'icmp',
    expect: noPolicySel('prod/client', 'egress', 'prod/deny-egress'),
    dropIn: 'node1',
  },
  {
    name: 'allow-all egress alongside deny-egress',
    policies: [DENY_OUT, np('allow-out', { podSelector: {}, policyTypes: ['Egress'], egress: [{}] })],
    from: 'client',
    to: 'tool',
    expect: 'delivered',
  },

  // ---- podSelector peers: "selects particular Pods in the same namespace as the NetworkPolicy"
  {
    name: 'from podSelector: a matching pod of the same namespace',
    policies: [FROM_CLIENT],
    from: 'client',
    to: 'web',
    expect: 'delivered',
  },
  {
    name: 'from podSelector: a matching pod of another namespace is not selected',
    policies: [FROM_CLIENT],
    from: 'devclient',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/from-client'),
  },
  {
    name: 'from podSelector: a non-matching pod of the same namespace (cross-node)',
    policies: [FROM_CLIENT],
    from: 'db',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/from-client'),
    dropIn: 'node1',
  },
  {
    // a selector that matches no pod is valid and allows nothing
    name: 'from podSelector matching nothing',
    policies: [
      np('nobody', { podSelector: sel({ app: 'web' }), ingress: [{ from: [pods({ app: 'nothing' })] }] }),
    ],
    from: 'client',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/nobody'),
  },
  {
    // a policy in a namespace that has no pods selects nothing
    name: 'a policy in an unknown namespace selects nothing',
    policies: [np('deny-ingress', { podSelector: {} }, 'ghost')],
    from: 'client',
    to: 'web',
    expect: 'delivered',
  },

  // ---- namespaceSelector peers: "selects particular namespaces for which all Pods should be allowed"
  {
    name: 'from namespaceSelector env=dev: a dev pod',
    policies: [FROM_DEV],
    from: 'devclient',
    to: 'web',
    expect: 'delivered',
  },
  {
    name: 'from namespaceSelector env=dev: a prod pod is not in it',
    policies: [FROM_DEV],
    from: 'client',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/from-dev'),
  },
  {
    name: 'from namespaceSelector {}: every pod of every namespace',
    policies: [FROM_PODS],
    from: 'tool',
    to: 'web',
    expect: 'delivered',
  },
  {
    // selectors select pods; a node is not a pod
    name: 'from namespaceSelector {}: a node is not a pod',
    policies: [FROM_PODS],
    from: 'node2',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/from-pods'),
  },
  {
    // "kubernetes.io/metadata.name" is set on every namespace by the control plane
    name: 'namespaceSelector on the implicit kubernetes.io/metadata.name label',
    policies: [
      np('from-default', {
        podSelector: sel({ app: 'web' }),
        ingress: [{ from: [nss({ 'kubernetes.io/metadata.name': 'default' })] }],
      }),
    ],
    from: 'tool',
    to: 'web',
    expect: 'delivered',
  },

  // ---- namespaceSelector and podSelector in one peer: AND; in two peers: OR
  {
    name: 'AND peer: client pods in dev namespaces',
    policies: [AND],
    from: 'devclient',
    to: 'web',
    expect: 'delivered',
  },
  {
    name: 'AND peer: a dev pod that is not a client',
    policies: [AND],
    from: 'api',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/and'),
  },
  {
    name: 'AND peer: a client pod outside dev',
    policies: [AND],
    from: 'client',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/and'),
  },
  {
    name: 'OR peers: a client of the policy namespace',
    policies: [OR],
    from: 'client',
    to: 'web',
    expect: 'delivered',
  },
  {
    name: 'OR peers: any pod of dev',
    policies: [OR],
    from: 'api',
    to: 'web',
    expect: 'delivered',
  },
  {
    name: 'OR peers: neither',
    policies: [OR],
    from: 'tool',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/or'),
  },

  // ---- matchExpressions (metav1.LabelSelector: In, NotIn, Exists, DoesNotExist)
  {
    name: 'matchExpressions In',
    policies: [
      np('in', {
        podSelector: sel({ app: 'web' }),
        ingress: [
          {
            from: [
              {
                podSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['client', 'db'] }] },
              },
            ],
          },
        ],
      }),
    ],
    from: 'db',
    to: 'web',
    expect: 'delivered',
  },
  {
    name: 'matchExpressions NotIn excludes the listed value',
    policies: [
      np('notin', {
        podSelector: sel({ app: 'web' }),
        ingress: [
          {
            from: [
              { podSelector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['client'] }] } },
            ],
          },
        ],
      }),
    ],
    from: 'client',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/notin'),
  },
  {
    name: 'policy podSelector with Exists selects the labelled pod',
    policies: [TIERED],
    from: 'client',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/tiered'),
  },
  {
    name: 'policy podSelector with Exists leaves an unlabelled pod alone',
    policies: [TIERED],
    from: 'client',
    to: 'db',
    port: 5432,
    expect: 'delivered',
  },
  {
    name: 'namespaceSelector DoesNotExist: default has no env label',
    policies: [NO_ENV],
    from: 'tool',
    to: 'web',
    expect: 'delivered',
  },
  {
    name: 'namespaceSelector DoesNotExist: dev has one',
    policies: [NO_ENV],
    from: 'devclient',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/no-env'),
  },

  // ---- ipBlock ("particular IP CIDR ranges"; except: "CIDRs that should not be included")
  {
    name: 'ipBlock: a node address inside the block',
    modes: ['calico-bgp'],
    policies: [
      np('lan', {
        podSelector: sel({ app: 'web' }),
        ingress: [{ from: [{ ipBlock: { cidr: '192.168.1.0/24' } }] }],
      }),
    ],
    from: 'node2',
    to: 'web',
    expect: 'delivered',
  },
  {
    name: 'ipBlock except: the excepted address is not allowed',
    policies: [LAN],
    from: 'node2',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/lan'),
  },
  {
    name: 'ipBlock except: the rest of the block is',
    modes: ['calico-bgp'],
    policies: [LAN],
    from: 'node3',
    to: 'web',
    expect: 'delivered',
  },
  {
    // ipBlock matches the packet's address, pod addresses included
    name: 'ipBlock of the pod network except node2s pods: a node1 pod',
    policies: [PODS],
    from: 'devclient',
    to: 'web',
    expect: 'delivered',
  },
  {
    name: 'ipBlock of the pod network except node2s pods: a node2 pod',
    policies: [PODS],
    from: 'api',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/pods'),
  },
  {
    name: 'egress ipBlock to the LAN: client may reach node2',
    policies: [
      np('to-lan', {
        podSelector: sel({ app: 'client' }),
        egress: [{ to: [{ ipBlock: { cidr: '192.168.1.0/24' } }] }],
      }),
    ],
    from: 'client',
    to: 'node2',
    proto: 'icmp',
    expect: 'delivered',
  },
  {
    name: 'egress ipBlock to node2s pods: allowed to db',
    policies: [TO_NODE2],
    from: 'client',
    to: 'db',
    port: 5432,
    expect: 'delivered',
  },
  {
    name: 'egress ipBlock to node2s pods: not to a node1 pod',
    policies: [TO_NODE2],
    from: 'client',
    to: 'web',
    expect: noPolicySel('prod/client', 'egress', 'prod/to-node2'),
  },

  {
    name: 'ipBlock in calico-ipip: node2 arrives with its tunl0 address',
    modes: ['calico-ipip'],
    policies: [
      np('tunl', {
        podSelector: sel({ app: 'web' }),
        ingress: [{ from: [{ ipBlock: { cidr: '10.244.1.0/32' } }] }],
      }),
    ],
    from: 'node2',
    to: 'web',
    expect: 'delivered',
  },

  // ---- ports: protocol (default TCP), numeric and named ports, endPort
  {
    name: 'numeric port: the listed port',
    policies: [P8080],
    from: 'client',
    to: 'web',
    port: 8080,
    expect: 'delivered',
  },
  {
    name: 'numeric port: another port',
    policies: [P8080],
    from: 'client',
    to: 'web',
    port: 9090,
    expect: noPolicySel('prod/web', 'ingress', 'prod/p8080'),
  },
  {
    name: 'protocol UDP: the UDP port',
    policies: [MDNS],
    from: 'client',
    to: 'web',
    proto: 'udp',
    port: 5353,
    expect: 'delivered',
  },
  {
    name: 'protocol UDP: TCP is not allowed',
    policies: [MDNS],
    from: 'client',
    to: 'web',
    port: 8080,
    expect: noPolicySel('prod/web', 'ingress', 'prod/mdns'),
  },
  {
    name: 'protocol defaults to TCP',
    policies: [np('p8080', { podSelector: sel({ app: 'web' }), ingress: [{ ports: [{ port: 5353 }] }] })],
    from: 'client',
    to: 'web',
    proto: 'udp',
    port: 5353,
    expect: noPolicySel('prod/web', 'ingress', 'prod/p8080'),
  },
  {
    name: 'a port entry without a port: every TCP port',
    policies: [TCP],
    from: 'client',
    to: 'web',
    port: 9090,
    expect: 'delivered',
  },
  {
    name: 'a port entry without a port: ICMP is not TCP',
    policies: [TCP],
    from: 'client',
    to: 'web',
    proto: 'icmp',
    expect: noPolicySel('prod/web', 'ingress', 'prod/tcp'),
  },
  {
    name: 'named port: http is 8080 on web',
    policies: [np('http', { podSelector: sel({ app: 'web' }), ingress: [{ ports: [{ port: 'http' }] }] })],
    from: 'client',
    to: 'web',
    port: 8080,
    expect: 'delivered',
  },
  {
    name: 'named port: metrics is 9090, not 8080',
    policies: [
      np('metrics', { podSelector: sel({ app: 'web' }), ingress: [{ ports: [{ port: 'metrics' }] }] }),
    ],
    from: 'client',
    to: 'web',
    port: 8080,
    expect: noPolicySel('prod/web', 'ingress', 'prod/metrics'),
  },
  {
    name: 'named port the selected pod does not have: nothing allowed',
    policies: [np('pg', { podSelector: sel({ app: 'web' }), ingress: [{ ports: [{ port: 'pg' }] }] })],
    from: 'client',
    to: 'web',
    port: 8080,
    expect: noPolicySel('prod/web', 'ingress', 'prod/pg'),
  },
  {
    name: 'endPort: inside the range',
    policies: [RANGE],
    from: 'client',
    to: 'web',
    port: 9090,
    expect: 'delivered',
  },
  {
    name: 'endPort: outside the range',
    policies: [RANGE],
    from: 'client',
    to: 'web',
    port: 8080,
    expect: noPolicySel('prod/web', 'ingress', 'prod/range'),
  },
  {
    // egress named ports resolve against the destination pod
    name: 'egress named port pg to db',
    policies: [TO_DB],
    from: 'client',
    to: 'db',
    port: 5432,
    expect: 'delivered',
  },
  {
    name: 'egress named port pg: db:8080 is not pg',
    policies: [TO_DB],
    from: 'client',
    to: 'db',
    port: 8080,
    expect: noPolicySel('prod/client', 'egress', 'prod/to-db'),
  },
  {
    name: 'egress to anyone on a named port: api has http',
    policies: [HTTP_OUT],
    from: 'client',
    to: 'api',
    port: 8080,
    expect: 'delivered',
  },
  {
    name: 'egress to anyone on a named port: tool:8080 has no name',
    policies: [HTTP_OUT],
    from: 'client',
    to: 'tool',
    port: 8080,
    expect: noPolicySel('prod/client', 'egress', 'prod/http-out'),
  },

  // ---- policyTypes defaults: Ingress always, Egress when the policy has egress rules
  {
    name: 'egress rules without policyTypes: egress allowed where listed',
    policies: [EGRESS_ONLY],
    from: 'client',
    to: 'db',
    port: 5432,
    expect: 'delivered',
  },
  {
    // the defaulted policyTypes [Ingress, Egress] also isolate client for ingress
    name: 'egress rules without policyTypes also isolate for ingress',
    policies: [EGRESS_ONLY],
    from: 'db',
    to: 'client',
    expect: noPolicySel('prod/client', 'ingress', 'prod/egress-only'),
    dropIn: 'node1',
  },
  {
    name: 'policyTypes [Egress] only: ingress stays open',
    policies: [
      np('egress-only', {
        podSelector: sel({ app: 'client' }),
        policyTypes: ['Egress'],
        egress: [{ to: [pods({ app: 'db' })] }],
      }),
    ],
    from: 'db',
    to: 'client',
    expect: 'delivered',
  },
  {
    name: 'policyTypes [Ingress] with egress rules: the egress rules do not apply',
    policies: [
      np('ingress-only', {
        podSelector: sel({ app: 'client' }),
        policyTypes: ['Ingress'],
        egress: [{ to: [pods({ app: 'db' })] }],
      }),
    ],
    from: 'client',
    to: 'tool',
    expect: 'delivered',
  },
  {
    // egress: [] without policyTypes: len(egress) is 0, so the default is [Ingress] only
    name: 'egress: [] without policyTypes does not isolate egress',
    policies: [np('empty-egress', { podSelector: sel({ app: 'client' }), egress: [] })],
    from: 'client',
    to: 'tool',
    expect: 'delivered',
  },

  // ---- both directions on one flow: the source's egress AND the destination's ingress
  {
    name: 'egress and ingress both allow (same node)',
    policies: [CLIENT_OUT_WEB, WEB_IN],
    from: 'client',
    to: 'web',
    expect: 'delivered',
  },
  {
    // an egress allow must not skip the destination's ingress chain on the same node
    name: 'egress allows, the destination ingress denies (same node)',
    policies: [
      CLIENT_OUT_WEB,
      np('web-in', { podSelector: sel({ app: 'web' }), ingress: [{ from: [pods({ app: 'db' })] }] }),
    ],
    from: 'client',
    to: 'web',
    expect: noPolicySel('prod/web', 'ingress', 'prod/web-in'),
  },
  {
    name: 'ingress allows, the source egress denies',
    policies: [CLIENT_OUT_DB, WEB_IN],
    from: 'client',
    to: 'web',
    expect: noPolicySel('prod/client', 'egress', 'prod/client-out'),
  },
  {
    name: 'cross-node: egress and ingress both allow pg',
    policies: [
      np('client-out', {
        podSelector: sel({ app: 'client' }),
        policyTypes: ['Egress'],
        egress: [{ to: [pods({ app: 'db' })], ports: [{ port: 5432 }] }],
      }),
      np('db-in', {
        podSelector: sel({ app: 'db' }),
        ingress: [{ from: [pods({ app: 'client' })], ports: [{ port: 'pg' }] }],
      }),
    ],
    from: 'client',
    to: 'db',
    port: 5432,
    expect: 'delivered',
  },
  {
    name: 'cross-node: egress allows, ingress on the other node allows another port',
    policies: [
      CLIENT_OUT_DB,
      np('db-in', {
        podSelector: sel({ app: 'db' }),
        ingress: [{ from: [pods({ app: 'client' })], ports: [{ port: 8080 }] }],
      }),
    ],
    from: 'client',
    to: 'db',
    port: 5432,
    expect: noPolicySel('prod/db', 'ingress', 'prod/db-in'),
    dropIn: 'node2',
  },
  {
    // "reply traffic for those allowed connections will also be implicitly allowed"
    name: 'replies pass: client denies all ingress but its SYN-ACK comes back',
    policies: [np('client-closed', { podSelector: sel({ app: 'client' }) })],
    from: 'client',
    to: 'db',
    port: 5432,
    expect: 'delivered',
  },
  {
    name: 'union of two policies selecting one pod: the second allows',
    policies: [A, B],
    from: 'devclient',
    to: 'web',
    port: 9090,
    expect: 'delivered',
  },
  {
    name: 'union of two policies: neither allows; both are named',
    policies: [A, B],
    from: 'devclient',
    to: 'web',
    port: 8080,
    expect: noPolicySel('prod/web', 'ingress', 'prod/a, prod/b'),
  },
];

function policyYaml(policies: Obj[]): string {
  return policies.map((p) => stringify(p)).join('---\n');
}

function runCase(k: Case, mode: CniMode): void {
  const spec = loadCluster(CLUSTER, 'policy-cluster.yaml');
  spec.policies = k.policies.length ? loadPolicies(policyYaml(k.policies), 'case.yaml') : [];
  const c = buildCluster(spec, mode);
  assert.deepEqual(c.warnings, []);
  const proto = k.proto ?? 'tcp';
  const port = proto === 'icmp' ? undefined : (k.port ?? 8080);
  const w = walk(c, { from: k.from, to: k.to, proto, port });
  const d = w.request.disposition;
  if (k.expect === 'delivered') {
    assert.equal(d.kind, 'delivered', JSON.stringify(d));
    assert.equal(
      w.reply?.disposition.kind,
      'delivered',
      `the reply: ${JSON.stringify(w.reply?.disposition)}`,
    );
    return;
  }
  assert.equal(d.kind, 'dropped', JSON.stringify(d));
  if (d.kind !== 'dropped') return;
  assert.equal(d.reason, 'filtered');
  // felix's default drop of the pod's endpoint chain (cali-tw- its ingress, cali-fw- its egress)
  assert.match(
    dropText(d.drop),
    /^dropped by rule cali-(tw|fw)-cali[0-9a-f]{11} #\d+: .* -m comment --comment "Drop if no policies passed packet" -m mark --mark 0x0\/0x20000 -j DROP$/,
  );
  const drop = d.drop;
  assert.ok(drop.reason === 'filtered' && drop.rule);
  const o = drop.rule.rule.origin;
  assert.ok(o?.kind === 'policy-chain' && o.role === 'default-deny', JSON.stringify(o));
  const pod = c.pods.find((p) => `${p.namespace}/${p.name}` === o.pod)!;
  assert.equal(drop.rule.chain, `cali-${o.direction === 'ingress' ? 'tw' : 'fw'}-${pod.hostVeth}`);
  assert.match(
    `no policy selecting ${o.pod} allows this ${o.direction} (selected by: ${o.selectedBy.join(', ')})`,
    k.expect,
  );
  if (k.dropIn) assert.equal(d.netns, k.dropIn);
}

describe('NetworkPolicy semantics, walked through the datapath', () => {
  test('the table has at least 40 cases', () => assert.ok(CASES.length >= 40, String(CASES.length)));
  for (const mode of ['calico-bgp', 'calico-ipip'] as const)
    describe(mode, () => {
      // a case limited to some modes (Case.modes says why) is a test only in those
      for (const k of CASES.filter((x) => !x.modes || x.modes.includes(mode)))
        test(k.name, () => runCase(k, mode));
    });
});

const WEB_POLICIES = policyYaml([
  DENY_IN,
  np('web-in', {
    podSelector: sel({ app: 'web' }),
    ingress: [{ from: [pods({ app: 'client' })], ports: [{ port: 'http' }] }],
  }),
]);

describe('the compiled chains', () => {
  const spec = loadCluster(CLUSTER, 'policy-cluster.yaml');
  spec.policies = loadPolicies(WEB_POLICIES, 'web.yaml');

  test("felix's chains on node1: web's cali-tw- chain walks the policies that select it, then drops", () => {
    const c = buildCluster(spec, 'calico-bgp');
    const r = runCommand(c, 'node1', 'iptables -L -n -v');
    assert.equal(r.code, 0, r.stderr);
    // the chain is named after web's host veth: Calico's cali + sha1("prod.web")[:11]
    const tw = 'cali-tw-calic36cb0217f8';
    assert.match(r.stdout, new RegExp(`^Chain ${tw} \\(1 references\\)$`, 'm'));
    const save = runCommand(c, 'node1', 'iptables-save').stdout.split('\n');
    // felix's policy chains: cali-pi- and the policy ID prod/knp.default.NAME, hashed when too long
    const pi = (id: string) => `cali-pi-_${createHash('sha256').update(id).digest('base64url').slice(0, 19)}`;
    const [deny, webIn] = [pi('prod/knp.default.deny-ingress'), pi('prod/knp.default.web-in')];
    const rules = save
      .filter((l) => l.startsWith(`-A ${tw} `))
      .map((l) => l.replace(/ -m comment --comment "cali:[\w-]{16}"/, ''));
    assert.deepEqual(rules, [
      `-A ${tw} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
      `-A ${tw} -m conntrack --ctstate INVALID -j DROP`,
      `-A ${tw} -j MARK --set-xmark 0x0/0x10000`,
      `-A ${tw} -m comment --comment "Start of policies" -j MARK --set-xmark 0x0/0x20000`,
      `-A ${tw} -m mark --mark 0x0/0x20000 -j ${deny}`,
      `-A ${tw} -m comment --comment "Return if policy accepted" -m mark --mark 0x10000/0x10000 -j RETURN`,
      `-A ${tw} -m mark --mark 0x0/0x20000 -j ${webIn}`,
      `-A ${tw} -m comment --comment "Return if policy accepted" -m mark --mark 0x10000/0x10000 -j RETURN`,
      `-A ${tw} -m comment --comment "Drop if no policies passed packet" -m mark --mark 0x0/0x20000 -j DROP`,
      `-A ${tw} -j cali-pri-kns.prod`,
      `-A ${tw} -m comment --comment "Return if profile accepted" -m mark --mark 0x10000/0x10000 -j RETURN`,
      `-A ${tw} -j cali-pri-ksa.prod.default`,
      `-A ${tw} -m comment --comment "Return if profile accepted" -m mark --mark 0x10000/0x10000 -j RETURN`,
      `-A ${tw} -m comment --comment "Drop if no profiles matched" -j DROP`,
    ]);
    // web-in: from client (10.244.0.11) to web's port named http (8080): felix's selector set as the
    // source, the named port's set (its selector all(): the ingress rule's destination) as dst,dst.
    // The set names: cali40 + MakeUniqueID of the canonical selector, cut to 31 characters
    const uid = (prefix: string, text: string) =>
      `${prefix}:${createHash('sha224').update(`${prefix}:${text}`).digest('base64url')}`;
    const client = uid(
      's',
      '(projectcalico.org/namespace == "prod" && (projectcalico.org/orchestrator == "k8s" && app == "client"))',
    );
    const httpSet = `cali40${uid('n', `${uid('s', 'all()')},tcp,http`)}`.slice(0, 31);
    const clientSet = `cali40${client}`.slice(0, 31);
    assert.deepEqual(
      save
        .filter((l) => l.startsWith(`-A ${webIn} `))
        .map((l) => l.replace(/ -m comment --comment "cali:[\w-]{16}"/, '')),
      [
        `-A ${webIn} -p tcp -m comment --comment "Policy prod/knp.default.web-in ingress" -m set --match-set ${clientSet} src -m set --match-set ${httpSet} dst,dst -j MARK --set-xmark 0x10000/0x10000`,
        `-A ${webIn} -m mark --mark 0x10000/0x10000 -j RETURN`,
      ],
    );
    // the sets' members: client's /32; every pod of the cluster with a TCP port named http (web's
    // 8080 and api's on node2, as felix's calculation graph sees every workload)
    const sets = runCommand(c, 'node1', 'ipset save').stdout.split('\n');
    assert.ok(sets.includes(`add ${clientSet} 10.244.0.11`), sets.join('\n'));
    assert.deepEqual(
      sets.filter((l) => l.startsWith(`add ${httpSet} `)),
      [`add ${httpSet} 10.244.0.10,tcp:8080`, `add ${httpSet} 10.244.1.11,tcp:8080`],
    );
    // deny-ingress has no rule: its chain holds only felix's comment
    assert.deepEqual(
      save
        .filter((l) => l.startsWith(`-A ${deny} `))
        .map((l) => l.replace(/ -m comment --comment "cali:[\w-]{16}"/, '')),
      [`-A ${deny} -m comment --comment "Policy prod/knp.default.deny-ingress ingress"`],
    );
    // no PW- chains and no firewall plugin in Calico's layout
    assert.ok(!save.some((l) => /PW-|CNI-FORWARD/.test(l)), save.join('\n'));
  });

  test("the article's bridge layout keeps podwalk's PW-IN/PW-OUT: egress jumps before ingress, and from INPUT", () => {
    const s2 = {
      ...spec,
      calicoLayout: 'bridge' as const,
      policies: loadPolicies(policyYaml([DENY_IN, DENY_OUT]), 'both.yaml'),
    };
    const save = runCommand(buildCluster(s2, 'calico-bgp'), 'node1', 'iptables-save').stdout.split('\n');
    const fwd = save.filter((l) => /^-A CNI-FORWARD .* -j PW-/.test(l));
    assert.deepEqual(
      fwd.map((l) => /-j (PW-\w+)-/.exec(l)![1]),
      ['PW-OUT', 'PW-OUT', 'PW-IN', 'PW-IN'],
      fwd.join('\n'),
    );
    assert.equal(save.filter((l) => /^-A INPUT -s 10\.244\.0\.1[01]\/32 .* -j PW-OUT-/.test(l)).length, 2);
    assert.ok(!save.some((l) => l.includes('cali-')), save.join('\n'));
  });

  test('flannel modes: a warning, no chains and no enforcement', () => {
    for (const mode of ['flannel-vxlan', 'flannel-host-gw'] as const) {
      const c = buildCluster(spec, mode);
      assert.deepEqual(c.warnings, [
        `${mode} does not enforce NetworkPolicy: 2 policies are not applied (prod/deny-ingress, prod/web-in); a calico-* mode enforces them`,
      ]);
      assert.doesNotMatch(runCommand(c, 'node1', 'iptables-save').stdout, /PW-/);
      const w = walk(c, { from: 'devclient', to: 'web', proto: 'tcp', port: 8080 });
      assert.equal(w.request.disposition.kind, 'delivered');
    }
  });

  test('ipBlock except expands to the prefixes around the exceptions', () => {
    assert.deepEqual(subtractCidrs('192.168.1.0/24', ['192.168.1.11/32']), [
      '192.168.1.0/29',
      '192.168.1.8/31',
      '192.168.1.10/32',
      '192.168.1.12/30',
      '192.168.1.16/28',
      '192.168.1.32/27',
      '192.168.1.64/26',
      '192.168.1.128/25',
    ]);
    assert.deepEqual(subtractCidrs('0.0.0.0/0', ['0.0.0.0/1']), ['128.0.0.0/1']);
    assert.deepEqual(subtractCidrs('10.0.0.0/8', []), ['10.0.0.0/8']);
  });
});

function policyError(text: string): string {
  try {
    loadPolicies(text, 'p.yaml');
  } catch (e) {
    assert.ok(e instanceof ClusterError, String(e));
    return e.message;
  }
  return assert.fail('expected a ClusterError');
}

const HEAD = 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: x\n';

describe('policy files: validation with file:line:col', () => {
  test('a List and several documents load; namespace defaults to default; policyTypes are defaulted', () => {
    const text = [
      HEAD + 'spec:\n  podSelector: {}\n  egress: [{}]\n',
      'apiVersion: v1\nkind: List\nitems:\n  - ' +
        HEAD.replace(/\n(?!$)/g, '\n    ').replace('x\n', 'y\n') +
        '    spec: {podSelector: {}}\n',
    ].join('---\n');
    const ps = loadPolicies(text, 'p.yaml');
    assert.deepEqual(
      ps.map((p) => [p.namespace, p.name, p.policyTypes]),
      [
        ['default', 'x', ['Ingress', 'Egress']],
        ['default', 'y', ['Ingress']],
      ],
    );
  });

  const bad: [string, string, string][] = [
    [
      'wrong kind',
      'apiVersion: networking.k8s.io/v1\nkind: Deployment\n',
      'p.yaml:2:7: kind must be one of NetworkPolicy; got string "Deployment"',
    ],
    [
      'wrong apiVersion',
      'apiVersion: extensions/v1beta1\nkind: NetworkPolicy\n',
      'p.yaml:1:13: apiVersion must be one of networking.k8s.io/v1; got string "extensions/v1beta1"',
    ],
    [
      'misspelt key',
      HEAD + 'spec:\n  podSelectr: {}\n',
      'p.yaml:6:3: unknown key "podSelectr" (did you mean "podSelector"?)',
    ],
    [
      'ipBlock with a selector',
      HEAD +
        'spec:\n  ingress:\n    - from:\n        - ipBlock: {cidr: 10.0.0.0/8}\n          podSelector: {}\n',
      'p.yaml:8:20: ipBlock cannot be combined with podSelector or namespaceSelector in one peer',
    ],
    [
      'except outside cidr',
      HEAD + 'spec:\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]\n',
      'p.yaml:6:59: except 11.0.0.0/16 is not a strict subset of cidr 10.0.0.0/8',
    ],
    [
      'not a CIDR',
      HEAD + 'spec:\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.1/33}}]}]\n',
      'p.yaml:6:35: cidr "10.0.0.1/33" is not a valid IPv4 CIDR (ADDRESS/PREFIX, PREFIX 0..32)',
    ],
    [
      'endPort with a named port',
      HEAD + 'spec:\n  ingress: [{ports: [{port: http, endPort: 90}]}]\n',
      'p.yaml:6:44: endPort needs a numeric port',
    ],
    [
      'endPort below port',
      HEAD + 'spec:\n  ingress: [{ports: [{port: 100, endPort: 90}]}]\n',
      'p.yaml:6:43: endPort 90 is less than port 100',
    ],
    [
      'bad operator',
      HEAD + 'spec:\n  podSelector: {matchExpressions: [{key: a, operator: Has}]}\n',
      'p.yaml:6:55: operator must be one of In, NotIn, Exists, DoesNotExist; got string "Has"',
    ],
    [
      'In without values',
      HEAD + 'spec:\n  podSelector: {matchExpressions: [{key: a, operator: In}]}\n',
      'p.yaml:6:36: operator In needs a non-empty values list',
    ],
    [
      'a label value that is a number',
      HEAD + 'spec:\n  podSelector: {matchLabels: {v: 1}}\n',
      'p.yaml:6:34: v must be a string, got number 1',
    ],
    [
      'bad port name',
      HEAD + 'spec:\n  ingress: [{ports: [{port: HTTP}]}]\n',
      'p.yaml:6:29: port "HTTP" is not a valid port name (1-15 lower-case letters, digits and "-", with a letter, no "--" and no "-" at either end)',
    ],
    [
      'duplicate in one file',
      HEAD + 'spec: {}\n---\n' + HEAD + 'spec: {}\n',
      'p.yaml:10:9: policy default/x is already defined at p.yaml:1',
    ],
    ['YAML syntax', HEAD + 'spec: [\n', 'p.yaml:6:1: '],
    ['empty file', '', 'p.yaml:1:1: the policy file holds no NetworkPolicy'],
  ];
  for (const [name, text, message] of bad)
    test(name, () => {
      const got = policyError(text);
      if (message.endsWith(': ')) assert.ok(got.startsWith(message), got);
      else assert.equal(got, message);
    });

  test('an ipBlock with host bits is accepted masked, with the API server warning at its place', () => {
    // pkg/registry/networking/networkpolicy/strategy.go networkPolicyWarnings → GetWarningsForCIDR
    const warnings: string[] = [];
    const [p] = loadPolicies(
      HEAD +
        'spec:\n  egress:\n    - to: [{ipBlock: {cidr: 10.0.0.1/8, except: [10.1.2.3/16, 10.2.0.0/16]}}]\n',
      'p.yaml',
      new Map(),
      warnings,
    );
    assert.deepEqual(p.egress[0].peers[0].ipBlock, {
      cidr: '10.0.0.0/8',
      except: ['10.1.0.0/16', '10.2.0.0/16'],
    });
    assert.deepEqual(warnings, [
      'p.yaml:7:29: spec.egress[0].to[0].ipBlock.cidr: CIDR value "10.0.0.1/8" is ambiguous in this context (should be "10.0.0.0/8" or "10.0.0.1/32"?)',
      'p.yaml:7:50: spec.egress[0].to[0].ipBlock.except[0]: CIDR value "10.1.2.3/16" is ambiguous in this context (should be "10.1.0.0/16" or "10.1.2.3/32"?)',
    ]);
    // the except check compares the masked prefixes, as ValidateIPBlock does
    assert.equal(
      policyError(
        HEAD + 'spec:\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.1/8, except: [10.9.9.9/8]}}]}]\n',
      ),
      'p.yaml:6:59: except 10.0.0.0/8 is not a strict subset of cidr 10.0.0.0/8',
    );
  });

  test('SCTP port entries are accepted and match nothing podwalk carries', () => {
    const policy = (ports: string) =>
      HEAD.replace('name: x', 'name: x\n  namespace: prod') +
      `spec:\n  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress]\n  ingress: [{ports: [${ports}]}]\n`;
    const spec = loadCluster(CLUSTER, 'c.yaml');
    const walkWith = (ports: string) => {
      const policies = loadPolicies(policy(ports), 'p.yaml');
      const c = buildCluster({ ...spec, policies }, 'calico-bgp');
      return walk(c, { from: 'devclient', to: 'web', proto: 'tcp', port: 8080 }).request.disposition;
    };
    // TCP 8080 beside SCTP 8080: the TCP entry allows the walk
    assert.equal(walkWith('{protocol: SCTP, port: 8080}, {protocol: TCP, port: 8080}').kind, 'delivered');
    // SCTP only: the rule allows no TCP (an empty port list would have allowed every port)
    const d = walkWith('{protocol: SCTP, port: 8080}');
    assert.equal(d.kind === 'dropped' && d.reason, 'filtered');
  });

  test('cluster file: policies, namespaces, labels and named ports; errors located', () => {
    const c = loadCluster(CLUSTER, 'c.yaml');
    assert.deepEqual(c.pods[0].listen[0], { proto: 'tcp', port: 8080, name: 'http' });
    assert.deepEqual(c.namespaces?.[0], { name: 'prod', labels: { env: 'prod' } });
    const withPolicy =
      CLUSTER + 'policies:\n  - ' + HEAD.replace(/\n(?!$)/g, '\n    ') + '    spec: {podSelector: {}}\n';
    assert.equal(loadCluster(withPolicy, 'c.yaml').policies?.[0].name, 'x');
    const dup = withPolicy + '  - ' + HEAD.replace(/\n(?!$)/g, '\n    ') + '    spec: {podSelector: {}}\n';
    assert.throws(
      () => loadCluster(dup, 'c.yaml'),
      /^ClusterError: c\.yaml:\d+:\d+: policy default\/x is already defined at line \d+$/,
    );
    const badName = CLUSTER.replace('tcp/9090/metrics', 'tcp/9090/http');
    assert.throws(
      () => loadCluster(badName, 'c.yaml'),
      /c\.yaml:\d+:\d+: port name "http" is already used by another listen entry/,
    );
    const badLabel = CLUSTER.replace('{ app: tool }', '{ app: "-tool" }');
    assert.throws(
      () => loadCluster(badLabel, 'c.yaml'),
      /c\.yaml:\d+:\d+: invalid label value "-tool" for app/,
    );
  });
});
