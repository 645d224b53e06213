/**
 * Records what the real ipset v7.17 and iptables 1.8.9 (nf_tables) answer to a list of commands
 * in one fresh network namespace (pwh-ipset-rec, deleted after), the goldens test/ipset.test.ts
 * replays on the model. Needs root and Debian's ipset:
 *
 *   flock /tmp/podwalk-lab.lock npx tsx scripts/record-ipset-goldens.ts
 *
 * Each step is a command line (`ipset …` or `iptables …`) or an `ipset restore` with its input; its
 * stdout, stderr and exit status go to test/golden/ipset/commands.json.
 */
import { writeFileSync } from 'node:fs';
import { sh } from './record-svc-goldens.ts';

export interface IpsetStep {
  argv: string[];
  /** standard input (ipset restore) */
  input?: string;
}

const i = (...argv: string[]): IpsetStep => ({ argv: ['ipset', ...argv] });
const ipt = (...argv: string[]): IpsetStep => ({ argv: ['iptables', ...argv] });

export const STEPS: IpsetStep[] = [
  i('version'),
  i(),
  i('frob'),
  i('create', 's2'),
  i('create', 's2', 'hash:foo'),
  i('create', 's1', 'hash:net', 'family', 'inet', 'maxelem', '1048576', 'initval', '0x12345678'),
  i('create', 's1', 'hash:net', 'family', 'inet'),
  i('create', 's1', 'hash:net', 'family', 'inet', 'maxelem', '1048576', '-exist'),
  i('create', 's1', 'hash:ip', '-exist'),
  i('add', 's1', '10.0.0.0/0'),
  i('add', 's1', '10.0.0.5/24'),
  i('add', 's1', '10.0.0.5/24'),
  i('add', 's1', '10.0.0.9/24', '-exist'),
  i('add', 's1', '10.1.2.3'),
  i('add', 's1', '10.1.2.3/32'),
  i('add', 's1', '1.2.3'),
  i('del', 's1', '10.9.0.0/24'),
  i('del', 's1', '10.9.0.0/24', '--exist'),
  i('add', 'nosuch', '1.2.3.4'),
  i('test', 's1', '10.0.0.77'),
  i('test', 's1', '10.0.1.77'),
  i('test', 's1', '10.0.0.0/24'),
  i('test', 's1', '10.0.0.0/25'),
  i('test', 's1', '10.1.2.3'),
  i('test', 'nosuch', '10.1.2.3'),
  i('list', 's1'),
  i('list', '-n'),
  i('list', '-t'),
  i('create', 'p', 'hash:ip,port', 'initval', '0x0badcafe'),
  i('add', 'p', '10.0.0.5,udp:53'),
  i('add', 'p', '10.0.0.5,8080'),
  i('add', 'p', '10.0.0.6,tcp:80-82'),
  i('add', 'p', '10.0.0.6'),
  i('test', 'p', '10.0.0.5,udp:53'),
  i('test', 'p', '10.0.0.5,tcp:53'),
  i('create', 'h', 'hash:ip', 'initval', '0x00000001'),
  i('add', 'h', '10.0.0.7'),
  i('add', 'h', '10.0.0.0/30'),
  i('test', 'h', '10.0.0.2'),
  i('test', 'h', '10.0.0.4'),
  i('swap', 's1', 'p'),
  i('swap', 's1', 'nosuch'),
  i('list', 'nosuch'),
  i('save', 'p'),
  i('save'),
  ipt('-A', 'INPUT', '-m', 'set', '--match-set', 's1', 'src', '-j', 'ACCEPT'),
  ipt('-A', 'INPUT', '-m', 'set', '!', '--match-set', 'p', 'dst,dst', '-j', 'DROP'),
  ipt('-A', 'INPUT', '-m', 'set', '--match-set', 'missing', 'src', '-j', 'DROP'),
  ipt('-A', 'INPUT', '-m', 'set', '--match-set', 's1', 'sideways', '-j', 'DROP'),
  ipt('-A', 'INPUT', '-m', 'set', '--match-set', 's1'),
  ipt('-S', 'INPUT'),
  ipt('-L', 'INPUT', '-n'),
  i('list', '-t', 's1'),
  i('destroy', 's1'),
  i('destroy'),
  i('list', '-n'),
  i('create', 's3', 'hash:net', 'initval', '0x00000003'),
  i('add', 's3', '10.7.0.0/16'),
  i('swap', 's1', 's3'),
  i('list', 's1'),
  i('list', 's3'),
  i('flush', 's1'),
  i('list', 's1'),
  ipt('-F', 'INPUT'),
  i('destroy', 's1'),
  i('destroy', 'nosuch'),
  {
    argv: ['ipset', 'restore'],
    input:
      'create t hash:net family inet maxelem 1048576\nadd t 10.1.0.0/16\nadd t 10.2.0.1/32\nadd t 10.2.0.1\nCOMMIT\n',
  },
  i('list', 't'),
  {
    argv: ['ipset', 'restore'],
    input:
      'create cali4t0 hash:net family inet maxelem 1048576\nadd cali4t0 10.244.0.5/32\nadd cali4t0 10.244.1.5/32\nswap cali40s:x cali4t0\nCOMMIT\n',
  },
  {
    argv: ['ipset', 'restore'],
    input:
      'create cali40s:x hash:net family inet maxelem 1048576\ncreate cali4t0 hash:net family inet maxelem 1048576\nadd cali4t0 10.244.0.5/32\nswap cali40s:x cali4t0\ndestroy cali4t0\nCOMMIT\n',
  },
  i('list', 'cali40s:x'),
  { argv: ['ipset', 'restore'], input: 'create u hash:net family inet\nadd u 10.1.0.0/16\nfrob\nCOMMIT\n' },
  i('list', '-n'),
];

if (process.argv[1]?.endsWith('record-ipset-goldens.ts')) {
  const ns = 'pwh-ipset-rec';
  sh(['ip', 'netns', 'del', ns]);
  if (sh(['ip', 'netns', 'add', ns]).status !== 0) throw new Error(`ip netns add ${ns} failed`);
  try {
    const out = STEPS.map((s) => {
      const r = sh(['ip', 'netns', 'exec', ns, ...s.argv], s.input);
      return { ...s, stdout: r.out, stderr: r.err, code: r.status };
    });
    writeFileSync('test/golden/ipset/commands.json', JSON.stringify(out, null, 1) + '\n');
    console.log('test/golden/ipset/commands.json');
  } finally {
    sh(['ip', 'netns', 'del', ns]);
  }
}
