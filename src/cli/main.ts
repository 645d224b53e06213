#!/usr/bin/env node
/** The podwalk executable: binds the CLI to this process. */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './app.ts';
import { dumpSetName, loadDumps } from '../collect/load.ts';
import { collectorScript, runCollector } from '../collect/run.ts';

// a closed pipe (podwalk … | head) ends the output quietly, as other CLI tools do
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

const code = await run(process.argv.slice(2), {
  out: (s) => process.stdout.write(s + '\n'),
  err: (s) => process.stderr.write(s + '\n'),
  readFile: (p) => readFileSync(p, 'utf8'),
  listDir: (p) => readdirSync(p),
  readDumps: loadDumps,
  collect: (o) => runCollector(o, { inherit: true }),
  collectorScript,
  dumpSetName,
  writeFile: (dir, name, bytes) => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, name), bytes);
  },
  stdin: process.stdin,
  stdout: process.stdout,
  stdinTTY: !!process.stdin.isTTY,
  env: process.env,
  isTTY: !!process.stdout.isTTY,
});
process.exitCode = code;
