/**
 * The packets the hosts' stacks queued to send (socket answers, data, FINs, ICMP errors), kept
 * per host: each network namespace that queued a packet is a host with its own CPU, which handles
 * its own packets one at a time, in the order it queued them, while other hosts work at the same
 * time. The exchange loop (exchange.ts) asks for the host whose next packet can go first
 * (`peek`, `take`, `sent`); the trace walker takes them in the order they were queued (`shift`).
 *
 * A host's next packet is ready at max(the time it was queued, the end of the host's previous
 * send): ties go to the packet queued first, so the order is the same for the same inputs.
 * Nothing here outlives the queue: once a host's packets are sent its entry goes (a packet queued
 * later is queued at a clock past the host's last send, so the host's ready time would not count).
 */
import { Fifo } from './fifo.ts';
import { heapPop, heapPush } from './heap.ts';

interface Entry<T> {
  item: T;
  /** µs the packet was queued */
  at: number;
  /** its place in the order of every push (ties, `shift`) */
  seq: number;
}

interface Host<T> {
  ns: string;
  items: Fifo<Entry<T>>;
  /** µs the host's previous send ended (its CPU is free from then) */
  readyAt: number;
  /** sending now (between `take` and `sent`): its next packet waits for the send to end */
  busy: boolean;
  /**
   * it has an entry in the heap (perhaps out of date: checked when it comes to the top), or is in
   * `pending`, to have one made at the next `peek`
   */
  inHeap: boolean;
}

interface HeapEntry<T> {
  host: Host<T>;
  ready: number;
  seq: number;
}

const before = <T>(a: HeapEntry<T>, b: HeapEntry<T>) =>
  a.ready < b.ready || (a.ready === b.ready && a.seq < b.seq);

export class SendQueue<T extends { ns: string }> {
  private hosts = new Map<string, Host<T>>();
  /** the hosts with packets, a binary min-heap on (ready, seq) of their next packet */
  private heap: HeapEntry<T>[] = [];
  /**
   * hosts that queued a packet while out of the heap: they enter it at the next `peek`, so the
   * trace walker, which only shifts, makes no heap entry. The same heap as entering at the push:
   * until a `peek` nothing reads the heap, and nothing changes what a host's entry would hold but
   * its head (which `peek` makes an entry follow anyway) and its ready time (only `sent`, of a
   * host `take` took from the heap, changes it)
   */
  private pending: Host<T>[] = [];
  private seq = 0;
  private count = 0;

  constructor(private readonly now: () => number) {}

  get length(): number {
    return this.count;
  }

  push(item: T): void {
    let h = this.hosts.get(item.ns);
    if (!h) {
      h = { ns: item.ns, items: new Fifo(), readyAt: -Infinity, busy: false, inHeap: false };
      this.hosts.set(item.ns, h);
    }
    h.items.push({ item, at: this.now(), seq: this.seq++ });
    this.count++;
    if (!h.busy && !h.inHeap) {
      h.inHeap = true;
      this.pending.push(h);
    }
  }

  /** the next packet to go, with the µs its host is ready to handle it, without taking it */
  peek(): { item: T; ready: number } | undefined {
    if (this.pending.length) this.enter();
    const h = this.heap;
    while (h.length) {
      const top = h[0];
      const host = top.host;
      const head = host.items.at(0);
      if (!head || host.busy || this.hosts.get(host.ns) !== host) {
        // emptied (by `shift`), or a host entry that went
        heapPop(this.heap, before);
        host.inHeap = false;
        continue;
      }
      const ready = Math.max(head.at, host.readyAt);
      if (ready !== top.ready || head.seq !== top.seq) {
        // its head was taken by `shift`: the entry follows the new head
        heapPop(this.heap, before);
        heapPush(this.heap, { host, ready, seq: head.seq }, before);
        continue;
      }
      return { item: head.item, ready };
    }
    return undefined;
  }

  /** takes the packet `peek` gave; its host is busy until `sent` */
  take(): T | undefined {
    if (!this.peek()) return undefined;
    const host = heapPop(this.heap, before).host;
    host.inHeap = false;
    host.busy = true;
    this.count--;
    return host.items.shift()!.item;
  }

  /** the send of the packet `take` gave, from host `ns`, ended at `at` µs: the host is free then */
  sent(ns: string, at: number): void {
    const h = this.hosts.get(ns);
    if (!h) return;
    h.busy = false;
    h.readyAt = at;
    if (!h.items.length) this.hosts.delete(ns);
    else if (!h.inHeap) this.insert(h);
  }

  /** the packet queued first, whichever host queued it */
  shift(): T | undefined {
    let first: Host<T> | undefined;
    for (const h of this.hosts.values()) {
      const e = h.items.at(0);
      if (e && (!first || e.seq < first.items.at(0)!.seq)) first = h;
    }
    if (!first) return undefined;
    this.count--;
    const item = first.items.shift()!.item;
    if (!first.items.length && !first.busy) this.hosts.delete(first.ns);
    return item;
  }

  /** the i-th packet in the order they were queued (0: the next `shift`'s) */
  at(i: number): T | undefined {
    if (i < 0 || i >= this.count) return undefined;
    const all: Entry<T>[] = [];
    for (const h of this.hosts.values()) for (let j = 0; j < h.items.length; j++) all.push(h.items.at(j)!);
    all.sort((a, b) => a.seq - b.seq);
    return all[i]?.item;
  }

  clear(): void {
    this.hosts = new Map();
    this.heap = [];
    this.pending = [];
    this.count = 0;
  }

  /** the pending hosts that still have packets enter the heap (a host `shift` emptied has gone) */
  private enter(): void {
    for (const h of this.pending) {
      if (h.items.length) this.insert(h);
      else h.inHeap = false;
    }
    this.pending = [];
  }

  private insert(h: Host<T>): void {
    const head = h.items.at(0)!;
    h.inHeap = true;
    heapPush(this.heap, { host: h, ready: Math.max(head.at, h.readyAt), seq: head.seq }, before);
  }
}
