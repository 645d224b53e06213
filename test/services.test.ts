/**
 * Services (issue 13): the cluster file's v1 Services, ClusterIP and node-port allocation,
 * EndpointSlices from selectors and readiness, and kube-proxy's iptables programming (chain names
 * with its hash, rule shapes of pkg/proxy/iptables/proxier.go and its TestOverallIPTablesRules).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ClusterError, loadCluster } from '../src/cluster/load.ts';
import { buildCluster } from '../src/cni/build.ts';
import { portProtoHash, resolveServices } from '../src/proxy/services.ts';
import { kubeProxySync, probability } from '../src/proxy/kube-proxy.ts';
import { iptablesSave } from '../src/tools/iptables-save.ts';
import { formatRuleSpec } from '../src/kernel/netfilter.ts';
import { base32, sha224, sha256, utf8 } from '../src/wire/sha256.ts';
import { resolveService, walk, walkOk, WalkError, type Walk } from '../src/trace/walk.ts';
import { run } from '../src/cli/app.ts';
import { explainDrop } from '../src/diagnose/explain.ts';
import { generateScenario } from '../src/lab/scenarios.ts';
import { runCommand } from '../src/tools/index.ts';

const EXAMPLE = 'examples/services.yaml';
const example = () => loadCluster(readFileSync(EXAMPLE, 'utf8'), EXAMPLE);

test('sha256, sha224 and base32 are those of node:crypto and RFC 4648', () => {
  const texts = [
    '',
    'abc',
    'ns1/svc1:p80tcp',
    'x'.repeat(55),
    'y'.repeat(56),
    'z'.repeat(200),
    'é→😀',
    'a\u00e9',
  ];
  // every length around the 64-byte blocks and their padding, bytes of every value
  for (let n = 0; n <= 200; n++)
    texts.push(Array.from({ length: n }, (_, i) => String.fromCharCode((i * 37 + n) % 128)).join(''));
  for (const s of texts) {
    assert.deepEqual(Buffer.from(utf8(s)), Buffer.from(s, 'utf8'), s);
    assert.deepEqual(Buffer.from(sha256(utf8(s))), createHash('sha256').update(s, 'utf8').digest(), s);
    assert.deepEqual(Buffer.from(sha224(utf8(s))), createHash('sha224').update(s, 'utf8').digest(), s);
  }
  const bytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 151 + 7) & 0xff);
  for (let n = 0; n <= 300; n += 13)
    assert.deepEqual(
      Buffer.from(sha224(bytes.subarray(0, n))),
      createHash('sha224').update(bytes.subarray(0, n)).digest(),
    );
  // RFC 4648 §10
  const vec: [string, string][] = [
    ['f', 'MY======'],
    ['fo', 'MZXQ===='],
    ['foo', 'MZXW6==='],
    ['foob', 'MZXW6YQ='],
    ['fooba', 'MZXW6YTB'],
    ['foobar', 'MZXW6YTBOI======'],
  ];
  for (const [i, o] of vec) assert.equal(base32(utf8(i)), o);
});

test("chain names are kube-proxy's (proxier_test.go TestOverallIPTablesRules)", () => {
  assert.equal(portProtoHash('ns1/svc1:p80', 'tcp'), 'XPGD46QRK7WJZT7O');
  assert.equal(portProtoHash('ns1/svc1:p80', 'tcp', '10.180.0.1:80'), 'SXIVWICOYRO3J4NJ');
  assert.equal(portProtoHash('ns2/svc2:p80', 'tcp'), 'GNZBNJ2PO5MGZ6GT');
  assert.equal(portProtoHash('ns5/svc5:p80', 'tcp', '10.180.0.3:80'), 'I77PXRDZVX7PMWMN');
  assert.equal(probability(3), '0.3333333333');
  assert.equal(probability(2), '0.5000000000');
});

test('the ClusterIP service of TestOverallIPTablesRules: the same rules, in proxier.go argument order', () => {
  const spec = loadCluster(
    [
      'nodes: [{name: n1, ip: 10.0.1.1/24, podCIDR: 10.0.0.0/24}]',
      'pods: [{name: p1, node: n1, ip: 10.0.0.1, namespace: ns1, labels: {app: a}, listen: [tcp/80]}]',
      'serviceCIDR: 172.30.0.0/16',
      'services:',
      '  - {apiVersion: v1, kind: Service, metadata: {name: svc1, namespace: ns1},',
      '     spec: {clusterIP: 172.30.0.41, selector: {app: a}, ports: [{name: p80, port: 80}]}}',
    ].join('\n'),
    'x.yaml',
  );
  const svcs = resolveServices(spec.services!, [
    {
      ...spec.pods[0],
      ip: '10.180.0.1',
      mac: '',
      hostVeth: '',
      hostVethMac: '',
      namespace: 'ns1',
      labels: { app: 'a' },
      ready: true,
    } as never,
  ]);
  const sync = kubeProxySync({ node: 'n1', clusterCidr: '10.0.0.0/8' }, svcs);
  const nat = sync.restore.find((t) => t.table === 'nat')!;
  const lines = nat.rules.map(
    (r) => `-A ${r.chain} ${r.args.map((a) => (a.includes(' ') ? `"${a}"` : a)).join(' ')}`,
  );
  // proxier_test.go's expected nat rules for ns1/svc1 (its fake has no --random-fully)
  for (const want of [
    '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O',
    '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
    '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ',
    '-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ',
    '-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80',
    '-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000',
    '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
    '-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000',
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
  ])
    assert.ok(lines.includes(want), `missing: ${want}\n${lines.join('\n')}`);
  assert.equal(
    lines.at(-1),
    lines.find((l) => l.includes('NOTE: this must be the last rule')),
  );
});

test('EndpointSlices: selector, readiness, named and numeric targetPorts, several ports', () => {
  const spec = example();
  const c = buildCluster(spec);
  const web = c.services.find((s) => s.name === 'web')!;
  assert.equal(web.clusterIP, '10.96.0.2', 'the lowest free address after the kubernetes Service’s .1');
  const http = web.ports.find((p) => p.portName === 'http')!;
  // pod-d matches app=web but is not ready: no endpoint; pod-b and pod-c resolve "http" to 8080
  assert.deepEqual(
    http.endpoints.map((e) => [e.pod, e.text]),
    [
      ['pod-b', '10.244.0.6:8080'],
      ['pod-c', '10.244.1.5:8080'],
    ],
  );
  assert.ok(web.slices.some((s) => s.endpoints.some((e) => e.pod === 'default/pod-d' && !e.ready)));
  const udp = web.ports.find((p) => p.portName === 'udp')!;
  assert.equal(udp.protocol, 'udp');
  assert.deepEqual(
    udp.endpoints.map((e) => e.text),
    ['10.244.0.6:8080', '10.244.1.5:8080'],
  );
  const np = c.services.find((s) => s.name === 'web-np')!;
  assert.equal(np.ports[0].nodePort, 30080);
  assert.equal(np.clusterIP, '10.96.0.3');
  const dns = c.services.find((s) => s.name === 'dns')!;
  assert.equal(dns.clusterIP, '10.96.0.10');
  assert.deepEqual(dns.ports[0].endpoints, []);
});

test('node ports are allocated from 30000 when not given; pods lacking a named port are left out of that port', () => {
  const spec = loadCluster(
    [
      'nodes: [{name: n1, ip: 10.0.1.1/24, podCIDR: 10.1.0.0/24}]',
      'pods:',
      '  - {name: a, node: n1, labels: {app: x}, listen: [tcp/8080/web]}',
      '  - {name: b, node: n1, labels: {app: x}, listen: [tcp/9090]}',
      'services:',
      '  - {apiVersion: v1, kind: Service, metadata: {name: s}, spec: {type: NodePort, selector: {app: x},',
      '     ports: [{port: 80, targetPort: web}]}}',
    ].join('\n'),
    'x.yaml',
  );
  const c = buildCluster(spec);
  const p = c.services[0].ports[0];
  assert.equal(p.nodePort, 30000);
  assert.deepEqual(
    p.endpoints.map((e) => e.pod),
    ['a'],
  );
  assert.equal(c.services[0].slices.length, 2, 'two port resolutions, two slices');
});

test('a service without endpoints: filter KUBE-SERVICES REJECT, no nat chains', () => {
  const c = buildCluster(example());
  const save = iptablesSave(c.world.ns('node2').netfilter);
  assert.match(
    save,
    /^-A KUBE-SERVICES -d 10\.96\.0\.10\/32 -p udp -m comment --comment "default\/dns:dns has no endpoints" -m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable$/m,
  );
  assert.doesNotMatch(save, /default\/dns:dns cluster IP/);
});

test('a cluster without services: keeps the nodes as they were (no kube-proxy chains)', () => {
  const spec = example();
  const without = buildCluster({ ...spec, services: undefined });
  const save = iptablesSave(without.world.ns('node1').netfilter);
  assert.doesNotMatch(
    save,
    /KUBE-SERVICES|KUBE-PROXY-CANARY|KUBE-POSTROUTING|\n-A POSTROUTING (?!-m comment --comment "flanneld masq" -j FLANNEL-POSTRTG\n)/,
  );
  // the nat table is flanneld's alone (--ip-masq); without it there is none
  assert.match(save, /\n:FLANNEL-POSTRTG - \[0:0\]\n/);
  const bare = buildCluster({ ...spec, services: undefined, flannel: { ipMasq: false } });
  assert.doesNotMatch(
    iptablesSave(bare.world.ns('node1').netfilter),
    /KUBE-SERVICES|KUBE-PROXY-CANARY|\*nat/,
  );
});

const bad = (lines: string[]) => {
  try {
    loadCluster(
      ['nodes: [{name: n1, ip: 10.0.1.1/24, podCIDR: 10.1.0.0/24}]', 'services:', ...lines].join('\n'),
      'bad.yaml',
    );
  } catch (e) {
    assert.ok(e instanceof ClusterError, String(e));
    return e.message;
  }
  assert.fail('expected an error');
};

test('bad Services are refused at file:line:col', () => {
  const svc = (spec: string, md = '{name: s}') => [
    '  - apiVersion: v1',
    '    kind: Service',
    `    metadata: ${md}`,
    `    spec: ${spec}`,
  ];
  assert.equal(
    bad(svc('{ports: [{port: 80}, {port: 81}]}')),
    'bad.yaml:6:20: a Service with more than one port needs a name for each port',
  );
  assert.equal(
    bad(svc('{ports: [{port: 80, nodePort: 30001}]}')),
    'bad.yaml:6:41: nodePort may only be set when type is NodePort or LoadBalancer',
  );
  assert.equal(
    bad(svc('{type: NodePort, ports: [{port: 80, nodePort: 2000}]}')),
    'bad.yaml:6:57: nodePort must be an integer in 30000..32767, got 2000',
  );
  assert.equal(
    bad(svc('{clusterIP: 10.0.0.1, ports: [{port: 80}]}')),
    'bad.yaml:6:23: clusterIP 10.0.0.1 is not inside the service range 10.96.0.0/12 (serviceCIDR)',
  );
  assert.match(
    bad(svc('{ports: [{port: 80, protocol: SCTP}]}')),
    /^bad\.yaml:6:\d+: protocol SCTP is not modelled/,
  );
  assert.match(bad(svc('{ports: []}')), /^bad\.yaml:6:\d+: ports must list at least one port$/);
  assert.match(
    bad([...svc('{ports: [{port: 80}]}'), ...svc('{ports: [{port: 81}]}')]),
    /^bad\.yaml:9:22: service default\/s is already defined at line 3$/,
  );
  assert.match(
    bad(svc('{ports: [{port: 80, targetPort: "Bad_Name"}]}')),
    /^bad\.yaml:6:\d+: port "Bad_Name" is not a valid port name/,
  );
  assert.equal(
    bad(svc('{sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}, ports: [{port: 80}]}')),
    'bad.yaml:6:35: sessionAffinityConfig may only be set when sessionAffinity is ClientIP',
  );
  assert.equal(
    bad(
      svc(
        '{sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}, ports: [{port: 80}]}',
      ),
    ),
    'bad.yaml:6:90: timeoutSeconds must be an integer in 1..86400, got 0',
  );
  assert.equal(
    bad(svc('{type: NodePort, clusterIP: None, ports: [{port: 80}]}')),
    'bad.yaml:6:39: clusterIP None (headless) needs type ClusterIP, not NodePort',
  );
  assert.equal(
    bad(svc('{type: NodePort, healthCheckNodePort: 32000, ports: [{port: 80}]}')),
    'bad.yaml:6:49: healthCheckNodePort may only be set when type is LoadBalancer and externalTrafficPolicy is Local',
  );
  assert.equal(
    bad([
      ...svc('{type: NodePort, ports: [{port: 80, nodePort: 32000}]}'),
      ...svc(
        '{type: LoadBalancer, externalTrafficPolicy: Local, healthCheckNodePort: 32000, ports: [{port: 80}]}',
        '{name: t}',
      ),
    ]),
    'bad.yaml:10:83: healthCheckNodePort 32000 is already allocated to the service at line 3',
  );
});

/* ------------------------------------------------------------ walking through a Service */

