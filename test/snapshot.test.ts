/**
 * The World as plain data (src/kernel/snapshot.ts): for the built-in cluster in every CNI mode and
 * for every shipped scenario, after its `run:` commands and a walk, the world is written, turned
 * into JSON text, parsed and loaded; then every emulated tool, in every namespace, must print
 * byte for byte what it prints on the original, a walk on the loaded world must give the very
 * same trace, and both worlds must still agree afterwards. diffWorlds of a world and its clone
 * after `ip route del` names that route and nothing else; malformed data is one line naming the
 * JSON path.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { loadCluster } from '../src/cluster/load.ts';
import { seedCluster } from '../src/cluster/seed.ts';
import { CNI_MODES, type ClusterSpec } from '../src/cluster/spec.ts';
import type { Cluster } from '../src/cni/build.ts';
import { Sockets } from '../src/kernel/sockets.ts';
import { Stack } from '../src/kernel/stack.ts';
import {
  cloneWorld,
  diffWorlds,
  SnapshotError,
  worldFromData,
  worldToData,
  type WorldData,
} from '../src/kernel/snapshot.ts';
import type { World } from '../src/kernel/world.ts';
import { prepareCluster, runCommand } from '../src/tools/index.ts';
import { NSTAT_COUNTERS } from '../src/tools/nstat.ts';
import { walk, type WalkRequest } from '../src/trace/walk.ts';

/** the same cluster around another world (fresh datapath objects; all state is in the world) */
function around(c: Cluster, world: World): Cluster {
  const stack = new Stack(world);
  return { ...c, world, stack, sockets: new Sockets(stack) };
}

/** every tool output that reads kernel state, for one namespace */
function commands(c: Cluster, netns: string): string[] {
  const ns = c.world.ns(netns);
  const links = [...ns.links.keys()];
  const cmds = [
    'ip -d link show',
    'ip -s -s -d link show',
    'ip -j -d -s link show',
    'ip addr',
    'ip -d -j addr show',
    'ip route show table all',
    'ip -j route show table all',
    'ip neigh',
    'ip -j neigh',
    'bridge fdb show',
    'bridge -d -j fdb show',
    'bridge link show',
    'iptables-save',
    'iptables -L -n -v -x',
    'iptables -t nat -S',
    'conntrack -L',
    `nstat -az ${NSTAT_COUNTERS.filter((n) => !n.endsWith('*')).join(' ')} ${[0, 3, 8, 11].map((t) => `IcmpMsgOutType${t}`).join(' ')}`,
    // sysctl -a is not emulated: every key the namespace has, and each device's own
    `sysctl ${[...ns.sysctl.keys()].join(' ')}`,
    `sysctl -e ${links.map((l) => `net.ipv4.conf.${l.replace(/\./g, '/')}.rp_filter net.ipv4.conf.${l.replace(/\./g, '/')}.forwarding`).join(' ')}`,
    ...links.map((l) => `tcpdump -i ${l} -nn -e -v`),
  ];
  if (c.mode.startsWith('calico') && ns.role === 'node') cmds.push('calicoctl node status');
  return cmds;
}

function assertSameTools(a: Cluster, b: Cluster, when: string): void {
  for (const netns of a.world.netns.keys())
    for (const cmd of commands(a, netns)) {
      const x = runCommand(a, netns, cmd);
      const y = runCommand(b, netns, cmd);
      assert.deepEqual(y, x, `${when}: ${netns}$ ${cmd}`);
    }
}

const json = (w: World) => JSON.stringify(worldToData(w));

/**
 * What the world holds, counted from its objects, not from its data: an omission in writing shows
 * here even though both sides of a JSON comparison would miss it alike.
 */
function census(w: World): string {
  return [...w.netns.values()]
    .map((ns) => {
      const fdb = [...ns.links.values()].map((l) =>
        l.type === 'bridge' || l.type === 'vxlan' ? l.fdb.size : 0,
      );
      const addrs = [...ns.links.values()].map((l) => l.addrs.length);
      const rules = [...ns.netfilter.tables.values()].flatMap((t) =>
        [...t.values()].map((c) => c.rules.length),
      );
      return [
        ns.name,
        ns.links.size,
        addrs.join(','),
        ns.fib.list().length,
        ns.neigh.size,
        fdb.join(','),
        ns.sysctl.size,
        ns.mib.size,
        [...ns.mib.values()].join(','),
        ns.sockets.length,
        ns.tcp.size,
        ns.udpClients.length,
        rules.join(','),
        ns.conntrack.entries.length,
        ns.ipId,
        ns.nextIfindex,
      ].join(' ');
    })
    .concat(`captures ${w.captures.length} now ${w.now}`)
    .join('\n');
}

