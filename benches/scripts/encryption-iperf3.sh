#!/usr/bin/env bash
# Pod-to-pod TCP throughput between two nodes of a local cluster, with and without WireGuard,
# in one routing mode (default native): `benches/scripts/encryption-iperf3.sh [native|tunnel]`.
# Needs root, etcd (etcd-server) and iperf3; builds the release binary. Brings each cluster
# up, runs iperf3 for 10 s from node1's pod to node2's, prints the receiver's figure, and
# brings the cluster down (also on failure).
set -euo pipefail
cd "$(dirname "$0")/../.."
routing="${1:-native}"
cargo build --quiet --release -p netstack-ref --bin netstack
netstack=target/release/netstack
work=$(mktemp -d)
trap 'for s in "$work"/state-*; do [ -d "$s" ] && "$netstack" cluster down --state-dir "$s" >/dev/null 2>&1 || true; done; rm -rf "$work"' EXIT
mkdir -p "$work/manifests"
cat > "$work/manifests/pods.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {nodeName: node1}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: default, labels: {app: server}}
spec: {nodeName: node2}
YAML
for encryption in none wireguard; do
	state="$work/state-$encryption"
	name="ip$encryption"
	name="${name:0:6}"
	"$netstack" cluster up --nodes 2 --name "$name" --kvstore etcd --routing "$routing" \
		--encryption "$encryption" --manifests "$work/manifests" --state-dir "$state" >/dev/null
	for _ in $(seq 100); do
		"$netstack" endpoint list --state-dir "$state/node2" 2>/dev/null | grep -q default/server && break
		sleep 0.2
	done
	server=$("$netstack" endpoint list --state-dir "$state/node2" -o json | python3 -c \
		'import json,sys; print([e for e in json.load(sys.stdin) if e["pod"]=="default/server"][0]["ipv4"])')
	ip netns exec "$name-node2-default-server" iperf3 -s -1 -D >/dev/null
	sleep 1
	# Let the nodes learn each other (and, encrypting, each other's keys) first.
	sleep 3
	result=$(ip netns exec "$name-node1-default-client" iperf3 -c "$server" -t 10 -J)
	echo "$result" | python3 -c "import json,sys; r=json.load(sys.stdin)['end']; \
print('$routing $encryption: %.2f Gbit/s received, %d retransmits' % (r['sum_received']['bits_per_second']/1e9, r['sum_sent'].get('retransmits', 0)))"
	"$netstack" cluster down --state-dir "$state" >/dev/null
done
