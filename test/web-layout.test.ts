/**
 * The page's picture and flow choices without a browser: web/layout.ts places the Services, their
 * endpoints, the external hosts and Calico's own node layout from the built model; web/session.ts
 * offers the Services as destinations and finds the endpoint kube-proxy's DNAT took in the steps.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadCluster } from '../src/cluster/load.ts';
import { SEED_YAML } from '../src/cluster/seed.ts';
import type { CniMode } from '../src/cluster/spec.ts';
import type { Cluster } from '../src/cni/build.ts';
import { prepareCluster } from '../src/tools/index.ts';
import { walk } from '../src/trace/walk.ts';
import { layoutCluster, serviceLines, type Box, type Layout } from '../web/layout.ts';
import {
  decodeState,
  destinationOf,
  destinations,
  encodeState,
  natEndpoint,
  serviceTarget,
  type FlowForm,
} from '../web/session.ts';

const file = (p: string) => fileURLToPath(new URL(`../${p}`, import.meta.url));
const SERVICES = file('examples/services.yaml');
const EXTERNAL = file('test/fixtures/services-external.yaml');

function cluster(path: string, mode?: CniMode, extra = ''): Cluster {
  const spec = loadCluster(readFileSync(path, 'utf8') + extra, path);
  return prepareCluster(spec, mode ?? spec.cni, []);
}

const box = (l: Layout, id: string): Box => {
  const b = l.boxes.find((x) => x.id === id);
  assert.ok(b, `no box ${id}`);
  return b;
};

const overlap = (a: Box, b: Box) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

/** boxes that are not inside one another overlap nowhere, and everything is inside the picture */
function assertTidy(l: Layout): void {
  const top = l.boxes.filter((b) => ['node', 'router', 'host', 'service'].includes(b.kind));
  for (const a of top)
    for (const b of top) if (a !== b) assert.ok(!overlap(a, b), `${a.id} overlaps ${b.id}`);
  for (const b of l.boxes)
    assert.ok(b.x >= 0 && b.y >= 0 && b.x + b.w <= l.width && b.y + b.h <= l.height, `${b.id} outside`);
}

describe('web layout: Services and their endpoints', () => {
  const c = cluster(SERVICES);
  const l = layoutCluster(c);

  test('each Service drawn with its type, ClusterIP and ports as kubectl prints PORT(S)', () => {
    const lines = (id: string) => {
      const b = box(l, id);
      return [b.label, b.sub, ...(b.lines ?? [])];
    };
    assert.deepEqual(lines('svc:default/web'), [
      'web',
      'default',
      'ClusterIP 10.96.0.2',
      '80/TCP (http)',
      '8080/UDP (udp)',
    ]);
    assert.deepEqual(lines('svc:default/web-np'), [
      'web-np',
      'default',
      'NodePort 10.96.0.3',
      '80:30080/TCP',
    ]);
    assert.deepEqual(lines('svc:default/dns'), ['dns', 'default', 'ClusterIP 10.96.0.10', '53/UDP (dns)']);
    // the box is as tall as its lines
    for (const s of c.services)
      assert.equal(box(l, `svc:${s.namespace}/${s.name}`).h, 22 + 13 * serviceLines(s).length);
  });

  test('a line to every endpoint of the EndpointSlices, not-ready ones marked, ending on the pod', () => {
    const of = (svc: string) =>
      l.endpoints
        .filter((e) => e.svc === svc)
        .map((e) => `${e.to} ${e.ip} ${e.ready ? 'ready' : 'not-ready'}`)
        .sort();
    assert.deepEqual(of('svc:default/web'), [
      'pod-b 10.244.0.6 ready',
      'pod-c 10.244.1.5 ready',
      'pod-d 10.244.2.5 not-ready',
    ]);
    assert.deepEqual(of('svc:default/web-np'), [
      'pod-b 10.244.0.6 ready',
      'pod-c 10.244.1.5 ready',
      'pod-d 10.244.2.5 not-ready',
    ]);
    assert.deepEqual(of('svc:default/dns'), ['pod-d 10.244.2.5 not-ready']);
    for (const e of l.endpoints) {
      const s = box(l, e.svc);
      const p = box(l, e.to);
      assert.equal(e.y1, s.y, 'from the Service box top');
      assert.ok(e.x1 > s.x && e.x1 < s.x + s.w);
      assert.equal(e.y2, p.y + p.h, 'to the pod box bottom');
      assert.ok(e.x2 > p.x && e.x2 < p.x + p.w);
    }
  });

  test('the Services sit under every node, nothing overlaps, the picture holds everything', () => {
    const lowest = Math.max(...l.boxes.filter((b) => b.kind === 'node').map((b) => b.y + b.h));
    for (const b of l.boxes.filter((x) => x.kind === 'service')) assert.ok(b.y > lowest, b.id);
    assertTidy(l);
  });

  test('a cluster without a services: list has no Service band (the seed picture keeps its height)', () => {
    const seed = layoutCluster(prepareCluster(loadCluster(SEED_YAML, 'seed'), 'flannel-vxlan', []));
    assert.equal(seed.endpoints.length, 0);
    assert.equal(seed.boxes.filter((b) => b.kind === 'service' || b.kind === 'host').length, 0);
    const lowest = Math.max(...seed.boxes.map((b) => b.y + b.h));
    assert.equal(seed.height, lowest + 12);
  });

  test('deterministic: the same cluster, the same picture', () => {
    const again = layoutCluster(cluster(SERVICES));
    assert.deepEqual({ ...again, anchors: [...again.anchors] }, { ...l, anchors: [...l.anchors] });
  });
});

