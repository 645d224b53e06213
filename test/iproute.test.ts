/**
 * The emulated `ip` and `bridge` against the real ones: every command recorded by
 * scripts/record-iproute-goldens.ts on a real kernel (the lab of the seed cluster in each mode
 * the kernel supports) is run on the model in the same state and compared byte for byte, and
 * every mutation step is replayed (exit status, stderr, and the state it leaves behind).
 *
 * The model is brought to the lab's state the same way: the cluster is built, and the lab's
 * ping pod-a → pod-c is the model's ICMP walk pod-a → pod-c (so both hold the same neighbours,
 * FDB entries and counters).
 *
 * What is normalised before comparing, and why (everything else must be equal):
 *  - the lab's namespace prefix (`link-netns pw-iproute-node1`): the lab names its namespaces
 *    pw-iproute-<name>, the model's are <name>;
 *  - the numbers of "link_netnsid" (JSON): the kernel allocates namespace ids on first use, in an
 *    order that depends on which command first touched which namespace while the lab was built;
 *    both sides' ids are mapped to the namespace they stand for (the lab's `ip netns list-id`,
 *    the model's nsid table) and compared as names;
 *  - the order of `ip neigh` entries: the kernel dumps its neighbour hash table, whose bucket
 *    order depends on a per-boot random hash seed; entries are compared as sorted sets;
 *  - a bridge's gc_timer: the time left on a wall-clock kernel timer;
 *  - numtxqueues/numrxqueues: a veth gets one queue per possible CPU of the machine it runs on;
 *  - link counters: the lab's bridges send IGMP membership reports when they come up, which the
 *    model does not; the counters the recorder read before the ping are added to the model's;
 *  - after mutations, the states of dynamic neighbours (REACHABLE/STALE/DELAY/PROBE): their timers
 *    run on the wall clock in the lab (the lab is seconds older when the mutations run);
 *  - the remaining time of a bridge port's forward-delay timer (a wall-clock kernel timer).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { seedCluster } from '../src/cluster/seed.ts';
import { lineDiff, maskNsids, maskTimers } from '../src/import/roundtrip.ts';
import type { CniMode } from '../src/cluster/spec.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import type { Netns } from '../src/kernel/objects.ts';
import { walk } from '../src/trace/walk.ts';
import { bridge } from '../src/tools/bridge.ts';
import { Ctx, defaultOpts } from '../src/tools/iproute-common.ts';
import { nsids } from '../src/tools/iproute-link.ts';
import { ip } from '../src/tools/ip.ts';
import type { ToolResult } from '../src/tools/types.ts';
import type { Manifest, ModeRecord, RecordedCommand as Recorded } from '../scripts/iproute-manifest.ts';

const dir = new URL('./golden/iproute/', import.meta.url);
const manifestUrl = new URL('manifest.json', dir);

const manifest: Manifest | undefined = existsSync(manifestUrl)
  ? (JSON.parse(readFileSync(manifestUrl, 'utf8')) as Manifest)
  : undefined;

/**
 * These goldens were recorded on the seed cluster in the article's picture (calico-bgp on the cni0
 * bridge, `calicoLayout: bridge`, as scripts/record-iproute-goldens.ts builds it); calico-node's
 * own layout has goldens of its own (test/calico-layout.test.ts).
 */
const articleSeed = () => ({ ...seedCluster(), calicoLayout: 'bridge' as const });

/* ------------------------------------------------------------------ known model bugs */

/**
 * Where the model (outside src/tools and src/kernel/netlink.ts) differs from the kernel. Each
 * entry says what is wrong; the comparison masks exactly the affected counters/attributes.
 */
/* ------------------------------------------------------------------ the model in the lab's state */

