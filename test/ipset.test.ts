/**
 * podwalk's ipset (src/tools/ipset.ts, src/kernel/ipset.ts) and iptables' `-m set` against the
 * real ipset v7.17 and iptables 1.8.9: test/golden/ipset/commands.json was recorded by
 * scripts/record-ipset-goldens.ts in a fresh network namespace; here the same commands run on a
 * fresh model namespace, in order, and stdout, stderr and the exit status must be equal, except
 * what the model cannot reproduce, masked here and only here:
 *
 * - `initval`: the kernel draws it at random when `create` gives none (the goldens' creates that
 *   give one are compared as they are; the others masked);
 * - `Size in memory`: the kernel's allocation (masked);
 * - the order of members in `list` and of `add` lines in `save`: the kernel's hash order, which
 *   follows the initval (compared as sorted lines).
 *
 * Then the kernel side: a packet through `-m set` rules (hash:net by prefix, hash:ip,port with
 * `dst,dst`, negation), EBUSY on destroy and felix's restore sequence.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { seedCluster } from '../src/cluster/seed.ts';
import { buildCluster } from '../src/cni/build.ts';
import { netnsAdd } from '../src/kernel/netlink.ts';
import { ipsetAdd, ipsetCreate, ipsetDestroy, IpsetError } from '../src/kernel/ipset.ts';
import { ruleMatches } from '../src/kernel/netfilter/eval.ts';
import type { MatchEnv, PacketView } from '../src/kernel/netfilter/extension.ts';
import { parseRuleSpec } from '../src/kernel/netfilter.ts';
import { ip4ToInt } from '../src/wire/addr.ts';
import { ipset, ipsetRestore } from '../src/tools/ipset.ts';
import { iptables } from '../src/tools/iptables.ts';
import type { ToolContext } from '../src/tools/types.ts';

interface Recorded {
  argv: string[];
  input?: string;
  stdout: string;
  stderr: string;
  code: number;
}

const GOLDEN: Recorded[] = JSON.parse(readFileSync('test/golden/ipset/commands.json', 'utf8'));

/** the initvals the recorded creates gave (compared); any other was the kernel's random one (masked) */
const GIVEN = new Set(
  GOLDEN.flatMap((s) => {
    const i = s.argv.indexOf('initval');
    return i > 0 ? [Number(s.argv[i + 1])] : [];
  }),
);

function normalise(text: string): string {
  const lines = text
    .replace(/initval (0x[0-9a-f]+)/g, (m, v: string) => (GIVEN.has(Number(v)) ? m : 'initval <random>'))
    .replace(/^Size in memory: \d+$/gm, 'Size in memory: <kernel>')
    .split('\n');
  // members (after "Members:" up to a blank line) and a set's add lines: sorted
  const out: string[] = [];
  let run: string[] = [];
  let inMembers = false;
  const flush = () => {
    out.push(...run.sort());
    run = [];
  };
  for (const l of lines) {
    if (inMembers && l !== '') {
      run.push(l);
      continue;
    }
    if (l.startsWith('add ')) {
      run.push(l);
      continue;
    }
    flush();
    inMembers = l === 'Members:';
    out.push(l);
  }
  flush();
  return out.join('\n');
}

function modelContext(): ToolContext {
  const cluster = buildCluster(seedCluster(), 'flannel-vxlan');
  const netns = netnsAdd(cluster.world, 'pwh-ipset-rec', 'node');
  return { cluster, netns };
}

test('ipset and iptables -m set: the recorded commands, on the model, as the real tools answered', () => {
  const ctx = modelContext();
  for (const [k, s] of GOLDEN.entries()) {
    const [cmd, ...argv] = s.argv;
    const r =
      cmd === 'iptables'
        ? iptables(argv, ctx)
        : s.input !== undefined
          ? ipsetRestore(ctx, s.input)
          : ipset(argv, ctx);
    const what = `step ${k}: ${s.argv.join(' ')}${s.input ? ` <<< ${JSON.stringify(s.input)}` : ''}`;
    assert.equal(r.code, s.code, `${what}: exit status\n${r.stderr}`);
    assert.equal(normalise(r.stdout), normalise(s.stdout), `${what}: stdout`);
    assert.equal(r.stderr, s.stderr, `${what}: stderr`);
  }
});

