#!/bin/sh
# podwalk-collect: dump one node's network state for `podwalk … --from DIR`.
#
# It only reads: ip/bridge/tc/ss show commands, iptables-save, nft list, conntrack -L, nstat -s
# (no history file written) and files under /proc/sys. It dumps the namespace it runs in (or
# --netns NAME) and every namespace that namespace's veths lead to (the pods), found through
# /run/netns and /proc/*/ns/net by the veth's peer ifindex, one dump per namespace inode.
# Needs a POSIX sh, ip and bridge (iproute2); uses iptables-save, nft, tc, ss, nstat, conntrack,
# nsenter and kubectl when they are there and says so in the manifest when they are not.
#
#   sh collect.sh --out DIR              # DIR/<hostname>/…
#   sh collect.sh --out - > node.tar.gz  # the same as a gzipped tar on stdout
#   sh collect.sh --out DIR --netns NAME --name node1
#   sh collect.sh --out DIR --kube       # also kubectl get nodes,pods,… -A -o json > DIR/kube.json
#
# Exit status: 0 done, 2 bad usage, 1 the dump could not be written. This file is the one
# collector: `podwalk collect` runs it, `podwalk collect --script` prints it.

set -u
PODWALK_COLLECT_VERSION=1
LC_ALL=C
export LC_ALL

usage() {
  cat <<'EOF'
usage: podwalk-collect --out DIR|- [--netns NAME] [--name NODE] [--kube]
  --out DIR     write DIR/NODE/… (- : a gzipped tar of it on stdout)
  --netns NAME  dump the named network namespace (ip netns) instead of the current one
  --name NODE   the node's name in the dump (default: the hostname, or NAME with --netns)
  --kube        also save `kubectl get nodes,pods,services,endpointslices,networkpolicies -A -o json`
EOF
}

die() {
  echo "podwalk-collect: $*" >&2
  exit 2
}

out=
netns=
name=
kube=0
while [ $# -gt 0 ]; do
  case $1 in
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --netns) [ $# -ge 2 ] || die "--netns needs a name"; netns=$2; shift 2 ;;
    --netns=*) netns=${1#--netns=}; shift ;;
    --name) [ $# -ge 2 ] || die "--name needs a node name"; name=$2; shift 2 ;;
    --name=*) name=${1#--name=}; shift ;;
    --kube) kube=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -n "$out" ] || { usage >&2; die "--out is required"; }
command -v ip >/dev/null 2>&1 || die "needs ip (iproute2)"
command -v bridge >/dev/null 2>&1 || die "needs bridge (iproute2)"
if [ -n "$netns" ]; then
  case $netns in */*|.|..) die "--netns $netns: not a network namespace name" ;; esac
  [ -e "/run/netns/$netns" ] || die "--netns $netns: no such network namespace (ip netns list)"
fi
if [ -z "$name" ]; then
  if [ -n "$netns" ]; then
    name=$netns
  else
    name=$(cat /proc/sys/kernel/hostname 2>/dev/null || hostname)
  fi
fi
case $name in ''|*/*|.|..) die "--name '$name': a node name must be a plain file name" ;; esac

have() { command -v "$1" >/dev/null 2>&1; }

if [ "$(id -u 2>/dev/null)" != 0 ]; then
  echo "podwalk-collect: warning: not root: other namespaces cannot be entered and iptables-save shows nothing" >&2
fi

# the dump goes to $top/$name; with --out - to a private directory, tarred at the end
if [ "$out" = - ]; then
  have tar || die "--out - needs tar"
  have gzip || die "--out - needs gzip"
  top=$(mktemp -d 2>/dev/null || echo "/tmp/podwalk-collect.$$")
  mkdir -p "$top" || exit 1
  trap 'rm -rf "$top"' EXIT
else
  top=$out
fi
node=$top/$name
mkdir -p "$node" || { echo "podwalk-collect: cannot create $node" >&2; exit 1; }

# inode of a namespace file (ls -iL follows /proc/PID/ns/net to the nsfs inode)
inode_of() {
  set -- $(ls -iL "$1" 2>/dev/null)
  echo "${1:-}"
}

