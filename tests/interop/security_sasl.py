"""SASL and ACLs with real Kafka clients against a secured dmq cluster (SPEC §11).

The cluster's services.json has a `security` section: the Kafka ports speak SASL_PLAINTEXT, the
PLAIN user `admin` is a super user, and the authorizer denies what no ACL allows. Cases:

1. users: the admin (PLAIN) creates SCRAM users through the AdminClient
   (AlterUserScramCredentials): alice with SCRAM-SHA-512, bob with SCRAM-SHA-256; Describe shows
   both mechanisms and iterations.
2. acls: the admin grants alice WRITE and READ on topic <prefix>-t and READ on group <prefix>-g
   (CreateAcls); DescribeAcls returns exactly those.
3. allowed: alice (SCRAM-SHA-512) produces and consumes <prefix>-t in group <prefix>-g.
4. denied: bob (SCRAM-SHA-256) does not see <prefix>-t in Metadata, his produce fails with
   TOPIC_AUTHORIZATION_FAILED; alice in another group gets GROUP_AUTHORIZATION_FAILED.
5. revoke: DeleteAcls removes alice's WRITE; her next produce fails, without any restart.
6. refused: a wrong password and a client without SASL get no metadata at all.
7. kafka-python: alice with SCRAM-SHA-512 through kafka-python produces and reads back.

Exit 0 with `OK security <case>` lines on stdout; exit 1 with a FAIL line otherwise.
"""

import argparse
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, NewTopic, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from interop_common import CheckFailed, Deadline, log, ok, run_main


def sasl(args, user, password, mechanism):
    return {"bootstrap.servers": args.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}


def admin_client(args):
    return AdminClient(sasl(args, "admin", args.admin_password, "PLAIN"))


def wait_all(futures, timeout):
    for k, f in futures.items():
        f.result(timeout=timeout)


def case_users(args, admin):
    infos = [("alice", ScramMechanism.SCRAM_SHA_512, b"alice-secret"),
             ("bob", ScramMechanism.SCRAM_SHA_256, b"bob-secret")]
    ups = [UserScramCredentialUpsertion(u, ScramCredentialInfo(m, 8192), pw)
           for u, m, pw in infos]
    wait_all(admin.alter_user_scram_credentials(ups), args.timeout)
    futs = admin.describe_user_scram_credentials(["alice", "bob"])
    described = {u: f.result(timeout=args.timeout) for u, f in futs.items()}
    for u, m, _ in infos:
        d = described[u]
        mechs = [(i.mechanism, i.iterations) for i in d.scram_credential_infos]
        if mechs != [(m, 8192)]:
            raise CheckFailed("%s's credentials are described as %s" % (u, mechs))
    ok("security users: SCRAM users created and described through the AdminClient")


def alice_acls(args):
    t, g = "%s-t" % args.prefix, "%s-g" % args.prefix
    return [
        AclBinding(ResourceType.TOPIC, t, ResourcePatternType.LITERAL, "User:alice", "*",
                   AclOperation.WRITE, AclPermissionType.ALLOW),
        AclBinding(ResourceType.TOPIC, t, ResourcePatternType.LITERAL, "User:alice", "*",
                   AclOperation.READ, AclPermissionType.ALLOW),
        AclBinding(ResourceType.GROUP, g, ResourcePatternType.LITERAL, "User:alice", "*",
                   AclOperation.READ, AclPermissionType.ALLOW),
    ]


def case_acls(args, admin):
    wait_all(admin.create_acls(alice_acls(args)), args.timeout)
    flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice", None,
                           AclOperation.ANY, AclPermissionType.ANY)
    got = admin.describe_acls(flt).result(timeout=args.timeout)
    if sorted(map(str, got)) != sorted(map(str, alice_acls(args))):
        raise CheckFailed("DescribeAcls answered %s" % got)
    ok("security acls: CreateAcls and DescribeAcls through the AdminClient")


