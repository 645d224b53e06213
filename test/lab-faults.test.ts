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
  FAULT_KINDS,
  faultOf,
  generateScenario,
  type FaultKind,
  type Scenario,
} from '../src/lab/scenarios.ts';
import { runCommand } from '../src/tools/index.ts';

/** the first seed whose scenario plants each kind of fault */
function seedsByKind(): Map<FaultKind, Scenario> {
  const out = new Map<FaultKind, Scenario>();
  for (let seed = 1; out.size < FAULT_KINDS.length && seed < 2000; seed++) {
    const s = generateScenario(seed);
    if (!out.has(s.faultKind)) out.set(s.faultKind, s);
  }
  return out;
}

describe('lab faults run as commands through the emulated tools', () => {
  const scenarios = seedsByKind();
  test('every kind of fault occurs in the seeded scenarios', () => {
    assert.deepEqual([...scenarios.keys()].sort(), [...FAULT_KINDS].sort());
  });

  for (const [kind, s] of scenarios) {
    const c = buildCluster(s.spec, s.mode);
    const fault = faultOf(s, c);
    if (kind === 'none' || kind === 'no-listener') {
      test(`${kind}: no command`, () => assert.equal(fault, undefined));
      continue;
    }
    test(`${kind} (seed ${s.seed}): ${fault?.netns}: ${fault?.command}`, () => {
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
          assert.ok(!after.includes(`${words[3]} dev flannel.1 dst ${words[7]} `), after);
          break;
        case 'neigh-del':
          assert.ok(!after.includes(`${words[3]} dev flannel.1 `), after);
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
      return 'bridge fdb show dev flannel.1';
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
