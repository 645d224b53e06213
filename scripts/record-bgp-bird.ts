/**
 * Records real BIRD 2 speaking BGP the way calico-node configures it for the node-to-node mesh, for
 * test/bgp-bird.test.ts. Needs root, network namespaces, bird2 and tcpdump; run it alone:
 *
 *   flock /tmp/podwalk-lab.lock npx tsx scripts/record-bgp-bird.ts
 *
 * Two namespaces pwh-bgp-n1 (192.168.1.10) and pwh-bgp-n2 (192.168.1.11) are joined by a veth pair,
 * and each runs `bird -f` with the configuration Calico's confd templates generate for it
 * (projectcalico/calico confd/etc/calico/confd/templates/bird.cfg.template @ efd2a123 with
 * bird_ipam.cfg.template @ ff7b1571 and bird_aggr.cfg.template), written in BIRD 2 syntax (see
 * src/lab/bird.ts). tcpdump captures port 179 on n1's eth0 while:
 *   1. n2 connects to n1 (n1 is passive: the mesh is unidirectional, the higher address waits),
 *      OPEN, KEEPALIVE, UPDATEs of each node's IPAM block, End-of-RIB markers;
 *   2. a workload on n1 gets an address borrowed from n2's block (a /32 route on a cali* interface),
 *      which BIRD's kernel protocol learns and n1 announces; then the route is deleted (a withdraw);
 *   3. n1 disables the session (NOTIFICATION Cease, administrative shutdown).
 * Writes test/fixtures/bgp/: bird-mesh.pcap (as tcpdump wrote it), n1.conf, n2.conf and
 * manifest.json (versions, and what birdc and ip route printed at each point). The namespaces are
 * always deleted again; nothing leaves them.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calicoBirdConfig, type BirdNode } from '../src/lab/bird.ts';

const OUT = join(import.meta.dirname, '..', 'test', 'fixtures', 'bgp');
const PREFIX = 'pwh-bgp-';

interface Node extends BirdNode {
  ns: string;
  mac: string;
}

const NODES: Node[] = [
  { name: 'n1', ns: `${PREFIX}n1`, ip: '192.168.1.10', mac: '52:54:00:00:01:0a', block: '10.244.0.0/26' },
  { name: 'n2', ns: `${PREFIX}n2`, ip: '192.168.1.11', mac: '52:54:00:00:01:0b', block: '10.244.0.64/26' },
];
/** the workload on n1 whose address is borrowed from n2's block, and its host-side interface */
const BORROWED = { ip: '10.244.0.70', dev: 'cali1b2c3d4e5f6', peer: 'pwh-wl0' };

