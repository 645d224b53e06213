/**
 * The over-time scenarios: real `ping` and `curl` on the lab of the built-in cluster
 * (flannel-vxlan), after a fault, with the state they leave behind. The same list drives the
 * recorder of the goldens (scripts/record-time-goldens.ts), the emulation test against them
 * (test/time-tools.test.ts) and the live comparison in the lab (test/time-lab.test.ts).
 *
 * Addresses are the seed cluster's: pod-a 10.244.0.5 and pod-b 10.244.0.6 on node1
 * (cni0 10.244.0.1), pod-c 10.244.1.5 on node2; nothing has 10.244.0.99.
 */

export interface TimeStep {
  /** the model netns the command runs in */
  netns: string;
  /** the command line, as typed */
  cmd: string;
}

export interface TimeScenario {
  name: string;
  /** what it shows */
  title: string;
  /** fault commands, applied before the clients run (must succeed) */
  setup: TimeStep[];
  /** client commands, in order: their output text is compared */
  steps: TimeStep[];
  /** state commands afterwards: their output is compared */
  after: TimeStep[];
}

export interface TimeRecord {
  scenario: string;
  kernel: string;
  ping: string;
  curl: string;
  setup: TimeStep[];
  steps: (TimeStep & { stdout: string; stderr: string; code: number; startMs: number; endMs: number })[];
  /** startMs: when the command started (absent in older records: right after the last step) */
  after: (TimeStep & { stdout: string; stderr: string; code: number; startMs?: number })[];
  /** tcpdump -r -nn -v -ttttt of pod-a's and node1's eth0 during the steps */
  packets: Record<string, string>;
  /**
   * reachable_time (ms) of every device's ARP parameters as the kernel drew it (`ip ntable show`'s
   * "reachable"), by namespace and device, read before the steps and after the state commands;
   * the two differ when the kernel drew again in between (neigh_periodic_work, every 300 s)
   */
  reachable?: {
    before: Record<string, Record<string, number>>;
    after: Record<string, Record<string, number>>;
  };
}

const ICMP_COUNTERS =
  'IcmpOutMsgs IcmpOutDestUnreachs IcmpOutTimeExcds IcmpOutEchos IcmpOutEchoReps IcmpOutRateLimitHost IcmpOutRateLimitGlobal';
const nstat = (extra = '') => `nstat -asz ${ICMP_COUNTERS}${extra ? ' ' + extra : ''}`;

