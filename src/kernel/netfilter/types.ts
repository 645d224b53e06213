/**
 * Netfilter's data, IPv4: tables of chains of rules, each rule a header match (addresses,
 * interfaces, protocol), a list of typed match records in the order they were given, a typed
 * target and, when a program put the rule there, where it came from. Plain data only: no
 * functions or class instances, so a generic snapshot can copy and serialize it.
 */

export const HOOKS = ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'] as const;
export type Hook = (typeof HOOKS)[number];

export const TABLES = ['raw', 'mangle', 'nat', 'filter', 'security'] as const;
export type TableName = (typeof TABLES)[number];

/**
 * The tables each hook runs, in priority order (raw −300, [conntrack −200], mangle −150,
 * nat dst −100, filter 0, security 50, nat src 100, [conntrack confirm]).
 */
export const HOOK_TABLES: Record<Hook, readonly TableName[]> = {
  PREROUTING: ['raw', 'mangle', 'nat'],
  INPUT: ['mangle', 'filter', 'security', 'nat'],
  FORWARD: ['mangle', 'filter', 'security'],
  OUTPUT: ['raw', 'mangle', 'nat', 'filter', 'security'],
  POSTROUTING: ['mangle', 'nat'],
};

/** conntrack states in the order iptables prints them (the bit order of xt_conntrack) */
export const CT_STATES = ['INVALID', 'NEW', 'RELATED', 'ESTABLISHED', 'UNTRACKED', 'SNAT', 'DNAT'] as const;
export type CtState = (typeof CT_STATES)[number];

/** conntrack status bits `--ctstatus` knows, in libxt_conntrack's print order */
export const CT_STATUSES = ['NONE', 'EXPECTED', 'SEEN_REPLY', 'ASSURED', 'CONFIRMED'] as const;
export type CtStatus = (typeof CT_STATUSES)[number];

export interface Neg<T> {
  v: T;
  neg: boolean;
}

/** an address and prefix length; `mask` only for a non-contiguous mask (len is then -1) */
export interface Net {
  net: number;
  len: number;
  mask?: number;
}

export type PortRange = [number, number];

/* ------------------------------------------------------------ matches (-m NAME) */

export interface TcpUdpMatch {
  kind: 'tcp' | 'udp';
  sport?: Neg<PortRange>;
  dport?: Neg<PortRange>;
}

export interface IcmpMatch {
  kind: 'icmp';
  /** 0xff is "any" */
  type: number;
  code: [number, number];
  neg: boolean;
}

export interface ConntrackMatch {
  kind: 'conntrack';
  state?: Neg<CtState[]>;
  origsrc?: Neg<Net>;
  origdst?: Neg<Net>;
  replsrc?: Neg<Net>;
  repldst?: Neg<Net>;
  status?: Neg<CtStatus[]>;
  dir?: 'ORIGINAL' | 'REPLY';
}

export interface StateMatch {
  kind: 'state';
  state: Neg<CtState[]>;
}

export interface CommentMatch {
  kind: 'comment';
  text: string;
}

export interface MarkMatch {
  kind: 'mark';
  value: number;
  mask: number;
  neg: boolean;
}

/** xt_statistic_info: random's threshold is lround(2^31 * p); nth's every is stored − 1, count is its counter */
export interface StatisticMatch {
  kind: 'statistic';
  mode: 'random' | 'nth';
  neg: boolean;
  probability: number;
  every: number;
  packet: number;
  count: number;
}

export interface MultiportMatch {
  kind: 'multiport';
  flags: 'src' | 'dst' | 'any';
  ports: PortRange[];
  neg: boolean;
}

/** the address types of `-m addrtype` (RTN_* order) */
export const ADDR_TYPES = [
  'UNSPEC',
  'UNICAST',
  'LOCAL',
  'BROADCAST',
  'ANYCAST',
  'MULTICAST',
  'BLACKHOLE',
  'UNREACHABLE',
  'PROHIBIT',
  'THROW',
  'NAT',
  'XRESOLVE',
] as const;
export type AddrType = (typeof ADDR_TYPES)[number];

export interface AddrtypeMatch {
  kind: 'addrtype';
  src?: Neg<AddrType[]>;
  dst?: Neg<AddrType[]>;
  limitIn: boolean;
  limitOut: boolean;
}

export interface RecentMatch {
  kind: 'recent';
  command: 'set' | 'rcheck' | 'update' | 'remove';
  neg: boolean;
  name: string;
  /** seconds, 0 = not given */
  seconds: number;
  reap: boolean;
  hitcount: number;
  side: 'source' | 'dest';
  mask: number;
}

/** xt_set_info_match_v4 (`-m set --match-set NAME src|dst[,…]`): the set by name, one direction per dimension */
export interface SetMatch {
  kind: 'set';
  name: string;
  flags: ('src' | 'dst')[];
  neg: boolean;
}

