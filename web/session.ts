/**
 * What the page drives, the way the CLI drives it: load the cluster with the core loader, build it
 * in a mode with the console's commands applied (prepareCluster, as `--run` does), walk the flow
 * (walk), run a console command (runCommand). Also the page state that the URL carries.
 */
import { ClusterError, loadCluster } from '../src/cluster/load.ts';
import { SEED_YAML } from '../src/cluster/seed.ts';
import { CNI_MODES, type ClusterSpec, type CniMode } from '../src/cluster/spec.ts';
import { BuildError, type Cluster } from '../src/cni/build.ts';
import { applyRun, CommandError, prepareCluster, runCommand } from '../src/tools/index.ts';
import { DumpError, importCluster, type DumpFiles } from '../src/import/index.ts';
import type { ToolResult } from '../src/tools/types.ts';
import type { Proto, Step } from '../src/trace/types.ts';
import { HEADLESS } from '../src/proxy/services.ts';
import { resolveService, walk, WalkError, type ServiceTarget, type Walk } from '../src/trace/walk.ts';
import { strFromU8, strToU8, unzlibSync, zlibSync } from 'fflate';

export interface FlowForm {
  from: string;
  to: string;
  proto: Proto;
  port: number;
  /** UDP/ICMP: IP total length; TCP: request bytes; undefined: the default */
  size?: number;
  df: boolean;
  /** a Service's destination: the endpoint (pod name or address) to take, as `trace --endpoint` */
  endpoint?: string;
}

export interface PageState {
  /** the cluster YAML, or "seed" for the built-in one */
  cluster: string;
  mode: CniMode;
  flow: FlowForm;
  /** console commands applied before the walk, "NETNS: COMMAND", in order */
  run: string[];
  /** which trace of the exchange (0 the request, 1 the reply, …) */
  trace: number;
  /** 0-based index into that trace's steps */
  step: number;
  /** the mode shown beside this one, if any */
  compare?: CniMode;
}

export interface LoadedCluster {
  yaml: string;
  spec: ClusterSpec;
  /** "seed" or the file name */
  name: string;
  /** `podwalk serve --from`: the cluster is built from these node dumps, not from a CNI mode */
  dumps?: DumpFiles;
  /** what the import could not represent (one line each) */
  warnings?: string[];
}

/** the URL's cluster for dumps served by `podwalk serve --from` (too large for a link) */
export const SERVED_DUMPS = 'served';

/** dumps as `podwalk serve --from` hands them over: {name, files: {path: text}} */
export function loadDumps(json: string): LoadedCluster {
  const o = JSON.parse(json) as { name: string; files: Record<string, string> };
  const dumps: DumpFiles = new Map(Object.entries(o.files));
  const { cluster } = importCluster(dumps, { name: o.name });
  return { yaml: '', spec: cluster.spec, name: o.name, dumps, warnings: cluster.warnings };
}

/** the cluster to walk: imported from the dumps, or built in `mode`; `run` applied */
export function prepare(loaded: LoadedCluster, mode: CniMode, run: readonly string[]): Cluster {
  if (!loaded.dumps) return prepareCluster(loaded.spec, mode, run);
  const c = importCluster(loaded.dumps, { name: loaded.name }).cluster;
  applyRun(
    c,
    run.map((l) => ({ l, where: 'console' })),
  );
  return c;
}

export function loadYaml(yaml: string, name: string): LoadedCluster {
  return { yaml, spec: loadCluster(yaml, name), name };
}

export function seed(): LoadedCluster {
  return loadYaml(SEED_YAML, 'seed');
}

