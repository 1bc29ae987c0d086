"""A share group's dead-letter topic and redelivery backoff (issue #19), with confluent-kafka.

usage: share_dlq.py --bootstrap HOST:PORT --topic T --dlq D --group G

Sets the group's configs with IncrementalAlterConfigs on the GROUP resource
(share.auto.offset.reset=earliest, share.dlq.topic=D, share.delivery.count.limit=2,
share.redelivery.backoff.ms=2000) and reads them back with DescribeConfigs. Produces x0..x29 (with
a header and a key). One member then:
  - REJECTs x5 and x6;
  - RELEASEs x9 on every delivery: after its second delivery it reaches the limit and is archived;
  - RELEASEs x12 once: it must not come back before the 2 s backoff, then is accepted;
  - ACCEPTs the rest.
Afterwards D holds exactly x5, x6 (reason rejected, delivery count 1) and x9 (delivery_limit,
count 2), each once, with their key, value and header, and dmq.dlq.* headers naming the source.
Prints OK lines; exits 1 with a FAIL line otherwise.
"""

import argparse
import time

from confluent_kafka import AcknowledgeType, Consumer, Producer, ShareConsumer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ResourceType)

from interop_common import CheckFailed, log, ok, run_main

BACKOFF_MS = 2000


def configure(bootstrap, group, dlq):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    want = {"share.auto.offset.reset": "earliest", "share.dlq.topic": dlq,
            "share.delivery.count.limit": "2", "share.redelivery.backoff.ms": str(BACKOFF_MS)}
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in want.items()])
    for _, f in admin.incremental_alter_configs([res]).items():
        f.result(30)
    # A bad value is refused and changes nothing.
    bad = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.delivery.count.limit", "0",
                    incremental_operation=AlterConfigOpType.SET)])
    try:
        for _, f in admin.incremental_alter_configs([bad]).items():
            f.result(30)
        raise CheckFailed("share.delivery.count.limit=0 was accepted")
    except CheckFailed:
        raise
    except Exception as e:  # KafkaException with INVALID_CONFIG
        if "INVALID_CONFIG" not in str(e) and "nvalid" not in str(e):
            raise CheckFailed("bad value refused with %s" % e)
    for _, f in admin.describe_configs([ConfigResource(ResourceType.GROUP, group)]).items():
        got = f.result(30)
        for k, v in want.items():
            if got[k].value != v:
                raise CheckFailed("%s reads %r, set %r" % (k, got[k].value, v))
    ok("group configs set and described: %s" % sorted(want))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--dlq", required=True)
    ap.add_argument("--group", required=True)
    args = ap.parse_args()
    deadline = time.time() + 90

    configure(args.bootstrap, args.group, args.dlq)
    p = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    for i in range(30):
        p.produce(args.topic, key=b"k%d" % i, value=b"x%d" % i, headers=[("h", b"v%d" % i)])
    if p.flush(30) != 0:
        raise CheckFailed("records not delivered")

    c = ShareConsumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                       "share.acknowledgement.mode": "explicit", "max.poll.records": 10})
    c.subscribe([args.topic])
    deliveries = {}
    released_at = {}
    done = set()
    while len(done) < 30:
        if time.time() > deadline:
            raise CheckFailed("done %d of 30; deliveries %s" % (len(done), deliveries))
        msgs = c.poll(0.3)
        now = time.time()
        for m in msgs:
            if m.error():
                raise CheckFailed(str(m.error()))
            v = m.value().decode()
            n = m.delivery_count()
            deliveries.setdefault(v, []).append(n)
            if v in ("x5", "x6"):
                c.acknowledge(m, AcknowledgeType.REJECT)
                done.add(v)
            elif v == "x9":
                c.acknowledge(m, AcknowledgeType.RELEASE)
                released_at[v] = now
                if n >= 2:
                    done.add(v)
            elif v == "x12" and n == 1:
                c.acknowledge(m, AcknowledgeType.RELEASE)
                released_at[v] = now
            else:
                if v in released_at:
                    waited = now - released_at[v]
                    if waited < BACKOFF_MS / 1000.0 - 0.3:
                        raise CheckFailed("%s back %.2f s after its release (backoff %d ms)"
                                          % (v, waited, BACKOFF_MS))
                    log("%s back %.2f s after its release" % (v, waited))
                c.acknowledge(m, AcknowledgeType.ACCEPT)
                done.add(v)
        if msgs:
            for tp, err in (c.commit_sync(10.0) or {}).items():
                if err is not None:
                    raise CheckFailed("acknowledgement failed on %s: %s" % (tp, err))
    # Nothing archived comes back.
    for _ in range(5):
        for m in c.poll(0.3):
            v = m.value().decode()
            raise CheckFailed("%s delivered again (deliveries %s)" % (v, deliveries.get(v)))
    c.close()
    if deliveries["x9"] != [1, 2] or deliveries["x12"] != [1, 2]:
        raise CheckFailed("deliveries x9 %s, x12 %s" % (deliveries["x9"], deliveries["x12"]))
    ok("RELEASE: x12 came back after the %d ms backoff; x9 archived after 2 deliveries" % BACKOFF_MS)

    r = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group + "-reader",
                  "enable.auto.commit": False})
    r.assign([TopicPartition(args.dlq, 0, 0)])
    got = []
    quiet_until = None
    while True:
        if time.time() > deadline:
            raise CheckFailed("dead letters read: %s" % got)
        m = r.poll(0.5)
        if m is None:
            if len(got) >= 3:
                quiet_until = quiet_until or time.time() + 2
                if time.time() > quiet_until:
                    break
            continue
        if m.error():
            continue
        h = {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}
        got.append((m.value().decode(), m.key().decode(), h))
    r.close()
    values = sorted(v for v, _, _ in got)
    if values != ["x5", "x6", "x9"]:
        raise CheckFailed("dead-letter topic holds %s, expected x5, x6, x9 once each" % values)
    for v, k, h in got:
        i = int(v[1:])
        reason, count = ("delivery_limit", "2") if v == "x9" else ("rejected", "1")
        want = {"h": "v%d" % i, "dmq.dlq.group": args.group, "dmq.dlq.topic": args.topic,
                "dmq.dlq.partition": "0", "dmq.dlq.offset": str(i),
                "dmq.dlq.delivery.count": count, "dmq.dlq.reason": reason}
        if k != "k%d" % i or any(h.get(hk) != hv for hk, hv in want.items()):
            raise CheckFailed("dead letter %s: key %s headers %s, expected %s" % (v, k, h, want))
    ok("dead-letter topic: x5, x6 (rejected) and x9 (delivery limit) once each, with their "
       "key, headers and source")


if __name__ == "__main__":
    run_main(main)
