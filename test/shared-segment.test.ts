/**
 * A daemon's lease set as one shared segment per table (netlink.ts leasesInstall, Fib.attach,
 * CompactTable.attach): every node lists and looks up the other nodes' leases as its own, and a
 * write to one node's table never shows on another's, nor on a clone. The reference is the same
 * world read back from data (cloneWorld: plain tables, a row per entry); every operation is done
 * on both and every node's tables must stay equal.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster } from '../src/cni/build.ts';
import {
  fdbAdd,
  fdbDel,
  leasesInstall,
  linkSetUp,
  neighAdd,
  neighDel,
  NetlinkError,
  NLM_ADD,
  routeAdd,
  routeDel,
  routeInstall,
  type LeaseRequest,
} from '../src/kernel/netlink.ts';
import { DEFAULT_SYSCTLS, Sysctls, type Netns } from '../src/kernel/objects.ts';
import { cloneWorld } from '../src/kernel/snapshot.ts';
import { seededRandom, type World } from '../src/kernel/world.ts';
import { ip4ToInt } from '../src/wire/addr.ts';

const NODES = 6;

function spec(nodes = NODES) {
  const lines = [
    'name: shared',
    'cni: flannel-vxlan',
    'mtu: 1500',
    'subnets:',
    '  - name: lan0',
    '    cidr: 10.0.0.0/16',
    '    gateway: 10.0.0.1',
    'nodes:',
  ];
  for (let i = 0; i < nodes; i++)
    lines.push(`  - name: n${i}`, `    ip: 10.0.0.${10 + i}/16`, `    podCIDR: 10.128.${i}.0/24`);
  lines.push('pods:');
  for (let i = 0; i < nodes; i++) lines.push(`  - name: p${i}`, `    node: n${i}`, '    listen: [tcp/8080]');
  return loadCluster(lines.join('\n') + '\n', 'shared.yaml');
}

const VX = 'flannel.1';

/** every node's route, neighbour and VXLAN FDB listing (as JSON: a world read from data has no keys for undefined) */
function tables(w: World) {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < NODES; i++) {
    const ns = w.ns(`n${i}`);
    const vx = ns.link(VX);
    out[ns.name] = {
      routes: ns.fib.list(),
      neigh: ns.neigh.list(),
      fdb: vx?.type === 'vxlan' ? vx.fdb.list() : undefined,
      sizes: [ns.fib.size, ns.neigh.size, vx?.type === 'vxlan' ? vx.fdb.size : 0],
    };
  }
  return JSON.parse(JSON.stringify(out)) as unknown;
}

/** a value as JSON with its keys sorted (a world read from data has them sorted) */
function canon(x: unknown): string {
  return JSON.stringify(x, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([p], [q]) => (p < q ? -1 : 1)))
      : v,
  );
}

/** the errno of a netlink call, or "ok" */
function outcome(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (e instanceof NetlinkError) return e.code;
    throw e;
  }
}

