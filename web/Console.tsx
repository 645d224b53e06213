/** A console in one network namespace: the emulated tools (runCommand), as `podwalk exec` runs them. */
import { useEffect, useRef, useState, type RefObject } from 'react';
import type { Cluster } from '../src/cni/build.ts';
import { TOOLS } from '../src/tools/index.ts';
import type { ConsoleOutcome } from './session.ts';

export interface ConsoleEntry extends ConsoleOutcome {
  netns: string;
  command: string;
}

export function Console({
  cluster,
  netns,
  onNetns,
  history,
  onRun,
  inputRef,
}: {
  cluster?: Cluster;
  netns: string;
  onNetns(n: string): void;
  history: readonly ConsoleEntry[];
  onRun(command: string): void;
  inputRef: RefObject<HTMLInputElement | null>;
}) {
  const [line, setLine] = useState('');
  const [back, setBack] = useState(0);
  const out = useRef<HTMLDivElement>(null);
  const mine = history.filter((h) => h.netns === netns);
  useEffect(() => {
    if (out.current) out.current.scrollTop = out.current.scrollHeight;
  }, [mine.length, netns]);
  const names = cluster ? [...cluster.world.netns.keys()] : [netns];
  const prompt = `${netns}${cluster?.world.netns.get(netns)?.role === 'pod' ? '$' : '#'}`;
  return (
    <section className="console" aria-label={`console in ${netns}`} data-testid="console">
      <h2>
        Console in{' '}
        <select value={netns} onChange={(e) => onNetns(e.target.value)} aria-label="network namespace">
          {names.map((n) => (
            <option key={n}>{n}</option>
          ))}
        </select>
      </h2>
      <div className="out" ref={out} data-testid="console-out">
        {mine.length === 0 ? (
          <div className="hint">
            {Object.keys(TOOLS).sort().join(', ')}: e.g. ip route, bridge fdb show, tcpdump -i cni0 -nn,
            iptables -L FORWARD -n -v; changes re-run the walk.
          </div>
        ) : null}
        {mine.map((h, i) => (
          <div key={i} className="entry">
            <div className="cmd">
              {prompt} {h.command}
            </div>
            {h.result.stdout ? <pre>{h.result.stdout}</pre> : null}
            {h.result.stderr ? <pre className="stderr">{h.result.stderr}</pre> : null}
            {h.result.code !== 0 ? <div className="status">exit {h.result.code}</div> : null}
            {h.applied ? <div className="applied">applied: the walk ran again</div> : null}
            {h.note ? <div className="status">{h.note}</div> : null}
          </div>
        ))}
      </div>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (!line.trim()) return;
          onRun(line.trim());
          setLine('');
          setBack(0);
        }}
      >
        <label>
          <span className="prompt">{prompt}</span>
          <input
            ref={inputRef}
            value={line}
            onChange={(e) => setLine(e.target.value)}
            onKeyDown={(e) => {
              const cmds = mine.map((h) => h.command);
              if (e.key === 'ArrowUp' && back < cmds.length) {
                e.preventDefault();
                setBack(back + 1);
                setLine(cmds[cmds.length - 1 - back]);
              } else if (e.key === 'ArrowDown' && back > 0) {
                e.preventDefault();
                setBack(back - 1);
                setLine(back - 1 ? cmds[cmds.length - back + 1] : '');
              } else if (e.key === 'Escape') inputRef.current?.blur();
            }}
            aria-label="command"
            name="command"
            autoComplete="off"
            spellCheck={false}
            placeholder="ip route"
          />
        </label>
      </form>
    </section>
  );
}
