/**
 * Faults of Calico's BGP judged by real BIRD 2 (Debian bird2) after convergence: the lab's BIRDs
 * and kernels against the model, step by step (every node's `ip route`, and the `birdc show
 * protocols` / `show route` the emulated birdc prints; BIRD's times masked).
 *
 * Route reflectors down (test/fixtures/rr/rr-cluster.yaml: the mesh off, node1 and node2 the
 * reflectors of cluster 244.0.0.1): the model's "a reflector's BGP stopped" is `birdc disable` of
 * each of its protocols, BIRD's proto_cmd_disable: each session ends with a NOTIFICATION Cease
 * (administrative shutdown), and a BIRD that receives a Cease flushes the session's routes at once
 * (bgp_rx_notification: no graceful restart for a Cease), so the effect needs no hold timer on
 * either side. The same commands run on the real BIRD.
 *
 * Needs root, namespaces and bird2; run it alone:
 * flock /tmp/podwalk-lab.lock node --import tsx --test test/lab-bgp-faults.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { labDown, labExec, labUnavailable, labUp, type LabState } from '../src/lab/host.ts';
import { runCommand } from '../src/tools/index.ts';
import { birdLabSettles, birdMissing } from './bird-lab.ts';

// (the call stays here: scripts/test.ts puts the files that call labUnavailable( in the lab lane)
const why = labUnavailable() ?? birdMissing();
const skip = why ? `real BIRD lab unavailable: ${why}` : false;

const ROOT = new URL('..', import.meta.url).pathname;
const RR_CLUSTER = join(ROOT, 'test/fixtures/rr/rr-cluster.yaml');

function rrModel(name: string): Cluster {
  const spec = loadCluster(readFileSync(RR_CLUSTER, 'utf8'), RR_CLUSTER);
  spec.name = name;
  return buildCluster(spec, 'calico-bgp');
}

/** the BGP protocols of a node's BIRD (Calico's names: Node_<peer address>) */
const bgpProtocols = (c: Cluster, node: string) => c.mesh!.peersOf(node).map((p) => p.peering.proto);

/** `birdc disable` of every BGP protocol of `node`, on the model and on the node's real BIRD */
function stopBgp(c: Cluster, st: LabState, node: string): void {
  const ctl = st.birds!.find((b) => b.netns === node)!.ctl;
  for (const p of bgpProtocols(c, node)) {
    const sim = runCommand(c, node, `birdc disable ${p}`);
    const real = labExec(st, node, ['birdc', '-s', ctl, 'disable', p]);
    assert.equal(real.code, 0, real.stderr);
    assert.equal(sim.stdout, real.stdout, `${node}: birdc disable ${p}`);
  }
}

/** the routes BIRD installed on a node: `prefix via` for each `proto bird` route through a peer */
const birdRoutes = (c: Cluster, node: string) =>
  runCommand(c, node, 'ip route')
    .stdout.split('\n')
    .filter((l) => / via .* proto bird/.test(l))
    .map((l) => l.split(' dev ')[0]);

test(
  'route reflectors down on real BIRD: one reflector’s BGP stopped (Cease), the clients keep every route through the other; both stopped, the clients lose the remote blocks',
  { skip, timeout: 120_000 },
  async () => {
    const c = rrModel('pwrrf');
    labDown(c);
    const st = await labUp(c);
    try {
      await birdLabSettles(c, st);
      const before = Object.fromEntries(['node3', 'node4'].map((n) => [n, birdRoutes(c, n)]));
      assert.deepEqual(before, {
        node3: ['10.244.0.0/26 via 192.168.1.10', '10.244.3.0/26 via 192.168.1.13'],
        node4: ['10.244.0.0/26 via 192.168.1.10', '10.244.2.0/26 via 192.168.1.12'],
      });

      stopBgp(c, st, 'node1');
      const one = await birdLabSettles(c, st);
      // the clients keep each other's blocks through node2; node1's own block went with its BGP
      assert.deepEqual(birdRoutes(c, 'node3'), ['10.244.3.0/26 via 192.168.1.13']);
      assert.deepEqual(birdRoutes(c, 'node4'), ['10.244.2.0/26 via 192.168.1.12']);

      stopBgp(c, st, 'node2');
      const both = await birdLabSettles(c, st);
      for (const n of c.nodes) assert.deepEqual(birdRoutes(c, n.name), [], n.name);
      console.log(`# settled: one reflector stopped ${one} ms, both ${both} ms`);
    } finally {
      labDown(c);
    }
  },
);