const delivered = (w: Walk) =>
  w.request.disposition.kind === 'delivered' ? w.request.disposition.netns : 'dropped';

test('trace to svc/NAME:PORT: DNAT in the source node to the pinned endpoint, the reply un-NATed to the ClusterIP', () => {
  for (const [endpoint, mode] of [
    ['pod-b', 'flannel-vxlan'],
    ['pod-c', 'flannel-vxlan'],
    ['pod-b', 'calico-ipip'],
    ['pod-c', 'calico-bgp'],
  ] as const) {
    const c = buildCluster(example(), mode);
    const w = walk(c, { from: 'pod-a', to: 'svc/web', port: 80, proto: 'tcp', endpoint });
    assert.equal(delivered(w), endpoint, `${mode} ${endpoint}`);
    assert.ok(walkOk(w), `${mode} ${endpoint}: answered`);
    // the DNAT: nat PREROUTING of node1 through KUBE-SERVICES, the service's KUBE-SVC- and the endpoint's KUBE-SEP-
    const http = c.services[0].ports[0];
    const ep = http.endpoints.find((e) => e.pod === endpoint)!;
    const steps = (t: Walk['request']) => t.hops.flatMap((h) => h.steps);
    const dnat = steps(w.request).flatMap((s) =>
      s.ev.type === 'netfilter' && s.ev.decision.nat === 'DNAT' ? [s.ev.decision] : [],
    )[0];
    // in Calico's layout felix's jump comes first (inserted at the top): cali-PREROUTING → cali-fip-dnat (empty)
    const felix = mode.startsWith('calico') ? ['PREROUTING', 'cali-PREROUTING'] : [];
    assert.deepEqual(
      dnat.path.map((h) => h.chain),
      [...felix, 'PREROUTING', 'KUBE-SERVICES', http.chains.svc, ep.chain],
    );
    assert.equal(dnat.rule!.chain, ep.chain);
    // the endpoint is one of two: the statistic rule (1/2) or the last rule after it failed (1/2)
    assert.deepEqual(dnat.choice, {
      chain: http.chains.svc,
      index: dnat.path[felix.length + 2].index,
      probability: 0.5,
    });
    assert.deepEqual(dnat.rule!.rule.origin, {
      kind: 'service',
      namespace: 'default',
      name: 'web',
      port: 'http',
      endpoint: ep.text,
    });
    // the SYN-ACK reaches pod-a from the ClusterIP: conntrack undid the DNAT in node1
    assert.equal(w.reply!.disposition.kind, 'delivered');
    const undo = steps(w.reply!).flatMap((s) =>
      s.ev.type === 'nat-rewrite' ? [{ ns: s.netns, ...s.ev }] : [],
    );
    assert.deepEqual(
      undo.map((u) => [u.ns, u.manip, u.before.src, u.before.sport, u.after.src, u.after.sport]),
      [['node1', 'src', ep.ip, ep.port, '10.96.0.2', 80]],
    );
    assert.equal(c.stack.pins.size, 0, 'the pins go with the walk');
  }
});