/** The first pod, and a pod on another node listening on TCP: the article's Pod A → Pod C */
export function defaultFlow(spec: ClusterSpec): FlowForm {
  // a scenario names the flow it is about
  const sc = spec.scenario;
  if (sc) return { from: sc.from, to: sc.to, proto: sc.proto, port: sc.port ?? 8080, df: false };
  const a = spec.pods[0];
  const b =
    spec.pods.find((p) => a && p.node !== a.node && p.listen.some((l) => l.proto === 'tcp')) ??
    spec.pods.find((p) => p !== a) ??
    a;
  const port = b?.listen.find((l) => l.proto === 'tcp')?.port ?? 8080;
  return {
    from: a?.name ?? spec.nodes[0].name,
    to: b?.name ?? spec.nodes[spec.nodes.length - 1].name,
    proto: 'tcp',
    port,
    df: false,
  };
}

export interface Simulation {
  cluster?: Cluster;
  walk?: Walk;
  /** why there is no walk (a console command that fails in this mode, an unknown endpoint…) */
  error?: string;
}

function message(e: unknown): string {
  if (
    e instanceof WalkError ||
    e instanceof CommandError ||
    e instanceof BuildError ||
    e instanceof ClusterError ||
    e instanceof DumpError
  )
    return e.message;
  throw e;
}

/** Build the cluster in `mode` (or import it) with `run` applied, then walk the flow and its whole exchange. */
export function simulate(
  loaded: LoadedCluster,
  mode: CniMode,
  run: readonly string[],
  f: FlowForm,
): Simulation {
  let cluster: Cluster;
  try {
    cluster = prepare(loaded, mode, run);
  } catch (e) {
    return { error: message(e) };
  }
  try {
    const w = walk(
      cluster,
      {
        from: f.from,
        to: f.to,
        proto: f.proto,
        port: f.proto === 'icmp' ? undefined : f.port,
        size: f.size,
        df: f.df,
        endpoint: f.endpoint,
      },
      { exchange: true },
    );
    return { cluster, walk: w };
  } catch (e) {
    return { cluster, error: message(e) };
  }
}

/** one choice of the flow's destination: what it sets (`to`, and the port and protocol it implies) */
export interface Destination {
  /** the option's value, unique among the choices */
  key: string;
  to: string;
  port?: number;
  proto?: 'tcp' | 'udp';
  label: string;
  group: 'pods' | 'nodes' | 'external hosts' | 'Services' | 'node ports' | 'load balancers';
}

/**
 * Every destination the page offers for the cluster: its pods, nodes and external hosts, and, as
 * `podwalk trace` takes them, each Service port (`svc/NAME:PORT`; `svc/NAMESPACE/NAME` when the name
 * is in several namespaces), each node port on each node's address (`NODE_IP:NODEPORT`, what a host
 * outside the cluster sends to) and each load-balancer ingress IP with its port.
 */
export function destinations(c: Cluster): Destination[] {
  const out: Destination[] = [
    ...c.pods.map((p) => ({ key: p.name, to: p.name, label: p.name, group: 'pods' as const })),
    ...c.nodes.map((n) => ({ key: n.name, to: n.name, label: n.name, group: 'nodes' as const })),
    ...c.externalHosts.map((h) => ({
      key: h.name,
      to: h.name,
      label: h.name,
      group: 'external hosts' as const,
    })),
  ];
  const key = (to: string, port: number, proto: 'tcp' | 'udp') => `${to}:${port}/${proto}`;
  const label = (to: string, port: number, proto: 'tcp' | 'udp') =>
    `${to}:${port}${proto === 'udp' ? ' udp' : ''}`;
  for (const s of c.services) {
    const shared = c.services.some((o) => o !== s && o.name === s.name);
    const to = shared ? `svc/${s.namespace}/${s.name}` : `svc/${s.name}`;
    for (const p of s.ports)
      out.push({
        key: key(to, p.port, p.protocol),
        to,
        port: p.port,
        proto: p.protocol,
        label: `${label(to, p.port, p.protocol)}${s.clusterIP === HEADLESS ? ' (headless)' : ''}`,
        group: 'Services',
      });
  }
  const ports = c.services.flatMap((s) => s.ports);
  for (const n of c.nodes)
    for (const p of ports)
      if (p.nodePort !== undefined)
        out.push({
          key: key(n.addr, p.nodePort, p.protocol),
          to: n.addr,
          port: p.nodePort,
          proto: p.protocol,
          label: `${label(n.addr, p.nodePort, p.protocol)} (${n.name}, ${p.nameString})`,
          group: 'node ports',
        });
  for (const p of ports)
    for (const ip of p.loadBalancerIPs)
      out.push({
        key: key(ip, p.port, p.protocol),
        to: ip,
        port: p.port,
        proto: p.protocol,
        label: `${label(ip, p.port, p.protocol)} (${p.nameString})`,
        group: 'load balancers',
      });
  // a node port and a pod port may be the same number: keep the first of a key
  return out.filter((d, i) => out.findIndex((o) => o.key === d.key) === i);
}

