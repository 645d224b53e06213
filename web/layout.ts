/**
 * Where each device of a built cluster goes in the picture. The topology is always the same four
 * levels (underlay segments → nodes → node devices → pods), so a fixed layered layout of our own
 * places it deterministically and synchronously: nodes in a grid of up to five columns, each node's
 * eth0 and tunnel device on top, cni0 below, then one veth + pod unit per pod; each segment is a
 * bus in the gutter above every row of nodes, joined by a trunk on the left. It reads the model
 * (which links exist, their state, addresses) and never changes it.
 */
import type { Cluster } from '../src/cni/build.ts';
import type { Link, Netns } from '../src/kernel/objects.ts';

export type BoxKind = 'node' | 'pod' | 'dev' | 'router';

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
  up: boolean;
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
  /** the point a step in (netns, device) is drawn at: keys "netns|device" and "netns" */
  anchors: Map<string, { x: number; y: number }>;
}

const POD_W = 104;
const POD_H = 58;
const VETH_H = 20;
const UNIT_H = VETH_H + 14 + POD_H;
const GAP = 10;
const DEV_H = 32;
const NODE_GAP = 26;
const MAX_COLS = 5;

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
  const anchors = new Map<string, { x: number; y: number }>();
  const center = (b: Box) => ({ x: b.x + b.w / 2, y: b.y + b.h / 2 });
  const add = (b: Box) => {
    boxes.push(b);
    anchors.set(b.id, center(b));
    return b;
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
  const trunkX = (i: number) => 14 + i * 10;
  const left = trunkX(segments.length) + 18;
  const gutter = 26 + 16 * segments.length;
  const top = hasRouter ? 58 : 8;
  const width = left + cols * (nodeW + NODE_GAP);
  const rowY = (r: number) => top + r * (gutter + nodeH) + gutter;
  const busY = (r: number, i: number) => rowY(r) - gutter + 22 + i * 16;
  const height = rowY(rows - 1) + nodeH + 12;

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
    const segIndex = Math.max(
      0,
      segments.findIndex((s) => s.name === n.subnet),
    );
    const portAt = { x: eth0.x + 20, y: busY(r, segIndex) };
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
    const cni0 = ns.link('cni0')
      ? dev('cni0', 10, 28 + DEV_H + 18, nodeW - 20, 'cni0', addr(ns.link('cni0')))
      : undefined;
    const pods = podsOf.get(n.name) ?? [];
    pods.forEach((p, j) => {
      const px = x + GAP + (j % podCols) * (POD_W + GAP);
      const py = y + 28 + DEV_H + 18 + DEV_H + 16 + Math.floor(j / podCols) * (UNIT_H + GAP);
      const veth = add({
        id: `${n.name}|${p.hostVeth}`,
        kind: 'dev',
        netns: n.name,
        device: p.hostVeth,
        x: px + 8,
        y: py,
        w: POD_W - 16,
        h: VETH_H,
        label: p.hostVeth,
        up: linkUp(ns, ns.link(p.hostVeth)),
      });
      if (cni0)
        wires.push({
          x1: veth.x + veth.w / 2,
          y1: veth.y,
          x2: veth.x + veth.w / 2,
          y2: cni0.y + DEV_H,
          kind: 'port',
          up: veth.up,
        });
      const pns = c.world.netns.get(p.name);
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
      const peth = add({
        id: `${p.name}|eth0`,
        kind: 'dev',
        netns: p.name,
        device: 'eth0',
        x: px + 6,
        y: pod.y + 20,
        w: POD_W - 12,
        h: 32,
        label: 'eth0',
        sub: p.ip,
        up: !!pns && linkUp(pns, pns.link('eth0')),
      });
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

  return { width, height, boxes, wires, buses, anchors };
}

/** The point a step is drawn at: its device, else its namespace */
export function anchorOf(l: Layout, netns: string, device?: string): { x: number; y: number } | undefined {
  return (device !== undefined ? l.anchors.get(`${netns}|${device}`) : undefined) ?? l.anchors.get(netns);
}
