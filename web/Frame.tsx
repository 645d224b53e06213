/** A frame as nested header boxes (headerLayers, the same as the CLI's step list) and as hex. */
import { headerLayers, type HeaderLayer } from '../src/render/headers.ts';

export interface PlacedLayer extends HeaderLayer {
  index: number;
  /** byte offset in the frame: the layers come outermost first and follow each other */
  offset: number;
}

export function placeLayers(frame: Uint8Array): PlacedLayer[] {
  let offset = 0;
  return headerLayers(frame).map((l, index) => {
    const p = { ...l, index, offset };
    offset += l.bytes;
    return p;
  });
}

/**
 * Bytes the encapsulation adds: the outer headers, less the link header the inner packet would
 * have had anyway when the encapsulation does not carry it (IPinIP carries no inner Ethernet).
 */
export function encapOverhead(layers: readonly PlacedLayer[]): number {
  const inner = layers.find((l) => l.depth > 1);
  if (!inner) return 0;
  const outer = layers.filter((l) => l.depth === 1).reduce((n, l) => n + l.bytes, 0);
  return outer - (layers[0].name === 'Ethernet' && inner.name !== 'Ethernet' ? 14 : 0);
}

function Group({
  layers,
  depth,
  selected,
  onSelect,
}: {
  layers: readonly PlacedLayer[];
  depth: number;
  selected: number;
  onSelect(i: number): void;
}) {
  const own: PlacedLayer[] = [];
  const out: React.ReactNode[] = [];
  for (let i = 0; i < layers.length; i++) {
    const l = layers[i];
    if (l.depth === depth) {
      own.push(l);
      out.push(
        <button
          key={l.index}
          type="button"
          className={`hdr d${l.depth % 4}${l.index === selected ? ' selected' : ''}`}
          onClick={() => onSelect(l.index)}
          data-layer={l.name}
          aria-pressed={l.index === selected}
        >
          <span className="name">{l.name}</span> <span className="bytes">{l.bytes} B</span>
          <span className="fields">{l.fields}</span>
        </button>,
      );
    } else {
      const inner: PlacedLayer[] = [];
      while (i < layers.length && layers[i].depth > depth) inner.push(layers[i++]);
      i--;
      const total = inner.reduce((n, x) => n + x.bytes, 0);
      out.push(
        <div key={`g${inner[0].index}`} className="encap">
          <div className="encap-title">encapsulated ({total} B)</div>
          <Group layers={inner} depth={depth + 1} selected={selected} onSelect={onSelect} />
        </div>,
      );
    }
  }
  return <div className="hdr-group">{out}</div>;
}

export function HeaderBoxes({
  frame,
  selected,
  onSelect,
  caption,
}: {
  frame: Uint8Array;
  selected: number;
  onSelect(i: number): void;
  caption: string;
}) {
  const layers = placeLayers(frame);
  const headers = layers.filter((l) => l.name !== 'payload').reduce((n, l) => n + l.bytes, 0);
  const overhead = encapOverhead(layers);
  return (
    <div className="frame" data-testid="frame">
      <div className="frame-caption">{caption}</div>
      <Group layers={layers} depth={1} selected={selected} onSelect={onSelect} />
      <div className="totals" data-testid="totals">
        frame {frame.length} B · headers {headers} B · payload {frame.length - headers} B
        {overhead ? (
          <>
            {' '}
            · <b data-testid="overhead">encapsulation overhead {overhead} B</b>
          </>
        ) : null}
      </div>
      <Hex frame={frame} layers={layers} selected={selected} onSelect={onSelect} />
    </div>
  );
}

function Hex({
  frame,
  layers,
  selected,
  onSelect,
}: {
  frame: Uint8Array;
  layers: readonly PlacedLayer[];
  selected: number;
  onSelect(i: number): void;
}) {
  const owner = new Int32Array(frame.length).fill(-1);
  for (const l of layers)
    for (let i = l.offset; i < l.offset + l.bytes && i < frame.length; i++) owner[i] = l.index;
  const rows: React.ReactNode[] = [];
  for (let r = 0; r < frame.length; r += 16) {
    const cells: React.ReactNode[] = [];
    for (let i = r; i < Math.min(r + 16, frame.length); i++) {
      const o = owner[i];
      cells.push(
        <span
          key={i}
          className={`b l${o >= 0 ? layers[o].depth % 4 : 0}${o === selected ? ' sel' : ''}${o >= 0 && layers[o].offset === i ? ' start' : ''}`}
          onClick={() => o >= 0 && onSelect(o)}
        >
          {frame[i].toString(16).padStart(2, '0')}
        </span>,
      );
    }
    rows.push(
      <div key={r} className="hexrow">
        <span className="off">{r.toString(16).padStart(4, '0')}</span>
        {cells}
      </div>,
    );
  }
  return (
    <div className="hex" data-testid="hex">
      {rows}
    </div>
  );
}
