/**
 * `calicoctl node status` on a node of a Calico mode: the BIRD peers (mesh, global, node specific) in
 * the table calicoctl prints with olekukonko/tablewriter (headers upper-cased and centred, cells
 * left-aligned), as calicoctl's node/status.go builds it from BIRD's `show protocols`: STATE is
 * BIRD's protocol state (up, start), SINCE the time of its last change (BIRD prints HH:MM:SS for
 * today), INFO the BGP state plus BIRD's last error. In flannel modes, and anywhere calico-node
 * is not running, it prints what calicoctl prints then; in calico-vxlan (no BIRD) that the BGP
 * backend is not running.
 */
import { ip4ToInt } from '../wire/addr.ts';
import { birdProtocols } from './birdc.ts';
import { peerTypeOf } from '../bgp/peering.ts';
import { MODE_INFO } from '../cni/modes.ts';
import { EPOCH_US, type Tool } from './types.ts';

/** HH:MM:SS of the simulated clock (UTC), as BIRD prints a change of today */
function since(us: number): string {
  const d = new Date(Math.floor((EPOCH_US + us) / 1000));
  const p2 = (n: number) => String(n).padStart(2, '0');
  return `${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())}`;
}

/** tablewriter's Pad: centred, the odd space on the right */
function centre(s: string, width: number): string {
  const gap = width - s.length;
  const left = Math.floor(gap / 2);
  return ' '.repeat(left) + s + ' '.repeat(gap - left);
}

/** tablewriter with its defaults: borders, a header row, a separator, the rows, a closing border */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = '+' + widths.map((w) => '-'.repeat(w + 2)).join('+') + '+\n';
  const row = (cells: string[]) => '|' + cells.map((c) => ` ${c} `).join('|') + '|\n';
  return (
    line +
    row(header.map((h, i) => centre(h.toUpperCase(), widths[i]))) +
    line +
    rows.map((r) => row(r.map((c, i) => c.padEnd(widths[i])))).join('') +
    line
  );
}

const USAGE = `Usage:
  calicoctl node status [--allow-version-mismatch]

Options:
  -h --help                    Show this screen.
     --allow-version-mismatch  Allow client and cluster versions mismatch.

Description:
  Check the status of the Calico node instance.  This includes the status and
  uptime of the node instance, and BGP peering states.
`;

export const calicoctl: Tool = (argv, ctx) => {
  const words = argv.filter((a) => a !== '--allow-version-mismatch');
  if (
    words[0] !== 'node' ||
    words[1] !== 'status' ||
    words.length > 3 ||
    (words[2] && !/^(-h|--help)$/.test(words[2]))
  ) {
    if (words[0] === 'node' && words[1] === 'status')
      return {
        stdout: '',
        stderr: `Invalid option: 'calicoctl ${argv.join(' ')}'. Use flag '--help' to read about a specific subcommand.\n`,
        code: 1,
      };
    return {
      stdout: '',
      stderr: `podwalk: calicoctl: only \`calicoctl node status' is emulated\n`,
      code: 2,
    };
  }
  if (words[2]) return { stdout: USAGE, stderr: '', code: 0 };
  const { cluster, netns } = ctx;
  const mesh = cluster.mesh;
  const node = cluster.nodes.find((n) => n.name === netns.name);
  // calico-node runs on the nodes of a Calico mode only (calicoctl looks for its process); with
  // calico_backend vxlan (calico-vxlan) it runs felix and no BIRD (status.go: no `bird` process)
  // and a BIRD that was killed (pkill -9 bird) no longer runs either
  if (
    node &&
    ((!mesh && MODE_INFO[cluster.mode].routeDaemon === 'felix') || (mesh && cluster.bgp?.killed(node.name)))
  )
    return {
      stdout: 'Calico process is running.\n\nThe BGP backend process (BIRD) is not running.\n\n',
      stderr: '',
      code: 0,
    };
  if (!mesh || !node) return { stdout: '', stderr: 'Calico process is not running.\n', code: 1 };
  // node/status.go reads BIRD's `show protocols` and splits each BGP row on white space (PEER
  // TYPE from the name's prefix, bgpTypeMap: Mesh_, Global_, Node_): STATE is
  // BIRD's protocol state, INFO its BGP state and last error joined by single spaces
  const peers = birdProtocols(cluster, node)
    .filter((p) => p.peer)
    .sort((a, b) => ip4ToInt(a.peer!.ip) - ip4ToInt(b.peer!.ip))
    .map((p) => [
      p.peer!.ip,
      peerTypeOf(p.name) ?? '',
      p.state,
      since(p.since),
      p.info.split(/\s+/).filter(Boolean).join(' '),
    ]);
  let out = 'Calico process is running.\n\nIPv4 BGP status\n';
  out += peers.length
    ? table(['Peer address', 'Peer type', 'State', 'Since', 'Info'], peers)
    : 'No IPv4 peers found.\n';
  out += '\nIPv6 BGP status\nNo IPv6 peers found.\n\n';
  return { stdout: out, stderr: '', code: 0 };
};
