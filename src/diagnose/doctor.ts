/**
 * `podwalk doctor`: walk a flow both ways (for TCP the whole exchange, and once more with
 * full-size segments), find the first step that fails and explain it, then run the cluster-wide
 * checks. The probes run one after the other on one cluster, each as a connection of its own (the
 * full-size probe from the next source port, the reverse one as ICMP from the other end), so no
 * probe's packets match another's conntrack entries or sockets; what an earlier probe leaves
 * behind (resolved neighbours, learned FDB entries) is what the node would hold, and changes no
 * later probe's outcome (test/diagnose.test.ts compares each probe with the same walk on a
 * cluster built anew, for every scenario). Building a cluster once, not once per probe, is what
 * makes doctor fast at 1,000 nodes.
 */
import type { Cluster } from '../cni/build.ts';
import { dispositionLine, flowLine } from '../render/text.ts';
import { traceToJson } from '../render/json.ts';
import { roleLabel, stepDetail } from '../render/step.ts';
import type { Proto, Step, Trace } from '../trace/types.ts';
import { resolveEndpoint, resolveService, walk, walkOk, type Walk } from '../trace/walk.ts';
import { describeCheck, runChecks, type CheckResult, type Finding } from './checks.ts';
import { explainDrop, renderExplanation, type Explanation } from './explain.ts';

export interface DoctorRequest {
  from: string;
  to: string;
  proto: Proto;
  port?: number;
  /** request size as `trace --size` takes it */
  size?: number;
}

/** bytes of request data for the full-size TCP probe: several segments at any MSS */
export const LARGE_REQUEST = 8000;

export interface Probe {
  name: 'forward' | 'full-size' | 'reverse';
  /** what the probe does, one line */
  what: string;
  walk: Walk;
  ok: boolean;
  /** a packet of the probe was dropped (the probe may still have completed, e.g. after PMTU discovery) */
  firstDrop?: { index: number; trace: Trace };
  /** the netns path of the first packet and of the first answer */
  path: string[];
  replyPath?: string[];
}

export interface Failure {
  probe: Probe['name'];
  /** which packet of the probe: "SYN", "request", "SYN-ACK"… */
  packet: string;
  step?: Step;
  explanation: Explanation;
  /** the probe still completed (e.g. TCP retried with smaller segments after ICMP) */
  recovered: boolean;
  /** the answer took another path than the request, and this is where it died */
  asymmetric?: { request: string[]; reply: string[] };
}

export interface DoctorReport {
  mode: string;
  request: DoctorRequest;
  probes: Probe[];
  failure?: Failure;
  checks: CheckResult[];
  /** observations that are not failures */
  warnings: string[];
  /** no failed probe and no problem found */
  healthy: boolean;
}

/** the namespaces a packet crossed that route (nodes and the router), in order */
function routedPath(c: Cluster, t: Trace): string[] {
  const out: string[] = [];
  for (const s of t.steps) {
    if (s.aux) continue;
    const role = c.world.netns.get(s.netns)?.role;
    if (role === 'segment') continue;
    if (out[out.length - 1] !== s.netns) out.push(s.netns);
  }
  return out;
}

/** TCP: the response reached the client; others: the request was answered */
function completed(w: Walk, proto: Proto): boolean {
  // an imported cluster's flow that left the collected nodes: nothing more can be checked
  if (proto !== 'tcp' || w.request.disposition.kind === 'outside') return walkOk(w);
  const client = w.request.flow.from;
  return w.traces.some(
    (t) =>
      t.flow.role.kind === 'response' && t.disposition.kind === 'delivered' && t.disposition.netns === client,
  );
}

