/**
 * Output directories for the CLI (`trace --pcap DIR`): checked (and created) before anything is
 * printed, then written all or nothing. Problems come back as one-line reasons (OutputDirError),
 * never as a Node error with a stack, and never a hang: Node's recursive mkdir loops forever on
 * paths like /proc/x, so directories are made one level at a time here.
 */
import { lstatSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** why a directory cannot take the output (the message is the reason alone, without the directory) */
export class OutputDirError extends Error {}

const REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'not permitted here',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  ENOTDIR: 'a part of the path is not a directory',
  ENOENT: 'this file system does not take new files here',
  EEXIST: 'something else appeared there meanwhile',
  ENAMETOOLONG: 'the name is too long',
  ELOOP: 'too many symbolic links',
};

function reason(e: unknown, what: string): OutputDirError {
  const code = (e as NodeJS.ErrnoException).code ?? '';
  return new OutputDirError(
    `${what}: ${REASONS[code] ?? code ?? String(e)}${code && REASONS[code] ? ` (${code})` : ''}`,
  );
}

function kind(path: string): 'dir' | 'missing' | 'other' {
  try {
    return statSync(path).isDirectory() ? 'dir' : 'other';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'missing';
    if (code === 'ENOTDIR') throw new OutputDirError(`a part of the path is not a directory`);
    throw reason(e, `cannot look at ${path}`);
  }
}

export interface OutputFile {
  name: string;
  bytes: Uint8Array;
}

/**
 * Make sure `dir` is a directory that takes files, creating it (and missing parents) if needed.
 * Returns the function that writes the files into it: all of them, or (on a failure) none, each
 * file replaced atomically. Throws OutputDirError with the reason.
 */
export function openOutputDir(dir: string): (files: readonly OutputFile[]) => void {
  if (dir === '') throw new OutputDirError('no directory named');
  const abs = resolve(dir);
  const missing: string[] = [];
  let at = abs;
  for (let k = kind(at); k !== 'dir'; k = kind(at)) {
    if (k === 'other') throw new OutputDirError(at === abs ? 'not a directory' : `${at} is not a directory`);
    missing.unshift(at);
    at = dirname(at);
  }
  for (const d of missing)
    try {
      mkdirSync(d);
    } catch (e) {
      throw reason(e, `cannot create the directory ${d}`);
    }
  // a file can be made there: a staging directory, removed again
  try {
    rmSync(mkdtempSync(join(abs, '.podwalk-')), { recursive: true });
  } catch (e) {
    throw reason(e, 'cannot write there');
  }
  return (files) => writeAll(abs, files);
}

function writeAll(abs: string, files: readonly OutputFile[]): void {
  for (const f of files) {
    try {
      if (!lstatSync(join(abs, f.name)).isFile())
        throw new OutputDirError(`${f.name} is there and is not a file; nothing written`);
    } catch (e) {
      if (e instanceof OutputDirError) throw e;
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw reason(e, `cannot look at ${f.name}`);
    }
  }
  let stage: string;
  try {
    stage = mkdtempSync(join(abs, '.podwalk-'));
  } catch (e) {
    throw reason(e, 'cannot write there');
  }
  try {
    for (const f of files)
      try {
        writeFileSync(join(stage, f.name), f.bytes);
      } catch (e) {
        throw reason(e, `cannot write ${f.name}; nothing written`);
      }
    for (const f of files)
      try {
        renameSync(join(stage, f.name), join(abs, f.name));
      } catch (e) {
        throw reason(e, `cannot move ${f.name} into place`);
      }
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}
