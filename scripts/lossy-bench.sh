#!/bin/sh
# Compares the tunnel transports (yamux over TLS, QUIC) on a lossy link:
# one-stream throughput, and small round trips behind a bulk stream (head
# of line blocking). Runs the tunnel benchmarks inside a network namespace
# whose loopback has an MTU of 1500 and drops packets at random with
# nftables on input, so senders see no error (this kernel has no netem). Needs root, iproute2, nftables.
#   sh scripts/lossy-bench.sh [drop-per-mille ...]     e.g. 0 5 20
set -eu
cd "$(dirname "$0")/.."
ns=sekisho-lossy
bin=$(mktemp -d)/tunnel.test
go test -c -o "$bin" ./tunnel
trap 'ip netns del $ns 2>/dev/null || true' EXIT
for permille in ${*:-0 5 20}; do
	ip netns del $ns 2>/dev/null || true
	ip netns add $ns
	ip netns exec $ns ip link set lo mtu 1500 up
	ip netns exec $ns nft add table inet lossy
	ip netns exec $ns nft 'add chain inet lossy in { type filter hook input priority 0; }'
	if [ "$permille" -gt 0 ]; then
		ip netns exec $ns nft add rule inet lossy in numgen random mod 1000 '<' "$permille" drop
	fi
	rate=$(awk "BEGIN { printf \"%.1f%%\", $permille / 10 }")
	echo "=== drop $rate"
	ip netns exec $ns env SEKISHO_LOSSY="$rate" "$bin" -test.run '^$' \
		-test.bench 'Lossy' -test.benchtime 3s -test.count "${COUNT:-1}" | grep Benchmark
done
