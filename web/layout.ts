/**
 * Where each device of a built cluster goes in the picture. The topology is always the same four
 * levels (underlay segments → nodes → node devices → pods), so a fixed layered layout of our own
 * places it deterministically and synchronously: nodes in a grid of up to five columns, each node's
 * eth0 and tunnel device on top, cni0 below (in Calico's own layout, where no bridge joins the cali*
 * veths, the node's routing in its place), then one veth + pod unit per pod; each segment is a bus
 * in the gutter above every row of nodes, joined by a trunk on the left. The router and the
 * external hosts of the cluster file sit above the first row, each on its segment's bus. The
 * Services (as kube-proxy sees them) sit in a band under the nodes, each with a line to every
 * endpoint of its EndpointSlices, not-ready ones marked. It reads the model (which links exist,
 * their state, addresses; the resolved Services) and never changes it.
 */
import type { Cluster } from '../src/cni/build.ts';
import type { Link, Netns } from '../src/kernel/objects.ts';
import { HEADLESS, type ResolvedService } from '../src/proxy/services.ts';

export type BoxKind = 'node' | 'pod' | 'dev' | 'router' | 'host' | 'routing' | 'service';

export interface Box {
  /** "netns" for a namespace box, "netns|device" for a device */
  id: string;
  kind: BoxKind;
  netns: string;
  device?: string;
  x: number;
  y: number;
  w: number;
  h: number;
  label: string;
  sub?: string;
  /** more lines under the label (a Service's address, ports, policies) */
  lines?: string[];
  up: boolean;
}

