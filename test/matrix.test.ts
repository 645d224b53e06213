/**
 * podwalk matrix: the grouped truth table must equal the one where every cell is walked on a
 * cluster built anew (walk + walkOk, exactly what `podwalk trace FROM TO:PORT` does), cell by
 * cell: on seeded random clusters (every CNI mode, one or two subnets, BGP sessions down, node
 * MTUs, namespaces, labels, named ports, NetworkPolicies with pod/namespace selectors, ipBlocks
 * with except, port ranges) and on every shipped scenario. Then the selector syntax, the
 * conditions that turn grouping off, and the table's layout.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { loadCluster } from '../src/cluster/load.ts';
import { seedCluster } from '../src/cluster/seed.ts';
import { parsePodSelector, SelectorError } from '../src/cluster/selector.ts';
import { CNI_MODES, type ClusterSpec, type CniMode } from '../src/cluster/spec.ts';
import {
  computeMatrix,
  matrixLines,
  matrixJson,
  podString,
  type Matrix,
  type MatrixRequest,
} from '../src/diagnose/matrix.ts';
import { seededRandom } from '../src/kernel/world.ts';
import { prepareCluster } from '../src/tools/index.ts';
import { walk, walkOk, type Walk } from '../src/trace/walk.ts';
import { worldToData } from '../src/kernel/snapshot.ts';

type Obj = Record<string, unknown>;

/** every cell walked on a cluster of its own: the reference */
function reference(spec: ClusterSpec, mode: CniMode, run: string[], m: Matrix): boolean[][] {
  return m.from.map((a) =>
    m.to.map((b) =>
      walkOk(
        walk(prepareCluster(spec, mode, run), { from: a.name, to: b.name, proto: m.proto, port: m.port }),
      ),
    ),
  );
}

/**
 * the verdict of every cell, read three ways (walkOf per cell, row() and okRow() per row): they
 * must agree; and the text table and the JSON document (made from rowShape(), a template per
 * source group with each row's own columns spliced in) must show these cells
 */
function verdicts(m: Matrix): boolean[][] {
  const ids = new Int32Array(m.to.length);
  const ok = new Uint8Array(m.to.length);
  const cells = m.from.map((_, i) => m.to.map((_, j) => m.walkOf(i, j)));
  const lines: string[] = [];
  const counts = matrixLines(m, (l) => lines.push(l));
  assert.deepEqual(lines, [
    ['-', ...m.to.map(podString)].join('\t'),
    ...cells.map((r, i) => [podString(m.from[i]), ...r.map((w) => (m.walks[w].ok ? '.' : 'X'))].join('\t')),
  ]);
  const blocked = cells.flat().filter((w) => !m.walks[w].ok).length;
  assert.deepEqual(counts, { cells: m.from.length * m.to.length, blocked });
  const json: string[] = [];
  matrixJson(m, (l) => json.push(l));
  const doc = JSON.parse(json.join('\n')) as {
    rows: string[];
    cells: number[][];
    walks: { cells: number }[];
  };
  assert.deepEqual(doc.cells, cells);
  assert.deepEqual(
    doc.rows,
    cells.map((r) => r.map((w) => (m.walks[w].ok ? '.' : 'X')).join('')),
  );
  assert.deepEqual(
    doc.walks.map((w) => w.cells),
    m.walks.map((_, k) => cells.flat().filter((w) => w === k).length),
  );
  return m.from.map((_, i) => {
    m.row(i, ids);
    assert.deepEqual([...ids], cells[i], `row ${i}`);
    m.okRow(i, ok);
    assert.deepEqual(
      [...ok],
      m.to.map((_, j) => (m.walks[m.walkOf(i, j)].ok ? 1 : 0)),
      `okRow ${i}`,
    );
    return m.to.map((_, j) => m.walks[m.walkOf(i, j)].ok);
  });
}

