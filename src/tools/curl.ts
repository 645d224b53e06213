/**
 * `curl` (7.88.1) from a namespace of the model, for http://IP:PORT/PATH against the model's
 * listeners: -s, -S, -m SECONDS, -i, -o /dev/null, -w FORMAT with the common %{…} variables.
 * The connection runs in time: the SYN is retransmitted on the kernel's RTO (1 s, linear for
 * tcp_syn_linear_timeouts, then doubling), an ICMP error fails connect() with its errno, -m
 * gives up with exit 28; the error lines and exit codes are curl's (recorded from the real
 * curl on this machine, test/golden/time/). The request is curl's own GET, so segment sizes
 * match a real curl's.
 */
import { isValidIp4 } from '../wire/addr.ts';
import { asciiBytes, type SockErrno, type TcpConn } from '../kernel/sockets.ts';
import { runUntil } from '../trace/exchange.ts';
import type { Tool, ToolResult } from './types.ts';

const VERSION = '7.88.1';
const TRY = "curl: try 'curl --help' or 'curl --manual' for more information\n";
/** curl's default connect timeout (DEFAULT_CONNECT_TIMEOUT), µs */
const CONNECT_TIMEOUT = 300_000_000;

interface Opts {
  silent: boolean;
  showError: boolean;
  include: boolean;
  /** µs */
  maxTime?: number;
  output?: string;
  writeOut?: string;
  url?: string;
}

class Usage extends Error {
  constructor(
    readonly text: string,
    readonly code: number,
  ) {
    super(text);
  }
}

const LONG: Record<string, string> = {
  '--silent': 's',
  '--show-error': 'S',
  '--include': 'i',
  '--max-time': 'm',
  '--output': 'o',
  '--write-out': 'w',
};

function parse(argv: readonly string[]): Opts {
  const o: Opts = { silent: false, showError: false, include: false };
  const take = (f: string, v: string | undefined): void => {
    if (v === undefined) throw new Usage(`curl: option -${f}: requires parameter\n${TRY}`, 2);
    if (f === 'm') {
      if (!/^\d*\.?\d+$/.test(v))
        throw new Usage(`curl: option -m: expected a proper numerical parameter\n${TRY}`, 2);
      o.maxTime = Math.round(Number(v) * 1e6);
    } else if (f === 'o') o.output = v;
    else o.writeOut = v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const f = LONG[a];
      if (!f) throw new Usage(`curl: option ${a}: is unknown\n${TRY}`, 2);
      if ('mow'.includes(f)) take(f, argv[++i]);
      else flag(o, f);
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const f = a[j];
        if ('mow'.includes(f)) {
          take(f, j + 1 < a.length ? a.slice(j + 1) : argv[++i]);
          break;
        }
        if ('sSi'.includes(f)) flag(o, f);
        else if ('vLkIXdHFuA'.includes(f)) throw new Usage(`podwalk: "curl -${f}" is not emulated\n`, 2);
        else throw new Usage(`curl: option -${a.slice(j)}: is unknown\n${TRY}`, 2);
      }
      continue;
    }
    if (o.url !== undefined) throw new Usage('podwalk: curl with more than one URL is not emulated\n', 2);
    o.url = a;
  }
  return o;
}

function flag(o: Opts, f: string): void {
  if (f === 's') o.silent = true;
  else if (f === 'S') o.showError = true;
  else if (f === 'i') o.include = true;
}

