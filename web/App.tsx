/**
 * The page. It holds the page state (cluster, mode, flow, console commands, trace and step), asks
 * session.ts to build and walk through the core exactly as the CLI does, and renders the result.
 */
import { useEffect, useMemo, useRef, useState } from 'react';
import { CNI_MODES, type CniMode } from '../src/cluster/spec.ts';
import { dispositionLine, flowLine, renderSummary } from '../src/render/text.ts';
import { roleLabel, stepDetail, stepEntry, stepTable } from '../src/render/step.ts';
import { explainDrop, renderExplanation } from '../src/diagnose/explain.ts';
import { doctor, renderDoctor } from '../src/diagnose/doctor.ts';
import { cellWalkLine, computeMatrix, matrixLines, podString, type Matrix } from '../src/diagnose/matrix.ts';
import { parsePodSelector } from '../src/cluster/selector.ts';
import { pcapFiles } from '../src/tools/pcap-export.ts';
import { compareModes } from '../src/diagnose/compare-modes.ts';
import type { Proto, Step, Trace } from '../src/trace/types.ts';
import { Console, type ConsoleEntry } from './Console.tsx';
import { HeaderBoxes } from './Frame.tsx';
import { layoutCluster, serviceId } from './layout.ts';
import { EXAMPLES, SCENARIOS } from './scenarios.ts';
import {
  consoleRun,
  defaultFlow,
  destinationOf,
  destinations,
  encodeCluster,
  encodeState,
  loadYaml,
  natEndpoint,
  prepare,
  SERVED_DUMPS,
  seed,
  serviceTarget,
  simulate,
  type FlowForm,
  type LoadedCluster,
  type PageState,
} from './session.ts';
import { Topology, type ServicePath } from './Topology.tsx';

const LAYER: Record<number, string> = { 2: 'L2', 3: 'L3', 4: 'L4', 7: 'L7' };
const PLAY_MS = 600;

