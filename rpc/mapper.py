"""The core's replies (actors/replies.py) as protobuf messages, field by field. Pure functions."""
from __future__ import annotations

import base64
import binascii
import json
import re

from google.protobuf.timestamp_pb2 import Timestamp

from actors.replies import ClientPage, ClientSummary, Health, ServiceStats
from rpc import sse_pb2 as pb
from rpc.peer_codec import MAX_SECONDS

MAX_CLIENT_ID = 256      # ids are 12 characters: a longer one names no client
TOKEN_VERSION = 2        # page tokens of version 1 held the Unix time of a connect (it steps)

_SURROGATE = re.compile("[\ud800-\udfff]")
# A GetClients answer stays under 4 MiB, the default receive limit of grpcurl and of gRPC
# clients: 1,000 clients with filters of kilobytes and long scopes would make 10-30 MB.
MAX_PAGE_BYTES = 4_000_000
FIELD_OVERHEAD = 6          # a repeated message's tag and length, at most


def stats(figures: ServiceStats) -> pb.GetStatsResponse:
    """The figures of GET /stats that the management API carries."""
    broker = figures.broker
    counts = {"consumed": broker.per_topic, "delivered": broker.delivered_per_topic,
              "dropped": broker.dropped_per_topic, "invalid": broker.invalid_per_topic}
    names = sorted(set().union(*counts.values()))
    topics = {topic: pb.TopicStats(**{field: per_topic.get(topic, 0)     # zeros shown too
                                      for field, per_topic in counts.items()})
              for topic in names}
    return pb.GetStatsResponse(
        clients=broker.clients,
        events_consumed=broker.events_consumed,
        events_delivered=broker.events_delivered,
        events_dropped=broker.events_dropped,
        invalid_events=broker.invalid_events,
        events_replayed=broker.events_replayed,
        kafka_replays=broker.kafka_replays,
        slow_disconnects=broker.slow_disconnects,
        connections_total=broker.connections_total,
        filter_groups=broker.filter_groups,
        history_size=figures.history_size,
        uptime_seconds=broker.uptime_seconds,
        kafka_state=broker.kafka_state,
        topics=topics,
        kafka_lag=broker.kafka_lag,
    )


def timestamp(epoch_seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMicroseconds(round(epoch_seconds * 1e6))   # a double holds microseconds exactly
    return stamp


def text(value: str) -> str:
    """A protobuf string is UTF-8: a lone surrogate (a JWT's JSON may hold "\\ud800")
    becomes U+FFFD instead of failing the whole reply."""
    return value if value.isascii() else _SURROGATE.sub("\ufffd", value)


def client(entry: ClientSummary) -> pb.Client:
    """One connected client of a GetClients page."""
    return pb.Client(
        id=entry.id,
        remote_addr=text(entry.remote_addr),
        user_agent=text(entry.user_agent),
        event_types=[text(t) for t in entry.event_types],
        sources=[text(s) for s in entry.sources],
        filter=text(entry.filter),
        connected_at=timestamp(entry.connected_at),
        events_sent=entry.events_sent,
        events_dropped=entry.events_dropped,
        last_event_id=entry.last_event_id,
        subject=text(entry.subject),      # "" anonymous or AUTH_MODE=off
        scope=text(entry.scope),
    )


def clients(page: ClientPage, limit: int, offset: int) -> pb.GetClientsResponse:
    """The page as asked, or its first clients that fit MAX_PAGE_BYTES; `limit` then says how
    many it holds, so the next page starts at offset + limit either way. `page` may hold one
    client more than `limit`: it only says that another page follows (next_page_token)."""
    listed: list[pb.Client] = []
    size = 0
    for entry in page.clients[:limit]:
        mapped = client(entry)
        size += mapped.ByteSize() + FIELD_OVERHEAD
        if size > MAX_PAGE_BYTES and listed:
            limit = len(listed)
            break
        listed.append(mapped)
    following = page.clients[len(listed) - 1] if 0 < len(listed) < len(page.clients) else None
    return pb.GetClientsResponse(total=page.total, limit=limit, offset=offset, clients=listed,
                                 next_page_token=page_token(following) if following else "")


def page_token(entry: ClientSummary) -> str:
    """Where the page after `entry` starts: its place in client_order, opaque to callers."""
    place = json.dumps([TOKEN_VERSION, entry.opened, entry.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(place.encode()).rstrip(b"=").decode()


def place(token: str) -> tuple[float, str]:
    """The place a page_token holds; ValueError when no answer could have given it."""
    try:
        version, opened, client_id = json.loads(
            base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError, binascii.Error, RecursionError):    # RecursionError: [[[[...
        raise ValueError("not a page token") from None
    if (version != TOKEN_VERSION or isinstance(version, bool)
            or not isinstance(opened, (int, float)) or isinstance(opened, bool)
            or not -MAX_SECONDS < opened < MAX_SECONDS      # NaN, inf, a 400-digit int
            or not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID):
        raise ValueError("not a page token")
    return float(opened), client_id


def disconnected(client_id: str) -> pb.DisconnectClientResponse:
    return pb.DisconnectClientResponse(client_id=client_id, disconnected=True)


def subject_disconnected(ended: int) -> pb.DisconnectSubjectResponse:
    return pb.DisconnectSubjectResponse(disconnected=ended)


def health(report: Health) -> pb.GetHealthResponse:
    """The body of GET /health."""
    kafka = report.kafka
    return pb.GetHealthResponse(
        status=report.status,
        kafka=pb.KafkaStatus(state=kafka.state, detail=kafka.detail, partitions=kafka.partitions),
        clients=report.clients,
    )
