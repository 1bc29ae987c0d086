"""Consumers that start at "latest" (ListOffsets latest at each client's versions) with every
Python client: each one is assigned a topic that already holds records, waits until it has its
start position, then exactly the records produced after that must arrive — none of the old
ones, none missing.

usage: python tests/interop/latest_consumers.py --bootstrap HOST:PORT[,...] --topic-prefix P

Prints "OK latest <client> ..." per client; exit 1 with a FAIL line otherwise.
"""

import argparse
import asyncio
import logging

from confluent_kafka import Consumer as CfConsumer
from confluent_kafka import Producer as CfProducer
from confluent_kafka import TopicPartition as CfTopicPartition
from confluent_kafka import OFFSET_END
from confluent_kafka.admin import AdminClient, NewTopic

from interop_common import CheckFailed, Deadline, log, ok, run_main

PARTITIONS = 3
OLD = 30
NEW = 12


def produce(bootstrap, topic, prefix, count):
    p = CfProducer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(count):
        p.produce(topic, key=("k%d" % i).encode(), value=("%s-%d" % (prefix, i)).encode(),
                  partition=i % PARTITIONS)
    left = p.flush(30)
    if left:
        raise CheckFailed("%d records of %s not delivered" % (left, prefix))


def create(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 3)]).values():
        f.result(30)
    deadline = Deadline(30, "topic %s served" % topic)
    while not deadline.expired():
        md = admin.list_topics(topic, timeout=5)
        t = md.topics.get(topic)
        if t and t.error is None and len(t.partitions) == PARTITIONS and all(
                p.leader >= 0 for p in t.partitions.values()):
            return
        deadline.sleep(0.2)
    raise CheckFailed("topic %s not served" % topic)


def expect_only_new(client, got):
    new = sorted(v for v in got if v.startswith("new-"))
    old = [v for v in got if not v.startswith("new-")]
    if old:
        raise CheckFailed("%s at latest read old records: %s" % (client, old[:5]))
    want = sorted("new-%d" % i for i in range(NEW))
    if new != want:
        raise CheckFailed("%s at latest read %d of %d new records: %s" % (client, len(new), NEW, new))
    ok("latest %s: %d new records, none of the %d before" % (client, NEW, OLD))


def confluent(bootstrap, topic):
    # librdkafka resolves OFFSET_END in the background and reports no position before the
    # first message, so new records go out one at a time until enough have arrived: whatever
    # it reads must be new, and it must read on from where it started.
    c = CfConsumer({"bootstrap.servers": bootstrap, "group.id": topic + "-g",
                    "enable.auto.commit": False})
    c.assign([CfTopicPartition(topic, p, OFFSET_END) for p in range(PARTITIONS)])
    p = CfProducer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    got = []
    sent = 0
    deadline = Deadline(60, "confluent reads")
    while len([v for v in got if v.startswith("new-")]) < NEW and not deadline.expired():
        p.produce(topic, key=b"k", value=("new-%d" % sent).encode(), partition=sent % PARTITIONS)
        p.flush(10)
        sent += 1
        m = c.poll(0.3)
        while m is not None:
            if not m.error():
                got.append(m.value().decode())
            m = c.poll(0)
    c.close()
    old = [v for v in got if not v.startswith("new-")]
    if old:
        raise CheckFailed("confluent-kafka at latest read old records: %s" % old[:5])
    new = [v for v in got if v.startswith("new-")]
    if len(new) < NEW:
        raise CheckFailed("confluent-kafka at latest read %d new records of %d sent" % (len(new), sent))
    ok("latest confluent-kafka: %d new records, none of the %d before" % (len(new), OLD))


def kafka_python(bootstrap, topic):
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False,
                      consumer_timeout_ms=500)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    c.assign(tps)
    c.seek_to_end(*tps)
    for tp in tps:
        c.position(tp)  # resolves ListOffsets latest now
    produce(bootstrap, topic, "new", NEW)
    got = []
    deadline = Deadline(30, "kafka-python reads")
    while len(got) < NEW and not deadline.expired():
        for records in c.poll(timeout_ms=500).values():
            got.extend(r.value.decode() for r in records)
    c.close()
    expect_only_new("kafka-python", got)


async def aiokafka_run(bootstrap, topic):
    from aiokafka import AIOKafkaConsumer, TopicPartition
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        c.assign(tps)
        await c.seek_to_end(*tps)
        for tp in tps:
            await c.position(tp)
        await asyncio.get_running_loop().run_in_executor(None, produce, bootstrap, topic, "new", NEW)
        got = []
        deadline = Deadline(30, "aiokafka reads")
        while len(got) < NEW and not deadline.expired():
            batches = await c.getmany(timeout_ms=500)
            for records in batches.values():
                got.extend(r.value.decode() for r in records)
    finally:
        await c.stop()
    expect_only_new("aiokafka", got)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic-prefix", required=True)
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for name, run in [("confluent", confluent), ("kafka-python", kafka_python),
                      ("aiokafka", lambda b, t: asyncio.run(aiokafka_run(b, t)))]:
        topic = "%s-%s" % (a.topic_prefix, name)
        create(a.bootstrap, topic)
        produce(a.bootstrap, topic, "old", OLD)
        log("%s: %d old records in %s" % (name, OLD, topic))
        run(a.bootstrap, topic)


if __name__ == "__main__":
    run_main(main)
