/**
 * A process's TCP stream (src/kernel/sockets.ts write): the send buffer the kernel gives an
 * established connection (sk_sndbuf after tcp_sndbuf_expand, held to the real kernel's
 * SO_SNDBUF: test/fixtures/tcp/sndbuf.json, recorded by scripts/record-sndbuf.sh), write()
 * refused once the buffer is full, Nagle's algorithm filling segments with what was written while
 * data is in flight, and the writer told when the ACKs free the buffer. On the seed cluster's BGP
 * sessions (calico-bgp), whose BIRDs read what arrives.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { seedCluster } from '../src/cluster/seed.ts';
import { prepareCluster } from '../src/tools/index.ts';
import { runUntil } from '../src/trace/exchange.ts';
import { emitBgp } from '../src/wire/bgp.ts';
import { parseFrame } from '../src/wire/packet.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const real = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/tcp/sndbuf.json'), 'utf8')) as {
  congestionControl: string;
  mtu: number;
  sndbufEstablished: number;
};

test('the send buffer is the real kernel’s; a full one refuses writes; Nagle fills segments; ACKs make it writable', () => {
  const c = prepareCluster(seedCluster(), 'calico-bgp');
  const sp = c.bgp!.all().find((s) => s.node === 'node1' && s.peerNode === 'node2')!;
  const conn = sp.conn!;
  const ns = c.world.ns('node1');
  // the same path as the recording: MTU 1500 (MSS 1460) and the recorded kernel's bbr
  assert.equal(real.congestionControl, 'bbr');
  assert.equal(conn.mss, real.mtu - 40);
  assert.ok(c.sockets.writable(conn));
  assert.equal(conn.sndbuf, real.sndbufEstablished);
  // write KEEPALIVEs (19 octets) until write() refuses one: accepted while less than the buffer
  // is queued, so ceil(69,120 / 19) = 3,638 of them
  const ka = emitBgp({ kind: 'keepalive' });
  let n = 0;
  while (c.sockets.write(ns, conn, ka)) n++;
  assert.equal(n, Math.ceil(real.sndbufEstablished / ka.length));
  assert.equal(conn.nospace, true);
  c.world.captures.length = 0;
  const peer = c.bgp!.all().find((s) => s.node === 'node2' && s.peerNode === 'node1')!;
  const holdBefore = peer.peer.holdAt!;
  runUntil(c, c.world.now + 1_000_000, () => !c.stack.queue.length);
  // what node1 sent on the connection: the first KEEPALIVE alone (nothing was in flight), then
  // full segments of 1,448 octets (MSS 1460 less the timestamp option), then the rest once the
  // ACKs came (Nagle held it while data was unacknowledged)
  const sizes: number[] = [];
  for (const cap of c.world.captures) {
    if (cap.netns !== 'node1' || cap.dev !== 'eth0' || cap.dir !== 'out') continue;
    const f = parseFrame(cap.frame);
    if (f.payload.kind !== 'ipv4' || f.payload.payload.kind !== 'tcp') continue;
    const t = f.payload.payload;
    if (t.tcp.srcPort === conn.lport && t.tcp.dstPort === conn.rport && t.data.length)
      sizes.push(t.data.length);
  }
  const total = n * ka.length;
  const full = Math.floor((total - ka.length) / 1448);
  assert.deepEqual(sizes, [ka.length, ...Array<number>(full).fill(1448), total - ka.length - full * 1448]);
  // everything acknowledged: the buffer is empty and the writer was told (SOCK_NOSPACE cleared)
  assert.equal(conn.sndUna, conn.sndNxt);
  assert.equal(conn.unsentBytes, 0);
  assert.equal(conn.nospace, false);
  // node2's BIRD read every KEEPALIVE: its hold timer restarted, the session is up
  assert.equal(peer.peer.state, 'Established');
  assert.ok(peer.peer.holdAt! > holdBefore);
});