/** the destination choice that is the flow's: its to, port and protocol, else its to alone */
export function destinationOf(ds: readonly Destination[], f: FlowForm): Destination | undefined {
  return (
    ds.find((d) => d.to === f.to && d.port === f.port && d.proto === f.proto) ??
    ds.find((d) => d.to === f.to && d.port === undefined)
  );
}

/** the Service port the flow goes to (as `walk` resolves it), or undefined */
export function serviceTarget(c: Cluster, f: FlowForm): ServiceTarget | undefined {
  try {
    return resolveService(c, f.to, f.proto === 'icmp' ? undefined : f.port, f.proto);
  } catch (e) {
    if (e instanceof WalkError) return undefined;
    throw e;
  }
}

/**
 * The endpoint address a Service's traffic went to by step `at` of a trace: kube-proxy's DNAT on
 * the way there (`nat-setup`, or conntrack's `nat-rewrite` of a later packet), or conntrack's
 * un-NAT of the answer (the source rewritten back to the Service's address); undefined before it.
 */
export function natEndpoint(t: ServiceTarget, steps: readonly Step[], at: number): string | undefined {
  for (let i = 0; i <= at && i < steps.length; i++) {
    const e = steps[i].ev;
    if (e?.type !== 'nat-setup' && e?.type !== 'nat-rewrite') continue;
    if (e.manip === 'dst' && e.before.dst === t.ip && e.before.dport === t.port) return e.after.dst;
    if (e.manip === 'src' && e.after.src === t.ip && e.after.sport === t.port) return e.before.src;
  }
  return undefined;
}

export interface ConsoleOutcome {
  result: ToolResult;
  /** the command changed the model: it joins the run list and the walk runs again */
  applied: boolean;
  /** why a successful command is not applied to the walk */
  note?: string;
}

/**
 * Everything the namespaces hold (links, FDBs, routes, neighbours, sysctls, rules, counters,
 * conntrack), as one string: equal before and after a command exactly when it changed nothing.
 */
export function modelState(c: Cluster): string {
  const seen = new WeakSet<object>();
  return JSON.stringify([...c.world.netns.values()], (_k, v: unknown) => {
    if (v instanceof Map) return [...v.entries()];
    if (v instanceof Set) return [...v];
    if (ArrayBuffer.isView(v)) return Array.from(v as Uint8Array);
    if (v !== null && typeof v === 'object') {
      if (seen.has(v)) return '(shared)';
      seen.add(v);
    }
    return v;
  });
}

/**
 * Run a console command in `netns` of the walked cluster, so that tcpdump, counters and conntrack
 * show the walk (as `podwalk exec --walk` does). If it succeeds, it is also run on the cluster as
 * it was before the walk; when it changes that model, it joins the run list, which rebuilds the
 * cluster and walks again (as `podwalk trace --run` does). A command that works only after the walk
 * (it names state the walk created) is shown but not applied.
 */