const env = (ctx: ToolContext): MatchEnv => ({
  table: 'filter',
  hook: 'FORWARD',
  now: 0,
  pos: { chain: 'FORWARD', index: 1 },
  random: () => 0,
  addrType: () => 'UNICAST',
  rpfilter: () => true,
  recent: new Map(),
  ipset: (name) => ctx.netns.netfilter.ipsets.get(name),
  stateful: () => ctx.netns.stateChanged(),
});

const pkt = (src: string, dst: string, proto: number, dport?: number): PacketView => ({
  src: ip4ToInt(src),
  dst: ip4ToInt(dst),
  proto,
  sport: dport === undefined ? undefined : 40000,
  dport,
  ttl: 64,
  len: 60,
  mark: 0,
  ctstate: 'NEW',
});

test('-m set matches as xt_set does: hash:net by each prefix length, hash:ip,port by dst,dst, negation', () => {
  const ctx = modelContext();
  const nf = ctx.netns.netfilter;
  ipsetCreate(nf, { name: 'nets', type: 'hash:net', initval: 1 });
  ipsetAdd(nf, 'nets', [
    { ip: ip4ToInt('10.244.0.5'), cidr: 32, proto: 0, port: 0 },
    { ip: ip4ToInt('10.1.0.0'), cidr: 16, proto: 0, port: 0 },
  ]);
  ipsetCreate(nf, { name: 'ports', type: 'hash:ip,port', initval: 2 });
  ipsetAdd(nf, 'ports', [{ ip: ip4ToInt('10.244.1.5'), cidr: 32, proto: 6, port: 8080 }]);
  const rule = (spec: string) => parseRuleSpec(spec.split(' '), { ipset: (n) => nf.ipsets.get(n) });
  const src = rule('-m set --match-set nets src -j ACCEPT');
  const e = env(ctx);
  assert.equal(ruleMatches(src, pkt('10.244.0.5', '10.0.0.1', 6, 80), e), true);
  assert.equal(ruleMatches(src, pkt('10.1.200.7', '10.0.0.1', 6, 80), e), true);
  assert.equal(ruleMatches(src, pkt('10.244.0.6', '10.0.0.1', 6, 80), e), false);
  const notSrc = rule('-m set ! --match-set nets src -j ACCEPT');
  assert.equal(ruleMatches(notSrc, pkt('10.244.0.6', '10.0.0.1', 6, 80), e), true);
  const dst = rule('-m set --match-set ports dst,dst -j ACCEPT');
  assert.equal(ruleMatches(dst, pkt('10.0.0.1', '10.244.1.5', 6, 8080), e), true);
  assert.equal(
    ruleMatches(dst, pkt('10.0.0.1', '10.244.1.5', 17, 8080), e),
    false,
    'udp is not the tcp entry',
  );
  assert.equal(ruleMatches(dst, pkt('10.0.0.1', '10.244.1.5', 6, 8081), e), false);
  // one direction for a two-dimension set: ip_set_test never matches
  const short = rule('-m set --match-set ports dst -j ACCEPT');
  assert.equal(ruleMatches(short, pkt('10.0.0.1', '10.244.1.5', 6, 8080), e), false);
});

test('a set a rule references cannot be destroyed; a rule naming a missing set is refused', () => {
  const ctx = modelContext();
  const nf = ctx.netns.netfilter;
  ipsetCreate(nf, { name: 'a', type: 'hash:net', initval: 1 });
  nf.append('filter', 'FORWARD', parseRuleSpec(['-m', 'set', '--match-set', 'a', 'src', '-j', 'DROP']));
  assert.throws(
    () => ipsetDestroy(nf, 'a'),
    (e: unknown) => e instanceof IpsetError && e.code === 'busy',
  );
  assert.throws(
    () =>
      nf.append('filter', 'FORWARD', parseRuleSpec(['-m', 'set', '--match-set', 'b', 'src', '-j', 'DROP'])),
    /set b does not exist/,
  );
  assert.equal(nf.chain('filter', 'FORWARD')!.rules.length, 1);
});
