/**
 * The BGP mesh's indexes (session by pair, a speaker's peers, its learned routes) against the plain
 * definition: every pair of speakers is one session, listed in speaker order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Mesh, type BgpSpeaker } from '../src/bgp/mesh.ts';
import { seededRandom } from '../src/kernel/world.ts';

test('session, peersOf and learned agree with a scan of every session', () => {
  const rnd = seededRandom(16);
  for (let n = 1; n <= 7; n++) {
    const speakers: BgpSpeaker[] = Array.from({ length: n }, (_, i) => ({
      node: `n${i}`,
      ip: `192.168.${1 + (i % 2)}.${10 + i}`,
      len: 24,
      originates: [`10.244.${i}.0/24`],
    }));
    const down: { a: string; b: string }[] = [];
    for (let i = 0; i < n; i++)
      for (let j = i + 1; j < n; j++)
        if (rnd() < 0.3) down.push(rnd() < 0.5 ? { a: `n${i}`, b: `n${j}` } : { a: `n${j}`, b: `n${i}` });
    const m = new Mesh(speakers, down);
    assert.equal(m.sessions.length, (n * (n - 1)) / 2);
    const scan = (a: string, b: string) =>
      m.sessions.find((s) => (s.a === a && s.b === b) || (s.a === b && s.b === a));
    for (const a of speakers)
      for (const b of speakers) {
        assert.equal(m.session(a.node, b.node), scan(a.node, b.node), `${a.node} ${b.node}`);
        const isDown = down.some(
          (d) => (d.a === a.node && d.b === b.node) || (d.a === b.node && d.b === a.node),
        );
        if (a !== b) assert.equal(m.session(a.node, b.node)!.state, isDown ? 'Active' : 'Established');
      }
    for (const a of speakers) {
      const peers = m.sessions
        .filter((s) => s.a === a.node || s.b === a.node)
        .map((s) => ({ peer: speakers.find((p) => p.node === (s.a === a.node ? s.b : s.a))!, session: s }));
      assert.deepEqual(
        m.peersOf(a.node).map(({ peer, session }) => ({ peer, session })),
        peers,
      );
      assert.deepEqual(
        m.learned(a.node),
        peers
          .filter((p) => p.session.state === 'Established')
          .map(({ peer }) => ({
            prefix: peer.originates[0],
            nextHop: peer.ip,
            from: peer.node,
            proto: `Mesh_${peer.ip.split('.').join('_')}`,
            direct: peer.ip.split('.')[2] === a.ip.split('.')[2],
            // iBGP: an empty AS_PATH (no origin AS), ORIGIN IGP
            origin: 'i',
          })),
      );
    }
    assert.equal(m.session('n0', 'nope'), undefined);
    assert.deepEqual(m.peersOf('nope'), []);
  }
});