function modelLike(mode: CniMode, rec: ModeRecord): Cluster {
  const c = buildCluster(articleSeed(), mode);
  // the lab's background (IGMP reports of its bridges) before the ping
  for (const [ns, links] of Object.entries(rec.baseline))
    for (const l of links) {
      const link = c.world.ns(ns).link(l.ifname);
      if (!link) continue;
      const { rx, tx } = l.stats64;
      assert.equal(
        rx.errors + rx.over_errors + rx.multicast + tx.errors + tx.carrier_errors + tx.collisions,
        0,
      );
      link.stats.rxBytes += rx.bytes;
      link.stats.rxPackets += rx.packets;
      link.stats.rxDropped += rx.dropped;
      link.stats.txBytes += tx.bytes;
      link.stats.txPackets += tx.packets;
      link.stats.txDropped += tx.dropped;
    }
  const w = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'icmp' });
  assert.equal(w.request.disposition.kind, 'delivered');
  return c;
}

function runTool(c: Cluster, netns: string, argv: readonly string[]): ToolResult {
  const tool = argv[0] === 'bridge' ? bridge : ip;
  return tool(argv.slice(1), { cluster: c, netns: c.world.ns(netns) });
}

/* ------------------------------------------------------------------ normalisation */

function isNeighCommand(argv: readonly string[]): boolean {
  const words = argv.filter((a) => !a.startsWith('-'));
  return (
    words[0] === 'ip' &&
    !!words[1] &&
    'neighbour'.startsWith(words[1]) &&
    words[1].length >= 1 &&
    words[1][0] === 'n'
  );
}

/** entries of an `ip neigh` output, as a sorted list (text lines or JSON objects) */
function sortNeigh(out: string): string {
  const t = out.trim();
  if (t.startsWith('[')) {
    const arr = JSON.parse(t) as unknown[];
    return JSON.stringify(arr.map((x) => JSON.stringify(x)).sort());
  }
  return out.split('\n').filter(Boolean).sort().join('\n');
}

function dynamicStates(out: string): string {
  return out.replace(/\b(REACHABLE|STALE|DELAY|PROBE)\b/g, '<dynamic>');
}

function normalise(out: string, nsidNames: Record<string, string>, prefix: string): string {
  let s = out.split(prefix).join('');
  s = maskTimers(maskNsids(s, new Map(Object.entries(nsidNames).map(([id, name]) => [Number(id), name]))));
  s = s.replace(/(numtxqueues|numrxqueues) \d+/g, '$1 <n>').replace(/("num_[rt]x_queues": ?)\d+/g, '$1<n>');
  return s;
}

function modelNsidNames(c: Cluster, ns: Netns): Record<string, string> {
  const ctx = new Ctx(c, ns, defaultOpts());
  return Object.fromEntries([...nsids(ctx, ns)].map(([name, id]) => [String(id), name]));
}

/** the model's state of a namespace, for "a failed mutation changed nothing" */
function snapshot(c: Cluster): string {
  const out: unknown[] = [];
  for (const ns of c.world.netns.values())
    out.push({
      ns: ns.name,
      links: [...ns.links.values()].map((l) => ({
        name: l.name,
        up: l.up,
        mtu: l.mtu,
        addrs: l.addrs,
        master: l.master,
        fdb: 'fdb' in l ? l.fdb.list() : undefined,
      })),
      fib: ns.fib.list(),
      neigh: ns.neigh.list(),
    });
  return JSON.stringify(out);
}

/* ------------------------------------------------------------------ the goldens */

