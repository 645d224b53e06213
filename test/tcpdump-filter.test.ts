/**
 * podwalk's pcap-filter compiler against libpcap's: for each expression and each capture, the set
 * of packets selected must be the set the real `tcpdump -r FILE EXPR` selects, and an invalid
 * expression must fail with tcpdump's message and exit status.
 *
 * Method: the capture is rewritten with packet i stamped i+1 seconds, so that `tcpdump -tt` prints
 * each selected packet's index in front of its line; podwalk's selection is compileFilter(…)
 * applied to every frame, and, end to end, the emulated tcpdump with the same filter.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { compileFilter, FilterError, LINKTYPE_RAW, satisfiable } from '../src/tools/pcapfilter.ts';
import { tcpdump } from '../src/tools/tcpdump.ts';
import { readPcap, readPcapHeader, writePcap } from '../src/wire/pcap.ts';
import {
  capture,
  realTcpdump,
  realTcpdumps,
  skipTcpdump,
  type DevicePcap,
} from './fixtures/tcpdump/pcaps.ts';

/** ≥ 30 expressions: every primitive and combinator, and the cases named in the comments */
const EXPRESSIONS = [
  'host 10.244.1.5', // not the VXLAN/IPinIP packets that carry it (outer headers only)
  'host 192.168.1.11',
  'host 10.244.0.1', // ARP sender/target protocol addresses too
  'src host 10.244.0.5',
  'dst host 10.244.0.1',
  'src 10.244.0.5',
  'dst 10.244.1.5 or 10.244.0.5', // implicit qualifier: dst host … or dst host …
  'host 10.244.0.1 or 10.244.0.6 or 10.244.1.5',
  'host 10.244.0.5 and not 10.244.1.5',
  'net 10.244.0.0/16',
  'net 10.244.1.0 mask 255.255.255.0',
  'src net 10.244.0.0/24',
  'dst net 192.168.1.0/24',
  'net 10', // short network number: 10.0.0.0/8
  'host 10.244', // a short address is a /16
  'port 8080', // not the later fragments of a datagram to 8080 (only offset 0 carries the header)
  'src port 8080',
  'dst port 8080',
  'port 4789',
  'portrange 8000-9000',
  'src portrange 30000-65535',
  'tcp dst portrange 9000-10000',
  'port http-alt',
  'tcp',
  'udp', // every fragment of a UDP datagram: the IP protocol field
  'icmp',
  'arp',
  'ip',
  'ip proto 4',
  'proto \\udp',
  'ether proto \\arp',
  'ether host 62:a1:b2:c3:d4:e6',
  'ether src 5a:2b:3c:4d:5e:6f',
  'ether dst ff:ff:ff:ff:ff:ff',
  'broadcast',
  'greater 1000',
  'less 100',
  'tcp and port 8080',
  'udp and not port 4789',
  'tcp or icmp',
  'not arp and not ip',
  '!tcp && !udp',
  'tcp && !udp || arp', // and/or: same precedence, left to right
  '(host 10.244.0.5 or host 10.244.1.5) and tcp',
  'host 10.244.0.5 and (port 8080 or 9999)',
  'tcp port 8080 and host 10.244.1.5',
  'udp port 8080',
  'icmp or arp',
  'host 10.244.0.1 and arp',
  'host 1.2.3.4', // matches nothing
  'src or dst port 8080',
  'src and dst net 10.244.0.0/16',
  'not host 10.244.0.5 and not host 10.244.1.5 and not arp',
  'ip6', // podwalk is IPv4 only: nothing
  'tcp and ip6',
];

/** invalid expressions, and ones libpcap's optimizer proves match nothing */
const ERRORS = [
  'host',
  'tcp and',
  '(',
  'host 1.2.3.4)',
  'foo',
  'HOST 1.2.3.4',
  'port abc',
  'port 70000',
  'port 08',
  'port 4294967296',
  'host 10.0.0.256',
  'net 10.0.0.1/24',
  'net 10.0.0.0/33',
  'host 1.2.3.4 mask 255.0.0.0',
  'ether host zz',
  'ether host 01:02:03:04:05',
  'ether src 1.2.3.4',
  'tcp host 1.2.3.4',
  'icmp port 80',
  'udp port http',
  'port 80 or 1.2.3.4',
  'tcp or 1.2.3.4',
  'greater 100 or 1.2.3.4',
  'host foo.invalid',
  'arp and tcp',
  'tcp and udp',
  'icmp and port 80',
  '(arp or rarp) and tcp',
  'src host 10.0.0.1 and src host 10.0.0.2',
  'port 80 and not port 80',
  'proto tcp',
];

interface Indexed {
  d: DevicePcap;
  file: string;
  linktype: number;
  frames: Uint8Array[];
}

let indexed: Indexed[] | undefined;
function captures(): Indexed[] {
  if (indexed) return indexed;
  const devices = [
    ...capture('flannel-vxlan', true).filter((d) =>
      ['pod-a-eth0', 'node1-eth0', 'node1-flannel.1', 'lan0-node2'].includes(`${d.netns}-${d.dev}`),
    ),
    ...capture('calico-ipip').filter((d) => ['node1-eth0', 'node1-tunl0'].includes(`${d.netns}-${d.dev}`)),
  ];
  indexed = devices.map((d) => {
    const bytes = readFileSync(d.file);
    const linktype = readPcapHeader(bytes).linktype;
    const frames = readPcap(bytes).map((r) => r.frame);
    const file = d.file.replace(/\.pcap$/, '.indexed.pcap');
    writeFileSync(
      file,
      writePcap(
        frames.map((frame, i) => ({ tsSec: i + 1, tsUsec: 0, frame })),
        linktype,
      ),
    );
    return { d, file, linktype, frames };
  });
  return indexed;
}

