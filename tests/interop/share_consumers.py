"""Share groups (KIP-932) with confluent-kafka's ShareConsumer (librdkafka 2.16).

usage: share_consumers.py --bootstrap HOST:PORT --topic T --group G [--records N]

Three members of one share group read a one-partition topic, polled in turn, acknowledging
explicitly:
  - warm-up: markers are produced until a member receives one (a new share-partition starts at
    the high watermark, Kafka's share.auto.offset.reset=latest); markers are accepted;
  - N records r0..r{N-1} are produced; every member receives some; r7 is RELEASEd on its first
    delivery and comes back with delivery count 2, then is accepted; r13 is REJECTed and never
    comes back; every other record is ACCEPTed exactly once across the members.
Prints one OK line per check; exits 1 with a FAIL line otherwise.
"""

import argparse
import time

from confluent_kafka import AcknowledgeType, Producer, ShareConsumer

from interop_common import CheckFailed, log, ok, run_main

RELEASED = "r7"
REJECTED = "r13"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--records", type=int, default=300)
    ap.add_argument("--deadline", type=float, default=90)
    args = ap.parse_args()
    deadline = time.time() + args.deadline

    members = []
    for i in range(3):
        c = ShareConsumer({
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "client.id": "share-member-%d" % i,
            "share.acknowledgement.mode": "explicit",
            "max.poll.records": 10,
        })
        c.subscribe([args.topic])
        members.append(c)
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})

    accepted = {}        # value -> member index
    received = [0, 0, 0]
    deliveries = {}      # value -> list of delivery counts seen
    state = {"warm": False}

    def poll_all():
        for i, c in enumerate(members):
            msgs = c.poll(0.3)
            if not msgs:
                continue
            for m in msgs:
                if m.error():
                    raise CheckFailed("member %d: %s" % (i, m.error()))
                value = m.value().decode()
                n = m.delivery_count()
                deliveries.setdefault(value, []).append(n)
                if value.startswith("marker"):
                    state["warm"] = True
                    c.acknowledge(m, AcknowledgeType.ACCEPT)
                    continue
                received[i] += 1
                if value == RELEASED and n == 1:
                    c.acknowledge(m, AcknowledgeType.RELEASE)
                elif value == REJECTED:
                    c.acknowledge(m, AcknowledgeType.REJECT)
                else:
                    if value in accepted:
                        raise CheckFailed("%s accepted twice (members %d and %d), deliveries %s"
                                          % (value, accepted[value], i, deliveries[value]))
                    accepted[value] = i
                    c.acknowledge(m, AcknowledgeType.ACCEPT)
            c.commit_sync(10.0)

    n = 0
    while not state["warm"]:
        if time.time() > deadline:
            raise CheckFailed("no member received a marker")
        producer.produce(args.topic, value=b"marker%d" % n)
        producer.flush(10)
        n += 1
        poll_all()
    log("warm after %d markers" % n)

    for i in range(args.records):
        producer.produce(args.topic, value=("r%d" % i).encode())
    if producer.flush(30) != 0:
        raise CheckFailed("records not delivered")
    want = {"r%d" % i for i in range(args.records)} - {REJECTED}
    while not want <= set(accepted):
        if time.time() > deadline:
            missing = sorted(want - set(accepted))[:10]
            raise CheckFailed("not accepted in time: %s" % missing)
        poll_all()
    # A few more rounds: nothing comes back (REJECTED stays archived, nothing twice).
    for _ in range(3):
        poll_all()

    if sorted(deliveries.get(RELEASED, [])) != [1, 2]:
        raise CheckFailed("%s deliveries %s, expected counts [1, 2]"
                          % (RELEASED, deliveries.get(RELEASED)))
    if deliveries.get(REJECTED) != [1]:
        raise CheckFailed("%s deliveries %s, expected one" % (REJECTED, deliveries.get(REJECTED)))
    if min(received) == 0:
        raise CheckFailed("a member received nothing: %s" % received)
    ok("share group: 3 members received %s records of %d; every record accepted once"
       % (received, args.records))
    ok("RELEASE: %s came back with delivery count 2; REJECT: %s never came back"
       % (RELEASED, REJECTED))
    for c in members:
        c.close()


if __name__ == "__main__":
    run_main(main)
