/**
 * What the captures show, judged by the real kernel: a device that is down shows nothing (tcpdump
 * cannot even open it), and the ICMP error a host sends itself after its own ARP failed crosses lo
 * only, where `tcpdump -i lo` and the lo pcap must show it. One node, the bridge set down in the
 * lab and in the model; the flow walked in both and compared interface by interface (lo included).
 * Root only; skipped with the reason elsewhere.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { seedCluster } from '../src/cluster/seed.ts';
import { startCaptures, type Captures } from '../src/lab/capture.ts';
import {
  labDown,
  linksSettled,
  labExec,
  labUnavailable,
  labUp,
  PYTHON,
  run,
  startReady,
  type LabState,
} from '../src/lab/host.ts';
import { readPcap } from '../src/wire/pcap.ts';
import { labTrace } from '../src/lab/trace.ts';
import { runCommand } from '../src/tools/index.ts';
import { pcapFiles } from '../src/tools/pcap-export.ts';
import type { WalkRequest } from '../src/trace/walk.ts';

const why = labUnavailable();
const skip = why ? `real-kernel lab unavailable: ${why}` : false;

/** one node, two pods: the cluster file, under a name of its own per lab */
const clusterYaml = (name: string) =>
  [
    `name: ${name}`,
    'nodes:',
    '  - {name: node1, ip: 192.168.1.10/24, podCIDR: 10.244.0.0/24}',
    'pods:',
    '  - {name: pod-a, node: node1}',
    '  - {name: pod-b, node: node1, listen: [tcp/8080]}',
    '',
  ].join('\n');
const spec = loadCluster(clusterYaml('capt'), 'capt.yaml');
const FAULT = 'ip link set cni0 down';

/** lo's counters in `ip -s -j link` (packets and bytes, received and sent) */
function loStats(json: string): number[] {
  const s = (JSON.parse(json) as { stats64: Record<'rx' | 'tx', { packets: number; bytes: number }> }[])[0]
    .stats64;
  return [s.rx.packets, s.rx.bytes, s.tx.packets, s.tx.bytes];
}

/** the model with node1's bridge down, as the emulated ip does it */
function faulted(): Cluster {
  const c = buildCluster(spec);
  const r = runCommand(c, 'node1', FAULT);
  assert.equal(r.code, 0, r.stderr);
  return c;
}

describe('captures against the kernel: a device that is down, and lo', { skip, timeout: 300_000 }, () => {
  const lab = buildCluster(spec);
  let state: LabState;
  before(async () => {
    labDown(lab);
    state = await labUp(lab);
    const r = labExec(state, 'node1', FAULT.split(' '));
    assert.equal(r.code, 0, r.stderr);
  });
  after(() => labDown(lab));

  for (const req of [
    { from: 'pod-a', to: 'pod-b', proto: 'tcp', port: 8080 },
    { from: 'pod-a', to: 'pod-b', proto: 'icmp' },
  ] as WalkRequest[])
    test(`${req.proto} pod-a → pod-b with cni0 down: the model's captures are the kernel's`, async () => {
      const sim = faulted();
      const loBefore = loStats(labExec(state, 'pod-a', ['ip', '-s', '-j', 'link', 'show', 'lo']).stdout);
      const r = await labTrace(state, sim, req);
      const loAfter = loStats(labExec(state, 'pod-a', ['ip', '-s', '-j', 'link', 'show', 'lo']).stdout);
      const differ = r.diffs
        .filter((d) => d.first !== -1)
        .map(
          (d) =>
            `${d.netns}/${d.dev}:\n  sim:  ${d.sim.join('\n        ')}\n  real: ${d.real.join('\n        ')}`,
        );
      assert.deepEqual(differ, []);
      // the ICMP host unreachable pod-a sent itself, seen on its lo by the kernel and the model
      const lo = r.diffs.find((d) => d.netns === 'pod-a' && d.dev === 'lo');
      assert.ok(lo, 'pod-a/lo was captured');
      assert.equal(lo.real.length, 1, lo.real.join('\n'));
      assert.match(
        lo.real[0],
        /^00:00:00:00:00:00>00:00:00:00:00:00 ip 10\.244\.0\.2>10\.244\.0\.2 .*icmp 3\/1 /,
      );
      // lo counted it once received and once sent, without the Ethernet header: the kernel's
      // counters rose by what the model's did (loopback_xmit: eth_type_trans, then dev_lstats_add).
      // The ping only: the kernel resends a SYN (the model does not), and each copy waiting for the
      // failed ARP draws its own error through lo
      if (req.proto === 'icmp')
        assert.deepEqual(
          loStats(runCommand(sim, 'pod-a', 'ip -s -j link show lo').stdout),
          loAfter.map((v, i) => v - loBefore[i]),
        );
      // nothing on the bridge that is down, in the model (and no pcap for it)
      assert.ok(!r.diffs.some((d) => d.netns === 'node1' && d.dev === 'cni0'));
      assert.ok(!pcapFiles(sim.world).some((f) => f.name === 'node1-cni0.pcap'));
      const dump = runCommand(sim, 'pod-a', 'tcpdump -i lo -nn');
      assert.match(dump.stdout, /IP 10\.244\.0\.2 > 10\.244\.0\.2: ICMP host 10\.244\.0\.3 unreachable/);
      assert.equal(
        runCommand(sim, 'node1', 'tcpdump -i cni0').stderr,
        'tcpdump: cni0: That device is not up\n',
      );
    });
});

