/**
 * The emulated `ip`, `bridge` and `sysctl` on calico-node's own layout against the real ones:
 * every command scripts/record-calico-goldens.ts recorded in the lab of the seed cluster in
 * calico-bgp (test/golden/calico/) and in calico-vxlan (test/golden/calico-vxlan/: felix's
 * vxlan.calico, its neighbours, FDB and routes), after one ping pod-a → pod-c and one pod-a →
 * pod-b, is run on the model after the same two ICMP exchanges and compared byte for byte, with
 * its exit status and stderr.
 *
 * Normalised before comparing (everything else must be equal), as test/iproute.test.ts does:
 *  - the lab's namespace prefix (`link-netns pw-calicogold-pod-a`);
 *  - numtxqueues/numrxqueues: a veth gets one queue per possible CPU of the machine it runs on;
 *  - the order of `ip neigh` entries: the kernel dumps its hash table, whose bucket order depends on
 *    a per-boot random seed (compared as sorted sets).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { lineDiff } from '../src/import/roundtrip.ts';
import { runCommand } from '../src/tools/index.ts';
import { walk } from '../src/trace/walk.ts';
import {
  calicoGoldenCluster,
  GOLDEN_SETS,
  PINGS,
  type GoldenMode,
} from '../scripts/record-calico-goldens.ts';

interface Manifest {
  labPrefix: string;
  commands: { netns: string; argv: string[]; file: string; code: number; stderr: string }[];
}

function normalise(out: string, prefix: string, neigh: boolean): string {
  const s = out
    .split(prefix)
    .join('')
    .replace(/(numtxqueues|numrxqueues) \d+/g, '$1 <n>');
  return neigh ? s.split('\n').filter(Boolean).sort().join('\n') : s;
}

for (const [mode, set] of Object.entries(GOLDEN_SETS) as [GoldenMode, (typeof GOLDEN_SETS)[GoldenMode]][])
  describe(`ip, bridge and sysctl on the calico layout in ${mode}, against the real tools`, () => {
    const dir = new URL(`./golden/${set.dir}/`, import.meta.url);
    const manifestUrl = new URL('manifest.json', dir);
    test(`the goldens are there (scripts/record-calico-goldens.ts ${mode})`, () => {
      assert.ok(existsSync(manifestUrl), `missing ${manifestUrl.pathname}`);
    });
    if (!existsSync(manifestUrl)) return;
    const manifest = JSON.parse(readFileSync(manifestUrl, 'utf8')) as Manifest;
    const c = calicoGoldenCluster(mode);
    for (const [from, to] of PINGS) {
      const pod = c.pods.find((p) => p.ip === to)!;
      const w = walk(c, { from, to: pod.name, proto: 'icmp' });
      assert.equal(w.reply?.disposition.kind, 'delivered', `${from} → ${pod.name}`);
    }
    for (const rec of manifest.commands) {
      const line = rec.argv.join(' ');
      test(`${rec.netns}: ${line}`, () => {
        const r = runCommand(c, rec.netns, line);
        const real = readFileSync(new URL(rec.file, dir), 'utf8');
        const neigh = rec.argv[1] === 'neigh';
        const a = normalise(r.stdout, manifest.labPrefix, neigh);
        const b = normalise(real, manifest.labPrefix, neigh);
        assert.equal(r.code, rec.code, `exit status; stderr: ${r.stderr}`);
        assert.equal(r.stderr, rec.stderr);
        assert.equal(a, b, `${rec.netns}: ${line}\n${lineDiff(a, b)}`);
      });
    }
  });
