/**
 * Services at scale in a process of its own:
 * `node --expose-gc --import tsx bench/svc-one.ts NODES PODS_PER_NODE SERVICES ENDPOINTS`.
 *
 * The synthetic flannel-vxlan cluster of bench/scale.ts, built twice: without Services, and with
 * SERVICES ClusterIP Services (tcp 80 → 8080) of ENDPOINTS pods each (the pods labelled by the
 * Service that selects them), kube-proxy programming every node. Reports each build's wall and CPU
 * time and heap after a full GC, `iptables-save -t nat` of one node (its rules, `-A` lines), the
 * nat rules a new connection's first packet runs through on a node (iptables evaluates a chain
 * rule by rule until one matches: PREROUTING's jump, then KUBE-SERVICES up to the Service's rule,
 * or all of it for a packet to no Service, then the Service's chains), and warm walks per second (a
 * new connection each): pod → pod without Services, pod → pod with them (the whole KUBE-SERVICES
 * on both nodes), and pod → the first and the last Service of KUBE-SERVICES. One JSON line
 * prefixed with RESULT_PREFIX.
 */
import type { ServiceSpec } from '../src/cluster/spec.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { runCommand } from '../src/tools/index.ts';
import { walk } from '../src/trace/walk.ts';
import { cpuMs, gc, nodeName, podName, RESULT_PREFIX, syntheticSpec } from './scale.ts';

export interface SvcBuild {
  buildMs: number;
  buildCpuMs: number;
  /** bytes after buildCluster and gc() */
  heapUsed: number;
}

export interface SvcWalks {
  label: string;
  walks: number;
  /** walks per second (wall) and per CPU second */
  perSec: number;
  perCpuSec: number;
  delivered: boolean;
  /** nat rules the connection's first packet runs through on the client's node */
  natRules: number;
}

export interface SvcResult {
  nodes: number;
  pods: number;
  services: number;
  endpoints: number;
  without: SvcBuild;
  with: SvcBuild;
  /** `iptables-save -t nat` on the first node: `-A` lines and lines in all */
  natRules: number;
  natLines: number;
  /** rules in KUBE-SERVICES */
  kubeServices: number;
  walks: SvcWalks[];
}

const SERVICE_PORT = 80;
const MEASURE_MS = Number(process.env.BENCH_MS ?? 1500);

function build(spec: ReturnType<typeof syntheticSpec>): { c: Cluster; b: SvcBuild } {
  gc();
  const t = performance.now();
  const cpu = process.cpuUsage();
  const c = buildCluster(spec, 'flannel-vxlan');
  const b = { buildMs: performance.now() - t, buildCpuMs: cpuMs(process.cpuUsage(cpu)), heapUsed: 0 };
  gc();
  b.heapUsed = process.memoryUsage().heapUsed;
  return { c, b };
}

/** warm walks for MEASURE_MS, a new connection each (after one walk that resolves the neighbours) */
function measure(
  c: Cluster,
  label: string,
  from: string,
  to: string,
  port: number,
  natRules: number,
): SvcWalks {
  let sport = 40000;
  const one = () => walk(c, { from, to, proto: 'tcp', port, sport: sport++ });
  one();
  let walks = 0;
  let delivered = true;
  const t = performance.now();
  const cpu = process.cpuUsage();
  while (performance.now() - t < MEASURE_MS && sport < 65535) {
    const w = one();
    delivered &&= w.request.disposition.kind === 'delivered' && w.reply?.disposition.kind === 'delivered';
    walks++;
  }
  const ms = performance.now() - t;
  return {
    label,
    walks,
    perSec: (walks / ms) * 1000,
    perCpuSec: (walks / cpuMs(process.cpuUsage(cpu))) * 1000,
    delivered,
    natRules,
  };
}