export const TIME_SCENARIOS: readonly TimeScenario[] = [
  {
    name: 'ping-ok',
    title: 'ping across nodes: replies, TTL 1, an interface, a deadline',
    setup: [],
    steps: [
      { netns: 'pod-a', cmd: 'ping -c 3 10.244.1.5' },
      { netns: 'pod-a', cmd: 'ping -c 2 -i 0.2 -s 1000 10.244.0.6' },
      { netns: 'pod-a', cmd: 'ping -c 1 -t 1 10.244.1.5' },
      { netns: 'pod-a', cmd: 'ping -c 1 -I eth0 -W 2 10.244.1.5' },
      { netns: 'pod-a', cmd: 'ping -c 5 -w 2 10.244.1.5' },
      { netns: 'node1', cmd: 'ping -c 2 -M do -s 1472 192.168.1.11' },
    ],
    after: [
      { netns: 'pod-a', cmd: 'ip neigh' },
      { netns: 'node1', cmd: 'ip neigh' },
      { netns: 'pod-a', cmd: nstat('IcmpInMsgs IcmpInEchoReps IcmpInTimeExcds') },
      { netns: 'node1', cmd: nstat() },
    ],
  },
  {
    name: 'curl-ok',
    title: 'curl to a listener, with -i, -o and -w; a port nothing listens on; the sockets after',
    setup: [],
    steps: [
      { netns: 'pod-a', cmd: 'curl -sS -m 4 http://10.244.1.5:8080/' },
      { netns: 'pod-a', cmd: 'curl -sS -i http://10.244.0.6:8080/' },
      {
        netns: 'pod-a',
        cmd: "curl -sS -o /dev/null -w '%{http_code} %{remote_ip} %{remote_port} %{local_ip} %{size_download} %{exitcode} %{errormsg}\\n' http://10.244.1.5:8080/",
      },
      { netns: 'pod-a', cmd: 'curl -sS http://10.244.1.5:9999/' },
      { netns: 'pod-a', cmd: "curl -s -w '%{http_code} %{exitcode} %{errormsg}\\n' http://10.244.1.5:9999/" },
      { netns: 'pod-a', cmd: 'curl -m 4 http://10.244.1.5:9999/' },
    ],
    after: [
      { netns: 'pod-a', cmd: 'ss -tan' },
      { netns: 'pod-c', cmd: 'ss -tan' },
      { netns: 'pod-c', cmd: 'ss -uan' },
      { netns: 'pod-a', cmd: 'ip neigh' },
      {
        netns: 'pod-a',
        cmd: 'nstat -asz TcpActiveOpens TcpOutRsts TcpInSegs TcpOutSegs TcpRetransSegs TcpAttemptFails',
      },
      { netns: 'pod-c', cmd: 'nstat -asz TcpPassiveOpens TcpOutRsts TcpInSegs TcpOutSegs' },
    ],
  },
  {
    name: 'pmtu',
    title: 'a path MTU below the pod MTU: frag needed once, then the cached PMTU refuses locally',
    setup: [{ netns: 'node1', cmd: 'ip link set flannel.1 mtu 1400' }],
    steps: [
      { netns: 'pod-a', cmd: 'ping -c 3 -i 0.5 -M do -s 1422 10.244.1.5' },
      { netns: 'pod-a', cmd: 'ping -c 2 -i 0.5 -M do -s 1422 10.244.1.5' },
      { netns: 'pod-a', cmd: 'ping -c 2 -i 0.5 -s 1422 10.244.1.5' },
      { netns: 'pod-a', cmd: 'ping -c 1 -M dont -s 1422 10.244.1.5' },
      { netns: 'pod-a', cmd: 'curl -sS -m 4 http://10.244.1.5:8080/' },
    ],
    after: [
      { netns: 'pod-a', cmd: 'ip route get 10.244.1.5' },
      { netns: 'pod-a', cmd: 'ip route show cache' },
      { netns: 'pod-a', cmd: 'ip route get 10.244.0.6' },
      { netns: 'pod-a', cmd: nstat('IcmpInMsgs IcmpInDestUnreachs IpFragCreates IpFragOKs') },
      { netns: 'node1', cmd: nstat('IpFragFails') },
    ],
  },
  {
    name: 'arp-fail',
    title: 'ARP failure with several echo requests queued on one INCOMPLETE neighbour',
    setup: [],
    steps: [
      { netns: 'pod-a', cmd: 'ping -c 3 10.244.0.99' },
      { netns: 'pod-a', cmd: 'ip neigh show 10.244.0.99' },
      { netns: 'pod-a', cmd: 'curl -sS -m 5 http://10.244.0.99:8080/' },
      { netns: 'pod-a', cmd: 'ping -c 2 -i 0.2 -W 1 10.244.0.99' },
    ],
    after: [
      { netns: 'pod-a', cmd: 'ip neigh' },
      { netns: 'pod-a', cmd: nstat('IcmpInMsgs IcmpInDestUnreachs TcpAttemptFails') },
    ],
  },
  {
    name: 'route-del',
    title:
      'the route to a node deleted: the router drops with no route and has none back for an ICMP error, so ping hears nothing and curl times out',
    setup: [{ netns: 'node1', cmd: 'ip route del 10.244.1.0/24' }],
    steps: [
      { netns: 'pod-a', cmd: 'ping -c 3 10.244.1.5' },
      { netns: 'pod-a', cmd: 'curl -sS -m 4 http://10.244.1.5:8080/' },
      { netns: 'pod-a', cmd: 'ping -c 10 -i 0.2 10.244.1.5' },
    ],
    after: [
      { netns: 'node1', cmd: nstat('IpExtInNoRoutes IpOutNoRoutes') },
      { netns: 'router', cmd: nstat('IpExtInNoRoutes IpOutNoRoutes') },
      { netns: 'pod-a', cmd: nstat('IcmpInMsgs IcmpInDestUnreachs TcpAttemptFails') },
    ],
  },
  {
    name: 'icmp-ratelimit',
    title:
      'net unreachables from the router to one host are rate-limited (IcmpOutRateLimitHost): after 12 pings, curl gets none and times out',
    setup: [{ netns: 'node1', cmd: 'ip route add 10.99.0.0/16 via 192.168.1.1' }],
    steps: [
      { netns: 'node1', cmd: 'ping -c 12 -i 0.2 -W 0.1 10.99.0.1' },
      { netns: 'node1', cmd: 'curl -sS -m 4 http://10.99.0.1:8080/' },
    ],
    after: [
      { netns: 'router', cmd: nstat('IpExtInNoRoutes') },
      { netns: 'node1', cmd: nstat('IcmpInMsgs IcmpInDestUnreachs TcpAttemptFails') },
    ],
  },
  {
    name: 'ip-forward-off',
    title: 'ip_forward off on the destination node: curl -m 4 retransmits its SYN and times out',
    setup: [{ netns: 'node2', cmd: 'sysctl -q -w net.ipv4.ip_forward=0' }],
    steps: [
      { netns: 'pod-a', cmd: 'curl -sS -m 4 http://10.244.1.5:8080/' },
      { netns: 'pod-a', cmd: 'ss -tan' },
    ],
    after: [
      { netns: 'node2', cmd: nstat('IpInAddrErrors') },
      { netns: 'pod-a', cmd: 'nstat -asz TcpActiveOpens TcpOutSegs TcpRetransSegs TcpAttemptFails' },
    ],
  },
  {
    name: 'drop-rule',
    title: 'a DROP rule: SYN retransmissions counted by the rule; ping without replies; the full SYN timeout',
    setup: [
      { netns: 'node2', cmd: 'iptables -I FORWARD -d 10.244.1.5/32 -j DROP' },
      { netns: 'pod-b', cmd: 'sysctl -q -w net.ipv4.tcp_syn_retries=1' },
    ],
    steps: [
      { netns: 'pod-a', cmd: 'curl -sS -m 4 http://10.244.1.5:8080/' },
      { netns: 'pod-a', cmd: 'ping -c 2 -W 1 10.244.1.5' },
      { netns: 'pod-b', cmd: 'curl -sS http://10.244.1.5:8080/' },
    ],
    after: [
      { netns: 'node2', cmd: 'iptables -L FORWARD -n -v -x' },
      { netns: 'pod-a', cmd: 'nstat -asz TcpActiveOpens TcpOutSegs TcpRetransSegs TcpAttemptFails' },
      {
        netns: 'pod-b',
        cmd: 'nstat -asz TcpActiveOpens TcpOutSegs TcpRetransSegs TcpAttemptFails TcpExtTCPAbortOnTimeout',
      },
    ],
  },
  {
    name: 'synack-drop',
    title:
      'the SYN-ACK dropped on the reply path: the listener resends it on its request timer (1 s, then 2 s) until tcp_synack_retries, then drops the request',
    setup: [
      { netns: 'node2', cmd: 'iptables -I FORWARD -s 10.244.1.5/32 -p tcp --sport 8080 -j DROP' },
      { netns: 'pod-c', cmd: 'sysctl -q -w net.ipv4.tcp_synack_retries=2' },
    ],
    steps: [
      // the client gives up before its own SYN timer (1 s): only the listener's timer resends
      { netns: 'pod-a', cmd: 'curl -sS -m 0.5 http://10.244.1.5:8080/' },
      { netns: 'pod-c', cmd: 'ss -tan' },
      { netns: 'pod-a', cmd: 'ping -c 4 -i 1 10.244.0.6' },
      { netns: 'pod-c', cmd: 'ss -tan' },
      { netns: 'pod-a', cmd: 'ping -c 6 -i 1 10.244.0.6' },
    ],
    after: [
      { netns: 'pod-c', cmd: 'ss -tan' },
      { netns: 'node2', cmd: 'iptables -L FORWARD -n -v -x' },
      {
        netns: 'pod-c',
        cmd: 'nstat -asz TcpPassiveOpens TcpOutSegs TcpRetransSegs TcpAttemptFails TcpExtTCPSynRetrans TcpExtTCPTimeouts',
      },
      { netns: 'pod-a', cmd: 'nstat -asz TcpActiveOpens TcpOutSegs TcpRetransSegs TcpAttemptFails' },
    ],
  },
  {
    name: 'veth-mtu',
    title: 'a frame over the peer veth MTU from a local sender: ENOBUFS, counted on both ends',
    setup: [{ netns: 'node1', cmd: 'ip link set veth-pod-a mtu 1400' }],
    steps: [
      { netns: 'pod-a', cmd: 'ping -c 2 -i 0.2 -M dont -s 1422 10.244.1.5' },
      { netns: 'pod-a', cmd: 'ping -c 1 -s 1000 10.244.1.5' },
    ],
    after: [
      { netns: 'pod-a', cmd: 'ip -s link show eth0' },
      { netns: 'node1', cmd: 'ip -s link show veth-pod-a' },
      { netns: 'pod-a', cmd: nstat('IpOutDiscards IpOutRequests') },
    ],
  },
  {
    name: 'neigh-ageing',
    title:
      'a neighbour over time, reachable_time drawn in 1.5–4.5 s (base 3 s) against delay_first_probe_time 1 s: REACHABLE, STALE, DELAY on use, a unicast probe 1 s later, REACHABLE again',
    // Every check falls where every draw of reachable_time gives the same state. The draw must
    // stay above delay_first_probe_time: when an ARP reply makes the entry REACHABLE,
    // neigh_add_timer moves its `used` up to `confirmed`, so a reachable_time below
    // delay_first_probe_time ages it to DELAY instead of STALE, and it then cycles DELAY, PROBE,
    // REACHABLE for ever (base 1 s drew below 1 s half the time: the kernel's timer wheel then
    // sets the cycle's phase)
    setup: [
      { netns: 'pod-a', cmd: 'sysctl -q -w net.ipv4.neigh.eth0.base_reachable_time_ms=3000' },
      { netns: 'pod-a', cmd: 'sysctl -q -w net.ipv4.neigh.eth0.delay_first_probe_time=1' },
    ],
    steps: [
      // REACHABLE for reachable_time (≥ 1.5 s) after the reply
      { netns: 'pod-a', cmd: 'ping -c 1 10.244.0.6' },
      { netns: 'pod-a', cmd: 'ip neigh show 10.244.0.6' },
      // 6 s without pod-a's traffic: STALE by 4.5 s (plus the timer wheel's 256 ms); pod-b's own
      // entry for pod-a (DELAY since its echo reply) sends its unicast probe at 5 s, in between
      { netns: 'pod-b', cmd: 'ping -c 7 -i 1 10.244.1.5' },
      { netns: 'pod-a', cmd: 'ip neigh show 10.244.0.6' },
      // a STALE entry used: DELAY; 1 s later (delay_first_probe_time) a unicast probe, answered:
      // REACHABLE for at least 1.5 s more, checked 1.7 s after the use
      { netns: 'pod-a', cmd: 'ping -c 1 10.244.0.6' },
      { netns: 'pod-a', cmd: 'ip neigh show 10.244.0.6' },
      { netns: 'pod-b', cmd: 'ping -c 3 -i 0.85 10.244.1.5' },
      { netns: 'pod-a', cmd: 'ip neigh show 10.244.0.6' },
    ],
    after: [
      { netns: 'pod-a', cmd: 'ip neigh' },
      { netns: 'pod-a', cmd: 'ip -s link show eth0' },
      { netns: 'pod-b', cmd: 'ip neigh' },
    ],
  },
];
