/**
 * Real BIRD 2 in a calico-bgp lab: `lab up` starts Debian's bird2 in every node's namespace with
 * Calico's configuration (src/lab/bird.ts, the model's bgpOriginates as its blocks) and waits for
 * the mesh; the routes BIRD installs (`ip route` on each node) must be the model's, byte for byte,
 * and the emulated birdc must print what the real one prints (the times masked: they are the wall
 * clock's). The topology is host-gw-across-subnets run as calico-bgp: node1 and node2 share lan0,
 * node3 is on lan1 behind the router (a next hop resolved recursively, through the router). Then
 * `lab down` must leave no BIRD running and no file of it, also after an interrupted `lab up`.
 *
 * PODWALK_RECORD=1 writes the real birdc outputs to test/fixtures/bird/ (test/birdc.test.ts
 * compares the emulated ones with them without a lab). Needs root, namespaces and bird2; run it
 * alone: flock /tmp/podwalk-lab.lock node --import tsx --test test/lab-bird.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { prepareCluster } from '../src/tools/index.ts';
import {
  birdPath,
  labDown,
  LabError,
  LabInterrupted,
  labUnavailable,
  labUp,
  processRuns,
  type LabState,
} from '../src/lab/host.ts';
import { birdLabAgrees, birdMissing } from './bird-lab.ts';

// (the call stays here: scripts/test.ts puts the files that call labUnavailable( in the lab lane)
const why = labUnavailable() ?? birdMissing();
const skip = why ? `real BIRD lab unavailable: ${why}` : false;

const ROOT = new URL('..', import.meta.url).pathname;
const FIXTURES = join(ROOT, 'test/fixtures/bird');
export const BIRD_CLUSTER = join(ROOT, 'scenarios/host-gw-across-subnets.yaml');

function model(name: string): Cluster {
  const spec = loadCluster(readFileSync(BIRD_CLUSTER, 'utf8'), BIRD_CLUSTER);
  spec.name = name;
  return buildCluster(spec, 'calico-bgp');
}

export { maskTimes } from './bird-lab.ts';

/** the processes whose command line names the lab's BIRD directory */
function birdsOf(dir: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return processRuns(Number(d)) && readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(`${dir}/`);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** the birds the lab started run in their nodes' namespaces, with their sockets under the lab's directory */
function checkBirds(st: LabState): void {
  assert.equal(st.birds?.length, 3);
  for (const b of st.birds!) {
    assert.ok(b.pid > 0 && processRuns(b.pid), `${b.netns}: bird ${b.pid} runs`);
    assert.ok(b.ctl.startsWith(birdPath(st.prefix) + '/'), b.ctl);
    const ns = readFileSync(`/proc/${b.pid}/cmdline`, 'utf8').split('\0');
    assert.equal(ns[0], 'bird', ns.join(' '));
  }
}

function checkGone(st: LabState): void {
  for (const b of st.birds ?? []) assert.ok(!processRuns(b.pid), `${b.netns}: bird ${b.pid} still runs`);
  assert.deepEqual(birdsOf(birdPath(st.prefix)), []);
  assert.ok(!existsSync(birdPath(st.prefix)), `${birdPath(st.prefix)} is left`);
}

test(
  'calico-bgp lab: real BIRD installs exactly the model’s routes; the emulated birdc prints what birdc prints',
  {
    skip,
    timeout: 180_000,
  },
  async () => {
    const c = model('pwbird');
    labDown(c);
    const st = await labUp(c);
    try {
      checkBirds(st);
      await birdLabAgrees(c, st, { dir: FIXTURES, cluster: 'scenarios/host-gw-across-subnets.yaml' });
    } finally {
      labDown(c);
    }
    checkGone(st);
  },
);

test(
  'an interrupted lab up kills the birds it started and removes their files',
  { skip, timeout: 120_000 },
  async () => {
    const c = model('pwbird2');
    labDown(c);
    const ac = new AbortController();
    const dir = birdPath('pw-pwbird2-');
    // abort once the first bird has written its pid file (lab up is then waiting for the mesh),
    // and only once the running birds are seen: a scan of /proc that a second timer made apart
    // from the abort came too late on a loaded machine (CI: no bird seen, the abort had killed them)
    let pids: number[] = [];
    const watch = setInterval(() => {
      if (ac.signal.aborted || !existsSync(join(dir, 'node1.pid'))) return;
      pids = birdsOf(dir);
      if (pids.length) ac.abort('SIGINT');
    }, 10);
    try {
      await assert.rejects(labUp(c, { signal: ac.signal }), LabInterrupted);
    } finally {
      clearInterval(watch);
      labDown(c);
    }
    assert.ok(pids.length > 0, 'a bird was running when lab up was interrupted');
    assert.ok(!existsSync(dir), `${dir} is left`);
    for (const pid of pids) assert.ok(!processRuns(pid), `bird ${pid} still runs`);
    assert.deepEqual(birdsOf(dir), []);
  },
);

test(
  'port 179 dropped on node1: lab up names the sessions that never came up, and leaves no BIRD behind',
  { skip, timeout: 180_000 },
  async () => {
    const spec = loadCluster(readFileSync(BIRD_CLUSTER, 'utf8'), BIRD_CLUSTER);
    spec.name = 'pwbird3';
    // node1 has the lowest address: Calico's template makes it the passive side of both its sessions
    const c = prepareCluster(spec, 'calico-bgp', ['node1: iptables -A INPUT -p tcp --dport 179 -j DROP']);
    labDown(c);
    const dir = birdPath('pw-pwbird3-');
    let message = '';
    try {
      await assert.rejects(labUp(c), (e: Error) => {
        message = e.message;
        return e instanceof LabError;
      });
    } finally {
      labDown(c);
    }
    assert.match(message, /^the BGP mesh did not converge in \d+ s: /);
    assert.match(message, /node1: BGP session Mesh_192_168_1_11 \(to node2\) not Established: start/);
    assert.match(message, /node1: BGP session Mesh_192_168_2_12 \(to node3\) not Established: start/);
    // the session between node2 and node3 came up: it is not named
    assert.doesNotMatch(message, /node2: BGP session Mesh_192_168_2_12/);
    assert.ok(!existsSync(dir), `${dir} is left`);
    assert.deepEqual(birdsOf(dir), []);
  },
);
