/**
 * The emulated sysctl against the real one (procps-ng 4.0.2 on 6.18): `sysctl -a` of a namespace
 * with a veth pair, a bridge and a VXLAN device, after a few writes, as the kernel printed it
 * (test/fixtures/sysctl/netns.json, recorded with scripts/record-sysctl.ts); every key a
 * namespace has reads, and a key Linux has is never "cannot stat".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { seedCluster } from '../src/cluster/seed.ts';
import { buildCluster, type Cluster } from '../src/cni/build.ts';
import { linkAdd, netnsAdd } from '../src/kernel/netlink.ts';
import { GLOBAL_SYSCTLS, INIT_NET_ONLY_SYSCTLS, NETNS_SYSCTLS } from '../src/kernel/sysctl-recorded.ts';
import { runCommand } from '../src/tools/index.ts';
import { Netns } from '../src/kernel/objects.ts';
import { selectInitialWindow } from '../src/kernel/sockets.ts';

interface Fixture {
  kernel: string;
  devices: string;
  writes: string[];
  sysctlA: string;
  syn: string;
}
const FIX = JSON.parse(
  readFileSync(new URL('./fixtures/sysctl/netns.json', import.meta.url), 'utf8'),
) as Fixture;

/** the recorded namespace in the model: lo, veth0/veth1, br0, vx0 over veth0, the same writes */
function recordedNetns(): Cluster {
  const c = buildCluster(seedCluster(), 'flannel-vxlan');
  const w = c.world;
  const ns = netnsAdd(w, 'x', 'pod');
  linkAdd(w, ns, {
    type: 'veth',
    name: 'veth0',
    mac: '02:00:00:00:00:01',
    mtu: 1500,
    peer: { netns: ns, name: 'veth1', mac: '02:00:00:00:00:02', mtu: 1500 },
  });
  linkAdd(w, ns, { type: 'bridge', name: 'br0', mac: '02:00:00:00:00:03', mtu: 1500 });
  linkAdd(w, ns, {
    type: 'vxlan',
    name: 'vx0',
    mac: '02:00:00:00:00:04',
    mtu: 1500,
    vni: 1,
    local: '',
    dev: 'veth0',
    dstport: 4789,
    learning: true,
    udpcsum: false,
  });
  for (const kv of FIX.writes) assert.equal(runCommand(c, 'x', ['sysctl', '-q', '-w', kv]).code, 0, kv);
  return c;
}

test('sysctl -a prints what the kernel printed for a namespace of the same devices', () => {
  const c = recordedNetns();
  const r = runCommand(c, 'x', 'sysctl -a');
  assert.equal(r.stderr, '');
  assert.equal(r.code, 0);
  // outside net.* the real sysctl -a lists the host's global keys (kernel.*, vm.*, fs.*…):
  // the fixture keeps only net.*, and the emulation lists only the namespace's keys
  const sim = r.stdout.split('\n');
  const real = FIX.sysctlA.split('\n');
  const diff = [
    ...real.filter((l) => !sim.includes(l)).map((l) => `- ${l}`),
    ...sim.filter((l) => !real.includes(l)).map((l) => `+ ${l}`),
  ];
  assert.deepEqual(diff, []);
  assert.equal(r.stdout, FIX.sysctlA);
});

test('every key of a fresh namespace reads as the kernel has it; global keys say they are not emulated', () => {
  const c = buildCluster(seedCluster(), 'flannel-vxlan');
  for (const [k, v] of Object.entries(NETNS_SYSCTLS)) {
    const r = runCommand(c, 'pod-a', ['sysctl', k]);
    assert.equal(r.code, 0, `${k}: ${r.stderr}`);
    assert.equal(r.stdout, `${k} = ${v}\n`);
  }
  for (const k of [...GLOBAL_SYSCTLS, ...INIT_NET_ONLY_SYSCTLS].filter(
    (k) => k.split('.')[2] !== 'error_cost',
  )) {
    const r = runCommand(c, 'node1', ['sysctl', k]);
    if (r.code === 0) continue; // the model keeps it (net.ipv4.route.error_burst)
    assert.equal(r.code, 2, k);
    assert.match(r.stderr, new RegExp(`^podwalk: sysctl: ${k.replace(/\./g, '\\.')} is not emulated \\(`));
  }
  assert.deepEqual(runCommand(c, 'pod-a', 'sysctl net.ipv4.no_such_key'), {
    stdout: '',
    stderr: 'sysctl: cannot stat /proc/sys/net/ipv4/no_such_key: No such file or directory\n',
    code: 1,
  });
  // per device, for the devices the namespace has
  assert.equal(runCommand(c, 'node1', 'sysctl -n net.ipv6.conf.flannel/1.mtu').stdout, '1450\n');
  assert.equal(runCommand(c, 'node1', 'sysctl -n net.ipv4.conf.lo.disable_policy').stdout, '1\n');
  assert.equal(runCommand(c, 'node1', 'sysctl -n net.ipv4.neigh.cni0.locktime').stdout, '100\n');
  assert.equal(runCommand(c, 'node1', 'sysctl net.ipv4.conf.nodev.arp_ignore').code, 1);
  assert.equal(runCommand(c, 'node1', 'sysctl -n net.bridge.bridge-nf-call-iptables').stdout, '1\n');
  // a directory lists its keys, as the real one does
  const dir = runCommand(c, 'pod-a', 'sysctl net.ipv4.conf.lo');
  assert.equal(dir.code, 0);
  assert.equal(dir.stdout.split('\n')[0], 'net.ipv4.conf.lo.accept_local = 0');
  // writing a key the model does not follow: not emulated, nothing changes
  const w = runCommand(c, 'pod-a', 'sysctl -w net.ipv4.tcp_fin_timeout=10');
  assert.equal(w.code, 2);
  assert.match(w.stderr, /^podwalk: sysctl: writing net\.ipv4\.tcp_fin_timeout is not emulated/);
  assert.equal(runCommand(c, 'pod-a', 'sysctl -n net.ipv4.tcp_fin_timeout').stdout, '60\n');
  // read-only in a namespace: refused as the real sysctl refuses it (and exits 0)
  assert.deepEqual(runCommand(c, 'pod-a', 'sysctl -w net.core.rmem_max=5'), {
    stdout: '',
    stderr: 'sysctl: setting key "net.core.rmem_max": Invalid argument\n',
    code: 0,
  });
  // keys that read nothing
  assert.deepEqual(runCommand(c, 'pod-a', 'sysctl net.ipv6.conf.eth0.stable_secret'), {
    stdout: '',
    stderr: '',
    code: 1,
  });
});

