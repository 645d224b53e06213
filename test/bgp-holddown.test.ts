/**
 * A node of Calico's mesh gone silent (its eth0 down: no FIN, no RST, no NOTIFICATION) on the model,
 * against what real BIRD 2.0.12 did in the lab (test/golden/bgp/holddown.json, recorded by
 * scripts/record-bgp-holddown.ts on scenarios/host-gw-across-subnets.yaml: node3 silent, node1 and
 * node2 its peers).
 *
 * BIRD draws every timer it starts below its value (bgp_start_timer: RFC 4271's jitter, up to a
 * quarter off), so the real hold timer runs out 180 to 240 s after the last message heard, at a
 * moment the model's clock (the full 240 s) cannot hit by itself. The recording read each session's
 * hold timer (`birdc show protocols all`) just after the link went down; for each session the model
 * takes the fault at the moment its own hold timer has that much left, and then the session's
 * `birdc show protocols` row, and for a survivor its `ip route` and `birdc show route`, go through
 * the states the recording saw, in the same order, at the same times (to the second: the recording
 * reads every half second), BIRD's startup and connect delays within their jitter; the Since column
 * to the second against the recording's clock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { runCommand } from '../src/tools/index.ts';
import { runUntil } from '../src/trace/exchange.ts';
import { maskTimes } from './bird-lab.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const SEC = 1_000_000;

interface Snapshot {
  t: number;
  outputs: Record<string, string>;
  timers: Record<string, { t: number; out: string }>;
}
const golden = JSON.parse(readFileSync(join(ROOT, 'test/golden/bgp/holddown.json'), 'utf8')) as {
  bird: string;
  cluster: string;
  mode: 'calico-bgp';
  fault: string;
  clock: string;
  before: Snapshot;
  after: Snapshot[];
};

/** BIRD's clock (HH:MM:SS.mmm) in seconds */
const clockSec = (s: string) => {
  const [h, m, rest] = s.split(':');
  return Number(h) * 3600 + Number(m) * 60 + Number(rest);
};

function build(): Cluster {
  const file = join(ROOT, golden.cluster);
  const spec = loadCluster(readFileSync(file, 'utf8'), file);
  spec.name = 's10hold';
  return buildCluster(spec, golden.mode);
}

/** a protocol's row of `birdc show protocols` */
const row = (out: string, proto: string) => out.split('\n').find((l) => l.startsWith(`${proto} `)) ?? '';

/** the networks a session brought its node before the fault (BIRD's table) */
const brought = (node: string, proto: string) =>
  golden.before.outputs[`${node}: birdc show route`]
    .split('\n')
    .filter((l) => l.includes(`[${proto} `))
    .map((l) => l.split(' ')[0]);

/**
 * what one session shows on its node: its row, and the routes it brings: on a survivor its whole
 * `ip route` and `birdc show route` (its other session stays up), on the silent node (whose two
 * sessions end at moments of their own) the lines of the networks this one brought
 */
function view(outputs: (cmd: string) => string, node: string, proto: string, survivor: boolean): string {
  const parts = [row(outputs('birdc show protocols'), proto)];
  if (survivor) parts.push(outputs('ip route'), outputs('birdc show route'));
  else {
    const nets = brought(node, proto);
    const mine = (l: string) => nets.some((n) => l.startsWith(`${n} `) || l.includes(` ${n} `));
    parts.push(
      ...outputs('ip route').split('\n').filter(mine),
      ...outputs('birdc show route').split('\n').filter(mine),
    );
  }
  return maskTimes(parts.join('\n'));
}

const [faultNode, faultCmd] = golden.fault.split(': ');
const sessions = Object.keys(golden.after[0].timers).map((k) => {
  const [node, rest] = k.split(': ');
  return { key: k, node, proto: rest.split(' ').at(-1)! };
});

test('the recording: BIRD 2.0.12, node3 silent, every session read', () => {
  assert.match(golden.bird, /^BIRD version 2\.0\.12$/);
  assert.equal(golden.fault, 'node3: ip link set eth0 down');
  assert.deepEqual(
    sessions.map((s) => `${s.node} ${s.proto}`),
    [
      'node1 Mesh_192_168_2_12',
      'node2 Mesh_192_168_2_12',
      'node3 Mesh_192_168_1_10',
      'node3 Mesh_192_168_1_11',
    ],
  );
});

test(`${golden.fault}: at once, what every node's kernel and BIRD hold is what real BIRD's did (the silent node's routes unreachable)`, () => {
  const c = build();
  assert.deepEqual(runCommand(c, faultNode, faultCmd), { stdout: '', stderr: '', code: 0 });
  const first = golden.after[0].outputs;
  for (const [k, real] of Object.entries(first)) {
    const [node, cmd] = k.split(': ');
    assert.equal(maskTimes(runCommand(c, node, cmd).stdout), maskTimes(real), k);
  }
  assert.match(first['node3: ip route'], /^unreachable 10\.244\.0\.0\/26 proto bird $/m);
});

