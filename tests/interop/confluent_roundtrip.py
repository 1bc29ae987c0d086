#!/usr/bin/env python3
"""Round trip through the broker with confluent-kafka (librdkafka), once per compression codec.

Topics: CREATED by this script with the AdminClient (CreateTopics), one per run:
  <prefix>-none, <prefix>-gzip, <prefix>-snappy, <prefix>-lz4, <prefix>-zstd, <prefix>-idem
with --partitions (default 3) partitions and --replication-factor (default 1), then waits until
metadata shows every partition with a leader. A topic that already exists is an error (use a fresh
prefix), so every check can be exact. With --create auto the script instead relies on Metadata
auto-create (cluster-default partition count) and needs the topics to be new or empty.

For each codec: produce --records (2000) keyed records (keys k<i>, random binary values of 0..2000
bytes, two headers, explicit CreateTime timestamps) with compression.type=<codec>, acks=all; wait
for every delivery report and fail on any error. Then consume group-less: assign() every partition
from OFFSET_BEGINNING (no subscribe, no commit) until each partition reaches its high watermark
(deadline --timeout, 60 s). librdkafka's consumer insists on a group.id, so a throwaway one is set;
librdkafka 2.16 still sends FindCoordinator for it (seen with debug=protocol; an error answer should
only be retried in the background, not verified here) but no JoinGroup, OffsetFetch or OffsetCommit. Checks: every record byte-identical (key, value, headers, timestamp),
at the partition/offset its delivery report named, per partition in produce order, nothing lost,
nothing duplicated, nothing extra below the high watermark.

Then the same with enable.idempotence=true on <prefix>-idem with --idem-records (5000) records.

Exit 0 and one `OK confluent <codec>: N records ...` line per run on stdout; exit 1 with a FAIL line
on stderr otherwise. Progress goes to stderr.
"""

import argparse
import os
import uuid

from confluent_kafka import (OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, Consumer, KafkaError,
                             KafkaException, Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from interop_common import CheckFailed, Deadline, check_partition_log, log, make_records, ok, run_main

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def create_topic(bootstrap, topic, partitions, rf, timeout, how):
    """Creates topic (CreateTopics, or with how='auto' a Metadata request that auto-creates it) and
    waits until metadata shows every partition with a leader. Returns the partition count."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if how == "admin":
        log("creating topic %s (%d partitions, replication factor %d)" % (topic, partitions, rf))
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                                replication_factor=rf)],
                                      operation_timeout=min(30.0, timeout),
                                      request_timeout=timeout)
        try:
            futures[topic].result(timeout=timeout + 5)
        except KafkaException as e:
            err = e.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                raise CheckFailed("topic %s already exists; use a fresh --topic-prefix" % topic)
            raise CheckFailed("CreateTopics %s failed: %s" % (topic, err))
    else:
        log("auto-creating topic %s through a Metadata request" % topic)
    # Wait until metadata shows every partition with a leader (the create answer may precede it).
    # A Producer asks for the topic with auto-create allowed; AdminClient metadata never creates.
    meta = admin if how == "admin" else Producer({"bootstrap.servers": bootstrap})
    deadline = Deadline(timeout, "metadata for new topic %s" % topic)
    last = "no answer yet"
    while True:
        try:
            md = meta.list_topics(topic=topic, timeout=deadline.step(5.0) or 0.1)
            t = md.topics.get(topic)
            if t is None:
                last = "topic absent from metadata"
            elif t.error is not None:
                last = "topic error %s" % t.error
            elif how == "admin" and len(t.partitions) != partitions:
                last = "%d partitions, want %d" % (len(t.partitions), partitions)
            elif not t.partitions:
                last = "no partitions"
            else:
                bad = [p for p in t.partitions.values() if p.error is not None or p.leader < 0]
                if not bad:
                    return len(t.partitions)
                last = "partitions without leader: %s" % sorted(p.id for p in bad)
        except KafkaException as e:
            last = str(e)
        if deadline.expired():
            deadline.fail(last)
        deadline.sleep(0.2)


def produce(bootstrap, topic, records, base_ts, extra_conf, timeout):
    # message.timeout.ms inside the deadline: librdkafka then fails undelivered records itself,
    # with its reason, before the deadline check below fires.
    conf = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
            "message.timeout.ms": max(1000, int(timeout * 900))}
    conf.update(extra_conf)
    producer = Producer(conf)
    delivered = [None] * len(records)
    errors = []

    def on_delivery(i):
        def cb(err, msg):
            if err is not None:
                errors.append("record %d: %s" % (i, err))
            else:
                delivered[i] = (msg.partition(), msg.offset())
        return cb

    deadline = Deadline(timeout, "producing %d records to %s" % (len(records), topic))
    try:
        for i, (key, value, headers) in enumerate(records):
            while True:
                try:
                    producer.produce(topic, value=value, key=key, headers=headers,
                                     timestamp=base_ts + i, on_delivery=on_delivery(i))
                    break
                except BufferError:  # local queue full: serve delivery reports, then retry
                    if deadline.expired():
                        deadline.fail("local queue still full after %d records" % i)
                    producer.poll(0.1)
            producer.poll(0)
            if errors:
                break
        while len(producer) > 0 and not errors:
            if deadline.expired():
                deadline.fail("%d delivery reports outstanding" % len(producer))
            producer.flush(deadline.step(1.0))
    finally:
        if len(producer) > 0:  # failing: drop what is left so the exit does not wait on it
            producer.purge()
            producer.flush(0)
    if errors:
        raise CheckFailed("delivery failed for %d record(s) to %s, first: %s"
                          % (len(errors), topic, "; ".join(errors[:3])))
    missing = [i for i, d in enumerate(delivered) if d is None]
    if missing:
        raise CheckFailed("no delivery report for %d records (first %d)" % (len(missing), missing[0]))
    return delivered


def consume_all(bootstrap, topic, partitions, timeout):
    """Reads every partition from the beginning up to its high watermark; returns
    (rows, high_watermarks, low_watermarks, timestamps) with rows as check_partition_log wants."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        # Required by librdkafka's consumer; unused with assign() and no commits.
        "group.id": "dmq-interop-unused-%s" % uuid.uuid4().hex,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "check.crcs": True,  # verify the broker returns intact batches
    })
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        highs, lows = {}, {}
        deadline = Deadline(timeout, "consuming %s" % topic)
        for tp in tps:
            while True:
                try:
                    wm = consumer.get_watermark_offsets(tp, timeout=deadline.step(5.0) or 0.1)
                except KafkaException as e:
                    wm, why = None, str(e)
                else:
                    why = "timed out"
                if wm is not None:
                    lows[tp.partition], highs[tp.partition] = wm
                    break
                if deadline.expired():
                    deadline.fail("watermarks of partition %d: %s" % (tp.partition, why))
        log("%s: watermarks %s" % (topic, {p: (lows[p], highs[p]) for p in sorted(highs)}))
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        rows, timestamps = [], {}
        next_offset = {p: lows[p] for p in highs}
        transient = []
        while any(next_offset[p] < highs[p] for p in highs):
            if deadline.expired():
                behind = {p: "%d/%d" % (next_offset[p], highs[p])
                          for p in highs if next_offset[p] < highs[p]}
                deadline.fail("read %d records; partitions behind (next/high): %s; last errors: %s"
                              % (len(rows), behind, transient[-3:]))
            for msg in consumer.consume(num_messages=1000, timeout=deadline.step(0.5)):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if err.fatal():
                        raise CheckFailed("fatal consumer error: %s" % err)
                    transient.append(str(err))
                    log("consumer error (retrying): %s" % err)
                    continue
                p, off = msg.partition(), msg.offset()
                rows.append((p, off, msg.key(), msg.value(), msg.headers()))
                timestamps[(p, off)] = msg.timestamp()
                next_offset[p] = max(next_offset[p], off + 1)
        return rows, highs, lows, timestamps
    finally:
        consumer.close()