function download(name: string, bytes: Uint8Array): void {
  const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: 'application/vnd.tcpdump.pcap' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function StepList({ trace, at, onPick }: { trace: Trace; at: number; onPick(i: number): void }) {
  const cur = useRef<HTMLLIElement>(null);
  useEffect(() => {
    // a block body: newer browsers return a promise from scrollIntoView, which is no cleanup
    void cur.current?.scrollIntoView({ block: 'nearest' });
  }, [at, trace]);
  return (
    <ol className="steps" data-testid="steps">
      {trace.steps.map((s: Step, i) => (
        <li
          key={i}
          ref={i === at ? cur : undefined}
          className={`step${i === at ? ' current' : ''}${s.aux ? ' aux' : ''}${s.kind === 'drop' ? ' drop' : ''}${i > at ? ' future' : ''}`}
          onClick={() => onPick(i)}
          data-kind={s.kind}
          aria-current={i === at ? 'step' : undefined}
        >
          <span className="n">{s.n}</span>
          <span className="layer">{LAYER[s.layer]}</span>
          <span className="kind">{s.kind}</span>
          <span className="where">
            {s.netns}
            {s.device ? ` ${s.device}` : ''}
          </span>
          <span className="detail">
            {s.aux ? <i>({s.aux}) </i> : null}
            {s.part ? <i>{`{${s.part}} `}</i> : null}
            {stepDetail(s)}
          </span>
          {stepTable(s) && stepEntry(s) !== undefined ? (
            <span className="entry">
              <b>{stepTable(s)}:</b> {stepEntry(s)}
            </span>
          ) : null}
        </li>
      ))}
    </ol>
  );
}

/** `podwalk doctor` on the page's flow: the three probes, the first failure explained, the checks */
function Doctor({ loaded, state }: { loaded: LoadedCluster; state: PageState }) {
  const [report, setReport] = useState<{ key: string; text: string; healthy: boolean } | undefined>();
  const key = JSON.stringify([loaded.name, loaded.yaml.length, state.mode, state.run, state.flow]);
  const run = () => {
    const f = state.flow;
    try {
      const r = doctor(prepare(loaded, state.mode, state.run), {
        from: f.from,
        to: f.to,
        proto: f.proto,
        port: f.proto === 'icmp' ? undefined : f.port,
      });
      setReport({ key, text: renderDoctor(r), healthy: r.healthy });
    } catch (e) {
      setReport({ key, text: `podwalk: ${(e as Error).message}`, healthy: false });
    }
  };
  const current = report?.key === key ? report : undefined;
  return (
    <section className="doctor" aria-label="doctor">
      <h2>
        Doctor{' '}
        <button type="button" onClick={run}>
          diagnose this flow
        </button>
      </h2>
      {current ? (
        <pre className={current.healthy ? 'healthy' : 'problems'} data-testid="doctor">
          {current.text}
        </pre>
      ) : (
        <p className="note">
          Walks the flow both ways (TCP: also with full-size segments), explains the first failure and runs
          the cluster-wide checks, as <code>podwalk doctor</code> does.
        </p>
      )}
    </section>
  );
}

/**
 * `podwalk matrix` on the page's cluster, mode and console commands: the truth table of pods ×
 * pods, each cell a button that opens its walk as the page's flow
 */
function MatrixPanel({
  loaded,
  state,
  onCell,
}: {
  loaded: LoadedCluster;
  state: PageState;
  onCell(from: string, to: string, proto: 'tcp' | 'udp', port: number): void;
}) {
  const [form, setForm] = useState({ proto: 'tcp' as 'tcp' | 'udp', port: 8080, from: '', to: '' });
  const [result, setResult] = useState<{ key: string; m?: Matrix; error?: string } | undefined>();
  const key = JSON.stringify([loaded.name, loaded.yaml.length, state.mode, state.run, form]);
  const run = () => {
    try {
      const m = computeMatrix(loaded.spec, state.mode, state.run, {
        proto: form.proto,
        port: form.port,
        from: form.from.trim() ? parsePodSelector(form.from) : undefined,
        to: form.to.trim() ? parsePodSelector(form.to) : undefined,
      });
      setResult({ key, m });
    } catch (e) {
      setResult({ key, error: `podwalk: ${(e as Error).message}` });
    }
  };
  const current = result?.key === key ? result : undefined;
  const m = current?.m;
  const counts = m ? matrixLines(m, () => undefined) : undefined;
  return (
    <section className="matrix" aria-label="reachability matrix">
      <h2>Reachability matrix</h2>
      <form
        className="matrix-form"
        onSubmit={(e) => {
          e.preventDefault();
          run();
        }}
      >
        <label>
          proto
          <select
            name="matrix-proto"
            value={form.proto}
            onChange={(e) => setForm({ ...form, proto: e.target.value as 'tcp' | 'udp' })}
          >
            <option>tcp</option>
            <option>udp</option>
          </select>
        </label>
        <label>
          port
          <input
            type="number"
            name="matrix-port"
            min={1}
            max={65535}
            value={form.port}
            onChange={(e) => {
              const v = Number(e.target.value);
              if (Number.isInteger(v) && v >= 1 && v <= 65535) setForm({ ...form, port: v });
            }}
          />
        </label>
        <label>
          from
          <input
            name="matrix-from"
            placeholder="every pod (e.g. app=web)"
            value={form.from}
            onChange={(e) => setForm({ ...form, from: e.target.value })}
          />
        </label>
        <label>
          to
          <input
            name="matrix-to"
            placeholder="every pod"
            value={form.to}
            onChange={(e) => setForm({ ...form, to: e.target.value })}
          />
        </label>
        <button type="submit">compute the matrix</button>
      </form>
      {current?.error ? (
        <p className="error" data-testid="matrix-error">
          {current.error}
        </p>
      ) : null}
      {m ? (
        <>
          <p className="note" data-testid="matrix-summary">
            {m.proto}/{m.port} in {m.mode}: {counts?.cells} cells, {counts?.blocked} blocked;{' '}
            {m.grouping.used
              ? `${m.walks.length} walks, one per group of pods the model cannot tell apart (${m.grouping.groups} groups)`
              : `every cell walked (${m.grouping.reason})`}
            . Rows are sources, columns destinations; click a cell for its walk.
          </p>
          <div className="matrix-scroll">
            <table className="truth" data-testid="matrix">
              <thead>
                <tr>
                  <th>-</th>
                  {m.to.map((p) => (
                    <th key={p.name} scope="col">
                      <span>{podString(p)}</span>
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {m.from.map((a, i) => (
                  <tr key={a.name}>
                    <th scope="row">{podString(a)}</th>
                    {m.to.map((b, j) => {
                      const w = m.walks[m.walkOf(i, j)];
                      const cur =
                        state.flow.from === a.name &&
                        state.flow.to === b.name &&
                        state.flow.proto === m.proto &&
                        state.flow.port === m.port;
                      return (
                        <td key={b.name}>
                          <button
                            type="button"
                            className={`${w.ok ? 'ok' : 'blocked'}${cur ? ' current' : ''}`}
                            data-from={a.name}
                            data-to={b.name}
                            aria-label={`${podString(a)} to ${podString(b)}: ${w.ok ? 'reachable' : 'blocked'}`}
                            title={`${a.name} → ${b.name}: ${cellWalkLine(w)}${w.from !== a.name || w.to !== b.name ? ` (walked as ${w.from} → ${w.to}, a pair the model cannot tell apart)` : ''}`}
                            onClick={() => onCell(a.name, b.name, m.proto, m.port)}
                          >
                            {w.ok ? '.' : 'X'}
                          </button>
                        </td>
                      );
                    })}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      ) : current ? null : (
        <p className="note">
          Who reaches whom on one port, as <code>podwalk matrix</code> prints it (the layout of the Kubernetes
          NetworkPolicy e2e truth tables). The selectors take kubectl&apos;s <code>-l</code> syntax.
        </p>
      )}
    </section>
  );
}

function Compare({
  loaded,
  state,
  onMode,
}: {
  loaded: LoadedCluster;
  state: PageState;
  onMode(m: CniMode | undefined): void;
}) {
  const other = state.compare !== state.mode ? state.compare : undefined;
  const modes: CniMode[] = other ? [state.mode, other] : [];
  const rows = useMemo(
    () => (other ? compareModes(loaded.spec, [state.mode, other]) : []),
    [loaded, state.mode, other],
  );
  const sims = useMemo(
    () => modes.map((m) => simulate(loaded, m, state.run, state.flow)),
    [loaded, state.mode, other, state.run, state.flow],
  );
  return (
    <section className="compare" aria-label="modes side by side">
      <h2>
        Side by side with{' '}
        <select
          aria-label="mode to compare with"
          value={other ?? ''}
          onChange={(e) => onMode((e.target.value || undefined) as CniMode | undefined)}
        >
          <option value="">(none)</option>
          {CNI_MODES.filter((m) => m !== state.mode).map((m) => (
            <option key={m}>{m}</option>
          ))}
        </select>
      </h2>
      {other ? (
        <div className="cmp-grid" data-testid="compare">
          {modes.map((m, i) => {
            const r = rows[i];
            const s = sims[i];
            return (
              <div key={i} className="cmp-col">
                <h3>{m}</h3>
                {r ? (
                  <table>
                    <tbody>
                      <tr>
                        <th>pod MTU</th>
                        <td>
                          {r.podMtu} (underlay {r.underlayMtu})
                        </td>
                      </tr>
                      <tr>
                        <th>encapsulation</th>
                        <td>{r.encapsulation}</td>
                      </tr>
                      <tr>
                        <th>overhead</th>
                        <td>{r.overhead} B</td>
                      </tr>
                      <tr>
                        <th>underlay must know</th>
                        <td>{r.underlayMustKnow}</td>
                      </tr>
                    </tbody>
                  </table>
                ) : null}
                <pre className="summary">
                  {s.walk ? renderSummary(s.walk.request) : `no walk: ${s.error ?? ''}`}
                </pre>
              </div>
            );
          })}
        </div>
      ) : (
        <p className="hint">Pick a mode to see this flow's path and MTU in both.</p>
      )}
    </section>
  );
}

/** the scenario picker's value for the dumps `podwalk serve --from` serves */
const DUMPS_OPTION = '(dumps)';

export function App({ initial, loaded: initialLoaded }: { initial: PageState; loaded: LoadedCluster }) {
  const [loaded, setLoaded] = useState(initialLoaded);
  // `podwalk serve --from`: the served dumps stay one choice away after a scenario or file
  const served = initialLoaded.dumps ? initialLoaded : undefined;
  const [state, setState] = useState<PageState>(initial);
  const [playing, setPlaying] = useState(false);
  const [layer, setLayer] = useState(0);
  const [netns, setNetns] = useState(initialLoaded.spec.nodes[0].name);
  const [history, setHistory] = useState<ConsoleEntry[]>([]);
  const [loadError, setLoadError] = useState<string>();
  /** after a console command changed the model: show where the new walk ends */
  const [toEnd, setToEnd] = useState(false);
  const consoleInput = useRef<HTMLInputElement>(null);

  const sim = useMemo(
    () => simulate(loaded, state.mode, state.run, state.flow),
    [loaded, state.mode, state.run, state.flow],
  );
  const layout = useMemo(() => (sim.cluster ? layoutCluster(sim.cluster) : undefined), [sim]);
  const traces = sim.walk?.traces ?? [];
  const trace = traces[Math.min(state.trace, traces.length - 1)];
  const steps = trace?.steps ?? [];
  const at = Math.max(0, Math.min(state.step, steps.length - 1));
  const set = (p: Partial<PageState>) => setState((s) => ({ ...s, ...p }));
  const go = (i: number) => set({ step: Math.max(0, Math.min(i, steps.length - 1)) });

  // the URL follows the state, so that it can be shared
  useEffect(() => {
    const h = `#${encodeState({ ...state, trace: traces.indexOf(trace), step: at })}`;
    if (location.hash !== h) history_replace(h);
  });

  useEffect(() => {
    if (!toEnd) return;
    setToEnd(false);
    const req = sim.walk?.request.steps ?? [];
    const drop = req.findIndex((s) => s.kind === 'drop' && !s.aux);
    set({ trace: 0, step: drop >= 0 ? drop : req.length - 1 });
  }, [sim, toEnd]);

  useEffect(() => {
    if (!playing) return;
    if (at >= steps.length - 1) {
      setPlaying(false);
      return;
    }
    const t = setTimeout(() => go(at + 1), PLAY_MS);
    return () => clearTimeout(t);
  });

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement;
      if (t.closest('input, select, textarea') || e.ctrlKey || e.metaKey || e.altKey) return;
      const keys: Record<string, () => void> = {
        ArrowRight: () => go(at + 1),
        ArrowDown: () => go(at + 1),
        j: () => go(at + 1),
        ArrowLeft: () => go(at - 1),
        ArrowUp: () => go(at - 1),
        k: () => go(at - 1),
        Home: () => go(0),
        End: () => go(steps.length - 1),
        ' ': () => setPlaying((p) => !p),
        t: () => set({ trace: (state.trace + 1) % Math.max(1, traces.length), step: 0 }),
        '/': () => consoleInput.current?.focus(),
      };
      const f = keys[e.key];
      if (f) {
        e.preventDefault();
        f();
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  });

  const setFlow = (f: Partial<FlowForm>) =>
    setState((s) => ({ ...s, flow: { ...s.flow, ...f }, trace: 0, step: 0 }));
  const sources = sim.cluster
    ? [
        ...sim.cluster.pods.map((p) => p.name),
        ...sim.cluster.nodes.map((n) => n.name),
        ...sim.cluster.externalHosts.map((h) => h.name),
      ]
    : [];
  const dests = useMemo(() => (sim.cluster ? destinations(sim.cluster) : []), [sim.cluster]);
  const dest = destinationOf(dests, state.flow);
  const groups = [...new Set(dests.map((x) => x.group))];
  // a destination that is none of the choices (a link's ClusterIP, an address): offered as it is
  const typed = dest ? undefined : state.flow.to;
  const target = sim.cluster ? serviceTarget(sim.cluster, state.flow) : undefined;
  // once the walk is past kube-proxy's DNAT (or conntrack's un-NAT of the answer): the Service and
  // the endpoint taken, highlighted in the picture
  const takenIp = target && trace ? natEndpoint(target, steps, at) : undefined;
  const svcBox = target
    ? serviceId({ namespace: target.servicePort.namespace, name: target.servicePort.service })
    : undefined;
  const servicePath: ServicePath | undefined =
    svcBox && takenIp !== undefined
      ? { svc: svcBox, endpoint: layout?.endpoints.find((e) => e.svc === svcBox && e.ip === takenIp)?.to }
      : undefined;
  const cur = steps[at];
  let frameStep: Step | undefined;
  for (let i = at; i >= 0 && !frameStep; i--) if (steps[i]?.frame) frameStep = steps[i];
  const d = trace?.disposition;
  // the drop explained: stage, entry, counters, causes, and the real commands with their output
  const why = sim.cluster && trace ? explainDrop(sim.cluster, trace) : undefined;
  const dropAt = d?.kind === 'dropped' ? (d.device ? `${d.netns}|${d.device}` : d.netns) : undefined;

  const runConsole = (command: string) => {
    const o = consoleRun(sim, loaded, state.mode, state.run, netns, command);
    setHistory((h) => [...h, { netns, command, ...o }]);
    if (o.applied) {
      setState((s) => ({ ...s, run: [...s.run, `${netns}: ${command}`] }));
      setToEnd(true);
    }
  };

  const switchCluster = (l: LoadedCluster) => {
    setLoaded(l);
    setLoadError(undefined);
    setNetns(l.spec.nodes[0].name);
    setHistory([]);
    setState((s) => ({
      ...s,
      cluster: l.dumps ? SERVED_DUMPS : encodeCluster(l.yaml),
      mode: l.spec.cni,
      compare: undefined,
      run: [],
      trace: 0,
      step: 0,
      flow: defaultFlow(l.spec),
    }));
  };

  const onFile = async (file: File) => {
    try {
      switchCluster(loadYaml(await file.text(), file.name));
    } catch (e) {
      setLoadError((e as Error).message);
    }
  };

  return (
    <div className="app">
      <header>
        <h1>podwalk</h1>
        <form className="flow" onSubmit={(e) => e.preventDefault()} aria-label="the flow">
          <label>
            from
            <select value={state.flow.from} onChange={(e) => setFlow({ from: e.target.value })} name="from">
              {sources.map((n) => (
                <option key={n}>{n}</option>
              ))}
            </select>
          </label>
          <label>
            to
            <select
              value={dest?.key ?? typed}
              name="to"
              onChange={(e) => {
                const d = dests.find((x) => x.key === e.target.value);
                if (!d) return;
                setFlow({
                  to: d.to,
                  ...(d.port !== undefined ? { port: d.port } : {}),
                  ...(d.proto ? { proto: d.proto } : {}),
                  endpoint: undefined,
                });
              }}
            >
              {typed !== undefined ? <option value={typed}>{typed}</option> : null}
              {groups.map((g) => (
                <optgroup key={g} label={g}>
                  {dests
                    .filter((x) => x.group === g)
                    .map((x) => (
                      <option key={x.key} value={x.key}>
                        {x.label}
                      </option>
                    ))}
                </optgroup>
              ))}
            </select>
          </label>
          {target ? (
            <label title="kube-proxy's random choice: the flow's own draw, or the endpoint you pick (trace --endpoint)">
              endpoint
              <select
                value={state.flow.endpoint ?? ''}
                name="endpoint"
                onChange={(e) => setFlow({ endpoint: e.target.value || undefined })}
              >
                <option value="">(kube-proxy&apos;s draw)</option>
                {target.servicePort.endpoints.map((x) => (
                  <option key={x.text} value={x.pod}>
                    {x.pod} {x.text}
                  </option>
                ))}
              </select>
            </label>
          ) : null}
          <label>
            proto
            <select
              value={state.flow.proto}
              onChange={(e) => setFlow({ proto: e.target.value as Proto })}
              name="proto"
            >
              <option>tcp</option>
              <option>udp</option>
              <option>icmp</option>
            </select>
          </label>
          <label>
            port
            <input
              type="number"
              min={1}
              max={65535}
              value={state.flow.port}
              disabled={state.flow.proto === 'icmp'}
              name="port"
              onChange={(e) => {
                const v = Number(e.target.value);
                if (Number.isInteger(v) && v >= 1 && v <= 65535) setFlow({ port: v });
              }}
            />
          </label>
          <label>
            size
            <input
              type="number"
              min={28}
              max={65535}
              placeholder="default"
              value={state.flow.size ?? ''}
              name="size"
              onChange={(e) => {
                const v = e.target.value === '' ? undefined : Number(e.target.value);
                if (v === undefined || (Number.isInteger(v) && v >= 28 && v <= 65535)) setFlow({ size: v });
              }}
            />
          </label>
          <label className="check">
            <input
              type="checkbox"
              checked={state.flow.df || state.flow.proto === 'tcp'}
              disabled={state.flow.proto === 'tcp'}
              onChange={(e) => setFlow({ df: e.target.checked })}
              name="df"
            />
            DF
          </label>
          <label>
            mode
            <select
              value={state.mode}
              name="mode"
              disabled={!!loaded.dumps}
              title={loaded.dumps ? 'built from node dumps: the CNI is what the dumps look like' : undefined}
              onChange={(e) =>
                setState((s) =>
                  e.target.value === s.mode
                    ? s
                    : { ...s, mode: e.target.value as CniMode, compare: s.mode, trace: 0, step: 0 },
                )
              }
            >
              {CNI_MODES.map((m) => (
                <option key={m}>{m}</option>
              ))}
            </select>
          </label>
        </form>
        <div className="tools">
          <label>
            scenario{' '}
            <select
              aria-label="load a scenario"
              value={
                loaded.dumps
                  ? DUMPS_OPTION
                  : ([...SCENARIOS, ...EXAMPLES].find((x) => x.file === loaded.name)?.name ?? '')
              }
              onChange={(e) => {
                const sc = [...SCENARIOS, ...EXAMPLES].find((x) => x.name === e.target.value);
                if (e.target.value === DUMPS_OPTION && served) switchCluster(served);
                else switchCluster(sc ? loadYaml(sc.yaml, sc.file) : seed());
              }}
            >
              {served ? <option value={DUMPS_OPTION}>the node dumps ({served.name})</option> : null}
              <option value="">the built-in cluster</option>
              {SCENARIOS.map((x) => (
                <option key={x.name} value={x.name}>
                  {x.title}
                </option>
              ))}
              <optgroup label="examples">
                {EXAMPLES.map((x) => (
                  <option key={x.name} value={x.name}>
                    {x.title}
                  </option>
                ))}
              </optgroup>
            </select>
          </label>
          <label className="file">
            cluster: {loaded.name}
            <input
              type="file"
              accept=".yaml,.yml,text/yaml"
              aria-label="load a cluster YAML file"
              onChange={(e) => {
                const f = e.target.files?.[0];
                // cleared, so that choosing the same file again (after a scenario) loads it again
                e.target.value = '';
                if (f) void onFile(f);
              }}
            />
          </label>
          <button type="button" onClick={() => void navigator.clipboard?.writeText(location.href)}>
            copy link
          </button>
        </div>
      </header>
      {loadError ? <p className="error">{loadError}</p> : null}
      {state.run.length ? (
        <p className="runs" data-testid="runs">
          applied before the walk:{' '}
          {state.run.map((r, i) => (
            <code key={i}>{r}</code>
          ))}{' '}
          <button type="button" onClick={() => set({ run: [], step: 0 })}>
            reset the cluster
          </button>
        </p>
      ) : null}
      {sim.error ? (
        <p className="error" data-testid="error">
          {sim.error}
        </p>
      ) : null}
      <main>
        <section className="picture" aria-label="the cluster">
          {layout ? (
            <Topology
              layout={layout}
              steps={steps}
              at={at}
              dropAt={dropAt}
              service={servicePath}
              onPick={setNetns}
            />
          ) : null}
        </section>
        <section className="headers" aria-label="the frame">
          <h2>Frame</h2>
          {frameStep?.frame ? (
            <HeaderBoxes
              frame={frameStep.frame}
              selected={layer}
              onSelect={setLayer}
              caption={`${frameStep === cur ? 'at' : 'last seen at'} step ${frameStep.n}: ${frameStep.netns} ${frameStep.device ?? ''} (${frameStep.action})`}
            />
          ) : (
            <p className="hint">No frame on the wire yet at this step.</p>
          )}
        </section>
        <section className="walk" aria-label="the walk">
          {trace ? (
            <>
              <div className="traces" role="tablist" aria-label="packets of the exchange">
                {traces.map((t, i) => (
                  <button
                    key={i}
                    type="button"
                    role="tab"
                    aria-selected={t === trace}
                    className={`${t === trace ? 'on' : ''} ${t.disposition.kind}`}
                    onClick={() => set({ trace: i, step: 0 })}
                  >
                    {roleLabel(t.flow.role)}
                  </button>
                ))}
              </div>
              <div className="flowline">{flowLine(trace.flow)}</div>
              <div className={`disposition ${trace.disposition.kind}`} data-testid="disposition">
                {dispositionLine(trace.disposition)}
              </div>
              {why && (
                <details className="why" data-testid="why">
                  <summary>why: {why.reason} — the evidence a real node would show</summary>
                  <pre>{renderExplanation(why)}</pre>
                </details>
              )}
              <div className="controls" role="group" aria-label="step controls">
                <button type="button" onClick={() => go(0)} aria-label="first step" title="Home">
                  |◀
                </button>
                <button type="button" onClick={() => go(at - 1)} aria-label="back" title="←">
                  ◀ back
                </button>
                <button
                  type="button"
                  onClick={() => {
                    if (at >= steps.length - 1) go(0);
                    setPlaying((p) => !p);
                  }}
                  aria-label={playing ? 'pause' : 'play'}
                  title="space"
                >
                  {playing ? '⏸ pause' : '▶ play'}
                </button>
                <button type="button" onClick={() => go(at + 1)} aria-label="step" title="→">
                  step ▶
                </button>
                <button type="button" onClick={() => go(steps.length - 1)} aria-label="last step" title="End">
                  ▶|
                </button>
                <span className="pos" data-testid="pos">
                  step {cur?.n ?? 0} / {steps.length}
                </span>
              </div>
              <StepList trace={trace} at={at} onPick={go} />
            </>
          ) : null}
        </section>
      </main>
      <div className="lower">
        <Console
          cluster={sim.cluster}
          netns={netns}
          onNetns={setNetns}
          history={history}
          onRun={runConsole}
          inputRef={consoleInput}
        />
      </div>
      <Doctor loaded={loaded} state={state} />
      {loaded.dumps ? (
        <section className="warnings" aria-label="what the import could not represent">
          <h2>Built from node dumps</h2>
          <ul data-testid="import-warnings">
            {(loaded.warnings ?? []).map((w, i) => (
              <li key={i}>{w}</li>
            ))}
          </ul>
        </section>
      ) : (
        <>
          <MatrixPanel
            loaded={loaded}
            state={state}
            onCell={(from, to, proto, port) => {
              setState((s) => ({
                ...s,
                flow: { ...s.flow, from, to, proto, port, endpoint: undefined },
                trace: 0,
                step: 0,
              }));
              window.scrollTo({ top: 0 });
            }}
          />
          <Compare loaded={loaded} state={state} onMode={(m) => set({ compare: m })} />
        </>
      )}
      {sim.cluster ? (
        <section className="pcaps" aria-label="captures">
          <h2>Captures</h2>
          <p>
            {pcapFiles(sim.cluster.world).map((f) => (
              <button key={f.name} type="button" onClick={() => download(f.name, f.bytes)}>
                {f.name}
              </button>
            ))}
          </p>
        </section>
      ) : null}
      <footer>
        keys: ← → step · Home End first/last · space play · t next packet · / console · state in the URL
      </footer>
    </div>
  );
}

function history_replace(hash: string): void {
  window.history.replaceState(null, '', hash);
}
