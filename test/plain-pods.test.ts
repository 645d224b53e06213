/**
 * load.ts plainPods (a cluster file's pods read straight, without zod, when every pod is of the
 * common shape) against PodSchema (podsBySchema): random pods, valid and not (other keys, values
 * of the wrong type, names, addresses, listen entries and labels the schema refuses, `__proto__`
 * as a key). Where plainPods gives pods, the schema must give the same, key order included; where
 * the schema refuses them, plainPods must give none. And whole files: one with plain pods and
 * a top-level key the schema does not know, or a pod it refuses, fails as before.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterError, loadCluster, plainPods, podsBySchema } from '../src/cluster/load.ts';
import { seededRandom } from '../src/kernel/world.ts';

function pick<T>(rnd: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rnd() * xs.length)];
}

const VALUES: Record<string, readonly unknown[]> = {
  name: ['p0', 'pod-a', 'a.b', 'A', '-a', '', 7, null, 'x'.repeat(64), 'x'.repeat(63)],
  node: ['n0', 'node-1', '', 3, null, 'Nope'],
  ip: ['10.0.0.5', '10.0.0.256', '10.0.0.5/24', '', 5, null, '0.0.0.0', '255.255.255.255'],
  mac: ['02:00:00:00:00:01', '02:AA:00:00:00:01', 'zz'],
  hostVeth: ['veth1', 'a/b'],
  hostVethMac: ['02:00:00:00:00:02'],
  listen: [
    [],
    ['tcp/8080'],
    ['tcp/8080', 'udp/53'],
    ['tcp/8080/http'],
    ['tcp/8080/Http'],
    ['tcp/8080/a--b'],
    ['tcp/0'],
    ['tcp/65535'],
    ['tcp/65536'],
    ['sctp/1'],
    ['tcp/08'],
    ['tcp/80/'],
    [8080],
    'tcp/8080',
    null,
    [null],
  ],
  namespace: ['default', 'team-01', 'Team', '', 4],
  labels: [
    {},
    { app: 'web' },
    { app: 'web', tier: 'front', '1': 'one' },
    { 'example.com/app': 'x' },
    { app: '' },
    { app: 'a b' },
    { '-bad': 'x' },
    { app: 5 },
    JSON.parse('{"__proto__": "x"}') as unknown,
    [],
    null,
    'app=web',
  ],
  ready: [true, false, 'true', 1, null],
  extra: [1, 'x'],
};
const KEYS = Object.keys(VALUES);

/** a pod: usually name, node and listen valid, each other key now and then, in a random order */
function randomPod(rnd: () => number): unknown {
  if (rnd() < 0.02) return pick(rnd, [null, 'p0', [], 5]);
  const keys = KEYS.filter((k) => (['name', 'node', 'listen'].includes(k) ? rnd() < 0.95 : rnd() < 0.15));
  for (let i = keys.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [keys[i], keys[j]] = [keys[j], keys[i]];
  }
  const pod: Record<string, unknown> = {};
  for (const k of keys) {
    const valid = rnd() < 0.9;
    const v = valid ? VALUES[k][0] : pick(rnd, VALUES[k]);
    pod[k] = v !== null && typeof v === 'object' ? structuredClone(v) : v;
  }
  return pod;
}

test('plainPods gives what PodSchema gives, or nothing', () => {
  const rnd = seededRandom(5);
  let plain = 0;
  let refused = 0;
  for (let run = 0; run < 3000; run++) {
    const pods = Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => randomPod(rnd));
    const byPlain = plainPods(pods);
    const bySchema = podsBySchema(pods);
    const what = JSON.stringify(pods);
    if (bySchema === undefined) {
      refused++;
      assert.equal(byPlain, undefined, `schema refuses ${what}`);
    }
    if (byPlain === undefined) continue;
    plain++;
    assert.deepStrictEqual(byPlain, bySchema, what);
    assert.equal(JSON.stringify(byPlain), JSON.stringify(bySchema), `key order of ${what}`);
  }
  // both ways are taken often
  assert.ok(plain > 500 && refused > 500, `plain ${plain}, refused ${refused}`);
  assert.equal(plainPods('p0'), undefined);
  assert.equal(plainPods(undefined), undefined);
});

const FILE = [
  'name: plain',
  'cni: calico-vxlan',
  'nodes:',
  '  - name: n0',
  '    ip: 10.0.0.10/24',
  '    podCIDR: 10.128.0.0/24',
  'pods:',
  '  - name: p0',
  '    node: n0',
  '    listen: [tcp/8080]',
  '  - name: p1',
  '    node: n0',
  '    labels: {app: web}',
];

test('a file with plain pods is read whole; what the schema refuses elsewhere still fails', () => {
  const spec = loadCluster(FILE.join('\n') + '\n', 'plain.yaml');
  assert.deepStrictEqual(spec.pods, [
    { name: 'p0', node: 'n0', listen: [{ proto: 'tcp', port: 8080 }] },
    { name: 'p1', node: 'n0', listen: [], labels: { app: 'web' } },
  ]);
  assert.throws(
    () =>
      loadCluster([...FILE.slice(0, 2), 'colour: blue', ...FILE.slice(2)].join('\n') + '\n', 'plain.yaml'),
    (e: unknown) => e instanceof ClusterError && /plain\.yaml:3:1: .*colour/.test(e.message),
  );
  assert.throws(
    () => loadCluster([...FILE, '    listen: [tcp/0]'].join('\n') + '\n', 'plain.yaml'),
    (e: unknown) => e instanceof ClusterError && /plain\.yaml:14:.*tcp\/0/.test(e.message),
  );
});
