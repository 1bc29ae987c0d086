"""TLS listeners with confluent-kafka (SPEC §11): SASL_SSL (SCRAM-SHA-512 and PLAIN) and SSL with
client certificates against a dmq cluster whose brokers have two extra listeners each.

1. sasl-ssl: the admin (PLAIN over TLS) creates topic <prefix>-t, the SCRAM user erin and ACLs
   for erin; erin (SCRAM-SHA-512 over TLS) produces and consumes it. Every broker is reached
   through its SASL_SSL port (Metadata advertises the listener the client came in on).
2. mtls: a client presenting a certificate for CN=alice,OU=eng is `User:CN=alice,OU=eng`; with
   ACLs for that principal it produces and consumes <prefix>-m; a client without a certificate is
   ANONYMOUS and sees no topic.
3. refused: a plaintext client on the TLS port, and a TLS client that does not trust the
   broker's CA, get no metadata.

Exit 0 with `OK tls <case>` lines on stdout; exit 1 with a FAIL line otherwise.
"""

import argparse
import uuid

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   NewTopic, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from interop_common import CheckFailed, Deadline, log, ok, run_main


def produce_consume(conf, topic, n, timeout):
    values = ["%s-%d" % (uuid.uuid4().hex[:6], i) for i in range(n)]
    errors = []
    p = Producer(dict(conf, **{"linger.ms": 5, "message.timeout.ms": int(timeout * 1000)}))
    for v in values:
        p.produce(topic, value=v, on_delivery=lambda e, m: errors.append(e) if e else None)
    if p.flush(timeout):
        raise CheckFailed("records undelivered")
    if errors:
        raise CheckFailed("produce to %s failed: %s" % (topic, errors[:3]))
    c = Consumer(dict(conf, **{"group.id": "g-" + topic, "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got = []
    deadline = Deadline(timeout, "records of %s" % topic)
    try:
        while len(got) < n:
            if deadline.expired():
                raise CheckFailed("read %d of %d" % (len(got), n))
            m = c.poll(deadline.step(0.5))
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            got.append(m.value().decode())
    finally:
        c.close()
    if sorted(got) != sorted(values):
        raise CheckFailed("read %s" % got)


def allow(admin, principal, topic, group, timeout):
    acls = [AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, principal, "*",
                       op, AclPermissionType.ALLOW) for op in (AclOperation.WRITE,
                                                                AclOperation.READ)]
    acls.append(AclBinding(ResourceType.GROUP, group, ResourcePatternType.LITERAL, principal,
                           "*", AclOperation.READ, AclPermissionType.ALLOW))
    for f in admin.create_acls(acls).values():
        f.result(timeout=timeout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sasl-ssl", required=True, help="bootstrap of the SASL_SSL listeners")
    ap.add_argument("--ssl", required=True, help="bootstrap of the SSL listeners")
    ap.add_argument("--ca", required=True)
    ap.add_argument("--client-cert", required=True)
    ap.add_argument("--client-key", required=True)
    ap.add_argument("--wrong-ca", required=True)
    ap.add_argument("--admin-password", required=True)
    ap.add_argument("--prefix", default="tls")
    ap.add_argument("--timeout", type=float, default=30)
    args = ap.parse_args()
    t, m = "%s-t" % args.prefix, "%s-m" % args.prefix

    tls = {"ssl.ca.location": args.ca, "ssl.endpoint.identification.algorithm": "https"}
    admin_conf = dict(tls, **{"bootstrap.servers": args.sasl_ssl, "security.protocol": "SASL_SSL",
                              "sasl.mechanism": "PLAIN", "sasl.username": "admin",
                              "sasl.password": args.admin_password})
    admin = AdminClient(admin_conf)
    for f in admin.create_topics([NewTopic(x, 3, 3) for x in (t, m)]).values():
        f.result(timeout=args.timeout)
    md = admin.list_topics(timeout=args.timeout)
    ports = sorted(b.port for b in md.brokers.values())
    wanted = sorted(int(hp.rsplit(":", 1)[1]) for hp in args.sasl_ssl.split(","))
    if ports != wanted:
        raise CheckFailed("Metadata over SASL_SSL advertised ports %s, not the listener's %s"
                          % (ports, wanted))
    ups = [UserScramCredentialUpsertion("erin", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512,
                                                                    8192), b"erin-secret")]
    for f in admin.alter_user_scram_credentials(ups).values():
        f.result(timeout=args.timeout)
    allow(admin, "User:erin", t, "g-" + t, args.timeout)
    erin = dict(tls, **{"bootstrap.servers": args.sasl_ssl, "security.protocol": "SASL_SSL",
                        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "erin",
                        "sasl.password": "erin-secret"})
    produce_consume(erin, t, 30, args.timeout)
    ok("tls sasl-ssl: PLAIN and SCRAM-SHA-512 over TLS; Metadata advertises the SASL_SSL ports")

    allow(admin, "User:CN=alice,OU=eng", m, "g-" + m, args.timeout)
    mtls = dict(tls, **{"bootstrap.servers": args.ssl, "security.protocol": "SSL",
                        "ssl.certificate.location": args.client_cert,
                        "ssl.key.location": args.client_key})
    produce_consume(mtls, m, 30, args.timeout)
    anon = dict(tls, **{"bootstrap.servers": args.ssl, "security.protocol": "SSL"})
    seen = AdminClient(anon).list_topics(timeout=args.timeout).topics
    if m in seen or t in seen:
        raise CheckFailed("an ANONYMOUS TLS client sees %s" % sorted(seen))
    ok("tls mtls: a client certificate is User:CN=alice,OU=eng; without one, ANONYMOUS sees nothing")

    try:
        AdminClient({"bootstrap.servers": args.ssl}).list_topics(timeout=5)
        raise CheckFailed("a plaintext client got metadata from a TLS port")
    except KafkaException as e:
        log("plaintext on TLS: %s" % e)
    try:
        AdminClient(dict(anon, **{"ssl.ca.location": args.wrong_ca})).list_topics(timeout=5)
        raise CheckFailed("a client that does not trust the CA got metadata")
    except KafkaException as e:
        log("untrusted CA: %s" % e)
    ok("tls refused: plaintext on a TLS port, and an untrusted CA")


if __name__ == "__main__":
    run_main(main)
