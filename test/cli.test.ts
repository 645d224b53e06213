import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../src/cli/app.ts';
import type { Io } from '../src/cli/app.ts';
import { SEED_YAML } from '../src/cluster/seed.ts';
import { CNI_MODES } from '../src/cluster/spec.ts';
import type { Served } from '../src/cli/serve.ts';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
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
}

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
    writeFile: (dir, name, bytes) => void o.written?.set(`${dir}/${name}`, bytes),
    env: o.env ?? {},
    isTTY: o.isTTY ?? false,
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
      /=> DROPPED \(filtered\) in node1 at cni0: dropped by rule PW-IN-\S+ #3: .*"no policy selecting prod\/web allows this ingress \(selected by: prod\/web-in\)" -j DROP/,
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
    assert.match(r.stdout, /^Chain PW-IN-\S+ \(1 references\)$/m);
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
