"""A consumer-group member for the group tests (confluent-kafka or kafka-python).

Subscribes to a topic in a group, records every record it receives as a JSON line in --out
({"p": partition, "o": offset, "v": value}), keeps its current assignment in <out>.assign, and
commits after every record (synchronously) unless --commit auto. Runs until the stop file
appears or --max records were received, then commits and leaves the group cleanly.

    python tests/interop/group_consumer.py --bootstrap H:P --topic T --group G --out FILE \
        [--client confluent|kafka-python] [--max N] [--stop-file F] [--session-timeout-ms 6000]
"""

import argparse
import json
import os

from interop_common import Deadline, log, run_main, write_atomic


class Recorder:
    def __init__(self, out):
        self.out = open(out, "a")
        self.assign_path = out + ".assign"
        self.count = 0
        write_atomic(self.assign_path, "[]")

    def record(self, partition, offset, value):
        self.out.write(json.dumps({"p": partition, "o": offset, "v": value}) + "\n")
        self.out.flush()
        self.count += 1

    def assignment(self, partitions):
        write_atomic(self.assign_path, json.dumps(sorted(partitions)))


def run_confluent(args, rec, done):
    import confluent_kafka

    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": args.commit == "auto",
            "session.timeout.ms": args.session_timeout_ms,
            "heartbeat.interval.ms": max(100, args.session_timeout_ms // 6),
            "topic.metadata.refresh.interval.ms": 1000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
        }
    )
    current = set()

    def on_assign(c, parts):
        current.update(p.partition for p in parts)
        rec.assignment(current)
        log("assigned %s" % sorted(current))

    def on_revoke(c, parts):
        current.difference_update(p.partition for p in parts)
        rec.assignment(current)

    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
    try:
        while not done():
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                log("consumer error: %s" % msg.error())
                continue
            rec.record(msg.partition(), msg.offset(), msg.value().decode())
            if args.commit == "sync":
                consumer.commit(message=msg, asynchronous=False)
            if args.max and rec.count >= args.max:
                break
    finally:
        consumer.close()


def run_kafka_python(args, rec, done):
    import kafka

    consumer = kafka.KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap.split(","),
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=args.commit == "auto",
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=max(100, args.session_timeout_ms // 6),
    )
    try:
        while not done():
            batch = consumer.poll(timeout_ms=200)
            rec.assignment(p.partition for p in consumer.assignment())
            for _, msgs in batch.items():
                for msg in msgs:
                    rec.record(msg.partition, msg.offset, msg.value.decode())
                    if args.max and rec.count >= args.max:
                        break
                if args.max and rec.count >= args.max:
                    break
            if args.commit == "sync" and batch:
                consumer.commit()
            if args.max and rec.count >= args.max:
                break
    finally:
        consumer.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    ap.add_argument("--commit", choices=["sync", "auto"], default="sync")
    ap.add_argument("--max", type=int, default=0)
    ap.add_argument("--stop-file")
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    ap.add_argument("--max-seconds", type=float, default=300)
    args = ap.parse_args()

    rec = Recorder(args.out)
    deadline = Deadline(args.max_seconds, "the stop file")

    def done():
        if deadline.expired():
            raise RuntimeError("no stop signal within %.0f s" % args.max_seconds)
        return args.stop_file is not None and os.path.exists(args.stop_file)

    if args.client == "confluent":
        run_confluent(args, rec, done)
    else:
        run_kafka_python(args, rec, done)
    log("received %d records" % rec.count)


if __name__ == "__main__":
    run_main(main)
