"""The actors' replies (plain dicts, see actors/broker.py) as protobuf messages. Pure functions."""
from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from rpc import sse_pb2 as pb

_TOPIC_FIGURES = (("per_topic", "consumed"), ("delivered_per_topic", "delivered"),
                  ("dropped_per_topic", "dropped"), ("invalid_per_topic", "invalid"))


def stats(figures: dict, history_size: int) -> pb.GetStatsResponse:
    """The broker's GetStats reply and the history's size, as GET /stats shows them."""
    topics: dict[str, pb.TopicStats] = {}
    for key, field in _TOPIC_FIGURES:
        for topic, count in (figures.get(key) or {}).items():
            setattr(topics.setdefault(topic, pb.TopicStats()), field, count)
    return pb.GetStatsResponse(
        clients=figures["clients"],
        events_consumed=figures["events_consumed"],
        events_delivered=figures["events_delivered"],
        events_dropped=figures["events_dropped"],
        invalid_events=figures["invalid_events"],
        events_replayed=figures.get("events_replayed", 0),
        kafka_replays=figures.get("kafka_replays", 0),
        slow_disconnects=figures.get("slow_disconnects", 0),
        connections_total=figures.get("connections_total", 0),
        filter_groups=figures.get("filter_groups", 0),
        history_size=history_size,
        uptime_seconds=figures["uptime_seconds"],
        kafka_state=figures["kafka_state"],
        topics=topics,
        kafka_lag=figures.get("kafka_lag") or {},
    )


def timestamp(epoch_seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMicroseconds(round(epoch_seconds * 1e6))   # a double holds microseconds exactly
    return stamp


def client(entry: dict) -> pb.Client:
    """One entry of the broker's GetClients reply."""
    return pb.Client(
        id=entry["id"],
        remote_addr=entry["remote_addr"],
        user_agent=entry["user_agent"],
        event_types=entry.get("event_types", ()),
        sources=entry.get("sources", ()),
        filter=entry.get("filter", ""),
        connected_at=timestamp(entry["connected_at"]),
        events_sent=entry["events_sent"],
        events_dropped=entry["events_dropped"],
        last_event_id=entry.get("last_event_id") or "",
    )


def clients(reply: dict, limit: int, offset: int) -> pb.GetClientsResponse:
    return pb.GetClientsResponse(total=reply["total"], limit=limit, offset=offset,
                                 clients=[client(entry) for entry in reply["clients"]])


def disconnected(client_id: str) -> pb.DisconnectClientResponse:
    return pb.DisconnectClientResponse(client_id=client_id, disconnected=True)


def health(report: dict) -> pb.GetHealthResponse:
    """The broker's GetHealth reply, the body of GET /health."""
    kafka = report.get("kafka") or {}
    return pb.GetHealthResponse(
        status=report["status"],
        kafka=pb.KafkaStatus(state=kafka.get("state", ""), detail=kafka.get("detail", ""),
                             partitions=kafka.get("partitions", ())),
        clients=report.get("clients", 0),
    )
