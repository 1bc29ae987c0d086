#!/usr/bin/env python3
"""librdkafka (confluent-kafka) driving a cluster with the same settings as `dmq bench produce`,
for the comparison in the client issue:

    $DMQ_VENV/bin/python benches/librdkafka_produce.py --bootstrap localhost:19092 \
        --topic bench-rdk --records 1000000 --record-size 1024 --acks 1 \
        --batch-size 1000000 --linger-ms 5

Prints records/s, MB/s and latency percentiles (librdkafka's own per-message latency).
The topic must exist (create it with `dmq topic create`).
"""
import argparse
import sys
import time

from confluent_kafka import Producer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="localhost:19092,localhost:19093,localhost:19094")
    ap.add_argument("--topic", default="bench-rdk")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--acks", default="1")
    ap.add_argument("--batch-size", type=int, default=1_000_000)
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--compression", default="none")
    a = ap.parse_args()

    producer = Producer({
        "bootstrap.servers": a.bootstrap,
        "acks": a.acks,
        "linger.ms": a.linger_ms,
        "batch.size": a.batch_size,
        "compression.type": a.compression,
        "queue.buffering.max.kbytes": 65536,
        "queue.buffering.max.messages": 1_000_000,
        "enable.idempotence": a.acks == "all",
    })
    payload = b"X" * a.record_size
    latencies = []
    errors = []

    def delivered(err, msg):
        if err is not None:
            errors.append(err)
        else:
            latencies.append(msg.latency())

    start = time.perf_counter()
    for _ in range(a.records):
        while True:
            try:
                producer.produce(a.topic, payload, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.001)
        producer.poll(0)
    producer.flush(120)
    elapsed = time.perf_counter() - start
    if errors:
        print(f"{len(errors)} records failed; first: {errors[0]}", file=sys.stderr)
        return 1
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0

    print(f"{a.records} records in {elapsed:.2f} s: {a.records / elapsed:.0f} records/s, "
          f"{a.records * a.record_size / elapsed / 1e6:.1f} MB/s")
    print(f"latency ms: p50 {pct(0.5):.2f}  p95 {pct(0.95):.2f}  p99 {pct(0.99):.2f}  "
          f"p99.9 {pct(0.999):.2f}  max {latencies[-1] * 1000 if latencies else 0:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