function main(): void {
  const [nodes, podsPerNode, services, endpoints] = process.argv.slice(2).map(Number);
  if (![nodes, podsPerNode, services, endpoints].every((n) => Number.isInteger(n) && n > 0))
    throw new Error('usage: svc-one.ts NODES PODS_PER_NODE SERVICES ENDPOINTS');
  if (services * endpoints > nodes * podsPerNode)
    throw new Error(`${services} × ${endpoints} endpoints need that many pods`);
  const plain = syntheticSpec(nodes, podsPerNode, 'flannel-vxlan');
  const svcName = (i: number) => `s${String(i).padStart(4, '0')}`;
  // the Service's pods spread over the nodes: pod k of the list is on node k mod nodes
  const order = Array.from({ length: nodes * podsPerNode }, (_, k) =>
    podName(k % nodes, Math.floor(k / nodes)),
  );
  const owner = new Map(order.map((p, k) => [p, Math.floor(k / endpoints)]));
  const spec = {
    ...plain,
    pods: plain.pods.map((p) => {
      const i = owner.get(p.name)!;
      return i < services ? { ...p, labels: { app: svcName(i) } } : p;
    }),
    services: Array.from({ length: services }, (_, i): ServiceSpec => ({
      name: svcName(i),
      namespace: 'default',
      type: 'ClusterIP',
      selector: { app: svcName(i) },
      ports: [{ name: 'http', protocol: 'TCP', port: SERVICE_PORT, targetPort: 8080 }],
      externalTrafficPolicy: 'Cluster',
      loadBalancerIPs: [],
    })),
  };

  const to = podName(nodes - 1, podsPerNode - 1);
  // with the Services first, then released before the build without them (the heaps apart)
  const measured = withServices(spec, owner, order, to);
  const without = build(plain);
  const { from, ...r } = measured;
  const result: SvcResult = {
    ...r,
    nodes,
    services,
    without: without.b,
    walks: [measure(without.c, 'pod → pod, no Services', from, to, 8080, 0), ...r.walks],
  };
  process.stdout.write(RESULT_PREFIX + JSON.stringify(result) + '\n');
}

function withServices(
  spec: ReturnType<typeof syntheticSpec> & { services: ServiceSpec[] },
  owner: Map<string, number>,
  order: string[],
  to: string,
): Omit<SvcResult, 'nodes' | 'services' | 'without'> & { from: string } {
  const { c, b } = build(spec);
  const node = nodeName(0);
  const save = runCommand(c, node, 'iptables-save -t nat').stdout.split('\n');
  const nf = c.world.ns(node).netfilter;
  const chainLen = (name: string) => nf.chain('nat', name)?.rules.length ?? 0;
  const ks = nf.chain('nat', 'KUBE-SERVICES')!.rules;
  const jumpTo = (r: (typeof ks)[number]) => (r.target?.kind === 'jump' ? r.target.chain : '');
  const prerouting = nf.chain('nat', 'PREROUTING')!.rules;
  const intoServices = prerouting.findIndex((r) => jumpTo(r) === 'KUBE-SERVICES') + 1;
  /** the rules a packet to Service i runs through: up to its KUBE-SERVICES rule, its KUBE-SVC- chain, a KUBE-SEP- */
  const svcRules = (i: number) => {
    const sp = c.services[i].ports[0];
    const at = ks.findIndex((r) => jumpTo(r) === sp.chains.svc) + 1;
    // KUBE-SVC-: the masquerade mark, then the statistic rules until one draws (all, at worst)
    return intoServices + at + chainLen(sp.chains.svc) + 2;
  };
  const svcJumps = ks.filter((r) => jumpTo(r).startsWith('KUBE-SVC-'));
  const indexOf = (chain: string) => c.services.findIndex((s) => s.ports[0].chains.svc === chain);
  const first = indexOf(jumpTo(svcJumps[0]));
  const last = indexOf(jumpTo(svcJumps[svcJumps.length - 1]));
  // a client that is no endpoint of the two Services walked (else it would reach itself: hairpin)
  const own = (p: string) => c.services[owner.get(p)!]?.name;
  const firstName = c.services[first].name;
  const lastName = c.services[last].name;
  const from = order.find((p) => own(p) !== firstName && own(p) !== lastName && p !== to)!;
  const withWalks = [
    measure(c, 'pod → pod, with the Services', from, to, 8080, intoServices + ks.length),
    measure(
      c,
      'pod → the first Service of KUBE-SERVICES',
      from,
      `svc/${firstName}`,
      SERVICE_PORT,
      svcRules(first),
    ),
    measure(
      c,
      'pod → the last Service of KUBE-SERVICES',
      from,
      `svc/${lastName}`,
      SERVICE_PORT,
      svcRules(last),
    ),
  ];
  return {
    from,
    pods: c.pods.length,
    endpoints: c.services.reduce((n, s) => n + s.ports[0].endpoints.length, 0),
    with: b,
    natRules: save.filter((l) => l.startsWith('-A ')).length,
    natLines: save.filter((l) => l !== '').length,
    kubeServices: ks.length,
    walks: withWalks,
  };
}

main();
