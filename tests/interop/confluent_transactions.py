#!/usr/bin/env python3
"""Kafka transactions (KIP-98/KIP-447) with confluent-kafka (librdkafka).

Creates <prefix>-out (3 partitions) and <prefix>-in (1 partition), RF --replication-factor, then:

1. commit: a transactional producer writes 30 records over the 3 partitions and commits; a
   read_committed consumer reads exactly them, in order per partition.
2. abort: 15 records in a transaction that is aborted, then 30 more committed; read_committed
   sees the 60 committed records and none of the aborted ones (their keys start "aborted-"),
   read_uncommitted sees all 75.
3. fencing: a second producer with the same transactional.id calls init_transactions; the
   first producer's next commit fails with a fencing error, and nothing it wrote after the
   fence is visible to read_committed.
4. timeout: a producer with transaction.timeout.ms=3000 writes one record in a transaction and
   abandons it; a record produced afterwards without a transaction becomes visible to
   read_committed once the coordinator has aborted the abandoned one (the LSO moves on), and
   the abandoned record never does.
5. offsets: consume-transform-produce: a group consumer reads <prefix>-in, the producer sends
   transformed records and send_offsets_to_transaction; after an aborted round the group's
   committed offset is unchanged, after a committed round it is the consumed position.

Exit 0 with `OK confluent-txn <case>` lines on stdout; exit 1 with a FAIL line otherwise.
"""

import argparse
import time
import uuid

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from interop_common import CheckFailed, Deadline, log, ok, run_main

FENCING = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
           KafkaError.INVALID_PRODUCER_ID_MAPPING}


def create_topics(bootstrap, topics, rf, timeout):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, num_partitions=n, replication_factor=rf)
                                   for t, n in topics], request_timeout=timeout)
    for t, f in futures.items():
        f.result(timeout=timeout)
    deadline = Deadline(timeout, "topics to have leaders")
    while True:
        md = admin.list_topics(timeout=5)
        ready = all(t in md.topics and len(md.topics[t].partitions) == n
                    and all(p.leader >= 0 for p in md.topics[t].partitions.values())
                    for t, n in topics)
        if ready:
            return
        if deadline.expired():
            raise CheckFailed("topics %s have no leaders after %ss" % (topics, timeout))
        deadline.sleep(0.2)


