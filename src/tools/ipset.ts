/**
 * `ipset` (v7.17, protocol 7) on the namespace's IP sets (src/kernel/ipset.ts): create, add, del,
 * test, destroy, flush, swap, list (-name, -terse, -output save) and save, with the real tool's
 * messages and exit codes (a kernel refusal: "ipset v7.17: MESSAGE", 1; a usage error: the message,
 * "Try `ipset help'…", 2); `ipsetRestore` runs `ipset restore` on a text (line by line, as the real
 * one: the lines before a failing one stay applied; the error names the line).
 *
 * Two fields the model cannot print as a kernel does, and its goldens compare masked: `initval`
 * (random in the kernel; the model's is the one its creator gave, or derived from the world's seed,
 * the namespace and the set's name), and `Size in memory` (the kernel's allocation; the model
 * counts each element in a bucket of its own, 216 or 456 bytes plus 32 + 2 × 8 per element).
 * Members are listed in the order they were added; the kernel lists them in its hash order.
 */
import {
  IPSET_MAX_NAME,
  IPSET_REVISION,
  IPSET_TYPES,
  IpsetError,
  ipsetAdd,
  ipsetCreate,
  ipsetDel,
  ipsetDestroy,
  ipsetFlush,
  ipsetReferences,
  ipsetsInOrder,
  ipsetSwap,
  ipsetTest,
  type IpSet,
  type IpsetEntry,
  type IpsetErrorCode,
  type IpsetType,
} from '../kernel/ipset.ts';
import { strtouiFull } from '../kernel/netfilter/parse.ts';
import { intToIp4 } from '../wire/addr.ts';
import { ToolFailure, type Tool, type ToolContext, type ToolResult } from './types.ts';

const PROG = 'ipset v7.17';
const TRY = "Try `ipset help' for more information.\n";

const MESSAGES: Record<IpsetErrorCode, string> = {
  'no-set': 'The set with the given name does not exist',
  'no-set2': 'Sets cannot be swapped: the second set does not exist',
  'set-exists': 'Set cannot be created: set with the same name already exists',
  exists: "Element cannot be added to the set: it's already added",
  'not-added': "Element cannot be deleted from the set: it's not added",
  busy: 'Set cannot be destroyed: it is in use by a kernel component',
  'type-mismatch': 'The sets cannot be swapped: their type does not match',
  full: 'Hash is full, cannot add more elements',
  'invalid-cidr': 'The value of the CIDR parameter of the IP address is invalid',
};

/** a kernel refusal or a value the tool refuses: exit 1 */
const fail1 = (msg: string) => new ToolFailure(1, `${PROG}: ${msg}\n`);
/** a command-line error: exit 2, with the hint */
const usage = (msg: string) => new ToolFailure(2, `${PROG}: ${msg}\n${TRY}`);

/** inet_aton: a, a.b, a.b.c or a.b.c.d, each part decimal, 0x hex or 0 octal; the last fills what is left */
function inetAton(s: string): number | undefined {
  const parts = s.split('.');
  if (parts.length > 4) return undefined;
  const nums: number[] = [];
  for (const p of parts) {
    const n = /^0x[0-9a-f]+$/i.test(p)
      ? parseInt(p, 16)
      : /^0[0-7]*$/.test(p)
        ? parseInt(p, 8)
        : /^[1-9]\d*$/.test(p)
          ? Number(p)
          : NaN;
    if (!Number.isFinite(n)) return undefined;
    nums.push(n);
  }
  const last = nums.pop()!;
  if (nums.some((n) => n > 255) || last >= 2 ** (8 * (4 - nums.length))) return undefined;
  let v = 0;
  for (const n of nums) v = v * 256 + n;
  return (v * 2 ** (8 * (4 - nums.length)) + last) >>> 0;
}

function parseIp(text: string): number {
  const ip = inetAton(text);
  if (ip === undefined) throw fail1(`Syntax error: cannot parse ${text}: resolving to IPv4 address failed`);
  return ip;
}

