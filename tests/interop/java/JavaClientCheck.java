// The reference Java client (org.apache.kafka:kafka-clients 4.x) against a dmq cluster.
//
// usage: java -cp 'target/kafka-judges/lib/*' tests/interop/java/JavaClientCheck.java BOOTSTRAP PREFIX
//
// AdminClient: create a topic with a config, describe it, change and describe configs (a bad
// value must fail with InvalidConfigurationException), grow it; an idempotent acks=all producer
// with every compression codec; a group consumer with manual commits that reads every record
// exactly once; committed offsets through the admin client; a consumer starting at "latest"
// that reads only what comes after it; list offsets, delete records, delete the group and the
// topic. Prints one "OK java ..." line and exits 0, or throws (exit 1) naming what failed.

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class JavaClientCheck {
    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static Properties consumerProps(String bootstrap, String group, String reset) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("auto.offset.reset", reset);
        p.put("enable.auto.commit", "false");
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        return p;
    }

    static int produce(String bootstrap, String topic, String codec, int from, int count) throws Exception {
        Properties pp = new Properties();
        pp.put("bootstrap.servers", bootstrap);
        pp.put("acks", "all");
        pp.put("enable.idempotence", "true");
        pp.put("compression.type", codec);
        pp.put("linger.ms", "5");
        pp.put("key.serializer", StringSerializer.class.getName());
        pp.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = from; i < from + count; i++) {
                sent.add(p.send(new ProducerRecord<>(topic, "k" + i, codec + "-" + i)));
            }
            for (Future<RecordMetadata> f : sent) {
                f.get();
            }
        }
        return count;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String prefix = args[1];
        String topic = prefix + "-java";
        String group = prefix + "-group";
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(topic, 3, (short) 3)
                    .configs(Map.of("retention.ms", "3600000")))).all().get();
            TopicDescription desc = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            check(desc.partitions().size() == 3, "3 partitions: " + desc);
            check(desc.partitions().get(0).replicas().size() == 3, "3 replicas: " + desc);

            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            admin.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(
                    new ConfigEntry("max.message.bytes", "500000"), AlterConfigOp.OpType.SET)))).all().get();
            Config cfg = admin.describeConfigs(List.of(res)).all().get().get(res);
            check("500000".equals(cfg.get("max.message.bytes").value()), "max.message.bytes: " + cfg);
            check(cfg.get("max.message.bytes").source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    "source of max.message.bytes: " + cfg.get("max.message.bytes"));
            check("3600000".equals(cfg.get("retention.ms").value()), "retention.ms: " + cfg);
            check(cfg.get("segment.bytes").source() == ConfigEntry.ConfigSource.DEFAULT_CONFIG,
                    "segment.bytes is a default: " + cfg.get("segment.bytes"));
            try {
                admin.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(
                        new ConfigEntry("retention.ms", "-5"), AlterConfigOp.OpType.SET)))).all().get();
                check(false, "retention.ms=-5 was accepted");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof InvalidConfigurationException, "INVALID_CONFIG: " + e.getCause());
            }
            admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(4))).all().get();

            int n = 0;
            for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
                n += produce(bootstrap, topic, codec, n, 400);
            }

            Set<String> seen = new HashSet<>();
            int duplicates = 0;
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, group, "earliest"))) {
                c.subscribe(List.of(topic));
                long deadline = System.currentTimeMillis() + 60_000;
                while (seen.size() < n && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
                        if (!seen.add(r.value())) {
                            duplicates++;
                        }
                    }
                    c.commitSync();
                }
            }
            check(seen.size() == n && duplicates == 0,
                    "group read " + seen.size() + " of " + n + " (" + duplicates + " duplicates)");
            Map<TopicPartition, OffsetAndMetadata> committed =
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
            long total = committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
            check(total == n, "committed offsets add up to " + total + ", not " + n);

            // A consumer that starts at "latest" reads only what is produced after it started.
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, group + "-latest", "latest"))) {
                c.subscribe(List.of(topic));
                long deadline = System.currentTimeMillis() + 30_000;
                while (c.assignment().size() < 4 && System.currentTimeMillis() < deadline) {
                    c.poll(Duration.ofMillis(200));
                }
                check(c.assignment().size() == 4, "latest consumer assigned " + c.assignment());
                for (TopicPartition tp : c.assignment()) {
                    c.position(tp);
                }
                int extra = produce(bootstrap, topic, "none", n, 20);
                List<String> late = new ArrayList<>();
                deadline = System.currentTimeMillis() + 30_000;
                while (late.size() < extra && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(300))) {
                        late.add(r.value());
                    }
                }
                check(late.size() == extra, "latest consumer read " + late.size() + " of " + extra + ": " + late);
                for (String v : late) {
                    int i = Integer.parseInt(v.substring(v.indexOf('-') + 1));
                    check(i >= n, "latest consumer read an old record " + v);
                }
                n += extra;
            }

            TopicPartition tp0 = new TopicPartition(topic, 0);
            long latest = admin.listOffsets(Map.of(tp0, OffsetSpec.latest())).all().get().get(tp0).offset();
            long earliest = admin.listOffsets(Map.of(tp0, OffsetSpec.earliest())).all().get().get(tp0).offset();
            check(earliest == 0 && latest > 0, "partition 0 spans " + earliest + ".." + latest);
            Map<TopicPartition, RecordsToDelete> purge = new HashMap<>();
            purge.put(tp0, RecordsToDelete.beforeOffset(latest));
            long low = admin.deleteRecords(purge).lowWatermarks().get(tp0).get().lowWatermark();
            check(low == latest, "low watermark " + low + ", not " + latest);
            earliest = admin.listOffsets(Map.of(tp0, OffsetSpec.earliest())).all().get().get(tp0).offset();
            check(earliest == latest, "earliest after delete-records: " + earliest);

            admin.deleteConsumerGroups(List.of(group, group + "-latest")).all().get();
            admin.deleteTopics(List.of(topic)).all().get();
            System.out.println("OK java: " + n + " records, every codec, idempotent acks=all, group commits, "
                    + "latest consumer, configs, partitions, list offsets, delete records, delete topic");
        }
    }
}
