/**
 * Records what the real `ping` (iputils) and `curl` print on this kernel, and the state they
 * leave behind, for the emulated tools to be compared against (test/time-tools.test.ts). Needs
 * root, network namespaces, iputils-ping, curl, tcpdump and nstat.
 *
 *   npx tsx scripts/record-time-goldens.ts            # every scenario
 *   npx tsx scripts/record-time-goldens.ts pmtu       # one scenario
 *
 * Each scenario brings up the lab of the built-in cluster (flannel-vxlan, prefix pw-time-),
 * applies its fault commands, runs its client commands one after another (stdout, stderr, exit
 * status and when each started and ended), then the state commands (`ip route get`, `ip neigh`,
 * nstat counters, `ss`…), with tcpdump running on pod-a's and node1's eth0 the whole time
 * (kept as `tcpdump -r -nn -v -ttttt` text: when every ARP probe, SYN and ICMP error left). The
 * lab always comes down again.
 *
 * Output: test/golden/time/<scenario>.json
 */
import { writeFileSync } from 'node:fs';
import { recordTimeScenario } from '../src/lab/time-record.ts';
import { TIME_SCENARIOS } from '../src/lab/time-scenarios.ts';

const OUT = new URL('../test/golden/time/', import.meta.url);

const only = process.argv.slice(2);
for (const s of TIME_SCENARIOS) {
  if (only.length && !only.includes(s.name)) continue;
  process.stderr.write(`recording ${s.name} …\n`);
  const rec = await recordTimeScenario(s);
  writeFileSync(new URL(`${s.name}.json`, OUT), JSON.stringify(rec, null, 2) + '\n');
}
