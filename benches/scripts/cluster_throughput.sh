#!/usr/bin/env bash
# Cross-node TCP throughput with iperf3 (Debian's): a pod on node1 sending to a pod on node2 of a
# two-node `netstack cluster` with native routing, then with the VXLAN tunnel, each in clear and
# encrypted (WireGuard, `--encryption wireguard`), and beside them the plain path: two namespaces
# joined by one veth pair, no BPF. One iperf3 stream each, run after
# run in one invocation (machines here are noisy: compare within a run). Needs root, etcd-server
# and iperf3 (apt-get install -y etcd-server iperf3). Prints Gbit/s as iperf3's receiver saw them.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${SECONDS_PER_RUN:-5}"
cargo build --quiet --release -p netstack-ref --bin netstack
bin="$PWD/target/release/netstack"
work="$(mktemp -d /tmp/throughput.XXXXXX)"
plain_a="tput$$a" plain_b="tput$$b"

cleanup() {
	for state in "$work"/*/; do
		[[ -f "$state/cluster.json" ]] && "$bin" cluster down --state-dir "$state" || true
	done
	ip netns del "$plain_a" 2>/dev/null || true
	ip netns del "$plain_b" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# iperf3 from namespace $1 to $3 (served in namespace $2): the receiver's Gbit/s.
measure() {
	ip netns exec "$2" iperf3 -s -1 -D -p 5201 -I "$work/iperf3.pid"
	sleep 0.5
	ip netns exec "$1" iperf3 -c "$3" -p 5201 -t "$secs" -J |
		python3 -c 'import json, sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'
}

# The plain path.
ip netns add "$plain_a"
ip netns add "$plain_b"
ip -n "$plain_a" link add eth0 type veth peer name eth0 netns "$plain_b"
ip -n "$plain_a" addr add 10.99.0.1/24 dev eth0
ip -n "$plain_b" addr add 10.99.0.2/24 dev eth0
for ns in "$plain_a" "$plain_b"; do ip -n "$ns" link set eth0 up; ip -n "$ns" link set lo up; done
plain="$(measure "$plain_a" "$plain_b" 10.99.0.2)"

# The cluster, in each routing mode.
pods='apiVersion: v1
kind: Namespace
metadata: {name: tp}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: tp, labels: {app: client}}
spec: {nodeName: node1}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: tp, labels: {app: server}}
spec: {nodeName: node2}'
declare -A result
for case in native/none tunnel/none native/wireguard tunnel/wireguard; do
	routing="${case%/*}" encryption="${case#*/}"
	state="$work/$routing-$encryption"
	mkdir -p "$state/manifests"
	echo "$pods" >"$state/manifests/pods.yaml"
	"$bin" cluster up --nodes 2 --routing "$routing" --encryption "$encryption" --kvstore etcd \
		--name "tp$$${routing:0:1}${encryption:0:1}" --state-dir "$state" --manifests "$state/manifests" >/dev/null
	row() { # node pod field
		"$bin" endpoint list --state-dir "$state/$1" -o json 2>/dev/null |
			python3 -c "import json, sys; print(next((r['$3'] for r in json.load(sys.stdin) if r['pod'] == '$2'), ''))" 2>/dev/null || true
	}
	for _ in $(seq 150); do
		[[ -n "$(row node1 tp/client netns)" && -n "$(row node2 tp/server netns)" ]] && break
		sleep 0.2
	done
	client_ns="$(row node1 tp/client netns)" server_ns="$(row node2 tp/server netns)" server_ip="$(row node2 tp/server ipv4)"
	# Until node1 has learnt the server through etcd.
	for _ in $(seq 150); do
		ip netns exec "$client_ns" ping -c1 -W1 "$server_ip" >/dev/null 2>&1 && break
		sleep 0.2
	done
	# Encrypting, the first packets also wait for the WireGuard handshake.
	sleep 2
	result[$case]="$(measure "$client_ns" "$server_ns" "$server_ip")"
	"$bin" cluster down --state-dir "$state"
done

printf '%-36s %s\n' "path (one TCP stream, ${secs} s)" "Gbit/s"
printf '%-36s %s\n' "plain veth pair (no BPF)" "$plain"
printf '%-36s %s\n' "cluster, native routing" "${result[native/none]}"
printf '%-36s %s\n' "cluster, VXLAN tunnel" "${result[tunnel/none]}"
printf '%-36s %s\n' "cluster, native, WireGuard" "${result[native/wireguard]}"
printf '%-36s %s\n' "cluster, tunnel, WireGuard" "${result[tunnel/wireguard]}"
