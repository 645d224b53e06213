#!/bin/sh
# Records the real `ip link add/del` (iproute2 6.1 on this kernel), each section in a fresh
# namespace of its own, for test/iplink.test.ts. Root; run under the lab lock:
#   flock /tmp/podwalk-lab.lock sh scripts/record-iplink.sh > test/fixtures/iplink/real.txt
N=pwh-iplink-rec
r() { echo "\$ ip $*"; ip -n $N "$@" 2>&1; echo "rc=$?"; }
fresh() { ip netns del $N 2>/dev/null; ip netns add $N; echo "# namespace $1"; }
fresh 1
r link add eth0 type veth peer name p0
r link add eth0 type veth peer name p1
r link add p0 type bridge
r link add cni0 type bridge
r link add cni0 type bridge
r link add vx0 type vxlan id 1 dev eth0 local 10.0.0.1 dstport 4789 nolearning
r link add vx1 type vxlan id 2 dev eth0 dstport 4789 mtu 1451
r link add vx1 type vxlan id 2 dev eth0 dstport 4789 mtu 1450
r link set vx1 mtu 1451
r link add vx2 type vxlan id 3 dev nodev dstport 4789
r link add vx3 type vxlan id 1 dev eth0 dstport 4789
r link add vx4 type vxlan id 4
r link add vx5 type vxlan id 5 remote 10.0.0.2 dstport 4789
r link add vx6 type vxlan id 6 local 10.0.0.1 remote 10.0.0.2 dstport 4789
r link add vx7 type vxlan dstport 4789
r link add vx8 type vxlan id 16777216 dstport 4789
r link add veth9 type veth
r link add v10 type veth peer v11
r link add v12 mtu 9000 type veth peer name v13
r link add x type dummy
r link add type bridge
r link add eth0peer2 type veth peer name eth0
r link del nope
r link delete p0
r link del cni0
r link del vx0
r link del dev vx1
fresh 2
r link add eth0 type veth peer name p0
r link add vx1 mtu 1451 type vxlan id 2 dev eth0 dstport 4789
r link add vx1 mtu 1450 type vxlan id 2 dev eth0 dstport 4789
r link set vx1 mtu 1451
r link add vx0 type vxlan id 1 dev eth0 local 10.0.0.1 dstport 4789 nolearning
r link add vx9 mtu 1400 type vxlan id 9 dstport 4789
r link add br1 mtu 70000 type bridge
r link add br2 address 02:00:00:00:00:09 type bridge
r link add vv type veth peer name vv
r link del eth0
ip netns del $N
