/**
 * A set of dumps as `podwalk collect` writes them, as plain file contents (no file system here:
 * the CLI reads a directory or a .tar.gz, the page could hand over files it was given):
 *
 *   NODE/manifest.txt                 who, when, which tools (collect.sh writes it)
 *   NODE/netns/INODE/where.txt        how that namespace was found (target, or a veth's peer)
 *   NODE/netns/INODE/link.json …      the commands' output, one file each
 *   kube.json                         optional: kubectl get nodes,pods,… -A -o json
 *
 * Dumps are untrusted input: sizes are bounded, paths are checked, and every error names the
 * file ("node1/netns/4026532301/link.json: …"). Nothing in a dump is ever executed.
 */

export class DumpError extends Error {
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}

/** the bounds a dump set must keep (a real node's dump is a few MB; kube-proxy's iptables-save is the largest file) */
export const LIMITS = {
  /** one file */
  fileBytes: 64 * 1024 * 1024,
  /** all files together, after decompression */
  totalBytes: 1024 * 1024 * 1024,
  files: 200_000,
  nodes: 5_000,
  /** namespaces in one node's dump */
  namespaces: 4_000,
};

export type DumpFiles = Map<string, string>;

const MIB = 1024 * 1024;

/** a relative path inside a dump set: no absolute paths, no `..`, no empty parts */
export function checkPath(path: string): string {
  const p = path.replace(/^(\.\/)+/, '');
  if (!p || p.startsWith('/') || p.split('/').some((x) => x === '..' || x === '' || x === '.'))
    throw new DumpError(path, 'not a plain relative path inside the dump set');
  return p;
}

/** collects files under the limits; `add` throws DumpError when one is broken */
export class DumpFilesBuilder {
  readonly files: DumpFiles = new Map();
  private total = 0;

  add(path: string, bytes: Uint8Array): void {
    const p = checkPath(path);
    if (bytes.length > LIMITS.fileBytes)
      throw new DumpError(
        p,
        `${(bytes.length / MIB).toFixed(1)} MiB, more than the ${LIMITS.fileBytes / MIB} MiB a dump file may have`,
      );
    this.total += bytes.length;
    if (this.total > LIMITS.totalBytes)
      throw new DumpError(p, `the dump set is larger than ${LIMITS.totalBytes / MIB} MiB`);
    if (this.files.size >= LIMITS.files)
      throw new DumpError(p, `the dump set has more than ${LIMITS.files} files`);
    if (this.files.has(p)) throw new DumpError(p, 'the file is in the dump set twice');
    const text = utf8(bytes);
    if (text === undefined) throw new DumpError(p, 'not UTF-8 text');
    this.files.set(p, text);
  }
}

/** strict UTF-8 to a string (undefined when the bytes are not UTF-8); no TextDecoder in the core's types */
export function utf8(b: Uint8Array): string | undefined {
  const parts: string[] = [];
  let units: number[] = [];
  const flush = () => {
    parts.push(String.fromCharCode(...units));
    units = [];
  };
  for (let i = 0; i < b.length;) {
    const x = b[i];
    let cp: number;
    let n: number;
    if (x < 0x80) {
      cp = x;
      n = 1;
    } else if (x >= 0xc2 && x < 0xe0) {
      cp = x & 0x1f;
      n = 2;
    } else if (x >= 0xe0 && x < 0xf0) {
      cp = x & 0x0f;
      n = 3;
    } else if (x >= 0xf0 && x < 0xf5) {
      cp = x & 0x07;
      n = 4;
    } else return undefined;
    if (i + n > b.length) return undefined;
    for (let k = 1; k < n; k++) {
      const y = b[i + k];
      if ((y & 0xc0) !== 0x80) return undefined;
      cp = (cp << 6) | (y & 0x3f);
    }
    if (
      (n === 3 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) ||
      (n === 4 && (cp < 0x10000 || cp > 0x10ffff))
    )
      return undefined;
    if (cp >= 0x10000) units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
    else units.push(cp);
    if (units.length >= 8192) flush();
    i += n;
  }
  flush();
  return parts.join('');
}

/* ------------------------------------------------------------------ tar */

const BLOCK = 512;

function field(b: Uint8Array, off: number, len: number): string {
  let end = off;
  while (end < off + len && b[end] !== 0) end++;
  let s = '';
  for (let i = off; i < end; i++) s += String.fromCharCode(b[i]);
  return s;
}

function octal(b: Uint8Array, off: number, len: number, where: string): number {
  const s = field(b, off, len).trim();
  if (!/^[0-7]*$/.test(s)) throw new DumpError(where, `broken tar header (field "${s}" is not octal)`);
  return s ? parseInt(s, 8) : 0;
}

/**
 * The regular files of a tar archive (ustar, GNU long names, pax path records), under the
 * limits. Directories are skipped; links and devices are refused (a dump has none).
 */
export function untar(bytes: Uint8Array, name: string): DumpFiles {
  const out = new DumpFilesBuilder();
  let off = 0;
  let longName: string | undefined;
  while (off + BLOCK <= bytes.length) {
    const h = bytes.subarray(off, off + BLOCK);
    if (h.every((x) => x === 0)) break;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
    if (octal(h, 148, 8, name) !== sum) throw new DumpError(name, `broken tar header at byte ${off}`);
    const size = octal(h, 124, 12, name);
    const type = String.fromCharCode(h[156] || 48);
    const prefix = field(h, 345, 155);
    let path = longName ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    longName = undefined;
    const start = off + BLOCK;
    const end = start + size;
    if (end > bytes.length) throw new DumpError(name, `truncated: ${path} ends past the end of the archive`);
    const data = bytes.subarray(start, end);
    off = start + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'L') {
      longName = field(data, 0, data.length);
      continue;
    }
    if (type === 'x') {
      const rec = utf8(data) ?? '';
      const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(rec);
      if (m) longName = m[1];
      continue;
    }
    if (type === 'g') continue;
    if (type === '5') continue;
    if (type !== '0' && type !== '7')
      throw new DumpError(name, `${path}: a tar entry of type "${type}" (a dump holds only files)`);
    path = path.replace(/^(\.\/)+/, '');
    out.add(path, data);
  }
  return out.files;
}

/** the gzip magic: the CLI decompresses, this module only reads tar bytes */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length > 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}