/** a Service's line to one of its endpoints (a pod or an external host) */
export interface EndpointLine {
  /** the Service's box id, "svc:NAMESPACE/NAME" */
  svc: string;
  /** the endpoint's box id (a pod's or an external host's name) */
  to: string;
  ip: string;
  /** the EndpointSlice's Ready condition */
  ready: boolean;
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

export interface Wire {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  kind: 'veth' | 'port' | 'bus' | 'trunk' | 'lower';
  up: boolean;
}

export interface Bus {
  segment: string;
  cidr: string;
  y: number;
  x1: number;
  x2: number;
}

export interface Layout {
  width: number;
  height: number;
  boxes: Box[];
  wires: Wire[];
  buses: Bus[];
  endpoints: EndpointLine[];
  /** the point a step in (netns, device) is drawn at: keys "netns|device" and "netns" */
  anchors: Map<string, { x: number; y: number }>;
}

const POD_W = 116;
const POD_H = 58;
const VETH_H = 20;
const UNIT_H = VETH_H + 14 + POD_H;
const GAP = 10;
const DEV_H = 32;
const NODE_GAP = 26;
const MAX_COLS = 5;
const HOST_W = 170;
const SVC_W = 210;
const LINE_H = 13;

/** a Service's box id */
export const serviceId = (s: { namespace: string; name: string }): string => `svc:${s.namespace}/${s.name}`;

/** a Service port as kubectl get svc prints it in PORT(S): PORT[:NODEPORT]/PROTOCOL; its name after it */
function portText(p: ResolvedService['ports'][number]): string {
  const np = p.nodePort !== undefined ? `:${p.nodePort}` : '';
  return `${p.port}${np}/${p.protocol.toUpperCase()}${p.portName ? ` (${p.portName})` : ''}`;
}

/** what a Service's box says under its name: type and address, ports, how external traffic and clients are kept */
export function serviceLines(s: ResolvedService): string[] {
  const first = s.ports[0];
  const lines = [
    s.clusterIP === HEADLESS ? `${s.type} None (headless)` : `${s.type} ${s.clusterIP}`,
    ...s.ports.map(portText),
  ];
  const lb = [...new Set(s.ports.flatMap((p) => p.loadBalancerIPs))];
  if (lb.length) lines.push(`ingress ${lb.join(' ')}`);
  if (first && first.type !== 'ClusterIP' && first.externalTrafficPolicy === 'Local')
    lines.push('externalTrafficPolicy Local');
  if (first?.affinitySeconds !== undefined) lines.push(`sessionAffinity ClientIP ${first.affinitySeconds}s`);
  return lines;
}

function linkUp(ns: Netns, l: Link | undefined): boolean {
  return !!l && l.up;
}

function addr(l: Link | undefined): string {
  const a = l?.addrs.find((x) => x.scope !== 'host');
  return a ? `${a.ip}/${a.len}` : '';
}

export function layoutCluster(c: Cluster): Layout {
  const boxes: Box[] = [];
  const wires: Wire[] = [];
  const buses: Bus[] = [];
  const endpoints: EndpointLine[] = [];
  const anchors = new Map<string, { x: number; y: number }>();
  const center = (b: Box) => ({ x: b.x + b.w / 2, y: b.y + b.h / 2 });
  const add = (b: Box) => {
    boxes.push(b);
    anchors.set(b.id, center(b));
    return b;
  };

  /** a namespace's eth0 (a pod's, an external host's) */
  const eth0Box = (netns: string, x: number, y: number, w: number, h: number, sub: string) => {
    const ns = c.world.netns.get(netns);
    return add({
      id: `${netns}|eth0`,
      kind: 'dev',
      netns,
      device: 'eth0',
      x,
      y,
      w,
      h,
      label: 'eth0',
      sub,
      up: !!ns && linkUp(ns, ns.link('eth0')),
    });
  };

  const segments = c.spec.subnets;
  const podsOf = new Map(c.nodes.map((n) => [n.name, c.pods.filter((p) => p.node === n.name)]));
  const maxPods = Math.max(1, ...[...podsOf.values()].map((p) => p.length));
  const podCols = Math.min(maxPods, 4);
  const podRows = Math.ceil(maxPods / podCols);
  const nodeW = Math.max(280, podCols * (POD_W + GAP) + GAP);
  const nodeH = 28 + DEV_H + 18 + DEV_H + 16 + podRows * (UNIT_H + GAP) + 4;
  const cols = Math.min(c.nodes.length, MAX_COLS);
  const rows = Math.ceil(c.nodes.length / cols);
  const hasRouter = c.world.netns.has('router');
  const hosts = c.externalHosts;
  const trunkX = (i: number) => 14 + i * 10;
  const left = trunkX(segments.length) + 18;
  const gutter = 26 + 16 * segments.length;
  const top = hasRouter || hosts.length ? 58 : 8;
  const width = Math.max(
    left + cols * (nodeW + NODE_GAP),
    left + (hasRouter ? 170 : 0) + hosts.length * (HOST_W + GAP) + NODE_GAP,
  );
  const rowY = (r: number) => top + r * (gutter + nodeH) + gutter;
  const busY = (r: number, i: number) => rowY(r) - gutter + 22 + i * 16;
  const nodesBottom = rowY(rows - 1) + nodeH;

  // underlay: a bus per segment above each row, a trunk joining them
  segments.forEach((s, i) => {
    for (let r = 0; r < rows; r++)
      buses.push({ segment: s.name, cidr: s.cidr, y: busY(r, i), x1: trunkX(i), x2: width - NODE_GAP / 2 });
    const seg = c.world.netns.get(s.name);
    wires.push({
      x1: trunkX(i),
      y1: busY(0, i),
      x2: trunkX(i),
      y2: busY(rows - 1, i),
      kind: 'trunk',
      up: !!seg && linkUp(seg, seg.link(s.name)),
    });
    anchors.set(s.name, { x: trunkX(i), y: busY(0, i) });
  });
  const segIndex = (name: string) =>
    Math.max(
      0,
      segments.findIndex((s) => s.name === name),
    );

  if (hasRouter) {
    const ns = c.world.ns('router');
    const b = add({
      id: 'router',
      kind: 'router',
      netns: 'router',
      x: left,
      y: 6,
      w: 150,
      h: 34,
      label: 'router',
      sub: [...ns.links.values()]
        .filter((l) => l.type === 'veth')
        .map((l) => addr(l).split('/')[0])
        .join(' '),
      up: true,
    });
    segments.forEach((s, i) => {
      const leg = [...ns.links.values()].find(
        (l) => l.type === 'veth' && l.peer?.netns === s.name && l.peer.name === 'router',
      );
      if (!leg) return;
      const p = { x: b.x + 20 + i * 16, y: busY(0, i) };
      wires.push({ x1: p.x, y1: b.y + b.h, x2: p.x, y2: p.y, kind: 'port', up: leg.up });
      anchors.set(`router|${leg.name}`, { x: p.x, y: b.y + b.h });
      anchors.set(`${s.name}|router`, p);
    });
  }

  // the cluster file's external hosts: eth0 on their subnet's switch, as the build wires them
  hosts.forEach((h, k) => {
    const ns = c.world.ns(h.name);
    const x = left + (hasRouter ? 170 : 0) + k * (HOST_W + GAP);
    add({ id: h.name, kind: 'host', netns: h.name, x, y: 4, w: HOST_W, h: 48, label: h.name, up: true });
    const eth0 = eth0Box(h.name, x + 6, 22, HOST_W - 12, 24, addr(ns.link('eth0')));
    const p = { x: eth0.x + eth0.w - 16, y: busY(0, segIndex(h.subnet)) };
    wires.push({ x1: p.x, y1: eth0.y + eth0.h, x2: p.x, y2: p.y, kind: 'port', up: eth0.up });
    anchors.set(`${h.subnet}|${h.name.slice(0, 15)}`, p);
    anchors.set(`${h.name}|lo`, center(eth0));
  });

  c.nodes.forEach((n, k) => {
    const r = Math.floor(k / cols);
    const x = left + (k % cols) * (nodeW + NODE_GAP);
    const y = rowY(r);
    const ns = c.world.ns(n.name);
    add({ id: n.name, kind: 'node', netns: n.name, x, y, w: nodeW, h: nodeH, label: n.name, up: true });
    const dev = (name: string, dx: number, dy: number, w: number, label = name, sub?: string) => {
      const l = ns.link(name);
      return add({
        id: `${n.name}|${name}`,
        kind: 'dev',
        netns: n.name,
        device: name,
        x: x + dx,
        y: y + dy,
        w,
        h: DEV_H,
        label,
        sub,
        up: linkUp(ns, l),
      });
    };
    const eth0 = dev('eth0', 10, 28, 130, 'eth0', addr(ns.link('eth0')));
    const portAt = { x: eth0.x + 20, y: busY(r, segIndex(n.subnet)) };
    wires.push({
      x1: portAt.x,
      y1: portAt.y,
      x2: portAt.x,
      y2: eth0.y,
      kind: 'port',
      up: eth0.up,
    });
    anchors.set(`${n.subnet}|${n.name.slice(0, 15)}`, portAt);
    const tunnel = [...ns.links.values()].find((l) => l.type === 'vxlan' || l.type === 'ipip');
    if (tunnel) {
      const t = dev(tunnel.name, nodeW - 130, 28, 120, tunnel.name, addr(tunnel));
      wires.push({
        x1: t.x,
        y1: t.y + DEV_H / 2,
        x2: eth0.x + eth0.w,
        y2: eth0.y + DEV_H / 2,
        kind: 'lower',
        up: t.up,
      });
    }
    const pods = podsOf.get(n.name) ?? [];
    // the pods' veths end on cni0 (the bridge plugin), else in the node's routing: Calico's
    // layout has no bridge, each cali* veth is a routed interface of its own (a /32 route, proxy ARP)
    const hub = ns.link('cni0')
      ? dev('cni0', 10, 28 + DEV_H + 18, nodeW - 20, 'cni0', addr(ns.link('cni0')))
      : pods.length
        ? add({
            id: `${n.name}#routing`,
            kind: 'routing',
            netns: n.name,
            x: x + 10,
            y: y + 28 + DEV_H + 18,
            w: nodeW - 20,
            h: DEV_H,
            label: 'routing (no bridge)',
            sub: 'each veth a routed interface of the node',
            up: true,
          })
        : undefined;
    pods.forEach((p, j) => {
      const px = x + GAP + (j % podCols) * (POD_W + GAP);
      const py = y + 28 + DEV_H + 18 + DEV_H + 16 + Math.floor(j / podCols) * (UNIT_H + GAP);
      const veth = add({
        id: `${n.name}|${p.hostVeth}`,
        kind: 'dev',
        netns: n.name,
        device: p.hostVeth,
        x: px + 4,
        y: py,
        w: POD_W - 8,
        h: VETH_H,
        label: p.hostVeth,
        up: linkUp(ns, ns.link(p.hostVeth)),
      });
      if (hub)
        wires.push({
          x1: veth.x + veth.w / 2,
          y1: veth.y,
          x2: veth.x + veth.w / 2,
          y2: hub.y + DEV_H,
          kind: 'port',
          up: veth.up,
        });
      const pod = add({
        id: p.name,
        kind: 'pod',
        netns: p.name,
        x: px,
        y: py + VETH_H + 14,
        w: POD_W,
        h: POD_H,
        label: p.name,
        up: true,
      });
      const peth = eth0Box(p.name, px + 6, pod.y + 20, POD_W - 12, 32, p.ip);
      wires.push({
        x1: veth.x + veth.w / 2,
        y1: veth.y + VETH_H,
        x2: peth.x + peth.w / 2,
        y2: peth.y,
        kind: 'veth',
        up: veth.up && peth.up,
      });
      anchors.set(`${p.name}|lo`, anchors.get(`${p.name}|eth0`)!);
    });
    anchors.set(`${n.name}|lo`, center(boxes.find((b) => b.id === n.name)!));
  });

  // the Services under the nodes, a line from each to every endpoint of its EndpointSlices
  const svcCols = Math.max(1, Math.floor((width - left) / (SVC_W + GAP)));
  let svcY = nodesBottom + 24;
  let rowH = 0;
  const podBox = new Map(c.pods.map((p) => [`${p.namespace}/${p.name}`, p.name]));
  const byIp = new Map<string, string>([
    ...c.pods.map((p) => [p.ip, p.name] as const),
    ...hosts.map((h) => [h.addr, h.name] as const),
  ]);
  const boxOf = new Map(boxes.map((b) => [b.id, b]));
  // where lines end on a box: spread over its bottom edge, one point per line
  const ends = new Map<string, number>();
  c.services.forEach((s, k) => {
    if (k > 0 && k % svcCols === 0) {
      svcY += rowH + GAP;
      rowH = 0;
    }
    const lines = serviceLines(s);
    const b = add({
      id: serviceId(s),
      kind: 'service',
      netns: '',
      x: left + (k % svcCols) * (SVC_W + GAP),
      y: svcY,
      w: SVC_W,
      h: 22 + lines.length * LINE_H,
      label: s.name,
      sub: s.namespace,
      lines,
      up: true,
    });
    rowH = Math.max(rowH, b.h);
    const seen = new Map<string, EndpointLine>();
    for (const e of s.slices.flatMap((sl) => sl.endpoints)) {
      const prev = seen.get(e.ip);
      if (prev) {
        prev.ready ||= e.ready;
        continue;
      }
      const to = podBox.get(e.pod) ?? byIp.get(e.ip);
      const tb = to === undefined ? undefined : boxOf.get(to);
      if (!to || !tb) continue;
      const i = ends.get(to) ?? 0;
      ends.set(to, i + 1);
      const line: EndpointLine = {
        svc: b.id,
        to,
        ip: e.ip,
        ready: e.ready,
        x1: b.x + 14 + ((seen.size * 12) % (SVC_W - 28)),
        y1: b.y,
        x2: tb.x + 10 + ((i * 9) % (tb.w - 20)),
        y2: tb.y + tb.h,
      };
      seen.set(e.ip, line);
      endpoints.push(line);
    }
  });
  const height = (c.services.length ? svcY + rowH : nodesBottom) + 12;

  return { width, height, boxes, wires, buses, endpoints, anchors };
}

/** The point a step is drawn at: its device, else its namespace */
export function anchorOf(l: Layout, netns: string, device?: string): { x: number; y: number } | undefined {
  return (device !== undefined ? l.anchors.get(`${netns}|${device}`) : undefined) ?? l.anchors.get(netns);
}