describe('web layout: external hosts', () => {
  const c = cluster(EXTERNAL);
  const l = layoutCluster(c);

  test('drawn above the nodes with eth0 and its address, its port on its subnet bus', () => {
    const h = box(l, 'client');
    assert.equal(h.kind, 'host');
    const eth0 = box(l, 'client|eth0');
    assert.equal(eth0.sub, '192.168.1.100/24');
    assert.ok(eth0.x >= h.x && eth0.x + eth0.w <= h.x + h.w && eth0.y + eth0.h <= h.y + h.h);
    const bus = l.buses.find((b) => b.segment === 'lan0')!;
    const lowestBus = Math.min(...l.buses.filter((b) => b.segment === 'lan0').map((b) => b.y));
    assert.equal(bus.y, lowestBus);
    assert.deepEqual(l.anchors.get('lan0|client'), { x: eth0.x + eth0.w - 16, y: lowestBus });
    const nodesTop = Math.min(...l.boxes.filter((b) => b.kind === 'node').map((b) => b.y));
    assert.ok(h.y + h.h < nodesTop);
    assertTidy(l);
  });

  test("a hand-written EndpointSlice's endpoints: the host outside the cluster, a pod, an address that is a pod's", () => {
    assert.deepEqual(
      l.endpoints
        .filter((e) => e.svc === 'svc:default/manual')
        .map((e) => `${e.to} ${e.ip} ${e.ready}`)
        .sort(),
      ['client 192.168.1.100 true', 'web-2 10.244.1.2 true', 'web-3 10.244.2.2 false'],
    );
    const lb = box(l, 'svc:prod/api');
    assert.deepEqual(lb.lines, [
      'LoadBalancer 10.100.0.3',
      '9000:31000/TCP (tcp)',
      '9000:31000/UDP (udp)',
      'ingress 203.0.113.10',
      'externalTrafficPolicy Local',
    ]);
    assert.deepEqual(box(l, 'svc:default/sticky').lines, [
      'ClusterIP 10.100.0.6',
      '8443/TCP',
      'sessionAffinity ClientIP 600s',
    ]);
    assert.deepEqual(box(l, 'svc:default/web-headless').lines, ['ClusterIP None (headless)', '8080/TCP']);
  });

  test('every device a NodePort walk from the client crosses has its point in the picture', () => {
    const w = walk(c, { from: 'client', to: '192.168.1.11', port: 30080, proto: 'tcp' }, { exchange: true });
    assert.equal(w.request.disposition.kind, 'delivered');
    const missing = new Set<string>();
    for (const t of w.traces)
      for (const s of t.steps)
        if (s.device !== undefined && !l.anchors.has(`${s.netns}|${s.device}`))
          missing.add(`${s.netns}|${s.device}`);
    // the segment's own bridge is the bus itself: its steps stay at the port the frame came in by
    assert.deepEqual([...missing], ['lan0|lan0']);
  });
});

