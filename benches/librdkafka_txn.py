#!/usr/bin/env python3
"""Transactional produce throughput and commit latency with confluent-kafka (librdkafka), against
idempotent produce on the same cluster (issue #16's measurements).

usage: $DMQ_VENV/bin/python benches/librdkafka_txn.py [--bootstrap localhost:19092]
           [--topic bench-txn] [--records 100000] [--record-size 1024]

Creates the topic if missing (6 partitions, RF 3, min.insync.replicas 2), then for each mode
produces --records records of --record-size bytes with acks=all:
  idempotent            enable.idempotence=true, no transactions
  txn-100               transactions of 100 records each
  txn-10000             transactions of 10,000 records each
and prints records/s, MB/s and, for the transactional modes, commit_transaction() latency
p50/p99/max (the time from the call to its return: flushing the last records, EndTxn, markers).
"""

import argparse
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def ensure_topic(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic in admin.list_topics(timeout=10).topics:
        return
    f = admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=3,
                                      config={"min.insync.replicas": "2"})])
    f[topic].result(timeout=30)
    time.sleep(1)


def pct(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(bootstrap, topic, records, size, per_txn):
    conf = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
            "batch.size": 1 << 20, "queue.buffering.max.kbytes": 1 << 20}
    if per_txn:
        conf["transactional.id"] = "bench-%s" % uuid.uuid4()
    else:
        conf["enable.idempotence"] = True
    p = Producer(conf)
    if per_txn:
        p.init_transactions(30)
    value = b"x" * size
    commits = []
    started = time.monotonic()
    sent = 0
    while sent < records:
        n = min(per_txn or records, records - sent)
        if per_txn:
            p.begin_transaction()
        for i in range(n):
            while True:
                try:
                    p.produce(topic, value=value)
                    break
                except BufferError:
                    p.poll(0.01)
            if i % 1000 == 0:
                p.poll(0)
        sent += n
        if per_txn:
            t0 = time.monotonic()
            p.commit_transaction(60)
            commits.append((time.monotonic() - t0) * 1000)
    p.flush(60)
    elapsed = time.monotonic() - started
    mode = "txn-%d" % per_txn if per_txn else "idempotent"
    line = "%-11s %8.0f records/s %7.1f MB/s" % (mode, records / elapsed,
                                                 records * size / elapsed / 1e6)
    if commits:
        line += "  commit p50 %.1f ms p99 %.1f ms max %.1f ms (%d commits)" % (
            pct(commits, 0.5), pct(commits, 0.99), max(commits), len(commits))
    print(line, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="localhost:19092")
    ap.add_argument("--topic", default="bench-txn")
    ap.add_argument("--records", type=int, default=100000)
    ap.add_argument("--record-size", type=int, default=1024)
    args = ap.parse_args()
    ensure_topic(args.bootstrap, args.topic)
    for per_txn in (0, 100, 10000):
        run(args.bootstrap, args.topic, args.records, args.record_size, per_txn)


if __name__ == "__main__":
    main()