export function consoleRun(
  sim: Simulation,
  loaded: LoadedCluster,
  mode: CniMode,
  run: readonly string[],
  netns: string,
  command: string,
): ConsoleOutcome {
  if (!sim.cluster)
    return {
      result: { stdout: '', stderr: `podwalk: ${sim.error ?? 'no cluster'}\n`, code: 2 },
      applied: false,
    };
  const result = runCommand(sim.cluster, netns, command);
  if (result.code !== 0) return { result, applied: false };
  const before = prepare(loaded, mode, run);
  const was = modelState(before);
  const r = runCommand(before, netns, command);
  if (r.code !== 0)
    return {
      result,
      applied: false,
      note: `not applied to the walk: before the walk it fails: ${(r.stderr || r.stdout).trim().split('\n')[0]}`,
    };
  return { result, applied: modelState(before) !== was };
}

// ---- the URL: #c=seed|z:<base64url zlib yaml>&m=…&from=…&to=…&proto=…&port=…&size=…&df=1&ep=…&run=…&t=…&s=…&cmp=…

function b64url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function unb64url(s: string): Uint8Array {
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function encodeCluster(yaml: string): string {
  return yaml === SEED_YAML ? 'seed' : `z:${b64url(zlibSync(strToU8(yaml), { level: 9 }))}`;
}

export function decodeCluster(c: string): string {
  if (c === 'seed') return SEED_YAML;
  if (c.startsWith('z:')) return strFromU8(unzlibSync(unb64url(c.slice(2))));
  throw new Error(`the URL's cluster "${c.slice(0, 20)}…" is neither "seed" nor "z:…"`);
}

export function encodeState(s: PageState): string {
  const q = new URLSearchParams();
  q.set('c', s.cluster);
  q.set('m', s.mode);
  q.set('from', s.flow.from);
  q.set('to', s.flow.to);
  q.set('proto', s.flow.proto);
  if (s.flow.proto !== 'icmp') q.set('port', String(s.flow.port));
  if (s.flow.size !== undefined) q.set('size', String(s.flow.size));
  if (s.flow.df) q.set('df', '1');
  if (s.flow.endpoint !== undefined) q.set('ep', s.flow.endpoint);
  for (const r of s.run) q.append('run', r);
  q.set('t', String(s.trace));
  q.set('s', String(s.step));
  if (s.compare) q.set('cmp', s.compare);
  return q.toString();
}

const isMode = (m: string | null): m is CniMode => !!m && (CNI_MODES as readonly string[]).includes(m);

export type UrlState = Partial<Omit<PageState, 'flow'>> & { flow?: Partial<FlowForm> };

/** Parse a URL hash; fields missing or invalid are left out (the page uses its defaults). */
export function decodeState(hash: string): UrlState {
  const q = new URLSearchParams(hash.replace(/^#/, ''));
  const out: UrlState = {};
  const c = q.get('c');
  if (c) out.cluster = c;
  const m = q.get('m');
  if (isMode(m)) out.mode = m;
  const cmp = q.get('cmp');
  if (isMode(cmp)) out.compare = cmp;
  const flow: Partial<FlowForm> = {};
  if (q.get('from')) flow.from = q.get('from')!;
  if (q.get('to')) flow.to = q.get('to')!;
  const proto = q.get('proto');
  if (proto === 'tcp' || proto === 'udp' || proto === 'icmp') flow.proto = proto;
  const num = (k: string) => (q.get(k) !== null && /^\d+$/.test(q.get(k)!) ? Number(q.get(k)) : undefined);
  if (num('port') !== undefined) flow.port = num('port');
  if (num('size') !== undefined) flow.size = num('size');
  if (q.has('from')) flow.df = q.get('df') === '1';
  if (q.get('ep')) flow.endpoint = q.get('ep')!;
  if (Object.keys(flow).length) out.flow = flow;
  if (q.has('run') || q.has('c')) out.run = q.getAll('run');
  if (num('t') !== undefined) out.trace = num('t');
  if (num('s') !== undefined) out.step = num('s');
  return out;
}
