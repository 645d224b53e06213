/**
 * Golden `minimal` traces of the seed cluster in every mode: the regression oracle for the
 * datapath. A change in any decision, table entry or path shows up as a diff here.
 * Re-record after an intended change with: UPDATE_GOLDEN=1 npm test
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { seedCluster } from '../src/cluster/seed.ts';
import { CNI_MODES, type CalicoLayout, type CniMode } from '../src/cluster/spec.ts';
import { buildCluster } from '../src/cni/build.ts';
import { walk } from '../src/trace/walk.ts';
import { renderMinimal } from '../src/render/text.ts';

const dir = new URL('./golden/', import.meta.url);

function render(mode: (typeof CNI_MODES)[number], layout: CalicoLayout): string {
  const out: string[] = [];
  for (const to of ['pod-b', 'pod-c']) {
    const spec = { ...seedCluster(), calicoLayout: layout };
    const w = walk(buildCluster(spec, mode), { from: 'pod-a', to, proto: 'tcp', port: 8080 });
    out.push(`# pod-a -> ${to}:8080 tcp, request`, renderMinimal(w.request));
    if (w.reply) out.push(`# reply`, renderMinimal(w.reply));
  }
  return out.join('\n') + '\n';
}

// the calico-* modes in both layouts: <mode>.txt is the article's cni0 picture (calicoLayout:
// bridge), <mode>.calico.txt calico-node's own (cali* veths, proxy ARP, IPAM blocks)
const runs = CNI_MODES.flatMap((mode): [CniMode, CalicoLayout][] =>
  mode.startsWith('calico')
    ? [
        [mode, 'bridge'],
        [mode, 'calico'],
      ]
    : [[mode, 'bridge']],
);
for (const [mode, layout] of runs) {
  const name = layout === 'calico' ? `${mode}.calico` : mode;
  test(`golden minimal trace: ${name}`, () => {
    const file = new URL(`${name}.txt`, dir);
    const got = render(mode, layout);
    if (process.env.UPDATE_GOLDEN) writeFileSync(file, got);
    assert.ok(existsSync(file), `missing ${file.pathname}: run UPDATE_GOLDEN=1 npm test`);
    assert.equal(got, readFileSync(file, 'utf8'));
  });
}