test('tcp_select_initial_window: the window and window scale of real SYNs and SYN-ACKs', () => {
  const opt = (text: string, re: RegExp) => Number(re.exec(text)![1]);
  // a curl SYN from a fresh namespace of this kernel (tcp_rmem 4096 131072 33554432)
  const fresh = new Netns('fresh', 'pod');
  const syn = FIX.syn;
  assert.deepEqual(
    { ...selectInitialWindow(fresh, opt(syn, /mss (\d+)/), true), windowClamp: 0 },
    { rcvWnd: opt(syn, / win (\d+)/), wscale: opt(syn, /wscale (\d+)/), windowClamp: 0 },
  );
  assert.equal(opt(syn, /wscale (\d+)/), 10);
  // the lab's recording of curl-ok (tcp_rmem[2] 6 MiB then): SYN mss 1410, SYN-ACK mss 1410 less
  // the timestamp option
  const rec = JSON.parse(readFileSync(new URL('./golden/time/curl-ok.json', import.meta.url), 'utf8')) as {
    packets: Record<string, string>;
  };
  const text = Object.values(rec.packets).join('\n');
  const synLab = /Flags \[S\], .*/.exec(text)![0];
  const synAck = /Flags \[S\.\], .*/.exec(text)![0];
  const six = new Netns('six', 'pod');
  six.sysctl.set('net.ipv4.tcp_rmem', '4096\t131072\t6291456');
  const mss = opt(synLab, /mss (\d+)/);
  assert.deepEqual(
    [selectInitialWindow(six, mss, true), selectInitialWindow(six, mss - 12, true)].map((w) => [
      w.rcvWnd,
      w.wscale,
    ]),
    [
      [opt(synLab, / win (\d+)/), opt(synLab, /wscale (\d+)/)],
      [opt(synAck, / win (\d+)/), opt(synAck, /wscale (\d+)/)],
    ],
  );
  // no window scaling: no scale, the window still at most 65535
  assert.deepEqual(selectInitialWindow(fresh, 1460, false), { rcvWnd: 64240, wscale: 0, windowClamp: 65535 });
  // what a socket reads of the sysctls is read again once one is written
  assert.equal(selectInitialWindow(fresh, mss, true).wscale, 10);
  fresh.sysctl.set('net.ipv4.tcp_rmem', '4096\t131072\t6291456');
  assert.equal(selectInitialWindow(fresh, mss, true).wscale, opt(synLab, /wscale (\d+)/));
  fresh.sysctl.set('net.ipv4.tcp_rmem', '4096\t65536\t6291456');
  assert.equal(selectInitialWindow(fresh, 1460, false).rcvWnd, 32120);
  fresh.sysctl.set('net.ipv4.tcp_rmem', '4096\t131072\t33554432');
  assert.equal(selectInitialWindow(fresh, mss, true).wscale, 10);
  // and a connect() after tcp_window_scaling is turned off offers no scale
  const c = buildCluster(seedCluster(), 'flannel-vxlan');
  const a = c.world.ns('pod-a');
  const podC = c.pods.find((p) => p.name === 'pod-c')!.ip;
  assert.equal(c.sockets.connect(a, podC, 8080, 40000, new Uint8Array(0))?.wscale, 10);
  a.setSysctl('net.ipv4.tcp_window_scaling', '0');
  assert.equal(c.sockets.connect(a, podC, 8080, 40001, new Uint8Array(0))?.wscale, 0);
});