test("without --endpoint the choice is the flow's own: deterministic, and each endpoint is taken by some flows", () => {
  const picks = (sports: number[]) => {
    const c = buildCluster(example());
    return sports.map((sport) =>
      delivered(walk(c, { from: 'pod-a', to: 'svc/web', port: 80, proto: 'tcp', sport })),
    );
  };
  const sports = Array.from({ length: 24 }, (_, i) => 41000 + i);
  const a = picks(sports);
  assert.deepEqual(a, picks(sports));
  assert.ok(a.includes('pod-b') && a.includes('pod-c'), a.join(' '));
});

test('three endpoints: the probabilities 1/3, 1/2, 1 give each endpoint about a third of the flows', () => {
  const spec = loadCluster(readFileSync('test/fixtures/services-external.yaml', 'utf8'), 'x.yaml');
  const c = buildCluster(spec);
  const n = 300;
  const count = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const w = walk(c, { from: 'pod-a', to: 'svc/web', port: 80, proto: 'tcp', sport: 20000 + i });
    count.set(delivered(w), (count.get(delivered(w)) ?? 0) + 1);
  }
  // each branch's probability as the walk reports it: 1/3 × …, exactly as the rules' thresholds give
  for (const [i, pod] of ['web-1', 'web-2', 'web-3'].entries()) {
    // a new flow each (the same flow again would find its conntrack entry and skip the nat table)
    const w = walk(c, {
      from: 'pod-a',
      to: 'svc/web',
      port: 80,
      proto: 'tcp',
      endpoint: pod,
      sport: 31000 + i,
    });
    const d = w.request.hops
      .flatMap((h) => h.steps)
      .flatMap((s) => (s.ev.type === 'netfilter' && s.ev.decision.nat === 'DNAT' ? [s.ev.decision] : []))[0];
    assert.ok(Math.abs(d.choice!.probability - 1 / 3) < 1e-9, `${pod}: ${d.choice!.probability}`);
  }
  for (const pod of ['web-1', 'web-2', 'web-3']) {
    const k = count.get(pod) ?? 0;
    assert.ok(k > n / 3 - 40 && k < n / 3 + 40, `${pod}: ${k} of ${n} (${[...count].join(' ')})`);
  }
});

