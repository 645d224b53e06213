/**
 * Records what the real iptables 1.8.9 (nf_tables) makes of felix's filter chains, the goldens
 * test/felix.test.ts compares the model's `iptables-save` of every node with. Needs root:
 *
 *   flock /tmp/podwalk-lab.lock npx tsx scripts/record-felix-goldens.ts
 *
 * For each case and each node, in a fresh network namespace (pwh-felix-NODE, deleted after):
 * `ipset restore` of felix's IP sets (felixIpsetRestore: create, add, COMMIT, as felix writes a
 * fresh node's), `iptables-restore` of the node's tables without felix's (kube-proxy's and the
 * rest, as the model built them), then `iptables-restore --noflush` of what felix writes, in felix's own rendering
 * (src/cni/felix.ts: `--jump`, `--in-interface`, `--set-mark`, `--destination-ports`, the
 * `cali:` hash comment first): its chains, their rules, `-I` of its jumps at the top of INPUT,
 * FORWARD and OUTPUT, `-A` of its appended FORWARD rules; then its raw, mangle and nat tables
 * (felixOtherTables) the same way, each with its `-I` of the jumps at the top of the builtins.
 * `iptables-save` of the namespace, without its date lines, goes to
 * test/golden/felix/CASE/NODE.save, and `ipset save` to NODE.ipset.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadCluster } from '../src/cluster/load.ts';
import type { CniMode } from '../src/cluster/spec.ts';
import { buildCluster } from '../src/cni/build.ts';
import {
  felixFilter,
  felixRuleSpecs,
  felixIpsetRestore,
  felixOtherTables,
  type FelixFilter,
  type FelixTable,
} from '../src/cni/felix.ts';
import { iptablesSave } from '../src/tools/iptables-save.ts';
import { must, recordIn } from './record-svc-goldens.ts';

/** cluster file, mode, golden directory name */
export const CASES: { file: string; mode: CniMode; name: string }[] = [
  { file: 'test/fixtures/felix-cluster.yaml', mode: 'calico-bgp', name: 'felix-cluster' },
  { file: 'scenarios/policy-blocks-dns.yaml', mode: 'calico-ipip', name: 'policy-blocks-dns' },
  { file: 'examples/services.yaml', mode: 'calico-bgp', name: 'services-calico-bgp' },
  { file: 'test/fixtures/nat-outgoing.yaml', mode: 'calico-vxlan', name: 'nat-outgoing-vxlan' },
];

/** felix's iptables-restore input for the filter table */
export function felixRestore(f: FelixFilter): string {
  const out = ['*filter'];
  for (const c of f.chains) out.push(`:${c.name} - [0:0]`);
  for (const c of f.chains) for (const r of felixRuleSpecs(c.rules)) out.push(`-A ${c.name} ${r.spec}`);
  for (const { chain, rules } of f.insert)
    felixRuleSpecs(rules).forEach((r, i) => out.push(`-I ${chain} ${i + 1} ${r.spec}`));
  for (const r of felixRuleSpecs(f.append)) out.push(`-A FORWARD ${r.spec}`);
  out.push('COMMIT');
  return out.join('\n') + '\n';
}

/** felix's iptables-restore input for one of its other tables (raw, mangle, nat) */
export function felixOtherRestore(t: FelixTable): string {
  const out = [`*${t.table}`];
  for (const c of t.chains) out.push(`:${c.name} - [0:0]`);
  for (const c of t.chains) for (const r of c.rules) out.push(`-A ${c.name} ${r.spec}`);
  for (const { chain, rules } of t.insert)
    rules.forEach((r, i) => out.push(`-I ${chain} ${i + 1} ${r.spec}`));
  out.push('COMMIT');
  return out.join('\n') + '\n';
}

function record({ file, mode, name }: (typeof CASES)[number]): void {
  const spec = loadCluster(readFileSync(file, 'utf8'), file);
  const c = buildCluster(spec, mode);
  const dir = `test/golden/felix/${name}`;
  mkdirSync(dir, { recursive: true });
  for (const n of c.nodes) {
    const f = felixFilter(
      spec,
      c.pods,
      c.pods.filter((p) => p.node === n.name),
    );
    // the node without felix: its chains gone, its jumps and appended rules taken out of the builtins
    const nf = c.world.ns(n.name).netfilter;
    const filter = nf.table('filter');
    for (const ch of f.chains) filter.delete(ch.name);
    for (const { chain, rules } of f.insert) filter.get(chain)!.rules.splice(0, rules.rests.length);
    const fwd = filter.get('FORWARD')!.rules;
    fwd.splice(fwd.length - f.append.rests.length, f.append.rests.length);
    // felix's raw, mangle and nat chains and jumps taken out likewise (the pool and tunnels as the build's)
    const masq = nf.chain('nat', 'cali-nat-outgoing')!.rules.length > 0;
    const tunnels = (nf.chain('nat', 'cali-POSTROUTING')?.rules ?? []).flatMap((r) =>
      r.out ? [r.out.v] : [],
    );
    const other = felixOtherTables([{ cidr: c.clusterCidr, natOutgoing: masq }], tunnels);
    for (const t of other.tables) {
      const table = nf.table(t.table);
      for (const ch of t.chains) table.delete(ch.name);
      for (const { chain, rules } of t.insert) table.get(chain)!.rules.splice(0, rules.length);
    }
    // the node without felix's sets too (they are put back by felix's own ipset restore)
    nf.ipsetsByName = undefined;
    recordIn(`pwh-felix-${n.name}`.slice(0, 15), `${dir}/${n.name}.save`, (x) => {
      must(x(['ipset', 'restore']), felixIpsetRestore([...other.ipsets, ...f.ipsets]));
      writeFileSync(`${dir}/${n.name}.ipset`, must(x(['ipset', 'save'])));
      must(x(['iptables-restore']), iptablesSave(nf));
      must(x(['iptables-restore', '--noflush']), felixRestore(f));
      for (const t of other.tables) must(x(['iptables-restore', '--noflush']), felixOtherRestore(t));
    });
  }
}

if (process.argv[1]?.endsWith('record-felix-goldens.ts')) for (const k of CASES) record(k);
