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
import { HOOKS, planOf, type Hook, type NfPlan } from '../src/kernel/netfilter.ts';
import { OP_CT, OP_NAT } from '../src/kernel/netfilter/plan.ts';
import { netnsAdd } from '../src/kernel/netlink.ts';
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
  for (const hook of HOOKS) out.push(hook, opsOf(p, hook));
  return out;
}

/** what a hook runs, in order: ct, nat (with the nat table's entry or not), a table's name */
function opsOf(p: NfPlan, hook: Hook): string {
  return p.ops[hook]
    .map((o) => (o.op === OP_CT ? 'ct' : o.op === OP_NAT ? `nat(${o.entry?.name ?? '-'})` : o.entry!.name))
    .join(' ');
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

test('what each hook runs: conntrack at PREROUTING and OUTPUT, NAT only where the nat table exists', () => {
  const ns = netnsAdd(c.world, 'plan-ops', 'node');
  const nsCtx = { cluster: c, netns: ns };
  const ops = () => HOOKS.map((h) => `${h}: ${opsOf(planOf(ns.netfilter), h)}`).join('; ');
  const ipt = (...argv: string[]) => assert.equal(iptables(argv, nsCtx).code, 0, argv.join(' '));
  // no table: nothing but conntrack (which runs only where something needs it: HookRun.ctIn)
  assert.equal(ops(), 'PREROUTING: ct; INPUT: ; FORWARD: ; OUTPUT: ct; POSTROUTING: ');
  // a filter rule that needs conntrack: still no NAT (the nat table does not exist)
  ipt('-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP');
  assert.equal(ops(), 'PREROUTING: ct; INPUT: filter; FORWARD: filter; OUTPUT: ct filter; POSTROUTING: ');
  // a nat chain made by a command makes the table: NAT at its four hooks, in priority order
  ipt('-t', 'nat', '-N', 'PLANOPS');
  assert.equal(
    ops(),
    'PREROUTING: ct nat(nat); INPUT: filter nat(nat); FORWARD: filter; OUTPUT: ct nat(nat) filter; POSTROUTING: nat(nat)',
  );
  ipt('-t', 'mangle', '-A', 'PREROUTING', '-j', 'MARK', '--set-mark', '1');
  ipt('-t', 'raw', '-A', 'OUTPUT', '-j', 'CT', '--notrack');
  assert.equal(
    ops(),
    'PREROUTING: raw ct mangle nat(nat); INPUT: mangle filter nat(nat); FORWARD: mangle filter; ' +
      'OUTPUT: raw ct mangle nat(nat) filter; POSTROUTING: mangle nat(nat)',
  );
});
