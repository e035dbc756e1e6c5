#!/bin/bash
# Capacity runs against separately started roles on loopback: a toy core,
# a connector and a gateway, each its own process, and sekisho loadgen
# processes as the agents. The gateway's RSS and CPU time are read from
# /proc, its live agent connections from its /metrics.
#
#   scripts/capacity.sh idle tcp 5000,5000,5000,4000      # 19,000 TCP agents in 4 steps
#   scripts/capacity.sh idle quic 20000,20000,20000,20000,20000
#   scripts/capacity.sh storm tcp 5000,5000               # restart the gateway under 10,000 agents
#
# Each number is one loadgen process and one step; the figures are taken
# after each step. Environment:
#   OUT            results directory (default: a new one under /tmp)
#   BASE_PORT      ports BASE_PORT+443 (gateway TCP and UDP), +444 (QUIC
#                  tunnels), +180/+181 (admin), +80 (core). Default 28000.
#   GW_GOMEMLIMIT, LG_GOMEMLIMIT   GOMEMLIMIT of the gateway and of each loadgen
#   KEEPALIVE      agents' keepalive period (default 4m; the gateway's idle
#                  timeout is set to 10m here)
#   STEP_TIMEOUT   seconds a step may take to connect (default 600); a step
#                  whose count stops growing for STALL seconds (default 20)
#                  ends early (some agents failed to connect)
#   CONNECT_RATE, CONCURRENCY   loadgen's --connect-rate and --concurrency
#   RECONNECT=1    idle agents retry failed connects and come back when lost
#                  (always on for storm)
#   MIN_AVAILABLE_MIB  stop adding agents below this much available memory (default 1536)
# Every process it starts is stopped on exit, by its PID.
set -euo pipefail