/** the bytes of a complete HTTP response, or undefined while it is still arriving */
function completeResponse(data: Uint8Array): { head: string; body: string } | undefined {
  const text = String.fromCharCode(...data);
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const head = text.slice(0, end + 4);
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  const len = m ? Number(m[1]) : 0;
  const body = text.slice(end + 4);
  if (body.length < len) return undefined;
  return { head, body: body.slice(0, len) };
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** curl's -w: %{variable} and the \n \r \t escapes */
function writeOut(fmt: string, vars: Record<string, string>): string {
  return fmt
    .replace(/%\{([a-z_]+)\}/g, (m, k: string) => (k in vars ? vars[k] : m))
    .replace(/\\([nrt\\])/g, (_m, c: string) => ({ n: '\n', r: '\r', t: '\t', '\\': '\\' })[c]!);
}

const CONNECT_ERRORS: readonly SockErrno[] = ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT'];

export const curl: Tool = (argv, { cluster: c, netns: ns }): ToolResult => {
  let o: Opts;
  try {
    o = parse(argv);
  } catch (e) {
    if (e instanceof Usage) return { stdout: '', stderr: e.text, code: e.code };
    throw e;
  }
  if (o.url === undefined) return { stdout: '', stderr: TRY, code: 2 };
  const m = /^(?:([a-zA-Z][a-zA-Z0-9+.-]*):\/\/)?([^/:]+)(?::(\d+))?(\/.*)?$/.exec(o.url);
  if (!m) return { stdout: '', stderr: 'curl: (3) URL using bad/illegal format or missing URL\n', code: 3 };
  const scheme = (m[1] ?? 'http').toLowerCase();
  if (scheme !== 'http')
    return {
      stdout: '',
      stderr: `curl: (1) Protocol "${scheme}" not supported or disabled in libcurl\n`,
      code: 1,
    };
  const host = m[2];
  const port = m[3] !== undefined ? Number(m[3]) : 80;
  const path = m[4] ?? '/';
  if (port > 65535)
    return { stdout: '', stderr: 'curl: (3) URL using bad/illegal format or missing URL\n', code: 3 };
  if (!isValidIp4(host))
    return {
      stdout: '',
      stderr: `podwalk: curl ${o.url}: name resolution is not emulated: use http://IP:PORT/\n`,
      code: 2,
    };
  if (o.output !== undefined && o.output !== '/dev/null')
    return { stdout: '', stderr: `podwalk: curl -o ${o.output}: only -o /dev/null is emulated\n`, code: 2 };

  const w = c.world;
  const start = w.now;
  const hostHeader = port === 80 ? host : `${host}:${port}`;
  const request = asciiBytes(
    `GET ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\nUser-Agent: curl/${VERSION}\r\nAccept: */*\r\n\r\n`,
  );
  const [lo, hi] = ns.sysctlInts('net.ipv4.ip_local_port_range', '32768\t60999');
  const sport = lo + (w.derive('curl-sport', ns.name, start) % (hi - lo + 1));
  const conn: TcpConn | undefined = c.sockets.connect(ns, host, port, sport, request, { timers: true });
  if (conn && conn.state !== 'CLOSED') {
    // what the SYN sets off at once (an ICMP error from a router on the way) is handled while
    // connect() still holds the socket lock: a soft error, which SO_ERROR reports all the same
    conn.owned = true;
    runUntil(c, start + (o.maxTime ?? CONNECT_TIMEOUT), () => !c.stack.queue.length);
    conn.owned = false;
  }
  const limit = start + Math.min(o.maxTime ?? Infinity, o.maxTime === undefined ? CONNECT_TIMEOUT : Infinity);
  let response: { head: string; body: string } | undefined;
  const done = (): boolean => {
    if (!conn || conn.state === 'CLOSED' || (conn.err && conn.establishedAt === undefined)) return true;
    if (!response && conn.rcvd?.length) response = completeResponse(concat(conn.rcvd));
    // after the response, the close exchange (FIN, FIN, ACK) runs out before curl's process is gone
    return !!response && !c.stack.queue.length;
  };
  // -m counts from the start; without it, connecting gives up after the connect timeout
  runUntil(c, o.maxTime !== undefined ? start + o.maxTime : limit, done);
  const elapsedMs = Math.floor((w.now - start) / 1000);
  let code = 0;
  let error = '';
  const established = conn?.establishedAt !== undefined;
  if (!response) {
    if (conn && conn.state !== 'CLOSED') c.sockets.abort(conn);
    if (conn?.err && CONNECT_ERRORS.includes(conn.err) && !established) {
      // a connect() that timed out in the kernel (ETIMEDOUT) is curl's CURLE_OPERATION_TIMEDOUT
      code = conn.err === 'ETIMEDOUT' ? 28 : 7;
      error = `Failed to connect to ${host} port ${port} after ${elapsedMs} ms: Couldn't connect to server`;
    } else if (!conn) {
      code = 7;
      error = `Failed to connect to ${host} port ${port} after 0 ms: Couldn't connect to server`;
    } else if (conn.err === 'ECONNRESET') {
      code = 56;
      error = 'Recv failure: Connection reset by peer';
    } else if (!established) {
      code = 28;
      error = `Connection timed out after ${elapsedMs} milliseconds`;
    } else {
      code = 28;
      error = `Operation timed out after ${elapsedMs} milliseconds with ${conn.received} bytes received`;
    }
  }
  let stdout = '';
  if (response && o.output === undefined) stdout += (o.include ? response.head : '') + response.body;
  if (o.writeOut !== undefined) {
    const status = response ? (/^HTTP\/\S+ (\d{3})/.exec(response.head)?.[1] ?? '000') : '000';
    const total = ((w.now - start) / 1e6).toFixed(6);
    const connected = established && conn;
    stdout += writeOut(o.writeOut, {
      http_code: status,
      response_code: status,
      exitcode: String(code),
      errormsg: error,
      remote_ip: connected ? host : '',
      remote_port: connected ? String(port) : '0',
      local_ip: connected ? conn.local : '',
      local_port: connected ? String(conn.lport) : '0',
      num_connects: connected ? '1' : '0',
      size_download: String(response ? response.body.length : 0),
      size_header: String(response ? response.head.length : 0),
      size_request: String(connected ? request.length : 0),
      url_effective: o.url.includes('://') ? o.url : `http://${o.url}`,
      scheme: 'HTTP',
      time_total: total,
      time_connect: connected ? ((conn.establishedAt! - start) / 1e6).toFixed(6) : '0.000000',
      content_type: '',
      method: 'GET',
    });
  }
  let stderr = '';
  if (!o.silent) stderr += progressMeter();
  if (error && (!o.silent || o.showError)) stderr += `curl: (${code}) ${error}\n`;
  return { stdout, stderr, code };
};

/** the progress meter curl writes to stderr when it is not silent (one update, then the end) */
function progressMeter(): string {
  const head =
    '  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current\n' +
    '                                 Dload  Upload   Total   Spent    Left  Speed\n';
  const line = '\r  0     0    0     0    0     0      0      0 --:--:-- --:--:-- --:--:--     0';
  return head + line + line + '\n';
}
