#!/usr/bin/env bash
# A dmq cluster across "hosts": one Linux network namespace per node, each with its own address
# on a private bridge, plus a client host. Needs root, iproute2 (ip netns, veth, bridge), unshare,
# curl and jq.
#
#   scripts/multihost.sh [PATH_TO_DMQ]          (or DMQ_BIN=...; default target/debug/dmq)
#
#   10.77.0.11-13  metadata nodes 1-3        (HTTP 9091)
#   10.77.0.21-23  brokers 101-103           (HTTP 8081, Kafka 19092), each also in its own UTS
#                  namespace named dmq-broker-0..2 and started with --id-from-hostname 101,
#                  as a Kubernetes StatefulSet pod would be
#   10.77.0.100    the client host that runs the dmq CLI
#
# It writes a services.json with those addresses, starts the six nodes, waits for
# /health/ready on each, creates a topic with replication factor 3, produces and consumes across
# hosts, SIGKILLs a broker that leads partitions, checks that every partition gets a live leader
# and that every record is still readable (and writable), and prints "multihost: PASS".
# Everything lives in namespaces named dmqmh<run id>-*; the bridge sits in one of them too, so
# nothing touches the host's own network. The EXIT trap kills every process and deletes every
# namespace (which deletes their links), even on failure; two runs side by side do not collide.
# KEEP=1 keeps the data and logs directory.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DMQ="${1:-${DMQ_BIN:-$REPO/target/debug/dmq}}"
DEADLINE_S="${MULTIHOST_DEADLINE_S:-40}"   # for each wait below

