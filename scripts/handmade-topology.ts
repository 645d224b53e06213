/**
 * A small topology that podwalk did not build, written with plain iproute2 and iptables, for the
 * collector to be checked on (test/collect-lab.test.ts, scripts/record-collect-fixtures.ts):
 * Calico's layout on two nodes joined by a veth, and Docker's FORWARD policy on one of them.
 *
 *   pwh-collect-n1 (192.168.50.1)  ── eth0 ═══ eth0 ──  pwh-collect-n2 (192.168.50.2)
 *     cali… ─ p1 10.65.1.2/32                            cali… ─ p2 10.65.2.2/32
 *     cali… ─ p3 10.65.1.3/32                            iptables: FORWARD policy DROP, DOCKER-USER,
 *     blackhole 10.65.1.0/26 proto bird                  udp/53 to pods and replies accepted
 *     10.65.2.0/26 via 192.168.50.2 proto bird           blackhole 10.65.2.0/26 proto bird
 *
 * Like Calico: each pod has its address as a /32 and `default via 169.254.1.1 dev eth0` with
 * `169.254.1.1 dev eth0 scope link`; the host side of its veth is cali + 11 hex digits, MAC
 * ee:ee:ee:ee:ee:ee, no address, proxy_arp 1 and proxy_delay 0, and the node routes the pod's
 * /32 to it (scope link). Needs root; run it under `flock /tmp/podwalk-lab.lock`.
 */
import { run, startListeners } from '../src/lab/host.ts';

export const PREFIX = 'pwh-collect-';
export const NODES = ['n1', 'n2'] as const;
export const PODS = [
  {
    name: 'p1',
    node: 'n1',
    ip: '10.65.1.2',
    cali: 'cali1a2b3c4d5e6',
    mac: '4a:10:65:01:02:01',
    listen: [] as string[],
  },
  {
    name: 'p3',
    node: 'n1',
    ip: '10.65.1.3',
    cali: 'cali6e5d4c3b2a1',
    mac: '4a:10:65:01:03:01',
    listen: ['tcp/8080'],
  },
  {
    name: 'p2',
    node: 'n2',
    ip: '10.65.2.2',
    cali: 'cali0f1e2d3c4b5',
    mac: '4a:10:65:02:02:01',
    listen: ['tcp/8080', 'udp/53'],
  },
];

const NS = (n: string) => PREFIX + n;

function sh(argv: string[], input?: string): void {
  const r = run(argv, input);
  if (r.code !== 0) throw new Error(`\`${argv.join(' ')}\` failed: ${r.stderr.trim() || `exit ${r.code}`}`);
}

/** the namespaces that exist now with the prefix */
export function existing(prefix = PREFIX): string[] {
  return run(['ip', 'netns', 'list'])
    .stdout.split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n.startsWith(prefix));
}

/** remove everything the topology made (its processes first); idempotent */
export function handmadeDown(prefix = PREFIX): void {
  for (const n of existing(prefix)) {
    for (const pid of run(['ip', 'netns', 'pids', n]).stdout.split('\n').filter(Boolean))
      run(['kill', '-9', pid]);
    run(['ip', 'netns', 'del', n]);
  }
}

/** new namespaces, lo up, without IPv6 (the model has none: no router solicitations or MLD in the captures) */
function addNamespaces(names: readonly string[]): void {
  for (const ns of names) {
    sh(['ip', 'netns', 'add', ns]);
    for (const k of ['all', 'default'])
      sh(['ip', 'netns', 'exec', ns, 'sysctl', '-q', '-w', `net.ipv6.conf.${k}.disable_ipv6=1`]);
    sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  }
}

