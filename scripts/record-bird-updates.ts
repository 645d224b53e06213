/**
 * Records how real BIRD 2 packs routes into UPDATE messages and its messages into TCP segments,
 * on test/fixtures/rr/rr-pack.yaml (two route reflectors, clients originating several /30 blocks),
 * for test/rr-updates.test.ts. Needs root, namespaces and bird2; run it alone:
 *
 *   flock /tmp/podwalk-lab.lock node --import tsx scripts/record-bird-updates.ts
 *
 * `lab up` builds the lab and starts BIRD on every node with Calico's configuration (src/lab/bird.ts)
 * and waits until every route is in; then every BIRD is stopped (SIGTERM: it shuts its sessions
 * down) and, once all are gone, captures start on every node's interfaces (src/lab/capture.ts)
 * and the BIRDs start again with the same command lines, so the capture holds every session from
 * its SYN: OPENs, the tables as BIRD sends them when a session comes up and as routes arrive, the
 * End-of-RIB markers. The capture stops once every BIRD has its routes back and 3 s have passed.
 *
 * Writes test/fixtures/rr/updates.json: per session direction (as seen on the sender's eth0,
 * frames it sent), the BGP messages in order (type; for an UPDATE the counts of withdrawn routes and
 * NLRI) and the TCP segments carrying them (payload octets, messages begun in each), decoded with
 * the codec of src/wire/bgp.ts (ADD-PATH, 4-octet AS, as the OPENs negotiate). tshark reads every
 * pcap too: the count of frames it marks malformed or with an error goes in the file (tshark's
 * judgement of the real frames; test/wire-tshark.test.ts judges the model's).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster } from '../src/cni/build.ts';
import { startCaptures } from '../src/lab/capture.ts';
import { completeChecksums } from '../src/lab/compare.ts';
import { labDown, labExec, labNs, labUp, pause, processRuns } from '../src/lab/host.ts';
import { readPcap } from '../src/wire/pcap.ts';
import { parseFrame } from '../src/wire/packet.ts';
import type { Frame } from '../src/wire/types.ts';
import { bgpStreamSummary, type StreamSummary } from '../test/bgp-updates.ts';

const ROOT = join(import.meta.dirname, '..');
const CLUSTER = join(ROOT, 'test/fixtures/rr/rr-pack.yaml');
const OUT = join(ROOT, 'test/fixtures/rr/updates.json');

async function main(): Promise<void> {
  const spec = loadCluster(readFileSync(CLUSTER, 'utf8'), CLUSTER);
  spec.name = 'pwpk';
  const c = buildCluster(spec, 'calico-bgp');
  labDown(c);
  const st = await labUp(c, { listeners: false });
  const dir = mkdtempSync(join(tmpdir(), 'pw-birdupd-'));
  try {
    const routes = () =>
      st.birds!.map((b) => labExec(st, b.netns, ['birdc', '-s', b.ctl, 'show', 'route', 'count']).stdout);
    const before = routes();
    const argv = st.birds!.map((b) => {
      const cmd = readFileSync(`/proc/${b.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      return { b, cmd };
    });
    for (const { b } of argv) process.kill(b.pid, 'SIGTERM');
    for (const { b } of argv) while (processRuns(b.pid)) await pause(50);
    const nodes = c.nodes.map((n) => n.name);
    const caps = await startCaptures(st, nodes, dir);
    for (const { b, cmd } of argv) {
      const r = spawnSync('ip', ['netns', 'exec', labNs(st, b.netns), ...cmd], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${b.netns}: bird did not start: ${r.stderr}`);
    }
    const started = Date.now();
    while (routes().join('\n') !== before.join('\n')) {
      if (Date.now() - started > 120_000) throw new Error('the BIRDs did not get their routes back in 120 s');
      await pause(200);
    }
    await pause(3000);
    const lost = await caps.stop();
    if (lost.length) throw new Error(`captures lost frames: ${lost.join(', ')}`);
    const sent: Frame[] = [];
    let malformed = 0;
    for (const cap of caps.list) {
      if (cap.dev !== 'eth0') continue;
      const addr = c.nodes.find((n) => n.name === cap.netns)!.addr;
      for (const r of readPcap(readFileSync(cap.file))) {
        const f = parseFrame(completeChecksums(r.frame));
        if (f.payload.kind === 'ipv4' && f.payload.ip.src === addr && f.payload.payload.kind === 'tcp')
          sent.push(f);
      }
      const ts = spawnSync(
        'tshark',
        [
          '-r',
          cap.file,
          '-Y',
          'bgp && (_ws.malformed || _ws.expert.severity >= error)',
          '-T',
          'fields',
          '-e',
          'frame.number',
        ],
        { encoding: 'utf8' },
      );
      if (ts.status !== 0) throw new Error(`tshark: ${ts.stderr}`);
      malformed += ts.stdout.split('\n').filter(Boolean).length;
    }
    const sessions: Record<string, StreamSummary> = bgpStreamSummary(sent, c.nodes);
    const bird = spawnSync('bird', ['--version'], { encoding: 'utf8' });
    const kernel = spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim();
    writeFileSync(
      OUT,
      `${JSON.stringify(
        {
          cluster: 'test/fixtures/rr/rr-pack.yaml',
          bird: (bird.stderr || bird.stdout).trim(),
          kernel,
          recorded: new Date().toISOString().slice(0, 10),
          tsharkMalformed: malformed,
          sessions,
        },
        null,
        1,
      )}\n`,
    );
    process.stdout.write(
      `wrote ${OUT}: ${Object.keys(sessions).length} session directions, ${malformed} malformed\n`,
    );
  } finally {
    labDown(c);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
