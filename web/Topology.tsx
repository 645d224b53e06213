/** The cluster as it is, drawn from the layout, with the walk so far drawn over it. */
import type { Step } from '../src/trace/types.ts';
import { anchorOf, type Layout } from './layout.ts';

interface Props {
  layout: Layout;
  steps: readonly Step[];
  /** index of the current step */
  at: number;
  /** where the walk ended, when it was dropped: "netns|device" or "netns" */
  dropAt?: string;
  /** the Service the walk went through, once its DNAT (or the reply's un-NAT) is behind the current step */
  service?: ServicePath;
  onPick(netns: string): void;
}

/** a Service on the walk: its box, and the endpoint kube-proxy's DNAT chose (a pod's or host's box id) */
export interface ServicePath {
  svc: string;
  endpoint?: string;
}

/** The points the packet visited up to step `at`: each step at its device, else where the packet last was */
function pathOf(layout: Layout, steps: readonly Step[], at: number): { x: number; y: number }[] {
  const pts: { x: number; y: number }[] = [];
  for (let i = 0; i <= at && i < steps.length; i++) {
    const s = steps[i];
    if (s.aux && i !== at) continue;
    const p =
      (s.device !== undefined ? layout.anchors.get(`${s.netns}|${s.device}`) : undefined) ??
      (pts.length ? pts[pts.length - 1] : anchorOf(layout, s.netns));
    if (!p) continue;
    const last = pts[pts.length - 1];
    if (!last || last.x !== p.x || last.y !== p.y) pts.push(p);
  }
  return pts;
}

export function Topology({ layout, steps, at, dropAt, service, onPick }: Props) {
  const cur = steps[at];
  const curId = cur ? (cur.device !== undefined ? `${cur.netns}|${cur.device}` : cur.netns) : '';
  const pts = pathOf(layout, steps, at);
  const head = pts[pts.length - 1];
  return (
    <svg
      className="topology"
      viewBox={`0 0 ${layout.width} ${layout.height}`}
      role="img"
      aria-label="the cluster: nodes, pods, devices and the underlay"
      data-testid="topology"
    >
      {layout.buses.map((b, i) => (
        <g key={`bus${i}`} className="bus">
          <line x1={b.x1} y1={b.y} x2={b.x2} y2={b.y} />
          <text x={b.x2 - 4} y={b.y - 3} textAnchor="end">
            {b.segment} {b.cidr}
          </text>
        </g>
      ))}
      {layout.wires.map((w, i) => (
        <line
          key={`w${i}`}
          className={`wire ${w.kind}${w.up ? '' : ' down'}`}
          x1={w.x1}
          y1={w.y1}
          x2={w.x2}
          y2={w.y2}
        />
      ))}
      {layout.endpoints.map((e) => {
        const taken = service?.svc === e.svc && service.endpoint === e.to;
        return (
          <line
            key={`${e.svc} ${e.ip}`}
            className={`endpoint${e.ready ? '' : ' notready'}${taken ? ' taken' : ''}`}
            data-svc={e.svc}
            data-endpoint={e.to}
            data-ready={e.ready ? 'true' : 'false'}
            x1={e.x1}
            y1={e.y1}
            x2={e.x2}
            y2={e.y2}
          >
            <title>{`${e.svc.slice(4)} → ${e.to} ${e.ip}${e.ready ? '' : ' (not ready: no rules for it)'}`}</title>
          </line>
        );
      })}
      {layout.boxes.map((b) => {
        const classes = [
          'box',
          b.kind,
          b.up ? '' : 'down',
          b.id === curId || (cur && !cur.device && b.id === cur.netns && b.kind !== 'node') ? 'current' : '',
          b.id === dropAt ? 'dropped' : '',
          b.id === service?.svc ? 'walked' : '',
        ].join(' ');
        const small = b.kind === 'dev' || b.kind === 'routing';
        const twoLines = small && b.h >= 30;
        return (
          <g
            key={b.id}
            className={classes}
            data-id={b.id}
            onClick={(e) => {
              e.stopPropagation();
              if (b.netns) onPick(b.netns);
            }}
          >
            <rect x={b.x} y={b.y} width={b.w} height={b.h} rx={small ? 3 : 6} />
            <text x={b.x + 6} y={b.y + (small && !twoLines ? b.h / 2 + 4 : 14)} className="label">
              {b.label}
              {b.up ? null : <tspan className="downtag"> DOWN</tspan>}
              {b.sub && !twoLines ? <tspan className="sub"> {b.sub}</tspan> : null}
            </text>
            {b.sub && twoLines ? (
              <text x={b.x + 6} y={b.y + 27} className="sub">
                {b.sub}
              </text>
            ) : null}
            {(b.lines ?? []).map((l, i) => (
              <text key={i} x={b.x + 6} y={b.y + 29 + i * 13} className="line">
                {l}
              </text>
            ))}
          </g>
        );
      })}
      {pts.length > 1 ? (
        <polyline className="path" points={pts.map((p) => `${p.x},${p.y}`).join(' ')} />
      ) : null}
      {head ? (
        <circle className={`packet${cur?.kind === 'drop' ? ' dropped' : ''}`} cx={head.x} cy={head.y} r={7} />
      ) : null}
    </svg>
  );
}
