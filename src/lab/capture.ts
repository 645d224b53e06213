/**
 * The lab's captures: every interface that is up in the given lab namespaces, read the way tcpdump
 * reads them, by one process of our own for the whole lab instead of one tcpdump (and one
 * `ip netns exec`) per interface.
 *
 * What libpcap does on Linux (pcap-linux.c), done here: a packet socket (AF_PACKET, SOCK_RAW)
 * with a receive ring (PACKET_RX_RING; libpcap's is TPACKET_V3, this one TPACKET_V2), bound to
 * the device with ETH_P_ALL, which the kernel hands every frame the device receives
 * (`__netif_receive_skb`) and every frame it sends (`dev_queue_xmit_nit`, PACKET_OUTGOING), whole
 * (snap length 262144, as `tcpdump -s 262144`), the device promiscuous while the socket lives
 * (PACKET_MR_PROMISC, as tcpdump without -p: a bridge then passes up what it forwards); a frame sent on the loopback device is left out,
 * since the same frame comes back in as received (libpcap: "outgoing packet on the loopback
 * device, ignore it"); a device that is down is not opened (tcpdump refuses one: "That device is
 * not up"), and nothing passes it anyway. The ring matters: the kernel copies a frame into it
 * when the frame passes, where a plain recvfrom(2) would read a clone that shares the frame's
 * bytes, after the kernel has rewritten them (br_netfilter's bridged DNAT puts the sender's MAC
 * address back into the frame cni0 sent with its own). The socket is created with protocol 0, so that it sees
 * nothing before it is bound to its device. Records go to one classic pcap file per interface
 * (LINKTYPE_ETHERNET for Ethernet and loopback devices, LINKTYPE_RAW for devices without a link
 * header) with the kernel's timestamps, each written with one write(2) as it arrives, so a reader sees whole records.
 *
 * One Python process enters each namespace with setns(2) and opens the sockets there (a socket
 * stays in the namespace it was made in), then serves them all; it ends in the first namespace, so
 * that the lab's clean-up, which kills every process in its namespaces, finds it. SIGINT or SIGTERM:
 * what the sockets still hold is written out, then it exits. test/lab-capture.test.ts checks it
 * against tcpdump on the same interfaces, frame for frame.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { labNs, PYTHON, startReady, type LabState } from './host.ts';

const CAPTURE = `
# podwalk lab captures
import ctypes, fcntl, mmap, os, select, signal, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
def enter(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    finally:
        os.close(fd)
ETH_P_ALL, SOL_PACKET, PACKET_ADD_MEMBERSHIP, PACKET_RX_RING, PACKET_VERSION = 3, 263, 1, 5, 10
TPACKET_V2, PACKET_MR_PROMISC, PACKET_OUTGOING, ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 1, 4, 1, 772
FRAME, BLOCK, BLOCKS, PACKET_STATISTICS = 1 << 14, 1 << 16, 16, 6
FRAMES = BLOCK * BLOCKS // FRAME
out, specs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
caps, index, names = [], [], []
for model, path in specs:
    enter(path)
    q = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for ifindex, name in sorted(socket.if_nameindex()):
        flags = struct.unpack_from("H", fcntl.ioctl(q, 0x8913, struct.pack("40s", name.encode())), 16)[0]
        if not flags & 1:  # IFF_UP
            continue
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        s.setsockopt(SOL_PACKET, PACKET_RX_RING, struct.pack("IIII", BLOCK, BLOCKS, FRAME, FRAMES))
        ring = mmap.mmap(s.fileno(), BLOCK * BLOCKS)
        s.bind((name, ETH_P_ALL))
        s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b""))
        hatype = s.getsockname()[3]
        file = os.path.join(out, "%d.pcap" % len(caps))
        f = open(file, "wb", buffering=0)
        linktype = 1 if hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK) else 101
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        caps.append([s, ring, f, hatype == ARPHRD_LOOPBACK, 0])
        index.append("%s\\t%s\\t%s\\n" % (model, name, file))
        names.append("%s/%s" % (model, name))
    q.close()
enter(specs[0][1])
stop = False
def ending(*_):
    global stop
    stop = True
signal.signal(signal.SIGINT, ending)
signal.signal(signal.SIGTERM, ending)
with open(os.path.join(out, "index.tmp"), "w") as f:
    f.write("".join(index))
os.rename(os.path.join(out, "index.tmp"), os.path.join(out, "index"))
print("ready", flush=True)
def drain(c):
    s, ring, f, lo, pos = c
    while True:
        o = pos * FRAME
        status, length, snaplen, mac, _, sec, nsec = struct.unpack_from("IIIHHII", ring, o)
        if not status & 1:  # TP_STATUS_USER
            break
        if not (lo and ring[o + 32 + 10] == PACKET_OUTGOING):
            f.write(struct.pack("<IIII", sec, nsec // 1000, snaplen, length) + ring[o + mac : o + mac + snaplen])
        struct.pack_into("I", ring, o, 0)  # TP_STATUS_KERNEL: the frame is the kernel's again
        pos = (pos + 1) % FRAMES
    c[4] = pos
by_fd = {c[0].fileno(): c for c in caps}
poller = select.poll()
for fd in by_fd:
    poller.register(fd, select.POLLIN)
while not stop:
    for fd, _ in poller.poll(200):
        drain(by_fd[fd])
lost = []
for c, name in zip(caps, names):
    drain(c)
    c[2].close()
    dropped = struct.unpack("II", c[0].getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))[1]
    if dropped:
        lost.append("%s lost %d frames (its ring was full)" % (name, dropped))
with open(os.path.join(out, "lost"), "w") as f:
    f.write("\\n".join(lost))
`;

export interface Capture {
  /** the model's namespace name */
  netns: string;
  dev: string;
  /** the pcap file being written */
  file: string;
}

export interface Captures {
  /** one per interface that was up, in namespace order, then the kernel's interface order */
  list: Capture[];
  /**
   * write out what the sockets hold and end the process (SIGKILL if it has not after 3 s); says
   * which captures lost frames (a ring the process did not empty in time), if any
   */
  stop(): Promise<string[]>;
}

/** capture every interface that is up in `netns` (the model's names) of the lab, into `dir` */
export async function startCaptures(
  state: Pick<LabState, 'namespaces' | 'prefix'>,
  netns: readonly string[],
  dir: string,
  signal?: AbortSignal,
): Promise<Captures> {
  if (!netns.length) return { list: [], stop: () => Promise.resolve([]) };
  const child: ChildProcess = await startReady(
    "the lab's captures",
    [PYTHON, '-u', '-c', CAPTURE, dir, ...netns.map((n) => `${n}=/run/netns/${labNs(state, n)}`)],
    (out) => /^ready$/m.test(out),
    { signal },
  );
  const list = readFileSync(join(dir, 'index'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [n, dev, file] = l.split('\t');
      return { netns: n, dev, file };
    });
  return {
    list,
    stop: async () => {
      await new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        child.on('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill('SIGINT');
      });
      try {
        return readFileSync(join(dir, 'lost'), 'utf8').split('\n').filter(Boolean);
      } catch {
        return ['the captures ended without saying what they lost (killed)'];
      }
    },
  };
}