function assertSame(spec: ClusterSpec, mode: CniMode, run: string[], m: Matrix, what: string): void {
  const want = reference(spec, mode, run, m);
  const got = verdicts(m);
  for (let i = 0; i < m.from.length; i++)
    for (let j = 0; j < m.to.length; j++)
      if (got[i][j] !== want[i][j]) {
        const w = m.walks[m.walkOf(i, j)];
        assert.fail(
          `${what}: cell ${m.from[i].name} → ${m.to[j].name} (${m.proto}/${m.port}) is ${got[i][j] ? '.' : 'X'} ` +
            `(decided by the walk ${w.from} → ${w.to}), walked on its own it is ${want[i][j] ? '.' : 'X'}`,
        );
      }
}

/* ------------------------------------------------------------ random clusters */

const APPS = ['web', 'db', 'api', 'cache'];
const LISTEN = ['tcp/80/http', 'tcp/8080', 'udp/53/dns', 'tcp/8081/metrics', 'udp/5353'];
const PORTS: ['tcp' | 'udp', number][] = [
  ['tcp', 80],
  ['tcp', 8080],
  ['udp', 53],
  ['tcp', 8081],
  ['udp', 5353],
];

function randomCluster(seed: number): { spec: ClusterSpec; mode: CniMode } {
  const rnd = seededRandom(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const chance = (p: number) => rnd() < p;
  const mode = pick(CNI_MODES);
  const twoSubnets = chance(0.35);
  const subnets = [
    { name: 'lan0', cidr: '192.168.1.0/24', gateway: '192.168.1.1' },
    ...(twoSubnets ? [{ name: 'lan1', cidr: '192.168.2.0/24', gateway: '192.168.2.1' }] : []),
  ];
  const nodeCount = 2 + int(3);
  const nodes = Array.from({ length: nodeCount }, (_, i) => {
    const lan = twoSubnets && i % 2 === 1 ? 2 : 1;
    return {
      name: `n${i}`,
      ip: `192.168.${lan}.${10 + i}/24`,
      podCIDR: `10.244.${i}.0/24`,
      ...(chance(0.15) ? { mtu: 1400 } : {}),
    };
  });
  const namespaces = [
    { name: 'prod', labels: { env: 'prod' } },
    { name: 'dev', labels: { env: 'dev' } },
  ];
  const nsNames = ['prod', 'dev', 'default'];
  const pods: Obj[] = [];
  for (const n of nodes)
    for (let k = 0, count = 1 + int(4); k < count; k++) {
      const labels: Record<string, string> = { app: pick(APPS) };
      if (chance(0.5)) labels.tier = pick(['front', 'back']);
      pods.push({
        name: `${n.name}-p${k}`,
        node: n.name,
        namespace: pick(nsNames),
        labels,
        listen: LISTEN.filter(() => chance(0.5)),
      });
    }
  const selector = (): Obj =>
    pick<Obj>([
      {},
      { matchLabels: { app: pick(APPS) } },
      { matchExpressions: [{ key: 'tier', operator: pick(['In', 'NotIn']), values: ['front'] }] },
      { matchExpressions: [{ key: 'tier', operator: pick(['Exists', 'DoesNotExist']) }] },
    ]);
  const peer = (): Obj =>
    pick<Obj>([
      { podSelector: selector() },
      { namespaceSelector: { matchLabels: { env: pick(['prod', 'dev']) } } },
      { namespaceSelector: {}, podSelector: selector() },
      { ipBlock: { cidr: '10.244.0.0/16', except: [`10.244.${int(nodeCount)}.0/24`] } },
      { ipBlock: { cidr: `10.244.${int(nodeCount)}.0/25` } },
    ]);
  const port = (): Obj =>
    pick<Obj>([
      { protocol: 'TCP', port: 80 },
      { protocol: 'TCP', port: 'http' },
      { protocol: 'UDP', port: 53 },
      { protocol: 'UDP', port: 'dns' },
      { protocol: 'TCP', port: 8000, endPort: 8100 },
      { protocol: 'TCP' },
      { port: 'metrics' },
    ]);
  const rule = (dir: 'from' | 'to'): Obj => ({
    ...(chance(0.8) ? { [dir]: Array.from({ length: 1 + int(2) }, peer) } : {}),
    ...(chance(0.6) ? { ports: Array.from({ length: 1 + int(2) }, port) } : {}),
  });
  const policies = Array.from({ length: 1 + int(4) }, (_, k) => {
    const ingress = chance(0.7);
    const egress = chance(0.5) || !ingress;
    return {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: `np${k}`, namespace: pick(nsNames) },
      spec: {
        podSelector: selector(),
        policyTypes: [...(ingress ? ['Ingress'] : []), ...(egress ? ['Egress'] : [])],
        ...(ingress ? { ingress: Array.from({ length: int(3) }, () => rule('from')) } : {}),
        ...(egress ? { egress: Array.from({ length: int(3) }, () => rule('to')) } : {}),
      },
    };
  });
  const bgp =
    nodeCount > 2 && chance(0.3) ? [{ nodes: ['n0', `n${1 + int(nodeCount - 1)}`], state: 'down' }] : [];
  const doc = { name: `rand${seed}`, cni: mode, subnets, nodes, namespaces, pods, policies, bgp };
  return { spec: loadCluster(stringify(doc), `random-${seed}.yaml`), mode };
}