function run(argv: string[], input?: string): string {
  return execFileSync(argv[0], argv.slice(1), {
    encoding: 'utf8',
    input,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}
const inNs = (ns: string, ...argv: string[]) => run(['ip', 'netns', 'exec', ns, ...argv]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ok: () => boolean, ms = 60000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

function cleanup(procs: ChildProcess[]): void {
  for (const p of procs) if (p.exitCode === null && p.pid) p.kill('SIGTERM');
  for (const n of NODES) if (existsSync(`/run/netns/${n.ns}`)) run(['ip', 'netns', 'del', n.ns]);
}

async function main(): Promise<void> {
  for (const tool of ['bird', 'birdc', 'tcpdump'])
    try {
      run(['which', tool]);
    } catch {
      throw new Error(`${tool} not found (apt-get install bird2 tcpdump)`);
    }
  for (const n of NODES)
    if (existsSync(`/run/netns/${n.ns}`)) throw new Error(`namespace ${n.ns} exists: another recording?`);
  const dir = mkdtempSync(join(tmpdir(), 'pwh-bgp-'));
  const procs: ChildProcess[] = [];
  const steps: { at: string; node: string; argv: string[]; out: string }[] = [];
  const record = (at: string, n: Node, ...argv: string[]) =>
    steps.push({ at, node: n.name, argv, out: inNs(n.ns, ...argv) });
  const birdc = (n: Node, ...cmd: string[]) => inNs(n.ns, 'birdc', '-s', join(dir, `${n.name}.ctl`), ...cmd);
  try {
    const [n1, n2] = NODES;
    for (const n of NODES) run(['ip', 'netns', 'add', n.ns]);
    run(['ip', 'link', 'add', 'eth0', 'netns', n1.ns, 'type', 'veth', 'peer', 'eth0', 'netns', n2.ns]);
    for (const n of NODES) {
      inNs(n.ns, 'ip', 'link', 'set', 'lo', 'up');
      inNs(n.ns, 'ip', 'link', 'set', 'eth0', 'address', n.mac);
      inNs(n.ns, 'ip', 'addr', 'add', `${n.ip}/24`, 'dev', 'eth0');
      inNs(n.ns, 'ip', 'link', 'set', 'eth0', 'up');
      writeFileSync(join(dir, `${n.name}.conf`), calicoBirdConfig(n, NODES));
      run(['bird', '-p', '-c', join(dir, `${n.name}.conf`)]);
    }
    const pcap = join(dir, 'bird-mesh.pcap');
    const dump = spawn(
      'ip',
      ['netns', 'exec', n1.ns, 'tcpdump', '-i', 'eth0', '-U', '-s', '0', '-w', pcap, 'tcp', 'port', '179'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    procs.push(dump);
    let dumpErr = '';
    dump.stderr?.on('data', (d: Buffer) => (dumpErr += d.toString()));
    await until('tcpdump to start', () => dumpErr.includes('listening on'), 30000);
    for (const n of NODES) {
      const p = spawn(
        'ip',
        [
          'netns',
          'exec',
          n.ns,
          'bird',
          '-f',
          '-c',
          join(dir, `${n.name}.conf`),
          '-s',
          join(dir, `${n.name}.ctl`),
          '-P',
          join(dir, `${n.name}.pid`),
        ],
        { stdio: 'ignore' },
      );
      procs.push(p);
    }
    const established = (n: Node) =>
      /Mesh_\S+\s+BGP\s+---\s+up\s+\S+\s+Established/.test(birdc(n, 'show', 'protocols'));
    await until('BIRD sessions Established', () =>
      NODES.every((n) => existsSync(join(dir, `${n.name}.ctl`)) && established(n)),
    );
    const has = (n: Node, prefix: string) => birdc(n, 'show', 'route', 'for', prefix).includes(prefix);
    await until('blocks learned', () => has(n1, n2.block) && has(n2, n1.block));
    await sleep(3000); // End-of-RIB and the kernel scan (2 s)
    for (const n of NODES) {
      record(
        'established',
        n,
        'birdc',
        '-s',
        join(dir, `${n.name}.ctl`),
        'show',
        'protocols',
        'all',
        `Mesh_${NODES.find((o) => o !== n)!
          .ip.split('.')
          .join('_')}`,
      );
      record('established', n, 'birdc', '-s', join(dir, `${n.name}.ctl`), 'show', 'route', 'all');
      record('established', n, 'ip', 'route');
    }
    // a workload on n1 with an address borrowed from n2's block
    inNs(n1.ns, 'ip', 'link', 'add', BORROWED.dev, 'type', 'veth', 'peer', BORROWED.peer);
    inNs(n1.ns, 'ip', 'link', 'set', BORROWED.dev, 'up');
    inNs(n1.ns, 'ip', 'link', 'set', BORROWED.peer, 'up');
    inNs(n1.ns, 'ip', 'route', 'add', `${BORROWED.ip}/32`, 'dev', BORROWED.dev, 'scope', 'link');
    await until('borrowed /32 learned by n2', () => has(n2, `${BORROWED.ip}/32`));
    await sleep(1000);
    for (const n of NODES) {
      record('borrowed', n, 'birdc', '-s', join(dir, `${n.name}.ctl`), 'show', 'route', 'all');
      record('borrowed', n, 'ip', 'route');
    }
    inNs(n1.ns, 'ip', 'route', 'del', `${BORROWED.ip}/32`, 'dev', BORROWED.dev);
    await until('borrowed /32 withdrawn', () => !has(n2, `${BORROWED.ip}/32`));
    await sleep(1000);
    birdc(n1, 'disable', `Mesh_${n2.ip.split('.').join('_')}`);
    await until('session down on n2', () => !established(n2));
    await sleep(1000);
    for (const n of NODES) {
      record('disabled', n, 'birdc', '-s', join(dir, `${n.name}.ctl`), 'show', 'protocols');
      record('disabled', n, 'ip', 'route');
    }
    dump.kill('SIGINT');
    await new Promise((r) => dump.once('exit', r));
    mkdirSync(OUT, { recursive: true });
    writeFileSync(join(OUT, 'bird-mesh.pcap'), readFileSync(pcap));
    for (const n of NODES)
      writeFileSync(join(OUT, `${n.name}.conf`), readFileSync(join(dir, `${n.name}.conf`)));
    const manifest = {
      bird: spawnSync('bird', ['--version'], { encoding: 'utf8' }).stderr.trim(),
      tcpdump: run(['tcpdump', '--version']).split('\n')[0],
      kernel: run(['uname', '-r']).trim(),
      nodes: NODES.map(({ name, ip, mac, block }) => ({ name, ip, mac, block })),
      borrowed: BORROWED,
      steps: steps.map((s) => ({
        ...s,
        argv: s.argv.map((a) => (a.startsWith(dir) ? a.slice(dir.length + 1) : a)),
      })),
    };
    writeFileSync(join(OUT, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    console.log(`wrote ${OUT}: bird-mesh.pcap, n1.conf, n2.conf, manifest.json`);
  } finally {
    cleanup(procs);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(`record-bgp-bird: ${(e as Error).message}`);
  process.exit(1);
});
