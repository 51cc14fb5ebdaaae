"""Event ids that carry Kafka positions, so any instance can resume any stream exactly.

An id encodes the stream's *frontier*: for every partition of the configured topics, the
offset of the next record the stream has not yet been shown. Everything before it was either
delivered or filtered out. Resuming means reading each partition from its frontier.

Wire format (URL-safe base64, no padding) of:
    version (1 byte) | topics check (2 bytes) | per topic, in KAFKA_TOPICS order:
    incarnation (2 bytes) | varint(number of partitions) then, per partition,
    zigzag varint(offset - previous offset)
The topics check is a CRC of the topic list: an id from a differently configured gateway is
refused rather than misread. Partitions an id does not cover are read from their beginning.

A topic that is deleted and created again starts its offsets anew, so an offset means
nothing without the topic's incarnation: two bytes derived from its Kafka topic id (0 when
unknown). An id whose incarnation of a topic is not the current one resumes that topic from
its new beginning (`read` names those partitions, so the client can be told). Once in 65,535
recreations the new tag equals the old: such an id reads as current. Version 2 ids (a one-byte
incarnation) and version 1 ids (none) are still understood.
"""
from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

VERSION = 3
TAG_WIDTH = {1: 0, 2: 1, 3: 2}       # bytes of incarnation per topic, by version
_URLSAFE = bytes.maketrans(b"+/", b"-_")
MAX_TOKEN = 8192     # gunicorn takes a header field of 8,190 bytes: ids of ~1,500 partitions


class Incarnations:
    """The current incarnation of each topic, known from Kafka's metadata. One registry per
    process: the consumer actor writes it (it reads the metadata), every id encoder reads it."""

    def __init__(self):
        self.ids: dict[str, object] = {}
        self.generation = 0

    def learn(self, topic: str, topic_id) -> bool:
        """Record the topic's Kafka id (a UUID or None); True if it replaced a known other one.
        The whole id decides, so a recreation is seen even when the tags coincide."""
        before = self.ids.get(topic)
        if topic_id is None or topic_id == before:   # unknown (e.g. deleted right now): keep
            return False
        self.ids[topic] = topic_id
        self.generation += 1
        return before is not None

    def replaces(self, topic: str, topic_id) -> bool:
        """True if `topic_id` is known to be another incarnation than the one recorded."""
        before = self.ids.get(topic)
        return None not in (topic_id, before) and topic_id != before

    def tag(self, topic: str, width: int = TAG_WIDTH[VERSION]) -> int:
        return incarnation_tag(self.ids.get(topic), width)


def incarnation_tag(topic_id, width: int = TAG_WIDTH[VERSION]) -> int:
    """1..256**width - 1 from a topic id (0: unknown); two incarnations share one once in
    65,535 (once in 255 with the one byte of version 2 ids)."""
    span = 256 ** width - 1
    return 0 if topic_id is None or not span else topic_id.int % span + 1


INCARNATIONS = Incarnations()


_ONE_BYTE = [bytes([value]) for value in range(0x80)]


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delta(value: int) -> bytes:
    """An offset difference on the wire: zigzag, then varint."""
    return _varint(value * 2 if value >= 0 else -value * 2 - 1)


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

    def __init__(self, topics, offsets=None, incarnations: Incarnations | None = None):
        self.topics = tuple(topics)
        self.offsets: dict[tuple[str, int], int] = {}
        self._segments = {topic: _varint(0) for topic in self.topics}
        self._parts: dict[str, list[bytes]] = {}    # topic -> its segment's varints
        self._incarnations = incarnations or INCARNATIONS
        self._generation = -1
        self._header = b""
        counts: dict[str, int] = {}     # partitions per topic in the id: up to the highest
        for (topic, partition), offset in (offsets or {}).items():
            self.offsets[(topic, partition)] = offset
            counts[topic] = max(counts.get(topic, 0), partition + 1)
        for topic, count in counts.items():
            self._encode_topic(topic, count)

    def advance(self, topic: str, partition: int, next_offset: int) -> None:
        offsets = self.offsets
        offsets[(topic, partition)] = next_offset
        parts = self._parts.get(topic)
        if parts is None or partition >= len(parts) - 1:    # a partition not yet in the id
            self._encode_topic(topic, max(partition + 1, len(parts) - 1 if parts else 0))
            return
        # Each partition is stored as the difference to the one before: two parts change.
        parts[partition + 1] = _delta(
            next_offset - offsets.get((topic, partition - 1), 0) if partition else next_offset)
        if partition + 2 < len(parts):
            parts[partition + 2] = _delta(offsets.get((topic, partition + 1), 0) - next_offset)
        self._segments[topic] = b"".join(parts)

    def _encode_topic(self, topic: str, count: int) -> None:
        """Partitions 0 to count - 1; one missing below another (not read yet: its leader was
        down) is written as 0, from its beginning, which is what its absence means."""
        if topic not in self._segments:
            return
        parts, previous = [_varint(count)], 0
        for partition in range(count):
            offset = self.offsets.get((topic, partition), 0)
            parts.append(_delta(offset - previous))
            previous = offset
        self._parts[topic] = parts
        self._segments[topic] = b"".join(parts)

    def token(self, unknown_tags: dict | None = None) -> str:
        """The id. `unknown_tags` (Resume.unverified: topic -> (tag, width)): the tags to
        write for topics whose incarnation is not known here yet, rather than 0."""
        if self._generation != self._incarnations.generation:
            self._generation = self._incarnations.generation
            self._header = bytes([VERSION]) + topics_check(self.topics)
            width = TAG_WIDTH[VERSION]
            self._tags = {t: self._incarnations.tag(t, width).to_bytes(width, "big")
                          for t in self.topics}
        tags, segments = self._tags, self._segments
        if unknown_tags:
            width = TAG_WIDTH[VERSION]
            tags = {**tags, **{t: tag.to_bytes(width, "big")
                               for t, (tag, given) in unknown_tags.items()
                               if given == width and t in tags
                               and self._incarnations.tag(t, width) == 0}}
        raw = self._header + b"".join([tags[t] + segments[t] for t in self.topics])
        return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