for (const s of sessions) {
  const survivor = s.node !== faultNode;
  test(`${s.node}'s ${s.proto} when ${golden.fault}: its hold timer runs out, no graceful restart; the same states as real BIRD at the same times`, () => {
    const read = golden.after[0].timers[s.key];
    const m = /Hold timer: +([\d.]+)\/240\n/.exec(read.out);
    assert.ok(m, `${s.key}: the hold timer`);
    // the real hold timer runs out this long after the link went down
    const expiry = read.t + Number(m[1]);

    // the real states of the session, each from when it was first seen
    const real: { t: number; v: string }[] = [];
    for (const snap of golden.after) {
      const v = view((cmd) => snap.outputs[`${s.node}: ${cmd}`], s.node, s.proto, survivor);
      if (real.at(-1)?.v !== v) real.push({ t: snap.t, v });
    }

    // the model: the fault when this session's hold timer has as long left
    const c = build();
    const peerIp = s.proto.slice('Mesh_'.length).split('_').join('.');
    const sp = c.bgp!.session(s.node, peerIp)!;
    assert.equal(sp.peer.state, 'Established');
    // no message from the peer may reach it before the fault: past each KEEPALIVE that would
    // (it restarts the hold timer), until the fault comes before the next one
    const back = c.bgp!.all().find((x) => x.node === sp.peerNode && x.peerNode === s.node)!;
    let faultAt = sp.peer.holdAt! - Math.round(expiry * SEC);
    for (let i = 0; faultAt < c.world.now || back.peer.keepaliveAt! <= faultAt; i++) {
      assert.ok(i < 5, `the model's hold timer never has ${expiry} s left before a KEEPALIVE`);
      runUntil(c, back.peer.keepaliveAt! + 1000);
      faultAt = sp.peer.holdAt! - Math.round(expiry * SEC);
    }
    runUntil(c, faultAt);
    assert.deepEqual(runCommand(c, faultNode, faultCmd), { stdout: '', stderr: '', code: 0 });
    const model: { t: number; v: string; since: string }[] = [];
    // every 50 ms until a little after BIRD's last change, then where the recording ends
    const end = golden.after.at(-1)!.t;
    const times = [];
    for (let ms = 0; ms <= (real.at(-1)!.t + 5) * 1000; ms += 50) times.push(ms);
    times.push(Math.round(end * 1000));
    for (const ms of times) {
      runUntil(c, faultAt + ms * 1000);
      const out = (cmd: string) => runCommand(c, s.node, cmd).stdout;
      const v = view(out, s.node, s.proto, survivor);
      if (model.at(-1)?.v !== v)
        model.push({ t: ms / 1000, v, since: row(out('birdc show protocols'), s.proto) });
    }

    // the same states in the same order
    assert.deepEqual(
      model.map((x) => x.v),
      real.map((x) => x.v),
    );
    // (a hold timer that outlasts the recording: up all along, on both)
    if (expiry > end) return;
    // the first change is the hold timer's, at its time (no graceful restart: the routes go with it)
    assert.match(model[1].v, /Idle +BGP Error: Hold timer expired/);
    assert.ok(Math.abs(model[1].t - expiry) <= 0.05, `model: ${model[1].t} s, the hold timer: ${expiry} s`);
    assert.ok(
      real[1].t >= expiry - 0.05 && real[1].t <= expiry + 1,
      `BIRD: ${real[1].t} s, its hold timer: ${expiry} s`,
    );
    // then BIRD's startup delay (error wait time 5 s) and connect delay (2 s), each drawn between
    // three quarters of it and all of it; the model waits all of it
    for (let i = 2; i < model.length; i++) {
      const want = model[i].t - model[i - 1].t;
      const got = real[i].t - real[i - 1].t;
      assert.ok(
        got >= want * 0.75 - 1 && got <= want + 1,
        `${s.key}: change ${i} ${got} s after the one before on BIRD, ${want} s on the model`,
      );
    }
    // the Since column: when the protocol went down (at the hold timer), not moved by the delays
    const sinceOf = (r: string) => /\b(\d\d:\d\d:\d\d\.\d\d\d)\b/.exec(r)![1];
    for (let i = 1; i < model.length; i++) {
      const realSince =
        clockSec(
          sinceOf(
            row(
              golden.after.find((x) => x.t === real[i].t)!.outputs[`${s.node}: birdc show protocols`],
              s.proto,
            ),
          ),
        ) - clockSec(golden.clock);
      const modelSince = clockSec(sinceOf(model[i].since)) - faultAt / SEC;
      assert.ok(
        Math.abs(realSince - modelSince) <= 1,
        `${s.key}: Since ${realSince} s after the fault on BIRD, ${modelSince} s on the model`,
      );
    }
  });
}
