#!/usr/bin/env bash
# Round trip through the broker with kcat (Debian's kcat 1.7.1 on librdkafka 2.0.2).
#
# usage: kcat_roundtrip.sh BOOTSTRAP TOPIC N [EXPECTED_BROKERS]
#   BOOTSTRAP         HOST:PORT[,HOST:PORT...]
#   TOPIC             must be NEW or EMPTY: kcat cannot create topics, so the producer's Metadata
#                     request AUTO-CREATES it (cluster-default partition count); records already
#                     in it would show up as extra records and fail the comparison.
#   N                 number of records to produce (>= 1)
#   EXPECTED_BROKERS  broker count `kcat -L` must report (default 3)
# Environment: KCAT_TIMEOUT (seconds, default 60) bounds each phase; KCAT (binary, default kcat).
#
# 1. Produce N lines "key<i>:value<i>-<payload>" with -K: (key before the first ':', the payload
#    contains more ':'), default acks (librdkafka's default is all), and wait for kcat to exit,
#    which it does only after every delivery report.
# 2. `kcat -L` must list EXPECTED_BROKERS brokers and the topic with every partition led.
# 3. Consume with `-o beginning -e` (exits at the end of every partition), retrying until N
#    records are read or the deadline passes; the sorted key:value lines must equal the sorted
#    input byte for byte (cmp), the count must be exactly N, and within each partition offsets
#    and record numbers must ascend (produce order).
# Exit 0 with one `OK kcat ...` line on stdout; exit 1 with a FAIL line on stderr otherwise.
set -euo pipefail

log() { echo "kcat_roundtrip: $*" >&2; }
fail() { echo "FAIL: kcat_roundtrip: $*" >&2; exit 1; }