test('NODE:NODEPORT and a ClusterIP are Services too; a load-balancer IP resolves to its Service', () => {
  const c = buildCluster(example());
  const np = walk(c, { from: 'pod-a', to: 'node2', port: 30080, proto: 'tcp', endpoint: 'pod-c' });
  assert.equal(delivered(np), 'pod-c');
  assert.ok(walkOk(np));
  const ip = walk(c, { from: 'pod-a', to: '10.96.0.2', port: 80, proto: 'tcp', endpoint: 'pod-b' });
  assert.equal(delivered(ip), 'pod-b');
  const ext = buildCluster(
    loadCluster(readFileSync('test/fixtures/services-external.yaml', 'utf8'), 'x.yaml'),
  );
  assert.equal(resolveService(ext, '203.0.113.10', 9000, 'udp')?.servicePort.nameString, 'prod/api:udp');
});

test('a Service without endpoints: REJECT in filter, the pod gets port unreachable', () => {
  const c = buildCluster(example());
  const w = walk(c, { from: 'pod-a', to: 'svc/dns', proto: 'udp' });
  assert.equal(w.request.disposition.kind, 'dropped');
  assert.equal(w.reply?.flow.role.kind, 'icmp-error');
  assert.deepEqual(explainDrop(c, w.request)?.causes, [
    'Service default/dns:dns has no ready endpoint: default/pod-d is not ready; kube-proxy rejects (icmp port unreachable)',
  ]);
});

test('external traffic with externalTrafficPolicy Local on a node without an endpoint: dropped, and said why', () => {
  const c = buildCluster(loadCluster(readFileSync('test/fixtures/services-external.yaml', 'utf8'), 'x.yaml'));
  // node1 has no endpoint of prod/api: kube-proxy's KUBE-EXTERNAL-SERVICES drops the node port there
  const w = walk(c, { from: 'node2', to: 'node1', port: 31000, proto: 'tcp' });
  assert.equal(w.request.disposition.kind, 'dropped');
  assert.deepEqual(explainDrop(c, w.request)?.causes, [
    'Service prod/api:tcp has externalTrafficPolicy Local and no ready endpoint on node1 (its endpoints: api-1 on node2): kube-proxy drops external traffic there',
  ]);
});

test('bad Service targets: unknown service lists the services; --endpoint must be a ready endpoint', () => {
  const c = buildCluster(example());
  assert.throws(
    () => walk(c, { from: 'pod-a', to: 'svc/nope', port: 80, proto: 'tcp' }),
    (e: Error) =>
      e instanceof WalkError &&
      e.message ===
        'unknown service "nope"; the cluster\'s services: default/web, default/web-np, default/dns',
  );
  assert.throws(
    () => walk(c, { from: 'pod-a', to: 'svc/web', port: 80, proto: 'tcp', endpoint: 'pod-d' }),
    /pod-d is no ready endpoint of default\/web:http; its endpoints: pod-b, pod-c/,
  );
  assert.throws(
    () => walk(c, { from: 'pod-a', to: 'svc/web', port: 81, proto: 'tcp' }),
    (e: Error) =>
      e.message === 'service default/web has no tcp port 81; its ports: 80/tcp (http), 8080/udp (udp)',
  );
  assert.throws(
    () => walk(c, { from: 'pod-a', to: 'pod-b', port: 8080, proto: 'tcp', endpoint: 'pod-b' }),
    /--endpoint needs a Service/,
  );
});