/** IP[/CIDR]: cidr 32 when none is given */
function parseIpCidr(text: string): { ip: number; cidr: number } {
  const slash = text.indexOf('/');
  if (slash < 0) return { ip: parseIp(text), cidr: 32 };
  const cidr = strtouiFull(text.slice(slash + 1), 32);
  const ip = parseIp(text.slice(0, slash));
  if (cidr === undefined || cidr === 0) throw fail1(MESSAGES['invalid-cidr']);
  return { ip, cidr };
}

const PROTOS: Record<string, number> = { tcp: 6, udp: 17 };
const PROTO_NAME: Record<number, string> = { 6: 'tcp', 17: 'udp' };

/** the elements an ENTRY argument stands for in a set of `type` */
function parseEntries(type: IpsetType, text: string): IpsetEntry[] {
  if (type === 'hash:net') {
    if (text.includes('-')) throw fail1('podwalk does not model IP ranges in hash:net sets');
    return [{ ...parseIpCidr(text), proto: 0, port: 0 }];
  }
  let ipText = text;
  let portText: string | undefined;
  if (type === 'hash:ip,port') {
    const comma = text.indexOf(',');
    if (comma < 0) throw fail1(`Syntax error: Second element is missing from ${text}.`);
    ipText = text.slice(0, comma);
    portText = text.slice(comma + 1);
  }
  if (ipText.includes('-')) throw fail1('podwalk does not model IP ranges');
  const { ip, cidr } = parseIpCidr(ipText);
  const base = (ip & (cidr === 0 ? 0 : (0xffffffff << (32 - cidr)) >>> 0)) >>> 0;
  const ips = Array.from({ length: 2 ** (32 - cidr) }, (_, i) => (base + i) >>> 0);
  if (portText === undefined) return ips.map((a) => ({ ip: a, cidr: 32, proto: 0, port: 0 }));
  const colon = portText.indexOf(':');
  const protoName = colon < 0 ? 'tcp' : portText.slice(0, colon).toLowerCase();
  const proto = PROTOS[protoName];
  if (proto === undefined)
    throw fail1(`podwalk does not model the protocol ${protoName} in hash:ip,port sets`);
  const range = colon < 0 ? portText : portText.slice(colon + 1);
  const [lo, hi = lo] = range.split('-').map((p) => strtouiFull(p, 65535));
  if (lo === undefined || hi === undefined || hi < lo)
    throw fail1(`Syntax error: cannot parse '${range}' as a ${protoName} port`);
  const out: IpsetEntry[] = [];
  for (const a of ips) for (let p = lo; p <= hi; p++) out.push({ ip: a, cidr: 32, proto, port: p });
  return out;
}

/** an element as ipset prints it */
export function entryText(s: IpSet, e: IpsetEntry): string {
  if (s.type === 'hash:net') return e.cidr === 32 ? intToIp4(e.ip) : `${intToIp4(e.ip)}/${e.cidr}`;
  if (s.type === 'hash:ip,port') return `${intToIp4(e.ip)},${PROTO_NAME[e.proto] ?? e.proto}:${e.port}`;
  return intToIp4(e.ip);
}

const hex8 = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

function headerText(s: IpSet): string {
  return `family ${s.family} hashsize ${s.hashsize} maxelem ${s.maxelem} bucketsize ${s.bucketsize} initval ${hex8(s.initval)}`;
}

/** the model's `Size in memory` (see the file comment: not the kernel's allocation) */
function memSize(s: IpSet): number {
  return (s.type === 'hash:net' ? 456 : 216) + s.entries.length * 48;
}

/** `ipset save [NAME]` text: the create line, then one add line per element */
export function ipsetSaveText(nf: ToolContext['netns']['netfilter'], name?: string): string {
  const sets = name === undefined ? ipsetsInOrder(nf) : [nf.ipsets.get(name)!];
  let out = '';
  for (const s of sets) {
    out += `create ${s.name} ${s.type} ${headerText(s)}\n`;
    for (const e of s.entries) out += `add ${s.name} ${entryText(s, e)}\n`;
  }
  return out;
}

