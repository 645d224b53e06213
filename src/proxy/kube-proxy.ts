/**
 * kube-proxy in iptables mode, as pkg/proxy/iptables/proxier.go programs a node: the canary chains
 * its iptables monitor creates (mangle, nat, filter KUBE-PROXY-CANARY), the jump rules it ensures
 * with `iptables -N` and `iptables -I` (iptablesJumpChains and the kubelet's KUBE-FIREWALL jumps,
 * each put first in its chain unless an identical rule is there), then one `iptables-restore
 * --noflush` of the filter and nat chains it owns (syncProxyRules): each chain it names is created
 * or flushed and filled with the rules in the order proxier.go writes them, with its argument order
 * (iptables prints them canonically).
 *
 * Choices of this kube-proxy (the defaults of a current release): detect-local-mode ClusterCIDR
 * (the cluster's pod network), masquerade-all off, localhost node ports on (route_localnet, the
 * KUBE-FIREWALL rule, no `! -d 127.0.0.0/8` on the node-port jump), node ports on every local
 * address, `--random-fully` (iptables 1.8.9 has it), conntrack TCP not liberal (the INVALID drop),
 * and no nfacct counters (the node cannot create them, so the rules that count with `-m nfacct`
 * are left out, as proxier.go does then). The rule shapes follow the current proxier.go (the
 * KUBE-EXT-/KUBE-SVL- era: KUBE-XLB- was the Local chain's name before it), read with its health
 * check node port rule and the session affinity rules of writeServiceToEndpointRules. Go iterates the services map in random order; this
 * kube-proxy writes the services sorted by their port name, one of the orders a node shows.
 *
 * The sync is typed data ({@link ProxySync}): the model applies it to a namespace's netfilter
 * ({@link applySync}); scripts/record-svc-goldens.ts gives the same commands to the real kernel.
 */
import { formatRuleSpec, parseRuleSpec, type Netfilter, type RuleOrigin } from '../kernel/netfilter.ts';
import { HEADLESS, type EndpointInfo, type ResolvedService, type ServicePortInfo } from './services.ts';

export type ProxyTable = 'filter' | 'nat';

/** EnsureChain(table, target) then EnsureRule(Prepend, table, chain, args… -j target) */
export interface JumpRule {
  table: ProxyTable;
  chain: string;
  target: string;
  args: string[];
}

export interface RestoreRule {
  chain: string;
  /** the rule's arguments after `-A CHAIN`, as kube-proxy writes them */
  args: string[];
  origin: RuleOrigin;
}

/** one table of the iptables-restore --noflush input: its chain lines, then its rules */
export interface RestoreTable {
  table: ProxyTable;
  chains: string[];
  rules: RestoreRule[];
}

export interface ProxySync {
  node: string;
  /** tables the iptables monitor creates KUBE-PROXY-CANARY in, by command */
  canary: readonly ('mangle' | 'nat' | 'filter')[];
  jumps: JumpRule[];
  restore: RestoreTable[];
}

export interface ProxyConfig {
  node: string;
  /** detect-local-mode ClusterCIDR */
  clusterCidr: string;
}

const MASQ_MARK = '0x4000';
const CT_NEW = ['-m', 'conntrack', '--ctstate', 'NEW'];

/** iptablesJumpChains, then iptablesKubeletJumpChains, in proxier.go's order */
function jumpRules(): JumpRule[] {
  const j = (
    table: ProxyTable,
    target: string,
    chain: string,
    comment: string,
    extra: string[] = [],
  ): JumpRule => ({
    table,
    chain,
    target,
    args: [...extra, ...(comment ? ['-m', 'comment', '--comment', comment] : [])],
  });
  const ext = 'kubernetes externally-visible service portals';
  const fw = 'kubernetes load balancer firewall';
  return [
    j('filter', 'KUBE-EXTERNAL-SERVICES', 'INPUT', ext, CT_NEW),
    j('filter', 'KUBE-EXTERNAL-SERVICES', 'FORWARD', ext, CT_NEW),
    j('filter', 'KUBE-NODEPORTS', 'INPUT', 'kubernetes health check service ports'),
    j('filter', 'KUBE-SERVICES', 'FORWARD', 'kubernetes service portals', CT_NEW),
    j('filter', 'KUBE-SERVICES', 'OUTPUT', 'kubernetes service portals', CT_NEW),
    j('filter', 'KUBE-FORWARD', 'FORWARD', 'kubernetes forwarding rules'),
    j('filter', 'KUBE-PROXY-FIREWALL', 'INPUT', fw, CT_NEW),
    j('filter', 'KUBE-PROXY-FIREWALL', 'OUTPUT', fw, CT_NEW),
    j('filter', 'KUBE-PROXY-FIREWALL', 'FORWARD', fw, CT_NEW),
    j('nat', 'KUBE-SERVICES', 'OUTPUT', 'kubernetes service portals'),
    j('nat', 'KUBE-SERVICES', 'PREROUTING', 'kubernetes service portals'),
    j('nat', 'KUBE-POSTROUTING', 'POSTROUTING', 'kubernetes postrouting rules'),
    j('filter', 'KUBE-FIREWALL', 'INPUT', ''),
    j('filter', 'KUBE-FIREWALL', 'OUTPUT', ''),
  ];
}

