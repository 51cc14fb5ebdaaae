"""kafka-python's consumer opened for the gateway: a bootstrap that never hangs while Kafka is
down, the settings every consumer reads with, and the fixes to kafka-python 3.0 that need its
internals (actors/kafka_records.py and prompt.py patch others; kafka_diagnosis.py listens to
its loggers).

kafka-python is imported lazily, after gunicorn's gevent worker has patched the process
(imported earlier it would capture the real epoll selector and hang the worker).
"""
from __future__ import annotations

import logging
import socket

from actors import kafka_diagnosis
from actors.kafka_config import consumer_args, unreadable_tls_file

logger = logging.getLogger(__name__)


class KafkaUnreachable(RuntimeError):
    """No broker of KAFKA_BROKERS accepts a connection (probing again costs them nothing)."""


class KafkaRefused(KafkaUnreachable):
    """A broker accepted the connection, but the bootstrap failed (a wrong password, a
    certificate refused, a broker that does not answer): each attempt costs the broker work."""


def connect_failures(brokers, timeout=2.0) -> list[str]:
    """Why no bootstrap server accepts a TCP connection, one reason each; [] as soon as one
    does (cheap, never hangs)."""
    failures = []
    for broker in brokers:
        host, _, port = broker.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            return []
        except socket.gaierror as exc:
            failures.append(f"{host}: the name does not resolve (DNS)"
                            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", 0))
                            else f"{host}: DNS lookup failed ({exc.strerror})")
        except ConnectionRefusedError:
            failures.append(f"{broker}: connection refused")
        except TimeoutError:
            failures.append(f"{broker}: no answer in {timeout:g} s (a firewall?)")
        except OSError as exc:
            failures.append(f"{broker}: {exc.strerror or exc}")
    return failures


RECONNECT_BACKOFF_MS = 50        # kafka-python's first wait before connecting again ...
RECONNECT_MAX_MS = 2000          # ... doubled up to this: a restarted broker is back at once
REFUSED_RECONNECT_MAX_MS = 60000  # ... or up to this while the brokers refuse us
BOOTSTRAP_TIMEOUT_MS = 10000
REQUEST_TIMEOUT_MS = 10000      # a fetch (which the broker holds at most 500 ms), metadata
CONNECT_TIMEOUT_MS = 3000       # a new connection set up, its first requests included ...
CONNECT_TIMEOUT_MAX_MS = 10000  # ... doubled after each failure up to this (30 s by default)


def open_consumer(settings, role: str, patient: bool = False):
    """A KafkaConsumer without a group, or KafkaUnreachable; never hangs while Kafka is down.
    `patient`: a bootstrap was refused before, so each broker is tried once, not every
    2 s until the bootstrap times out.

    One poll holds the gevent hub for at most max_poll_records records, whatever the fetch size.
    """
    failures = connect_failures(settings.kafka_brokers)
    if failures:
        raise KafkaUnreachable(
            f"no broker of {','.join(settings.kafka_brokers)} accepts connections "
            f"({'; '.join(failures)}); check KAFKA_BROKERS and that Kafka runs")
    unreadable = unreadable_tls_file(settings)
    if unreadable:              # no handshake can succeed: retried like a broker that is down
        raise KafkaUnreachable(unreadable)
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError
    kafka_diagnosis.install()
    _tls_failures_retried()
    _failed_connects_closed()
    from actors import kafka_records, prompt
    selector = prompt.selector_class()      # live delivery's waits, ahead of the hub's queue
    try:
        prompt.patch_kafka()
    except (ImportError, AttributeError):
        _out_of_reach("its network selector", "its results wait their turn on the hub (live "
                      "delivery is slower under load)")
    try:
        consumer = KafkaConsumer(
            **consumer_args(settings, role),
            **({"selector": selector} if selector is not None else {}),
            group_id=None,
            enable_auto_commit=False,
            # A position Kafka no longer holds is never skipped silently: poll() raises, and
            # the live source (KafkaSource._moved) or the replay (KafkaReader raises Retained)
            # goes on from the oldest record kept and tells the clients with a `gap` event.
            auto_offset_reset="none",
            max_poll_records=200,
            # The broker answers a fetch as soon as it has a record. An idle live consumer's
            # fetch waits there up to 500 ms (not 100: fewer turns of an idle worker); a replay
            # seeks all the time, and a seek waits for the fetch in flight.
            fetch_max_wait_ms=500 if role == "live" else 100,
            # A leader that hangs (SIGSTOP, a stalled disk) keeps its connection open: the fetch
            # waits for this long before the consumer looks for the new leader (30 s by default,
            # though Kafka moves leadership in about 15).
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            metadata_max_age_ms=settings.kafka_metadata_refresh_ms,
            reconnect_backoff_ms=BOOTSTRAP_TIMEOUT_MS if patient else RECONNECT_BACKOFF_MS,
            reconnect_backoff_max_ms=REFUSED_RECONNECT_MAX_MS if patient else RECONNECT_MAX_MS,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            allow_auto_create_topics=False,     # a reader: a topic it names is never made
        )
    except KafkaError as exc:
        raise KafkaRefused(f"bootstrap failed: {exc}") from None
    _no_auto_create(consumer)
    reconnect_backoff(consumer, RECONNECT_MAX_MS)
    kafka_records.install(consumer)
    return consumer


