/**
 * eBGP between nodes on real BIRD 2 (test/fixtures/ebgp/ebgp-cluster.yaml: node1 and node2 in
 * AS 64512, node3 in AS 64513, one subnet, the mesh on): `lab up` starts bird2 in every node's
 * namespace with the configuration src/lab/bird.ts writes (`local as` the node's AS, `neighbor …
 * as` the peer's, `direct` on the eBGP mesh sessions) and waits until every session is
 * Established and every route the model learned is in BIRD's table; the routes BIRD installs
 * (`ip route`) must be the model's byte for byte, and the emulated birdc must print what the
 * real one prints (the AS paths' origin AS, which of two routes is primary; `show route all`: each
 * route's attributes). Then node3's session
 * with node1 is restarted (`birdc restart`) under tcpdump: tshark decodes the UPDATEs of both
 * sides without a malformed or error expert item, they leave with TTL 1 (a direct eBGP session),
 * and their AS_PATH, NEXT_HOP and LOCAL_PREF (none) are those the model's speakers sent over it
 * (a route that loops included: the sender does not hold it back, the receiver drops it).
 * Then node3 moved behind the router: the mesh's eBGP sessions with it are direct (no
 * multihop), so real BIRD waits for node3 to become a neighbour, Idle, as the model does.
 *
 * PODWALK_RECORD=1 writes the real outputs to test/fixtures/ebgp/lab.json; PODWALK_KEEP_CAPTURE=DIR
 * keeps the capture (node3.pcap in a pw-ebgp-cap- directory there). Needs root, namespaces,
 * bird2, tcpdump and tshark; run it alone:
 *   flock /tmp/podwalk-lab.lock node --import tsx --test test/lab-ebgp.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import {
  labDown,
  labExec,
  labNs,
  labUnavailable,
  labUp,
  pause,
  run,
  type LabState,
} from '../src/lab/host.ts';
import { ownAttrs } from '../src/bgp/fsm.ts';
import type { BgpAttr } from '../src/wire/bgp.ts';
import { birdLabAgrees, birdLabSettles, birdMissing } from './bird-lab.ts';

// (the call stays here: scripts/test.ts puts the files that call labUnavailable( in the lab lane)
const why =
  labUnavailable() ??
  birdMissing() ??
  (run(['sh', '-c', 'command -v tcpdump && command -v tshark']).code !== 0
    ? 'tcpdump or tshark not installed'
    : undefined);
const skip = why ? `real BIRD lab unavailable: ${why}` : false;

const ROOT = new URL('..', import.meta.url).pathname;
const FIXTURES = join(ROOT, 'test/fixtures/ebgp');
const EBGP_CLUSTER = join(FIXTURES, 'ebgp-cluster.yaml');

function model(name: string): Cluster {
  const spec = loadCluster(readFileSync(EBGP_CLUSTER, 'utf8'), EBGP_CLUSTER);
  spec.name = name;
  return buildCluster(spec, 'calico-bgp');
}

/** every value of the fields named `key` anywhere in tshark's JSON tree, in order */
function values(o: unknown, key: string, out: string[] = []): string[] {
  if (Array.isArray(o)) for (const x of o) values(x, key, out);
  else if (o && typeof o === 'object')
    for (const [k, v] of Object.entries(o)) {
      if (k === key) out.push(...(Array.isArray(v) ? v : [v]).map(String));
      else values(v, key, out);
    }
  return out;
}

/** the objects of tshark's JSON tree that hold the field `key` themselves */
function holders(o: unknown, key: string, out: Record<string, unknown>[] = []): Record<string, unknown>[] {
  if (Array.isArray(o)) for (const x of o) holders(x, key, out);
  else if (o && typeof o === 'object') {
    const r = o as Record<string, unknown>;
    if (key in r) out.push(r);
    else for (const v of Object.values(r)) holders(v, key, out);
  }
  return out;
}

/**
 * what `src` announces to `dst` on their last session (since its last OPEN) once its UPDATEs are applied
 * in order (an announcement replaces, a withdrawal removes, per prefix and path id): one line per
 * route, the TTL of the packet that carried it, AS_PATH (ASNs joined), NEXT_HOP, LOCAL_PREF
 * (empty: none) and the prefix, as tshark decodes them
 */
