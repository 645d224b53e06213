/**
 * The cluster of the matrix benchmark: bench/scale.ts's synthetic nodes and pods (one underlay
 * segment, a /24 pod CIDR per node) in a Calico mode, shaped like a multi-team cluster:
 * 20 namespaces (team-00 … team-19; the even ones env=prod, the odd ones env=staging; team-00
 * also ingress=true), 50 Deployments per namespace (app-00 … app-49: 00-19 the front tier, 20-39
 * back, 40-49 db) whose replicas are spread over the nodes as a scheduler spreads them (pod j of
 * node i belongs to Deployment 53·(30·i + j) mod 1,000: a node runs 30 Deployments of most
 * namespaces, a Deployment has 30 replicas on 30 nodes at 1,000 nodes), every
 * pod listening on http (tcp/8080), the db tier also on pg (tcp/5432), app-00 on dns (udp/53).
 * And 50 NetworkPolicies:
 *
 *  - 10 default-deny-ingress, in the prod namespaces;
 *  - 20 allow-db (one per namespace): app-40 takes pg and http from app-20 of its namespace;
 *  - 10 allow-front (prod): app-01 and app-02 take http from app-00 of the namespaces labelled
 *    ingress=true;
 *  - 5 allow-cross (team-01, 03, 05, 07, 09): app-41 takes http from app-21 of every prod namespace;
 *  - 3 back-egress (team-11, 13, 15): app-22 may send only pg to its namespace's app-40 and DNS
 *    anywhere;
 *  - 2 allow-block (team-17, 19): app-42 takes http from 10.128.0.0/12 except 10.128.0.0/16.
 *
 * Peers are small sets (one Deployment's replicas, or ten of them): cni/policy.ts compiles a peer
 * into one iptables rule per selected pod in every chain of every selected pod (where Calico
 * matches one ipset), so a namespace-wide peer would cost pods² rules.
 */
import { stringify } from 'yaml';
import type { ClusterSpec, CniMode, NetworkPolicySpec, PolicyRuleSpec } from '../src/cluster/spec.ts';
import { syntheticSpec } from './scale.ts';

export const NAMESPACES = 20;
export const APPS_PER_NAMESPACE = 50;

const ns = (i: number) => `team-${String(i).padStart(2, '0')}`;
const app = (a: number) => `app-${String(a).padStart(2, '0')}`;
const tier = (a: number) => (a < 20 ? 'front' : a < 40 ? 'back' : 'db');

export function matrixSpec(nodes: number, podsPerNode: number, cni: CniMode = 'calico-bgp'): ClusterSpec {
  const base = syntheticSpec(nodes, podsPerNode, cni);
  const deployments = NAMESPACES * APPS_PER_NAMESPACE;
  const pods = base.pods.map((p, k) => {
    // 53 is prime to 1,000: each block of 1,000 pods holds every Deployment once
    const d = (k * 53) % deployments;
    const a = d % APPS_PER_NAMESPACE;
    const t = tier(a);
    return {
      ...p,
      namespace: ns(Math.floor(d / APPS_PER_NAMESPACE)),
      labels: { app: app(a), tier: t },
      listen: [
        { proto: 'tcp' as const, port: 8080, name: 'http' },
        ...(t === 'db' ? [{ proto: 'tcp' as const, port: 5432, name: 'pg' }] : []),
        ...(a === 0 ? [{ proto: 'udp' as const, port: 53, name: 'dns' }] : []),
      ],
    };
  });
  const namespaces = Array.from({ length: NAMESPACES }, (_, i) => ({
    name: ns(i),
    labels: { env: i % 2 ? 'staging' : 'prod', ...(i === 0 ? { ingress: 'true' } : {}) },
  }));
  const policies: NetworkPolicySpec[] = [];
  const policy = (p: Omit<NetworkPolicySpec, 'ingress' | 'egress'> & Partial<NetworkPolicySpec>) =>
    policies.push({ ingress: [], egress: [], ...p });
  const apps = (...a: number[]) => ({
    matchExpressions: [{ key: 'app', operator: 'In' as const, values: a.map(app) }],
  });
  for (let i = 0; i < NAMESPACES; i += 2)
    policy({ name: 'default-deny-ingress', namespace: ns(i), podSelector: {}, policyTypes: ['Ingress'] });
  for (let i = 0; i < NAMESPACES; i++)
    policy({
      name: 'allow-db',
      namespace: ns(i),
      podSelector: apps(40),
      policyTypes: ['Ingress'],
      ingress: [
        {
          peers: [{ podSelector: apps(20) }],
          ports: [
            { protocol: 'TCP', port: 'pg' },
            { protocol: 'TCP', port: 8080 },
          ],
        },
      ],
    });
  for (let i = 0; i < NAMESPACES; i += 2)
    policy({
      name: 'allow-front',
      namespace: ns(i),
      podSelector: apps(1, 2),
      policyTypes: ['Ingress'],
      ingress: [
        {
          peers: [{ namespaceSelector: { matchLabels: { ingress: 'true' } }, podSelector: apps(0) }],
          ports: [{ protocol: 'TCP', port: 'http' }],
        },
      ],
    });
  for (let i = 1; i < 10; i += 2)
    policy({
      name: 'allow-cross',
      namespace: ns(i),
      podSelector: apps(41),
      policyTypes: ['Ingress'],
      ingress: [
        {
          peers: [{ namespaceSelector: { matchLabels: { env: 'prod' } }, podSelector: apps(21) }],
          ports: [{ protocol: 'TCP', port: 'http' }],
        },
      ],
    });
  for (const i of [11, 13, 15])
    policy({
      name: 'back-egress',
      namespace: ns(i),
      podSelector: apps(22),
      policyTypes: ['Egress'],
      egress: [
        { peers: [{ podSelector: apps(40) }], ports: [{ protocol: 'TCP', port: 'pg' }] },
        { peers: [], ports: [{ protocol: 'UDP', port: 53 }] },
      ],
    });
  for (const i of [17, 19])
    policy({
      name: 'allow-block',
      namespace: ns(i),
      podSelector: apps(42),
      policyTypes: ['Ingress'],
      ingress: [
        {
          peers: [{ ipBlock: { cidr: '10.128.0.0/12', except: ['10.128.0.0/16'] } }],
          ports: [{ protocol: 'TCP', port: 'http' }],
        },
      ],
    });
  return { ...base, name: `matrix-${nodes}x${podsPerNode}`, namespaces, pods, policies };
}

/** The spec as a cluster file: what `podwalk matrix --cluster FILE` reads (policies as manifests) */
export function matrixYaml(spec: ClusterSpec): string {
  const rules = (rs: PolicyRuleSpec[], peers: 'from' | 'to') =>
    rs.map((r) => ({
      ...(r.peers.length ? { [peers]: r.peers } : {}),
      ...(r.ports.length ? { ports: r.ports } : {}),
    }));
  return stringify({
    ...spec,
    pods: spec.pods.map((p) => ({
      ...p,
      listen: p.listen.map((l) => `${l.proto}/${l.port}${l.name ? `/${l.name}` : ''}`),
    })),
    policies: spec.policies?.map((p) => ({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: p.name, namespace: p.namespace },
      spec: {
        podSelector: p.podSelector,
        policyTypes: p.policyTypes,
        ...(p.ingress.length ? { ingress: rules(p.ingress, 'from') } : {}),
        ...(p.egress.length ? { egress: rules(p.egress, 'to') } : {}),
      },
    })),
  });
}
