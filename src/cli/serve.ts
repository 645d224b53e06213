/**
 * `podwalk serve`: the static build of the page (npm run build → dist/web) on 127.0.0.1, and the
 * user's cluster file as /cluster.yaml for the page to load with the same core loader. A tiny
 * node:http file server: GET and HEAD only, nothing outside the build directory.
 */
import { createServer, type Server } from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The build `npm run build` writes: dist/web at the package root */
export const DEFAULT_WEB_ROOT = fileURLToPath(new URL('../../dist/web', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.map': 'application/json',
  '.yaml': 'text/yaml; charset=utf-8',
};

export interface ServeOptions {
  root: string;
  /** 0 for an ephemeral port */
  port: number;
  /** the cluster file's text and name, served as /cluster.yaml */
  cluster?: { yaml: string; file: string };
  /** `--from`: the dump set as JSON ({name, files}), served as /dumps.json for the page to import */
  dumps?: string;
}

export interface Served {
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

/** Whether `root` holds a build of the page */
export function hasBuild(root: string): boolean {
  return existsSync(join(root, 'index.html'));
}

export function serveWeb(o: ServeOptions): Promise<Served> {
  const root = resolve(o.root);
  const server = createServer((req, res) => {
    const send = (
      status: number,
      body: string | Buffer,
      type: string,
      extra: Record<string, string> = {},
    ) => {
      res.writeHead(status, {
        'content-type': type,
        'content-length': Buffer.byteLength(body),
        'cache-control': 'no-cache',
        'x-content-type-options': 'nosniff',
        ...extra,
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return send(405, 'method not allowed\n', 'text/plain', { allow: 'GET, HEAD' });
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname);
    } catch {
      return send(400, 'bad request\n', 'text/plain');
    }
    if (path === '/cluster.yaml')
      return o.cluster
        ? send(200, o.cluster.yaml, TYPES['.yaml'], { 'x-podwalk-file': encodeURIComponent(o.cluster.file) })
        : // no --cluster: nothing to hand over, the page uses the built-in cluster
          send(204, '', 'text/plain');
    if (path === '/dumps.json')
      return o.dumps ? send(200, o.dumps, TYPES['.json']) : send(204, '', 'text/plain');
    if (path.endsWith('/')) path += 'index.html';
    const file = normalize(join(root, path));
    if (!file.startsWith(root + sep)) return send(403, 'forbidden\n', 'text/plain');
    let body: Buffer;
    try {
      if (!statSync(file).isFile()) return send(404, 'not found\n', 'text/plain');
      body = readFileSync(file);
    } catch {
      return send(404, 'not found\n', 'text/plain');
    }
    send(200, body, TYPES[extname(file)] ?? 'application/octet-stream');
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(o.port, '127.0.0.1', () => {
      server.off('error', fail);
      const addr = server.address();
      const port = typeof addr === 'object' && addr ? addr.port : o.port;
      ok({
        url: `http://127.0.0.1:${port}/`,
        port,
        server,
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}