# run a command in a namespace: how=self|name|pid
run_in() {
  how=$1 arg=$2
  shift 2
  case $how in
    self) "$@" ;;
    name) ip netns exec "$arg" "$@" ;;
    pid) nsenter --net="/proc/$arg/ns/net" "$@" ;;
  esac
}

# one command's stdout to FILE; its stderr and exit status to FILE.err when it failed (defined
# here and, through $DUMP, in every namespace's shell). A command that fails or complains is run
# twice more: iproute2 names other namespaces by opening each file of /run/netns, and one being
# added or removed meanwhile (a pod started or deleted on the node) makes it print "Error: Peer
# netns reference is invalid." (exit 0) for a dump that may lack that name. For that error it is
# run up to six times more, after a pause that grows (0.1 s, 0.2 s, … 0.6 s): three tries back to
# back all met it while other labs added and removed namespaces all the time (collect-lab in CI,
# 2026-12-05), and the pause lets such churn pass. conntrack -L always prints its summary ("… flow
# entries have been shown.") to stderr, and exits 1 when it listed nothing: that is no complaint,
# and a busy node's table is not read three times over for it.
SAVE='
save() {
  file=$1
  shift
  try=0
  while :; do
    "$@" >"$file" 2>"$file.err"
    rc=$?
    if [ ! -s "$file.err" ]; then
      [ $rc -eq 0 ] && break
    elif ! grep -qv "flow entries have been shown" "$file.err"; then
      break
    fi
    try=$((try + 1))
    if grep -q "Peer netns reference is invalid" "$file.err"; then
      [ $try -gt 6 ] && break
      sleep "0.$try" 2>/dev/null || sleep 1
    elif [ $try -ge 3 ]; then
      break
    fi
  done
  if [ $rc -ne 0 ]; then
    echo "exit $rc" >>"$file.err"
  elif ! grep -qv "flow entries have been shown" "$file.err"; then
    rm -f "$file.err"
  fi
  return 0
}'
eval "$SAVE"

# What is dumped from one namespace, run inside it: `dump_ns` enters each namespace once (one
# `ip netns exec` or `nsenter`, which costs more than the commands it runs), not once per command.
# $1 is the directory; each command's stdout goes to FILE, its stderr and exit status to FILE.err
# when it failed. The sysctls are the ones podwalk reads or warns about, as "path = value" (a
# device's dots stay dots).
DUMP=$SAVE'
dir=$1
have() { command -v "$1" >/dev/null 2>&1; }
# one grep reads them all ("FILE:VALUE", as grep prints a match among several files; /dev/null
# makes them several): a sysctl file must be read in one read(2), and a process each is slow
sysctls() {
  grep "" /dev/null /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/ip_default_ttl \
    /proc/sys/net/ipv4/ip_local_port_range /proc/sys/net/ipv4/tcp_timestamps \
    /proc/sys/net/ipv4/tcp_sack /proc/sys/net/ipv4/tcp_window_scaling /proc/sys/net/ipv4/tcp_rmem \
    /proc/sys/net/core/rmem_max /proc/sys/net/ipv4/neigh/default/gc_stale_time \
    /proc/sys/net/bridge/bridge-nf-call-iptables /proc/sys/net/bridge/bridge-nf-call-arptables \
    /proc/sys/net/netfilter/nf_conntrack_tcp_loose /proc/sys/net/ipv4/fib_multipath_hash_policy \
    /proc/sys/net/ipv4/conf/*/rp_filter /proc/sys/net/ipv4/conf/*/forwarding \
    /proc/sys/net/ipv4/conf/*/proxy_arp /proc/sys/net/ipv4/conf/*/arp_ignore \
    /proc/sys/net/ipv4/conf/*/arp_filter /proc/sys/net/ipv4/conf/*/arp_announce \
    /proc/sys/net/ipv4/conf/*/accept_local /proc/sys/net/ipv4/conf/*/route_localnet \
    /proc/sys/net/ipv4/conf/*/src_valid_mark /proc/sys/net/ipv4/neigh/*/proxy_delay 2>/dev/null |
    sed "s|^/proc/sys/\([^:]*\):|\1 = |"
  true
}
# filters hang off an ingress or clsact qdisc: only devices that have one are asked
tc_filters() {
  for d in $(tc qdisc show | sed -n -e "s/^qdisc ingress [0-9a-f]*: dev \([^ ]*\) .*/\1/p" \
    -e "s/^qdisc clsact [0-9a-f]*: dev \([^ ]*\) .*/\1/p"); do
    for way in ingress egress; do
      f=$(tc filter show dev "$d" $way 2>/dev/null)
      if [ -n "$f" ]; then printf "dev %s %s\n%s\n" "$d" $way "$f"; fi
    done
  done
  true
}
save "$dir/link.json" ip -s -d -j link show
save "$dir/addr.json" ip -j addr show
save "$dir/route.json" ip -j route show table all
save "$dir/rule.json" ip -j rule show
save "$dir/neigh.json" ip -j neigh show
save "$dir/fdb.json" bridge -j fdb show
save "$dir/bridge-link.json" bridge -j link show
save "$dir/nsid.json" ip -j netns list-id
save "$dir/sysctl.txt" sysctls
# the IP sets first: rules of iptables-save name them (the cali40 sets of felix)
if have ipset; then save "$dir/ipset-save.txt" ipset save; fi
if have iptables-save; then
  save "$dir/iptables-save.txt" iptables-save -c
