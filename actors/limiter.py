"""RateLimiterActor: who may open a stream or ask for /stats, decided in one place.

It holds a token bucket per client address (RATE_LIMIT_REQUESTS_PER_MIN refilled
continuously, up to RATE_LIMIT_BURST_SIZE) and the count of open streams, in total and per
address (SSE_MAX_CLIENTS, SSE_MAX_CLIENTS_PER_IP) and per authenticated subject
(SSE_MAX_CLIENTS_PER_SUBJECT; at 0, no limit, subjects are not counted). The web side asks
`Admit` before a request costs anything and tells `Release` (with the same address and
subject) when an admitted stream ends.

Memory stays bounded: buckets live in one dict, least recently used first. A bucket idle
long enough to be full again is forgotten (a new one would be identical), and past
`max_buckets` the least recently used is dropped, so a flood from many addresses costs a
fixed amount. Stream counts exist only for addresses and subjects holding a stream.

Given a `shared` SharedLimits (actors/shared_limits.py: the workers of one instance), the
buckets and stream counts are the instance's, kept in the shared file instead; `refused`
stays this worker's own.
"""
from __future__ import annotations

import logging
import math
import time
from collections import Counter, OrderedDict

import pykka

from actors import hub
from actors.logs import LogBudget
from actors.messages import Admission, Admit, GetLimiterStats, Release
from actors.replies import LimiterStats
from actors.shared_limits import SharedLimits, StreamCaps, cap_refusal

logger = logging.getLogger(__name__)

MAX_BUCKETS = 10_000
BUSY_RETRY_AFTER = 5      # seconds advised when a stream cap refuses
OVERLOADED = "overloaded"  # counted when an Admit comes up after its asker gave up on it


class TokenBuckets:
    """Per-key token buckets; `take(key)` spends a token or says how long to wait."""

    def __init__(self, per_minute: int, burst: int, *, clock, max_buckets: int = MAX_BUCKETS):
        self.rate = per_minute / 60.0          # tokens per second
        self.burst = float(burst)
        self.idle = self.burst / self.rate     # after this long a bucket is full again
        self.clock = clock
        self.max_buckets = max_buckets
        # key -> (tokens, updated), least recently used first; an OrderedDict because a plain
        # dict slows down when it is emptied from the front.
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.evicted = 0

    def take(self, key: str) -> float:
        """0.0 when a token was spent, else the seconds until one is available."""
        now = self.clock()
        self._expire(now)
        previous = self.buckets.pop(key, None)
        tokens = self.burst
        if previous is not None:
            tokens = min(self.burst, previous[0] + (now - previous[1]) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self.buckets[key] = (tokens, now)      # re-inserted: now the most recently used
        if len(self.buckets) > self.max_buckets:
            self.buckets.popitem(last=False)
            self.evicted += 1
        return wait

    def _expire(self, now: float) -> None:
        buckets = self.buckets
        while buckets:
            oldest = next(iter(buckets.values()))
            if now - oldest[1] < self.idle:
                return
            buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self.buckets)


