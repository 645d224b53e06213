/**
 * `npm test`: node's test runner in three lanes at once, each `node --import tsx --test FILES…`.
 *
 *  - the diff lane: the differential suite (test/lab-diff.test.ts), which brings up a lab per
 *    scenario, two at a time;
 *  - the lab lane: the other files that bring up real network namespaces (they call
 *    `labUnavailable`), two files at a time (the lane's longest file, collect-lab, is a quarter
 *    of it). Every lab has namespaces of its own (pw-<cluster>-…, each file's clusters named apart),
 *    and each file counts only its own when it checks what was left behind, so the lab files and
 *    the two lab lanes run side by side as the differential suite's own scenarios do;
 *  - the model lane: every other file (the simulation, the emulated tools against the real ones,
 *    tshark, the browser).
 *
 * The lab lanes spend most of their time waiting on the kernel, process starts and real clients,
 * the model lane on the CPU, so on two cores they overlap almost entirely. Each lane's output is prefixed
 * with its name. The exit status is 0 when both lanes passed.
 *
 *   npm test                                  # every test file
 *   npm test -- test/wire.test.ts test/lab-diff.test.ts
 *   npm test -- --serial                      # one lane: every file one after another
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const serial = args.includes('--serial');
const given = args.filter((a) => a !== '--serial');
const files = given.length
  ? given
  : readdirSync(join(ROOT, 'test'))
      .filter((f) => f.endsWith('.test.ts'))
      .sort()
      .map((f) => `test/${f}`);

const isDiff = (f: string) => f.endsWith('lab-diff.test.ts');
const isLab = (f: string) => /\blabUnavailable\(/.test(readFileSync(join(ROOT, f), 'utf8'));
const lanes: Lane[] = serial
  ? [{ name: 'all', files }]
  : [
      { name: 'diff', files: files.filter((f) => isLab(f) && isDiff(f)) },
      { name: 'lab', files: files.filter((f) => isLab(f) && !isDiff(f)), concurrency: 2 },
      { name: 'model', files: files.filter((f) => !isLab(f)) },
    ].filter((l) => l.files.length);

const width = Math.max(...lanes.map((l) => l.name.length));
const reporter = process.stdout.isTTY ? ['--test-reporter=spec'] : [];

const children: ReturnType<typeof spawn>[] = [];

const FAILURE_LINES = 60;

interface Lane {
  name: string;
  files: string[];
  concurrency?: number;
  failures?: string[][];
}

function runLane(lane: Lane): Promise<{ code: number; seconds: number }> {
  const started = performance.now();
  const concurrency = lane.concurrency ? [`--test-concurrency=${lane.concurrency}`] : [];
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--test', ...concurrency, ...reporter, ...lane.files],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FORCE_COLOR: process.stdout.isTTY ? '1' : '0' },
    },
  );
  children.push(child);
  const prefix = lanes.length > 1 ? `${lane.name.padEnd(width)} | ` : '';
  const failures: string[][] = [];
  let failing: { indent: string; lines: string[] } | null = null;
  // a failing test's TAP block, from `not ok` to its closing `...`, kept for the summary at the
  // end: in a CI log that shows only the tail, the lanes' thousands of passing lines hide it
  const watch = (line: string) => {
    // eslint-disable-next-line no-control-regex -- the spec reporter's colours
    const plain = line.replace(/\x1b\[[0-9;]*m/g, '');
    if (failing) {
      if (failing.lines.length < FAILURE_LINES) failing.lines.push(plain);
      if (plain === `${failing.indent}  ...`) failing = null;
      return;
    }
    const m = /^(\s*)not ok \d+ - /.exec(plain);
    if (m) failures.push((failing = { indent: m[1], lines: [plain] }).lines);
  };
  lane.failures = failures;
  for (const [from, to] of [
    [child.stdout, process.stdout],
    [child.stderr, process.stderr],
  ] as const) {
    let rest = '';
    from.on('data', (d: Buffer) => {
      const lines = (rest + d.toString('utf8')).split('\n');
      rest = lines.pop()!;
      if (from === child.stdout) lines.forEach(watch);
      if (lines.length) to.write(lines.map((l) => prefix + l + '\n').join(''));
    });
    from.on('end', () => rest && to.write(prefix + rest + '\n'));
  }
  return new Promise((resolve) =>
    child.on('close', (code, signal) =>
      resolve({ code: code ?? (signal ? 128 : 1), seconds: (performance.now() - started) / 1000 }),
    ),
  );
}

// a Ctrl-C reaches the lanes through the terminal's process group; a SIGTERM from a CI runner
// is passed on, so that the lab lane removes its namespaces before it exits
process.on('SIGTERM', () => children.forEach((c) => c.kill('SIGTERM')));
process.on('SIGINT', () => {});

const results = await Promise.all(lanes.map(runLane));
for (const lane of lanes) {
  for (const block of lane.failures ?? []) {
    process.stdout.write(`FAILED in the ${lane.name} lane:\n${block.map((l) => `  ${l}\n`).join('')}`);
  }
}
for (const [i, lane] of lanes.entries()) {
  const r = results[i];
  process.stdout.write(
    `${lane.name} lane: ${lane.files.length} files, ${r.seconds.toFixed(0)} s, ${r.code === 0 ? 'passed' : `FAILED (exit ${r.code})`}\n`,
  );
}
process.exitCode = results.every((r) => r.code === 0) ? 0 : 1;
