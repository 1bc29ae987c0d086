#!/usr/bin/env python3
"""CreatePartitions from two Kafka admin clients, then records through the new partitions.

Topic --topic (default "grow") is CREATED here with 2 partitions (replication factor --replication-factor, 3).

1. confluent-kafka (librdkafka) AdminClient.create_partitions:
   - validate_only to 4: succeeds, and metadata still shows 2 partitions;
   - to 4: succeeds, metadata shows 4 partitions with leaders;
   - to 3 (fewer): fails with INVALID_PARTITIONS;
   - an unknown topic: fails with UNKNOWN_TOPIC_OR_PARTITION.
2. kafka-python KafkaAdminClient.create_partitions to 6: succeeds; metadata shows 6.
3. confluent-kafka Producer writes one record to each of the 6 partitions (acks=all) and a
   Consumer assigned to all of them reads exactly those records back, each from its partition.

Exit 0 with `OK create-partitions ...` on stdout; exit 1 with a FAIL line on stderr otherwise.
"""

import argparse

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from kafka.admin import KafkaAdminClient
from kafka.admin import NewPartitions as KpNewPartitions

from interop_common import CheckFailed, Deadline, log, ok, run_main


def partition_count(admin, topic, deadline):
    md = admin.list_topics(topic=topic, timeout=deadline.step(5.0) or 0.1)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    if any(p.leader < 0 for p in t.partitions.values()):
        return None
    return len(t.partitions)


def wait_count(admin, topic, want, timeout):
    deadline = Deadline(timeout, "%s to show %d partitions" % (topic, want))
    while True:
        got = partition_count(admin, topic, deadline)
        if got == want:
            return
        if deadline.expired():
            raise CheckFailed("%s shows %s partitions, want %d" % (topic, got, want))
        deadline.sleep(0.1)


def grow(admin, topic, total, timeout, validate_only=False):
    """Returns None on success, else the KafkaError code."""
    futures = admin.create_partitions([NewPartitions(topic, total)], validate_only=validate_only,
                                      request_timeout=timeout)
    try:
        futures[topic].result(timeout=timeout + 5)
        return None
    except KafkaException as e:
        return e.args[0].code()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", default="grow")
    ap.add_argument("--replication-factor", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    topic = a.topic

    log("creating %s with 2 partitions" % topic)
    f = admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=a.replication_factor)])
    f[topic].result(timeout=a.timeout)
    wait_count(admin, topic, 2, a.timeout)

    code = grow(admin, topic, 4, a.timeout, validate_only=True)
    if code is not None:
        raise CheckFailed("validate_only to 4 failed: %s" % code)
    wait_count(admin, topic, 2, a.timeout)
    log("validate_only changed nothing")

    code = grow(admin, topic, 4, a.timeout)
    if code is not None:
        raise CheckFailed("create_partitions to 4 failed: %s" % code)
    wait_count(admin, topic, 4, a.timeout)
    log("grew to 4 with confluent-kafka")

    code = grow(admin, topic, 3, a.timeout)
    if code != KafkaError.INVALID_PARTITIONS:
        raise CheckFailed("shrinking to 3 answered %s, want INVALID_PARTITIONS" % code)
    code = grow(admin, topic + "-missing", 3, a.timeout)
    if code != KafkaError.UNKNOWN_TOPIC_OR_PART:
        raise CheckFailed("unknown topic answered %s, want UNKNOWN_TOPIC_OR_PARTITION" % code)
    log("shrinking and unknown topics refused")

    kp = KafkaAdminClient(bootstrap_servers=a.bootstrap, request_timeout_ms=int(a.timeout * 1000))
    try:
        kp.create_partitions({topic: KpNewPartitions(total_count=6)})
    finally:
        kp.close()
    # Every broker, not just the one answering the admin: a new producer's first metadata may
    # come from any of them, and brokers learn of the new partitions a moment apart (as in Kafka).
    for server in a.bootstrap.split(","):
        one = AdminClient({"bootstrap.servers": server})
        wait_count(one, topic, 6, a.timeout)
    log("grew to 6 with kafka-python")

    producer = Producer({"bootstrap.servers": a.bootstrap, "acks": "all",
                         "topic.metadata.refresh.interval.ms": 1000})
    delivered = {}
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered[msg.partition()] = (msg.offset(), msg.value())

    # The producer's own metadata must show the 6 partitions before it is told to use them.
    wait_count(producer, topic, 6, a.timeout)
    for p in range(6):
        producer.produce(topic, value=("to-%d" % p).encode(), partition=p, on_delivery=report)
    left = producer.flush(a.timeout)
    if left or errors or len(delivered) != 6:
        raise CheckFailed("delivery: %d left, errors %s, delivered %s" % (left, errors, delivered))

    consumer = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "grow-check",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(6)])
    seen = {}
    deadline = Deadline(a.timeout, "records from every partition")
    try:
        while len(seen) < 6 and not deadline.expired():
            msg = consumer.poll(deadline.step(1.0))
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise CheckFailed("consume error: %s" % msg.error())
            if msg.partition() in seen:
                raise CheckFailed("partition %d read twice" % msg.partition())
            seen[msg.partition()] = (msg.offset(), msg.value())
    finally:
        consumer.close()
    if seen != delivered:
        raise CheckFailed("read %s, delivered %s" % (seen, delivered))
    ok("create-partitions: 2 -> 4 (confluent-kafka) -> 6 (kafka-python), 6 records read back")


if __name__ == "__main__":
    run_main(main)