else
  echo "not installed" >"$dir/iptables-save.txt.missing"
fi
# legacy x_tables hold rules in this namespace: the nf_tables iptables-save does not show them
legacy=$(cat /proc/net/ip_tables_names 2>/dev/null)
if [ -n "$legacy" ] && have iptables-legacy-save; then
  save "$dir/iptables-legacy-save.txt" iptables-legacy-save -c
elif [ -n "$legacy" ]; then
  printf "legacy tables: %s\n" "$legacy" >"$dir/iptables-legacy-save.txt.missing"
fi
if have nft; then save "$dir/nft.json" nft -j list ruleset; fi
if have tc; then
  save "$dir/tc-qdisc.json" tc -j qdisc show
  save "$dir/tc-filter.txt" tc_filters
fi
if have ss; then save "$dir/ss.txt" ss -H -l -t -u -n; fi
if have nstat; then save "$dir/nstat.txt" nstat -a -s -z; fi
if have conntrack; then save "$dir/conntrack.txt" conntrack -L -o extended; fi
'

# everything podwalk reads from one namespace, into DIR (a namespace that cannot be entered:
# why, in link.json.err, which the importer reports)
dump_ns() {
  dir=$1 how=$2 arg=$3
  mkdir -p "$dir" || exit 1
  run_in "$how" "$arg" sh -c "$DUMP" podwalk-dump "$dir" 2>"$dir/.enter"
  [ -e "$dir/link.json" ] || [ -e "$dir/link.json.err" ] || cat "$dir/.enter" >"$dir/link.json.err"
  rm -f "$dir/.enter"
}

# the target namespace
if [ -n "$netns" ]; then
  t_how=name t_arg=$netns
  t_inode=$(inode_of "/run/netns/$netns")
else
  t_how=self t_arg=-
  t_inode=$(inode_of /proc/self/ns/net)
fi
[ -n "$t_inode" ] || die "cannot read the namespace's inode"

# the target's veths whose other end is in another namespace, one per line: "IFINDEX PEER name NETNS"
# when iproute2 can name that namespace (ip netns), else "IFINDEX PEER id NSID"
# (ip -o prints "5: veth0@if2: <…> … link-netns NAME" or "… link-netnsid 3"; the kernel leaves
# the peer's ifindex out when it equals the veth's own: "3: eth1: <…> … link-netns NAME")
veth_ends() {
  run_in "$1" "$2" ip -o link show type veth 2>/dev/null | sed -n \
    -e 's/^\([0-9]*\): [^@:]*@if\([0-9]*\):.* link-netns \([^ ]*\).*/\1 \2 name \3/p' \
    -e 's/^\([0-9]*\): [^@:]*@if\([0-9]*\):.* link-netnsid \([0-9]*\).*/\1 \2 id \3/p' \
    -e 's/^\([0-9]*\): [^@:]*:.* link-netns \([^ ]*\).*/\1 \1 name \2/p' \
    -e 's/^\([0-9]*\): [^@:]*:.* link-netnsid \([0-9]*\).*/\1 \1 id \2/p'
}

