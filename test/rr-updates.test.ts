/**
 * How the model's BIRDs pack routes into UPDATE messages and messages into TCP segments, held to
 * real BIRD 2 on the same topology (test/fixtures/rr/rr-pack.yaml: two route reflectors, clients
 * originating several /30 blocks). The golden, test/fixtures/rr/updates.json, is real BIRD's
 * traffic captured in the lab by scripts/record-bird-updates.ts (every BIRD restarted under the
 * capture: each session from its SYN), read by test/bgp-updates.ts; the model's is its own build's
 * traffic, captured on each node's eth0 (bgpWalk 'recorded'), read by the same code.
 *
 * What must agree, per session direction: the UPDATEs (routes withdrawn and announced in each, as
 * a multiset: the order in which a reflector learns its clients' routes is the lab's timing, not
 * BIRD's rule), one End-of-RIB, the OPEN first and a KEEPALIVE; every route goes in the UPDATE of
 * its attribute set (a client's blocks in one, a reflected originator's in one). tshark found none
 * of real BIRD's frames malformed, nor of the model's (the last test).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster } from '../src/cni/build.ts';
import { parseFrame } from '../src/wire/packet.ts';
import type { Frame } from '../src/wire/types.ts';
import { writePcap, type PcapRecord } from '../src/wire/pcap.ts';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { bgpStreamSummary, type StreamSummary } from './bgp-updates.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const CLUSTER = join(ROOT, 'test/fixtures/rr/rr-pack.yaml');
const golden = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/rr/updates.json'), 'utf8')) as {
  tsharkMalformed: number;
  sessions: Record<string, StreamSummary>;
};

/** the frames every node sent on its eth0 while the model's build converged */
let sent: PcapRecord[] = [];

function modelSessions(): Record<string, StreamSummary> {
  const spec = loadCluster(readFileSync(CLUSTER, 'utf8'), CLUSTER);
  const frames: Frame[] = [];
  buildCluster(spec, 'calico-bgp', {
    bgpWalk: 'recorded',
    converged: (c) => {
      sent = [];
      for (const cap of c.world.captures)
        if (cap.dir === 'out' && cap.dev === 'eth0' && c.nodes.some((n) => n.name === cap.netns)) {
          frames.push(parseFrame(cap.frame));
          sent.push({ tsSec: Math.floor(cap.time / 1e6), tsUsec: cap.time % 1e6, frame: cap.frame });
        }
      assert.ok(frames.length > 0, 'the build captured its BGP traffic');
      sessions = bgpStreamSummary(frames, c.nodes);
    },
  });
  return sessions;
}
let sessions: Record<string, StreamSummary> = {};

/** what must agree: OPEN and KEEPALIVE first, one End-of-RIB, the UPDATEs as a sorted multiset */
const shape = (s: StreamSummary) => ({
  opens: s.messages.slice(0, 2),
  endOfRib: s.messages.filter((m) => m === 'E').length,
  updates: s.messages.filter((m) => m.startsWith('U')).sort(),
  others: s.messages.slice(2).filter((m) => m !== 'E' && !m.startsWith('U') && m !== 'K'),
});

/**
 * per session direction, the connection that carried the session (its End-of-RIB); the others
 * must have carried no UPDATE: in the model every BIRD starts at the same instant and both sides
 * of a reflector session connect at once, and the collision (RFC 4271 6.8) closes one connection
 * after its OPEN; the lab's BIRDs start one after the other and the second finds the first's
 * connection already there
 */
function established(all: Record<string, StreamSummary>): Record<string, StreamSummary> {
  const out: Record<string, StreamSummary> = {};
  for (const [k, s] of Object.entries(all)) {
    const base = k.split('#')[0];
    if (s.messages.includes('E')) {
      assert.equal(out[base], undefined, `${base}: two connections carried the session`);
      out[base] = s;
    } else
      assert.deepEqual(
        s.messages.filter((m) => m.startsWith('U')),
        [],
        `${k}: UPDATEs on a connection that lost`,
      );
  }
  return out;
}

test('the model packs UPDATEs as real BIRD does on the route-reflector lab topology', () => {
  const model = established(modelSessions());
  assert.equal(golden.tsharkMalformed, 0);
  assert.deepEqual(Object.keys(model).sort(), Object.keys(golden.sessions).sort());
  for (const k of Object.keys(golden.sessions))
    assert.deepEqual(shape(model[k]), shape(golden.sessions[k]), `${k}: the UPDATEs real BIRD sent`);
});

test('the model fills no segment past the MSS and begins every session with its own segments', () => {
  const model = established(modelSessions());
  for (const [k, s] of Object.entries(model)) {
    for (const [octets] of s.segments) assert.ok(octets <= 1448, `${k}: a segment of ${octets} octets`);
    // the OPEN leaves alone (nothing is in flight), as real BIRD's does
    assert.deepEqual(s.segments[0], golden.sessions[k].segments[0], `${k}: the OPEN's segment`);
  }
});

const noTshark = (() => {
  try {
    execFileSync('tshark', ['--version'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'tshark not installed: apt-get install tshark';
  }
})();

test(
  'tshark decodes the model’s BGP streams, several messages to a segment, without an error',
  { skip: noTshark },
  () => {
    const all = Object.values(modelSessions());
    // the model put several messages in one segment somewhere (Nagle), as real BIRD's node1 → node2
    assert.ok(
      all.some((s) => s.segments.some(([, n]) => n > 1)),
      'a segment carrying more than one message',
    );
    const dir = mkdtempSync(join(tmpdir(), 'pw-rrupd-'));
    try {
      const file = join(dir, 'model.pcap');
      writeFileSync(file, writePcap(sent));
      const tshark = (filter: string, field: string) =>
        execFileSync('tshark', ['-r', file, '-Y', filter, '-T', 'fields', '-e', field], { encoding: 'utf8' })
          .split('\n')
          .filter(Boolean);
      const types = tshark('bgp', 'bgp.type').flatMap((l) => l.split(','));
      assert.equal(
        types.length,
        all.reduce((n, s) => n + s.messages.length, 0),
        'tshark finds every BGP message the stream reader finds',
      );
      assert.deepEqual(tshark('_ws.malformed || _ws.expert.severity >= error', 'frame.number'), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