/**
 * JSON with every object's keys sorted: the events of a walk hold kernel objects (routes, rules,
 * neighbour entries), and a loaded world's objects have their keys in the snapshot's order
 */
function canonical(x: unknown): string {
  return JSON.stringify(x, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

/** serialize → JSON text → parse → load; the loaded world writes the same text again */
function roundTrip(c: Cluster): Cluster {
  const text = json(c.world);
  const loaded = worldFromData(JSON.parse(text));
  assert.equal(census(loaded), census(c.world), 'the loaded world holds as many objects');
  assert.equal(json(loaded), text, 'the loaded world writes the same JSON');
  return around(c, loaded);
}

function checkRoundTrip(c: Cluster, flows: WalkRequest[]): void {
  // state from a first walk: neighbours, FDB learning, conntrack, counters, sockets, captures
  walk(c, flows[0], { exchange: true });
  const d = roundTrip(c);
  assertSameTools(c, d, 'after loading');
  for (const f of flows) {
    const a = walk(c, f, { exchange: true });
    const b = walk(d, f, { exchange: true });
    assert.equal(canonical(b), canonical(a), `the walk ${f.from} → ${f.to} on the loaded world`);
  }
  assert.equal(census(d.world), census(c.world), 'both worlds hold as many objects after the walks');
  assert.equal(json(d.world), json(c.world), 'both worlds agree after the walks');
  assertSameTools(c, d, 'after the walks');
}

const SEED_FLOWS: WalkRequest[] = [
  { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 },
  { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 },
  { from: 'pod-a', to: 'pod-b', proto: 'udp', port: 8080 },
  { from: 'pod-a', to: 'pod-d', proto: 'icmp', size: 1472, df: true },
  { from: 'node1', to: 'pod-d', proto: 'udp', port: 53 },
];

describe('the world round-trips through JSON', () => {
  for (const mode of CNI_MODES)
    test(`built-in cluster, ${mode}`, () => checkRoundTrip(prepareCluster(seedCluster(), mode), SEED_FLOWS));

  const dir = new URL('../scenarios/', import.meta.url);
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort())
    test(`scenario ${file}`, () => {
      const spec: ClusterSpec = loadCluster(readFileSync(new URL(file, dir), 'utf8'), `scenarios/${file}`);
      const s = spec.scenario!;
      const flow: WalkRequest = { from: s.from, to: s.to, proto: s.proto, port: s.port };
      const back: WalkRequest = { from: s.to, to: s.from, proto: 'icmp' };
      checkRoundTrip(prepareCluster(spec, spec.cni), [flow, back, flow]);
    });
});

test('a world in the middle of time (a queued SYN, armed timers, the PMTU cache) goes on the same after a round trip', () => {
  const c = prepareCluster(seedCluster(), 'flannel-vxlan', ['node1: ip link set flannel.1 mtu 1400']);
  // fragmentation needed puts a FIB exception on pod-a's route
  runCommand(c, 'pod-a', 'ping -c 1 -M do -s 1422 10.244.1.5');
  const ns = c.world.ns('pod-a');
  // a connection still opening: its SYN waits on a neighbour that never answers, its RTO is armed
  c.sockets.connect(ns, '10.244.0.99', 8080, 40000, new Uint8Array(0), { timers: true });
  assert.ok(c.world.unresolved > 0 && c.world.timers.length > 0);
  assert.ok(ns.fib.list().some((r) => r.exceptions?.length));
  const clone = roundTrip(c);
  c.world.advance(10_000_000);
  clone.world.advance(10_000_000);
  assert.deepEqual(diffWorlds(c.world, clone.world), []);
  // and time went on in both: the neighbour failed, the SYN was resent while it could leave
  assert.equal(clone.world.ns('pod-a').neighbour('10.244.0.99', 'eth0')?.state, 'FAILED');
  assert.equal(
    runCommand(clone, 'pod-a', 'ip route get 10.244.1.5').stdout,
    runCommand(c, 'pod-a', 'ip route get 10.244.1.5').stdout,
  );
});

test('the empty bytes that segments and sockets share are written in full wherever they are met', () => {
  // curl's connection keeps its last SYN (no payload) and, once its request left, nothing to
  // send: the same empty bytes twice in one socket, each written as the empty array it stands for
  const c = prepareCluster(seedCluster(), 'flannel-vxlan');
  const r = runCommand(c, 'pod-a', 'curl -s http://10.244.1.5:8080/');
  assert.equal(r.code, 0, r.stderr);
  const conn = c.world.ns('pod-a').tcp.list()[0];
  assert.equal(conn.toSend, conn.lastSyn?.payload.kind === 'tcp' ? conn.lastSyn.payload.data : undefined);
  assert.equal(conn.toSend.length, 0);
  const data = worldToData(c.world).netns.find((n) => n.name === 'pod-a')!.tcp[0] as {
    toSend: unknown;
    lastSyn: { payload: { data: unknown } };
  };
  assert.deepEqual(data.toSend, { $bytes: '' });
  assert.deepEqual(data.lastSyn.payload.data, { $bytes: '' });
  const loaded = worldFromData(JSON.parse(JSON.stringify(worldToData(c.world))));
  const back = loaded.ns('pod-a').tcp.list()[0];
  assert.notEqual(back.toSend, back.lastSyn?.payload.kind === 'tcp' ? back.lastSyn.payload.data : undefined);
});

describe('diffWorlds', () => {
  test('after `ip route del` on a clone, the diff names exactly that route', () => {
    const c = prepareCluster(seedCluster(), 'flannel-vxlan');
    walk(c, SEED_FLOWS[0], { exchange: true });
    const clone = around(c, cloneWorld(c.world));
    assert.deepEqual(diffWorlds(c.world, clone.world), []);
    const r = runCommand(clone, 'node1', 'ip route del 10.244.1.0/24');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      diffWorlds(c.world, clone.world).map((d) => ({ ...d, before: undefined })),
      [
        {
          netns: 'node1',
          kind: 'route',
          key: '10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink',
          before: undefined,
        },
      ],
    );
    const [d] = diffWorlds(c.world, clone.world);
    assert.deepEqual(d.before, {
      dev: 'flannel.1',
      dst: 0x0af40100,
      len: 24,
      metric: 0,
      onlink: true,
      proto: 'boot',
      scope: 'global',
      type: 'unicast',
      via: '10.244.1.0',
    });
    assert.equal(d.after, undefined);
  });

  test('field by field: a link’s MTU and counters, a sysctl, a new neighbour', () => {
    const c = prepareCluster(seedCluster(), 'flannel-vxlan');
    const clone = around(c, cloneWorld(c.world));
    for (const cmd of ['ip link set eth0 mtu 1400', 'sysctl -w net.ipv4.ip_forward=0'])
      assert.equal(runCommand(clone, 'node2', cmd).code, 0, cmd);
    const diffs = diffWorlds(c.world, clone.world);
    assert.deepEqual(
      diffs.map((d) => [d.netns, d.kind, d.key, d.field, d.before, d.after]),
      [
        ['node2', 'link', 'eth0', 'mtu', 1500, 1400],
        ['node2', 'sysctl', 'net.ipv4.ip_forward', undefined, '1', '0'],
        ['node2', 'sysctl', 'net.ipv4.conf.all.forwarding', undefined, '1', '0'],
      ],
    );
  });
});