function listText(nf: ToolContext['netns']['netfilter'], sets: IpSet[], terse: boolean): string {
  return sets
    .map((s) => {
      let t =
        `Name: ${s.name}\nType: ${s.type}\nRevision: ${IPSET_REVISION[s.type]}\nHeader: ${headerText(s)}\n` +
        `Size in memory: ${memSize(s)}\nReferences: ${ipsetReferences(nf, s.name)}\n` +
        `Number of entries: ${s.entries.length}\n`;
      if (!terse) t += `Members:\n${s.entries.map((e) => entryText(s, e) + '\n').join('')}`;
      return t;
    })
    .join('\n');
}

const COMMANDS: Record<string, string> = {
  create: 'create',
  n: 'create',
  add: 'add',
  del: 'del',
  test: 'test',
  destroy: 'destroy',
  x: 'destroy',
  flush: 'flush',
  list: 'list',
  save: 'save',
  swap: 'swap',
  w: 'swap',
  restore: 'restore',
  version: 'version',
};

const CREATE_OPTS = ['family', 'hashsize', 'maxelem', 'bucketsize', 'initval'];

function setName(name: string): string {
  if (name.length > IPSET_MAX_NAME)
    throw fail1(`Syntax error: setname '${name}' is longer than ${IPSET_MAX_NAME} characters`);
  return name;
}