@dataclass(frozen=True)
class Resume:
    """What an id says: the offsets to resume from, and the partitions of topics re-created
    since it was issued (with the offset it held there), which resume from their beginning.
    `unverified`: topic -> (tag, width) of the topics whose current incarnation was not known
    yet (a gateway that just started): `stale` tells later whether they were re-created."""
    offsets: dict
    recreated: dict
    unverified: dict = field(default_factory=dict)


def _raw(token: str) -> bytes | None:
    token = token.strip()
    if not token or len(token) > MAX_TOKEN:
        return None
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None


def foreign(topics, token: str) -> bytes | None:
    """The topics check of `token` when it is an id of this format from a gateway configured
    with other topics (or the same in another order), which `read` refuses: its body is a
    whole number of topics, each an incarnation and its partitions. None for an id of this
    configuration and for anything else (ids of other services, garbage)."""
    raw = _raw(token)
    if raw is None or len(raw) < 3 or raw[0] not in TAG_WIDTH or raw[1:3] == topics_check(topics):
        return None
    pos, width = 3, TAG_WIDTH[raw[0]]
    try:
        while pos < len(raw):
            pos += width
            count, pos = _read_varint(raw, pos)
            if count > len(raw):
                return None
            for _partition in range(count):
                _delta, pos = _read_varint(raw, pos)
    except ValueError:
        return None
    return raw[1:3] if pos == len(raw) and len(raw) > 3 else None


def read(topics, token: str, incarnations: Incarnations | None = None) -> Resume | None:
    """The position in an id, or None when it is not an id of this configuration."""
    raw = _raw(token)
    if raw is None:
        return None
    topics = tuple(topics)
    if len(raw) < 3 or raw[0] not in TAG_WIDTH or raw[1:3] != topics_check(topics):
        return None
    incarnations = incarnations or INCARNATIONS
    offsets: dict[tuple[str, int], int] = {}
    recreated: dict[tuple[str, int], int] = {}
    unverified: dict[str, tuple[int, int]] = {}
    pos, width = 3, TAG_WIDTH[raw[0]]
    try:
        for topic in topics:
            if pos + width > len(raw):
                return None
            tag, pos = int.from_bytes(raw[pos:pos + width], "big"), pos + width
            now = incarnations.tag(topic, width)
            stale = tag != 0 and now != 0 and tag != now
            if tag != 0 and now == 0:
                unverified[topic] = (tag, width)
            count, pos = _read_varint(raw, pos)
            previous = 0
            for partition in range(count):
                delta, pos = _read_varint(raw, pos)
                previous += (delta >> 1) ^ -(delta & 1)
                if previous < 0:
                    return None
                (recreated if stale else offsets)[(topic, partition)] = previous
    except ValueError:
        return None
    return Resume(offsets, recreated, unverified) if pos == len(raw) else None


def stale(unverified: dict, incarnations: Incarnations | None = None) -> set:
    """The topics of `unverified` (Resume.unverified) known by now to have been re-created
    since the id was issued."""
    incarnations = incarnations or INCARNATIONS
    return {topic for topic, (tag, width) in unverified.items()
            if incarnations.tag(topic, width) not in (0, tag)}


def decode(topics, token: str) -> dict[tuple[str, int], int] | None:
    """The offsets in an id (partitions of re-created topics left out), or None."""
    found = read(topics, token)
    return None if found is None else found.offsets


def covering(topics, token: str, floor: dict, pinned: dict | None = None) -> dict | None:
    """The offsets of `token`, an id this instance gave, each raised to `floor` where below
    it (a partition the id leaves out is at 0: read from its beginning), and set to `pinned`
    where given; None when none is below and none pinned (nor in the ids it gives later)."""
    offsets = _offsets(tuple(topics), token, INCARNATIONS.generation)
    if offsets is None or (not pinned and all(offsets.get(k, 0) >= o for k, o in floor.items())):
        return None
    return {**floor, **{k: max(o, floor.get(k, 0)) for k, o in offsets.items()}, **(pinned or {})}


@lru_cache(maxsize=4096)    # a reconnect storm asks about the same few ids
def _offsets(topics: tuple, token: str, _generation: int) -> dict | None:
    return decode(topics, token)