test('podwalk trace: an unknown service is exit 2 with the list', async () => {
  const io = { out: [] as string[], err: [] as string[] };
  const code = await run(['trace', 'pod-a', 'svc/nope:80', '--cluster', EXAMPLE], {
    out: (s) => io.out.push(s),
    err: (s) => io.err.push(s),
    readFile: (p) => readFileSync(p, 'utf8'),
    openDir: () => () => {},
    env: {},
    isTTY: false,
  });
  assert.equal(code, 2);
  assert.deepEqual(io.err, [
    'podwalk: unknown service "nope"; the cluster\'s services: default/web, default/web-np, default/dns',
  ]);
});

test('hairpin: a pod reaching itself through its Service is dropped by br_forward until its port is in hairpin mode, then masqueraded to cni0', () => {
  // lab Service seed 2018 (flannel-vxlan): p1b → svc/web:80, endpoint p1b; the kernel agreed on every packet
  const s = generateScenario(2018);
  const c = buildCluster(s.spec, s.mode);
  const veth = c.pods.find((p) => p.name === 'p1b')!.hostVeth;
  const off = walk(c, s.flow);
  const d = off.request.disposition;
  assert.ok(d.kind === 'dropped' && d.drop.reason === 'not-for-host' && d.drop.site === 'br_forward');
  assert.equal(d.kind === 'dropped' && d.drop.reason === 'not-for-host' ? d.drop.port : '', veth);
  const x = explainDrop(c, off.request)!;
  assert.match(x.stage, /hairpin mode is off/);
  assert.ok(
    x.evidence.some(
      (e) => e.command === `bridge -d link show dev ${veth}` && /hairpin off/.test(e.output ?? ''),
    ),
  );
  assert.ok(x.causes.some((cause) => cause.includes(`bridge link set dev ${veth} hairpin on`)));

  const on = buildCluster(s.spec, s.mode);
  assert.equal(runCommand(on, 'n1', `bridge link set dev ${veth} hairpin on`).code, 0);
  assert.match(runCommand(on, 'n1', `bridge -d link show dev ${veth}`).stdout, /hairpin on/);
  const w = walk(on, s.flow, { exchange: true });
  assert.ok(walkOk(w));
  const cni0 = on.world.ns('n1').link('cni0')!.addrs[0].ip;
  // the SYN reaches p1b from cni0's address (KUBE-MARK-MASQ in KUBE-SEP-, MASQUERADE), the reply from the ClusterIP
  const [syn, synAck] = on.world.captures.filter(
    (f) => f.netns === 'p1b' && f.dir === 'in' && f.frame.length > 60,
  );
  const srcOf = (f: { frame: Uint8Array }) => [...f.frame.slice(26, 30)].join('.');
  assert.equal(srcOf(syn), cni0);
  assert.equal(srcOf(synAck), resolveService(on, 'svc/web', 80, 'tcp')!.ip);
});

test("bridge link set: hairpin on and off, and the real tool's errors", () => {
  const c = buildCluster(
    loadCluster(readFileSync('examples/services.yaml', 'utf8'), 'services.yaml'),
    'flannel-vxlan',
  );
  const r = (cmd: string) => runCommand(c, 'node1', cmd);
  // what iproute2's bridge printed for each in a namespace here (exit 234 is -EINVAL's low byte)
  const refused: [string, string, number][] = [
    [
      'dev veth-pod-a hairpin maybe',
      'Error: argument of "hairpin" must be one of "off", "on", not "maybe"',
      234,
    ],
    ['hairpin on', 'Device is a required argument.', 255],
    ['dev nope hairpin on', 'Cannot find bridge device "nope"', 255],
    ['dev eth0 hairpin on', 'RTNETLINK answers: Operation not supported', 255],
  ];
  for (const [args, stderr, code] of refused)
    assert.deepEqual(r(`bridge link set ${args}`), { stdout: '', stderr: stderr + '\n', code });
  assert.equal(r('bridge link set dev veth-pod-a hairpin on').code, 0);
  assert.match(r('ip -d link show dev veth-pod-a').stdout, /hairpin on/);
  assert.equal(r('bridge link set dev veth-pod-a hairpin off').code, 0);
  assert.match(r('bridge -d link show dev veth-pod-a').stdout, /hairpin off/);
});

/* ------------------------------------------------------------ from outside the cluster */

const external = () =>
  buildCluster(loadCluster(readFileSync('test/fixtures/services-external.yaml', 'utf8'), 'x.yaml'));
const natSteps = (t: Walk['request']) =>
  t.hops
    .flatMap((h) => h.steps)
    .flatMap((s) =>
      s.ev.type === 'netfilter' && s.ev.decision.nat ? [{ ns: s.netns, d: s.ev.decision }] : [],
    );

