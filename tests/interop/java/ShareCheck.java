// Share groups (KIP-932) with the reference Java client's KafkaShareConsumer (kafka-clients
// 4.1): the group starts at the earliest offset (a group config set with the Admin client's
// incrementalAlterConfigs on a GROUP resource), two members share one partition, a RELEASEd
// record comes back with delivery count 2, a REJECTed one never comes back, every other record
// is accepted exactly once, and commitSync reports every acknowledgement committed.
//
// usage: java -cp 'target/kafka-judges/lib/*' tests/interop/java/ShareCheck.java BOOTSTRAP TOPIC GROUP
// Prints "OK java-share <case>: ..." lines; exits 1 with a FAIL line otherwise.

import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.config.ConfigResource;

public class ShareCheck {
    static final int RECORDS = 100;

    static void fail(String msg) {
        System.out.println("FAIL " + msg);
        System.exit(1);
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[2];
        Properties base = new Properties();
        base.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(base)) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 3))).all().get();
            ConfigResource res = new ConfigResource(ConfigResource.Type.GROUP, group);
            admin.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(
                    new ConfigEntry("share.auto.offset.reset", "earliest"), AlterConfigOp.OpType.SET))))
                .all().get();
            String reset = admin.describeConfigs(List.of(res)).all().get().get(res)
                .get("share.auto.offset.reset").value();
            if (!"earliest".equals(reset)) fail("share.auto.offset.reset reads " + reset);
            System.out.println("OK java-share config: share.auto.offset.reset=earliest on group " + group);
        }
        Properties pp = (Properties) base.clone();
        pp.put("key.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        pp.put("value.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
            for (int i = 0; i < RECORDS; i++) p.send(new ProducerRecord<>(topic, "j" + i)).get();
        }

        List<KafkaShareConsumer<String, String>> members = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            Properties cp = (Properties) base.clone();
            cp.put("group.id", group);
            cp.put("client.id", "java-share-" + i);
            cp.put("share.acknowledgement.mode", "explicit");
            cp.put("max.poll.records", "10");
            cp.put("key.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
            cp.put("value.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
            KafkaShareConsumer<String, String> c = new KafkaShareConsumer<>(cp);
            c.subscribe(List.of(topic));
            members.add(c);
        }
        Map<String, Integer> accepted = new HashMap<>();
        Map<String, List<Integer>> deliveries = new HashMap<>();
        int[] perMember = new int[2];
        long deadline = System.currentTimeMillis() + 90_000;
        while (accepted.size() < RECORDS - 1) {
            if (System.currentTimeMillis() > deadline)
                fail("accepted " + accepted.size() + " of " + (RECORDS - 1));
            for (int i = 0; i < members.size(); i++) {
                KafkaShareConsumer<String, String> c = members.get(i);
                ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(300));
                for (ConsumerRecord<String, String> r : rs) {
                    int n = r.deliveryCount().map(Short::intValue).orElse(-1);
                    deliveries.computeIfAbsent(r.value(), k -> new ArrayList<>()).add(n);
                    perMember[i]++;
                    if (r.value().equals("j7") && n == 1) {
                        c.acknowledge(r, AcknowledgeType.RELEASE);
                    } else if (r.value().equals("j13")) {
                        c.acknowledge(r, AcknowledgeType.REJECT);
                    } else {
                        if (accepted.put(r.value(), i) != null) fail(r.value() + " accepted twice");
                        c.acknowledge(r, AcknowledgeType.ACCEPT);
                    }
                }
                if (!rs.isEmpty()) {
                    c.commitSync().forEach((tp, err) -> {
                        if (err.isPresent()) fail("acknowledgement on " + tp + " failed: " + err.get());
                    });
                }
            }
        }
        for (int round = 0; round < 3; round++) {
            for (KafkaShareConsumer<String, String> c : members) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(300))) {
                    fail(r.value() + " delivered again, deliveries " + deliveries.get(r.value()));
                }
            }
        }
        if (!List.of(1, 2).equals(deliveries.get("j7"))) fail("j7 deliveries " + deliveries.get("j7"));
        if (!List.of(1).equals(deliveries.get("j13"))) fail("j13 deliveries " + deliveries.get("j13"));
        if (perMember[0] == 0 || perMember[1] == 0)
            fail("a member got nothing: " + Arrays.toString(perMember));
        System.out.println("OK java-share consume: 2 members received " + Arrays.toString(perMember)
                + "; every record accepted once; j7 released and back with delivery count 2; j13 rejected once");
        for (KafkaShareConsumer<String, String> c : members) c.close();
    }
}