if (!manifest) {
  test(
    'iproute goldens',
    { skip: 'no test/golden/iproute/manifest.json: run scripts/record-iproute-goldens.ts as root' },
    () => {},
  );
} else {
  for (const [mode, rec] of Object.entries(manifest.modes)) {
    describe(`ip/bridge against the real tools: ${mode}`, () => {
      const c = modelLike(mode as CniMode, rec);
      const byNs = new Map<string, Recorded[]>();
      for (const r of rec.commands) byNs.set(r.netns, [...(byNs.get(r.netns) ?? []), r]);
      for (const [ns, cmds] of byNs) {
        test(`${ns}: ${cmds.length} commands`, () => {
          const labNames = rec.nsids[ns] ?? {};
          const modelNames = modelNsidNames(c, c.world.ns(ns));
          const diffs: string[] = [];
          for (const r of cmds) {
            const want = readFileSync(new URL(`${mode}/${r.file}`, dir), 'utf8');
            const got = runTool(c, ns, r.argv);
            let a = normalise(got.stdout, modelNames, manifest.labPrefix);
            let b = normalise(want, labNames, manifest.labPrefix);
            if (isNeighCommand(r.argv)) {
              a = sortNeigh(a);
              b = sortNeigh(b);
            }
            const cmd = r.argv.join(' ');
            if (a !== b) diffs.push(`${cmd}: stdout\n${lineDiff(a, b)}`);
            if (got.stderr !== r.stderr)
              diffs.push(`${cmd}: stderr ${JSON.stringify(got.stderr)} ≠ ${JSON.stringify(r.stderr)}`);
            if (got.code !== r.code) diffs.push(`${cmd}: exit ${got.code} ≠ ${r.code}`);
          }
          assert.equal(diffs.length, 0, `${diffs.length} of ${cmds.length} differ:\n\n${diffs.join('\n\n')}`);
        });
      }

      test(`mutations: ${rec.mutations.length} steps replayed (exit, stderr, state after; a failed step changes nothing)`, () => {
        const m = modelLike(mode as CniMode, rec);
        const diffs: string[] = [];
        for (const s of rec.mutations) {
          const before = snapshot(m);
          const got = runTool(m, s.netns, s.argv);
          const cmd = `${s.netns}: ${s.argv.join(' ')}`;
          if (got.code !== s.code) diffs.push(`${cmd}: exit ${got.code} ≠ ${s.code}`);
          if (got.stderr !== s.stderr)
            diffs.push(`${cmd}: stderr ${JSON.stringify(got.stderr)} ≠ ${JSON.stringify(s.stderr)}`);
          if (got.stdout !== s.stdout)
            diffs.push(`${cmd}: stdout ${JSON.stringify(got.stdout)} ≠ ${JSON.stringify(s.stdout)}`);
          if (s.code !== 0 && s.stderr && snapshot(m) !== before)
            diffs.push(`${cmd}: failed but changed the model`);
          for (const a of s.after) {
            let x = normalise(runTool(m, a.netns, a.argv).stdout, {}, manifest.labPrefix);
            let y = normalise(a.stdout, {}, manifest.labPrefix);
            if (isNeighCommand(a.argv)) {
              x = sortNeigh(dynamicStates(x));
              y = sortNeigh(dynamicStates(y));
            }
            if (x !== y) diffs.push(`${cmd}\n  then ${a.netns}: ${a.argv.join(' ')}\n${lineDiff(x, y)}`);
          }
        }
        assert.equal(diffs.length, 0, `${diffs.length} differences:\n\n${diffs.join('\n\n')}`);
      });
    });
  }
}

/* ------------------------------------------------------------------ modes the lab cannot build */

/**
 * The kernel of the lab has no ipip device type, so Calico's IPinIP modes have no goldens: run
 * the same commands there (tunl0 included) and check that every one runs, exits as in the other
 * modes, and prints JSON that parses when asked for JSON.
 */
describe('ip/bridge in the IPinIP modes (no lab): every recorded command runs', () => {
  const rec = manifest?.modes['calico-bgp'];
  for (const mode of ['calico-ipip', 'calico-ipip-crosssubnet'] as CniMode[]) {
    test(mode, { skip: rec ? false : 'no goldens recorded' }, () => {
      const c = buildCluster(articleSeed(), mode);
      walk(c, { from: 'pod-a', to: 'pod-c', proto: 'icmp' });
      for (const r of rec!.commands) {
        const got = runTool(c, r.netns, r.argv);
        const cmd = `${r.netns}: ${r.argv.join(' ')}`;
        assert.equal(got.code, r.code, `${cmd}: exit ${got.code} (${got.stderr.trim()})`);
        if (r.argv.includes('-j') && got.code === 0 && got.stdout.trim())
          assert.doesNotThrow(() => JSON.parse(got.stdout), cmd);
      }
      const tunl = runTool(c, 'node1', ['ip', '-d', 'link', 'show', 'tunl0']).stdout;
      assert.match(tunl, /^\d+: tunl0@NONE: <NOARP,UP,LOWER_UP> mtu 1480 qdisc noqueue state UNKNOWN /);
      assert.match(tunl, /\n {4}ipip ipip remote any local any ttl inherit nopmtudisc /);
    });
  }
});