def roundtrip(args, label, topic, n, producer_conf, seed):
    partitions = create_topic(args.bootstrap, topic, args.partitions, args.replication_factor,
                              args.timeout, args.create)
    records = make_records(n, seed)
    base_ts = 1_700_000_000_000 + seed % 1_000_000
    log("%s: producing %d records to %s with %s" % (label, n, topic, producer_conf))
    delivered = produce(args.bootstrap, topic, records, base_ts, producer_conf, args.timeout)
    rows, highs, lows, timestamps = consume_all(args.bootstrap, topic, partitions, args.timeout)
    check_partition_log("confluent %s (%s)" % (label, topic), records, delivered, rows, highs, lows)
    bad_ts = []
    for i, (p, off) in enumerate(delivered):
        ts_type, ts = timestamps[(p, off)]
        if ts_type != TIMESTAMP_CREATE_TIME or ts != base_ts + i:
            bad_ts.append("p%d/o%d: (type %d, %d), want (CreateTime, %d)"
                          % (p, off, ts_type, ts, base_ts + i))
    if bad_ts:
        raise CheckFailed("confluent %s (%s): %d timestamps differ, e.g. %s"
                          % (label, topic, len(bad_ts), "; ".join(bad_ts[:3])))
    per_part = {p: highs[p] - lows[p] for p in sorted(highs)}
    ok("confluent %s: %d records (per partition %s)" % (label, n, per_part))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    ap.add_argument("--topic-prefix", required=True)
    ap.add_argument("--replication-factor", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--create", choices=["admin", "auto"], default="admin",
                    help="admin: CreateTopics (default); auto: rely on Metadata auto-create with "
                         "the cluster's default partitions (--partitions/--replication-factor "
                         "then unused)")
    ap.add_argument("--records", type=int, default=2000, help="records per codec run")
    ap.add_argument("--idem-records", type=int, default=5000)
    ap.add_argument("--codecs", default=",".join(CODECS),
                    help="comma-separated subset of %s; empty for none" % ",".join(CODECS))
    ap.add_argument("--no-idempotence", action="store_true", help="skip the idempotent run")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="deadline in seconds for each wait (create, produce, consume)")
    ap.add_argument("--seed", type=int, default=None, help="payload seed (default: random)")
    args = ap.parse_args()
    codecs = [c for c in args.codecs.split(",") if c]
    unknown = [c for c in codecs if c not in CODECS]
    if unknown:
        ap.error("unknown codec(s) %s" % unknown)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    log("confluent-kafka roundtrip against %s, seed %d" % (args.bootstrap, seed))
    for k, codec in enumerate(codecs):
        roundtrip(args, codec, "%s-%s" % (args.topic_prefix, codec), args.records,
                  {"compression.type": codec, "enable.idempotence": False}, seed + k)
    if not args.no_idempotence:
        roundtrip(args, "idempotent", "%s-idem" % args.topic_prefix, args.idem_records,
                  {"enable.idempotence": True}, seed + 100)


if __name__ == "__main__":
    run_main(main)