if [ $# -lt 3 ] || [ $# -gt 4 ]; then
    echo "usage: $0 BOOTSTRAP TOPIC N [EXPECTED_BROKERS]" >&2
    exit 2
fi
BOOTSTRAP=$1 TOPIC=$2 N=$3 BROKERS=${4:-3}
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive integer, got '$N'" >&2; exit 2; }
[[ $BROKERS =~ ^[1-9][0-9]*$ ]] || { echo "EXPECTED_BROKERS must be a positive integer" >&2; exit 2; }
TIMEOUT=${KCAT_TIMEOUT:-60}
KCAT=${KCAT:-kcat}
command -v "$KCAT" >/dev/null 2>&1 || fail "$KCAT not found (run scripts/install-test-deps.sh)"
command -v timeout >/dev/null 2>&1 || fail "coreutils timeout not found"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export LC_ALL=C

# --- 1. produce ---------------------------------------------------------------------------------
# Payload: 0..299 characters of a 64-character alphabet that includes ':' (only the first ':'
# splits key from value) and other punctuation, varying per record.
seq 1 "$N" | awk '
    BEGIN { a = "abcdefghijklmnopqrstuvwxyz:ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;-_=+#@" }
    { len = ($1 * 37) % 300; s = ""
      for (j = 0; j < len; j++) s = s substr(a, (($1 + j * 7) % length(a)) + 1, 1)
      printf "key%d:value%d-%s\n", $1, $1, s }' >"$TMP/in.txt"
log "producing $N records to $TOPIC at $BOOTSTRAP"
start=$SECONDS
# message.timeout.ms makes librdkafka fail undelivered records (and kcat report them) before the
# outer timeout kills it. Idempotence is what keeps produce order across retries (librdkafka's
# default is up to 1,000,000 requests in flight, so a retried first batch — e.g. while the
# auto-created topic's leader is not ready yet — would otherwise land after later ones).
if ! timeout "$((TIMEOUT + 10))" "$KCAT" -P -b "$BOOTSTRAP" -t "$TOPIC" -K: \
        -X enable.idempotence=true \
        -X message.timeout.ms="$((TIMEOUT * 1000))" <"$TMP/in.txt" 2>"$TMP/produce.err"; then
    cat "$TMP/produce.err" >&2
    fail "kcat -P failed or timed out (exit above) producing to $TOPIC"
fi
# kcat exits 1 when a delivery fails; check its message too in case a version does not.
if grep -q "Delivery failed" "$TMP/produce.err"; then
    cat "$TMP/produce.err" >&2
    fail "kcat -P reported failed deliveries to $TOPIC"
fi
log "produced $N records in $((SECONDS - start)) s"

# --- 2. metadata --------------------------------------------------------------------------------
deadline=$((SECONDS + TIMEOUT))
while :; do
    problem=""
    if ! timeout 15 "$KCAT" -L -b "$BOOTSTRAP" -t "$TOPIC" >"$TMP/meta.txt" 2>"$TMP/meta.err"; then
        problem="kcat -L failed: $(tail -n 3 "$TMP/meta.err" | tr '\n' ' ')"
    else
        have_brokers=$(sed -n 's/^ \([0-9][0-9]*\) brokers:$/\1/p' "$TMP/meta.txt")
        # '  topic "T" with 3 partitions:' when healthy; an error follows the colon otherwise.
        topic_line=$(awk -v t="\"$TOPIC\"" '$1 == "topic" && $2 == t' "$TMP/meta.txt")
        parts=$(awk -v t="\"$TOPIC\"" \
            '$1 == "topic" && $2 == t && $3 == "with" && $5 == "partitions:" && NF == 5 { print $4 }' \
            "$TMP/meta.txt")
        # '    partition 0, leader 1, replicas: 1,2,3, isrs: 1,2,3' (error text appended if any).
        bad_parts=$(grep -E '^    partition [0-9]+, ' "$TMP/meta.txt" \
                    | grep -vE '^    partition [0-9]+, leader [0-9]+, replicas: [0-9,]+, isrs: [0-9,]+$' \
                    || true)
        if [ "$have_brokers" != "$BROKERS" ]; then
            problem="kcat -L lists '${have_brokers:-no}' brokers, expected $BROKERS"
        elif [ -z "$topic_line" ]; then
            problem="kcat -L does not list topic $TOPIC"
        elif [ -z "$parts" ] || [ "$parts" -lt 1 ]; then
            problem="topic line not healthy: $topic_line"
        elif [ -n "$bad_parts" ]; then
            problem="partitions not healthy: $(echo "$bad_parts" | head -n 3 | tr '\n' ';')"
        fi
    fi
    [ -z "$problem" ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
        cat "$TMP/meta.txt" >&2 2>/dev/null || true
        fail "metadata not as expected within ${TIMEOUT}s: $problem"
    fi
    sleep 0.5
done
log "metadata: $have_brokers brokers, topic $TOPIC with $parts partitions"

# --- 3. consume ---------------------------------------------------------------------------------
deadline=$((SECONDS + TIMEOUT))
attempt=0
while :; do
    attempt=$((attempt + 1))
    left=$((deadline - SECONDS))
    [ "$left" -ge 1 ] || left=1
    rc=0
    timeout "$left" "$KCAT" -C -b "$BOOTSTRAP" -t "$TOPIC" -o beginning -e -q \
        -f '%p %o %k:%s\n' >"$TMP/out.txt" 2>"$TMP/consume.err" || rc=$?
    got=$(wc -l <"$TMP/out.txt")
    if [ "$rc" -eq 0 ] && [ "$got" -eq "$N" ]; then
        break
    fi
    if [ "$got" -gt "$N" ]; then
        fail "read $got records from $TOPIC, produced $N (duplicates or a non-empty topic)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        tail -n 5 "$TMP/consume.err" >&2 || true
        fail "read $got of $N records from $TOPIC within ${TIMEOUT}s (last kcat -C exit $rc, $attempt attempts)"
    fi
    log "attempt $attempt: kcat -C exit $rc, $got of $N records; retrying"
    sleep 0.5
done

cut -d' ' -f3- "$TMP/out.txt" | sort >"$TMP/got.sorted"
sort "$TMP/in.txt" >"$TMP/want.sorted"
if ! cmp -s "$TMP/want.sorted" "$TMP/got.sorted"; then
    diff "$TMP/want.sorted" "$TMP/got.sorted" | head -n 10 >&2 || true
    fail "records read from $TOPIC differ from those produced (diff of sorted want/got above)"
fi
# Per partition, in the order read: offsets strictly ascend and so do record numbers (produce order).
if ! awk '{ p = $1; o = $2 + 0; k = $3; sub(/^key/, "", k); sub(/:.*/, "", k); k += 0
            if ((p in lo) && (o <= lo[p] || k <= lk[p])) {
                printf "partition %s: offset %d key%d read after offset %d key%d\n", p, o, k, lo[p], lk[p] > "/dev/stderr"
                bad = 1; exit 1 }
            lo[p] = o; lk[p] = k }
          END { exit bad }' "$TMP/out.txt"; then
    fail "produce order not kept within a partition of $TOPIC"
fi
used=$(cut -d' ' -f1 "$TMP/out.txt" | sort -u | wc -l)

# --- 4. offsets query and tail (ListOffsets latest/earliest at librdkafka 2.0.2's versions) -----
# `kcat -Q -t T:P:-1` asks each partition's end, `:-2` its start: the ends add up to N, the
# starts are 0.
ends=0
for p in $(seq 0 $((parts - 1))); do
    for ts in -1 -2; do
        if ! line=$(timeout 15 "$KCAT" -Q -b "$BOOTSTRAP" -t "$TOPIC:$p:$ts" 2>"$TMP/q.err"); then
            cat "$TMP/q.err" >&2
            fail "kcat -Q $TOPIC:$p:$ts failed"
        fi
        off=$(echo "$line" | sed -n "s/^$TOPIC \[$p\] offset \(-\{0,1\}[0-9][0-9]*\)$/\1/p")
        [ -n "$off" ] || fail "kcat -Q $TOPIC:$p:$ts answered '$line'"
        if [ "$ts" = -1 ]; then
            ends=$((ends + off))
        elif [ "$off" != 0 ]; then
            fail "kcat -Q: $TOPIC [$p] starts at $off, expected 0"
        fi
    done
done
[ "$ends" -eq "$N" ] || fail "kcat -Q: partition ends add up to $ends, expected $N"
# `kcat -C -o -1 -e`: the last record of each partition, and nothing else.
timeout "$TIMEOUT" "$KCAT" -C -b "$BOOTSTRAP" -t "$TOPIC" -o -1 -e -q -f '%p %o %k:%s\n' \
    >"$TMP/tail.txt" 2>"$TMP/tail.err" || { cat "$TMP/tail.err" >&2; fail "kcat -C -o -1 failed"; }
sort -k1,1n -k2,2n "$TMP/out.txt" | awk '{ last[$1] = $0 } END { for (p in last) print last[p] }' \
    | sort >"$TMP/tail.want"
sort "$TMP/tail.txt" >"$TMP/tail.got"
if ! cmp -s "$TMP/tail.want" "$TMP/tail.got"; then
    diff "$TMP/tail.want" "$TMP/tail.got" | head -n 10 >&2 || true
    fail "kcat -C -o -1 did not read exactly the last record of each partition"
fi
echo "OK kcat: $N records ($parts partitions, $used used, $have_brokers brokers; -Q and -o -1 tail)"
