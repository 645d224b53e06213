/**
 * The optional Kubernetes objects next to the dumps (kube.json: `kubectl get nodes,pods,services,
 * endpointslices,networkpolicies -A -o json`, a v1 List): pod names and labels by pod IP, node pod
 * CIDRs, the NetworkPolicies (parsed by the cluster loader, as --policy files are) and the number
 * of Services (walks translate them through the nodes' own kube-proxy rules in the dumped nat
 * tables; without such rules a warning says so).
 */
import { z } from 'zod';
import { ClusterError, loadPolicies } from '../cluster/load.ts';
import type { ListenSpec, NetworkPolicySpec } from '../cluster/spec.ts';
import { DumpError } from './dumps.ts';

const meta = z.looseObject({
  name: z.string(),
  namespace: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
});

const item = z.looseObject({ kind: z.string(), metadata: meta.optional() });

const podSchema = z.looseObject({
  metadata: meta,
  spec: z
    .looseObject({
      nodeName: z.string().optional(),
      hostNetwork: z.boolean().optional(),
      containers: z
        .array(
          z.looseObject({
            ports: z
              .array(
                z.looseObject({
                  containerPort: z.number().int(),
                  protocol: z.string().optional(),
                  name: z.string().optional(),
                }),
              )
              .optional(),
          }),
        )
        .optional(),
    })
    .optional(),
  status: z
    .looseObject({
      podIP: z.string().optional(),
      podIPs: z.array(z.looseObject({ ip: z.string() })).optional(),
    })
    .optional(),
});

const nodeSchema = z.looseObject({
  metadata: meta,
  spec: z
    .looseObject({ podCIDR: z.string().optional(), podCIDRs: z.array(z.string()).optional() })
    .optional(),
  status: z
    .looseObject({
      addresses: z.array(z.looseObject({ type: z.string(), address: z.string() })).optional(),
    })
    .optional(),
});

export interface KubePod {
  name: string;
  namespace: string;
  node?: string;
  ips: string[];
  labels: Record<string, string>;
  /** named container ports */
  ports: ListenSpec[];
  hostNetwork: boolean;
}

export interface KubeNode {
  name: string;
  podCIDRs: string[];
  addresses: string[];
}

export interface KubeObjects {
  pods: KubePod[];
  nodes: KubeNode[];
  services: number;
  policies: NetworkPolicySpec[];
  namespaces: Set<string>;
}

export function parseKube(file: string, text: string): KubeObjects {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new DumpError(file, `not valid JSON (${(e as Error).message})`);
  }
  const list = z.looseObject({ kind: z.literal('List'), items: z.array(item) }).safeParse(raw);
  if (!list.success) throw new DumpError(file, 'expected the v1 List that `kubectl get … -A -o json` prints');
  const out: KubeObjects = { pods: [], nodes: [], services: 0, policies: [], namespaces: new Set() };
  const policyItems: unknown[] = [];
  list.data.items.forEach((it, i) => {
    const where = `items[${i}] (${it.kind} ${it.metadata?.namespace ? it.metadata.namespace + '/' : ''}${it.metadata?.name ?? '?'})`;
    const bad = (e: z.ZodError) => {
      const iss = e.issues[0];
      return new DumpError(file, `${where}: ${iss.path.join('.')}: ${iss.message}`);
    };
    switch (it.kind) {
      case 'Pod': {
        const r = podSchema.safeParse(it);
        if (!r.success) throw bad(r.error);
        const p = r.data;
        const ips = [...new Set([p.status?.podIP, ...(p.status?.podIPs ?? []).map((x) => x.ip)])].filter(
          (x): x is string => !!x && !x.includes(':'),
        );
        const ports: ListenSpec[] = [];
        for (const c of p.spec?.containers ?? [])
          for (const port of c.ports ?? []) {
            const proto = (port.protocol ?? 'TCP').toLowerCase();
            if (proto === 'tcp' || proto === 'udp')
              ports.push({ proto, port: port.containerPort, name: port.name });
          }
        const ns = p.metadata.namespace ?? 'default';
        out.namespaces.add(ns);
        out.pods.push({
          name: p.metadata.name,
          namespace: ns,
          node: p.spec?.nodeName,
          ips,
          labels: p.metadata.labels ?? {},
          ports,
          hostNetwork: !!p.spec?.hostNetwork,
        });
        return;
      }
      case 'Node': {
        const r = nodeSchema.safeParse(it);
        if (!r.success) throw bad(r.error);
        const n = r.data;
        out.nodes.push({
          name: n.metadata.name,
          podCIDRs: [...new Set([n.spec?.podCIDR, ...(n.spec?.podCIDRs ?? [])])].filter(
            (x): x is string => !!x && !x.includes(':'),
          ),
          addresses: (n.status?.addresses ?? []).filter((a) => a.type === 'InternalIP').map((a) => a.address),
        });
        return;
      }
      case 'Service':
        out.services++;
        return;
      case 'NetworkPolicy':
        policyItems.push(it);
        return;
      default:
        return;
    }
  });
  if (policyItems.length)
    try {
      out.policies = loadPolicies(
        JSON.stringify({ apiVersion: 'v1', kind: 'List', items: policyItems }),
        file,
      );
    } catch (e) {
      if (e instanceof ClusterError) throw new DumpError(file, `a NetworkPolicy: ${e.reason}`);
      throw e;
    }
  return out;
}