def produce(conf, topic, values, timeout):
    """Produces values; returns the delivery errors (empty when all were acknowledged)."""
    errors = []
    p = Producer(dict(conf, **{"message.timeout.ms": int(timeout * 1000), "linger.ms": 5}))

    def done(err, msg):
        if err is not None:
            errors.append(err)

    for v in values:
        p.produce(topic, value=v, on_delivery=done)
    left = p.flush(timeout)
    if left:
        raise CheckFailed("%d records neither delivered nor failed" % left)
    return errors


def consume(conf, topic, group, n, timeout):
    """Reads n records in `group` (and commits them); raises KafkaException on an error."""
    c = Consumer(dict(conf, **{"group.id": group, "auto.offset.reset": "earliest",
                               "enable.auto.commit": False}))
    c.subscribe([topic])
    got = []
    deadline = Deadline(timeout, "records of %s" % topic)
    try:
        while len(got) < n:
            if deadline.expired():
                raise CheckFailed("read %d of %d records" % (len(got), n))
            m = c.poll(deadline.step(0.5))
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            got.append(m.value().decode())
        c.commit(asynchronous=False)
    finally:
        c.close()
    return got


def case_allowed(args):
    alice = sasl(args, "alice", "alice-secret", "SCRAM-SHA-512")
    t, g = "%s-t" % args.prefix, "%s-g" % args.prefix
    values = ["a%d" % i for i in range(20)]
    errors = produce(alice, t, values, args.timeout)
    if errors:
        raise CheckFailed("alice's produce failed: %s" % errors[:3])
    got = consume(alice, t, g, len(values), args.timeout)
    if sorted(got) != sorted(values):
        raise CheckFailed("alice read %s" % got)
    # KIP-430: the topic's authorized operations are what the ACLs allow alice.
    from confluent_kafka import TopicCollection
    alice_admin = AdminClient(alice)  # kept alive until the future is done
    desc = alice_admin.describe_topics(TopicCollection([t]),
                                       include_authorized_operations=True)[t].result(
        timeout=args.timeout)
    ops = set(desc.authorized_operations or [])
    want = {AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE}
    if not want <= ops or AclOperation.DELETE in ops or AclOperation.ALTER in ops:
        raise CheckFailed("alice's authorized operations on %s: %s" % (t, sorted(map(str, ops))))
    ok("security allowed: alice (SCRAM-SHA-512) with WRITE and READ produces and consumes")


def expect_error(what, code, fn):
    try:
        fn()
    except KafkaException as e:
        if e.args[0].code() != code:
            raise CheckFailed("%s failed with %s, expected %s" % (what, e.args[0], code))
        return
    raise CheckFailed("%s succeeded" % what)


def case_denied(args):
    bob = sasl(args, "bob", "bob-secret", "SCRAM-SHA-256")
    t = "%s-t" % args.prefix
    md = AdminClient(bob).list_topics(timeout=args.timeout)
    if t in md.topics:
        raise CheckFailed("bob sees %s in Metadata" % t)
    errors = produce(dict(bob, **{"topic.metadata.propagation.max.ms": 1000}), t, ["b"],
                     10)
    if not errors or errors[0].code() not in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                               KafkaError._UNKNOWN_TOPIC,
                                               KafkaError.UNKNOWN_TOPIC_OR_PART):
        raise CheckFailed("bob's produce ended with %s" % errors)
    # With the topic named explicitly in a Metadata request, the broker says why.
    md = AdminClient(bob).list_topics(topic=t, timeout=args.timeout)
    err = md.topics[t].error
    if err is None or err.code() != KafkaError.TOPIC_AUTHORIZATION_FAILED:
        raise CheckFailed("bob's Metadata for %s answered %s" % (t, err))
    from confluent_kafka.admin import ConfigResource
    bob_admin = AdminClient(bob)  # kept alive until the future is done
    res = bob_admin.describe_configs([ConfigResource("topic", t)])
    try:
        list(res.values())[0].result(timeout=args.timeout)
        raise CheckFailed("bob described %s's configs" % t)
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_AUTHORIZATION_FAILED:
            raise CheckFailed("bob's DescribeConfigs failed with %s" % e)
    alice = sasl(args, "alice", "alice-secret", "SCRAM-SHA-512")
    expect_error("alice in a group without READ", KafkaError.GROUP_AUTHORIZATION_FAILED,
                 lambda: consume(alice, t, "%s-other" % args.prefix, 1, args.timeout))
    ok("security denied: without ACLs bob sees no topic and gets TOPIC_AUTHORIZATION_FAILED; "
       "alice gets GROUP_AUTHORIZATION_FAILED for a group she may not read")