def producer(bootstrap, txn_id, **extra):
    conf = {"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5}
    conf.update(extra)
    p = Producer(conf)
    p.init_transactions(30)
    return p


def send(p, topic, records, partition=None):
    """Produces (key, value) pairs; returns nothing, deliveries are checked by flush/commit."""
    for k, v in records:
        if partition is None:
            p.produce(topic, key=k, value=v)
        else:
            p.produce(topic, key=k, value=v, partition=partition)
        p.poll(0)


def read_all(bootstrap, topic, partitions, isolation, until, timeout, group=None):
    """Reads `topic` from the beginning with `isolation` until `until(records)` holds; returns
    {partition: [(offset, key, value)]}."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group or "reader-%s" % uuid.uuid4(),
                  "isolation.level": isolation, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    got = {p: [] for p in range(partitions)}
    deadline = Deadline(timeout, "records of %s" % topic)
    try:
        while not until(got):
            if deadline.expired():
                raise CheckFailed("%s read %s: timed out with %s" % (
                    isolation, topic, {p: [r[1] for r in rs] for p, rs in got.items()}))
            m = c.poll(deadline.step(0.5))
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise CheckFailed("consume error: %s" % m.error())
            got[m.partition()].append((m.offset(), m.key().decode(), m.value().decode()))
    finally:
        c.close()
    return got


def keys(got):
    return [r[1] for p in sorted(got) for r in got[p]]


def case_commit_and_abort(args, out):
    p = producer(args.bootstrap, "%s-a" % args.topic_prefix)
    p.begin_transaction()
    send(p, out, [("c1-%d" % i, "v%d" % i) for i in range(30)])
    p.commit_transaction(30)
    got = read_all(args.bootstrap, out, 3, "read_committed",
                   lambda g: len(keys(g)) >= 30, args.timeout)
    k = keys(got)
    if sorted(k) != sorted("c1-%d" % i for i in range(30)):
        raise CheckFailed("read_committed after one commit: %s" % k)
    for part, rs in got.items():
        idx = [int(r[1].split("-")[1]) for r in rs]
        if idx != sorted(idx):
            raise CheckFailed("partition %d out of order: %s" % (part, idx))
    ok("confluent-txn commit: 30 records over 3 partitions visible to read_committed in order")

    p.begin_transaction()
    send(p, out, [("aborted-%d" % i, "x") for i in range(15)])
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    send(p, out, [("c2-%d" % i, "v%d" % i) for i in range(30)])
    p.commit_transaction(30)
    got = read_all(args.bootstrap, out, 3, "read_committed",
                   lambda g: sum(1 for x in keys(g) if x.startswith("c2-")) >= 30, args.timeout)
    k = keys(got)
    if any(x.startswith("aborted-") for x in k):
        raise CheckFailed("read_committed saw aborted records: %s" % k)
    if len(k) != 60 or len(set(k)) != 60:
        raise CheckFailed("read_committed: expected the 60 committed records once, got %s" % k)
    got = read_all(args.bootstrap, out, 3, "read_uncommitted",
                   lambda g: sum(1 for x in keys(g) if x.startswith("c2-")) >= 30, args.timeout)
    k = keys(got)
    if sum(1 for x in k if x.startswith("aborted-")) != 15 or len(k) != 75:
        raise CheckFailed("read_uncommitted: expected all 75 records, got %s" % k)
    ok("confluent-txn abort: read_committed skips the 15 aborted records, read_uncommitted sees them")
    return p


def case_fencing(args, out, old):
    new = producer(args.bootstrap, "%s-a" % args.topic_prefix)
    fenced = None
    try:
        old.begin_transaction()
        send(old, out, [("zombie-%d" % i, "z") for i in range(5)], partition=0)
        old.commit_transaction(30)
    except KafkaException as e:
        fenced = e.args[0]
    if fenced is None or fenced.code() not in FENCING:
        raise CheckFailed("the fenced producer's commit did not fail with a fencing error: %r"
                          % fenced)
    new.begin_transaction()
    send(new, out, [("c3-%d" % i, "v") for i in range(3)], partition=0)
    new.commit_transaction(30)
    got = read_all(args.bootstrap, out, 3, "read_committed",
                   lambda g: sum(1 for x in keys(g) if x.startswith("c3-")) >= 3, args.timeout)
    if any(x.startswith("zombie-") for x in keys(got)):
        raise CheckFailed("read_committed saw the fenced producer's records")
    ok("confluent-txn fencing: the old producer fails with %s, its records stay invisible"
       % fenced.name())


def case_timeout(args, out):
    p = producer(args.bootstrap, "%s-t" % args.topic_prefix, **{"transaction.timeout.ms": 3000})
    p.begin_transaction()
    send(p, out, [("abandoned", "a")], partition=1)
    p.flush(30)
    started = time.monotonic()
    plain = Producer({"bootstrap.servers": args.bootstrap})
    plain.produce(out, key="after-timeout", value="p", partition=1)
    plain.flush(30)
    got = read_all(args.bootstrap, out, 3, "read_committed",
                   lambda g: "after-timeout" in keys(g), args.timeout)
    waited = time.monotonic() - started
    if "abandoned" in keys(got):
        raise CheckFailed("read_committed saw the abandoned transaction's record")
    try:
        p.commit_transaction(10)
        raise CheckFailed("the timed-out transaction committed")
    except KafkaException as e:
        err = e.args[0]
    ok("confluent-txn timeout: the abandoned transaction was aborted and the LSO moved on "
       "after %.1f s; its producer then gets %s" % (waited, err.name()))


def case_offsets(args, inp, out):
    group = "%s-g" % args.topic_prefix
    plain = Producer({"bootstrap.servers": args.bootstrap})
    for i in range(20):
        plain.produce(inp, key="in-%d" % i, value=str(i), partition=0)
    plain.flush(30)
    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": group,
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.subscribe([inp])
    p = producer(args.bootstrap, "%s-ctp" % args.topic_prefix)

    def round_trip(n, commit):
        p.begin_transaction()
        taken = 0
        deadline = Deadline(args.timeout, "input records")
        while taken < n:
            if deadline.expired():
                raise CheckFailed("consumed only %d of %d input records" % (taken, n))
            m = c.poll(deadline.step(0.5))
            if m is None or m.error():
                continue
            p.produce(out, key="out-" + m.key().decode(), value=m.value(), partition=2)
            taken += 1
        p.send_offsets_to_transaction(c.position(c.assignment()),
                                      c.consumer_group_metadata(), 30)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)

    def committed():
        tp = c.committed([TopicPartition(inp, 0)], timeout=10)[0]
        return tp.offset

    round_trip(10, commit=True)
    if committed() != 10:
        raise CheckFailed("after a committed round the group's offset is %s, not 10" % committed())
    round_trip(10, commit=False)
    if committed() != 10:
        raise CheckFailed("an aborted round moved the group's offset to %s" % committed())
    c.close()
    ok("confluent-txn offsets: send_offsets_to_transaction commits the group's offset with the "
       "transaction and an abort leaves it")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic-prefix", default="txn")
    ap.add_argument("--replication-factor", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    out, inp = "%s-out" % args.topic_prefix, "%s-in" % args.topic_prefix
    create_topics(args.bootstrap, [(out, 3), (inp, 1)], args.replication_factor, args.timeout)
    old = case_commit_and_abort(args, out)
    case_fencing(args, out, old)
    case_timeout(args, out)
    case_offsets(args, inp, out)


if __name__ == "__main__":
    run_main(main)