test('NodePort from an external host: KUBE-NODEPORTS → KUBE-EXT- (masquerade) → KUBE-SVC- → KUBE-SEP-, SNAT to the node, the reply back to the client', () => {
  const c = external();
  const web = c.services.find((s) => s.name === 'web')!.ports[0];
  // masqueraded to the address of the device the packet leaves node2 by: cni0 for its own pod,
  // eth0 toward node3's (calico-bgp routes pod networks over the underlay)
  for (const [endpoint, masq, sport] of [
    ['web-2', '10.244.1.1', 40001],
    ['web-3', '192.168.1.11', 40002],
  ] as const) {
    const w = walk(c, { from: 'client', to: '192.168.1.11', port: 30080, proto: 'tcp', endpoint, sport });
    assert.equal(delivered(w), endpoint);
    assert.ok(walkOk(w), `${endpoint}: answered`);
    const [dnat, snat] = natSteps(w.request);
    const ep = web.endpoints.find((e) => e.pod === endpoint)!;
    assert.equal(dnat.ns, 'node2');
    assert.deepEqual(
      dnat.d.path.map((h) => h.chain),
      [
        'PREROUTING',
        'KUBE-SERVICES',
        'KUBE-NODEPORTS',
        web.chains.ext,
        'KUBE-MARK-MASQ',
        web.chains.ext,
        web.chains.svc,
        ep.chain,
      ],
    );
    assert.deepEqual([snat.ns, snat.d.nat], ['node2', 'MASQUERADE']);
    // the endpoint answers the node, never the client; node2 turns it back into the node port's answer
    assert.deepEqual([w.reply!.flow.src, w.reply!.flow.dst], [ep.ip, masq]);
    const back = w
      .reply!.hops.flatMap((h) => h.steps)
      .flatMap((s) =>
        s.ev.type === 'nat-rewrite'
          ? [[s.netns, s.ev.manip, s.ev.after.src, s.ev.after.sport, s.ev.after.dst, s.ev.after.dport]]
          : [],
      );
    assert.deepEqual(back, [
      ['node2', 'dst', ep.ip, ep.port, '192.168.1.100', sport],
      ['node2', 'src', '192.168.1.11', 30080, '192.168.1.100', sport],
    ]);
    assert.equal(w.reply!.disposition.kind === 'delivered' && w.reply!.disposition.netns, 'client');
  }
});

test('externalTrafficPolicy Local from an external host: KUBE-EXT- → KUBE-SVL-, no masquerade (the pod sees the client); dropped on a node without a local endpoint', () => {
  const c = external();
  const api = c.services.find((s) => s.name === 'api')!.ports.find((p) => p.protocol === 'tcp')!;
  const w = walk(c, {
    from: 'client',
    to: '192.168.1.11',
    port: 31000,
    proto: 'tcp',
    endpoint: 'api-1',
    sport: 40003,
  });
  assert.equal(delivered(w), 'api-1');
  assert.ok(walkOk(w));
  const nat = natSteps(w.request);
  assert.deepEqual(
    nat.map((n) => [n.ns, n.d.nat]),
    [['node2', 'DNAT']],
    'no MASQUERADE: the source is kept',
  );
  const ep = api.endpoints[0];
  assert.deepEqual(
    nat[0].d.path.map((h) => h.chain),
    ['PREROUTING', 'KUBE-SERVICES', 'KUBE-NODEPORTS', api.chains.ext, api.chains.svl, ep.chain],
  );
  assert.deepEqual([w.reply!.flow.src, w.reply!.flow.dst], [ep.ip, '192.168.1.100']);
  // node1 has no endpoint of prod/api: filter INPUT's KUBE-EXTERNAL-SERVICES drops it
  const d = walk(c, { from: 'client', to: '192.168.1.10', port: 31000, proto: 'tcp', sport: 40004 });
  assert.equal(d.request.disposition.kind, 'dropped');
  assert.equal(d.request.disposition.kind === 'dropped' && d.request.disposition.netns, 'node1');
  assert.deepEqual(explainDrop(c, d.request)?.causes, [
    'Service prod/api:tcp has externalTrafficPolicy Local and no ready endpoint on node1 (its endpoints: api-1 on node2): kube-proxy drops external traffic there',
  ]);
  assert.equal(
    runCommand(c, 'node1', 'conntrack -L').stdout,
    '',
    'the dropped SYN leaves no confirmed entry',
  );
});

test('LoadBalancer: the client routes the ingress IP to a node; KUBE-SERVICES "loadbalancer IP" → KUBE-EXT- → the endpoint, and the answer comes from the ingress IP', () => {
  const c = external();
  const api = c.services.find((s) => s.name === 'api')!.ports.find((p) => p.protocol === 'udp')!;
  const w = walk(c, {
    from: 'client',
    to: '203.0.113.10',
    port: 9000,
    proto: 'udp',
    endpoint: 'api-1',
    sport: 40005,
  });
  assert.equal(delivered(w), 'api-1');
  const nat = natSteps(w.request);
  assert.deepEqual(
    nat[0].d.path.map((h) => h.chain),
    ['PREROUTING', 'KUBE-SERVICES', api.chains.ext, api.chains.svl, api.endpoints[0].chain],
  );
  const rule = c.world.ns('node2').netfilter.chain('nat', 'KUBE-SERVICES')!.rules[nat[0].d.path[1].index - 1];
  assert.equal(
    formatRuleSpec(rule),
    '-d 203.0.113.10/32 -p udp -m comment --comment "prod/api:udp loadbalancer IP" -m udp --dport 9000 -j ' +
      api.chains.ext,
  );
  // the listener echoes: the answer leaves node2 from the ingress IP, to the client's own address
  assert.deepEqual([w.reply!.flow.src, w.reply!.flow.dst], [api.endpoints[0].ip, '192.168.1.100']);
  const undo = w
    .reply!.hops.flatMap((h) => h.steps)
    .flatMap((s) => (s.ev.type === 'nat-rewrite' ? [[s.netns, s.ev.after.src, s.ev.after.sport]] : []));
  assert.deepEqual(undo, [['node2', '203.0.113.10', 9000]]);
  assert.equal(w.reply!.disposition.kind === 'delivered' && w.reply!.disposition.netns, 'client');
});

