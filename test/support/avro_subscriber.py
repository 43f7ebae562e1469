#!/usr/bin/env python3
"""A subscriber in another language (issue 18): reads a topic published by Tributary using only
what is on the wire, and prints one JSON object per message (offset order per partition).

Values use Avro single-object encoding (Avro spec): 0xC3 0x01, the writer schema's 8-byte
little-endian CRC-64-AVRO fingerprint, then the Avro binary payload. Writer schemas are in the
compacted topic `<topic>.schemas`, keyed by the fingerprint in hex, the value the schema JSON.
Headers say where a row came from (`tributary-source`, `tributary-row`).

Needs Debian's python3-confluent-kafka (librdkafka) and python3-avro.
usage: avro_subscriber.py BROKERS TOPIC
"""
import io
import json
import sys

import avro.io
import avro.schema
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

MAGIC = b"\xc3\x01"
EMPTY = 0xC15D213AA4D7A795
TABLE = []
for i in range(256):
    fp = i
    for _ in range(8):
        fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
    TABLE.append(fp)


def crc64_avro(data):
    """The Avro spec's fingerprint of a schema's Parsing Canonical Form, as 8 little-endian bytes."""
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ TABLE[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


def read_all(consumer, topic):
    """Every message of every partition of `topic`, up to the end offsets seen at the start."""
    metadata = consumer.list_topics(topic, timeout=30)
    if metadata.topics[topic].error is not None:
        raise SystemExit(f"{topic}: {metadata.topics[topic].error}")
    partitions = sorted(metadata.topics[topic].partitions)
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
    remaining = {p for p, end in ends.items() if end > 0}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages = []
    while remaining:
        message = consumer.poll(30)
        if message is None:
            raise SystemExit(f"{topic}: no message for 30 s with partitions {sorted(remaining)} unfinished")
        if message.error():
            raise SystemExit(f"{topic}: {message.error()}")
        messages.append(message)
        if message.offset() + 1 >= ends[message.partition()]:
            remaining.discard(message.partition())
    consumer.unassign()
    return messages


def main():
    brokers, topic = sys.argv[1], sys.argv[2]
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": "avro-subscriber",
            "enable.auto.commit": False,
            "api.version.request": True,
        }
    )
    try:
        schemas = {}
        for m in read_all(consumer, f"{topic}.schemas"):
            schema = avro.schema.parse(m.value().decode())
            # The key must be the spec's fingerprint of the schema: computed here, not trusted.
            if crc64_avro(schema.canonical_form.encode()).hex() != m.key().decode():
                raise SystemExit(f"{topic}.schemas: key {m.key().decode()} is not the schema's CRC-64-AVRO")
            schemas[m.key().decode()] = schema
        for message in read_all(consumer, topic):
            value = message.value()
            if value[:2] != MAGIC:
                raise SystemExit(f"offset {message.offset()}: not Avro single-object encoding")
            fingerprint = value[2:10].hex()
            schema = schemas.get(fingerprint)
            if schema is None:
                raise SystemExit(f"offset {message.offset()}: no schema {fingerprint} in {topic}.schemas")
            row = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(value[10:])))
            headers = {k: v.decode() for k, v in (message.headers() or [])}
            print(json.dumps({"partition": message.partition(), "offset": message.offset(),
                              "key": message.key().decode(), "headers": headers, "row": row}))
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