def case_revoke(args, admin):
    t = "%s-t" % args.prefix
    flt = AclBindingFilter(ResourceType.TOPIC, t, ResourcePatternType.LITERAL, "User:alice",
                           "*", AclOperation.WRITE, AclPermissionType.ALLOW)
    res = admin.delete_acls([flt])
    deleted = [b for f in res.values() for b in f.result(timeout=args.timeout)]
    if len(deleted) != 1:
        raise CheckFailed("DeleteAcls removed %s" % deleted)
    alice = sasl(args, "alice", "alice-secret", "SCRAM-SHA-512")
    deadline = Deadline(args.timeout, "the revoked ACL to take effect")
    while True:
        errors = produce(dict(alice, **{"retries": 0}), t, ["late"], 10)
        if errors and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            break
        if not errors:
            log("alice's produce still allowed; the brokers have not seen the deletion yet")
        if deadline.expired():
            raise CheckFailed("alice can still write after DeleteAcls: %s" % errors)
        deadline.sleep(0.3)
    ok("security revoke: DeleteAcls takes WRITE away without a restart")


def case_refused(args):
    wrong = sasl(args, "alice", "not-her-password", "SCRAM-SHA-512")
    try:
        AdminClient(wrong).list_topics(timeout=8)
        raise CheckFailed("a wrong password got metadata")
    except KafkaException as e:
        log("wrong password: %s" % e)
    try:
        AdminClient({"bootstrap.servers": args.bootstrap}).list_topics(timeout=5)
        raise CheckFailed("a client without SASL got metadata")
    except KafkaException as e:
        log("no SASL: %s" % e)
    ok("security refused: a wrong password and a client without SASL get nothing")


def case_kafka_python(args):
    from kafka import KafkaConsumer, KafkaProducer
    t = "%s-kp" % args.prefix
    common = dict(bootstrap_servers=args.bootstrap, security_protocol="SASL_PLAINTEXT",
                  sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="alice",
                  sasl_plain_password="alice-secret")
    p = KafkaProducer(**common)
    for i in range(10):
        p.send(t, ("kp%d" % i).encode()).get(timeout=args.timeout)
    p.close()
    c = KafkaConsumer(t, group_id="%s-g" % args.prefix, auto_offset_reset="earliest",
                      consumer_timeout_ms=int(args.timeout * 1000), **common)
    got = []
    for m in c:
        got.append(m.value.decode())
        if len(got) == 10:
            break
    c.close()
    if sorted(got) != sorted("kp%d" % i for i in range(10)):
        raise CheckFailed("kafka-python read %s" % got)
    ok("security kafka-python: SCRAM-SHA-512 produce and consume")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--admin-password", required=True)
    ap.add_argument("--prefix", default="sec")
    ap.add_argument("--timeout", type=float, default=30)
    args = ap.parse_args()
    admin = admin_client(args)
    topics = ["%s-t" % args.prefix, "%s-kp" % args.prefix]
    wait_all(admin.create_topics([NewTopic(t, 1, 3) for t in topics]), args.timeout)
    case_users(args, admin)
    case_acls(args, admin)
    # kafka-python's topic: alice may write and read it by a prefixed ACL.
    wait_all(admin.create_acls([
        AclBinding(ResourceType.TOPIC, "%s-kp" % args.prefix, ResourcePatternType.PREFIXED,
                   "User:alice", "*", op, AclPermissionType.ALLOW)
        for op in (AclOperation.WRITE, AclOperation.READ)]), args.timeout)
    case_allowed(args)
    case_denied(args)
    case_kafka_python(args)
    case_revoke(args, admin)
    case_refused(args)


if __name__ == "__main__":
    run_main(main)