test('the lab scenarios from the external host (seeds 2021-2032) walk in the model as the kernel ran them: delivered, or dropped at n1 for Local without an endpoint there', () => {
  for (let seed = 2021; seed <= 2032; seed++) {
    const s = generateScenario(seed);
    const c = buildCluster(s.spec, s.mode);
    assert.equal(s.flow.from, 'client');
    const w = walk(c, s.flow);
    if (s.faultKind === 'svc-ext-local-none') {
      assert.equal(w.request.disposition.kind === 'dropped' && w.request.disposition.netns, 'n1', s.title);
    } else {
      assert.equal(delivered(w), s.flow.endpoint, s.title);
      assert.ok(walkOk(w), s.title);
    }
  }
});

test('healthCheckNodePort: allocated for a LoadBalancer with externalTrafficPolicy Local after its node ports; filter KUBE-NODEPORTS accepts it on every node', () => {
  const c = buildCluster(
    loadCluster(
      [
        'nodes: [{name: n1, ip: 10.0.1.1/24, podCIDR: 10.1.0.0/24}]',
        'services:',
        '  - {apiVersion: v1, kind: Service, metadata: {name: a}, spec: {type: LoadBalancer, externalTrafficPolicy: Local, ports: [{port: 80}]}}',
        '  - {apiVersion: v1, kind: Service, metadata: {name: b}, spec: {type: LoadBalancer, ports: [{port: 80}]}}',
      ].join('\n'),
      'x.yaml',
    ),
  );
  const [a, b] = c.services.map((s) => s.ports[0]);
  assert.deepEqual(
    [a.nodePort, a.healthCheckNodePort, b.nodePort, b.healthCheckNodePort],
    [30000, 30001, 30002, undefined],
  );
  assert.match(
    iptablesSave(c.world.ns('n1').netfilter),
    /-A KUBE-NODEPORTS -p tcp -m comment --comment "default\/a health check node port" -m tcp --dport 30001 -j ACCEPT\n/,
  );
});

test('sessionAffinity ClientIP: the SEP chain records the client (-m recent --set), and its next flows take the same endpoint (--rcheck before the random choice)', () => {
  const c = external();
  const sticky = c.services.find((s) => s.name === 'sticky')!.ports[0];
  const first = walk(c, { from: 'pod-a', to: 'svc/sticky', proto: 'tcp', endpoint: 'web-2', sport: 41000 });
  assert.equal(delivered(first), 'web-2');
  // the flows' own draws would spread them over the three endpoints (test above); the affinity keeps web-2
  const next = Array.from({ length: 6 }, (_, i) =>
    walk(c, { from: 'pod-a', to: 'svc/sticky', proto: 'tcp', sport: 41001 + i }),
  );
  assert.deepEqual(next.map(delivered), Array(6).fill('web-2'));
  const ep = sticky.endpoints.find((e) => e.pod === 'web-2')!;
  const dnat = natSteps(next[0].request)[0].d;
  assert.deepEqual(
    dnat.path.map((h) => h.chain),
    ['PREROUTING', 'KUBE-SERVICES', sticky.chains.svc, ep.chain],
  );
  const rule = c.world.ns('node1').netfilter.chain('nat', sticky.chains.svc)!.rules[dnat.path[2].index - 1];
  assert.equal(
    formatRuleSpec(rule),
    `-m comment --comment "default/sticky -> ${ep.text}" -m recent --rcheck --seconds 600 --reap --name ${ep.chain} --mask 255.255.255.255 --rsource -j ${ep.chain}`,
  );
  // without a recorded client the statistic rules choose: another client address is spread again
  const spread = new Set(
    Array.from({ length: 12 }, (_, i) =>
      delivered(walk(external(), { from: 'pod-a', to: 'svc/sticky', proto: 'tcp', sport: 42000 + i })),
    ),
  );
  assert.ok(spread.size > 1, [...spread].join(' '));
});

test('a headless Service (clusterIP None): EndpointSlices, but no kube-proxy rules, and trace says where its clients go', () => {
  const c = external();
  const h = c.services.find((s) => s.name === 'web-headless')!;
  assert.equal(h.clusterIP, 'None');
  assert.equal(h.slices[0].endpoints.length, 3);
  const hash = h.ports[0].chains.svc;
  assert.ok(!iptablesSave(c.world.ns('node1').netfilter).includes('web-headless'));
  assert.ok(!iptablesSave(c.world.ns('node1').netfilter).includes(hash));
  assert.throws(
    () => walk(c, { from: 'pod-a', to: 'svc/web-headless', proto: 'tcp' }),
    new WalkError(
      'service default/web-headless is headless (clusterIP None): kube-proxy programs nothing for it, and its clients reach the pods by their own addresses (what DNS answers for it): web-1 10.244.0.2, web-2 10.244.1.2, web-3 10.244.2.2',
    ),
  );
});