describe(
  'lab trace --run: the same command on both sides before the flow',
  { skip, timeout: 120_000 },
  () => {
    test('the CLI applies the emulated command to the model and the real one to the lab', () => {
      const root = fileURLToPath(new URL('..', import.meta.url));
      const dir = mkdtempSync(join(tmpdir(), 'podwalk-caprun-'));
      const file = join(dir, 'caprun.yaml');
      writeFileSync(file, clusterYaml('caprun'));
      const cli = (args: string[]) =>
        spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
          cwd: root,
          encoding: 'utf8',
        });
      try {
        // the bridge down on both sides: nothing reaches pod-b, and both agree on every interface
        const r = cli(['lab', 'trace', 'pod-a', 'pod-b:8080', '--cluster', file, '--run', `node1: ${FAULT}`]);
        assert.equal(r.status, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /simulation and kernel agree on all \d+ interfaces/);
        assert.match(r.stdout, /real client: exit [1-9]/);
        // a command the emulation refuses: a usage error, before any lab is built
        const bad = cli([
          'lab',
          'trace',
          'pod-a',
          'pod-b:8080',
          '--cluster',
          file,
          '--run',
          'node1: ip route frob',
        ]);
        assert.equal(bad.status, 2, bad.stdout + bad.stderr);
        assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
      } finally {
        cli(['lab', 'down', '--cluster', file]);
        rmSync(dir, { recursive: true, force: true });
      }
    });

    test("a cluster file's run: lines: lab up, lab diff and lab trace apply them as --run (they were ignored)", () => {
      const root = fileURLToPath(new URL('..', import.meta.url));
      const dir = mkdtempSync(join(tmpdir(), 'podwalk-caprun-'));
      const file = join(dir, 'caprunf.yaml');
      const bad = join(dir, 'caprunb.yaml');
      writeFileSync(file, clusterYaml('caprunf') + `run:\n  - "node1: ${FAULT}"\n`);
      writeFileSync(bad, clusterYaml('caprunb') + 'run:\n  - "node1: ip route del 10.9.9.0/24"\n');
      const cli = (args: string[]) =>
        spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
          cwd: root,
          encoding: 'utf8',
        });
      try {
        const up = cli(['lab', 'up', '--cluster', file]);
        assert.equal(up.status, 0, up.stdout + up.stderr);
        // cni0 is down in the lab, as run: says, and the lab's tables are the model's with it
        assert.match(
          cli(['lab', 'exec', 'node1', '--cluster', file, '--', 'ip', 'link', 'show', 'cni0']).stdout,
          /state DOWN/,
        );
        const diff = cli(['lab', 'diff', '--cluster', file]);
        assert.equal(diff.status, 0, diff.stdout + diff.stderr);
        assert.equal(cli(['lab', 'down', '--cluster', file]).status, 0);
        // lab trace: nothing reaches pod-b on either side, and both agree
        const r = cli(['lab', 'trace', 'pod-a', 'pod-b:8080', '--cluster', file]);
        assert.equal(r.status, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /real client: exit [1-9]/);
        assert.match(r.stdout, /simulation and kernel agree on all \d+ interfaces/);
        // a run: line the model refuses: one line at its file:line:col, exit 2, no lab built
        for (const args of [
          ['lab', 'up', '--cluster', bad],
          ['lab', 'trace', 'pod-a', 'pod-b:8080', '--cluster', bad],
        ]) {
          const b = cli(args);
          assert.equal(b.status, 2, b.stdout + b.stderr);
          assert.equal(
            b.stderr,
            `podwalk: ${bad}:8:5: run[0] "node1: ip route del 10.9.9.0/24": RTNETLINK answers: No such process\n`,
          );
          // no lab was built (its namespaces, without another process's start)
          assert.doesNotMatch(run(['ip', 'netns', 'list']).stdout, /^pw-caprunb-/m);
        }
      } finally {
        cli(['lab', 'down', '--cluster', file]);
        cli(['lab', 'down', '--cluster', bad]);
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);