/** the indices of the packets tcpdump prints, or its error (e.g. `arp` on raw IP rejects all packets) */
async function realSelections(runs: { file: string; expr: string }[]): Promise<(number[] | string)[]> {
  const rs = await realTcpdumps(runs.map(({ file, expr }) => ['-nn', '-tt', '-r', file, expr]));
  return rs.map((r) =>
    r.code !== 0
      ? r.stderr
          .split('\n')
          .filter((l) => l.startsWith('tcpdump: '))
          .join('\n')
      : r.stdout
          .split('\n')
          .filter((l) => /^\d+\.000000 /.test(l))
          .map((l) => Number(l.split('.')[0]) - 1),
  );
}

describe('pcap-filter: podwalk selects the packets libpcap selects', () => {
  test(
    `${EXPRESSIONS.length} expressions × 6 captures (Ethernet with VXLAN and IPinIP, raw IP)`,
    { skip: skipTcpdump },
    async () => {
      assert.ok(EXPRESSIONS.length >= 30);
      let nonEmpty = 0;
      const wants = await realSelections(
        captures().flatMap((c) => EXPRESSIONS.map((expr) => ({ file: c.file, expr }))),
      );
      for (const [ci, c] of captures().entries()) {
        for (const [ei, expr] of EXPRESSIONS.entries()) {
          const want = wants[ci * EXPRESSIONS.length + ei];
          let got: number[] | string;
          try {
            const f = compileFilter(expr, c.linktype);
            got = c.frames.flatMap((fr, i) => (f.matches(fr) ? [i] : []));
          } catch (e) {
            got = `tcpdump: ${(e as Error).message}`;
          }
          assert.deepEqual(got, want, `${c.d.netns} ${c.d.dev}: ${expr}`);
          if (want.length && typeof want !== 'string') nonEmpty++;
        }
      }
      assert.ok(nonEmpty > 100, `${nonEmpty} non-empty selections`);
    },
  );

  test(
    'the emulated tcpdump with a filter prints what tcpdump -r prints with it',
    { skip: skipTcpdump },
    async () => {
      const exprs = ['host 10.244.1.5', 'port 8080', 'udp', 'arp or icmp', 'not tcp'];
      const reals = await realTcpdumps(
        captures().flatMap((c) => exprs.map((expr) => ['-nn', '-r', c.d.file, expr])),
      );
      for (const [ci, c] of captures().entries()) {
        for (const [ei, expr] of exprs.entries()) {
          const real = reals[ci * exprs.length + ei];
          const mine = tcpdump(['-nn', '-i', c.d.dev, ...expr.split(' ')], {
            cluster: c.d.cluster,
            netns: c.d.cluster.world.ns(c.d.netns),
          });
          assert.equal(mine.stdout.slice(0, -1), real.stdout, `${c.d.netns} ${c.d.dev}: ${expr}`);
        }
      }
    },
  );

  test('outer headers only: the inner address of VXLAN and IPinIP packets does not match', () => {
    const [vx] = captures().filter((c) => c.d.dev === 'eth0' && c.d.netns === 'node1');
    const f = compileFilter('host 10.244.1.5');
    const vxlan = vx.frames.filter((fr) => fr[23] === 17 && ((fr[36] << 8) | fr[37]) === 4789);
    assert.ok(vxlan.length > 10);
    assert.ok(vxlan.every((fr) => !f.matches(fr)));
    assert.ok(vxlan.every((fr) => compileFilter('udp port 4789 and host 192.168.1.11').matches(fr)));
  });

  test('errors: the same message and exit status as tcpdump', { skip: skipTcpdump }, () => {
    const file = captures()[0].file;
    const d = captures()[0].d;
    for (const expr of ERRORS) {
      const real = realTcpdump(['-nn', '-r', file, expr]);
      // tcpdump -r says which file it reads before compiling the filter; a live capture does not
      const realErr = real.stderr
        .split('\n')
        .filter((l) => !l.startsWith('reading from file'))
        .join('\n');
      const mine = tcpdump(['-nn', '-i', d.dev, expr], {
        cluster: d.cluster,
        netns: d.cluster.world.ns(d.netns),
      });
      assert.equal(mine.stderr, realErr, expr);
      assert.equal(mine.code, real.code, expr);
      assert.equal(mine.code, 1);
      assert.equal(mine.stdout, '');
    }
  });

  test('raw IP link type (tunl0): arp is false, ether addresses are refused', () => {
    assert.throws(
      () => compileFilter('arp', LINKTYPE_RAW),
      new FilterError('expression rejects all packets'),
    );
    assert.throws(
      () => compileFilter('ether host 02:00:00:00:00:01', LINKTYPE_RAW),
      /ethernet addresses supported only on ethernet/,
    );
  });

  test('constructs outside the implemented subset are refused, and say so', () => {
    for (const expr of ['tcp[13] & 2 != 0', 'vlan 100', 'host ::1', 'ip broadcast', 'inbound'])
      assert.throws(
        () => compileFilter(expr),
        (e: unknown) =>
          e instanceof FilterError &&
          e.notEmulated &&
          /^podwalk: .* in a filter is not emulated$/.test(e.message),
      );
  });

  test('satisfiability is what the optimizer knows: one value equals one constant', () => {
    assert.equal(satisfiable(compileFilter('greater 100 and less 50').formula), true);
    assert.equal(satisfiable(compileFilter('host 10.0.0.1 and host 10.0.0.2').formula), true);
    assert.equal(satisfiable(compileFilter('not ip and tcp').formula), true, 'tcp over IPv6');
  });
});
