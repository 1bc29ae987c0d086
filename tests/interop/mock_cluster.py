#!/usr/bin/env python3
"""Starts librdkafka's built-in mock Kafka cluster on loopback, for checking these scripts
themselves without a dmq broker (it is NOT a test of dmq).

Prints the bootstrap list (127.0.0.1:P1,127.0.0.1:P2,...) as the only line on stdout, then keeps
the cluster up until SIGTERM/SIGINT arrives, --seconds pass, or (with --watch-stdin) stdin reaches
EOF. Example:

    coproc MOCK { "$DMQ_VENV/bin/python" tests/interop/mock_cluster.py --brokers 3; }
    read -r BOOTSTRAP <&"${MOCK[0]}"
    "$DMQ_VENV/bin/python" tests/interop/confluent_roundtrip.py --bootstrap "$BOOTSTRAP" ...
    kill "$MOCK_PID"

The mock cluster auto-creates topics (4 partitions, as librdkafka's mock default) and supports
CreateTopics, idempotent produce and all codecs; it is a fake, so passing here says the scripts
are sound, not that any broker is.
"""

import argparse
import logging
import re
import select
import signal
import sys
import time

from confluent_kafka import Producer


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brokers", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    ap.add_argument("--watch-stdin", action="store_true", help="stop when stdin reaches EOF")
    args = ap.parse_args()

    found = []

    class Grab(logging.Handler):
        def emit(self, record):
            m = re.search(r"replaced with (\S+)", record.getMessage())
            if m:
                found.append(m.group(1))

    logger = logging.getLogger("mock")
    logger.addHandler(Grab())
    logger.setLevel(logging.INFO)
    holder = Producer({"bootstrap.servers": "unused:1", "test.mock.num.brokers": args.brokers,
                       "logger": logger})
    end = time.monotonic() + 10
    while not found and time.monotonic() < end:
        holder.poll(0.1)
    if not found:
        print("FAIL: mock cluster did not report its bootstrap servers", file=sys.stderr)
        sys.exit(1)
    print(found[0], flush=True)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    end = time.monotonic() + args.seconds
    while not stop and time.monotonic() < end:
        if args.watch_stdin:
            r, _, _ = select.select([sys.stdin], [], [], 0.5)
            if r and not sys.stdin.buffer.read1(4096):
                break  # stdin closed: our parent is gone
        else:
            time.sleep(0.5)
        holder.poll(0)


if __name__ == "__main__":
    main()
