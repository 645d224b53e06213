/**
 * A bridge follows the smallest MTU of its ports (br_mtu_auto_adjust) after every change: a port
 * joining (netlink.ts takes the smallest known before and the new port's), leaving, changing its
 * MTU or going away. Random operations on a bridge of a few veths, checked after each against the
 * ports' MTUs scanned from the namespace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { linkAdd, linkDel, linkSetMaster, linkSetMtu, netnsAdd } from '../src/kernel/netlink.ts';
import { seededRandom, World } from '../src/kernel/world.ts';

test('a bridge takes the smallest MTU of its ports after every join, leave, MTU change and deletion', () => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const rnd = seededRandom(seed);
    const int = (n: number) => Math.floor(rnd() * n);
    const w = new World('bridge-mtu');
    const ns = netnsAdd(w, 'host', 'node');
    const other = netnsAdd(w, 'other', 'pod');
    linkAdd(w, ns, { type: 'bridge', name: 'br0', mac: '02:00:00:00:00:01', mtu: 1500 });
    const mtus = [1280, 1400, 1450, 1500, 9000];
    let made = 0;
    for (let step = 0; step < 300; step++) {
      const veths = [...ns.links.values()].filter((l) => l.type === 'veth');
      const op = int(4);
      if (op === 0 || veths.length === 0) {
        const name = `v${made++}`;
        const mtu = mtus[int(mtus.length)];
        linkAdd(w, ns, {
          type: 'veth',
          name,
          mac: `02:00:00:00:01:${(made % 256).toString(16).padStart(2, '0')}`,
          mtu,
          peer: { netns: other, name: `p${made}`, mac: '02:00:00:00:02:01', mtu },
        });
        linkSetMaster(w, ns, name, 'br0');
      } else {
        const v = veths[int(veths.length)];
        if (op === 1) linkSetMaster(w, ns, v.name, v.master ? undefined : 'br0');
        else if (op === 2) linkSetMtu(ns, v.name, mtus[int(mtus.length)]);
        else linkDel(w, ns, v.name);
      }
      const ports = [...ns.links.values()].filter((l) => l.master === 'br0');
      if (ports.length)
        assert.equal(ns.link('br0')!.mtu, Math.min(...ports.map((p) => p.mtu)), `seed ${seed} step ${step}`);
    }
  }
});
