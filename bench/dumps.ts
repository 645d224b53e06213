/**
 * A dump set in the collector's layout, printed by the emulated tools from a model (for the
 * import benchmark, and the tests that import simulated clusters of every mode): each node and
 * router dumped with the namespaces its veths lead to, each file what the emulated `ip`,
 * `bridge`, `iptables-save`, `nstat` print for the command src/collect/collect.sh runs. The
 * emulated tools print what the real ones do (test/iproute.test.ts, the nf goldens), so this is
 * the shape a real node's dump has; it is not a real node's dump.
 */
import type { Cluster } from '../src/cni/build.ts';
import type { Netns } from '../src/kernel/objects.ts';
import type { DumpFiles } from '../src/import/index.ts';
import { DUMPED_COMMANDS } from '../src/import/roundtrip.ts';
import { Ctx, defaultOpts } from '../src/tools/iproute-common.ts';
import { nsids } from '../src/tools/iproute-link.ts';
import { runCommand } from '../src/tools/index.ts';

/** made-up inodes, one per namespace, stable for a model */
function inodes(c: Cluster): Map<string, string> {
  return new Map([...c.world.netns.keys()].map((n, i) => [n, String(4026532000 + i)]));
}

function sysctls(ns: Netns): string {
  return [...ns.sysctl]
    .map(([k, v]) => {
      // net.ipv4.conf.flannel.1.rp_filter → net/ipv4/conf/flannel.1/rp_filter
      const m = /^net\.ipv4\.conf\.(.+)\.([a-z_]+)$/.exec(k);
      return `${m ? `net/ipv4/conf/${m[1]}/${m[2]}` : k.split('.').join('/')} = ${v}\n`;
    })
    .join('');
}

function dumpNs(
  c: Cluster,
  ns: Netns,
  dir: string,
  role: 'target' | 'peer',
  files: DumpFiles,
  ino: Map<string, string>,
): void {
  const put = (name: string, text: string) => files.set(`${dir}/${name}`, text);
  put('where.txt', `inode: ${ino.get(ns.name)}\nrole: ${role}\nname: sim-${ns.name}\n`);
  for (const { file, command } of DUMPED_COMMANDS) put(file, runCommand(c, ns.name, command).stdout);
  const ids = nsids(new Ctx(c, ns, defaultOpts()), ns);
  put('nsid.json', JSON.stringify([...ids].map(([name, nsid]) => ({ nsid, name: `sim-${name}` }))) + '\n');
  put('sysctl.txt', sysctls(ns));
  put(
    'ss.txt',
    ns.sockets
      .map((s) => `${s.proto} ${s.proto === 'tcp' ? 'LISTEN' : 'UNCONN'} 0 0 ${s.addr}:${s.port} 0.0.0.0:*\n`)
      .join(''),
  );
}

/** every node and router of the model, as `podwalk collect --netns sim-NAME --name NAME` would dump it */
export function dumpsOf(c: Cluster): DumpFiles {
  const files: DumpFiles = new Map();
  const ino = inodes(c);
  for (const ns of c.world.netns.values()) {
    if (ns.role !== 'node' && ns.role !== 'router') continue;
    const top = ns.name;
    files.set(
      `${top}/manifest.txt`,
      [
        'podwalk-collect: 1',
        `node: ${ns.name}`,
        'hostname: sim',
        'boot-id: 00000000-0000-0000-0000-000000000000',
        `target: ${ino.get(ns.name)}`,
        `target-netns: sim-${ns.name}`,
        '',
      ].join('\n'),
    );
    dumpNs(c, ns, `${top}/netns/${ino.get(ns.name)}`, 'target', files, ino);
    const peers = new Set<string>();
    for (const l of ns.links.values())
      if (l.type === 'veth' && l.peer && l.peer.netns !== ns.name) peers.add(l.peer.netns);
    for (const p of peers) dumpNs(c, c.world.ns(p), `${top}/netns/${ino.get(p)}`, 'peer', files, ino);
  }
  return files;
}
