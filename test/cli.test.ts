import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../src/cli/app.ts';
import type { Io } from '../src/cli/app.ts';
import { SEED_YAML } from '../src/cluster/seed.ts';
import { CNI_MODES } from '../src/cluster/spec.ts';
import type { Served } from '../src/cli/serve.ts';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { openOutputDir } from '../src/cli/files.ts';
import { readPcap } from '../src/wire/pcap.ts';
import { get as httpGet } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface Result {
  code: number;
  /** stdout, one element per line */
  out: string[];
  /** stderr, one element per line */
  err: string[];
  stdout: string;
  stderr: string;
}

interface Opts {
  files?: Record<string, string>;
  served?: Io['served'];
  /** what --pcap wrote: "dir/name" → bytes */
  written?: Map<string, Uint8Array>;
  env?: Record<string, string | undefined>;
  isTTY?: boolean;
  columns?: number;
}

const BIN = new URL('../bin/podwalk.js', import.meta.url).pathname;

async function podwalk(argv: string[], o: Opts = {}): Promise<Result> {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = {
    out: (s) => out.push(s),
    err: (s) => err.push(s),
    readFile: (path) => {
      const text = o.files?.[path];
      if (text === undefined)
        throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), {
          code: 'ENOENT',
        });
      return text;
    },
    openDir: (dir) => (files) => {
      for (const f of files) o.written?.set(`${dir}/${f.name}`, f.bytes);
    },
    env: o.env ?? {},
    isTTY: o.isTTY ?? false,
    columns: o.columns,
    served: o.served,
  };
  const code = await run(argv, io);
  const stdout = out.join('\n');
  const stderr = err.join('\n');
  return {
    code,
    out: stdout === '' ? [] : stdout.split('\n'),
    err: stderr === '' ? [] : stderr.split('\n'),
    stdout,
    stderr,
  };
}

const show = (r: Result) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

function assertExit(r: Result, code: number): void {
  assert.equal(r.code, code, show(r));
}

/** bad usage: exit 2, exactly one line on stderr, no stack trace, nothing on stdout */
function assertUsageError(r: Result, message: RegExp): void {
  assertExit(r, 2);
  assert.equal(r.err.length, 1, `expected one line on stderr\n${show(r)}`);
  assert.match(r.err[0], message);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'a stack trace');
  assert.doesNotMatch(r.stderr, /\.ts:\d+/, 'a source location');
  assert.equal(r.stdout, '', show(r));
}