/** xt_rpfilter_info (`-m rpfilter`): its flags */
export interface RpfilterMatch {
  kind: 'rpfilter';
  /** XT_RPFILTER_LOOSE: any route back will do, not only one out of the ingress device */
  loose: boolean;
  /** XT_RPFILTER_VALID_MARK: the reverse lookup carries the packet's mark */
  validmark: boolean;
  /** XT_RPFILTER_ACCEPT_LOCAL: a source that is a local address passes */
  acceptLocal: boolean;
  /** XT_RPFILTER_INVERT: match when the check fails */
  invert: boolean;
}

export type Match =
  | TcpUdpMatch
  | IcmpMatch
  | ConntrackMatch
  | StateMatch
  | CommentMatch
  | MarkMatch
  | StatisticMatch
  | MultiportMatch
  | AddrtypeMatch
  | RecentMatch
  | SetMatch
  | RpfilterMatch;
export type MatchKind = Match['kind'];

/* ------------------------------------------------------------ targets (-j NAME) */

/** a NAT range as nf_nat_range2 holds it: addresses as numbers, ports inclusive */
export interface NatRange {
  minIp?: number;
  maxIp?: number;
  minPort?: number;
  maxPort?: number;
  /** NF_NAT_RANGE_PROTO_RANDOM, _PERSISTENT, _PROTO_RANDOM_FULLY */
  random?: boolean;
  persistent?: boolean;
  randomFully?: boolean;
}

export type RejectWith =
  | 'icmp-net-unreachable'
  | 'icmp-host-unreachable'
  | 'icmp-proto-unreachable'
  | 'icmp-port-unreachable'
  | 'icmp-net-prohibited'
  | 'icmp-host-prohibited'
  | 'tcp-reset'
  | 'icmp-admin-prohibited';

export type Target =
  | { kind: 'ACCEPT' }
  | { kind: 'DROP' }
  | { kind: 'RETURN' }
  | { kind: 'jump'; chain: string }
  /** -g: a jump that does not come back here */
  | { kind: 'goto'; chain: string }
  | { kind: 'REJECT'; with: RejectWith }
  | { kind: 'DNAT'; range: NatRange }
  | { kind: 'SNAT'; range: NatRange }
  /** MASQUERADE: the output device's address; the range holds only --to-ports and the flags */
  | { kind: 'MASQUERADE'; range: NatRange }
  /** xt_MARK rev 2: mark = (mark & ~mask) ^ value */
  | { kind: 'MARK'; value: number; mask: number }
  /** CT --notrack (NOTRACK is its alias, printed as itself) */
  | { kind: 'CT'; notrack: boolean; alias?: 'NOTRACK' };
export type TargetKind = Target['kind'];

/* ------------------------------------------------------------ rules and chains */

/** Who put a rule there: data a diagnosis reads instead of parsing the comment */
export type RuleOrigin =
  | {
      kind: 'network-policy';
      /** the policy's namespace and name */
      namespace: string;
      name: string;
      direction: 'ingress' | 'egress';
      /** index in the policy's ingress/egress list */
      ruleIndex: number;
    }
  | {
      /** a pod's policy chain: the jump into it, its RELATED,ESTABLISHED accept, its final DROP */
      kind: 'policy-chain';
      /** the selected pod (namespace/name) */
      pod: string;
      direction: 'ingress' | 'egress';
      role: 'jump' | 'established' | 'default-deny';
      /** the policies that select the pod, namespace/name */
      selectedBy: string[];
    }
  | {
      /** the CNI plugin's or its daemon's rules (bridge plugin, flanneld, Calico's felix) */
      kind: 'cni';
      component: 'bridge-plugin' | 'flanneld' | 'felix';
      /** what the rule is for, e.g. "accept from the pod" */
      purpose: string;
      /** the pod it is for (namespace/name) */
      pod?: string;
    }
  | {
      /** kube-proxy's rules that are no Service's (KUBE-FORWARD, the jumps into its chains) */
      kind: 'kube-proxy';
      purpose: string;
    }
  | {
      /** kube-proxy's service rules (issue 13) */
      kind: 'service';
      namespace: string;
      name: string;
      port?: string;
      endpoint?: string;
    };

export interface Rule {
  proto?: Neg<number>;
  src?: Neg<Net>;
  dst?: Neg<Net>;
  in?: Neg<string>;
  out?: Neg<string>;
  /** the -m matches in the order given (tcp/udp also when loaded implicitly by a port option) */
  matches: Match[];
  /** no target: the rule only counts */
  target?: Target;
  origin?: RuleOrigin;
  pkts: number;
  bytes: number;
}

export interface Chain {
  name: string;
  /** builtin chains have a policy */
  policy?: 'ACCEPT' | 'DROP';
  /**
   * a base chain iptables-nft made without a counter (its table was created by an iptables
   * command, not by iptables-restore): its policy counts nothing
   */
  noCounters?: boolean;
  rules: Rule[];
  pkts: number;
  bytes: number;
}

/** a `-m recent` list entry: the address and the times it was seen (µs, newest last) */
export interface RecentEntry {
  addr: number;
  ttl: number;
  stamps: number[];
}
