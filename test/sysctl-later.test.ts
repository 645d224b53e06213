/**
 * Sysctls.later (device sysctls queued, their keys made at the first read of a device sysctl or
 * any other use of the map) against the same writes made at once into a Map copied from the
 * defaults: random runs of queued writes interleaved with sets, deletes, clears, reads of device
 * keys and of others, derived values and listings. Every answer, the listing in order and the
 * derived values must be the same.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_SYSCTLS, Sysctls, type DeviceSysctl } from '../src/kernel/objects.ts';
import { seededRandom } from '../src/kernel/world.ts';

const DEVS = ['cali0', 'cali1', 'eth0', 'default', 'lo'];
const KNOBS: DeviceSysctl[] = [
  { table: 'conf', knob: 'route_localnet', value: '1' },
  { table: 'neigh', knob: 'proxy_delay', value: '0' },
  { table: 'conf', knob: 'proxy_arp', value: '1' },
  { table: 'conf', knob: 'forwarding', value: '1' },
  { table: 'conf', knob: 'rp_filter', value: '2' },
  { table: 'neigh', knob: 'gc_stale_time', value: '7' },
];
const OTHER_KEYS = ['net.ipv4.ip_forward', 'net.ipv4.tcp_rmem', 'net.core.somaxconn', 'x.y'];

const key = (dev: string, s: DeviceSysctl) => `net.ipv4.${s.table}.${dev}.${s.knob}`;

/** a derived value: what a device's forwarding reads, with the number of times it was worked out */
let made = 0;
function fwd(m: Sysctls): string {
  made++;
  return DEVS.map((d) => m.get(`net.ipv4.conf.${d}.forwarding`) ?? '-').join(',');
}

test('Sysctls.later reads, lists and derives as the writes made at once', () => {
  for (let seed = 1; seed <= 40; seed++) {
    const rnd = seededRandom(seed);
    const int = (n: number) => Math.floor(rnd() * n);
    const plain = new Map(Object.entries(DEFAULT_SYSCTLS));
    const lazy = new Sysctls();
    const keys = [
      ...OTHER_KEYS,
      ...DEVS.flatMap((d) => KNOBS.map((s) => key(d, s))),
      ...Object.keys(DEFAULT_SYSCTLS).slice(0, 6),
    ];
    for (let step = 0; step < 400; step++) {
      const op = int(12);
      const where = `seed ${seed} step ${step} op ${op}`;
      if (op < 4) {
        // a queued write of a few device sysctls
        const dev = DEVS[int(DEVS.length)];
        const list = KNOBS.filter(() => rnd() < 0.5).map((s) => ({ ...s, value: String(int(3)) }));
        lazy.later(dev, list);
        for (const s of list) plain.set(key(dev, s), s.value);
        continue;
      }
      const k = keys[int(keys.length)];
      if (op === 4) {
        const v = String(int(3));
        plain.set(k, v);
        lazy.set(k, v);
      } else if (op === 5) assert.equal(lazy.delete(k), plain.delete(k), where);
      else if (op === 6 && step % 40 === 0) {
        plain.clear();
        lazy.clear();
      } else if (op === 7) assert.equal(lazy.has(k), plain.has(k), where);
      else if (op === 8) {
        const before = made;
        const d = lazy.derived(fwd, lazy);
        assert.equal(d, fwd(lazy), where);
        assert.equal(d, DEVS.map((x) => plain.get(`net.ipv4.conf.${x}.forwarding`) ?? '-').join(','), where);
        made = before;
      } else if (op === 9) {
        assert.deepEqual([...lazy], [...plain], where);
        assert.equal(lazy.size, plain.size, where);
      } else assert.equal(lazy.get(k), plain.get(k), where);
    }
    assert.deepEqual([...lazy.keys()], [...plain.keys()], `seed ${seed}`);
    assert.deepEqual([...lazy.values()], [...plain.values()], `seed ${seed}`);
  }
});

test('queued writes are set in their order, after the writes before them, and derived values see them', () => {
  const s = new Sysctls();
  s.set('net.ipv4.ip_forward', '1');
  s.set('net.ipv4.conf.eth9.forwarding', '0');
  const derivedBefore = s.derived(fwd, s);
  s.later('cali0', KNOBS.slice(0, 4));
  // the derived value is worked out again: the queued forwarding is read
  assert.equal(s.get('net.ipv4.ip_forward'), '1');
  assert.notEqual(s.derived(fwd, s), derivedBefore);
  assert.equal(s.derived(fwd, s), '1,-,-,-,-');
  const keys = [...s.keys()];
  assert.deepEqual(keys.slice(-5), [
    'net.ipv4.conf.eth9.forwarding',
    'net.ipv4.conf.cali0.route_localnet',
    'net.ipv4.neigh.cali0.proxy_delay',
    'net.ipv4.conf.cali0.proxy_arp',
    'net.ipv4.conf.cali0.forwarding',
  ]);
});
