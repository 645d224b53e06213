/**
 * The differential suite's faults on the model side: each is the real command the lab runs on the
 * kernel, run through the emulated tool. Every kind must be accepted by the tool (exit 0) and
 * leave the change the command stands for, read back through the tools. Needs no root.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { buildCluster } from '../src/cni/build.ts';
import { bgpOriginates } from '../src/cni/modes.ts';
import {
  CVX_SEED_BASE,
  FAULT_KINDS,
  faultOf,
  generateScenario,
  type FaultKind,
  type Scenario,
} from '../src/lab/scenarios.ts';
import { runCommand } from '../src/tools/index.ts';

/** the first seed from `base` + 1 on whose scenario plants each kind of fault */
function seedsByKind(base = 0): Map<FaultKind, Scenario> {
  const out = new Map<FaultKind, Scenario>();
  for (let seed = base + 1; out.size < FAULT_KINDS.length && seed < base + 1000; seed++) {
    const s = generateScenario(seed);
    if (!out.has(s.faultKind)) out.set(s.faultKind, s);
  }
  return out;
}

/** the kinds whose command depends on the mode, again in calico-vxlan (seeds CVX_SEED_BASE + K) */
const CVX_KINDS: readonly FaultKind[] = ['route-del', 'fdb-del', 'neigh-del'];

describe('lab faults run as commands through the emulated tools', () => {
  const scenarios = seedsByKind();
  test('every kind of fault occurs in the seeded scenarios', () => {
    assert.deepEqual([...scenarios.keys()].sort(), [...FAULT_KINDS].sort());
  });
  const cvx = [...seedsByKind(CVX_SEED_BASE)].filter(([k]) => CVX_KINDS.includes(k));
  test('calico-vxlan seeds plant route-del, fdb-del and neigh-del', () => {
    assert.deepEqual(cvx.map(([k]) => k).sort(), [...CVX_KINDS].sort());
    for (const [, s] of cvx) assert.equal(s.mode, 'calico-vxlan');
  });

  for (const [kind, s] of [...scenarios, ...cvx]) {
    const c = buildCluster(s.spec, s.mode);
    const fault = faultOf(s, c);
    if (kind === 'none' || kind === 'no-listener') {
      test(`${kind}: no command`, () => assert.equal(fault, undefined));
      continue;
    }
    test(`${kind} (seed ${s.seed}, ${s.mode}): ${fault?.netns}: ${fault?.command}`, () => {
      assert.ok(fault);
      const sh = (cmd: string) => {
        const r = runCommand(c, fault.netns, cmd);
        assert.equal(r.code, 0, `${cmd}: ${r.stderr}`);
        return r.stdout;
      };
      const before = sh(readBack(kind, fault.command));
      const r = runCommand(c, fault.netns, fault.command);
      assert.deepEqual({ code: r.code, stderr: r.stderr }, { code: 0, stderr: '' });
      const after = sh(readBack(kind, fault.command));
      assert.notEqual(after, before, 'the command changed nothing');
      const words = fault.command.split(' ');
      // calico-bgp: a mesh session disabled, the peer's blocks withdrawn
      const peer = c.nodes.find((n) => `Mesh_${n.addr.split('.').join('_')}` === words[4]);
      switch (kind) {
        case 'route-del': {
          // a BIRD session: every block the peer originates (Calico's layout: its IPAM blocks)
          for (const gone of words[0] === 'birdc' ? bgpOriginates(c, peer!) : [words[3]])
            assert.ok(before.includes(`${gone} `) && !after.includes(`${gone} `), `${gone}:\n${after}`);
          if (words[0] === 'birdc')
            assert.match(sh('birdc show protocols'), new RegExp(`^${words[4]} +BGP +--- +down `, 'm'));
          break;
        }
        case 'fdb-del':
          // bridge fdb del MAC dev DEV dst IP (flannel.1, vxlan.calico): `show dev DEV` names no device
          assert.ok(before.includes(`${words[3]} dst ${words[7]} `), before);
          assert.ok(!after.includes(`${words[3]} dst ${words[7]} `), after);
          break;
        case 'neigh-del':
          // ip neigh del IP dev DEV
          assert.ok(before.includes(`${words[3]} dev ${words[5]} `), before);
          assert.ok(!after.includes(`${words[3]} dev ${words[5]} `), after);
          break;
        case 'ip-forward-off':
          assert.equal(after, '0\n');
          break;
        case 'mtu-mismatch':
          assert.match(after, / mtu 1400 /);
          break;
        case 'link-down':
          assert.match(after, /state DOWN/);
          break;
        case 'iptables-drop':
          assert.equal(after.split('\n')[1], `-A FORWARD -d ${words[4]} -j DROP`);
          break;
      }
    });
  }
});

/** the command that shows what a fault changes */
function readBack(kind: FaultKind, command: string): string {
  const words = command.split(' ');
  switch (kind) {
    case 'route-del':
      return 'ip route';
    case 'fdb-del':
      return `bridge fdb show dev ${words[5]}`;
    case 'neigh-del':
      return 'ip neigh';
    case 'ip-forward-off':
      return 'sysctl -n net.ipv4.ip_forward';
    case 'mtu-mismatch':
      return 'ip link show eth0';
    case 'link-down':
      return `ip link show ${words[3]}`;
    default:
      return 'iptables -S FORWARD';
  }
}
