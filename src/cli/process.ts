/**
 * The podwalk executable's body: binds the CLI to this process. `main.ts` calls it when the
 * sources run through tsx; the bundle (scripts/bundle-cli.mjs, a script that bin/bundle.js
 * compiles with V8's code cache) exports it and bin/podwalk.js calls it. `run` is exported for
 * the bundle's code cache, made by running commands in-process (bin/bundle.js).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { run } from './app.ts';
import { openOutputDir } from './files.ts';
import { dumpSetName, loadDumps } from '../collect/load.ts';
import { collectorScript, runCollector } from '../collect/run.ts';
import { setPodwalkV8Flags } from './v8-flags.ts';

export { run };

/** run the command of this process's arguments; its status becomes the process's exit code */
export async function main(): Promise<void> {
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
}
