/**
 * What a match or target extension is to the rest of netfilter (after libxtables' struct
 * xtables_match / xtables_target with x6 options): its getopt options, a parser called option by
 * option, the final check, the iptables-save and `iptables -L` printers, and for matches the
 * test the datapath runs. The registry of each lives in matches.ts and targets.ts.
 */
import type { ServiceLookup } from './parse.ts';
import type { IpSet } from '../ipset.ts';
import type { AddrType, CtState, Hook, RecentEntry, Rule, TableName } from './types.ts';

/** one getopt long option of an extension */
export interface OptionSpec {
  /** the option the kernel struct knows (the first name of its id: errors name it) */
  name: string;
  /** takes an argument (XTTYPE_NONE does not) */
  arg: boolean;
  /** XTOPT_INVERT */
  invert?: boolean;
  /** XTOPT_MAND */
  mandatory?: boolean;
  /** options this one excludes (checked after the loop, table order) */
  excl?: readonly string[];
  /** options this one needs */
  also?: readonly string[];
  /** false: iptables has it, podwalk does not model it */
  modelled?: boolean;
}

export interface ParseEnv {
  services?: ServiceLookup;
  /** the rule as parsed so far (its -p: NAT targets and multiport look at it while parsing) */
  rule: Rule;
  /** the next word of the command line, taken (libxt_set reads argv[optind] for its second argument) */
  nextArg?(): string | undefined;
  /** the namespace's IP sets, for an extension that looks its set up while parsing (libxt_set's get_set_byname) */
  ipset?(name: string): IpSet | undefined;
}

export interface PrintCtx {
  numeric: boolean;
  /** the rule's -p (multiport names its ports for it) */
  proto?: number;
  serviceName?: (port: number, proto: 'tcp' | 'udp') => string | undefined;
}

export interface Extension<T> {
  name: string;
  /** every long option (aliases included) → its spec, in the extension's table order */
  options: Readonly<Record<string, OptionSpec>>;
  /** old-style parser with its own once/invert checks (tcp, udp) instead of libxtables' x6 checks */
  oldStyle?: boolean;
  init(): T;
  /** one option, by canonical name; arg undefined for options without argument */
  parse(data: T, opt: string, arg: string | undefined, neg: boolean, env: ParseEnv): void;
  /** x6_fcheck: after the option loop, before libxtables' generic checks */
  final?(data: T, seen: ReadonlySet<string>, rule: Rule): void;
  /** iptables-save text after `-m NAME` / `-j NAME`, each part with a leading space */
  save(data: T): string;
  /** `iptables -L` text, each part with a leading space */
  print(data: T, ctx: PrintCtx): string;
}

/** What a match sees of a packet (one netfilter hook's view of the skb) */
export interface PacketView {
  src: number;
  dst: number;
  proto: number;
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpCode?: number;
  in?: string;
  out?: string;
  ttl: number;
  /** IP total length */
  len: number;
  /** skb->mark: MARK changes it as the traversal goes */
  mark: number;
  ctstate: CtState;
  ct?: CtView;
}

/** the conntrack entry as xt_conntrack sees it (the entry itself, read only where a rule asks) */
export interface CtView {
  dir: 'original' | 'reply';
  entry: {
    orig: { src: string; dst: string };
    reply: { src: string; dst: string };
    seenReply: boolean;
    assured: boolean;
    confirmed: boolean;
    snat: boolean;
    dnat: boolean;
  };
}

/** What the datapath gives the matches that need more than the packet */
export interface MatchEnv {
  table: TableName;
  hook: Hook;
  /** simulated µs */
  now: number;
  /** the rule being tested: its chain and 1-based position (traverse sets it before each rule) */
  pos: { chain: string; index: number };
  /** a deterministic u32 for this packet's flow and the rule asking (statistic --mode random) */
  random(salt: string): number;
  /** inet_addr_type / inet_dev_addr_type in this namespace */
  addrType(addr: number, dev?: string): AddrType;
  /**
   * rpfilter_lookup_reverse: does the route back to `src` (fib_lookup ignoring link state) leave
   * by `iif` (by any device when `loose`), a local source passing only with `acceptLocal`
   */
  rpfilter(src: number, iif: string, loose: boolean, acceptLocal: boolean): boolean;
  /** `-m recent` lists of this namespace */
  recent: Map<string, RecentEntry[]>;
  /** the namespace's IP sets by name */
  ipset(name: string): IpSet | undefined;
  /** the match wrote state of its rule that a later packet's test reads (nth's count): Netns.stateGeneration moves */
  stateful(): void;
}

export interface MatchExtension<M> extends Extension<M> {
  test(m: M, p: PacketView, env: MatchEnv): boolean;
  /** the match needs conntrack in the namespace (nf_ct_netns_get in its checkentry) */
  conntrack?: boolean;
}

export interface TargetExtension<T> extends Extension<T> {
  /** tables the kernel accepts it in (undefined: any) */
  tables?: readonly TableName[];
  /** hooks it may be reached from (undefined: any) */
  hooks?: readonly Hook[];
  conntrack?: boolean;
  /** the name `iptables -L` shows in the target column, when not its own */
  listName?: string;
}
