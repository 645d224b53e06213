/**
 * Classic pcap files of everything a world captured: one file per (netns, device) that saw frames,
 * named `<netns>-<dev>.pcap`, LINKTYPE_ETHERNET for Ethernet devices and LINKTYPE_RAW (101) for
 * IPinIP devices (tunl0 carries bare IPv4 packets), timestamps EPOCH_US + capture time.
 */
import type { Capture, World } from '../kernel/world.ts';
import { LINKTYPE_ETHERNET, writePcap } from '../wire/pcap.ts';
import { EPOCH_US } from './types.ts';

export const LINKTYPE_RAW = 101;

export interface PcapFile {
  name: string;
  bytes: Uint8Array;
}

/** LINKTYPE_RAW for an IPinIP device, LINKTYPE_ETHERNET otherwise. */
export function deviceLinktype(world: World, netns: string, dev: string): number {
  return world.netns.get(netns)?.link(dev)?.type === 'ipip' ? LINKTYPE_RAW : LINKTYPE_ETHERNET;
}

/** Seconds and microseconds since the Unix epoch of a capture time (µs since the cluster came up). */
export function captureTimestamp(time: number): { tsSec: number; tsUsec: number } {
  const us = EPOCH_US + time;
  const tsSec = Math.floor(us / 1e6);
  return { tsSec, tsUsec: us - tsSec * 1e6 };
}

/** Captures grouped by `<netns>-<dev>`, in the order devices first saw a frame, each in time order. */
export function capturesByDevice(world: World): Map<string, Capture[]> {
  const by = new Map<string, Capture[]>();
  for (const c of world.captures) {
    const k = `${c.netns}-${c.dev}`;
    let list = by.get(k);
    if (!list) by.set(k, (list = []));
    list.push(c);
  }
  for (const list of by.values()) list.sort((a, b) => a.time - b.time);
  return by;
}

export function pcapFiles(world: World): PcapFile[] {
  const out: PcapFile[] = [];
  for (const [key, caps] of capturesByDevice(world)) {
    const { netns, dev } = caps[0];
    const records = caps.map((c) => ({ ...captureTimestamp(c.time), frame: c.frame }));
    out.push({ name: `${key}.pcap`, bytes: writePcap(records, deviceLinktype(world, netns, dev)) });
  }
  return out;
}
