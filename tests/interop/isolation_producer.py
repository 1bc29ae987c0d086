"""An idempotent acks=all producer on one partition whose leader the test cuts off from the
metadata quorum (crates/dmq/tests/isolation.rs), with librdkafka's default retry and metadata
settings apart from a delivery timeout long enough that no fault surfaces as an error.

Produces the values 0, 1, 2, ... (key = value) to --partition at about --rate records/s until
the stop file appears, flushes, then reads the partition back from the beginning and checks that
every acknowledged record is there exactly once, in produce order, at the offset its delivery
report named, and that nothing else is. Writes a JSON report:

    {"sent": N, "errors": {"NAME": count}, "unflushed": n,
     "records": [[value, offset, delivered_ms, leader_epoch], ...]}

`delivered_ms` is the wall-clock time (ms since the Unix epoch) of the delivery report,
`leader_epoch` the epoch of the leader that appended the record (from its batch, as read back),
so the test can tell when deliveries came from the new leader. While it runs, `<out>.progress`
holds the number of acknowledged records (rewritten atomically every 50 ms).

    python tests/interop/isolation_producer.py --bootstrap H:P --topic T --partition 1 \
        --stop-file STOP --out report.json
"""

import argparse
import json
import os
import time
import uuid

import confluent_kafka
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from interop_common import CheckFailed, Deadline, log, ok, run_main, write_atomic

# Unacknowledged records allowed in flight: a fault leaves a bounded backlog to retry.
IN_FLIGHT_MAX = 1000


def produce(args):
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # Retries are unbounded within the delivery timeout: a fault must cost time, never
            # an error. Everything else (retry and metadata backoffs, request timeout) is
            # librdkafka's default, what an application gets.
            "message.timeout.ms": 120000,
            **({"debug": os.environ["RDKAFKA_DEBUG"]} if os.environ.get("RDKAFKA_DEBUG") else {}),
        }
    )
    delivered = {}  # value -> (offset, delivered_ms)
    errors = {}
    state = {"in_flight": 0}

    def on_delivery(err, msg):
        state["in_flight"] -= 1
        if err is not None:
            errors[err.name()] = errors.get(err.name(), 0) + 1
            log("delivery error: %s" % err)
            return
        delivered[int(msg.value())] = (msg.offset(), int(time.time() * 1000))

    progress = args.out + ".progress"
    deadline = Deadline(args.max_seconds, "the stop file")
    interval = 1.0 / args.rate
    next_send = time.monotonic()
    sent = 0
    last_progress = 0.0
    while not os.path.exists(args.stop_file) and not deadline.expired():
        now = time.monotonic()
        if state["in_flight"] < IN_FLIGHT_MAX and now >= next_send:
            try:
                producer.produce(
                    args.topic,
                    value=str(sent).encode(),
                    key=str(sent).encode(),
                    partition=args.partition,
                    on_delivery=on_delivery,
                )
                sent += 1
                state["in_flight"] += 1
                next_send = max(next_send + interval, now - 1.0)
            except BufferError:
                pass
        producer.poll(min(interval, 0.01))
        if now - last_progress >= 0.05:
            write_atomic(progress, str(len(delivered)))
            last_progress = now
    log("stopping after %d sent, %d acked; flushing" % (sent, len(delivered)))
    flush = Deadline(150, "the final flush")
    while producer.flush(flush.step(1.0)) > 0 and not flush.expired():
        pass
    write_atomic(progress, str(len(delivered)))
    return sent, delivered, errors, len(producer)


def read_back(args, delivered):
    """Every record of the partition, in offset order: [(offset, value, leader_epoch)]."""
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            # Required by librdkafka's consumer; unused with assign() and no commits.
            "group.id": "dmq-isolation-unused-%s" % uuid.uuid4().hex,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    try:
        tp = TopicPartition(args.topic, args.partition)
        deadline = Deadline(60, "reading the partition back")
        want_end = max((o for o, _ in delivered.values()), default=-1) + 1
        high = None
        while high is None or high < want_end:
            try:
                _, high = consumer.get_watermark_offsets(tp, timeout=deadline.step(5.0) or 0.1)
            except KafkaException as e:
                log("watermarks: %s" % e)
            if deadline.expired():
                deadline.fail("high watermark %r below %d" % (high, want_end))
            if high is None or high < want_end:
                deadline.sleep(0.2)
        consumer.assign([TopicPartition(args.topic, args.partition, OFFSET_BEGINNING)])
        rows = []
        next_offset = 0
        while next_offset < high:
            if deadline.expired():
                deadline.fail("read up to offset %d of %d" % (next_offset, high))
            for msg in consumer.consume(num_messages=1000, timeout=deadline.step(0.5)):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if err.retriable():
                        log("consume (retried): %s" % err)
                        continue
                    raise KafkaException(err)
                if msg.offset() >= high:
                    continue
                rows.append((msg.offset(), int(msg.value()), msg.leader_epoch()))
                next_offset = msg.offset() + 1
        return rows, high
    finally:
        consumer.close()


def check(sent, delivered, rows, high):
    problems = []
    if len(delivered) != sent:
        problems.append("%d sent but %d acknowledged" % (sent, len(delivered)))
    values = [v for _, v, _ in rows]
    if values != list(range(len(values))):
        j = next((j for j, v in enumerate(values) if v != j), None)
        problems.append("read back out of produce order or with duplicates: value %r at position "
                        "%d (offset %d)" % (values[j], j, rows[j][0]))
    if len(rows) != high:
        problems.append("%d records read below the high watermark %d" % (len(rows), high))
    for offset, value, _ in rows:
        if value not in delivered:
            problems.append("value %d at offset %d was never acknowledged" % (value, offset))
        elif delivered[value][0] != offset:
            problems.append("value %d read at offset %d, acknowledged at %d"
                            % (value, offset, delivered[value][0]))
        if len(problems) > 5:
            break
    read = set(values)
    missing = [v for v in sorted(delivered) if v not in read]
    if missing:
        problems.append("%d acknowledged records never read, e.g. %s" % (len(missing), missing[:5]))
    if problems:
        raise CheckFailed("isolation: %d problem(s):\n  %s" % (len(problems), "\n  ".join(problems[:6])))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partition", type=int, required=True)
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--max-seconds", type=float, default=300)
    args = ap.parse_args()

    sent, delivered, errors, unflushed = produce(args)
    log("done producing: %d sent, %d acked, errors %s, %d unflushed"
        % (sent, len(delivered), errors, unflushed))
    rows, high = read_back(args, delivered)
    records = [[v, off, delivered.get(v, (off, -1))[1], epoch] for off, v, epoch in rows]
    write_atomic(args.out, json.dumps(
        {"sent": sent, "errors": errors, "unflushed": unflushed, "records": records}))
    if errors or unflushed:
        raise CheckFailed("delivery errors %s, %d unflushed" % (errors, unflushed))
    check(sent, delivered, rows, high)
    ok("isolation-producer: %d records acknowledged and read back once, in order" % sent)


if __name__ == "__main__":
    run_main(main)