/** what a cell keeps of a walk: the outcome, the request's disposition (a drop with its counters), the reply's */
function outcome(w: Walk) {
  return {
    ok: walkOk(w),
    request: w.request.disposition,
    reply: w.reply && { role: w.reply.flow.role, disposition: w.reply.disposition },
  };
}

/**
 * The matrix walks without steps (walk's `steps: false`): every ordered pair of pods walked in
 * turn on two clusters built alike, one recording every step, the other none, must end the same
 * way (dispositions, drops with the counters they bumped, replies) and leave the same kernel
 * state (worldToData: counters, neighbours, conntrack, sockets, timers, the clock).
 */
function assertQuietSame(spec: ClusterSpec, mode: CniMode, proto: 'tcp' | 'udp', port: number, what: string) {
  const loud = prepareCluster(spec, mode);
  const quiet = prepareCluster(spec, mode);
  for (const c of [loud, quiet]) c.world.capture = false;
  let drops = 0;
  let counted = 0;
  for (const a of loud.pods)
    for (const b of loud.pods) {
      const r = { from: a.name, to: b.name, proto, port };
      const want = walk(loud, r);
      const got = walk(quiet, r, { steps: false });
      assert.ok(
        want.request.steps.length > 0 && got.request.steps.length === 0,
        `${what}: ${a.name} → ${b.name}`,
      );
      assert.deepEqual(outcome(got), outcome(want), `${what}: ${a.name} → ${b.name} (${proto}/${port})`);
      for (const d of [want.request.disposition, want.reply?.disposition])
        if (d?.kind === 'dropped') {
          drops++;
          if (d.drop.counters.length) counted++;
        }
    }
  assert.deepEqual(
    worldToData(quiet.world),
    worldToData(loud.world),
    `${what}: the kernel state after the walks`,
  );
  return { drops, counted };
}

describe('matrix: walks without steps end as recorded walks do', () => {
  test('random clusters and every shipped scenario', () => {
    let drops = 0;
    let counted = 0;
    const add = (x: { drops: number; counted: number }) => ((drops += x.drops), (counted += x.counted));
    for (let seed = 1; seed <= Number(process.env.MATRIX_SEEDS ?? 48); seed++) {
      const { spec, mode } = randomCluster(seed);
      const [proto, port] = PORTS[seed % PORTS.length];
      add(assertQuietSame(spec, mode, proto, port, `random cluster ${seed} (${mode})`));
    }
    const dir = new URL('../scenarios/', import.meta.url);
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.yaml'))) {
      const spec = loadCluster(readFileSync(new URL(f, dir), 'utf8'), f);
      add(assertQuietSame(spec, spec.cni, 'tcp', spec.scenario?.port ?? 8080, f));
      add(assertQuietSame(spec, spec.cni, 'udp', 53, f));
    }
    // the test means something: drops, and drops that carry counters (the part a quiet walk must still keep)
    assert.ok(drops >= 100 && counted >= 20, `${drops} drops, ${counted} with counters`);
  });
});