function realAnnounced(pcap: string, src: string, dst: string): string[] {
  const r = run([
    'tshark',
    '-r',
    pcap,
    '-Y',
    `bgp && ip.src == ${src} && ip.dst == ${dst}`,
    '-T',
    'json',
    '--no-duplicate-keys',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const table = new Map<string, string>();
  for (const pkt of JSON.parse(r.stdout) as { _source: { layers: Record<string, unknown> } }[]) {
    const ttl = values(pkt._source.layers.ip, 'ip.ttl')[0];
    const bgp = pkt._source.layers.bgp;
    for (const m of Array.isArray(bgp) ? bgp : [bgp]) {
      const type = values(m, 'bgp.type')[0];
      if (type === '1') table.clear();
      if (type !== '2') continue;
      const key = (x: Record<string, unknown>, field: string) =>
        `${String(x[field])}/${String(x['bgp.prefix_length'])}#${String(x['bgp.nlri_path_id'])}`;
      for (const w of holders(m, 'bgp.withdrawn_prefix')) table.delete(key(w, 'bgp.withdrawn_prefix'));
      const path = values(m, 'bgp.update.path_attribute.as_path_segment.as4').join(',');
      const nh = values(m, 'bgp.update.path_attribute.next_hop').join(',');
      const lp = values(m, 'bgp.update.path_attribute.local_pref').join(',');
      for (const n of holders(m, 'bgp.nlri_prefix'))
        table.set(
          key(n, 'bgp.nlri_prefix'),
          [ttl, path, nh, lp, `${String(n['bgp.nlri_prefix'])}/${String(n['bgp.prefix_length'])}`].join('\t'),
        );
    }
  }
  return [...table.values()];
}

test(
  'eBGP between nodes on real BIRD: the routes BIRD installs are the model’s; the UPDATEs carry the model’s AS_PATH and NEXT_HOP, TTL 1',
  { skip, timeout: 60_000 },
  async () => {
    const c = model('s10ebgp');
    labDown(c);
    let st: LabState | undefined;
    const dir = mkdtempSync(join(process.env.PODWALK_KEEP_CAPTURE ?? tmpdir(), 'pw-ebgp-cap-'));
    try {
      st = await labUp(c);
      // `show route all` too: the AS_PATH, NEXT_HOP and LOCAL_PREF of every route in BIRD's table
      await birdLabAgrees(c, st, { dir: FIXTURES, cluster: 'test/fixtures/ebgp/ebgp-cluster.yaml' }, [
        'show protocols',
        'show route',
        'show route all',
      ]);
      const pcap = join(dir, 'node3.pcap');
      const dump = spawn(
        'ip',
        ['netns', 'exec', labNs(st, 'node3'), 'tcpdump', '-i', 'eth0', '-U', '-w', pcap, 'tcp port 179'],
        { stdio: 'ignore' },
      );
      try {
        await pause(1000);
        const b = st.birds!.find((x) => x.netns === 'node3')!;
        const r = labExec(st, 'node3', ['birdc', '-s', b.ctl, 'restart', 'Mesh_192_168_1_10']);
        assert.equal(r.code, 0, r.stderr);
        // the session comes back (node3 connects after its connect delay): each side has sent its
        // whole table once its End-of-RIB (an empty UPDATE, 23 octets) is in the capture
        const eor = (src: string, dst: string) =>
          run([
            'tshark',
            '-r',
            pcap,
            '-Y',
            `bgp.type == 2 && bgp.length == 23 && ip.src == ${src} && ip.dst == ${dst}`,
          ]).stdout.trim() !== '';
        const until = Date.now() + 20_000;
        while (!(eor('192.168.1.10', '192.168.1.12') && eor('192.168.1.12', '192.168.1.10'))) {
          assert.ok(Date.now() < until, 'no End-of-RIB from both sides within 20 s');
          await pause(250);
        }
        await birdLabSettles(c, st, { limitMs: 10_000 });
      } finally {
        dump.kill('SIGINT');
        await new Promise((res) => dump.once('exit', res));
      }
      const expert = run(['tshark', '-r', pcap, '-Y', '_ws.malformed || _ws.expert.severity >= error']);
      assert.equal(expert.code, 0, expert.stderr);
      assert.equal(expert.stdout, '', 'tshark found malformed or erroneous packets');
      // what the model's speakers sent over the session (their own blocks, then what they pass
      // on: the Adj-RIB-Out), as tshark prints it; the receiver drops what loops (its own AS in
      // AS_PATH), the sender does not hold it back
      for (const [node, peer, src] of [
        ['node3', '192.168.1.10', '192.168.1.12'],
        ['node1', '192.168.1.12', '192.168.1.10'],
      ] as const) {
        const p = c.bgp!.session(node, peer)!.peer;
        const line = (prefix: string, attrs: BgpAttr[]) => {
          const path = attrs.find((a) => a.kind === 'as-path');
          const nh = attrs.find((a) => a.kind === 'next-hop');
          const lp = attrs.find((a) => a.kind === 'local-pref');
          return [
            p.config.direct ? '1' : '64',
            path?.kind === 'as-path' ? path.segments.flatMap((g) => g.asns).join(',') : '',
            nh?.kind === 'next-hop' ? nh.nextHop : '',
            lp?.kind === 'local-pref' ? lp.localPref : '',
            prefix,
          ].join('\t');
        };
        const sim = [
          ...p.config.originates.map((prefix) => line(prefix, ownAttrs(p))),
          ...[...(p.adjOut?.values() ?? [])].map((r) => line(r.prefix, r.attrs)),
        ];
        const real = realAnnounced(pcap, src, peer);
        assert.ok(real.length > 0, `${src}: no UPDATE with NLRI in the capture`);
        assert.deepEqual(real.sort(), sim.sort(), `${node} to ${peer}`);
      }
    } finally {
      labDown(c);
      if (!process.env.PODWALK_KEEP_CAPTURE) rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  'a direct eBGP mesh session toward a node behind the router: real BIRD waits for it as the model does, birdc and ip route equal',
  { skip, timeout: 60_000 },
  async () => {
    // the same cluster with node3 on a second subnet behind the router: no multihop in the mesh,
    // so node1's and node2's sessions with node3 (and node3's with them) never start
    const text = readFileSync(EBGP_CLUSTER, 'utf8')
      .replace(
        'nodes:\n',
        'subnets:\n  - { name: lan0, cidr: 192.168.1.0/24, gateway: 192.168.1.1 }\n  - { name: lan1, cidr: 192.168.2.0/24, gateway: 192.168.2.1 }\nnodes:\n',
      )
      .replace('ip: 192.168.1.12/24', 'ip: 192.168.2.12/24');
    const spec = loadCluster(text, EBGP_CLUSTER);
    spec.name = 's10ebgp2';
    const c = buildCluster(spec, 'calico-bgp');
    assert.equal(c.bgp!.session('node1', '192.168.2.12')!.peer.state, 'Idle');
    labDown(c);
    try {
      const st = await labUp(c);
      await birdLabSettles(c, st, { limitMs: 5_000 });
    } finally {
      labDown(c);
    }
  },
);
