/**
 * Records the sysctl keys a fresh network namespace of this kernel has, with their values, and a
 * real TCP SYN of `curl` from a fresh namespace. Needs root, network namespaces, procps' sysctl,
 * curl and tcpdump. Run it under the lab lock:
 *
 *   flock /tmp/podwalk-lab.lock npx tsx scripts/record-sysctl.ts
 *
 * Output:
 * - src/kernel/sysctl-recorded.ts: the data the emulated sysctl answers from (importable in the
 *   browser): every net.* key of a fresh namespace with its value (`sysctl -a`), the per-device
 *   keys (net.ipv4/ipv6.conf.DEV.*, net.ipv4/ipv6.neigh.DEV.*) as one template for a veth, a
 *   bridge and a VXLAN device (the script checks that they agree, the IPv6 `mtu` aside, which is
 *   the device's MTU) and the loopback's differences, the deprecated per-device keys (`sysctl -a`
 *   lists them only with --deprecated), the keys that exist but read nothing, the read-only ones,
 *   the net.* keys only the initial namespace has, and the names of the keys outside net.* (the
 *   host's, the same in every namespace).
 * - test/fixtures/sysctl/netns.json: a namespace with a veth pair, a bridge and a VXLAN device,
 *   after a few writes; its `sysctl -a` (test/sysctl.test.ts builds the same in the model and
 *   compares), and a `curl` SYN from a fresh namespace as tcpdump prints it (window scale).
 *
 * Namespaces are pwh-sysctl-*; they are removed again whatever happens.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';

const NS = 'pwh-sysctl-rec';
const NS2 = 'pwh-sysctl-peer';
const RECORD_COMMAND = 'flock /tmp/podwalk-lab.lock npx tsx scripts/record-sysctl.ts';

function sh(argv: string[], ok = true): { stdout: string; stderr: string; code: number } {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 20_000 });
  const out = { stdout: r.stdout ?? '', stderr: r.stderr ?? '', code: r.status ?? -1 };
  if (ok && out.code !== 0) throw new Error(`${argv.join(' ')}: exit ${out.code}: ${out.stderr}`);
  return out;
}
const inNs = (ns: string, argv: string[], ok = true) => sh(['ip', 'netns', 'exec', ns, ...argv], ok);

/** `sysctl -a` lines as [key, value] (a value may be empty: "key = ") */
function parse(text: string): [string, string][] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const i = l.indexOf(' = ');
      if (i < 0) throw new Error(`unexpected sysctl line: ${l}`);
      return [l.slice(0, i), l.slice(i + 3)];
    });
}

const DEVICE_DIR = /^net\.(ipv4|ipv6)\.(conf|neigh)\.([^.]+)\.([^.]+)$/;
type Family = 'ipv4.conf' | 'ipv6.conf' | 'ipv4.neigh' | 'ipv6.neigh';

/** the per-device keys of one device (its name as sysctl prints it), suffix → value */
function deviceKeys(lines: [string, string][], dev: string): Record<Family, Record<string, string>> {
  const out: Record<Family, Record<string, string>> = {
    'ipv4.conf': {},
    'ipv6.conf': {},
    'ipv4.neigh': {},
    'ipv6.neigh': {},
  };
  for (const [k, v] of lines) {
    const m = DEVICE_DIR.exec(k);
    if (m && m[3] === dev) out[`${m[1]}.${m[2]}` as Family][m[4]] = v;
  }
  return out;
}

function cleanup(): void {
  for (const n of [NS, NS2]) sh(['ip', 'netns', 'del', n], false);
}