describe('matrix: grouped verdicts equal a walk per cell on a fresh cluster', () => {
  test('random clusters', () => {
    let cells = 0;
    let walks = 0;
    let mixed = 0;
    let grouped = 0;
    for (let seed = 1; seed <= Number(process.env.MATRIX_SEEDS ?? 48); seed++) {
      const { spec, mode } = randomCluster(seed);
      const [proto, port] = PORTS[seed % PORTS.length];
      const m = computeMatrix(spec, mode, [], { proto, port });
      assert.ok(m.grouping.used, `seed ${seed}: ${!m.grouping.used && m.grouping.reason}`);
      assertSame(spec, mode, [], m, `random cluster ${seed} (${mode})`);
      cells += m.from.length * m.to.length;
      walks += m.walks.length;
      const v = verdicts(m).flat();
      if (v.includes(true) && v.includes(false)) mixed++;
      if (m.walks.length < m.from.length * m.to.length) grouped++;
    }
    // the test means something: most tables mix verdicts, and grouping saves walks
    assert.ok(mixed >= 32, `${mixed} of 48 tables mix . and X`);
    assert.ok(grouped >= 32, `${grouped} of 48 tables needed fewer walks than cells`);
    assert.ok(walks < cells * 0.8, `${walks} walks for ${cells} cells`);
  });

  test('every shipped scenario, TCP and UDP, with the selectors of the scenario', () => {
    const dir = new URL('../scenarios/', import.meta.url);
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.yaml'))) {
      const spec = loadCluster(readFileSync(new URL(f, dir), 'utf8'), f);
      for (const [proto, port] of [
        ['tcp', spec.scenario?.port ?? 8080],
        ['udp', 53],
      ] as const) {
        const m = computeMatrix(spec, spec.cni, [], { proto, port });
        assertSame(spec, spec.cni, [], m, f);
      }
    }
  });

  test('--run commands: grouping is off, every cell walked on a cluster of its own', () => {
    // calico-node's layout: node2's pods are in its IPAM block 10.244.1.0/26
    const run = ['node3: ip route del 10.244.1.0/26', 'node1: iptables -I FORWARD -s 10.244.0.6 -j DROP'];
    const m = computeMatrix(seedCluster(), 'calico-bgp', run, { proto: 'tcp', port: 8080 });
    assert.deepEqual(m.grouping, {
      used: false,
      reason: '2 commands were applied to the nodes by run: or --run',
    });
    assert.equal(m.walks.length, 16);
    assertSame(seedCluster(), 'calico-bgp', run, m, 'seed with --run');
    const lines: string[] = [];
    matrixLines(m, (l) => lines.push(l));
    assert.deepEqual(lines, [
      '-\tdefault/pod-a\tdefault/pod-b\tdefault/pod-c\tdefault/pod-d',
      // nothing listens on pod-a; node1 drops every packet from pod-b's address, bridged or routed,
      // its SYN-ACKs too
      'default/pod-a\tX\tX\t.\t.',
      // pod-b to itself never leaves its lo
      'default/pod-b\tX\t.\tX\tX',
      // node3 lost node2's route: pod-d's SYN to pod-c, and the SYN-ACK back to pod-c, die there
      'default/pod-c\tX\tX\t.\tX',
      'default/pod-d\tX\tX\tX\t.',
    ]);
  });

  test('two walks with the same 4-tuple: the second gets a cluster of its own', () => {
    // pod-c takes pod-b's address: pod-a → pod-b and pod-a → pod-c are the same connection
    const seed = seedCluster();
    const spec = {
      ...seed,
      pods: seed.pods.map((p) => (p.name === 'pod-c' ? { ...p, ip: '10.244.0.6' } : p)),
    };
    const m = computeMatrix(spec, spec.cni, [], { proto: 'tcp', port: 8080 });
    assert.equal(m.grouping.used, false);
    assertSame(spec, spec.cni, [], m, 'duplicate address');
  });
});

