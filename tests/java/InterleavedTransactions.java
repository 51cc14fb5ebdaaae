// Two transactional producers of Kafka's own Java client write to partition 0 of a topic,
// their transactions interleaved: one aborts while the other commits, in many batches each
// (lz4 and zstd). Events n < 1000 are committed (160 of them, in offset order), n >= 1000
// aborted (310). Run: java -cp '<kafka jars>/*' InterleavedTransactions.java <bootstrap> <topic>
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

public class InterleavedTransactions {
    static KafkaProducer<String, String> open(String bootstrap, String id, String codec) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("transactional.id", id);
        p.put("compression.type", codec);
        p.put("batch.size", "2048");
        p.put("linger.ms", "0");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        KafkaProducer<String, String> producer = new KafkaProducer<>(p);
        producer.initTransactions();
        return producer;
    }

    static void send(KafkaProducer<String, String> producer, String topic, int from, int to) {
        for (int n = from; n < to; n++) {
            producer.send(new ProducerRecord<>(topic, 0, null, "{\"id\":\"e" + n
                + "\",\"type\":\"t\",\"source\":\"s\",\"timestamp\":\"2025-01-06T12:00:00Z\","
                + "\"data\":{\"n\":" + n + "}}"));
        }
        producer.flush();
    }

    public static void main(String[] args) {
        String bootstrap = args[0], topic = args[1];
        KafkaProducer<String, String> a = open(bootstrap, topic + "-a", "lz4");
        KafkaProducer<String, String> b = open(bootstrap, topic + "-b", "zstd");
        a.beginTransaction();
        b.beginTransaction();
        send(a, topic, 1000, 1100);
        send(b, topic, 0, 50);
        send(a, topic, 1100, 1200);
        send(b, topic, 50, 100);
        b.commitTransaction();
        a.abortTransaction();
        a.beginTransaction();
        send(a, topic, 100, 150);
        b.beginTransaction();
        send(b, topic, 1200, 1300);
        a.commitTransaction();
        send(b, topic, 1300, 1310);
        b.abortTransaction();
        a.beginTransaction();
        send(a, topic, 150, 160);
        a.commitTransaction();
        a.close();
        b.close();
    }
}
