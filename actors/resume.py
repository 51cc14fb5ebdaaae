"""Event ids that carry Kafka positions, so any instance can resume any stream exactly.

An id encodes the stream's *frontier*: for every partition of the configured topics, the
offset of the next record the stream has not yet been shown. Everything before it was either
delivered or filtered out. Resuming means reading each partition from its frontier.

Wire format (URL-safe base64, no padding) of:
    version (1 byte) | topics check (2 bytes) | per topic, in KAFKA_TOPICS order:
    varint(number of partitions) then, per partition, zigzag varint(offset - previous offset)
The topics check is a CRC of the topic list: an id from a differently configured gateway is
refused rather than misread. Partitions an id does not cover are read from their beginning.
"""
from __future__ import annotations

import base64
import binascii
import zlib

VERSION = 1
MAX_TOKEN = 2048


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _zigzag(value: int) -> int:
    return value * 2 if value >= 0 else -value * 2 - 1


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def topics_check(topics) -> bytes:
    return (zlib.crc32("\n".join(topics).encode()) & 0xFFFF).to_bytes(2, "big")


class Frontier:
    """Next offsets per partition, with the encoded id kept up to date incrementally."""

    def __init__(self, topics, offsets=None):
        self.topics = tuple(topics)
        self.offsets: dict[tuple[str, int], int] = {}
        self._segments = {topic: _varint(0) for topic in self.topics}
        self._header = bytes([VERSION]) + topics_check(self.topics)
        for (topic, partition), offset in (offsets or {}).items():
            self.offsets[(topic, partition)] = offset
        for topic in {t for t, _ in self.offsets}:
            self._encode_topic(topic)

    def advance(self, topic: str, partition: int, next_offset: int) -> None:
        self.offsets[(topic, partition)] = next_offset
        self._encode_topic(topic)

    def _encode_topic(self, topic: str) -> None:
        if topic not in self._segments:
            return
        count = 0
        while (topic, count) in self.offsets:
            count += 1
        parts, previous = [_varint(count)], 0
        for partition in range(count):
            offset = self.offsets[(topic, partition)]
            parts.append(_varint(_zigzag(offset - previous)))
            previous = offset
        self._segments[topic] = b"".join(parts)

    def token(self) -> str:
        raw = self._header + b"".join(self._segments[t] for t in self.topics)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(topics, token: str) -> dict[tuple[str, int], int] | None:
    """The frontier in an id, or None when it is not an id of this configuration."""
    token = token.strip()
    if not token or len(token) > MAX_TOKEN:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    topics = tuple(topics)
    if len(raw) < 3 or raw[0] != VERSION or raw[1:3] != topics_check(topics):
        return None
    offsets, pos = {}, 3
    try:
        for topic in topics:
            count, pos = _read_varint(raw, pos)
            previous = 0
            for partition in range(count):
                delta, pos = _read_varint(raw, pos)
                previous += (delta >> 1) ^ -(delta & 1)
                if previous < 0:
                    return None
                offsets[(topic, partition)] = previous
    except ValueError:
        return None
    return offsets if pos == len(raw) else None