describe("web layout: Calico's own layout", () => {
  test('calico-* modes by default: cali* veths routed by the node, no cni0, a wire from each veth to the routing', () => {
    const c = cluster(SERVICES, 'calico-ipip');
    assert.equal(c.layout, 'calico');
    const l = layoutCluster(c);
    for (const n of c.nodes) {
      assert.equal(
        l.boxes.some((b) => b.id === `${n.name}|cni0`),
        false,
      );
      const hub = box(l, `${n.name}#routing`);
      assert.equal(hub.kind, 'routing');
      assert.equal(hub.netns, n.name);
      for (const p of c.pods.filter((x) => x.node === n.name)) {
        assert.match(p.hostVeth, /^cali[0-9a-f]{11}$/);
        const v = box(l, `${n.name}|${p.hostVeth}`);
        const wire = l.wires.find((x) => x.kind === 'port' && x.x1 === v.x + v.w / 2 && x.y1 === v.y);
        assert.ok(wire, p.hostVeth);
        assert.equal(wire.y2, hub.y + hub.h);
      }
    }
    assert.ok(l.boxes.some((b) => b.id === 'node1|tunl0'));
    assertTidy(l);
  });

  test('every device a Service walk crosses in that layout has its point in the picture', () => {
    const c = cluster(SERVICES, 'calico-ipip');
    const l = layoutCluster(c);
    const w = walk(
      c,
      { from: 'pod-a', to: 'svc/web', port: 80, proto: 'tcp', endpoint: 'pod-c' },
      { exchange: true },
    );
    assert.equal(w.request.disposition.kind, 'delivered');
    const devices = new Set<string>();
    const missing = new Set<string>();
    for (const t of w.traces)
      for (const s of t.steps)
        if (s.device !== undefined) {
          devices.add(`${s.netns}|${s.device}`);
          if (!l.anchors.has(`${s.netns}|${s.device}`)) missing.add(`${s.netns}|${s.device}`);
        }
    // the walk went by the cali veths (proxy ARP, /32 routes) and tunl0
    const pods = new Map(c.pods.map((p) => [p.name, p]));
    for (const d of [
      `node1|${pods.get('pod-a')!.hostVeth}`,
      `node2|${pods.get('pod-c')!.hostVeth}`,
      'node1|tunl0',
      'node2|tunl0',
    ])
      assert.ok(devices.has(d), d);
    assert.deepEqual([...missing], ['lan0|lan0']);
  });

  test('calicoLayout: bridge keeps cni0 and draws no routing box', () => {
    const c = cluster(SERVICES, 'calico-ipip', 'calicoLayout: bridge\n');
    assert.equal(c.layout, 'bridge');
    const l = layoutCluster(c);
    for (const n of c.nodes) {
      assert.equal(box(l, `${n.name}|cni0`).kind, 'dev');
      assert.equal(
        l.boxes.some((b) => b.id === `${n.name}#routing`),
        false,
      );
    }
  });

  test('a node without pods gets no routing box', () => {
    const yaml = readFileSync(SERVICES, 'utf8').replace(/^pods:[\s\S]*?(?=^# v1 Services)/m, 'pods: []\n\n');
    const spec = loadCluster(yaml.replace(/^services:[\s\S]*$/m, 'services: []\n'), 'x');
    const l = layoutCluster(prepareCluster(spec, 'calico-bgp', []));
    assert.equal(l.boxes.filter((b) => b.kind === 'routing').length, 0);
  });
});

describe('web session: Services as destinations', () => {
  const c = cluster(EXTERNAL);
  const ds = destinations(c);

  test('svc/NAME:PORT per Service port, NODE_IP:NODEPORT per node, load-balancer IP:PORT', () => {
    const of = (g: string) => ds.filter((d) => d.group === g).map((d) => d.key);
    assert.deepEqual(of('external hosts'), ['client']);
    assert.deepEqual(of('Services'), [
      'svc/web:80/tcp',
      'svc/api:9000/tcp',
      'svc/api:9000/udp',
      'svc/empty-lb:443/tcp',
      'svc/manual:5432/tcp',
      'svc/sticky:8443/tcp',
      'svc/web-headless:8080/tcp',
    ]);
    assert.ok(of('node ports').includes('192.168.1.11:30080/tcp'));
    assert.equal(of('node ports').length, 3 * 4);
    assert.deepEqual(of('load balancers'), [
      '203.0.113.10:9000/tcp',
      '203.0.113.10:9000/udp',
      '203.0.113.11:443/tcp',
    ]);
    const udp = ds.find((d) => d.key === 'svc/api:9000/udp')!;
    assert.deepEqual(
      { to: udp.to, port: udp.port, proto: udp.proto },
      { to: 'svc/api', port: 9000, proto: 'udp' },
    );
    // every offered Service destination resolves as walk resolves it
    for (const d of ds.filter(
      (x) =>
        x.group !== 'pods' &&
        x.group !== 'nodes' &&
        x.group !== 'external hosts' &&
        !x.label.includes('headless'),
    )) {
      const t = serviceTarget(c, { from: 'client', to: d.to, port: d.port!, proto: d.proto!, df: false });
      assert.ok(t, d.key);
      assert.equal(t.port, d.port, d.key);
    }
  });

  test('the same name in two namespaces is offered as svc/NAMESPACE/NAME', () => {
    const yaml = readFileSync(SERVICES, 'utf8').replace(
      /^services:\n/m,
      'services:\n  - { apiVersion: v1, kind: Service, metadata: { name: web, namespace: prod }, spec: { ports: [{ port: 81 }] } }\n',
    );
    const two = destinations(prepareCluster(loadCluster(yaml, 'x'), 'flannel-vxlan', []));
    const keys = two.filter((d) => d.group === 'Services').map((d) => d.key);
    assert.ok(
      keys.includes('svc/prod/web:81/tcp') && keys.includes('svc/default/web:80/tcp'),
      keys.join(' '),
    );
  });

  test("the flow's choice: by to, port and protocol; a node by name", () => {
    const f: FlowForm = { from: 'client', to: '192.168.1.11', port: 30080, proto: 'tcp', df: false };
    assert.equal(destinationOf(ds, f)?.key, '192.168.1.11:30080/tcp');
    assert.equal(destinationOf(ds, { ...f, to: 'node2' })?.key, 'node2');
    assert.equal(destinationOf(ds, { ...f, to: '10.100.0.2' }), undefined);
  });

  test('the endpoint DNAT took, from the typed steps: none before the DNAT, the pinned one after, and in the reply', () => {
    const f: FlowForm = {
      from: 'client',
      to: '192.168.1.11',
      port: 30080,
      proto: 'tcp',
      df: false,
      endpoint: 'web-3',
    };
    const t = serviceTarget(c, f)!;
    const w = walk(c, { ...f }, { exchange: true });
    const dnat = w.request.steps.findIndex((s) => s.ev.type === 'nat-setup' && s.ev.manip === 'dst');
    assert.ok(dnat > 0);
    assert.equal(natEndpoint(t, w.request.steps, dnat - 1), undefined);
    assert.equal(natEndpoint(t, w.request.steps, dnat), '10.244.2.2');
    assert.equal(natEndpoint(t, w.reply!.steps, w.reply!.steps.length - 1), '10.244.2.2');
    assert.equal(natEndpoint(t, w.reply!.steps, 0), undefined);
  });

  test('the URL carries the endpoint', () => {
    const state = {
      cluster: 'seed',
      mode: 'flannel-vxlan' as const,
      flow: { from: 'pod-a', to: 'svc/web', port: 80, proto: 'tcp' as const, df: false, endpoint: 'pod-c' },
      run: [],
      trace: 0,
      step: 3,
    };
    const back = decodeState(`#${encodeState(state)}`);
    assert.deepEqual(back.flow, state.flow);
    assert.equal(
      decodeState(`#${encodeState({ ...state, flow: { ...state.flow, endpoint: undefined } })}`).flow
        ?.endpoint,
      undefined,
    );
  });
});
