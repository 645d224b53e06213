/**
 * `podwalk shell`: the emulated tools at a prompt, one namespace at a time, with history and tab
 * completion. Builtins: cd NETNS, ls, walk FROM TO[:PORT] [--proto P] [--size N] [--df], help, exit.
 */
import { createInterface, type Interface } from 'node:readline';
import type { Cluster } from '../cni/build.ts';
import { RuleSyntaxError, shellSplit } from '../kernel/netfilter.ts';
import { TOOLS, runCommand } from '../tools/index.ts';
import { walk, WalkError } from '../trace/walk.ts';
import type { Proto } from '../trace/types.ts';
import { renderSummary, type Style } from '../render/text.ts';

const BUILTINS = ['cd', 'ls', 'walk', 'help', 'exit', 'quit'];

const HELP = `podwalk shell: the emulated tools on the simulated cluster.
  cd NETNS                 run the next commands in a pod or node (also: cd ..  back to the first node)
  ls                       the network namespaces
  walk FROM TO[:PORT] [--proto tcp|udp|icmp] [--size N] [--df]
                           walk a flow (its packets then show in tcpdump, counters, conntrack)
  help, exit
  commands: ${Object.keys(TOOLS).sort().join(', ')}`;

export interface ShellIo {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  interactive: boolean;
  style: Style;
}

function parseWalk(args: string[]): {
  from: string;
  to: string;
  port?: number;
  proto: Proto;
  size?: number;
  df: boolean;
} {
  const pos: string[] = [];
  let proto: Proto = 'tcp';
  let size: number | undefined;
  let df = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--proto') {
      const p = args[++i];
      if (p !== 'tcp' && p !== 'udp' && p !== 'icmp')
        throw new WalkError(`--proto takes tcp, udp or icmp, not "${p ?? ''}"`);
      proto = p;
    } else if (a === '--size') {
      size = Number(args[++i]);
      if (!Number.isInteger(size) || size < 28 || size > 65535)
        throw new WalkError('--size takes an integer from 28 to 65535');
    } else if (a === '--df') df = true;
    else if (a.startsWith('-')) throw new WalkError(`walk: unknown option ${a}`);
    else pos.push(a);
  }
  if (pos.length !== 2)
    throw new WalkError('usage: walk FROM TO[:PORT] [--proto tcp|udp|icmp] [--size N] [--df]');
  const m = /^(.*?)(?::(\d+))?$/.exec(pos[1])!;
  return { from: pos[0], to: m[1], port: m[2] ? Number(m[2]) : undefined, proto, size, df };
}

/** completions for the word being typed: commands first, then namespace, device and tool words */
export function complete(c: Cluster, netns: string, line: string): string[] {
  const words = line.split(/\s+/);
  const cur = words[words.length - 1];
  let cands: string[];
  if (words.length === 1) cands = [...BUILTINS, ...Object.keys(TOOLS)];
  else if (words[0] === 'cd' || words[0] === 'walk') cands = [...c.world.netns.keys()];
  else {
    const ns = c.world.netns.get(netns);
    const devs = ns ? [...ns.links.keys()] : [];
    const sub: Record<string, string[]> = {
      ip: [
        'route',
        'addr',
        'link',
        'neigh',
        'show',
        'get',
        'add',
        'del',
        'replace',
        'set',
        'dev',
        'up',
        'down',
        'mtu',
        '-d',
        '-s',
        '-j',
        '-p',
      ],
      bridge: [
        'fdb',
        'link',
        'show',
        'add',
        'del',
        'append',
        'dev',
        'br',
        'dst',
        'self',
        'master',
        'permanent',
      ],
      tcpdump: [
        '-i',
        '-nn',
        '-e',
        '-v',
        '-vv',
        '-c',
        'host',
        'port',
        'tcp',
        'udp',
        'icmp',
        'arp',
        'and',
        'or',
        'not',
      ],
      iptables: ['-L', '-n', '-v', '-t', 'filter', '-A', '-I', '-D', '-S', 'FORWARD', 'INPUT', 'OUTPUT'],
      conntrack: ['-L', '-p', '-s', '-d'],
      sysctl: ['-w', '-n', 'net.ipv4.ip_forward', 'net.ipv4.conf.all.rp_filter'],
      calicoctl: ['node', 'status'],
      birdc: ['show', 'protocols', 'route', 'protocol', 'disable'],
    };
    cands = [...(sub[words[0]] ?? []), ...devs, ...c.world.netns.keys()];
  }
  return [...new Set(cands)].filter((x) => x.startsWith(cur)).sort();
}

/** runs until exit or end of input; returns the status of the last command */
export function runShell(c: Cluster, io: ShellIo, start: string): Promise<number> {
  let netns = start;
  let last = 0;
  const write = (s: string) => io.output.write(s.endsWith('\n') || s === '' ? s : s + '\n');
  const prompt = () =>
    `${io.style.accent(`[${c.mode}]`)} ${netns}${c.world.netns.get(netns)?.role === 'pod' ? '$' : '#'} `;
  const rl: Interface = createInterface({
    input: io.input,
    output: io.output,
    terminal: io.interactive,
    historySize: 1000,
    completer: (line: string) => {
      const hits = complete(c, netns, line);
      return [hits, line.split(/\s+/).pop() ?? ''];
    },
  });
  if (io.interactive) write(io.style.dim(`podwalk shell on ${c.spec.name} (${c.mode}). Type help.`));
  rl.setPrompt(prompt());
  if (io.interactive) rl.prompt();
  return new Promise((resolve) => {
    rl.on('line', (line) => {
      let words: string[];
      try {
        words = shellSplit(line.trim());
      } catch (e) {
        if (!(e instanceof RuleSyntaxError)) throw e;
        write(`podwalk: ${e.message}`);
        words = [];
      }
      const [cmd, ...args] = words;
      if (cmd === 'exit' || cmd === 'quit') {
        rl.close();
        return;
      }
      if (!cmd) {
        /* empty line */
      } else if (cmd === 'help') write(HELP);
      else if (cmd === 'ls') {
        for (const ns of c.world.netns.values()) write(`${ns.name.padEnd(12)} ${ns.role}`);
        last = 0;
      } else if (cmd === 'cd') {
        const target = args[0] === '..' || !args[0] ? c.nodes[0].name : args[0];
        if (c.world.netns.has(target)) {
          netns = target;
          last = 0;
        } else {
          write(`cd: no network namespace "${target}" (${[...c.world.netns.keys()].join(', ')})`);
          last = 2;
        }
      } else if (cmd === 'walk') {
        try {
          const w = walk(c, parseWalk(args));
          write(renderSummary(w.request, io.style));
          if (w.reply) write(renderSummary(w.reply, io.style));
          last = 0;
        } catch (e) {
          if (!(e instanceof WalkError)) throw e;
          write(`walk: ${e.message}`);
          last = 2;
        }
      } else {
        const r = runCommand(c, netns, words);
        if (r.stdout) io.output.write(r.stdout);
        if (r.stderr) io.output.write(r.stderr);
        last = r.code;
      }
      rl.setPrompt(prompt());
      if (io.interactive) rl.prompt();
    });
    rl.on('close', () => {
      if (io.interactive) write('');
      resolve(last);
    });
  });
}
