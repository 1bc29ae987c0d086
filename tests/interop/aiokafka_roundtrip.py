#!/usr/bin/env python3
"""aiokafka (asyncio, pure Python) against the cluster: admin, idempotent producer, group consumer.

1. AIOKafkaAdminClient creates --topic with 3 partitions (replication factor --replication-factor).
2. An idempotent AIOKafkaProducer (acks=all, gzip) sends --records keyed records and keeps what
   each delivery reported (partition, offset).
3. An AIOKafkaConsumer in group --group (subscribe, auto.offset.reset=earliest, manual commits)
   reads until it has every record, checks each one is byte-identical at the partition and offset
   its delivery named, with nothing extra and nothing twice, then commits and leaves.
4. 10 more records are produced; a new consumer in the same group must read exactly those 10:
   the committed offsets were kept.

Exit 0 with `OK aiokafka ...` on stdout; exit 1 with a FAIL line on stderr otherwise.
"""

import argparse
import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from interop_common import CheckFailed, Deadline, log, ok, run_main


async def produce(bootstrap, topic, first, count):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                compression_type="gzip", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for i in range(first, first + count):
            key = ("k%d" % i).encode()
            value = ("value-%d-" % i).encode() + bytes(range(i % 200))
            fut = await producer.send(topic, key=key, value=value)
            futures.append((key, value, fut))
        delivered = {}
        for key, value, fut in futures:
            md = await fut
            delivered[(md.partition, md.offset)] = (key, value)
        return delivered
    finally:
        await producer.stop()


async def consume(bootstrap, topic, group, want, timeout):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen = {}
    deadline = Deadline(timeout, "%d records in group %s" % (want, group))
    try:
        while len(seen) < want and not deadline.expired():
            batches = await consumer.getmany(timeout_ms=int(deadline.step(1.0) * 1000))
            for tp, records in batches.items():
                for r in records:
                    at = (tp.partition, r.offset)
                    if at in seen:
                        raise CheckFailed("offset %s read twice" % (at,))
                    seen[at] = (r.key, r.value)
        if len(seen) == want:
            await consumer.commit()
        # Nothing extra arrives after the last expected record.
        extra = await consumer.getmany(timeout_ms=500)
        if any(extra.values()):
            raise CheckFailed("records beyond the expected ones: %s" % extra)
    finally:
        await consumer.stop()
    return seen


async def run(a):
    admin = AIOKafkaAdminClient(bootstrap_servers=a.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(a.topic, num_partitions=3,
                                            replication_factor=a.replication_factor)])
    finally:
        await admin.close()
    log("created %s" % a.topic)

    delivered = await produce(a.bootstrap, a.topic, 0, a.records)
    if len(delivered) != a.records:
        raise CheckFailed("%d deliveries for %d records" % (len(delivered), a.records))
    log("produced %d records" % a.records)

    seen = await consume(a.bootstrap, a.topic, a.group, a.records, a.timeout)
    if seen != delivered:
        missing = sorted(set(delivered) - set(seen))[:5]
        differ = [k for k in delivered if k in seen and seen[k] != delivered[k]][:5]
        raise CheckFailed("read %d of %d; missing %s; different %s"
                          % (len(seen), len(delivered), missing, differ))
    log("read every record in group %s and committed" % a.group)

    more = await produce(a.bootstrap, a.topic, a.records, 10)
    resumed = await consume(a.bootstrap, a.topic, a.group, 10, a.timeout)
    if resumed != more:
        raise CheckFailed("after the commit the group read %s, want %s" % (sorted(resumed), sorted(more)))
    ok("aiokafka: %d records idempotent+gzip, group read all, resumed with exactly 10" % a.records)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", default="aio")
    ap.add_argument("--group", default="aio-group")
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--replication-factor", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=60.0)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    run_main(main)
