"""Share-group consumers under faults (KIP-932, issue #19), with confluent-kafka's ShareConsumer.

usage: share_faults.py --bootstrap HOST:PORT --topic T --group G --records N --out FILE

Sets the group's share.auto.offset.reset to earliest (IncrementalAlterConfigs on the GROUP
resource), produces N records (idempotent, acks=all), then three members of the share group
consume them, polled in turn, ACCEPTing every record and confirming with commit_sync. The test
that runs this SIGKILLs and restarts the partition leader, the group coordinator and the metadata
leader meanwhile; it paces the members with FILE.budget (no poll while that many records are
confirmed) and reads FILE.progress (records confirmed).

A record counts as accepted once commit_sync answered without an error for its partition. An
acknowledgement that failed in transport (the leader was killed) is ambiguous: the leader may
have committed it before it died (then the record never comes back), or not (then it is delivered
again and accepted). The members stop once every record is accepted or ambiguous; the test then
checks in the quorum that the share-partition's start offset passed every record. FILE holds the
report:
  lost                 records neither accepted nor ambiguously acknowledged (must be 0)
  ambiguous            records whose only acknowledgements failed in transport
  acked_redelivered    records delivered again after their acceptance was confirmed (must be [])
  unacked_redelivered  records delivered more than once, never after a confirmed acceptance
                       (allowed: their locks went with a killed leader)
  ack_errors           acknowledgements that commit_sync reported failed
Prints one OK line; exits 1 with a FAIL line when a record is lost or an accepted one comes back.
"""

import argparse
import json
import os
import time

from confluent_kafka import AcknowledgeType, KafkaException, Producer, ShareConsumer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ResourceType)

from interop_common import CheckFailed, log, ok, run_main


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def budget(out):
    try:
        with open(out + ".budget") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


def set_earliest(bootstrap, group):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest",
                    incremental_operation=AlterConfigOpType.SET)])
    for _, f in admin.incremental_alter_configs([res]).items():
        f.result(30)
    described = admin.describe_configs([ConfigResource(ResourceType.GROUP, group)])
    for _, f in described.items():
        value = f.result(30)["share.auto.offset.reset"].value
        if value != "earliest":
            raise CheckFailed("share.auto.offset.reset reads %r after the change" % value)
    log("group %s: share.auto.offset.reset=earliest" % group)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--deadline", type=float, default=600)
    args = ap.parse_args()
    deadline = time.time() + args.deadline

    set_earliest(args.bootstrap, args.group)
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True,
                         "linger.ms": 5})
    for i in range(args.records):
        producer.produce(args.topic, value=("s%d" % i).encode())
        if i % 1000 == 999:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise CheckFailed("records not delivered")
    log("%d records produced" % args.records)

    members = []
    for i in range(3):
        c = ShareConsumer({
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "client.id": "share-fault-member-%d" % i,
            "share.acknowledgement.mode": "explicit",
            "max.poll.records": 20,
        })
        c.subscribe([args.topic])
        members.append(c)

    confirmed_at = {}     # value -> time its acceptance was confirmed (first time)
    deliveries = {}       # value -> [(time, member, delivery count)]
    acked_redelivered = []
    ack_errors = 0
    ambiguous = set()     # values whose acknowledgement failed (it may have been committed)
    want = args.records
    last_progress = -1
    def settled():
        return len(ambiguous.union(confirmed_at)) >= want

    while not settled():
        if time.time() > deadline:
            raise CheckFailed("%d of %d accepted in time (%d ambiguous)"
                              % (len(confirmed_at), want, len(ambiguous)))
        if len(confirmed_at) >= budget(args.out):
            time.sleep(0.02)
            continue
        for i, c in enumerate(members):
            try:
                msgs = c.poll(0.2)
            except KafkaException as e:
                log("member %d poll: %s" % (i, e))
                continue
            got = []
            now = time.time()
            for m in msgs:
                if m.error():
                    log("member %d: %s" % (i, m.error()))
                    continue
                v = m.value().decode()
                deliveries.setdefault(v, []).append((now, i, m.delivery_count()))
                if v in confirmed_at:
                    acked_redelivered.append({"value": v, "member": i,
                                              "delivery_count": m.delivery_count(),
                                              "after_s": round(now - confirmed_at[v], 3)})
                c.acknowledge(m, AcknowledgeType.ACCEPT)
                got.append((v, m.topic(), m.partition()))
            if not got:
                continue
            try:
                result = c.commit_sync(15.0) or {}
            except KafkaException as e:
                ack_errors += len(got)
                ambiguous.update(v for v, _, _ in got)
                log("member %d commit_sync: %s" % (i, e))
                continue
            failed = {(tp.topic, tp.partition) for tp, err in result.items() if err is not None}
            for tp, err in result.items():
                if err is not None:
                    log("member %d ack failed on %s-%d: %s" % (i, tp.topic, tp.partition, err))
            done = time.time()
            for v, t, p in got:
                if (t, p) in failed:
                    ack_errors += 1
                    ambiguous.add(v)
                elif v not in confirmed_at:
                    confirmed_at[v] = done
        if len(confirmed_at) != last_progress:
            last_progress = len(confirmed_at)
            write_atomic(args.out + ".progress", str(last_progress))

    # A few more rounds: nothing accepted comes back.
    for _ in range(5):
        for i, c in enumerate(members):
            for m in c.poll(0.2):
                if m.error():
                    continue
                v = m.value().decode()
                if v in confirmed_at:
                    acked_redelivered.append({"value": v, "member": i,
                                              "delivery_count": m.delivery_count(),
                                              "after_s": round(time.time() - confirmed_at[v], 3)})
                c.acknowledge(m, AcknowledgeType.ACCEPT)
            try:
                c.commit_sync(5.0)
            except KafkaException:
                pass
    for c in members:
        c.close()

    expected = {"s%d" % i for i in range(args.records)}
    lost = sorted(expected - set(confirmed_at) - ambiguous)
    still_ambiguous = sorted(ambiguous - set(confirmed_at))
    unacked = sorted(v for v, ds in deliveries.items() if len(ds) > 1
                     and not any(r["value"] == v for r in acked_redelivered))
    per_member = [0, 0, 0]
    for ds in deliveries.values():
        for _, i, _ in ds:
            per_member[i] += 1
    report = {"records": args.records, "accepted": len(confirmed_at), "lost": len(lost),
              "lost_sample": lost[:10], "acked_redelivered": acked_redelivered[:20],
              "acked_redelivered_count": len(acked_redelivered),
              "unacked_redelivered": len(unacked), "unacked_sample": unacked[:10],
              "ack_errors": ack_errors, "ambiguous": len(still_ambiguous),
              "ambiguous_sample": still_ambiguous[:10], "deliveries_per_member": per_member}
    write_atomic(args.out, json.dumps(report))
    if lost or acked_redelivered:
        raise CheckFailed("report %s" % json.dumps(report))
    ok("share faults: %d records accepted (%d more acknowledged ambiguously), none lost, none "
       "delivered again after its acceptance; %d unacknowledged records delivered again; %d "
       "acknowledgements failed; deliveries per member %s"
       % (len(confirmed_at), len(still_ambiguous), len(unacked), ack_errors, per_member))


if __name__ == "__main__":
    run_main(main)
