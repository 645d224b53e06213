/**
 * Wrapping output lines to a terminal's width, so that a walk reads on an 80-column terminal: a
 * line is broken between words, and its continuation lines start at a given column (under the
 * text they continue) instead of at the left margin where the terminal would put them. The CLI
 * wraps only when stdout is a terminal of known width; a pipe gets the lines whole, so output
 * there stays the same whatever the terminal.
 */

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

function visible(s: string): number {
  return s.replace(ANSI, '').length;
}

/** one line wrapped to `width` columns, continuations indented by `indent` (at most half the width) */
export function wrapLine(line: string, width: number, indent: number): string {
  if (width < 20 || visible(line) <= width) return line;
  const pad = ' '.repeat(Math.min(indent, Math.floor(width / 2)));
  const lead = /^\s*/.exec(line)![0];
  const words = line.slice(lead.length).split(' ');
  const out: string[] = [];
  let cur = lead;
  let curLen = visible(lead);
  let fresh = true;
  for (const w of words) {
    const len = visible(w);
    if (!fresh && curLen + 1 + len > width) {
      out.push(cur);
      cur = pad + w;
      curLen = pad.length + len;
      // a run of spaces where the line breaks is not carried over
      fresh = len === 0;
      continue;
    }
    cur += (fresh ? '' : ' ') + w;
    curLen += (fresh ? 0 : 1) + len;
    fresh = false;
  }
  out.push(cur);
  return out.join('\n');
}

/** every line of a text wrapped to `width` columns, each continuation two columns in from its line */
export function wrapText(text: string, width: number): string {
  return text
    .split('\n')
    .map((l) => wrapLine(l, width, /^\s*/.exec(l)![0].length + 2))
    .join('\n');
}