export function doctor(c: Cluster, req: DoctorRequest): DoctorReport {
  const probes: Probe[] = [];
  let failure: Failure | undefined;
  let checks: CheckResult[] = [];
  // what the build warned about (e.g. NetworkPolicies a flannel mode does not enforce)
  const warnings: string[] = [...c.warnings];
  const run = (name: Probe['name'], what: string, r: DoctorRequest, sport?: number) => {
    const w = walk(
      c,
      { from: r.from, to: r.to, proto: r.proto, port: r.port, size: r.size, sport },
      { exchange: true },
    );
    const idx = w.traces.findIndex((t) => t.disposition.kind === 'dropped');
    const probe: Probe = {
      name,
      what,
      walk: w,
      ok: completed(w, r.proto) && idx < 0,
      firstDrop: idx >= 0 ? { index: idx, trace: w.traces[idx] } : undefined,
      path: routedPath(c, w.request),
      replyPath: w.reply ? routedPath(c, w.reply) : undefined,
    };
    probes.push(probe);
    // the cluster-wide checks read the kernel state as the forward probe left it
    if (probes.length === 1) checks = runChecks(c);
    if (!failure && probe.firstDrop) failure = explainFailure(c, probe);
  };
  // TO may be a name or an address: reversible when some pod or node owns it
  // or a Service (svc/NAME, NAMESPACE/NAME, its ClusterIP, NODE:NODEPORT): the walk goes through
  // kube-proxy's DNAT, and no reverse probe comes from a Service address
  const svc = resolveService(c, req.to, req.port, req.proto);
  const reversible = !svc && resolveEndpoint(c, req.to, 'destination').netns !== '';

  const port = req.proto === 'icmp' ? undefined : (req.port ?? svc?.port ?? 8080);
  const target = `${req.to}${port !== undefined ? `:${port}` : ''}`;
  run(
    'forward',
    `${req.proto.toUpperCase()} ${req.from} → ${target}${req.proto === 'tcp' ? ': handshake, request, response, close' : ' and its answer'}`,
    { ...req, port },
  );
  if (req.proto === 'tcp')
    run(
      'full-size',
      `TCP ${req.from} → ${target} with ${LARGE_REQUEST} bytes of request: full-size segments`,
      { ...req, port, size: LARGE_REQUEST },
      nextPort(probes[0].walk.request.flow.sport!),
    );
  // the other direction on its own: ICMP needs no listener on the source
  if (reversible)
    run('reverse', `ICMP echo ${req.to} → ${req.from}`, { from: req.to, to: req.from, proto: 'icmp' });

  // an asymmetric path that works is still worth knowing (rp_filter and stateful firewalls trip on it)
  const fwd = probes[0];
  const left = fwd.walk.request.disposition;
  if (left.kind === 'outside')
    warnings.push(
      `the flow left the collected nodes through ${left.netns} ${left.device}: podwalk cannot follow it beyond (collect the next hop too)`,
    );
  if (fwd.replyPath && !sameReversed(fwd.path, fwd.replyPath) && !failure?.asymmetric)
    warnings.push(
      `asymmetric path: the request went ${fwd.path.join(' → ')}, the answer ${fwd.replyPath.join(' → ')} (strict rp_filter or a stateful firewall on one side breaks this)`,
    );
  const healthy =
    probes.every((p) => p.ok) && checks.every((k) => k.findings.every((f) => f.severity !== 'problem'));
  return { mode: c.mode, request: { ...req, port }, probes, failure, checks, warnings, healthy };
}

/** the source port of the full-size probe: the next one after the forward probe's, a connection of its own */
export function nextPort(sport: number): number {
  return sport === 65535 ? sport - 1 : sport + 1;
}

/** the first dropped packet of a probe, explained on the cluster it was walked on */
function explainFailure(c: Cluster, probe: Probe): Failure {
  const { index, trace: t } = probe.firstDrop!;
  const explanation = explainDrop(c, t)!;
  const step = t.steps.find((s) => s.kind === 'drop' && !s.aux);
  const inReply = index > 0 && t.flow.from !== probe.walk.request.flow.from;
  const rp = probe.replyPath;
  const fw = probe.path;
  const asymmetric = inReply && rp && !sameReversed(fw, rp) ? { request: fw, reply: rp } : undefined;
  if (asymmetric)
    explanation.causes.unshift(
      `asymmetric return path: the request went ${fw.join(' → ')}, the answer ${rp!.join(' → ')}; ${explanation.netns} is on the return path only`,
    );
  return {
    probe: probe.name,
    packet: roleLabel(t.flow.role),
    step,
    explanation,
    recovered: completed(probe.walk, probe.walk.request.flow.proto),
    asymmetric,
  };
}

