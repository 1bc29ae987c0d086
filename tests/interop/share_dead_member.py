"""A share-group member that dies with records in flight (KIP-932), with confluent-kafka.

usage: share_dead_member.py --bootstrap HOST:PORT --topic T --group G --lock-ms MS

Member A joins and warms the share-partition up (markers until it receives one). Then a second
process, member D, joins the same group, acquires records without acknowledging them and dies
with os._exit (no close, no acknowledgement). Member A must then receive every record: those D
never held at once (delivery count 1), and D's after its locks expire (delivery count 2, not
before about --lock-ms). Prints OK lines; exits 1 with a FAIL line otherwise.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from confluent_kafka import AcknowledgeType, Producer, ShareConsumer

from interop_common import CheckFailed, log, ok, run_main

RECORDS = 20


def consumer(bootstrap, group, name):
    c = ShareConsumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": name,
        "share.acknowledgement.mode": "explicit",
        "max.poll.records": 10,
    })
    return c


def dying_member(bootstrap, topic, group):
    """Member D: polls until it holds records, prints their values, dies without a word."""
    c = consumer(bootstrap, group, "share-dead-member")
    c.subscribe([topic])
    deadline = time.time() + 30
    while time.time() < deadline:
        msgs = c.poll(0.5)
        held = [m.value().decode() for m in msgs if not m.error()]
        held = [v for v in held if v.startswith("d")]
        if held:
            print(json.dumps({"held": held, "at": time.time()}), flush=True)
            os._exit(0)
    os._exit(3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--lock-ms", type=int, required=True)
    ap.add_argument("--dying", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dying:
        dying_member(args.bootstrap, args.topic, args.group)
        return
    deadline = time.time() + 90
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    a = consumer(args.bootstrap, args.group, "share-survivor")
    a.subscribe([args.topic])
    n = 0
    warm = False
    while not warm:
        if time.time() > deadline:
            raise CheckFailed("member A never received a marker")
        producer.produce(args.topic, value=b"marker%d" % n)
        producer.flush(10)
        n += 1
        for m in a.poll(0.5):
            if not m.error():
                warm = True
                a.acknowledge(m, AcknowledgeType.ACCEPT)
        a.commit_sync(10.0)
    log("warm after %d markers" % n)

    dying = subprocess.Popen(
        [sys.executable, __file__, "--bootstrap", args.bootstrap, "--topic", args.topic,
         "--group", args.group, "--lock-ms", str(args.lock_ms), "--dying"],
        stdout=subprocess.PIPE)
    time.sleep(1)  # D joins (its first heartbeat) before the records exist
    for i in range(RECORDS):
        producer.produce(args.topic, value=("d%d" % i).encode())
    if producer.flush(30) != 0:
        raise CheckFailed("records not delivered")
    out, _ = dying.communicate(timeout=60)
    if dying.returncode != 0:
        raise CheckFailed("member D exited %d without holding records" % dying.returncode)
    report = json.loads(out.decode().strip().splitlines()[-1])
    held, acquired_at = set(report["held"]), report["at"]
    log("member D died holding %s" % sorted(held))

    counts = {}
    first_seen = {}
    while len(counts) < RECORDS:
        if time.time() > deadline:
            raise CheckFailed("member A got %d of %d records" % (len(counts), RECORDS))
        for m in a.poll(0.5):
            if m.error():
                raise CheckFailed(str(m.error()))
            v = m.value().decode()
            if not v.startswith("d"):
                a.acknowledge(m, AcknowledgeType.ACCEPT)
                continue
            if v in counts:
                raise CheckFailed("%s delivered to A twice" % v)
            counts[v] = m.delivery_count()
            first_seen[v] = time.time() - acquired_at
            a.acknowledge(m, AcknowledgeType.ACCEPT)
        a.commit_sync(10.0)
    wrong = {v: c for v, c in counts.items() if c != (2 if v in held else 1)}
    if wrong:
        raise CheckFailed("delivery counts %s (D held %s)" % (wrong, sorted(held)))
    # D's poll returned within 0.5 s of the acquisition: its records may not come back before
    # the lock (minus that and a margin) ran out.
    early = {v: round(first_seen[v], 2) for v in held
             if first_seen[v] < args.lock_ms / 1000.0 - 1.0}
    if early:
        raise CheckFailed("redelivered before the lock expired: %s" % early)
    # ... and soon after it did (the lock duration configured for the test is in force).
    late = {v: round(first_seen[v], 2) for v in held
            if first_seen[v] > args.lock_ms / 1000.0 + 10.0}
    if late:
        raise CheckFailed("redelivered long after the %d ms lock: %s" % (args.lock_ms, late))
    ok("dead member: A received all %d records; the %d D held came back with delivery count 2 "
       "after its locks expired (%.1f s after D got them, lock %d ms)"
       % (RECORDS, len(held), min(first_seen[v] for v in held), args.lock_ms))
    a.close()


if __name__ == "__main__":
    run_main(main)
