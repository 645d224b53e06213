/**
 * podwalk's BGP speaker against real BIRD 2 over TCP between two namespaces: BIRD in pwh-bgp-s1
 * (192.168.1.10) with Calico's mesh configuration (src/lab/bird.ts), podwalk's FSM in pwh-bgp-s2
 * (192.168.1.11) on a real socket (test/bgp-speaker.ts). BIRD is passive toward the higher address,
 * as Calico's template makes it, so podwalk connects. Three runs, each on fresh namespaces and a
 * fresh BIRD:
 *  - the session reaches Established, each side learns the other's block (BIRD installs podwalk's in
 *    the kernel, proto bird), and podwalk's ManualStop (a NOTIFICATION Cease, administrative
 *    shutdown, RFC 4271 8.2.2 and RFC 4486) takes the session and the route down on BIRD's side;
 *  - port 179 dropped on BIRD's side: podwalk stays in Connect, and each ConnectRetry expiry drops the
 *    pending connection and opens a new one (RFC 4271 8.2.2, Connect state, Event 9), as the kernel's
 *    SYNs show; with the rule gone, the pending connection's retransmitted SYN reaches BIRD: Established;
 *  - BIRD hangs (SIGSTOP: its kernel still ACKs, nothing more comes from BIRD): podwalk's hold timer
 *    (9 s here) expires hold time after the last message it received, and it sends NOTIFICATION Hold
 *    Timer Expired (code 4), which tshark decodes from the capture; both sides drop the routes learned
 *    over the session (BIRD, woken, reads the NOTIFICATION: "Received: Hold timer expired").
 * Needs root, namespaces, iptables, tcpdump, tshark and bird2 (each missing one skips, saying which); run it alone:
 *   flock /tmp/podwalk-lab.lock node --import tsx --test test/bgp-bird-session.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { PeerConfig } from '../src/bgp/fsm.ts';
import { calicoBirdConfig, CALICO_AS, type BirdNode } from '../src/lab/bird.ts';
import { labUnavailable } from '../src/lab/host.ts';

const missing = ['bird', 'birdc', 'iptables', 'tcpdump', 'tshark'].find(
  (t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0,
);
const why =
  labUnavailable() ??
  (missing ? `${missing} not installed (apt-get install bird2 iptables tcpdump tshark)` : undefined);
const skip = why ? `real BIRD unavailable: ${why}` : false;

const BIRD: BirdNode & { ns: string } = {
  name: 's1',
  ns: 'pwh-bgp-s1',
  ip: '192.168.1.10',
  block: '10.244.0.0/26',
};
const POD: BirdNode & { ns: string } = {
  name: 's2',
  ns: 'pwh-bgp-s2',
  ip: '192.168.1.11',
  block: '10.244.0.64/26',
};
/** BIRD's name for its session with podwalk */
const PROTO = 'Mesh_192_168_1_11';
const SEC = 1_000_000;

