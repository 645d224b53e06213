/**
 * The hooks' plan of a namespace's rule set (src/kernel/netfilter/plan.ts) is made once and kept
 * until the rules change: every writer must drop it. Here the emulated iptables and
 * iptables-restore change node1's rules between walks of pod-a → pod-c (flannel-vxlan: node1
 * forwards the flow), and after each change (1) the kept plan is the one a fresh look at the rules
 * makes (same chains, rules and targets, object for object) and (2) the next walk goes as the
 * changed rules say.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seedCluster } from '../src/cluster/seed.ts';
import { buildCluster } from '../src/cni/build.ts';
import { HOOKS, planOf, type NfPlan } from '../src/kernel/netfilter.ts';
import { iptables } from '../src/tools/iptables.ts';
import { iptablesRestore } from '../src/tools/iptables-restore.ts';
import { walk } from '../src/trace/walk.ts';

const c = buildCluster(seedCluster(), 'flannel-vxlan');
const node1 = c.world.ns('node1');
const ctx = { cluster: c, netns: node1 };
let sport = 30000;

/** what a plan holds, as a flat list of objects and flags (compared element by element with ===) */
function parts(p: NfPlan): unknown[] {
  const out: unknown[] = [p.active, [...p.random].join()];
  for (const hook of HOOKS)
    for (const [name, e] of Object.entries(p.hooks[hook])) {
      out.push(hook, name, e.chain, e.empty);
      for (const [chain, cc] of e.compiled) {
        out.push(chain, cc.chain, cc.firstRandom);
        for (const r of cc.rules) out.push(r.rule, r.target, r.matches.length, r.random);
      }
    }
  return out;
}

/** the kept plan is what the rules make now */
function planIsCurrent(what: string): void {
  const kept = parts(planOf(node1.netfilter));
  node1.netfilter.changed();
  const fresh = parts(planOf(node1.netfilter));
  assert.equal(
    kept.length,
    fresh.length,
    `${what}: the kept plan has ${kept.length} parts, a new one ${fresh.length}`,
  );
  kept.forEach((x, i) =>
    assert.ok(x === fresh[i], `${what}: part ${i} of the kept plan is not the new one's`),
  );
}

/** where pod-a → pod-c ends: 'delivered', or the drop's table and rule (chain index) or policy */
function outcome(): string {
  const w = walk(c, { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080, sport: sport++ });
  const d = w.request.disposition;
  if (d.kind === 'delivered') return w.reply?.disposition.kind === 'delivered' ? 'delivered' : 'no reply';
  if (d.kind !== 'dropped') return d.kind;
  const drop = d.drop as {
    netns: string;
    table?: string;
    rule?: { chain: string; index: number };
    policy?: { chain: string };
  };
  const by = drop.rule ? `${drop.rule.chain} ${drop.rule.index}` : `${drop.policy?.chain} policy`;
  return `dropped in ${drop.netns} ${drop.table} ${by}`;
}

function run(...argv: string[]): void {
  const r = iptables(argv, ctx);
  assert.equal(r.code, 0, `iptables ${argv.join(' ')}: ${r.stderr}`);
}

const steps: [string, () => void, string][] = [
  [
    '-I a DROP rule',
    () => run('-I', 'FORWARD', '1', '-d', '10.244.1.5/32', '-p', 'tcp', '-j', 'DROP'),
    'dropped in node1 filter FORWARD 1',
  ],
  [
    '-R it with ACCEPT',
    () => run('-R', 'FORWARD', '1', '-d', '10.244.1.5/32', '-p', 'tcp', '-j', 'ACCEPT'),
    'delivered',
  ],
  ['-D it', () => run('-D', 'FORWARD', '1'), 'delivered'],
  [
    '-N a chain, -A a DROP to it, -I a jump',
    () => {
      run('-N', 'PLANTEST');
      run('-A', 'PLANTEST', '-j', 'DROP');
      run('-I', 'FORWARD', '1', '-j', 'PLANTEST');
    },
    'dropped in node1 filter PLANTEST 1',
  ],
  ['-E renames the chain', () => run('-E', 'PLANTEST', 'PLANTEST2'), 'dropped in node1 filter PLANTEST2 1'],
  ['-F the chain', () => run('-F', 'PLANTEST2'), 'delivered'],
  [
    '-A a DROP to the raw table (a new table)',
    () => run('-t', 'raw', '-A', 'PREROUTING', '-d', '10.244.1.5', '-j', 'DROP'),
    'dropped in node1 raw PREROUTING 1',
  ],
  ['-F the raw table', () => run('-t', 'raw', '-F'), 'delivered'],
  [
    '-P FORWARD DROP, -F FORWARD',
    () => {
      run('-P', 'FORWARD', 'DROP');
      run('-F', 'FORWARD');
    },
    'dropped in node1 filter FORWARD policy',
  ],
  ['-P FORWARD ACCEPT', () => run('-P', 'FORWARD', 'ACCEPT'), 'delivered'],
  [
    'iptables-restore of a mangle table that drops',
    () => {
      const r = iptablesRestore(
        ctx,
        '*mangle\n:FORWARD ACCEPT [0:0]\n-A FORWARD -d 10.244.1.5/32 -j DROP\nCOMMIT\n',
      );
      assert.equal(r.code, 0, r.stderr);
    },
    'dropped in node1 mangle FORWARD 1',
  ],
  [
    'iptables-restore of it empty',
    () => {
      const r = iptablesRestore(ctx, '*mangle\n:FORWARD ACCEPT [0:0]\nCOMMIT\n');
      assert.equal(r.code, 0, r.stderr);
    },
    'delivered',
  ],
];

test('the hooks plan is made again after every change of the rules (emulated iptables, iptables-restore)', () => {
  assert.equal(outcome(), 'delivered');
  planIsCurrent('after the first walk');
  for (const [what, change, expected] of steps) {
    // a walk first: the plan in use is the one the change must drop
    outcome();
    change();
    planIsCurrent(what);
    assert.equal(outcome(), expected, what);
  }
});
