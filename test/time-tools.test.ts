/**
 * The emulated ping, curl and ss against what the real ones printed on this kernel
 * (test/golden/time/, recorded by scripts/record-time-goldens.ts in the lab of the built-in
 * cluster): the same fault, the same commands at the same moments, the same output text and exit
 * status, and the same state afterwards (neighbour states, `ip route get` with its cache line,
 * the counters the model keeps). Normalised: times (RTTs, elapsed milliseconds, the cache
 * expiry countdown), ephemeral ports, and the order of hash-ordered dumps (src/lab/time-compare.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { TIME_SCENARIOS, type TimeRecord } from '../src/lab/time-scenarios.ts';
import { compareTimeRecord, mismatchReport } from '../src/lab/time-compare.ts';

for (const s of TIME_SCENARIOS) {
  test(`ping/curl/ss over time agree with the kernel's recording: ${s.name}`, () => {
    const file = new URL(`./golden/time/${s.name}.json`, import.meta.url);
    const rec = JSON.parse(readFileSync(file, 'utf8')) as TimeRecord;
    const ms = compareTimeRecord(s, rec);
    assert.equal(ms.length, 0, `${s.title}\n${mismatchReport(ms)}`);
  });
}
