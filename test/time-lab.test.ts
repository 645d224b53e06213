/**
 * The over-time scenarios live on the real kernel (root only; skipped with the reason elsewhere):
 * each scenario's lab is brought up, the real ping, curl and ss run after the fault, and the
 * emulation runs the same commands at the same moments; their output text, exit status and the
 * state left behind (ip route get's cache line, ip neigh, nstat) must agree
 * (src/lab/time-compare.ts). Run it under `flock /tmp/podwalk-lab.lock`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labUnavailable } from '../src/lab/host.ts';
import { TIME_SCENARIOS } from '../src/lab/time-scenarios.ts';
import { recordTimeScenario } from '../src/lab/time-record.ts';
import { compareTimeRecord, mismatchReport } from '../src/lab/time-compare.ts';

const why = labUnavailable();
for (const s of TIME_SCENARIOS) {
  test(`over time on the real kernel: ${s.name}`, { skip: why }, async () => {
    const rec = await recordTimeScenario(s);
    const ms = compareTimeRecord(s, rec);
    assert.equal(ms.length, 0, `${s.title}\n${mismatchReport(ms)}`);
  });
}