describe('shared lease segments', () => {
  test('flannel-vxlan: every node shares the lease segment and lists every other lease', () => {
    const c = buildCluster(spec());
    for (let i = 0; i < NODES; i++) {
      const ns = c.world.ns(`n${i}`);
      const vx = ns.link(VX)!;
      assert.ok(ns.fib.shared && ns.neigh.shared && vx.type === 'vxlan' && vx.fdb.shared, ns.name);
      const leases = ns.fib.list().filter((r) => r.dev === VX);
      assert.equal(leases.length, NODES - 1);
      assert.ok(!leases.some((r) => r.via === `10.128.${i}.0`), 'its own lease is left out');
      assert.equal(ns.neigh.list().filter((n) => n.dev === VX).length, NODES - 1);
      assert.equal(vx.type === 'vxlan' && vx.fdb.size, NODES - 1);
      // what the table stores itself (bench/build-one.ts counts rows by it): not the segment's
      // rows, which the segment stores once for every node (NODES leases, the node's own unlisted)
      const seg = ns.neigh.segment!;
      assert.equal(ns.neigh.ownSize, ns.neigh.size - (NODES - 1));
      assert.equal(seg.ownSize, NODES);
      assert.equal(ns.fib.ownSize, ns.fib.size - (NODES - 1));
      assert.equal(ns.fib.segment!.ownSize, NODES);
      assert.ok(vx.type === 'vxlan' && vx.fdb.ownSize === 0 && vx.fdb.segment!.ownSize === NODES);
    }
    // the clone's tables are plain rows, equal to the shared ones
    const copy = cloneWorld(c.world);
    assert.ok(!copy.ns('n0').fib.shared);
    assert.equal(copy.ns('n0').fib.ownSize, copy.ns('n0').fib.size);
    assert.deepEqual(tables(copy), tables(c.world));
  });

  test('a node whose own entries take a lease key gets the leases one by one, with the same result and refusals', () => {
    const c = buildCluster(spec());
    const w = c.world;
    // the same world before the leases: a build read back from data (plain tables), the leases taken out
    const fresh = cloneWorld(buildCluster(spec()).world);
    const nodes = [...Array(NODES).keys()].map((i) => fresh.ns(`n${i}`));
    for (const ns of nodes) {
      for (const r of [...ns.fib.list()]) if (r.dev === VX) ns.fib.remove(r);
      const vx = ns.link(VX)!;
      for (const n of [...ns.neigh.list()]) if (n.dev === VX) ns.neigh.remove(n);
      if (vx.type === 'vxlan') vx.fdb.clear();
    }
    // n1 already has a route to n3's subnet; n2's device is down
    routeInstall(nodes[1], { prefix: '10.128.3.0/24', via: '10.0.0.13', dev: 'eth0', nl: NLM_ADD });
    linkSetUp(fresh, nodes[2], VX, false);
    const leases: LeaseRequest[] = c.nodes.map((o) => {
      const mac = w.ns(o.name).link(VX)!.mac;
      return {
        routes: [{ prefix: o.podCIDR, via: o.podNet, dev: VX, onlink: true, nl: NLM_ADD }],
        neigh: { ip: o.podNet, dev: VX, lladdr: mac, state: 'PERMANENT', nl: NLM_ADD },
        fdb: {
          mac,
          dev: VX,
          self: true,
          master: false,
          state: { permanent: true, noarp: false, reachable: false },
          dst: o.addr,
          nl: NLM_ADD,
        },
      };
    });
    const refused = leasesInstall(
      fresh,
      nodes,
      leases,
      nodes.map((_, i) => i),
    );
    assert.ok(!nodes[1].fib.shared && nodes[1].neigh.shared, 'n1: routes one by one, neighbours shared');
    assert.ok(!nodes[2].fib.shared, 'n2: its device is down');
    assert.ok(nodes[0].fib.shared && nodes[3].fib.shared);
    const codes = refused.map((r) => `${r.node}/${r.lease}/${r.kind}/${r.error.code}`);
    assert.deepEqual(codes, ['n1/3/route/EEXIST', ...[0, 1, 3, 4, 5].map((k) => `n2/${k}/route/ENETDOWN`)]);
    assert.equal(nodes[1].fib.list().filter((r) => r.dev === VX).length, NODES - 2);
    assert.equal(nodes[2].fib.list().filter((r) => r.dev === VX).length, 0);
    assert.equal(nodes[2].neigh.list().filter((n) => n.dev === VX).length, NODES - 1);
  });

  test("calico-vxlan: felix's VTEPs and remote blocks as one segment, equal to programming each node one by one", () => {
    // n0 holds two /26 blocks (70 pods), n1 runs a pod with an address of n2's block (borrowed: its /32)
    const lines = [
      'name: shared',
      'cni: calico-vxlan',
      'mtu: 1500',
      'subnets:',
      '  - name: lan0',
      '    cidr: 10.0.0.0/16',
    ];
    lines.push('nodes:');
    for (let i = 0; i < NODES; i++)
      lines.push(`  - name: n${i}`, `    ip: 10.0.0.${10 + i}/16`, `    podCIDR: 10.128.${i}.0/24`);
    lines.push('pods:');
    for (let k = 0; k < 70; k++) lines.push(`  - name: a${k}`, '    node: n0');
    for (let i = 1; i < NODES; i++) lines.push(`  - name: p${i}`, `    node: n${i}`);
    lines.push('  - name: borrower', '    node: n1', '    ip: 10.128.2.40');
    const c = buildCluster(loadCluster(lines.join('\n') + '\n', 'shared.yaml'));
    const dev = 'vxlan.calico';
    assert.equal(c.ipam?.blocks.get('n0')?.length, 2);
    assert.equal(c.ipam?.borrowed.get('borrower'), 'n2');
    // the reference: a world read back from data (plain tables) without felix's entries, then
    // every other node's neighbour, FDB entry and routes added one by one, as felix programs them
    const fresh = cloneWorld(c.world);
    for (const n of c.nodes) {
      const ns = fresh.ns(n.name);
      for (const r of [...ns.fib.list()]) if (r.dev === dev) ns.fib.remove(r);
      for (const e of [...ns.neigh.list()]) if (e.dev === dev) ns.neigh.remove(e);
      const vx = ns.link(dev)!;
      if (vx.type === 'vxlan') vx.fdb.clear();
    }
    const dests = (node: string) => [
      ...c.ipam!.blocks.get(node)!,
      ...c.pods.filter((p) => p.node === node && c.ipam!.borrowed.has(p.name)).map((p) => `${p.ip}/32`),
    ];
    for (const n of c.nodes) {
      const ns = fresh.ns(n.name);
      for (const o of c.nodes) {
        if (o === n) continue;
        const vtep = c.world.ns(o.name).link(dev)!.mac;
        const ip = c.ipam!.tunnel.get(o.name)!;
        neighAdd(ns, fresh, { ip, dev, lladdr: vtep, state: 'PERMANENT', nl: NLM_ADD });
        const state = { permanent: true, noarp: false, reachable: false };
        fdbAdd(ns, fresh, { mac: vtep, dev, self: true, master: false, state, dst: o.addr, nl: NLM_ADD });
        for (const d of dests(o.name))
          routeInstall(ns, { prefix: d, via: ip, dev, onlink: true, nl: NLM_ADD });
      }
    }
    for (const n of c.nodes) {
      const ns = c.world.ns(n.name);
      const vx = ns.link(dev)!;
      assert.ok(ns.fib.shared && ns.neigh.shared && vx.type === 'vxlan' && vx.fdb.shared, n.name);
      const want = fresh.ns(n.name);
      const wvx = want.link(dev)!;
      assert.deepEqual(canon(ns.fib.list()), canon(want.fib.list()), `${n.name}: routes`);
      assert.deepEqual(canon(ns.neigh.list()), canon(want.neigh.list()), `${n.name}: neighbours`);
      assert.deepEqual(
        canon(vx.type === 'vxlan' && vx.fdb.list()),
        canon(wvx.type === 'vxlan' && wvx.fdb.list()),
        `${n.name}: FDB`,
      );
    }
    assert.ok(
      c.world
        .ns('n0')
        .fib.list()
        .some((r) => r.dst === ip4ToInt('10.128.2.40') && r.len === 32),
    );
  });

  test('a write to one node never shows on another node or on a clone (random operations against plain tables)', () => {
    // what the operations reached: a table copied on write, a shared one with a row gone, an object kept on a shared row
    let copied = 0;
    let tombstoned = 0;
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const rnd = seededRandom(seed);
      const int = (n: number) => Math.floor(rnd() * n);
      const a = buildCluster(spec()).world;
      const b = cloneWorld(a);
      const before = tables(cloneWorld(a));
      const clone = cloneWorld(a);
      const lease = () => int(NODES + 1); // NODES: a subnet no node has
      const cidr = (k: number) => `10.128.${k}.0`;
      const mac = (k: number) => `5a:00:00:00:00:${(k + 16).toString(16)}`;
      const ops: string[] = [];
      for (let step = 0; step < 120; step++) {
        const i = int(NODES);
        const k = lease();
        const nl = [NLM_ADD, { create: true, excl: false, replace: true, append: false }][int(2)];
        const via = int(2) ? cidr(k) : `10.128.${k}.${1 + int(3)}`;
        const op = int(11);
        // drawn once for both worlds
        const [metric, dstNode, pick, up] = [int(2) * 100, int(NODES), rnd(), int(3) > 0];
        const results = [a, b].map((w) => {
          const ns: Netns = w.ns(`n${i}`);
          switch (op) {
            case 0:
              return outcome(() =>
                routeAdd(ns, {
                  prefix: `${cidr(k)}/24`,
                  via,
                  dev: VX,
                  onlink: true,
                  metric,
                  nl,
                }),
              );
            case 1:
              return outcome(() => routeDel(ns, `${cidr(k)}/24`, {}));
            case 2:
              return outcome(() =>
                neighAdd(ns, w, { ip: cidr(k), dev: VX, lladdr: mac(k), state: 'PERMANENT', nl }),
              );
            case 3:
              return outcome(() => neighDel(ns, cidr(k), VX));
            case 4:
              return outcome(() =>
                fdbAdd(ns, w, {
                  mac: mac(k),
                  dev: VX,
                  self: true,
                  master: false,
                  state: { permanent: true, noarp: false, reachable: false },
                  dst: `10.0.0.${10 + dstNode}`,
                  nl: { ...nl, append: false },
                }),
              );
            case 5:
              return outcome(() => {
                const vx = ns.link(VX)!;
                if (vx.type !== 'vxlan') return;
                const e = vx.fdb.list()[Math.floor(pick * (vx.fdb.size + 1))];
                if (e) fdbDel(ns, { mac: e.mac, dev: VX, self: true, master: false });
              });
            case 6: {
              // the datapath changes an entry in place
              const e = ns.neighbour(cidr(k), VX);
              if (e) ns.neigh.update(e, { state: 'STALE' });
              return e ? 'changed' : 'none';
            }
            case 7: {
              // a route handed out keeps what is hung on it (a PMTU exception)
              const r = ns.fib.lookup(ip4ToInt(`10.128.${k}.7`));
              if (r) (r.exceptions ??= []).push({ dst: `10.128.${k}.7`, mtu: 1400, expires: 600 } as never);
              return r ? `${r.via}` : 'none';
            }
            case 8:
              return outcome(() => linkSetUp(w, ns, VX, up));
            case 9:
              return outcome(() =>
                routeAdd(ns, {
                  prefix: `10.128.${k}.128/25`,
                  via: cidr(k),
                  dev: VX,
                  onlink: true,
                  nl: NLM_ADD,
                }),
              );
            default: {
              const r = ns.fib.lookup(ip4ToInt(`10.128.${k}.9`));
              const n = ns.neigh.get(`${cidr(k)}|${VX}`);
              const vx = ns.link(VX);
              const f = vx?.type === 'vxlan' ? vx.fdb.get(mac(k)) : undefined;
              return canon([r, n, f]);
            }
          }
        });
        ops.push(`n${i} op${op} lease${k}: ${results[0]}`);
        assert.equal(results[0], results[1], `seed ${seed}: ${ops.join('; ')}`);
        assert.deepEqual(tables(a), tables(b), `seed ${seed}: ${ops.join('; ')}`);
      }
      // a clone made before is unchanged by every write since
      assert.deepEqual(tables(clone), before, `seed ${seed}`);
      for (let i = 0; i < NODES; i++) {
        const ns = a.ns(`n${i}`);
        if (!ns.fib.shared || !ns.neigh.shared) copied++;
        else if (ns.fib.list().filter((r) => r.dev === VX && r.len === 24).length < NODES - 1) tombstoned++;
      }
    }
    assert.ok(copied > 0 && tombstoned > 0, `copied ${copied}, tombstoned ${tombstoned}`);
  });
});

