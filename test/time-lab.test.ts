/**
 * The over-time scenarios live on the real kernel (root only; skipped with the reason elsewhere):
 * each scenario's lab is brought up, the real ping, curl and ss run after the fault, and the
 * emulation runs the same commands at the same moments; their output text, exit status and the
 * state left behind (ip route get's cache line, ip neigh, nstat) must agree
 * (src/lab/time-compare.ts). The model runs each state command when the kernel ran it, with the
 * reachable_time the kernel drew for each device (a loaded machine stretches a run past it). Run it under `flock /tmp/podwalk-lab.lock`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labUnavailable } from '../src/lab/host.ts';
import { TIME_SCENARIOS, type TimeRecord } from '../src/lab/time-scenarios.ts';
import { recordTimeScenario } from '../src/lab/time-record.ts';
import { compareTimeRecord, mismatchReport } from '../src/lab/time-compare.ts';

const why = labUnavailable();
const redrawn = (r: TimeRecord) => JSON.stringify(r.reachable?.before) !== JSON.stringify(r.reachable?.after);
for (const s of TIME_SCENARIOS) {
  test(`over time on the real kernel: ${s.name}`, { skip: why }, async () => {
    // the model takes the reachable_time the kernel drew; when the kernel drew again during the run
    // (neigh_periodic_work, every 300 s, at a moment nobody can read) the run is made again
    let rec = await recordTimeScenario(s);
    for (let again = 0; again < 2 && redrawn(rec); again++) rec = await recordTimeScenario(s);
    assert.ok(!redrawn(rec), 'the kernel drew reachable_time again during three runs in a row');
    const ms = compareTimeRecord(s, rec);
    assert.equal(ms.length, 0, `${s.title}\n${mismatchReport(ms)}`);
  });
}
