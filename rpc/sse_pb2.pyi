import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TopicStats(_message.Message):
    __slots__ = ("consumed", "delivered", "dropped", "invalid")
    CONSUMED_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_NUMBER: _ClassVar[int]
    consumed: int
    delivered: int
    dropped: int
    invalid: int
    def __init__(self, consumed: _Optional[int] = ..., delivered: _Optional[int] = ..., dropped: _Optional[int] = ..., invalid: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("clients", "events_consumed", "events_delivered", "events_dropped", "invalid_events", "events_replayed", "kafka_replays", "slow_disconnects", "connections_total", "filter_groups", "history_size", "uptime_seconds", "kafka_state", "topics", "kafka_lag")
    class TopicsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: TopicStats
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[TopicStats, _Mapping]] = ...) -> None: ...
    class KafkaLagEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_CONSUMED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    INVALID_EVENTS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_REPLAYED_FIELD_NUMBER: _ClassVar[int]
    KAFKA_REPLAYS_FIELD_NUMBER: _ClassVar[int]
    SLOW_DISCONNECTS_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FILTER_GROUPS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_SIZE_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    KAFKA_STATE_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    KAFKA_LAG_FIELD_NUMBER: _ClassVar[int]
    clients: int
    events_consumed: int
    events_delivered: int
    events_dropped: int
    invalid_events: int
    events_replayed: int
    kafka_replays: int
    slow_disconnects: int
    connections_total: int
    filter_groups: int
    history_size: int
    uptime_seconds: float
    kafka_state: str
    topics: _containers.MessageMap[str, TopicStats]
    kafka_lag: _containers.ScalarMap[str, int]
    def __init__(self, clients: _Optional[int] = ..., events_consumed: _Optional[int] = ..., events_delivered: _Optional[int] = ..., events_dropped: _Optional[int] = ..., invalid_events: _Optional[int] = ..., events_replayed: _Optional[int] = ..., kafka_replays: _Optional[int] = ..., slow_disconnects: _Optional[int] = ..., connections_total: _Optional[int] = ..., filter_groups: _Optional[int] = ..., history_size: _Optional[int] = ..., uptime_seconds: _Optional[float] = ..., kafka_state: _Optional[str] = ..., topics: _Optional[_Mapping[str, TopicStats]] = ..., kafka_lag: _Optional[_Mapping[str, int]] = ...) -> None: ...

class GetClientsRequest(_message.Message):
    __slots__ = ("limit", "offset", "page_token")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    limit: int
    offset: int
    page_token: str
    def __init__(self, limit: _Optional[int] = ..., offset: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class Client(_message.Message):
    __slots__ = ("id", "remote_addr", "user_agent", "event_types", "sources", "filter", "connected_at", "events_sent", "events_dropped", "last_event_id", "subject", "scope")
    ID_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ADDR_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_SENT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    remote_addr: str
    user_agent: str
    event_types: _containers.RepeatedScalarFieldContainer[str]
    sources: _containers.RepeatedScalarFieldContainer[str]
    filter: str
    connected_at: _timestamp_pb2.Timestamp
    events_sent: int
    events_dropped: int
    last_event_id: str
    subject: str
    scope: str
    def __init__(self, id: _Optional[str] = ..., remote_addr: _Optional[str] = ..., user_agent: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ..., sources: _Optional[_Iterable[str]] = ..., filter: _Optional[str] = ..., connected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., events_sent: _Optional[int] = ..., events_dropped: _Optional[int] = ..., last_event_id: _Optional[str] = ..., subject: _Optional[str] = ..., scope: _Optional[str] = ...) -> None: ...

class GetClientsResponse(_message.Message):
    __slots__ = ("total", "clients", "limit", "offset", "next_page_token")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    total: int
    clients: _containers.RepeatedCompositeFieldContainer[Client]
    limit: int
    offset: int
    next_page_token: str
    def __init__(self, total: _Optional[int] = ..., clients: _Optional[_Iterable[_Union[Client, _Mapping]]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DisconnectClientRequest(_message.Message):
    __slots__ = ("client_id", "reason")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    reason: str
    def __init__(self, client_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DisconnectClientResponse(_message.Message):
    __slots__ = ("client_id", "disconnected")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    DISCONNECTED_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    disconnected: bool
    def __init__(self, client_id: _Optional[str] = ..., disconnected: _Optional[bool] = ...) -> None: ...

class DisconnectSubjectRequest(_message.Message):
    __slots__ = ("subject", "reason")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    subject: str
    reason: str
    def __init__(self, subject: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DisconnectSubjectResponse(_message.Message):
    __slots__ = ("disconnected",)
    DISCONNECTED_FIELD_NUMBER: _ClassVar[int]
    disconnected: int
    def __init__(self, disconnected: _Optional[int] = ...) -> None: ...

class GetHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KafkaStatus(_message.Message):
    __slots__ = ("state", "detail", "partitions")
    STATE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    state: str
    detail: str
    partitions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, state: _Optional[str] = ..., detail: _Optional[str] = ..., partitions: _Optional[_Iterable[str]] = ...) -> None: ...

class GetHealthResponse(_message.Message):
    __slots__ = ("status", "kafka", "clients")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KAFKA_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    status: str
    kafka: KafkaStatus
    clients: int
    def __init__(self, status: _Optional[str] = ..., kafka: _Optional[_Union[KafkaStatus, _Mapping]] = ..., clients: _Optional[int] = ...) -> None: ...