MODE=${1:?usage: capacity.sh idle|storm tcp|h2|quic N,N,...}
TRANSPORT=${2:?transport: tcp, h2 or quic}
STEPS=${3:?comma-separated agents per loadgen process}
BASE_PORT=${BASE_PORT:-28000}
KEEPALIVE=${KEEPALIVE:-4m}
STEP_TIMEOUT=${STEP_TIMEOUT:-600}
STALL=${STALL:-20}
CONNECT_RATE=${CONNECT_RATE:-0}
CONCURRENCY=${CONCURRENCY:-256}
MIN_AVAILABLE_MIB=${MIN_AVAILABLE_MIB:-1536}
OUT=${OUT:-$(mktemp -d /tmp/sekisho-capacity.XXXXXX)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
W=$OUT/work
mkdir -p "$W"

GW_PORT=$((BASE_PORT + 443)) TUN_PORT=$((BASE_PORT + 444))
GW_ADMIN=$((BASE_PORT + 180)) CONN_ADMIN=$((BASE_PORT + 181)) CORE_PORT=$((BASE_PORT + 80))

PIDS=()
# ours PID: the process is still one this script started (not a reused PID).
ours() { [ "$(readlink "/proc/$1/exe" 2>/dev/null)" = "$SEKISHO" ]; }
cleanup() {
	for pid in "${PIDS[@]}"; do
		ours "$pid" && kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do ours "$pid" || break; sleep 0.2; done
		ours "$pid" && kill -KILL "$pid" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "$(date +%T) $*" | tee -a "$OUT/run.log" >&2; }

SEKISHO=$W/sekisho
(cd "$ROOT" && go build -o "$SEKISHO" ./cmd/sekisho)

setup_pki() {
	$SEKISHO ca init --tenant acme --dir "$W/ca" >/dev/null
	$SEKISHO ca init --tenant gateway-pki --dir "$W/gateway-ca" >/dev/null
	$SEKISHO ca issue-server --dir "$W/gateway-ca" --host localhost --host 127.0.0.1 --out "$W/gateway" >/dev/null
	PIN=$($SEKISHO key create "$W/connector.key")
	cat >"$W/gateway.yaml" <<EOF
role: gateway
id: gw-capacity
listen: 127.0.0.1:$GW_PORT
tls: {cert_file: gateway/server.pem, key_file: gateway/server.key}
quic: {listen: 127.0.0.1:$GW_PORT, tunnel_listen: 127.0.0.1:$TUN_PORT, stateless_reset_key_file: quic-reset.key}
tenants:
  - name: acme
    connector_pins: [$PIN]
limits:
  idle_timeout: 10m
admin: {listen: 127.0.0.1:$GW_ADMIN}
access_log: {sample: 0}
shutdown_timeout: 5s
log: {level: warn, format: json}
EOF
	cat >"$W/connector.yaml" <<EOF
role: connector
id: conn-capacity
tenant: acme
key_file: connector.key
transport: tcp
gateways:
  - address: 127.0.0.1:$GW_PORT
    quic_address: 127.0.0.1:$TUN_PORT
    ca_file: gateway-ca/ca.pem
agent_ca: {cert_files: [ca/ca.pem]}
services:
  - {name: core, path_prefix: /, address: 127.0.0.1:$CORE_PORT}
admin: {listen: 127.0.0.1:$CONN_ADMIN}
log: {level: warn, format: json}
EOF
}

start_gateway() {
	GOMEMLIMIT=${GW_GOMEMLIMIT:-} $SEKISHO gateway --config "$W/gateway.yaml" >>"$OUT/gateway.log" 2>&1 &
	GW=$!
	PIDS+=("$GW")
	for _ in $(seq 100); do
		curl -fs "http://127.0.0.1:$GW_ADMIN/healthz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	log "gateway did not start"; return 1
}

start_roles() {
	$SEKISHO demo core --listen "127.0.0.1:$CORE_PORT" --payload-size 64KiB >>"$OUT/core.log" 2>&1 &
	PIDS+=("$!")
	start_gateway
	$SEKISHO connector --config "$W/connector.yaml" >>"$OUT/connector.log" 2>&1 &
	PIDS+=("$!")
	for _ in $(seq 100); do
		[ "$(metric sekisho_gateway_tenant_served)" = 1 ] && return 0
		sleep 0.1
	done
	log "tenant not served"; return 1
}

# metric NAME: the sum of a gauge's series on the gateway's /metrics.
metric() {
	curl -fs "http://127.0.0.1:$GW_ADMIN/metrics" 2>/dev/null |
		awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d\n", s }'
}
agents() { metric sekisho_gateway_agent_connections; }
rss_mib() { awk '/^VmRSS:/ { printf "%d\n", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_s() { awk '{ printf "%.2f\n", ($14 + $15) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
available_mib() { awk '/^MemAvailable:/ { printf "%d\n", $2 / 1024 }' /proc/meminfo; }
lg_rss_mib() {
	local t=0 p
	for p in "${LGS[@]}"; do t=$((t + $(rss_mib "$p"))); done
	echo $t
}

# loadgen I N FIRST: start loadgen process I with N agents numbered from FIRST.
LGS=()
loadgen() {
	local args=(--target "127.0.0.1:$GW_PORT" --ca-dir "$W/ca" --gateway-ca "$W/gateway-ca/ca.pem"
		--server-name localhost --agents "$2" --first-agent "$3" --duration 30m --keepalive "$KEEPALIVE" --json
		--connect-rate "$CONNECT_RATE" --concurrency "$CONCURRENCY")
	case $TRANSPORT in
	h2) args+=(--h2) ;;
	quic) args+=(--transport quic) ;;
	esac
	if [ "$MODE" = storm ] || [ -n "${RECONNECT:-}" ]; then args+=(--reconnect); fi
	GOMEMLIMIT=${LG_GOMEMLIMIT:-} $SEKISHO loadgen "${args[@]}" >"$OUT/loadgen-$1.json" 2>"$OUT/loadgen-$1.err" &
	LGS+=("$!")
	PIDS+=("$!")
}

# wait_agents N TIMEOUT: wait until the gateway holds N agents; returns 1
# on timeout, a stall, a loadgen gone, or memory running out.
wait_agents() {
	local deadline=$((SECONDS + $2)) n last=-1 since=$SECONDS
	while :; do
		n=$(agents)
		[ "$n" -ge "$1" ] && return 0
		[ $SECONDS -ge $deadline ] && { log "timeout at $n agents"; return 1; }
		if [ "$n" != "$last" ]; then
			last=$n since=$SECONDS
		elif [ $((SECONDS - since)) -ge "$STALL" ]; then
			log "stalled at $n agents for $STALL s"
			return 1
		fi
		for p in "${LGS[@]}"; do kill -0 "$p" 2>/dev/null || { log "a loadgen exited at $n agents"; return 1; }; done
		if [ "$(available_mib)" -lt "$MIN_AVAILABLE_MIB" ]; then
			log "available memory below $MIN_AVAILABLE_MIB MiB at $n agents: stopping"
			STOP=1
			return 1
		fi
		sleep 1
	done
}

# figures LABEL: one line of the results table, with the gateway's CPU
# while idle over 10 s.
figures() {
	local c0 c1 n
	c0=$(cpu_s "$GW")
	sleep 10
	c1=$(cpu_s "$GW")
	n=$(agents)
	printf '%s\t%d\t%d\t%s\t%s\t%d\t%d\n' "$1" "$n" "$(rss_mib "$GW")" "$c1" \
		"$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", (b - a) * 10 }')" "$(lg_rss_mib)" "$(available_mib)" |
		tee -a "$OUT/figures.tsv"
}

