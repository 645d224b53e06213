/**
 * Real BIRD 2 as Calico's route reflectors (test/fixtures/rr/rr-cluster.yaml: the mesh off, node1
 * and node2 reflectors of cluster 244.0.0.1, every node peering with them through one BGPPeer):
 * `lab up` starts bird2 in every node's namespace with the configuration src/lab/bird.ts writes
 * from peering.ts (rr client; rr cluster id on the reflectors' sessions to the clients) and waits
 * until every session is Established and every route the model learned is in BIRD's table; then
 * the routes BIRD installs (`ip route` on each node) must be the model's, byte for byte, and the
 * emulated birdc and calicoctl must print what the real birdc prints (times masked).
 *
 * PODWALK_RECORD=1 writes the real outputs to test/fixtures/rr/lab.json. Needs root, namespaces
 * and bird2; run it alone: flock /tmp/podwalk-lab.lock node --import tsx --test test/lab-rr.test.ts
 */
import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { labDown, labUnavailable, labUp } from '../src/lab/host.ts';
import { birdLabAgrees, birdMissing } from './bird-lab.ts';

// (the call stays here: scripts/test.ts puts the files that call labUnavailable( in the lab lane)
const why = labUnavailable() ?? birdMissing();
const skip = why ? `real BIRD lab unavailable: ${why}` : false;

const ROOT = new URL('..', import.meta.url).pathname;
const FIXTURES = join(ROOT, 'test/fixtures/rr');
const RR_CLUSTER = join(FIXTURES, 'rr-cluster.yaml');

function model(name: string): Cluster {
  const spec = loadCluster(readFileSync(RR_CLUSTER, 'utf8'), RR_CLUSTER);
  spec.name = name;
  return buildCluster(spec, 'calico-bgp');
}

test(
  'route reflectors on real BIRD: the routes BIRD installs are the model’s; birdc prints what birdc prints',
  { skip, timeout: 240_000 },
  async () => {
    const c = model('pwrr');
    labDown(c);
    const st = await labUp(c);
    try {
      await birdLabAgrees(c, st, { dir: FIXTURES, cluster: 'test/fixtures/rr/rr-cluster.yaml' });
    } finally {
      labDown(c);
    }
  },
);
