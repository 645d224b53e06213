#!/bin/sh
# Records the send buffer (SO_SNDBUF: sk_sndbuf) the real kernel gives an established TCP
# connection over a veth of MTU 1500 (MSS 1460) with the namespace's default congestion control,
# for test/tcp-stream.test.ts: tcp_init_buffer_space → tcp_sndbuf_expand sets it when the
# connection is established. Two namespaces pwh-sndbuf-a and pwh-sndbuf-b, a veth pair, a listener
# on b's port 179 and a connect() from a; nothing leaves them, and they are deleted again. Run it
# alone: flock /tmp/podwalk-lab.lock sh scripts/record-sndbuf.sh
set -eu
A=pwh-sndbuf-a
B=pwh-sndbuf-b
OUT="$(dirname "$0")/../test/fixtures/tcp/sndbuf.json"
ip netns add $A
ip netns add $B
trap 'ip netns del $A; ip netns del $B' EXIT
ip link add va netns $A type veth peer name vb netns $B
ip -n $A addr add 10.99.0.1/24 dev va
ip -n $B addr add 10.99.0.2/24 dev vb
ip -n $A link set va up
ip -n $B link set vb up
ip netns exec $B python3 -c '
import socket, time
s = socket.socket(); s.bind(("10.99.0.2", 179)); s.listen(1)
c, _ = s.accept(); time.sleep(1)' &
sleep 0.5
ip netns exec $A python3 -c '
import json, os, socket
s = socket.socket()
before = s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
s.connect(("10.99.0.2", 179))
read = lambda k: open("/proc/sys/net/ipv4/" + k).read().split()
print(json.dumps({
    "kernel": os.uname().release,
    "congestionControl": read("tcp_congestion_control")[0],
    "tcpWmem": [int(x) for x in read("tcp_wmem")],
    "mtu": 1500,
    "mss": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG),
    "sndbufBeforeConnect": before,
    "sndbufEstablished": s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
}, indent=1))' > "$OUT"
wait
cat "$OUT"