/** one ipset command (argv without "ipset"); stdout text, or a ToolFailure */
function run(argv: readonly string[], ctx: ToolContext): { stdout: string; stderr: string; code: number } {
  const nf = ctx.netns.netfilter;
  let exist = false;
  let terse = false;
  let names = false;
  let saveOut = false;
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-exist' || a === '--exist' || a === '-!') exist = true;
    else if (a === '-t' || a === '-terse' || a === '--terse') terse = true;
    else if (a === '-n' || a === '-name' || a === '--name') names = true;
    else if (a === '-o' || a === '-output' || a === '--output') {
      const f = argv[++i];
      if (f === 'save') saveOut = true;
      else if (f !== 'plain') throw usage(`Syntax error: unknown output mode '${f ?? ''}'`);
    } else if (a.startsWith('-') && a.length > 1 && words.length > 0 && !/^-\d/.test(a))
      throw usage(`Syntax error: unknown option '${a}'`);
    else words.push(a);
  }
  if (words.length === 0) throw usage('No command specified.');
  const cmd = COMMANDS[words[0]];
  if (!cmd) throw usage(`No command specified: unknown argument ${words[0]}`);
  const args = words.slice(1);
  const need = (n: number, which: string) => {
    if (args.length < n) throw usage(`Missing ${which} mandatory argument to command ${cmd}`);
  };
  const kernel = (f: () => void) => {
    try {
      f();
    } catch (e) {
      if (e instanceof IpsetError) throw fail1(MESSAGES[e.code]);
      throw e;
    }
  };
  const ok = (stdout = '') => ({ stdout, stderr: '', code: 0 });
  switch (cmd) {
    case 'version':
      return ok(`${PROG}, protocol version: 7\n`);
    case 'create': {
      need(1, 'first');
      need(2, 'second');
      const name = setName(args[0]);
      const type = args[1] as IpsetType;
      if (!(IPSET_TYPES as readonly string[]).includes(type))
        throw fail1(`Syntax error: typename '${args[1]}' is unknown`);
      const req: Parameters<typeof ipsetCreate>[1] = {
        name,
        type,
        initval: ctx.cluster.world.derive('ipset-initval', ctx.netns.name, name),
        exist,
      };
      for (let i = 2; i < args.length; i += 2) {
        const o = args[i];
        if (!CREATE_OPTS.includes(o)) throw fail1(`Syntax error: Unknown argument: '${o}'`);
        const v = args[i + 1];
        if (v === undefined) throw fail1(`Syntax error: Missing mandatory argument of option '${o}'`);
        if (o === 'family') {
          if (v !== 'inet') throw fail1(`podwalk models family inet only, not '${v}'`);
          continue;
        }
        const n = strtouiFull(v, 0xffffffff);
        if (n === undefined) throw fail1(`Syntax error: '${v}' is invalid as number`);
        if (o === 'hashsize') req.hashsize = n;
        else if (o === 'maxelem') req.maxelem = n;
        else if (o === 'bucketsize') req.bucketsize = n;
        else req.initval = n;
      }
      kernel(() => ipsetCreate(nf, req));
      return ok();
    }
    case 'add':
    case 'del':
    case 'test': {
      need(1, 'first');
      need(2, 'second');
      const s = nf.ipsets.get(args[0]);
      if (!s) throw fail1(MESSAGES['no-set']);
      if (args.length > 2) throw fail1(`Syntax error: Unknown argument: '${args[2]}'`);
      const entries = parseEntries(s.type, args[1]);
      if (cmd === 'test') {
        if (entries.length !== 1) throw fail1('podwalk does not model testing a range');
        let hit = false;
        kernel(() => (hit = ipsetTest(nf, s.name, entries[0])));
        if (!hit) throw new ToolFailure(1, `${args[1]} is NOT in set ${s.name}.\n`);
        return { stdout: '', stderr: `Warning: ${args[1]} is in set ${s.name}.\n`, code: 0 };
      }
      kernel(() => (cmd === 'add' ? ipsetAdd : ipsetDel)(nf, s.name, entries, exist));
      return ok();
    }
    case 'destroy':
    case 'flush':
      kernel(() => (cmd === 'destroy' ? ipsetDestroy : ipsetFlush)(nf, args[0]));
      return ok();
    case 'swap':
      need(1, 'first');
      need(2, 'second');
      kernel(() => ipsetSwap(nf, args[0], args[1]));
      return ok();
    case 'list':
    case 'save': {
      const name = args[0];
      if (name !== undefined && !nf.ipsets.has(name)) throw fail1(MESSAGES['no-set']);
      if (cmd === 'save' || saveOut) return ok(ipsetSaveText(nf, name));
      const sets = name === undefined ? ipsetsInOrder(nf) : [nf.ipsets.get(name)!];
      if (names) return ok(sets.map((s) => s.name + '\n').join(''));
      return ok(listText(nf, sets, terse));
    }
    case 'restore':
      throw usage(
        'podwalk: ipset restore reads its commands from standard input, which this command line has none of',
      );
  }
  throw usage(`No command specified: unknown argument ${words[0]}`);
}

export const ipset: Tool = (argv, ctx): ToolResult => {
  try {
    return run(argv, ctx);
  } catch (e) {
    if (e instanceof ToolFailure) return { stdout: '', stderr: e.stderr, code: e.code };
    throw e;
  }
};

/**
 * `ipset restore [-exist]` of `text`: each line a command (without "ipset"), COMMIT ignored; the
 * first failing line stops it, the lines before stay applied, and a kernel refusal is reported as
 * "Error in line N: MESSAGE".
 */
export function ipsetRestore(ctx: ToolContext, text: string, opts: { exist?: boolean } = {}): ToolResult {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#') || line === 'COMMIT') continue;
    const argv = line.split(/\s+/);
    if (argv[0] === 'restore' || argv[0] === 'list' || argv[0] === 'save')
      return {
        stdout: '',
        stderr: `${PROG}: Error in line ${i + 1}: Restore command is not supported in restore mode\n`,
        code: 1,
      };
    const r = ipset(opts.exist ? [...argv, '-exist'] : argv, ctx);
    if (r.code === 1 && r.stderr.startsWith(`${PROG}: `))
      return { ...r, stderr: `${PROG}: Error in line ${i + 1}: ${r.stderr.slice(PROG.length + 2)}` };
    if (r.code !== 0) return r;
  }
  return { stdout: '', stderr: '', code: 0 };
}