class RateLimiterActor(pykka.ThreadingActor):
    @staticmethod
    def _create_actor_inbox():
        """Under gevent, a gevent queue (its locks are the hub's, not pure-Python ones)."""
        gevent = hub.patched()
        return gevent.Queue() if gevent else pykka.ThreadingActor._create_actor_inbox()

    @staticmethod
    def _create_future():
        return hub.create_future()

    def __init__(self, *, settings, clock=time.monotonic, max_buckets: int = MAX_BUCKETS,
                 shared: SharedLimits | None = None):
        super().__init__()
        self.shared = shared
        self.enabled = settings.rate_limit_enabled
        self.buckets = TokenBuckets(settings.rate_limit_requests_per_min,
                                    settings.rate_limit_burst_size, clock=clock,
                                    max_buckets=max_buckets)
        self.caps = StreamCaps.from_settings(settings)
        self.by_subject = self.caps.per_subject > 0     # else no cap reads a subject's count
        self.streams = 0
        self.per_ip: dict[str, int] = {}
        self.per_subject: dict[str, int] = {}
        self.refused: Counter[str] = Counter()
        self.clock = clock
        self.full_log = LogBudget(1, 60.0)
        self.full_unsaid = 0            # refusals for SSE_MAX_CLIENTS since the last line

    def on_receive(self, message):
        match message:
            case Admit(address=address, stream=stream, subject=subject, peek=peek,
                       waiting=waiting):
                if waiting is not None and not waiting.take():
                    return self._refuse(OVERLOADED, 0)      # answered 503 already: no slot
                return self._admit(address, stream, subject if self.by_subject else None, peek)
            case Release(address=address, subject=subject):
                self._release(address, subject if self.by_subject else None)
            case GetLimiterStats():
                return self._stats()
            case _:
                return super().on_receive(message)

    def on_stop(self):
        if self.shared is not None:
            self.shared.close()

    def on_failure(self, exception_type, exception_value, traceback):
        logger.critical("rate limiter failed: %s (its traceback is above)", exception_value)
        if self.shared is not None:
            self.shared.close()

    def _admit(self, address: str, stream: bool, subject: str | None = None,
               peek: bool = False) -> Admission:
        if self.shared is not None:
            wait, reason = self.shared.admit(address, stream, subject, rate_limited=self.enabled,
                                             peek=peek)
        else:
            wait, reason = self._admit_here(address, stream, subject, peek)
        if wait:
            return self._refuse("rate_limited", max(1, math.ceil(wait)))
        if reason:
            return self._refuse(reason, BUSY_RETRY_AFTER)
        return Admission(True)

    def _admit_here(self, address: str, stream: bool, subject: str | None,
                    peek: bool = False) -> tuple[float, str]:
        """(seconds to wait for a token, else 0; the cap refusing the stream, else "").
        `peek`: the caps are checked as for a stream, and nothing is taken."""
        if self.enabled:
            wait = self.buckets.take(address)
            if wait:
                return wait, ""
        if not stream and not peek:
            return 0.0, ""
        held = self.per_ip.get(address, 0)
        by_subject = self.per_subject.get(subject, 0) if subject else 0
        reason = cap_refusal(self.caps, self.streams, held, by_subject, subject)
        if reason or not stream:
            return 0.0, reason
        self.per_ip[address] = held + 1
        if subject:
            self.per_subject[subject] = by_subject + 1
        self.streams += 1
        return 0.0, ""

    def _refuse(self, reason: str, retry_after: int) -> Admission:
        self.refused[reason] += 1
        if reason == "too_many_streams":        # the operator's to fix, not the client's
            self._say_full()
        return Admission(False, reason, retry_after)

    def _say_full(self) -> None:
        self.full_unsaid += 1
        if self.full_log.take(self.clock()) is None:
            return
        count, self.full_unsaid = self.full_unsaid, 0
        logger.warning("%d stream(s) refused with 503: the instance holds SSE_MAX_CLIENTS=%d "
                       "streams; raise it, or add workers or instances (at most one such line "
                       "a minute)", count, self.caps.total)

    def _release(self, address: str, subject: str | None = None) -> None:
        if self.shared is not None:
            try:
                by_address, by_subject = self.shared.release(address, subject)
            except Exception as exc:  # noqa: BLE001 - a told message must not stop the limiter
                logger.error("release of a stream from %s in the shared limits failed: %s",
                             address, exc, exc_info=exc)
                return
            if not by_address:
                logger.error("release of a stream never admitted, from %s", address)
            elif not by_subject:
                logger.error("release of a stream never admitted for subject %r", subject)
            return
        held = self.per_ip.get(address)
        if held is None:
            logger.error("release of a stream never admitted, from %s", address)
            return
        self.streams -= 1
        _give_back(self.per_ip, address)
        if subject and not _give_back(self.per_subject, subject):
            logger.error("release of a stream never admitted for subject %r", subject)

    def _stats(self) -> LimiterStats:
        if self.shared is not None:
            shared = self.shared.figures()
            return LimiterStats(enabled=self.enabled, streams=shared.streams,
                                addresses_streaming=shared.addresses, buckets=shared.buckets,
                                buckets_evicted=shared.buckets_evicted,
                                refused=dict(self.refused), subjects_streaming=shared.subjects)
        return LimiterStats(enabled=self.enabled, streams=self.streams,
                            addresses_streaming=len(self.per_ip), buckets=len(self.buckets),
                            buckets_evicted=self.buckets.evicted, refused=dict(self.refused),
                            subjects_streaming=len(self.per_subject))


def _give_back(counts: dict[str, int], key: str) -> bool:
    """One stream of `key` ended; a count that reaches 0 is forgotten. False: none was held."""
    held = counts.get(key)
    if held is None:
        return False
    if held > 1:
        counts[key] = held - 1
    else:
        del counts[key]
    return True
