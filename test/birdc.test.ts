/**
 * The emulated birdc against what the real birdc printed (BIRD 2.0.12): test/fixtures/bird/lab.json
 * was recorded by test/lab-bird.test.ts (PODWALK_RECORD=1) from the BIRDs of a calico-bgp lab of
 * scenarios/host-gw-across-subnets.yaml, together with each node's `ip route`; the times are the
 * wall clock's and are masked. The order of `show route` is BIRD's FIB hash order, checked here on
 * every recorded table (test/fixtures/bgp/manifest.json's too). Bad input: one line, exit 2.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster } from '../src/cni/build.ts';
import { fibHash } from '../src/tools/birdc.ts';
import { runCommand } from '../src/tools/index.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const lab = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/bird/lab.json'), 'utf8')) as {
  bird: string;
  cluster: string;
  mode: 'calico-bgp';
  outputs: Record<string, string>;
};
const bgp = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/bgp/manifest.json'), 'utf8')) as {
  steps: { argv: string[]; out: string }[];
};

function cluster() {
  const file = join(ROOT, lab.cluster);
  const spec = loadCluster(readFileSync(file, 'utf8'), file);
  spec.name = 'pwbird';
  return buildCluster(spec, lab.mode);
}

const maskTimes = (s: string) => s.replace(/\b\d\d:\d\d:\d\d\.\d\d\d\b/g, 'HH:MM:SS.mmm');

test('the recorded tables list their networks in BIRD’s FIB hash order', () => {
  const tables = [
    ...Object.entries(lab.outputs)
      .filter(([k]) => k.endsWith('birdc show route'))
      .map(([, v]) => v),
    ...bgp.steps.filter((s) => s.argv[0] === 'birdc' && s.argv.includes('route')).map((s) => s.out),
  ];
  assert.ok(tables.length >= 5);
  let nets = 0;
  for (const t of tables) {
    const prefixes = t
      .split('\n')
      .filter((l) => /^\d/.test(l))
      .map((l) => l.split(' ')[0])
      .map((p) => (p.includes('/') ? p : `${p}/32`));
    nets += prefixes.length;
    assert.deepEqual(
      prefixes,
      [...prefixes].sort((a, b) => fibHash(a) - fibHash(b)),
    );
  }
  assert.ok(nets >= 15, `${nets} networks`);
});

test('birdc show protocols / show route print what the real birdc printed on each node', () => {
  const c = cluster();
  let n = 0;
  for (const [key, real] of Object.entries(lab.outputs)) {
    const [node, cmd] = key.split(': ');
    if (!cmd.startsWith('birdc')) continue;
    const sim = runCommand(c, node, cmd);
    assert.equal(sim.code, 0, sim.stderr);
    assert.equal(maskTimes(sim.stdout), maskTimes(real), key);
    n++;
  }
  assert.equal(n, 6);
});

test('the routes the real BIRDs installed are the model’s, byte for byte', () => {
  const c = cluster();
  for (const node of c.nodes)
    assert.equal(
      runCommand(c, node.name, 'ip route').stdout,
      lab.outputs[`${node.name}: ip route`],
      node.name,
    );
});

test('calicoctl node status reports the state and info birdc shows for every mesh peer', () => {
  const c = cluster();
  for (const node of c.nodes) {
    const rows = runCommand(c, node.name, 'birdc show protocols')
      .stdout.split('\n')
      .filter((l) => l.startsWith('Mesh_'))
      .map((l) => l.split(/\s+/).filter(Boolean));
    const table = runCommand(c, node.name, 'calicoctl node status')
      .stdout.split('\n')
      .filter((l) => /^\| \d/.test(l))
      .map((l) => l.split('|').map((x) => x.trim()));
    assert.equal(table.length, rows.length);
    for (const r of rows) {
      const ip = r[0].slice('Mesh_'.length).split('_').join('.');
      const t = table.find((x) => x[1] === ip)!;
      assert.ok(t, `${node.name}: ${ip} in calicoctl's table`);
      assert.deepEqual([t[3], t[5]], [r[3], r.slice(5).join(' ')], `${node.name}: ${ip}`);
    }
  }
});

test('birdc: bad input is one line and exit 2; where no BIRD runs, birdc cannot connect', () => {
  const c = cluster();
  for (const cmd of [
    'birdc',
    'birdc show foo',
    'birdc show route bar',
    'birdc -x show route',
    'birdc configure',
  ]) {
    const r = runCommand(c, 'node1', cmd);
    assert.equal(r.code, 2, cmd);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.split('\n').length, 2, r.stderr);
  }
  assert.deepEqual(runCommand(c, 'pod-a', 'birdc show protocols'), {
    stdout: '',
    stderr: 'Unable to connect to server control socket (/run/bird/bird.ctl): No such file or directory\n',
    code: 1,
  });
  // abbreviated keywords, as birdc takes them
  assert.equal(
    runCommand(c, 'node1', 'birdc sh ro').stdout,
    runCommand(c, 'node1', 'birdc show route').stdout,
  );
});
