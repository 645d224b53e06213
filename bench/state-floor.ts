/**
 * The floor under a warm walk: what V8 takes only to make and keep the state a warm walk leaves
 * behind, with no datapath at all. A warm walk of `npm run bench` is a new TCP connection, and as
 * in the kernel it leaves two sockets (client and server, with their timers and queues) and six
 * conntrack entries (the pod flow and the VXLAN flow, each way, each entry with its two tuples),
 * about 3.7 KB of heap that stays. This makes objects of the same shapes and sizes per iteration
 * (six entries of two tuples, two sockets with their nested parts), keeps them in arrays (no hash,
 * no key strings: less than the model's tables do), and reports the CPU per iteration and the heap
 * kept, after a warm-up and with a full GC before and after:
 *
 *   node --expose-gc --import tsx bench/state-floor.ts [ITERATIONS] [columns]
 *
 * Issue 16 asks for 100,000 warm walks a second, 10 µs a walk: this is the part of those 10 µs that
 * the state alone costs as objects, before any step, frame, lookup or rule. With `columns` the
 * same values go into typed-array columns instead (addresses as numbers, states as small
 * integers, growing by doubling), as the model keeps routes, neighbours and FDB entries: the
 * floor of state kept the way the kernel's slabs keep it.
 */
const n = Number(process.argv[2] ?? 25000);
const columns = process.argv[3] === 'columns';
if (!Number.isInteger(n) || n < 1000 || (process.argv[3] !== undefined && !columns)) {
  process.stderr.write(
    'usage: node --expose-gc --import tsx bench/state-floor.ts [ITERATIONS (>= 1000)] [columns]\n',
  );
  process.exit(2);
}
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  process.stderr.write('bench/state-floor.ts: run with node --expose-gc\n');
  process.exit(2);
}

interface Tuple {
  proto: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
}
const tuple = (src: string, dst: string, sport: number, dport: number): Tuple => ({
  proto: 6,
  src,
  dst,
  sport,
  dport,
});

const entries: object[] = [];
const sockets: object[] = [];
function keep(i: number): void {
  for (let k = 0; k < 6; k++) {
    const orig = tuple('10.244.0.5', '10.244.1.5', i & 0xffff, 8080 + k);
    entries.push({
      orig,
      reply: tuple(orig.dst, orig.src, orig.dport, orig.sport),
      tcpState: 'SYN_SENT',
      expires: i * 90 + 120e6,
      seenReply: false,
      assured: false,
      confirmed: true,
      streamTs: 0,
      mark: 0,
      snat: false,
      dnat: false,
      snatDone: true,
      dnatDone: true,
    });
  }
  for (let k = 0; k < 2; k++)
    sockets.push({
      local: '10.244.0.5',
      lport: i & 0xffff,
      remote: '10.244.1.5',
      rport: 8080,
      state: 'ESTABLISHED',
      iss: i * 7,
      irs: i * 11,
      sndNxt: i,
      rcvNxt: i,
      mss: 1410,
      peerMss: 1410,
      wscale: 7,
      peerWscale: 10,
      ts: { val: i, ecr: i },
      ofo: new Map(),
      sendq: [],
      timers: { rto: i + 1e6, keepalive: undefined },
      app: { sent: new Uint8Array(0), recv: [] },
      stats: { segsIn: 1, segsOut: 1, bytes: 0 },
    });
}

/** the same values in columns: per entry 2 tuples × 5 numbers + 8 fields, per socket 19 numbers */
let ctCols: Float64Array = new Float64Array(1024 * 18);
let sockCols: Float64Array = new Float64Array(1024 * 19);
let nCt = 0;
let nSock = 0;
function grow(a: Float64Array, need: number): Float64Array {
  if (need <= a.length) return a;
  const b = new Float64Array(Math.max(need, a.length * 2));
  b.set(a);
  return b;
}
const SRC = 0x0af40005;
const DST = 0x0af40105;
function keepColumns(i: number): void {
  ctCols = grow(ctCols, (nCt + 6) * 18);
  for (let k = 0; k < 6; k++) {
    const o = nCt++ * 18;
    const c = ctCols;
    c[o] = 6;
    c[o + 1] = SRC;
    c[o + 2] = DST;
    c[o + 3] = i & 0xffff;
    c[o + 4] = 8080 + k;
    c[o + 5] = 6;
    c[o + 6] = DST;
    c[o + 7] = SRC;
    c[o + 8] = 8080 + k;
    c[o + 9] = i & 0xffff;
    c[o + 10] = 1; // SYN_SENT
    c[o + 11] = i * 90 + 120e6;
    c[o + 12] = 0b1100100; // seenReply, assured, confirmed, snat, dnat, snatDone, dnatDone
    c[o + 13] = 0;
    c[o + 14] = 0;
  }
  sockCols = grow(sockCols, (nSock + 2) * 19);
  for (let k = 0; k < 2; k++) {
    const o = nSock++ * 19;
    const c = sockCols;
    c[o] = SRC;
    c[o + 1] = i & 0xffff;
    c[o + 2] = DST;
    c[o + 3] = 8080;
    c[o + 4] = 3; // ESTABLISHED
    c[o + 5] = i * 7;
    c[o + 6] = i * 11;
    c[o + 7] = i;
    c[o + 8] = i;
    c[o + 9] = 1410;
    c[o + 10] = 1410;
    c[o + 11] = 7;
    c[o + 12] = 10;
    c[o + 13] = i;
    c[o + 14] = i;
    c[o + 15] = i + 1e6;
    c[o + 16] = 1;
    c[o + 17] = 1;
    c[o + 18] = 0;
  }
}
const one = columns ? keepColumns : keep;

for (let i = 0; i < 2000; i++) one(i);
gc();
/** the JS heap and the typed arrays' buffers (the columns), which V8 keeps outside its heap */
const used = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
const heap0 = used();
const cpu0 = process.cpuUsage();
for (let i = 2000; i < 2000 + n; i++) one(i);
const cpu = process.cpuUsage(cpu0);
gc();
const us = (cpu.user + cpu.system) / n;
console.log(
  `${n} iterations: ${us.toFixed(2)} µs CPU each (${Math.round(1e6 / us)} a CPU second), ` +
    `${Math.round((used() - heap0) / n)} B kept each${columns ? ' (in columns)' : ''}`,
);