describe('matrix: grouping', () => {
  test('the seed cluster: pods of one node with the same listeners are one group', () => {
    const m = computeMatrix(seedCluster(), 'flannel-vxlan', [], { proto: 'tcp', port: 8080 });
    // pod-a (no listener) alone; pod-b, pod-c and pod-d listen on tcp/8080, on nodes of one class
    assert.deepEqual(m.grouping, { used: true, groups: 2 });
    // self of each group, pod-a ↔ pod-b on node1, pod-a ↔ the others across nodes, the others among themselves
    assert.equal(m.walks.length, 7);
    // pod-c → pod-d and pod-d → pod-c: the same walk decides both
    const idx = (n: string) => m.from.findIndex((p) => p.name === n);
    assert.equal(m.walkOf(idx('pod-c'), idx('pod-d')), m.walkOf(idx('pod-d'), idx('pod-c')));
    assert.notEqual(m.walkOf(idx('pod-c'), idx('pod-c')), m.walkOf(idx('pod-c'), idx('pod-d')));
  });

  test('turned off where the kernel state is not what the cluster file alone programs', () => {
    const off = (spec: ClusterSpec, re: RegExp) => {
      const m = computeMatrix(spec, spec.cni, [], { proto: 'tcp', port: 8080 });
      assert.equal(m.grouping.used, false);
      assert.match((m.grouping as { reason: string }).reason, re);
      assertSame(spec, spec.cni, [], m, String(re));
    };
    const seed = seedCluster();
    off(
      {
        ...seed,
        pods: seed.pods.map((p) =>
          p.name === 'pod-b'
            ? { ...p, mac: '02:00:00:00:00:09' }
            : p.name === 'pod-a'
              ? { ...p, mac: '02:00:00:00:00:09' }
              : p,
        ),
      },
      /MAC 02:00:00:00:00:09 is used by pod-a eth0, pod-b eth0 in one L2 domain \(bridge node1\/cni0\)/,
    );
    off(
      { ...seed, pods: seed.pods.map((p) => (p.name === 'pod-c' ? { ...p, ip: '10.244.0.6' } : p)) },
      /10\.244\.0\.6 is assigned to/,
    );
    off(
      { ...seed, pods: seed.pods.map((p) => (p.name === 'pod-c' ? { ...p, ip: '10.244.9.5' } : p)) },
      /pod-c's address 10\.244\.9\.5 is not a host address of node2's pod CIDR/,
    );
    off(
      {
        ...seed,
        nodes: seed.nodes.map((n) => (n.name === 'node3' ? { ...n, podCIDR: '10.244.0.128/25' } : n)),
        pods: seed.pods.map((p) => (p.name === 'pod-d' ? { ...p, ip: '10.244.0.130' } : p)),
      },
      /node1's pod CIDR 10\.244\.0\.0\/24 overlaps node3's pod CIDR 10\.244\.0\.128\/25/,
    );
    // the same MAC behind two different bridges is harmless: grouping stays on
    const apart = {
      ...seed,
      pods: seed.pods.map((p) =>
        p.name === 'pod-a' || p.name === 'pod-c' ? { ...p, mac: '02:00:00:00:00:09' } : p,
      ),
    };
    assert.ok(computeMatrix(apart, 'flannel-vxlan', [], { proto: 'tcp', port: 8080 }).grouping.used);
  });

  test('group: false walks every cell', () => {
    const m = computeMatrix(seedCluster(), 'calico-ipip', [], { proto: 'udp', port: 8080, group: false });
    assert.equal(m.walks.length, 16);
    assert.deepEqual(m.grouping, { used: false, reason: 'grouping was turned off' });
  });
});

