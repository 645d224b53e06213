/**
 * kube-proxy's programming against the real kernel: scripts/record-svc-goldens.ts loaded each
 * node's tables and kube-proxy's commands (iptables -N/-C/-I, iptables-restore --noflush) into a
 * namespace with iptables 1.8.9 (nf_tables) and saved them back; the model's iptables-save of
 * every node must print the same text.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster } from '../src/cni/build.ts';
import { iptablesSave } from '../src/tools/iptables-save.ts';
import { CASES } from '../scripts/record-svc-goldens.ts';

// goldens: the real iptables-save after the real iptables-restore of kube-proxy's commands
// (scripts/record-svc-goldens.ts); the model's iptables-save of each node must be the same text
for (const file of CASES) {
  const name = file.replace(/^.*\//, '').replace(/\.yaml$/, '');
  test(`iptables-save of every node of ${file} is what the real iptables-save printed`, () => {
    const c = buildCluster(loadCluster(readFileSync(file, 'utf8'), file));
    for (const n of c.nodes) {
      const real = readFileSync(`test/golden/svc/${name}/${n.name}.save`, 'utf8');
      assert.equal(iptablesSave(c.world.ns(n.name).netfilter), real, `${name}/${n.name}`);
    }
  });
}