ends=$(veth_ends "$t_how" "$t_arg")

# peers the kernel names (/run/netns/NAME) are taken as named; the others are searched among
# every process's namespace for a veth whose ifindex and peer are the target veth's peer and ifindex
seen=" $t_inode "
peers=
unnamed=
while read -r a b kind v; do
  [ -n "$a" ] || continue
  if [ "$kind" = name ]; then
    i=$(inode_of "/run/netns/$v")
    [ -n "$i" ] || continue
    case $seen in *" $i "*) continue ;; esac
    seen="$seen$i "
    peers="$peers name:$v:$i"
  else
    unnamed="$unnamed $a:$b"
  fi
done <<EOF
$ends
EOF

skipped=
if [ -n "$unnamed" ]; then
  for f in /proc/[0-9]*/ns/net; do
    i=$(inode_of "$f")
    [ -n "$i" ] || continue
    case $seen in *" $i "*) continue ;; esac
    seen="$seen$i "
    p=${f#/proc/}
    p=${p%%/*}
    if ! have nsenter; then
      skipped="$skipped $i"
      continue
    fi
    hit=
    while read -r a b kind v; do
      case " $unnamed " in *" $b:$a "*) hit=1 ;; esac
    done <<EOF
$(veth_ends pid "$p")
EOF
    if [ -n "$hit" ]; then peers="$peers pid:$p:$i"; fi
  done
fi

tool_version() {
  if have "$1"; then
    v=$("$@" 2>&1 | head -n 1)
    echo "${v:-unknown}"
  else
    echo "not installed"
  fi
}

{
  echo "podwalk-collect: $PODWALK_COLLECT_VERSION"
  echo "node: $name"
  echo "hostname: $(cat /proc/sys/kernel/hostname 2>/dev/null || hostname)"
  echo "boot-id: $(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
  echo "kernel: $(uname -srm)"
  echo "time: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "target: $t_inode"
  if [ -n "$netns" ]; then echo "target-netns: $netns"; fi
  echo "ip: $(tool_version ip -V)"
  echo "bridge: $(tool_version bridge -V)"
  echo "iptables: $(tool_version iptables -V)"
  echo "nft: $(tool_version nft -v)"
  echo "tc: $(tool_version tc -V)"
  echo "ss: $(tool_version ss -V)"
  echo "nstat: $(tool_version nstat -V)"
  echo "conntrack: $(tool_version conntrack -V)"
  for s in $skipped; do echo "skipped: $s (no nsenter to enter it)"; done
} >"$node/manifest.txt"

# one directory per namespace, named by its inode, with where it was found
dump_ns "$node/netns/$t_inode" "$t_how" "$t_arg"
{
  echo "inode: $t_inode"
  echo "role: target"
  if [ -n "$netns" ]; then echo "name: $netns"; fi
} >"$node/netns/$t_inode/where.txt"
for c in $peers; do
  how=${c%%:*}
  rest=${c#*:}
  arg=${rest%:*}
  ino=${rest##*:}
  dump_ns "$node/netns/$ino" "$how" "$arg"
  {
    echo "inode: $ino"
    echo "role: peer"
    if [ "$how" = name ]; then echo "name: $arg"; else echo "pid: $arg"; fi
  } >"$node/netns/$ino/where.txt"
done

if [ "$kube" = 1 ]; then
  if have kubectl; then
    save "$top/kube.json" kubectl get nodes,pods,services,endpointslices,networkpolicies -A -o json
  else
    echo "podwalk-collect: --kube: kubectl is not installed here; run it where it is:" >&2
    echo "  kubectl get nodes,pods,services,endpointslices,networkpolicies -A -o json > DIR/kube.json" >&2
  fi
fi

if [ "$out" = - ]; then
  tar -C "$top" -cf - . | gzip -c
else
  echo "podwalk-collect: wrote $node ($(($(echo $peers | wc -w) + 1)) network namespaces)" >&2
fi
