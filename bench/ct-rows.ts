/**
 * CPU of the conntrack rows a flow cache's replay writes, without the rest of a walk: `node --import
 * tsx bench/ct-rows.ts [WALKS] [WARM]` (default 25,000 after 5,000). Two tables (two namespaces),
 * each given three new entries a walk (a TCP connection's and two VXLAN UDP flows', as
 * flannel-vxlan pod-a → pod-c makes): their tuples first looked up in both directions, absent
 * (Conntrack.rowOfKey), then put in (insertRow), as src/trace/replay.ts's replayPlan does; a new source port each walk, so the tables
 * grow to 3 × (WARM + WALKS) entries each. Prints the CPU µs (user + system) a walk, of the timed
 * walks and of the warm-up, and the minor page faults a timed walk (memory touched for the first
 * time: ~1–3 µs each on this VM, the dearest part of a growing table's insert).
 */
import { Conntrack, ctRowOf, setRowPort, type CtRow } from '../src/kernel/conntrack.ts';

const walks = Number(process.argv[2] ?? 25000);
const warm = Number(process.argv[3] ?? 5000);
if (!Number.isInteger(walks) || walks < 1 || !Number.isInteger(warm) || warm < 0) {
  process.stderr.write('usage: npx tsx bench/ct-rows.ts [WALKS (1 or more)] [WARM (0 or more)]\n');
  process.exit(2);
}

/** a confirmed entry of tuple `proto src:1 → dst:dport` as the datapath makes one (track's miss, confirm) */
function made(proto: number, src: string, dst: string, dport: number): CtRow {
  const ct = new Conntrack();
  const r = ct.track({ proto, src, dst, sport: 1, dport }, proto === 6 ? { syn: true } : undefined, 0);
  ct.confirm(r.entry);
  return ctRowOf(ct.entries[0])!;
}
/** each table's entries: a TCP connection's, two VXLAN flows' (their ports changed each walk) */
const tables = [
  [
    made(6, '10.244.0.5', '10.244.2.5', 8080),
    made(17, '172.18.0.2', '172.18.0.4', 8472),
    made(17, '172.18.0.4', '172.18.0.2', 8472),
  ],
  [
    made(6, '10.244.0.5', '10.244.2.5', 8080),
    made(17, '172.18.0.4', '172.18.0.2', 8472),
    made(17, '172.18.0.2', '172.18.0.4', 8472),
  ],
].map((rows) => ({ ct: new Conntrack(), rows, keys: rows.map(() => new Int32Array(8)) }));

function walk(i: number): void {
  // a port pair unique to walk i: the changing port, and the other side's from i's high bits
  const ports = [10000 + (i % 50000), 32768 + (i % 28000), 32768 + ((i + 9000) % 28000)];
  const other = [
    8080 + Math.floor(i / 50000),
    8472 + Math.floor(i / 28000),
    8472 + Math.floor((i + 9000) / 28000),
  ];
  for (const t of tables)
    for (let j = 0; j < 3; j++) {
      const k = t.keys[j];
      k.set(t.rows[j].keys);
      setRowPort(k, 0, ports[j]);
      setRowPort(k, 3, ports[j]);
      setRowPort(k, 1, other[j]);
      setRowPort(k, 2, other[j]);
      if (t.ct.rowOfKey(k, 0) >= 0 || t.ct.rowOfKey(k, 1) >= 0) throw new Error(`walk ${i}: a row is there`);
    }
  for (const t of tables)
    for (let j = 0; j < 3; j++) t.ct.insertRow(t.rows[j], t.keys[j], 432000e6 + i, 2e6 + i);
}

const cpu = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const faults = () => process.resourceUsage().minorPageFault;
const a = cpu();
for (let i = 0; i < warm; i++) walk(i);
const b = cpu();
const fb = faults();
for (let i = warm; i < warm + walks; i++) walk(i);
const c = cpu();
const fc = faults();
console.log(
  `ct rows: ${walks} walks after ${warm}: ${((c - b) / walks).toFixed(2)} µs CPU a walk ` +
    `(warm-up ${warm ? ((b - a) / warm).toFixed(2) : '-'}), ${((fc - fb) / walks).toFixed(3)} page faults a walk, ` +
    `${tables[0].ct.listedCount} entries a table`,
);