log() { echo "multihost: $*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
[ -x "$DMQ" ] || die "no dmq binary at $DMQ (give its path as the first argument or DMQ_BIN)"
DMQ="$(cd "$(dirname "$DMQ")" && pwd)/$(basename "$DMQ")"
for tool in ip unshare curl jq; do
    command -v "$tool" >/dev/null 2>&1 || die "missing $tool (scripts/install-test-deps.sh installs it)"
done

# A run id unique on this machine: names must be short (interface names: 15 bytes at most).
RUN="$(printf '%04x%02x' $(($$ % 65536)) $((RANDOM % 256)))"
P="dmqmh$RUN"                 # prefix of every namespace of this run
SW="$P-sw"                    # the "switch": holds the bridge and the host ends of the veths
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dmq-multihost.XXXXXX")"
PIDS=()
NSES=()
log "run $RUN, binary $DMQ, work dir $WORK"
echo "multihost: run id $RUN"
echo "multihost: work dir $WORK"

cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    for ns in "${NSES[@]}"; do
        # Anything else still running in the namespace (a client command cut short).
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    # The nodes are disowned (no job notices); bash still reaps them. Wait until they are gone.
    local tries=0
    while [ "$tries" -lt 100 ]; do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        tries=$((tries + 1))
        sleep 0.1
    done
    for ns in "${NSES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    if [ "$rc" -ne 0 ]; then
        for f in "$WORK"/*.log; do
            [ -f "$f" ] || continue
            echo "----- last lines of $(basename "$f")" >&2
            tail -n 15 "$f" >&2
        done
    fi
    if [ "${KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    local left
    left="$(ip netns list 2>/dev/null | grep -c "^$P-" || true)"
    [ "$left" -eq 0 ] || { log "FAIL: $left namespaces of run $RUN left behind"; rc=1; }
    if [ "$rc" -eq 0 ]; then log "torn down"; else log "torn down after a failure (exit $rc)"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the network ------------------------------------------------------------------------------
mkns() { ip netns add "$1"; NSES+=("$1"); ip -n "$1" link set lo up; }
mkns "$SW"
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up

# host NAME ADDR: a namespace with eth0 = ADDR/24 on the bridge.
host() {
    local ns="$P-$1" addr="$2"
    mkns "$ns"
    ip -n "$SW" link add "v$1" type veth peer name eth0 netns "$ns"
    ip -n "$SW" link set "v$1" master br0 up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
}
for i in 1 2 3; do host "m$i" "10.77.0.1$i"; done
for i in 1 2 3; do host "b$i" "10.77.0.2$i"; done
host client 10.77.0.100
on() { local ns="$P-$1"; shift; ip netns exec "$ns" "$@"; }

# --- services.json with the hosts' addresses ----------------------------------------------------
CONFIG="$WORK/services.json"
cat >"$CONFIG" <<EOF
{
  "services": {
    "metadata-services": [
      {"id": 1, "host": "10.77.0.11", "port": 9091, "url": "http://10.77.0.11:9091"},
      {"id": 2, "host": "10.77.0.12", "port": 9091, "url": "http://10.77.0.12:9091"},
      {"id": 3, "host": "10.77.0.13", "port": 9091, "url": "http://10.77.0.13:9091"}
    ],
    "storage-services": [
      {"id": 101, "host": "10.77.0.21", "port": 8081, "kafkaPort": 19092, "url": "http://10.77.0.21:8081"},
      {"id": 102, "host": "10.77.0.22", "port": 8081, "kafkaPort": 19092, "url": "http://10.77.0.22:8081"},
      {"id": 103, "host": "10.77.0.23", "port": 8081, "kafkaPort": 19092, "url": "http://10.77.0.23:8081"}
    ]
  }
}
EOF

# --- the nodes ---------------------------------------------------------------------------------
declare -A PID_OF
for i in 1 2 3; do
    # `ip netns exec`, unshare and `sh -c 'exec'` all exec: $! is the dmq process itself.
    ip netns exec "$P-m$i" "$DMQ" --log-format json metadata --node-id "$i" --config "$CONFIG" \
        --data-dir "$WORK/metadata-$i" >"$WORK/metadata-$i.log" 2>&1 &
    PIDS+=($!)
    PID_OF["m$i"]=$!
    disown
done
for i in 1 2 3; do
    id=$((100 + i))
    # A UTS namespace of its own: the broker's id comes from its host name, like a pod's.
    # shellcheck disable=SC2016 # $1 and $@ are the inner shell's
    ip netns exec "$P-b$i" unshare --uts sh -c 'hostname "$1" && shift && exec "$@"' sh \
        "dmq-broker-$((i - 1))" "$DMQ" --log-format json broker --id-from-hostname 101 \
        --config "$CONFIG" --data-dir "$WORK/broker-$id" >"$WORK/broker-$id.log" 2>&1 &
    PIDS+=($!)
    PID_OF[$id]=$!
    disown
done

# wait_for WHAT CMD...: polls CMD until it succeeds, at most DEADLINE_S seconds.
wait_for() {
    local what="$1"; shift
    local end=$((SECONDS + DEADLINE_S))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || die "timed out after ${DEADLINE_S}s waiting for $what"
        sleep 0.2
    done
}
alive() { kill -0 "$1" 2>/dev/null || die "process $1 exited early"; }
ready() { on client curl -fsS -m 2 "$1/health/ready"; }

START=$SECONDS
for i in 1 2 3; do
    alive "${PID_OF[m$i]}"
    wait_for "metadata node $i (10.77.0.1$i) to be ready" ready "http://10.77.0.1$i:9091"
done
for i in 1 2 3; do
    alive "${PID_OF[$((100 + i))]}"
    wait_for "broker $((100 + i)) (10.77.0.2$i) to be ready" ready "http://10.77.0.2$i:8081"
done
log "all six nodes ready after $((SECONDS - START))s"
# Each broker took its id from its host name and registered with its own address.
brokers_json="$(on client curl -fsS -m 5 http://10.77.0.11:9091/api/v1/metadata/brokers)"
for i in 1 2 3; do
    echo "$brokers_json" | jq -e --argjson id $((100 + i)) --arg host "10.77.0.2$i" \
        '(if type == "array" then . else .brokers end)
         | map(select(.brokerId == $id and .host == $host and .status == "ONLINE")) | length == 1' \
        >/dev/null || die "broker $((100 + i)) is not registered ONLINE at 10.77.0.2$i: $brokers_json"
done

# --- the client host ---------------------------------------------------------------------------
export DMQ_BOOTSTRAP="10.77.0.21:19092,10.77.0.22:19092,10.77.0.23:19092"
export DMQ_METADATA="http://10.77.0.11:9091,http://10.77.0.12:9091,http://10.77.0.13:9091"
cli() { on client timeout 30 "$DMQ" "$@"; }
TOPIC=multihost
N=300

cli topic create "$TOPIC" --partitions 3 --replication-factor 3 | tee -a "$WORK/client.log" >&2
# Keyed records ("k7:7"), so every partition, and so every broker as a leader, gets some.
records() { seq "$1" "$2" | sed 's/.*/k&:&/'; }
records 1 "$N" | cli produce "$TOPIC" --acks all --key-separator : | tee -a "$WORK/client.log" >&2

# consume_all COUNT: every record of the topic, sorted, must be 1..COUNT.
consume_all() {
    local want="$1" got
    got="$(cli consume "$TOPIC" --from-beginning --max "$want" --timeout-ms 15000 | sort -n)"
    [ "$got" = "$(seq 1 "$want")" ] \
        || die "consumed $(echo "$got" | grep -c . || true) records, not 1..$want: $(echo "$got" | head -c 300)"
}
consume_all "$N"
log "produced and consumed $N records across hosts"

# Every partition has 3 in-sync replicas before a broker dies.
full_isr() {
    cli topic describe "$TOPIC" --output json \
        | jq -e '.partitions | length == 3 and all(.isr | length == 3)'
}
wait_for "every partition to have 3 in-sync replicas" full_isr
describe="$(cli topic describe "$TOPIC" --output json)"
VICTIM="$(echo "$describe" | jq -r '.partitions[0].leader')"
[ -n "${PID_OF[$VICTIM]:-}" ] || die "partition 0's leader is $VICTIM, not one of our brokers: $describe"
LED="$(echo "$describe" | jq -c --argjson v "$VICTIM" '[.partitions[] | select(.leader == $v) | .partition]')"
log "SIGKILL broker $VICTIM (leader of partitions $LED)"
[ "$(readlink "/proc/${PID_OF[$VICTIM]}/exe")" = "$DMQ" ] \
    || die "process ${PID_OF[$VICTIM]} is not broker $VICTIM's dmq"
kill -KILL "${PID_OF[$VICTIM]}"
KILLED_AT=$SECONDS
gone() { ! kill -0 "${PID_OF[$VICTIM]}" 2>/dev/null; }
wait_for "broker $VICTIM to die" gone

moved() {
    cli topic describe "$TOPIC" --output json >"$WORK/describe.json" 2>"$WORK/describe.err" \
        || return 1
    jq -e --argjson v "$VICTIM" '.partitions | all(.leader >= 0 and .leader != $v)' \
        "$WORK/describe.json"
}
wait_for "the partitions of broker $VICTIM to get new leaders" moved
after="$(cli topic describe "$TOPIC" --output json)"
log "leaders moved after $((SECONDS - KILLED_AT))s: $(echo "$after" | jq -c '[.partitions[] | {partition, leader, isr}]')"

consume_all "$N"
log "all $N records still readable without broker $VICTIM"
records $((N + 1)) $((N + 100)) | cli produce "$TOPIC" --acks all --key-separator : \
    | tee -a "$WORK/client.log" >&2
consume_all $((N + 100))
log "100 more records written and read with broker $VICTIM down"

echo "multihost: PASS in $((SECONDS - START))s (3 metadata nodes, 3 brokers, broker $VICTIM killed, partitions $LED moved)"