cleanup();
try {
  const kernel = sh(['uname', '-r']).stdout.trim();
  const procps = sh(['sysctl', '--version']).stdout.trim();
  sh(['ip', 'netns', 'add', NS]);
  const fresh = parse(inNs(NS, ['sysctl', '-a']).stdout);
  const freshDeprecated = parse(inNs(NS, ['sysctl', '-a', '--deprecated']).stdout);
  const files = inNs(NS, ['sh', '-c', 'cd /proc/sys && find . -type f | sed s#^./## | tr / .'])
    .stdout.split('\n')
    .filter(Boolean);
  const readOnly = inNs(NS, ['sh', '-c', 'cd /proc/sys && find net -type f ! -perm /222 | tr / .'])
    .stdout.split('\n')
    .filter(Boolean)
    .sort();
  // the root namespace's net.* names (read only): the ones a fresh namespace lacks are init_net's alone
  const rootNames = sh(['sysctl', '-a', '-N']).stdout.split('\n').filter(Boolean);
  const listed = new Set(fresh.map(([k]) => k));
  const global = fresh
    .filter(([k]) => !k.startsWith('net.'))
    .map(([k]) => k)
    .filter((k, i, all) => all.indexOf(k) === i);
  const initNetOnly = rootNames.filter((k) => k.startsWith('net.') && !listed.has(k) && !DEVICE_DIR.test(k));

  // devices: a veth pair, a bridge, a VXLAN device over the veth
  for (const cmd of [
    'link add veth0 type veth peer name veth1',
    'link add br0 type bridge',
    'link add vx0 type vxlan id 1 dev veth0 dstport 4789',
  ])
    sh(['ip', '-n', NS, ...cmd.split(' ')]);
  const withDevs = parse(inNs(NS, ['sysctl', '-a']).stdout);
  const veth = deviceKeys(withDevs, 'veth0');
  const mtuOf: Record<string, string> = { veth0: '1500', veth1: '1500', br0: '1500', vx0: '1450' };
  for (const dev of ['veth1', 'br0', 'vx0']) {
    const other = deviceKeys(withDevs, dev);
    for (const fam of Object.keys(veth) as Family[]) {
      const a = { ...veth[fam] };
      const b = { ...other[fam] };
      if (fam === 'ipv6.conf') {
        if (a.mtu !== mtuOf.veth0 || b.mtu !== mtuOf[dev])
          throw new Error(`${dev}: IPv6 mtu is not the device's`);
        delete a.mtu;
        delete b.mtu;
      }
      if (JSON.stringify(a) !== JSON.stringify(b))
        throw new Error(`${dev}: net.${fam}.${dev}.* differ from veth0's`);
    }
  }
  delete veth['ipv6.conf'].mtu;
  const lo = deviceKeys(withDevs, 'lo');
  const loDiff: Record<string, Record<string, string>> = {};
  for (const fam of Object.keys(lo) as Family[]) {
    if (
      Object.keys(lo[fam]).sort().join() !==
      [...Object.keys(veth[fam]), ...(fam === 'ipv6.conf' ? ['mtu'] : [])].sort().join()
    )
      throw new Error(`lo: the keys of net.${fam}.lo differ from a veth's`);
    for (const [k, v] of Object.entries(lo[fam])) if (veth[fam][k] !== v) (loDiff[fam] ??= {})[k] = v;
  }
  // deprecated per-device keys (--deprecated), from lo's
  const deprecated: Record<string, Record<string, string>> = {};
  for (const [k, v] of freshDeprecated) {
    if (listed.has(k)) continue;
    const m = DEVICE_DIR.exec(k);
    if (!m || m[3] !== 'lo') throw new Error(`unexpected deprecated key ${k}`);
    (deprecated[`${m[1]}.${m[2]}`] ??= {})[m[4]] = v;
  }
  // keys that exist but `sysctl -a` does not print: deprecated ones, and those that read nothing
  const unreadable = files
    .filter((k) => k.startsWith('net.') && !listed.has(k))
    .filter((k) => !freshDeprecated.some(([d]) => d === k))
    .map((k) => {
      const m = DEVICE_DIR.exec(k);
      return m && m[3] !== 'all' && m[3] !== 'default' ? `net.${m[1]}.${m[2]}.%.${m[4]}` : k;
    })
    .filter((k, i, all) => all.indexOf(k) === i);
  const unreadableCodes = Object.fromEntries(
    unreadable.map((k) => [k, inNs(NS, ['sysctl', k.replace('%', 'lo')], false).code]),
  );

  // the fixture: the same namespace after a few writes the model follows
  const writes = [
    'net.ipv4.ip_forward=1',
    'net.ipv4.conf.veth0.rp_filter=2',
    'net.ipv4.conf.all.rp_filter=1',
    'net.ipv4.ip_local_port_range=20000 30000',
  ];
  for (const w of writes) inNs(NS, ['sysctl', '-q', '-w', w]);
  const sysctlA = inNs(NS, ['sysctl', '-a']).stdout;
  const netOnly = sysctlA
    .split('\n')
    .filter((l) => l.startsWith('net.'))
    .join('\n');

  // a curl SYN from a fresh namespace: its window and window scale
  sh(['ip', 'netns', 'add', NS2]);
  sh(['ip', '-n', NS2, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NS]);
  const cap = inNs(
    NS2,
    [
      'sh',
      '-c',
      'ip addr add 10.77.0.1/24 dev eth0 && ip link set eth0 up && ip link set lo up && ' +
        `ip -n ${NS} addr add 10.77.0.2/24 dev eth0 && ip -n ${NS} link set eth0 up && ` +
        '(timeout 5 tcpdump -nn -v -c 1 -i eth0 "tcp[tcpflags] == tcp-syn" > /tmp/pwh-sysctl-syn.txt 2>/dev/null &) && sleep 1 && ' +
        'curl -sS -m 2 http://10.77.0.2:8080/; sleep 1; cat /tmp/pwh-sysctl-syn.txt; rm -f /tmp/pwh-sysctl-syn.txt',
    ],
    false,
  ).stdout;
  const syn = cap
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => l.replace(/^\d\d:\d\d:\d\d\.\d+ /, ''))
    .join('\n');
  if (!/wscale \d+/.test(syn)) throw new Error(`no SYN captured: ${cap}`);

  const q = (s: string) => JSON.stringify(s);
  const record = (o: Record<string, string>) =>
    `{\n${Object.entries(o)
      .map(([k, v]) => `  ${q(k)}: ${q(v)},`)
      .join('\n')}\n}`;
  const fams = (o: Record<string, Record<string, string>>) =>
    `{\n${Object.entries(o)
      .map(([f, kv]) => `  ${q(f)}: ${record(kv).replace(/\n/g, '\n  ')},`)
      .join('\n')}\n}`;
  const ts = `/**
 * The sysctl keys of a fresh network namespace on ${kernel} (${procps}), recorded from the
 * real kernel by scripts/record-sysctl.ts — do not edit; re-record with
 *
 *   ${RECORD_COMMAND}
 *
 * Per-netns: every net.* key below is the namespace's own (a few, read-only in a namespace, show
 * the host's value: READ_ONLY). Global: the keys outside net.* (GLOBAL_KEYS) are the host's,
 * the same in every namespace; INIT_NET_ONLY are net.* keys only the initial namespace has.
 */

export const SYSCTL_RECORDED_ON = ${q(`${kernel}, ${procps}`)};
export const SYSCTL_RECORD_COMMAND = ${q(RECORD_COMMAND)};

/** every net.* key of a fresh namespace but the per-device ones, as \`sysctl -a\` prints it */
export const NETNS_SYSCTLS: Readonly<Record<string, string>> = ${record(
    Object.fromEntries(fresh.filter(([k]) => k.startsWith('net.') && !isDeviceKey(k))),
  )};

/** the keys of each per-device directory and their values on a veth, bridge or VXLAN device (net.ipv6.conf.DEV.mtu is the device's MTU) */
export const DEVICE_SYSCTLS: Readonly<Record<'ipv4.conf' | 'ipv6.conf' | 'ipv4.neigh' | 'ipv6.neigh', Readonly<Record<string, string>>>> = ${fams(veth)};

/** where the loopback's per-device values differ */
export const LOOPBACK_SYSCTLS: Readonly<Record<string, Readonly<Record<string, string>>>> = ${fams(loDiff)};

/** per-device keys \`sysctl -a\` lists only with --deprecated (and reads by name) */
export const DEPRECATED_DEVICE_SYSCTLS: Readonly<Record<string, Readonly<Record<string, string>>>> = ${fams(deprecated)};

/** keys that exist but read nothing (write-only, or unreadable until set), % for a device, with sysctl's exit status reading them */
export const UNREADABLE_SYSCTLS: Readonly<Record<string, number>> = ${JSON.stringify(unreadableCodes, null, 2)};

/** keys a namespace can read but not write */
export const READ_ONLY_SYSCTLS: readonly string[] = ${JSON.stringify(readOnly)};

/** net.* keys only the initial network namespace has */
export const INIT_NET_ONLY_SYSCTLS: readonly string[] = ${JSON.stringify(initNetOnly)};

/** the keys outside net.*: global, the host's own, the same in every namespace */
export const GLOBAL_SYSCTLS: readonly string[] = ${JSON.stringify(global)};
`;
  const tsFile = new URL('../src/kernel/sysctl-recorded.ts', import.meta.url);
  writeFileSync(tsFile, ts);
  sh(['npx', 'prettier', '--write', tsFile.pathname]);
  mkdirSync(new URL('../test/fixtures/sysctl/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL('../test/fixtures/sysctl/netns.json', import.meta.url),
    JSON.stringify(
      {
        kernel,
        procps,
        command: RECORD_COMMAND,
        devices:
          'ip link add veth0 type veth peer name veth1; ip link add br0 type bridge; ip link add vx0 type vxlan id 1 dev veth0 dstport 4789',
        writes,
        sysctlA: netOnly + '\n',
        syn,
      },
      null,
      2,
    ) + '\n',
  );
  process.stderr.write(`recorded ${fresh.length} keys on ${kernel}\n`);
} finally {
  cleanup();
}

function isDeviceKey(k: string): boolean {
  const m = DEVICE_DIR.exec(k);
  return !!m && m[3] !== 'all' && m[3] !== 'default';
}
