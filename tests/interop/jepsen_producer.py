"""An idempotent acks=all producer for the replication tests (confluent-kafka / librdkafka).

Produces the values 0, 1, 2, ... round-robin over the topic's partitions (value i goes to
partition i % partitions, so each partition sees increasing values) until the stop file
appears, then flushes and writes a JSON report:

    {"sent": N, "acked": [[partition, offset, value], ...], "errors": {"NAME": count}}

While it runs, `<out>.progress` holds the number of acknowledged records (rewritten atomically),
so the test driving the faults can wait for produce to resume after each one.

    python tests/interop/jepsen_producer.py --bootstrap H:P --topic T --partitions 3 \
        --stop-file STOP --out report.json
"""

import argparse
import json
import os
import time

import confluent_kafka

from interop_common import Deadline, log, run_main

# Unacknowledged records allowed in flight: enough to keep every partition busy, few enough
# that a fault leaves a bounded backlog to retry.
IN_FLIGHT_MAX = 2000


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--config", action="append", default=[],
                    help="extra librdkafka property KEY=VALUE (security.protocol, sasl.*, ssl.*)")
    args = ap.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.config)

    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            # Retries are unbounded within the delivery timeout; faults last seconds.
            "message.timeout.ms": 120000,
            "retry.backoff.ms": 50,
            "retry.backoff.max.ms": 200,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "topic.metadata.refresh.interval.ms": 1000,
            "socket.timeout.ms": 10000,
            **extra,
        }
    )
    acked = []
    errors = {}
    state = {"in_flight": 0}

    def on_delivery(err, msg):
        state["in_flight"] -= 1
        if err is not None:
            errors[err.name()] = errors.get(err.name(), 0) + 1
            return
        acked.append([msg.partition(), msg.offset(), int(msg.value())])

    progress = args.out + ".progress"
    deadline = Deadline(args.max_seconds, "the stop file")
    sent = 0
    last_progress = 0.0
    while not os.path.exists(args.stop_file) and not deadline.expired():
        if state["in_flight"] >= IN_FLIGHT_MAX:
            producer.poll(0.01)
        else:
            try:
                producer.produce(
                    args.topic,
                    value=str(sent).encode(),
                    key=str(sent).encode(),
                    partition=sent % args.partitions,
                    on_delivery=on_delivery,
                )
                sent += 1
                state["in_flight"] += 1
            except BufferError:
                producer.poll(0.05)
            producer.poll(0)
        now = time.monotonic()
        if now - last_progress >= 0.1:
            write_atomic(progress, str(len(acked)))
            last_progress = now
    log("stopping after %d sent, %d acked; flushing" % (sent, len(acked)))
    flush = Deadline(150, "the final flush")
    while producer.flush(flush.step(1.0)) > 0 and not flush.expired():
        pass
    left = len(producer)
    write_atomic(progress, str(len(acked)))
    report = {"sent": sent, "acked": acked, "errors": errors, "unflushed": left}
    write_atomic(args.out, json.dumps(report))
    log("done: %d sent, %d acked, errors %s, %d unflushed" % (sent, len(acked), errors, left))


if __name__ == "__main__":
    run_main(main)
