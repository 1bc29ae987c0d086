// Kafka transactions (KIP-98, KIP-447) with the reference Java client (org.apache.kafka:kafka-clients
// 4.x) against a dmq cluster.
//
// usage: java -cp 'target/kafka-judges/lib/*' tests/interop/java/TxnCheck.java BOOTSTRAP PREFIX
//
// Creates PREFIX-txn, PREFIX-fence, PREFIX-txin and PREFIX-txout (3 partitions, RF 3), then, in order:
//
//   read_committed    a transactional producer commits 30 records, aborts 30, commits 30; a
//                     read_committed consumer reads exactly the 60 committed ones, in send order
//                     per partition, and none of the aborted ones
//   read_uncommitted  a read_uncommitted consumer reads all 90, in send order per partition
//   lso               with a transaction left open (its records acknowledged), the read_committed
//                     end offset of each partition is the offset of the open transaction's first
//                     record there (the last stable offset) and read_committed returns nothing of
//                     it; once it commits, read_committed returns it after the earlier commits
//   fencing           a second producer with the same transactional.id fences the first (its next
//                     send or commit fails with ProducerFencedException or
//                     InvalidProducerEpochException); the first's open transaction is aborted, the
//                     second's commit is what read_committed sees
//   offsets           consume-transform-produce: a read_committed group consumer's positions go
//                     with sendOffsetsToTransaction(offsets, consumer.groupMetadata()); a commit
//                     makes them the group's committed offsets (Admin.listConsumerGroupOffsets),
//                     an abort leaves the earlier ones, and rewinding to them and committing again
//                     yields every input exactly once in the output
//   admin             Admin.listTransactions() and describeTransactions() show a transactional id
//                     ONGOING with its partition while its transaction is open, then COMPLETE_ABORT
//                     after an abort; the other ids show their last outcome
//
// Prints one "OK java-txn <case>: ..." line per case and exits 0, or prints
// "FAIL java-txn <case>: ..." on stderr (with the stack trace) and exits 1.

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.Future;
import java.util.function.Predicate;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class TxnCheck {
    /** Partitions of every topic this check creates. */
    static final int PARTITIONS = 3;
    /** Bound of every wait for a condition (reads, offsets, states). */
    static final long WAIT_MS = 30_000;

    static String bootstrap;
    static String currentCase = "setup";

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static void ok(String line) {
        System.out.println("OK java-txn " + currentCase + ": " + line);
        System.out.flush();
    }

    static KafkaProducer<String, String> txProducer(String transactionalId) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("transactional.id", transactionalId);
        p.put("acks", "all");
        p.put("enable.idempotence", "true");
        p.put("linger.ms", "5");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        return new KafkaProducer<>(p);
    }

    static Properties consumerProps(String isolation) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("isolation.level", isolation);
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        return p;
    }

    /** Sends "tag-i" for i in [from, to) to partition i % PARTITIONS; waits for every ack. */
    static Map<Integer, List<Long>> send(KafkaProducer<String, String> p, String topic, String tag, int from, int to)
            throws Exception {
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        for (int i = from; i < to; i++) {
            sent.add(p.send(new ProducerRecord<>(topic, i % PARTITIONS, "k" + i, tag + "-" + i)));
        }
        Map<Integer, List<Long>> offsets = new TreeMap<>();
        for (Future<RecordMetadata> f : sent) {
            RecordMetadata m = f.get();
            offsets.computeIfAbsent(m.partition(), k -> new ArrayList<>()).add(m.offset());
        }
        return offsets;
    }

    /** What send(tag, from, to) puts on each partition, in order. */
    static Map<Integer, List<String>> expected(Map<Integer, List<String>> into, String tag, int from, int to) {
        for (int i = from; i < to; i++) {
            into.computeIfAbsent(i % PARTITIONS, k -> new ArrayList<>()).add(tag + "-" + i);
        }
        return into;
    }

    static List<TopicPartition> partitions(String topic) {
        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < PARTITIONS; p++) {
            tps.add(new TopicPartition(topic, p));
        }
        return tps;
    }

    /**
     * Reads every partition of `topic` from the beginning with `isolation` until `done` holds for
     * what was read and the consumer stands at the partition's end offset (the last stable offset
     * under read_committed, the high watermark otherwise); values per partition, in offset order.
     */
    static Map<Integer, List<String>> read(String topic, String isolation, Predicate<Map<Integer, List<String>>> done) {
        Map<Integer, List<String>> got = new TreeMap<>();
        for (int p = 0; p < PARTITIONS; p++) {
            got.put(p, new ArrayList<>());
        }
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(isolation))) {
            List<TopicPartition> tps = partitions(topic);
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.currentTimeMillis() + WAIT_MS;
            while (true) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    got.get(r.partition()).add(r.value());
                }
                if (done.test(got)) {
                    Map<TopicPartition, Long> end = c.endOffsets(tps);
                    boolean atEnd = true;
                    for (TopicPartition tp : tps) {
                        atEnd &= c.position(tp) >= end.get(tp);
                    }
                    if (atEnd) {
                        return got;
                    }
                }
                check(System.currentTimeMillis() < deadline,
                        isolation + " read of " + topic + " did not finish within " + WAIT_MS + " ms: " + got);
            }
        }
    }

    static int total(Map<Integer, List<String>> m) {
        return m.values().stream().mapToInt(List::size).sum();
    }

    static Predicate<Map<Integer, List<String>>> atLeast(Map<Integer, List<String>> want) {
        return got -> want.entrySet().stream()
                .allMatch(e -> got.getOrDefault(e.getKey(), List.of()).size() >= e.getValue().size());
    }

    /** Whether `e` or one of its causes says the producer was fenced. */
    static boolean fenced(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof ProducerFencedException || t instanceof InvalidProducerEpochException) {
                return true;
            }
        }
        return false;
    }

    static void createTopics(Admin admin, String... names) throws Exception {
        List<NewTopic> topics = new ArrayList<>();
        for (String n : names) {
            topics.add(new NewTopic(n, PARTITIONS, (short) 3));
        }
        admin.createTopics(topics).all().get();
        long deadline = System.currentTimeMillis() + WAIT_MS;
        while (true) {
            Map<String, TopicDescription> d = admin.describeTopics(List.of(names)).allTopicNames().get();
            boolean led = d.values().stream().allMatch(t -> t.partitions().size() == PARTITIONS
                    && t.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty()));
            if (led) {
                return;
            }
            check(System.currentTimeMillis() < deadline, "topics without leaders: " + d);
            Thread.sleep(100);
        }
    }

    public static void main(String[] args) {
        if (args.length != 2) {
            System.err.println("usage: TxnCheck BOOTSTRAP PREFIX");
            System.exit(2);
        }
        bootstrap = args[0];
        try {
            run(args[1]);
        } catch (Throwable e) {
            System.err.println("FAIL java-txn " + currentCase + ": " + e);
            e.printStackTrace();
            System.exit(1);
        }
        System.exit(0);
    }

    static void run(String prefix) throws Exception {
        String topic = prefix + "-txn";
        String fenceTopic = prefix + "-fence";
        String in = prefix + "-txin";
        String out = prefix + "-txout";
        String mainId = prefix + "-tx1";
        String fenceId = prefix + "-fence";
        String offsetsId = prefix + "-offsets";
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(ap)) {
            createTopics(admin, topic, fenceTopic, in, out);
            try (KafkaProducer<String, String> p = txProducer(mainId)) {
                p.initTransactions();
                commitAbortAndIsolation(p, topic);
                openTransactionAndLso(p, topic);
            }
            fencing(fenceId, fenceTopic);
            offsets(admin, prefix + "-txgroup", offsetsId, in, out);
            adminListAndDescribe(admin, mainId, topic, Map.of(fenceId, TransactionState.COMPLETE_COMMIT,
                    offsetsId, TransactionState.COMPLETE_COMMIT));
        }
    }

    /** Commit 30, abort 30, commit 30: read_committed sees the 60, read_uncommitted all 90. */
    static void commitAbortAndIsolation(KafkaProducer<String, String> p, String topic) throws Exception {
        currentCase = "read_committed";
        p.beginTransaction();
        send(p, topic, "c1", 0, 30);
        p.commitTransaction();
        p.beginTransaction();
        send(p, topic, "a", 0, 30);
        p.abortTransaction();
        p.beginTransaction();
        send(p, topic, "c2", 0, 30);
        p.commitTransaction();

        Map<Integer, List<String>> committed = expected(expected(new TreeMap<>(), "c1", 0, 30), "c2", 0, 30);
        Map<Integer, List<String>> rc = read(topic, "read_committed", atLeast(committed));
        check(rc.equals(committed), "read_committed read, per partition:\n  " + rc + "\nexpected:\n  " + committed);
        ok(total(rc) + " committed records in send order per partition, none of the 30 aborted");

        currentCase = "read_uncommitted";
        Map<Integer, List<String>> all = expected(expected(expected(new TreeMap<>(), "c1", 0, 30), "a", 0, 30), "c2", 0, 30);
        Map<Integer, List<String>> ru = read(topic, "read_uncommitted", atLeast(all));
        check(ru.equals(all), "read_uncommitted read, per partition:\n  " + ru + "\nexpected:\n  " + all);
        ok(total(ru) + " records (60 committed, 30 aborted) in send order per partition");
    }

    /** An open transaction holds the last stable offset at its first record until it commits. */
    static void openTransactionAndLso(KafkaProducer<String, String> p, String topic) throws Exception {
        currentCase = "lso";
        p.beginTransaction();
        Map<Integer, List<Long>> openAt = send(p, topic, "o", 0, 12);
        Map<Integer, List<String>> before = expected(expected(new TreeMap<>(), "c1", 0, 30), "c2", 0, 30);
        List<TopicPartition> tps = partitions(topic);
        try (KafkaConsumer<String, String> rc = new KafkaConsumer<>(consumerProps("read_committed"));
             KafkaConsumer<String, String> ru = new KafkaConsumer<>(consumerProps("read_uncommitted"))) {
            Map<TopicPartition, Long> lso = rc.endOffsets(tps);
            Map<TopicPartition, Long> hw = ru.endOffsets(tps);
            for (TopicPartition tp : tps) {
                long first = openAt.get(tp.partition()).get(0);
                long last = openAt.get(tp.partition()).get(openAt.get(tp.partition()).size() - 1);
                check(lso.get(tp) == first, tp + ": read_committed end offset " + lso.get(tp)
                        + ", not the open transaction's first offset " + first + " (high watermark " + hw.get(tp) + ")");
                check(hw.get(tp) > last, tp + ": high watermark " + hw.get(tp) + " not past the acknowledged offset " + last);
            }
        }
        Map<Integer, List<String>> rcWhileOpen = read(topic, "read_committed", atLeast(before));
        check(rcWhileOpen.equals(before), "read_committed with a transaction open:\n  " + rcWhileOpen
                + "\nexpected only the earlier commits:\n  " + before);
        p.commitTransaction();
        Map<Integer, List<String>> after = expected(before, "o", 0, 12);
        Map<Integer, List<String>> rcAfter = read(topic, "read_committed", atLeast(after));
        check(rcAfter.equals(after), "read_committed after the commit:\n  " + rcAfter + "\nexpected:\n  " + after);
        ok("read_committed end offsets stop at the open transaction's first records " + openAt
                + "; its 12 records appear only after the commit");
    }

    /** A second producer with the same transactional.id fences the first. */
    static void fencing(String id, String topic) throws Exception {
        currentCase = "fencing";
        try (KafkaProducer<String, String> first = txProducer(id)) {
            first.initTransactions();
            first.beginTransaction();
            send(first, topic, "f1", 0, 9);
            try (KafkaProducer<String, String> second = txProducer(id)) {
                // Aborts the first's open transaction and bumps the epoch.
                second.initTransactions();
                Throwable seen = null;
                String where = null;
                try {
                    where = "send";
                    first.send(new ProducerRecord<>(topic, 0, "late", "f1-late")).get();
                    where = "commitTransaction";
                    first.commitTransaction();
                } catch (Exception e) {
                    seen = e;
                }
                check(seen != null, "the fenced producer's send and commit both succeeded");
                check(fenced(seen), "the fenced producer's " + where + " failed with " + seen
                        + ", not ProducerFencedException/InvalidProducerEpochException");
                String how = seen.getClass().getSimpleName()
                        + (seen.getCause() != null ? " (" + seen.getCause().getClass().getSimpleName() + ")" : "");

                second.beginTransaction();
                send(second, topic, "f2", 0, 9);
                second.commitTransaction();
                Map<Integer, List<String>> want = expected(new TreeMap<>(), "f2", 0, 9);
                Map<Integer, List<String>> rc = read(topic, "read_committed", atLeast(want));
                check(rc.equals(want), "read_committed after fencing:\n  " + rc + "\nexpected only the second's:\n  " + want);
                Map<Integer, List<String>> ru = read(topic, "read_uncommitted", atLeast(want));
                long firsts = ru.values().stream().flatMap(List::stream).filter(v -> v.startsWith("f1-")).count();
                check(firsts >= 9, "read_uncommitted has " + firsts + " of the fenced producer's records: " + ru);
                ok("the old producer's " + where + " failed with " + how
                        + "; its open transaction was aborted, the new one's 9 records committed");
            }
        }
    }

    /** Waits until the group's committed offsets on `topic` are `want` (partition -> offset). */
    static Map<Integer, Long> waitGroupOffsets(Admin admin, String group, String topic, Map<Integer, Long> want)
            throws Exception {
        long deadline = System.currentTimeMillis() + WAIT_MS;
        while (true) {
            Map<Integer, Long> now = groupOffsets(admin, group, topic);
            if (now.equals(want)) {
                return now;
            }
            check(System.currentTimeMillis() < deadline, "group " + group + " committed " + now + ", not " + want);
            Thread.sleep(100);
        }
    }

    static Map<Integer, Long> groupOffsets(Admin admin, String group, String topic) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> c = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        Map<Integer, Long> out = new TreeMap<>();
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : c.entrySet()) {
            if (e.getKey().topic().equals(topic) && e.getValue() != null) {
                out.put(e.getKey().partition(), e.getValue().offset());
            }
        }
        return out;
    }

    /** Polls `c` until it has `n` records; the values, in the order read. */
    static List<ConsumerRecord<String, String>> pollN(KafkaConsumer<String, String> c, int n) {
        List<ConsumerRecord<String, String>> got = new ArrayList<>();
        long deadline = System.currentTimeMillis() + WAIT_MS;
        while (got.size() < n) {
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                got.add(r);
            }
            check(System.currentTimeMillis() < deadline, "group consumer read " + got.size() + " of " + n);
        }
        check(got.size() == n, "group consumer read " + got.size() + " records, expected " + n);
        return got;
    }

    /** Transforms `records` into `out` and sends the consumer's positions with the transaction. */
    static Map<Integer, Long> transform(KafkaProducer<String, String> p, KafkaConsumer<String, String> c,
                                        List<ConsumerRecord<String, String>> records, String out) throws Exception {
        p.beginTransaction();
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        for (ConsumerRecord<String, String> r : records) {
            sent.add(p.send(new ProducerRecord<>(out, r.partition(), r.key(), "t-" + r.value())));
        }
        for (Future<RecordMetadata> f : sent) {
            f.get();
        }
        Map<TopicPartition, OffsetAndMetadata> positions = new HashMap<>();
        Map<Integer, Long> plain = new TreeMap<>();
        for (TopicPartition tp : c.assignment()) {
            long pos = c.position(tp);
            positions.put(tp, new OffsetAndMetadata(pos));
            plain.put(tp.partition(), pos);
        }
        p.sendOffsetsToTransaction(positions, c.groupMetadata());
        return plain;
    }

    static void offsets(Admin admin, String group, String id, String in, String out) throws Exception {
        currentCase = "offsets";
        Properties pp = new Properties();
        pp.put("bootstrap.servers", bootstrap);
        pp.put("acks", "all");
        pp.put("enable.idempotence", "true");
        pp.put("key.serializer", StringSerializer.class.getName());
        pp.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> plain = new KafkaProducer<>(pp)) {
            send(plain, in, "i", 0, 30);
        }
        Properties cp = consumerProps("read_committed");
        cp.put("group.id", group);
        try (KafkaProducer<String, String> p = txProducer(id);
             KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
            p.initTransactions();
            c.subscribe(List.of(in));

            // Round 1: 30 inputs, committed with their offsets.
            List<ConsumerRecord<String, String>> first = pollN(c, 30);
            Map<Integer, Long> committed1 = transform(p, c, first, out);
            check(committed1.equals(Map.of(0, 10L, 1, 10L, 2, 10L)), "positions after 30 inputs: " + committed1);
            check(groupOffsets(admin, group, in).isEmpty(),
                    "offsets sent in an open transaction are already committed: " + groupOffsets(admin, group, in));
            p.commitTransaction();
            waitGroupOffsets(admin, group, in, committed1);

            // Round 2: 15 more inputs, aborted: the group's offsets stay where round 1 left them.
            try (KafkaProducer<String, String> plain = new KafkaProducer<>(pp)) {
                send(plain, in, "i", 30, 45);
            }
            List<ConsumerRecord<String, String>> second = pollN(c, 15);
            Map<Integer, Long> positions2 = transform(p, c, second, out);
            check(positions2.equals(Map.of(0, 15L, 1, 15L, 2, 15L)), "positions after 45 inputs: " + positions2);
            p.abortTransaction();
            Map<Integer, Long> afterAbort = groupOffsets(admin, group, in);
            check(afterAbort.equals(committed1), "after the abort the group committed " + afterAbort
                    + ", not round 1's " + committed1);

            // Round 3: rewind to the committed offsets (the standard EOS loop), redo, commit.
            for (TopicPartition tp : c.assignment()) {
                c.seek(tp, committed1.get(tp.partition()));
            }
            List<ConsumerRecord<String, String>> again = pollN(c, 15);
            check(again.stream().map(ConsumerRecord::value).collect(Collectors.toSet())
                            .equals(second.stream().map(ConsumerRecord::value).collect(Collectors.toSet())),
                    "after the rewind the consumer read " + again + ", not round 2's inputs");
            Map<Integer, Long> committed3 = transform(p, c, again, out);
            p.commitTransaction();
            waitGroupOffsets(admin, group, in, committed3);
            check(committed3.equals(positions2), "round 3 committed " + committed3 + ", not " + positions2);
        }

        // The output holds every input exactly once, read_committed; the aborted round is there
        // only for read_uncommitted.
        Map<Integer, List<String>> want = expected(expected(new TreeMap<>(), "t-i", 0, 30), "t-i", 30, 45);
        Map<Integer, List<String>> rc = read(out, "read_committed", atLeast(want));
        check(rc.equals(want), "read_committed output:\n  " + rc + "\nexpected:\n  " + want);
        Map<Integer, List<String>> ru = read(out, "read_uncommitted", got -> total(got) >= 60);
        check(total(ru) == 60, "read_uncommitted output has " + total(ru) + " records, expected 60 (15 aborted)");
        ok("group offsets " + want.keySet().stream().map(p -> p + "=15").collect(Collectors.joining(","))
                + " committed with the transaction (10 each after round 1, unchanged by the abort); "
                + "45 inputs read_committed exactly once in the output");
    }

    static TransactionListing listed(Admin admin, String id) throws Exception {
        Collection<TransactionListing> all = admin.listTransactions().all().get();
        return all.stream().filter(t -> t.transactionalId().equals(id)).findFirst().orElse(null);
    }

    /** Waits until `id` is listed and described in state `want`; the description. */
    static TransactionDescription waitState(Admin admin, String id, TransactionState want) throws Exception {
        long deadline = System.currentTimeMillis() + WAIT_MS;
        while (true) {
            TransactionListing l = listed(admin, id);
            TransactionDescription d = admin.describeTransactions(List.of(id)).description(id).get();
            if (l != null && l.state() == want && d.state() == want) {
                check(l.producerId() == d.producerId(), "listed producer id " + l + " differs from described " + d);
                return d;
            }
            check(System.currentTimeMillis() < deadline, id + ": listed " + l + ", described " + d + "; expected " + want);
            Thread.sleep(100);
        }
    }

    static void adminListAndDescribe(Admin admin, String id, String topic, Map<String, TransactionState> others)
            throws Exception {
        currentCase = "admin";
        TransactionDescription done = waitState(admin, id, TransactionState.COMPLETE_COMMIT);
        try (KafkaProducer<String, String> p = txProducer(id)) {
            p.initTransactions();
            p.beginTransaction();
            send(p, topic, "x", 0, 1);
            TransactionDescription open = waitState(admin, id, TransactionState.ONGOING);
            check(open.topicPartitions().equals(Set.of(new TopicPartition(topic, 0))),
                    "ongoing transaction's partitions: " + open.topicPartitions());
            check(open.producerId() == done.producerId(), "producer id changed across re-init: " + done + " -> " + open);
            check(open.producerEpoch() > done.producerEpoch(), "re-init did not bump the epoch: " + done + " -> " + open);
            check(open.coordinatorId() >= 0, "no coordinator: " + open);
            check(open.transactionStartTimeMs().isPresent(), "ongoing transaction without a start time: " + open);
            p.abortTransaction();
            TransactionDescription aborted = waitState(admin, id, TransactionState.COMPLETE_ABORT);
            StringBuilder rest = new StringBuilder();
            for (Map.Entry<String, TransactionState> e : new TreeMap<>(others).entrySet()) {
                waitState(admin, e.getKey(), e.getValue());
                rest.append(", ").append(e.getKey()).append(' ').append(e.getValue());
            }
            ok(id + " listed and described ONGOING on " + open.topicPartitions() + " (producer "
                    + open.producerId() + " epoch " + open.producerEpoch() + ", coordinator " + open.coordinatorId()
                    + "), then " + aborted.state() + rest);
        }
    }
}
