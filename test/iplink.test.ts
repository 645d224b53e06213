/**
 * The emulated `ip link add/del` (veth, bridge, vxlan) against the real iproute2 6.1 on this
 * kernel, command by command in a fresh namespace: the same stdout, stderr and exit status
 * (test/fixtures/iplink/real.txt, recorded by scripts/record-iplink.sh). The model's namespace
 * is made through the same netlink API (netnsAdd brings lo up, as the lab does; the recording's
 * lo stays down, which no command here looks at).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { seedCluster } from '../src/cluster/seed.ts';
import { buildCluster } from '../src/cni/build.ts';
import { netnsAdd } from '../src/kernel/netlink.ts';
import { runCommand } from '../src/tools/index.ts';

const REAL = readFileSync(new URL('./fixtures/iplink/real.txt', import.meta.url), 'utf8');

/** the recording as namespaces of commands with what the real ip printed (stdout and stderr together) and its exit status */
function sections(): { cmd: string; out: string; code: number }[][] {
  return REAL.split(/^# namespace \d+\n/m)
    .slice(1)
    .map((sec) =>
      sec
        .split(/^\$ /m)
        .slice(1)
        .map((block) => {
          const lines = block.split('\n');
          const rc = lines.findIndex((l) => l.startsWith('rc='));
          return {
            cmd: lines[0],
            out: lines
              .slice(1, rc)
              .map((l) => l + '\n')
              .join(''),
            code: Number(lines[rc].slice(3)),
          };
        }),
    );
}

/** commands the model answers differently, and why */
const NOT_EMULATED: Record<string, string> = {
  'ip link add vx5 type vxlan id 5 remote 10.0.0.2 dstport 4789':
    'vxlan remote (the default destination FDB entry) is not modelled: says so',
  'ip link add vx6 type vxlan id 6 local 10.0.0.1 remote 10.0.0.2 dstport 4789': 'vxlan remote, as above',
  'ip link add x type dummy': 'no dummy devices in the model (nor in this kernel): says not emulated',
};

test('ip link add/del: veth, bridge and vxlan with the kernel checks, as the real ip answers', () => {
  const all = sections();
  assert.equal(all.length, 2);
  for (const sec of all) {
    const c = buildCluster(seedCluster(), 'flannel-vxlan');
    netnsAdd(c.world, 'x', 'pod');
    for (const s of sec) {
      const r = runCommand(c, 'x', s.cmd);
      if (s.cmd in NOT_EMULATED) {
        assert.equal(r.code, 2, s.cmd);
        assert.match(r.stderr, /is not emulated/);
        continue;
      }
      assert.equal(r.stdout + r.stderr, s.out, s.cmd);
      assert.equal(r.code, s.code, s.cmd);
    }
  }
});

test('ip link del: the routes and neighbours of the device go; a bridge releases its ports', () => {
  const c = buildCluster(seedCluster(), 'flannel-vxlan');
  assert.equal(runCommand(c, 'node1', 'ip link del cni0').code, 0);
  assert.equal(runCommand(c, 'node1', 'ip route show dev cni0').code, 1);
  assert.doesNotMatch(runCommand(c, 'node1', 'ip route').stdout, /cni0/);
  assert.doesNotMatch(runCommand(c, 'node1', 'ip link show veth-pod-a').stdout, /master/);
  // a veth takes its peer in the other namespace with it
  assert.equal(runCommand(c, 'node1', 'ip link del veth-pod-a').code, 0);
  assert.equal(runCommand(c, 'pod-a', 'ip link show eth0').stderr, 'Device "eth0" does not exist.\n');
  // deleting the underlay takes the VXLAN device over it
  assert.equal(runCommand(c, 'node1', 'ip link del eth0').code, 0);
  assert.equal(runCommand(c, 'node1', 'ip link show flannel.1').code, 1);
});

test("a veth end has every other device's first fields, in their order, then its peer (netlink.ts makes it by a literal of its own)", () => {
  // (a field out of order would change what a spread, a snapshot or a template's copy of it gives)
  const c = buildCluster(seedCluster(), 'flannel-vxlan');
  const ns = c.world.ns('pod-a');
  const lo = Object.keys(ns.links.get('lo')!);
  const veth = Object.keys(ns.links.get('eth0')!);
  assert.equal(ns.links.get('eth0')!.type, 'veth');
  assert.deepEqual(veth, [...lo, 'peer']);
});
