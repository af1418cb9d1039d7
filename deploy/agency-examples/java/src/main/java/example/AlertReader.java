package example;

import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * Reads an agency's own topic, agency.CODE.alerts, as that agency, decodes every record with Apache Avro's
 * BinaryMessageDecoder and prints it as one line of JSON; stops when it has read everything committed so far.
 *
 * <pre>java -cp 'alert-reader-1.jar:lib/*' example.AlertReader BOOTSTRAP CODE PASSWORD_FILE CA_PEM SCHEMA_DIR</pre>
 */
public final class AlertReader {
  public static void main(String[] args) throws Exception {
    String bootstrap = args[0];
    String code = args[1];
    String password = Files.readString(Path.of(args[2])).strip();
    Path ca = Path.of(args[3]);
    Path schemas = Path.of(args[4]);

    // The reader schema is the current rctc.AlertShared. Records name their writer schema by its
    // CRC-64-AVRO fingerprint: the decoder knows the current one, and every earlier one added here.
    BinaryMessageDecoder<GenericRecord> decoder =
        new BinaryMessageDecoder<>(GenericData.get(), parse(schemas, schemas.resolve("rctc.AlertShared.avsc")));
    try (DirectoryStream<Path> older = Files.newDirectoryStream(schemas.resolve("history"), "rctc.AlertShared.*")) {
      for (Path file : older) {
        decoder.addSchema(parse(schemas, file));
      }
    }

    Properties config = new Properties();
    config.put("bootstrap.servers", bootstrap);
    config.put("security.protocol", "SASL_SSL");
    config.put("sasl.mechanism", "SCRAM-SHA-512");
    config.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required"
        + " username=\"agency-" + code + "\" password=\"" + password + "\";");
    config.put("ssl.truststore.type", "PEM");
    config.put("ssl.truststore.location", ca.toString());
    config.put("group.id", "agency-" + code + ".java-reader"); // groups must start with agency-CODE.
    config.put("isolation.level", "read_committed"); // the router writes in transactions
    config.put("auto.offset.reset", "earliest");
    config.put("enable.auto.commit", "false");

    String topic = "agency." + code + ".alerts";
    int read = 0;
    Instant deadline = Instant.now().plusSeconds(60);
    try (KafkaConsumer<String, byte[]> consumer =
        new KafkaConsumer<>(config, new StringDeserializer(), new ByteArrayDeserializer())) {
      consumer.subscribe(List.of(topic));
      while (true) {
        for (ConsumerRecord<String, byte[]> record : consumer.poll(Duration.ofMillis(500))) {
          GenericRecord copy = decoder.decode(record.value()); // MissingSchemaException: unknown writer
          System.out.println(copy);
          read++;
        }
        consumer.commitSync();
        Set<TopicPartition> assigned = consumer.assignment();
        if (!assigned.isEmpty() && caughtUp(consumer, assigned)) {
          break;
        }
        if (Instant.now().isAfter(deadline)) {
          throw new IllegalStateException("not caught up with " + topic + " within 60 s");
        }
      }
    }
    System.err.println("read " + read + " records from " + topic);
  }

  /** Whether every partition has been read up to its end (the last committed record, in read_committed). */
  static boolean caughtUp(KafkaConsumer<?, ?> consumer, Set<TopicPartition> partitions) {
    Map<TopicPartition, Long> ends = consumer.endOffsets(partitions);
    return partitions.stream().allMatch(p -> consumer.position(p) >= ends.get(p));
  }

  /** One .avsc file, with the shared types it refers to (rctc.Alert.avsc defines them). */
  static Schema parse(Path schemas, Path file) throws Exception {
    Schema.Parser parser = new Schema.Parser();
    parser.parse(schemas.resolve("rctc.Alert.avsc").toFile());
    return parser.parse(file.toFile());
  }
}