def _no_auto_create(consumer) -> None:
    """kafka-python 3.0.12 takes allow_auto_create_topics and does not pass it on to the
    metadata requests, which then ask a broker with Kafka's default auto.create.topics.enable
    to create every topic of KAFKA_TOPICS it lacks: a typo became a topic, and a topic an
    operator deleted came back empty at once. The cluster's own setting is what they read."""
    config = getattr(getattr(consumer, "_cluster", None), "config", None)
    if isinstance(config, dict) and "allow_auto_create_topics" in config:
        config["allow_auto_create_topics"] = False
    else:
        logger.warning("this kafka-python keeps its topic auto-creation out of reach: a broker "
                       "with auto.create.topics.enable=true may create the topics of "
                       "KAFKA_TOPICS it lacks (turn that off in the broker)")


def _failed_connects_closed() -> None:
    """kafka-python 3.0.12 leaves the socket of a failed connection attempt to Python's cycle
    collector (the error's traceback holds it), which the workers run rarely (gc.freeze,
    service/main.py): during a Kafka outage a worker gained 1.3-1.5 descriptors a second, and
    kept them after. The socket is closed as its attempt fails. Once."""
    try:
        from kafka.net import inet
        connect = inet.KafkaNetSocket.sock_connect
    except (ImportError, AttributeError):
        _out_of_reach("its connection attempts", "a failed attempt's socket stays open until "
                      "Python's cycle collector runs: descriptors pile up while Kafka is down")
        return
    if getattr(connect, "closes_failed", False):
        return

    async def sock_connect(self, net, sock, sockaddr, timeout_at=None):
        try:
            return await connect(self, net, sock, sockaddr, timeout_at=timeout_at)
        except BaseException:
            sock.close()
            raise

    sock_connect.closes_failed = True       # type: ignore[attr-defined]
    inet.KafkaNetSocket.sock_connect = sock_connect


_TLS_RETRIED: list = []


def _tls_failures_retried() -> None:
    """kafka-python builds its SSL context at every connection: a CA, certificate or key it
    cannot load then (a secret remounted, a rotation with a gap) raised a bare OSError, which
    ended its metadata loop for good (it goes on after Kafka errors only), and the gateway
    never reconnected. As a connection error it is retried with the usual backoff. Once."""
    from kafka.errors import KafkaConnectionError
    try:
        from kafka.net import transport
    except ImportError:
        transport = None
    build = getattr(getattr(transport, "KafkaSSLTransport", None), "_build_ssl_context", None)
    if _TLS_RETRIED:
        return
    _TLS_RETRIED.append(build)
    if build is None:
        _out_of_reach("how it builds its TLS context", "a TLS file that cannot be read when it "
                      "reconnects may stop it for good (restart then)")
        return

    def build_or_fail(config):
        try:
            return build(config)
        except OSError as exc:      # ssl.SSLError too: a file half written
            raise KafkaConnectionError(f"cannot load the TLS files: {exc}") from exc

    transport.KafkaSSLTransport._build_ssl_context = staticmethod(build_or_fail)


def _out_of_reach(part: str, effect: str) -> None:
    """A fix of ours that this kafka-python (a release it was not written for) does not let
    in: said once; the consumer works without it."""
    import kafka
    if part not in _SAID:
        _SAID.add(part)
        logger.warning("kafka-python %s keeps %s out of reach: %s", kafka.__version__, part,
                       effect)


_SAID: set[str] = set()


def reconnect_backoff(consumer, max_ms: int) -> None:
    """How long kafka-python waits before connecting to a broker again: doubling from 50 ms,
    with its ±20 % jitter, up to `max_ms`; it starts over once a connection succeeds. And how
    long a new connection may take to be set up: a hung broker (SIGSTOP, a stalled disk)
    completes TCP's handshake, its kernel answering, then holds the connection's first
    request, and a consumer told to read a partition there by metadata from before the
    failover waited 10 s, then 20, before it looked again."""
    consumer._manager.config.update(reconnect_backoff_ms=RECONNECT_BACKOFF_MS,
                                    reconnect_backoff_max_ms=max_ms,
                                    socket_connection_setup_timeout_ms=CONNECT_TIMEOUT_MS,
                                    socket_connection_setup_timeout_max_ms=CONNECT_TIMEOUT_MAX_MS)