/** computeProbability: fmt.Sprintf("%0.10f", 1.0/float64(n)) */
export function probability(n: number): string {
  return (1 / n).toFixed(10);
}

/** What kube-proxy writes for one node */
export function kubeProxySync(cfg: ProxyConfig, services: readonly ResolvedService[]): ProxySync {
  const filterChains = [
    'KUBE-SERVICES',
    'KUBE-EXTERNAL-SERVICES',
    'KUBE-FORWARD',
    'KUBE-NODEPORTS',
    'KUBE-PROXY-FIREWALL',
  ];
  const natChains = ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ'];
  const filterRules: RestoreRule[] = [];
  const natRules: RestoreRule[] = [];
  const kp = (purpose: string): RuleOrigin => ({ kind: 'kube-proxy', purpose });
  const nat = (chain: string, args: string[], origin: RuleOrigin) => natRules.push({ chain, args, origin });
  const filter = (chain: string, args: string[], origin: RuleOrigin) =>
    filterRules.push({ chain, args, origin });
  const comment = (c: string) => ['-m', 'comment', '--comment', c];

  nat(
    'KUBE-POSTROUTING',
    ['-m', 'mark', '!', '--mark', `${MASQ_MARK}/${MASQ_MARK}`, '-j', 'RETURN'],
    kp('skip unmarked'),
  );
  nat('KUBE-POSTROUTING', ['-j', 'MARK', '--xor-mark', MASQ_MARK], kp('clear the masquerade mark'));
  nat(
    'KUBE-POSTROUTING',
    [...comment('kubernetes service traffic requiring SNAT'), '-j', 'MASQUERADE', '--random-fully'],
    kp('masquerade marked service traffic'),
  );
  nat('KUBE-MARK-MASQ', ['-j', 'MARK', '--or-mark', MASQ_MARK], kp('mark for masquerade'));
  // localhost node ports: the mitigation of route_localnet (kubelet writes the same rule)
  filterChains.push('KUBE-FIREWALL');
  filter(
    'KUBE-FIREWALL',
    [
      ...comment('block incoming localnet connections'),
      '-d',
      '127.0.0.0/8',
      '!',
      '-s',
      '127.0.0.0/8',
      '-m',
      'conntrack',
      '!',
      '--ctstate',
      'RELATED,ESTABLISHED,DNAT',
      '-j',
      'DROP',
    ],
    kp('block incoming localnet connections'),
  );

  // ShouldSkipService: a headless Service has no ClusterIP to program
  const ports = services
    .filter((s) => s.clusterIP !== HEADLESS)
    .flatMap((s) => s.ports)
    .sort((a, b) => cmp(a.nameString + a.protocol, b.nameString + b.protocol));
  for (const sp of ports) servicePort(cfg, sp, natChains, natRules, filterRules);

  nat(
    'KUBE-SERVICES',
    [
      ...comment('kubernetes service nodeports; NOTE: this must be the last rule in this chain'),
      '-m',
      'addrtype',
      '--dst-type',
      'LOCAL',
      '-j',
      'KUBE-NODEPORTS',
    ],
    kp('node ports'),
  );
  filter('KUBE-FORWARD', ['-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP'], kp('drop invalid'));
  filter(
    'KUBE-FORWARD',
    [
      ...comment('kubernetes forwarding rules'),
      '-m',
      'mark',
      '--mark',
      `${MASQ_MARK}/${MASQ_MARK}`,
      '-j',
      'ACCEPT',
    ],
    kp('accept marked for masquerade'),
  );
  filter(
    'KUBE-FORWARD',
    [
      ...comment('kubernetes forwarding conntrack rule'),
      '-m',
      'conntrack',
      '--ctstate',
      'RELATED,ESTABLISHED',
      '-j',
      'ACCEPT',
    ],
    kp('accept established'),
  );
  return {
    node: cfg.node,
    canary: ['mangle', 'nat', 'filter'],
    jumps: jumpRules(),
    restore: [
      { table: 'filter', chains: filterChains, rules: filterRules },
      { table: 'nat', chains: natChains, rules: natRules },
    ],
  };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** syncProxyRules' loop body for one service port */
function servicePort(
  cfg: ProxyConfig,
  sp: ServicePortInfo,
  natChains: string[],
  natRules: RestoreRule[],
  filterRules: RestoreRule[],
): void {
  const name = sp.nameString;
  const proto = sp.protocol;
  const origin = (endpoint?: EndpointInfo): RuleOrigin => ({
    kind: 'service',
    namespace: sp.namespace,
    name: sp.service,
    ...(sp.portName ? { port: sp.portName } : {}),
    ...(endpoint ? { endpoint: endpoint.text } : {}),
  });
  const nat = (chain: string, args: string[], ep?: EndpointInfo) =>
    natRules.push({ chain, args, origin: origin(ep) });
  const filter = (chain: string, args: string[]) => filterRules.push({ chain, args, origin: origin() });
  const comment = (c: string) => ['-m', 'comment', '--comment', c];
  const l4 = ['-m', proto, '-p', proto];
  const external = sp.type !== 'ClusterIP';
  const local = external && sp.externalTrafficPolicy === 'Local';

  const clusterEndpoints = sp.endpoints;
  const localEndpoints = sp.endpoints.filter((e) => e.nodeName === cfg.node);
  const hasEndpoints = clusterEndpoints.length > 0;
  // internalTrafficPolicy is Cluster (the default; the file cannot set it yet)
  const hasInternalEndpoints = hasEndpoints;
  const hasExternalEndpoints = local ? localEndpoints.length > 0 : hasEndpoints;
  const usesClusterPolicyChain = clusterEndpoints.length > 0;
  const usesLocalPolicyChain = local && localEndpoints.length > 0;
  const externalPolicyChain = local ? sp.chains.svl : sp.chains.svc;
  const usesExternalTrafficChain = hasEndpoints && external;
  const filterTarget = hasEndpoints ? 'DROP' : 'REJECT';
  const filterComment = hasEndpoints ? `${name} has no local endpoints` : `${name} has no endpoints`;
  const dst = (ip: string, port: number) => ['-d', ip, '--dport', String(port)];

  if (hasInternalEndpoints)
    nat('KUBE-SERVICES', [
      ...comment(`${name} cluster IP`),
      ...l4,
      ...dst(sp.clusterIP, sp.port),
      '-j',
      sp.chains.svc,
    ]);
  else
    filter('KUBE-SERVICES', [
      ...comment(filterComment),
      ...l4,
      ...dst(sp.clusterIP, sp.port),
      '-j',
      filterTarget,
    ]);

  for (const lbip of sp.loadBalancerIPs)
    if (hasEndpoints)
      nat('KUBE-SERVICES', [
        ...comment(`${name} loadbalancer IP`),
        ...l4,
        ...dst(lbip, sp.port),
        '-j',
        sp.chains.ext,
      ]);
  if (!hasExternalEndpoints)
    for (const lbip of sp.loadBalancerIPs)
      filter('KUBE-EXTERNAL-SERVICES', [
        ...comment(filterComment),
        ...l4,
        ...dst(lbip, sp.port),
        '-j',
        filterTarget,
      ]);

  if (sp.nodePort !== undefined) {
    if (hasEndpoints)
      nat('KUBE-NODEPORTS', [...comment(name), ...l4, '--dport', String(sp.nodePort), '-j', sp.chains.ext]);
    if (!hasExternalEndpoints)
      filter('KUBE-EXTERNAL-SERVICES', [
        ...comment(filterComment),
        '-m',
        'addrtype',
        '--dst-type',
        'LOCAL',
        ...l4,
        '--dport',
        String(sp.nodePort),
        '-j',
        filterTarget,
      ]);
  }

  if (sp.healthCheckNodePort !== undefined)
    // whether the node has local endpoints or not: its health check server answers there
    filter('KUBE-NODEPORTS', [
      ...comment(`${name} health check node port`),
      '-m',
      'tcp',
      '-p',
      'tcp',
      '--dport',
      String(sp.healthCheckNodePort),
      '-j',
      'ACCEPT',
    ]);

  if (hasInternalEndpoints)
    nat(sp.chains.svc, [
      ...comment(`${name} cluster IP`),
      ...l4,
      ...dst(sp.clusterIP, sp.port),
      '!',
      '-s',
      cfg.clusterCidr,
      '-j',
      'KUBE-MARK-MASQ',
    ]);

  if (usesExternalTrafficChain) {
    natChains.push(sp.chains.ext);
    if (!local) {
      nat(sp.chains.ext, [
        ...comment(`masquerade traffic for ${name} external destinations`),
        '-j',
        'KUBE-MARK-MASQ',
      ]);
    } else {
      nat(sp.chains.ext, [
        ...comment(`pod traffic for ${name} external destinations`),
        '-s',
        cfg.clusterCidr,
        '-j',
        sp.chains.svc,
      ]);
      nat(sp.chains.ext, [
        ...comment(`masquerade LOCAL traffic for ${name} external destinations`),
        '-m',
        'addrtype',
        '--src-type',
        'LOCAL',
        '-j',
        'KUBE-MARK-MASQ',
      ]);
      nat(sp.chains.ext, [
        ...comment(`route LOCAL traffic for ${name} external destinations`),
        '-m',
        'addrtype',
        '--src-type',
        'LOCAL',
        '-j',
        sp.chains.svc,
      ]);
    }
    if (hasExternalEndpoints) nat(sp.chains.ext, ['-j', externalPolicyChain]);
  }

  // writeServiceToEndpointRules: the affinity checks first, then the random choice
  const affinity = sp.affinitySeconds;
  const recent = (ep: EndpointInfo, ...how: string[]) => ['-m', 'recent', '--name', ep.chain, ...how];
  const toEndpoints = (chain: string, eps: readonly EndpointInfo[]) => {
    if (affinity !== undefined)
      for (const ep of eps)
        nat(
          chain,
          [
            ...comment(`${name} -> ${ep.text}`),
            ...recent(ep, '--rcheck', '--seconds', String(affinity), '--reap'),
            '-j',
            ep.chain,
          ],
          ep,
        );
    eps.forEach((ep, i) => {
      const stat =
        i < eps.length - 1
          ? ['-m', 'statistic', '--mode', 'random', '--probability', probability(eps.length - i)]
          : [];
      nat(chain, [...comment(`${name} -> ${ep.text}`), ...stat, '-j', ep.chain], ep);
    });
  };
  if (usesClusterPolicyChain) {
    natChains.push(sp.chains.svc);
    toEndpoints(sp.chains.svc, clusterEndpoints);
  }
  if (usesLocalPolicyChain) {
    natChains.push(sp.chains.svl);
    toEndpoints(sp.chains.svl, localEndpoints);
  }
  // allLocallyReachableEndpoints: the cluster endpoints, and the local ones (a subset)
  for (const ep of clusterEndpoints) {
    natChains.push(ep.chain);
    nat(ep.chain, [...comment(name), '-s', ep.ip, '-j', 'KUBE-MARK-MASQ'], ep);
    nat(
      ep.chain,
      [
        ...comment(name),
        ...(affinity !== undefined ? recent(ep, '--set') : []),
        ...l4,
        '-j',
        'DNAT',
        '--to-destination',
        ep.text,
      ],
      ep,
    );
  }
}

/** the rule in the form the kernel holds, for `iptables -C`-style equality */
function specOf(args: readonly string[], origin?: RuleOrigin) {
  return { ...parseRuleSpec(args), ...(origin ? { origin } : {}) };
}

/**
 * The sync applied to a namespace's netfilter as the kernel takes the commands: the canary chains
 * and EnsureChain create their tables by command, EnsureRule inserts at the head unless `iptables
 * -C` finds the rule, and iptables-restore --noflush flushes (or creates) each chain it names,
 * then appends the rules, the table checked once as the kernel checks a commit (Netfilter.restore).
 */
export function applySync(nf: Netfilter, sync: ProxySync): void {
  const ensureChain = (table: string, chain: string) => {
    nf.createByCommand(table);
    if (!nf.chain(table, chain)) nf.newChain(table, chain);
  };
  for (const t of sync.canary) ensureChain(t, 'KUBE-PROXY-CANARY');
  for (const j of sync.jumps) {
    ensureChain(j.table, j.target);
    const rule = specOf([...j.args, '-j', j.target], {
      kind: 'kube-proxy',
      purpose: `jump to ${j.target}`,
    });
    const want = formatRuleSpec(rule);
    if (nf.chain(j.table, j.chain)!.rules.some((r) => formatRuleSpec(r) === want)) continue;
    nf.insert(j.table, j.chain, 0, rule);
  }
  for (const t of sync.restore)
    nf.restore(
      t.table,
      t.chains,
      t.rules.map((r) => ({ chain: r.chain, rule: specOf(r.args, r.origin) })),
    );
}
