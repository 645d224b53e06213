/**
 * doctor's pod-cidr-overlap check finds overlapping pod CIDRs with a sweep over the sorted
 * prefixes (O(n log n), for 1,000-node clusters), not by comparing every pair of nodes: on random
 * sets of CIDRs (nested, equal, disjoint, with host bits set) it must report exactly the pairs
 * the pairwise comparison (cidrsOverlap) finds, in the same order and words.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Cluster } from '../src/cni/build.ts';
import { podCidrOverlaps } from '../src/diagnose/checks.ts';
import { seededRandom } from '../src/kernel/world.ts';
import { cidrsOverlap, intToIp4, parseCidr } from '../src/wire/addr.ts';

function pairwise(nodes: { name: string; podCIDR: string }[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < nodes.length; i++)
    for (let j = i + 1; j < nodes.length; j++) {
      const a = parseCidr(nodes[i].podCIDR, { allowHostBits: true });
      const b = parseCidr(nodes[j].podCIDR, { allowHostBits: true });
      if (cidrsOverlap(a, b))
        out.push(
          `${nodes[i].name}'s pod CIDR ${nodes[i].podCIDR} overlaps ${nodes[j].name}'s ${nodes[j].podCIDR}: their pods' addresses are ambiguous`,
        );
    }
  return out;
}

test('the sweep reports the pairs the pairwise comparison finds, in node order', () => {
  const rnd = seededRandom(16);
  let overlapping = 0;
  for (let round = 0; round < 300; round++) {
    const n = 1 + Math.floor(rnd() * 30);
    const nodes = Array.from({ length: n }, (_, i) => {
      // addresses in a small space so that nesting, equal prefixes and host bits all occur
      const len = 20 + Math.floor(rnd() * 13);
      const addr = ((10 << 24) + Math.floor(rnd() * 2 ** 14)) >>> 0;
      return { name: `n${i}`, podCIDR: `${intToIp4(addr)}/${len}` };
    });
    const c = { nodes } as unknown as Cluster;
    const want = pairwise(nodes);
    overlapping += want.length;
    assert.deepEqual(
      podCidrOverlaps(c).map((f) => f.message),
      want,
      nodes.map((x) => x.podCIDR).join(' '),
    );
  }
  assert.ok(overlapping > 100, `the random sets had only ${overlapping} overlaps`);
});
