// The CLI's bundle (dist/cli/podwalk.cjs, made by scripts/bundle-cli.mjs) compiled with V8's code
// cache. A fresh `podwalk` spends much of its start compiling the bundle: parsing 2.6 MB of
// JavaScript, then compiling each function at its first call. V8 can keep what it compiled (the
// functions' bytecode) and take it back in a later process instead of compiling again:
// `vm.Script`'s cachedData. `npm ci`'s prepare script makes the cache once
// (dist/cli/podwalk.v8cache: `node bin/bundle.js --make-cache DIST`, after running a few commands
// in-process so that the functions they call are in it) and every start reads it.
//
// The cache only saves compiling: the bytecode V8 takes from it is what it would compile from the
// same source, so the outputs are the same with or without it. It is taken only when it is exactly
// the one made from this bundle by this Node.js: its header names the bundle's SHA-256, the Node.js
// and V8 versions, the platform and the cache's own SHA-256, all checked here before V8 sees the
// bytes (V8 itself checks only its version, its flags and the source's length, and a release
// build no checksum). A missing, stale or damaged cache, or one V8 rejects, is ignored: the bundle
// is compiled from its source, as without a cache. loadBundle tells which happened.
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import vm from 'node:vm';

export const BUNDLE = 'podwalk.cjs';
export const CODE_CACHE = 'podwalk.v8cache';
const FORMAT = 'podwalk-v8cache 1';

/** the commands run in-process before the cache is made: the functions they call are in it */
const WARM_UP = [
  ...['flannel-vxlan', 'flannel-host-gw', 'calico-bgp', 'calico-vxlan', 'calico-ipip'].map((mode) => [
    'doctor',
    '--mode',
    mode,
    'pod-a',
    'pod-c:8080',
  ]),
  ['trace', 'pod-a', 'pod-c:8080'],
  ['exec', 'node1', '--', 'ip', 'route'],
  ['matrix'],
];

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** what a cache made here for this bundle (its file's bytes) says of itself, but for its data's hash */
function expectedHeader(bytes) {
  return {
    format: FORMAT,
    bundle: sha256(bytes),
    node: process.version,
    v8: process.versions.v8,
    platform: process.platform,
    arch: process.arch,
  };
}

/** the function the bundle's text is wrapped in: the CommonJS wrapper's arguments and import.meta.url */
const wrap = (source) =>
  '(function (exports, require, module, __filename, __dirname, __podwalkUrl) {"use strict";' +
  source +
  '\n})';

/**
 * The cache for this bundle (its file's bytes) from the file: { data } when it is the one made from this bundle here,
 * else { state } ('missing', 'stale': made for another bundle or Node.js, 'corrupt': unreadable or
 * not the bytes it was made with)
 */
function readCache(file, bundle) {
  let bytes;
  try {
    bytes = readFileSync(file);
  } catch {
    return { state: 'missing' };
  }
  const nl = bytes.indexOf(10);
  let header;
  try {
    if (nl < 0) throw new Error('no header');
    header = JSON.parse(bytes.subarray(0, nl).toString('utf8'));
  } catch {
    return { state: 'corrupt' };
  }
  if (header === null || typeof header !== 'object') return { state: 'corrupt' };
  const want = expectedHeader(bundle);
  for (const k of Object.keys(want)) if (header[k] !== want[k]) return { state: 'stale' };
  const data = bytes.subarray(nl + 1);
  if (header.length !== data.length || header.data !== sha256(data)) return { state: 'corrupt' };
  return { data };
}

/**
 * Compile dist/cli/podwalk.cjs (DIST: the directory's URL) and run its body: { exports, script,
 * bytes, cache } where cache is 'used' (V8 took the cache), 'missing', 'stale', 'corrupt',
 * 'rejected' (checked here, but V8 did not take it: another V8 flag set), or 'off'
 */
export function loadBundle(dist, { cache = true } = {}) {
  const file = new URL(BUNDLE, dist);
  // the file's bytes hashed as they are (not the text encoded again), then decoded
  const bytes = readFileSync(file);
  const source = bytes.toString('utf8');
  const found = cache ? readCache(new URL(CODE_CACHE, dist), bytes) : { state: 'off' };
  const filename = fileURLToPath(file);
  const script = new vm.Script(wrap(source), { filename, cachedData: found.data });
  const state = found.data ? (script.cachedDataRejected ? 'rejected' : 'used') : found.state;
  const module = { exports: {} };
  const body = script.runInThisContext();
  body.call(
    module.exports,
    module.exports,
    createRequire(file),
    module,
    filename,
    fileURLToPath(dist),
    file.href,
  );
  return { exports: module.exports, script, bytes, cache: state };
}

/** a command's IO that prints nothing (the warm-up's) */
const quietIo = () => ({
  out: () => {},
  err: () => {},
  readFile: (p) => readFileSync(p, 'utf8'),
  listDir: () => [],
  openDir: () => {
    throw new Error('the warm-up writes no files');
  },
  env: {},
  isTTY: false,
});

/**
 * Make DIST's code cache: the bundle compiled from its source, WARM_UP run in-process, then what V8
 * compiled written with its header (to a temporary name first, then renamed: a reader never sees
 * half a file). Runs in a process of its own with V8's default flags, as bin/podwalk.js compiles.
 */
export async function makeCodeCache(dist) {
  const { exports, script, bytes } = loadBundle(dist, { cache: false });
  for (const argv of WARM_UP) {
    const code = await exports.run(argv, quietIo());
    if (code !== 0) throw new Error(`the warm-up's podwalk ${argv.join(' ')} exited ${code}`);
  }
  const data = script.createCachedData();
  const header = { ...expectedHeader(bytes), length: data.length, data: sha256(data) };
  const file = new URL(CODE_CACHE, dist);
  const tmp = new URL(`${CODE_CACHE}.${process.pid}.tmp`, dist);
  writeFileSync(tmp, Buffer.concat([Buffer.from(JSON.stringify(header) + '\n'), data]));
  renameSync(tmp, file);
  return data.length;
}

// node bin/bundle.js --make-cache DIST_DIR
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] !== '--make-cache' || !process.argv[3])
    throw new Error('usage: node bin/bundle.js --make-cache DIST_DIR');
  await makeCodeCache(pathToFileURL(process.argv[3].replace(/\/?$/, '/')));
}
