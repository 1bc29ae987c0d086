// SASL and ACLs with the reference Java client (org.apache.kafka:kafka-clients 4.x) against a
// secured dmq cluster (SPEC §11), driven by crates/dmq/tests/security_java.rs.
//
// usage: java -cp 'target/kafka-judges/lib/*' tests/interop/java/SecurityCheck.java \
//            BOOTSTRAP ADMIN_PASSWORD TOPIC GROUP USER USER_PASSWORD [SASL_SSL_BOOTSTRAP CA_PEM]
//
// BOOTSTRAP speaks SASL_PLAINTEXT. The PLAIN user `admin` is a super user; the authorizer denies
// what no ACL allows. Before this runs, Kafka's own tools (kafka-configs, kafka-acls) made USER a
// SCRAM-SHA-512 user with WRITE and READ on TOPIC and READ on GROUP. Cases, in order:
//
//   login        USER (SCRAM-SHA-512) can log in (the brokers learn of a new user with their next
//                metadata update; waited for with a deadline)
//   allowed      USER's default (idempotent, acks=all) producer writes 50 records to TOPIC (its
//                InitProducerId needs WRITE on some topic); a group consumer in GROUP reads all 50
//                and commits them, and the admin sees the committed offsets; in another group the
//                consumer gets GroupAuthorizationException
//   users        the AdminClient (admin, PLAIN) creates SCRAM-SHA-256 user erin
//                (alterUserScramCredentials), describeUserScramCredentials shows her, she can log in
//   denied       erin, without ACLs: listTopics() has no TOPIC, describeTopics(TOPIC) and a produce
//                to TOPIC fail with TopicAuthorizationException
//   filtered     the admin commits a transaction (transactional id erin-txn) on TOPIC; erin
//                does not see it in listTransactions(), gets TopicAuthorizationException from
//                describeProducers(TOPIC-0), and, granted READ on GROUP only, her
//                listConsumerGroupOffsets(GROUP) leaves TOPIC out (she may not describe it)
//   acl          the AdminClient grants erin WRITE on TOPIC (createAcls, describeAcls shows it): her
//                produce succeeds and she sees TOPIC; deleteAcls takes it away again: her produce
//                fails with TopicAuthorizationException - no restart in between
//   user-delete  the AdminClient deletes erin's credential: describeUserScramCredentials answers
//                ResourceNotFoundException and her login fails with SaslAuthenticationException
//   refused      a wrong password (SCRAM-SHA-512 and PLAIN) gets SaslAuthenticationException from
//                the AdminClient and from a producer
//   sasl-ssl     (with SASL_SSL_BOOTSTRAP and CA_PEM) the same over TLS: USER with SCRAM-SHA-512
//                produces and reads back, the admin with PLAIN lists topics, a wrong password gets
//                SaslAuthenticationException
//   revoke       USER's producer writes; the check prints "READY revoke" and waits for a line on
//                stdin while the test removes USER's WRITE with `kafka-acls --remove`; then the
//                same producer's next sends fail with TopicAuthorizationException, and USER can
//                still read TOPIC (READ was kept)
//   user-removed "READY user-removed": the test deletes USER's credential with `kafka-configs
//                --delete-config SCRAM-SHA-512`; then USER's login fails with
//                SaslAuthenticationException
//
// Every wait is a condition polled until a deadline. Prints one "OK java-security <case>: ..."
// line per case and exits 0, or prints "FAIL java-security <case>: ..." on stderr (with the stack
// trace) and exits 1.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialDeletion;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.errors.GroupAuthorizationException;
import org.apache.kafka.common.errors.ResourceNotFoundException;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class SecurityCheck {
    /** Bound of every wait for a condition (logins, ACLs taking effect, records). */
    static final long WAIT_MS = 30_000;
    /** Pause between two probes of a condition. */
    static final long POLL_MS = 250;

    static String bootstrap;
    static String adminPassword;
    static String currentCase = "setup";

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static void ok(String line) {
        System.out.println("OK java-security " + currentCase + ": " + line);
        System.out.flush();
    }

    static void log(String line) {
        System.err.println("java-security " + currentCase + ": " + line);
    }

    /** Polls `probe` until it yields a value; fails naming `what` after WAIT_MS. */
    static <T> T waitFor(String what, Callable<Optional<T>> probe) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(WAIT_MS);
        while (true) {
            Optional<T> v = probe.call();
            if (v.isPresent()) {
                return v.get();
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + WAIT_MS + " ms waiting for " + what);
            }
            Thread.sleep(POLL_MS);
        }
    }

    /**
     * Polls `probe` until it holds (its last value is described by `last` on failure). A change
     * made through one broker reaches the others with their next metadata update, as in Kafka,
     * where DescribeAcls and DescribeUserScramCredentials are answered from the metadata image of
     * whichever broker the AdminClient asks.
     */
    static <T> T waitUntil(String what, Callable<T> get, java.util.function.Predicate<T> holds) throws Exception {
        Object[] last = {null};
        try {
            return waitFor(what, () -> {
                T v = get.call();
                last[0] = v;
                return holds.test(v) ? Optional.of(v) : Optional.empty();
            });
        } catch (AssertionError e) {
            throw new AssertionError(e.getMessage() + "; last seen: " + last[0]);
        }
    }

    // --- client configurations ---------------------------------------------------------------

    static Properties sasl(String servers, String protocol, String mechanism, String user, String password) {
        String module = mechanism.equals("PLAIN")
                ? "org.apache.kafka.common.security.plain.PlainLoginModule"
                : "org.apache.kafka.common.security.scram.ScramLoginModule";
        Properties p = new Properties();
        p.put("bootstrap.servers", servers);
        p.put("security.protocol", protocol);
        p.put("sasl.mechanism", mechanism);
        p.put("sasl.jaas.config", module + " required username=\"" + user + "\" password=\"" + password + "\";");
        // Short client-side bounds: a refused or unauthorized call must fail, not hang.
        p.put("request.timeout.ms", "10000");
        p.put("default.api.timeout.ms", "15000");
        return p;
    }

    static Properties scram(String user, String password) {
        return sasl(bootstrap, "SASL_PLAINTEXT", "SCRAM-SHA-512", user, password);
    }

    static Properties scram256(String user, String password) {
        return sasl(bootstrap, "SASL_PLAINTEXT", "SCRAM-SHA-256", user, password);
    }

    static Properties admin() {
        return sasl(bootstrap, "SASL_PLAINTEXT", "PLAIN", "admin", adminPassword);
    }

    /** The default Java producer (idempotent, acks=all) with bounded blocking. */
    static KafkaProducer<String, String> producer(Properties base) {
        Properties p = new Properties();
        p.putAll(base);
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        p.put("max.block.ms", "10000");
        p.put("delivery.timeout.ms", "20000");
        p.put("linger.ms", "0");
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<String, String> consumer(Properties base, String group) {
        Properties p = new Properties();
        p.putAll(base);
        if (group != null) {
            p.put("group.id", group);
        }
        p.put("auto.offset.reset", "earliest");
        p.put("enable.auto.commit", "false");
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        return new KafkaConsumer<>(p);
    }

    /** The cause of a failed call (ExecutionException and KafkaException wrappers removed). */
    static Throwable cause(Throwable e) {
        while ((e instanceof ExecutionException || e.getClass() == org.apache.kafka.common.KafkaException.class)
                && e.getCause() != null) {
            e = e.getCause();
        }
        return e;
    }

    /** Sends one record with a fresh producer: null when acknowledged, else why it failed. */
    static Throwable produceOnce(Properties base, String topic, String value) {
        try (KafkaProducer<String, String> p = producer(base)) {
            p.send(new ProducerRecord<>(topic, value, value)).get(30, TimeUnit.SECONDS);
            return null;
        } catch (Throwable e) {
            return cause(e);
        }
    }

    /** Lists topics with a fresh admin client: the names, or why it failed. */
    static Object listTopics(Properties base) {
        try (Admin a = Admin.create(base)) {
            return a.listTopics().names().get(20, TimeUnit.SECONDS);
        } catch (Throwable e) {
            return cause(e);
        }
    }

    /** Waits until a client with `base` logs in (a wrong-credential refusal is retried). */
    static Set<String> waitLogin(String who, Properties base) throws Exception {
        return waitFor(who + " to log in", () -> {
            Object r = listTopics(base);
            if (r instanceof Set) {
                @SuppressWarnings("unchecked")
                Set<String> names = (Set<String>) r;
                return Optional.of(names);
            }
            if (!(r instanceof SaslAuthenticationException)) {
                throw new AssertionError(who + "'s login failed with " + r, (Throwable) r);
            }
            log(who + " not yet known to the broker: " + r);
            return Optional.empty();
        });
    }

    /** Waits until a login with `base` is refused with SaslAuthenticationException. */
    static SaslAuthenticationException waitRefused(String who, Properties base) throws Exception {
        return waitFor(who + "'s login to be refused", () -> {
            Object r = listTopics(base);
            if (r instanceof SaslAuthenticationException) {
                return Optional.of((SaslAuthenticationException) r);
            }
            if (r instanceof Throwable) {
                throw new AssertionError(who + "'s login failed with " + r + ", expected SaslAuthenticationException",
                        (Throwable) r);
            }
            log(who + " still logs in");
            return Optional.empty();
        });
    }

    /** Waits until a produce with a fresh producer ends as `want` (null: acknowledged). */
    static void waitProduce(String who, Properties base, String topic, Class<? extends Throwable> want) throws Exception {
        String what = who + "'s produce to " + topic + " to " + (want == null ? "succeed" : "fail with " + want.getSimpleName());
        waitFor(what, () -> {
            Throwable e = produceOnce(base, topic, who + "-" + System.nanoTime());
            if (want == null ? e == null : want.isInstance(e)) {
                return Optional.of(true);
            }
            if (e != null && !(e instanceof TopicAuthorizationException)) {
                throw new AssertionError(who + "'s produce failed with " + e, e);
            }
            log(who + "'s produce: " + (e == null ? "acknowledged" : e.toString()) + "; waiting");
            return Optional.empty();
        });
    }

    /**
     * Reads `topic` in `group` (or, without a group, every partition from the start) until the
     * values read include `want`.
     */
    static List<String> read(KafkaConsumer<String, String> c, String topic, String group, List<String> want)
            throws Exception {
        if (group != null) {
            c.subscribe(List.of(topic));
        } else {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic)) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
        }
        List<String> got = new ArrayList<>();
        waitFor(want.size() + " records of " + topic, () -> {
            ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(500));
            for (ConsumerRecord<String, String> r : rs) {
                got.add(r.value());
            }
            return got.containsAll(want) ? Optional.of(true) : Optional.empty();
        });
        return got;
    }

    static void expect(Class<? extends Throwable> want, String what, Callable<?> call) {
        Throwable got;
        try {
            Object v = call.call();
            throw new AssertionError(what + " succeeded (" + v + "), expected " + want.getSimpleName());
        } catch (AssertionError e) {
            throw e;
        } catch (Throwable e) {
            got = cause(e);
        }
        if (!want.isInstance(got)) {
            throw new AssertionError(what + " failed with " + got + ", expected " + want.getSimpleName(), got);
        }
    }

    /** Prints "READY step" and waits for the test to answer "GO step" on stdin. */
    static void handshake(BufferedReader in, String step) throws Exception {
        System.out.println("READY " + step);
        System.out.flush();
        String line = in.readLine();
        check(("GO " + step).equals(line), "expected \"GO " + step + "\" on stdin, got " + line);
    }

    // --- cases -------------------------------------------------------------------------------

    public static void main(String[] args) {
        if (args.length != 6 && args.length != 8) {
            System.err.println("usage: SecurityCheck BOOTSTRAP ADMIN_PASSWORD TOPIC GROUP USER USER_PASSWORD "
                    + "[SASL_SSL_BOOTSTRAP CA_PEM]");
            System.exit(2);
        }
        bootstrap = args[0];
        adminPassword = args[1];
        try {
            run(args[2], args[3], args[4], args[5], args.length == 8 ? args[6] : null, args.length == 8 ? args[7] : null);
        } catch (Throwable e) {
            System.err.println("FAIL java-security " + currentCase + ": " + e);
            e.printStackTrace();
            System.exit(1);
        }
        System.exit(0);
    }

    static void run(String topic, String group, String user, String password, String sslBootstrap, String ca)
            throws Exception {
        BufferedReader stdin = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        Properties dave = scram(user, password);
        try (Admin admin = Admin.create(admin())) {
            currentCase = "login";
            Set<String> seen = waitLogin(user, dave);
            check(seen.contains(topic), user + " (READ on " + topic + ") does not see it: " + seen);
            ok(user + " logs in with SCRAM-SHA-512 and sees " + topic);

            currentCase = "allowed";
            allowed(admin, dave, user, topic, group);

            currentCase = "users";
            String erin = user + "-erin";
            Properties erinConf = scram256(erin, "erin-secret");
            admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(erin,
                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), "erin-secret")))
                    .all().get(20, TimeUnit.SECONDS);
            waitUntil("describeUserScramCredentials(" + erin + ") to show SCRAM-SHA-256 with 4096 iterations",
                    () -> {
                        try {
                            return admin.describeUserScramCredentials(List.of(erin)).description(erin)
                                    .get(20, TimeUnit.SECONDS).credentialInfos();
                        } catch (ExecutionException e) {
                            if (e.getCause() instanceof ResourceNotFoundException) {
                                return List.<ScramCredentialInfo>of();
                            }
                            throw e;
                        }
                    },
                    infos -> infos.size() == 1 && infos.get(0).mechanism() == ScramMechanism.SCRAM_SHA_256
                            && infos.get(0).iterations() == 4096);
            waitUntil("describeUserScramCredentials() to list " + erin + " and " + user,
                    () -> admin.describeUserScramCredentials().all().get(20, TimeUnit.SECONDS).keySet(),
                    users -> users.contains(erin) && users.contains(user));
            waitLogin(erin, erinConf);
            ok("the AdminClient created " + erin + " (SCRAM-SHA-256, 4096 iterations); described, she logs in");

            currentCase = "denied";
            Object names = listTopics(erinConf);
            check(names instanceof Set && !((Set<?>) names).contains(topic),
                    erin + " without ACLs lists " + names);
            try (Admin ea = Admin.create(erinConf)) {
                expect(TopicAuthorizationException.class, erin + "'s describeTopics(" + topic + ")",
                        () -> ea.describeTopics(List.of(topic)).allTopicNames().get(20, TimeUnit.SECONDS));
            }
            Throwable denied = produceOnce(erinConf, topic, "erin-denied");
            check(denied instanceof TopicAuthorizationException,
                    erin + "'s produce ended with " + denied + ", expected TopicAuthorizationException");
            ok(erin + " without ACLs: no " + topic + " in listTopics(), TopicAuthorizationException on "
                    + "describeTopics and produce");

            currentCase = "filtered";
            filtered(admin, erinConf, erin, topic, group);

            currentCase = "acl";
            AclBinding erinWrite = new AclBinding(new ResourcePattern(ResourceType.TOPIC, topic, PatternType.LITERAL),
                    new AccessControlEntry("User:" + erin, "*", AclOperation.WRITE, AclPermissionType.ALLOW));
            admin.createAcls(List.of(erinWrite)).all().get(20, TimeUnit.SECONDS);
            AclBindingFilter erinFilter = new AclBindingFilter(ResourcePatternFilter.ANY,
                    new AccessControlEntryFilter("User:" + erin, null, AclOperation.ANY, AclPermissionType.ANY));
            waitUntil("describeAcls(" + erin + ") to show the new binding",
                    () -> admin.describeAcls(erinFilter).values().get(20, TimeUnit.SECONDS),
                    described -> described.size() == 1 && described.contains(erinWrite));
            waitProduce(erin, erinConf, topic, null);
            waitUntil(erin + " with WRITE (which implies DESCRIBE) to list " + topic, () -> listTopics(erinConf),
                    listed -> listed instanceof Set && ((Set<?>) listed).contains(topic));
            Collection<AclBinding> deleted = admin.deleteAcls(List.of(erinFilter)).all().get(20, TimeUnit.SECONDS);
            check(deleted.size() == 1 && deleted.contains(erinWrite), "deleteAcls removed " + deleted);
            waitUntil("describeAcls(" + erin + ") to be empty after deleteAcls",
                    () -> admin.describeAcls(erinFilter).values().get(20, TimeUnit.SECONDS), Collection::isEmpty);
            waitProduce(erin, erinConf, topic, TopicAuthorizationException.class);
            ok("createAcls let " + erin + " write " + topic + " and deleteAcls took it away, without restart");

            currentCase = "user-delete";
            admin.alterUserScramCredentials(List.<UserScramCredentialAlteration>of(
                    new UserScramCredentialDeletion(erin, ScramMechanism.SCRAM_SHA_256))).all().get(20, TimeUnit.SECONDS);
            waitUntil("describeUserScramCredentials(" + erin + ") to answer ResourceNotFoundException",
                    () -> {
                        try {
                            return admin.describeUserScramCredentials(List.of(erin)).description(erin)
                                    .get(20, TimeUnit.SECONDS).toString();
                        } catch (ExecutionException e) {
                            if (e.getCause() instanceof ResourceNotFoundException) {
                                return "ResourceNotFoundException";
                            }
                            throw e;
                        }
                    },
                    "ResourceNotFoundException"::equals);
            waitUntil("describeUserScramCredentials() to list " + user + " and not " + erin,
                    () -> admin.describeUserScramCredentials().all().get(20, TimeUnit.SECONDS).keySet(),
                    users -> !users.contains(erin) && users.contains(user));
            SaslAuthenticationException refused = waitRefused(erin, erinConf);
            ok("the AdminClient deleted " + erin + "'s credential; her login is refused: " + refused.getMessage());

            currentCase = "refused";
            refused(user, topic);

            if (sslBootstrap != null) {
                currentCase = "sasl-ssl";
                saslSsl(sslBootstrap, ca, user, password, topic);
            }

            currentCase = "revoke";
            revoke(stdin, dave, user, topic);

            currentCase = "user-removed";
            handshake(stdin, "user-removed");
            refused = waitRefused(user, dave);
            ok(user + "'s credential deleted by kafka-configs: login refused (" + refused.getMessage() + ")");
        }
    }

    static void allowed(Admin admin, Properties dave, String user, String topic, String group) throws Exception {
        List<String> sent = new ArrayList<>();
        try (KafkaProducer<String, String> p = producer(dave)) {
            for (int i = 0; i < 50; i++) {
                String v = "d" + i;
                p.send(new ProducerRecord<>(topic, "k" + i, v)).get(30, TimeUnit.SECONDS);
                sent.add(v);
            }
        }
        try (KafkaConsumer<String, String> c = consumer(dave, group)) {
            List<String> got = read(c, topic, group, sent);
            check(got.size() == sent.size(), user + " read " + got);
            c.commitSync(Duration.ofSeconds(20));
        }
        Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                .partitionsToOffsetAndMetadata().get(20, TimeUnit.SECONDS);
        long sum = committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
        check(sum == sent.size(), "committed offsets of " + group + ": " + committed);
        try (KafkaConsumer<String, String> c = consumer(dave, group + "-other")) {
            c.subscribe(List.of(topic));
            GroupAuthorizationException e = waitFor(user + "'s consumer in " + group + "-other to be refused", () -> {
                try {
                    ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(500));
                    check(rs.isEmpty(), user + " read " + rs.count() + " records in " + group + "-other");
                    return Optional.empty();
                } catch (GroupAuthorizationException g) {
                    return Optional.of(g);
                }
            });
            log("other group: " + e);
        }
        ok(user + " (SCRAM-SHA-512, idempotent acks=all producer) wrote 50 records to " + topic
                + ", read and committed them in " + group + "; another group: GroupAuthorizationException");
    }

    static void filtered(Admin admin, Properties erinConf, String erin, String topic, String group)
            throws Exception {
        String txnId = erin + "-txn";
        Properties tx = admin();
        tx.put("transactional.id", txnId);
        try (KafkaProducer<String, String> p = producer(tx)) {
            p.initTransactions();
            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, "t", "in-a-transaction")).get(30, TimeUnit.SECONDS);
            p.commitTransaction();
        }
        waitUntil("the admin's listTransactions() to show " + txnId,
                () -> admin.listTransactions().all().get(20, TimeUnit.SECONDS).stream()
                        .map(TransactionListing::transactionalId).toList(),
                ids -> ids.contains(txnId));
        AclBinding groupRead = new AclBinding(new ResourcePattern(ResourceType.GROUP, group, PatternType.LITERAL),
                new AccessControlEntry("User:" + erin, "*", AclOperation.READ, AclPermissionType.ALLOW));
        try (Admin ea = Admin.create(erinConf)) {
            List<String> hers = ea.listTransactions().all().get(20, TimeUnit.SECONDS).stream()
                    .map(TransactionListing::transactionalId).toList();
            check(!hers.contains(txnId), erin + " without DESCRIBE on " + txnId + " lists it: " + hers);
            expect(TopicAuthorizationException.class, erin + "'s describeProducers(" + topic + "-0)",
                    () -> ea.describeProducers(List.of(new TopicPartition(topic, 0))).all()
                            .get(20, TimeUnit.SECONDS));
            Map<TopicPartition, OffsetAndMetadata> adminSees = admin.listConsumerGroupOffsets(group)
                    .partitionsToOffsetAndMetadata().get(20, TimeUnit.SECONDS);
            check(adminSees.keySet().stream().anyMatch(tp -> tp.topic().equals(topic)),
                    "the admin's listConsumerGroupOffsets(" + group + "): " + adminSees);
            admin.createAcls(List.of(groupRead)).all().get(20, TimeUnit.SECONDS);
            String seen = waitUntil(erin + "'s listConsumerGroupOffsets(" + group + ") to answer, without " + topic,
                    () -> {
                        try {
                            return ea.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()
                                    .get(20, TimeUnit.SECONDS).toString();
                        } catch (ExecutionException e) {
                            return e.getCause().toString(); // GroupAuthorizationException until the ACL is in
                        }
                    },
                    "{}"::equals);
            log(erin + "'s committed offsets of " + group + ": " + seen);
        } finally {
            admin.deleteAcls(List.of(groupRead.toFilter())).all().get(20, TimeUnit.SECONDS);
        }
        ok("filtered for " + erin + ": no " + txnId + " in listTransactions(), describeProducers(" + topic
                + "-0) TopicAuthorizationException, listConsumerGroupOffsets(" + group + ") without " + topic);
    }

    static void refused(String user, String topic) throws Exception {
        Properties wrong = scram(user, "not-the-password");
        Object r = listTopics(wrong);
        check(r instanceof SaslAuthenticationException, "wrong SCRAM password: listTopics gave " + r);
        Throwable e = produceOnce(wrong, topic, "never");
        check(e instanceof SaslAuthenticationException, "wrong SCRAM password: produce ended with " + e);
        Properties wrongPlain = sasl(bootstrap, "SASL_PLAINTEXT", "PLAIN", "admin", "not-the-password");
        r = listTopics(wrongPlain);
        check(r instanceof SaslAuthenticationException, "wrong PLAIN password: listTopics gave " + r);
        Properties unknown = scram("nobody-" + user, "whatever");
        r = listTopics(unknown);
        check(r instanceof SaslAuthenticationException, "unknown SCRAM user: listTopics gave " + r);
        ok("wrong passwords (SCRAM-SHA-512 and PLAIN) and an unknown user get SaslAuthenticationException: "
                + ((Throwable) r).getMessage());
    }

    static void saslSsl(String sslBootstrap, String ca, String user, String password, String topic) throws Exception {
        Properties tls = sasl(sslBootstrap, "SASL_SSL", "SCRAM-SHA-512", user, password);
        tls.put("ssl.truststore.type", "PEM");
        tls.put("ssl.truststore.location", ca);
        Properties tlsAdmin = sasl(sslBootstrap, "SASL_SSL", "PLAIN", "admin", adminPassword);
        tlsAdmin.putAll(Map.of("ssl.truststore.type", "PEM", "ssl.truststore.location", ca));
        Object names = listTopics(tlsAdmin);
        check(names instanceof Set && ((Set<?>) names).contains(topic), "the admin over SASL_SSL (PLAIN) lists " + names);
        List<String> sent = new ArrayList<>();
        try (KafkaProducer<String, String> p = producer(tls)) {
            for (int i = 0; i < 20; i++) {
                String v = "tls" + i;
                p.send(new ProducerRecord<>(topic, v, v)).get(30, TimeUnit.SECONDS);
                sent.add(v);
            }
        }
        try (KafkaConsumer<String, String> c = consumer(tls, null)) {
            read(c, topic, null, sent);
        }
        Properties wrong = sasl(sslBootstrap, "SASL_SSL", "SCRAM-SHA-512", user, "not-the-password");
        wrong.putAll(Map.of("ssl.truststore.type", "PEM", "ssl.truststore.location", ca));
        Object r = listTopics(wrong);
        check(r instanceof SaslAuthenticationException, "wrong password over SASL_SSL: listTopics gave " + r);
        ok(user + " (SCRAM-SHA-512) produced and read back 20 records over SASL_SSL; the admin (PLAIN) listed "
                + "topics; a wrong password got SaslAuthenticationException");
    }

    static void revoke(BufferedReader stdin, Properties dave, String user, String topic) throws Exception {
        try (KafkaProducer<String, String> p = producer(dave)) {
            p.send(new ProducerRecord<>(topic, "before", "before-revoke")).get(30, TimeUnit.SECONDS);
            handshake(stdin, "revoke");
            int[] acked = {0};
            TopicAuthorizationException e = waitFor(user + "'s sends to fail after kafka-acls --remove", () -> {
                try {
                    p.send(new ProducerRecord<>(topic, "after", "after-revoke-" + acked[0]))
                            .get(30, TimeUnit.SECONDS);
                    acked[0]++;
                    return Optional.empty();
                } catch (Exception x) {
                    Throwable c = cause(x);
                    if (c instanceof TopicAuthorizationException) {
                        return Optional.of((TopicAuthorizationException) c);
                    }
                    throw new AssertionError("after the revocation a send failed with " + c
                            + ", expected TopicAuthorizationException", c);
                }
            });
            log("sends acknowledged before the brokers applied the removal: " + acked[0] + "; then " + e);
        }
        try (KafkaConsumer<String, String> c = consumer(dave, null)) {
            read(c, topic, null, List.of("before-revoke"));
        }
        ok("after kafka-acls --remove, " + user + "'s running producer gets TopicAuthorizationException; "
                + "READ on " + topic + " still works");
    }
}