const run = (...argv: string[]) =>
  execFileSync(argv[0], argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const inNs = (ns: string, ...argv: string[]) => run('ip', 'netns', 'exec', ns, ...argv);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Event = Record<string, unknown> & { t: number };

interface Lab {
  events: Event[];
  speaker: ChildProcess;
  birdc(...cmd: string[]): string;
  /** waits (yielding to the event loop between checks) until ok(), at most `ms` */
  until(what: string, ok: () => boolean, ms?: number): Promise<void>;
  /** the speaker's events of one kind */
  of(key: string): Event[];
  spawnInPod(argv: string[]): ChildProcess;
  /** BIRD's pid file */
  birdPid: string;
}

/**
 * Two namespaces joined by a veth pair, BIRD in one with Calico's configuration, podwalk's speaker
 * (with `hold` as its proposed hold time) in the other; `before` runs before the speaker starts.
 * Everything is torn down afterwards, whatever happened.
 */
async function withLab(
  hold: number,
  before: (birdNs: string) => void,
  body: (lab: Lab) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pwh-bgp-'));
  const procs: ChildProcess[] = [];
  const ctl = join(dir, 'bird.ctl');
  try {
    for (const n of [BIRD, POD]) assert.ok(!existsSync(`/run/netns/${n.ns}`), `namespace ${n.ns} exists`);
    for (const n of [BIRD, POD]) run('ip', 'netns', 'add', n.ns);
    run('ip', 'link', 'add', 'eth0', 'netns', BIRD.ns, 'type', 'veth', 'peer', 'eth0', 'netns', POD.ns);
    for (const n of [BIRD, POD]) {
      inNs(n.ns, 'ip', 'link', 'set', 'lo', 'up');
      inNs(n.ns, 'ip', 'addr', 'add', `${n.ip}/24`, 'dev', 'eth0');
      inNs(n.ns, 'ip', 'link', 'set', 'eth0', 'up');
    }
    writeFileSync(join(dir, 'bird.conf'), calicoBirdConfig(BIRD, [BIRD, POD]));
    const birdArgs = ['-f', '-c', join(dir, 'bird.conf'), '-s', ctl, '-P', join(dir, 'bird.pid')];
    procs.push(spawn('ip', ['netns', 'exec', BIRD.ns, 'bird', ...birdArgs], { stdio: 'ignore' }));
    // BIRD must be listening before podwalk's first connect
    for (let i = 0; i < 100 && !existsSync(ctl); i++) await sleep(100);
    before(BIRD.ns);
    const spawnInPod = (argv: string[]) => {
      const p = spawn('ip', ['netns', 'exec', POD.ns, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
      procs.push(p);
      return p;
    };
    const config: PeerConfig = {
      localAs: CALICO_AS,
      peerAs: CALICO_AS,
      localId: POD.ip,
      localAddress: POD.ip,
      peerAddress: BIRD.ip,
      holdTime: hold,
      connectRetryTime: 5,
      passive: false,
      addPath: true,
      gracefulRestartTime: 120,
      originates: [POD.block],
    };
    const speaker = spawn(
      'ip',
      [
        'netns',
        'exec',
        POD.ns,
        process.execPath,
        '--import',
        'tsx',
        join(import.meta.dirname, 'bgp-speaker.ts'),
        JSON.stringify(config),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    procs.push(speaker);
    const events: Event[] = [];
    createInterface({ input: speaker.stdout! }).on('line', (l) => events.push(JSON.parse(l) as Event));
    const until = async (what: string, ok: () => boolean, ms = 30000) => {
      for (let i = 0; i < ms / 100; i++) {
        // yield first: the speaker's lines are read by this process's event loop
        await sleep(100);
        if (ok()) return;
      }
      assert.fail(`timed out waiting for ${what}; speaker said ${JSON.stringify(events)}`);
    };
    await body({
      events,
      speaker,
      birdc: (...cmd) => inNs(BIRD.ns, 'birdc', '-s', ctl, ...cmd),
      until,
      of: (key) => events.filter((e) => key in e),
      spawnInPod,
      birdPid: join(dir, 'bird.pid'),
    });
  } finally {
    // SIGCONT too: a stopped BIRD handles its SIGTERM only once it runs again
    for (const p of procs)
      if (p.exitCode === null) {
        p.kill('SIGTERM');
        p.kill('SIGCONT');
      }
    await sleep(200);
    for (const n of [BIRD, POD]) if (existsSync(`/run/netns/${n.ns}`)) run('ip', 'netns', 'del', n.ns);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** BIRD's route for `prefix`, or '' (birdc exits 1 with "Network not found" once nothing covers it) */
function birdRoute(lab: Lab, prefix: string): string {
  try {
    return lab.birdc('show', 'route', 'for', prefix).includes(prefix) ? prefix : '';
  } catch {
    return '';
  }
}

test('podwalk speaker and real BIRD: Established, routes both ways, Cease', { skip, timeout: 120000 }, () =>
  withLab(
    240,
    () => {},
    async (lab) => {
      await lab.until('podwalk Established', () => lab.events.some((e) => e.state === 'Established'));
      assert.deepEqual(
        lab.of('state').map((e) => e.state),
        ['Connect', 'OpenSent', 'OpenConfirm', 'Established'],
      );
      await lab.until("BIRD's block in podwalk's Adj-RIB-In", () =>
        lab.events.some((e) => JSON.stringify(e.added) === JSON.stringify([[BIRD.block, BIRD.ip]])),
      );
      assert.match(
        lab.birdc('show', 'protocols', PROTO),
        /Mesh_192_168_1_11\s+BGP\s+---\s+up\s+\S+\s+Established/,
      );
      await lab.until("podwalk's block in BIRD's table", () => birdRoute(lab, POD.block) !== '');
      const route = lab.birdc('show', 'route', 'all', 'for', POD.block);
      assert.match(
        route,
        new RegExp(`${POD.block.replace('.', '\\.')}\\s+unicast \\[${PROTO} .*\\] \\* \\(100\\) \\[i\\]`),
      );
      assert.match(route, /BGP\.next_hop: 192\.168\.1\.11/);
      assert.match(route, /BGP\.local_pref: 100/);
      // BIRD's kernel protocol installs it (scan time 2)
      await lab.until('the route in the kernel', () =>
        inNs(BIRD.ns, 'ip', 'route').includes(`${POD.block} via ${POD.ip}`),
      );
      assert.equal(
        inNs(BIRD.ns, 'ip', 'route', 'show', POD.block),
        '10.244.0.64/26 via 192.168.1.11 dev eth0 proto bird metric 32 \n',
      );

      const exited = new Promise((r) => lab.speaker.on('close', r));
      lab.speaker.stdin!.write(JSON.stringify({ stop: true }) + '\n');
      await exited;
      // RFC 4271 8.2.2, ManualStop in Established: NOTIFICATION Cease, drop the connection, Idle
      assert.deepEqual(
        lab.of('sent').map((e) => [e.sent, e.code, e.subcode]),
        [
          ['open', undefined, undefined],
          ['keepalive', undefined, undefined],
          ['update', undefined, undefined], // podwalk's block
          ['update', undefined, undefined], // End-of-RIB
          ['notification', 6, 2],
        ],
      );
      assert.deepEqual(lab.events.at(-1), {
        t: lab.events.at(-1)!.t,
        state: 'Idle',
        error: { code: 6, subcode: 2, sent: true },
      });
      await lab.until(
        'BIRD sees the session go down',
        () => !/Established/.test(lab.birdc('show', 'protocols', PROTO)),
      );
      // as BIRD printed it in the recording (test/fixtures/bgp/manifest.json) when its peer sent Cease
      assert.match(lab.birdc('show', 'protocols', PROTO), /Received: Administrative shutdown/);
      await lab.until('the route gone from BIRD', () => birdRoute(lab, POD.block) === '');
      await lab.until(
        'the route gone from the kernel',
        () => inNs(BIRD.ns, 'ip', 'route', 'show', POD.block) === '',
      );
    },
  ),
);

test(
  'port 179 dropped: podwalk stays in Connect, ConnectRetry drops the pending connection and opens a new one every 5 s; unblocked, its pending connection gets through (a retransmitted SYN)',
  { skip, timeout: 120000 },
  async () => {
    const drop = ['INPUT', '-p', 'tcp', '--dport', '179', '-j', 'DROP'];
    await withLab(
      240,
      (ns) => inNs(ns, 'iptables', '-A', ...drop),
      async (lab) => {
        // the kernel's view: every SYN podwalk's namespace sends to port 179
        const dump = lab.spawnInPod([
          'tcpdump',
          '-i',
          'eth0',
          '--immediate-mode',
          '-nn',
          '-tt',
          '-l',
          'tcp dst port 179',
        ]);
        const syns: { t: number; sport: number }[] = [];
        createInterface({ input: dump.stdout! }).on('line', (l) => {
          const m = /^(\d+\.\d+) IP 192\.168\.1\.11\.(\d+) > 192\.168\.1\.10\.179: Flags \[S\]/.exec(l);
          if (m) syns.push({ t: Number(m[1]), sport: Number(m[2]) });
        });
        await lab.until('three connects', () => lab.of('connect').length >= 3, 20000);
        await sleep(500);
        const connects = lab.of('connect').map((e) => e.t);
        assert.deepEqual(
          lab.of('state').map((e) => e.state),
          ['Connect'],
          'never past Connect',
        );
        // RFC 4271 8.2.2, Connect state, ConnectRetryTimer_Expires: drop the TCP connection, restart the
        // timer, initiate a new connection, stay in Connect
        for (let i = 1; i < connects.length; i++) {
          const gap = connects[i] - connects[i - 1];
          assert.ok(gap >= 5 * SEC && gap < 6 * SEC, `connect ${i} came ${gap} µs after the one before`);
        }
        assert.equal(lab.of('close').length, connects.length - 1, 'each retry drops the pending connection');
        const ports = [...new Set(syns.map((s) => s.sport))];
        assert.equal(ports.length, connects.length, `one connection per attempt: ${JSON.stringify(syns)}`);
        for (let i = 1; i < ports.length; i++) {
          const lastOfPrev = Math.max(...syns.filter((s) => s.sport === ports[i - 1]).map((s) => s.t));
          const firstOfNext = Math.min(...syns.filter((s) => s.sport === ports[i]).map((s) => s.t));
          assert.ok(lastOfPrev < firstOfNext, `port ${ports[i - 1]} still sent SYNs after ${ports[i]} began`);
          // unanswered, the kernel retransmitted the SYN before ConnectRetry gave up on it
          assert.ok(syns.filter((s) => s.sport === ports[i - 1]).length > 1);
        }
        assert.match(
          lab.birdc('show', 'protocols', PROTO),
          /Mesh_192_168_1_11\s+BGP\s+---\s+start\s+\S+\s+Passive/,
        );

        // with the rule gone, the pending connection's next SYN retransmission (the kernel's: 1 s, then
        // 3 s after the first SYN) gets through before ConnectRetry (5 s) would abandon it
        inNs(BIRD.ns, 'iptables', '-D', ...drop);
        await lab.until(
          'podwalk Established',
          () => lab.events.some((e) => e.state === 'Established'),
          10000,
        );
        assert.equal(lab.of('connect').length, connects.length, 'the pending connection gets through');
        assert.ok(lab.of('state').at(-1)!.t - connects.at(-1)! < 5 * SEC);
        assert.deepEqual(
          lab.of('state').map((e) => e.state),
          ['Connect', 'OpenSent', 'OpenConfirm', 'Established'],
        );
        await lab.until("podwalk's block in BIRD's table", () => birdRoute(lab, POD.block) !== '');
      },
    );
  },
);

test(
  "BIRD hangs: podwalk's hold timer expires, NOTIFICATION Hold Timer Expired on the wire, both sides drop the routes",
  { skip, timeout: 120000 },
  () =>
    withLab(
      9,
      () => {},
      async (lab) => {
        await lab.until("BIRD's block in podwalk's Adj-RIB-In", () =>
          lab.events.some((e) => JSON.stringify(e.added) === JSON.stringify([[BIRD.block, BIRD.ip]])),
        );
        await lab.until("podwalk's block in BIRD's table", () => birdRoute(lab, POD.block) !== '');
        // hold time min(9, BIRD's 240) = 9 s, keepalives every 3 s: longer than the hold time, still up
        assert.match(lab.birdc('show', 'protocols', 'all', PROTO), /Hold timer:\s+\S+\/9\n/);
        await sleep(12000);
        const established = lab.of('state').at(-1)!;
        assert.equal(established.state, 'Established');
        assert.ok(lab.of('data').filter((e) => e.t > established.t + 9 * SEC).length >= 1);

        // the kernel's view of what podwalk sends from now on
        const pcap = join(tmpdir(), `pwh-bgp-hold-${process.pid}.pcap`);
        const dump = lab.spawnInPod([
          'tcpdump',
          '-i',
          'eth0',
          '--immediate-mode',
          '-U',
          '-w',
          pcap,
          'tcp port 179',
        ]);
        const listening = new Promise((r) => createInterface({ input: dump.stderr! }).on('line', r));
        await listening;
        try {
          // BIRD stops (its kernel still ACKs): nothing more comes from it
          const pid = Number(readFileSync(lab.birdPid, 'utf8'));
          process.kill(pid, 'SIGSTOP');
          await lab.until('podwalk Idle', () => lab.of('state').at(-1)!.state === 'Idle', 20000);
          const idle = lab.of('state').at(-1)!;
          assert.deepEqual(idle.error, { code: 4, subcode: 0, sent: true });
          const held = idle.t - lab.of('data').at(-1)!.t;
          assert.ok(
            held >= 9 * SEC && held < 10 * SEC,
            `the hold timer ran ${held} µs after the last message`,
          );
          assert.deepEqual(lab.of('sent').at(-1), {
            t: lab.of('sent').at(-1)!.t,
            sent: 'notification',
            code: 4,
            subcode: 0,
          });
          assert.deepEqual(lab.of('removed').at(-1)!.removed, [BIRD.block]);
          await sleep(500);
          dump.kill('SIGINT');
          await new Promise((r) => dump.on('close', r));
          // tshark decodes the last BGP message podwalk sent: NOTIFICATION (3), Hold Timer Expired (4)
          const sent = run(
            'tshark',
            '-r',
            pcap,
            '-Y',
            `bgp && ip.src == ${POD.ip}`,
            '-T',
            'fields',
            '-e',
            'bgp.type',
            '-e',
            'bgp.notify.major_error',
          )
            .trim()
            .split('\n');
          assert.equal(sent.at(-1), '3\t4', run('tshark', '-r', pcap, '-nn'));
          process.kill(pid, 'SIGCONT');
        } finally {
          rmSync(pcap, { force: true });
        }
        await lab.until(
          'BIRD sees the session go down',
          () => !/Established/.test(lab.birdc('show', 'protocols', PROTO)),
        );
        // BIRD was stopped in poll(): woken, it reads podwalk's NOTIFICATION before its own hold timer fires
        // (io_loop: the sockets poll() returned, then timers_fire on the next turn)
        assert.match(lab.birdc('show', 'protocols', PROTO), /Idle\s+Received: Hold timer expired/);
        await lab.until('the route gone from BIRD', () => birdRoute(lab, POD.block) === '');
        await lab.until(
          'the route gone from the kernel',
          () => inNs(BIRD.ns, 'ip', 'route', 'show', POD.block) === '',
        );
      },
    ),
);
