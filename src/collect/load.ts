/**
 * Reading a dump set from disk for `--from`: a directory (one subdirectory per node, or one
 * node's directory) or a .tar.gz of one, under the importer's size limits. The files go to the
 * platform-free importer as text; nothing in them is run.
 */
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DumpError, DumpFilesBuilder, isGzip, LIMITS, untar, type DumpFiles } from '../import/index.ts';

/** a directory's regular files, recursively (symlinks are not followed: a dump has none) */
function readDir(root: string): DumpFiles {
  const out = new DumpFilesBuilder();
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(root, r));
      if (st.isDirectory()) walk(r);
      else if (st.isFile()) {
        if (st.size > LIMITS.fileBytes) out.add(r, new Uint8Array(LIMITS.fileBytes + 1));
        out.add(r, readFileSync(join(root, r)));
      } else throw new DumpError(r, 'not a regular file or directory (a dump holds only files)');
    }
  };
  walk('');
  return out.files;
}

/** the cluster name of a dump set: its directory's or archive's name, lower case, [a-z0-9-] */
export function dumpSetName(path: string): string {
  const base = path.replace(/\/+$/, '').split('/').pop() || 'imported';
  return (
    base
      .replace(/\.(tar\.gz|tgz|tar)$/, '')
      .replace(/[^A-Za-z0-9-]/g, '-')
      .toLowerCase() || 'imported'
  );
}

export interface LoadedDumps {
  files: DumpFiles;
  /** how errors name a file of the set: "DIR/FILE" or "ARCHIVE: FILE" */
  where(file: string): string;
  /** the dump set's name (the directory or archive name, for the lab prefix and the page) */
  name: string;
}

export function loadDumps(path: string): LoadedDumps {
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new DumpError(path, code === 'ENOENT' ? 'no such file or directory' : `cannot read it (${code})`);
  }
  const name = dumpSetName(path);
  if (st.isDirectory()) {
    try {
      return { files: readDir(path), where: (f) => join(path, f), name };
    } catch (e) {
      if (e instanceof DumpError) throw new DumpError(join(path, e.file), e.problem);
      throw e;
    }
  }
  let bytes: Uint8Array = readFileSync(path);
  try {
    if (isGzip(bytes)) {
      try {
        bytes = gunzipSync(bytes, { maxOutputLength: LIMITS.totalBytes + 1024 * 1024 });
      } catch (e) {
        const code = (e as { code?: string }).code;
        throw new DumpError(
          '',
          code === 'ERR_BUFFER_TOO_LARGE'
            ? `larger than ${LIMITS.totalBytes / 1024 / 1024} MiB when decompressed`
            : `not a readable gzip file (${(e as Error).message})`,
        );
      }
    }
    return { files: untar(bytes, ''), where: (f) => `${path}: ${f}`, name };
  } catch (e) {
    if (e instanceof DumpError) throw new DumpError(e.file ? `${path}: ${e.file}` : path, e.problem);
    throw e;
  }
}