/** build it; the model names (n1, p1…) → the namespace names */
export async function handmadeUp(): Promise<Record<string, string>> {
  handmadeDown();
  const all = [...NODES, ...PODS.map((p) => p.name)];
  try {
    addNamespaces(all.map(NS));
    // the nodes, joined by one veth pair
    sh([
      'ip',
      '-n',
      NS('n1'),
      'link',
      'add',
      'eth0',
      'address',
      '02:50:00:00:00:01',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      NS('n2'),
      'address',
      '02:50:00:00:00:02',
    ]);
    NODES.forEach((n, i) => {
      const ns = NS(n);
      sh(['ip', 'netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
      sh(['ip', '-n', ns, 'addr', 'add', `192.168.50.${i + 1}/24`, 'dev', 'eth0']);
      sh(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
      // a gateway nobody answers for: Calico's proxy ARP needs a route for 169.254.1.1 (the default one)
      sh(['ip', '-n', ns, 'route', 'add', 'default', 'via', '192.168.50.254', 'dev', 'eth0']);
      sh(['ip', '-n', ns, 'route', 'add', 'blackhole', `10.65.${i + 1}.0/26`, 'proto', 'bird']);
      const other = i === 0 ? 2 : 1;
      sh([
        'ip',
        '-n',
        ns,
        'route',
        'add',
        `10.65.${other}.0/26`,
        'via',
        `192.168.50.${other}`,
        'dev',
        'eth0',
        'proto',
        'bird',
      ]);
    });
    for (const p of PODS) {
      const node = NS(p.node);
      const pod = NS(p.name);
      sh([
        'ip',
        '-n',
        node,
        'link',
        'add',
        p.cali,
        'address',
        'ee:ee:ee:ee:ee:ee',
        'type',
        'veth',
        'peer',
        'name',
        'eth0',
        'netns',
        pod,
        'address',
        p.mac,
      ]);
      sh(['ip', 'netns', 'exec', node, 'sysctl', '-q', '-w', `net.ipv4.conf.${p.cali}.proxy_arp=1`]);
      sh(['ip', 'netns', 'exec', node, 'sysctl', '-q', '-w', `net.ipv4.neigh.${p.cali}.proxy_delay=0`]);
      sh(['ip', '-n', node, 'link', 'set', p.cali, 'up']);
      sh(['ip', '-n', node, 'route', 'add', p.ip, 'dev', p.cali, 'scope', 'link']);
      sh(['ip', '-n', pod, 'addr', 'add', `${p.ip}/32`, 'dev', 'eth0']);
      sh(['ip', '-n', pod, 'link', 'set', 'eth0', 'up']);
      sh(['ip', '-n', pod, 'route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link']);
      sh(['ip', '-n', pod, 'route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0']);
    }
    // Docker's FORWARD chain on n2: policy DROP, DOCKER-USER first; DNS to the pods and answers pass
    sh(
      ['ip', 'netns', 'exec', NS('n2'), 'iptables-restore'],
      [
        '*filter',
        ':INPUT ACCEPT [0:0]',
        ':FORWARD DROP [0:0]',
        ':OUTPUT ACCEPT [0:0]',
        ':DOCKER-USER - [0:0]',
        '-A FORWARD -j DOCKER-USER',
        '-A FORWARD -i cali+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
        '-A FORWARD -o cali+ -p udp -m udp --dport 53 -j ACCEPT',
        '-A DOCKER-USER -j RETURN',
        'COMMIT',
        '',
      ].join('\n'),
    );
    // the lab's listeners: one /usr/bin/python3 that enters each pod's namespace (setns)
    await startListeners(
      PODS.flatMap((p) =>
        p.listen.map((l) => {
          const [proto, port] = l.split('/');
          return { ns: NS(p.name), proto, port: Number(port) };
        }),
      ),
    );
  } catch (e) {
    handmadeDown();
    throw e;
  }
  return Object.fromEntries(all.map((n) => [n, NS(n)]));
}

/*
 * A node with a veth pair of its own, both ends in its namespace (as some CNIs and Docker setups
 * have: the pods' gateway address on a veth whose other end is a port of their bridge), for the
 * importer to join the two ends within one namespace. Namespaces pwh-imp-*.
 *
 *   pwh-imp-n1 (192.168.60.1/24) ── eth0 ═══ eth0 ── pwh-imp-n2 (192.168.60.2/24)
 *     br0 (no address)                                veth-p2 10.66.2.1/24 ─ p2 10.66.2.2/24
 *      ├ veth-p1 ─ p1 10.66.1.2/24 (default via .1)   10.66.1.0/24 via 192.168.60.1
 *      └ gw0-br ═ gw0 10.66.1.1/24 (one veth pair, both ends in n1)
 *     10.66.2.0/24 via 192.168.60.2
 */
export const PAIR_PREFIX = 'pwh-imp-';
export const PAIR_NODES = ['n1', 'n2'] as const;
const PAIR_PODS = ['p1', 'p2'] as const;
const PAIR = (n: string) => PAIR_PREFIX + n;

/** build it; the model names (n1, p1…) → the namespace names */
export async function vethPairUp(): Promise<Record<string, string>> {
  handmadeDown(PAIR_PREFIX);
  const all = [...PAIR_NODES, ...PAIR_PODS];
  const [n1, n2, p1, p2] = all.map(PAIR);
  const ip = (ns: string, ...args: string[]) => sh(['ip', '-n', ns, ...args]);
  const veth = (ns: string, name: string, mac: string, peerNs: string, peer: string, peerMac: string) =>
    ip(
      ns,
      'link',
      'add',
      name,
      'address',
      mac,
      'type',
      'veth',
      'peer',
      'name',
      peer,
      'netns',
      peerNs,
      'address',
      peerMac,
    );
  try {
    addNamespaces(all.map(PAIR));
    veth(n1, 'eth0', '02:60:00:00:00:01', n2, 'eth0', '02:60:00:00:00:02');
    for (const [ns, i] of [
      [n1, 1],
      [n2, 2],
    ] as const) {
      sh(['ip', 'netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
      ip(ns, 'addr', 'add', `192.168.60.${i}/24`, 'dev', 'eth0');
      ip(ns, 'link', 'set', 'eth0', 'up');
    }
    // n1: the bridge, the pod on it, and the pair that carries the pods' gateway address
    ip(n1, 'link', 'add', 'br0', 'address', '02:60:00:00:01:00', 'type', 'bridge');
    ip(
      n1,
      'link',
      'add',
      'gw0',
      'address',
      '02:60:00:00:01:01',
      'type',
      'veth',
      'peer',
      'name',
      'gw0-br',
      'address',
      '02:60:00:00:01:02',
    );
    veth(n1, 'veth-p1', '02:60:00:00:01:03', p1, 'eth0', '4a:10:66:01:02:01');
    for (const port of ['gw0-br', 'veth-p1']) {
      ip(n1, 'link', 'set', port, 'master', 'br0');
      ip(n1, 'link', 'set', port, 'up');
    }
    ip(n1, 'link', 'set', 'br0', 'up');
    ip(n1, 'addr', 'add', '10.66.1.1/24', 'dev', 'gw0');
    ip(n1, 'link', 'set', 'gw0', 'up');
    ip(n1, 'route', 'add', '10.66.2.0/24', 'via', '192.168.60.2', 'dev', 'eth0');
    ip(p1, 'addr', 'add', '10.66.1.2/24', 'dev', 'eth0');
    ip(p1, 'link', 'set', 'eth0', 'up');
    ip(p1, 'route', 'add', 'default', 'via', '10.66.1.1', 'dev', 'eth0');
    // n2: a routed pod
    veth(n2, 'veth-p2', '02:60:00:00:02:03', p2, 'eth0', '4a:10:66:02:02:01');
    ip(n2, 'addr', 'add', '10.66.2.1/24', 'dev', 'veth-p2');
    ip(n2, 'link', 'set', 'veth-p2', 'up');
    ip(n2, 'route', 'add', '10.66.1.0/24', 'via', '192.168.60.1', 'dev', 'eth0');
    ip(p2, 'addr', 'add', '10.66.2.2/24', 'dev', 'eth0');
    ip(p2, 'link', 'set', 'eth0', 'up');
    ip(p2, 'route', 'add', 'default', 'via', '10.66.2.1', 'dev', 'eth0');
    await startListeners([
      { ns: p2, proto: 'tcp', port: 8080 },
      { ns: p2, proto: 'udp', port: 53 },
      { ns: p1, proto: 'tcp', port: 8080 },
    ]);
  } catch (e) {
    handmadeDown(PAIR_PREFIX);
    throw e;
  }
  return Object.fromEntries(all.map((n) => [n, PAIR(n)]));
}
