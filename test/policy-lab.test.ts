/**
 * NetworkPolicy on the real kernel: the lab restores the model's IP sets (felix's selector and
 * named-port sets, with the real `ipset restore`) and iptables (felix's chains in Calico's layout)
 * into network namespaces, and allowed and denied flows must behave on the kernel as in the
 * simulation, packet by packet, the policy chain's rule counters included. Without ipset
 * installed, skipped with that reason. Root only, with its own cluster name ("polt",
 * test/fixtures/policy-cluster.yaml), never the seed's; skipped with the reason elsewhere.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCluster, loadPolicies } from '../src/cluster/load.ts';
import { buildCluster } from '../src/cni/build.ts';
import { ipsetUnavailable, labDown, labUnavailable, labUp } from '../src/lab/host.ts';
import { labTrace } from '../src/lab/trace.ts';
import { stateDiff } from '../src/lab/diff.ts';
import { iptablesSave } from '../src/tools/iptables-save.ts';

// felix's selectors are IP sets: the lab loads them with the real ipset
const why = labUnavailable() ?? ipsetUnavailable();
const skip = why ? `real-kernel lab unavailable: ${why}` : false;

const POLICY = [
  'apiVersion: networking.k8s.io/v1',
  'kind: NetworkPolicy',
  'metadata: {name: web-in, namespace: prod}',
  'spec:',
  '  podSelector: {matchLabels: {app: web}}',
  '  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: http}]}]',
].join('\n');

const spec = loadCluster(
  readFileSync(new URL('./fixtures/policy-cluster.yaml', import.meta.url), 'utf8'),
  'c',
);
assert.equal(spec.name, 'polt');
spec.policies = loadPolicies(POLICY, 'web.yaml');
const lab = buildCluster(spec, 'calico-bgp');

/** the walk's outcome is `allowed`'s, on the kernel as in the model, and every interface agrees */
function assertAgrees(r: Awaited<ReturnType<typeof labTrace>>, allowed: boolean): void {
  assert.equal(r.sim.request.disposition.kind, allowed ? 'delivered' : 'dropped');
  assert.equal(r.client.code === 0, allowed, `real client: ${r.client.out}`);
  const differ = r.diffs.filter((d) => d.first !== -1).map((d) => `${d.netns}/${d.dev}`);
  assert.ok(r.agree, `interfaces differ: ${differ.join(', ')}`);
}

describe('NetworkPolicy in the real-kernel lab (calico-bgp)', { skip }, () => {
  after(() => {
    labDown(lab);
  });

  for (const [from, allowed] of [
    ['client', true],
    ['devclient', false],
  ] as const)
    test(
      `${from} → web:8080 is ${allowed ? 'allowed' : 'denied'} on the kernel as in the model`,
      { timeout: 120_000 },
      async () => {
        labDown(lab);
        const state = await labUp(lab);
        try {
          // felix's rules and its IP sets (client's /32, the http named port) as the model holds them
          const tables = await stateDiff(state, buildCluster(spec, 'calico-bgp'), [
            'iptables-save',
            'ipset save',
          ]);
          for (const t of tables)
            assert.ok(t.equal, `${t.netns}: ${t.command} differs\n${t.sim}\n---\n${t.real}`);
          assert.ok(
            tables.some((t) => t.command === 'ipset save' && /^add cali40s:/m.test(t.real)),
            'the kernel holds a selector set',
          );
          const sim = buildCluster(spec, 'calico-bgp');
          const r = await labTrace(state, sim, { from, to: 'web', proto: 'tcp', port: 8080 });
          assertAgrees(r, allowed);
          // the policy's chain counted on the kernel what it counted in the model: its -m set rule
          // matched the SYN (allowed) or nothing (denied)
          const real = spawnSync(
            'ip',
            ['netns', 'exec', state.namespaces.node1, 'iptables-save', '-c', '-t', 'filter'],
            { encoding: 'utf8' },
          ).stdout;
          const counted = (save: string) =>
            save
              .split('\n')
              .filter((l) => / -A cali-pi-/.test(l))
              .map((l) => l.replace(/ -m comment --comment "cali:[\w-]{16}"/, ''));
          const model = counted(iptablesSave(sim.world.ns('node1').netfilter, true));
          assert.ok(
            model.some((l) => l.includes('--match-set cali40s:')),
            model.join('\n'),
          );
          assert.deepEqual(counted(real), model);
          if (allowed)
            assert.match(
              model.find((l) => l.includes('--match-set'))!,
              /^\[1:60\] /,
            );
        } finally {
          labDown(lab);
        }
      },
    );
});

