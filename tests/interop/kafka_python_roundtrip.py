#!/usr/bin/env python3
"""Round trip through the broker with kafka-python (pure-Python client, its own protocol code).

Topic: NOT created explicitly. It may exist already (older records in it are skipped: only offsets
from this run's first acknowledged offset per partition are checked), or it is AUTO-CREATED by the
producer's Metadata request (kafka-python asks with allow_auto_create_topics=True), getting the
cluster's default partition count.

KafkaProducer (acks='all', optional --compression) sends --records (1000) keyed records (keys
k<i>, random binary values of 0..2000 bytes, two headers, explicit CreateTime timestamps), flushes,
and collects each record's acknowledged partition/offset. Then a KafkaConsumer with group_id=None
(no group coordinator, no commits) and auto_offset_reset='earliest' is assign()ed every partition
(polling partitions_for_topic until metadata knows the topic) and reads until every partition
reaches the high watermark taken after producing (deadline --timeout, 60 s). Checks: every record
byte-identical (key, value, headers, timestamp), at its acknowledged offset, per partition in
produce order, nothing lost, duplicated or extra.

The API version is auto-detected (ApiVersions); --api-version 2.5.0 pins it instead.

Exit 0 with `OK kafka-python ...` on stdout; exit 1 with a FAIL line on stderr otherwise.
"""

import argparse
import logging
import os

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import NoBrokersAvailable

from interop_common import CheckFailed, Deadline, check_partition_log, log, make_records, ok, run_main

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def parse_api_version(s):
    try:
        v = tuple(int(x) for x in s.split("."))
    except ValueError:
        raise argparse.ArgumentTypeError("expected dotted numbers like 2.5.0, got %r" % s)
    if not 2 <= len(v) <= 3:
        raise argparse.ArgumentTypeError("expected 2 or 3 numbers like 2.5.0, got %r" % s)
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--compression", choices=CODECS, default="none")
    ap.add_argument("--api-version", type=parse_api_version, default=None,
                    help="pin the Kafka API version (e.g. 2.5.0) instead of auto-detecting")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="deadline in seconds for each phase (produce, metadata, consume)")
    ap.add_argument("--seed", type=int, default=None, help="payload seed (default: random)")
    ap.add_argument("--verbose", action="store_true", help="kafka-python DEBUG logging")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    bootstrap = args.bootstrap.split(",")
    common = {"bootstrap_servers": bootstrap, "request_timeout_ms": int(args.timeout * 1000)}
    if args.api_version is not None:
        common["api_version"] = args.api_version
    log("kafka-python roundtrip against %s, topic %s, %d records, compression %s, seed %d"
        % (args.bootstrap, args.topic, args.records, args.compression, seed))

    records = make_records(args.records, seed)
    base_ts = 1_700_000_000_000 + seed % 1_000_000
    try:
        producer = KafkaProducer(acks="all", linger_ms=5,
                                 compression_type=None if args.compression == "none"
                                 else args.compression,
                                 max_block_ms=int(args.timeout * 1000), **common)
    except NoBrokersAvailable:
        raise CheckFailed("no broker at %s answered ApiVersions (kafka-python's version probe)"
                          % args.bootstrap)
    log("producer api_version %s" % (producer.config["api_version"],))
    deadline = Deadline(args.timeout, "producing %d records to %s" % (args.records, args.topic))
    try:
        futures = [producer.send(args.topic, key=k, value=v, headers=h, timestamp_ms=base_ts + i)
                   for i, (k, v, h) in enumerate(records)]
        producer.flush(timeout=deadline.left())
        delivered, errors = [], []
        for i, fut in enumerate(futures):
            try:
                md = fut.get(timeout=deadline.step(args.timeout) or 0.1)
                delivered.append((md.partition, md.offset))
            except Exception as e:
                errors.append("record %d: %s: %s" % (i, type(e).__name__, e))
                delivered.append((-1, -1))
        if errors:
            raise CheckFailed("delivery failed for %d record(s), first: %s"
                              % (len(errors), "; ".join(errors[:3])))
    finally:
        producer.close(timeout=5)

    # kafka-python 2.3 caps a response frame at receive_message_max_bytes (default 1,000,000) yet
    # asks for up to fetch_max_bytes (default 52428800): a correct broker answering a multi-
    # partition fetch with more than 1 MB makes it drop the connection and retry. Lift the cap
    # above fetch_max_bytes so only broker behaviour is tested.
    consumer = KafkaConsumer(group_id=None, auto_offset_reset="earliest",
                             enable_auto_commit=False, receive_message_max_bytes=64 * 1024 * 1024,
                             **common)
    try:
        deadline = Deadline(args.timeout, "consumer metadata for %s" % args.topic)
        while True:
            partitions = consumer.partitions_for_topic(args.topic)
            if partitions:
                break
            if deadline.expired():
                deadline.fail("partitions_for_topic(%r) still empty" % args.topic)
            deadline.sleep(0.2)
        used = {p for p, _ in delivered}
        if not used <= partitions:
            raise CheckFailed("consumer sees partitions %s, records went to %s"
                              % (sorted(partitions), sorted(used)))
        tps = [TopicPartition(args.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        highs = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
        lows = {tp.partition: off for tp, off in consumer.beginning_offsets(tps).items()}
        log("%s: watermarks %s" % (args.topic, {p: (lows[p], highs[p]) for p in sorted(highs)}))
        # This run's records start at the first acknowledged offset of each partition.
        base = dict(highs)
        for p, off in delivered:
            base[p] = min(base[p], off)
        deadline = Deadline(args.timeout, "consuming %s" % args.topic)
        next_offset = dict(lows)
        rows, timestamps = [], {}
        older = 0
        while any(next_offset[p] < highs[p] for p in highs):
            if deadline.expired():
                behind = {p: "%d/%d" % (next_offset[p], highs[p])
                          for p in highs if next_offset[p] < highs[p]}
                deadline.fail("read %d records; partitions behind (next/high): %s"
                              % (len(rows), behind))
            batch = consumer.poll(timeout_ms=int(deadline.step(0.5) * 1000), max_records=1000)
            for tp, recs in batch.items():
                for r in recs:
                    if r.offset < base[r.partition]:
                        older += 1
                    rows.append((r.partition, r.offset, r.key, r.value, list(r.headers or [])))
                    timestamps[(r.partition, r.offset)] = (r.timestamp_type, r.timestamp)
                    next_offset[r.partition] = max(next_offset[r.partition], r.offset + 1)
    finally:
        consumer.close(autocommit=False)
    if older:
        log("%s: skipped %d records older than this run" % (args.topic, older))
    label = "kafka-python %s (%s)" % (args.compression, args.topic)
    check_partition_log(label, records, delivered, rows, highs, base)
    bad_ts = ["p%d/o%d: (type %s, %s), want (0, %d)" % (p, off, *timestamps[(p, off)], base_ts + i)
              for i, (p, off) in enumerate(delivered)
              if timestamps[(p, off)] != (0, base_ts + i)]
    if bad_ts:
        raise CheckFailed("%s: %d timestamps differ, e.g. %s"
                          % (label, len(bad_ts), "; ".join(bad_ts[:3])))
    per_part = {p: highs[p] - base[p] for p in sorted(highs)}
    ok("kafka-python %s: %d records (per partition %s)" % (args.compression, args.records, per_part))


if __name__ == "__main__":
    run_main(main)