/**
 * The lab's captures (src/lab/capture.ts: one process, a packet socket with a receive ring per
 * interface) judged by tcpdump: both run at once on every interface of the seed cluster's lab,
 * traffic crosses bridges, veths, VXLAN, the underlay and lo, and each interface's pcap holds the
 * same frames, byte for byte, in the same order.
 */
describe("the lab's captures are tcpdump's, frame for frame", { skip, timeout: 300_000 }, () => {
  test('ping across nodes, TCP on one node, a host pinging itself: every interface agrees', async () => {
    const c = buildCluster({ ...seedCluster(), name: 'capcmp' }, 'flannel-vxlan');
    labDown(c);
    const state = await labUp(c);
    const dir = mkdtempSync(join(tmpdir(), 'podwalk-capcmp-'));
    const dumps: { key: string; file: string; child: ChildProcess }[] = [];
    let ours: Captures | undefined;
    try {
      for (const [model, ns] of Object.entries(state.namespaces))
        for (const line of run(['ip', '-n', ns, '-o', 'link', 'show']).stdout.split('\n')) {
          const m = /^\d+: ([^:@]+)(?:@[^:]+)?: <([^>]*)>/.exec(line);
          if (!m || !m[2].split(',').includes('UP')) continue;
          const file = join(dir, `tcpdump-${model}-${m[1]}.pcap`);
          const child = await startReady(
            `tcpdump on ${model}/${m[1]}`,
            // -p: tcpdump does not make the device promiscuous, so that what the bridge forwards
            // reaches cni0's captures only if ours does (the check after the traffic)
            [
              'ip',
              'netns',
              'exec',
              ns,
              'tcpdump',
              '-p',
              '-i',
              m[1],
              '-w',
              file,
              '-U',
              '-n',
              '--immediate-mode',
            ],
            (out) => out.includes('listening on'),
            { stdout: 'ignore' },
          );
          dumps.push({ key: `${model}/${m[1]}`, file, child });
        }
      const mine = join(dir, 'ours');
      mkdirSync(mine);
      ours = await startCaptures(state, Object.keys(state.namespaces), mine);
      assert.deepEqual(ours.list.map((x) => `${x.netns}/${x.dev}`).sort(), dumps.map((d) => d.key).sort());
      for (const argv of [
        ['pod-a', 'ping', '-n', '-c', '2', '-i', '0.2', '10.244.1.5'],
        ['pod-a', PYTHON, '-c', CONNECT, '10.244.0.6', '8080'],
        ['node1', 'ping', '-n', '-c', '1', '192.168.1.10'],
      ]) {
        const r = labExec(state, argv[0], argv.slice(1));
        assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stdout}${r.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(await ours.stop(), [], 'no capture lost a frame');
      await Promise.all(
        dumps.map(
          (d) =>
            new Promise<void>((resolve) => {
              d.child.on('exit', () => resolve());
              d.child.kill('SIGINT');
            }),
        ),
      );
      const frames = (file: string) =>
        readPcap(new Uint8Array(readFileSync(file))).map((r) => Buffer.from(r.frame).toString('hex'));
      let seen = 0;
      for (const o of ours.list) {
        const theirs = frames(dumps.find((d) => d.key === `${o.netns}/${o.dev}`)!.file);
        assert.deepEqual(frames(o.file), theirs, `${o.netns}/${o.dev}`);
        seen += theirs.length;
      }
      // the traffic crossed: pings both ways over VXLAN, TCP, ARP, the node's ping to itself on lo
      assert.ok(seen > 40, `only ${seen} frames captured`);
      assert.ok(frames(ours.list.find((x) => x.netns === 'node1' && x.dev === 'lo')!.file).length >= 2);
      // what cni0 forwards from pod-a to pod-b shows on it: the capture made it promiscuous, as
      // tcpdump without -p does
      const forwarded = readPcap(
        new Uint8Array(readFileSync(ours.list.find((x) => x.netns === 'node1' && x.dev === 'cni0')!.file)),
      )
        .map((r) => r.frame)
        .filter((f) => f[12] === 8 && f[13] === 0 && f.slice(26, 34).join('.') === '10.244.0.5.10.244.0.6');
      assert.ok(forwarded.length >= 3, `cni0 shows ${forwarded.length} frames from pod-a to pod-b`);
    } finally {
      await ours?.stop();
      for (const d of dumps) d.child.kill('SIGKILL');
      labDown(c);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** a TCP client: connect, send a request, read the answer, close */
const CONNECT = `
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
print(s.recv(65536))
s.close()
`;

describe('a lab change waits for linkwatch', { skip, timeout: 120_000 }, () => {
  test("a port set down takes its bridge's carrier with it before linksSettled returns", async () => {
    // a namespace of this test's own, not a lab's: a bridge with one veth port
    const ns = `pw-lwtest-${process.pid}`;
    const ip = (...a: string[]) => {
      const r = run(['ip', '-n', ns, ...a]);
      assert.equal(r.code, 0, `ip ${a.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const oper = (dev: string) =>
      (JSON.parse(ip('-j', 'link', 'show', 'dev', dev)) as { operstate: string; flags: string[] }[])[0];
    assert.equal(run(['ip', 'netns', 'add', ns]).code, 0);
    try {
      ip('link', 'add', 'br0', 'type', 'bridge');
      ip('link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
      ip('link', 'set', 'vb', 'master', 'br0');
      for (const d of ['br0', 'va', 'vb']) ip('link', 'set', d, 'up');
      await linksSettled([ns]);
      // up: every port forwarding, the bridge's operstate UP
      assert.equal(oper('br0').operstate, 'UP');
      assert.match(run(['bridge', '-n', ns, 'link', 'show', 'dev', 'vb']).stdout, /state forwarding/);
      ip('link', 'set', 'va', 'down');
      // the bridge lost its carrier at once, but its operstate (and its qdisc) follow only when
      // linkwatch runs, up to a second later for a bridge
      await linksSettled([ns]);
      const br = oper('br0');
      assert.ok(!br.flags.includes('LOWER_UP'), br.flags.join(','));
      assert.equal(br.operstate, 'DOWN');
      assert.equal(oper('vb').operstate, 'LOWERLAYERDOWN');
    } finally {
      run(['ip', 'netns', 'del', ns]);
    }
  });
});
