/**
 * The recorded dumps of test/fixtures/collect/ (real namespaces on a real kernel, collected by
 * src/collect/collect.sh; re-record with `sudo flock /tmp/podwalk-lab.lock npx tsx
 * scripts/record-collect-fixtures.ts`), imported without root:
 *  - each lab set: every dumped ip/bridge/iptables-save output printed again by the emulated
 *    tools on the imported World (the round trip), the roles and names the dumps imply, and the
 *    same walks as the simulated cluster the lab was built from;
 *  - each planted fault (a deleted FDB entry, ip_forward=0, an MTU mismatch): doctor on the
 *    imported cluster finds it with the same evidence as on the simulated cluster with the same
 *    fault applied by --run;
 *  - the hand-made Calico/Docker topology: roles, names, the pod CIDR from Calico's blackhole
 *    route, and the walks (the kernel agreed with them when it was collected: collect-lab.test.ts);
 *  - the CLI with --from (a directory and a .tar.gz), collect --script.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURE_DIR, FIXTURE_SETS, fixtureSpec } from '../scripts/collect-fixtures.ts';
import { run, type Io } from '../src/cli/app.ts';
import { buildCluster } from '../src/cni/build.ts';
import { loadDumps } from '../src/collect/load.ts';
import { collectorScript } from '../src/collect/run.ts';
import { doctor, type DoctorReport } from '../src/diagnose/doctor.ts';
import { importCluster } from '../src/import/index.ts';
import { DUMPED_COMMANDS, lineDiff, roundTrip } from '../src/import/roundtrip.ts';
import { renderSummary } from '../src/render/text.ts';
import { prepareCluster } from '../src/tools/index.ts';
import { walk, type WalkRequest } from '../src/trace/walk.ts';

const dir = (name: string) => fileURLToPath(new URL(`${name}/`, FIXTURE_DIR));
const recorded = (name: string) => existsSync(dir(name));
const skipUnless = (name: string) =>
  recorded(name) ? false : `no ${dir(name)}: run scripts/record-collect-fixtures.ts as root`;
const imported = (name: string) => importCluster(loadDumps(dir(name)).files, { name: fixtureSpec().name });

describe('recorded lab dumps import back', () => {
  for (const set of FIXTURE_SETS.filter((s) => s.mode)) {
    test(
      `${set.name}: every dumped ip/bridge/iptables-save output, printed again by the emulated tools`,
      { skip: skipUnless(set.name) },
      () => {
        const files = loadDumps(dir(set.name)).files;
        const { cluster, plan, warnings } = importCluster(files, { name: fixtureSpec().name });
        const results = roundTrip(files, plan, cluster);
        // every dumped command (ipset save too: empty outside Calico) in each of the 9 namespaces of the seed cluster's lab
        assert.equal(results.length, 9 * DUMPED_COMMANDS.length);
        const bad = results.filter((r) => !r.equal);
        assert.equal(
          bad.length,
          0,
          bad.map((r) => `${r.netns}: ${r.command}\n${lineDiff(r.model, r.real)}`).join('\n\n'),
        );
        assert.equal(cluster.mode, set.mode);
        assert.deepEqual(
          plan.namespaces.map((p) => `${p.name}:${p.role}${p.node ? `@${p.node}` : ''}`),
          [
            'lan0:segment',
            'node1:node',
            'node2:node',
            'node3:node',
            'pod-a:pod@node1',
            'pod-b:pod@node1',
            'pod-c:pod@node2',
            'pod-d:pod@node3',
            'router:router',
          ],
        );
        assert.deepEqual(
          warnings.filter((w) => !/conntrack entr/.test(w.subject)),
          [],
          'a lab holds nothing the model cannot represent but conntrack state',
        );
      },
    );

    test(
      `${set.name}: nodes, pods and their listeners as the lab's cluster has them`,
      { skip: skipUnless(set.name) },
      () => {
        const { cluster } = imported(set.name);
        const sim = buildCluster(fixtureSpec(), set.mode!);
        const nodes = (c: typeof sim) => c.nodes.map((n) => `${n.name} ${n.ip} ${n.podCIDR} ${n.subnet}`);
        const pods = (c: typeof sim) =>
          c.pods.map(
            (p) =>
              `${p.name}@${p.node} ${p.ip} ${p.mac} ${p.hostVeth} ${p.listen.map((l) => `${l.proto}/${l.port}`).sort()}`,
          );
        assert.deepEqual(nodes(cluster), nodes(sim));
        assert.deepEqual(pods(cluster), pods(sim));
        assert.deepEqual(
          cluster.spec.subnets,
          sim.spec.subnets.map((s) => ({ ...s, gatewayMac: cluster.spec.subnets[0].gatewayMac })),
        );
      },
    );

    if (!set.fault)
      test(
        `${set.name}: walks on the import cross the same devices as on the simulated cluster`,
        { skip: skipUnless(set.name) },
        () => {
          for (const r of [
            { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080 },
            { from: 'pod-a', to: 'pod-b', proto: 'udp', port: 8080 },
            { from: 'pod-c', to: 'pod-d', proto: 'icmp', size: 1450, df: true },
            { from: 'pod-d', to: 'pod-b', proto: 'icmp', size: 3000 },
            { from: 'node3', to: 'pod-a', proto: 'tcp', port: 8080 },
          ] as WalkRequest[]) {
            const a = walk(imported(set.name).cluster, r, { exchange: true });
            const b = walk(buildCluster(fixtureSpec(), set.mode!), r, { exchange: true });
            assert.deepEqual(
              a.traces.map((t) => renderSummary(t)),
              b.traces.map((t) => renderSummary(t)),
              `${r.from} → ${r.to} ${r.proto}`,
            );
          }
        },
      );
  }
});

describe('doctor on an imported cluster finds the planted fault with the same evidence as on a simulated one', () => {
  for (const set of FIXTURE_SETS.filter((s) => s.fault))
    test(`${set.name}: ${set.fault!.command} on ${set.fault!.netns}`, { skip: skipUnless(set.name) }, () => {
      const f = set.flow!;
      const req = { from: f.from, to: f.to, proto: f.proto, port: f.port };
      const real = doctor(imported(set.name).cluster, req);
      const sim = doctor(prepareCluster(fixtureSpec(), set.mode!, [set.fault!.run]), req);
      assert.equal(real.healthy, false);
      assert.ok(real.failure, 'doctor found a failing step');
      const evidence = (r: DoctorReport) => {
        const x = r.failure!.explanation;
        return {
          probe: r.failure!.probe,
          packet: r.failure!.packet,
          reason: x.reason,
          netns: x.netns,
          device: x.device,
          stage: x.stage,
          entry: x.entry,
          summary: x.summary,
          // a counter's value now differs (the lab's own traffic); how much it rose must not
          counters: x.counters.map((c) => ({ ...c, value: undefined })),
          commands: x.evidence.map((e) => e.command),
          causes: x.causes,
          recovered: r.failure!.recovered,
        };
      };
      assert.deepEqual(evidence(real), evidence(sim));
      const problems = (r: DoctorReport) =>
        r.checks.flatMap((c) =>
          c.findings.filter((x) => x.severity === 'problem').map((x) => `${c.check}: ${x.message}`),
        );
      assert.deepEqual(problems(real), problems(sim));
    });
});

describe('a topology podwalk did not build (Calico-like, Docker FORWARD DROP), recorded', () => {
  const name = 'handmade-calico';
  test(
    'roles, names, the pod CIDR from the blackhole route, the CNI it looks like',
    { skip: skipUnless(name) },
    () => {
      const { cluster, plan, warnings } = importCluster(loadDumps(dir(name)).files, { name: 'handmade' });
      assert.deepEqual(
        plan.namespaces.map((p) => `${p.name}:${p.role}${p.node ? `@${p.node}` : ''}`),
        ['n1:node', 'n2:node', 'p1:pod@n1', 'p2:pod@n2', 'p3:pod@n1'],
      );
      assert.equal(cluster.mode, 'calico-bgp');
      assert.deepEqual(
        cluster.nodes.map((n) => `${n.name} ${n.ip} ${n.podCIDR}`),
        ['n1 192.168.50.1/24 10.65.1.0/26', 'n2 192.168.50.2/24 10.65.2.0/26'],
      );
      assert.deepEqual(
        cluster.pods.map((p) => `${p.name} ${p.ip} ${p.hostVeth}`),
        ['p1 10.65.1.2 cali1a2b3c4d5e6', 'p2 10.65.2.2 cali0f1e2d3c4b5', 'p3 10.65.1.3 cali6e5d4c3b2a1'],
      );
      assert.deepEqual(warnings, []);
      const bad = roundTrip(loadDumps(dir(name)).files, plan, cluster).filter((r) => !r.equal);
      assert.equal(
        bad.length,
        0,
        bad.map((r) => `${r.netns}: ${r.command}\n${lineDiff(r.model, r.real)}`).join('\n'),
      );
    },
  );

  test(
    'walks: proxy ARP for 169.254.1.1, Calico routes, Docker policy DROP with its DNS exception',
    { skip: skipUnless(name) },
    () => {
      const go = (r: WalkRequest) =>
        walk(importCluster(loadDumps(dir(name)).files, { name: 'handmade' }).cluster, r, { exchange: true });
      const dns = go({ from: 'p1', to: 'p2', proto: 'udp', port: 53 });
      assert.equal(dns.reply?.disposition.kind, 'delivered');
      const proxied = dns.request.steps.find((s) => s.ev.type === 'arp-proxy-reply');
      assert.ok(proxied, 'n1 answers for 169.254.1.1 by proxy ARP');
      assert.equal(proxied.netns, 'n1');
      const tcp = go({ from: 'p1', to: 'p2', proto: 'tcp', port: 8080 });
      assert.equal(tcp.request.disposition.kind, 'dropped');
      assert.match(renderSummary(tcp.request), /DROPPED \(filtered\) in n2/);
      assert.match(renderSummary(tcp.request), /policy DROP|FORWARD/);
      assert.equal(
        go({ from: 'p1', to: 'p3', proto: 'tcp', port: 8080 }).reply?.disposition.kind,
        'delivered',
      );
    },
  );
});

describe("a node's own veth pair (both ends in its namespace), recorded", () => {
  const name = 'handmade-veth-pair';
  const load = () => {
    const files = loadDumps(dir(name)).files;
    return { files, ...importCluster(files, { name: 'pair' }) };
  };

  test(
    'the ends are joined within the namespace; the round trip prints every dump again',
    { skip: skipUnless(name) },
    () => {
      const { files, cluster, plan, warnings } = load();
      assert.deepEqual(warnings, []);
      assert.deepEqual(
        plan.namespaces.map((p) => `${p.name}:${p.role}${p.node ? `@${p.node}` : ''}`),
        ['n1:node', 'n2:node', 'p1:pod@n1', 'p2:pod@n2'],
      );
      const n1 = plan.namespaces.find((p) => p.name === 'n1')!;
      assert.deepEqual(
        n1.links.flatMap((l) => (l.type === 'veth' ? [`${l.name} ${l.peer.ns}/${l.peer.name}`] : [])),
        ['eth0 n2/eth0', 'gw0-br n1/gw0', 'gw0 n1/gw0-br', 'veth-p1 p1/eth0'],
      );
      const gw0 = cluster.world.ns('n1').link('gw0')!;
      assert.equal(gw0.type === 'veth' && `${gw0.peer?.netns}/${gw0.peer?.name}`, 'n1/gw0-br');
      // the pod CIDR from the gateway address on the bridge's own veth pair
      assert.deepEqual(cluster.nodes.map((n) => `${n.name} ${n.ip} ${n.podCIDR}`).slice(0, 1), [
        'n1 192.168.60.1/24 10.66.1.0/24',
      ]);
      const results = roundTrip(files, plan, cluster);
      // 8 commands in each of the 4 namespaces
      assert.equal(results.length, 32);
      const bad = results.filter((r) => !r.equal);
      assert.equal(
        bad.length,
        0,
        bad.map((r) => `${r.netns}: ${r.command}\n${lineDiff(r.model, r.real)}`).join('\n'),
      );
    },
  );

  test(
    'walks: out through the bridge (its own MAC answered ARP first), back across the pair',
    { skip: skipUnless(name) },
    () => {
      for (const proto of ['tcp', 'udp', 'icmp'] as const) {
        const w = walk(load().cluster, { from: 'p1', to: 'p2', proto, port: proto === 'udp' ? 53 : 8080 });
        assert.equal(w.reply?.disposition.kind, 'delivered', `${proto}: ${renderSummary(w.request)}`);
        // p1's ARP for 10.66.1.1 is answered by br0 (weak host: it is a local address of n1) before
        // gw0 answers through the pair; the second reply is inside locktime and p1 keeps br0's MAC
        const locked = w.request.steps.find((s) => s.ev.type === 'arp-locked');
        assert.ok(locked && locked.netns === 'p1', proto);
        assert.match(renderSummary(w.request), /^ {2}n1 +veth-p1 → br0 → eth0$/m, proto);
        // the reply is routed out of gw0, across the pair into the bridge
        assert.match(renderSummary(w.reply!), /^ {2}n1 +eth0 → gw0 → gw0-br → br0 → veth-p1$/m, proto);
      }
      const back = walk(load().cluster, { from: 'p2', to: 'p1', proto: 'tcp', port: 8080 });
      assert.equal(back.reply?.disposition.kind, 'delivered');
      assert.match(renderSummary(back.request), /^ {2}n1 +eth0 → gw0 → gw0-br → br0 → veth-p1$/m);
    },
  );
});

describe('the CLI with --from', () => {
  const io = (out: string[], err: string[]): Io => ({
    out: (s) => out.push(s),
    err: (s) => err.push(s),
    readFile: (p) => readFileSync(p, 'utf8'),
    openDir: () => () => undefined,
    readDumps: loadDumps,
    collectorScript,
    env: {},
    isTTY: false,
  });
  const cli = async (argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await run(argv, io(out, err));
    return { code, out: out.join('\n'), err: err.join('\n') };
  };
  const set = 'flannel-vxlan';

  test(
    'trace, exec and doctor on a dump directory; warnings on stderr',
    { skip: skipUnless(set) },
    async () => {
      const t = await cli(['trace', 'pod-a', 'pod-c:8080', '--from', dir(set), '--format', 'summary']);
      assert.equal(t.code, 0, t.err);
      assert.match(t.out, /=> delivered to pod-c tcp\/8080/);
      assert.match(t.err, /^podwalk: warning: built from 4 node dumps; the CNI looks like flannel-vxlan/);
      const e = await cli([
        'exec',
        'node1',
        '--from',
        dir(set),
        '--',
        'ip',
        '-j',
        'route',
        'show',
        'table',
        'all',
      ]);
      assert.equal(
        e.out + '\n',
        readFileSync(
          join(
            dir(set),
            'node1/netns',
            loadDumps(dir(set))
              .files.get('node1/manifest.txt')!
              .match(/target: (\d+)/)![1],
            'route.json',
          ),
          'utf8',
        ),
      );
      const d = await cli(['doctor', 'pod-a', 'pod-c:8080', '--from', dir('fault-vxlan-fdb-deleted')]);
      assert.equal(d.code, 1);
      assert.match(d.out, /vxlan-fdb-miss in node1 at flannel\.1/);
      const run2 = await cli([
        'trace',
        'pod-a',
        'pod-c',
        '--proto',
        'icmp',
        '--from',
        dir(set),
        '--run',
        'node2: ip link set flannel.1 down',
        '--format',
        'summary',
      ]);
      assert.equal(run2.code, 1);
    },
  );

  for (const f of FIXTURE_SETS.filter((x) => x.fault))
    test(
      `doctor --from ${f.name} says what doctor --run '${f.fault!.run}' says on the simulated cluster`,
      { skip: skipUnless(f.name) },
      async () => {
        const flow = [f.flow!.from, `${f.flow!.to}:${f.flow!.port}`];
        const real = await cli(['doctor', ...flow, '--from', dir(f.name)]);
        const sim = await cli(['doctor', ...flow, '--mode', f.mode!, '--run', f.fault!.run]);
        assert.equal(real.code, 1, real.err);
        assert.equal(sim.code, 1, sim.err);
        // the explanation's head and every failed check, line by line
        const evidence = (out: string) =>
          out.split('\n').filter((l) => /^(why: | {2}where: | {2}entry: | {2}✗ )/.test(l));
        assert.ok(evidence(real.out).length >= 4, real.out);
        assert.deepEqual(evidence(real.out), evidence(sim.out));
      },
    );

  test('a .tar.gz of the dumps gives the same as the directory', { skip: skipUnless(set) }, async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'podwalk-tgz-'));
    try {
      // named as the directory is: the cluster's name seeds ports, IP ids and sequence numbers
      const archive = join(tmp, `${set}.tar.gz`);
      execFileSync('tar', ['-czf', archive, '-C', dir(set), '.']);
      const a = await cli(['trace', 'pod-a', 'pod-c:8080', '--sport', '40000', '--from', archive, '--json']);
      const b = await cli(['trace', 'pod-a', 'pod-c:8080', '--sport', '40000', '--from', dir(set), '--json']);
      assert.equal(a.code, 0);
      const strip = (s: string) => ({ ...JSON.parse(s), from: undefined });
      assert.deepEqual(strip(a.out), strip(b.out));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('bad usage and bad dumps: one line, exit 2', { skip: skipUnless(set) }, async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'podwalk-bad-'));
    try {
      for (const [argv, want] of [
        [
          ['trace', 'pod-a', 'pod-c', '--from', join(tmp, 'nope')],
          /^podwalk: .*nope: no such file or directory$/,
        ],
        [
          ['trace', 'pod-a', 'pod-c', '--from', dir(set), '--mode', 'calico-bgp'],
          /^podwalk: --from builds the cluster from the dumps; --mode describes a simulated one/,
        ],
        [['doctor', '--from', dir(set)], /^podwalk: doctor --from needs FROM and TO$/],
        [['collect'], /^podwalk: collect needs --out DIR/],
      ] as [string[], RegExp][]) {
        const r = await cli(argv);
        assert.equal(r.code, 2, argv.join(' '));
        assert.match(r.err, want);
        assert.equal(r.err.split('\n').length, 1);
      }
      execFileSync('sh', [
        '-c',
        `mkdir -p ${tmp}/d/n && printf 'podwalk-collect: 1\\nnode: n\\ntarget: 5\\n' > ${tmp}/d/n/manifest.txt`,
      ]);
      const r = await cli(['trace', 'a', 'b', '--from', join(tmp, 'd')]);
      assert.equal(r.code, 2);
      assert.equal(
        r.err,
        `podwalk: ${join(tmp, 'd')}/n/netns/5: the node's own namespace is missing from the dump`,
      );
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('collect --script prints the collector that collect runs', async () => {
    const r = await cli(['collect', '--script']);
    assert.equal(r.code, 0);
    assert.equal(r.out + '\n', readFileSync(new URL('../src/collect/collect.sh', import.meta.url), 'utf8'));
    // a POSIX sh script: dash parses it
    execFileSync('dash', ['-n', fileURLToPath(new URL('../src/collect/collect.sh', import.meta.url))]);
  });
});

describe("the collector's save: which stderr is a complaint worth a retry", () => {
  // save() as collect.sh defines it (the SAVE block, eval'd in every namespace's shell), run by
  // dash on fake commands that count their runs
  const script = readFileSync(new URL('../src/collect/collect.sh', import.meta.url), 'utf8');
  const block = /^SAVE='\n([\s\S]*?\n\})'$/m.exec(script);
  const saveRuns = (body: string) => {
    const tmp = mkdtempSync(join(tmpdir(), 'podwalk-save-'));
    try {
      const sh = `${block![1]}\ncmd() { echo run >>"${tmp}/runs"; ${body}; }\nsave "${tmp}/out.txt" cmd\n`;
      execFileSync('dash', ['-c', sh]);
      const err = join(tmp, 'out.txt.err');
      return {
        runs: readFileSync(join(tmp, 'runs'), 'utf8').split('\n').filter(Boolean).length,
        out: readFileSync(join(tmp, 'out.txt'), 'utf8'),
        err: existsSync(err) ? readFileSync(err, 'utf8') : undefined,
      };
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  };
  const summary = (n: number) =>
    `echo "conntrack v1.4.7 (conntrack-tools): ${n} flow entries have been shown." >&2`;

  test("conntrack -L's summary on stderr: one run, no .err", () => {
    assert.ok(block, 'collect.sh defines save in a SAVE block');
    assert.deepEqual(saveRuns(`echo "tcp 6 117 SYN_SENT src=10.0.0.1"; ${summary(1)}`), {
      runs: 1,
      out: 'tcp 6 117 SYN_SENT src=10.0.0.1\n',
      err: undefined,
    });
  });

  test('conntrack -L listing nothing (its summary, exit 1): one run, the exit status kept', () => {
    assert.deepEqual(saveRuns(`${summary(0)}; return 1`), {
      runs: 1,
      out: '',
      err: 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.\nexit 1\n',
    });
  });

  test('any other complaint, alone or beside the summary: three runs, kept in .err', () => {
    assert.deepEqual(saveRuns(`echo x; echo "Error: something" >&2`), {
      runs: 3,
      out: 'x\n',
      err: 'Error: something\n',
    });
    assert.equal(saveRuns(`${summary(2)}; echo "conntrack: table full" >&2`).runs, 3);
    assert.equal(saveRuns('return 1').runs, 3);
  });
});

describe('Kubernetes objects next to the dumps', () => {
  const set = 'flannel-vxlan';
  test(
    'pods named namespace/name by pod IP, with their labels and named ports; node pod CIDRs',
    { skip: skipUnless(set) },
    () => {
      const files = new Map(loadDumps(dir(set)).files);
      const pod = (name: string, ns: string, node: string, ip: string, labels: Record<string, string>) => ({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: ns, labels },
        spec: {
          nodeName: node,
          containers: [{ name: 'c', ports: [{ containerPort: 8080, protocol: 'TCP', name: 'http' }] }],
        },
        status: { podIP: ip, podIPs: [{ ip }] },
      });
      files.set(
        'kube.json',
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'List',
          items: [
            {
              apiVersion: 'v1',
              kind: 'Node',
              metadata: { name: 'node1' },
              spec: { podCIDR: '10.244.0.0/24' },
              status: { addresses: [{ type: 'InternalIP', address: '192.168.1.10' }] },
            },
            pod('client', 'shop', 'node1', '10.244.0.5', { app: 'client' }),
            pod('web', 'shop', 'node2', '10.244.1.5', { app: 'web' }),
            // a hostNetwork pod has the node's address: it is not a pod namespace
            {
              apiVersion: 'v1',
              kind: 'Pod',
              metadata: { name: 'kube-proxy-x', namespace: 'kube-system' },
              spec: { nodeName: 'node1', hostNetwork: true },
              status: { podIP: '192.168.1.10' },
            },
            {
              apiVersion: 'v1',
              kind: 'Service',
              metadata: { name: 'web', namespace: 'shop' },
              spec: { clusterIP: '10.96.0.10' },
            },
          ],
        }),
      );
      const { cluster, warnings } = importCluster(files, { name: 'collect' });
      const names = cluster.pods.map(
        (p) =>
          `${p.name} ${p.namespace} ${JSON.stringify(p.labels)} ${p.listen
            .map((l) => `${l.proto}/${l.port}/${l.name ?? ''}`)
            .sort()
            .join(',')}`,
      );
      assert.deepEqual(names, [
        'pod-b default {} tcp/8080/,udp/8080/',
        'pod-d default {} tcp/8080/,udp/53/',
        'shop/client shop {"app":"client"} ',
        'shop/web shop {"app":"web"} tcp/8080/http,udp/8080/',
      ]);
      assert.ok(
        warnings.some(
          (w) => /kube\.json: 1 Service/.test(w.subject) && /walk to a pod's address/.test(w.effect),
        ),
      );
      const w = walk(cluster, { from: 'shop/client', to: 'shop/web', proto: 'tcp', port: 8080 });
      assert.equal(w.reply?.disposition.kind, 'delivered');
      // kube-proxy's iptables rules in a node's dump: the ClusterIP is translated, no warning
      const target = files.get('node1/manifest.txt')!.match(/target: (\d+)/)![1];
      const save = `node1/netns/${target}/iptables-save.txt`;
      files.set(
        save,
        files.get(save)! +
          [
            '*nat',
            ':PREROUTING ACCEPT [0:0]',
            ':INPUT ACCEPT [0:0]',
            ':OUTPUT ACCEPT [0:0]',
            ':POSTROUTING ACCEPT [0:0]',
            ':KUBE-SERVICES - [0:0]',
            '[0:0] -A PREROUTING -j KUBE-SERVICES',
            '[0:0] -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.1.5:8080',
            'COMMIT',
            '',
          ].join('\n'),
      );
      const withProxy = importCluster(files, { name: 'collect' });
      assert.ok(!withProxy.warnings.some((x) => /Service/.test(x.subject)));
      const svc = walk(withProxy.cluster, { from: 'shop/client', to: '10.96.0.10', proto: 'tcp', port: 80 });
      assert.equal(svc.reply?.disposition.kind, 'delivered');
    },
  );

  test("a kube.json that is not kubectl's List: one line", { skip: skipUnless(set) }, () => {
    const files = new Map(loadDumps(dir(set)).files);
    files.set('kube.json', JSON.stringify({ kind: 'Pod' }));
    assert.throws(
      () => importCluster(files),
      /^Error: kube\.json: expected the v1 List that `kubectl get … -A -o json` prints$|kube\.json: expected the v1 List/,
    );
  });
});

describe('serve --from hands the dumps to the page, which imports them itself', () => {
  const set = 'flannel-vxlan';
  test(
    '/dumps.json, and the page session builds and walks the same cluster',
    { skip: skipUnless(set) },
    async () => {
      const { loadDumps: pageLoad, prepare, simulate } = await import('../web/session.ts');
      const web = mkdtempSync(join(tmpdir(), 'podwalk-serve-'));
      let served: import('../src/cli/serve.ts').Served | undefined;
      try {
        execFileSync('sh', ['-c', `echo '<!doctype html>' > ${web}/index.html`]);
        const out: string[] = [];
        const code = await run(['serve', '--port', '0', '--dir', web, '--from', dir(set)], {
          out: (s) => out.push(s),
          err: () => undefined,
          readFile: (p) => readFileSync(p, 'utf8'),
          openDir: () => () => undefined,
          readDumps: loadDumps,
          served: (s) => (served = s),
          env: {},
          isTTY: false,
        });
        assert.equal(code, 0);
        assert.ok(served);
        const r = await fetch(new URL('dumps.json', served.url));
        assert.equal(r.status, 200);
        const loaded = pageLoad(await r.text());
        assert.equal(loaded.spec.cni, 'flannel-vxlan');
        assert.ok(loaded.warnings?.some((w) => /CNI looks like flannel-vxlan/.test(w)));
        const c = prepare(loaded, loaded.spec.cni, ['node1: ip route del 10.244.1.0/24']);
        assert.equal(
          walk(c, { from: 'pod-a', to: 'pod-c', proto: 'icmp' }).request.disposition.kind,
          'dropped',
        );
        const sim = simulate(loaded, loaded.spec.cni, [], {
          from: 'pod-a',
          to: 'pod-c',
          proto: 'tcp',
          port: 8080,
          df: false,
        });
        assert.equal(sim.walk?.reply?.disposition.kind, 'delivered');
      } finally {
        await served?.close();
        rmSync(web, { recursive: true, force: true });
      }
    },
  );
});