function sameReversed(a: string[], b: string[]): boolean {
  const r = [...b].reverse();
  return a.length === r.length && a.every((x, i) => x === r[i]);
}

/* ------------------------------------------------------------ rendering */

function probeLine(p: Probe): string {
  const w = p.walk;
  const drops = w.traces.filter((t) => t.disposition.kind === 'dropped');
  const state = p.ok
    ? 'ok'
    : p.firstDrop
      ? `${roleLabel(p.firstDrop.trace.flow.role)} ${dispositionLine(p.firstDrop.trace.disposition)}${
          drops.length > 1 ? ` (${drops.length} packets dropped)` : ''
        }`
      : `no answer: ${dispositionLine((w.reply ?? w.request).disposition)}`;
  return `  ${p.name.padEnd(9)} ${p.what}\n            ${p.ok ? '✓' : '✗'} ${state}`;
}

export function renderDoctor(r: DoctorReport): string {
  const out: string[] = [];
  const fwd = r.probes[0];
  out.push(`podwalk doctor: ${flowLine(fwd.walk.request.flow)} in ${r.mode}`);
  out.push('walks:');
  for (const p of r.probes) out.push(probeLine(p));
  out.push(
    `  path:     ${fwd.path.join(' → ')}${fwd.replyPath ? `   answer: ${fwd.replyPath.join(' → ')}` : ''}`,
  );
  if (r.failure) {
    const f = r.failure;
    out.push('');
    out.push(
      `first failure: ${f.probe} walk, ${f.packet}${f.step ? `, step ${f.step.n} in ${f.step.netns}${f.step.device ? ` at ${f.step.device}` : ''}` : ''}${
        f.recovered ? ' (the exchange recovered: the sender retried smaller)' : ''
      }`,
    );
    out.push(renderExplanation(f.explanation));
  }
  for (const w of r.warnings) out.push(`  ! ${w}`);
  const problems = r.checks.flatMap((k) => k.findings);
  out.push('');
  out.push(
    `cluster checks: ${problems.length ? `${problems.length} finding${problems.length > 1 ? 's' : ''}` : 'all passed'}`,
  );
  for (const k of r.checks) {
    if (!k.findings.length) {
      out.push(`  ✓ ${k.check.padEnd(24)} ${describeCheck(k.check)}`);
      continue;
    }
    for (const f of k.findings) out.push(findingLine(f));
  }
  out.push('');
  out.push(r.healthy ? 'verdict: healthy' : 'verdict: problems found');
  return out.join('\n');
}

function findingLine(f: Finding): string {
  return `  ${f.severity === 'problem' ? '✗' : '!'} ${f.check.padEnd(24)} ${f.message}${f.fix ? `\n    ${' '.repeat(24)} fix: ${f.fix}` : ''}`;
}

/** the report for machines: traces reduced to their outcomes, explanations whole */
export function doctorToJson(r: DoctorReport): unknown {
  return {
    mode: r.mode,
    request: r.request,
    healthy: r.healthy,
    probes: r.probes.map((p) => ({
      name: p.name,
      what: p.what,
      ok: p.ok,
      path: p.path,
      replyPath: p.replyPath,
      packets: p.walk.traces.map((t) => {
        const j = traceToJson(t);
        return { flow: j.flow, disposition: j.disposition };
      }),
    })),
    failure: r.failure && {
      probe: r.failure.probe,
      packet: r.failure.packet,
      step: r.failure.step && {
        n: r.failure.step.n,
        netns: r.failure.step.netns,
        device: r.failure.step.device,
        detail: stepDetail(r.failure.step),
      },
      recovered: r.failure.recovered,
      asymmetric: r.failure.asymmetric,
      explanation: r.failure.explanation,
    },
    checks: r.checks.map((k) => ({ check: k.check, ok: k.findings.length === 0, findings: k.findings })),
    warnings: r.warnings,
  };
}