stop_loadgens() {
	for p in "${LGS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	for p in "${LGS[@]}"; do wait "$p" 2>/dev/null || true; done
}

idle() {
	printf 'step\tagents\tgw_rss_MiB\tgw_cpu_s\tgw_idle_cpu_%%\tloadgen_rss_MiB\tavailable_MiB\n' | tee "$OUT/figures.tsv"
	figures start
	local i=0 first=0 target=0 t0 c0
	for n in ${STEPS//,/ }; do
		i=$((i + 1))
		target=$((target + n))
		t0=$SECONDS c0=$(cpu_s "$GW")
		loadgen "$i" "$n" "$first"
		first=$((first + n))
		if ! wait_agents "$target" "$STEP_TIMEOUT"; then
			figures "step$i-incomplete"
			[ -n "${STOP:-}" ] && break
			target=$(agents)
			continue
		fi
		log "step $i: $target agents in $((SECONDS - t0)) s, gateway CPU $(awk -v a="$c0" -v b="$(cpu_s "$GW")" -v n="$n" 'BEGIN { printf "%.0f", (b - a) * 1e6 / n }') us per agent connected"
		figures "step$i"
	done
	stop_loadgens
	for j in $(seq "$i"); do
		jq -c '{agents, connected, connect_failed, connect_retries, connects_per_second, requests, requests_failed, lost, reconnected, still_down, errors_by_kind}' "$OUT/loadgen-$j.json" | tee -a "$OUT/run.log"
	done
}

storm() {
	local target=0 first=0 i=0 t0 ramp
	for n in ${STEPS//,/ }; do target=$((target + n)); done
	t0=$(date +%s.%N)
	for n in ${STEPS//,/ }; do
		i=$((i + 1))
		loadgen "$i" "$n" "$first"
		first=$((first + n))
	done
	wait_agents "$target" "$STEP_TIMEOUT" || { log "the agents did not all connect"; return 1; }
	ramp=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
	log "ramp: $target agents in $ramp s: $(awk -v n="$target" -v r="$ramp" 'BEGIN { printf "%.0f", n / r }') connects/s; bound 2 x $target / rate = $(awk -v r="$ramp" 'BEGIN { printf "%.2f", 2 * r }') s"
	sleep 10
	log "restarting the gateway (SIGTERM, then a new process)"
	local tk tu ta
	tk=$(date +%s.%N)
	kill -TERM "$GW"
	wait "$GW" 2>/dev/null || true
	start_gateway
	tu=$(date +%s.%N)
	wait_agents "$target" "$STEP_TIMEOUT" || true
	ta=$(date +%s.%N)
	log "gateway down $(awk -v a="$tk" -v b="$tu" 'BEGIN { printf "%.2f", b - a }') s; all $target back $(awk -v a="$tk" -v b="$ta" 'BEGIN { printf "%.2f", b - a }') s after the restart began, $(awk -v a="$tu" -v b="$ta" 'BEGIN { printf "%.2f", b - a }') s after the new gateway listened"
	sleep 5
	stop_loadgens
	local last=0 b
	for j in $(seq "$i"); do
		jq -c '{agents, connected, lost, reconnected, still_down, reconnect_attempts_failed, reconnect_p50_ms, reconnect_p99_ms, reconnect_max_ms, first_lost, last_back, errors_by_kind, first_errors}' "$OUT/loadgen-$j.json" | tee -a "$OUT/run.log"
		b=$(date -d "$(jq -r .last_back "$OUT/loadgen-$j.json")" +%s.%N)
		last=$(awk -v a="$last" -v b="$b" 'BEGIN { print (b > a ? b : a) }')
	done
	log "as the agents saw it: the last one was back $(awk -v a="$tk" -v b="$last" 'BEGIN { printf "%.2f", b - a }') s after the restart began, $(awk -v a="$tu" -v b="$last" 'BEGIN { printf "%.2f", b - a }') s after the new gateway listened (bound $(awk -v r="$ramp" 'BEGIN { printf "%.2f", 2 * r }') s)"
}

log "sekisho capacity: $MODE $TRANSPORT $STEPS; results in $OUT; $(nproc) cores, $(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
setup_pki
start_roles
case $MODE in
idle) idle ;;
storm) storm ;;
*) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
log "done; results in $OUT"