describe('malformed world data: one line naming the JSON path', () => {
  const base = (): WorldData => worldToData(prepareCluster(seedCluster(), 'flannel-vxlan').world);
  /** apply a change to the parsed data and load it */
  const load = (change: (d: Record<string, unknown> & WorldData) => void) => {
    const d = JSON.parse(JSON.stringify(base()));
    change(d);
    return () => worldFromData(d);
  };
  const linkOf = (d: WorldData, ns: string, name: string) =>
    (d.netns.find((n) => n.name === ns)!.links as { name: string }[]).find((l) => l.name === name) as Record<
      string,
      unknown
    >;
  const nsIndex = (d: WorldData, ns: string) => d.netns.findIndex((n) => n.name === ns);
  const cases: [string, (d: Record<string, unknown> & WorldData) => void, RegExp][] = [
    ['not an object', (d) => Object.assign(d, { netns: 7 }), /^\$\.netns: expected a list$/],
    ['another format', (d) => (d.format = 'x' as never), /^\$\.format: expected "podwalk-world"$/],
    ['a future version', (d) => (d.version = 2 as never), /^\$\.version: expected 1/],
    [
      'an MTU that is text',
      (d) => (linkOf(d, 'node1', 'eth0').mtu = '1500'),
      /^\$\.netns\[\d+\]\.links\[\d+\]\.mtu: expected an integer in 0\.\.4294967295$/,
    ],
    [
      'a bad MAC',
      (d) => (linkOf(d, 'node1', 'cni0').mac = 'zz'),
      /^\$\.netns\[\d+\]\.links\[\d+\]\.mac: "zz" is not a MAC address$/,
    ],
    [
      'a route through a link that is not there',
      (d) => ((d.netns[nsIndex(d, 'node1')].routes[0] as Record<string, unknown>).dev = 'eth9'),
      /^\$\.netns\[\d+\]\.routes\[0\]\.dev: no link "eth9" in node1$/,
    ],
    [
      'a port of a missing bridge',
      (d) => (linkOf(d, 'node1', 'veth-pod-a').master = 'br9'),
      /^\$\.netns\[\d+\]\.links\[\d+\]\.master: no bridge "br9" in node1$/,
    ],
    [
      'a veth whose peer is not its peer',
      (d) => ((linkOf(d, 'pod-a', 'eth0').peer as { name: string }).name = 'veth-x'),
      /^\$\.netns\[\d+\]\.links\[\d+\]\.peer: the peer pod-a\/eth0 is not a veth whose peer is node1\/veth-pod-a$/,
    ],
    [
      'a tag that does not exist',
      (d) => (d.netns[0].conntrack = { $klass: 'Conntrack' }),
      /^\$\.netns\[0\]\.conntrack\.\$klass: unknown tag "\$klass"$/,
    ],
    [
      'a class that is not registered',
      (d) => (d.netns[0].netfilter = { $class: 'Function', fields: {} }),
      /^\$\.netns\[0\]\.netfilter: unknown class "Function"$/,
    ],
    [
      'conntrack where netfilter belongs',
      (d) => (d.netns[0].netfilter = d.netns[0].conntrack),
      /^\$\.netns\[0\]\.netfilter: expected \{"\$class": "Netfilter", …\}$/,
    ],
    [
      'a chain without rules',
      (d) => {
        const nf = d.netns[nsIndex(d, 'node1')].netfilter as {
          fields: { tables: { $map: [string, { $map: [string, Record<string, unknown>][] }][] } };
        };
        // a chain with no rules: none of its objects is referenced from elsewhere (rules share
        // their origins, and references are resolved before the shapes are checked)
        const chain = nf.fields.tables.$map[0][1].$map.find(([, c]) => (c.rules as unknown[]).length === 0)!;
        delete chain[1].rules;
      },
      /^\$\.netns\[\d+\]\.netfilter\.fields\.tables\.\$map\[0\]\[1\]\.\$map\[\d+\]\[1\]\.rules: expected a list$/,
    ],
    [
      'a dangling reference',
      (d) => (d.netns[0].arpStats = { $ref: '$.nowhere' }),
      /^\$\.netns\[0\]\.arpStats: "\$ref" to "\$\.nowhere", which is not an object met before$/,
    ],
    [
      'a capture on a device that does not exist',
      (d) => {
        d.captures.push({ time: 0, netns: 'node1', dev: 'eth7', dir: 'in', frame: { $bytes: '00' } });
      },
      /^\$\.captures\[0\]\.dev: no link "eth7" in "node1"$/,
    ],
    [
      'bytes that are not hex',
      (d) => {
        d.captures.push({ time: 0, netns: 'node1', dev: 'eth0', dir: 'in', frame: { $bytes: 'xyz' } });
      },
      /^\$\.captures\[0\]\.frame: "\$bytes" must be hex$/,
    ],
  ];
  for (const [what, change, message] of cases)
    test(what, () => {
      assert.throws(load(change), (e: unknown) => {
        assert.ok(e instanceof SnapshotError, `expected a SnapshotError, got ${String(e)}`);
        assert.doesNotMatch(e.message, /\n/);
        assert.match(e.message, message);
        return true;
      });
    });

  test('a world with a field snapshot.ts does not write is refused when written, not dropped', () => {
    const c = prepareCluster(seedCluster(), 'flannel-vxlan');
    Object.assign(c.world.ns('node1'), { invented: 1 });
    assert.throws(
      () => worldToData(c.world),
      /^Error: \$\.netns\[\d+\]\.invented: snapshot\.ts does not write this field yet/,
    );
  });
});
