/**
 * BIRD's sessions over the modelled datapath (src/bgp/session.ts): each mesh session is a TCP
 * connection of the model's kernel to port 179, opened by the higher address (Calico's template
 * makes the mesh unidirectional), whose BGP messages are segments walked through both nodes; a DROP
 * of tcp/179 keeps the sessions up until the hold time (BIRD's default 240 s, which Calico's
 * template keeps) runs out, then they go down and BIRD withdraws their routes from the kernel.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seedCluster } from '../src/cluster/seed.ts';
import { prepareCluster, runCommand } from '../src/tools/index.ts';
import { runUntil } from '../src/trace/exchange.ts';
import { walk, walkOk } from '../src/trace/walk.ts';
import { BGP_ERROR } from '../src/wire/bgp.ts';
import type { Cluster } from '../src/cni/build.ts';
import { runChecks } from '../src/diagnose/checks.ts';
import { loadCluster } from '../src/cluster/load.ts';

const SEC = 1_000_000;
const ip = (c: Cluster, node: string, cmd: string) => runCommand(c, node, cmd).stdout;
const state = (c: Cluster, node: string, peer: string) =>
  c.bgp!.all().find((s) => s.node === node && s.peerNode === peer)!.peer;

test('every mesh session is a TCP connection of the model to port 179, opened by the higher address', () => {
  const c = prepareCluster(seedCluster(), 'calico-bgp');
  for (const s of c.bgp!.all()) {
    assert.equal(s.peer.state, 'Established', `${s.node} → ${s.peerNode}`);
    assert.ok(s.peer.eorIn, `${s.node} has ${s.peerNode}'s End-of-RIB`);
    // OPEN, KEEPALIVE, the UPDATE of its block, End-of-RIB
    assert.equal(s.sent, 4, `${s.node} → ${s.peerNode}: messages sent`);
    assert.equal(s.connects, s.peer.config.passive ? 0 : 1, `${s.node} → ${s.peerNode}: connect()s`);
  }
  // node1 (192.168.1.10) is passive toward both peers: both connected to its port 179
  const ss1 = ip(c, 'node1', 'ss -tan');
  assert.match(ss1, /LISTEN +0 +64 +0\.0\.0\.0:179 /);
  assert.match(ss1, /ESTAB +0 +0 +192\.168\.1\.10:179 +192\.168\.1\.11:\d+/);
  assert.match(ss1, /ESTAB +0 +0 +192\.168\.1\.10:179 +192\.168\.1\.12:\d+/);
  assert.match(ip(c, 'node3', 'ss -tan'), /ESTAB +0 +0 +192\.168\.1\.12:\d+ +192\.168\.1\.11:179/);
  assert.match(ip(c, 'node1', 'ip route'), /^10\.244\.1\.0\/26 via 192\.168\.1\.11 dev eth0 proto bird $/m);
  // what the sessions' segments left is cleared as lab up clears it: no neighbours, no counters
  assert.equal(ip(c, 'node1', 'ip neigh'), '');
  assert.doesNotMatch(ip(c, 'node1', 'nstat -a'), /TcpInSegs/);
});

test('a DROP of tcp/179 on node1: the sessions stay up for the hold time, then go down and their routes go', () => {
  const c = prepareCluster(seedCluster(), 'calico-bgp', [
    'node1: iptables -A INPUT -p tcp --dport 179 -j DROP',
  ]);
  const t0 = c.world.now;
  const cross = () => walkOk(walk(c, { from: 'pod-c', to: 'pod-b', proto: 'tcp', port: 8080 }));
  assert.ok(cross(), 'pod-c reaches pod-b while the sessions are up');
  runUntil(c, t0 + 239 * SEC);
  assert.equal(state(c, 'node1', 'node2').state, 'Established', 'before the hold time: still up');
  assert.match(ip(c, 'node2', 'ip route'), /^10\.244\.0\.0\/26 via 192\.168\.1\.10 /m);
  runUntil(c, t0 + 241 * SEC);
  for (const peer of ['node2', 'node3']) {
    const p = state(c, 'node1', peer);
    assert.notEqual(p.state, 'Established', `node1 → ${peer}`);
    // node1 heard nothing from its peers (their segments to its port 179 dropped): its hold timer
    assert.deepEqual(p.lastNotification, { code: BGP_ERROR.HOLD_TIMER_EXPIRED, subcode: 0, sent: true });
    // the NOTIFICATION leaves from port 179, which the rule lets out: the peer drops the session too
    const q = state(c, peer, 'node1');
    assert.deepEqual(q.lastNotification, { code: BGP_ERROR.HOLD_TIMER_EXPIRED, subcode: 0, sent: false });
    assert.doesNotMatch(ip(c, peer, 'ip route'), /^10\.244\.0\.0\/26/m, `${peer} withdrew node1's block`);
  }
  assert.doesNotMatch(ip(c, 'node1', 'ip route'), /via .* proto bird/, "node1 withdrew its peers' blocks");
  assert.equal(state(c, 'node2', 'node3').state, 'Established', 'the node2-node3 session is not touched');
  assert.ok(!cross(), 'pod-c no longer reaches pod-b: node3 has no route to its block');
  assert.match(ip(c, 'node1', 'iptables -L INPUT -v -n'), /^ +[1-9]\d* +\d+ DROP +6 /m);
  // (rule #2: felix's jump to cali-INPUT is INPUT's first rule)
  // doctor's check names the rule that keeps the sessions down (Idle: BIRD's startup delay, 5 s
  // after the error, has not run out yet)
  const found = runChecks(c)
    .flatMap((r) => r.findings)
    .filter((f) => f.check === 'bgp-session')
    .map((f) => f.message);
  assert.deepEqual(found, [
    "BGP session node1 ↔ node2 is Idle (TCP 179 from node2 to node1: dropped by rule INPUT #2: -A INPUT -p tcp -m tcp --dport 179 -j DROP on node1): neither node has the other's pod routes",
    "BGP session node1 ↔ node3 is Idle (TCP 179 from node3 to node1: dropped by rule INPUT #2: -A INPUT -p tcp -m tcp --dport 179 -j DROP on node1): neither node has the other's pod routes",
  ]);
});

test("a peer's node down (its eth0 down): its peers' hold timers expire and they withdraw its block", () => {
  const c = prepareCluster(seedCluster(), 'calico-bgp', ['node3: ip link set eth0 down']);
  const t0 = c.world.now;
  runUntil(c, t0 + 239 * SEC);
  assert.equal(state(c, 'node1', 'node3').state, 'Established', 'before the hold time: still up');
  runUntil(c, t0 + 241 * SEC);
  for (const n of ['node1', 'node2']) {
    const p = state(c, n, 'node3');
    assert.notEqual(p.state, 'Established', `${n} → node3`);
    assert.deepEqual(p.lastNotification, { code: BGP_ERROR.HOLD_TIMER_EXPIRED, subcode: 0, sent: true });
    assert.doesNotMatch(ip(c, n, 'ip route'), /^10\.244\.2\.0\/26/m, `${n} withdrew node3's block`);
  }
  assert.equal(state(c, 'node1', 'node2').state, 'Established');
  assert.match(ip(c, 'node1', 'ip route'), /^10\.244\.1\.0\/26 via 192\.168\.1\.11 /m);
});

test("a peer's BIRD killed (pkill -9 bird): its FIN and no NOTIFICATION, so its peers keep its block for its restart time (graceful restart, 120 s); its own kernel keeps its routes", () => {
  const c = prepareCluster(seedCluster(), 'calico-bgp');
  const node1Before = ip(c, 'node1', 'ip route');
  const node3Before = ip(c, 'node3', 'ip route');
  assert.deepEqual(runCommand(c, 'node3', 'pkill -9 bird'), { stdout: '', stderr: '', code: 0 });
  const t0 = c.world.now;
  runUntil(c, t0 + 10 * SEC);
  for (const n of ['node1', 'node2']) {
    const p = state(c, n, 'node3');
    assert.notEqual(p.state, 'Established', `${n} → node3`);
    assert.equal(p.lastNotification, undefined, 'no NOTIFICATION either way');
    assert.match(ip(c, n, 'ip route'), /^10\.244\.2\.0\/26 via 192\.168\.1\.12 dev eth0 proto bird $/m, n);
  }
  assert.equal(ip(c, 'node1', 'ip route'), node1Before);
  // nobody removes what the killed BIRD installed; nothing answers on its control socket or port 179
  assert.equal(ip(c, 'node3', 'ip route'), node3Before);
  assert.deepEqual(runCommand(c, 'node3', 'birdc show protocols'), {
    stdout: '',
    stderr: 'Unable to connect to server control socket (/run/bird/bird.ctl): Connection refused\n',
    code: 1,
  });
  // (its connections, closed first on its side, wait in TIME-WAIT)
  assert.doesNotMatch(ip(c, 'node3', 'ss -tan'), /^LISTEN .*:179 /m);
  assert.match(ip(c, 'node3', 'ss -tan'), /^TIME-WAIT .* 192\.168\.1\.10:179 /m);
  assert.match(ip(c, 'node3', 'calicoctl node status'), /The BGP backend process \(BIRD\) is not running/);
  assert.equal(runCommand(c, 'node3', 'pkill -9 bird').code, 1, 'no BIRD left to kill');
  runUntil(c, t0 + 119 * SEC);
  assert.match(ip(c, 'node1', 'ip route'), /^10\.244\.2\.0\/26 /m, 'still within the restart time');
  runUntil(c, t0 + 121 * SEC);
  for (const n of ['node1', 'node2'])
    assert.doesNotMatch(ip(c, n, 'ip route'), /^10\.244\.2\.0\/26/m, `${n}: the restart timer expired`);
  assert.match(ip(c, 'node1', 'ip route'), /^10\.244\.1\.0\/26 via 192\.168\.1\.11 /m);
  // bad input: one line, exit 2
  for (const cmd of ['pkill -HUP bird', 'pkill -9 sshd', 'pkill -9'])
    assert.equal(runCommand(c, 'node1', cmd).code, 2, cmd);
  assert.match(
    runCommand(c, 'node1', 'pkill -HUP bird').stderr,
    /^podwalk: pkill: signal HUP: emulated are SIGKILL .* and SIGTERM /,
  );
});

for (const how of ['birdc down', 'pkill bird', 'pkill -TERM bird'])
  test(`a peer's BIRD shut down (${how}): a Cease on each session, so its peers flush its block at once and show why; its own kernel keeps its routes (persist)`, () => {
    const c = prepareCluster(seedCluster(), 'calico-bgp');
    const node3Before = ip(c, 'node3', 'ip route');
    const r = runCommand(c, 'node3', how);
    assert.deepEqual(
      r,
      how === 'birdc down'
        ? { stdout: 'BIRD 2.0.12 ready.\nShutdown requested\n', stderr: '', code: 0 }
        : { stdout: '', stderr: '', code: 0 },
    );
    // before any time passes: the NOTIFICATIONs were read as the command ran
    for (const n of ['node1', 'node2']) {
      assert.deepEqual(state(c, n, 'node3').lastNotification, { code: 6, subcode: 2, sent: false }, n);
      assert.doesNotMatch(ip(c, n, 'ip route'), /^10\.244\.2\.0\/26/m, n);
      // the lower addresses are passive toward node3: they wait, with the Cease as the last error
      assert.match(
        ip(c, n, 'birdc show protocols'),
        /^Mesh_192_168_1_12 BGP +--- +start +[\d:.]+ +Passive +Received: Administrative shutdown$/m,
      );
    }
    assert.equal(ip(c, 'node3', 'ip route'), node3Before);
    assert.deepEqual(runCommand(c, 'node3', 'birdc show protocols'), {
      stdout: '',
      stderr: 'Unable to connect to server control socket (/run/bird/bird.ctl): No such file or directory\n',
      code: 1,
    });
    assert.doesNotMatch(ip(c, 'node3', 'ss -tan'), /^LISTEN .*:179 /m);
    assert.match(ip(c, 'node3', 'calicoctl node status'), /The BGP backend process \(BIRD\) is not running/);
    assert.equal(runCommand(c, 'node3', 'pkill bird').code, 1, 'no BIRD left');
    runUntil(c, c.world.now + 200 * SEC);
    assert.match(
      ip(c, 'node1', 'birdc show protocols'),
      /^Mesh_192_168_1_12 BGP +--- +start +[\d:.]+ +Passive +Received: Administrative shutdown$/m,
    );
  });

test("a peer's BIRD restarting gracefully (birdc graceful restart): no NOTIFICATION, so its peers keep its block as stale for its restart time", () => {
  const c = prepareCluster(seedCluster(), 'calico-bgp');
  assert.deepEqual(runCommand(c, 'node3', 'birdc graceful restart'), {
    stdout: 'BIRD 2.0.12 ready.\nGraceful restart requested\n',
    stderr: '',
    code: 0,
  });
  const t0 = c.world.now;
  for (const n of ['node1', 'node2']) {
    assert.equal(state(c, n, 'node3').lastNotification, undefined, n);
    assert.match(ip(c, n, 'ip route'), /^10\.244\.2\.0\/26 via 192\.168\.1\.12 /m, n);
    assert.match(
      ip(c, n, 'birdc show protocols'),
      /^Mesh_192_168_1_12 BGP +--- +start +[\d:.]+ +Passive +Socket: Connection closed$/m,
    );
  }
  runUntil(c, t0 + 119 * SEC);
  assert.match(ip(c, 'node1', 'ip route'), /^10\.244\.2\.0\/26 /m, 'still within the restart time');
  runUntil(c, t0 + 121 * SEC);
  assert.doesNotMatch(ip(c, 'node1', 'ip route'), /^10\.244\.2\.0\/26/m, 'the restart timer expired');
  assert.match(
    runCommand(c, 'node3', 'birdc show route').stderr,
    /^Unable to connect to server control socket \(\/run\/bird\/bird\.ctl\): No such file or directory$/m,
  );
});

test('no route to the peer (two subnets, no router): the session stays down and doctor says why', () => {
  const yaml = `name: nogw
cni: calico-bgp
subnets:
  - { name: lan0, cidr: 10.0.1.0/24 }
  - { name: lan1, cidr: 10.0.2.0/24 }
nodes:
  - { name: n0, ip: 10.0.1.10/24, podCIDR: 10.244.0.0/24 }
  - { name: n1, ip: 10.0.1.11/24, podCIDR: 10.244.1.0/24 }
  - { name: n2, ip: 10.0.2.12/24, podCIDR: 10.244.2.0/24 }
pods:
  - { name: p0, node: n0 }
`;
  const c = prepareCluster(loadCluster(yaml, 'nogw.yaml'), 'calico-bgp');
  assert.equal(state(c, 'n0', 'n1').state, 'Established', 'n0 and n1 share lan0');
  // n2 connects to both (the higher address): connect() fails at once, Idle, Active for the delay
  assert.equal(state(c, 'n2', 'n0').state, 'Active');
  assert.equal(state(c, 'n0', 'n2').state, 'Active', 'n0 waits for n2 (passive)');
  assert.deepEqual(
    runChecks(c)
      .flatMap((r) => r.findings)
      .filter((f) => f.check === 'bgp-session')
      .map((f) => f.message),
    ['n0', 'n1'].map(
      (n, i) =>
        `BGP session ${n} ↔ n2 is Active (TCP 179 from n2 to ${n}: no route to 10.0.1.1${i}: connect() fails with ENETUNREACH on n2): neither node has the other's pod routes`,
    ),
  );
});
