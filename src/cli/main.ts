#!/usr/bin/env node
/** The podwalk executable: binds the CLI to this process. */
import { readdirSync, readFileSync } from 'node:fs';
import { run } from './app.ts';
import { openOutputDir } from './files.ts';
import { dumpSetName, loadDumps } from '../collect/load.ts';
import { collectorScript, runCollector } from '../collect/run.ts';
import { setPodwalkV8Flags } from './v8-flags.ts';

setPodwalkV8Flags();

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
  openDir: openOutputDir,
  readDumps: loadDumps,
  collect: (o) => runCollector(o, { inherit: true }),
  collectorScript,
  dumpSetName,
  stdin: process.stdin,
  stdout: process.stdout,
  stdinTTY: !!process.stdin.isTTY,
  env: process.env,
  isTTY: !!process.stdout.isTTY,
  columns: process.stdout.isTTY ? process.stdout.columns : undefined,
});
process.exitCode = code;
