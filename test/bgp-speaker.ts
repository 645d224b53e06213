/**
 * podwalk's BGP speaker (src/bgp/fsm.ts) on a real TCP connection, for test/bgp-bird-session.test.ts,
 * which runs it inside a namespace: `ip netns exec NS node --import tsx test/bgp-speaker.ts CONFIG`.
 * CONFIG is a PeerConfig as JSON. The FSM gets the monotonic time of this process (µs); every state
 * change, Adj-RIB-In change, message sent, connection opened or dropped and chunk of octets received
 * is written to stdout as one JSON line with its time `t`; stdin takes JSON lines
 * {"announce": [...]}, {"withdraw": [...]} and {"stop": true} (ManualStop, then the process exits
 * once its stdout is written).
 */
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import {
  newPeer,
  nextUpdate,
  peerDeadline,
  stepPeer,
  type PeerAction,
  type PeerConfig,
  type PeerInput,
} from '../src/bgp/fsm.ts';
import { BGP_PORT } from '../src/wire/index.ts';

const config = JSON.parse(process.argv[2]) as PeerConfig;
let peer = newPeer(config);
let sock: Socket | undefined;
let timer: NodeJS.Timeout | undefined;
const now = () => Math.floor(performance.now() * 1000);
/**
 * An event line. What the FSM did carries the time of the step that decided it (the time its
 * timers count from), not the moment the line is written: on a loaded machine this process can
 * be descheduled in between, and a ConnectRetry gap measured from the write came out 33 ms short
 */
const out = (o: object, t = now()) => process.stdout.write(JSON.stringify({ t, ...o }) + '\n');

function feed(input: PeerInput): void {
  const t = now();
  const { peer: next, actions } = stepPeer(peer, input, t);
  peer = next;
  // then the UPDATEs its buckets hold (BIRD's tx event; the socket's buffer takes them here)
  for (let u = nextUpdate(peer, t); u; u = nextUpdate(peer, t))
    actions.push({ kind: 'send', msg: u.msg, bytes: u.bytes });
  for (const a of actions) act(a, t);
  clearTimeout(timer);
  const d = peerDeadline(peer);
  if (d !== undefined) timer = setTimeout(() => feed({ kind: 'tick' }), Math.max(0, (d - now()) / 1000));
}

function act(a: PeerAction, t: number): void {
  switch (a.kind) {
    case 'state':
      out({ state: a.to, error: peer.lastNotification }, t);
      break;
    case 'rib':
      out({ added: a.added.map((r) => [r.prefix, r.nextHop]), removed: a.removed.map((r) => r.prefix) }, t);
      break;
    case 'send':
      out(
        {
          sent: a.msg.kind,
          ...(a.msg.kind === 'notification' ? { code: a.msg.code, subcode: a.msg.subcode } : {}),
        },
        t,
      );
      sock?.write(a.bytes);
      break;
    case 'close':
      out({ close: true }, t);
      // the FSM drops the connection: a pending connect is abandoned (its SYNs stop), an open one is
      // closed after what was written to it
      if (sock?.connecting) sock.destroy();
      else sock?.end();
      sock = undefined;
      break;
    case 'connect': {
      out({ connect: true }, t);
      const s = connect({ host: config.peerAddress, port: BGP_PORT, localAddress: config.localAddress });
      sock = s;
      s.on('connect', () => s === sock && feed({ kind: 'tcp-connected' }));
      s.on('data', (d: Buffer) => {
        if (s !== sock) return;
        out({ data: d.length });
        feed({ kind: 'data', data: new Uint8Array(d) });
      });
      s.on('error', () => s === sock && ((sock = undefined), feed({ kind: 'tcp-failed' })));
      s.on('close', () => s === sock && ((sock = undefined), feed({ kind: 'tcp-closed' })));
      break;
    }
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line) as { announce?: string[]; withdraw?: string[]; stop?: boolean };
  if (cmd.announce) feed({ kind: 'announce', prefixes: cmd.announce });
  if (cmd.withdraw) feed({ kind: 'withdraw', prefixes: cmd.withdraw });
  if (cmd.stop) {
    feed({ kind: 'stop' });
    clearTimeout(timer);
    // let the socket write the NOTIFICATION and its FIN before the process goes
    setTimeout(() => process.exit(0), 200);
  }
});
feed({ kind: 'start' });
