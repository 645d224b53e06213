/**
 * /etc/protocols of Debian's netbase 6.4 (bookworm), in file order: the names getprotobyname()
 * and getprotobynumber() answer with for iptables, tcpdump/libpcap and the rest. podwalk's
 * namespaces have no other source.
 */
export interface Protocol {
  name: string;
  number: number;
  aliases: readonly string[];
}

const PROTOCOLS_TEXT = `
ip 0 IP
hopopt 0 HOPOPT
icmp 1 ICMP
igmp 2 IGMP
ggp 3 GGP
ipencap 4 IP-ENCAP
st 5 ST
tcp 6 TCP
egp 8 EGP
igp 9 IGP
pup 12 PUP
udp 17 UDP
hmp 20 HMP
xns-idp 22 XNS-IDP
rdp 27 RDP
iso-tp4 29 ISO-TP4
dccp 33 DCCP
xtp 36 XTP
ddp 37 DDP
idpr-cmtp 38 IDPR-CMTP
ipv6 41 IPv6
ipv6-route 43 IPv6-Route
ipv6-frag 44 IPv6-Frag
idrp 45 IDRP
rsvp 46 RSVP
gre 47 GRE
esp 50 IPSEC-ESP
ah 51 IPSEC-AH
skip 57 SKIP
ipv6-icmp 58 IPv6-ICMP
ipv6-nonxt 59 IPv6-NoNxt
ipv6-opts 60 IPv6-Opts
rspf 73 RSPF CPHB
vmtp 81 VMTP
eigrp 88 EIGRP
ospf 89 OSPFIGP
ax.25 93 AX.25
ipip 94 IPIP
etherip 97 ETHERIP
encap 98 ENCAP
pim 103 PIM
ipcomp 108 IPCOMP
vrrp 112 VRRP
l2tp 115 L2TP
isis 124 ISIS
sctp 132 SCTP
fc 133 FC
mobility-header 135 Mobility-Header
udplite 136 UDPLite
mpls-in-ip 137 MPLS-in-IP
manet 138
hip 139 HIP
shim6 140 Shim6
wesp 141 WESP
rohc 142 ROHC
ethernet 143 Ethernet
mptcp 262 MPTCP
`;

export const PROTOCOLS: readonly Protocol[] = PROTOCOLS_TEXT.trim()
  .split('\n')
  .map((line) => {
    const [name, number, ...aliases] = line.split(' ');
    return { name, number: Number(number), aliases };
  });

/** getprotobyname(3): by name or alias, case-sensitive, the first entry in file order */
export function getprotobyname(name: string): Protocol | undefined {
  return PROTOCOLS.find((p) => p.name === name || p.aliases.includes(name));
}

/** getprotobynumber(3): the first entry with the number */
export function getprotobynumber(n: number): Protocol | undefined {
  return PROTOCOLS.find((p) => p.number === n);
}