// felix's chains with every peer and port form (test/fixtures/felix-cluster.yaml, cluster
// "felixt"): an ipBlock with except, a named port and a port range (felix's scratch-mark match
// blocks), a namespaceSelector, egress; each flow on a fresh lab, packet by packet
const felixSpec = loadCluster(
  readFileSync(new URL('./fixtures/felix-cluster.yaml', import.meta.url), 'utf8'),
  'felix-cluster.yaml',
);
const felixLab = buildCluster(felixSpec, 'calico-bgp');

describe("felix's chains on the real kernel (calico-bgp)", { skip }, () => {
  after(() => {
    labDown(felixLab);
  });
  for (const [from, to, port, allowed, what] of [
    ['node2', 'api', 8080, false, 'the ipBlock except: node2 is cut out of the node subnet'],
    ['api', 'web', 8080, true, "web's named port http in a port match block"],
    ['grafana', 'api', 9005, true, 'a port range, from a namespaceSelector peer'],
    ['queue', 'tool', 8080, false, "queue's egress: only redis and DNS"],
    ['queue', 'redis', 6379, true, "queue's egress to redis' named port"],
  ] as const)
    test(
      `${from} → ${to}:${port} is ${allowed ? 'allowed' : 'denied'} (${what})`,
      { timeout: 120_000 },
      async () => {
        labDown(felixLab);
        const state = await labUp(felixLab);
        try {
          const r = await labTrace(state, buildCluster(felixSpec, 'calico-bgp'), {
            from,
            to,
            proto: 'tcp',
            port,
          });
          assertAgrees(r, allowed);
        } finally {
          labDown(felixLab);
        }
      },
    );
});

describe('lab diff models the policies lab up enforced', { skip }, () => {
  test(
    'lab up --policy, then lab diff without it: iptables-save agrees on every node',
    { timeout: 120_000 },
    () => {
      const root = fileURLToPath(new URL('..', import.meta.url));
      const dir = mkdtempSync(join(tmpdir(), 'podwalk-policy-lab-'));
      const policy = join(dir, 'web.yaml');
      writeFileSync(policy, POLICY + '\n');
      const cluster = ['--cluster', join(root, 'test/fixtures/policy-cluster.yaml')];
      const cli = (args: string[]) =>
        spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
          cwd: root,
          encoding: 'utf8',
        });
      try {
        labDown(lab);
        const up = cli(['lab', 'up', ...cluster, '--mode', 'calico-bgp', '--policy', policy]);
        assert.equal(up.status, 0, up.stderr);
        // iptables-save is where the policies live: every node's agrees with the model's. (lab diff
        // also compares ip link, where this cluster shows two things the model does not have yet:
        // node3's cni0 has no port, so the kernel gives it no carrier, and node2's veths are
        // numbered in another order; lab diff reports them, this test is about the policies)
        const diff = cli(['lab', 'diff', ...cluster, '--all']);
        assert.match(diff.stdout, /node1: iptables-save: agree/, diff.stdout + diff.stderr);
        assert.doesNotMatch(diff.stdout, /iptables-save: DIFFER/, diff.stdout);
        // --policy still names the model's policies: others than the lab's differ
        const deny = join(dir, 'deny.yaml');
        writeFileSync(
          deny,
          [
            'apiVersion: networking.k8s.io/v1',
            'kind: NetworkPolicy',
            'metadata: {name: deny-all, namespace: prod}',
            'spec: {podSelector: {}, policyTypes: [Ingress]}',
            '',
          ].join('\n'),
        );
        const other = cli(['lab', 'diff', ...cluster, '--policy', deny, '--all']);
        assert.equal(other.status, 1, other.stdout + other.stderr);
        assert.match(other.stdout, /iptables-save: DIFFER/);
      } finally {
        labDown(lab);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