describe('sysctls as an overlay of the shared defaults', () => {
  test('reads, writes, deletes and iterates as a Map copied from the defaults (random operations)', () => {
    const keys = [...Object.keys(DEFAULT_SYSCTLS).slice(0, 8), 'net.ipv4.conf.eth0.forwarding', 'x.new'];
    for (const seed of [11, 12, 13, 14, 15]) {
      const rnd = seededRandom(seed);
      const int = (n: number) => Math.floor(rnd() * n);
      const plain = new Map(Object.entries(DEFAULT_SYSCTLS));
      const over = new Sysctls();
      const other = new Sysctls();
      for (let step = 0; step < 300; step++) {
        const k = keys[int(keys.length)];
        const v = String(int(3));
        const op = int(10);
        const r = [plain, over].map((m) =>
          op < 4
            ? m.set(k, v) && 'set'
            : op < 7
              ? m.delete(k)
              : op === 7
                ? step % 50 === 0
                  ? m.clear()
                  : 0
                : m.get(k),
        );
        assert.equal(r[1], r[0], `seed ${seed} step ${step}`);
        assert.equal(over.has(k), plain.has(k));
        assert.equal(over.size, plain.size);
        assert.deepEqual([...over], [...plain], `seed ${seed} step ${step}`);
        assert.deepEqual([...over.keys()], [...plain.keys()]);
      }
      // another namespace's sysctls are the defaults still
      assert.deepEqual([...other], Object.entries(DEFAULT_SYSCTLS));
    }
  });
});