describe('matrix: output', () => {
  const spec = loadCluster(
    readFileSync(new URL('../scenarios/policy-blocks-dns.yaml', import.meta.url), 'utf8'),
    'p.yaml',
  );

  test('the layout of Kubernetes e2e truth tables: "-" and the columns, a row per source, tab-separated', () => {
    const m = computeMatrix(spec, spec.cni, [], { proto: 'udp', port: 53 });
    const lines: string[] = [];
    matrixLines(m, (l) => lines.push(l));
    assert.deepEqual(lines, [
      '-\tshop/web\tshop/cart\tkube-system/coredns',
      // web's egress allows only cart's http port: its DNS query is dropped by its policy
      'shop/web\tX\tX\tX',
      // nothing but coredns listens on udp/53
      'shop/cart\tX\tX\t.',
      'kube-system/coredns\tX\tX\t.',
    ]);
  });

  test('--from and --to select rows and columns; JSON holds every cell and the walk behind it', () => {
    const req: MatrixRequest = {
      proto: 'tcp',
      port: 8080,
      from: parsePodSelector('metadata.namespace=shop'),
      to: parsePodSelector('app in (cart, web)'),
    };
    const m = computeMatrix(spec, spec.cni, [], req);
    assert.deepEqual(
      m.from.map((p) => p.name),
      ['web', 'cart'],
    );
    assert.deepEqual(
      m.to.map((p) => p.name),
      ['web', 'cart'],
    );
    const lines: string[] = [];
    matrixJson(m, (l) => lines.push(l));
    const j = JSON.parse(lines.join('\n')) as {
      rows: string[];
      cells: number[][];
      walks: {
        from: string;
        to: string;
        ok: boolean;
        cells: number;
        outcome: string;
        request: { reason?: string };
      }[];
    };
    assert.deepEqual(j.rows, ['X.', 'X.']);
    assert.equal(j.cells.length, 2);
    const webCart = j.walks[j.cells[0][1]];
    assert.equal(webCart.ok, true);
    assert.match(webCart.outcome, /^reachable: SYN-ACK delivered to web/);
    // nothing listens on web: the SYN is answered with a RST
    const cartWeb = j.walks[j.cells[1][0]];
    assert.equal(cartWeb.ok, false);
    assert.match(cartWeb.outcome, /RST/);
    assert.equal(
      j.walks.reduce((n, w) => n + w.cells, 0),
      4,
    );
  });

  test('a selector that selects nothing is an error', () => {
    assert.throws(
      () => computeMatrix(spec, spec.cni, [], { proto: 'tcp', port: 80, from: parsePodSelector('app=nope') }),
      /--from "app=nope" selects no pod/,
    );
  });
});

describe('selectors', () => {
  test('the kubectl -l grammar', () => {
    const r = (s: string) => parsePodSelector(s).requirements;
    assert.deepEqual(r(''), []);
    assert.deepEqual(r('app=web'), [{ key: 'app', operator: 'In', values: ['web'] }]);
    assert.deepEqual(r('app==web, tier!=db'), [
      { key: 'app', operator: 'In', values: ['web'] },
      { key: 'tier', operator: 'NotIn', values: ['db'] },
    ]);
    assert.deepEqual(r('env in (prod, dev),!canary,team'), [
      { key: 'env', operator: 'In', values: ['prod', 'dev'] },
      { key: 'canary', operator: 'DoesNotExist' },
      { key: 'team', operator: 'Exists' },
    ]);
    assert.deepEqual(r('app.kubernetes.io/name notin (x)'), [
      { key: 'app.kubernetes.io/name', operator: 'NotIn', values: ['x'] },
    ]);
    assert.deepEqual(r('a='), [{ key: 'a', operator: 'In', values: [''] }]);
  });

  test('bad selectors say what is wrong', () => {
    const bad = (s: string, re: RegExp) =>
      assert.throws(
        () => parsePodSelector(s),
        (e: unknown) => e instanceof SelectorError && re.test(e.message),
      );
    bad('app in (web', /expected "," or "\)" in the values of app at the end/);
    bad('app in ()', /the set of values is empty/);
    bad('app=web,', /expected a requirement after ","/);
    bad('app web', /expected =, ==, !=, in, notin or "," after app at "web"/);
    bad('-app=x', /"-app" is not a label key/);
    bad('app=we b', /expected "," between requirements at "b"/);
    bad('app>3', /the operators < and > are not supported/);
    bad('app=-x-', /"-x-" \(for app\) is not a label value/);
    bad('!', /expected a label key after "!" at the end/);
  });

  test('field keys select by name, namespace and node', () => {
    const m = computeMatrix(seedCluster(), 'flannel-vxlan', [], {
      proto: 'tcp',
      port: 8080,
      from: parsePodSelector('spec.nodeName=node1'),
      to: parsePodSelector('metadata.name in (pod-c, pod-d)'),
    });
    assert.deepEqual(
      m.from.map((p) => p.name),
      ['pod-a', 'pod-b'],
    );
    assert.deepEqual(
      m.to.map((p) => p.name),
      ['pod-c', 'pod-d'],
    );
  });
});
