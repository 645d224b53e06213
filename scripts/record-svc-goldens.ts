/**
 * Records what the real iptables 1.8.9 (nf_tables) makes of kube-proxy's programming, the goldens
 * test/services.test.ts compares the model's `iptables-save` of every node with. Needs root:
 *
 *   flock /tmp/podwalk-lab.lock npx tsx scripts/record-svc-goldens.ts
 *
 * For each cluster file in CASES and each of its nodes, in a fresh network namespace
 * (pwh-svc-NODE, deleted after): `iptables-restore` of the node's tables as the CNI left them
 * (the model built without services), then the commands kube-proxy runs, from the same typed sync
 * the model applies (src/proxy/kube-proxy.ts): `iptables -t T -N KUBE-PROXY-CANARY` (its iptables
 * monitor), per jump `iptables -t T -N CHAIN` and `iptables -C … || iptables -I …` (EnsureChain,
 * EnsureRule Prepend), then `iptables-restore --noflush` of the filter and nat input it writes.
 * `iptables-save` of the namespace, without its date lines, goes to
 * test/golden/svc/CASE/NODE.save.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadCluster } from '../src/cluster/load.ts';
import { buildCluster } from '../src/cni/build.ts';
import { kubeProxySync, type ProxySync } from '../src/proxy/kube-proxy.ts';
import { iptablesSave } from '../src/tools/iptables-save.ts';

export const CASES = ['examples/services.yaml', 'test/fixtures/services-external.yaml'];

export function sh(argv: string[], input?: string): { status: number; out: string; err: string } {
  const r = spawnSync(argv[0], argv.slice(1), { input, encoding: 'utf8' });
  return { status: r.status ?? -1, out: r.stdout, err: r.stderr };
}

export function must(argv: string[], input?: string): string {
  const r = sh(argv, input);
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status}: ${r.err.trim()}`);
  return r.out;
}

/** an argument as kube-proxy writes it into the restore input (proxyutil.LineBuffer: quoted when it has spaces) */
const quote = (a: string) => (/\s/.test(a) ? `"${a}"` : a);

/** the iptables-restore input of syncProxyRules */
export function restoreInput(sync: ProxySync): string {
  const out: string[] = [];
  for (const t of sync.restore) {
    out.push(`*${t.table}`);
    for (const c of t.chains) out.push(`:${c} - [0:0]`);
    for (const r of t.rules) out.push(`-A ${r.chain} ${r.args.map(quote).join(' ')}`);
    out.push('COMMIT');
  }
  return out.join('\n') + '\n';
}

function record(file: string): void {
  const name = file.replace(/^.*\//, '').replace(/\.yaml$/, '');
  const spec = loadCluster(readFileSync(file, 'utf8'), file);
  const before = buildCluster({ ...spec, services: undefined });
  const after = buildCluster(spec);
  const dir = `test/golden/svc/${name}`;
  mkdirSync(dir, { recursive: true });
  for (const n of after.nodes) {
    recordIn(`pwh-svc-${n.name}`.slice(0, 15), `${dir}/${n.name}.save`, (x) => {
      const cni = iptablesSave(before.world.ns(n.name).netfilter);
      if (cni) must(x(['iptables-restore']), cni);
      const sync = kubeProxySync({ node: n.name, clusterCidr: after.clusterCidr }, after.services);
      for (const t of sync.canary) must(x(['iptables', '-t', t, '-N', 'KUBE-PROXY-CANARY']));
      for (const j of sync.jumps) {
        // EnsureChain: exit 1 "Chain already exists" is fine
        const made = sh(x(['iptables', '-t', j.table, '-N', j.target]));
        if (made.status !== 0 && !/already exists/.test(made.err)) throw new Error(made.err);
        const rule = [...j.args, '-j', j.target];
        if (sh(x(['iptables', '-t', j.table, '-C', j.chain, ...rule])).status !== 0)
          must(x(['iptables', '-t', j.table, '-I', j.chain, ...rule]));
      }
      must(x(['iptables-restore', '--noflush']), restoreInput(sync));
    });
  }
}

/**
 * In a fresh network namespace `ns` (deleted after, also on failure): `load` (given the prefix
 * that runs a command in it), then `iptables-save` without its date lines into `file`.
 */
export function recordIn(ns: string, file: string, load: (x: (args: string[]) => string[]) => void): void {
  sh(['ip', 'netns', 'del', ns]);
  must(['ip', 'netns', 'add', ns]);
  try {
    const x = (args: string[]) => ['ip', 'netns', 'exec', ns, ...args];
    load(x);
    const save = must(x(['iptables-save']))
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .join('\n');
    writeFileSync(file, save);
    console.log(file);
  } finally {
    sh(['ip', 'netns', 'del', ns]);
  }
}

if (process.argv[1]?.endsWith('record-svc-goldens.ts')) for (const f of CASES) record(f);
