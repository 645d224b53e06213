/**
 * The emulated tcpdump against the real one: the captures of walked flows in every CNI mode are
 * exported as pcap files, the real `tcpdump -r FILE` (4.99.3 here) decodes each, and podwalk's
 * `tcpdump -i DEV` in the same namespace must print the same bytes on stdout, for several flag sets.
 *
 * One normalisation, and only when no -c is given: the emulation models a live capture stopped by
 * Ctrl-C after the last packet, and tcpdump then prints one extra "\n" on stdout (tcpdump.c: "We
 * got interrupted, so perhaps we didn't manage to finish a line"), which `tcpdump -r` does not.
 * The test checks that this newline is there and removes it. With -c the capture ends by count
 * and the comparison is exact.
 *
 * tshark decodes every exported pcap too (all of a mode's in one pass): no malformed packet, no
 * checksum or malformed expert info, nothing at error severity.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CNI_MODES } from '../src/cluster/spec.ts';
import { readPcap, readPcapHeader } from '../src/wire/pcap.ts';
import { EPOCH_US } from '../src/tools/types.ts';
import { tcpdump } from '../src/tools/tcpdump.ts';
import { LINKTYPE_RAW } from '../src/tools/pcap-export.ts';
import {
  capture,
  realTcpdump,
  realTcpdumps,
  skipTcpdump,
  skipTshark,
  type DevicePcap,
} from './fixtures/tcpdump/pcaps.ts';
import { seedCluster } from '../src/cluster/seed.ts';
import { buildCluster } from '../src/cni/build.ts';
import { walk } from '../src/trace/walk.ts';

const FLAG_SETS = [
  ['-nn'],
  ['-n'],
  ['-nn', '-e'],
  ['-nn', '-v'],
  ['-nn', '-vv'],
  ['-nne', '-vv'],
  ['-nn', '-S', '-tt'],
  ['-nn', '-q'],
  // no -n: ports get /etc/services names, MACs their OUI; reverse DNS of 10.244/16 and 192.168/16
  // finds no names (as in podwalk, which has no DNS)
  ['-e'],
];

const pcaps = new Map<string, DevicePcap[]>();
function pcapsOf(mode: (typeof CNI_MODES)[number]): DevicePcap[] {
  let p = pcaps.get(mode);
  if (!p) {
    p = [...capture(mode), ...capture(mode, true)];
    pcaps.set(mode, p);
  }
  return p;
}

function emulated(d: DevicePcap, flags: string[]) {
  return tcpdump([...flags, '-i', d.dev], { cluster: d.cluster, netns: d.cluster.world.ns(d.netns) });
}

for (const mode of CNI_MODES) {
  describe(`tcpdump vs real tcpdump: ${mode}`, () => {
    test('every device, every flag set: the same stdout as tcpdump -r', { skip: skipTcpdump }, async () => {
      const devices = pcapsOf(mode);
      assert.ok(devices.length >= 15, `${devices.length} devices captured`);
      const runs = devices.flatMap((d) => FLAG_SETS.map((flags) => ({ d, flags })));
      const reals = await realTcpdumps(runs.map(({ d, flags }) => [...flags, '-r', d.file]));
      runs.forEach(({ d, flags }, i) => {
        const real = reals[i];
        assert.equal(real.code, 0, real.stderr);
        const mine = emulated(d, flags);
        assert.equal(mine.code, 0);
        assert.ok(mine.stdout.endsWith('\n\n') || mine.stdout === '\n', 'the Ctrl-C newline');
        assert.equal(mine.stdout.slice(0, -1), real.stdout, `${d.netns} ${d.dev} ${flags.join(' ')}`);
      });
      assert.equal(reals.length, devices.length * FLAG_SETS.length);
    });

    test('-c N: stops after N packets, exactly as tcpdump -c N -r', { skip: skipTcpdump }, async () => {
      const devices = pcapsOf(mode).filter((x) => x.frames > 5);
      const reals = await realTcpdumps(devices.map((d) => ['-nn', '-v', '-c', '5', '-r', d.file]));
      devices.forEach((d, i) => {
        const mine = emulated(d, ['-nnvc5']);
        assert.equal(mine.stdout, reals[i].stdout, `${d.netns} ${d.dev}`);
        assert.equal(
          mine.stderr.split('\n').slice(-4).join('\n'),
          '5 packets captured\n5 packets received by filter\n0 packets dropped by kernel\n',
        );
      });
    });

    test(
      'tshark decodes every exported pcap: nothing malformed, no checksum problem',
      { skip: skipTshark },
      () => {
        // one tshark for the mode: mergecap (wireshark-common, which tshark depends on) reads every
        // exported pcap and puts each in a pcapng interface of its own, in order; tshark decodes
        // them in one pass and frame.interface_id says whose frame a line is. The same packet seen
        // on several devices is a (suspected) retransmission to tshark's TCP analysis: a note,
        // never an error, so it cannot hide one.
        const devices = pcapsOf(mode);
        const merged = join(dirname(devices[0].file), `all-${mode}.pcapng`);
        execFileSync('mergecap', ['-a', '-I', 'none', '-w', merged, ...devices.map((d) => d.file)]);
        const out = execFileSync(
          'tshark',
          [
            '-r',
            merged,
            '-o',
            'ip.check_checksum:TRUE',
            '-o',
            'tcp.check_checksum:TRUE',
            '-o',
            'udp.check_checksum:TRUE',
            '-T',
            'fields',
            '-E',
            'separator=|',
            '-e',
            'frame.interface_id',
            '-e',
            'frame.number',
            '-e',
            '_ws.malformed',
            '-e',
            '_ws.expert.group',
            '-e',
            '_ws.expert.severity',
            '-e',
            '_ws.expert.message',
          ],
          { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 },
        );
        const decoded = devices.map(() => 0);
        for (const line of out.trim().split('\n')) {
          const [iface, n, malformed, groups, severities, messages] = line.split('|');
          const d = devices[Number(iface)];
          assert.ok(d, `frame ${n}: interface ${iface} of ${devices.length}`);
          decoded[Number(iface)]++;
          const at = `${d.netns} ${d.dev} frame ${decoded[Number(iface)]}: ${messages}`;
          assert.equal(malformed, '', at);
          const g = groups ? groups.split(',').map(Number) : [];
          assert.ok(
            !g.includes(0x01000000) && !g.includes(0x07000000),
            `checksum/malformed expert info: ${at}`,
          );
          const s = severities ? severities.split(',').map(Number) : [];
          assert.ok(
            s.every((x) => x < 0x00800000),
            `expert error: ${at}`,
          );
        }
        assert.deepEqual(
          decoded,
          devices.map((d) => d.frames),
          'every frame of every device decoded',
        );
      },
    );
  });
}

describe('pcap export', () => {
  test('one classic pcap per device that saw frames: link types, names, timestamps', () => {
    const devices = pcapsOf('calico-ipip');
    const tunl = devices.find((d) => d.netns === 'node1' && d.dev === 'tunl0')!;
    const eth = devices.find((d) => d.netns === 'node1' && d.dev === 'eth0')!;
    assert.equal(readPcapHeader(readFileSync(tunl.file)).linktype, LINKTYPE_RAW);
    assert.equal(readPcapHeader(readFileSync(eth.file)).linktype, 1);
    assert.match(tunl.file, /node1-tunl0\.pcap$/);
    const world = tunl.cluster.world;
    const caps = world.captures.filter((c) => c.netns === 'node1' && c.dev === 'tunl0');
    const recs = readPcap(readFileSync(tunl.file));
    assert.equal(recs.length, caps.length);
    recs.forEach((r, i) => {
      assert.equal(r.tsSec * 1e6 + r.tsUsec, EPOCH_US + caps[i].time);
      assert.deepEqual([...r.frame], [...caps[i].frame]);
      assert.equal(r.frame[0] >> 4, 4, 'a bare IPv4 packet');
    });
  });
});

describe('emulated tcpdump: the live-capture frame around the packets', () => {
  const c = buildCluster(seedCluster(), 'flannel-vxlan');
  walk(c, { from: 'pod-a', to: 'pod-c', proto: 'icmp' }, { exchange: true });
  const inPodA = (argv: string[]) => tcpdump(argv, { cluster: c, netns: c.world.ns('pod-a') });

  test('banner and summary on stderr, packets on stdout; eth0 by default in a pod', () => {
    const r = inPodA(['-nn']);
    assert.equal(r.code, 0);
    assert.equal(
      r.stderr,
      'tcpdump: verbose output suppressed, use -v[v]... for full protocol decode\n' +
        'listening on eth0, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n' +
        '4 packets captured\n4 packets received by filter\n0 packets dropped by kernel\n',
    );
    // br_flood sends the request's copy out of veth-pod-b before br_pass_frame_up hands it to the
    // host, so node1's reply leaves one hop later on the simulated clock, and the echo request
    // leaves as the reply arrives (neigh_update sends the queue at once)
    assert.equal(
      r.stdout,
      '00:00:00.000000 ARP, Request who-has 10.244.0.1 tell 10.244.0.5, length 28\n' +
        '00:00:00.000012 ARP, Reply 10.244.0.1 is-at 8a:1b:2c:3d:4e:5f, length 28\n' +
        `00:00:00.000012 IP 10.244.0.5 > 10.244.1.5: ICMP echo request, id ${echoId()}, seq 1, length 64\n` +
        `00:00:00.000134 IP 10.244.1.5 > 10.244.0.5: ICMP echo reply, id ${echoId()}, seq 1, length 64\n` +
        '\n',
    );
    function echoId(): number {
      const f = c.world.captures.find((x) => x.netns === 'pod-a' && x.frame.length > 42)!.frame;
      return (f[38] << 8) | f[39];
    }
  });

  test('with -v the banner has no "verbose output suppressed"; on tunl0 the link type is RAW', () => {
    const ipip = buildCluster(seedCluster(), 'calico-ipip');
    walk(ipip, { from: 'pod-a', to: 'pod-c', proto: 'icmp' });
    const r = tcpdump(['-v', '-i', 'tunl0', 'icmp'], { cluster: ipip, netns: ipip.world.ns('node1') });
    assert.equal(
      r.stderr.split('\n')[0],
      'tcpdump: listening on tunl0, link-type RAW (Raw IP), snapshot length 262144 bytes',
    );
  });

  test('a filter and -c: counts only matching packets, no Ctrl-C newline when the count is reached', () => {
    const r = inPodA(['-nn', '-c', '1', 'icmp']);
    assert.equal(r.stdout.split('\n').length, 2);
    assert.match(r.stdout, /ICMP echo request/);
    assert.match(
      r.stderr,
      /\n1 packet captured\n1 packet received by filter\n0 packets dropped by kernel\n$/,
    );
  });

  test('errors: unknown device, bad filter, bad count, bad option (real texts, exit 1)', () => {
    const dev = inPodA(['-i', 'eth9']);
    assert.deepEqual(dev, {
      stdout: '',
      stderr: 'tcpdump: eth9: No such device exists\n(No such device exists)\n',
      code: 1,
    });
    assert.deepEqual(inPodA(['host']), {
      stdout: '',
      stderr: "tcpdump: can't parse filter expression: syntax error\n",
      code: 1,
    });
    assert.deepEqual(inPodA(['-c', 'x']), {
      stdout: '',
      stderr: 'tcpdump: invalid packet count x\n',
      code: 1,
    });
    const bad = inPodA(['-k']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^tcpdump: invalid option -- 'k'\ntcpdump version 4\.99\.3\n/);
  });

  test('the same error texts and usage as the real tcpdump', { skip: skipTcpdump }, () => {
    for (const argv of [['-k'], ['--bogus'], ['-c'], ['-c', '0'], ['-s', '-1'], ['-Q', 'sideways']]) {
      const real = realTcpdump(argv);
      const mine = inPodA(argv);
      assert.equal(mine.stderr, real.stderr, argv.join(' '));
      assert.equal(mine.code, real.code, argv.join(' '));
    }
    const help = realTcpdump(['--help']);
    assert.equal(inPodA(['--help']).stdout, help.stdout + help.stderr);
  });
});