test('a Service without a selector and a hand-written EndpointSlice: its ready endpoints (a host outside the cluster, a pod) in KUBE-SVC-, walked with --endpoint by pod name or address', () => {
  const c = external();
  const manual = c.services.find((s) => s.name === 'manual')!;
  assert.deepEqual(
    manual.ports[0].endpoints.map((e) => [e.text, e.pod, e.nodeName]),
    [
      ['10.244.1.2:5432', 'web-2', 'node2'],
      ['192.168.1.100:5432', '192.168.1.100', ''],
    ],
    'the endpoint that is not ready is left out',
  );
  const db = walk(c, {
    from: 'pod-a',
    to: 'svc/manual',
    proto: 'tcp',
    endpoint: '192.168.1.100',
    sport: 43000,
  });
  assert.equal(delivered(db), 'client');
  // the pod reaches the host outside the cluster with its own address (kube-proxy masquerades only
  // what comes from outside the cluster CIDR); the client answers it through the router, which does
  // not know the pod networks in calico-bgp
  assert.deepEqual([db.reply!.flow.src, db.reply!.flow.dst], ['192.168.1.100', '10.244.0.5']);
  assert.equal(db.reply!.disposition.kind === 'dropped' && db.reply!.disposition.netns, 'router');
  // web-2 does not listen on 5432: the endpoint the slice names answers with a RST
  const pod = walk(c, { from: 'pod-a', to: 'svc/manual', proto: 'tcp', endpoint: 'web-2', sport: 43001 });
  assert.equal(pod.reply!.flow.role.kind, 'rst');
});

test('bad EndpointSlices are refused at file:line:col', () => {
  const slice = (md: string, rest: string[] = []) => [
    'endpointSlices:',
    '  - apiVersion: discovery.k8s.io/v1',
    '    kind: EndpointSlice',
    `    metadata: ${md}`,
    '    addressType: IPv4',
    ...rest,
  ];
  const svc = ['  - {apiVersion: v1, kind: Service, metadata: {name: db}, spec: {ports: [{port: 5432}]}}'];
  assert.equal(
    bad([...svc, ...slice('{name: db-1}')]),
    'bad.yaml:7:22: an EndpointSlice needs the label kubernetes.io/service-name: the Service it belongs to',
  );
  assert.equal(
    bad([...svc, ...slice('{name: db-1, labels: {kubernetes.io/service-name: dbx}}')]),
    'bad.yaml:7:65: no Service default/dbx in the cluster file; its services: default/db',
  );
  assert.equal(
    bad([
      ...svc,
      ...slice('{name: db-1, labels: {kubernetes.io/service-name: db}}', [
        '    endpoints: [{addresses: [10.1.0.9], nodeName: n9}]',
      ]),
    ]),
    'bad.yaml:9:51: unknown node "n9"',
  );
  assert.equal(
    bad([
      ...svc,
      ...slice('{name: db-1, labels: {kubernetes.io/service-name: db}}', [
        '    endpoints: [{addresses: []}]',
      ]),
    ]),
    'bad.yaml:9:29: addresses must list an address',
  );
  assert.match(
    bad([
      ...svc,
      ...slice('{name: db-1, labels: {kubernetes.io/service-name: db}}').map((l) =>
        l.replace('IPv4', 'IPv6'),
      ),
    ]),
    /^bad\.yaml:8:18: addressType must be one of IPv4; got string "IPv6"/,
  );
});

test("an endpoint two slices list is one endpoint (endpointSliceCache keys a port's endpoints by IP:PORT)", () => {
  const slice = (name: string, ips: string[]) => ({
    name,
    namespace: 'default',
    service: 'db',
    ports: [{ name: '', protocol: 'TCP' as const, port: 5432 }],
    endpoints: ips.map((ip) => ({ ip, ready: true })),
  });
  const [db] = resolveServices(
    [
      {
        name: 'db',
        namespace: 'default',
        type: 'ClusterIP',
        ports: [{ name: '', protocol: 'TCP', port: 5432, targetPort: 5432 }],
        externalTrafficPolicy: 'Cluster',
        loadBalancerIPs: [],
      },
    ],
    [],
    undefined,
    [slice('db-1', ['10.0.0.9', '10.0.0.7']), slice('db-2', ['10.0.0.7', '10.0.0.8'])],
  );
  assert.deepEqual(
    db.ports[0].endpoints.map((e) => e.text),
    ['10.0.0.7:5432', '10.0.0.8:5432', '10.0.0.9:5432'],
  );
});

test('the lab scenarios of hand-written EndpointSlices and sessionAffinity (seeds 2033-2038) walk in the model as the kernel ran them', () => {
  for (let seed = 2033; seed <= 2038; seed++) {
    const s = generateScenario(seed);
    const c = buildCluster(s.spec, s.mode);
    const w = walk(c, s.flow);
    if (s.faultKind === 'svc-manual-external') {
      // felix's cali-nat-outgoing, or flanneld's FLANNEL-POSTRTG (--ip-masq), masquerades the
      // pod's datagram to the node's address: answered
      assert.equal(delivered(w), 'client', s.title);
      assert.ok(walkOk(w), s.title);
      assert.equal(w.reply!.flow.dst, '192.168.1.10', s.title);
    } else {
      assert.equal(delivered(w), s.flow.endpoint, s.title);
      assert.ok(walkOk(w), s.title);
    }
    if (s.faultKind === 'svc-manual')
      assert.deepEqual(
        c.services[0].ports[0].endpoints.map((e) => e.pod),
        ['p1b', 'p2a'],
      );
  }
});
