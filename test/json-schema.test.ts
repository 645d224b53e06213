/**
 * `--json` has a published schema (docs/trace.schema.json, generated from src/render/json.ts):
 * the file is up to date, and every trace podwalk produces — every CNI mode, every protocol,
 * same node and across nodes, whole exchanges, and every shipped scenario with its fault —
 * validates against it with no member the schema does not name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCluster } from '../src/cluster/load.ts';
import { seedCluster } from '../src/cluster/seed.ts';
import { CNI_MODES } from '../src/cluster/spec.ts';
import { SCENARIO_DIR } from '../src/cli/scenarios.ts';
import { traceToJson, TraceJsonSchema } from '../src/render/json.ts';
import { prepareCluster } from '../src/tools/index.ts';
import type { Trace } from '../src/trace/types.ts';
import { walk, type WalkRequest } from '../src/trace/walk.ts';
import { SCHEMA_FILE, schemaText } from '../scripts/write-schema.ts';

/** every event type and drop reason a trace carried, to show what the validation covered */
const seenEvents = new Set<string>();
const seenDrops = new Set<string>();

function validate(t: Trace, where: string): void {
  const json = JSON.parse(JSON.stringify(traceToJson(t)));
  const r = TraceJsonSchema.safeParse(json);
  assert.ok(r.success, `${where}: ${r.success ? '' : JSON.stringify(r.error.issues.slice(0, 3))}`);
  for (const h of t.hops) for (const s of h.steps) seenEvents.add(s.ev.type);
  if (t.disposition.kind === 'dropped') seenDrops.add(t.disposition.reason);
}

test('docs/trace.schema.json is what src/render/json.ts generates (npm run schema)', () => {
  assert.equal(readFileSync(SCHEMA_FILE, 'utf8'), schemaText());
});

test('every trace of the built-in cluster validates, in every mode', () => {
  const flows: WalkRequest[] = [
    { from: 'pod-a', to: 'pod-b', proto: 'tcp', port: 8080 },
    { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 8080, size: 8000 },
    { from: 'pod-a', to: 'pod-c', proto: 'udp', port: 8080, size: 1400 },
    { from: 'pod-a', to: 'pod-c', proto: 'udp', port: 9999 },
    { from: 'pod-a', to: 'pod-c', proto: 'icmp', size: 1472, df: true },
    { from: 'pod-a', to: 'pod-d', proto: 'udp', port: 53, size: 3000 },
    { from: 'pod-a', to: 'pod-c', proto: 'tcp', port: 9 },
    { from: 'node1', to: 'pod-c', proto: 'icmp' },
  ];
  for (const mode of CNI_MODES)
    for (const f of flows) {
      const c = prepareCluster(seedCluster(), mode);
      for (const t of walk(c, f, { exchange: true }).traces) validate(t, `${mode} ${JSON.stringify(f)}`);
    }
});

test('every trace of every shipped scenario validates', () => {
  const files = readdirSync(SCENARIO_DIR).filter((f) => f.endsWith('.yaml'));
  assert.ok(files.length >= 8);
  for (const f of files) {
    const spec = loadCluster(readFileSync(join(SCENARIO_DIR, f), 'utf8'), f);
    const s = spec.scenario!;
    for (const size of [undefined, 8000]) {
      const c = prepareCluster(spec, spec.cni);
      const w = walk(c, { from: s.from, to: s.to, proto: s.proto, port: s.port, size }, { exchange: true });
      for (const t of w.traces) validate(t, `${f} size ${size}`);
    }
  }
  // the validation covered the datapath's common events and most drop reasons
  for (const e of [
    'route',
    'neigh',
    'xmit',
    'rx',
    'encap-vxlan',
    'decap-vxlan',
    'netfilter',
    'conntrack',
    'drop',
  ])
    assert.ok(seenEvents.has(e), `no ${e} event was validated`);
  assert.ok(seenDrops.size >= 6, `drop reasons validated: ${[...seenDrops].join(', ')}`);
});