// eslint-disable-next-line no-control-regex
const ANSI_ESCAPE = /\x1b\[/;

describe('trace', () => {
  test('pod-a pod-c:8080 walks TCP over flannel VXLAN and is delivered', async () => {
    const r = await podwalk(['trace', 'pod-a', 'pod-c:8080']);
    assertExit(r, 0);
    assert.match(r.out[0], /^TCP 10\.244\.0\.5:\d+ → 10\.244\.1\.5:8080 \(SYN\) from pod-a$/);
    assert.match(r.stdout, /=> delivered to pod-c tcp\/8080/);
    assert.match(r.stdout, /flannel\.1/);
    assert.match(r.stdout, /vni 1\b/);
    assert.match(r.stdout, /\b4789\b/);
    // the reply comes back to pod-a
    assert.match(r.stdout, /── reply ──/);
    assert.match(r.stdout, /=> delivered to pod-a tcp\/\d+/);
    assert.equal(r.stderr, '');
  });

  test('--format minimal is deterministic', async () => {
    const a = await podwalk(['trace', 'pod-a', 'pod-c:8080', '--format', 'minimal']);
    const b = await podwalk(['trace', 'pod-a', 'pod-c:8080', '--format', 'minimal']);
    assertExit(a, 0);
    assert.match(a.out[0], /^flow tcp 10\.244\.0\.5:\d+ > 10\.244\.1\.5:8080 SYN from pod-a$/);
    assert.match(a.stdout, /delivered pod-c tcp\/8080/);
    assert.ok(a.out.length > 10, show(a));
    assert.deepEqual(b, a);
  });

  test('the default output is deterministic too', async () => {
    const a = await podwalk(['trace', 'pod-a', 'pod-c:8080', '--mode', 'calico-ipip']);
    const b = await podwalk(['trace', 'pod-a', 'pod-c:8080', '--mode', 'calico-ipip']);
    assertExit(a, 0);
    assert.deepEqual(b, a);
  });

  for (const flag of [['--format', 'json'], ['--json']])
    test(`${flag.join(' ')} prints one line of JSON`, async () => {
      const r = await podwalk(['trace', 'pod-a', 'pod-c:8080', ...flag]);
      assertExit(r, 0);
      assert.equal(r.out.length, 1, show(r));
      assert.equal(r.stderr, '');
      const j = JSON.parse(r.out[0]) as {
        mode: string;
        ok: boolean;
        traces: { flow: { src: string; dst: string; dport?: number }; disposition: { kind: string } }[];
      };
      assert.equal(j.mode, 'flannel-vxlan');
      assert.equal(j.ok, true);
      assert.equal(j.traces.length, 2);
      assert.equal(j.traces[0].disposition.kind, 'delivered');
      assert.equal(j.traces[0].flow.src, '10.244.0.5');
      assert.equal(j.traces[0].flow.dst, '10.244.1.5');
      assert.equal(j.traces[0].flow.dport, 8080);
      assert.equal(j.traces[1].disposition.kind, 'delivered');
    });

  describe('every CNI mode', () => {
    for (const mode of CNI_MODES) {
      test(`${mode}: tcp`, async () => {
        const r = await podwalk(['trace', 'pod-a', 'pod-c:8080', '--mode', mode]);
        assertExit(r, 0);
        assert.match(r.stdout, /=> delivered to pod-c tcp\/8080/);
      });
      test(`${mode}: udp`, async () => {
        const r = await podwalk(['trace', 'pod-a', 'pod-c:8080', '--proto', 'udp', '--mode', mode]);
        assertExit(r, 0);
        assert.match(r.stdout, /=> delivered to pod-c udp\/8080/);
      });
      test(`${mode}: icmp`, {}, async () => {
        const r = await podwalk(['trace', 'pod-a', 'pod-c', '--proto', 'icmp', '--mode', mode]);
        assert.match(r.stdout, /=> delivered to pod-c icmp/);
        assert.match(r.stdout, /ICMP echo reply/);
        assert.match(r.stdout, /=> delivered to pod-a icmp/);
        assertExit(r, 0);
      });
    }
  });

  test('the mode-specific devices show up', async () => {
    const ipip = await podwalk(['trace', 'pod-a', '10.244.1.5:8080', '--mode', 'calico-ipip']);
    assertExit(ipip, 0);
    assert.match(ipip.stdout, /tunl0/);
    assert.doesNotMatch(ipip.stdout, /flannel\.1|4789/);
    const hostgw = await podwalk(['trace', 'pod-a', 'pod-c:8080', '--mode', 'flannel-host-gw']);
    assertExit(hostgw, 0);
    assert.doesNotMatch(hostgw.stdout, /flannel\.1|tunl0|VXLAN/);
  });

  test('a cluster file chooses the default mode', async () => {
    const yaml = SEED_YAML.replace('cni: flannel-vxlan', 'cni: calico-ipip');
    assert.notEqual(yaml, SEED_YAML);
    const r = await podwalk(['trace', 'pod-a', 'pod-c:8080', '--cluster', 'c.yaml', '--json'], {
      files: { 'c.yaml': yaml },
    });
    assertExit(r, 0);
    assert.equal((JSON.parse(r.stdout) as { mode: string }).mode, 'calico-ipip');
  });

  test('an ICMP echo over the pod MTU with DF exits 1: mtu-exceeded', async () => {
    const r = await podwalk(['trace', 'pod-a', 'pod-c', '--proto', 'icmp', '--size', '1472', '--df']);
    assertExit(r, 1);
    assert.match(r.stdout, /mtu-exceeded/);
    assert.match(r.stdout, /1450/);
    assert.doesNotMatch(r.stdout, /delivered to pod-c/);
    assert.equal(r.stderr, '');
  });

  test('TCP to a port nothing listens on exits 1: reset', async () => {
    const r = await podwalk(['trace', 'pod-a', 'pod-d:9999']);
    assertExit(r, 1);
    assert.match(r.stdout, /reset/);
    assert.match(r.stdout, /RST/);
    assert.equal(r.stderr, '');
  });

  test('UDP to a port nothing listens on exits 1: the answer is an ICMP error', async () => {
    const r = await podwalk(['trace', 'pod-a', 'pod-d:9999', '--proto', 'udp']);
    assertExit(r, 1);
    assert.match(r.stdout, /port unreachable/);
  });
});

describe('bad usage exits 2 with one line on stderr', () => {
  const cases: [string, string[], RegExp][] = [
    ['unknown pod', ['trace', 'pod-x', 'pod-c'], /pod-x/],
    ['unknown destination', ['trace', 'pod-a', 'pod-z:8080'], /pod-z/],
    ['bad mode', ['trace', 'pod-a', 'pod-c', '--mode', 'nope'], /nope/],
    ['bad mode for demo', ['demo', '--mode', 'nope'], /nope/],
    ['port too large', ['trace', 'pod-a', 'pod-c:70000'], /70000/],
    ['port 0', ['trace', 'pod-a', 'pod-c:0'], /port/],
    ['bad size', ['trace', 'pod-a', 'pod-c', '--size', 'abc'], /abc/],
    ['size too small', ['trace', 'pod-a', 'pod-c', '--size', '10'], /size/],
    ['bad proto', ['trace', 'pod-a', 'pod-c', '--proto', 'sctp'], /sctp/],
    ['bad format', ['trace', 'pod-a', 'pod-c', '--format', 'xml'], /xml/],
    ['unknown option', ['trace', 'pod-a', 'pod-c', '--bogus'], /--bogus/],
    ['ICMP with a port', ['trace', 'pod-a', 'pod-c:8080', '--proto', 'icmp'], /ICMP/],
    ['unknown command', ['frobnicate'], /frobnicate/],
    ['missing both arguments', ['trace'], /FROM/],
    ['missing TO', ['trace', 'pod-a'], /TO/],
    [
      'missing cluster file',
      ['trace', 'pod-a', 'pod-c', '--cluster', '/nonexistent.yaml'],
      /\/nonexistent\.yaml/,
    ],
    ['missing cluster file for modes', ['modes', '--cluster', '/nonexistent.yaml'], /\/nonexistent\.yaml/],
    ['serve: bad port', ['serve', '--port', 'abc'], /--port.*abc.*0 to 65535/],
    ['serve: port too large', ['serve', '--port', '70000'], /70000/],
    [
      'serve: no build',
      ['serve', '--dir', '/nonexistent-build'],
      /no page build in \/nonexistent-build: run `npm run build`/,
    ],
    // lab usage errors are usage errors too (exit 1 is lab trace's "simulation and kernel differ")
    ['lab: unknown subcommand', ['lab', 'frob'], /unknown command 'frob'/],
    ['lab scenario: not a seed', ['lab', 'scenario', 'abc'], /'abc'.*SEED/],
    ['lab up: bad mode', ['lab', 'up', '--mode', 'weave'], /weave/],
    ['lab up: unknown option', ['lab', 'up', '--bogus'], /--bogus/],
    ['lab trace: missing FROM', ['lab', 'trace'], /FROM/],
    [
      'lab status: --all is every lab, not one cluster',
      ['lab', 'status', '--all', '--cluster', 'x.yaml'],
      /'--all' cannot be used with option '--cluster/,
    ],
    [
      'lab down: --orphaned is every orphaned lab, not one',
      ['lab', 'down', '--orphaned', '--from', 'x'],
      /'--orphaned' cannot be used with option '--from/,
    ],
    ['lab down: empty cluster', ['lab', 'down', '--cluster', ''], /^podwalk: --cluster: an empty file name$/],
    // an empty name is not "no option": it never falls back to the built-in cluster
    [
      "--cluster ''",
      ['trace', 'pod-a', 'pod-c', '--cluster', ''],
      /^podwalk: --cluster: an empty file name$/,
    ],
    ["modes --cluster ''", ['modes', '--cluster', ''], /--cluster: an empty file name/],
    ["serve --cluster ''", ['serve', '--cluster', ''], /--cluster: an empty file name/],
    ["serve --dir ''", ['serve', '--dir', ''], /--dir: an empty directory name/],
    ["--policy ''", ['trace', 'pod-a', 'pod-c', '--policy', ''], /--policy: an empty file name/],
    ["--pcap ''", ['trace', 'pod-a', 'pod-c', '--pcap', ''], /--pcap: an empty directory name/],
    ["doctor --scenario ''", ['doctor', '--scenario', ''], /--scenario: an empty name/],
    // nor is an empty --from (it walked, and lab up built, the built-in cluster)
    ["--from ''", ['trace', 'pod-a', 'pod-c', '--from', ''], /^podwalk: --from: an empty name$/],
    ["doctor --from ''", ['doctor', 'pod-a', 'pod-c', '--from', ''], /^podwalk: --from: an empty name$/],
    ["lab up --from ''", ['lab', 'up', '--from', ''], /^podwalk: --from: an empty name$/],
    ["serve --from ''", ['serve', '--from', ''], /^podwalk: --from: an empty name$/],
    ["collect --name ''", ['collect', '--out', '-', '--name', ''], /^podwalk: --name: an empty name$/],
    ["collect --netns ''", ['collect', '--out', '-', '--netns', ''], /^podwalk: --netns: an empty name$/],
  ];
  for (const [name, argv, message] of cases)
    test(`${name}: ${argv.join(' ')}`, async () => {
      assertUsageError(await podwalk(argv), message);
    });

  const BAD = [
    'nodes:',
    '  - name: node1',
    '    ip: 192.168.1.10/24',
    '    podCIDR: 10.244.0.1/24',
    'pods:',
    '  - name: pod-a',
    '    node: node1',
    '    ip: 10.244.0.5',
    '',
  ].join('\n');
  for (const cmd of [['trace', 'pod-a', 'pod-c'], ['modes'], ['demo'], ['serve']])
    test(`a cluster file with an error points at FILE:LINE:COL (${cmd[0]})`, async () => {
      const r = await podwalk([...cmd, '--cluster', 'bad.yaml'], { files: { 'bad.yaml': BAD } });
      assertUsageError(r, /bad\.yaml:4:14: .*10\.244\.0\.1\/24/);
    });

  const CLUSTER_HEAD = ['nodes:', '  - name: node1', '    ip: 192.168.1.10/24', '    podCIDR: 10.244.0.0/24'];
  const located: [string, string[], string[], RegExp][] = [
    [
      'a complex key (no Node warning, its own place)',
      [...CLUSTER_HEAD, '? [a, b]', ': 1'],
      ['modes'],
      /^podwalk: c\.yaml:5:3: a key must be a plain name, not a list$/,
    ],
    [
      'a hostVeth that is a node device',
      [...CLUSTER_HEAD, 'pods:', '  - name: p', '    node: node1', '    hostVeth: eth0'],
      ['trace', 'p', 'node1'],
      /^podwalk: c\.yaml:8:15: hostVeth "eth0" is the name of a node's own device/,
    ],
    [
      'a run: command that fails',
      [
        ...CLUSTER_HEAD,
        'pods:',
        '  - {name: p, node: node1}',
        'run:',
        '  - "node1: ip route del 10.9.9.0/24"',
      ],
      ['exec', 'node1', '--cluster', 'c.yaml', '--', 'ip', 'route'],
      /^podwalk: c\.yaml:8:5: run\[0\] "node1: ip route del 10\.9\.9\.0\/24": RTNETLINK answers: No such process$/,
    ],
    [
      'the second run: command that fails',
      [
        ...CLUSTER_HEAD,
        'run:',
        '  - "node1: ip route add 10.9.9.0/24 dev eth0"',
        '  - "node1: ip route add 10.9.9.0/24 dev eth0"',
      ],
      ['trace', 'node1', '10.9.9.1'],
      /^podwalk: c\.yaml:7:5: run\[1\] .*File exists$/,
    ],
    [
      'no address left for a pod (the build)',
      [
        'nodes:',
        '  - {name: node1, ip: 192.168.1.10/24, podCIDR: 10.244.0.0/30}',
        'pods:',
        '  - {name: p, node: node1}',
        '  - {name: q, node: node1}',
      ],
      ['trace', 'p', 'node1'],
      /^podwalk: c\.yaml:5:5: pod q: no free address left in 10\.244\.0\.0\/30$/,
    ],
    [
      'a pod named like the router',
      [
        'subnets: [{name: lan0, cidr: 192.168.1.0/24, gateway: 192.168.1.1}]',
        ...CLUSTER_HEAD,
        'pods: [{name: router, node: node1}]',
      ],
      ['trace', 'router', 'node1'],
      /^podwalk: c\.yaml:6:15: pod name "router" is already the name of the router/,
    ],
    [
      'a node named like a subnet',
      [
        'subnets: [{name: lan0, cidr: 192.168.1.0/24}]',
        'nodes:',
        '  - {name: lan0, ip: 192.168.1.10/24, podCIDR: 10.244.0.0/24}',
      ],
      ['modes'],
      /^podwalk: c\.yaml:3:12: node name "lan0" is already the name of the subnet at line 1/,
    ],
  ];
  for (const [name, lines, argv, message] of located)
    test(`${name}: FILE:LINE:COL`, async () => {
      const r = await podwalk(argv.includes('--cluster') ? argv : [...argv, '--cluster', 'c.yaml'], {
        files: { 'c.yaml': lines.join('\n') + '\n' },
      });
      assertUsageError(r, message);
    });

  test('a complex key through the real executable: one line, no Node warning', () => {
    // the yaml library stringifies a list key with process.emitWarning, which only a real
    // process shows (on its stderr, beside podwalk's line)
    const dir = mkdtempSync(join(tmpdir(), 'podwalk-ckey-'));
    try {
      const file = join(dir, 'c.yaml');
      writeFileSync(file, [...CLUSTER_HEAD, '? [a, b]', ': 1', ''].join('\n'));
      const r = spawnSync(process.execPath, [BIN, 'modes', '--cluster', file], { encoding: 'utf8' });
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, `podwalk: ${file}:5:3: a key must be a plain name, not a list\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a cluster file that is not YAML', async () => {
    const r = await podwalk(['modes', '--cluster', 'x.yaml'], { files: { 'x.yaml': 'nodes: [oops\n' } });
    assertUsageError(r, /^podwalk: x\.yaml:\d+:\d+: /);
  });

  test('no command at all is bad usage', {}, async () => {
    const r = await podwalk([]);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /Usage: podwalk/);
    assertExit(r, 2);
  });
});

describe('modes', () => {
  const expected: Record<string, { overhead: string; mtu: string }> = {
    'flannel-vxlan': { overhead: '50 B', mtu: '1450' },
    'flannel-host-gw': { overhead: '0 B', mtu: '1500' },
    'calico-bgp': { overhead: '0 B', mtu: '1500' },
    'calico-ipip': { overhead: '20 B', mtu: '1480' },
    // all seed nodes share one subnet: no encapsulation, but tunl0 keeps the IPIP MTU
    'calico-ipip-crosssubnet': { overhead: '0 B', mtu: '1480' },
    'calico-vxlan': { overhead: '50 B', mtu: '1450' },
    // the same: felix routes a node of its own subnet without vxlan.calico; the pods keep its MTU
    'calico-vxlan-crosssubnet': { overhead: '0 B', mtu: '1450' },
  };

  test('one row per mode with its overhead and pod MTU', async () => {
    const r = await podwalk(['modes']);
    assertExit(r, 0);
    assert.equal(r.stderr, '');
    assert.match(r.out[0], /^MODE\s+ENCAPSULATION\s+OVERHEAD\s+POD MTU\s+UNDERLAY MUST KNOW$/);
    const rows = r.out.filter((l) => (CNI_MODES as readonly string[]).includes(l.split(' ')[0]));
    assert.deepEqual(
      rows.map((l) => l.split(' ')[0]),
      [...CNI_MODES],
      show(r),
    );
    for (const row of rows) {
      const [mode, encapsulation, overhead, mtu] = row.split(/\s{2,}/);
      assert.deepEqual({ overhead, mtu }, expected[mode], row);
      assert.equal(encapsulation === 'none', overhead === '0 B', row);
    }
    assert.match(r.stdout, /VXLAN \(UDP 4789\)/);
  });

  test('--json parses', async () => {
    const r = await podwalk(['modes', '--json']);
    assertExit(r, 0);
    assert.equal(r.out.length, 1);
    const rows = JSON.parse(r.out[0]) as {
      mode: string;
      overhead: number;
      podMtu: number;
      delivered: boolean;
    }[];
    assert.deepEqual(
      rows.map((x) => x.mode),
      [...CNI_MODES],
    );
    for (const x of rows) {
      assert.equal(`${x.overhead} B`, expected[x.mode].overhead);
      assert.equal(String(x.podMtu), expected[x.mode].mtu);
      assert.equal(x.delivered, true);
    }
  });
});

describe('demo', () => {
  test('--mode flannel-vxlan walks to pod-b and pod-c and shows conntrack', async () => {
    const r = await podwalk(['demo', '--mode', 'flannel-vxlan']);
    assertExit(r, 0);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /════ flannel-vxlan ════/);
    for (const other of CNI_MODES.filter((m) => m !== 'flannel-vxlan'))
      assert.doesNotMatch(r.stdout, new RegExp(`════ ${other} ════`));
    assert.match(r.stdout, /── pod-a → pod-b:8080 \(same node\) ──/);
    assert.match(r.stdout, /── pod-a → pod-c:8080 \(another node\) ──/);
    assert.match(r.stdout, /=> delivered to pod-b tcp\/8080/);
    assert.match(r.stdout, /=> delivered to pod-c tcp\/8080/);
    const ct = r.out.filter((l) => /TIME_WAIT/.test(l));
    assert.ok(ct.length >= 1, show(r));
    for (const l of ct) assert.match(l, /\bTIME_WAIT\b.*\[ASSURED\]/);
  });

  test('--format json parses', async () => {
    const r = await podwalk(['demo', '--format', 'json']);
    assertExit(r, 0);
    assert.equal(r.stderr, '');
    assert.equal(r.out.length, 1);
    const walks = JSON.parse(r.out[0]) as { mode: string; request: { disposition: { kind: string } } }[];
    assert.equal(walks.length, CNI_MODES.length * 2);
    assert.deepEqual([...new Set(walks.map((w) => w.mode))], [...CNI_MODES]);
    for (const w of walks) assert.equal(w.request.disposition.kind, 'delivered', w.mode);
  });
});

describe('colour', () => {
  const argv = ['trace', 'pod-a', 'pod-c:8080'];

  test('a terminal gets ANSI colour', async () => {
    const r = await podwalk(argv, { isTTY: true, env: {} });
    assertExit(r, 0);
    assert.match(r.stdout, ANSI_ESCAPE);
  });

  test('NO_COLOR turns it off', async () => {
    const r = await podwalk(argv, { isTTY: true, env: { NO_COLOR: '1' } });
    assertExit(r, 0);
    assert.doesNotMatch(r.stdout, ANSI_ESCAPE);
  });

  test('so do a pipe and TERM=dumb', async () => {
    const pipe = await podwalk(argv, { isTTY: false, env: {} });
    assert.doesNotMatch(pipe.stdout, ANSI_ESCAPE);
    const dumb = await podwalk(argv, { isTTY: true, env: { TERM: 'dumb' } });
    assert.doesNotMatch(dumb.stdout, ANSI_ESCAPE);
  });

  test('colour changes nothing but the escapes', async () => {
    const plain = await podwalk(argv, { isTTY: true, env: { NO_COLOR: '1' } });
    const colour = await podwalk(argv, { isTTY: true, env: {} });
    // eslint-disable-next-line no-control-regex
    assert.equal(colour.stdout.replace(/\x1b\[\d+m/g, ''), plain.stdout);
  });

  test(
    'an empty NO_COLOR does not turn colour off (no-color.org: "present and not an empty string")',
    {},
    async () => {
      const r = await podwalk(argv, { isTTY: true, env: { NO_COLOR: '' } });
      assert.match(r.stdout, ANSI_ESCAPE);
    },
  );
});

describe("the README's advice for use outside the checkout", () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  // the commands of its sh blocks (a `$ ` prompt dropped), one per line
  const commands = [...readme.matchAll(/^```sh\n([\s\S]*?)^```$/gm)]
    .flatMap((m) => m[1].split('\n'))
    .map((l) => l.replace(/^\$ /, '').trim());
  /** a command without its comment */
  const bare = (l: string) => l.replace(/(^|\s)#.*$/, '').trim();
  test('no command runs npx as root: `sudo npx podwalk` would run what the registry has under that name', () => {
    assert.ok(commands.length > 100, `${commands.length} commands`);
    assert.deepEqual(
      commands.map(bare).filter((l) => /\bsudo\b.*\bnpx\b/.test(l) && !/\bnpx tsx\b/.test(l)),
      [],
    );
  });
  test('outside the checkout: the executable itself or npm link, never npx', () => {
    const section = readme.slice(readme.indexOf('## Commands'), readme.indexOf('### `podwalk demo`'));
    assert.match(section, /Outside the checkout, do not type `npx podwalk`/);
    assert.ok(
      commands.includes(
        'cd /path/to/podwalk && npm link && podwalk trace pod-a pod-c:8080   # or link it as `podwalk` on your PATH',
      ),
    );
    assert.ok(commands.some((l) => l.startsWith('sudo /path/to/podwalk/bin/podwalk.js lab up')));
  });
});

describe('help', () => {
  test('--help exits 0 and has examples', {}, async () => {
    const r = await podwalk(['--help']);
    assertExit(r, 0);
    assert.match(r.stdout, /Usage: podwalk/);
    assert.match(r.stdout, /Examples/);
  });

  test('--help exits 0 on stdout and lists the commands', async () => {
    const r = await podwalk(['--help']);
    assertExit(r, 0);
    assert.equal(r.stderr, '');
    for (const cmd of ['demo', 'trace', 'modes', 'seed'])
      assert.match(r.stdout, new RegExp(`^  ${cmd}\\b`, 'm'));
  });

  for (const argv of [
    ['trace', '--help'],
    ['help', 'trace'],
  ])
    test(`${argv.join(' ')} exits 0 with examples`, async () => {
      const r = await podwalk(argv);
      assertExit(r, 0);
      assert.equal(r.stderr, '');
      assert.match(r.stdout, /Usage: podwalk trace/);
      assert.match(r.stdout, /Examples:/);
      assert.match(r.stdout, /podwalk trace pod-a pod-c:8080/);
      assert.match(r.stdout, /Exit status: 0 delivered/);
    });

  test('--version', async () => {
    const r = await podwalk(['--version']);
    assertExit(r, 0);
    assert.deepEqual(r.out, ['0.1.0']);
  });
});

describe('--policy', () => {
  const cluster = readFileSync(new URL('./fixtures/policy-cluster.yaml', import.meta.url), 'utf8');
  const policy = [
    'apiVersion: networking.k8s.io/v1',
    'kind: NetworkPolicy',
    'metadata: {name: web-in, namespace: prod}',
    'spec:',
    '  podSelector: {matchLabels: {app: web}}',
    '  ingress:',
    '    - from: [{podSelector: {matchLabels: {app: client}}}]',
    '      ports: [{port: http}]',
    '',
  ].join('\n');
  const files = { 'c.yaml': cluster, 'web.yaml': policy };

  test('an allowed flow exits 0', async () => {
    const r = await podwalk(['trace', 'client', 'web:8080', '--cluster', 'c.yaml', '--policy', 'web.yaml'], {
      files,
    });
    assertExit(r, 0);
    assert.equal(r.stderr, '');
  });

  test('a denied flow exits 1 and the drop names the policy', async () => {
    const r = await podwalk(
      [
        'trace',
        'devclient',
        'web:8080',
        '--cluster',
        'c.yaml',
        '--policy',
        'web.yaml',
        '--format',
        'summary',
      ],
      { files },
    );
    assertExit(r, 1);
    assert.match(
      r.stdout,
      /=> DROPPED \(filtered\) in node1 at cali\w{11}: dropped by rule cali-tw-calic36cb0217f8 #7: .*"Drop if no policies passed packet" -m mark --mark 0x0\/0x20000 -j DROP/,
    );
    // felix's rule says only that; what selects web and why comes from the rule's origin
    assert.match(
      r.stdout,
      /^ {4}- a Kubernetes NetworkPolicy: no policy selecting prod\/web allows this ingress \(selected by: prod\/web-in\) \(cali-tw-calic36cb0217f8 rule 7\)$/m,
    );
  });

  test('exec iptables -L shows the chain; flannel warns and does not enforce', async () => {
    const r = await podwalk(
      [
        'exec',
        'node1',
        '--cluster',
        'c.yaml',
        '--mode',
        'calico-bgp',
        '--policy',
        'web.yaml',
        '--',
        'iptables',
        '-L',
        '-n',
      ],
      { files },
    );
    assertExit(r, 0);
    // felix's chains: web's ingress (cali-tw- and its veth) and the policy's (cali-pi-_ and a hash of prod/knp.default.web-in)
    assert.match(r.stdout, /^Chain cali-tw-calic36cb0217f8 \(1 references\)$/m);
    assert.match(r.stdout, /^Chain cali-pi-_[\w-]{19} \(1 references\)$/m);
    const f = await podwalk(
      [
        'trace',
        'devclient',
        'web:8080',
        '--cluster',
        'c.yaml',
        '--mode',
        'flannel-vxlan',
        '--policy',
        'web.yaml',
      ],
      { files },
    );
    assertExit(f, 0);
    assert.deepEqual(f.err, [
      'podwalk: warning: flannel-vxlan does not enforce NetworkPolicy: 1 policy is not applied (prod/web-in); a calico-* mode enforces them',
    ]);
  });

  test('a bad policy file: exit 2, one line with file:line:col', async () => {
    const r = await podwalk(['trace', 'client', 'web:8080', '--cluster', 'c.yaml', '--policy', 'bad.yaml'], {
      files: { ...files, 'bad.yaml': policy.replace('port: http', 'port: 0') },
    });
    assertUsageError(
      r,
      /^podwalk: bad\.yaml:8:22: port must be an integer in 1\.\.65535 or a port name, got number 0$/,
    );
  });

  test('a missing policy file, and the same policy twice: exit 2', async () => {
    const argv = ['trace', 'client', 'web:8080', '--cluster', 'c.yaml', '--policy'];
    assertUsageError(
      await podwalk([...argv, 'nope.yaml'], { files }),
      /^podwalk: nope\.yaml: cannot read policy file: no such file$/,
    );
    assertUsageError(
      await podwalk([...argv, 'web.yaml', '--policy', 'web.yaml'], { files }),
      /^podwalk: web\.yaml:3:18: policy prod\/web-in is already defined in web\.yaml$/,
    );
  });
});

describe('matrix', () => {
  const files = {
    'scenarios/policy-blocks-dns.yaml': readFileSync(
      new URL('../scenarios/policy-blocks-dns.yaml', import.meta.url),
      'utf8',
    ),
    'examples/allow-dns.yaml': readFileSync(new URL('../examples/allow-dns.yaml', import.meta.url), 'utf8'),
  };

  test('the seed cluster: the e2e truth table on stdout, the count on stderr, exit 0', async () => {
    const r = await podwalk(['matrix']);
    assertExit(r, 0);
    assert.deepEqual(r.out, [
      '-\tdefault/pod-a\tdefault/pod-b\tdefault/pod-c\tdefault/pod-d',
      'default/pod-a\tX\t.\t.\t.',
      'default/pod-b\tX\t.\t.\t.',
      'default/pod-c\tX\t.\t.\t.',
      'default/pod-d\tX\t.\t.\t.',
    ]);
    assert.deepEqual(r.err, [
      'podwalk: tcp/8080 in flannel-vxlan: 16 cells, 4 blocked; 7 walks, one per group of pods the model cannot tell apart (2 groups)',
    ]);
  });

  test("the README's examples: DNS blocked by the egress policy, allowed with allow-dns.yaml", async () => {
    const blocked = await podwalk(
      ['matrix', '--cluster', 'scenarios/policy-blocks-dns.yaml', '--proto', 'udp', '--port', '53'],
      { files },
    );
    assertExit(blocked, 0);
    assert.equal(blocked.out[1], 'shop/web\tX\tX\tX');
    const fixed = await podwalk(
      [
        'matrix',
        '--cluster',
        'scenarios/policy-blocks-dns.yaml',
        '--proto',
        'udp',
        '--port',
        '53',
        '--policy',
        'examples/allow-dns.yaml',
      ],
      { files },
    );
    assert.equal(fixed.out[1], 'shop/web\tX\tX\t.');
    const sel = await podwalk(
      [
        'matrix',
        '--cluster',
        'scenarios/policy-blocks-dns.yaml',
        '--from',
        'metadata.namespace=shop',
        '--to',
        'app in (cart,web)',
      ],
      { files },
    );
    assert.deepEqual(sel.out, ['-\tshop/web\tshop/cart', 'shop/web\tX\t.', 'shop/cart\tX\t.']);
  });

  test('--run: every cell walked, said on stderr', async () => {
    const r = await podwalk([
      'matrix',
      '--mode',
      'calico-bgp',
      '--run',
      'node1: iptables -I FORWARD -s 10.244.0.6 -j DROP',
    ]);
    assertExit(r, 0);
    assert.equal(r.out[2], 'default/pod-b\tX\t.\tX\tX');
    assert.match(
      r.stderr,
      /16 cells, 9 blocked; every cell walked \(1 command was applied to the nodes by run: or --run\)/,
    );
  });

  test('--json: one document with every cell and the walk deciding it', async () => {
    const r = await podwalk(['matrix', '--from', 'spec.nodeName=node1', '--json']);
    assertExit(r, 0);
    // one document, a line per row (a table of 30,000 pods does not fit in one string)
    assert.equal(r.out[0], '{');
    const j = JSON.parse(r.stdout) as {
      from: { pod: string }[];
      to: { pod: string }[];
      rows: string[];
      cells: number[][];
      walks: { ok: boolean; outcome: string; request: { kind: string; reason?: string } }[];
    };
    assert.deepEqual(
      j.from.map((p) => p.pod),
      ['default/pod-a', 'default/pod-b'],
    );
    assert.equal(j.to.length, 4);
    assert.deepEqual(j.rows, ['X...', 'X...']);
    const aa = j.walks[j.cells[0][0]];
    assert.equal(aa.ok, false);
    assert.equal(aa.request.reason, 'reset');
    for (let i = 0; i < 2; i++)
      for (let k = 0; k < 4; k++) assert.equal(j.walks[j.cells[i][k]].ok, j.rows[i][k] === '.');
  });

  test('flannel does not enforce the policies: a warning on stderr', async () => {
    const r = await podwalk(
      [
        'matrix',
        '--cluster',
        'scenarios/policy-blocks-dns.yaml',
        '--mode',
        'flannel-vxlan',
        '--proto',
        'udp',
        '--port',
        '53',
      ],
      { files },
    );
    assertExit(r, 0);
    assert.match(r.err[0], /^podwalk: warning: flannel-vxlan does not enforce NetworkPolicy/);
    assert.equal(r.out[1], 'shop/web\tX\tX\t.');
  });

  for (const [argv, message] of [
    [['--proto', 'icmp'], /argument 'icmp' is invalid\. Allowed choices are tcp, udp/],
    [['--port', '0'], /--port <port>' argument '0' is invalid\. expected an integer from 1 to 65535/],
    [['--port', 'http'], /argument 'http' is invalid/],
    [
      ['--from', 'app in (web'],
      /^podwalk: --from "app in \(web": expected "," or "\)" in the values of app at the end$/,
    ],
    [['--to', 'app>1'], /^podwalk: --to "app>1": app >: the operators < and > are not supported/],
    [['--from', '-x'], /^podwalk: --from "-x": "-x" is not a label key/],
    [['--to', 'app=nope'], /^podwalk: --to "app=nope" selects no pod$/],
    [['--cluster', 'missing.yaml'], /^podwalk: missing\.yaml: cannot read cluster file: no such file$/],
    [
      ['--scenario', 'policy-blocks-dns', '--cluster', 'c.yaml'],
      /--scenario and --cluster both name a cluster/,
    ],
    [['--run', 'node1: ip route del 10.9.9.0/24'], /^podwalk: --run "node1: ip route del 10\.9\.9\.0\/24": /],
    [['--mode', 'cilium'], /argument 'cilium' is invalid/],
    [['pod-a'], /too many arguments for 'matrix'/],
  ] as const)
    test(`bad usage: matrix ${argv.join(' ')}`, async () => {
      assertUsageError(await podwalk(['matrix', ...argv]), message);
    });

  test('--help has the examples', async () => {
    const r = await podwalk(['matrix', '--help']);
    assertExit(r, 0);
    assert.match(r.stdout, /Usage: podwalk matrix \[options\]/);
    assert.match(
      r.stdout,
      /\$ podwalk matrix --cluster scenarios\/policy-blocks-dns\.yaml --proto udp --port 53/,
    );
    assert.match(r.stdout, /kubectl -l/);
  });
});

describe('serve', () => {
  test('serves the page build and the --cluster file on 127.0.0.1', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'podwalk-serve-'));
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>page</title>');
    let served: Served | undefined;
    try {
      const r = await podwalk(['serve', '--port', '0', '--dir', dir, '--cluster', 'my.yaml'], {
        files: { 'my.yaml': SEED_YAML },
        served: (s) => (served = s),
      });
      assertExit(r, 0);
      assert.ok(served);
      assert.match(
        r.stdout,
        new RegExp(`^podwalk: serving my\\.yaml at http://127\\.0\\.0\\.1:${served.port}/`),
      );
      const addr = served.server.address();
      assert.equal(typeof addr === 'object' && addr?.address, '127.0.0.1');
      const page = await fetch(served.url);
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
      assert.match(await page.text(), /<title>page<\/title>/);
      const cluster = await fetch(new URL('cluster.yaml', served.url));
      assert.equal(cluster.status, 200);
      assert.equal(await cluster.text(), SEED_YAML);
      assert.equal(cluster.headers.get('x-podwalk-file'), 'my.yaml');
      assert.equal((await fetch(new URL('missing.js', served.url))).status, 404);
      // a raw path (fetch would normalise the dots away) cannot leave the build directory
      const status = await new Promise<number | undefined>((ok, fail) =>
        httpGet({ host: '127.0.0.1', port: served!.port, path: '/..%2f..%2f..%2fetc/passwd' }, (res) => {
          res.resume();
          ok(res.statusCode);
        }).on('error', fail),
      );
      assert.equal(status, 403);
      assert.equal((await fetch(served.url, { method: 'POST' })).status, 405);
    } finally {
      await served?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('without --cluster the page gets no cluster file and uses the built-in one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'podwalk-serve-'));
    writeFileSync(join(dir, 'index.html'), '<!doctype html>');
    let served: Served | undefined;
    try {
      const r = await podwalk(['serve', '--port', '0', '--dir', dir], { served: (s) => (served = s) });
      assertExit(r, 0);
      assert.match(r.stdout, /serving the built-in cluster at http:\/\/127\.0\.0\.1:/);
      assert.equal((await fetch(new URL('cluster.yaml', served!.url))).status, 204);
    } finally {
      await served?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('trace --pcap DIR: checked before anything is printed, written all or nothing', () => {
  /** the CLI with the real file system behind --pcap */
  const onDisk = (argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const io: Io = {
      out: (s) => out.push(s),
      err: (s) => err.push(s),
      readFile: (p) => readFileSync(p, 'utf8'),
      openDir: openOutputDir,
      env: {},
      isTTY: false,
    };
    return run(argv, io).then((code) => {
      const stdout = out.join('\n');
      const stderr = err.join('\n');
      return {
        code,
        stdout,
        stderr,
        out: stdout === '' ? [] : stdout.split('\n'),
        err: stderr === '' ? [] : stderr.split('\n'),
      };
    });
  };
  const walkArgs = ['trace', 'pod-a', 'pod-c:8080', '--format', 'minimal'];

  test('writes one readable pcap per interface, also into a directory it creates', async () => {
    const base = mkdtempSync(join(tmpdir(), 'podwalk-pcap-'));
    try {
      const dir = join(base, 'a', 'b');
      const r = await onDisk([...walkArgs, '--pcap', dir]);
      assertExit(r, 0);
      const files = readdirSync(dir).sort();
      assert.ok(files.includes('node1-flannel.1.pcap'), files.join(' '));
      assert.match(r.stderr, new RegExp(`^wrote ${files.length} pcap files to ${dir}$`));
      for (const f of files) assert.ok(readPcap(new Uint8Array(readFileSync(join(dir, f)))).length > 0, f);
      // again over the same files: replaced, nothing else left (no staging directory)
      assertExit(await onDisk([...walkArgs, '--pcap', dir]), 0);
      assert.deepEqual(readdirSync(dir).sort(), files);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  test('a file, a file as a parent, /proc and /sys: one line, exit 2, nothing printed', async () => {
    const base = mkdtempSync(join(tmpdir(), 'podwalk-pcap-'));
    try {
      const file = join(base, 'f');
      writeFileSync(file, 'x');
      const cases: [string, RegExp][] = [
        [file, /: not a directory$/],
        [join(file, 'sub'), /: (a part of the path is not a directory|.* is not a directory)$/],
        ['/proc/podwalk-x', /: cannot create the directory \/proc\/podwalk-x: /],
        ['/sys/podwalk-x', /: cannot create the directory \/sys\/podwalk-x: /],
      ];
      for (const [dir, message] of cases) {
        const r = await onDisk([...walkArgs, '--pcap', dir]);
        assertUsageError(
          r,
          new RegExp(`^podwalk: --pcap ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}${message.source}`),
        );
      }
      assert.equal(readFileSync(file, 'utf8'), 'x');
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  test('a directory in the way of one file: one line, exit 2, nothing printed, nothing written', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'podwalk-pcap-'));
    try {
      mkdirSync(join(dir, 'node1-eth0.pcap'));
      const r = await onDisk([...walkArgs, '--pcap', dir]);
      // the files are written before the trace is printed: no trace followed by an error
      assertUsageError(
        r,
        /^podwalk: --pcap .*: node1-eth0\.pcap is there and is not a file; nothing written$/,
      );
      assert.deepEqual(readdirSync(dir), ['node1-eth0.pcap']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('through the real executable: no stack trace, exit 2, stdout empty', () => {
    const r = spawnSync(process.execPath, [BIN, ...walkArgs, '--pcap', '/proc/podwalk-x'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^podwalk: --pcap \/proc\/podwalk-x: cannot create the directory/);
  });

  test('collect --out is checked the same way, before the collector runs', () => {
    const base = mkdtempSync(join(tmpdir(), 'podwalk-out-'));
    try {
      const file = join(base, 'f');
      writeFileSync(file, 'x');
      for (const [dir, message] of [
        [
          '/proc/podwalk-x',
          /^podwalk: --out \/proc\/podwalk-x: cannot create the directory \/proc\/podwalk-x: /,
        ],
        [file, /^podwalk: --out .*\/f: not a directory$/],
      ] as const) {
        const r = spawnSync(process.execPath, [BIN, 'collect', '--out', dir], {
          encoding: 'utf8',
          timeout: 60_000,
        });
        assert.equal(r.status, 2, r.stderr);
        assert.equal(r.stdout, '');
        assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
        assert.match(r.stderr.trim(), message);
      }
      assert.equal(readFileSync(file, 'utf8'), 'x');
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});

describe('emulated tools: what is not emulated says so, exit 2', () => {
  for (const [argv, message] of [
    [['-w', '/tmp/x'], /^podwalk: "tcpdump -w" is not emulated; `podwalk trace … --pcap DIR` writes/],
    [['-i', 'any'], /^podwalk: "tcpdump -i any" is not emulated/],
    [['-i', 'eth0', '-X'], /^podwalk: "tcpdump -X" is not emulated$/],
    [['-i', 'eth0', 'tcp[13] & 2 != 0'], /^podwalk: .* in a filter is not emulated$/],
    [['-i', 'eth0', 'vlan'], /^podwalk: 'vlan' in a filter is not emulated$/],
  ] as [string[], RegExp][])
    test(`tcpdump ${argv.join(' ')}`, async () => {
      const r = await podwalk(['exec', 'node1', '--walk', 'pod-a pod-c:8080', '--', 'tcpdump', ...argv]);
      assertUsageError(r, message);
    });

  test("tcpdump's own errors keep tcpdump's text and exit 1", async () => {
    const r = await podwalk(['exec', 'node1', '--', 'tcpdump', '-i', 'eth0', 'host']);
    assertExit(r, 1);
    assert.deepEqual(r.err, ["tcpdump: can't parse filter expression: syntax error"]);
  });
});

describe('ambiguous addresses are walked with a warning (doctor finds them too)', () => {
  const cluster = [
    'nodes:',
    '  - {name: node1, ip: 192.168.1.10/24, podCIDR: 10.244.0.0/24}',
    '  - {name: node2, ip: 192.168.1.11/24, podCIDR: 10.244.0.0/16}',
    'pods:',
    '  - {name: a, node: node1, ip: 10.244.0.5}',
    '  - {name: b, node: node2, ip: 10.244.0.5, listen: [tcp/80]}',
    '',
  ].join('\n');
  for (const argv of [
    ['trace', 'a', 'b:80', '--format', 'minimal'],
    ['exec', 'node1', '--', 'ip', 'route'],
  ])
    test(argv[0], async () => {
      const r = await podwalk([...argv.slice(0, 1), '--cluster', 'c.yaml', ...argv.slice(1)], {
        files: { 'c.yaml': cluster },
      });
      assert.ok(r.stdout.length > 0);
      assert.ok(
        r.err.includes(
          "podwalk: warning: node1's pod CIDR 10.244.0.0/24 overlaps node2's 10.244.0.0/16: their pods' addresses are ambiguous (podwalk doctor: pod-cidr-overlap)",
        ),
        r.stderr,
      );
      assert.ok(
        r.err.includes(
          'podwalk: warning: 10.244.0.5 is assigned to a eth0, b eth0 (podwalk doctor: duplicate-ip)',
        ),
        r.stderr,
      );
    });

  test('the seed cluster gets none', async () => {
    const r = await podwalk(['trace', 'pod-a', 'pod-c:8080']);
    assert.equal(r.stderr, '');
  });
});

describe('the first screen: podwalk demo (npm start)', () => {
  test('opens with every mode in a few lines and what to try next', async () => {
    const r = await podwalk(['demo']);
    assertExit(r, 0);
    const head = r.out.slice(0, 40);
    assert.match(
      head[0],
      new RegExp(
        `^podwalk demo: pod-a to pod-b and to pod-c, a whole TCP exchange each, in ${CNI_MODES.length} CNI modes$`,
      ),
    );
    for (const mode of CNI_MODES) {
      const at = head.findIndex((l) => l.startsWith(mode + ' '));
      assert.ok(at > 0, `${mode} in the summary`);
      assert.match(
        head[at + 1],
        /^ {2}pod-a → pod-b:8080 {2}delivered and answered: the whole exchange, 10 packets$/,
      );
      assert.match(head[at + 3], /^ {2}pod-a → pod-c:8080 {2}delivered and answered/);
      // flannel on the cni0 bridge; the calico-* modes in calico-node's layout (pod-a's cali veth)
      const first = mode.startsWith('calico') ? 'cali[0-9a-f]{11}' : 'veth-pod-a → cni0';
      assert.match(
        head[at + 4],
        new RegExp(`pod-a → node1 \\(${first} → .*\\) → lan0 → node2 \\(.*\\) → pod-c$`),
      );
    }
    assert.match(
      head.find((l) => l.startsWith('flannel-vxlan '))!,
      /VXLAN \(UDP 4789\), 50 B overhead, pod MTU 1450/,
    );
    assert.ok(head.includes('Try next:'));
    assert.ok(head.some((l) => /^ {2}npx podwalk trace pod-a pod-c:8080 --format summary {2,}/.test(l)));
    // and the walks follow, as before
    assert.match(r.stdout, /════ calico-ipip-crosssubnet ════/);
    assert.equal(
      r.out.at(-1),
      "  npx podwalk demo --mode calico-ipip                   one mode's walks only",
    );
  });

  test('on a terminal, long lines are wrapped to its width under their text; a pipe gets them whole', async () => {
    const pipe = await podwalk(['demo', '--mode', 'flannel-vxlan']);
    assert.deepEqual(await podwalk(['demo', '--mode', 'flannel-vxlan']), pipe, 'deterministic');
    assert.ok(pipe.out.some((l) => l.length > 100));
    const tty = await podwalk(['demo', '--mode', 'flannel-vxlan'], {
      isTTY: true,
      env: { NO_COLOR: '1' },
      columns: 80,
    });
    assertExit(tty, 0);
    for (const l of tty.out) assert.ok(l.length <= 80, l);
    // the same words in the same order: only line breaks and the continuation indent differ
    const words = (s: string) => s.split(/\s+/).filter(Boolean);
    assert.deepEqual(words(tty.stdout), words(pipe.stdout));
    // a step's continuation starts under the step's text (column 20), not at the margin
    const continued = tty.out.flatMap((l, i) => (/^ {19}\S/.test(l) ? [i] : []));
    assert.ok(continued.length > 0, 'no step line was wrapped');
    for (const i of continued) {
      let j = i - 1;
      while (/^ {19}\S/.test(tty.out[j])) j--;
      assert.match(tty.out[j], /^ *\d+ {2}L\d {2}/, `line ${i + 1} continues no step: ${tty.out[j]}`);
    }
  });
});

describe('serve answers only to 127.0.0.1 and localhost (DNS rebinding)', () => {
  test('another Host is refused, a missing one too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'podwalk-serve-'));
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>page</title>');
    let served: Served | undefined;
    try {
      assertExit(await podwalk(['serve', '--port', '0', '--dir', dir], { served: (s) => (served = s) }), 0);
      const get = (host: string) =>
        new Promise<number | undefined>((ok, fail) =>
          httpGet({ host: '127.0.0.1', port: served!.port, path: '/', headers: { host } }, (res) => {
            res.resume();
            ok(res.statusCode);
          }).on('error', fail),
        );
      for (const host of [`127.0.0.1:${served!.port}`, `localhost:${served!.port}`, 'LOCALHOST', '127.0.0.1'])
        assert.equal(await get(host), 200, host);
      for (const host of [
        `evil.example:${served!.port}`,
        'evil.example',
        '127.0.0.1.evil.example',
        '10.0.0.1',
      ])
        assert.equal(await get(host), 403, host);
      // HTTP/1.0 needs no Host header (node's server refuses an HTTP/1.1 request without one itself)
      const raw = await new Promise<string>((ok, fail) => {
        const sock = connect(served!.port, '127.0.0.1', () => sock.end('GET / HTTP/1.0\r\n\r\n'));
        let got = '';
        sock.on('data', (d) => (got += d.toString()));
        sock.on('end', () => ok(got));
        sock.on('error', fail);
      });
      assert.match(raw, /^HTTP\/1\.1 403 /, 'no Host header');
    } finally {
      await served?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('lab up --dry-run (no root needed)', () => {
  test('every command runs in a namespace of the lab: nothing touches the root namespace', async () => {
    const r = await podwalk(['lab', 'up', '--dry-run']);
    assertExit(r, 0);
    const cmds = r.out.filter((l) => /^(ip|bridge) /.test(l));
    assert.ok(cmds.length > 50, show(r));
    for (const l of cmds) assert.match(l, /^(ip|bridge) (-n pw-seed-\S+ |netns (add|exec) pw-seed-\S+)/, l);
  });
});

/**
 * doctor on a Service: each cause from a cluster file of its own (and the commands that break it),
 * with its exit code, the cause's line and the real command that shows it on the node
 */
describe("doctor: a Service's causes, each with its evidence", () => {
  const cluster = (o: { cni?: string; web?: string; service?: string; extra?: string }) =>
    [
      'name: svc-doctor',
      `cni: ${o.cni ?? 'flannel-vxlan'}`,
      'subnets:',
      '  - { name: lan0, cidr: 192.168.1.0/24, gateway: 192.168.1.1 }',
      'nodes:',
      '  - { name: node1, ip: 192.168.1.10/24, podCIDR: 10.244.0.0/24 }',
      '  - { name: node2, ip: 192.168.1.11/24, podCIDR: 10.244.1.0/24 }',
      'externalHosts:',
      '  - { name: client, ip: 192.168.1.100/24 }',
      'pods:',
      '  - { name: pod-a, node: node1, ip: 10.244.0.5 }',
      `  - { name: web-1, node: node2, ip: 10.244.1.7, hostVeth: veth-web-1, labels: { app: web }, listen: [tcp/8080, udp/8080]${o.web ?? ''} }`,
      'services:',
      '  - apiVersion: v1',
      '    kind: Service',
      '    metadata: { name: web }',
      '    spec:',
      `      ${o.service ?? 'selector: { app: web }'}`,
      '      ports: [{ name: http, port: 80, targetPort: 8080 }, { name: dns, port: 80, targetPort: 8080, protocol: UDP }]',
      ...(o.extra ? [o.extra] : []),
    ].join('\n');
  const doctorOn = (yaml: string, argv: string[]) =>
    podwalk(['doctor', ...argv, '--cluster', 'c.yaml'], { files: { 'c.yaml': yaml } });
  const cause = (r: Result) => r.out.filter((l) => l.startsWith('    - '));

  test('no endpoints: the selector matches no pod, KUBE-SERVICES rejects (icmp port unreachable)', async () => {
    const r = await doctorOn(cluster({ service: 'selector: { app: nothing }' }), [
      'pod-a',
      'svc/web:80',
      '--proto',
      'udp',
    ]);
    assertExit(r, 1);
    assert.deepEqual(cause(r), [
      '    - Service default/web:dns has no endpoints: its selector app=nothing matches no pod in namespace default; kube-proxy rejects (icmp port unreachable)',
    ]);
    assert.ok(r.out.includes('    node1$ iptables -L KUBE-SERVICES -n -v --line-numbers'), show(r));
    assert.match(r.stdout, /REJECT .*default\/web:dns has no endpoints.*reject-with icmp-port-unreachable/);
  });

  test('selector matching no ready pod: the endpoint is not ready', async () => {
    const r = await doctorOn(cluster({ web: ', ready: false' }), ['pod-a', 'svc/web:80', '--proto', 'udp']);
    assertExit(r, 1);
    assert.deepEqual(cause(r), [
      '    - Service default/web:dns has no ready endpoint: default/web-1 is not ready; kube-proxy rejects (icmp port unreachable)',
    ]);
  });

  test('targetPort where nothing listens: the endpoint answers the DNATed SYN with a RST', async () => {
    const yaml = cluster({}).replace(
      '{ name: http, port: 80, targetPort: 8080 }',
      '{ name: http, port: 80, targetPort: 9090 }',
    );
    const r = await doctorOn(yaml, ['pod-a', 'svc/web:80']);
    assertExit(r, 1);
    assert.ok(r.out.includes('  entry:   no tcp socket listening on 10.244.1.7:9090 in web-1'), show(r));
    assert.equal(cause(r).length, 1, show(r));
    assert.match(
      cause(r)[0],
      /^ {4}- Service default\/web:http sends tcp\/80 to web-1 at 10\.244\.1\.7:9090 \(kube-proxy's DNAT in KUBE-SEP-\w{16} on node1\), and nothing in web-1 listens on tcp\/9090/,
    );
    assert.ok(r.out.some((l) => /^ {4}node1\$ iptables -t nat -L KUBE-SEP-\w{16} -n$/.test(l)));
    assert.ok(
      r.out.some((l) => /DNAT .* tcp to:10\.244\.1\.7:9090$/.test(l)),
      show(r),
    );
    assert.ok(
      r.out.some((l) => /LISTEN .*0\.0\.0\.0:8080/.test(l)),
      'ss -ltn in web-1',
    );
  });

  test('externalTrafficPolicy Local on a node without an endpoint: KUBE-EXTERNAL-SERVICES drops', async () => {
    const yaml = cluster({}).replace(
      '      selector: { app: web }\n      ports: [{ name: http, port: 80, targetPort: 8080 }, { name: dns, port: 80, targetPort: 8080, protocol: UDP }]',
      '      type: NodePort\n      externalTrafficPolicy: Local\n      selector: { app: web }\n      ports: [{ name: dns, port: 80, targetPort: 8080, protocol: UDP, nodePort: 30081 }]',
    );
    const r = await doctorOn(yaml, ['client', 'node1:30081', '--proto', 'udp']);
    assertExit(r, 1);
    assert.deepEqual(cause(r), [
      '    - Service default/web:dns has externalTrafficPolicy Local and no ready endpoint on node1 (its endpoints: web-1 on node2): kube-proxy drops external traffic there',
    ]);
    assert.ok(r.out.includes('    node1$ iptables -L KUBE-EXTERNAL-SERVICES -n -v --line-numbers'), show(r));
  });

  test('hairpin without masquerade: the answer goes straight over lo from the pod itself', async () => {
    const yaml = cluster({}).replace('node: node2, ip: 10.244.1.7', 'node: node1, ip: 10.244.0.7');
    const r = await doctorOn(yaml, [
      'web-1',
      'svc/web:80',
      '--run',
      'node1: bridge link set dev veth-web-1 hairpin on',
      '--run',
      'node1: iptables -t nat -D KUBE-POSTROUTING 3',
    ]);
    assertExit(r, 1);
    assert.match(r.stdout, /SYN-ACK DROPPED \(reset\) in web-1 at lo/);
    assert.equal(cause(r).length, 1, show(r));
    assert.match(
      cause(r)[0],
      /^ {4}- web-1 reached itself through Service default\/web:http \(10\.96\.0\.\d+:80 DNATed back to 10\.244\.0\.7:8080\) and was not masqueraded/,
    );
    assert.ok(r.out.includes('    node1$ iptables -t nat -L KUBE-POSTROUTING -n -v'), show(r));
    assert.ok(
      r.out.some((l) =>
        /src=10\.244\.0\.7 dst=10\.96\.0\.\d+ .* src=10\.244\.0\.7 dst=10\.244\.0\.7 sport=8080/.test(l),
      ),
      'conntrack -L: the reply goes to the pod itself',
    );
    // with the masquerade rule in place the same walk completes
    const ok = await doctorOn(yaml, [
      'web-1',
      'svc/web:80',
      '--run',
      'node1: bridge link set dev veth-web-1 hairpin on',
    ]);
    assert.doesNotMatch(ok.stdout, /DROPPED/, show(ok));
  });

  test('NetworkPolicy seen after the DNAT: a policy allowing the Service port drops the flow', async () => {
    const policy = [
      'policies:',
      '  - apiVersion: networking.k8s.io/v1',
      '    kind: NetworkPolicy',
      '    metadata: { name: web-80 }',
      '    spec:',
      '      podSelector: { matchLabels: { app: web } }',
      '      policyTypes: [Ingress]',
      '      ingress: [{ ports: [{ protocol: UDP, port: 80 }] }]',
    ].join('\n');
    const r = await doctorOn(cluster({ cni: 'calico-bgp', extra: policy }), [
      'pod-a',
      'svc/web:80',
      '--proto',
      'udp',
    ]);
    assertExit(r, 1);
    const cs = cause(r);
    assert.equal(cs.length, 2, show(r));
    assert.match(cs[0], /^ {4}- a Kubernetes NetworkPolicy: /);
    assert.match(
      cs[1],
      /^ {4}- the policy saw the packet after kube-proxy's DNAT \(KUBE-SEP-\w{16} on node1\): to 10\.244\.1\.7:8080, not to the Service's 10\.96\.0\.\d+:80; NetworkPolicy ports match the pod's port \(the targetPort\), not the Service port \(default\/web-80 allows port 80 only\)$/,
    );
  });
});
